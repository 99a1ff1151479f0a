/* Int8 convolution and pooling helpers on channels-last (NHWC) images: the window geometry,
   padding, the indirect rows of a convolution (pointers to each kernel row's bytes, no copy), the
   convolution's GEMM and requantization over those rows, max and global average pooling and
   the depthwise convolution. Data movement and exact integer sums: portable C, the same bits
   on every path (the GEMM they feed is the dispatched one). */
#pragma STDC FP_CONTRACT OFF
#include <math.h>
#include <string.h>

#include "CKernels.h"
#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h> /* SSE2 only: the x86-64 baseline, no dispatch needed */
#endif

int distill_q8_window_valid(const distill_q8_window *w) {
    if (w->height < 1 || w->width < 1 || w->channels < 1 || w->kernelHeight < 1 || w->kernelWidth < 1
        || w->strideHeight < 1 || w->strideWidth < 1 || w->paddingHeight < 0 || w->paddingWidth < 0) return 0;
    long spanHigh = w->height + 2 * w->paddingHeight - w->kernelHeight, spanWide = w->width + 2 * w->paddingWidth - w->kernelWidth;
    if (spanHigh < 0 || spanWide < 0) return 0;
    return w->outputHeight == spanHigh / w->strideHeight + 1 && w->outputWidth == spanWide / w->strideWidth + 1;
}

/* Short copies as plain loops: a 1-channel 3×3 convolution's rows are 3 bytes a piece,
   where a call to memcpy costs more than the copy. */
static inline void copy_bytes(uint8_t *target, const uint8_t *source, long count) {
    if (count >= 32) {
        memcpy(target, source, (size_t)count);
    } else {
        for (long i = 0; i < count; i++) target[i] = source[i];
    }
}

void distill_q8_pad_image(const distill_q8_window *w, const uint8_t *input, uint8_t pad, uint8_t *padded) {
    long C = w->channels, W = w->width, ph = w->paddingHeight, pw = w->paddingWidth;
    long rowBytes = W * C, paddedRow = (W + 2 * pw) * C;
    memset(padded, pad, (size_t)(ph * paddedRow));
    for (long y = 0; y < w->height; y++) {
        uint8_t *row = padded + (ph + y) * paddedRow;
        memset(row, pad, (size_t)(pw * C));
        memcpy(row + pw * C, input + y * rowBytes, (size_t)rowBytes);
        memset(row + pw * C + rowBytes, pad, (size_t)(pw * C));
    }
    memset(padded + (ph + w->height) * paddedRow, pad, (size_t)(ph * paddedRow));
}

void distill_q8_conv_rows(const distill_q8_window *w, const uint8_t *input, long row0, long count, const uint8_t **corners) {
    long C = w->channels, sx = w->strideWidth * C, OW = w->outputWidth, OH = w->outputHeight;
    long rowBytes = w->width * C, imageBytes = w->height * rowBytes, pixels = OH * OW;
    long image = row0 / pixels, oy = (row0 % pixels) / OW, ox = row0 % OW;
    const uint8_t *rowStart = input + image * imageBytes + oy * w->strideHeight * rowBytes;
    for (long i = 0; i < count; i++) {
        corners[i] = rowStart + ox * sx;
        if (++ox == OW) {
            ox = 0;
            if (++oy == OH) {
                oy = 0;
                image++;
            }
            rowStart = input + image * imageBytes + oy * w->strideHeight * rowBytes;
        }
    }
}

void distill_q8_gemm_rows_requantize(long m, long n, long taps, long segment, long pitch, const uint8_t *const *rows, int aZero,
                                     const int8_t *packed, const int32_t *sums, const distill_q8_requantization *r,
                                     uint8_t *out, long ldo, uint8_t *gathered, int32_t *acc) {
    distill_kernels_ensure_chosen();
    if (distill_kernels.q8_rows_requantize) {
        distill_kernels.q8_rows_requantize(m, n, taps, segment, pitch, rows, aZero, packed, sums, r, out, ldo);
        return;
    }
    long stride = taps > 1 ? (segment + 3) / 4 * 4 : segment, k = taps * stride;
    for (long i = 0; i < m; i++) {
        for (long t = 0; t < taps; t++) {
            copy_bytes(gathered + i * k + t * stride, rows[i] + t * pitch, stride);
        }
    }
    distill_kernels.q8_gemm(m, n, k, gathered, k, aZero, packed, sums, acc, n);
    distill_kernels.q8_requantize(m, n, acc, n, r, out, ldo);
}

