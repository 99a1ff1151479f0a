/* Run-time choice of the kernel path from the CPU's features.

   Features are read with cpuid and the OS's saved-state mask (xgetbv): a CPU may have
   AVX-512 while the kernel does not save its registers (then using it would fault), and
   cpuid alone does not say so. */
#include "CKernels.h"
#include "kernels.h"

/* Paths verified by the tests (KernelDispatchTests, and Int8KernelTests for the int8
   kernels of each path) on a CPU that executes them; see docs/benchmarks.md and
   docs/quantization.md for which CPUs. All four on an Intel Xeon (family 6 model 207,
   Emerald Rapids) (which executes AVX2 + FMA, AVX-512BW and AVX-512 VNNI). A new path
   starts at 0 here and is turned on once the tests have run it. */
static const int verified[5] = {1, 1, 1, 1, 1};

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* Linux hands a process the AMX tile state (XTILEDATA, 8 KB a thread) only when asked:
   arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), once, for every thread. 1 when granted. */
static int amx_permission(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    static int granted = -1;
    int known = __atomic_load_n(&granted, __ATOMIC_ACQUIRE);
    if (known < 0) {
        known = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
        __atomic_store_n(&granted, known, __ATOMIC_RELEASE);
    }
    return known;
#else
    return 0;
#endif
}

static unsigned long long saved_state_mask(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int cpu_has(distill_kernels_path path) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    unsigned long long xcr0 = saved_state_mask();
    if ((xcr0 & 0x6) != 0x6) return 0; /* SSE and AVX state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, vnni = (c >> 11) & 1;
    int zmm = (xcr0 & 0xE6) == 0xE6; /* opmask, ZMM state */
    switch (path) {
    case DISTILL_KERNELS_AVX2: return avx2 && fma;
    case DISTILL_KERNELS_AVX512: return avx512f && zmm;
    case DISTILL_KERNELS_AVX512_VNNI: return avx512f && avx512bw && vnni && zmm && avx2 && fma;
    case DISTILL_KERNELS_AMX: {
        int tile = (d >> 24) & 1, int8 = (d >> 25) & 1, tileState = (xcr0 & (3ull << 17)) == (3ull << 17);
        return cpu_has(DISTILL_KERNELS_AVX512_VNNI) && tile && int8 && tileState && amx_permission();
    }
    default: return 0;
    }
}

/* AVX-512BW (byte and word arithmetic), which the AVX512 path's int8 GEMM uses where present. */
static int cpu_has_avx512bw(void) {
    unsigned int a, b, c, d;
    if (!cpu_has(DISTILL_KERNELS_AVX512) || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 30) & 1;
}
#endif

int distill_kernels_path_supported(distill_kernels_path path) {
    if (path == DISTILL_KERNELS_PORTABLE) return 1;
#if defined(__x86_64__) || defined(__i386__)
    if (path >= DISTILL_KERNELS_AVX2 && path <= DISTILL_KERNELS_AMX) return cpu_has(path);
#endif
    return 0;
}

int distill_kernels_path_verified(distill_kernels_path path) {
    return path >= DISTILL_KERNELS_PORTABLE && path <= DISTILL_KERNELS_AMX && verified[path];
}

/* -1 until the first use chooses. */
static int active = -1;
distill_kernel_table distill_kernels;

