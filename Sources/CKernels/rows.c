/* Row kernels of the transformer encoder, once per path: the attention's masked softmax,
   GELU, and layer normalisation, with the softmax's and layer norm's backward rows. Swift compiles for baseline x86-64 and
   does not reorder float sums, so its versions of these loops ran one lane wide where a
   reduction was involved (the softmax's maximum and sum, layer norm's moments): in a
   profile of MiniLM's forward pass the softmax alone was 13% of the samples.

   Every path evaluates the same formulas in the same order per element; the vector paths
   sum in lanes (then the lanes in a fixed order) and fuse multiply-adds, so results agree
   with the portable path to rounding, not bit for bit. */
#include "CKernels.h"
#include "kernels.h"

/* ---- Portable C: the reference. ---- */

/* eˣ for x ≤ 0 down to −87 (attention's shifted scores), within 2 ulp of expf: x = n·ln 2 + r,
   |r| ≤ ln 2 / 2, e^r by its Taylor series to r⁷ (truncation below 6e-9), times 2ⁿ put in the
   exponent bits. Below −87 it gives 2⁻¹²⁶ rather than 0. Branch-free, so it vectorises. */
static inline float exp_nonpositive(float x) {
    float c = x > 0 ? 0 : (x < -87.0f ? -87.0f : x);
    float shifted = c * 1.442695041f + 12582912.0f;
    float n = shifted - 12582912.0f;
    float r = (c - n * 0.693145752f) - n * 1.428606765e-06f;
    float e = 1.0f / 5040;
    e = e * r + 1.0f / 720;
    e = e * r + 1.0f / 120;
    e = e * r + 1.0f / 24;
    e = e * r + 1.0f / 6;
    e = e * r + 0.5f;
    e = e * r + 1;
    e = e * r + 1;
    union { float f; int32_t i; } bits = {.f = shifted}, scale;
    scale.i = (bits.i - 0x4B400000 + 127) << 23;
    return e * scale.f;
}

/* erf(x) as x·P(x²)/Q(x²) on [−4, 4], ±1 beyond (where erf is within 2e-8 of ±1): within 4e-7
   of erf in Float32. The coefficients are a least-squares fit made by scripts/fit_erf.py;
   without a libm call, GELU over a BERT's activations no longer spends its time in erff. */
static inline float erf_rational(float x) {
    float c = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x), t = c * c;
    float p = -1.3695023e-08f;
    p = p * t + 4.7873177e-06f;
    p = p * t + 3.8289864e-04f;
    p = p * t + 3.8375582e-03f;
    p = p * t + 5.4329578e-02f;
    p = p * t + 1.8464218e-01f;
    p = p * t + 1.1283792f;
    float q = 6.4074775e-05f;
    q = q * t + 1.3094628e-03f;
    q = q * t + 1.5450255e-02f;
    q = q * t + 1.1380347e-01f;
    q = q * t + 4.9696842e-01f;
    q = q * t + 1;
    return c * p / q;
}

void distill_softmax_row_portable(long keys, const float *src, const float *mask, float scale, float *dst) {
    float maximum = -INFINITY;
    for (long j = 0; j < keys; j++)
        if ((!mask || mask[j] != 0) && src[j] > maximum) maximum = src[j];
    if (maximum == -INFINITY) {
        for (long j = 0; j < keys; j++) dst[j] = 0;
        return;
    }
    float total = 0;
    for (long j = 0; j < keys; j++) {
        float e = (!mask || mask[j] != 0) ? exp_nonpositive(scale * (src[j] - maximum)) : 0;
        dst[j] = e;
        total += e;
    }
    float inverse = 1 / total;
    for (long j = 0; j < keys; j++) dst[j] *= inverse;
}

void distill_gelu_portable(long count, const float *x, float *y) {
    for (long i = 0; i < count; i++) y[i] = 0.5f * x[i] * (1 + erf_rational(x[i] * 0.70710678f));
}

