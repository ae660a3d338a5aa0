/*
 * fastnll/_avx512_loops.h -- the float32 loops that evaluate exp, written with AVX-512
 * intrinsics, for the x86-64-v4 build (gcc or clang; the header defines nothing elsewhere).
 *
 * fnl_exp16_f32 is fnl_exp_f32 (_scalar_math.h) step for step, with the FMAs gcc forms from
 * it at this level, but scaling by 2^n with vscalefps (which rounds a subnormal result once,
 * as the two factors do) instead of exponent-bit arithmetic: gcc does not find that
 * instruction in the scalar code.  It gives the same bits as fnl_exp_f32 built for
 * x86-64-v4 for all 2^32 floats, checked exhaustively in CI by .ci/check_exp.c (rounding
 * x/ln2 with vrndscaleps after an unfused multiply instead differed for 19 of them, by an ulp).
 *
 * The loops take unit-stride runs and are called by the type-generic loops of
 * _generic_loops_T.h, for float, in place of their own bodies (FNL_INTRINSICS):
 *   fnl_max_unit_avx512_f32         a row's maximum
 *   fnl_sumexp_unit_avx512_f32      a row's sum of exp, split at the maximum
 *   fnl_colsumexp_unit_avx512_f32   one class row of a column block into per-column sums
 *   fnl_colmax_rows_avx512_f32, fnl_colsumexp_rows_avx512_f32
 *                                   a chunk of class rows of a column block at once
 *   fnl_expsum_unit_avx512_f32      a row's exp(x - M), written and summed (softmax)
 *   fnl_sub2_stream_avx512_f32, fnl_scale_stream_avx512_f32
 *                                   softmax writers with non-temporal stores
 *   fnl_softmax_unit_avx512_f32, fnl_grad_unit_avx512_f32, fnl_colsoftmax_unit_avx512_f32,
 *   fnl_colgrad_unit_avx512_f32     the writers of softmax and of the gradient
 * The column sums add element by element, so they are bit-identical to the generic loop's;
 * the row sum adds in 16 lanes and then across them, like the vectorised generic loop; the
 * gradient writers round scale_p e - scale_w once (fused multiply-subtract).
 */
#ifndef FASTNLL_AVX512_LOOPS_H
#define FASTNLL_AVX512_LOOPS_H

#include "_portable.h"
#include "_scalar_math.h"

#if defined(__AVX512F__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FNL_HAVE_AVX512 1

/* ------------------------------------------------------------------- vector exp ---- */

/* exp of xc already clamped to [-110, 89] (or nan) */
FNL_INLINE __m512 fnl_exp16_clamped_f32(__m512 xc)
{
    /* n as in fnl_exp_f32, where gcc fuses xc * log2(e) + 1.5 * 2^23 into one FMA */
    __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), magic),
                             magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

FNL_INLINE __m512 fnl_exp16_f32(__m512 x)
{
    /* max and min return their second operand when either is nan: x goes second */
    __m512 xc = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);
    return fnl_exp16_clamped_f32(_mm512_min_ps(_mm512_set1_ps(89.0f), xc));
}

/* fnl_exp16_f32 for x <= 0 (or nan), where the upper clamp cannot change anything: the same
 * bits, one instruction fewer */
FNL_INLINE __m512 fnl_exp16_nonpos_f32(__m512 x)
{
    return fnl_exp16_clamped_f32(_mm512_max_ps(_mm512_set1_ps(-110.0f), x));
}

/* fnl_exp_short_f32 (_scalar_math.h) step for step, the same bits: vscalefps gives p 2^n,
 * exact where the portable code multiplies by the float 2^n (n >= -125) */
FNL_INLINE __m512 fnl_exp16_short_f32(__m512 x)
{
    __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic),
                             magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147182f), x);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(FNL_SHORT_C4), r, _mm512_set1_ps(FNL_SHORT_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FNL_SHORT_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FNL_SHORT_C1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    /* 0 where x < FNL_SHORT_LO (nan is kept) */
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(FNL_SHORT_LO), _CMP_NLT_UQ);
    return _mm512_maskz_scalef_ps(keep, p, n);
}

