/* 2-D convolution through oneDNN's convolution primitives (Linux builds, libdnnl-dev).

   Each call names a pass (forward, backward data, backward weights), a geometry and a
   batch, and the OpenMP threads oneDNN may use; the primitive for that key is made once
   (its descriptor on format_tag_any, so oneDNN chooses its own blocked layouts and JIT
   kernel for the CPU) and kept. Distill's tensors stay NCHW / OIHW: the inputs are
   reordered into the primitive's layouts and the output back, inside the call.

   Scratch memory is the calling thread's (scratchpad mode "user"), so one primitive may
   run on several threads at once, each on its own part of a batch; the scratch and reorder
   buffers are the thread's own, kept between calls (dnnl_threads.c).

   Elsewhere (Apple platforms, builds without oneDNN) every function answers "not
   available" and the caller keeps its im2col path. */
#include "CKernels.h"
#include "kernels.h"

#if !defined(__APPLE__) && __has_include(<dnnl.h>)
#include <dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void omp_set_num_threads(int);

/* Roles of the three tensors: the image (input or its gradient), the weights (or their
   gradient), the output (or its gradient). */
enum { IMAGE, WEIGHTS, OUTPUT, ROLES };

typedef struct {
    distill_convolution_shape shape;
    int pass, threads, bias;
} key;

typedef struct entry {
    distill_dnnl_cached cached; /* first: the shared cache's link */
    key key;
    int status; /* 0: made; otherwise oneDNN refused the key (it is not asked again) */
    dnnl_primitive_t convolution;
    dnnl_primitive_t reorder[ROLES]; /* user layout <-> primitive layout, NULL when they are the same */
    dnnl_memory_desc_t user[ROLES], used[ROLES], bias_md;
    size_t scratch;
} entry;

/* Keys beyond this many are made, run and dropped (programs with ever-changing shapes). */
#define MAX_ENTRIES 1024

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static distill_dnnl_cache cache = DISTILL_DNNL_CACHE(entry, key, MAX_ENTRIES);

static void make_engine(void) { engine = distill_dnnl_engine(); }

/* The calling thread's buffer `slot` (scratch, then one per role) of at least `size` bytes. */
static void *reserve(int slot, size_t size) { return distill_dnnl_thread_buffer(DISTILL_BUFFER_CONVOLUTION_SCRATCH + slot, size); }

/* The role that a pass writes; the others are read. */
static int written_role(int pass) {
    return pass == DISTILL_CONVOLUTION_FORWARD ? OUTPUT : (pass == DISTILL_CONVOLUTION_BACKWARD_DATA ? IMAGE : WEIGHTS);
}

static dnnl_status_t make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                  const_dnnl_primitive_attr_t attr, dnnl_primitive_t *reorder, size_t *scratch) {
    *reorder = NULL;
    if (dnnl_memory_desc_equal(from, to)) return dnnl_success;
    dnnl_primitive_desc_t pd;
    dnnl_status_t status = dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, attr);
    if (status != dnnl_success) return status;
    size_t need = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    if (need > *scratch) *scratch = need;
    status = dnnl_primitive_create(reorder, pd);
    dnnl_primitive_desc_destroy(pd);
    return status;
}

static void release(entry *e) {
    if (e->convolution) dnnl_primitive_destroy(e->convolution);
    for (int r = 0; r < ROLES; r++)
        if (e->reorder[r]) dnnl_primitive_destroy(e->reorder[r]);
    free(e);
}

