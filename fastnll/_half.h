/*
 * fastnll/_half.h -- the 16-bit float formats: float16 (IEEE binary16) and bfloat16 (the top
 * half of a float32), converted to and from float32 or float64.
 *
 * The kernels never compute in 16 bits: they convert a row (or a chunk of one) to float32 in
 * a buffer of their own, or in registers, compute as for float32 data, and round the results
 * once, to the nearest 16-bit value with ties to even.  Loading is exact in both directions
 * of both formats (every 16-bit value is a float32), so only the store rounds.  One
 * difference from float32 data: the rows' sums of exp take a shorter exp (fnl_exp_short_f32,
 * relative error 3.2e-6, and float32's exp below its range for softmax's outputs; see
 * fnl_half_sumexp_f32 at the end).
 *
 * The portable code below is bit-exact for every input; at x86-64-v3 and v4 the contiguous
 * float16 loops use the F16C instructions (vcvtph2ps, vcvtps2ph), which give the same bits
 * (.ci/check_half.c compares them over every 16-bit value and every float).  NaN keeps its
 * sign and (the top bits of) its payload, and is made quiet, as F16C does (bfloat16 loads
 * are the bits shifted: a signalling bfloat16 nan stays signalling, as in ml_dtypes).
 */
#ifndef FASTNLL_HALF_H
#define FASTNLL_HALF_H

#include <stdint.h>
#include <math.h>
#include <string.h>
#include "_portable.h"
#include "_scalar_math.h"
#include "_avx512_loops.h"
#include "_avx2_loops.h"

#if defined(__F16C__)
#include <immintrin.h>
#define FNL_HAVE_F16C 1
#endif

/* the kernels' codes of the two formats, FNL_F16 and FNL_BF16 (the Python layer's
 * _half.KINDS), are in _portable.h */

static inline float fnl_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t fnl_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* float16 -> float32, exact: the exponent rebiased; subnormals (exponent field 0) are the
 * integer mantissa times 2^-24, exact in float32 */
static inline float fnl_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f)      /* inf; nan made quiet (its payload kept), as vcvtph2ps does */
        return fnl_bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x00400000u : 0u));
    if (e != 0)
        return fnl_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    return fnl_bits_f32(sign | fnl_f32_bits((float)m * 5.9604644775390625e-08f));
}

/* float32 -> float16, rounded to nearest, ties to even; overflow gives inf */
static inline uint16_t fnl_f32_to_f16(float f)
{
    uint32_t u = fnl_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)                       /* nan: quiet, the payload's top bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u)                      /* >= 65520: rounds to inf (inf included) */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {                     /* below 2^-14: a float16 subnormal or 0 */
        /* adding 0.5 puts the float16 subnormal's units (2^-24) in the low mantissa bits,
         * and the float addition rounds them to nearest even */
        float r = fnl_bits_f32(a) + 0.5f;
        return (uint16_t)(sign | (fnl_f32_bits(r) - 0x3f000000u));
    }
    /* normal: rebias, then round the 13 dropped bits to nearest even */
    a += 0xc8000fffu + ((a >> 13) & 1u);       /* (15 - 127) << 23, plus the rounding */
    return (uint16_t)(sign | (a >> 13));
}

static inline float fnl_bf16_to_f32(uint16_t h) { return fnl_bits_f32((uint32_t)h << 16); }

/* float32 -> bfloat16, rounded to nearest, ties to even (overflow gives inf) */
static inline uint16_t fnl_f32_to_bf16(float f)
{
    uint32_t u = fnl_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);  /* nan stays nan, made quiet */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float fnl_half_to_f32(uint16_t h, int kind)
{
    return kind == FNL_BF16 ? fnl_bf16_to_f32(h) : fnl_f16_to_f32(h);
}

static inline uint16_t fnl_f32_to_half(float f, int kind)
{
    return kind == FNL_BF16 ? fnl_f32_to_bf16(f) : fnl_f32_to_f16(f);
}

