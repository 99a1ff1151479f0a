/* Which activation layout should Distill's fused inference keep between layers? (issue 17)

   For every convolution of cnn-student (1×28×28), resnet20 and mobilenetv2 (3×32×32) at a batch, times one
   single-threaded forward-inference primitive (ReLU fused as a post-op, weights reordered
   into the primitive's layout once, outside the timing) three ways:

     nchw-r   activations stay NCHW between layers: the input is reordered into the
              primitive's blocked layout and the output back, inside every call
     nhwc     activations stay NHWC (channels last): the primitive reads and writes them
              directly, no reorder
     blocked  activations stay in the primitive's own blocked layout (nChw16c on AVX-512):
              no reorder; the ideal, but every other op must then read that layout

   Each (layer, mode) is the minimum over the rounds; modes alternate within a round. Prints
   per layer and per model (each layer times its count), and the implementation chosen.

       gcc -O2 bench/onednn/inference_layouts.c -o /tmp/inference_layouts -ldnnl
       /tmp/inference_layouts BATCH [rounds, default 5]

   Only meaningful on a quiet machine, or as a ratio within one run. */
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(f) do { dnnl_status_t s_ = (f); if (s_ != dnnl_success) { fprintf(stderr, "%s:%d %s -> %d\n", __FILE__, __LINE__, #f, s_); exit(1); } } while (0)

typedef struct { long c, h, w, o, k, s, p, g; int count; } layer;
typedef struct { const char *name; layer layers[24]; int n; } model;

static const model models[] = {
    /* The zoo's cnn-student at 1×28×28: its first layer has one input channel. */
    {"cnn-student", {{1, 28, 28, 8, 3, 1, 1, 1, 1}, {8, 14, 14, 16, 3, 1, 1, 1, 1}}, 2},
    {"resnet20", {{3, 32, 32, 16, 3, 1, 1, 1, 1}, {16, 32, 32, 16, 3, 1, 1, 1, 6}, {16, 32, 32, 32, 3, 2, 1, 1, 1}, {16, 32, 32, 32, 1, 2, 0, 1, 1},
                  {32, 16, 16, 32, 3, 1, 1, 1, 5}, {32, 16, 16, 64, 3, 2, 1, 1, 1}, {32, 16, 16, 64, 1, 2, 0, 1, 1}, {64, 8, 8, 64, 3, 1, 1, 1, 5}}, 8},
    /* The zoo's MobileNetV2 (ModelZoo.swift) at 3×32×32: stem, then each inverted residual's
       expand 1×1, depthwise 3×3 and project 1×1, then the last 1×1. */
    {"mobilenetv2", {{3, 32, 32, 32, 3, 1, 1, 1, 1}, {32, 32, 32, 32, 3, 1, 1, 32, 1}, {32, 32, 32, 16, 1, 1, 0, 1, 1},
                     {16, 32, 32, 96, 1, 1, 0, 1, 1}, {96, 32, 32, 96, 3, 2, 1, 96, 1}, {96, 16, 16, 24, 1, 1, 0, 1, 1},
                     {24, 16, 16, 144, 1, 1, 0, 1, 2}, {144, 16, 16, 144, 3, 1, 1, 144, 1}, {144, 16, 16, 24, 1, 1, 0, 1, 1},
                     {144, 16, 16, 144, 3, 2, 1, 144, 1}, {144, 8, 8, 32, 1, 1, 0, 1, 1},
                     {32, 8, 8, 192, 1, 1, 0, 1, 2}, {192, 8, 8, 192, 3, 1, 1, 192, 2}, {192, 8, 8, 32, 1, 1, 0, 1, 1},
                     {192, 8, 8, 64, 1, 1, 0, 1, 1}, {64, 8, 8, 384, 1, 1, 0, 1, 1}, {384, 8, 8, 384, 3, 1, 1, 384, 1},
                     {384, 8, 8, 64, 1, 1, 0, 1, 1}, {64, 8, 8, 256, 1, 1, 0, 1, 1}}, 19},
};

enum { NCHW_R, NHWC, BLOCKED, MODES };
static const char *mode_names[MODES] = {"nchw-r", "nhwc", "blocked"};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    dnnl_primitive_t conv, in_reorder, out_reorder;
    dnnl_memory_t src_user, src, wei, dst, dst_user, scratch;
    char impl[64];
} prepared;

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static void *filled(size_t bytes) {
    float *p = malloc(bytes);
    for (size_t i = 0; i < bytes / 4; i++) p[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    return p;
}

static void prepare(prepared *r, const layer *l, long batch, int mode) {
    long oh = (l->h + 2 * l->p - l->k) / l->s + 1, ow = (l->w + 2 * l->p - l->k) / l->s + 1;
    dnnl_dims_t src = {batch, l->c, l->h, l->w}, dst = {batch, l->o, oh, ow};
    dnnl_dims_t wei = {l->g, l->o / l->g, l->c / l->g, l->k, l->k};
    dnnl_dims_t strides = {l->s, l->s}, pad = {l->p, l->p};
    int grouped = l->g > 1;
    dnnl_memory_desc_t src_md, dst_md, wei_md, src_user_md, dst_user_md, wei_user_md;
    dnnl_format_tag_t act = mode == NHWC ? dnnl_nhwc : dnnl_format_tag_any;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src, dnnl_f32, act));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst, dnnl_f32, act));
    CHECK(dnnl_memory_desc_init_by_tag(&wei_md, grouped ? 5 : 4, grouped ? wei : wei + 1, dnnl_f32, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&src_user_md, 4, src, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_user_md, 4, dst, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&wei_user_md, grouped ? 5 : 4, grouped ? wei : wei + 1, dnnl_f32, grouped ? dnnl_goihw : dnnl_oihw));
    dnnl_convolution_desc_t desc;
    CHECK(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &wei_md, NULL, &dst_md, strides, pad, pad));
    dnnl_post_ops_t ops;
    CHECK(dnnl_post_ops_create(&ops));
    CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(r->impl, sizeof r->impl, "%s", impl ? impl : "?");
    const dnnl_memory_desc_t *src_used = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst_used = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *wei_used = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    CHECK(dnnl_primitive_create(&r->conv, pd));
    CHECK(dnnl_memory_create(&r->src, src_used, engine, filled(dnnl_memory_desc_get_size(src_used) + 64)));
    CHECK(dnnl_memory_create(&r->dst, dst_used, engine, filled(dnnl_memory_desc_get_size(dst_used) + 64)));
    CHECK(dnnl_memory_create(&r->scratch, scratch_md, engine, filled(dnnl_memory_desc_get_size(scratch_md) + 64)));
    /* Weights packed once, outside the timing. */
    dnnl_memory_t wei_user;
    CHECK(dnnl_memory_create(&wei_user, &wei_user_md, engine, filled(dnnl_memory_desc_get_size(&wei_user_md))));
    CHECK(dnnl_memory_create(&r->wei, wei_used, engine, filled(dnnl_memory_desc_get_size(wei_used) + 64)));
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t reorder;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, &wei_user_md, engine, wei_used, engine, NULL));
    CHECK(dnnl_primitive_create(&reorder, rpd));
    dnnl_exec_arg_t wargs[] = {{DNNL_ARG_FROM, wei_user}, {DNNL_ARG_TO, r->wei}};
    CHECK(dnnl_primitive_execute(reorder, stream, 2, wargs));
    r->in_reorder = r->out_reorder = NULL;
    if (mode == NCHW_R) {
        CHECK(dnnl_memory_create(&r->src_user, &src_user_md, engine, filled(dnnl_memory_desc_get_size(&src_user_md))));
        CHECK(dnnl_memory_create(&r->dst_user, &dst_user_md, engine, filled(dnnl_memory_desc_get_size(&dst_user_md))));
        if (!dnnl_memory_desc_equal(&src_user_md, src_used)) {
            CHECK(dnnl_reorder_primitive_desc_create(&rpd, &src_user_md, engine, src_used, engine, NULL));
            CHECK(dnnl_primitive_create(&r->in_reorder, rpd));
        }
        if (!dnnl_memory_desc_equal(&dst_user_md, dst_used)) {
            CHECK(dnnl_reorder_primitive_desc_create(&rpd, dst_used, engine, &dst_user_md, engine, NULL));
            CHECK(dnnl_primitive_create(&r->out_reorder, rpd));
        }
    }
}