/* fnl_exp_short_out_f32: lanes below FNL_SHORT_LO (rare) from fnl_exp16_f32, taken only for
 * a vector that has one */
FNL_INLINE __m512 fnl_exp16_short_out_f32(__m512 x)
{
    __m512 e = fnl_exp16_short_f32(x);
    __mmask16 low = _mm512_cmp_ps_mask(x, _mm512_set1_ps(FNL_SHORT_LO), _CMP_LT_OQ);
    if (low)
        e = _mm512_mask_blend_ps(low, e, fnl_exp16_f32(x));
    return e;
}

/* ---------------------------------------------------------------- loop helpers ---- */

/* lanes [0, m) of 16: the mask of a last, partial vector */
FNL_INLINE __mmask16 fnl_first16(ptrdiff_t m)
{
    return (__mmask16)((1u << m) - 1u);
}

/* FNL_FOR16(i, n, live, body) runs body once per 16 elements of [0, n), with `live` the mask
 * of the lanes inside [0, n): a constant all-lanes mask in the main loop (where the masked
 * loads and stores compile to plain ones) and the mask of the last, partial vector after it
 * (masking every vector instead made a row's sum of exp measurably slower). */
#define FNL_FOR16(i, n, live, ...)                                                          \
    {                                                                                       \
        ptrdiff_t i = 0;                                                                    \
        for (; i + 16 <= (n); i += 16) {                                                    \
            const __mmask16 live = (__mmask16)0xFFFF;                                       \
            __VA_ARGS__                                                                     \
        }                                                                                   \
        if (i < (n)) {                                                                      \
            const __mmask16 live = fnl_first16((n) - i);                                    \
            __VA_ARGS__                                                                     \
        }                                                                                   \
    }

FNL_INLINE __m512 fnl_load16(__mmask16 live, const float *p)
{
    return _mm512_maskz_loadu_ps(live, p);
}

/* the terms i, i + 1, ... of a run x of float32 (src FNL_SRC_F32), or of 16-bit values of the
 * format src (FNL_F16, FNL_BF16: _portable.h) converted in registers, exactly; the lanes
 * outside live read nothing and are 0 (src: a constant where this is inlined) */
FNL_INLINE __m512 fnl_load16_src(int src, __mmask16 live, const void *x, ptrdiff_t i)
{
    if (src == FNL_SRC_F32)
        return _mm512_maskz_loadu_ps(live, (const float *)x + i);
    __m256i raw = _mm256_maskz_loadu_epi16(live, (const uint16_t *)x + i);
    if (src == FNL_F16)
        return _mm512_cvtph_ps(raw);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

/* the maximum of a unit-stride run of the format src, ignoring nan (-inf when it is empty or
 * all nan): four accumulators, so that the loop is not bound by the latency of one chain of
 * vmaxps; exact, so the order does not matter (but for which zero is returned when +0 and -0
 * are both maximal) */
FNL_INLINE float fnl_max_src_avx512_f32(const void *x, ptrdiff_t n, int src)
{
    __m512 a[4];
    for (int q = 0; q < 4; q++) a[q] = _mm512_set1_ps(-INFINITY);
    ptrdiff_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int q = 0; q < 4; q++)     /* x > m ? x : m is what vmaxps(x, m) computes */
            a[q] = _mm512_max_ps(fnl_load16_src(src, (__mmask16)0xFFFF, x, i + 16 * q), a[q]);
    for (; i < n; i += 16) {
        __mmask16 live = n - i >= 16 ? (__mmask16)0xFFFF : fnl_first16(n - i);
        a[0] = _mm512_mask_max_ps(a[0], live, fnl_load16_src(src, live, x, i), a[0]);
    }
    for (int q = 1; q < 4; q++) a[0] = _mm512_max_ps(a[q], a[0]);
    return _mm512_reduce_max_ps(a[0]);
}

FNL_INLINE float fnl_max_unit_avx512_f32(const float *x, ptrdiff_t n)
{
    return fnl_max_src_avx512_f32(x, n, FNL_SRC_F32);
}

/* ------------------------------------------------------------------- row sums ---- */

