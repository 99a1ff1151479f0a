/* Int8 inference kernels, once per path: the GEMM (uint8 activations × int8 weights into
   int32), requantization, the quantized add, and the fused GEMM over a convolution's row
   pieces (q8window.c has the window helpers). CKernels.h states the arithmetic; every path gives the same bits (the tests in
   Tests/TensorsTests/Int8KernelTests.swift compare them). */
#pragma STDC FP_CONTRACT OFF
#include <math.h>
#include <string.h>

#include "CKernels.h"
#include "kernels.h"

#define PANEL 16 /* output channels a packed panel */

static long quads(long k) { return (k + 3) / 4; }
static long panels(long n) { return (n + PANEL - 1) / PANEL; }

/* With 16 quads of one panel (1,024 bytes) to spare at the end: the AMX GEMM loads weight tiles
   of 16 quads, and the last one may reach past the last panel (q8amx.c). */
long distill_q8_packed_count(long n, long k, long pieces) { return panels(n) * PANEL * pieces * quads(k / pieces) * 4 + 16 * PANEL * 4; }

void distill_q8_pack(long n, long k, long pieces, const int8_t *w, int8_t *packed, int32_t *sums) {
    long piece = k / pieces, pq = quads(piece), kq = pieces * pq;
    for (long p = 0; p < panels(n); p++) {
        for (long q = 0; q < kq; q++) {
            int8_t *block = packed + (p * kq + q) * PANEL * 4;
            long t = q / pq, within = 4 * (q % pq);
            for (long ch = 0; ch < PANEL; ch++) {
                long j = p * PANEL + ch;
                for (long kk = 0; kk < 4; kk++) {
                    long index = within + kk;
                    block[ch * 4 + kk] = (j < n && index < piece) ? w[j * k + t * piece + index] : 0;
                }
            }
        }
    }
    for (long j = 0; j < n; j++) {
        int32_t sum = 0;
        for (long index = 0; index < k; index++) sum += w[j * k + index];
        sums[j] = sum;
    }
}

/* The 4 bytes of a row at k-quad q, zero past k (the packed weights are zero there too; this
   only keeps the load inside the row). */
static inline uint32_t quad_at(const uint8_t *row, long q, long k) {
    uint32_t v = 0;
    if (4 * q + 4 <= k) {
        memcpy(&v, row + 4 * q, 4);
    } else {
        uint8_t bytes[4] = {0, 0, 0, 0};
        for (long i = 4 * q; i < k; i++) bytes[i - 4 * q] = row[i];
        memcpy(&v, bytes, 4);
    }
    return v;
}


/* ---- Portable C: the reference the other paths are tested against. ---- */

void distill_q8_gemm_portable(long m, long n, long k, const uint8_t *a, long lda, int aZero, const int8_t *packed,
                              const int32_t *sums, int32_t *c, long ldc) {
    long kq = quads(k);
    for (long i = 0; i < m; i++) {
        const uint8_t *row = a + i * lda;
        for (long p = 0; p < panels(n); p++) {
            uint32_t acc[PANEL] = {0};
            const int8_t *panel = packed + p * kq * PANEL * 4;
            for (long index = 0; index < k; index++) {
                uint32_t x = row[index];
                const int8_t *w = panel + (index / 4) * PANEL * 4 + index % 4;
                for (long ch = 0; ch < PANEL; ch++) acc[ch] += x * (uint32_t)(int32_t)w[ch * 4];
            }
            for (long ch = 0; ch < PANEL && p * PANEL + ch < n; ch++) {
                long j = p * PANEL + ch;
                c[i * ldc + j] = (int32_t)(acc[ch] - (uint32_t)aZero * (uint32_t)sums[j]);
            }
        }
    }
}

void distill_q8_requantize_portable(long m, long n, const int32_t *acc, long ldacc, const distill_q8_requantization *r,
                                    uint8_t *out, long ldo) {
    for (long i = 0; i < m; i++) {
        for (long j = 0; j < n; j++) {
            int32_t v = (int32_t)((uint32_t)acc[i * ldacc + j] + (uint32_t)(r->bias ? r->bias[j] : 0));
            float y = (float)v;
            y = y * r->scale[j];
            out[i * ldo + j] = requantize_one(y, r->zero, r->low, r->high);
        }
    }
}