/* n 16-bit values at stride s (elements) -> out[0..n) */
static inline void fnl_half_load_f32(const uint16_t *h, ptrdiff_t n, ptrdiff_t s, int kind,
                                     float *out)
{
    ptrdiff_t i = 0;
    if (kind == FNL_BF16) {
        if (s == 1) {
            FNL_SIMD
            for (i = 0; i < n; i++)
                out[i] = fnl_bits_f32((uint32_t)h[i] << 16);
        } else {
            for (i = 0; i < n; i++)
                out[i] = fnl_bits_f32((uint32_t)h[i * s] << 16);
        }
        return;
    }
    if (s != 1) {
        for (i = 0; i < n; i++)
#ifdef FNL_HAVE_F16C
            out[i] = _cvtsh_ss(h[i * s]);
#else
            out[i] = fnl_f16_to_f32(h[i * s]);
#endif
        return;
    }
#ifdef FNL_HAVE_F16C
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
    for (; i < n; i++)
        out[i] = fnl_f16_to_f32(h[i]);
}

/* fnl_half_load_f32, returning the maximum of the values too (nan ignored; -inf when there
 * is none: x > m ? x : m, as fnl_max): one pass over a chunk where the load and fnl_max
 * took two */
static inline float fnl_half_load_max_f32(const uint16_t *h, ptrdiff_t n, ptrdiff_t s,
                                          int kind, float *out)
{
    float m = -INFINITY;
    ptrdiff_t i = 0;
    if (s != 1) {
        fnl_half_load_f32(h, n, s, kind, out);
        for (i = 0; i < n; i++)
            m = out[i] > m ? out[i] : m;
        return m;
    }
    if (kind == FNL_BF16) {
        FNL_SIMD_MAX(m)
        for (i = 0; i < n; i++) {
            float v = fnl_bits_f32((uint32_t)h[i] << 16);
            out[i] = v;
            m = v > m ? v : m;
        }
        return m;
    }
#ifdef FNL_HAVE_F16C
    if (n >= 16) {
        /* vmaxps(v, acc) is acc when v is nan; two accumulators, no nan in either */
        __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
        float lanes[8];
        for (; i + 16 <= n; i += 16) {
            __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
            __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i + 8)));
            _mm256_storeu_ps(out + i, a);
            _mm256_storeu_ps(out + i + 8, b);
            m0 = _mm256_max_ps(a, m0);
            m1 = _mm256_max_ps(b, m1);
        }
        _mm256_storeu_ps(lanes, _mm256_max_ps(m1, m0));
        for (int q = 0; q < 8; q++)
            m = lanes[q] > m ? lanes[q] : m;
    }
#endif
    for (; i < n; i++) {
        float v = fnl_f16_to_f32(h[i]);
        out[i] = v;
        m = v > m ? v : m;
    }
    return m;
}

/* v[0..n) rounded -> n 16-bit values at stride s (elements) */
static inline void fnl_half_store_f32(const float *v, ptrdiff_t n, int kind, uint16_t *out,
                                      ptrdiff_t s)
{
    ptrdiff_t i = 0;
    if (kind == FNL_BF16) {
        if (s == 1) {
            FNL_SIMD
            for (i = 0; i < n; i++)
                out[i] = fnl_f32_to_bf16(v[i]);
        } else {
            for (i = 0; i < n; i++)
                out[i * s] = fnl_f32_to_bf16(v[i]);
        }
        return;
    }
    if (s != 1) {
        for (i = 0; i < n; i++)
            out[i * s] = fnl_f32_to_f16(v[i]);
        return;
    }
#ifdef FNL_HAVE_F16C
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(v + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i < n; i++)
        out[i] = fnl_f32_to_f16(v[i]);
}

/* ------------------------------------------------------ sums of the 16-bit rows ---- */

