/* Our direct convolution of first layers (Sources/CKernels/direct.c) against oneDNN's
   forward-inference primitive on the same NHWC tensors (issue 17: PackedConvolution runs a
   layer of at most 4 input channels with the direct kernel).

   For the first layers of the zoo's cnn-student (1×28×28 → 8), resnet20 (3×32×32 → 16) and
   mobilenetv2 (3×32×32 → 32), 3×3, padding 1, ReLU fused, one thread: microseconds per image,
   the minimum over rounds (oneDNN and each of our paths alternate within a round), and the
   largest difference between each path and oneDNN's output.

       clang -O2 -ISources/CKernels -ISources/CKernels/include bench/onednn/direct_first_layer.c \
           Sources/CKernels/direct.c -o /tmp/direct_first_layer -ldnnl
       /tmp/direct_first_layer [batch, default 32] [rounds, default 20]

   Only meaningful on a quiet machine, or as a ratio within one run. */
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

/* direct.c's entry point reads the dispatch table; this program calls each path directly. */
distill_kernel_table distill_kernels;
void distill_kernels_ensure_chosen(void) {}

#define CHECK(f) do { dnnl_status_t s_ = (f); if (s_ != dnnl_success) { fprintf(stderr, "%s:%d %s -> %d\n", __FILE__, __LINE__, #f, s_); exit(1); } } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef void (*direct_fn)(const distill_convolution_shape *, const float *, const float *, const float *, distill_activation, int, long, long,
                          float *);