void distill_q8_dequantize_portable(long m, long n, const int32_t *acc, long ldacc, const int32_t *bias, const float *scale,
                                    float *out, long ldo) {
    for (long i = 0; i < m; i++) {
        for (long j = 0; j < n; j++) {
            int32_t v = (int32_t)((uint32_t)acc[i * ldacc + j] + (uint32_t)(bias ? bias[j] : 0));
            float y = (float)v;
            out[i * ldo + j] = y * scale[j];
        }
    }
}

void distill_q8_add_portable(long count, const uint8_t *a, const uint8_t *b, const distill_q8_add_parameters *p,
                             uint8_t *out) {
    for (long i = 0; i < count; i++) {
        float x = (float)((int)a[i] - p->aZero);
        x = x * p->aScale;
        float y = (float)((int)b[i] - p->bZero);
        y = y * p->bScale;
        float s = x + y;
        out[i] = requantize_one(s, p->outZero, p->low, p->high);
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* ---- AVX2: operands widened to int16, pairs of products by vpmaddwd. ---- */

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

/* Rows i0 ..< i0 + ROWS (ROWS ≤ 4, a constant after inlining) against half of panel p (8
   channels from j0). Per k-quad, the 32 packed bytes of the 8 channels become two vectors of
   16 int16 (4 channels × 4 k each); the row's quad, widened and repeated, meets them in
   vpmaddwd, which leaves each channel's two pair sums in adjacent int32 lanes. */
AVX2_INLINE void gemm_block_avx2(int rows, long k, const uint8_t *a, long lda, int aZero, const int8_t *panel,
                                 long half, const int32_t *sums, long j0, long count, int32_t *c, long ldc) {
    __m256i acc0[4], acc1[4];
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = _mm256_setzero_si256();
    long kq = quads(k);
    for (long q = 0; q < kq; q++) {
        const int8_t *w = panel + q * PANEL * 4 + half * 32;
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w));
        __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16)));
        for (int r = 0; r < rows; r++) {
            __m256i x = _mm256_cvtepu8_epi16(_mm_set1_epi32((int)quad_at(a + r * lda, q, k)));
            acc0[r] = _mm256_add_epi32(acc0[r], _mm256_madd_epi16(x, w0));
            acc1[r] = _mm256_add_epi32(acc1[r], _mm256_madd_epi16(x, w1));
        }
    }
    int32_t s[8] = {0};
    memcpy(s, sums + j0, (size_t)count * sizeof(int32_t));
    __m256i correction = _mm256_mullo_epi32(_mm256_set1_epi32(aZero), _mm256_loadu_si256((const __m256i *)s));
    for (int r = 0; r < rows; r++) {
        /* [c0 c1 c4 c5 | c2 c3 c6 c7] → channel order. */
        __m256i sum = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc0[r], acc1[r]), 0xD8);
        sum = _mm256_sub_epi32(sum, correction);
        if (count == 8) {
            _mm256_storeu_si256((__m256i *)(c + r * ldc + j0), sum);
        } else {
            int32_t out[8];
            _mm256_storeu_si256((__m256i *)out, sum);
            memcpy(c + r * ldc + j0, out, (size_t)count * sizeof(int32_t));
        }
    }
}

AVX2 void distill_q8_gemm_avx2(long m, long n, long k, const uint8_t *a, long lda, int aZero, const int8_t *packed,
                               const int32_t *sums, int32_t *c, long ldc) {
    long kq = quads(k);
    for (long i = 0; i < m; i += 4) {
        int rows = m - i >= 4 ? 4 : (int)(m - i);
        for (long j0 = 0; j0 < n; j0 += 8) {
            long count = n - j0 >= 8 ? 8 : n - j0;
            const int8_t *panel = packed + (j0 / PANEL) * kq * PANEL * 4;
            long half = (j0 % PANEL) / 8;
            const uint8_t *rowsA = a + i * lda;
            int32_t *rowsC = c + i * ldc;
            switch (rows) {
            case 4: gemm_block_avx2(4, k, rowsA, lda, aZero, panel, half, sums, j0, count, rowsC, ldc); break;
            case 3: gemm_block_avx2(3, k, rowsA, lda, aZero, panel, half, sums, j0, count, rowsC, ldc); break;
            case 2: gemm_block_avx2(2, k, rowsA, lda, aZero, panel, half, sums, j0, count, rowsC, ldc); break;
            default: gemm_block_avx2(1, k, rowsA, lda, aZero, panel, half, sums, j0, count, rowsC, ldc); break;
            }
        }
    }
}

