/*
 * fastnll/_transpose_tiles.h -- register transposes of square tiles, for packing few-class rows
 * into class rows (_pack_T.h).
 *
 * fnl_tile_f32 / fnl_tile_f64: out[j * out_stride + k] = x[k * x_stride + j] for j, k < L:
 * L rows of L contiguous classes (one vector register each) are loaded, transposed in
 * registers, and stored as L class rows.
 * - AVX-512 (the x86-64-v4 build, gcc): L = 16 floats or 8 doubles, log2(L) stages of
 *   two-register shuffles written with gcc's vector extensions; stage b pairs register r
 *   with r + b and swaps their off-diagonal b x b blocks.
 * - AVX (the x86-64-v3 build): L = 8 floats or 4 doubles, the unpack / shuffle / lane-permute
 *   sequence written with intrinsics (gcc lowers the generic shuffles poorly at 256 bits).
 * Other levels define no tiles (FNL_HAVE_TILE unset) and pack element by element.
 */
#ifndef FASTNLL_TRANSPOSE_TILES_H
#define FASTNLL_TRANSPOSE_TILES_H

#include "_portable.h"

#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#define FNL_HAVE_TILE 1
#define FNL_TILE_F32 16
#define FNL_TILE_F64 8
typedef float fnl_v16sf __attribute__((vector_size(64)));
typedef int32_t fnl_v16si __attribute__((vector_size(64)));
typedef double fnl_v8df __attribute__((vector_size(64)));
typedef int64_t fnl_v8di __attribute__((vector_size(64)));

/* one stage of the transpose of L registers v[0..L): for each pair (r, r + b) with bit b of
 * r clear, the two shuffles `lo` and `hi` swap the pair's off-diagonal b x b blocks */
#define FNL_TILE_STAGE(v, L, b, lo, hi)                                                    \
    for (int r = 0; r < (L); r++) {                                                       \
        if (!(r & (b))) {                                                                 \
            __typeof__(v[0]) first_ = v[r], second_ = v[r + (b)];                         \
            v[r] = __builtin_shuffle(first_, second_, lo);                                \
            v[r + (b)] = __builtin_shuffle(first_, second_, hi);                          \
        }                                                                                 \
    }

FNL_INLINE void fnl_tile_f32(const float *x, ptrdiff_t x_stride, float *out,
                             ptrdiff_t out_stride)
{
    fnl_v16sf v[16];
    for (int r = 0; r < 16; r++) __builtin_memcpy(&v[r], x + r * x_stride, sizeof v[r]);
    FNL_TILE_STAGE(v, 16, 1, ((fnl_v16si){0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}),
                   ((fnl_v16si){1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}))
    FNL_TILE_STAGE(v, 16, 2, ((fnl_v16si){0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}),
                   ((fnl_v16si){2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}))
    FNL_TILE_STAGE(v, 16, 4, ((fnl_v16si){0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}),
                   ((fnl_v16si){4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}))
    FNL_TILE_STAGE(v, 16, 8, ((fnl_v16si){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}),
                   ((fnl_v16si){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}))
    for (int r = 0; r < 16; r++) __builtin_memcpy(out + r * out_stride, &v[r], sizeof v[r]);
}

FNL_INLINE void fnl_tile_f64(const double *x, ptrdiff_t x_stride, double *out,
                             ptrdiff_t out_stride)
{
    fnl_v8df v[8];
    for (int r = 0; r < 8; r++) __builtin_memcpy(&v[r], x + r * x_stride, sizeof v[r]);
    FNL_TILE_STAGE(v, 8, 1, ((fnl_v8di){0, 8, 2, 10, 4, 12, 6, 14}),
                   ((fnl_v8di){1, 9, 3, 11, 5, 13, 7, 15}))
    FNL_TILE_STAGE(v, 8, 2, ((fnl_v8di){0, 1, 8, 9, 4, 5, 12, 13}),
                   ((fnl_v8di){2, 3, 10, 11, 6, 7, 14, 15}))
    FNL_TILE_STAGE(v, 8, 4, ((fnl_v8di){0, 1, 2, 3, 8, 9, 10, 11}),
                   ((fnl_v8di){4, 5, 6, 7, 12, 13, 14, 15}))
    for (int r = 0; r < 8; r++) __builtin_memcpy(out + r * out_stride, &v[r], sizeof v[r]);
}

#elif defined(__AVX__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FNL_HAVE_TILE 1
#define FNL_TILE_F32 8
#define FNL_TILE_F64 4

FNL_INLINE void fnl_tile_f32(const float *x, ptrdiff_t x_stride, float *out,
                             ptrdiff_t out_stride)
{
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + i * x_stride);
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
        _mm256_storeu_ps(out + i * out_stride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(out + (i + 4) * out_stride,
                         _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}

FNL_INLINE void fnl_tile_f64(const double *x, ptrdiff_t x_stride, double *out,
                             ptrdiff_t out_stride)
{
    __m256d r[4], t[4];
    for (int i = 0; i < 4; i++) r[i] = _mm256_loadu_pd(x + i * x_stride);
    t[0] = _mm256_unpacklo_pd(r[0], r[1]);
    t[1] = _mm256_unpackhi_pd(r[0], r[1]);
    t[2] = _mm256_unpacklo_pd(r[2], r[3]);
    t[3] = _mm256_unpackhi_pd(r[2], r[3]);
    _mm256_storeu_pd(out, _mm256_permute2f128_pd(t[0], t[2], 0x20));
    _mm256_storeu_pd(out + out_stride, _mm256_permute2f128_pd(t[1], t[3], 0x20));
    _mm256_storeu_pd(out + 2 * out_stride, _mm256_permute2f128_pd(t[0], t[2], 0x31));
    _mm256_storeu_pd(out + 3 * out_stride, _mm256_permute2f128_pd(t[1], t[3], 0x31));
}
#endif

#endif /* FASTNLL_TRANSPOSE_TILES_H */
