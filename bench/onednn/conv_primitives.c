/* Does oneDNN's convolution primitive beat Distill's im2col + sgemm? (issue 17)

   For every convolution of resnet20, resnet56, wrn-16-2 (3×32×32) and cnn-student (1×28×28)
   at a batch and thread count, times forward, backward data and backward weights five ways:

     im2col     Distill's path today, emulated in C: samples split over the threads, each
                thread unfolds one sample (im2col) and runs a single-threaded dnnl_sgemm;
                backward folds (col2im) and sums per-thread weight gradients.
     plain-s    the convolution primitive on plain NCHW / OIHW memory, the batch split over
                the threads (one single-threaded primitive per sub-batch), as our pool would.
     plain-w    the same primitive on the whole batch, oneDNN's OpenMP running the threads.
     any-s      format_tag_any (oneDNN picks blocked layouts, nChw16c on AVX-512), with
                reorders from and to NCHW around every call (weights included), split.
     any-w      format_tag_any with reorders, whole batch on oneDNN's threads.

   Each (layer, pass, mode) is the minimum over the rounds; modes alternate within a round.
   Prints per layer and per model (each layer times its count in the model), and the
   implementation oneDNN chose.

       gcc -O2 -fopenmp bench/onednn/conv_primitives.c -o /tmp/conv_primitives -ldnnl
       /tmp/conv_primitives BATCH THREADS [rounds, default 5] [model]

   Only meaningful on a quiet machine, or as a ratio within one run. */
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(f) do { dnnl_status_t s_ = (f); if (s_ != dnnl_success) { fprintf(stderr, "%s:%d %s -> %d\n", __FILE__, __LINE__, #f, s_); exit(1); } } while (0)

typedef struct { long c, h, w, o, k, s, p; int count; } layer;
typedef struct { const char *name; layer layers[12]; int n; } model;

static const model models[] = {
    {"resnet20", {{3, 32, 32, 16, 3, 1, 1, 1}, {16, 32, 32, 16, 3, 1, 1, 6}, {16, 32, 32, 32, 3, 2, 1, 1}, {16, 32, 32, 32, 1, 2, 0, 1},
                  {32, 16, 16, 32, 3, 1, 1, 5}, {32, 16, 16, 64, 3, 2, 1, 1}, {32, 16, 16, 64, 1, 2, 0, 1}, {64, 8, 8, 64, 3, 1, 1, 5}}, 8},
    {"resnet56", {{3, 32, 32, 16, 3, 1, 1, 1}, {16, 32, 32, 16, 3, 1, 1, 18}, {16, 32, 32, 32, 3, 2, 1, 1}, {16, 32, 32, 32, 1, 2, 0, 1},
                  {32, 16, 16, 32, 3, 1, 1, 17}, {32, 16, 16, 64, 3, 2, 1, 1}, {32, 16, 16, 64, 1, 2, 0, 1}, {64, 8, 8, 64, 3, 1, 1, 17}}, 8},
    {"wrn-16-2", {{3, 32, 32, 16, 3, 1, 1, 1}, {16, 32, 32, 32, 3, 1, 1, 1}, {16, 32, 32, 32, 1, 1, 0, 1}, {32, 32, 32, 32, 3, 1, 1, 3},
                  {32, 32, 32, 64, 3, 2, 1, 1}, {32, 32, 32, 64, 1, 2, 0, 1}, {64, 16, 16, 64, 3, 1, 1, 3},
                  {64, 16, 16, 128, 3, 2, 1, 1}, {64, 16, 16, 128, 1, 2, 0, 1}, {128, 8, 8, 128, 3, 1, 1, 3}}, 10},
    {"cnn-student", {{1, 28, 28, 8, 3, 1, 1, 1}, {8, 14, 14, 16, 3, 1, 1, 1}}, 2},
};

enum { FWD, BWD_D, BWD_W, PASSES };
enum { IM2COL, PLAIN_S, PLAIN_W, ANY_S, ANY_W, MODES };
static const char *mode_names[MODES] = {"im2col", "plain-s", "plain-w", "any-s", "any-w"};
static const char *pass_names[PASSES] = {"fwd", "bwd-data", "bwd-wts"};

static dnnl_engine_t engine;
static int threads;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static long out_size(long in, long k, long s, long p) { return (in + 2 * p - k) / s + 1; }

/* ---- im2col + sgemm, as Distill's ConvolutionPlan does it (one image at a time). ---- */

static void im2col(const float *x, const layer *l, long oh, long ow, float *col) {
    for (long c = 0; c < l->c; c++)
        for (long ki = 0; ki < l->k; ki++)
            for (long kj = 0; kj < l->k; kj++) {
                float *dst = col + ((c * l->k + ki) * l->k + kj) * oh * ow;
                for (long y = 0; y < oh; y++) {
                    long iy = y * l->s - l->p + ki;
                    for (long xo = 0; xo < ow; xo++) {
                        long ix = xo * l->s - l->p + kj;
                        dst[y * ow + xo] = (iy < 0 || iy >= l->h || ix < 0 || ix >= l->w) ? 0 : x[(c * l->h + iy) * l->w + ix];
                    }
                }
            }
}

static void col2im(const float *col, const layer *l, long oh, long ow, float *x) {
    for (long c = 0; c < l->c; c++)
        for (long ki = 0; ki < l->k; ki++)
            for (long kj = 0; kj < l->k; kj++) {
                const float *src = col + ((c * l->k + ki) * l->k + kj) * oh * ow;
                for (long y = 0; y < oh; y++) {
                    long iy = y * l->s - l->p + ki;
                    if (iy < 0 || iy >= l->h) continue;
                    for (long xo = 0; xo < ow; xo++) {
                        long ix = xo * l->s - l->p + kj;
                        if (ix >= 0 && ix < l->w) x[(c * l->h + iy) * l->w + ix] += src[y * ow + xo];
                    }
                }
            }
}

static void run_im2col(int pass, const layer *l, long batch, const float *x, const float *w, float *y,
                       float *dx, float *dw, float *partials) {
    long oh = out_size(l->h, l->k, l->s, l->p), ow = out_size(l->w, l->k, l->s, l->p);
    long area = oh * ow, kk = l->c * l->k * l->k;
    if (pass == BWD_D) memset(dx, 0, sizeof(float) * batch * l->c * l->h * l->w);
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        omp_set_num_threads(1);
        float *col = malloc(sizeof(float) * kk * area);
        float *part = partials + t * l->o * kk;
        if (pass == BWD_W) memset(part, 0, sizeof(float) * l->o * kk);
        for (long s = batch * t / n; s < batch * (t + 1) / n; s++) {
            const float *xs = x + s * l->c * l->h * l->w;
            float *ys = y + s * l->o * area;
            if (pass == FWD) {
                im2col(xs, l, oh, ow, col);
                dnnl_sgemm('N', 'N', l->o, area, kk, 1, w, kk, col, area, 0, ys, area);
            } else if (pass == BWD_W) {
                im2col(xs, l, oh, ow, col);
                dnnl_sgemm('N', 'T', l->o, kk, area, 1, ys, area, col, area, 1, part, kk);
            } else {
                dnnl_sgemm('T', 'N', kk, area, l->o, 1, w, kk, ys, area, 0, col, area);
                col2im(col, l, oh, ow, dx + s * l->c * l->h * l->w);
            }
        }
        free(col);
    }
    if (pass == BWD_W)
        for (int t = 0; t < threads; t++)
            for (long i = 0; i < l->o * kk; i++) dw[i] = (t ? dw[i] : 0) + partials[t * l->o * kk + i];
}

/* ---- the convolution primitive ---- */

typedef struct {
    dnnl_primitive_t conv, to_src, to_wei, to_dst, from_out; /* reorders: user -> primitive, primitive -> user */
    dnnl_memory_desc_t user_src, user_wei, user_dst, src, wei, dst;
    size_t scratch;
    const char *impl;
} prim;

static dnnl_primitive_t reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to) {
    if (dnnl_memory_desc_equal(from, to)) return NULL;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    CHECK(dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, attr));
    dnnl_primitive_t p;
    CHECK(dnnl_primitive_create(&p, pd));
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return p;
}