/* Makes the primitives of `k` on the calling thread (oneDNN reads its thread count then). */
static dnnl_status_t make(entry *e) {
    const distill_convolution_shape *s = &e->key.shape;
    long g = s->groups;
    dnnl_dims_t image = {s->batch, s->channels, s->height, s->width};
    dnnl_dims_t output = {s->batch, s->outChannels, s->outputHeight, s->outputWidth};
    dnnl_dims_t weights = {g, s->outChannels / g, s->channels / g, s->kernelHeight, s->kernelWidth};
    dnnl_dims_t biasDims = {s->outChannels};
    dnnl_dims_t strides = {s->strideHeight, s->strideWidth};
    dnnl_dims_t dilates = {s->dilationHeight - 1, s->dilationWidth - 1};
    dnnl_dims_t left = {s->paddingHeight, s->paddingWidth};
    /* The right padding that gives exactly outputHeight × outputWidth (negative when the
       last rows or columns of the input are never read). */
    dnnl_dims_t right = {(s->outputHeight - 1) * s->strideHeight + (s->kernelHeight - 1) * s->dilationHeight + 1 - s->height - s->paddingHeight,
                         (s->outputWidth - 1) * s->strideWidth + (s->kernelWidth - 1) * s->dilationWidth + 1 - s->width - s->paddingWidth};
    int weightDims = g > 1 ? 5 : 4;
    dnnl_memory_desc_t any[ROLES];
    dnnl_status_t status;
#define TRY(call) do { if ((status = (call)) != dnnl_success) goto done; } while (0)
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    TRY(dnnl_memory_desc_init_by_tag(&e->user[IMAGE], 4, image, dnnl_f32, dnnl_nchw));
    TRY(dnnl_memory_desc_init_by_tag(&e->user[OUTPUT], 4, output, dnnl_f32, dnnl_nchw));
    TRY(dnnl_memory_desc_init_by_tag(&e->user[WEIGHTS], weightDims, g > 1 ? weights : weights + 1, dnnl_f32,
                                     g > 1 ? dnnl_goihw : dnnl_oihw));
    TRY(dnnl_memory_desc_init_by_tag(&e->bias_md, 1, biasDims, dnnl_f32, dnnl_a));
    TRY(dnnl_memory_desc_init_by_tag(&any[IMAGE], 4, image, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&any[OUTPUT], 4, output, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&any[WEIGHTS], weightDims, g > 1 ? weights : weights + 1, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_primitive_attr_create(&attr));
    TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    const dnnl_memory_desc_t *bias = e->key.bias ? &e->bias_md : NULL;
    dnnl_convolution_desc_t forward, backward;
    TRY(dnnl_dilated_convolution_forward_desc_init(&forward, dnnl_forward_training, dnnl_convolution_direct, &any[IMAGE],
                                                   &any[WEIGHTS], e->key.pass == DISTILL_CONVOLUTION_FORWARD ? bias : NULL,
                                                   &any[OUTPUT], strides, dilates, left, right));
    TRY(dnnl_primitive_desc_create(&hint, &forward, attr, engine, NULL));
    if (e->key.pass == DISTILL_CONVOLUTION_FORWARD) {
        pd = hint;
        hint = NULL;
    } else {
        if (e->key.pass == DISTILL_CONVOLUTION_BACKWARD_DATA)
            TRY(dnnl_dilated_convolution_backward_data_desc_init(&backward, dnnl_convolution_direct, &any[IMAGE], &any[WEIGHTS],
                                                                 &any[OUTPUT], strides, dilates, left, right));
        else
            TRY(dnnl_dilated_convolution_backward_weights_desc_init(&backward, dnnl_convolution_direct, &any[IMAGE], &any[WEIGHTS],
                                                                    bias, &any[OUTPUT], strides, dilates, left, right));
        TRY(dnnl_primitive_desc_create(&pd, &backward, attr, engine, hint));
    }
    static const dnnl_query_t queries[3][ROLES] = {
        {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
        {dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md},
        {dnnl_query_src_md, dnnl_query_diff_weights_md, dnnl_query_diff_dst_md},
    };
    for (int r = 0; r < ROLES; r++) e->used[r] = *dnnl_primitive_desc_query_md(pd, queries[e->key.pass][r], 0);
    e->scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    TRY(dnnl_primitive_create(&e->convolution, pd));
    int written = written_role(e->key.pass);
    for (int r = 0; r < ROLES; r++) {
        if (r == written) TRY(make_reorder(&e->used[r], &e->user[r], attr, &e->reorder[r], &e->scratch));
        else TRY(make_reorder(&e->user[r], &e->used[r], attr, &e->reorder[r], &e->scratch));
    }
#undef TRY
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (hint) dnnl_primitive_desc_destroy(hint);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return status;
}

/* The cached entry of `k`, made on first use; NULL when oneDNN refuses it or memory runs out.
   *transient is set when the entry was not cached (the caller releases it). */
static entry *lookup(const key *k, int *transient) {
    *transient = 0;
    entry *found = (entry *)distill_dnnl_cache_find(&cache, k);
    if (found) return found->status == 0 ? found : NULL;
    entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->key = *k;
    omp_set_num_threads(k->threads);
    e->status = make(e) != dnnl_success;
    omp_set_num_threads(1);
    if (e->status) {
        /* Keep only the refusal. */
        for (int r = 0; r < ROLES; r++)
            if (e->reorder[r]) { dnnl_primitive_destroy(e->reorder[r]); e->reorder[r] = NULL; }
        if (e->convolution) { dnnl_primitive_destroy(e->convolution); e->convolution = NULL; }
    }
    int kept;
    entry *other = (entry *)distill_dnnl_cache_keep(&cache, &e->cached, &kept);
    if (other != e) { /* made meanwhile on another thread */
        release(e);
        return other->status == 0 ? other : NULL;
    }
    *transient = !kept;
    if (e->status) {
        if (*transient) release(e);
        return NULL;
    }
    return e;
}

int distill_convolution_available(void) {
    pthread_once(&engine_once, make_engine);
    return engine != NULL;
}

/* The entry of (shape, pass, threads, bias), made on first use; NULL when refused. */
static entry *entry_for(const distill_convolution_shape *shape, distill_convolution_pass pass, int threads, int bias, int *transient) {
    key k;
    memset(&k, 0, sizeof k); /* padding bytes take part in the comparison */
    k.shape = *shape;
    k.pass = pass;
    k.threads = threads;
    k.bias = bias;
    return lookup(&k, transient);
}

static int run_entry(entry *e, int transient, distill_convolution_pass pass, int threads, float *image, float *weights, float *output,
                     float *bias, int outputReordered);

int distill_convolution_run(const distill_convolution_shape *shape, distill_convolution_pass pass, int threads,
                            float *image, float *weights, float *output, float *bias) {
    if (!distill_convolution_available() || threads < 1) return 0;
    int transient;
    entry *e = entry_for(shape, pass, threads, bias != NULL, &transient);
    if (!e) return 0;
    return run_entry(e, transient, pass, threads, image, weights, output, bias, 0);
}

int distill_convolution_backward(const distill_convolution_shape *shape, int threads, float *image, float *weights, float *gradOutput,
                                 float *gradImage, float *gradWeights) {
    if (!distill_convolution_available() || threads < 1 || (!gradImage && !gradWeights)) return 0;
    int dataTransient = 0, weightsTransient = 0;
    entry *data = gradImage ? entry_for(shape, DISTILL_CONVOLUTION_BACKWARD_DATA, threads, 0, &dataTransient) : NULL;
    if (gradImage && !data) return 0;
    entry *wts = gradWeights ? entry_for(shape, DISTILL_CONVOLUTION_BACKWARD_WEIGHTS, threads, 0, &weightsTransient) : NULL;
    if (gradWeights && !wts) {
        if (dataTransient) release(data);
        return 0;
    }
    /* The output gradient is reordered once when both passes read it in the same layout: the
       second finds it in the calling thread's buffer, where the first left it. */
    int shared = data && wts && data->reorder[OUTPUT] && wts->reorder[OUTPUT] && dnnl_memory_desc_equal(&data->used[OUTPUT], &wts->used[OUTPUT]);
    int ok = 1;
    if (data) ok = run_entry(data, dataTransient, DISTILL_CONVOLUTION_BACKWARD_DATA, threads, gradImage, weights, gradOutput, NULL, 0);
    if (wts) {
        if (ok) ok = run_entry(wts, weightsTransient, DISTILL_CONVOLUTION_BACKWARD_WEIGHTS, threads, image, gradWeights, gradOutput, NULL, shared);
        else if (weightsTransient) release(wts);
    }
    return ok;
}

/* Runs `e` (released after when transient); `outputReordered`: the calling thread's buffer for
   the output role already holds `output` in the entry's layout. */
static int run_entry(entry *e, int transient, distill_convolution_pass pass, int threads, float *image, float *weights, float *output,
                     float *bias, int outputReordered) {
    float *user[ROLES] = {image, weights, output};
    void *scratch;
    dnnl_memory_t memory[ROLES] = {NULL, NULL, NULL}, userMemory[ROLES] = {NULL, NULL, NULL};
    dnnl_memory_t scratchMemory = NULL, biasMemory = NULL;
    dnnl_stream_t stream = NULL;
    int ok = 0, written = written_role(pass);
    dnnl_memory_desc_t scratchDesc;
    dnnl_dims_t scratchDims = {(long)(e->scratch ? e->scratch : 1)};
    if (!(scratch = reserve(0, (size_t)scratchDims[0]))) goto done;
    if (dnnl_memory_desc_init_by_tag(&scratchDesc, 1, scratchDims, dnnl_u8, dnnl_a) != dnnl_success
        || dnnl_memory_create(&scratchMemory, &scratchDesc, engine, scratch) != dnnl_success
        || dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) goto done;
    omp_set_num_threads(threads);
    for (int r = 0; r < ROLES; r++) {
        if (dnnl_memory_create(&userMemory[r], &e->user[r], engine, user[r]) != dnnl_success) goto done;
        if (!e->reorder[r]) {
            memory[r] = userMemory[r];
            userMemory[r] = NULL;
            continue;
        }
        void *reordered = reserve(1 + r, dnnl_memory_desc_get_size(&e->used[r]));
        if (!reordered || dnnl_memory_create(&memory[r], &e->used[r], engine, reordered) != dnnl_success) goto done;
        if (r != written && !(r == OUTPUT && outputReordered)) {
            dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, userMemory[r]}, {DNNL_ARG_TO, memory[r]}, {DNNL_ARG_SCRATCHPAD, scratchMemory}};
            if (dnnl_primitive_execute(e->reorder[r], stream, 3, args) != dnnl_success) goto done;
        }
    }
    dnnl_exec_arg_t args[5];
    int n = 0;
    args[n++] = (dnnl_exec_arg_t){pass == DISTILL_CONVOLUTION_BACKWARD_DATA ? DNNL_ARG_DIFF_SRC : DNNL_ARG_SRC, memory[IMAGE]};
    args[n++] = (dnnl_exec_arg_t){pass == DISTILL_CONVOLUTION_BACKWARD_WEIGHTS ? DNNL_ARG_DIFF_WEIGHTS : DNNL_ARG_WEIGHTS, memory[WEIGHTS]};
    args[n++] = (dnnl_exec_arg_t){pass == DISTILL_CONVOLUTION_FORWARD ? DNNL_ARG_DST : DNNL_ARG_DIFF_DST, memory[OUTPUT]};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, scratchMemory};
    if (bias) {
        if (dnnl_memory_create(&biasMemory, &e->bias_md, engine, bias) != dnnl_success) goto done;
        args[n++] = (dnnl_exec_arg_t){pass == DISTILL_CONVOLUTION_FORWARD ? DNNL_ARG_BIAS : DNNL_ARG_DIFF_BIAS, biasMemory};
    }
    if (dnnl_primitive_execute(e->convolution, stream, n, args) != dnnl_success) goto done;
    if (e->reorder[written]) {
        dnnl_exec_arg_t back[] = {{DNNL_ARG_FROM, memory[written]}, {DNNL_ARG_TO, userMemory[written]}, {DNNL_ARG_SCRATCHPAD, scratchMemory}};
        if (dnnl_primitive_execute(e->reorder[written], stream, 3, back) != dnnl_success) goto done;
    }
    ok = dnnl_stream_wait(stream) == dnnl_success;