/* the row sum with every term through fnl_exp16_f32: any M and shift */
FNL_INLINE void fnl_sumexp_all_avx512_f32(const float *x, ptrdiff_t n, float M, float shift,
                                          float *rest, float *at_max)
{
    __m512 l = _mm512_setzero_ps(), h = _mm512_setzero_ps();
    __m512 vm = _mm512_set1_ps(M), vs = _mm512_set1_ps(shift);
    FNL_FOR16(i, n, live,
        __m512 v = fnl_load16(live, x + i);
        __m512 e = fnl_exp16_f32(_mm512_sub_ps(v, vs));
        __mmask16 top = _mm512_mask_cmp_ps_mask(live, v, vm, _CMP_EQ_OQ);
        l = _mm512_mask_add_ps(l, live & (__mmask16)~top, l, e);
        h = _mm512_mask_add_ps(h, top, h, e);
    )
    *rest = _mm512_reduce_add_ps(l);
    *at_max = _mm512_reduce_add_ps(h);
}

/* the sums of the usual case (M == shift, finite) over a run of the format src: the terms
 * below M, and the count of those equal to it; when split is 0 no term equals M (the caller
 * knows the run's maximum is below it), and the terms are summed without the comparison, in
 * the same lanes and order.  The exp is fnl_exp16_short_f32 when short_exp (the 16-bit sums,
 * fnl_half_sumexp_f32), else fnl_exp16_nonpos_f32.  With run_max not NULL, the run's maximum
 * (nan ignored) is taken from the same loads.  (src, split, short_exp and whether run_max is
 * NULL: constants where this is inlined) */
FNL_INLINE void fnl_sumexp_count_avx512_f32(const void *x, ptrdiff_t n, int src, float M,
                                            int split, int short_exp, float *rest,
                                            float *at_max, float *run_max)
{
    __m512 l = _mm512_setzero_ps(), mx = _mm512_set1_ps(-INFINITY);
    __m512 vm = _mm512_set1_ps(M);
    int64_t count = 0;
    FNL_FOR16(i, n, live,
        __m512 v = fnl_load16_src(src, live, x, i);
        __m512 d = _mm512_sub_ps(v, vm);
        __m512 e = short_exp ? fnl_exp16_short_f32(d) : fnl_exp16_nonpos_f32(d);
        __mmask16 top = split ? _mm512_mask_cmp_ps_mask(live, v, vm, _CMP_EQ_OQ) : 0;
        l = _mm512_mask_add_ps(l, live & (__mmask16)~top, l, e);
        count += __builtin_popcount(top);
        if (run_max != NULL)    /* vmaxps(v, mx) is mx when v is nan */
            mx = _mm512_mask_max_ps(mx, live, v, mx);
    )
    *rest = _mm512_reduce_add_ps(l);
    *at_max = (float)count;     /* exact, as the float sums of ones, for n < 2^24 (row_stats
                                 * passes chunks of ROW_CHUNK) */
    if (run_max != NULL)
        *run_max = _mm512_reduce_max_ps(mx);
}

FNL_INLINE void fnl_sumexp_unit_avx512_f32(const float *x, ptrdiff_t n, float M, float shift,
                                           float *rest, float *at_max)
{
    if (M != shift) {
        fnl_sumexp_all_avx512_f32(x, n, M, shift, rest, at_max);
        return;
    }
    /* A finite maximum that is also the shift (the usual case): each maximal term is
     * exp(0) = 1, so they are counted (integer work, off the FP pipes), and no argument
     * exceeds 0 (nan stays nan).  The same results as fnl_sumexp_all_avx512_f32. */
    fnl_sumexp_count_avx512_f32(x, n, FNL_SRC_F32, M, 1, 0, rest, at_max, NULL);
}

/* fnl_sumexp_unit_avx512_f32 of a run whose terms all lie below M == shift (finite; nan
 * aside): the sum of all its terms (at_max would be 0), the same bits */
FNL_INLINE float fnl_sumexp_below_unit_avx512_f32(const float *x, ptrdiff_t n, float shift)
{
    float rest, none;
    fnl_sumexp_count_avx512_f32(x, n, FNL_SRC_F32, shift, 0, 0, &rest, &none, NULL);
    return rest;
}