/* The primitive of `pass` for `batch` images; `any`: oneDNN's chosen layouts with reorders. */
static prim make(int pass, const layer *l, long batch, int any) {
    prim r = {0};
    long oh = out_size(l->h, l->k, l->s, l->p), ow = out_size(l->w, l->k, l->s, l->p);
    dnnl_dims_t sd = {batch, l->c, l->h, l->w}, wd = {l->o, l->c, l->k, l->k}, dd = {batch, l->o, oh, ow};
    dnnl_dims_t st = {l->s, l->s}, dil = {0, 0}, pad = {l->p, l->p};
    long pr = (oh - 1) * l->s + l->k - l->h - l->p;  /* right padding oneDNN needs to reach oh */
    dnnl_dims_t padr = {pr, pr};
    CHECK(dnnl_memory_desc_init_by_tag(&r.user_src, 4, sd, dnnl_f32, dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&r.user_wei, 4, wd, dnnl_f32, dnnl_oihw));
    CHECK(dnnl_memory_desc_init_by_tag(&r.user_dst, 4, dd, dnnl_f32, dnnl_nchw));
    dnnl_memory_desc_t s, w, d;
    CHECK(dnnl_memory_desc_init_by_tag(&s, 4, sd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw));
    CHECK(dnnl_memory_desc_init_by_tag(&w, 4, wd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_oihw));
    CHECK(dnnl_memory_desc_init_by_tag(&d, 4, dd, dnnl_f32, any ? dnnl_format_tag_any : dnnl_nchw));
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_convolution_desc_t fd, cd;
    CHECK(dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &s, &w, NULL, &d, st, dil, pad, padr));
    dnnl_primitive_desc_t hint, pd;
    CHECK(dnnl_primitive_desc_create(&hint, &fd, attr, engine, NULL));
    if (pass == FWD) {
        pd = hint;
        hint = NULL;
    } else {
        if (pass == BWD_D) CHECK(dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &s, &w, &d, st, dil, pad, padr));
        else CHECK(dnnl_dilated_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &s, &w, NULL, &d, st, dil, pad, padr));
        CHECK(dnnl_primitive_desc_create(&pd, &cd, attr, engine, hint));
    }
    r.src = *dnnl_primitive_desc_query_md(pd, pass == BWD_D ? dnnl_query_diff_src_md : dnnl_query_src_md, 0);
    r.wei = *dnnl_primitive_desc_query_md(pd, pass == BWD_W ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
    r.dst = *dnnl_primitive_desc_query_md(pd, pass == FWD ? dnnl_query_dst_md : dnnl_query_diff_dst_md, 0);
    r.scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &r.impl));
    r.impl = strdup(r.impl);
    CHECK(dnnl_primitive_create(&r.conv, pd));
    /* Inputs are reordered in, the output out. */
    if (pass != BWD_D) r.to_src = reorder(&r.user_src, &r.src); else r.from_out = reorder(&r.src, &r.user_src);
    if (pass != BWD_W) r.to_wei = reorder(&r.user_wei, &r.wei); else r.from_out = reorder(&r.wei, &r.user_wei);
    if (pass != FWD) r.to_dst = reorder(&r.user_dst, &r.dst); else r.from_out = reorder(&r.dst, &r.user_dst);
    dnnl_primitive_desc_destroy(pd);
    if (hint) dnnl_primitive_desc_destroy(hint);
    dnnl_primitive_attr_destroy(attr);
    return r;
}

