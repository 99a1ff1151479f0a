#ifndef DISTILL_CKERNELS_PRIVATE_H
#define DISTILL_CKERNELS_PRIVATE_H

/* The dispatched kernels of each path, and the table the active path fills. */

#include <math.h>

#include "CKernels.h"

typedef void (*distill_accumulate_fn)(long, int, const float *const *, const float *, float, float *);
typedef void (*distill_dot_fn)(long, int, const float *const *, const float *, float *);

typedef void (*distill_q8_gemm_fn)(long, long, long, const uint8_t *, long, int, const int8_t *, const int32_t *, int32_t *, long);
typedef void (*distill_q8_requantize_fn)(long, long, const int32_t *, long, const distill_q8_requantization *, uint8_t *, long);
typedef void (*distill_q8_dequantize_fn)(long, long, const int32_t *, long, const int32_t *, const float *, float *, long);
typedef void (*distill_q8_add_fn)(long, const uint8_t *, const uint8_t *, const distill_q8_add_parameters *, uint8_t *);
/* distill_q8_gemm_rows_requantize without its scratch, fused on the vector paths (portable:
   NULL, the rows are gathered and the path's GEMM and requantization run). */
typedef void (*distill_q8_rows_fn)(long, long, long, long, long, const uint8_t *const *, int, const int8_t *, const int32_t *,
                                   const distill_q8_requantization *, uint8_t *, long);

typedef void (*distill_softmax_row_fn)(long, const float *, const float *, float, float *);
typedef void (*distill_gelu_fn)(long, const float *, float *);
typedef void (*distill_gelu_backward_fn)(long, const float *, const float *, float *);
typedef void (*distill_layer_norm_row_fn)(long, const float *, const float *, const float *, float, float *, float *, float *);
typedef void (*distill_softmax_backward_row_fn)(long, const float *, const float *, float, float *);
typedef void (*distill_layer_norm_backward_row_fn)(long, const float *, const float *, const float *, float, float, float *);

typedef void (*distill_direct_convolution_fn)(const distill_convolution_shape *, const float *, const float *, const float *,
                                              distill_activation, int, long, long, float *);

typedef void (*distill_max_pool_fn)(const float *, long, long, long, long, long, long, long, long, long, long, float *);

typedef void (*distill_q8_quantize_rows_fn)(long, long, const float *, long, uint8_t *, long, float *, int32_t *);
typedef void (*distill_q8_dequantize_rows_fn)(long, long, const int32_t *, long, const float *, const int32_t *, const int32_t *, const float *,
                                              const float *, float *, long);

typedef struct {
    distill_accumulate_fn accumulate;
    distill_dot_fn dot;
    distill_q8_gemm_fn q8_gemm;
    distill_q8_requantize_fn q8_requantize;
    distill_q8_dequantize_fn q8_dequantize;
    distill_q8_add_fn q8_add;
    distill_q8_rows_fn q8_rows_requantize;
    distill_softmax_row_fn softmax_row;
    distill_gelu_fn gelu;
    distill_gelu_backward_fn gelu_backward;
    distill_layer_norm_row_fn layer_norm_row;
    distill_softmax_backward_row_fn softmax_backward_row;
    distill_layer_norm_backward_row_fn layer_norm_backward_row;
    distill_direct_convolution_fn direct_convolution;
    distill_max_pool_fn max_pool;
    distill_q8_quantize_rows_fn q8_quantize_rows;
    distill_q8_dequantize_rows_fn q8_dequantize_rows;
} distill_kernel_table;

void distill_q8_quantize_rows_portable(long, long, const float *, long, uint8_t *, long, float *, int32_t *);
void distill_q8_dequantize_rows_portable(long, long, const int32_t *, long, const float *, const int32_t *, const int32_t *, const float *,
                                         const float *, float *, long);
#if defined(__x86_64__) || defined(__i386__)
void distill_q8_quantize_rows_avx512(long, long, const float *, long, uint8_t *, long, float *, int32_t *);
void distill_q8_dequantize_rows_avx512(long, long, const int32_t *, long, const float *, const int32_t *, const int32_t *, const float *,
                                       const float *, float *, long);
#endif

extern distill_kernel_table distill_kernels;