/* The 8 int32 lanes' low bytes (each already within 0...255), stored as 8 bytes. */
AVX2_INLINE void store_bytes_avx2(__m256i v, uint8_t *out, long count) {
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i b = _mm256_shuffle_epi8(v, pick);
    __m128i bytes = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    if (count == 8) {
        _mm_storel_epi64((__m128i *)out, bytes);
    } else {
        uint8_t all[16];
        _mm_storeu_si128((__m128i *)all, bytes);
        memcpy(out, all, (size_t)count);
    }
}

/* y → clamp(cvtps2dq(clamp(y, ±512)) + zero, low, high), as requantize_one. */
AVX2_INLINE __m256i requantize_avx2(__m256 y, int zero, int low, int high) {
    y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-512.0f)), _mm256_set1_ps(512.0f));
    __m256i r = _mm256_add_epi32(_mm256_cvtps_epi32(y), _mm256_set1_epi32(zero));
    return _mm256_min_epi32(_mm256_max_epi32(r, _mm256_set1_epi32(low)), _mm256_set1_epi32(high));
}

AVX2 void distill_q8_requantize_avx2(long m, long n, const int32_t *acc, long ldacc, const distill_q8_requantization *r,
                                     uint8_t *out, long ldo) {
    for (long i = 0; i < m; i++) {
        long j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(acc + i * ldacc + j));
            if (r->bias) v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(r->bias + j)));
            __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(r->scale + j));
            store_bytes_avx2(requantize_avx2(y, r->zero, r->low, r->high), out + i * ldo + j, 8);
        }
        for (; j < n; j++) {
            int32_t v = (int32_t)((uint32_t)acc[i * ldacc + j] + (uint32_t)(r->bias ? r->bias[j] : 0));
            float y = (float)v;
            y = y * r->scale[j];
            out[i * ldo + j] = requantize_one(y, r->zero, r->low, r->high);
        }
    }
}

/* The fused kernel on AVX2, as rows_block_vnni: ROWS ≤ 4 rows read piece by piece (ptrs[r] + t
   · pitch) against 8 channels (half of a panel), gemm_block_avx2's arithmetic, requantized in
   registers. */
AVX2_INLINE void rows_block_avx2(int rows, long taps, long segment, long pitch, const uint8_t *const *ptrs, int aZero,
                                 const int8_t *panel, long half, const int32_t *sums, long j0, long count,
                                 const distill_q8_requantization *r, uint8_t *out, long ldo) {
    __m256i acc0[4], acc1[4];
    for (int i = 0; i < rows; i++) acc0[i] = acc1[i] = _mm256_setzero_si256();
    long quadsPerPiece = quads(segment), full = taps > 1 ? quadsPerPiece : segment / 4;
    for (long t = 0; t < taps; t++) {
        const uint8_t *p[4];
        for (int i = 0; i < rows; i++) p[i] = ptrs[i] + t * pitch;
        const int8_t *w = panel + t * quadsPerPiece * PANEL * 4 + half * 32;
        for (long q = 0; q < quadsPerPiece; q++) { /* the tail quad (q == full) only for a single piece */
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + q * PANEL * 4)));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + q * PANEL * 4 + 16)));
            if (q < full) {
                for (int i = 0; i < rows; i++) {
                    int32_t v;
                    memcpy(&v, p[i] + 4 * q, 4);
                    __m256i x = _mm256_cvtepu8_epi16(_mm_set1_epi32(v));
                    acc0[i] = _mm256_add_epi32(acc0[i], _mm256_madd_epi16(x, w0));
                    acc1[i] = _mm256_add_epi32(acc1[i], _mm256_madd_epi16(x, w1));
                }
            } else {
                for (int i = 0; i < rows; i++) {
                    __m256i x = _mm256_cvtepu8_epi16(_mm_set1_epi32((int)quad_at(p[i], q, segment)));
                    acc0[i] = _mm256_add_epi32(acc0[i], _mm256_madd_epi16(x, w0));
                    acc1[i] = _mm256_add_epi32(acc1[i], _mm256_madd_epi16(x, w1));
                }
            }
        }
    }
    int32_t s[8] = {0}, b[8] = {0};
    float scale[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    memcpy(s, sums + j0, (size_t)count * sizeof(int32_t));
    if (r->bias) memcpy(b, r->bias + j0, (size_t)count * sizeof(int32_t));
    memcpy(scale, r->scale + j0, (size_t)count * sizeof(float));
    __m256i correction = _mm256_mullo_epi32(_mm256_set1_epi32(aZero), _mm256_loadu_si256((const __m256i *)s));
    __m256i bias = _mm256_loadu_si256((const __m256i *)b);
    __m256 scales = _mm256_loadu_ps(scale);
    for (int i = 0; i < rows; i++) {
        __m256i v = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc0[i], acc1[i]), 0xD8);
        v = _mm256_add_epi32(_mm256_sub_epi32(v, correction), bias);
        __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(v), scales);
        store_bytes_avx2(requantize_avx2(y, r->zero, r->low, r->high), out + i * ldo + j0, count);
    }
}