/* ---------------------------------------------------------------- column sums ---- */

/* one class row of a column block of float32 (src FNL_SRC_F32) or of 16-bit values of the
 * format src, converted in registers (src: a constant where this is inlined) */
FNL_INLINE void fnl_colsumexp_src_avx512_f32(int src, const void *x, ptrdiff_t ncols,
                                             const float *M, const float *shift, float *rest,
                                             float *at_max)
{
    FNL_FOR16(k, ncols, live,
        __m512 v = fnl_load16_src(src, live, x, k);
        __m512 e = fnl_exp16_f32(_mm512_sub_ps(v, fnl_load16(live, shift + k)));
        __mmask16 top = _mm512_mask_cmp_ps_mask(live, v, fnl_load16(live, M + k), _CMP_EQ_OQ);
        __m512 l = fnl_load16(live, rest + k), h = fnl_load16(live, at_max + k);
        _mm512_mask_storeu_ps(rest + k, live, _mm512_mask_add_ps(l, (__mmask16)~top, l, e));
        _mm512_mask_storeu_ps(at_max + k, live, _mm512_mask_add_ps(h, top, h, e));
    )
}

FNL_INLINE void fnl_colsumexp_unit_avx512_f32(const float *x, ptrdiff_t ncols, const float *M,
                                              const float *shift, float *rest, float *at_max)
{
    fnl_colsumexp_src_avx512_f32(FNL_SRC_F32, x, ncols, M, shift, rest, at_max);
}

/* nclass class rows of a column block at once (row j at x + j * class_stride, unit stride
 * along the ncols columns): the column maximum and sum of each row in turn, with the
 * accumulators of up to 64 columns (four vectors, a group) kept in registers across the rows
 * instead of stored and reloaded per row, and the rows still read one after the other
 * (reading column-vector by column-vector made the strided, unpacked case slower).  The same
 * operations in the same order per column, so the same results as the generic loops
 * (.ci/check_exp.c). */
#define FNL_COLQ 4      /* vectors of 16 columns per group */
_Static_assert(FNL_COL_PREFETCH % (16 * FNL_COLQ * 4) == 0,
               "a group's bytes divide the prefetch's piece (fnl_col_piece_bytes)");

/* the live lanes of the q-th vector of a group of n columns, and how many vectors are live */
#define FNL_COLQ_MASKS(live, nq, n)                                                         \
    __mmask16 live[FNL_COLQ];                                                               \
    int nq = (int)(((n) + 15) / 16);                                                        \
    for (int q = 0; q < FNL_COLQ; q++) {                                                    \
        ptrdiff_t rest_ = (n) - 16 * q;                                                     \
        live[q] = rest_ >= 16 ? (__mmask16)0xFFFF : rest_ > 0 ? fnl_first16(rest_) : 0;     \
    }

FNL_INLINE void fnl_colmax_rows_src_avx512_f32(int src, const void *x, ptrdiff_t nclass,
                                               ptrdiff_t class_stride, ptrdiff_t ncols,
                                               float *m)
{
    for (ptrdiff_t k0 = 0; k0 < ncols; k0 += 16 * FNL_COLQ) {
        FNL_COLQ_MASKS(live, nq, ncols - k0 < 16 * FNL_COLQ ? ncols - k0 : 16 * FNL_COLQ)
        __m512 acc[FNL_COLQ];
        for (int q = 0; q < FNL_COLQ; q++) acc[q] = fnl_load16(live[q], m + k0 + 16 * q);
        for (ptrdiff_t j = 0; j < nclass; j++) {
            for (int q = 0; q < FNL_COLQ; q++) {
                if (q < nq) {   /* x > m ? x : m, as the scalar loop (nan in x is skipped) */
                    __m512 v = fnl_load16_src(src, live[q], x, j * class_stride + k0 + 16 * q);
                    acc[q] = _mm512_mask_mov_ps(acc[q], _mm512_cmp_ps_mask(v, acc[q],
                                                                           _CMP_GT_OQ), v);
                }
            }
        }
        for (int q = 0; q < FNL_COLQ; q++)
            _mm512_mask_storeu_ps(m + k0 + 16 * q, live[q], acc[q]);
    }
}

