/* Direct convolution of NHWC images for layers with few input channels: a network's first
   layer (1 channel for Fashion-MNIST, 3 for colour images), for the fused float inference
   (Sources/Tensors/Kernels/PackedConvolution.swift).

   oneDNN's implementations block their work by input channels, 16 at a time on AVX-512: with
   one input channel (cnn-student's first layer) its brgconv spent 5 µs an image on 56 K
   multiply-adds, over half of the layer's time in its driver (bench/onednn/inference_layouts.c,
   cnn-student, batch 32). Here each output pixel's channels are one vector (or a few), and
   a tile of 8 pixels of a row is made at once: every tap of every input channel is one
   weight vector and 8 broadcasts of input values, 8 fused multiply-adds in registers. The
   window's input rows are first copied into zero-padded scratch, so that no tile checks the
   image's left and right edges (making edge pixels one at a time, with checks, cost more than
   all the tiles of a 28-pixel row); rows above and below the image are skipped.

   Weights are [kh][kw][C][O] (packed by the caller), the output's channels innermost.
   Every path adds the taps in the same order (rows, columns, channels), the portable one
   with separate multiplies and adds, the vector ones fused: they agree to float rounding. */
#include "kernels.h"

#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

static inline float activate(float v, distill_activation activation) {
    if (activation == DISTILL_ACTIVATION_RELU) return v > 0 ? v : 0;
    if (activation == DISTILL_ACTIVATION_RELU6) return v > 0 ? (v < 6 ? v : 6) : 0;
    return v;
}

