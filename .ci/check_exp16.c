/*
 * CI check: at x86-64-v4, the AVX-512 exp (fnl_exp16_f32 in fastnll/_simd.h) must give the
 * same bits as the portable fnl_exp_f32 compiled for the same level, for every one of the
 * 2^32 floats (nan compared as nan); and so must its variant for arguments <= 0
 * (fnl_exp16_nonpos_f32), for every float that is not > 0.  Built by .ci/run with the flags of the installed
 * package's x86-64-v4 kernels, and run only on a CPU with AVX-512; a few seconds.
 */
#include <stdio.h>
#include <string.h>
#include "../fastnll/_simd.h"

#ifndef FNL_HAVE_EXP16
#error "compile with the x86-64-v4 flags: fnl_exp16_f32 is not defined"
#endif

static float xs[1 << 16], scalar[1 << 16], vector[1 << 16], nonpos[1 << 16];

__attribute__((noinline)) static void scalar_exp(int n)
{
    FNL_SIMD
    for (int i = 0; i < n; i++) scalar[i] = fnl_exp_f32(xs[i]);
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
    return differ != 0 || differ_nonpos != 0;
}
