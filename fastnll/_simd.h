/*
 * fastnll/_simd.h -- the few inner loops that must vectorise and that Cython cannot write.
 *
 * Design
 * (a) Cython cannot emit `#pragma omp simd reduction(...)`, and gcc will not vectorise a float
 *     sum or max under strict IEEE rules without it.  So every reduction over a run of elements
 *     (max, sum of exp, shifted sums) and every elementwise writer lives here, as small static
 *     inline functions that the Cython kernels cimport through `_lse.pxd`.
 * (b) One exp for the whole project: `fnl_exp_f32` / `fnl_exp_f64`, branch-free so that gcc
 *     vectorises it without -ffast-math (which would break inf/nan semantics).  Range reduction
 *     x = n ln2 + r with a two-constant (Cody-Waite) ln2, a Taylor polynomial on |r| <= ln2/2
 *     (degree 7 for float, 13 for double: truncation below a quarter of an ulp), and 2^n built
 *     from exponent bits as two factors so that subnormal results round once and correctly.
 *     exp(-inf) = 0, exp(+inf) = inf and exp(nan) = nan come out of the same arithmetic.
 * (c) Every function takes an element stride; stride 1 takes the vector loop, anything else a
 *     plain loop.  The branch is per call (per chunk of a row), never per element.
 * (d) Functions are written once as a macro over the element type T and suffix, and expanded for
 *     float (f32) and double (f64).
 */
#ifndef FASTNLL_SIMD_H
#define FASTNLL_SIMD_H

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
#else
#define FNL_SIMD
#define FNL_SIMD_SUM(v)
#define FNL_SIMD_SUM2(v, w)
#define FNL_SIMD_MAX(v)
#define FNL_INLINE static inline
#define FNL_PREFETCH(p) ((void)(p))
#endif

/* ---------------------------------------------------------------- vector exp ---- */

typedef union { float f; int32_t i; } fnl_bits32;
typedef union { double f; int64_t i; } fnl_bits64;

FNL_INLINE float fnl_exp_f32(float x)
{
    /* Clamp keeps 2^n representable; nan fails both comparisons and passes through. */
    float xc = x < -110.0f ? -110.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    /* Adding 1.5 * 2^23 rounds x/ln2 to the nearest integer n, which then sits in the
     * low mantissa bits of t. */
    fnl_bits32 t;
    t.f = xc * 1.44269504088896341f + 12582912.0f;
    float n = t.f - 12582912.0f;
    int32_t ni = t.i - 0x4B400000;
    float r = xc - n * 0.693359375f;          /* ln2 split: high part exact in float */
    r = r - n * -2.12194440e-4f;               /* low part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t n1 = ni >> 1;
    int32_t n2 = ni - n1;
    fnl_bits32 s1, s2;
    s1.i = (n1 + 127) << 23;
    s2.i = (n2 + 127) << 23;
    return (p * s1.f) * s2.f;
}

FNL_INLINE double fnl_exp_f64(double x)
{
    double xc = x < -750.0 ? -750.0 : x;
    xc = xc > 710.0 ? 710.0 : xc;
    fnl_bits64 t;
    t.f = xc * 1.4426950408889634074 + 6755399441055744.0;   /* 1.5 * 2^52 */
    double n = t.f - 6755399441055744.0;
    int64_t ni = t.i - INT64_C(0x4338000000000000);
    double r = xc - n * 6.93147180369123816490e-01;          /* ln2 high part */
    r = r - n * 1.90821492927058770002e-10;                  /* ln2 low part */
    double p = 1.0 / 6227020800.0;                           /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t n1 = ni >> 1;
    int64_t n2 = ni - n1;
    fnl_bits64 s1, s2;
    s1.i = (n1 + 1023) << 52;
    s2.i = (n2 + 1023) << 52;
    return (p * s1.f) * s2.f;
}

/* log for finite normal x > 0 (finishing a log-sum-exp needs x >= 1): x = m 2^e with m in
 * [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| <= 0.1716, summed
 * to s^21 (truncation below 1e-17), e ln2 split in two constants.  Branch-free. */
FNL_INLINE double fnl_log_ge1_f64(double x)
{
    fnl_bits64 b;
    b.f = x;
    int64_t e = ((b.i >> 52) & 0x7ff) - 1023;
    b.i = (b.i & INT64_C(0x000fffffffffffff)) | INT64_C(0x3ff0000000000000);
    double m = b.f;                                 /* [1, 2) */
    int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    double ed = (double)(e + big);
    double f = m - 1.0;
    double sv = f / (2.0 + f);
    double z = sv * sv;
    double p = 1.0 / 21;
    p = p * z + 1.0 / 19;
    p = p * z + 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    double logm = 2.0 * sv + 2.0 * sv * (z * p);
    return ed * 6.93147180369123816490e-01 + (logm + ed * 1.90821492927058770002e-10);
}

/* log for any double, branch-free: subnormals are scaled by 2^54 first; 0 gives -inf,
 * negatives nan, +inf inf, nan nan (the same as libm's log, within 2 ulp). */
FNL_INLINE double fnl_log_f64(double x)
{
    int tiny = x < 2.2250738585072014e-308;             /* below the smallest normal */
    double xs = tiny ? x * 18014398509481984.0 : x;     /* 2^54 */
    xs = (xs > 0.0 && xs < INFINITY) ? xs : 1.0;        /* keep the bit tricks on a number */
    double r = fnl_log_ge1_f64(xs) - (tiny ? 54 * 6.93147180559945309417e-01 : 0.0);
    r = x == 0.0 ? -INFINITY : r;
    r = x == INFINITY ? INFINITY : r;
    r = (x < 0.0 || x != x) ? NAN : r;
    return r;
}

/* log1p(u) for u >= 0 (u = 0 exact), as log(1 + u) corrected for the rounding of 1 + u */
FNL_INLINE double fnl_log1p_pos_f64(double u)
{
    double v = 1.0 + u;
    return v == INFINITY ? INFINITY : fnl_log_ge1_f64(v) + (u - (v - 1.0)) / v;
}