static dnnl_memory_t memory(const dnnl_memory_desc_t *md, void *p) {
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, engine, p));
    return m;
}

static void run_reorder(dnnl_primitive_t p, dnnl_stream_t st, const dnnl_memory_desc_t *from, void *a, const dnnl_memory_desc_t *to, void *b) {
    dnnl_memory_t ma = memory(from, a), mb = memory(to, b);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, ma}, {DNNL_ARG_TO, mb}};
    CHECK(dnnl_primitive_execute(p, st, 2, args));
    dnnl_memory_destroy(ma);
    dnnl_memory_destroy(mb);
}

/* Runs `r` on user buffers (src, wei, dst: NCHW, OIHW, NCHW), reordering through `tmp` buffers. */
static void run_prim(int pass, const prim *r, float *src, float *wei, float *dst, float *tmp[3], void *scratch) {
    dnnl_stream_t st;
    CHECK(dnnl_stream_create(&st, engine, dnnl_stream_default_flags));
    float *ps = src, *pw = wei, *pd = dst;
    if (r->to_src) { ps = tmp[0]; run_reorder(r->to_src, st, &r->user_src, src, &r->src, ps); }
    if (r->to_wei) { pw = tmp[1]; run_reorder(r->to_wei, st, &r->user_wei, wei, &r->wei, pw); }
    if (r->to_dst) { pd = tmp[2]; run_reorder(r->to_dst, st, &r->user_dst, dst, &r->dst, pd); }
    if (r->from_out) {
        if (pass == FWD) pd = tmp[2]; else if (pass == BWD_D) ps = tmp[0]; else pw = tmp[1];
    }
    dnnl_memory_t ms = memory(&r->src, ps), mw = memory(&r->wei, pw), md = memory(&r->dst, pd);
    dnnl_memory_desc_t sm;
    CHECK(dnnl_memory_desc_init_by_tag(&sm, 1, (dnnl_dims_t){(long)r->scratch}, dnnl_u8, dnnl_a));
    dnnl_memory_t mscr = memory(&sm, scratch);
    int sa = pass == BWD_D ? DNNL_ARG_DIFF_SRC : DNNL_ARG_SRC, wa = pass == BWD_W ? DNNL_ARG_DIFF_WEIGHTS : DNNL_ARG_WEIGHTS;
    int da = pass == FWD ? DNNL_ARG_DST : DNNL_ARG_DIFF_DST;
    dnnl_exec_arg_t args[] = {{sa, ms}, {wa, mw}, {da, md}, {DNNL_ARG_SCRATCHPAD, mscr}};
    CHECK(dnnl_primitive_execute(r->conv, st, 4, args));
    if (r->from_out) {
        if (pass == FWD) run_reorder(r->from_out, st, &r->dst, pd, &r->user_dst, dst);
        else if (pass == BWD_D) run_reorder(r->from_out, st, &r->src, ps, &r->user_src, src);
        else run_reorder(r->from_out, st, &r->wei, pw, &r->user_wei, wei);
    }
    CHECK(dnnl_stream_wait(st));
    dnnl_memory_destroy(ms); dnnl_memory_destroy(mw); dnnl_memory_destroy(md); dnnl_memory_destroy(mscr);
    dnnl_stream_destroy(st);
}

