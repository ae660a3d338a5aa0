/* fastnll/_omp_shim.h -- the only file that includes omp.h.  Without OpenMP it provides
 * stand-ins, so every kernel module compiles either way (prange then runs serially). */
#ifndef FASTNLL_OMP_SHIM_H
#define FASTNLL_OMP_SHIM_H
#ifdef _OPENMP
#include <omp.h>
static int fnl_omp_max_threads(void) { return omp_get_max_threads(); }
static int fnl_have_openmp(void) { return 1; }
#else
static int fnl_omp_max_threads(void) { return 1; }
static int fnl_have_openmp(void) { return 0; }
#endif
#endif
