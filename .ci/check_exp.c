/*
 * CI check of the exp loops written with intrinsics, which claim the bits of the portable
 * code (fastnll/_scalar_math.h, fastnll/_generic_loops_T.h): at x86-64-v4 the AVX-512 ones
 * (fastnll/_avx512_loops.h), at x86-64-v3 the AVX2 ones (fastnll/_avx2_loops.h), whichever
 * the flags it is built with select (VEC(name) names them).
 * 1. The vector exp (fnl_exp16_f32 or fnl_exp8_f32) gives the same bits as the portable
 *    fnl_exp_f32 compiled for the same level, for every one of the 2^32 floats (nan compared
 *    as nan); and so does its variant for arguments <= 0 (..._nonpos_f32), for every float
 *    that is not > 0; and at x86-64-v3 fnl_exp8_inrange_f32, for every float in
 *    [FNL_EXP8_LO, FNL_EXP8_HI] and every nan.  The short exp of the 16-bit row sums
 *    (fnl_exp16_short_f32 / fnl_exp8_short_f32) gives the bits of the portable
 *    fnl_exp_short_f32 for every float not > FNL_SHORT_HI (64), and that is within 4e-6 of
 *    exp (fnl_exp_f64)
 *    in relative terms on [FNL_SHORT_LO, FNL_SHORT_HI], 0 below, 1 at 0 and nan for nan.
 * 2. The row maximum (fnl_max_unit_*) equals the plain loop's; the row sum of exp
 *    (fnl_sumexp_unit_*, which counts the maximal terms when the maximum is finite) equals
 *    the plain masked-add loop over the vector exp (fnl_sumexp_all_*, which it uses
 *    otherwise), and so does the sum of a run below a larger finite maximum
 *    (fnl_sumexp_below_unit_*, no comparison); the register-blocked column helpers (fnl_colmax_rows_*,
 *    fnl_colsumexp_rows_*) equal the row-by-row fnl_colmax_f32 / fnl_colsumexp_f32, on random
 *    runs and blocks with inf, -inf and nan.
 *    The 16-bit row sums (fnl_half_sumexp_f32, fnl_half_max16_f32) reading float16 or
 *    bfloat16 in place give the bits of the same sums over a float32 copy, and are within
 *    1e-5 of float64 sums; fnl_half_softmax_f32 writes the portable short exp's values; at
 *    x86-64-v4 the 16-bit column helpers (fnl_half_colmax_rows_f32,
 *    fnl_half_colsumexp_rows_f32, fnl_half_colsumexp_lazy_f32) give the float32 copy's
 *    maxima and the portable short exp's column sums.
 * 3. The writers of softmax and of the gradient (fnl_softmax_unit_*, fnl_grad_unit_*,
 *    fnl_colsoftmax_unit_*, fnl_colgrad_unit_*), softmax's exps (fnl_expsum_unit_*) and the
 *    streaming writers (fnl_scale_stream_*, fnl_sub2_stream_*) equal scalar loops over
 *    fnl_exp_f32 and stop at the end of their run.
 * Built by .ci/run with the flags of the installed package's kernels of each level, and run
 * on a CPU that has it; about 40 s a level.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../fastnll/_loops.h"

#ifndef HI_BITS
#define HI_BITS 16      /* all 2^32 floats: the high 16 bits take all 2^16 values */
#endif

