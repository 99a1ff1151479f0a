/* Matrix products with bfloat16 inputs and float32 sums, through oneDNN's matmul primitive
   (Linux builds, libdnnl-dev): C = alpha·op(A)·op(B) + beta·C, where op(A) and op(B) are
   rounded to bfloat16 (8 bits of mantissa, round to nearest even) and every product is
   summed in float32. On CPUs with AMX-BF16 oneDNN runs them on the tiles; with AVX512-BF16
   on its dot-product instructions. This is the arithmetic of PyTorch's bfloat16 autocast on
   CPU: the weights themselves stay float32, only each product's operands are rounded.

   Each thread converts its operands into its own buffers (the stored rows, in the stored
   orientation; the transposes are the memory descriptors' strides), and the primitive for
   a key (m, n, k, the transposes, alpha, whether beta is 0, C's row stride) is made once and
   kept, as convolution.c does. Scratch memory is the calling thread's (scratchpad mode
   "user"), so one primitive may run on several threads at once.

   distill_gemm_bf16 answers -1 where there is no such primitive (no oneDNN, or a CPU
   without AVX-512: oneDNN has no bfloat16 matmul there); the caller then keeps float32. */
#include "CKernels.h"
#include "kernels.h"

#include <stdint.h>
#include <string.h>

/* float32 → bfloat16, round to nearest even (NaN stays NaN: its quiet bit is in the top half). */
static inline uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static void convert_portable(long count, const float *src, uint16_t *dst) {
    for (long i = 0; i < count; i++) dst[i] = to_bf16(src[i]);
}

#if defined(__x86_64__)
#include <immintrin.h>
/* VCVTNEPS2BF16 rounds to nearest even as to_bf16 does (and keeps NaNs NaN). */
__attribute__((target("avx512f,avx512bf16"))) static void convert_avx512bf16(long count, const float *src, uint16_t *dst) {
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)v);
    }
    if (i < count) convert_portable(count - i, src + i, dst + i);
}
#endif

static void distill_convert_bf16(long count, const float *src, uint16_t *dst) {
#if defined(__x86_64__)
    static int has = -1;
    if (has < 0) has = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    if (has) {
        convert_avx512bf16(count, src, dst);
        return;
    }
#endif
    convert_portable(count, src, dst);
}

#if !defined(__APPLE__) && __has_include(<dnnl.h>)
#include <dnnl.h>
#include <stdlib.h>

/* No padding: the cache compares keys as bytes. */
typedef struct {
    long m, n, k, ldc;
    int transA, transB, accumulate;
    float alpha, beta;
    int unused;
} key;

typedef struct entry {
    distill_dnnl_cached cached; /* first: the shared cache's link */
    key key;
    int status; /* 0: made; otherwise oneDNN refused the key */
    dnnl_primitive_t matmul;
    dnnl_memory_desc_t a, b, c;
    size_t scratch;
} entry;

/* Keys beyond this many are made, run and dropped (programs with ever-changing shapes). A
   text model trained on bucketed lengths makes about ten keys a length (the forward products
   and both gradients of each kind of layer): 8,192 hold every length up to BERT's 512, each
   found in a few comparisons. */
#define MAX_ENTRIES 8192

static distill_dnnl_cache cache = DISTILL_DNNL_CACHE(entry, key, MAX_ENTRIES);

static dnnl_status_t make(entry *e, dnnl_engine_t engine) {
    const key *q = &e->key;
    dnnl_dims_t aDims = {q->m, q->k}, bDims = {q->k, q->n}, cDims = {q->m, q->n};
    /* The converted operands hold the stored rows contiguously: A as m rows of k, or
       (transposed) k rows of m; B as k rows of n, or n rows of k. */
    dnnl_dims_t aStrides = {q->transA ? 1 : q->k, q->transA ? q->m : 1};
    dnnl_dims_t bStrides = {q->transB ? 1 : q->n, q->transB ? q->k : 1};
    dnnl_dims_t cStrides = {q->ldc, 1};
    dnnl_status_t status;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
#define TRY(call) do { if ((status = (call)) != dnnl_success) goto done; } while (0)
    TRY(dnnl_memory_desc_init_by_strides(&e->a, 2, aDims, dnnl_bf16, aStrides));
    TRY(dnnl_memory_desc_init_by_strides(&e->b, 2, bDims, dnnl_bf16, bStrides));
    TRY(dnnl_memory_desc_init_by_strides(&e->c, 2, cDims, dnnl_f32, cStrides));
    dnnl_matmul_desc_t desc;
    TRY(dnnl_matmul_desc_init(&desc, &e->a, &e->b, NULL, &e->c));
    TRY(dnnl_primitive_attr_create(&attr));
    TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (q->alpha != 1) TRY(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &q->alpha));
    if (q->accumulate) {
        TRY(dnnl_post_ops_create(&ops));
        TRY(dnnl_post_ops_append_sum(ops, q->beta));
        TRY(dnnl_primitive_attr_set_post_ops(attr, ops));
    }
    TRY(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    e->scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    TRY(dnnl_primitive_create(&e->matmul, pd));
#undef TRY
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return status;
}