AVX2 void distill_q8_rows_requantize_avx2(long m, long n, long taps, long segment, long pitch, const uint8_t *const *ptrs,
                                          int aZero, const int8_t *packed, const int32_t *sums,
                                          const distill_q8_requantization *r, uint8_t *out, long ldo) {
    long panelBytes = taps * quads(segment) * PANEL * 4;
    for (long i = 0; i < m; i += 4) {
        int rows = m - i >= 4 ? 4 : (int)(m - i);
        const uint8_t *const *block = ptrs + i;
        uint8_t *o = out + i * ldo;
        for (long j0 = 0; j0 < n; j0 += 8) {
            long count = n - j0 >= 8 ? 8 : n - j0, half = (j0 % PANEL) / 8;
            const int8_t *panel = packed + (j0 / PANEL) * panelBytes;
            switch (rows) {
            case 4: rows_block_avx2(4, taps, segment, pitch, block, aZero, panel, half, sums, j0, count, r, o, ldo); break;
            case 3: rows_block_avx2(3, taps, segment, pitch, block, aZero, panel, half, sums, j0, count, r, o, ldo); break;
            case 2: rows_block_avx2(2, taps, segment, pitch, block, aZero, panel, half, sums, j0, count, r, o, ldo); break;
            default: rows_block_avx2(1, taps, segment, pitch, block, aZero, panel, half, sums, j0, count, r, o, ldo); break;
            }
        }
    }
}

AVX2 void distill_q8_dequantize_avx2(long m, long n, const int32_t *acc, long ldacc, const int32_t *bias, const float *scale,
                                     float *out, long ldo) {
    for (long i = 0; i < m; i++) {
        long j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(acc + i * ldacc + j));
            if (bias) v = _mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(bias + j)));
            _mm256_storeu_ps(out + i * ldo + j, _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(scale + j)));
        }
        for (; j < n; j++) {
            int32_t v = (int32_t)((uint32_t)acc[i * ldacc + j] + (uint32_t)(bias ? bias[j] : 0));
            float y = (float)v;
            out[i * ldo + j] = y * scale[j];
        }
    }
}

AVX2 void distill_q8_add_avx2(long count, const uint8_t *a, const uint8_t *b, const distill_q8_add_parameters *p,
                              uint8_t *out) {
    long i = 0;
    const __m256 as = _mm256_set1_ps(p->aScale), bs = _mm256_set1_ps(p->bScale);
    const __m256i az = _mm256_set1_epi32(p->aZero), bz = _mm256_set1_epi32(p->bZero);
    for (; i + 8 <= count; i += 8) {
        __m256i x = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(a + i))), az);
        __m256i y = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + i))), bz);
        __m256 s = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(x), as), _mm256_mul_ps(_mm256_cvtepi32_ps(y), bs));
        store_bytes_avx2(requantize_avx2(s, p->outZero, p->low, p->high), out + i, 8);
    }
    if (i < count) distill_q8_add_portable(count - i, a + i, b + i, p, out + i);
}

/* ---- AVX-512BW: the AVX2 scheme 16 channels (a whole panel) at a time. ---- */

#define AVX512BW __attribute__((target("avx512f,avx512bw")))
#define AVX512BW_INLINE __attribute__((target("avx512f,avx512bw"), always_inline)) static inline
#define AVX512 __attribute__((target("avx512f")))
#define AVX512_INLINE __attribute__((target("avx512f"), always_inline)) static inline

static inline __mmask16 lanes16(long count) { return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1); }

/* acc - aZero·sums for the panel's `count` channels, stored under a mask. */
AVX512_INLINE void store_panel_avx512(__m512i sum, int aZero, const int32_t *sums, long j0, long count, int32_t *c) {
    __mmask16 m = lanes16(count);
    __m512i correction = _mm512_mullo_epi32(_mm512_set1_epi32(aZero), _mm512_maskz_loadu_epi32(m, sums + j0));
    _mm512_mask_storeu_epi32(c + j0, m, _mm512_sub_epi32(sum, correction));
}

