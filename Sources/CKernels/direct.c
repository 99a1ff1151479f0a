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
DIRECT_KERNEL(distill_direct_convolution_avx512_channels, AVX512, __m512, 16, __mmask16, mask16, load16, store16, _mm512_fmadd_ps,
              _mm512_set1_ps, _mm512_setzero_ps, _mm512_max_ps, _mm512_min_ps)

/* One input channel, stride and dilation 1, 8 output channels, no residual sum (cnn-student's
   first layer; 2.6-2.8 against 3.8 µs an image for the kernel above, by
   bench/onednn/direct_first_layer.c; with 16 output channels the kernel above fills its
   lanes and was faster, 3.9 against 4.5): 16 pixels of a row are one register, so that a tap is one load
   of 16 neighbouring input values and 8 fused multiply-adds with broadcast weights, one per
   output channel; half the work a pixel of the kernel above, whose 16 lanes hold only 8
   channels here. The 8 channels × 16 pixels are then transposed into 16 pixels of 8
   channels (two 8 × 8 transposes side by side). Same taps in the same order: the same sums. */
AVX512 static void single_channel_rows(const distill_convolution_shape *s, const float *input, const float *weights, const float *bias,
                                       distill_activation activation, long firstRow, long endRow, float *output, float *rows,
                                       long padded) {
    long H = s->height, W = s->width, KH = s->kernelHeight, KW = s->kernelWidth, O = s->outChannels, OW = s->outputWidth;
    long pw = s->paddingWidth;
    const __m512i low = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i high = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    for (long row = firstRow; row < endRow; row++) {
        long n = row / s->outputHeight, oy = row % s->outputHeight, top = oy - s->paddingHeight;
        for (long ky = 0; ky < KH; ky++) {
            long iy = top + ky;
            float *r = rows + ky * padded;
            if (iy < 0 || iy >= H) {
                for (long i = 0; i < padded; i++) r[i] = 0;
                continue;
            }
            const float *source = input + (n * H + iy) * W;
            for (long i = 0; i < pw; i++) r[i] = 0;
            for (long i = 0; i < W; i++) r[pw + i] = source[i];
            for (long i = pw + W; i < padded; i++) r[i] = 0;
        }
        float *orow = output + row * OW * O;
        for (long q0 = 0; q0 < O; q0 += 8) { /* one group of 8 channels as called; kept general */
            __m512 b = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(bias + q0))));
            for (long ox = 0; ox < OW; ox += 16) {
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
                for (long ky = 0; ky < KH; ky++) {
                    const float *r = rows + ky * padded + ox;
                    const float *w = weights + ky * KW * O + q0;
                    for (long kx = 0; kx < KW; kx++, w += O) {
                        __m512 x = _mm512_loadu_ps(r + kx);
                        a0 = _mm512_fmadd_ps(x, _mm512_set1_ps(w[0]), a0); a1 = _mm512_fmadd_ps(x, _mm512_set1_ps(w[1]), a1);
                        a2 = _mm512_fmadd_ps(x, _mm512_set1_ps(w[2]), a2); a3 = _mm512_fmadd_ps(x, _mm512_set1_ps(w[3]), a3);
                        a4 = _mm512_fmadd_ps(x, _mm512_set1_ps(w[4]), a4); a5 = _mm512_fmadd_ps(x, _mm512_set1_ps(w[5]), a5);
                        a6 = _mm512_fmadd_ps(x, _mm512_set1_ps(w[6]), a6); a7 = _mm512_fmadd_ps(x, _mm512_set1_ps(w[7]), a7);
                    }
                }
                /* Channels × pixels → pixels × channels, within each half of 8 pixels. */
                __m512 t0 = _mm512_unpacklo_ps(a0, a1), t1 = _mm512_unpackhi_ps(a0, a1), t2 = _mm512_unpacklo_ps(a2, a3);
                __m512 t3 = _mm512_unpackhi_ps(a2, a3), t4 = _mm512_unpacklo_ps(a4, a5), t5 = _mm512_unpackhi_ps(a4, a5);
                __m512 t6 = _mm512_unpacklo_ps(a6, a7), t7 = _mm512_unpackhi_ps(a6, a7);
                __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xEE), u2 = _mm512_shuffle_ps(t1, t3, 0x44);
                __m512 u3 = _mm512_shuffle_ps(t1, t3, 0xEE), u4 = _mm512_shuffle_ps(t4, t6, 0x44), u5 = _mm512_shuffle_ps(t4, t6, 0xEE);
                __m512 u6 = _mm512_shuffle_ps(t5, t7, 0x44), u7 = _mm512_shuffle_ps(t5, t7, 0xEE);
                /* p[j]: pixel j's 8 channels in lanes 0-7 and pixel 8 + j's in lanes 8-15. */
                __m512 p[8] = {_mm512_permutex2var_ps(u0, low, u4), _mm512_permutex2var_ps(u1, low, u5), _mm512_permutex2var_ps(u2, low, u6),
                               _mm512_permutex2var_ps(u3, low, u7), _mm512_permutex2var_ps(u0, high, u4), _mm512_permutex2var_ps(u1, high, u5),
                               _mm512_permutex2var_ps(u2, high, u6), _mm512_permutex2var_ps(u3, high, u7)};
                long count = OW - ox < 16 ? OW - ox : 16;
                for (long j = 0; j < 8; j++) {
                    __m512 v = distill_direct_convolution_avx512_channels_activate(_mm512_add_ps(p[j], b), activation);
                    if (j < count) _mm256_storeu_ps(orow + (ox + j) * O + q0, _mm512_castps512_ps256(v));
                    if (8 + j < count) _mm256_storeu_ps(orow + (ox + 8 + j) * O + q0, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
                }
            }
        }
    }
}

AVX512 void distill_direct_convolution_avx512(const distill_convolution_shape *s, const float *input, const float *weights, const float *bias,
                                              distill_activation activation, int accumulate, long firstRow, long endRow, float *output) {
    if (s->channels != 1 || s->strideWidth != 1 || s->strideHeight != 1 || s->dilationWidth != 1 || s->dilationHeight != 1
        || s->outChannels != 8 || accumulate) {
        distill_direct_convolution_avx512_channels(s, input, weights, bias, activation, accumulate, firstRow, endRow, output);
        return;
    }
    /* Columns the 16-pixel tiles read. */
    long padded = ((s->outputWidth + 15) / 16) * 16 + s->kernelWidth - 1;
    if (padded < s->width + s->paddingWidth) padded = s->width + s->paddingWidth;
    float *rows = malloc((size_t)(s->kernelHeight * padded) * sizeof(float));
    if (!rows) {
        distill_direct_convolution_avx512_channels(s, input, weights, bias, activation, accumulate, firstRow, endRow, output);
        return;
    }
    single_channel_rows(s, input, weights, bias, activation, firstRow, endRow, output, rows, padded);
    free(rows);
}

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
