/*
 * fastnll/_portable.h -- the compiler switches every C header of fastnll uses.
 *
 * gcc and clang get `#pragma omp simd` on the loops that must vectorise (honoured with
 * -fopenmp-simd even without OpenMP), forced inlining and prefetches; other compilers (MSVC)
 * get plain loops that compute the same values.  FNL_PREFETCH asks for a line into L1,
 * FNL_PREFETCH_L2 into L2 only.
 */
#ifndef FASTNLL_PORTABLE_H
#define FASTNLL_PORTABLE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define FNL_PRAGMA(x) _Pragma(#x)
#define FNL_SIMD FNL_PRAGMA(omp simd)
#define FNL_SIMD_SUM(v) FNL_PRAGMA(omp simd reduction(+ : v))
#define FNL_SIMD_SUM2(v, w) FNL_PRAGMA(omp simd reduction(+ : v, w))
#define FNL_SIMD_MAX(v) FNL_PRAGMA(omp simd reduction(max : v))
#define FNL_INLINE static inline __attribute__((always_inline))
#define FNL_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#define FNL_PREFETCH_L2(p) __builtin_prefetch((p), 0, 2)
#else
#define FNL_SIMD
#define FNL_SIMD_SUM(v)
#define FNL_SIMD_SUM2(v, w)
#define FNL_SIMD_MAX(v)
#define FNL_INLINE static inline
#define FNL_PREFETCH(p) ((void)(p))
#define FNL_PREFETCH_L2(p) ((void)(p))
#endif

/* Whether fnl_prefetch_after asks for anything.  The row traversals' prefetch helped on an
 * Intel Xeon when it was added, one chunk ahead (cross_entropy (4096, 32000) float32: 49 ->
 * 44 ms at x86-64-v3, 36 -> 29 ms at v4, 2026-12-05; the chunk after the next, minutes later,
 * was compared with one ahead only), and slows the same loops on an AMD EPYC (Zen 4), whose
 * hardware prefetchers follow the rows without it (38 -> 28 ms at v3 and 27 -> 18 ms at v4
 * without, 2026-12-07).  Each kernel module has its own copy, 1 unless set: fastnll/_dispatch.py
 * sets the module it selects once at import (on for Intel CPUs, off otherwise;
 * FASTNLL_ROW_PREFETCH overrides); a module imported otherwise (built_levels() imports them
 * all) keeps 1 but computes nothing.  It changes no result, only which lines are asked for
 * early. */
static int fnl_row_prefetch = 1;

FNL_INLINE void fnl_set_row_prefetch(int on) { fnl_row_prefetch = on != 0; }
FNL_INLINE int fnl_get_row_prefetch(void) { return fnl_row_prefetch; }

/* ask for the n bytes that follow [p, p + n), one cache line at a time: a later chunk of a
 * row being read, or the start of the next row (when fnl_row_prefetch is on).  On integers:
 * the address may lie past the array, which a prefetch may name but a pointer may not. */
FNL_INLINE void fnl_prefetch_after(const void *p, ptrdiff_t n)
{
    if (!fnl_row_prefetch) return;
    uintptr_t next = (uintptr_t)p + (uintptr_t)n;
    for (ptrdiff_t b = 0; b < n; b += 64) FNL_PREFETCH((const void *)(next + (uintptr_t)b));
}

/* rows far apart (a class axis with a large stride, e.g. axis 0 of a C-ordered matrix): the
 * hardware prefetchers do not follow short pieces of rows in different pages, so the column
 * loops ask, into L2, for the nbytes from value `at` of x (values of `size` bytes, rows
 * row_stride values apart): the same piece of a row one chunk ahead, asked for while the sum
 * pass reads this chunk.  (Into L1, this evicted lines of the chunk being read.)  On
 * integers, as the address may lie past the array. */
FNL_INLINE void fnl_prefetch_rows_ahead(const void *x, ptrdiff_t at, ptrdiff_t row_stride,
                                        ptrdiff_t size, ptrdiff_t nbytes)
{
    if (row_stride * size <= 1024) return;
    uintptr_t ahead = (uintptr_t)x + (uintptr_t)(at * size);
    for (ptrdiff_t b = 0; b < nbytes; b += 64) FNL_PREFETCH_L2((const void *)(ahead + b));
}

/* The column loops ask for the next chunk's pieces of the rows (fnl_prefetch_rows_ahead)
 * FNL_COL_PREFETCH bytes of a row at a time: a group of columns asks where such a piece
 * starts, for the piece or what is left of the block's ncols values (fnl_col_piece_bytes:
 * the group at value k0 of the block, values of size bytes; 0 for the others, for which
 * fnl_prefetch_rows_ahead then asks for nothing).  The groups
 * hold 64 columns at x86-64-v4 (256 bytes of float32, 128 of 16-bit values) and 32 at v3
 * (128 bytes of float32), a divisor of the piece (checked where they are defined), so every
 * group lies in a piece asked for.  On an AMD EPYC, (4096, 32000) float16 logsumexp(axis=0),
 * 2 threads, alternating processes of the two builds with float32's call as the reference:
 * 1.10-1.26x float32's time while each group asked for its own 128 bytes, 0.63-0.65x with
 * 256 bytes every other group; asking for a float32 block's whole 1 KiB at once made float32
 * 1.4x slower (2026-12-07). */
#define FNL_COL_PREFETCH 256

FNL_INLINE ptrdiff_t fnl_col_piece_bytes(ptrdiff_t k0, ptrdiff_t ncols, ptrdiff_t size)
{
    if ((k0 * size) % FNL_COL_PREFETCH)
        return 0;
    return (ncols - k0) * size < FNL_COL_PREFETCH ? (ncols - k0) * size : FNL_COL_PREFETCH;
}

/* 1: col_lse_chunk (_class_axis.pxi) lists the columns whose running maximum a chunk raises
 * and rescales them one by one (with the compiler's loop, below, for pieces where many
 * rise); 0: it rescales by a loop of `if (raised) rescale` over all the columns, which the
 * compiler vectorises with masks, taking rescale's exp for every column of every chunk.
 * The same bits either way.  Measured on an AMD EPYC (Zen 4), logsumexp(axis=0) of (4096,
 * 32000) float32, 2 threads, alternating processes of the two builds: the list took the
 * time from 1.41-1.45x to 1.32-1.36x axis=1's at x86-64-v3, 2-4% off at x86-64, and added
 * 0-5% at x86-64-v4, where the masked loop takes 8 doubles a vector. */
#if defined(__AVX512F__)
#define FNL_RESCALE_LISTED 0
#else
#define FNL_RESCALE_LISTED 1
#endif

/* orders a thread's non-temporal stores before whatever it does next (a no-op where none are
 * issued) */
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
FNL_INLINE void fnl_stream_fence(void) { _mm_sfence(); }
#else
FNL_INLINE void fnl_stream_fence(void) {}
#endif

/* where a float32 row loop reads its terms: a float32 run (FNL_SRC_F32), or 16-bit values of
 * one of the formats of _half.h, converted in registers (the codes of _half.KINDS) */
enum { FNL_SRC_F32 = 0, FNL_F16 = 1, FNL_BF16 = 2 };

/* the bits of a float or a double, for exponent arithmetic */
typedef union { float f; int32_t i; } fnl_bits32;
typedef union { double f; int64_t i; } fnl_bits64;

#endif /* FASTNLL_PORTABLE_H */
