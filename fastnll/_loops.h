/*
 * fastnll/_loops.h -- the one C header the Cython kernels include (through _loops.pxd): the
 * inner loops of fastnll, for float (names ending _f32) and double (_f64).
 *
 *   _portable.h           compiler switches (omp simd pragmas, inlining, prefetch)
 *   _scalar_math.h        the one exp and log, branch-free so that they vectorise
 *   _transpose_tiles.h    register transposes of square tiles (x86-64-v3 and v4)
 *   _avx512_loops.h       the float loops that evaluate exp, with AVX-512 intrinsics (v4)
 *   _avx2_loops.h         the same loops with AVX2 and FMA intrinsics (v3)
 *   _generic_loops_T.h    every row, column and gather loop, written once for a type T
 *   _pack_T.h             packing strided column blocks into unit-stride class rows
 *   _half.h               float16 and bfloat16 to and from float32
 *
 * The two _T.h files are templates: each is included here once per element type, with
 * T the type, FNL_FN(name) appending its suffix, and FNL_INTRINSICS set where the float
 * loops hand over to the loops written with intrinsics, FNL_VEC(name) naming them.  A compiler error or a debugger line points into them.
 */
#ifndef FASTNLL_LOOPS_H
#define FASTNLL_LOOPS_H

#include "_portable.h"
#include "_scalar_math.h"
#include "_transpose_tiles.h"
#include "_avx512_loops.h"
#include "_avx2_loops.h"
#include "_half.h"

#if defined(T) || defined(FNL_FN) || defined(FNL_INTRINSICS) || defined(FNL_VEC) \
    || defined(FNL_T_TILE)
#error "_loops.h: a template parameter name is already taken"
#endif
#define FNL_CAT_(a, b) a##b
#define FNL_CAT(a, b) FNL_CAT_(a, b)

#define T float
#define FNL_FN(name) FNL_CAT(name, _f32)
#if defined(FNL_HAVE_AVX512)
#define FNL_INTRINSICS 1
#define FNL_VEC(name) FNL_CAT(name, _avx512_f32)
#elif defined(FNL_HAVE_AVX2)
#define FNL_INTRINSICS 1
#define FNL_VEC(name) FNL_CAT(name, _avx2_f32)
#else
#define FNL_INTRINSICS 0
#endif
#ifdef FNL_HAVE_TILE
#define FNL_T_TILE FNL_TILE_F32
#endif
#include "_generic_loops_T.h"
#include "_pack_T.h"
#undef T
#undef FNL_FN
#undef FNL_INTRINSICS
#undef FNL_VEC
#undef FNL_T_TILE

/* 1 where the float unit-stride exp loops are written with intrinsics (x86-64-v3 and v4):
 * only there does the row traversal take fnl_sumexp_below (elsewhere it would run the same
 * loop as fnl_sumexp, inlined a second time, whose sum order is the compiler's) */
#if defined(FNL_HAVE_AVX512) || defined(FNL_HAVE_AVX2)
#define FNL_F32_INTRINSICS 1
#else
#define FNL_F32_INTRINSICS 0
#endif

#define T double
#define FNL_FN(name) FNL_CAT(name, _f64)
#define FNL_INTRINSICS 0
#ifdef FNL_HAVE_TILE
#define FNL_T_TILE FNL_TILE_F64
#endif
#include "_generic_loops_T.h"
#include "_pack_T.h"
#undef T
#undef FNL_FN
#undef FNL_INTRINSICS
#undef FNL_T_TILE

/* ------------------------------------------- 16-bit chunks of the column traversal ---- */

/* staging of fnl_half_load_chunk_f32's dense case, in floats (32 KiB on the stack) */
#define FNL_HALF_DENSE 8192

/* One chunk of nrows 16-bit rows (row j at h + j * s_row: ncols values at stride s_col)
 * converted to float32 for the column loops: row j lands at out + j * s_out (ncols <=
 * s_out: one column block).  While a row is converted, the same piece `ahead` rows on (the
 * next chunk's) is asked for into L2, when
 * the pieces are contiguous and the rows far apart, as fnl_prefetch_rows_ahead does for
 * float32 (on integers: the address may lie past the array).  Few classes, each column's
 * contiguous and the columns dense (s_row == 1: the transposed view of short rows, one block
 * of columns): the span is converted at once with the vector conversions, then transposed by
 * fnl_pack_f32's tiles.  Here, after _pack_T.h, for fnl_pack_f32. */
static inline void fnl_half_load_chunk_f32(const uint16_t *h, ptrdiff_t nrows, ptrdiff_t s_row,
                                           ptrdiff_t ncols, ptrdiff_t s_col, int kind,
                                           ptrdiff_t ahead, ptrdiff_t s_out, float *out)
{
    if (s_row == 1 && s_col > 1 && s_col < 2 * nrows
        && (ncols - 1) * s_col + nrows <= FNL_HALF_DENSE) {
        float stage[FNL_HALF_DENSE];
        fnl_half_load_f32(h, (ncols - 1) * s_col + nrows, 1, kind, stage);
        fnl_pack_f32(stage, nrows, 1, ncols, s_col, out, s_out, 0);
        return;
    }
    int prefetch = s_col == 1 && (s_row > 256 || s_row < -256);
    for (ptrdiff_t j = 0; j < nrows; j++) {
        const uint16_t *row = h + j * s_row;
        if (prefetch) {
            uintptr_t next = (uintptr_t)row + (uintptr_t)(ahead * s_row) * sizeof(uint16_t);
            for (ptrdiff_t b = 0; b < ncols * (ptrdiff_t)sizeof(uint16_t); b += 64)
                FNL_PREFETCH_L2((const void *)(next + (uintptr_t)b));
        }
        fnl_half_load_f32(row, ncols, s_col, kind, out + j * s_out);
    }
}

#endif /* FASTNLL_LOOPS_H */