/* logs[k] = log(eq[k] + lo[k]) for nk columns at once, with one log: the sum v is rounded,
 * and its rounding error d (TwoSum, exact whatever the order of eq and lo) is added back to
 * first order, log(v + d) = log(v) + d / v.  A small lo next to eq = 1 (a confident row)
 * therefore keeps its digits, as with log1p.  Valid where eq >= 1 and lo >= 0 are finite
 * (the caller redoes the other columns). */
FNL_INLINE void fnl_colfinish(const double *lo, const double *eq, double *logs, ptrdiff_t nk)
{
    FNL_SIMD
    for (ptrdiff_t k = 0; k < nk; k++) {
        double v = eq[k] + lo[k];
        double z = v - eq[k];
        double d = (eq[k] - (v - z)) + (lo[k] - z);
        logs[k] = v == INFINITY ? INFINITY : fnl_log_ge1_f64(v) + d / v;
    }
}

/* sum of n doubles (vectorised; the order is fixed for a given n) */
FNL_INLINE double fnl_sum_f64(const double *v, ptrdiff_t n)
{
    double acc = 0;
    FNL_SIMD_SUM(acc)
    for (ptrdiff_t i = 0; i < n; i++) acc += v[i];
    return acc;
}

/* ------------------------------------------------------ register transpose ---- */
/*
 * Packing few-class rows into class rows moves whole tiles: L rows of L classes (one vector
 * register each) are loaded, transposed in registers, and stored as L class rows.
 * - AVX-512 (the x86-64-v4 build, gcc): L = 16 floats or 8 doubles, log2(L) stages of
 *   two-register shuffles written with gcc's vector extensions; stage b pairs register r
 *   with r + b and swaps their off-diagonal b x b blocks.
 * - AVX (the x86-64-v3 build): L = 8 floats or 4 doubles, the unpack / shuffle / lane-permute
 *   sequence written with intrinsics (gcc lowers the generic shuffles poorly at 256 bits).
 * Other levels copy element by element.
 */
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#define FNL_HAVE_TILE 1
#define FNL_TILE_F32 16
#define FNL_TILE_F64 8
typedef float fnl_v16sf __attribute__((vector_size(64)));
typedef int32_t fnl_v16si __attribute__((vector_size(64)));
typedef double fnl_v8df __attribute__((vector_size(64)));
typedef int64_t fnl_v8di __attribute__((vector_size(64)));

#define FNL_TILE_STAGE(v, L, b, lo, hi)                                                    \
    for (int r = 0; r < (L); r++) {                                                       \
        if (!(r & (b))) {                                                                 \
            __typeof__(v[0]) a_ = v[r], c_ = v[r + (b)];                                  \
            v[r] = __builtin_shuffle(a_, c_, lo);                                         \
            v[r + (b)] = __builtin_shuffle(a_, c_, hi);                                   \
        }                                                                                 \
    }

/* buf[j B + k] = x[k sk + j] for j, k < 16 */
FNL_INLINE void fnl_tile_f32(const float *x, ptrdiff_t sk, float *buf, ptrdiff_t B)
{
    fnl_v16sf v[16];
    for (int r = 0; r < 16; r++) __builtin_memcpy(&v[r], x + r * sk, sizeof v[r]);
    FNL_TILE_STAGE(v, 16, 1, ((fnl_v16si){0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}),
                   ((fnl_v16si){1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}))
    FNL_TILE_STAGE(v, 16, 2, ((fnl_v16si){0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}),
                   ((fnl_v16si){2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}))
    FNL_TILE_STAGE(v, 16, 4, ((fnl_v16si){0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}),
                   ((fnl_v16si){4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}))
    FNL_TILE_STAGE(v, 16, 8, ((fnl_v16si){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}),
                   ((fnl_v16si){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}))
    for (int r = 0; r < 16; r++) __builtin_memcpy(buf + r * B, &v[r], sizeof v[r]);
}

/* buf[j B + k] = x[k sk + j] for j, k < 8 */
FNL_INLINE void fnl_tile_f64(const double *x, ptrdiff_t sk, double *buf, ptrdiff_t B)
{
    fnl_v8df v[8];
    for (int r = 0; r < 8; r++) __builtin_memcpy(&v[r], x + r * sk, sizeof v[r]);
    FNL_TILE_STAGE(v, 8, 1, ((fnl_v8di){0, 8, 2, 10, 4, 12, 6, 14}),
                   ((fnl_v8di){1, 9, 3, 11, 5, 13, 7, 15}))
    FNL_TILE_STAGE(v, 8, 2, ((fnl_v8di){0, 1, 8, 9, 4, 5, 12, 13}),
                   ((fnl_v8di){2, 3, 10, 11, 6, 7, 14, 15}))
    FNL_TILE_STAGE(v, 8, 4, ((fnl_v8di){0, 1, 2, 3, 8, 9, 10, 11}),
                   ((fnl_v8di){4, 5, 6, 7, 12, 13, 14, 15}))
    for (int r = 0; r < 8; r++) __builtin_memcpy(buf + r * B, &v[r], sizeof v[r]);
}

#elif defined(__AVX__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FNL_HAVE_TILE 1
#define FNL_TILE_F32 8
#define FNL_TILE_F64 4