/* Rounds to the nearest integer, ties to even (the default rounding mode), after clamping
   to ±512 so that the conversion stays in range; then the output's zero point and clamp. */
static inline uint8_t requantize_one(float y, int zero, int low, int high) {
    y = y < -512.0f ? -512.0f : (y > 512.0f ? 512.0f : y);
    long r = lrintf(y) + zero;
    return (uint8_t)(r < low ? low : (r > high ? high : r));
}

/* Chooses the default path on first use. */
void distill_kernels_ensure_chosen(void);

void distill_taps_accumulate_portable(long, int, const float *const *, const float *, float, float *);
void distill_taps_dot_portable(long, int, const float *const *, const float *, float *);
void distill_q8_gemm_portable(long, long, long, const uint8_t *, long, int, const int8_t *, const int32_t *, int32_t *, long);
void distill_q8_requantize_portable(long, long, const int32_t *, long, const distill_q8_requantization *, uint8_t *, long);
void distill_q8_dequantize_portable(long, long, const int32_t *, long, const int32_t *, const float *, float *, long);
void distill_q8_add_portable(long, const uint8_t *, const uint8_t *, const distill_q8_add_parameters *, uint8_t *);
void distill_softmax_row_portable(long, const float *, const float *, float, float *);
void distill_gelu_portable(long, const float *, float *);
void distill_gelu_backward_portable(long, const float *, const float *, float *);
void distill_layer_norm_row_portable(long, const float *, const float *, const float *, float, float *, float *, float *);
void distill_softmax_backward_row_portable(long, const float *, const float *, float, float *);
void distill_layer_norm_backward_row_portable(long, const float *, const float *, const float *, float, float, float *);
void distill_max_pool_nhwc_portable(const float *, long, long, long, long, long, long, long, long, long, long, float *);
void distill_direct_convolution_portable(const distill_convolution_shape *, const float *, const float *, const float *, distill_activation,
                                         int, long, long, float *);
#if defined(__x86_64__) || defined(__i386__)
void distill_max_pool_nhwc_avx2(const float *, long, long, long, long, long, long, long, long, long, long, float *);
void distill_max_pool_nhwc_avx512(const float *, long, long, long, long, long, long, long, long, long, long, float *);
void distill_direct_convolution_avx2(const distill_convolution_shape *, const float *, const float *, const float *, distill_activation, int,
                                     long, long, float *);
void distill_direct_convolution_avx512(const distill_convolution_shape *, const float *, const float *, const float *, distill_activation,
                                       int, long, long, float *);
void distill_softmax_row_avx2(long, const float *, const float *, float, float *);
void distill_gelu_avx2(long, const float *, float *);
void distill_gelu_backward_avx2(long, const float *, const float *, float *);
void distill_layer_norm_row_avx2(long, const float *, const float *, const float *, float, float *, float *, float *);
void distill_softmax_backward_row_avx2(long, const float *, const float *, float, float *);
void distill_layer_norm_backward_row_avx2(long, const float *, const float *, const float *, float, float, float *);
void distill_softmax_row_avx512(long, const float *, const float *, float, float *);
void distill_gelu_avx512(long, const float *, float *);
void distill_gelu_backward_avx512(long, const float *, const float *, float *);
void distill_layer_norm_row_avx512(long, const float *, const float *, const float *, float, float *, float *, float *);
void distill_softmax_backward_row_avx512(long, const float *, const float *, float, float *);
void distill_layer_norm_backward_row_avx512(long, const float *, const float *, const float *, float, float, float *);
void distill_q8_gemm_avx2(long, long, long, const uint8_t *, long, int, const int8_t *, const int32_t *, int32_t *, long);
void distill_q8_requantize_avx2(long, long, const int32_t *, long, const distill_q8_requantization *, uint8_t *, long);
void distill_q8_dequantize_avx2(long, long, const int32_t *, long, const int32_t *, const float *, float *, long);
void distill_q8_add_avx2(long, const uint8_t *, const uint8_t *, const distill_q8_add_parameters *, uint8_t *);
void distill_q8_rows_requantize_avx2(long, long, long, long, long, const uint8_t *const *, int, const int8_t *, const int32_t *,
                                     const distill_q8_requantization *, uint8_t *, long);