#if defined(FNL_HAVE_AVX512)
#define LANES 16
#define VEC(name) name##_avx512_f32
#define EXP_NAME "fnl_exp16_f32"
#define INRANGE_NAME "fnl_exp16_f32"   /* no variant of its own */
#define SHORT_NAME "fnl_exp16_short_f32"
static void vector_exp(const float *x, float *all, float *nonpos, float *inrange, float *sh)
{
    _mm512_storeu_ps(all, fnl_exp16_f32(_mm512_loadu_ps(x)));
    _mm512_storeu_ps(nonpos, fnl_exp16_nonpos_f32(_mm512_loadu_ps(x)));
    _mm512_storeu_ps(inrange, fnl_exp16_f32(_mm512_loadu_ps(x)));
    _mm512_storeu_ps(sh, fnl_exp16_short_f32(_mm512_loadu_ps(x)));
    _mm512_storeu_ps(sh + (1 << 16), fnl_exp16_short_out_f32(_mm512_loadu_ps(x)));
}
#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
#elif defined(FNL_HAVE_AVX2)
#define LANES 8
#define VEC(name) name##_avx2_f32
#define EXP_NAME "fnl_exp8_f32"
#define INRANGE_NAME "fnl_exp8_inrange_f32"
#define SHORT_NAME "fnl_exp8_short_f32"
static void vector_exp(const float *x, float *all, float *nonpos, float *inrange, float *sh)
{
    _mm256_storeu_ps(all, fnl_exp8_f32(_mm256_loadu_ps(x)));
    _mm256_storeu_ps(nonpos, fnl_exp8_nonpos_f32(_mm256_loadu_ps(x)));
    _mm256_storeu_ps(inrange, fnl_exp8_inrange_f32(_mm256_loadu_ps(x)));
    _mm256_storeu_ps(sh, fnl_exp8_short_f32(_mm256_loadu_ps(x)));
    _mm256_storeu_ps(sh + (1 << 16), fnl_exp8_short_out_f32(_mm256_loadu_ps(x)));
}
#define EXP_LO FNL_EXP8_LO
#define EXP_HI FNL_EXP8_HI
#else
#error "compile with the x86-64-v4 or x86-64-v3 flags: no exp loops with intrinsics"
#endif

static float xs[1 << 16], scalar[1 << 16], vector[1 << 16], nonpos[1 << 16],
    inrange[1 << 16], short_scalar[2 << 16], short_vector[2 << 16];

__attribute__((noinline)) static void scalar_exp(int n)
{
    FNL_SIMD
    for (int i = 0; i < n; i++) scalar[i] = fnl_exp_f32(xs[i]);
    FNL_SIMD
    for (int i = 0; i < n; i++) short_scalar[i] = fnl_exp_short_f32(xs[i]);
    for (int i = 0; i < n; i++) short_scalar[(1 << 16) + i] = fnl_exp_short_out_f32(xs[i]);
}

/* same bits, or both nan */
static int same(const float *a, const float *b, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) && !(a[i] != a[i] && b[i] != b[i])) return 0;
    return 1;
}

static float random_value(int kind)
{
    float u = (float)rand() / (float)RAND_MAX - 0.5f;
    int r = rand() % 60;
    if (r == 0) return -INFINITY;
    if (r == 1 && kind >= 2) return NAN;
    if (r == 2 && kind == 3) return INFINITY;
    return kind == 0 ? 20 * u : kind == 1 ? (float)(rand() % 3) : kind == 2 ? 1e30f * u
                                                                            : 200 * u;
}

