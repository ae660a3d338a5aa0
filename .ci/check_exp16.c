/*
 * CI check of the AVX-512 exp loops in fastnll/_avx512_loops.h (x86-64-v4), which claim the
 * bits of the portable code (fastnll/_scalar_math.h, fastnll/_generic_loops_T.h):
 * 1. fnl_exp16_f32 gives the same bits as the portable fnl_exp_f32 compiled for the same
 *    level, for every one of the 2^32 floats (nan compared as nan); and so does its variant
 *    for arguments <= 0, fnl_exp16_nonpos_f32, for every float that is not > 0.
 * 2. The row sum of exp (fnl_sumexp_unit_avx512_f32, which counts the maximal terms when the
 *    maximum is finite) equals the plain masked-add loop over fnl_exp16_f32
 *    (fnl_sumexp_all_avx512_f32, which it uses otherwise), and the register-blocked column
 *    helpers (fnl_colmax_rows_avx512_f32, fnl_colsumexp_rows_avx512_f32) equal the row-by-row
 *    fnl_colmax_f32 / fnl_colsumexp_f32, on random runs and blocks with inf, -inf and nan.
 * Built by .ci/run with the flags of the installed package's x86-64-v4 kernels, and run only
 * on a CPU with AVX-512; a few seconds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../fastnll/_loops.h"

#ifndef FNL_HAVE_AVX512
#error "compile with the x86-64-v4 flags: fnl_exp16_f32 is not defined"
#endif

static float xs[1 << 16], scalar[1 << 16], vector[1 << 16], nonpos[1 << 16];

__attribute__((noinline)) static void scalar_exp(int n)
{
    FNL_SIMD
    for (int i = 0; i < n; i++) scalar[i] = fnl_exp_f32(xs[i]);
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
        float shift = isfinite(M) ? M : 0, r[4];
        fnl_sumexp_all_avx512_f32(x, n, M, shift, &r[0], &r[1]);
        fnl_sumexp_unit_avx512_f32(x, n, M, shift, &r[2], &r[3]);
        if (!same(r, r + 2, 2)) {
            if (differ < 5) printf("row sum, n = %td: %a %a vs %a %a\n", n, r[0], r[1], r[2], r[3]);
            differ++;
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
        fnl_colmax_rows_avx512_f32(x, jn, 64, nk, m2);
        for (ptrdiff_t k = 0; k < nk; k++) sh[k] = isfinite(m1[k]) ? m1[k] : 0;
        for (ptrdiff_t j = 0; j < jn; j++) fnl_colsumexp_f32(x + 64 * j, nk, 1, m1, sh, lo1, hi1);
        fnl_colsumexp_rows_avx512_f32(x, jn, 64, nk, m1, sh, lo2, hi2);
        if (!same(m1, m2, nk) || !same(lo1, lo2, nk) || !same(hi1, hi2, nk)) {
            if (differ < 5) printf("column block %td x %td differs\n", jn, nk);
            differ++;
        }
    }
    printf("row sums and column blocks against the plain loops, 2 x 100000 cases: %ld differ\n",
           differ);
    return differ;
}

int main(void)
{
    long differ = 0, differ_nonpos = 0;
    for (uint32_t hi = 0; hi < (1u << 16); hi++) {
        for (uint32_t lo = 0; lo < (1u << 16); lo++) {
            uint32_t bits = (hi << 16) | lo;
            memcpy(&xs[lo], &bits, 4);
        }
        scalar_exp(1 << 16);
        for (int i = 0; i < (1 << 16); i += 16)
        {
            _mm512_storeu_ps(vector + i, fnl_exp16_f32(_mm512_loadu_ps(xs + i)));
            _mm512_storeu_ps(nonpos + i, fnl_exp16_nonpos_f32(_mm512_loadu_ps(xs + i)));
        }
        for (int i = 0; i < (1 << 16); i++) {
            int both_nan = scalar[i] != scalar[i] && vector[i] != vector[i];
            if (!both_nan && memcmp(&scalar[i], &vector[i], 4)) {
                if (differ < 5)
                    printf("x = %a: fnl_exp_f32 %a, fnl_exp16_f32 %a\n", xs[i], scalar[i],
                           vector[i]);
                differ++;
            }
            both_nan = scalar[i] != scalar[i] && nonpos[i] != nonpos[i];
            if (!(xs[i] > 0) && !both_nan && memcmp(&scalar[i], &nonpos[i], 4)) {
                if (differ_nonpos < 5)
                    printf("x = %a: fnl_exp_f32 %a, fnl_exp16_nonpos_f32 %a\n", xs[i],
                           scalar[i], nonpos[i]);
                differ_nonpos++;
            }
        }
    }
    printf("fnl_exp16_f32 vs fnl_exp_f32 on all 2^32 floats: %ld differ\n", differ);
    printf("fnl_exp16_nonpos_f32 vs fnl_exp_f32 on the 2^31 + 2^23 floats not > 0: %ld differ\n",
           differ_nonpos);
    long differ_loops = check_loops();
    return differ != 0 || differ_nonpos != 0 || differ_loops != 0;
}