void distill_gelu_backward_portable(long count, const float *g, const float *x, float *dx) {
    for (long i = 0; i < count; i++) {
        float v = x[i];
        float cdf = 0.5f * (1 + erf_rational(v * 0.70710678f)), pdf = 0.39894228f * exp_nonpositive(-0.5f * v * v);
        dx[i] = g[i] * (cdf + v * pdf);
    }
}

void distill_layer_norm_row_portable(long d, const float *src, const float *gamma, const float *beta, float epsilon,
                                     float *dst, float *mean, float *inverseDeviation) {
    float sum = 0;
    for (long j = 0; j < d; j++) sum += src[j];
    float mu = sum / (float)d, squares = 0;
    for (long j = 0; j < d; j++) squares += (src[j] - mu) * (src[j] - mu);
    float r = 1 / sqrtf(squares / (float)d + epsilon);
    for (long j = 0; j < d; j++) dst[j] = (src[j] - mu) * r * (gamma ? gamma[j] : 1) + (beta ? beta[j] : 0);
    *mean = mu;
    *inverseDeviation = r;
}

void distill_softmax_backward_row_portable(long keys, const float *g, const float *y, float scale, float *dx) {
    float dot = 0;
    for (long j = 0; j < keys; j++) dot += g[j] * y[j];
    for (long j = 0; j < keys; j++) dx[j] = scale * y[j] * (g[j] - dot);
}

void distill_layer_norm_backward_row_portable(long d, const float *g, const float *x, const float *gamma, float mean,
                                              float inverseDeviation, float *dx) {
    float sumG = 0, sumGX = 0;
    for (long j = 0; j < d; j++) {
        float gh = g[j] * (gamma ? gamma[j] : 1);
        sumG += gh;
        sumGX += gh * (x[j] - mean) * inverseDeviation;
    }
    float scale = inverseDeviation / (float)d;
    for (long j = 0; j < d; j++) {
        float gh = g[j] * (gamma ? gamma[j] : 1);
        dx[j] = scale * ((float)d * gh - sumG - (x[j] - mean) * inverseDeviation * sumGX);
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* ---- AVX2 + FMA: 8 floats a vector. ---- */

#define AVX2 __attribute__((target("avx2,fma")))

/* The exponential and erf above, at a vector width: P is the intrinsics' prefix (_mm256,
   _mm512), T the float vector type, SI the integer cast's suffix (si256, si512). */
#define DEFINE_VECTOR_EXP_AND_ERF(ATTR, SUFFIX, T, P, SI)                                                    \
    ATTR static inline T exp_nonpositive_##SUFFIX(T x) {                                                   \
        T c = P##_max_ps(P##_min_ps(x, P##_setzero_ps()), P##_set1_ps(-87.0f));                            \
        T magic = P##_set1_ps(12582912.0f);                                                                \
        T shifted = P##_fmadd_ps(c, P##_set1_ps(1.442695041f), magic);                                     \
        T n = P##_sub_ps(shifted, magic);                                                                  \
        T r = P##_fnmadd_ps(n, P##_set1_ps(0.693145752f), c);                                              \
        r = P##_fnmadd_ps(n, P##_set1_ps(1.428606765e-06f), r);                                            \
        T e = P##_set1_ps(1.0f / 5040);                                                                    \
        e = P##_fmadd_ps(e, r, P##_set1_ps(1.0f / 720));                                                   \
        e = P##_fmadd_ps(e, r, P##_set1_ps(1.0f / 120));                                                   \
        e = P##_fmadd_ps(e, r, P##_set1_ps(1.0f / 24));                                                    \
        e = P##_fmadd_ps(e, r, P##_set1_ps(1.0f / 6));                                                     \
        e = P##_fmadd_ps(e, r, P##_set1_ps(0.5f));                                                         \
        e = P##_fmadd_ps(e, r, P##_set1_ps(1));                                                            \
        e = P##_fmadd_ps(e, r, P##_set1_ps(1));                                                            \
        return P##_mul_ps(e, P##_cast##SI##_ps(P##_slli_epi32(                                           \
            P##_add_epi32(P##_sub_epi32(P##_castps_##SI(shifted), P##_set1_epi32(0x4B400000)), P##_set1_epi32(127)), 23))); \
    }                                                                                                      \
    ATTR static inline T erf_rational_##SUFFIX(T x) {                                                      \
        T c = P##_max_ps(P##_min_ps(x, P##_set1_ps(4.0f)), P##_set1_ps(-4.0f)), t = P##_mul_ps(c, c);      \
        T p = P##_set1_ps(-1.3695023e-08f);                                                                \
        p = P##_fmadd_ps(p, t, P##_set1_ps(4.7873177e-06f));                                               \
        p = P##_fmadd_ps(p, t, P##_set1_ps(3.8289864e-04f));                                               \
        p = P##_fmadd_ps(p, t, P##_set1_ps(3.8375582e-03f));                                               \
        p = P##_fmadd_ps(p, t, P##_set1_ps(5.4329578e-02f));                                               \
        p = P##_fmadd_ps(p, t, P##_set1_ps(1.8464218e-01f));                                               \
        p = P##_fmadd_ps(p, t, P##_set1_ps(1.1283792f));                                                   \
        T q = P##_set1_ps(6.4074775e-05f);                                                                 \
        q = P##_fmadd_ps(q, t, P##_set1_ps(1.3094628e-03f));                                               \
        q = P##_fmadd_ps(q, t, P##_set1_ps(1.5450255e-02f));                                               \
        q = P##_fmadd_ps(q, t, P##_set1_ps(1.1380347e-01f));                                               \
        q = P##_fmadd_ps(q, t, P##_set1_ps(4.9696842e-01f));                                               \
        q = P##_fmadd_ps(q, t, P##_set1_ps(1));                                                            \
        return P##_div_ps(P##_mul_ps(c, p), q);                                                            \
    }