AVX512BW_INLINE void gemm_block_avx512bw(int rows, long k, const uint8_t *a, long lda, int aZero, const int8_t *panel,
                                         const int32_t *sums, long j0, long count, int32_t *c, long ldc) {
    __m512i acc0[4], acc1[4];
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = _mm512_setzero_si512();
    long kq = quads(k);
    for (long q = 0; q < kq; q++) {
        const int8_t *w = panel + q * PANEL * 4;
        __m512i w0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)w));
        __m512i w1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + 32)));
        for (int r = 0; r < rows; r++) {
            __m512i x = _mm512_cvtepu8_epi16(_mm256_set1_epi32((int)quad_at(a + r * lda, q, k)));
            acc0[r] = _mm512_add_epi32(acc0[r], _mm512_madd_epi16(x, w0));
            acc1[r] = _mm512_add_epi32(acc1[r], _mm512_madd_epi16(x, w1));
        }
    }
    /* Lane 2c + h holds half h of channel c: add the even lanes to the odd ones. */
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int r = 0; r < rows; r++) {
        __m512i sum = _mm512_add_epi32(_mm512_permutex2var_epi32(acc0[r], even, acc1[r]),
                                       _mm512_permutex2var_epi32(acc0[r], odd, acc1[r]));
        store_panel_avx512(sum, aZero, sums, j0, count, c + r * ldc);
    }
}

AVX512BW void distill_q8_gemm_avx512bw(long m, long n, long k, const uint8_t *a, long lda, int aZero,
                                       const int8_t *packed, const int32_t *sums, int32_t *c, long ldc) {
    long kq = quads(k);
    for (long i = 0; i < m; i += 4) {
        int rows = m - i >= 4 ? 4 : (int)(m - i);
        for (long p = 0; p < panels(n); p++) {
            long j0 = p * PANEL, count = n - j0 >= PANEL ? PANEL : n - j0;
            const int8_t *panel = packed + p * kq * PANEL * 4;
            const uint8_t *rowsA = a + i * lda;
            int32_t *rowsC = c + i * ldc;
            switch (rows) {
            case 4: gemm_block_avx512bw(4, k, rowsA, lda, aZero, panel, sums, j0, count, rowsC, ldc); break;
            case 3: gemm_block_avx512bw(3, k, rowsA, lda, aZero, panel, sums, j0, count, rowsC, ldc); break;
            case 2: gemm_block_avx512bw(2, k, rowsA, lda, aZero, panel, sums, j0, count, rowsC, ldc); break;
            default: gemm_block_avx512bw(1, k, rowsA, lda, aZero, panel, sums, j0, count, rowsC, ldc); break;
            }
        }
    }
}

/* ---- AVX-512 VNNI: vpdpbusd adds four u8×s8 products into each int32 lane (wrapping). ---- */

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define VNNI_INLINE __attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) static inline

/* ROWS ≤ 8 rows against two panels (32 channels) when `two`, else one: the row's quad
   broadcast to every lane meets the panel's 64 packed bytes (16 channels × 4 k) directly. */
VNNI_INLINE void gemm_block_vnni(int rows, int two, long k, const uint8_t *a, long lda, int aZero, const int8_t *panel,
                                 long panelBytes, const int32_t *sums, long j0, long n, int32_t *c, long ldc) {
    __m512i acc0[8], acc1[8];
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = _mm512_setzero_si512();
    long kq = quads(k), full = k / 4;
    for (long q = 0; q < kq; q++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(panel + q * PANEL * 4));
        __m512i w1 = two ? _mm512_loadu_si512((const void *)(panel + panelBytes + q * PANEL * 4)) : w0;
        for (int r = 0; r < rows; r++) {
            uint32_t v;
            if (q < full) memcpy(&v, a + r * lda + 4 * q, 4);
            else v = quad_at(a + r * lda, q, k);
            __m512i x = _mm512_set1_epi32((int)v);
            acc0[r] = _mm512_dpbusd_epi32(acc0[r], x, w0);
            if (two) acc1[r] = _mm512_dpbusd_epi32(acc1[r], x, w1);
        }
    }
    long count0 = n - j0 >= PANEL ? PANEL : n - j0;
    for (int r = 0; r < rows; r++) {
        store_panel_avx512(acc0[r], aZero, sums, j0, count0, c + r * ldc);
        if (two) store_panel_avx512(acc1[r], aZero, sums, j0 + PANEL, n - j0 - PANEL >= PANEL ? PANEL : n - j0 - PANEL, c + r * ldc);
    }
}