/* The entry for `q`, made on first use; `*owned` when it is not kept (the cache is full). */
static entry *find(const key *q, dnnl_engine_t engine, int *owned) {
    *owned = 0;
    entry *e = (entry *)distill_dnnl_cache_find(&cache, q);
    if (e) return e;
    entry *made = calloc(1, sizeof(entry));
    if (!made) return NULL;
    made->key = *q;
    made->status = (int)make(made, engine);
    int kept;
    e = (entry *)distill_dnnl_cache_keep(&cache, &made->cached, &kept);
    if (e != made) { /* another thread made it meanwhile */
        if (made->matmul) dnnl_primitive_destroy(made->matmul);
        free(made);
        return e;
    }
    *owned = !kept;
    return made;
}

int distill_gemm_bf16(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                      long ldb, float beta, float *c, long ldc) {
    dnnl_engine_t engine = distill_dnnl_engine();
    if (!engine || m <= 0 || n <= 0 || k <= 0) return -1;
    key q = {m, n, k, ldc, transA != 0, transB != 0, beta != 0, alpha, beta != 0 ? beta : 0, 0};
    int owned;
    entry *e = find(&q, engine, &owned);
    if (!e) return -1;
    int result = -1;
    if (e->status == 0) {
        long aRows = transA ? k : m, aColumns = transA ? m : k, bRows = transB ? n : k, bColumns = transB ? k : n;
        size_t aBytes = (size_t)(aRows * aColumns) * 2, bBytes = (size_t)(bRows * bColumns) * 2;
        uint16_t *ab = distill_dnnl_thread_buffer(DISTILL_BUFFER_BF16_A, aBytes);
        uint16_t *bb = distill_dnnl_thread_buffer(DISTILL_BUFFER_BF16_B, bBytes);
        void *scratch = distill_dnnl_thread_buffer(DISTILL_BUFFER_BF16_SCRATCH, e->scratch ? e->scratch : 1);
        dnnl_stream_t stream = distill_dnnl_thread_stream();
        if (ab && bb && scratch && stream) {
            for (long r = 0; r < aRows; r++) distill_convert_bf16(aColumns, a + r * lda, ab + r * aColumns);
            for (long r = 0; r < bRows; r++) distill_convert_bf16(bColumns, b + r * ldb, bb + r * bColumns);
            dnnl_memory_t am = NULL, bm = NULL, cm = NULL, sm = NULL;
            dnnl_memory_desc_t scratchDesc;
            dnnl_dims_t scratchDims = {(dnnl_dim_t)(e->scratch ? e->scratch : 1)};
            if (dnnl_memory_desc_init_by_tag(&scratchDesc, 1, scratchDims, dnnl_u8, dnnl_a) == dnnl_success
                && dnnl_memory_create(&am, &e->a, engine, ab) == dnnl_success
                && dnnl_memory_create(&bm, &e->b, engine, bb) == dnnl_success
                && dnnl_memory_create(&cm, &e->c, engine, c) == dnnl_success
                && dnnl_memory_create(&sm, &scratchDesc, engine, scratch) == dnnl_success) {
                dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}};
                if (dnnl_primitive_execute(e->matmul, stream, 4, args) == dnnl_success && dnnl_stream_wait(stream) == dnnl_success)
                    result = 0;
            }
            if (am) dnnl_memory_destroy(am);
            if (bm) dnnl_memory_destroy(bm);
            if (cm) dnnl_memory_destroy(cm);
            if (sm) dnnl_memory_destroy(sm);
        }
    }
    if (owned) {
        if (e->matmul) dnnl_primitive_destroy(e->matmul);
        free(e);
    }
    return result;
}

const char *distill_gemm_bf16_implementation(void) {
    static char name[64];
    dnnl_engine_t engine = distill_dnnl_engine();
    if (!engine) return NULL;
    key q = {64, 64, 64, 64, 0, 0, 0, 1, 0, 0};
    int owned;
    entry *e = find(&q, engine, &owned);
    if (!e) return NULL;
    const char *result = NULL;
    if (e->status == 0) {
        const_dnnl_primitive_desc_t pd;
        const char *info = NULL;
        if (dnnl_primitive_get_primitive_desc(e->matmul, &pd) == dnnl_success
            && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success && info) {
            strncpy(name, info, sizeof name - 1);
            result = name;
        }
    }
    if (owned) {
        if (e->matmul) dnnl_primitive_destroy(e->matmul);
        free(e);
    }
    return result;
}

#else

int distill_gemm_bf16(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda, const float *b,
                      long ldb, float beta, float *c, long ldc) {
    (void)transA; (void)transB; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb;
    (void)beta; (void)c; (void)ldc;
    return -1;
}

const char *distill_gemm_bf16_implementation(void) { return NULL; }

#endif
