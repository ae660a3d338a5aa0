/*
 * fastnll/_avx2_loops.h -- the float32 loops that evaluate exp, written with AVX2 and FMA
 * intrinsics, for the x86-64-v3 build (gcc or clang; the header defines nothing elsewhere,
 * and at x86-64-v4 the AVX-512 loops are used instead).
 *
 * fnl_exp8_f32 is fnl_exp_f32 (_scalar_math.h) step for step, 8 lanes at a time, with the
 * FMAs gcc forms from the scalar code at this level and the same two-factor scaling by 2^n
 * from exponent bits.  It gives the same bits as fnl_exp_f32 built for x86-64-v3 for all
 * 2^32 floats, checked exhaustively in CI by .ci/check_exp.c.  (Left to the compiler, the
 * loops around fnl_exp_f32 vectorise too: in cache, on one thread, logsumexp of (16, 32000)
 * float32 took 0.66-0.77 ns an element that way and takes 0.51-0.55 with these loops and
 * fnl_exp8_inrange_f32.)  Most arguments lie in [-87, 88], where fnl_exp8_inrange_f32 gives
 * the same bits with a third fewer instructions; each loop finds out per run (a pass over it
 * in L1 for its smallest, or largest, value) and takes one of two copies of its body.
 *
 * The loops mirror _avx512_loops.h, function for function, with the same names ending in
 * _avx2_f32 (fnl_max_unit, fnl_sumexp_unit, fnl_colsumexp_unit, fnl_colmax_rows,
 * fnl_colsumexp_rows, fnl_expsum_unit, fnl_softmax_unit, fnl_grad_unit, fnl_colsoftmax_unit,
 * fnl_colgrad_unit), and are called by the type-generic loops of _generic_loops_T.h for float in
 * place of their own bodies (FNL_INTRINSICS).  AVX2 has no mask registers: the lanes of the
 * last, partial vector are masked by an integer vector (fnl_first8), with masked loads and
 * stores, and a masked add is an add of the term ANDed with the mask (adding +0 changes no
 * sum: the sums start at +0 and add terms >= 0).  The column helpers add element by element,
 * so they give the generic loops' bits; the row sum adds in 8 lanes and then across them (an
 * order of its own, see fnl_hsum8_f32).
 */
#ifndef FASTNLL_AVX2_LOOPS_H
#define FASTNLL_AVX2_LOOPS_H

#include "_portable.h"
#include "_scalar_math.h"

#if defined(__AVX2__) && defined(__FMA__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <string.h>
#define FNL_HAVE_AVX2 1

/* ------------------------------------------------------------------- vector exp ---- */

/* the common part: x = n ln2 + r, and the polynomial p ~ exp(r) that fnl_exp_f32 evaluates;
 * *t = x log2(e) + 1.5 * 2^23 (one FMA, as gcc fuses it) holds n in its low mantissa bits,
 * *nf = n as a float (nan where x is nan) */
FNL_INLINE __m256 fnl_exp8_poly_n_f32(__m256 x, __m256 *t, __m256 *nf)
{
    __m256 magic = _mm256_set1_ps(12582912.0f);
    *t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(*t, magic);
    *nf = n;
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    return _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
}

FNL_INLINE __m256 fnl_exp8_poly_f32(__m256 x, __m256 *t)
{
    __m256 nf;
    return fnl_exp8_poly_n_f32(x, t, &nf);
}

/* exp of xc already clamped to [-110, 89] (or nan) */
FNL_INLINE __m256 fnl_exp8_clamped_f32(__m256 xc)
{
    __m256 t;
    __m256 p = fnl_exp8_poly_f32(xc, &t);
    /* 2^n as two factors 2^n1 2^n2 (n1 = n >> 1), so that a subnormal result rounds once */
    __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000));
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

FNL_INLINE __m256 fnl_exp8_f32(__m256 x)
{
    /* max and min return their second operand when either is nan: x goes second */
    __m256 xc = _mm256_max_ps(_mm256_set1_ps(-110.0f), x);
    return fnl_exp8_clamped_f32(_mm256_min_ps(_mm256_set1_ps(89.0f), xc));
}

/* fnl_exp8_f32 for x <= 0 (or nan), where the upper clamp cannot change anything */
FNL_INLINE __m256 fnl_exp8_nonpos_f32(__m256 x)
{
    return fnl_exp8_clamped_f32(_mm256_max_ps(_mm256_set1_ps(-110.0f), x));
}