/* out = max(out, in) over C bytes: whole 16- and 8-byte vectors of pmaxub (SSE2, the x86-64
   baseline) where they fit, bytes for the rest. */
static inline void max_bytes(uint8_t *out, const uint8_t *in, long C) {
    long c = 0;
#if defined(__x86_64__) || defined(__i386__)
    for (; c + 16 <= C; c += 16)
        _mm_storeu_si128((__m128i *)(out + c), _mm_max_epu8(_mm_loadu_si128((const __m128i *)(out + c)),
                                                            _mm_loadu_si128((const __m128i *)(in + c))));
    if (c + 8 <= C) {
        _mm_storel_epi64((__m128i *)(out + c), _mm_max_epu8(_mm_loadl_epi64((const __m128i *)(out + c)),
                                                            _mm_loadl_epi64((const __m128i *)(in + c))));
        c += 8;
    }
#endif
    for (; c < C; c++) out[c] = in[c] > out[c] ? in[c] : out[c];
}

/* out = in over C bytes, in vectors as max_bytes (a call to memcpy per pixel costs more). */
static inline void copy_pixel(uint8_t *out, const uint8_t *in, long C) {
    long c = 0;
#if defined(__x86_64__) || defined(__i386__)
    for (; c + 16 <= C; c += 16) _mm_storeu_si128((__m128i *)(out + c), _mm_loadu_si128((const __m128i *)(in + c)));
    if (c + 8 <= C) {
        _mm_storel_epi64((__m128i *)(out + c), _mm_loadl_epi64((const __m128i *)(in + c)));
        c += 8;
    }
#endif
    for (; c < C; c++) out[c] = in[c];
}

void distill_q8_max_pool(const distill_q8_window *w, const uint8_t *input, uint8_t *output) {
    long C = w->channels;
    if (w->paddingHeight == 0 && w->paddingWidth == 0) {
        /* Every window lies inside the image: no bounds to check, the first pixel starts the max. */
        long rowBytes = w->width * C, OW = w->outputWidth, sx = w->strideWidth * C;
        for (long oy = 0; oy < w->outputHeight; oy++) {
            uint8_t *out = output + oy * OW * C;
            const uint8_t *top = input + oy * w->strideHeight * rowBytes;
            for (long ox = 0; ox < OW; ox++) copy_pixel(out + ox * C, top + ox * sx, C);
            for (long dy = 0; dy < w->kernelHeight; dy++) {
                for (long dx = dy == 0 ? 1 : 0; dx < w->kernelWidth; dx++) {
                    const uint8_t *in = top + dy * rowBytes + dx * C;
                    for (long ox = 0; ox < OW; ox++) max_bytes(out + ox * C, in + ox * sx, C);
                }
            }
        }
        return;
    }
    for (long oy = 0; oy < w->outputHeight; oy++) {
        for (long ox = 0; ox < w->outputWidth; ox++) {
            uint8_t *out = output + (oy * w->outputWidth + ox) * C;
            memset(out, 0, (size_t)C);
            for (long dy = 0; dy < w->kernelHeight; dy++) {
                long y = oy * w->strideHeight + dy - w->paddingHeight;
                if (y < 0 || y >= w->height) continue;
                for (long dx = 0; dx < w->kernelWidth; dx++) {
                    long x = ox * w->strideWidth + dx - w->paddingWidth;
                    if (x < 0 || x >= w->width) continue;
                    const uint8_t *in = input + (y * w->width + x) * C;
                    for (long c = 0; c < C; c++) out[c] = in[c] > out[c] ? in[c] : out[c];
                }
            }
        }
    }
}

