#ifndef DISTILL_CKERNELS_H
#define DISTILL_CKERNELS_H

/* Vector kernels in C, compiled once per instruction set with per-function target
   attributes (never a build-time -march), and chosen once at run time from the CPU's
   features: AVX-512, AVX2 + FMA, or portable C. Swift compiles for baseline x86-64 (SSE,
   4 floats wide); these kernels use the widest vectors the CPU has.

   A path runs by default only once the tests (Tests/TensorsTests/KernelDispatchTests.swift)
   have compared it with the portable path on a CPU that executes it; docs/benchmarks.md
   lists which paths were verified on which CPUs. distill_kernels_set_path forces a path
   (the tests run each one). */

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The kernel paths, from the most portable. */
typedef enum {
    DISTILL_KERNELS_PORTABLE = 0,
    DISTILL_KERNELS_AVX2 = 1,   /* AVX2 + FMA, 8 floats wide */
    DISTILL_KERNELS_AVX512 = 2, /* AVX-512F, 16 floats wide */
} distill_kernels_path;

/* 1 when this build has the path and this CPU executes it. */
int distill_kernels_path_supported(distill_kernels_path path);

/* 1 when the path runs by default where supported (it has been verified on a CPU). */
int distill_kernels_path_verified(distill_kernels_path path);

/* The path the kernels use now: by default the widest supported and verified one. */
distill_kernels_path distill_kernels_active_path(void);

/* Uses `path` from now on; returns 0 (and changes nothing) when it is not supported.
   Not for use while kernels run on other threads. */
int distill_kernels_set_path(distill_kernels_path path);

/* Back to the default choice. */
void distill_kernels_reset_path(void);

/* The most taps (kernel height × width) the tap kernels and depthwise planes take. */
#define DISTILL_MAX_TAPS 64

/* out[i] = init + Σ_t weights[t]·sources[t][i] for i < count, the taps added in order. */
void distill_taps_accumulate(long count, int taps, const float *const *sources, const float *weights,
                             float init, float *out);

/* dots[t] += Σ_i g[i]·sources[t][i] for every tap t < taps. */
void distill_taps_dot(long count, int taps, const float *const *sources, const float *g, float *dots);

/* One plane of a depthwise convolution (each output channel sees one input channel):
   input [height, width], kernel [kernelHeight, kernelWidth], stride, zero padding,
   no dilation, output [outputHeight, outputWidth]. */
typedef struct {
    long height, width;
    long kernelHeight, kernelWidth;
    long strideHeight, strideWidth;
    long paddingHeight, paddingWidth;
    long outputHeight, outputWidth;
} distill_depthwise_plane;

/* 1 when the plane functions take this geometry (taps ≤ DISTILL_MAX_TAPS, positive sizes,
   an output of at least one value, the output size that the geometry gives). */
int distill_depthwise_plane_valid(const distill_depthwise_plane *plane);

/* Floats of scratch memory one plane call needs. */
long distill_depthwise_scratch_count(const distill_depthwise_plane *plane);

/* output = bias + the cross-correlation of input with kernel. */
void distill_depthwise_forward(const distill_depthwise_plane *plane, const float *input, const float *kernel,
                               float bias, float *output, float *scratch);

/* Given the output's gradient: adds the input's gradient into gradInput (when not NULL) and
   the kernel's gradient into gradKernel (when not NULL). */
void distill_depthwise_backward(const distill_depthwise_plane *plane, const float *input, const float *kernel,
                                const float *gradOutput, float *gradInput, float *gradKernel, float *scratch);

#ifdef __cplusplus
}
#endif

#endif