/* fnl_exp8_f32 for -87 <= x <= 88 (or nan), the usual arguments: no clamp binds, and
 * p 2^n, the value that fnl_exp8_f32 rounds, is a normal float (at n = -126, r >= 0.33 and
 * p >= 1.39; at n = 127, r <= -0.03 and p < 1), so that it is exact: p with n added to its
 * exponent field.  That integer addition replaces the two products (p 2^n1) 2^n2: on an AMD
 * EPYC (Zen 4) integer operations leave the FMA pipes to the polynomial (on Intel cores the
 * conversion and the shift share ports with the FMAs; not measured there).  n comes from the
 * float n by a conversion that gives 0x80000000 for nan, whose shift adds nothing: a nan
 * stays p's nan.  The same bits as fnl_exp8_f32 there (all of them checked by
 * .ci/check_exp.c), with a third fewer instructions. */
FNL_INLINE __m256 fnl_exp8_inrange_f32(__m256 x)
{
    __m256 t, nf;
    __m256 p = fnl_exp8_poly_n_f32(x, &t, &nf);
    __m256i scale = _mm256_slli_epi32(_mm256_cvtps_epi32(nf), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), scale));
}

/* fnl_exp_short_f32 (_scalar_math.h) step for step, the same bits */
FNL_INLINE __m256 fnl_exp8_short_f32(__m256 x)
{
    __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147182f), x);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(FNL_SHORT_C4), r, _mm256_set1_ps(FNL_SHORT_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FNL_SHORT_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FNL_SHORT_C1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i s = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t), 23),
                                 _mm256_set1_epi32(0x3F800000));
    __m256 below = _mm256_cmp_ps(x, _mm256_set1_ps(FNL_SHORT_LO), _CMP_LT_OQ);
    return _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(s)));
}

/* fnl_exp_short_out_f32: lanes below FNL_SHORT_LO (rare) from fnl_exp8_f32, taken only for
 * a vector that has one */
FNL_INLINE __m256 fnl_exp8_short_out_f32(__m256 x)
{
    __m256 e = fnl_exp8_short_f32(x);
    __m256 low = _mm256_cmp_ps(x, _mm256_set1_ps(FNL_SHORT_LO), _CMP_LT_OQ);
    if (_mm256_movemask_ps(low))
        e = _mm256_blendv_ps(e, fnl_exp8_f32(x), low);
    return e;
}

/* which exp fnl_sumexp_count_avx2_f32 takes */
enum { FNL_EXP8_NONPOS = 0, FNL_EXP8_INRANGE = 1, FNL_EXP8_SHORT = 2 };

/* the range of arguments where fnl_exp8_inrange_f32 applies */
#define FNL_EXP8_LO (-87.0f)
#define FNL_EXP8_HI 88.0f

/* ---------------------------------------------------------------- loop helpers ---- */

/* lanes [0, m) of 8 (0 <= m <= 8), as all-ones lanes of an integer vector */
FNL_INLINE __m256i fnl_first8(ptrdiff_t m)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)m),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* FNL_FOR8(i, n, full, live, body) runs body once per 8 elements of [0, n): in the main loop
 * with full = 1 (loads and stores are plain ones), then, if elements are left, once with
 * full = 0 and `live` the mask of the lanes inside [0, n). */
#define FNL_FOR8(i, n, full, live, ...)                                                     \
    {                                                                                       \
        ptrdiff_t i = 0;                                                                    \
        for (; i + 8 <= (n); i += 8) {                                                      \
            const int full = 1;                                                             \
            const __m256i live = _mm256_set1_epi32(-1);                                     \
            (void)live;                                                                     \
            __VA_ARGS__                                                                     \
        }                                                                                   \
        if (i < (n)) {                                                                      \
            const int full = 0;                                                             \
            const __m256i live = fnl_first8((n) - i);                                       \
            __VA_ARGS__                                                                     \
        }                                                                                   \
    }

/* a load or store of the live lanes (all of them when full, a compile-time constant) */
FNL_INLINE __m256 fnl_load8(int full, __m256i live, const float *p)
{
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, live);
}

FNL_INLINE void fnl_store8(int full, __m256i live, float *p, __m256 v)
{
    if (full)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, live, v);
}

/* v where the mask is set, +0 elsewhere */
FNL_INLINE __m256 fnl_keep8(__m256 v, __m256 mask)
{
    return _mm256_and_ps(v, mask);
}