done:
    omp_set_num_threads(1);
    for (int r = 0; r < ROLES; r++) {
        if (memory[r]) dnnl_memory_destroy(memory[r]);
        if (userMemory[r]) dnnl_memory_destroy(userMemory[r]);
    }
    if (biasMemory) dnnl_memory_destroy(biasMemory);
    if (scratchMemory) dnnl_memory_destroy(scratchMemory);
    if (stream) dnnl_stream_destroy(stream);
    if (transient) release(e);
    return ok;
}

/* ---- Fused float inference: NHWC activations, weights packed once per batch size. ---- */

/* The memory objects of one run of an entry (made once, their data pointers set per call:
   creating them per call was a tenth of a batch-1 MobileNetV2 pass, in malloc). */
typedef struct memory_set {
    dnnl_memory_t src, dst, weights, bias, scratch;
    struct memory_set *next;
} memory_set;

static void destroy_memory_set(memory_set *m) {
    dnnl_memory_t all[] = {m->src, m->dst, m->weights, m->bias, m->scratch};
    for (int i = 0; i < 5; i++)
        if (all[i]) dnnl_memory_destroy(all[i]);
    free(m);
}

typedef struct packed_entry {
    long batch, firstRow, endRow; /* output rows [firstRow, endRow) of each image */
    memory_set *sets;             /* idle memory sets, taken and given back under the lock */
    int accumulate;
    struct packed_entry *next;
    dnnl_primitive_t convolution;
    dnnl_memory_desc_t src, dst, bias;
    dnnl_memory_desc_t packed_md;
    void *packed; /* the weights in the primitive's layout */
    size_t scratch;
} packed_entry;

