/* Max pooling over NHWC images (channels last), for the fused float inference
   (Sources/Tensors/Kernels/ChannelsLastKernels.swift). Padding never wins (it counts as −∞).

   Each output row is made in two passes over contiguous memory: the max over the window's
   input rows, for every input pixel and channel at once (one long vectorised loop of
   width · channels values), into a row of scratch; then, for each output pixel, the max over
   the window's columns of that row (a loop of `channels` values per column). The first
   version took each window position on its own (a `channels`-long loop per tap, with the
   window's bounds checked per tap): with the 8 and 16 channels of cnn-student it spent more
   time on loop overhead than on maxima, 26% of a batch-256 forward pass (now 11-14%).

   The same C is compiled once per kernel path (portable, AVX2, AVX-512: the compiler
   vectorises the passes with the path's registers) and the dispatched path runs; max is
   exact, so every path gives the same values (KernelTests, KernelDispatchTests). */
#include "kernels.h"

#include <stdlib.h>

#define MAX_POOL_KERNELS(SUFFIX, TARGET) \
TARGET static void vertical_max_##SUFFIX(const float *restrict a, const float *restrict b, float *restrict out, long count) {                        \
    for (long q = 0; q < count; q++) out[q] = a[q] > b[q] ? a[q] : b[q];                                                                             \
}                                                                                                                                                    \
                                                                                                                                                     \
TARGET static void vertical_max_into_##SUFFIX(const float *restrict a, float *restrict out, long count) {                                            \
    for (long q = 0; q < count; q++) out[q] = a[q] > out[q] ? a[q] : out[q];                                                                         \
}                                                                                                                                                    \
                                                                                                                                                     \
/* One output row: the window's rows of `image` (rows r0..<r1, all inside it) → out. */                                                              \
TARGET static void pool_row_##SUFFIX(const float *image, long width, long channels, long kernel, long stride, long padding, long outWidth, long r0,  \
                     long r1, float *restrict scratch, float *restrict out) {                                                                        \
    long span = width * channels;                                                                                                                    \
    const float *rows = image + r0 * span;                                                                                                           \
    if (r1 - r0 == 1) {                                                                                                                              \
        scratch = (float *)rows;                                                                                                                     \
    } else {                                                                                                                                         \
        vertical_max_##SUFFIX(rows, rows + span, scratch, span);                                                                                     \
        for (long r = r0 + 2; r < r1; r++) vertical_max_into_##SUFFIX(image + r * span, scratch, span);                                              \
    }                                                                                                                                                \
    for (long j = 0; j < outWidth; j++) {                                                                                                            \
        long c0 = j * stride - padding, c1 = c0 + kernel;                                                                                            \
        if (c0 < 0) c0 = 0;                                                                                                                          \
        if (c1 > width) c1 = width;                                                                                                                  \
        float *restrict o = out + j * channels;                                                                                                      \
        const float *first = scratch + c0 * channels;                                                                                                \
        if (c1 <= c0) {                                                                                                                              \
            for (long q = 0; q < channels; q++) o[q] = -INFINITY;                                                                                    \
            continue;                                                                                                                                \
        }                                                                                                                                            \
        if (c1 - c0 == 1) {                                                                                                                          \
            for (long q = 0; q < channels; q++) o[q] = first[q];                                                                                     \
            continue;                                                                                                                                \
        }                                                                                                                                            \
        vertical_max_##SUFFIX(first, first + channels, o, channels);                                                                                 \
        for (long c = c0 + 2; c < c1; c++) vertical_max_into_##SUFFIX(scratch + c * channels, o, channels);                                          \
    }                                                                                                                                                \
}                                                                                                                                                    \
                                                                                                                                                     \
TARGET void distill_max_pool_nhwc_##SUFFIX(const float *input, long height, long width, long channels, long kernel, long stride, long padding,       \
                           long outHeight, long outWidth, long firstRow, long endRow, float *output) {                                               \
    float *scratch = malloc((size_t)(width * channels > 0 ? width * channels : 1) * sizeof(float));                                                  \
    for (long row = firstRow; row < endRow; row++) {                                                                                                 \
        long image = row / outHeight, i = row % outHeight;                                                                                           \
        long r0 = i * stride - padding, r1 = r0 + kernel;                                                                                            \
        if (r0 < 0) r0 = 0;                                                                                                                          \
        if (r1 > height) r1 = height;                                                                                                                \
        float *out = output + row * outWidth * channels;                                                                                             \
        if (r0 >= r1 || !scratch) {                                                                                                                  \
            /* A window wholly in the padding (not from the zoo's layers), or no scratch memory:                                                     \
               the plain per-tap loop. */                                                                                                            \
            for (long j = 0; j < outWidth; j++) {                                                                                                    \
                float *o = out + j * channels;                                                                                                       \
                for (long q = 0; q < channels; q++) o[q] = -INFINITY;                                                                                \
                for (long r = r0; r < r1; r++) {                                                                                                     \
                    for (long c = j * stride - padding; c < j * stride - padding + kernel; c++) {                                                    \
                        if (c < 0 || c >= width) continue;                                                                                           \
                        const float *s = input + ((image * height + r) * width + c) * channels;                                                      \
                        for (long q = 0; q < channels; q++) o[q] = s[q] > o[q] ? s[q] : o[q];                                                        \
                    }                                                                                                                                \
                }                                                                                                                                    \
            }                                                                                                                                        \
            continue;                                                                                                                                \
        }                                                                                                                                            \
        pool_row_##SUFFIX(input + image * height * width * channels, width, channels, kernel, stride, padding, outWidth, r0, r1,                     \
                 scratch, out);                                                                                                                      \
    }                                                                                                                                                \
    free(scratch);                                                                                                                                   \
}

#define NO_TARGET
MAX_POOL_KERNELS(portable, NO_TARGET)
#if defined(__x86_64__) || defined(__i386__)
MAX_POOL_KERNELS(avx2, __attribute__((target("avx2,fma"))))
MAX_POOL_KERNELS(avx512, __attribute__((target("avx512f"))))
#endif

void distill_max_pool_nhwc(const float *input, long height, long width, long channels, long kernel, long stride, long padding,
                           long outHeight, long outWidth, long firstRow, long endRow, float *output) {
    distill_kernels_ensure_chosen();
    distill_kernels.max_pool(input, height, width, channels, kernel, stride, padding, outHeight, outWidth, firstRow, endRow, output);
}