/* the sum of the 8 lanes: halves, then pairs, then the last two */
FNL_INLINE float fnl_hsum8_f32(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* the largest of the 8 lanes, ignoring nan (-inf if all are) */
FNL_INLINE float fnl_hmax8_f32(__m256 v)
{
    float m[8], e = -INFINITY;
    _mm256_storeu_ps(m, v);
    for (int q = 0; q < 8; q++) e = m[q] > e ? m[q] : e;
    return e;
}

/* the terms i, i + 1, ... of a run x of n float32 (src FNL_SRC_F32), or of 16-bit values of
 * the format src (FNL_F16, FNL_BF16: _portable.h) converted in registers (F16C's vcvtph2ps,
 * or the bits shifted), exactly; a partial vector (full 0, the lanes of live: those below n)
 * reads only its lanes, the others are 0 (src and full: constants where this is inlined) */
FNL_INLINE __m256 fnl_load8_src(int src, int full, __m256i live, const void *x, ptrdiff_t i,
                                ptrdiff_t n)
{
    if (src == FNL_SRC_F32)
        return fnl_load8(full, live, (const float *)x + i);
    const uint16_t *h = (const uint16_t *)x + i;
    __m128i raw;
    if (full) {
        raw = _mm_loadu_si128((const __m128i *)h);
    } else {
        uint16_t part[8] = {0};
        memcpy(part, h, (size_t)(n - i < 8 ? n - i : 8) * sizeof(uint16_t));
        raw = _mm_loadu_si128((const __m128i *)part);
    }
    if (src == FNL_F16)
        return _mm256_cvtph_ps(raw);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}


/* the minimum (lowest) or the maximum of a unit-stride run, ignoring nan (+inf or -inf when
 * it is empty or all nan).  Eight accumulators, so that the loop is bound by the two loads a
 * cycle rather than by the latency of chains of minps/maxps; exact, so the order does not
 * matter (but for which zero is returned when +0 and -0 are both extreme). */
#define FNL_EXTREME_ACC 8

FNL_INLINE float fnl_extreme8_f32(const float *x, ptrdiff_t n, int lowest)
{
    const float start = lowest ? INFINITY : -INFINITY;
    __m256 a[FNL_EXTREME_ACC];
    for (int q = 0; q < FNL_EXTREME_ACC; q++) a[q] = _mm256_set1_ps(start);
    ptrdiff_t i = 0;
    for (; i + 8 * FNL_EXTREME_ACC <= n; i += 8 * FNL_EXTREME_ACC) {
        for (int q = 0; q < FNL_EXTREME_ACC; q++) {  /* the second operand when v is nan */
            __m256 v = _mm256_loadu_ps(x + i + 8 * q);
            a[q] = lowest ? _mm256_min_ps(v, a[q]) : _mm256_max_ps(v, a[q]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a[0] = lowest ? _mm256_min_ps(v, a[0]) : _mm256_max_ps(v, a[0]);
    }
    float m[8];
    for (int q = 1; q < FNL_EXTREME_ACC; q++)
        a[0] = lowest ? _mm256_min_ps(a[q], a[0]) : _mm256_max_ps(a[q], a[0]);
    _mm256_storeu_ps(m, a[0]);
    float e = start;
    for (int q = 0; q < 8; q++) e = lowest ? (m[q] < e ? m[q] : e) : (m[q] > e ? m[q] : e);
    for (; i < n; i++) e = lowest ? (x[i] < e ? x[i] : e) : (x[i] > e ? x[i] : e);
    return e;
}

/* the maximum of a unit-stride run of the format src, ignoring nan (-inf when it is empty or
 * all nan), as fnl_extreme8_f32 takes it for float32: FNL_EXTREME_ACC accumulators */
FNL_INLINE float fnl_max_src_avx2_f32(const void *x, ptrdiff_t n, int src)
{
    __m256 a[FNL_EXTREME_ACC];
    const __m256i all = _mm256_set1_epi32(-1);
    for (int q = 0; q < FNL_EXTREME_ACC; q++) a[q] = _mm256_set1_ps(-INFINITY);
    ptrdiff_t i = 0;
    for (; i + 8 * FNL_EXTREME_ACC <= n; i += 8 * FNL_EXTREME_ACC)
        for (int q = 0; q < FNL_EXTREME_ACC; q++)   /* the second operand when v is nan */
            a[q] = _mm256_max_ps(fnl_load8_src(src, 1, all, x, i + 8 * q, n), a[q]);
    for (; i < n; i += 8) {
        __m256i live = fnl_first8(n - i < 8 ? n - i : 8);
        __m256 v = fnl_load8_src(src, 0, live, x, i, n);
        v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(live));
        a[0] = _mm256_max_ps(v, a[0]);
    }
    for (int q = 1; q < FNL_EXTREME_ACC; q++) a[0] = _mm256_max_ps(a[q], a[0]);
    return fnl_hmax8_f32(a[0]);
}

FNL_INLINE float fnl_max_unit_avx2_f32(const float *x, ptrdiff_t n)
{
    return fnl_extreme8_f32(x, n, 0);
}

/* ------------------------------------------------------------------- row sums ---- */

/* the row sum with every term through fnl_exp8_f32: any M and shift */
FNL_INLINE void fnl_sumexp_all_avx2_f32(const float *x, ptrdiff_t n, float M, float shift,
                                        float *rest, float *at_max)
{
    __m256 l = _mm256_setzero_ps(), h = _mm256_setzero_ps();
    __m256 vm = _mm256_set1_ps(M), vs = _mm256_set1_ps(shift);
    FNL_FOR8(i, n, full, live,
        __m256 v = fnl_load8(full, live, x + i);
        __m256 e = fnl_exp8_f32(_mm256_sub_ps(v, vs));
        __m256 top = _mm256_and_ps(_mm256_cmp_ps(v, vm, _CMP_EQ_OQ),
                                   _mm256_castsi256_ps(live));
        l = _mm256_add_ps(l, fnl_keep8(e, _mm256_andnot_ps(top, _mm256_castsi256_ps(live))));
        h = _mm256_add_ps(h, fnl_keep8(e, top));
    )
    *rest = fnl_hsum8_f32(l);
    *at_max = fnl_hsum8_f32(h);
}

/* the usual case of fnl_sumexp_unit_avx2_f32 (M == shift, finite) over a run of the format
 * src, with the exp exp_kind names: FNL_EXP8_INRANGE takes fnl_exp8_inrange_f32 for the whole
 * vectors (the caller checked the range), FNL_EXP8_SHORT the short exp of the 16-bit sums
 * (fnl_half_sumexp_f32); when split is 0 no term equals M (the caller knows the run's maximum
 * is below it), and the terms are summed without the comparison, in the same lanes and
 * order.  With run_max not NULL, the run's maximum (nan ignored) is taken from the same
 * loads.  (src, exp_kind, split and whether run_max is NULL: constants where this is
 * inlined) */
FNL_INLINE void fnl_sumexp_count_avx2_f32(const void *x, ptrdiff_t n, int src, float M,
                                          int exp_kind, int split, float *rest, float *at_max,
                                          float *run_max)
{
    __m256 l = _mm256_setzero_ps(), mx = _mm256_set1_ps(-INFINITY);
    __m256i count = _mm256_setzero_si256();
    __m256 vm = _mm256_set1_ps(M);
    FNL_FOR8(i, n, full, live,
        __m256 v = fnl_load8_src(src, full, live, x, i, n);
        if (run_max != NULL)    /* vmaxps(v, mx) is mx when v is nan; -inf in dead lanes */
            mx = _mm256_max_ps(full ? v : _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v,
                                                           _mm256_castsi256_ps(live)), mx);
        __m256 d = _mm256_sub_ps(v, vm);
        __m256 e = exp_kind == FNL_EXP8_SHORT ? fnl_exp8_short_f32(d)
                   : full && exp_kind == FNL_EXP8_INRANGE ? fnl_exp8_inrange_f32(d)
                   : fnl_exp8_nonpos_f32(d);
        if (!full)
            e = fnl_keep8(e, _mm256_castsi256_ps(live));
        if (split) {
            __m256 top = _mm256_cmp_ps(v, vm, _CMP_EQ_OQ);
            if (!full)
                top = _mm256_and_ps(top, _mm256_castsi256_ps(live));
            l = _mm256_add_ps(l, _mm256_andnot_ps(top, e));
            count = _mm256_sub_epi32(count, _mm256_castps_si256(top));
        } else {
            l = _mm256_add_ps(l, e);
        }
    )
    *rest = fnl_hsum8_f32(l);
    /* exact, as the float sums of ones, for n < 2^24 (row_stats passes chunks of ROW_CHUNK) */
    *at_max = fnl_hsum8_f32(_mm256_cvtepi32_ps(count));
    if (run_max != NULL)
        *run_max = fnl_hmax8_f32(mx);
}

/* fnl_sumexp_count_avx2_f32 for M == shift: when no argument is below FNL_EXP8_LO (one pass
 * over the run, in L1, finds its minimum), the whole vectors take fnl_exp8_inrange_f32 */
FNL_INLINE void fnl_sumexp_usual_avx2_f32(const float *x, ptrdiff_t n, float M, int split,
                                          float *rest, float *at_max)
{
    if (fnl_extreme8_f32(x, n, 1) - M >= FNL_EXP8_LO)
        fnl_sumexp_count_avx2_f32(x, n, FNL_SRC_F32, M, FNL_EXP8_INRANGE, split, rest, at_max,
                                  NULL);
    else
        fnl_sumexp_count_avx2_f32(x, n, FNL_SRC_F32, M, FNL_EXP8_NONPOS, split, rest, at_max,
                                  NULL);
}

FNL_INLINE void fnl_sumexp_unit_avx2_f32(const float *x, ptrdiff_t n, float M, float shift,
                                         float *rest, float *at_max)
{
    if (M != shift) {
        fnl_sumexp_all_avx2_f32(x, n, M, shift, rest, at_max);
        return;
    }
    /* A finite maximum that is also the shift (the usual case): each maximal term is
     * exp(0) = 1, so they are counted (in integer lanes), and no argument exceeds 0 (nan
     * stays nan).  The same results as fnl_sumexp_all_avx2_f32. */
    fnl_sumexp_usual_avx2_f32(x, n, M, 1, rest, at_max);
}

/* fnl_sumexp_unit_avx2_f32 of a run whose terms all lie below M == shift (finite; nan
 * aside): the sum of all its terms (at_max would be 0), the same bits */
FNL_INLINE float fnl_sumexp_below_unit_avx2_f32(const float *x, ptrdiff_t n, float shift)
{
    float rest, none;
    fnl_sumexp_usual_avx2_f32(x, n, shift, 0, &rest, &none);
    return rest;
}

/* ---------------------------------------------------------------- column sums ---- */

FNL_INLINE void fnl_colsumexp_unit_avx2_f32(const float *x, ptrdiff_t ncols, const float *M,
                                            const float *shift, float *rest, float *at_max)
{
    FNL_FOR8(k, ncols, full, live,
        __m256 v = fnl_load8(full, live, x + k);
        __m256 e = fnl_exp8_f32(_mm256_sub_ps(v, fnl_load8(full, live, shift + k)));
        __m256 top = _mm256_cmp_ps(v, fnl_load8(full, live, M + k), _CMP_EQ_OQ);
        fnl_store8(full, live, rest + k, _mm256_add_ps(fnl_load8(full, live, rest + k),
                                                       _mm256_andnot_ps(top, e)));
        fnl_store8(full, live, at_max + k, _mm256_add_ps(fnl_load8(full, live, at_max + k),
                                                         fnl_keep8(e, top)));
    )
}

/* nclass class rows of a column block at once (row j at x + j * class_stride, unit stride
 * along the ncols columns), as fnl_colmax_rows_avx512_f32 and fnl_colsumexp_rows_avx512_f32
 * do it: the accumulators of a group of up to 32 columns (four vectors) kept in registers
 * across the rows.  The same operations in the same order per column as the generic loops. */
#define FNL_COLQ8 4     /* vectors of 8 columns per group */
_Static_assert(FNL_COL_PREFETCH % (8 * FNL_COLQ8 * 4) == 0,
               "a group's bytes divide the prefetch's piece (fnl_col_piece_bytes)");

/* the live lanes of the q-th vector of a group of n columns, and how many vectors are live */
#define FNL_COLQ8_MASKS(live, nq, n)                                                        \
    __m256i live[FNL_COLQ8];                                                                \
    int nq = (int)(((n) + 7) / 8);                                                          \
    for (int q = 0; q < FNL_COLQ8; q++) {                                                   \
        ptrdiff_t rest_ = (n) - 8 * q;                                                      \
        live[q] = fnl_first8(rest_ >= 8 ? 8 : rest_ > 0 ? rest_ : 0);                       \
    }

/* one group of columns of fnl_colmax_rows_avx2_f32; full (a constant where this is inlined):
 * all FNL_COLQ8 vectors are live, and take plain loads instead of masked ones */
FNL_INLINE void fnl_colmax_group_avx2_f32(const float *x, ptrdiff_t nclass,
                                          ptrdiff_t class_stride, const __m256i *live, int nq,
                                          int full, float *m)
{
    __m256 acc[FNL_COLQ8];
    for (int q = 0; q < FNL_COLQ8; q++) acc[q] = fnl_load8(full, live[q], m + 8 * q);
    for (ptrdiff_t j = 0; j < nclass; j++) {
        for (int q = 0; q < FNL_COLQ8; q++) {
            if (q < nq) {   /* x > m ? x : m, which is what maxps computes */
                __m256 v = fnl_load8(full, live[q], x + j * class_stride + 8 * q);
                acc[q] = _mm256_max_ps(v, acc[q]);
            }
        }
    }
    for (int q = 0; q < FNL_COLQ8; q++) fnl_store8(full, live[q], m + 8 * q, acc[q]);
}

FNL_INLINE void fnl_colmax_rows_avx2_f32(const float *x, ptrdiff_t nclass,
                                         ptrdiff_t class_stride, ptrdiff_t ncols, float *m)
{
    for (ptrdiff_t k0 = 0; k0 < ncols; k0 += 8 * FNL_COLQ8) {
        ptrdiff_t n = ncols - k0 < 8 * FNL_COLQ8 ? ncols - k0 : 8 * FNL_COLQ8;
        FNL_COLQ8_MASKS(live, nq, n)
        if (n == 8 * FNL_COLQ8)
            fnl_colmax_group_avx2_f32(x + k0, nclass, class_stride, live, nq, 1, m + k0);
        else
            fnl_colmax_group_avx2_f32(x + k0, nclass, class_stride, live, nq, 0, m + k0);
    }
}

/* the usual case of fnl_colsumexp_rows_avx2_f32 for one group of columns: l[q] += the
 * terms below the maximum, count[q] += the maximal ones, with the exp taken by
 * fnl_exp8_inrange_f32 when inrange (a constant where this is inlined) */
FNL_INLINE void fnl_colsum_rows_avx2_f32(const float *x, ptrdiff_t nclass,
                                         ptrdiff_t class_stride, const __m256i *live, int nq,
                                         int full, const __m256 *vs, int inrange, __m256 *l,
                                         __m256i *count, ptrdiff_t ask)
{
    for (ptrdiff_t j = 0; j < nclass; j++) {
        /* the row's piece one chunk ahead (the next call's), ask bytes where the group
         * starts one (fnl_col_piece_bytes; 0: none) */
        fnl_prefetch_rows_ahead(x, (j + nclass) * class_stride, class_stride, 4, ask);
        for (int q = 0; q < FNL_COLQ8; q++) {
            if (q < nq) {
                __m256 v = fnl_load8(full, live[q], x + j * class_stride + 8 * q);
                __m256 d = _mm256_sub_ps(v, vs[q]);
                __m256 e = inrange ? fnl_exp8_inrange_f32(d) : fnl_exp8_nonpos_f32(d);
                __m256 top = _mm256_cmp_ps(v, vs[q], _CMP_EQ_OQ);
                l[q] = _mm256_add_ps(l[q], _mm256_andnot_ps(top, e));
                count[q] = _mm256_sub_epi32(count[q], _mm256_castps_si256(top));
            }
        }
    }
}

/* lo[q] = the minimum of the live columns of a group over nclass class rows (dead lanes read
 * 0, against a shift of 0); full as in fnl_colmax_group_avx2_f32 */
FNL_INLINE void fnl_colmin_group_avx2_f32(const float *x, ptrdiff_t nclass,
                                          ptrdiff_t class_stride, const __m256i *live, int nq,
                                          int full, __m256 *lo)
{
    for (ptrdiff_t j = 0; j < nclass; j++)
        for (int q = 0; q < FNL_COLQ8; q++)
            if (q < nq)
                lo[q] = _mm256_min_ps(fnl_load8(full, live[q], x + j * class_stride + 8 * q),
                                      lo[q]);
}

FNL_INLINE void fnl_colsumexp_rows_avx2_f32(const float *x, ptrdiff_t nclass,
                                            ptrdiff_t class_stride, ptrdiff_t ncols,
                                            const float *M, const float *shift, float *rest,
                                            float *at_max)
{
    for (ptrdiff_t k0 = 0; k0 < ncols; k0 += 8 * FNL_COLQ8) {
        ptrdiff_t n = ncols - k0 < 8 * FNL_COLQ8 ? ncols - k0 : 8 * FNL_COLQ8;
        FNL_COLQ8_MASKS(live, nq, n)
        __m256 vs[FNL_COLQ8], l[FNL_COLQ8];
        __m256i count[FNL_COLQ8];
        int usual = 1;
        for (int q = 0; q < FNL_COLQ8; q++) {
            __m256 vm = fnl_load8(0, live[q], M + k0 + 8 * q);
            vs[q] = fnl_load8(0, live[q], shift + k0 + 8 * q);
            __m256 eq = _mm256_cmp_ps(vm, vs[q], _CMP_EQ_OQ);
            usual &= _mm256_testc_ps(eq, _mm256_castsi256_ps(live[q]));  /* live in eq */
        }
        const ptrdiff_t ask = fnl_col_piece_bytes(k0, ncols, 4);
        if (!usual) {   /* a column whose maximum is infinite, or is not its shift */
            for (ptrdiff_t j = 0; j < nclass; j++) {
                fnl_prefetch_rows_ahead(x, k0 + (j + nclass) * class_stride, class_stride,
                                            4, ask);
                fnl_colsumexp_unit_avx2_f32(x + j * class_stride + k0, n, M + k0, shift + k0,
                                            rest + k0, at_max + k0);
            }
            continue;
        }
        /* every column's maximum finite and its shift: the maximal terms (each exactly 1)
         * are counted in integer lanes, as in fnl_colsumexp_rows_avx512_f32; and when no
         * argument is below FNL_EXP8_LO either (one pass over the rows, in L1, finds the
         * columns' minima), the exp is fnl_exp8_inrange_f32 */
        __m256 lo[FNL_COLQ8];
        for (int q = 0; q < FNL_COLQ8; q++) {
            l[q] = fnl_load8(0, live[q], rest + k0 + 8 * q);
            count[q] = _mm256_setzero_si256();
            lo[q] = _mm256_set1_ps(INFINITY);
        }
        int full = n == 8 * FNL_COLQ8;
        if (full)
            fnl_colmin_group_avx2_f32(x + k0, nclass, class_stride, live, nq, 1, lo);
        else
            fnl_colmin_group_avx2_f32(x + k0, nclass, class_stride, live, nq, 0, lo);
        int inrange = 1;
        for (int q = 0; q < FNL_COLQ8; q++)
            inrange &= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(lo[q], vs[q]),
                                                        _mm256_set1_ps(FNL_EXP8_LO),
                                                        _CMP_GE_OQ)) == 0xFF;
        /* four copies of the loop: plain or masked loads, the one exp or the other */
        if (full && inrange)
            fnl_colsum_rows_avx2_f32(x + k0, nclass, class_stride, live, nq, 1, vs, 1, l,
                                     count, ask);
        else if (full)
            fnl_colsum_rows_avx2_f32(x + k0, nclass, class_stride, live, nq, 1, vs, 0, l,
                                     count, ask);
        else if (inrange)
            fnl_colsum_rows_avx2_f32(x + k0, nclass, class_stride, live, nq, 0, vs, 1, l,
                                     count, ask);
        else
            fnl_colsum_rows_avx2_f32(x + k0, nclass, class_stride, live, nq, 0, vs, 0, l,
                                     count, ask);
        for (int q = 0; q < FNL_COLQ8; q++) {
            __m256 h = fnl_load8(0, live[q], at_max + k0 + 8 * q);
            fnl_store8(0, live[q], rest + k0 + 8 * q, l[q]);
            fnl_store8(0, live[q], at_max + k0 + 8 * q,
                       _mm256_add_ps(h, _mm256_cvtepi32_ps(count[q])));
        }
    }
}