struct distill_packed_convolution {
    distill_convolution_shape shape;
    distill_activation activation;
    float *weights, *bias;
    pthread_mutex_t lock;
    packed_entry *entries;
    int count;
};

/* Batch sizes beyond this many per convolution are made, run and dropped. */
#define MAX_PACKED_ENTRIES 16

static void release_packed(packed_entry *e) {
    for (memory_set *m = e->sets, *next; m; m = next) {
        next = m->next;
        destroy_memory_set(m);
    }
    if (e->convolution) dnnl_primitive_destroy(e->convolution);
    free(e->packed);
    free(e);
}

/* The primitive for shape `s` (c's, or a band of its rows) and `accumulate`, its weights
   packed; NULL when oneDNN refuses. */
static packed_entry *make_packed(const distill_packed_convolution *c, const distill_convolution_shape *s, int accumulate) {
    long g = s->groups, batch = s->batch;
    dnnl_dims_t image = {batch, s->channels, s->height, s->width};
    dnnl_dims_t output = {batch, s->outChannels, s->outputHeight, s->outputWidth};
    dnnl_dims_t weights = {g, s->outChannels / g, s->channels / g, s->kernelHeight, s->kernelWidth};
    dnnl_dims_t biasDims = {s->outChannels};
    dnnl_dims_t strides = {s->strideHeight, s->strideWidth};
    dnnl_dims_t dilates = {s->dilationHeight - 1, s->dilationWidth - 1};
    dnnl_dims_t left = {s->paddingHeight, s->paddingWidth};
    dnnl_dims_t right = {(s->outputHeight - 1) * s->strideHeight + (s->kernelHeight - 1) * s->dilationHeight + 1 - s->height - s->paddingHeight,
                         (s->outputWidth - 1) * s->strideWidth + (s->kernelWidth - 1) * s->dilationWidth + 1 - s->width - s->paddingWidth};
    int weightDims = g > 1 ? 5 : 4;
    const dnnl_dim_t *weightShape = g > 1 ? weights : weights + 1;
    packed_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->batch = batch;
    e->accumulate = accumulate;
    dnnl_memory_desc_t user_weights, any_weights;
    dnnl_convolution_desc_t forward;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_status_t status;
#define TRY(call) do { if ((status = (call)) != dnnl_success) goto fail; } while (0)
    TRY(dnnl_memory_desc_init_by_tag(&e->src, 4, image, dnnl_f32, dnnl_nhwc));
    TRY(dnnl_memory_desc_init_by_tag(&e->dst, 4, output, dnnl_f32, dnnl_nhwc));
    TRY(dnnl_memory_desc_init_by_tag(&e->bias, 1, biasDims, dnnl_f32, dnnl_a));
    TRY(dnnl_memory_desc_init_by_tag(&user_weights, weightDims, weightShape, dnnl_f32, g > 1 ? dnnl_goihw : dnnl_oihw));
    TRY(dnnl_memory_desc_init_by_tag(&any_weights, weightDims, weightShape, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_dilated_convolution_forward_desc_init(&forward, dnnl_forward_inference, dnnl_convolution_direct, &e->src, &any_weights,
                                                   &e->bias, &e->dst, strides, dilates, left, right));
    TRY(dnnl_post_ops_create(&ops));
    if (accumulate) TRY(dnnl_post_ops_append_sum(ops, 1.0f));
    if (c->activation == DISTILL_ACTIVATION_RELU) TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    if (c->activation == DISTILL_ACTIVATION_RELU6) TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_clip, 0.0f, 6.0f));
    TRY(dnnl_primitive_attr_create(&attr));
    TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    TRY(dnnl_primitive_attr_set_post_ops(attr, ops));
    TRY(dnnl_primitive_desc_create(&pd, &forward, attr, engine, NULL));
    e->packed_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    e->scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    TRY(dnnl_primitive_create(&e->convolution, pd));
    /* Pack the weights once: a reorder from OIHW into the primitive's layout. */
    if (posix_memalign(&e->packed, 64, dnnl_memory_desc_get_size(&e->packed_md) + 64) != 0) { e->packed = NULL; status = dnnl_out_of_memory; goto fail; }
    TRY(dnnl_memory_create(&from, &user_weights, engine, c->weights));
    TRY(dnnl_memory_create(&to, &e->packed_md, engine, e->packed));
    if (dnnl_memory_desc_equal(&user_weights, &e->packed_md)) {
        memcpy(e->packed, c->weights, dnnl_memory_desc_get_size(&user_weights));
    } else {
        dnnl_primitive_desc_t rpd;
        TRY(dnnl_reorder_primitive_desc_create(&rpd, &user_weights, engine, &e->packed_md, engine, NULL));
        status = dnnl_primitive_create(&reorder, rpd);
        dnnl_primitive_desc_destroy(rpd);
        if (status != dnnl_success) goto fail;
        TRY(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
        dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        TRY(dnnl_primitive_execute(reorder, stream, 2, args));
        TRY(dnnl_stream_wait(stream));
    }
#undef TRY
fail:
    if (stream) dnnl_stream_destroy(stream);
    if (reorder) dnnl_primitive_destroy(reorder);
    if (from) dnnl_memory_destroy(from);
    if (to) dnnl_memory_destroy(to);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (ops) dnnl_post_ops_destroy(ops);
    if (status != dnnl_success) {
        release_packed(e);
        return NULL;
    }
    return e;
}