/* part 2: the number of random cases whose results differ */
static long check_loops(void)
{
    static float x[32 * 1100];
    long differ = 0;
    srand(12345);
    for (int trial = 0; trial < 100000; trial++) {
        int kind = rand() % 4;
        /* a row of n elements */
        ptrdiff_t n = 1 + rand() % 1100;
        for (ptrdiff_t i = 0; i < n; i++) x[i] = random_value(kind);
        float M = -INFINITY;
        for (ptrdiff_t i = 0; i < n; i++) M = x[i] > M ? x[i] : M;
        float vM = VEC(fnl_max_unit)(x, n);
        if (vM != M && !(vM != vM && M != M)) {
            if (differ < 5) printf("row maximum, n = %td: %a vs %a\n", n, M, vM);
            differ++;
        }
        float shift = isfinite(M) ? M : 0, r[4];
        VEC(fnl_sumexp_all)(x, n, M, shift, &r[0], &r[1]);
        VEC(fnl_sumexp_unit)(x, n, M, shift, &r[2], &r[3]);
        if (!same(r, r + 2, 2)) {
            if (differ < 5) printf("row sum, n = %td: %a %a vs %a %a\n", n, r[0], r[1], r[2], r[3]);
            differ++;
        }
        /* the same run below a larger finite maximum: fnl_sumexp_below_unit_* without the
         * comparison, against fnl_sumexp_unit_* (whose at_max is then 0) */
        /* (no libm call: CI links this without -lm) */
        float above = isfinite(M) ? M + fabsf(M) * 1e-6f + 1.0f + (float)(rand() % 3) : INFINITY;
        if (isfinite(above)) {
            VEC(fnl_sumexp_unit)(x, n, above, above, &r[0], &r[1]);
            r[2] = VEC(fnl_sumexp_below_unit)(x, n, above);
            r[3] = 0;
            if (!same(r, r + 2, 2)) {
                if (differ < 5)
                    printf("row sum below %a, n = %td: %a %a vs %a\n", above, n, r[0], r[1], r[2]);
                differ++;
            }
        }
        /* a block of jn class rows of nk columns, row stride 64 */
        ptrdiff_t jn = 1 + rand() % 32, nk = 1 + rand() % 64;
        float m1[64], m2[64], sh[64], lo1[64], lo2[64], hi1[64], hi2[64];
        for (ptrdiff_t i = 0; i < 64 * jn; i++) x[i] = random_value(kind);
        for (ptrdiff_t k = 0; k < 64; k++) {
            m1[k] = m2[k] = -INFINITY;
            lo1[k] = lo2[k] = hi1[k] = hi2[k] = 0;
        }
        for (ptrdiff_t j = 0; j < jn; j++) fnl_colmax_f32(x + 64 * j, nk, 1, m1);
        VEC(fnl_colmax_rows)(x, jn, 64, nk, m2);
        for (ptrdiff_t k = 0; k < nk; k++) sh[k] = isfinite(m1[k]) ? m1[k] : 0;
        for (ptrdiff_t j = 0; j < jn; j++) fnl_colsumexp_f32(x + 64 * j, nk, 1, m1, sh, lo1, hi1);
        VEC(fnl_colsumexp_rows)(x, jn, 64, nk, m1, sh, lo2, hi2);
        if (!same(m1, m2, nk) || !same(lo1, lo2, nk) || !same(hi1, hi2, nk)) {
            if (differ < 5) printf("column block %td x %td differs\n", jn, nk);
            differ++;
        }
    }
    printf("row sums (also below a larger maximum) and column blocks against the plain loops, 3 x 100000 cases: %ld differ\n",
           differ);
    return differ;
}

/* fnl_exp_short_f32(v - shift) as a value of its own (not fused with the sum it goes into) */
__attribute__((noinline)) static float short_exp_term(float v, float shift)
{
    return fnl_exp_short_f32(v - shift);
}

/* part 2b: the sums of 16-bit rows (fnl_half_sumexp_f32, fnl_half_max16_f32, _half.h).  The
 * 16-bit values read in place give the bits of their float32 copy, with the run's maximum
 * from the same loop equal to the plain loop's; and each sum is within 1e-5 of the float64
 * sum of exp over the same terms (the sums add in their own lanes) */