/* buf[j B + k] = x[k sk + j] for j, k < 8 */
FNL_INLINE void fnl_tile_f32(const float *x, ptrdiff_t sk, float *buf, ptrdiff_t B)
{
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + i * sk);
    for (int i = 0; i < 8; i += 2) {            /* pairs of rows, interleaved per 128 bits */
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {            /* quads of rows */
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {               /* the two 128-bit halves */
        _mm256_storeu_ps(buf + i * B, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(buf + (i + 4) * B, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}

/* buf[j B + k] = x[k sk + j] for j, k < 4 */
FNL_INLINE void fnl_tile_f64(const double *x, ptrdiff_t sk, double *buf, ptrdiff_t B)
{
    __m256d r[4], t[4];
    for (int i = 0; i < 4; i++) r[i] = _mm256_loadu_pd(x + i * sk);
    t[0] = _mm256_unpacklo_pd(r[0], r[1]);
    t[1] = _mm256_unpackhi_pd(r[0], r[1]);
    t[2] = _mm256_unpacklo_pd(r[2], r[3]);
    t[3] = _mm256_unpackhi_pd(r[2], r[3]);
    _mm256_storeu_pd(buf, _mm256_permute2f128_pd(t[0], t[2], 0x20));
    _mm256_storeu_pd(buf + B, _mm256_permute2f128_pd(t[1], t[3], 0x20));
    _mm256_storeu_pd(buf + 2 * B, _mm256_permute2f128_pd(t[0], t[2], 0x31));
    _mm256_storeu_pd(buf + 3 * B, _mm256_permute2f128_pd(t[1], t[3], 0x31));
}
#endif

/* ------------------------------------------------------ exp loops, unit stride ---- */
/*
 * The loops that evaluate exp over unit-stride runs: the two reductions (a row's sum of exp,
 * and one class row of a column block added into per-column sums, both with fnl_sumexp's
 * split: terms where x == M go to hi, the others to lo) and the writers of softmax and of
 * the gradient, for a row or for one class row of a column block.
 * At x86-64-v4 (gcc or clang) the float versions are written with AVX-512 intrinsics, around
 * fnl_exp16_f32: fnl_exp_f32's arithmetic step for step (with the FMAs gcc forms from it at
 * this level), but scaling by 2^n with vscalefps (which rounds a subnormal result once, as
 * the two factors do) instead of the exponent-bit arithmetic.  gcc does not find that
 * instruction in the scalar code; with it a row's sum of exp is about 1.6x faster.
 * fnl_exp16_f32 gives the same bits as fnl_exp_f32 (built for x86-64-v4) for all 2^32
 * floats, checked exhaustively in CI by .ci/check_exp16.c (rounding x/ln2 with vrndscaleps
 * after an unfused multiply instead differed for 19 of them, by an ulp).  The column sums
 * add element by element, so they are bit-identical to the scalar loop's; the row sum adds
 * in 16 lanes and then across them, like the vectorised loop; the gradient writers round
 * A e - B once (fused multiply-subtract).
 */
#define FNL_DEFINE_UNIT(T, SUF)                                                             \
FNL_INLINE void fnl_sumexp_unit_##SUF(const T *x, ptrdiff_t n, T M, T shift, T *lo, T *hi) \
{                                                                                           \
    T l = 0, h = 0;                                                                         \
    FNL_SIMD_SUM2(l, h)                                                                     \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T e = fnl_exp_##SUF(x[i] - shift);                                                  \
        int top = x[i] == M;                                                                \
        l += top ? (T)0 : e;                                                                \
        h += top ? e : (T)0;                                                                \
    }                                                                                       \
    *lo = l;                                                                                \
    *hi = h;                                                                                \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_colsumexp_unit_##SUF(const T *x, ptrdiff_t nk, const T *M,              \
                                         const T *shift, T *lo, T *hi)                      \
{                                                                                           \
    FNL_SIMD                                                                                \
    for (ptrdiff_t k = 0; k < nk; k++) {                                                    \
        T e = fnl_exp_##SUF(x[k] - shift[k]);                                               \
        int top = x[k] == M[k];                                                             \
        lo[k] += top ? (T)0 : e;                                                            \
        hi[k] += top ? e : (T)0;                                                            \
    }                                                                                       \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_softmax_unit_##SUF(const T *x, ptrdiff_t n, T shift, T logs, T *out)    \
{                                                                                           \
    FNL_SIMD                                                                                \
    for (ptrdiff_t i = 0; i < n; i++) out[i] = fnl_exp_##SUF((x[i] - shift) - logs);        \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_grad_unit_##SUF(const T *x, ptrdiff_t n, T shift, T logs, T A, T B,     \
                                    T *g)                                                   \
{                                                                                           \
    FNL_SIMD                                                                                \
    for (ptrdiff_t i = 0; i < n; i++) g[i] = A * fnl_exp_##SUF((x[i] - shift) - logs) - B;  \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_colsoftmax_unit_##SUF(const T *x, ptrdiff_t nk, const T *shift,         \
                                          const T *logs, T *out)                            \
{                                                                                           \
    FNL_SIMD                                                                                \
    for (ptrdiff_t k = 0; k < nk; k++) out[k] = fnl_exp_##SUF((x[k] - shift[k]) - logs[k]); \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_colgrad_unit_##SUF(const T *x, ptrdiff_t nk, const T *shift,            \
                                       const T *logs, const T *A, const T *B, T wj, T *g)   \
{                                                                                           \
    FNL_SIMD                                                                                \
    for (ptrdiff_t k = 0; k < nk; k++)                                                      \
        g[k] = A[k] * fnl_exp_##SUF((x[k] - shift[k]) - logs[k]) - B[k] * wj;               \
}

#if defined(__AVX512F__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FNL_HAVE_EXP16 1

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

/* lanes [0, m) of 16: the mask of a last, partial vector */
FNL_INLINE __mmask16 fnl_first16(ptrdiff_t m)
{
    return (__mmask16)((1u << m) - 1u);
}

/* FNL_FOR16(i, n, live, body) runs body once per 16 elements of [0, n), with `live` the mask
 * of the lanes inside [0, n): a constant all-lanes mask in the main loop (where the masked
 * loads and stores compile to plain ones) and the mask of the last, partial vector after it.
 * Masking every vector instead made a row's sum of exp 13% slower. */
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

/* the row sum with every term through fnl_exp16_f32: any M and shift */
FNL_INLINE void fnl_sumexp_all_f32(const float *x, ptrdiff_t n, float M, float shift,
                                   float *lo, float *hi)
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
    *lo = _mm512_reduce_add_ps(l);
    *hi = _mm512_reduce_add_ps(h);
}

FNL_INLINE void fnl_sumexp_unit_f32(const float *x, ptrdiff_t n, float M, float shift,
                                    float *lo, float *hi)
{
    if (M != shift) {
        fnl_sumexp_all_f32(x, n, M, shift, lo, hi);
        return;
    }
    /* A finite maximum that is also the shift (the usual case): each maximal term is
     * exp(0) = 1, so they are counted (integer work, off the FP pipes), and no argument
     * exceeds 0 (nan stays nan).  The same results as fnl_sumexp_all_f32, 18% faster. */
    __m512 l = _mm512_setzero_ps();
    __m512 vm = _mm512_set1_ps(M), vs = _mm512_set1_ps(shift);
    int64_t count = 0;
    FNL_FOR16(i, n, live,
        __m512 v = fnl_load16(live, x + i);
        __m512 e = fnl_exp16_nonpos_f32(_mm512_sub_ps(v, vs));
        __mmask16 top = _mm512_mask_cmp_ps_mask(live, v, vm, _CMP_EQ_OQ);
        l = _mm512_mask_add_ps(l, live & (__mmask16)~top, l, e);
        count += __builtin_popcount(top);
    )
    *lo = _mm512_reduce_add_ps(l);
    *hi = (float)count;     /* exact, as the float sums of ones, for n < 2^24 (row_lse passes
                             * chunks of ROW_CHUNK) */
}

FNL_INLINE void fnl_colsumexp_unit_f32(const float *x, ptrdiff_t nk, const float *M,
                                       const float *shift, float *lo, float *hi)
{
    FNL_FOR16(k, nk, live,
        __m512 v = fnl_load16(live, x + k);
        __m512 e = fnl_exp16_f32(_mm512_sub_ps(v, fnl_load16(live, shift + k)));
        __mmask16 top = _mm512_mask_cmp_ps_mask(live, v, fnl_load16(live, M + k), _CMP_EQ_OQ);
        __m512 l = fnl_load16(live, lo + k), h = fnl_load16(live, hi + k);
        _mm512_mask_storeu_ps(lo + k, live, _mm512_mask_add_ps(l, (__mmask16)~top, l, e));
        _mm512_mask_storeu_ps(hi + k, live, _mm512_mask_add_ps(h, top, h, e));
    )
}

/* jn class rows of a column block at once (row j at x + j * c1, unit stride along the
 * columns): fnl_colmax / fnl_colsumexp over each row in turn, with the accumulators of up to
 * 64 columns (four vectors) kept in registers across the rows instead of stored and reloaded
 * per row, and the rows still read one after the other (reading column-vector by
 * column-vector made the strided, unpacked case 10% slower).  The same operations in the
 * same order per column, so the same results (.ci/check_exp16.c). */
#define FNL_HAVE_COLROWS 1
#define FNL_COLQ 4      /* vectors of 16 columns per group */

/* the live lanes of the q-th vector of a group of n columns, and how many vectors are live */
#define FNL_COLQ_MASKS(live, nq, n)                                                         \
    __mmask16 live[FNL_COLQ];                                                               \
    int nq = (int)(((n) + 15) / 16);                                                        \
    for (int q = 0; q < FNL_COLQ; q++) {                                                    \
        ptrdiff_t rest_ = (n) - 16 * q;                                                     \
        live[q] = rest_ >= 16 ? (__mmask16)0xFFFF : rest_ > 0 ? fnl_first16(rest_) : 0;     \
    }

FNL_INLINE void fnl_colmax_rows_f32(const float *x, ptrdiff_t jn, ptrdiff_t c1, ptrdiff_t nk,
                                    float *m)
{
    for (ptrdiff_t k0 = 0; k0 < nk; k0 += 16 * FNL_COLQ) {
        FNL_COLQ_MASKS(live, nq, nk - k0 < 16 * FNL_COLQ ? nk - k0 : 16 * FNL_COLQ)
        __m512 acc[FNL_COLQ];
        for (int q = 0; q < FNL_COLQ; q++) acc[q] = fnl_load16(live[q], m + k0 + 16 * q);
        for (ptrdiff_t j = 0; j < jn; j++) {
            if (c1 > 256) {
                /* rows far apart (a class axis with a large stride, e.g. axis 0 of a
                 * C-ordered matrix): the hardware prefetchers do not follow 256-byte pieces
                 * of rows in different pages, so ask for the same piece of the row one chunk
                 * ahead (the next call's).  On integers: the address may lie past the array,
                 * which a prefetch may name but a pointer may not.  logsumexp axis 0 of
                 * (4096, 32000) in a C harness, 1 thread: 48-49 -> 38-41 ms. */
                uintptr_t ahead = (uintptr_t)(x + k0) + (uintptr_t)((j + jn) * c1) * sizeof(float);
                for (int q = 0; q < FNL_COLQ; q++)
                    if (q < nq) FNL_PREFETCH((const void *)(ahead + 64 * q));
            }
            for (int q = 0; q < FNL_COLQ; q++) {
                if (q < nq) {   /* x > m ? x : m, as the scalar loop (nan in x is skipped) */
                    __m512 v = fnl_load16(live[q], x + j * c1 + k0 + 16 * q);
                    acc[q] = _mm512_mask_mov_ps(acc[q], _mm512_cmp_ps_mask(v, acc[q],
                                                                           _CMP_GT_OQ), v);
                }
            }
        }
        for (int q = 0; q < FNL_COLQ; q++) _mm512_mask_storeu_ps(m + k0 + 16 * q, live[q], acc[q]);
    }
}

FNL_INLINE void fnl_colsumexp_rows_f32(const float *x, ptrdiff_t jn, ptrdiff_t c1,
                                       ptrdiff_t nk, const float *M, const float *shift,
                                       float *lo, float *hi)
{
    for (ptrdiff_t k0 = 0; k0 < nk; k0 += 16 * FNL_COLQ) {
        ptrdiff_t n = nk - k0 < 16 * FNL_COLQ ? nk - k0 : 16 * FNL_COLQ;
        FNL_COLQ_MASKS(live, nq, n)
        __m512 vm[FNL_COLQ], vs[FNL_COLQ], l[FNL_COLQ];
        __m512i count[FNL_COLQ];
        int usual = 1;
        for (int q = 0; q < FNL_COLQ; q++) {
            vm[q] = fnl_load16(live[q], M + k0 + 16 * q);
            vs[q] = fnl_load16(live[q], shift + k0 + 16 * q);
            usual &= _mm512_mask_cmp_ps_mask(live[q], vm[q], vs[q], _CMP_EQ_OQ) == live[q];
        }
        if (!usual) {   /* a column whose maximum is infinite, or is not its shift */
            for (ptrdiff_t j = 0; j < jn; j++)
                fnl_colsumexp_unit_f32(x + j * c1 + k0, n, M + k0, shift + k0, lo + k0,
                                       hi + k0);
            continue;
        }
        /* every column's maximum finite and its shift: as in fnl_sumexp_unit_f32, the
         * maximal terms (each exactly 1) are counted in integer lanes and no argument exceeds
         * 0.  hi holds whole numbers (fresh chunk sums), so hi + count is what adding 1.0
         * count times gives while it stays below 2^24 (jn <= COL_CHUNK). */
        for (int q = 0; q < FNL_COLQ; q++) {
            l[q] = fnl_load16(live[q], lo + k0 + 16 * q);
            count[q] = _mm512_setzero_si512();
        }
        for (ptrdiff_t j = 0; j < jn; j++) {
            for (int q = 0; q < FNL_COLQ; q++) {
                if (q < nq) {
                    __m512 v = fnl_load16(live[q], x + j * c1 + k0 + 16 * q);
                    __m512 e = fnl_exp16_nonpos_f32(_mm512_sub_ps(v, vs[q]));
                    __mmask16 top = _mm512_mask_cmp_ps_mask(live[q], v, vm[q], _CMP_EQ_OQ);
                    l[q] = _mm512_mask_add_ps(l[q], live[q] & (__mmask16)~top, l[q], e);
                    count[q] = _mm512_mask_sub_epi32(count[q], top, count[q],
                                                     _mm512_set1_epi32(-1));
                }
            }
        }
        for (int q = 0; q < FNL_COLQ; q++) {
            __m512 h = fnl_load16(live[q], hi + k0 + 16 * q);
            _mm512_mask_storeu_ps(lo + k0 + 16 * q, live[q], l[q]);
            _mm512_mask_storeu_ps(hi + k0 + 16 * q, live[q],
                                  _mm512_add_ps(h, _mm512_cvtepi32_ps(count[q])));
        }
    }
}

FNL_INLINE void fnl_softmax_unit_f32(const float *x, ptrdiff_t n, float shift, float logs,
                                     float *out)
{
    __m512 vs = _mm512_set1_ps(shift), vl = _mm512_set1_ps(logs);
    FNL_FOR16(i, n, live,
        _mm512_mask_storeu_ps(out + i, live, fnl_exp16_f32(
            _mm512_sub_ps(_mm512_sub_ps(fnl_load16(live, x + i), vs), vl)));
    )
}

FNL_INLINE void fnl_grad_unit_f32(const float *x, ptrdiff_t n, float shift, float logs,
                                  float A, float B, float *g)
{
    __m512 vs = _mm512_set1_ps(shift), vl = _mm512_set1_ps(logs);
    __m512 va = _mm512_set1_ps(A), vb = _mm512_set1_ps(B);
    FNL_FOR16(i, n, live,
        _mm512_mask_storeu_ps(g + i, live, _mm512_fmsub_ps(va, fnl_exp16_f32(
            _mm512_sub_ps(_mm512_sub_ps(fnl_load16(live, x + i), vs), vl)), vb));
    )
}

FNL_INLINE void fnl_colsoftmax_unit_f32(const float *x, ptrdiff_t nk, const float *shift,
                                        const float *logs, float *out)
{
    FNL_FOR16(k, nk, live,
        _mm512_mask_storeu_ps(out + k, live, fnl_exp16_f32(_mm512_sub_ps(
            _mm512_sub_ps(fnl_load16(live, x + k), fnl_load16(live, shift + k)),
            fnl_load16(live, logs + k))));
    )
}

FNL_INLINE void fnl_colgrad_unit_f32(const float *x, ptrdiff_t nk, const float *shift,
                                     const float *logs, const float *A, const float *B,
                                     float wj, float *g)
{
    __m512 vw = _mm512_set1_ps(wj);
    FNL_FOR16(k, nk, live,
        __m512 e = fnl_exp16_f32(_mm512_sub_ps(
            _mm512_sub_ps(fnl_load16(live, x + k), fnl_load16(live, shift + k)),
            fnl_load16(live, logs + k)));
        _mm512_mask_storeu_ps(g + k, live, _mm512_fmsub_ps(fnl_load16(live, A + k), e,
            _mm512_mul_ps(fnl_load16(live, B + k), vw)));
    )
}
#else
FNL_DEFINE_UNIT(float, f32)
#endif
FNL_DEFINE_UNIT(double, f64)

/* ------------------------------------------------- reductions and writers ---- */
/*
 * Row helpers work on n elements x[0], x[s], x[2s], ...  Column helpers work on one class
 * row of a (C, inner) block: nk elements along the inner axis with stride sk, combined with
 * per-column accumulators (contiguous arrays of length nk owned by the caller).
 *
 *   max         max of the run, ignoring nan (x > m ? x : m)
 *   sumexp      sum of exp(x - shift) split in two: terms where x == M go to *eq (each is
 *               exactly 1 when M is finite), the others are returned.  Keeping the maximum
 *               out of the sum lets the caller use log1p for precision, as SciPy does.
 *               M is the run's maximum (nan ignored) or larger; shift is M or 0.
 *   sumdiff     sum of w * (x - ref)        (w == NULL means w = 1)
 *   tsum        sum of w * t' * (x - ref) with t' = a t + b (smoothed targets); *tw gets
 *               sum of w * t'
 *   softmax     out = exp((x - shift) - logs)
 *   logsoftmax  out = (x - shift) - logs
 *   grad        g = A exp((x - shift) - logs) - B w
 *   gradprob    g = A exp((x - shift) - logs) - S w (a t + b)
 *   nll         the NLL gather over n rows (see below)
 */
#define FNL_DEFINE(T, SUF)                                                                  \
FNL_INLINE T fnl_max_##SUF(const T *x, ptrdiff_t n, ptrdiff_t s)                           \
{                                                                                           \
    T m = -INFINITY;                                                                        \
    if (s == 1) {                                                                           \
        FNL_SIMD_MAX(m)                                                                     \
        for (ptrdiff_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;                          \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++) m = x[i * s] > m ? x[i * s] : m;                  \
    }                                                                                       \
    return m;                                                                               \
}                                                                                           \
                                                                                            \
FNL_INLINE T fnl_sumexp_##SUF(const T *x, ptrdiff_t n, ptrdiff_t s, T M, T shift, T *eq)   \
{                                                                                           \
    T lo = 0, hi = 0;                                                                       \
    if (s == 1) {                                                                           \
        fnl_sumexp_unit_##SUF(x, n, M, shift, &lo, &hi);                                   \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++) {                                                 \
            T e = fnl_exp_##SUF(x[i * s] - shift);                                          \
            int top = x[i * s] == M;                                                        \
            lo += top ? (T)0 : e;                                                           \
            hi += top ? e : (T)0;                                                           \
        }                                                                                   \
    }                                                                                       \
    *eq = hi;                                                                               \
    return lo;                                                                              \
}                                                                                           \
                                                                                            \
FNL_INLINE T fnl_sumdiff_##SUF(const T *x, ptrdiff_t n, ptrdiff_t s,                       \
                               const T *w, ptrdiff_t sw, T ref)                             \
{                                                                                           \
    T acc = 0;                                                                              \
    if (w == NULL) {                                                                        \
        if (s == 1) {                                                                       \
            FNL_SIMD_SUM(acc)                                                               \
            for (ptrdiff_t i = 0; i < n; i++) acc += x[i] - ref;                            \
        } else {                                                                            \
            for (ptrdiff_t i = 0; i < n; i++) acc += x[i * s] - ref;                        \
        }                                                                                   \
    } else if (s == 1 && sw == 1) {                                                         \
        FNL_SIMD_SUM(acc)                                                                   \
        for (ptrdiff_t i = 0; i < n; i++) acc += w[i] * (x[i] - ref);                       \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++) acc += w[i * sw] * (x[i * s] - ref);              \
    }                                                                                       \
    return acc;                                                                             \
}                                                                                           \
                                                                                            \