distill_packed_convolution *distill_packed_convolution_create(const distill_convolution_shape *shape, distill_activation activation,
                                                              const float *weights, const float *bias) {
    if (!distill_convolution_available() || shape->groups < 1 || shape->batch < 1) return NULL;
    distill_packed_convolution *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->shape = *shape;
    c->activation = activation;
    size_t weightCount = (size_t)shape->outChannels * (size_t)(shape->channels / shape->groups) * (size_t)shape->kernelHeight * (size_t)shape->kernelWidth;
    c->weights = malloc(weightCount * sizeof(float) + 64);
    c->bias = calloc((size_t)shape->outChannels + 16, sizeof(float));
    if (!c->weights || !c->bias) { distill_packed_convolution_destroy(c); return NULL; }
    memcpy(c->weights, weights, weightCount * sizeof(float));
    if (bias) memcpy(c->bias, bias, (size_t)shape->outChannels * sizeof(float));
    pthread_mutex_init(&c->lock, NULL);
    /* Made now for the batch given, so that a refused shape shows here and not mid-model. */
    omp_set_num_threads(1);
    packed_entry *e = make_packed(c, shape, 0);
    if (!e) { pthread_mutex_destroy(&c->lock); free(c->weights); free(c->bias); free(c); return NULL; }
    e->firstRow = 0;
    e->endRow = shape->outputHeight;
    c->entries = e;
    c->count = 1;
    return c;
}