static long check_half_sums(void)
{
    static float x[1100];
    static uint16_t h[1100];
    long differ = 0;
    double worst = 0;
    srand(777);
    for (int trial = 0; trial < 100000; trial++) {
        int kind = rand() % 4, fmt = 1 + rand() % 2;
        ptrdiff_t n = 1 + rand() % 1100;
        for (ptrdiff_t i = 0; i < n; i++) {
            float v = random_value(kind == 2 ? 0 : kind);
            h[i] = fnl_f32_to_half(v, fmt);
            x[i] = fnl_half_to_f32(h[i], fmt);
        }
        float M = -INFINITY;
        for (ptrdiff_t i = 0; i < n; i++) M = x[i] > M ? x[i] : M;
        float hM = fnl_half_max16_f32(h, n, fmt);
        if (memcmp(&hM, &M, 4)) {
            if (differ < 5) printf("16-bit maximum, n = %td: %a vs %a\n", n, M, hM);
            differ++;
        }
        if (!isfinite(M))
            continue;
        /* split at M, and below a larger maximum with the run's maximum taken too */
        float above = M + fabsf(M) * 1e-3f + (float)(rand() % 3) + 0.5f;
        float r[8];
        r[0] = fnl_half_sumexp_f32(x, n, FNL_SRC_F32, M, 1, &r[1], NULL);
        r[2] = fnl_half_sumexp_f32(h, n, fmt, M, 1, &r[3], NULL);
        r[4] = fnl_half_sumexp_f32(x, n, FNL_SRC_F32, above, 0, &r[5], NULL);
        r[6] = fnl_half_sumexp_f32(h, n, fmt, above, 0, &r[7], &hM);
        if (!same(r, r + 2, 2) || !same(r + 4, r + 6, 2) || memcmp(&hM, &M, 4)) {
            if (differ < 5)
                printf("16-bit sums in place, n = %td: %a %a vs %a %a; below %a: %a vs %a, "
                       "maximum %a vs %a\n", n, r[0], r[1], r[2], r[3], above, r[4], r[6], M,
                       hM);
            differ++;
        }
        double ref = 0, ref_above = 0, count = 0;
        for (ptrdiff_t i = 0; i < n; i++) {
            if (x[i] == M)
                count += 1;
            else
                ref += fnl_exp_f64((double)x[i] - (double)M);
            ref_above += fnl_exp_f64((double)x[i] - (double)above);
        }
        double e1 = fabs(r[0] - ref) / (ref + count), e2 = fabs(r[4] - ref_above) / ref_above;
        if (ref != ref) /* a nan term: nan sums */
            e1 = e2 = r[0] != r[0] && r[4] != r[4] ? 0 : 1;
        if (r[1] != count || !(e1 <= 1e-5) || !(e2 <= 1e-5)) {
            if (differ < 5)
                printf("16-bit sums, n = %td: %a (count %g) vs float64 %a (count %g); below: "
                       "%a vs %a\n", n, r[0], r[1], ref, count, r[4], ref_above);
            differ++;
        }
        worst = e1 > worst ? e1 : worst;
        worst = e2 > worst ? e2 : worst;
        /* softmax's outputs with the short exp: the portable terms, element by element */
        float log_sum = (float)fnl_log_f64(count + ref);
        static float o1[1100], o2[1100];
        for (ptrdiff_t i = 0; i < n; i++) o1[i] = fnl_exp_short_out_f32((x[i] - M) - log_sum);
        fnl_half_softmax_f32(x, n, M, log_sum, o2);
        if (!same(o1, o2, n)) {
            if (differ < 5) printf("16-bit softmax outputs, n = %td, differ\n", n);
            differ++;
        }
#if FNL_HALF_COLS_DIRECT
        /* a block of jn class rows of nk 16-bit columns (row stride 64): the columns'
         * maxima are those of the float32 copy, and the sums at those maxima are the
         * portable short exp's, added row by row, none left out (at_max untouched) when
         * every maximum is finite, else the float32 column loop's */
        ptrdiff_t jn = 1 + rand() % 17, nk = 1 + rand() % 64;
        for (ptrdiff_t i = 0; i < 64 * jn; i++) {
            h[i] = fnl_f32_to_half(random_value(kind == 2 ? 0 : kind), fmt);
            x[i] = fnl_half_to_f32(h[i], fmt);
        }
        float m1[64], m2[64], sh[64], lo1[64], lo2[64], hi1[64], hi2[64];
        int finite = 1;
        for (ptrdiff_t k = 0; k < 64; k++) {
            m1[k] = m2[k] = -INFINITY;
            lo1[k] = lo2[k] = hi1[k] = hi2[k] = (float)(k % 3);
        }
        for (ptrdiff_t j = 0; j < jn; j++) fnl_colmax_f32(x + 64 * j, nk, 1, m1);
        fnl_half_colmax_rows_f32(h, fmt, jn, 64, nk, m2);
        for (ptrdiff_t k = 0; k < nk; k++) {
            sh[k] = isfinite(m1[k]) ? m1[k] : 0;
            finite &= isfinite(m1[k]) != 0;
        }
        for (ptrdiff_t j = 0; j < jn; j++) {
            if (finite)
                for (ptrdiff_t k = 0; k < nk; k++)
                    lo1[k] += short_exp_term(x[64 * j + k], sh[k]);
            else
                fnl_colsumexp_f32(x + 64 * j, nk, 1, m1, sh, lo1, hi1);
        }
        fnl_half_colsumexp_rows_f32(h, fmt, jn, 64, nk, m1, sh, lo2, hi2);
        if (!same(m1, m2, nk) || !same(lo1, lo2, nk) || !same(hi1, hi2, nk)) {
            if (differ < 5) printf("16-bit column block %td x %td differs\n", jn, nk);
            differ++;
        }
        /* the one-pass sums at shifts below the maxima (by less than FNL_SHORT_HI, as the
         * caller keeps them; it takes this pass only where every running maximum is
         * finite), with the maxima from the same reads, continuing m1 and lo1 */
        if (!finite)
            continue;
        for (ptrdiff_t k = 0; k < nk; k++) {     /* running maxima up to 7 below the block's */
            m1[k] -= (float)(rand() % 8);
            sh[k] = m1[k] - (float)(rand() % 57);
            m2[k] = m1[k];
            lo2[k] = lo1[k];
        }
        for (ptrdiff_t j = 0; j < jn; j++)
            for (ptrdiff_t k = 0; k < nk; k++) {
                lo1[k] += short_exp_term(x[64 * j + k], sh[k]);
                m1[k] = x[64 * j + k] > m1[k] ? x[64 * j + k] : m1[k];
            }
        fnl_half_colsumexp_lazy_f32(h, fmt, jn, 64, nk, sh, lo2, m2);
        if (!same(m1, m2, nk) || !same(lo1, lo2, nk)) {
            if (differ < 5) printf("16-bit one-pass column block %td x %td differs\n", jn, nk);
            differ++;
        }
#endif
    }
    printf("16-bit row sums%s in place against their float32 copy and float64 sums, and "
           "softmax outputs against the portable short exp, 100000 cases: %ld differ (largest "
           "relative error %.2g)\n", FNL_HALF_COLS_DIRECT ? " and column blocks" : "", differ,
           worst);
    return differ;
}