void distill_q8_gemm_avx512bw(long, long, long, const uint8_t *, long, int, const int8_t *, const int32_t *, int32_t *, long);
void distill_q8_gemm_vnni(long, long, long, const uint8_t *, long, int, const int8_t *, const int32_t *, int32_t *, long);
void distill_q8_gemm_amx(long, long, long, const uint8_t *, long, int, const int8_t *, const int32_t *, int32_t *, long);
void distill_q8_rows_requantize_vnni(long, long, long, long, long, const uint8_t *const *, int, const int8_t *, const int32_t *,
                                     const distill_q8_requantization *, uint8_t *, long);
void distill_q8_requantize_avx512(long, long, const int32_t *, long, const distill_q8_requantization *, uint8_t *, long);
void distill_q8_dequantize_avx512(long, long, const int32_t *, long, const int32_t *, const float *, float *, long);
void distill_q8_add_avx512(long, const uint8_t *, const uint8_t *, const distill_q8_add_parameters *, uint8_t *);
#endif
#if defined(__x86_64__) || defined(__i386__)
void distill_taps_accumulate_avx2(long, int, const float *const *, const float *, float, float *);
void distill_taps_dot_avx2(long, int, const float *const *, const float *, float *);
void distill_taps_accumulate_avx512(long, int, const float *const *, const float *, float, float *);
void distill_taps_dot_avx512(long, int, const float *const *, const float *, float *);
#endif

/* oneDNN's engine, and the calling thread's stream and buffers (dnnl_threads.c): a buffer
   of at least `size` bytes, 64-byte aligned, kept for the thread's next call (NULL when
   memory runs out). Each caller has its own slots. */
#if !defined(__APPLE__) && __has_include(<dnnl.h>)
#include <dnnl.h>
#include <stddef.h>
enum {
    DISTILL_BUFFER_CONVOLUTION_SCRATCH, DISTILL_BUFFER_CONVOLUTION_IMAGE, DISTILL_BUFFER_CONVOLUTION_WEIGHTS,
    DISTILL_BUFFER_CONVOLUTION_OUTPUT, DISTILL_BUFFER_BF16_A, DISTILL_BUFFER_BF16_B, DISTILL_BUFFER_BF16_SCRATCH,
    DISTILL_BUFFER_COUNT
};
dnnl_engine_t distill_dnnl_engine(void);
dnnl_stream_t distill_dnnl_thread_stream(void);
void *distill_dnnl_thread_buffer(int slot, size_t size);

/* A cache of made primitives, looked up by a key of plain bytes (zero the key's padding
   before filling it in): a hash table, so that a program with thousands of shapes (a text
   model's bucketed lengths, each a few products) finds each in a few comparisons. Each
   caller's entry type starts with a distill_dnnl_cached and holds its key `keyOffset` bytes
   in. At most `capacity` entries are kept; past that, entries are made, run and dropped. */
#include <pthread.h>
#define DISTILL_DNNL_CACHE_BUCKETS 4096
typedef struct distill_dnnl_cached {
    struct distill_dnnl_cached *next;
} distill_dnnl_cached;
typedef struct {
    pthread_mutex_t lock;
    size_t keySize, keyOffset;
    int capacity, count;
    distill_dnnl_cached *buckets[DISTILL_DNNL_CACHE_BUCKETS];
} distill_dnnl_cache;
#define DISTILL_DNNL_CACHE(type, keyMember, entries) \
    {PTHREAD_MUTEX_INITIALIZER, sizeof(((type *)0)->keyMember), offsetof(type, keyMember), (entries), 0, {0}}
/* The kept entry with `key`, or NULL. */
distill_dnnl_cached *distill_dnnl_cache_find(distill_dnnl_cache *cache, const void *key);
/* Keeps `made` (its key filled in) unless an entry with its key is kept already (another
   thread made it meanwhile: that one is returned, and the caller drops `made`) or the cache
   is full (`made` is returned with *kept = 0: the caller drops it after use). */
distill_dnnl_cached *distill_dnnl_cache_keep(distill_dnnl_cache *cache, distill_dnnl_cached *made, int *kept);
#endif

#endif