void distill_direct_convolution_portable(const distill_convolution_shape *s, const float *input, const float *weights, const float *bias,
                                         distill_activation activation, int accumulate, long firstRow, long endRow, float *output) {
    long C = s->channels, O = s->outChannels, H = s->height, W = s->width, KH = s->kernelHeight, KW = s->kernelWidth;
    for (long row = firstRow; row < endRow; row++) {
        long n = row / s->outputHeight, oy = row % s->outputHeight;
        const float *image = input + n * H * W * C;
        for (long ox = 0; ox < s->outputWidth; ox++) {
            float *o = output + (row * s->outputWidth + ox) * O;
            for (long q0 = 0; q0 < O; q0 += 16) {
                long count = O - q0 < 16 ? O - q0 : 16;
                float acc[16];
                for (long q = 0; q < count; q++) acc[q] = bias[q0 + q] + (accumulate ? o[q0 + q] : 0.0f);
                for (long ky = 0; ky < KH; ky++) {
                    long iy = oy * s->strideHeight - s->paddingHeight + ky * s->dilationHeight;
                    if (iy < 0 || iy >= H) continue;
                    for (long kx = 0; kx < KW; kx++) {
                        long ix = ox * s->strideWidth - s->paddingWidth + kx * s->dilationWidth;
                        if (ix < 0 || ix >= W) continue;
                        const float *x = image + (iy * W + ix) * C;
                        const float *w = weights + (ky * KW + kx) * C * O + q0;
                        for (long c = 0; c < C; c++)
                            for (long q = 0; q < count; q++) acc[q] += x[c] * w[c * O + q];
                    }
                }
                for (long q = 0; q < count; q++) o[q0 + q] = activate(acc[q], activation);
            }
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)

/* One path's kernel, written once for a vector type: VEC the register, LANES its floats,
   LOAD/STORE with a lane mask (MASK from a count), FMA, SET1, ZERO, MAX, MIN. `rows` is
   scratch for the window's input rows of one output row, zero-padded left and right (padding
   adds 0), so that every tile of 8 pixels reads without checks; the last tile of a row may
   run past the output's width, into zeros, and stores only its pixels. */
#define DIRECT_KERNEL(NAME, TARGET, VEC, LANES, MASKTYPE, MASK, LOAD, STORE, FMA, SET1, ZERO, MAX, MIN)                             \
    TARGET static inline VEC NAME##_activate(VEC v, distill_activation activation) {                                                \
        if (activation == DISTILL_ACTIVATION_NONE) return v;                                                                         \
        v = MAX(v, ZERO());                                                                                                           \
        return activation == DISTILL_ACTIVATION_RELU6 ? MIN(v, SET1(6.0f)) : v;                                                      \
    }                                                                                                                                \
    TARGET static void NAME##_rows(const distill_convolution_shape *s, const float *input, const float *weights, const float *bias,  \
                                   distill_activation activation, int accumulate, long firstRow, long endRow, float *output,        \
                                   float *rows, long padded, const long *offsets) {                                                 \
        long C = s->channels, O = s->outChannels, H = s->height, W = s->width, KH = s->kernelHeight;                                 \
        long pw = s->paddingWidth, OW = s->outputWidth, taps = KH * s->kernelWidth * C;                                              \
        long step = s->strideWidth * C, s1 = step, s2 = 2 * step, s3 = 3 * step, s4 = 4 * step, s5 = 5 * step, s6 = 6 * step,        \
             s7 = 7 * step;                                                                                                          \
        for (long row = firstRow; row < endRow; row++) {                                                                             \
            long n = row / s->outputHeight, oy = row % s->outputHeight;                                                              \
            long top = oy * s->strideHeight - s->paddingHeight;                                                                      \
            /* The window's input rows, zero-padded; rows outside the image are zeros. */                                         \
            for (long ky = 0; ky < KH; ky++) {                                                                                       \
                long iy = top + ky * s->dilationHeight;                                                                              \
                float *r = rows + ky * padded * C;                                                                                   \
                if (iy < 0 || iy >= H) {                                                                                             \
                    for (long i = 0; i < padded * C; i++) r[i] = 0;                                                                  \
                    continue;                                                                                                        \
                }                                                                                                                    \
                const float *source = input + ((n * H + iy) * W) * C;                                                                \
                for (long i = 0; i < pw * C; i++) r[i] = 0;                                                                          \
                for (long i = 0; i < W * C; i++) r[pw * C + i] = source[i];                                                          \
                for (long i = (pw + W) * C; i < padded * C; i++) r[i] = 0;                                                           \
            }                                                                                                                        \
            float *orow = output + row * OW * O;                                                                                     \
            for (long q0 = 0; q0 < O; q0 += LANES) {                                                                                 \
                MASKTYPE m = MASK(O - q0 < LANES ? O - q0 : LANES);                                                                  \
                VEC b = LOAD(m, bias + q0);                                                                                          \
                for (long ox = 0; ox < OW; ox += 8) {                                                                                \
                    long count = OW - ox < 8 ? OW - ox : 8;                                                                          \
                    float *o = orow + ox * O + q0;                                                                                   \
                    VEC a[8];                                                                                                        \
                    for (long p = 0; p < 8; p++) a[p] = accumulate && p < count ? b + LOAD(m, o + p * O) : b;                       \
                    VEC a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5], a6 = a[6], a7 = a[7];                      \
                    const float *r = rows + ox * step;                                                                               \
                    for (long j = 0; j < taps; j++) {                                                                                \
                        VEC wv = LOAD(m, weights + j * O + q0);                                                                      \
                        const float *xc = r + offsets[j];                                                                            \
                        a0 = FMA(SET1(xc[0]), wv, a0); a1 = FMA(SET1(xc[s1]), wv, a1);                                               \
                        a2 = FMA(SET1(xc[s2]), wv, a2); a3 = FMA(SET1(xc[s3]), wv, a3);                                              \
                        a4 = FMA(SET1(xc[s4]), wv, a4); a5 = FMA(SET1(xc[s5]), wv, a5);                                              \
                        a6 = FMA(SET1(xc[s6]), wv, a6); a7 = FMA(SET1(xc[s7]), wv, a7);                                              \
                    }                                                                                                                \
                    if (count == 8) {                                                                                                \
                        STORE(m, o, NAME##_activate(a0, activation)); STORE(m, o + O, NAME##_activate(a1, activation));              \
                        STORE(m, o + 2 * O, NAME##_activate(a2, activation)); STORE(m, o + 3 * O, NAME##_activate(a3, activation));  \
                        STORE(m, o + 4 * O, NAME##_activate(a4, activation)); STORE(m, o + 5 * O, NAME##_activate(a5, activation));  \
                        STORE(m, o + 6 * O, NAME##_activate(a6, activation)); STORE(m, o + 7 * O, NAME##_activate(a7, activation));  \
                    } else {                                                                                                         \
                        a[0] = a0; a[1] = a1; a[2] = a2; a[3] = a3; a[4] = a4; a[5] = a5; a[6] = a6; a[7] = a7;                      \
                        for (long p = 0; p < count; p++) STORE(m, o + p * O, NAME##_activate(a[p], activation));                    \
                    }                                                                                                                \
                }                                                                                                                    \
            }                                                                                                                        \
        }                                                                                                                            \
    }                                                                                                                                \
    TARGET void NAME(const distill_convolution_shape *s, const float *input, const float *weights, const float *bias,               \
                     distill_activation activation, int accumulate, long firstRow, long endRow, float *output) {                    \
        /* Columns the tiles read: up to the last tile's end, at least the padded image. */                                       \
        long tiles = (s->outputWidth + 7) / 8;                                                                                       \
        long padded = (tiles * 8 - 1) * s->strideWidth + (s->kernelWidth - 1) * s->dilationWidth + 1;                               \
        if (padded < s->width + s->paddingWidth) padded = s->width + s->paddingWidth;                                                \
        long C = s->channels, KW = s->kernelWidth, taps = s->kernelHeight * KW * C;                                                  \
        float *rows = malloc((size_t)(s->kernelHeight * padded * C) * sizeof(float));                                                \
        long *offsets = malloc((size_t)taps * sizeof(long));                                                                         \
        if (!rows || !offsets) {                                                                                                     \
            free(rows);                                                                                                              \
            free(offsets);                                                                                                           \
            distill_direct_convolution_portable(s, input, weights, bias, activation, accumulate, firstRow, endRow, output);          \
            return;                                                                                                                  \
        }                                                                                                                            \
        /* Tap j = (ky, kx, c), the weights' order: where its value lies in the scratch rows. */                                    \
        for (long j = 0; j < taps; j++) {                                                                                            \
            long ky = j / (KW * C), kx = j / C % KW, c = j % C;                                                                      \
            offsets[j] = (ky * padded + kx * s->dilationWidth) * C + c;                                                              \
        }                                                                                                                            \
        NAME##_rows(s, input, weights, bias, activation, accumulate, firstRow, endRow, output, rows, padded, offsets);              \
        free(rows);                                                                                                                  \
        free(offsets);                                                                                                               \
    }

#define AVX512 __attribute__((target("avx512f")))
AVX512 static inline __mmask16 mask16(long count) { return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1); }
AVX512 static inline __m512 load16(__mmask16 m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
AVX512 static inline void store16(__mmask16 m, float *p, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
DIRECT_KERNEL(distill_direct_convolution_avx512, AVX512, __m512, 16, __mmask16, mask16, load16, store16, _mm512_fmadd_ps, _mm512_set1_ps,
              _mm512_setzero_ps, _mm512_max_ps, _mm512_min_ps)

#define AVX2 __attribute__((target("avx2,fma")))
AVX2 static inline __m256i mask8(long count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(count >= 8 ? 8 : count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
AVX2 static inline __m256 load8(__m256i m, const float *p) { return _mm256_maskload_ps(p, m); }
AVX2 static inline void store8(__m256i m, float *p, __m256 v) { _mm256_maskstore_ps(p, m, v); }
DIRECT_KERNEL(distill_direct_convolution_avx2, AVX2, __m256, 8, __m256i, mask8, load8, store8, _mm256_fmadd_ps, _mm256_set1_ps,
              _mm256_setzero_ps, _mm256_max_ps, _mm256_min_ps)

#endif

void distill_direct_convolution_nhwc(const distill_convolution_shape *shape, const float *input, const float *weights, const float *bias,
                                     distill_activation activation, int accumulate, long firstRow, long endRow, float *output) {
    distill_kernels_ensure_chosen();
    distill_kernels.direct_convolution(shape, input, weights, bias, activation, accumulate, firstRow, endRow, output);
}