FNL_INLINE T fnl_tsum_##SUF(const T *x, ptrdiff_t n, ptrdiff_t s, const T *t, ptrdiff_t st, \
                            const T *w, ptrdiff_t sw, T a, T b, T ref, T *tw)               \
{                                                                                           \
    T acc = 0, tot = 0;                                                                     \
    if (s == 1 && st == 1 && (w == NULL || sw == 1)) {                                      \
        if (w == NULL) {                                                                    \
            FNL_SIMD_SUM2(acc, tot)                                                         \
            for (ptrdiff_t i = 0; i < n; i++) {                                             \
                T tt = a * t[i] + b;                                                        \
                acc += tt * (x[i] - ref);                                                   \
                tot += tt;                                                                  \
            }                                                                               \
        } else {                                                                            \
            FNL_SIMD_SUM2(acc, tot)                                                         \
            for (ptrdiff_t i = 0; i < n; i++) {                                             \
                T tt = w[i] * (a * t[i] + b);                                               \
                acc += tt * (x[i] - ref);                                                   \
                tot += tt;                                                                  \
            }                                                                               \
        }                                                                                   \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++) {                                                 \
            T tt = (w == NULL ? (T)1 : w[i * sw]) * (a * t[i * st] + b);                    \
            acc += tt * (x[i * s] - ref);                                                   \
            tot += tt;                                                                      \
        }                                                                                   \
    }                                                                                       \
    *tw = tot;                                                                              \
    return acc;                                                                             \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_softmax_##SUF(const T *x, ptrdiff_t n, ptrdiff_t s, T shift, T logs,   \
                                  T *out, ptrdiff_t so)                                     \
{                                                                                           \
    if (s == 1 && so == 1) {                                                                \
        fnl_softmax_unit_##SUF(x, n, shift, logs, out);                                     \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++)                                                   \
            out[i * so] = fnl_exp_##SUF((x[i * s] - shift) - logs);                         \
    }                                                                                       \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_logsoftmax_##SUF(const T *x, ptrdiff_t n, ptrdiff_t s, T shift, T logs,\
                                     T *out, ptrdiff_t so)                                  \
{                                                                                           \
    if (s == 1 && so == 1) {                                                                \
        FNL_SIMD                                                                            \
        for (ptrdiff_t i = 0; i < n; i++) out[i] = (x[i] - shift) - logs;                   \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++) out[i * so] = (x[i * s] - shift) - logs;          \
    }                                                                                       \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_grad_##SUF(const T *x, ptrdiff_t n, ptrdiff_t s, T shift, T logs,      \
                               T A, T B, const T *w, ptrdiff_t sw, T *g, ptrdiff_t sg)      \
{                                                                                           \
    if (s == 1 && sg == 1 && w == NULL) {                                                   \
        fnl_grad_unit_##SUF(x, n, shift, logs, A, B, g);                                    \
    } else if (s == 1 && sg == 1 && sw == 1) {                                              \
        FNL_SIMD                                                                            \
        for (ptrdiff_t i = 0; i < n; i++)                                                   \
            g[i] = A * fnl_exp_##SUF((x[i] - shift) - logs) - B * w[i];                     \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++)                                                   \
            g[i * sg] = A * fnl_exp_##SUF((x[i * s] - shift) - logs)                        \
                        - B * (w == NULL ? (T)1 : w[i * sw]);                               \
    }                                                                                       \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_gradprob_##SUF(const T *x, ptrdiff_t n, ptrdiff_t s, T shift, T logs,  \
                                   T A, T S, const T *t, ptrdiff_t st, const T *w,          \
                                   ptrdiff_t sw, T a, T b, T *g, ptrdiff_t sg)              \
{                                                                                           \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T tt = (w == NULL ? (T)1 : w[i * sw]) * (a * t[i * st] + b);                        \
        g[i * sg] = A * fnl_exp_##SUF((x[i * s] - shift) - logs) - S * tt;                  \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* pack: buf[j B + k] = x[j s1 + k sk] for j < jn, k < nk, a strided block copied into     \
 * unit-stride class rows (so that the column helpers below take their vector loops);      \
 * unpack: the reverse, from buf into y with strides (s1, sk).                             \
 * With tiles (rows of contiguous classes, s1 == 1, rows at least a tile apart), whole     \
 * L x L tiles are transposed in registers.  tail_ok says that the rows after these nk     \
 * exist: a last, partial tile of classes may then read up to L - 1 elements past a row's  \
 * jn classes (inside the next row's span) and store up to L - 1 unused class rows, so    \
 * buf must have room for jn rounded up to a multiple of L rows.  When the rows are dense   \
 * (s1 == 1, sk < 2 jn) and more follow, the next nk rows (the caller's next block) are     \
 * prefetched first, so that the block's exp passes overlap their fetch from memory: on     \
 * (228146, 27) float32, cross_entropy 5-10% and logsumexp 6-10% faster, softmax 1-4%. */   \
FNL_INLINE void fnl_pack_##SUF(const T *x, ptrdiff_t jn, ptrdiff_t s1, ptrdiff_t nk,       \
                               ptrdiff_t sk, T *buf, ptrdiff_t B, int tail_ok)              \
{                                                                                           \
    ptrdiff_t jt = 0, kt = 0;                                                               \
    if (tail_ok && s1 == 1 && sk < 2 * jn) {  /* dense rows */                              \
        /* addresses as integers: the next block may end before these nk rows do */         \
        uintptr_t p = (uintptr_t)x + (uintptr_t)(nk * sk) * sizeof(T);                     \
        uintptr_t e = p + (uintptr_t)(nk * sk) * sizeof(T);                                 \
        for (; p < e; p += 64) FNL_PREFETCH((const void *)p);                               \
    }                                                                                       \
    FNL_PACK_TILES_##SUF                                                                    \
    for (ptrdiff_t k = 0; k < nk; k++)                                                      \
        for (ptrdiff_t j = k < kt ? jt : 0; j < jn; j++) buf[j * B + k] = x[j * s1 + k * sk];\
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_unpack_##SUF(const T *buf, ptrdiff_t B, ptrdiff_t jn, ptrdiff_t nk,    \
                                 T *y, ptrdiff_t s1, ptrdiff_t sk)                          \
{                                                                                           \
    for (ptrdiff_t k = 0; k < nk; k++)                                                      \
        for (ptrdiff_t j = 0; j < jn; j++) y[j * s1 + k * sk] = buf[j * B + k];             \
}                                                                                           \
                                                                                            \
