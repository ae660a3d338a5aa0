/*
 * CI check of the 16-bit conversions of fastnll/_half.h at the SIMD level it is built for:
 * the row loops (fnl_half_load_f32, fnl_half_load_max_f32, fnl_half_store_f32: F16C
 * instructions for float16 at x86-64-v3 and v4, vectorised loops for bfloat16; unit stride,
 * and loads at stride 2) against the scalar portable conversions, for every one of the 2^16
 * values of each format (loads, bit for bit, nan included; the maxima of load_max over
 * windows of every length up to 70 and a few longer ones, at every start, against a scalar
 * maximum) and every one of the 2^32 floats (stores; nan compared as nan: its payload bits
 * may differ); at x86-64-v3 and v4 also the in-place maximum of 16-bit rows and the one-pass
 * softmax writer (fnl_half_max16_f32, fnl_half_write16_f32) on every 16-bit value.  The scalar
 * conversions themselves are checked against NumPy's and ml_dtypes' by tests/test_half.py.
 * Built by .ci/run with the installed package's flags of each level; about 20 s a level.
 */
#include <stdio.h>
#include <stdlib.h>
#include "../fastnll/_half.h"

#define BATCH (1u << 16)

static int is_nan16(uint16_t h, int kind)
{
    return kind == FNL_BF16 ? ((h & 0x7fffu) > 0x7f80u) : ((h & 0x7fffu) > 0x7c00u);
}

int main(void)
{
    uint16_t *h = malloc(BATCH * sizeof *h), *out = malloc(BATCH * sizeof *out);
    float *f = malloc(BATCH * sizeof *f);
    long bad = 0;
    if (!h || !out || !f)
        return 2;
    for (int kind = FNL_F16; kind <= FNL_BF16; kind++) {
        const char *name = kind == FNL_F16 ? "float16" : "bfloat16";
        for (uint32_t i = 0; i < BATCH; i++)
            h[i] = (uint16_t)i;
        for (int s = 1; s <= 2; s++) {      /* unit stride, and stride 2 from 0 and from 1 */
            for (int off = 0; off < s; off++) {
                fnl_half_load_f32(h + off, BATCH / s, s, kind, f);
                for (uint32_t i = 0; i < BATCH / s; i++) {
                    uint16_t v = h[off + i * s];
                    float ref = fnl_half_to_f32(v, kind);
                    if (fnl_f32_bits(f[i]) != fnl_f32_bits(ref)) {     /* nan too */
                        if (bad++ < 10)
                            printf("%s load %04x: %a, portable %a\n", name, (unsigned)v, f[i],
                                   ref);
                    }
                }
            }
        }
        /* load_max: the loaded values as fnl_half_load_f32's, the maximum as a scalar
         * loop's (nan ignored) over windows at every start; the full array at stride 2 */
        static const uint32_t lens[] = {1024, 1000, 333, 129};
        for (uint32_t k = 0; k < 70 + sizeof lens / sizeof lens[0]; k++) {
            uint32_t len = k < 70 ? k + 1 : lens[k - 70];
            for (uint32_t a = 0; a + len <= BATCH; a += (k < 70 ? 1 : 7)) {
                float m = fnl_half_load_max_f32(h + a, len, 1, kind, f), ref = -INFINITY;
                for (uint32_t i = 0; i < len; i++) {
                    float v = fnl_half_to_f32(h[a + i], kind);
                    ref = v > ref ? v : ref;
                    if (fnl_f32_bits(f[i]) != fnl_f32_bits(v) && bad++ < 10)
                        printf("%s load_max %04x: %a, portable %a\n", name,
                               (unsigned)h[a + i], f[i], v);
                }
                if (m != ref && bad++ < 10)
                    printf("%s load_max of %u from %04x: %a, scalar %a\n", name, len,
                           (unsigned)a, m, ref);
            }
        }
        {
            float m = fnl_half_load_max_f32(h + 1, BATCH / 2, 2, kind, f), ref = -INFINITY;
            for (uint32_t i = 0; i < BATCH / 2; i++) {
                float v = fnl_half_to_f32(h[1 + 2 * i], kind);
                ref = v > ref ? v : ref;
            }
            if (m != ref && bad++ < 10)
                printf("%s load_max at stride 2: %a, scalar %a\n", name, m, ref);
        }
        for (uint64_t hi = 0; hi < (1u << 16); hi++) {
            for (uint32_t i = 0; i < BATCH; i++)
                f[i] = fnl_bits_f32((uint32_t)(hi << 16) | i);
            fnl_half_store_f32(f, BATCH, kind, out, 1);
            for (uint32_t i = 0; i < BATCH; i++) {
                uint16_t ref = fnl_f32_to_half(f[i], kind);
                if (out[i] != ref && !(is_nan16(out[i], kind) && is_nan16(ref, kind))) {
                    if (bad++ < 10)
                        printf("%s store %a: %04x, portable %04x\n", name, f[i],
                               (unsigned)out[i], (unsigned)ref);
                }
            }
        }
#if FNL_HALF_DIRECT
        /* x86-64-v3 and v4 read contiguous 16-bit rows in place: the maximum of the row sums
         * (fnl_half_max16_f32) against a scalar loop, and the one-pass writer of log_softmax
         * and softmax outputs (fnl_half_write16_f32: conversions and rounding in registers,
         * cached or non-temporal stores) against the portable formula, over every 16-bit value
         * from 40 starts and output offsets (the softmax side where the exp's argument is not
         * > 0, as its callers guarantee) */
        for (uint32_t k = 0; k < 40; k++) {
            uint32_t len = BATCH - 64;
            float m = fnl_half_max16_f32(h + k, len, kind), ref = -INFINITY;
            for (uint32_t i = 0; i < len; i++) {
                float v = fnl_half_to_f32(h[k + i], kind);
                ref = v > ref ? v : ref;
            }
            if (m != ref && bad++ < 10)
                printf("%s max16 of %u from %u: %a, scalar %a\n", name, len, k, m, ref);
            for (int take_log = 0; take_log <= 1; take_log++) {
                for (int stream = 0; stream <= 1; stream++) {
                    float shift = take_log ? 0.0f : 3.0f, log_sum = take_log ? 0.0f : 0.5f;
                    uint16_t *y = out + (k * 5) % 17;
                    fnl_half_write16_f32(h + k, y, len, kind, shift, log_sum, take_log, stream);
                    fnl_stream_fence();
                    for (uint32_t i = 0; i < len; i++) {
                        float d = (fnl_half_to_f32(h[k + i], kind) - shift) - log_sum;
                        if (!take_log && d > 0)
                            continue;
                        uint16_t want = fnl_f32_to_half(take_log ? d
                                                                 : fnl_exp_short_out_f32(d),
                                                        kind);
                        if (y[i] != want && !(is_nan16(y[i], kind) && is_nan16(want, kind))
                            && bad++ < 10)
                            printf("%s write16 (log %d, stream %d) of %04x: %04x, portable "
                                   "%04x\n", name, take_log, stream, (unsigned)h[k + i],
                                   (unsigned)y[i], (unsigned)want);
                    }
                }
            }
        }
#endif
        printf("%s: every 16-bit value loaded, every float stored\n", name);
    }
    printf("%ld differ\n", bad);
    return bad != 0;
}