DEFINE_VECTOR_EXP_AND_ERF(AVX2, avx2, __m256, _mm256, si256)

AVX2 static inline float sum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AVX2 static inline float max_avx2(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Lanes past `count` (a row's tail) load as `fill`. */
AVX2 static inline __m256 load_tail_avx2(const float *p, long count, float fill) {
    float buffer[8];
    for (int i = 0; i < 8; i++) buffer[i] = i < count ? p[i] : fill;
    return _mm256_loadu_ps(buffer);
}

AVX2 static inline void store_tail_avx2(float *p, long count, __m256 v) {
    float buffer[8];
    _mm256_storeu_ps(buffer, v);
    for (int i = 0; i < count; i++) p[i] = buffer[i];
}

AVX2 void distill_softmax_row_avx2(long keys, const float *src, const float *mask, float scale, float *dst) {
    const __m256 minus = _mm256_set1_ps(-INFINITY), zero = _mm256_setzero_ps();
    __m256 m = minus;
    long j = 0;
    for (; j + 8 <= keys; j += 8) {
        __m256 s = _mm256_loadu_ps(src + j);
        if (mask) s = _mm256_blendv_ps(s, minus, _mm256_cmp_ps(_mm256_loadu_ps(mask + j), zero, _CMP_EQ_OQ));
        m = _mm256_max_ps(m, s);
    }
    if (j < keys) {
        __m256 s = load_tail_avx2(src + j, keys - j, -INFINITY);
        if (mask) s = _mm256_blendv_ps(s, minus, _mm256_cmp_ps(load_tail_avx2(mask + j, keys - j, 0), zero, _CMP_EQ_OQ));
        m = _mm256_max_ps(m, s);
    }
    float maximum = max_avx2(m);
    if (maximum == -INFINITY) {
        for (j = 0; j < keys; j++) dst[j] = 0;
        return;
    }
    const __m256 vmax = _mm256_set1_ps(maximum), vscale = _mm256_set1_ps(scale);
    __m256 total = zero;
    for (j = 0; j + 8 <= keys; j += 8) {
        __m256 e = exp_nonpositive_avx2(_mm256_mul_ps(vscale, _mm256_sub_ps(_mm256_loadu_ps(src + j), vmax)));
        if (mask) e = _mm256_and_ps(e, _mm256_cmp_ps(_mm256_loadu_ps(mask + j), zero, _CMP_NEQ_UQ));
        _mm256_storeu_ps(dst + j, e);
        total = _mm256_add_ps(total, e);
    }
    if (j < keys) {
        __m256 e = exp_nonpositive_avx2(_mm256_mul_ps(vscale, _mm256_sub_ps(load_tail_avx2(src + j, keys - j, maximum), vmax)));
        __m256 keep = mask ? _mm256_cmp_ps(load_tail_avx2(mask + j, keys - j, 0), zero, _CMP_NEQ_UQ)
                           : _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)(keys - j)),
                                                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        e = _mm256_and_ps(e, keep);
        store_tail_avx2(dst + j, keys - j, e);
        total = _mm256_add_ps(total, e);
    }
    const __m256 inverse = _mm256_set1_ps(1 / sum_avx2(total));
    for (j = 0; j + 8 <= keys; j += 8) _mm256_storeu_ps(dst + j, _mm256_mul_ps(_mm256_loadu_ps(dst + j), inverse));
    for (; j < keys; j++) dst[j] *= _mm256_cvtss_f32(inverse);
}

