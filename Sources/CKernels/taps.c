/* The tap kernels, once per path. A "tap" is one kernel position of a convolution: a
   weight and a source row shifted to line up with the output. Every path adds the taps in
   the same order; paths differ in vector width and in fusing multiply and add (one
   rounding instead of two), so results agree to rounding, not bit for bit. */
#include "CKernels.h"
#include "kernels.h"

/* ---- Portable C: the reference the other paths are tested against. ---- */

void distill_taps_accumulate_portable(long count, int taps, const float *const *sources, const float *weights,
                                      float init, float *out) {
    for (long i = 0; i < count; i++) out[i] = init;
    for (int t = 0; t < taps; t++) {
        const float *s = sources[t];
        const float w = weights[t];
        for (long i = 0; i < count; i++) out[i] += w * s[i];
    }
}

void distill_taps_dot_portable(long count, int taps, const float *const *sources, const float *g, float *dots) {
    for (int t = 0; t < taps; t++) {
        const float *s = sources[t];
        float sum = 0;
        for (long i = 0; i < count; i++) sum += g[i] * s[i];
        dots[t] += sum;
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* ---- AVX2 + FMA: 8 floats a vector. ---- */

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 void distill_taps_accumulate_avx2(long count, int taps, const float *const *sources, const float *weights,
                                       float init, float *out) {
    long i = 0;
    /* Four vectors at a time: each broadcast weight serves four fused multiply-adds. */
    for (; i + 32 <= count; i += 32) {
        __m256 a0 = _mm256_set1_ps(init), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < taps; t++) {
            const float *s = sources[t] + i;
            __m256 w = _mm256_set1_ps(weights[t]);
            a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(s), a0);
            a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(s + 8), a1);
            a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(s + 16), a2);
            a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(s + 24), a3);
        }
        _mm256_storeu_ps(out + i, a0);
        _mm256_storeu_ps(out + i + 8, a1);
        _mm256_storeu_ps(out + i + 16, a2);
        _mm256_storeu_ps(out + i + 24, a3);
    }
    for (; i + 8 <= count; i += 8) {
        __m256 a = _mm256_set1_ps(init);
        for (int t = 0; t < taps; t++) a = _mm256_fmadd_ps(_mm256_set1_ps(weights[t]), _mm256_loadu_ps(sources[t] + i), a);
        _mm256_storeu_ps(out + i, a);
    }
    for (; i < count; i++) {
        float a = init;
        for (int t = 0; t < taps; t++) a = __builtin_fmaf(weights[t], sources[t][i], a);
        out[i] = a;
    }
}

AVX2 static float horizontal_sum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 void distill_taps_dot_avx2(long count, int taps, const float *const *sources, const float *g, float *dots) {
    for (int t = 0; t < taps; t++) {
        const float *s = sources[t];
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        long i = 0;
        for (; i + 32 <= count; i += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g + i), _mm256_loadu_ps(s + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(g + i + 8), _mm256_loadu_ps(s + i + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(g + i + 16), _mm256_loadu_ps(s + i + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(g + i + 24), _mm256_loadu_ps(s + i + 24), a3);
        }
        for (; i + 8 <= count; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g + i), _mm256_loadu_ps(s + i), a0);
        float sum = horizontal_sum_avx2(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < count; i++) sum = __builtin_fmaf(g[i], s[i], sum);
        dots[t] += sum;
    }
}

/* ---- AVX-512F: 16 floats a vector, the tail under a mask. ---- */

#define AVX512 __attribute__((target("avx512f")))

AVX512 void distill_taps_accumulate_avx512(long count, int taps, const float *const *sources, const float *weights,
                                           float init, float *out) {
    long i = 0;
    for (; i + 64 <= count; i += 64) {
        __m512 a0 = _mm512_set1_ps(init), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < taps; t++) {
            const float *s = sources[t] + i;
            __m512 w = _mm512_set1_ps(weights[t]);
            a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(s), a0);
            a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(s + 16), a1);
            a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(s + 32), a2);
            a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(s + 48), a3);
        }
        _mm512_storeu_ps(out + i, a0);
        _mm512_storeu_ps(out + i + 16, a1);
        _mm512_storeu_ps(out + i + 32, a2);
        _mm512_storeu_ps(out + i + 48, a3);
    }
    for (; i < count; i += 16) {
        /* Masked loads do not touch (or fault on) the lanes past the end. */
        __mmask16 m = count - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - i)) - 1);
        __m512 a = _mm512_set1_ps(init);
        for (int t = 0; t < taps; t++) {
            a = _mm512_fmadd_ps(_mm512_set1_ps(weights[t]), _mm512_maskz_loadu_ps(m, sources[t] + i), a);
        }
        _mm512_mask_storeu_ps(out + i, m, a);
    }
}

AVX512 void distill_taps_dot_avx512(long count, int taps, const float *const *sources, const float *g, float *dots) {
    for (int t = 0; t < taps; t++) {
        const float *s = sources[t];
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        long i = 0;
        for (; i + 64 <= count; i += 64) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(g + i), _mm512_loadu_ps(s + i), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(g + i + 16), _mm512_loadu_ps(s + i + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(g + i + 32), _mm512_loadu_ps(s + i + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(g + i + 48), _mm512_loadu_ps(s + i + 48), a3);
        }
        for (; i < count; i += 16) {
            __mmask16 m = count - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - i)) - 1);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, s + i), a0);
        }
        dots[t] += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}
#endif