/* Runs the entry for `shape` (a batch of c's images, or one image's band of output rows
   firstRow..<endRow), made on first use. */
static int run_packed(distill_packed_convolution *c, const distill_convolution_shape *shape, long firstRow, long endRow,
                      const float *input, float *output, int accumulate) {
    long batch = shape->batch;
    packed_entry *e = NULL;
    int transient = 0;
    pthread_mutex_lock(&c->lock);
    for (packed_entry *p = c->entries; p; p = p->next)
        if (p->batch == batch && p->accumulate == accumulate && p->firstRow == firstRow && p->endRow == endRow) { e = p; break; }
    pthread_mutex_unlock(&c->lock);
    if (!e) {
        omp_set_num_threads(1);
        if (!(e = make_packed(c, shape, accumulate))) return 0;
        e->firstRow = firstRow;
        e->endRow = endRow;
        pthread_mutex_lock(&c->lock);
        packed_entry *other = NULL;
        for (packed_entry *p = c->entries; p; p = p->next)
            if (p->batch == batch && p->accumulate == accumulate && p->firstRow == firstRow && p->endRow == endRow) { other = p; break; }
        if (other) { release_packed(e); e = other; }
        else if (c->count < MAX_PACKED_ENTRIES) { e->next = c->entries; c->entries = e; c->count++; }
        else transient = 1;
        pthread_mutex_unlock(&c->lock);
    }
    int ok = 0;
    void *scratch = reserve(0, e->scratch ? e->scratch : 1);
    dnnl_stream_t thread_stream = distill_dnnl_thread_stream();
    if (!scratch || !thread_stream) {
        if (transient) release_packed(e);
        return 0;
    }
    omp_set_num_threads(1);
    pthread_mutex_lock(&c->lock);
    memory_set *m = e->sets;
    if (m) e->sets = m->next;
    pthread_mutex_unlock(&c->lock);
    if (!m) {
        dnnl_memory_desc_t scratchDesc;
        dnnl_dims_t scratchDims = {(long)(e->scratch ? e->scratch : 1)};
        if (!(m = calloc(1, sizeof *m))) goto done;
        if (dnnl_memory_desc_init_by_tag(&scratchDesc, 1, scratchDims, dnnl_u8, dnnl_a) != dnnl_success
            || dnnl_memory_create(&m->scratch, &scratchDesc, engine, scratch) != dnnl_success
            || dnnl_memory_create(&m->src, &e->src, engine, (void *)input) != dnnl_success
            || dnnl_memory_create(&m->dst, &e->dst, engine, output) != dnnl_success
            || dnnl_memory_create(&m->weights, &e->packed_md, engine, e->packed) != dnnl_success
            || dnnl_memory_create(&m->bias, &e->bias, engine, c->bias) != dnnl_success) goto done;
    } else if (dnnl_memory_set_data_handle(m->scratch, scratch) != dnnl_success
               || dnnl_memory_set_data_handle(m->src, (void *)input) != dnnl_success
               || dnnl_memory_set_data_handle(m->dst, output) != dnnl_success) goto done;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, m->src}, {DNNL_ARG_WEIGHTS, m->weights}, {DNNL_ARG_BIAS, m->bias},
                              {DNNL_ARG_DST, m->dst}, {DNNL_ARG_SCRATCHPAD, m->scratch}};
    ok = dnnl_primitive_execute(e->convolution, thread_stream, 5, args) == dnnl_success
         && dnnl_stream_wait(thread_stream) == dnnl_success;