AVX2 void distill_gelu_avx2(long count, const float *x, float *y) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1), root = _mm256_set1_ps(0.70710678f);
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 phi = _mm256_add_ps(one, erf_rational_avx2(_mm256_mul_ps(v, root)));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(half, v), phi));
    }
    if (i < count) distill_gelu_portable(count - i, x + i, y + i);
}

AVX2 void distill_gelu_backward_avx2(long count, const float *g, const float *x, float *dx) {
    const __m256 half = _mm256_set1_ps(0.5f), minusHalf = _mm256_set1_ps(-0.5f), root = _mm256_set1_ps(0.70710678f);
    const __m256 density = _mm256_set1_ps(0.39894228f);
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 cdf = _mm256_fmadd_ps(half, erf_rational_avx2(_mm256_mul_ps(v, root)), half);
        __m256 pdf = _mm256_mul_ps(density, exp_nonpositive_avx2(_mm256_mul_ps(minusHalf, _mm256_mul_ps(v, v))));
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), _mm256_fmadd_ps(v, pdf, cdf)));
    }
    if (i < count) distill_gelu_backward_portable(count - i, g + i, x + i, dx + i);
}

AVX2 void distill_layer_norm_row_avx2(long d, const float *src, const float *gamma, const float *beta, float epsilon,
                                      float *dst, float *mean, float *inverseDeviation) {
    __m256 s = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= d; j += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(src + j));
    float sum = sum_avx2(s);
    for (; j < d; j++) sum += src[j];
    float mu = sum / (float)d;
    const __m256 vmu = _mm256_set1_ps(mu);
    __m256 q = _mm256_setzero_ps();
    for (j = 0; j + 8 <= d; j += 8) {
        __m256 v = _mm256_sub_ps(_mm256_loadu_ps(src + j), vmu);
        q = _mm256_fmadd_ps(v, v, q);
    }
    float squares = sum_avx2(q);
    for (; j < d; j++) squares += (src[j] - mu) * (src[j] - mu);
    float r = 1 / sqrtf(squares / (float)d + epsilon);
    const __m256 vr = _mm256_set1_ps(r);
    for (j = 0; j + 8 <= d; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(src + j), vmu), vr);
        if (gamma) v = _mm256_mul_ps(v, _mm256_loadu_ps(gamma + j));
        if (beta) v = _mm256_add_ps(v, _mm256_loadu_ps(beta + j));
        _mm256_storeu_ps(dst + j, v);
    }
    for (; j < d; j++) dst[j] = (src[j] - mu) * r * (gamma ? gamma[j] : 1) + (beta ? beta[j] : 0);
    *mean = mu;
    *inverseDeviation = r;
}