FNL_INLINE void fnl_colmax_rows_avx512_f32(const float *x, ptrdiff_t nclass,
                                           ptrdiff_t class_stride, ptrdiff_t ncols, float *m)
{
    fnl_colmax_rows_src_avx512_f32(FNL_SRC_F32, x, nclass, class_stride, ncols, m);
}

FNL_INLINE void fnl_colsumexp_rows_src_avx512_f32(int src, const void *x, ptrdiff_t nclass,
                                                  ptrdiff_t class_stride, ptrdiff_t ncols,
                                                  const float *M, const float *shift,
                                                  float *rest, float *at_max)
{
    const ptrdiff_t size = src == FNL_SRC_F32 ? 4 : 2;     /* bytes a value */
    for (ptrdiff_t k0 = 0; k0 < ncols; k0 += 16 * FNL_COLQ) {
        ptrdiff_t n = ncols - k0 < 16 * FNL_COLQ ? ncols - k0 : 16 * FNL_COLQ;
        FNL_COLQ_MASKS(live, nq, n)
        __m512 vm[FNL_COLQ], vs[FNL_COLQ], l[FNL_COLQ];
        __m512i count[FNL_COLQ];
        int usual = 1;
        for (int q = 0; q < FNL_COLQ; q++) {
            vm[q] = fnl_load16(live[q], M + k0 + 16 * q);
            vs[q] = fnl_load16(live[q], shift + k0 + 16 * q);
            usual &= _mm512_mask_cmp_ps_mask(live[q], vm[q], vs[q], _CMP_EQ_OQ) == live[q];
        }
        const ptrdiff_t ask = fnl_col_piece_bytes(k0, ncols, size);
        if (!usual) {   /* a column whose maximum is infinite, or is not its shift */
            for (ptrdiff_t j = 0; j < nclass; j++) {
                fnl_prefetch_rows_ahead(x, k0 + (j + nclass) * class_stride, class_stride,
                                            size, ask);
                fnl_colsumexp_src_avx512_f32(src, (const char *)x
                                             + (j * class_stride + k0) * size, n, M + k0,
                                             shift + k0, rest + k0, at_max + k0);
            }
            continue;
        }
        /* every column's maximum finite and its shift: as in fnl_sumexp_unit_avx512_f32, the
         * maximal terms (each exactly 1) are counted in integer lanes and no argument exceeds
         * 0.  at_max holds whole numbers (fresh chunk sums), so at_max + count is what adding
         * 1.0 count times gives while it stays below 2^24 (nclass <= COL_CHUNK).  16-bit
         * values (fnl_half_colsumexp_rows_f32) take the short exp of the 16-bit row sums
         * instead, and add the maximal terms (its exp(0) is 1) to rest with the others: the
         * one caller, logsumexp_strips, takes the columns whose result lies near 0, where
         * the split would matter, again with these float32 loops. */
        for (int q = 0; q < FNL_COLQ; q++) {
            l[q] = fnl_load16(live[q], rest + k0 + 16 * q);
            count[q] = _mm512_setzero_si512();
        }
        for (ptrdiff_t j = 0; j < nclass; j++) {
            /* the row's piece one chunk ahead (the next call's), where the group starts one
             * (fnl_col_piece_bytes) */
            fnl_prefetch_rows_ahead(x, k0 + (j + nclass) * class_stride, class_stride,
                                        size, ask);
            for (int q = 0; q < FNL_COLQ; q++) {
                if (q < nq) {
                    __m512 v = fnl_load16_src(src, live[q], x, j * class_stride + k0 + 16 * q);
                    if (src != FNL_SRC_F32) {
                        l[q] = _mm512_mask_add_ps(l[q], live[q], l[q],
                                                  fnl_exp16_short_f32(_mm512_sub_ps(v, vs[q])));
                        continue;
                    }
                    __m512 e = fnl_exp16_nonpos_f32(_mm512_sub_ps(v, vs[q]));
                    __mmask16 top = _mm512_mask_cmp_ps_mask(live[q], v, vm[q], _CMP_EQ_OQ);
                    l[q] = _mm512_mask_add_ps(l[q], live[q] & (__mmask16)~top, l[q], e);
                    count[q] = _mm512_mask_sub_epi32(count[q], top, count[q],
                                                     _mm512_set1_epi32(-1));
                }
            }
        }
        for (int q = 0; q < FNL_COLQ; q++) {
            __m512 h = fnl_load16(live[q], at_max + k0 + 16 * q);
            _mm512_mask_storeu_ps(rest + k0 + 16 * q, live[q], l[q]);
            _mm512_mask_storeu_ps(at_max + k0 + 16 * q, live[q],
                                  _mm512_add_ps(h, _mm512_cvtepi32_ps(count[q])));
        }
    }
}