/* part 3: the writers of softmax and of the gradient against scalar loops over fnl_exp_f32
 * (a run of n elements, so the masked last vector is exercised too) */
__attribute__((noinline)) static void scalar_writers(const float *x, ptrdiff_t n, float shift,
                                                     float log_sum, float a, float b,
                                                     const float *vs, const float *vl,
                                                     const float *va, const float *vb, float *o)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        o[i] = fnl_exp_f32((x[i] - shift) - log_sum);
        o[n + i] = a * fnl_exp_f32((x[i] - shift) - log_sum) - b;
        o[2 * n + i] = fnl_exp_f32((x[i] - vs[i]) - vl[i]);
        o[3 * n + i] = va[i] * fnl_exp_f32((x[i] - vs[i]) - vl[i]) - vb[i] * a;
    }
}

static long check_writers(void)
{
    static float x[1100], vs[1100], vl[1100], va[1100], vb[1100], o1[4 * 1100 + 1],
        o2[4 * 1100 + 1];
    long differ = 0;
    srand(54321);
    for (int trial = 0; trial < 100000; trial++) {
        int kind = rand() % 4;
        ptrdiff_t n = 1 + rand() % 300;
        for (ptrdiff_t i = 0; i < n; i++) {
            x[i] = random_value(kind);
            vs[i] = random_value(0);
            vl[i] = (float)rand() / (float)RAND_MAX * 8;
            va[i] = random_value(0);
            vb[i] = random_value(0);
        }
        float shift = random_value(0), log_sum = (float)rand() / (float)RAND_MAX * 8;
        float a = random_value(0), b = random_value(0);
        scalar_writers(x, n, shift, log_sum, a, b, vs, vl, va, vb, o1);
        o2[4 * n] = o1[4 * n] = 12345.0f;     /* a sentinel past the run */
        VEC(fnl_softmax_unit)(x, n, shift, log_sum, o2);
        VEC(fnl_grad_unit)(x, n, shift, log_sum, a, b, o2 + n);
        VEC(fnl_colsoftmax_unit)(x, n, vs, vl, o2 + 2 * n);
        VEC(fnl_colgrad_unit)(x, n, vs, vl, va, vb, a, o2 + 3 * n);
        if (!same(o1, o2, 4 * n + 1)) {
            if (differ < 5) printf("writers, n = %td, kind %d differ\n", n, kind);
            differ++;
        }
        /* softmax's exps exp(x - M) written by fnl_expsum_unit (M the run's finite maximum;
         * its sum adds in lanes, an order of its own, and is not compared), and the
         * streaming writers (from an odd offset, so their alignment head runs too) */
        float M = -INFINITY;
        for (ptrdiff_t i = 0; i < n; i++) M = x[i] > M ? x[i] : M;
        if (isfinite(M)) {
            for (ptrdiff_t i = 0; i < n; i++) o1[i] = fnl_exp_f32(x[i] - M);
            o2[n] = o1[n] = 12345.0f;
            (void)VEC(fnl_expsum_unit)(x, n, M, o2);
            if (!same(o1, o2, n + 1)) {
                if (differ < 5) printf("exps of softmax, n = %td, kind %d differ\n", n, kind);
                differ++;
            }
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            o1[1 + i] = x[i] * a;
            o1[2 + n + i] = (x[i] - shift) - log_sum;
        }
        o1[0] = o2[0] = o1[1 + n] = o2[1 + n] = o1[2 + 2 * n] = o2[2 + 2 * n] = 12345.0f;
        VEC(fnl_scale_stream)(x, n, a, o2 + 1);
        VEC(fnl_sub2_stream)(x, n, shift, log_sum, o2 + 2 + n);
        if (!same(o1, o2, 2 * n + 3)) {
            if (differ < 5) printf("streaming writers, n = %td, kind %d differ\n", n, kind);
            differ++;
        }
    }
    printf("softmax and gradient writers (and softmax's exps, the streaming writers) against "
           "scalar loops, 100000 cases: %ld differ\n",
           differ);
    return differ;
}

