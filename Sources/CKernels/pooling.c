/* Max pooling over NHWC images (channels last), for the fused float inference
   (Sources/NeuralNet/FusedModel+Kernels.swift). Channels are innermost and contiguous, so
   each window position is one vectorised max over a row of `channels` values; padding never
   wins (it counts as −∞). One portable path: the loop is memory-bound, and the compiler's
   vectorisation of it is the same arithmetic on every CPU (max is exact). */
#include "CKernels.h"
#include <math.h>

void distill_max_pool_nhwc(const float *input, long height, long width, long channels, long kernel, long stride, long padding,
                           long outHeight, long outWidth, long firstRow, long endRow, float *output) {
    for (long row = firstRow; row < endRow; row++) {
        long image = row / outHeight, i = row % outHeight;
        for (long j = 0; j < outWidth; j++) {
            float *out = output + ((image * outHeight + i) * outWidth + j) * channels;
            for (long q = 0; q < channels; q++) out[q] = -INFINITY;
            for (long di = 0; di < kernel; di++) {
                long r = i * stride - padding + di;
                if (r < 0 || r >= height) continue;
                for (long dj = 0; dj < kernel; dj++) {
                    long col = j * stride - padding + dj;
                    if (col < 0 || col >= width) continue;
                    const float *source = input + ((image * height + r) * width + col) * channels;
                    for (long q = 0; q < channels; q++) out[q] = source[q] > out[q] ? source[q] : out[q];
                }
            }
        }
    }
}