void distill_q8_global_average_pool(long pixels, long channels, const uint8_t *input, int inZero, float scale, int outZero,
                                    uint8_t *output) {
    for (long c = 0; c < channels; c++) {
        int32_t sum = 0;
        for (long p = 0; p < pixels; p++) sum += (int32_t)input[p * channels + c] - inZero;
        float y = (float)sum;
        y = y * scale;
        output[c] = requantize_one(y, outZero, 0, 255);
    }
}

void distill_q8_depthwise(const distill_q8_window *w, const uint8_t *input, int inZero, const int8_t *weights, int32_t *acc) {
    long C = w->channels, taps = w->kernelHeight * w->kernelWidth;
    for (long oy = 0; oy < w->outputHeight; oy++) {
        for (long ox = 0; ox < w->outputWidth; ox++) {
            int32_t *out = acc + (oy * w->outputWidth + ox) * C;
            for (long c = 0; c < C; c++) out[c] = 0;
            for (long dy = 0; dy < w->kernelHeight; dy++) {
                long y = oy * w->strideHeight + dy - w->paddingHeight;
                if (y < 0 || y >= w->height) continue;
                for (long dx = 0; dx < w->kernelWidth; dx++) {
                    long x = ox * w->strideWidth + dx - w->paddingWidth;
                    if (x < 0 || x >= w->width) continue;
                    const uint8_t *in = input + (y * w->width + x) * C;
                    const int8_t *tap = weights + dy * w->kernelWidth + dx;
                    for (long c = 0; c < C; c++) out[c] += ((int32_t)in[c] - inZero) * (int32_t)tap[c * taps];
                }
            }
        }
    }
}


/* x rounded to the nearest integer, ties to even (the default rounding mode). */
static inline long round_even(float x) {
#if defined(__x86_64__) || defined(__i386__)
    return _mm_cvtss_si32(_mm_set_ss(x));
#else
    return lrintf(x);
#endif
}

static inline uint8_t quantize_one(float x, float scale, int zero) {
    float y = x / scale;
    if (y != y) return (uint8_t)zero;
    y = y < -512.0f ? -512.0f : (y > 512.0f ? 512.0f : y);
    long q = round_even(y) + zero;
    return (uint8_t)(q < 0 ? 0 : (q > 255 ? 255 : q));
}

void distill_q8_quantize_channels_last(long batch, long channels, long pixels, const float *x, float scale, int zero,
                                       uint8_t *out) {
    if (channels == 1) {
        long i = 0, count = batch * pixels;
#if defined(__x86_64__) || defined(__i386__)
        const __m128 s = _mm_set1_ps(scale), lo = _mm_set1_ps(-512.0f), hi = _mm_set1_ps(512.0f);
        const __m128i z = _mm_set1_epi32(zero);
        for (; i + 16 <= count; i += 16) {
            __m128i q[4];
            for (int part = 0; part < 4; part++) {
                __m128 y = _mm_div_ps(_mm_loadu_ps(x + i + 4 * part), s);
                __m128 nan = _mm_cmpunord_ps(y, y);
                __m128i r = _mm_add_epi32(_mm_cvtps_epi32(_mm_min_ps(_mm_max_ps(y, lo), hi)), z);
                __m128i keep = _mm_castps_si128(nan);
                q[part] = _mm_or_si128(_mm_andnot_si128(keep, r), _mm_and_si128(keep, z));
            }
            /* Saturating packs: int32 → int16 → uint8 clamp to 0…255 exactly as the scalar code. */
            __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
            _mm_storeu_si128((__m128i *)(out + i), bytes);
        }
#endif
        for (; i < count; i++) out[i] = quantize_one(x[i], scale, zero);
        return;
    }
    for (long n = 0; n < batch; n++) {
        const float *image = x + n * channels * pixels;
        uint8_t *target = out + n * channels * pixels;
        for (long p = 0; p < pixels; p++)
            for (long c = 0; c < channels; c++) target[p * channels + c] = quantize_one(image[c * pixels + p], scale, zero);
    }
}
