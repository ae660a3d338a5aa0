/*
 * fastnll/_scalar_math.h -- the one exp and log of the project, written so that gcc
 * vectorises them without -ffast-math (which would break inf/nan semantics).
 *
 * exp: fnl_exp_f32 / fnl_exp_f64, branch-free.  Range reduction x = n ln2 + r with a
 *   two-constant (Cody-Waite) ln2, a Taylor polynomial on |r| <= ln2/2 (degree 7 for float,
 *   13 for double: truncation below a quarter of an ulp), and 2^n built from exponent bits as
 *   two factors so that subnormal results round once and correctly.  exp(-inf) = 0,
 *   exp(+inf) = inf and exp(nan) = nan come out of the same arithmetic.  The AVX-512 loops
 *   (_avx512_loops.h) use a vector form of fnl_exp_f32 with the same bits.
 * log: fnl_log_f64 for any double, fnl_log_ge1_f64 for the finite x >= 1 that finishing a
 *   log-sum-exp needs, fnl_log1p_pos_f64 for u >= 0, fnl_log_sums for a block of sums at once.
 */
#ifndef FASTNLL_SCALAR_MATH_H
#define FASTNLL_SCALAR_MATH_H

#include "_portable.h"

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

/* The short exp of the row sums of 16-bit input (_half.h): exp(x) for x <= 0 (or nan; and up
 * to FNL_SHORT_HI) with a relative error below 4e-6 (3.19e-6: .ci/check_exp.c measures it
 * over every float, in the builds that fuse the multiply-adds, x86-64-v3 and v4), where the
 * 16-bit formats keep 2^-11 (float16) or 2^-8 (bfloat16).  Six multiply-adds instead of
 * fnl_exp_f32's ten: one step of range reduction (x - n ln2, ln2 rounded to float, with
 * |n| <= 125), and a degree-4 polynomial fitted for the least maximal relative error on
 * [-ln2/2, ln2/2] (p(0) = 1, so exp(0) is 1).  Below FNL_SHORT_LO the result is 0 instead of
 * a value under 2^-124.7: the 16-bit sums add these terms to a maximal term of 1, where they
 * cannot show, and 2^n then stays a normal float (its bits (n + 127) << 23). */
#define FNL_SHORT_LO (-86.5f)
/* the short exp keeps its relative error (and bits) up to here too: the column sums of
 * 16-bit input (fnl_half_colsumexp_lazy_f32) take it at a shift up to this far below the
 * terms */
#define FNL_SHORT_HI 64.0f
#define FNL_SHORT_C1 0.9999671578407288f
#define FNL_SHORT_C2 0.5000320672988892f
#define FNL_SHORT_C3 0.1678726226091385f
#define FNL_SHORT_C4 0.041498295962810516f
FNL_INLINE float fnl_exp_short_f32(float x)
{
    fnl_bits32 t, s;
    t.f = x * 1.44269504088896341f + 12582912.0f;   /* n in the low bits, as in fnl_exp_f32 */
    float n = t.f - 12582912.0f;
    float r = x - n * 0.693147182f;
    float p = FNL_SHORT_C4;
    p = p * r + FNL_SHORT_C3;
    p = p * r + FNL_SHORT_C2;
    p = p * r + FNL_SHORT_C1;
    p = p * r + 1.0f;
    /* (n + 127) << 23, from t's bits: 0x4B400000 << 23 vanishes modulo 2^32 */
    s.i = (int32_t)(((uint32_t)t.i << 23) + 0x3F800000u);
    return x < FNL_SHORT_LO ? 0.0f : p * s.f;
}

/* The short exp of 16-bit softmax outputs: below FNL_SHORT_LO, where fnl_exp_short_f32 gives
 * 0, fnl_exp_f32, whose results there (down to 2^-149) bfloat16, with float32's exponent
 * range, keeps (its subnormals reach 2^-133) */