/* The 16-bit rows' sums of exp (row_stats_from in _lse.pxd) in the usual case: M is the row's
 * running maximum, finite, and its shift.  x holds n terms: a float32 chunk converted from
 * 16-bit values (src FNL_SRC_F32), or, unit stride, the 16-bit values of the format src
 * (FNL_F16, FNL_BF16) themselves, converted in registers (x86-64-v3 and v4; see
 * FNL_HALF_DIRECT).  Returns the sum of fnl_exp_short_f32(v - M) over the terms v below M,
 * and in *at_max the count of those equal to M; when split is 0 the caller knows that none
 * is, and there is no comparison.  With run_max not NULL, also the maximum of the terms (nan
 * ignored) from the same reads, so that a chunk below the running maximum is read once.
 * 16-bit values carry 11 or 8 significant bits, and the results are rounded to 16 bits: an
 * exp accurate to 3.2e-6 moves one only where it lies that close to a rounding midpoint, by
 * one unit (but for a log-sum-exp within 2^-7 of 0, which half_logsumexp takes again with
 * float32's exp; see docs/user_guide/half_precision.md), and at six multiply-adds instead of
 * ten it is what makes the 16-bit row sums faster than the float32 ones, not only lighter
 * on memory.  The loops written with intrinsics give the portable loop's terms, summed in
 * their own lanes.  run_max is for 16-bit values with split 0 (the one use: the vector
 * loops take it only there), and the sum is then meaningful only when *run_max < M. */
static inline float fnl_half_sumexp_f32(const void *x, ptrdiff_t n, int src, float M,
                                        int split, float *at_max, float *run_max)
{
    float rest = 0, count = 0;
#if defined(FNL_HAVE_AVX512) || defined(FNL_HAVE_AVX2)
#if defined(FNL_HAVE_AVX512)
#define FNL_HALF_SUM(SRC, SPLIT, MAX)                                                      \
    fnl_sumexp_count_avx512_f32(x, n, SRC, M, SPLIT, 1, &rest, &count, MAX)
#else
#define FNL_HALF_SUM(SRC, SPLIT, MAX)                                                      \
    fnl_sumexp_count_avx2_f32(x, n, SRC, M, FNL_EXP8_SHORT, SPLIT, &rest, &count, MAX)
#endif
    /* each combination a loop of its own (the arguments are constants there) */
    if (src == FNL_SRC_F32) {
        if (split)
            FNL_HALF_SUM(FNL_SRC_F32, 1, NULL);
        else
            FNL_HALF_SUM(FNL_SRC_F32, 0, NULL);
    } else if (run_max != NULL) {
        if (src == FNL_F16)
            FNL_HALF_SUM(FNL_F16, 0, run_max);
        else
            FNL_HALF_SUM(FNL_BF16, 0, run_max);
    } else if (src == FNL_F16) {
        if (split)
            FNL_HALF_SUM(FNL_F16, 1, NULL);
        else
            FNL_HALF_SUM(FNL_F16, 0, NULL);
    } else {
        if (split)
            FNL_HALF_SUM(FNL_BF16, 1, NULL);
        else
            FNL_HALF_SUM(FNL_BF16, 0, NULL);
    }
#undef FNL_HALF_SUM
#else
    if (src == FNL_SRC_F32 && run_max == NULL) {
        const float *v = (const float *)x;
        FNL_SIMD_SUM2(rest, count)
        for (ptrdiff_t i = 0; i < n; i++) {
            float e = fnl_exp_short_f32(v[i] - M);
            int top = split && v[i] == M;
            rest += top ? 0.0f : e;
            count += top ? 1.0f : 0.0f;
        }
    } else {
        float m = -INFINITY;
        for (ptrdiff_t i = 0; i < n; i++) {
            float v = src == FNL_SRC_F32 ? ((const float *)x)[i]
                                         : fnl_half_to_f32(((const uint16_t *)x)[i], src);
            float e = fnl_exp_short_f32(v - M);
            int top = split && v == M;
            rest += top ? 0.0f : e;
            count += top ? 1.0f : 0.0f;
            m = v > m ? v : m;
        }
        if (run_max != NULL)
            *run_max = m;
    }
#endif
    *at_max = count;
    return rest;
}