/* ------------------------------------------------------------- streaming writers ---- */

/* out = (x - shift) - log_sum (log_softmax) and out = e * c (softmax's scaling), written
 * with non-temporal stores: into an output larger than the last-level cache, which would
 * otherwise be read into the cache before each line is written.  The first elements, up to
 * out's first 32-byte boundary, and the last partial vector take plain stores; the same
 * values as the plain loops.  The caller orders the stores with fnl_stream_fence. */
FNL_INLINE void fnl_sub2_stream_avx2_f32(const float *x, ptrdiff_t n, float shift,
                                         float log_sum, float *out)
{
    ptrdiff_t i = 0;
    for (; i < n && ((uintptr_t)(out + i) & 31); i++) out[i] = (x[i] - shift) - log_sum;
    __m256 vs = _mm256_set1_ps(shift), vl = _mm256_set1_ps(log_sum);
    for (; i + 8 <= n; i += 8)
        _mm256_stream_ps(out + i, _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs), vl));
    for (; i < n; i++) out[i] = (x[i] - shift) - log_sum;
}

FNL_INLINE void fnl_scale_stream_avx2_f32(const float *e, ptrdiff_t n, float c, float *out)
{
    ptrdiff_t i = 0;
    for (; i < n && ((uintptr_t)(out + i) & 31); i++) out[i] = e[i] * c;
    __m256 vc = _mm256_set1_ps(c);
    for (; i + 8 <= n; i += 8)
        _mm256_stream_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(e + i), vc));
    for (; i < n; i++) out[i] = e[i] * c;
}