FNL_INLINE float fnl_exp_short_out_f32(float x)
{
    return x < FNL_SHORT_LO ? fnl_exp_f32(x) : fnl_exp_short_f32(x);
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
    fnl_bits64 b, field;
    b.f = x;
    /* the exponent field as a double, exactly: placed in the mantissa of 2^52 with a logical
     * shift and an OR (the int64 arithmetic shift and int64 -> double conversion this replaces
     * have no AVX2 instruction, which kept gcc from vectorising the loops around it below
     * x86-64-v4) */
    field.i = (int64_t)(((uint64_t)b.i >> 52) & 0x7ff) | INT64_C(0x4330000000000000);
    b.i = (b.i & INT64_C(0x000fffffffffffff)) | INT64_C(0x3ff0000000000000);
    double m = b.f;                                 /* [1, 2) */
    int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    double ed = ((field.f - 4503599627370496.0) - 1023.0) + (big ? 1.0 : 0.0);  /* e, exact */
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
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
    double logm = 2.0 * s + 2.0 * s * (z * p);
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

/* log_sum[k] = log(at_max[k] + rest[k]) for n sums at once, with one log each: the sum v is
 * rounded, and its rounding error d (TwoSum, exact whatever the order of the two terms) is
 * added back to first order, log(v + d) = log(v) + d / v.  A small rest next to at_max = 1
 * (a confident row) therefore keeps its digits, as with log1p.  Valid where at_max >= 1 and
 * rest >= 0 are finite, or at_max = 0 and rest >= 1 (the one-pass column sums of 16-bit
 * input: rest holds the maximal terms); the caller redoes the other sums
 * (finish_logs_many in _lse.pxd). */
FNL_INLINE void fnl_log_sums(const double *rest, const double *at_max, double *log_sum,
                             ptrdiff_t n)
{
    FNL_SIMD
    for (ptrdiff_t k = 0; k < n; k++) {
        double v = at_max[k] + rest[k];
        double z = v - at_max[k];
        double d = (at_max[k] - (v - z)) + (rest[k] - z);
        log_sum[k] = v == INFINITY ? INFINITY : fnl_log_ge1_f64(v) + d / v;
    }
}

/* log1p(u) for 0 <= u <= 1 in float: 2 atanh(s), s = u / (2 + u) in [0, 1/3], by its series
 * to s^15 (the rest is below 2^-28 of the result); about 2 ulp.  The float counterpart of
 * fnl_log_ge1_f64's series, on a narrower range (no exponent to split off). */
FNL_INLINE float fnl_log1p01_f32(float u)
{
    float s = u / (2.0f + u);
    float s2 = s * s;
    float p = 2.0f / 15.0f;
    p = p * s2 + 2.0f / 13.0f;
    p = p * s2 + 2.0f / 11.0f;
    p = p * s2 + 2.0f / 9.0f;
    p = p * s2 + 2.0f / 7.0f;
    p = p * s2 + 2.0f / 5.0f;
    p = p * s2 + 2.0f / 3.0f;
    return s * (2.0f + s2 * p);
}

/* Binary cross-entropy with logits of one float element: loss = w ((1 - y) x + lw
 * softplus(-x)) and dx = w ((1 - y) - lw sigmoid(-x)), lw = 1 + (pw - 1) y (PyTorch's loss),
 * with e = exp(-|x|), l = log1p(e), softplus(-x) = l + max(-x, 0), and sigmoid(-x) = q =
 * e / (1 + e) for x >= 0, r = 1 / (1 + e) for x < 0.  For a negative x (with y and pw
 * finite) the same quantities are written so that nothing cancels:
 *   loss = w (lw l - pw y x),   dx = w (lw q - pw y)
 * so that a confident correct prediction keeps its small loss and gradient (y = 0, x = -30:
 * 9.4e-14, where 1 - sigmoid(-x) in double kept 3 digits, and nothing from x = -37 on).
 * Infinite or nan y or pw take the first form, whose infinities and nans are PyTorch's (and
 * nan, infinite or large x the double loss: FNL_BCE_F32_MAX below).
 * The transcendental parts (exp, log1p, the reciprocal of 1 + e) in float, 16 lanes at
 * x86-64-v4 and short polynomials (in double they made the loop compute-bound at 2.6 ns an
 * element); the combination in double, so that large logits and weights overflow where
 * they do in double. */
typedef struct {
    double loss;
    double dx;
} fnl_loss_dx;

FNL_INLINE fnl_loss_dx fnl_bce_f32(float x, float y, float w, float pw)
{
    float e = fnl_exp_f32(-fabsf(x));
    float r = 1.0f / (1.0f + e);
    float q = e * r;
    double l = fnl_log1p01_f32(e);
    double xd = x, yd = y, pwd = pw;
    double lw = 1 + (pwd - 1) * yd;
    int tail = x < 0 && x > -INFINITY && isfinite(y) && isfinite(pw);
    /* both forms as loss = w (a x + lw s), dx = w (a + lw d) */
    double a = tail ? -pwd * yd : 1 - yd;
    double s = tail ? l : l + (x < 0 ? -xd : 0.0);
    double d = tail ? (double)q : -(double)(x >= 0 ? q : r);
    fnl_loss_dx res;
    res.loss = (double)w * (a * xd + lw * s);
    res.dx = (double)w * (a + lw * d);
    return res;
}

/* Logits that fnl_bce_f32 takes: |x| <= 80, where exp(-|x|) is still a normal float (a
 * subnormal or zero e would lose the tiny results that a large weight scales up, and turn
 * inf * e into nan).  Others (nan, infinities, |x| > 80) take the double loss. */
#define FNL_BCE_F32_MAX 80.0f

/* 1 when every x of a unit-stride run is one fnl_bce_f32 takes */
FNL_INLINE int fnl_bce_f32_takes(const float *x, ptrdiff_t n)
{
    int out = 0;
    FNL_PRAGMA(omp simd reduction(+ : out))
    for (ptrdiff_t i = 0; i < n; i++)
        out += !(fabsf(x[i]) <= FNL_BCE_F32_MAX);
    return out == 0;
}

/* fnl_bce_f32 over a unit-stride run (w, pw: arrays of the run's length) */
FNL_INLINE void fnl_bce_unit_f32(const float *x, const float *y, const float *w,
                                 const float *pw, ptrdiff_t n, double *loss, double *dx)
{
    FNL_SIMD
    for (ptrdiff_t i = 0; i < n; i++) {
        fnl_loss_dx r = fnl_bce_f32(x[i], y[i], w[i], pw[i]);
        loss[i] = r.loss;
        dx[i] = r.dx;
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

#endif /* FASTNLL_SCALAR_MATH_H */