static double run(prepared *r) {
    double start = now();
    if (r->in_reorder) {
        dnnl_exec_arg_t a[] = {{DNNL_ARG_FROM, r->src_user}, {DNNL_ARG_TO, r->src}};
        CHECK(dnnl_primitive_execute(r->in_reorder, stream, 2, a));
    }
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, r->src}, {DNNL_ARG_WEIGHTS, r->wei}, {DNNL_ARG_DST, r->dst}, {DNNL_ARG_SCRATCHPAD, r->scratch}};
    CHECK(dnnl_primitive_execute(r->conv, stream, 4, args));
    if (r->out_reorder) {
        dnnl_exec_arg_t a[] = {{DNNL_ARG_FROM, r->dst}, {DNNL_ARG_TO, r->dst_user}};
        CHECK(dnnl_primitive_execute(r->out_reorder, stream, 2, a));
    }
    CHECK(dnnl_stream_wait(stream));
    return now() - start;
}

int main(int argc, char **argv) {
    long batch = argc > 1 ? atol(argv[1]) : 1;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    int repeat = batch == 1 ? 200 : 2;
    printf("batch %ld, 1 thread, forward inference + ReLU, ms per call (min over %d rounds of %d calls)\n", batch, rounds, repeat);
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        const model *md = &models[m];
        double total[MODES] = {0};
        printf("%s\n%-34s %9s %9s %9s  %s | %s\n", md->name, "layer (c,h,w -> o, k, s, g) x count", mode_names[0], mode_names[1], mode_names[2],
               "impl nhwc", "impl blocked");
        for (int i = 0; i < md->n; i++) {
            const layer *l = &md->layers[i];
            prepared p[MODES];
            for (int mode = 0; mode < MODES; mode++) prepare(&p[mode], l, batch, mode);
            double best[MODES];
            for (int mode = 0; mode < MODES; mode++) best[mode] = 1e30;
            for (int round = 0; round < rounds; round++)
                for (int mode = 0; mode < MODES; mode++) {
                    double t = 0;
                    for (int k = 0; k < repeat; k++) t += run(&p[mode]);
                    if (t / repeat < best[mode]) best[mode] = t / repeat;
                }
            char name[64];
            snprintf(name, sizeof name, "%ld,%ld,%ld -> %ld, %ld, %ld, %ld x%d", l->c, l->h, l->w, l->o, l->k, l->s, l->g, l->count);
            printf("%-34s %9.4f %9.4f %9.4f  %s | %s\n", name, best[0] * 1e3, best[1] * 1e3, best[2] * 1e3, p[NHWC].impl, p[BLOCKED].impl);
            for (int mode = 0; mode < MODES; mode++) total[mode] += best[mode] * l->count;
        }
        printf("%-34s %9.3f %9.3f %9.3f\n\n", "model total", total[0] * 1e3, total[1] * 1e3, total[2] * 1e3);
    }
    return 0;
}