/* -------------------------------------------------------------------- writers ---- */

/* whether every (x - shift) - log_sum of a run lies in [FNL_EXP8_LO, FNL_EXP8_HI] (or is
 * nan), so that the writers may take fnl_exp8_inrange_f32: two passes over the run, which
 * the writers then read again from L1 */
FNL_INLINE int fnl_args_inrange8_f32(const float *x, ptrdiff_t n, float shift, float log_sum)
{
    return (fnl_extreme8_f32(x, n, 1) - shift) - log_sum >= FNL_EXP8_LO
           && (fnl_extreme8_f32(x, n, 0) - shift) - log_sum <= FNL_EXP8_HI;
}

/* out = exp(x - M) for a run whose maximum M is finite, returning the sum of the terms (in
 * 8 lanes, then across them); the whole vectors through fnl_exp8_inrange_f32 when inrange */
FNL_INLINE float fnl_expsum_run_avx2_f32(const float *x, ptrdiff_t n, float M, int inrange,
                                         float *out)
{
    __m256 l = _mm256_setzero_ps(), vm = _mm256_set1_ps(M);
    FNL_FOR8(i, n, full, live,
        __m256 d = _mm256_sub_ps(fnl_load8(full, live, x + i), vm);
        __m256 e = full && inrange ? fnl_exp8_inrange_f32(d) : fnl_exp8_nonpos_f32(d);
        fnl_store8(full, live, out + i, e);
        l = _mm256_add_ps(l, full ? e : fnl_keep8(e, _mm256_castsi256_ps(live)));
    )
    return fnl_hsum8_f32(l);
}