/* softmax's outputs for a 16-bit row's float32 chunk x (converted by fnl_half_load_f32):
 * out = fnl_exp_short_out_f32((x - shift) - log_sum), where shift is the row's maximum
 * (finite) and log_sum the log of its sum of exp (finite), so that no argument exceeds 0
 * (nan stays nan).  The short exp's 3.2e-6 (and as much from log_sum) cannot show in an
 * output rounded to 16 bits; arguments below FNL_SHORT_LO (rare: outputs under 2.7e-38,
 * which bfloat16 can hold) take float32's exp, a vector at a time.  x and out may be the
 * same. */
static inline void fnl_half_softmax_f32(const float *x, ptrdiff_t n, float shift,
                                        float log_sum, float *out)
{
#if defined(FNL_HAVE_AVX512)
    __m512 vs = _mm512_set1_ps(shift), vl = _mm512_set1_ps(log_sum);
    FNL_FOR16(i, n, live,
        __m512 d = _mm512_sub_ps(_mm512_sub_ps(fnl_load16(live, x + i), vs), vl);
        _mm512_mask_storeu_ps(out + i, live, fnl_exp16_short_out_f32(d));
    )
#elif defined(FNL_HAVE_AVX2)
    __m256 vs = _mm256_set1_ps(shift), vl = _mm256_set1_ps(log_sum);
    FNL_FOR8(i, n, full, live,
        __m256 d = _mm256_sub_ps(_mm256_sub_ps(fnl_load8(full, live, x + i), vs), vl);
        fnl_store8(full, live, out + i, fnl_exp8_short_out_f32(d));
    )
#else
    FNL_SIMD
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = fnl_exp_short_out_f32((x[i] - shift) - log_sum);
#endif
}

#if defined(FNL_HAVE_AVX512)
/* 16 floats rounded to the 16-bit format kind as fnl_f32_to_half rounds them: vcvtps2ph for
 * float16 (F16C's bits, .ci/check_half.c); for bfloat16 the portable integer rounding, lane
 * by lane (nan made quiet) */
FNL_INLINE __m256i fnl_round16_half(__m512 v, int kind)
{
    if (kind == FNL_F16)
        return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512i u = _mm512_castps_si512(v);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(
        _mm512_set1_epi32(0x7fff), odd)), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}
#elif defined(FNL_HAVE_AVX2)
/* 8 floats rounded to the 16-bit format kind as fnl_f32_to_half rounds them (see the
 * AVX-512 form) */
FNL_INLINE __m128i fnl_round8_half(__m256 v, int kind)
{
    if (kind == FNL_F16)
        return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i u = _mm256_castps_si256(v);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(
        _mm256_set1_epi32(0x7fff), odd)), 16);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                     _mm256_set1_epi32(0x7f800000));
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    r = _mm256_blendv_epi8(r, q, nan);
    /* 32-bit lanes (< 2^16) to 16 bits: packus works within 128-bit halves */
    __m256i p = _mm256_packus_epi32(r, r);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
}
#endif

/* The outputs of softmax (take_log 0) or log_softmax (1) of a unit-stride 16-bit row x of the
 * format kind into the unit-stride 16-bit row y, in one pass, the values converted in
 * registers: y = round((x - shift) - log_sum), or round(fnl_exp_short_out_f32((x - shift) -
 * log_sum)) (shift the row's maximum and log_sum the log of its sum, both finite for
 * softmax); the values, and bits, of the chunked path (fnl_half_load_f32, the log form of
 * fnl_softmax or fnl_half_softmax_f32, fnl_half_store_f32).  stream: y's whole aligned
 * blocks written with non-temporal stores (the caller's output larger than the last-level
 * cache; the caller fences).  x and y may be the same row.  Only where FNL_HALF_DIRECT. */
