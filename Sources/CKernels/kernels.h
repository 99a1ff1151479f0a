#ifndef DISTILL_CKERNELS_PRIVATE_H
#define DISTILL_CKERNELS_PRIVATE_H

/* The dispatched kernels of each path, and the table the active path fills. */

typedef void (*distill_accumulate_fn)(long, int, const float *const *, const float *, float, float *);
typedef void (*distill_dot_fn)(long, int, const float *const *, const float *, float *);

typedef struct {
    distill_accumulate_fn accumulate;
    distill_dot_fn dot;
} distill_kernel_table;

extern distill_kernel_table distill_kernels;

/* Chooses the default path on first use. */
void distill_kernels_ensure_chosen(void);

void distill_taps_accumulate_portable(long, int, const float *const *, const float *, float, float *);
void distill_taps_dot_portable(long, int, const float *const *, const float *, float *);
#if defined(__x86_64__) || defined(__i386__)
void distill_taps_accumulate_avx2(long, int, const float *const *, const float *, float, float *);
void distill_taps_dot_avx2(long, int, const float *const *, const float *, float *);
void distill_taps_accumulate_avx512(long, int, const float *const *, const float *, float, float *);
void distill_taps_dot_avx512(long, int, const float *const *, const float *, float *);
#endif

#endif