#define VNNI_ROWS(two)                                                                                                  \
    switch (rows) {                                                                                                     \
    case 8: gemm_block_vnni(8, two, k, rowsA, lda, aZero, panel, panelBytes, sums, j0, n, rowsC, ldc); break;           \
    case 7: gemm_block_vnni(7, two, k, rowsA, lda, aZero, panel, panelBytes, sums, j0, n, rowsC, ldc); break;           \
    case 6: gemm_block_vnni(6, two, k, rowsA, lda, aZero, panel, panelBytes, sums, j0, n, rowsC, ldc); break;           \
    case 5: gemm_block_vnni(5, two, k, rowsA, lda, aZero, panel, panelBytes, sums, j0, n, rowsC, ldc); break;           \
    case 4: gemm_block_vnni(4, two, k, rowsA, lda, aZero, panel, panelBytes, sums, j0, n, rowsC, ldc); break;           \
    case 3: gemm_block_vnni(3, two, k, rowsA, lda, aZero, panel, panelBytes, sums, j0, n, rowsC, ldc); break;           \
    case 2: gemm_block_vnni(2, two, k, rowsA, lda, aZero, panel, panelBytes, sums, j0, n, rowsC, ldc); break;           \
    default: gemm_block_vnni(1, two, k, rowsA, lda, aZero, panel, panelBytes, sums, j0, n, rowsC, ldc); break;          \
    }

VNNI void distill_q8_gemm_vnni(long m, long n, long k, const uint8_t *a, long lda, int aZero, const int8_t *packed,
                               const int32_t *sums, int32_t *c, long ldc) {
    long panelBytes = quads(k) * PANEL * 4;
    for (long i = 0; i < m; i += 8) {
        int rows = m - i >= 8 ? 8 : (int)(m - i);
        const uint8_t *rowsA = a + i * lda;
        int32_t *rowsC = c + i * ldc;
        for (long p = 0; p < panels(n); p += 2) {
            long j0 = p * PANEL;
            const int8_t *panel = packed + p * panelBytes;
            if (p + 1 < panels(n)) {
                VNNI_ROWS(1)
            } else {
                VNNI_ROWS(0)
            }
        }
    }
}

/* ---- AVX-512F requantization and add (no byte or word arithmetic needed). ---- */

AVX512_INLINE __m512i requantize_avx512(__m512 y, int zero, int low, int high) {
    y = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(-512.0f)), _mm512_set1_ps(512.0f));
    __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(y), _mm512_set1_epi32(zero));
    return _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(low)), _mm512_set1_epi32(high));
}

AVX512 void distill_q8_requantize_avx512(long m, long n, const int32_t *acc, long ldacc, const distill_q8_requantization *r,
                                         uint8_t *out, long ldo) {
    for (long i = 0; i < m; i++) {
        for (long j = 0; j < n; j += 16) {
            __mmask16 mask = lanes16(n - j);
            __m512i v = _mm512_maskz_loadu_epi32(mask, acc + i * ldacc + j);
            if (r->bias) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mask, r->bias + j));
            __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_maskz_loadu_ps(mask, r->scale + j));
            _mm512_mask_cvtepi32_storeu_epi8(out + i * ldo + j, mask, requantize_avx512(y, r->zero, r->low, r->high));
        }
    }
}

AVX512 void distill_q8_dequantize_avx512(long m, long n, const int32_t *acc, long ldacc, const int32_t *bias,
                                         const float *scale, float *out, long ldo) {
    for (long i = 0; i < m; i++) {
        for (long j = 0; j < n; j += 16) {
            __mmask16 mask = lanes16(n - j);
            __m512i v = _mm512_maskz_loadu_epi32(mask, acc + i * ldacc + j);
            if (bias) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mask, bias + j));
            _mm512_mask_storeu_ps(out + i * ldo + j, mask, _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_maskz_loadu_ps(mask, scale + j)));
        }
    }
}