FNL_INLINE float fnl_expsum_unit_avx2_f32(const float *x, ptrdiff_t n, float M, float *out)
{
    if (fnl_extreme8_f32(x, n, 1) - M >= FNL_EXP8_LO)
        return fnl_expsum_run_avx2_f32(x, n, M, 1, out);
    return fnl_expsum_run_avx2_f32(x, n, M, 0, out);
}

/* out = exp((x - shift) - log_sum), the whole vectors through fnl_exp8_inrange_f32 when
 * inrange (a constant where this is inlined) */
FNL_INLINE void fnl_softmax_run_avx2_f32(const float *x, ptrdiff_t n, float shift,
                                         float log_sum, int inrange, float *out)
{
    __m256 vs = _mm256_set1_ps(shift), vl = _mm256_set1_ps(log_sum);
    FNL_FOR8(i, n, full, live,
        __m256 a = _mm256_sub_ps(_mm256_sub_ps(fnl_load8(full, live, x + i), vs), vl);
        fnl_store8(full, live, out + i,
                   full && inrange ? fnl_exp8_inrange_f32(a) : fnl_exp8_f32(a));
    )
}

FNL_INLINE void fnl_softmax_unit_avx2_f32(const float *x, ptrdiff_t n, float shift,
                                          float log_sum, float *out)
{
    if (fnl_args_inrange8_f32(x, n, shift, log_sum))
        fnl_softmax_run_avx2_f32(x, n, shift, log_sum, 1, out);
    else
        fnl_softmax_run_avx2_f32(x, n, shift, log_sum, 0, out);
}