static inline void fnl_half_write16_f32(const uint16_t *x, uint16_t *y, ptrdiff_t n, int kind,
                                        float shift, float log_sum, int take_log, int stream)
{
#if defined(FNL_HAVE_AVX512) || defined(FNL_HAVE_AVX2)
#if defined(FNL_HAVE_AVX512)
    const ptrdiff_t lanes = 16;
#else
    const ptrdiff_t lanes = 8;
#endif
    ptrdiff_t i = 0;
    if (stream) {   /* up to y's first block of 2 * lanes bytes, one by one */
        for (; i < n && ((uintptr_t)(y + i) & (uintptr_t)(2 * lanes - 1)); i++) {
            float d = (fnl_half_to_f32(x[i], kind) - shift) - log_sum;
            y[i] = fnl_f32_to_half(take_log ? d : fnl_exp_short_out_f32(d), kind);
        }
    }
#if defined(FNL_HAVE_AVX512)
    __m512 vs = _mm512_set1_ps(shift), vl = _mm512_set1_ps(log_sum);
    for (; i < n; i += 16) {
        __mmask16 live = n - i >= 16 ? (__mmask16)0xFFFF : fnl_first16(n - i);
        __m512 d = _mm512_sub_ps(_mm512_sub_ps(
            kind == FNL_BF16 ? fnl_load16_src(FNL_BF16, live, x, i)
                             : fnl_load16_src(FNL_F16, live, x, i), vs), vl);
        __m512 e = take_log ? d : fnl_exp16_short_out_f32(d);
        __m256i h = kind == FNL_BF16 ? fnl_round16_half(e, FNL_BF16)
                                     : fnl_round16_half(e, FNL_F16);
        if (stream && live == (__mmask16)0xFFFF)
            _mm256_stream_si256((__m256i *)(y + i), h);
        else
            _mm256_mask_storeu_epi16(y + i, live, h);
    }
#else
    __m256 vs = _mm256_set1_ps(shift), vl = _mm256_set1_ps(log_sum);
    const __m256i all = _mm256_set1_epi32(-1);
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_sub_ps(
            kind == FNL_BF16 ? fnl_load8_src(FNL_BF16, 1, all, x, i, n)
                             : fnl_load8_src(FNL_F16, 1, all, x, i, n), vs), vl);
        __m256 e = take_log ? d : fnl_exp8_short_out_f32(d);
        __m128i h = kind == FNL_BF16 ? fnl_round8_half(e, FNL_BF16)
                                     : fnl_round8_half(e, FNL_F16);
        if (stream)
            _mm_stream_si128((__m128i *)(y + i), h);
        else
            _mm_storeu_si128((__m128i *)(y + i), h);
    }
    for (; i < n; i++) {
        float d = (fnl_half_to_f32(x[i], kind) - shift) - log_sum;
        y[i] = fnl_f32_to_half(take_log ? d : fnl_exp_short_out_f32(d), kind);
    }
#endif
#else
    (void)x; (void)y; (void)n; (void)kind; (void)shift; (void)log_sum; (void)take_log;
    (void)stream;
#endif
}

/* Whether the row sums read unit-stride 16-bit rows in place (fnl_half_max16_f32,
 * fnl_half_sumexp_f32 with src FNL_F16 or FNL_BF16) rather than through a float32 copy of
 * each chunk: where the conversions are instructions (x86-64-v3 and v4). */
#if defined(FNL_HAVE_AVX512) || defined(FNL_HAVE_AVX2)
#define FNL_HALF_DIRECT 1
#else
#define FNL_HALF_DIRECT 0
#endif

/* Whether the column loops read unit-stride 16-bit columns in place (fnl_half_colmax_rows_f32
 * and fnl_half_colsumexp_rows_f32) rather than through a float32 copy of each chunk: at
 * x86-64-v4, where a masked 16-bit load converts a partial vector as cheaply as a whole one. */
#if defined(FNL_HAVE_AVX512)
#define FNL_HALF_COLS_DIRECT 1
#else
#define FNL_HALF_COLS_DIRECT 0
#endif