int main(int argc, char **argv) {
    long batch = argc > 1 ? atol(argv[1]) : 32;
    int rounds = argc > 2 ? atoi(argv[2]) : 20;
    struct { const char *name; long c, h, o; } layers[] = {{"cnn-student", 1, 28, 8}, {"resnet20", 3, 32, 16}, {"mobilenetv2", 3, 32, 32}};
    direct_fn paths[] = {distill_direct_convolution_portable, distill_direct_convolution_avx2, distill_direct_convolution_avx512};
    const char *names[] = {"portable", "avx2", "avx512"};
    int usable[] = {1, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), __builtin_cpu_supports("avx512f")};
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    printf("batch %ld, 1 thread, 3x3 convolution + ReLU, NHWC, microseconds per image (minimum of %d rounds)\n", batch, rounds);
    printf("%-12s %10s %10s %10s %10s  %s\n", "first layer", "oneDNN", names[0], names[1], names[2], "oneDNN impl; max |difference|");
    for (size_t l = 0; l < sizeof layers / sizeof *layers; l++) {
        long c = layers[l].c, h = layers[l].h, o = layers[l].o;
        distill_convolution_shape s = {batch, c, h, h, o, 1, 3, 3, 1, 1, 1, 1, 1, 1, h, h};
        size_t in_count = (size_t)(batch * h * h * c), out_count = (size_t)(batch * h * h * o);
        float *input = malloc(in_count * 4), *oihw = malloc((size_t)(o * c * 9) * 4), *hwio = malloc((size_t)(o * c * 9) * 4);
        float *bias = malloc((size_t)o * 4), *reference = malloc(out_count * 4), *output = malloc(out_count * 4);
        for (size_t i = 0; i < in_count; i++) input[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (long i = 0; i < o * c * 9; i++) oihw[i] = (float)((i * 31) % 100) / 100.0f - 0.5f;
        for (long i = 0; i < o; i++) bias[i] = 0.01f * (float)i;
        for (long q = 0; q < o; q++)
            for (long k = 0; k < c; k++)
                for (long t = 0; t < 9; t++) hwio[(t * c + k) * o + q] = oihw[(q * c + k) * 9 + t];
        /* oneDNN: NHWC activations, weights packed into its layout once. */
        dnnl_dims_t src = {batch, c, h, h}, dst = {batch, o, h, h}, wei = {o, c, 3, 3}, bia = {o}, strides = {1, 1}, pad = {1, 1};
        dnnl_memory_desc_t src_md, dst_md, wei_md, wei_user_md, bias_md;
        CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src, dnnl_f32, dnnl_nhwc));
        CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst, dnnl_f32, dnnl_nhwc));
        CHECK(dnnl_memory_desc_init_by_tag(&wei_md, 4, wei, dnnl_f32, dnnl_format_tag_any));
        CHECK(dnnl_memory_desc_init_by_tag(&wei_user_md, 4, wei, dnnl_f32, dnnl_oihw));
        CHECK(dnnl_memory_desc_init_by_tag(&bias_md, 1, bia, dnnl_f32, dnnl_a));
        dnnl_convolution_desc_t desc;
        CHECK(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &wei_md, &bias_md, &dst_md,
                                                 strides, pad, pad));
        dnnl_post_ops_t ops;
        dnnl_primitive_attr_t attr;
        CHECK(dnnl_post_ops_create(&ops));
        CHECK(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
        CHECK(dnnl_primitive_attr_create(&attr));
        CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
        dnnl_primitive_desc_t pd;
        CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        const dnnl_memory_desc_t *packed_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        dnnl_primitive_t conv, reorder;
        CHECK(dnnl_primitive_create(&conv, pd));
        dnnl_memory_t m_src, m_dst, m_user, m_wei, m_bias, m_scratch;
        CHECK(dnnl_memory_create(&m_src, &src_md, engine, input));
        CHECK(dnnl_memory_create(&m_dst, &dst_md, engine, reference));
        CHECK(dnnl_memory_create(&m_user, &wei_user_md, engine, oihw));
        CHECK(dnnl_memory_create(&m_wei, packed_md, engine, DNNL_MEMORY_ALLOCATE));
        CHECK(dnnl_memory_create(&m_bias, &bias_md, engine, bias));
        CHECK(dnnl_memory_create(&m_scratch, scratch_md, engine, DNNL_MEMORY_ALLOCATE));
        dnnl_primitive_desc_t rpd;
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &wei_user_md, engine, packed_md, engine, NULL));
        CHECK(dnnl_primitive_create(&reorder, rpd));
        dnnl_exec_arg_t rargs[] = {{DNNL_ARG_FROM, m_user}, {DNNL_ARG_TO, m_wei}};
        CHECK(dnnl_primitive_execute(reorder, stream, 2, rargs));
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, m_src}, {DNNL_ARG_WEIGHTS, m_wei}, {DNNL_ARG_BIAS, m_bias}, {DNNL_ARG_DST, m_dst},
                                  {DNNL_ARG_SCRATCHPAD, m_scratch}};
        double best[4] = {1e30, 1e30, 1e30, 1e30}, difference[3] = {0, 0, 0};
        for (int round = 0; round < rounds; round++) {
            double t = now();
            CHECK(dnnl_primitive_execute(conv, stream, 5, args));
            CHECK(dnnl_stream_wait(stream));
            t = now() - t;
            if (t < best[0]) best[0] = t;
            for (int p = 0; p < 3; p++) {
                if (!usable[p]) continue;
                t = now();
                paths[p](&s, input, hwio, bias, DISTILL_ACTIVATION_RELU, 0, 0, batch * h, output);
                t = now() - t;
                if (t < best[p + 1]) best[p + 1] = t;
                for (size_t i = 0; i < out_count; i++) {
                    double d = output[i] > reference[i] ? output[i] - reference[i] : reference[i] - output[i];
                    if (d > difference[p]) difference[p] = d;
                }
            }
        }
        printf("%-12s %10.2f", layers[l].name, best[0] / batch * 1e6);
        for (int p = 0; p < 3; p++) {
            if (usable[p]) printf(" %10.2f", best[p + 1] / batch * 1e6);
            else printf(" %10s", "-");
        }
        printf("  %s; %.1e / %.1e / %.1e\n", impl ? impl : "?", difference[0], difference[1], difference[2]);
        free(input); free(oihw); free(hwio); free(bias); free(reference); free(output);
    }
    return 0;
}
