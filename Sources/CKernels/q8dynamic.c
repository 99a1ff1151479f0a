/* Dynamic quantization's two passes around the int8 GEMM (Int8Kernels.dynamicLinear): each
   float row quantized with its own range, and the int32 sums turned back into floats. The
   per-row scale, its reciprocal and the zero point are computed in scalar code; every element
   is then the same sequence of correctly rounded IEEE operations on every path (multiplying
   by the reciprocal, a multiply being several times cheaper than a division; rounding half to
   even in the default mode, conversion, multiply, add; no contraction), so portable and
   AVX-512 give the same bits. */
#pragma STDC FP_CONTRACT OFF
#include <math.h>

#include "CKernels.h"
#include "kernels.h"

/* Row i's scale and zero point from its smallest and largest value (widened to include 0);
   a NaN scale marks a row holding a NaN or an infinity. */
static void row_range(float lo, float hi, float poison, float *scale, int32_t *zero) {
    if (poison != 0) {
        *scale = NAN;
        *zero = 0;
    } else if (!(hi > lo)) {
        *scale = 1;
        *zero = 0;
    } else {
        float a = (hi - lo) / 255.0f, z = nearbyintf(-lo / a);
        *scale = a;
        *zero = (int32_t)(z < 0 ? 0 : (z > 255 ? 255 : z));
    }
}

static inline uint8_t quantize_one(float x, float inverse, float z) {
    float q = nearbyintf(x * inverse) + z;
    return (uint8_t)(q < 0 ? 0 : (q > 255 ? 255 : q));
}

void distill_q8_quantize_rows_portable(long m, long k, const float *x, long ldx, uint8_t *q, long ldq, float *scales, int32_t *zeros) {
    for (long i = 0; i < m; i++) {
        const float *row = x + i * ldx;
        float lo = 0, hi = 0, poison = 0;
        for (long c = 0; c < k; c++) {
            lo = row[c] < lo ? row[c] : lo;
            hi = row[c] > hi ? row[c] : hi;
            poison += row[c] * 0.0f;
        }
        row_range(lo, hi, poison, &scales[i], &zeros[i]);
        float a = scales[i], inverse = 1.0f / a, z = (float)zeros[i];
        for (long c = 0; c < k; c++) q[i * ldq + c] = (a == a && hi > lo) ? quantize_one(row[c], inverse, z) : 0;
    }
}

void distill_q8_dequantize_rows_portable(long m, long n, const int32_t *acc, long ldacc, const float *rowScales, const int32_t *rowZeros,
                                         const int32_t *sums, const float *scales, const float *bias, float *out, long ldo) {
    for (long i = 0; i < m; i++) {
        float a = rowScales[i];
        for (long j = 0; j < n; j++) {
            if (a != a) { out[i * ldo + j] = NAN; continue; }
            int32_t v = (int32_t)((uint32_t)acc[i * ldacc + j] - (uint32_t)rowZeros[i] * (uint32_t)sums[j]);
            float y = (float)v * (a * scales[j]);
            out[i * ldo + j] = bias ? y + bias[j] : y;
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))

static inline __mmask16 lanes(long count) { return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1); }

AVX512 void distill_q8_quantize_rows_avx512(long m, long k, const float *x, long ldx, uint8_t *q, long ldq, float *scales, int32_t *zeros) {
    for (long i = 0; i < m; i++) {
        const float *row = x + i * ldx;
        __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps(), poison = _mm512_setzero_ps();
        for (long c = 0; c < k; c += 16) {
            __mmask16 mask = lanes(k - c);
            __m512 v = _mm512_maskz_loadu_ps(mask, row + c);
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
            poison = _mm512_add_ps(poison, _mm512_mul_ps(v, _mm512_setzero_ps()));
        }
        float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi);
        /* A NaN anywhere makes some lane of poison NaN; the sum of lanes is NaN then. */
        float p = _mm512_reduce_add_ps(poison);
        row_range(l, h, p, &scales[i], &zeros[i]);
        uint8_t *out = q + i * ldq;
        if (!(scales[i] == scales[i]) || !(h > l)) {
            for (long c = 0; c < k; c++) out[c] = 0;
            continue;
        }
        __m512 inverse = _mm512_set1_ps(1.0f / scales[i]), z = _mm512_set1_ps((float)zeros[i]);
        __m512i low = _mm512_setzero_si512(), high = _mm512_set1_epi32(255);
        for (long c = 0; c < k; c += 16) {
            __mmask16 mask = lanes(k - c);
            __m512 v = _mm512_add_ps(_mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, row + c), inverse),
                                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
            __m512i r = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(v), low), high);
            _mm512_mask_cvtepi32_storeu_epi8(out + c, mask, r);
        }
    }
}

AVX512 void distill_q8_dequantize_rows_avx512(long m, long n, const int32_t *acc, long ldacc, const float *rowScales, const int32_t *rowZeros,
                                              const int32_t *sums, const float *scales, const float *bias, float *out, long ldo) {
    for (long i = 0; i < m; i++) {
        float a = rowScales[i];
        if (a != a) {
            for (long j = 0; j < n; j++) out[i * ldo + j] = NAN;
            continue;
        }
        __m512 va = _mm512_set1_ps(a);
        __m512i vz = _mm512_set1_epi32(rowZeros[i]);
        for (long j = 0; j < n; j += 16) {
            __mmask16 mask = lanes(n - j);
            __m512i v = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(mask, acc + i * ldacc + j),
                                         _mm512_mullo_epi32(vz, _mm512_maskz_loadu_epi32(mask, sums + j)));
            __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(va, _mm512_maskz_loadu_ps(mask, scales + j)));
            if (bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, bias + j));
            _mm512_mask_storeu_ps(out + i * ldo + j, mask, y);
        }
    }
}
#endif

void distill_q8_quantize_rows(long m, long k, const float *x, long ldx, uint8_t *q, long ldq, float *scales, int32_t *zeros) {
    distill_kernels_ensure_chosen();
    distill_kernels.q8_quantize_rows(m, k, x, ldx, q, ldq, scales, zeros);
}

void distill_q8_dequantize_rows(long m, long n, const int32_t *acc, long ldacc, const float *rowScales, const int32_t *rowZeros,
                                const int32_t *sums, const float *scales, const float *bias, float *out, long ldo) {
    distill_kernels_ensure_chosen();
    distill_kernels.q8_dequantize_rows(m, n, acc, ldacc, rowScales, rowZeros, sums, scales, bias, out, ldo);
}