AVX2 void distill_softmax_backward_row_avx2(long keys, const float *g, const float *y, float scale, float *dx) {
    __m256 acc = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= keys; j += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(y + j), acc);
    float dot = sum_avx2(acc);
    for (long t = j; t < keys; t++) dot += g[t] * y[t];
    const __m256 vdot = _mm256_set1_ps(dot), vscale = _mm256_set1_ps(scale);
    for (j = 0; j + 8 <= keys; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(vscale, _mm256_loadu_ps(y + j)), _mm256_sub_ps(_mm256_loadu_ps(g + j), vdot));
        _mm256_storeu_ps(dx + j, v);
    }
    for (; j < keys; j++) dx[j] = scale * y[j] * (g[j] - dot);
}

AVX2 void distill_layer_norm_backward_row_avx2(long d, const float *g, const float *x, const float *gamma, float mean,
                                               float inverseDeviation, float *dx) {
    const __m256 vmu = _mm256_set1_ps(mean), vr = _mm256_set1_ps(inverseDeviation);
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 gh = _mm256_loadu_ps(g + j);
        if (gamma) gh = _mm256_mul_ps(gh, _mm256_loadu_ps(gamma + j));
        a = _mm256_add_ps(a, gh);
        b = _mm256_fmadd_ps(gh, _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmu), vr), b);
    }
    float sumG = sum_avx2(a), sumGX = sum_avx2(b);
    for (long t = j; t < d; t++) {
        float gh = g[t] * (gamma ? gamma[t] : 1);
        sumG += gh;
        sumGX += gh * (x[t] - mean) * inverseDeviation;
    }
    const float scale = inverseDeviation / (float)d;
    const __m256 vd = _mm256_set1_ps((float)d), vsumG = _mm256_set1_ps(sumG), vsumGX = _mm256_set1_ps(sumGX), vscale = _mm256_set1_ps(scale);
    for (j = 0; j + 8 <= d; j += 8) {
        __m256 gh = _mm256_loadu_ps(g + j);
        if (gamma) gh = _mm256_mul_ps(gh, _mm256_loadu_ps(gamma + j));
        __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmu), vr);
        __m256 v = _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(vd, gh), vsumG), _mm256_mul_ps(xhat, vsumGX));
        _mm256_storeu_ps(dx + j, _mm256_mul_ps(vscale, v));
    }
    for (; j < d; j++) {
        float gh = g[j] * (gamma ? gamma[j] : 1);
        dx[j] = scale * ((float)d * gh - sumG - (x[j] - mean) * inverseDeviation * sumGX);
    }
}

/* ---- AVX-512F: 16 floats a vector; row tails through masked loads and stores. ---- */

#define AVX512 __attribute__((target("avx512f")))

DEFINE_VECTOR_EXP_AND_ERF(AVX512, avx512, __m512, _mm512, si512)

/* The lanes of a row's last, partial vector. */
AVX512 static inline __mmask16 tail_mask(long remaining) {
    return remaining >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << remaining) - 1);
}

