/*
 * fastnll/_half.h -- the 16-bit float formats: float16 (IEEE binary16) and bfloat16 (the top
 * half of a float32), converted to and from float32 or float64.
 *
 * The kernels never compute in 16 bits: they convert a row (or a chunk of one) to float32 in
 * a buffer of their own, compute as for float32 data, and round the results once, to the
 * nearest 16-bit value with ties to even.  Loading is exact in both directions of both
 * formats (every 16-bit value is a float32), so only the store rounds.
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

#if defined(__F16C__)
#include <immintrin.h>
#define FNL_HAVE_F16C 1
#endif

/* the kernels' codes of the two formats (the Python layer's _half.KINDS) */
enum { FNL_F16 = 1, FNL_BF16 = 2 };

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

#endif /* FASTNLL_HALF_H */