AVX512 void distill_q8_add_avx512(long count, const uint8_t *a, const uint8_t *b, const distill_q8_add_parameters *p,
                                  uint8_t *out) {
    const __m512 as = _mm512_set1_ps(p->aScale), bs = _mm512_set1_ps(p->bScale);
    const __m512i az = _mm512_set1_epi32(p->aZero), bz = _mm512_set1_epi32(p->bZero);
    for (long i = 0; i < count; i += 16) {
        __mmask16 mask = lanes16(count - i);
        /* The tail through zero-filled copies (masked byte loads would need AVX-512BW + VL). */
        uint8_t tailA[16] = {0}, tailB[16] = {0};
        const uint8_t *sa = a + i, *sb = b + i;
        if (count - i < 16) {
            memcpy(tailA, sa, (size_t)(count - i));
            memcpy(tailB, sb, (size_t)(count - i));
            sa = tailA;
            sb = tailB;
        }
        __m512i x = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)sa)), az);
        __m512i y = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)sb)), bz);
        __m512 s = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(x), as), _mm512_mul_ps(_mm512_cvtepi32_ps(y), bs));
        _mm512_mask_cvtepi32_storeu_epi8(out + i, mask, requantize_avx512(s, p->outZero, p->low, p->high));
    }
}

/* ---- VNNI, fused: a convolution's GEMM read through its row pieces, requantized in registers. ---- */

/* The requantized bytes of one row's accumulators for the panel's `count` channels from j0. */
VNNI_INLINE void store_requantized_vnni(__m512i sum, __m512i correction, const distill_q8_requantization *r, long j0,
                                        long count, uint8_t *out) {
    __mmask16 m = lanes16(count);
    __m512i v = _mm512_sub_epi32(sum, correction);
    if (r->bias) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(m, r->bias + j0));
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_maskz_loadu_ps(m, r->scale + j0));
    _mm512_mask_cvtepi32_storeu_epi8(out + j0, m, requantize_avx512(y, r->zero, r->low, r->high));
}

/* ROWS ≤ 8 rows against one or two panels, as gemm_block_vnni, each row read piece by piece:
   `segment` bytes from ptrs[r] + t · pitch for t < taps (whole quads, or one piece with a tail). */
VNNI_INLINE void rows_block_vnni(int rows, int two, long taps, long segment, long pitch, const uint8_t *const *ptrs, int aZero,
                                 const int8_t *panel, long panelBytes, const int32_t *sums, long j0, long n,
                                 const distill_q8_requantization *r, uint8_t *out, long ldo) {
    __m512i acc0[8], acc1[8];
    for (int i = 0; i < rows; i++) acc0[i] = acc1[i] = _mm512_setzero_si512();
    /* A row of several pieces has quads(segment)·4 readable bytes at each (the bytes past the
       piece meet zero weights); a single piece may end at its buffer's end: its tail by bytes. */
    long quadsPerPiece = quads(segment), full = taps > 1 ? quadsPerPiece : segment / 4;
    const long quadBytes = PANEL * 4;
    for (long t = 0; t < taps; t++) {
        const uint8_t *p[8];
        for (int i = 0; i < rows; i++) p[i] = ptrs[i] + t * pitch;
        const int8_t *w = panel + t * quadsPerPiece * quadBytes;
        /* Whole quads: no branch in the loop, so the accumulators stay in registers. */
        for (long q = 0; q < full; q++) {
            __m512i w0 = _mm512_loadu_si512((const void *)(w + q * quadBytes));
            __m512i w1 = two ? _mm512_loadu_si512((const void *)(w + panelBytes + q * quadBytes)) : w0;
            for (int i = 0; i < rows; i++) {
                int32_t v;
                memcpy(&v, p[i] + 4 * q, 4);
                __m512i x = _mm512_set1_epi32(v);
                acc0[i] = _mm512_dpbusd_epi32(acc0[i], x, w0);
                if (two) acc1[i] = _mm512_dpbusd_epi32(acc1[i], x, w1);
            }
        }
        if (full < quadsPerPiece) { /* a single piece's tail: its last 1-3 bytes */
            __m512i w0 = _mm512_loadu_si512((const void *)(w + full * quadBytes));
            __m512i w1 = two ? _mm512_loadu_si512((const void *)(w + panelBytes + full * quadBytes)) : w0;
            for (int i = 0; i < rows; i++) {
                __m512i x = _mm512_set1_epi32((int)quad_at(p[i], full, segment));
                acc0[i] = _mm512_dpbusd_epi32(acc0[i], x, w0);
                if (two) acc1[i] = _mm512_dpbusd_epi32(acc1[i], x, w1);
            }
        }
    }
    long count0 = n - j0 >= PANEL ? PANEL : n - j0, j1 = j0 + PANEL, count1 = n - j1 >= PANEL ? PANEL : n - j1;
    __m512i zero = _mm512_set1_epi32(aZero);
    __m512i c0 = _mm512_mullo_epi32(zero, _mm512_maskz_loadu_epi32(lanes16(count0), sums + j0));
    __m512i c1 = two ? _mm512_mullo_epi32(zero, _mm512_maskz_loadu_epi32(lanes16(count1), sums + j1)) : c0;
    for (int i = 0; i < rows; i++) {
        store_requantized_vnni(acc0[i], c0, r, j0, count0, out + i * ldo);
        if (two) store_requantized_vnni(acc1[i], c1, r, j1, count1, out + i * ldo);
    }
}