AVX512 void distill_softmax_row_avx512(long keys, const float *src, const float *mask, float scale, float *dst) {
    const __m512 zero = _mm512_setzero_ps();
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (long j = 0; j < keys; j += 16) {
        __mmask16 lanes = tail_mask(keys - j);
        if (mask) lanes = _mm512_mask_cmp_ps_mask(lanes, _mm512_maskz_loadu_ps(lanes, mask + j), zero, _CMP_NEQ_UQ);
        m = _mm512_mask_max_ps(m, lanes, m, _mm512_maskz_loadu_ps(lanes, src + j));
    }
    float maximum = _mm512_reduce_max_ps(m);
    if (maximum == -INFINITY) {
        for (long j = 0; j < keys; j++) dst[j] = 0;
        return;
    }
    const __m512 vmax = _mm512_set1_ps(maximum), vscale = _mm512_set1_ps(scale);
    __m512 total = zero;
    for (long j = 0; j < keys; j += 16) {
        __mmask16 lanes = tail_mask(keys - j), keep = lanes;
        if (mask) keep = _mm512_mask_cmp_ps_mask(lanes, _mm512_maskz_loadu_ps(lanes, mask + j), zero, _CMP_NEQ_UQ);
        __m512 s = _mm512_mask_loadu_ps(vmax, lanes, src + j);
        __m512 e = _mm512_maskz_mov_ps(keep, exp_nonpositive_avx512(_mm512_mul_ps(vscale, _mm512_sub_ps(s, vmax))));
        _mm512_mask_storeu_ps(dst + j, lanes, e);
        total = _mm512_add_ps(total, e);
    }
    const __m512 inverse = _mm512_set1_ps(1 / _mm512_reduce_add_ps(total));
    for (long j = 0; j < keys; j += 16) {
        __mmask16 lanes = tail_mask(keys - j);
        _mm512_mask_storeu_ps(dst + j, lanes, _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, dst + j), inverse));
    }
}

AVX512 void distill_gelu_avx512(long count, const float *x, float *y) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1), root = _mm512_set1_ps(0.70710678f);
    for (long i = 0; i < count; i += 16) {
        __mmask16 lanes = tail_mask(count - i);
        __m512 v = _mm512_maskz_loadu_ps(lanes, x + i);
        __m512 phi = _mm512_add_ps(one, erf_rational_avx512(_mm512_mul_ps(v, root)));
        _mm512_mask_storeu_ps(y + i, lanes, _mm512_mul_ps(_mm512_mul_ps(half, v), phi));
    }
}

AVX512 void distill_gelu_backward_avx512(long count, const float *g, const float *x, float *dx) {
    const __m512 half = _mm512_set1_ps(0.5f), minusHalf = _mm512_set1_ps(-0.5f), root = _mm512_set1_ps(0.70710678f);
    const __m512 density = _mm512_set1_ps(0.39894228f);
    for (long i = 0; i < count; i += 16) {
        __mmask16 lanes = tail_mask(count - i);
        __m512 v = _mm512_maskz_loadu_ps(lanes, x + i);
        __m512 cdf = _mm512_fmadd_ps(half, erf_rational_avx512(_mm512_mul_ps(v, root)), half);
        __m512 pdf = _mm512_mul_ps(density, exp_nonpositive_avx512(_mm512_mul_ps(minusHalf, _mm512_mul_ps(v, v))));
        _mm512_mask_storeu_ps(dx + i, lanes, _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, g + i), _mm512_fmadd_ps(v, pdf, cdf)));
    }
}

AVX512 void distill_layer_norm_row_avx512(long d, const float *src, const float *gamma, const float *beta, float epsilon,
                                          float *dst, float *mean, float *inverseDeviation) {
    __m512 s = _mm512_setzero_ps();
    for (long j = 0; j < d; j += 16) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail_mask(d - j), src + j));
    float mu = _mm512_reduce_add_ps(s) / (float)d;
    const __m512 vmu = _mm512_set1_ps(mu);
    __m512 q = _mm512_setzero_ps();
    for (long j = 0; j < d; j += 16) {
        __mmask16 lanes = tail_mask(d - j);
        __m512 v = _mm512_maskz_sub_ps(lanes, _mm512_maskz_loadu_ps(lanes, src + j), vmu);
        q = _mm512_fmadd_ps(v, v, q);
    }
    float r = 1 / sqrtf(_mm512_reduce_add_ps(q) / (float)d + epsilon);
    const __m512 vr = _mm512_set1_ps(r);
    for (long j = 0; j < d; j += 16) {
        __mmask16 lanes = tail_mask(d - j);
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, src + j), vmu), vr);
        if (gamma) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(lanes, gamma + j));
        if (beta) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(lanes, beta + j));
        _mm512_mask_storeu_ps(dst + j, lanes, v);
    }
    *mean = mu;
    *inverseDeviation = r;
}
AVX512 void distill_softmax_backward_row_avx512(long keys, const float *g, const float *y, float scale, float *dx) {
    __m512 acc = _mm512_setzero_ps();
    for (long j = 0; j < keys; j += 16) {
        __mmask16 lanes = tail_mask(keys - j);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, g + j), _mm512_maskz_loadu_ps(lanes, y + j), acc);
    }
    const __m512 vdot = _mm512_set1_ps(_mm512_reduce_add_ps(acc)), vscale = _mm512_set1_ps(scale);
    for (long j = 0; j < keys; j += 16) {
        __mmask16 lanes = tail_mask(keys - j);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(vscale, _mm512_maskz_loadu_ps(lanes, y + j)),
                                 _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, g + j), vdot));
        _mm512_mask_storeu_ps(dx + j, lanes, v);
    }
}