/* column helpers: x points at one class row of a block, acc arrays have length nk */      \
FNL_INLINE void fnl_colmax_##SUF(const T *x, ptrdiff_t nk, ptrdiff_t sk, T *m)             \
{                                                                                           \
    if (sk == 1) {                                                                          \
        FNL_SIMD                                                                            \
        for (ptrdiff_t k = 0; k < nk; k++) m[k] = x[k] > m[k] ? x[k] : m[k];                \
    } else {                                                                                \
        for (ptrdiff_t k = 0; k < nk; k++) m[k] = x[k * sk] > m[k] ? x[k * sk] : m[k];      \
    }                                                                                       \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_colsumexp_##SUF(const T *x, ptrdiff_t nk, ptrdiff_t sk, const T *M,    \
                                    const T *shift, T *lo, T *hi)                           \
{                                                                                           \
    if (sk == 1) {                                                                          \
        fnl_colsumexp_unit_##SUF(x, nk, M, shift, lo, hi);                                 \
    } else {                                                                                \
        for (ptrdiff_t k = 0; k < nk; k++) {                                                \
            T e = fnl_exp_##SUF(x[k * sk] - shift[k]);                                      \
            int top = x[k * sk] == M[k];                                                    \
            lo[k] += top ? (T)0 : e;                                                        \
            hi[k] += top ? e : (T)0;                                                        \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_colsumdiff_##SUF(const T *x, ptrdiff_t nk, ptrdiff_t sk, T wj,         \
                                     const T *ref, T *acc)                                  \
{                                                                                           \
    if (sk == 1) {                                                                          \
        FNL_SIMD                                                                            \
        for (ptrdiff_t k = 0; k < nk; k++) acc[k] += wj * (x[k] - ref[k]);                  \
    } else {                                                                                \
        for (ptrdiff_t k = 0; k < nk; k++) acc[k] += wj * (x[k * sk] - ref[k]);             \
    }                                                                                       \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_colsoftmax_##SUF(const T *x, ptrdiff_t nk, ptrdiff_t sk, const T *shift,\
                                     const T *logs, T *out, ptrdiff_t so, int take_log)     \
{                                                                                           \
    if (sk == 1 && so == 1) {                                                               \
        if (take_log) {                                                                     \
            FNL_SIMD                                                                        \
            for (ptrdiff_t k = 0; k < nk; k++) out[k] = (x[k] - shift[k]) - logs[k];        \
        } else {                                                                            \
            fnl_colsoftmax_unit_##SUF(x, nk, shift, logs, out);                             \
        }                                                                                   \
    } else {                                                                                \
        for (ptrdiff_t k = 0; k < nk; k++) {                                                \
            T v = (x[k * sk] - shift[k]) - logs[k];                                         \
            out[k * so] = take_log ? v : fnl_exp_##SUF(v);                                  \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
FNL_INLINE void fnl_colgrad_##SUF(const T *x, ptrdiff_t nk, ptrdiff_t sk, const T *shift,  \
                                  const T *logs, const T *A, const T *B, T wj,              \
                                  T *g, ptrdiff_t sg)                                       \
{                                                                                           \
    if (sk == 1 && sg == 1) {                                                               \
        fnl_colgrad_unit_##SUF(x, nk, shift, logs, A, B, wj, g);                            \
    } else {                                                                                \
        for (ptrdiff_t k = 0; k < nk; k++)                                                  \
            g[k * sg] = A[k] * fnl_exp_##SUF((x[k * sk] - shift[k]) - logs[k]) - B[k] * wj; \
    }                                                                                       \
}

/* The NLL gather: row r (r < n) has target t = tg[r * st] and log-probabilities
 * x[r * s0 + j * s1].  Rows with t == ignore add nothing; the others add -w[t] x[r * s0 + t s1]
 * to *acc and w[t] to *den (w == NULL: weight 1).  Returns the first row whose target is
 * outside [0, C) and not ignore (the sums are then incomplete), or -1.  Four partial sums in a
 * fixed order (so the result does not depend on threads) keep the additions off the critical
 * path: the loop is bound by how many of its scattered loads are in flight, not by one chain of
 * dependent adds. */
#define FNL_NLL_STEP(j)                                                                     \
    {                                                                                       \
        int64_t t = tg[(r + j) * st];                                                       \
        if (t != ignore) {                                                                  \
            if ((uint64_t)t >= (uint64_t)C) return r + j;                                   \
            double wt = w ? (double)w[t * sw] : 1.0;                                        \
            a##j -= wt * (double)x[(r + j) * s0 + t * s1];                                  \
            d##j += wt;                                                                     \
        }                                                                                   \
    }
#define FNL_DEFINE_NLL(T, SUF)                                                              \
FNL_INLINE ptrdiff_t fnl_nll_rows_##SUF(const T *x, ptrdiff_t s0, ptrdiff_t s1,             \
                                       const int64_t *tg, ptrdiff_t st, ptrdiff_t n,        \
                                       int64_t C, int64_t ignore, const T *w, ptrdiff_t sw, \
                                       double *acc, double *den)                            \
{                                                                                           \
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, d0 = 0, d1 = 0, d2 = 0, d3 = 0;                  \
    ptrdiff_t r = 0;                                                                        \
    for (; r + 4 <= n; r += 4) {                                                            \
        FNL_NLL_STEP(0) FNL_NLL_STEP(1) FNL_NLL_STEP(2) FNL_NLL_STEP(3)                     \
    }                                                                                       \
    for (; r < n; r++) FNL_NLL_STEP(0)                                                      \
    *acc += (a0 + a1) + (a2 + a3);                                                          \
    *den += (d0 + d1) + (d2 + d3);                                                          \
    return -1;                                                                              \
}

#ifdef FNL_HAVE_TILE
/* the tiled part of a pack: rows [0, kt) and classes [0, jt), tiles of L x L */
#define FNL_PACK_TILES(SUF, L)                                                              \
    if (s1 == 1 && sk >= (L)) {                                                             \
        kt = nk - nk % (L);                                                                 \
        jt = tail_ok ? jn : jn - jn % (L);                                                  \
        for (ptrdiff_t k0 = 0; k0 < kt; k0 += (L))                                          \
            for (ptrdiff_t j0 = 0; j0 < jt; j0 += (L))                                      \
                fnl_tile_##SUF(x + k0 * sk + j0, sk, buf + j0 * B + k0, B);                 \
    }
#define FNL_PACK_TILES_f32 FNL_PACK_TILES(f32, FNL_TILE_F32)
#define FNL_PACK_TILES_f64 FNL_PACK_TILES(f64, FNL_TILE_F64)
#else
#define FNL_PACK_TILES_f32 (void)tail_ok;
#define FNL_PACK_TILES_f64 (void)tail_ok;
#endif

FNL_DEFINE(float, f32)
FNL_DEFINE(double, f64)

#ifndef FNL_HAVE_COLROWS
/* without the AVX-512 versions: the class rows one after the other */
FNL_INLINE void fnl_colmax_rows_f32(const float *x, ptrdiff_t jn, ptrdiff_t c1, ptrdiff_t nk,
                                    float *m)
{
    for (ptrdiff_t j = 0; j < jn; j++) fnl_colmax_f32(x + j * c1, nk, 1, m);
}

FNL_INLINE void fnl_colsumexp_rows_f32(const float *x, ptrdiff_t jn, ptrdiff_t c1,
                                       ptrdiff_t nk, const float *M, const float *shift,
                                       float *lo, float *hi)
{
    for (ptrdiff_t j = 0; j < jn; j++) fnl_colsumexp_f32(x + j * c1, nk, 1, M, shift, lo, hi);
}
#endif
FNL_DEFINE_NLL(float, f32)
FNL_DEFINE_NLL(double, f64)

#endif /* FASTNLL_SIMD_H */
