#ifndef DISTILL_CBLAS_SHIM_H
#define DISTILL_CBLAS_SHIM_H

/* Single-precision GEMM, row-major: C = alpha·op(A)·op(B) + beta·C.
   Linux: oneDNN's dnnl_sgemm, which JIT-compiles kernels for the CPU it finds (AVX-512,
   AVX2, ...). Debian 12's OpenBLAS 0.3.21 falls back to its SSE3 "Prescott" kernel on CPUs
   newer than it knows (measured 33 GFLOP/s a thread against oneDNN's 150 on a Sapphire
   Rapids Xeon), and choosing its kernel needs an environment variable we must not set.
   Apple platforms: Accelerate's cblas_sgemm.
   Each call runs on the calling thread only; Distill splits large products over its own
   worker pool, so that two thread pools never spin against each other. */
#if defined(__APPLE__)
#include <Accelerate/Accelerate.h>
static inline void distill_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                                 const float *a, long lda, const float *b, long ldb,
                                 float beta, float *c, long ldc) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}
static inline void distill_single_threaded_blas(void) {}
#else
#include <dnnl.h>
void omp_set_num_threads(int);
static inline void distill_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                                 const float *a, long lda, const float *b, long ldb,
                                 float beta, float *c, long ldc) {
    dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
/* oneDNN parallelises with OpenMP; one OpenMP thread per caller keeps it on our threads. */
static inline void distill_single_threaded_blas(void) { omp_set_num_threads(1); }
#endif

/* glibc's allocator keeps freed memory for reuse: no trimming of the heap's top, blocks up
   to 64 MiB from the heap (Compute.keepFreedMemory says why). Nothing elsewhere. */
#if defined(__GLIBC__)
#include <malloc.h>
static inline void distill_keep_freed_memory(void) {
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
}
#else
static inline void distill_keep_freed_memory(void) {}
#endif

/* Standard output a line at a time, also into a file or pipe (the distill command sets it
   at start; Swift 6 cannot name C's `stdout` from Swift). */
#include <stdio.h>
static inline void distill_line_buffered_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

/* Flush-to-zero and denormals-are-zero on the calling thread. Denormal floats take a
   microcode slow path on x86 (10-100x per operation); training on small data produces
   many of them in weights and gradients. Called at the start of every compute chunk. */
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
static inline void distill_set_flush_denormals(int on) {
    unsigned int csr = _mm_getcsr();
    csr = on ? (csr | 0x8040u) : (csr & ~0x8040u);
    _mm_setcsr(csr);
}
#elif defined(__aarch64__)
static inline void distill_set_flush_denormals(int on) {
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    fpcr = on ? (fpcr | (1ul << 24)) : (fpcr & ~(1ul << 24));
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
}
#else
static inline void distill_set_flush_denormals(int on) { (void)on; }
#endif

#endif