AVX512 void distill_layer_norm_backward_row_avx512(long d, const float *g, const float *x, const float *gamma, float mean,
                                                   float inverseDeviation, float *dx) {
    const __m512 vmu = _mm512_set1_ps(mean), vr = _mm512_set1_ps(inverseDeviation);
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    for (long j = 0; j < d; j += 16) {
        __mmask16 lanes = tail_mask(d - j);
        __m512 gh = _mm512_maskz_loadu_ps(lanes, g + j);
        if (gamma) gh = _mm512_mul_ps(gh, _mm512_maskz_loadu_ps(lanes, gamma + j));
        a = _mm512_add_ps(a, gh);
        b = _mm512_fmadd_ps(gh, _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, x + j), vmu), vr), b);
    }
    const float sumG = _mm512_reduce_add_ps(a), sumGX = _mm512_reduce_add_ps(b);
    const __m512 vd = _mm512_set1_ps((float)d), vsumG = _mm512_set1_ps(sumG), vsumGX = _mm512_set1_ps(sumGX);
    const __m512 vscale = _mm512_set1_ps(inverseDeviation / (float)d);
    for (long j = 0; j < d; j += 16) {
        __mmask16 lanes = tail_mask(d - j);
        __m512 gh = _mm512_maskz_loadu_ps(lanes, g + j);
        if (gamma) gh = _mm512_mul_ps(gh, _mm512_maskz_loadu_ps(lanes, gamma + j));
        __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, x + j), vmu), vr);
        __m512 v = _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(vd, gh), vsumG), _mm512_mul_ps(xhat, vsumGX));
        _mm512_mask_storeu_ps(dx + j, lanes, _mm512_mul_ps(vscale, v));
    }
}
#endif

/* ---- Entry points. ---- */

void distill_softmax_row(long keys, const float *src, const float *mask, float scale, float *dst) {
    distill_kernels_ensure_chosen();
    distill_kernels.softmax_row(keys, src, mask, scale, dst);
}

void distill_gelu(long count, const float *x, float *y) {
    distill_kernels_ensure_chosen();
    distill_kernels.gelu(count, x, y);
}

void distill_gelu_backward(long count, const float *g, const float *x, float *dx) {
    distill_kernels_ensure_chosen();
    distill_kernels.gelu_backward(count, g, x, dx);
}

void distill_layer_norm_row(long d, const float *src, const float *gamma, const float *beta, float epsilon,
                            float *dst, float *mean, float *inverseDeviation) {
    distill_kernels_ensure_chosen();
    distill_kernels.layer_norm_row(d, src, gamma, beta, epsilon, dst, mean, inverseDeviation);
}

void distill_softmax_backward_row(long keys, const float *g, const float *y, float scale, float *dx) {
    distill_kernels_ensure_chosen();
    distill_kernels.softmax_backward_row(keys, g, y, scale, dx);
}

void distill_layer_norm_backward_row(long d, const float *g, const float *x, const float *gamma, float mean,
                                     float inverseDeviation, float *dx) {
    distill_kernels_ensure_chosen();
    distill_kernels.layer_norm_backward_row(d, g, x, gamma, mean, inverseDeviation, dx);
}