int main(void)
{
    long differ = 0, differ_nonpos = 0, differ_inrange = 0, differ_short = 0, short_bad = 0;
    double short_worst = 0;
    for (uint32_t hi = 0; hi < (1u << HI_BITS); hi++) {
        for (uint32_t lo = 0; lo < (1u << 16); lo++) {
            uint32_t bits = (hi << 16) | lo;
            memcpy(&xs[lo], &bits, 4);
        }
        scalar_exp(1 << 16);
        for (int i = 0; i < (1 << 16); i += LANES)
            vector_exp(xs + i, vector + i, nonpos + i, inrange + i, short_vector + i);
        for (int i = 0; i < (1 << 16); i++) {
            int both_nan = scalar[i] != scalar[i] && vector[i] != vector[i];
            if (!both_nan && memcmp(&scalar[i], &vector[i], 4)) {
                if (differ < 5)
                    printf("x = %a: fnl_exp_f32 %a, " EXP_NAME " %a\n", xs[i], scalar[i],
                           vector[i]);
                differ++;
            }
            both_nan = scalar[i] != scalar[i] && nonpos[i] != nonpos[i];
            if (!(xs[i] > 0) && !both_nan && memcmp(&scalar[i], &nonpos[i], 4)) {
                if (differ_nonpos < 5)
                    printf("x = %a: fnl_exp_f32 %a, " EXP_NAME " (nonpos) %a\n", xs[i],
                           scalar[i], nonpos[i]);
                differ_nonpos++;
            }
            /* the short exp: the portable code's bits for every float not > FNL_SHORT_HI, a
             * nan for a nan, 0 below FNL_SHORT_LO, 1 at 0, and a relative error below 4e-6
             * between */
            if (!(xs[i] > FNL_SHORT_HI)) {
                float a = short_scalar[i], b = short_vector[i];
                float ao = short_scalar[(1 << 16) + i], bo = short_vector[(1 << 16) + i];
                /* the softmax outputs' form: the short exp, float32's exp below its range */
                float want = xs[i] < FNL_SHORT_LO ? scalar[i] : a;
                if ((memcmp(&ao, &bo, 4) || memcmp(&ao, &want, 4)) && !(ao != ao && bo != bo)) {
                    if (differ_short < 5)
                        printf("x = %a: fnl_exp_short_out_f32 %a, vector %a\n", xs[i], ao, bo);
                    differ_short++;
                }
                if (memcmp(&a, &b, 4) && !(a != a && b != b)) {
                    if (differ_short < 5)
                        printf("x = %a: fnl_exp_short_f32 %a, " SHORT_NAME " %a\n", xs[i], a,
                               b);
                    differ_short++;
                }
                int ok;
                if (xs[i] != xs[i]) {
                    ok = a != a;
                } else if (xs[i] < FNL_SHORT_LO) {
                    ok = a == 0;
                } else {
                    double ref = fnl_exp_f64((double)xs[i]);
                    double err = fabs((double)a - ref) / ref;
                    short_worst = err > short_worst ? err : short_worst;
                    ok = err < 4e-6 && (xs[i] != 0 || a == 1);
                }
                if (!ok) {
                    if (short_bad < 5) printf("x = %a: fnl_exp_short_f32 %a\n", xs[i], a);
                    short_bad++;
                }
            }
            both_nan = scalar[i] != scalar[i] && inrange[i] != inrange[i];
            int in = (xs[i] >= EXP_LO && xs[i] <= EXP_HI) || xs[i] != xs[i];
            if (in && !both_nan && memcmp(&scalar[i], &inrange[i], 4)) {
                if (differ_inrange < 5)
                    printf("x = %a: fnl_exp_f32 %a, " INRANGE_NAME " %a\n", xs[i], scalar[i],
                           inrange[i]);
                differ_inrange++;
            }
        }
    }
    printf(EXP_NAME " vs fnl_exp_f32 on all 2^32 floats: %ld differ\n", differ);
    printf(EXP_NAME " (nonpos) vs fnl_exp_f32 on the 2^31 + 2^23 floats not > 0: %ld differ\n",
           differ_nonpos);
    printf(INRANGE_NAME " vs fnl_exp_f32 on the floats in [%g, %g] and nan: %ld differ\n",
           (double)EXP_LO, (double)EXP_HI, differ_inrange);
    printf(SHORT_NAME " vs fnl_exp_short_f32 (and the softmax outputs' form, "
           "fnl_exp_short_out_f32) on the floats not > %g: %ld differ; against exp: %ld out of "
           "bounds, largest relative error %.3g\n", (double)FNL_SHORT_HI, differ_short,
           short_bad, short_worst);
    long differ_loops = check_loops() + check_half_sums() + check_writers();
    return differ != 0 || differ_nonpos != 0 || differ_inrange != 0 || differ_short != 0
           || short_bad != 0 || differ_loops != 0;
}