/* fnl_colmax_rows_f32 and fnl_colsumexp_rows_f32 of nclass class rows of 16-bit values of the
 * format kind (row j at h + j * s_class, ncols unit-stride columns), converted in registers:
 * the maxima are those of the float32 copy, and so are the sums of a group of 64 columns
 * with a maximum that is not finite or not its shift; the other sums are those of
 * fnl_exp_short_f32(v - shift) over all the terms, the maximal ones included (at_max is left
 * as it is), added row by row.  Only where FNL_HALF_COLS_DIRECT. */
static inline void fnl_half_colmax_rows_f32(const uint16_t *h, int kind, ptrdiff_t nclass,
                                            ptrdiff_t s_class, ptrdiff_t ncols, float *m)
{
#if defined(FNL_HAVE_AVX512)
    if (kind == FNL_BF16)
        fnl_colmax_rows_src_avx512_f32(FNL_BF16, h, nclass, s_class, ncols, m);
    else
        fnl_colmax_rows_src_avx512_f32(FNL_F16, h, nclass, s_class, ncols, m);
#else
    (void)h; (void)kind; (void)nclass; (void)s_class; (void)ncols; (void)m;
#endif
}

static inline void fnl_half_colsumexp_rows_f32(const uint16_t *h, int kind, ptrdiff_t nclass,
                                               ptrdiff_t s_class, ptrdiff_t ncols,
                                               const float *M, const float *shift, float *rest,
                                               float *at_max)
{
#if defined(FNL_HAVE_AVX512)
    if (kind == FNL_BF16)
        fnl_colsumexp_rows_src_avx512_f32(FNL_BF16, h, nclass, s_class, ncols, M, shift, rest,
                                          at_max);
    else
        fnl_colsumexp_rows_src_avx512_f32(FNL_F16, h, nclass, s_class, ncols, M, shift, rest,
                                          at_max);
#else
    (void)h; (void)kind; (void)nclass; (void)s_class; (void)ncols; (void)M; (void)shift;
    (void)rest; (void)at_max;
#endif
}

/* The column sums of a later chunk of 16-bit columns in one pass (Only where
 * FNL_HALF_COLS_DIRECT): rest += fnl_exp_short_f32(v - shift) over every term, added row by
 * row, and m = max(m, v) (nan ignored), from the same reads.  The shift is the columns'
 * running shift, at most their running maximum, which the chunk's terms may pass: the caller
 * keeps these sums only where no term lies more than FNL_SHORT_HI above the shift, where
 * the short exp holds (fnl_exp_short_f32) and a chunk's float32 sum cannot overflow. */
static inline void fnl_half_colsumexp_lazy_f32(const uint16_t *h, int kind, ptrdiff_t nclass,
                                               ptrdiff_t s_class, ptrdiff_t ncols,
                                               const float *shift, float *rest, float *m)
{
#if defined(FNL_HAVE_AVX512)
    if (kind == FNL_BF16)
        fnl_colsumexp_lazy_src_avx512_f32(FNL_BF16, h, nclass, s_class, ncols, shift, rest, m);
    else
        fnl_colsumexp_lazy_src_avx512_f32(FNL_F16, h, nclass, s_class, ncols, shift, rest, m);
#else
    (void)h; (void)kind; (void)nclass; (void)s_class; (void)ncols; (void)shift; (void)rest;
    (void)m;
#endif
}

/* the maximum of n unit-stride 16-bit values of the format kind, ignoring nan (-inf when
 * there is none) */
static inline float fnl_half_max16_f32(const uint16_t *h, ptrdiff_t n, int kind)
{
#if defined(FNL_HAVE_AVX512)
    return kind == FNL_BF16 ? fnl_max_src_avx512_f32(h, n, FNL_BF16)
                            : fnl_max_src_avx512_f32(h, n, FNL_F16);
#elif defined(FNL_HAVE_AVX2)
    return kind == FNL_BF16 ? fnl_max_src_avx2_f32(h, n, FNL_BF16)
                            : fnl_max_src_avx2_f32(h, n, FNL_F16);
#else
    float m = -INFINITY;
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = fnl_half_to_f32(h[i], kind);
        m = v > m ? v : m;
    }
    return m;
#endif
}

#endif /* FASTNLL_HALF_H */