/* nclass class rows of a column block of 16-bit values of the format src in one pass: rest
 * += the short exp of v - shift, every term (the shift may lie below some of them: the
 * caller's bound), and m = the columns' maxima (nan ignored), for the caller to check that
 * bound; the next chunk's pieces asked for as in fnl_colsumexp_rows_src_avx512_f32 */
FNL_INLINE void fnl_colsumexp_lazy_src_avx512_f32(int src, const void *x, ptrdiff_t nclass,
                                                  ptrdiff_t class_stride, ptrdiff_t ncols,
                                                  const float *shift, float *rest, float *m)
{
    const ptrdiff_t size = src == FNL_SRC_F32 ? 4 : 2;     /* bytes a value */
    for (ptrdiff_t k0 = 0; k0 < ncols; k0 += 16 * FNL_COLQ) {
        ptrdiff_t n = ncols - k0 < 16 * FNL_COLQ ? ncols - k0 : 16 * FNL_COLQ;
        FNL_COLQ_MASKS(live, nq, n)
        __m512 vs[FNL_COLQ], l[FNL_COLQ], mx[FNL_COLQ];
        for (int q = 0; q < FNL_COLQ; q++) {
            vs[q] = fnl_load16(live[q], shift + k0 + 16 * q);
            l[q] = fnl_load16(live[q], rest + k0 + 16 * q);
            mx[q] = fnl_load16(live[q], m + k0 + 16 * q);
        }
        const ptrdiff_t ask = fnl_col_piece_bytes(k0, ncols, size);
        for (ptrdiff_t j = 0; j < nclass; j++) {
            fnl_prefetch_rows_ahead(x, k0 + (j + nclass) * class_stride, class_stride,
                                        size, ask);
            for (int q = 0; q < FNL_COLQ; q++) {
                if (q < nq) {
                    __m512 v = fnl_load16_src(src, live[q], x, j * class_stride + k0 + 16 * q);
                    l[q] = _mm512_mask_add_ps(l[q], live[q], l[q],
                                              fnl_exp16_short_f32(_mm512_sub_ps(v, vs[q])));
                    mx[q] = _mm512_max_ps(v, mx[q]);    /* v > mx ? v : mx */
                }
            }
        }
        for (int q = 0; q < FNL_COLQ; q++) {
            _mm512_mask_storeu_ps(rest + k0 + 16 * q, live[q], l[q]);
            _mm512_mask_storeu_ps(m + k0 + 16 * q, live[q], mx[q]);
        }
    }
}

FNL_INLINE void fnl_colsumexp_rows_avx512_f32(const float *x, ptrdiff_t nclass,
                                              ptrdiff_t class_stride, ptrdiff_t ncols,
                                              const float *M, const float *shift, float *rest,
                                              float *at_max)
{
    fnl_colsumexp_rows_src_avx512_f32(FNL_SRC_F32, x, nclass, class_stride, ncols, M, shift,
                                      rest, at_max);
}

/* ------------------------------------------------------------- streaming writers ---- */

/* as fnl_sub2_stream_avx2_f32 and fnl_scale_stream_avx2_f32, 64-byte aligned vectors */
FNL_INLINE void fnl_sub2_stream_avx512_f32(const float *x, ptrdiff_t n, float shift,
                                           float log_sum, float *out)
{
    ptrdiff_t i = 0;
    for (; i < n && ((uintptr_t)(out + i) & 63); i++) out[i] = (x[i] - shift) - log_sum;
    __m512 vs = _mm512_set1_ps(shift), vl = _mm512_set1_ps(log_sum);
    for (; i + 16 <= n; i += 16)
        _mm512_stream_ps(out + i, _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vs), vl));
    for (; i < n; i++) out[i] = (x[i] - shift) - log_sum;
}

