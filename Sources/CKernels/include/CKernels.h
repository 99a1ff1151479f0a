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
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The kernel paths, from the most portable. */
typedef enum {
    DISTILL_KERNELS_PORTABLE = 0,
    DISTILL_KERNELS_AVX2 = 1,   /* AVX2 + FMA, 8 floats wide */
    DISTILL_KERNELS_AVX512 = 2, /* AVX-512F, 16 floats wide; int8 GEMM with AVX-512BW where present */
    DISTILL_KERNELS_AVX512_VNNI = 3, /* AVX-512F + BW + VNNI: the float kernels of AVX512, int8 GEMM with vpdpbusd */
    DISTILL_KERNELS_AMX = 4, /* AVX512_VNNI's kernels, the int8 GEMM on AMX tiles (Linux grants the tile state on request) */
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

/* ---- Convolution through oneDNN's primitives (convolution.c). ----

   Linux builds with oneDNN (libdnnl-dev); elsewhere distill_convolution_available answers 0
   and distill_convolution_run does nothing and answers 0. Tensors are NCHW (image, output),
   OIHW (weights; [outChannels, channels / groups, kh, kw]) and [outChannels] (bias), f32. */
typedef struct {
    long batch, channels, height, width;
    long outChannels, groups;
    long kernelHeight, kernelWidth;
    long strideHeight, strideWidth;
    long paddingHeight, paddingWidth;
    long dilationHeight, dilationWidth; /* 1: no dilation */
    long outputHeight, outputWidth;
} distill_convolution_shape;

typedef enum {
    DISTILL_CONVOLUTION_FORWARD = 0,         /* reads image, weights (and bias); writes output */
    DISTILL_CONVOLUTION_BACKWARD_DATA = 1,   /* reads output's gradient, weights; writes image's gradient */
    DISTILL_CONVOLUTION_BACKWARD_WEIGHTS = 2, /* reads image, output's gradient; writes weights' (and bias') gradient */
} distill_convolution_pass;

/* 1 when this build runs convolutions through oneDNN. */
int distill_convolution_available(void);

/* Runs `pass` on `threads` OpenMP threads (1 from a compute thread of our own pool). What a
   pass writes is overwritten, not added to; bias may be NULL. Safe to call from several
   threads at once. Returns 1 on success; 0 when oneDNN refuses the shape or fails, and then
   the written tensor's contents are unspecified (the caller computes it another way). */
int distill_convolution_run(const distill_convolution_shape *shape, distill_convolution_pass pass, int threads,
                            float *image, float *weights, float *output, float *bias);

/* Both backward passes of one convolution on the calling thread: the image's gradient (when
   gradImage is not NULL) and the weights' (when gradWeights is not NULL), each overwritten, the
   output gradient reordered into the primitives' layout once for both when they share it.
   Returns 1 on success, 0 as distill_convolution_run. */
int distill_convolution_backward(const distill_convolution_shape *shape, int threads, float *image, float *weights, float *gradOutput,
                                 float *gradImage, float *gradWeights);

/* Max pooling of NHWC images [N, height, width, channels] into [N, outHeight, outWidth,
   channels], output rows firstRow..<endRow of the N · outHeight (pooling.c). */
void distill_max_pool_nhwc(const float *input, long height, long width, long channels, long kernel, long stride, long padding,
                           long outHeight, long outWidth, long firstRow, long endRow, float *output);

/* ---- Fused float inference through oneDNN (convolution.c). ----

   A convolution prepared once for inference: its weights (batch norm already folded in by
   the caller) and bias copied, and for each batch size it runs at, a forward-inference
   primitive whose activations are NHWC (channels last, read and written in place: no
   reorder) and whose weights are packed into the primitive's own layout once. The
   activation (and, when asked, the sum into what the output already holds) runs inside
   the primitive as post-ops: output = act(conv(input) + bias [+ output]). */
typedef struct distill_packed_convolution distill_packed_convolution;

typedef enum {
    DISTILL_ACTIVATION_NONE = 0,
    DISTILL_ACTIVATION_RELU = 1,
    DISTILL_ACTIVATION_RELU6 = 2,
} distill_activation;

/* A convolution of NHWC images computed directly, for layers with few input channels (a
   network's first layer), where oneDNN's channel-blocked kernels waste most of their work
   (direct.c): groups 1, weights [kernelHeight][kernelWidth][channels][outChannels], bias
   [outChannels]; output rows firstRow..<endRow of the batch's shape->batch · outputHeight,
   `accumulate` 1 adds to what `output` holds before the activation. On the dispatched path. */
void distill_direct_convolution_nhwc(const distill_convolution_shape *shape, const float *input, const float *weights, const float *bias,
                                     distill_activation activation, int accumulate, long firstRow, long endRow, float *output);

/* Copies `weights` (OIHW, [outChannels, channels / groups, kh, kw]) and `bias` (outChannels
   values, or NULL for none) and checks that oneDNN takes the shape (shape->batch is the
   batch it is tried at). NULL when this build has no oneDNN, oneDNN refuses the shape, or
   memory runs out. */
distill_packed_convolution *distill_packed_convolution_create(const distill_convolution_shape *shape, distill_activation activation,
                                                              const float *weights, const float *bias);

/* Runs the convolution on `batch` NHWC images on the calling thread (one oneDNN thread).
   `accumulate` 1 adds the convolution to what `output` holds before the activation. Safe
   to call from several threads at once. Returns 1 on success; 0 when oneDNN refused or
   failed (the output is then unspecified). */
int distill_packed_convolution_run(distill_packed_convolution *convolution, long batch, const float *input, float *output, int accumulate);

/* Runs output rows firstRow..<endRow of one NHWC image (`input` and `output` point at the
   image, not at the rows): the band reads only the input rows it needs, so that threads can
   split one image between them. A band is a primitive of its own, its weights packed again. */
int distill_packed_convolution_run_rows(distill_packed_convolution *convolution, long firstRow, long endRow, const float *input,
                                        float *output, int accumulate);

void distill_packed_convolution_destroy(distill_packed_convolution *convolution);

/* ---- Int8 inference (q8.c). ----

   Activations are uint8 with a zero point (asymmetric, per tensor), weights int8 with zero
   point 0 (symmetric, per output channel). One arithmetic on every path, so that a model
   answers the same on every CPU:

   - Accumulation is exact integer arithmetic: c = Σ_k (a[k] − aZero)·w[k] in int32. Every
     path computes it modulo 2^32 (wrapping adds, never saturating ones); addition modulo
     2^32 is associative, so the order of the sums does not matter, and the true value fits
     in int32 (|a − aZero| ≤ 255, |w| ≤ 128, k ≤ DISTILL_Q8_MAX_K: at most 255·128·65536 <
     2^31), so every path gives the exact value. The AVX2 and AVX-512BW paths widen both
     operands to int16 and use vpmaddwd (a pair of products, at most 2·255·128, cannot
     saturate); the VNNI path uses vpdpbusd (four u8×s8 products added into int32, wrapping,
     not the saturating vpdpbusds). vpmaddubsw is not used: it saturates its int16 pair sums.

   - Requantization is float, in steps that are each one correctly rounded IEEE-754 single
     operation in the default rounding mode (to nearest, ties to even), so scalar and vector
     code give the same bits: v = acc + bias (int32, wrapping); y = (float)v (rounded to
     nearest even, exact below 2^24); y = y · scale (one multiply); y clamped to ±512 (exact);
     r = y rounded to the nearest integer, ties to even (lrintf / cvtps2dq); out =
     clamp(r + outZero, low, high) in integers. Contraction into fused multiply-adds is off
     in q8.c (FP_CONTRACT OFF), and no step adds after a multiply except the elementwise
     add, whose two products and one sum are rounded separately on every path. A denormal
     product rounds to 0 with or without flush-to-zero, so that mode does not change the
     result; scales must be normal, positive floats (the callers check). This is the
     requantization onnxruntime's QLinear operators use (float scale, round half to even). */

/* The longest reduction (k) the int8 GEMM takes: the accumulators stay exact up to it. */
#define DISTILL_Q8_MAX_K 65536

/* Bytes of packed weights for an n × k weight matrix in `pieces` equal pieces: n rounded up
   to 16, each piece of k / pieces rounded up to 4. */
long distill_q8_packed_count(long n, long k, long pieces);

/* Packs weights w [n][k] (row j: output channel j) into `packed` (distill_q8_packed_count
   bytes): panels of 16 output channels, each k-quad of a panel 64 bytes (channel-major, 4
   consecutive k per channel), zero-filled past n and past the end of each of the `pieces`
   equal pieces of a row (k % pieces == 0; a piece starts a new quad). sums[j] = Σ_k w[j][k].
   distill_q8_gemm takes weights packed in one piece; distill_q8_gemm_rows_requantize in `taps`. */
void distill_q8_pack(long n, long k, long pieces, const int8_t *w, int8_t *packed, int32_t *sums);

/* c[i][j] = Σ_k (a[i][k] − aZero)·w[j][k] for i < m, j < n (a [m][k] with row pitch lda,
   c with row pitch ldc), from weights packed by distill_q8_pack. 1 ≤ k ≤ DISTILL_Q8_MAX_K. */
void distill_q8_gemm(long m, long n, long k, const uint8_t *a, long lda, int aZero, const int8_t *packed,
                     const int32_t *sums, int32_t *c, long ldc);

/* Requantization of one output tensor: per channel j, out = clamp(lrint((float)(acc + bias[j])
   · scale[j]) + zero, low, high), as above; bias may be NULL (0). 0 ≤ low ≤ high ≤ 255. */
typedef struct {
    const int32_t *bias;
    const float *scale;
    int zero, low, high;
} distill_q8_requantization;

/* out[i][j] (pitch ldo) from acc[i][j] (pitch ldacc), i < m, j < n. */
void distill_q8_requantize(long m, long n, const int32_t *acc, long ldacc, const distill_q8_requantization *r,
                           uint8_t *out, long ldo);

/* Dynamic quantization of float rows x [m][k] (pitch ldx) into q [m][k] (pitch ldq): row i's
   range [lo, hi] (its values, widened to include 0), scale a = (hi − lo)/255 (1 when hi = lo),
   zero point z = clamp(round(−lo/a), 0, 255), q = clamp(round(x·(1/a)) + z, 0, 255) (1/a rounded
   once), rounding half to even; scales[i] = a, zeros[i] = z. A row holding a NaN or an infinity gets scale NaN and
   q = 0. */
void distill_q8_quantize_rows(long m, long k, const float *x, long ldx, uint8_t *q, long ldq, float *scales, int32_t *zeros);

/* out[i][j] = (float)(acc[i][j] − zeros[i]·sums[j]) · (rowScales[i] · scales[j]) + bias[j]
   (bias may be NULL; wrapping int32; each float operation rounded once); NaN for a row whose
   scale is NaN. The float output of a dynamically quantized linear layer. */
void distill_q8_dequantize_rows(long m, long n, const int32_t *acc, long ldacc, const float *rowScales, const int32_t *rowZeros,
                                const int32_t *sums, const float *scales, const float *bias, float *out, long ldo);

/* out[i][j] = (float)(acc[i][j] + bias[j]) · scale[j]: the float output of a last layer. */
void distill_q8_dequantize(long m, long n, const int32_t *acc, long ldacc, const int32_t *bias, const float *scale,
                           float *out, long ldo);

/* out[i] = clamp(lrint((float)(a[i] − aZero)·aScale + (float)(b[i] − bZero)·bScale) + outZero,
   low, high): the sum of two quantized tensors in the output's quantization (aScale =
   a's scale ÷ the output's; each product and the sum rounded once). */
typedef struct {
    float aScale, bScale;
    int aZero, bZero, outZero, low, high;
} distill_q8_add_parameters;

void distill_q8_add(long count, const uint8_t *a, const uint8_t *b, const distill_q8_add_parameters *p, uint8_t *out);

/* A sliding window over one image in channels-last (NHWC) layout: input [height][width]
   [channels], output [outputHeight][outputWidth][channels] (the sizes the geometry gives). */
typedef struct {
    long height, width, channels;
    long kernelHeight, kernelWidth;
    long strideHeight, strideWidth;
    long paddingHeight, paddingWidth;
    long outputHeight, outputWidth;
} distill_q8_window;

/* 1 when the sizes are positive, the padding non-negative and the output sizes right. */
int distill_q8_window_valid(const distill_q8_window *w);

/* One NHWC image [height][width][channels] with the window's padding made real: padded
   [height + 2·paddingHeight][width + 2·paddingWidth][channels], `pad` (the input's zero
   point) around it. */
void distill_q8_pad_image(const distill_q8_window *w, const uint8_t *input, uint8_t pad, uint8_t *padded);

/* The indirect rows of a convolution without padding (pad the images first) over a batch of
   NHWC images (row = image · outputHeight · outputWidth + output pixel): corners[i] points at
   the input pixel under the top-left tap of row row0 + i's window. Kernel row dy's
   kernelWidth · channels bytes, adjacent in the input, start at corners[i] + dy · width ·
   channels: row i of the GEMM is those pieces one after another (im2col's row, read in
   place; distill_q8_gemm_rows_requantize with taps = kernelHeight, pitch = width · channels). */
void distill_q8_conv_rows(const distill_q8_window *w, const uint8_t *input, long row0, long count, const uint8_t **corners);

/* out[i][j] (pitch ldo), i < m, j < n: the requantization (as distill_q8_requantize) of
   Σ over pieces t < taps and bytes c < segment of (rows[i][t · pitch + c] − aZero) · w[j][t ·
   segment + c], with weights packed by distill_q8_pack in `taps` pieces for k = taps · segment
   ≤ DISTILL_Q8_MAX_K. When taps > 1, each piece must have its length rounded up to 4 readable
   (the extra bytes meet zero weights). The same bits as gathering each row's pieces into one
   row of taps · s bytes (s = segment rounded up to 4; piece t at t · s), distill_q8_gemm and
   distill_q8_requantize, which is what paths without a fused kernel do, in `gathered` (m ·
   taps · s bytes) and `acc` (m · n int32); the VNNI path reads the pieces in place and
   requantizes in registers. */
void distill_q8_gemm_rows_requantize(long m, long n, long taps, long segment, long pitch, const uint8_t *const *rows, int aZero,
                                     const int8_t *packed, const int32_t *sums, const distill_q8_requantization *r,
                                     uint8_t *out, long ldo, uint8_t *gathered, int32_t *acc);

/* Float NCHW images [batch][channels][pixels] quantized to uint8 NHWC [batch][pixels][channels]:
   clamp(round(x / scale) + zero, 0, 255), rounding half to even, zero for NaN (what
   QuantizationParameters.quantize computes in Swift). */
void distill_q8_quantize_channels_last(long batch, long channels, long pixels, const float *x, float scale, int zero,
                                       uint8_t *out);

/* Max pooling: the largest value of each window's pixels inside the image (padding never wins). */
void distill_q8_max_pool(const distill_q8_window *w, const uint8_t *input, uint8_t *output);

/* Global average pooling of one NHWC image [pixels][channels] to [channels]: per channel the
   exact int32 sum s of (q − inZero) over the pixels, then out = clamp(lrint((float)s · scale)
   + outZero, 0, 255) with scale = in scale ÷ (out scale · pixels), the requantization's
   rounding. Path-free (portable C): the sums are exact, the rest is one multiply. pixels ≤ 2^23. */
void distill_q8_global_average_pool(long pixels, long channels, const uint8_t *input, int inZero, float scale, int outZero,
                                    uint8_t *output);

/* A depthwise convolution's accumulators for one NHWC image: acc[p][c] = Σ over the window's
   taps inside the image of (input − inZero)·weights[c][tap] (weights [channels][kernelHeight ·
   kernelWidth]; padding is the zero point, so it adds 0). Exact int32 sums, path-free
   (portable C); the caller requantizes them with distill_q8_requantize. */
void distill_q8_depthwise(const distill_q8_window *w, const uint8_t *input, int inZero, const int8_t *weights, int32_t *acc);

/* ---- Row kernels of the transformer encoder (rows.c). ---- */

/* One row of the attention's masked softmax: dst[j] = e^(scale·(src[j] − m)) / Σ over the
   kept keys, m the largest kept src; keys with mask[j] == 0 (mask may be NULL: all kept)
   get exactly 0, and a row with no kept key is all zeros. scale·(src[j] − m) is clamped to
   [−87, 0] (the exponential is rows.c's exp_nonpositive). */
void distill_softmax_row(long keys, const float *src, const float *mask, float scale, float *dst);

/* y = x·Φ(x) (exact GELU, erf by rows.c's rational fit) for count values; y may be x. */
void distill_gelu(long count, const float *x, float *y);

/* GELU's backward pass: dx = g·(Φ(x) + x·φ(x)), φ the normal density, for count values;
   dx may be g. */
void distill_gelu_backward(long count, const float *g, const float *x, float *dx);

/* One row of layer normalisation: dst = (src − mean)·r·gamma + beta (gamma, beta may be
   NULL), r = 1/√(variance + epsilon), the biased variance; writes mean and r. */
void distill_layer_norm_row(long d, const float *src, const float *gamma, const float *beta, float epsilon,
                            float *dst, float *mean, float *inverseDeviation);

/* The softmax row's input gradient from the output y and its gradient g:
   dx = scale·y·(g − Σ g·y) (zero wherever y is, so at masked keys). */
void distill_softmax_backward_row(long keys, const float *g, const float *y, float scale, float *dx);

/* Layer norm's input gradient for one row, from the output's gradient g, the input x, gamma
   (NULL: 1) and the row's mean and r: with ĝ = g·gamma and x̂ = (x − mean)·r,
   dx = r/d · (d·ĝ − Σĝ − x̂·Σ ĝ·x̂). */
void distill_layer_norm_backward_row(long d, const float *g, const float *x, const float *gamma, float mean,
                                     float inverseDeviation, float *dx);

#ifdef __cplusplus
}
#endif

/* C = alpha·op(A)·op(B) + beta·C, row-major (op = transpose when asked; lda, ldb, ldc the
   stored row strides, as distill_sgemm), with op(A) and op(B) rounded to bfloat16 and the
   products summed in float32 (gemm_bf16.c). Runs on the calling thread. Returns 0, or -1
   where this build or CPU has no bfloat16 matmul (C is then untouched). */
int distill_gemm_bf16(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                      long ldb, float beta, float *c, long ldc);

/* oneDNN's name for the bfloat16 matmul it runs on this CPU ("brg:avx512_core_amx_bf16",
   ...), or NULL where there is none. */
const char *distill_gemm_bf16_implementation(void);

#endif