done:
    if (m && ok && !transient) {
        pthread_mutex_lock(&c->lock);
        m->next = e->sets;
        e->sets = m;
        pthread_mutex_unlock(&c->lock);
    } else if (m) {
        destroy_memory_set(m);
    }
    if (transient) release_packed(e);
    return ok;
}

int distill_packed_convolution_run(distill_packed_convolution *c, long batch, const float *input, float *output, int accumulate) {
    if (!c || batch < 1) return 0;
    distill_convolution_shape shape = c->shape;
    shape.batch = batch;
    return run_packed(c, &shape, 0, shape.outputHeight, input, output, accumulate);
}

int distill_packed_convolution_run_rows(distill_packed_convolution *c, long firstRow, long endRow, const float *input, float *output,
                                        int accumulate) {
    if (!c || firstRow < 0 || endRow > c->shape.outputHeight || firstRow >= endRow) return 0;
    const distill_convolution_shape *s = &c->shape;
    /* The input rows the band reads, from a to b inclusive, clipped to the image; what lies
       outside is the band's padding (its bottom padding follows from its heights). */
    long a = firstRow * s->strideHeight - s->paddingHeight;
    long b = (endRow - 1) * s->strideHeight - s->paddingHeight + (s->kernelHeight - 1) * s->dilationHeight;
    long top = a < 0 ? 0 : a, end = b + 1 > s->height ? s->height : b + 1;
    if (top >= end) return 0;
    distill_convolution_shape band = *s;
    band.batch = 1;
    band.height = end - top;
    band.paddingHeight = top - a;
    band.outputHeight = endRow - firstRow;
    return run_packed(c, &band, firstRow, endRow, input + top * s->width * s->channels,
                      output + firstRow * s->outputWidth * s->outChannels, accumulate);
}