int main(int argc, char **argv) {
    long batch = argc > 1 ? atol(argv[1]) : 128;
    threads = argc > 2 ? atoi(argv[2]) : 2;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    const char *only = argc > 4 ? argv[4] : NULL;
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    printf("batch %ld, %d threads, min of %d rounds, ms\n", batch, threads, rounds);
    for (size_t mi = 0; mi < sizeof models / sizeof *models; mi++) {
        const model *m = &models[mi];
        if (only && strcmp(only, m->name)) continue;
        double total[PASSES][MODES] = {{0}};
        printf("\n%s\n%-22s %-8s", m->name, "layer (c,hw,o,k,s) x n", "pass");
        for (int md = 0; md < MODES; md++) printf(" %9s", mode_names[md]);
        printf("   impl (plain / any)\n");
        for (int li = 0; li < m->n; li++) {
            const layer *l = &m->layers[li];
            long oh = out_size(l->h, l->k, l->s, l->p), ow = out_size(l->w, l->k, l->s, l->p);
            long ns = batch * l->c * l->h * l->w, nw = l->o * l->c * l->k * l->k, nd = batch * l->o * oh * ow;
            float *x = malloc(4 * ns), *w = malloc(4 * nw), *y = malloc(4 * nd), *dw = malloc(4 * nw);
            float *partials = malloc(4 * nw * threads);
            float *tmp[3] = {malloc(4 * ns + 4096), malloc(4 * nw + 4096), malloc(4 * nd + 4096)};
            for (long i = 0; i < ns; i++) x[i] = (float)((i * 7919) % 1000) / 1000 - 0.5f;
            for (long i = 0; i < nw; i++) w[i] = (float)((i * 104729) % 1000) / 10000 - 0.05f;
            for (long i = 0; i < nd; i++) y[i] = (float)((i * 31) % 1000) / 1000 - 0.5f;
            for (int pass = 0; pass < PASSES; pass++) {
                /* split: one primitive per thread's sub-batch, made on a single-threaded caller. */
                prim split[2][8], whole[2];
                omp_set_num_threads(1);
                for (int a = 0; a < 2; a++)
                    for (int t = 0; t < threads; t++) {
                        long lo = batch * t / threads, hi = batch * (t + 1) / threads;
                        split[a][t] = make(pass, l, hi - lo, a);
                    }
                omp_set_num_threads(threads);
                for (int a = 0; a < 2; a++) whole[a] = make(pass, l, batch, a);
                size_t scratch_size = 1 << 20, buf[3] = {0, 0, 0};
                for (int a = 0; a < 2; a++)
                    for (int t = 0; t <= threads; t++) {
                        const prim *r = t < threads ? &split[a][t] : &whole[a];
                        if (r->scratch > scratch_size) scratch_size = r->scratch;
                        const dnnl_memory_desc_t *mds[3] = {&r->src, &r->wei, &r->dst};
                        for (int i = 0; i < 3; i++) if (dnnl_memory_desc_get_size(mds[i]) > buf[i]) buf[i] = dnnl_memory_desc_get_size(mds[i]);
                    }
                char *scratch = malloc(scratch_size * threads);
                float *tt[8][3];
                for (int t = 0; t < threads; t++)
                    for (int i = 0; i < 3; i++) { tt[t][i] = malloc(buf[i]); memset(tt[t][i], 0, buf[i]); }
                double best[MODES];
                for (int md = 0; md < MODES; md++) best[md] = 1e30;
                for (int round = -1; round < rounds; round++) {
                    for (int md = 0; md < MODES; md++) {
                        double t0 = now();
                        float *src = pass == BWD_D ? tmp[0] : x;  /* bwd-data writes its own buffer */
                        float *wei = pass == BWD_W ? dw : w;
                        if (md == IM2COL) {
                            run_im2col(pass, l, batch, x, w, y, tmp[0], dw, partials);
                        } else if (md == PLAIN_W || md == ANY_W) {
                            omp_set_num_threads(threads);
                            if (pass == BWD_D) src = x;  /* diff_src overwrites x: only the time counts */
                            run_prim(pass, &whole[md == ANY_W], src, wei, y, tt[0], scratch);
                        } else {
                            int a = md == ANY_S;
#pragma omp parallel num_threads(threads)
                            {
                                int t = omp_get_thread_num();
                                omp_set_num_threads(1);
                                long lo = batch * t / threads;
                                float *ws = pass == BWD_W ? partials + t * nw : w;
                                run_prim(pass, &split[a][t], x + lo * l->c * l->h * l->w, ws,
                                         y + lo * l->o * oh * ow, tt[t], scratch + t * scratch_size);
                            }
                            if (pass == BWD_W)
                                for (int t = 0; t < threads; t++)
                                    for (long i = 0; i < nw; i++) dw[i] = (t ? dw[i] : 0) + partials[t * nw + i];
                        }
                        double dt = now() - t0;
                        if (round >= 0 && dt < best[md]) best[md] = dt;
                    }
                }
                printf("%3ld,%2ldx%-2ld,%3ld,%ld,%ld x%-3d %-8s", l->c, l->h, l->w, l->o, l->k, l->s, l->count, pass_names[pass]);
                for (int md = 0; md < MODES; md++) {
                    printf(" %9.3f", best[md] * 1e3);
                    total[pass][md] += best[md] * l->count;
                }
                printf("   %s / %s\n", whole[0].impl, whole[1].impl);
                free(scratch);
                for (int t = 0; t < threads; t++) for (int i = 0; i < 3; i++) free(tt[t][i]);
            }
            free(x); free(w); free(y); free(dw); free(partials); free(tmp[0]); free(tmp[1]); free(tmp[2]);
        }
        for (int pass = 0; pass <= PASSES; pass++) {
            printf("%-22s %-8s", "total", pass < PASSES ? pass_names[pass] : "all");
            for (int md = 0; md < MODES; md++) {
                double v = pass < PASSES ? total[pass][md] : total[0][md] + total[1][md] + total[2][md];
                printf(" %9.3f", v * 1e3);
            }
            printf("\n");
        }
    }
    return 0;
}