FNL_INLINE void fnl_scale_stream_avx512_f32(const float *e, ptrdiff_t n, float c, float *out)
{
    ptrdiff_t i = 0;
    for (; i < n && ((uintptr_t)(out + i) & 63); i++) out[i] = e[i] * c;
    __m512 vc = _mm512_set1_ps(c);
    for (; i + 16 <= n; i += 16)
        _mm512_stream_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(e + i), vc));
    for (; i < n; i++) out[i] = e[i] * c;
}

/* -------------------------------------------------------------------- writers ---- */

/* out = exp(x - M) for a run whose maximum M is finite, returning the sum of the terms (in
 * 16 lanes, then across them) */
FNL_INLINE float fnl_expsum_unit_avx512_f32(const float *x, ptrdiff_t n, float M, float *out)
{
    __m512 l = _mm512_setzero_ps(), vm = _mm512_set1_ps(M);
    FNL_FOR16(i, n, live,
        __m512 e = fnl_exp16_nonpos_f32(_mm512_sub_ps(fnl_load16(live, x + i), vm));
        _mm512_mask_storeu_ps(out + i, live, e);
        l = _mm512_mask_add_ps(l, live, l, e);
    )
    return _mm512_reduce_add_ps(l);
}

FNL_INLINE void fnl_softmax_unit_avx512_f32(const float *x, ptrdiff_t n, float shift,
                                            float log_sum, float *out)
{
    __m512 vs = _mm512_set1_ps(shift), vl = _mm512_set1_ps(log_sum);
    FNL_FOR16(i, n, live,
        _mm512_mask_storeu_ps(out + i, live, fnl_exp16_f32(
            _mm512_sub_ps(_mm512_sub_ps(fnl_load16(live, x + i), vs), vl)));
    )
}

FNL_INLINE void fnl_grad_unit_avx512_f32(const float *x, ptrdiff_t n, float shift,
                                         float log_sum, float scale_p, float scale_w, float *g)
{
    __m512 vs = _mm512_set1_ps(shift), vl = _mm512_set1_ps(log_sum);
    __m512 va = _mm512_set1_ps(scale_p), vb = _mm512_set1_ps(scale_w);
    FNL_FOR16(i, n, live,
        _mm512_mask_storeu_ps(g + i, live, _mm512_fmsub_ps(va, fnl_exp16_f32(
            _mm512_sub_ps(_mm512_sub_ps(fnl_load16(live, x + i), vs), vl)), vb));
    )
}

FNL_INLINE void fnl_colsoftmax_unit_avx512_f32(const float *x, ptrdiff_t ncols,
                                               const float *shift, const float *log_sum,
                                               float *out)
{
    FNL_FOR16(k, ncols, live,
        _mm512_mask_storeu_ps(out + k, live, fnl_exp16_f32(_mm512_sub_ps(
            _mm512_sub_ps(fnl_load16(live, x + k), fnl_load16(live, shift + k)),
            fnl_load16(live, log_sum + k))));
    )
}

FNL_INLINE void fnl_colgrad_unit_avx512_f32(const float *x, ptrdiff_t ncols,
                                            const float *shift, const float *log_sum,
                                            const float *scale_p, const float *scale_w,
                                            float w_j, float *g)
{
    __m512 vw = _mm512_set1_ps(w_j);
    FNL_FOR16(k, ncols, live,
        __m512 e = fnl_exp16_f32(_mm512_sub_ps(
            _mm512_sub_ps(fnl_load16(live, x + k), fnl_load16(live, shift + k)),
            fnl_load16(live, log_sum + k)));
        _mm512_mask_storeu_ps(g + k, live, _mm512_fmsub_ps(fnl_load16(live, scale_p + k), e,
            _mm512_mul_ps(fnl_load16(live, scale_w + k), vw)));
    )
}

#endif /* __AVX512F__ */
#endif /* FASTNLL_AVX512_LOOPS_H */