static void install(distill_kernels_path path) {
    switch (path) {
#if defined(__x86_64__) || defined(__i386__)
    case DISTILL_KERNELS_AMX:
    case DISTILL_KERNELS_AVX512_VNNI:
    case DISTILL_KERNELS_AVX512:
        distill_kernels.accumulate = distill_taps_accumulate_avx512;
        distill_kernels.dot = distill_taps_dot_avx512;
        /* AVX-512F without BW (Knights Landing) keeps the AVX2 int8 GEMM. */
        distill_kernels.q8_gemm = path == DISTILL_KERNELS_AMX           ? distill_q8_gemm_amx
                                  : path == DISTILL_KERNELS_AVX512_VNNI ? distill_q8_gemm_vnni
                                  : cpu_has_avx512bw()                ? distill_q8_gemm_avx512bw
                                                                      : distill_q8_gemm_avx2;
        distill_kernels.q8_requantize = distill_q8_requantize_avx512;
        distill_kernels.q8_dequantize = distill_q8_dequantize_avx512;
        distill_kernels.q8_add = distill_q8_add_avx512;
        /* Without VNNI, AVX2's fused kernel (the AVX-512BW GEMM's arithmetic is the same). */
        distill_kernels.q8_rows_requantize = path >= DISTILL_KERNELS_AVX512_VNNI ? distill_q8_rows_requantize_vnni
                                                                               : distill_q8_rows_requantize_avx2;
        distill_kernels.softmax_row = distill_softmax_row_avx512;
        distill_kernels.gelu = distill_gelu_avx512;
        distill_kernels.gelu_backward = distill_gelu_backward_avx512;
        distill_kernels.layer_norm_row = distill_layer_norm_row_avx512;
        distill_kernels.softmax_backward_row = distill_softmax_backward_row_avx512;
        distill_kernels.layer_norm_backward_row = distill_layer_norm_backward_row_avx512;
        distill_kernels.direct_convolution = distill_direct_convolution_avx512;
        distill_kernels.max_pool = distill_max_pool_nhwc_avx512;
        distill_kernels.q8_quantize_rows = distill_q8_quantize_rows_avx512;
        distill_kernels.q8_dequantize_rows = distill_q8_dequantize_rows_avx512;
        break;
    case DISTILL_KERNELS_AVX2:
        distill_kernels.accumulate = distill_taps_accumulate_avx2;
        distill_kernels.dot = distill_taps_dot_avx2;
        distill_kernels.q8_gemm = distill_q8_gemm_avx2;
        distill_kernels.q8_requantize = distill_q8_requantize_avx2;
        distill_kernels.q8_dequantize = distill_q8_dequantize_avx2;
        distill_kernels.q8_add = distill_q8_add_avx2;
        distill_kernels.q8_rows_requantize = distill_q8_rows_requantize_avx2;
        distill_kernels.softmax_row = distill_softmax_row_avx2;
        distill_kernels.gelu = distill_gelu_avx2;
        distill_kernels.gelu_backward = distill_gelu_backward_avx2;
        distill_kernels.layer_norm_row = distill_layer_norm_row_avx2;
        distill_kernels.softmax_backward_row = distill_softmax_backward_row_avx2;
        distill_kernels.layer_norm_backward_row = distill_layer_norm_backward_row_avx2;
        distill_kernels.direct_convolution = distill_direct_convolution_avx2;
        distill_kernels.max_pool = distill_max_pool_nhwc_avx2;
        distill_kernels.q8_quantize_rows = distill_q8_quantize_rows_portable;
        distill_kernels.q8_dequantize_rows = distill_q8_dequantize_rows_portable;
        break;
#endif
    default:
        distill_kernels.accumulate = distill_taps_accumulate_portable;
        distill_kernels.dot = distill_taps_dot_portable;
        distill_kernels.q8_gemm = distill_q8_gemm_portable;
        distill_kernels.q8_requantize = distill_q8_requantize_portable;
        distill_kernels.q8_dequantize = distill_q8_dequantize_portable;
        distill_kernels.q8_add = distill_q8_add_portable;
        distill_kernels.q8_rows_requantize = NULL;
        distill_kernels.softmax_row = distill_softmax_row_portable;
        distill_kernels.gelu = distill_gelu_portable;
        distill_kernels.gelu_backward = distill_gelu_backward_portable;
        distill_kernels.layer_norm_row = distill_layer_norm_row_portable;
        distill_kernels.softmax_backward_row = distill_softmax_backward_row_portable;
        distill_kernels.layer_norm_backward_row = distill_layer_norm_backward_row_portable;
        distill_kernels.direct_convolution = distill_direct_convolution_portable;
        distill_kernels.max_pool = distill_max_pool_nhwc_portable;
        distill_kernels.q8_quantize_rows = distill_q8_quantize_rows_portable;
        distill_kernels.q8_dequantize_rows = distill_q8_dequantize_rows_portable;
        break;
    }
    __atomic_store_n(&active, (int)path, __ATOMIC_RELEASE);
}

void distill_kernels_ensure_chosen(void) {
    if (__atomic_load_n(&active, __ATOMIC_ACQUIRE) < 0) distill_kernels_reset_path();
}

void distill_kernels_reset_path(void) {
    distill_kernels_path best = DISTILL_KERNELS_PORTABLE;
    for (int p = DISTILL_KERNELS_AVX2; p <= DISTILL_KERNELS_AMX; p++) {
        if (distill_kernels_path_supported((distill_kernels_path)p) && distill_kernels_path_verified((distill_kernels_path)p)) {
            best = (distill_kernels_path)p;
        }
    }
    install(best);
}

distill_kernels_path distill_kernels_active_path(void) {
    distill_kernels_ensure_chosen();
    return (distill_kernels_path)__atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

int distill_kernels_set_path(distill_kernels_path path) {
    if (!distill_kernels_path_supported(path)) return 0;
    install(path);
    return 1;
}

void distill_taps_accumulate(long count, int taps, const float *const *sources, const float *weights,
                             float init, float *out) {
    distill_kernels_ensure_chosen();
    distill_kernels.accumulate(count, taps, sources, weights, init, out);
}

void distill_taps_dot(long count, int taps, const float *const *sources, const float *g, float *dots) {
    distill_kernels_ensure_chosen();
    distill_kernels.dot(count, taps, sources, g, dots);
}