void distill_packed_convolution_destroy(distill_packed_convolution *c) {
    if (!c) return;
    for (packed_entry *e = c->entries, *next; e; e = next) {
        next = e->next;
        release_packed(e);
    }
    if (c->entries) pthread_mutex_destroy(&c->lock);
    free(c->weights);
    free(c->bias);
    free(c);
}

#else

int distill_convolution_available(void) { return 0; }

int distill_convolution_run(const distill_convolution_shape *shape, distill_convolution_pass pass, int threads,
                            float *image, float *weights, float *output, float *bias) {
    (void)shape; (void)pass; (void)threads; (void)image; (void)weights; (void)output; (void)bias;
    return 0;
}

int distill_convolution_backward(const distill_convolution_shape *shape, int threads, float *image, float *weights, float *gradOutput,
                                 float *gradImage, float *gradWeights) {
    (void)shape; (void)threads; (void)image; (void)weights; (void)gradOutput; (void)gradImage; (void)gradWeights;
    return 0;
}

distill_packed_convolution *distill_packed_convolution_create(const distill_convolution_shape *shape, distill_activation activation,
                                                              const float *weights, const float *bias) {
    (void)shape; (void)activation; (void)weights; (void)bias;
    return NULL;
}

int distill_packed_convolution_run(distill_packed_convolution *convolution, long batch, const float *input, float *output, int accumulate) {
    (void)convolution; (void)batch; (void)input; (void)output; (void)accumulate;
    return 0;
}

int distill_packed_convolution_run_rows(distill_packed_convolution *convolution, long firstRow, long endRow, const float *input,
                                        float *output, int accumulate) {
    (void)convolution; (void)firstRow; (void)endRow; (void)input; (void)output; (void)accumulate;
    return 0;
}

void distill_packed_convolution_destroy(distill_packed_convolution *convolution) { (void)convolution; }

#endif