#define VNNI_ROWS_FUSED(two)                                                                                            \
    switch (rows) {                                                                                                     \
    case 8: rows_block_vnni(8, two, taps, segment, pitch, block, aZero, panel, panelBytes, sums, j0, n, r, o, ldo); break;    \
    case 7: rows_block_vnni(7, two, taps, segment, pitch, block, aZero, panel, panelBytes, sums, j0, n, r, o, ldo); break;    \
    case 6: rows_block_vnni(6, two, taps, segment, pitch, block, aZero, panel, panelBytes, sums, j0, n, r, o, ldo); break;    \
    case 5: rows_block_vnni(5, two, taps, segment, pitch, block, aZero, panel, panelBytes, sums, j0, n, r, o, ldo); break;    \
    case 4: rows_block_vnni(4, two, taps, segment, pitch, block, aZero, panel, panelBytes, sums, j0, n, r, o, ldo); break;    \
    case 3: rows_block_vnni(3, two, taps, segment, pitch, block, aZero, panel, panelBytes, sums, j0, n, r, o, ldo); break;    \
    case 2: rows_block_vnni(2, two, taps, segment, pitch, block, aZero, panel, panelBytes, sums, j0, n, r, o, ldo); break;    \
    default: rows_block_vnni(1, two, taps, segment, pitch, block, aZero, panel, panelBytes, sums, j0, n, r, o, ldo); break;   \
    }

VNNI void distill_q8_rows_requantize_vnni(long m, long n, long taps, long segment, long pitch, const uint8_t *const *ptrs, int aZero,
                                          const int8_t *packed, const int32_t *sums, const distill_q8_requantization *r,
                                          uint8_t *out, long ldo) {
    long panelBytes = taps * quads(segment) * PANEL * 4;
    for (long i = 0; i < m; i += 8) {
        int rows = m - i >= 8 ? 8 : (int)(m - i);
        const uint8_t *const *block = ptrs + i;
        uint8_t *o = out + i * ldo;
        for (long p = 0; p < panels(n); p += 2) {
            long j0 = p * PANEL;
            const int8_t *panel = packed + p * panelBytes;
            if (p + 1 < panels(n)) {
                VNNI_ROWS_FUSED(1)
            } else {
                VNNI_ROWS_FUSED(0)
            }
        }
    }
}
#endif

/* ---- Dispatch (the table is filled by dispatch.c's install). ---- */

void distill_q8_gemm(long m, long n, long k, const uint8_t *a, long lda, int aZero, const int8_t *packed,
                     const int32_t *sums, int32_t *c, long ldc) {
    distill_kernels_ensure_chosen();
    distill_kernels.q8_gemm(m, n, k, a, lda, aZero, packed, sums, c, ldc);
}

void distill_q8_requantize(long m, long n, const int32_t *acc, long ldacc, const distill_q8_requantization *r,
                           uint8_t *out, long ldo) {
    distill_kernels_ensure_chosen();
    distill_kernels.q8_requantize(m, n, acc, ldacc, r, out, ldo);
}

void distill_q8_dequantize(long m, long n, const int32_t *acc, long ldacc, const int32_t *bias, const float *scale,
                           float *out, long ldo) {
    distill_kernels_ensure_chosen();
    distill_kernels.q8_dequantize(m, n, acc, ldacc, bias, scale, out, ldo);
}

void distill_q8_add(long count, const uint8_t *a, const uint8_t *b, const distill_q8_add_parameters *p, uint8_t *out) {
    distill_kernels_ensure_chosen();
    distill_kernels.q8_add(count, a, b, p, out);
}