/* g = scale_p exp((x - shift) - log_sum) - scale_w, as fnl_softmax_run_avx2_f32 */
FNL_INLINE void fnl_grad_run_avx2_f32(const float *x, ptrdiff_t n, float shift, float log_sum,
                                      float scale_p, float scale_w, int inrange, float *g)
{
    __m256 vs = _mm256_set1_ps(shift), vl = _mm256_set1_ps(log_sum);
    __m256 va = _mm256_set1_ps(scale_p), vb = _mm256_set1_ps(scale_w);
    FNL_FOR8(i, n, full, live,
        __m256 a = _mm256_sub_ps(_mm256_sub_ps(fnl_load8(full, live, x + i), vs), vl);
        __m256 e = full && inrange ? fnl_exp8_inrange_f32(a) : fnl_exp8_f32(a);
        fnl_store8(full, live, g + i, _mm256_fmsub_ps(va, e, vb));
    )
}

FNL_INLINE void fnl_grad_unit_avx2_f32(const float *x, ptrdiff_t n, float shift,
                                       float log_sum, float scale_p, float scale_w, float *g)
{
    if (fnl_args_inrange8_f32(x, n, shift, log_sum))
        fnl_grad_run_avx2_f32(x, n, shift, log_sum, scale_p, scale_w, 1, g);
    else
        fnl_grad_run_avx2_f32(x, n, shift, log_sum, scale_p, scale_w, 0, g);
}

FNL_INLINE void fnl_colsoftmax_unit_avx2_f32(const float *x, ptrdiff_t ncols,
                                             const float *shift, const float *log_sum,
                                             float *out)
{
    FNL_FOR8(k, ncols, full, live,
        fnl_store8(full, live, out + k, fnl_exp8_f32(_mm256_sub_ps(
            _mm256_sub_ps(fnl_load8(full, live, x + k), fnl_load8(full, live, shift + k)),
            fnl_load8(full, live, log_sum + k))));
    )
}

FNL_INLINE void fnl_colgrad_unit_avx2_f32(const float *x, ptrdiff_t ncols, const float *shift,
                                          const float *log_sum, const float *scale_p,
                                          const float *scale_w, float w_j, float *g)
{
    __m256 vw = _mm256_set1_ps(w_j);
    FNL_FOR8(k, ncols, full, live,
        __m256 e = fnl_exp8_f32(_mm256_sub_ps(
            _mm256_sub_ps(fnl_load8(full, live, x + k), fnl_load8(full, live, shift + k)),
            fnl_load8(full, live, log_sum + k)));
        fnl_store8(full, live, g + k, _mm256_fmsub_ps(fnl_load8(full, live, scale_p + k), e,
            _mm256_mul_ps(fnl_load8(full, live, scale_w + k), vw)));
    )
}

#endif /* __AVX2__ && __FMA__ */
#endif /* FASTNLL_AVX2_LOOPS_H */
