/* The int8 GEMM on Intel AMX (Advanced Matrix Extensions: Sapphire Rapids and later Xeons):
   TDPBUSD multiplies a tile of 16 rows × 64 uint8 activations by a tile of 16 quads × 16
   channels of int8 weights (the packed panels of q8.c are that tile's layout as they are)
   and adds the four-product sums into 16 × 16 int32 lanes, wrapping, as vpdpbusd does: the
   same exact integers as every other path (CKernels.h). The rest of the AMX path's kernels
   are the AVX-512 VNNI path's (dispatch.c). */
#pragma STDC FP_CONTRACT OFF
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "CKernels.h"
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define PANEL 16

#define AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw")))

/* The tile palette (Intel SDM, LDTILECFG): palette 1, then per tile its bytes a row and rows. */
typedef struct {
    uint8_t palette, startRow, reserved[14];
    uint16_t bytesPerRow[16];
    uint8_t rows[16];
} tile_configuration;

/* Blocks of 32 rows × 32 channels in four accumulator tiles (0-3), two activation tiles
   (4, 5: rows i..i+15 and i+16..i+31) and two weight tiles (6, 7: two panels), 64 inputs a
   step. Rows are read where they are when a block has 32 of them and k is a multiple of 64;
   otherwise the block is copied into a zero-filled scratch with k rounded up to 64 (zero
   activations against whatever the weight tile holds past the panel's last quad add 0:
   `distill_q8_packed_count` leaves room for that read). Each finished block goes through
   `finish`: stored as int32 (distill_q8_gemm) or turned into floats while it is in cache
   (distill_q8_gemm_dequantize_rows). */
typedef struct {
    /* int32 output */
    int aZero;
    int32_t *c;
    long ldc;
    /* float output, when out is not NULL */
    const float *rowScales;
    const int32_t *rowZeros;
    const float *scales, *bias;
    float *out;
    long ldo;
} amx_output;

static inline __mmask16 amx_lanes(long count) { return (__mmask16)(count >= 16 ? 0xFFFF : (1u << count) - 1); }

/* Rows i..i+rows−1 and channels j0..j0+columns−1 of the result, from block [32][32]. */
AMX static void amx_finish(const int32_t *block, long i, long rows, long j0, long columns, const int32_t *sums, const amx_output *o) {
    for (long half = 0; half < columns; half += PANEL) {
        long count = columns - half >= PANEL ? PANEL : columns - half;
        __mmask16 mask = amx_lanes(count);
        __m512i channelSums = _mm512_maskz_loadu_epi32(mask, sums + j0 + half);
        if (!o->out) {
            __m512i correction = _mm512_mullo_epi32(_mm512_set1_epi32(o->aZero), channelSums);
            for (long r = 0; r < rows; r++) {
                __m512i v = _mm512_sub_epi32(_mm512_load_si512((const void *)(block + r * 32 + half)), correction);
                _mm512_mask_storeu_epi32(o->c + (i + r) * o->ldc + j0 + half, mask, v);
            }
            continue;
        }
        /* distill_q8_dequantize_rows_avx512's operations in its order, so the same bits. */
        __m512 scales = _mm512_maskz_loadu_ps(mask, o->scales + j0 + half);
        __m512 bias = o->bias ? _mm512_maskz_loadu_ps(mask, o->bias + j0 + half) : _mm512_setzero_ps();
        for (long r = 0; r < rows; r++) {
            float a = o->rowScales[i + r];
            float *y = o->out + (i + r) * o->ldo + j0 + half;
            if (a != a) {
                _mm512_mask_storeu_ps(y, mask, _mm512_set1_ps(NAN));
                continue;
            }
            __m512i v = _mm512_sub_epi32(_mm512_load_si512((const void *)(block + r * 32 + half)),
                                         _mm512_mullo_epi32(_mm512_set1_epi32(o->rowZeros[i + r]), channelSums));
            __m512 value = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(_mm512_set1_ps(a), scales));
            if (o->bias) value = _mm512_add_ps(value, bias);
            _mm512_mask_storeu_ps(y, mask, value);
        }
    }
}

AMX static void amx_gemm(long m, long n, long k, const uint8_t *a, long lda, const int8_t *packed, const int32_t *sums,
                         const amx_output *o) {
    tile_configuration configuration;
    memset(&configuration, 0, sizeof configuration);
    configuration.palette = 1;
    for (int t = 0; t < 8; t++) {
        configuration.rows[t] = 16;
        configuration.bytesPerRow[t] = 64;
    }
    _tile_loadconfig(&configuration);
    long quadsK = (k + 3) / 4, panelBytes = quadsK * PANEL * 4, panelCount = (n + PANEL - 1) / PANEL;
    long paddedK = (k + 63) / 64 * 64;
    int32_t block[32 * 32] __attribute__((aligned(64)));
    uint8_t *scratch = NULL;
    for (long i = 0; i < m; i += 32) {
        long rows = m - i >= 32 ? 32 : m - i;
        const uint8_t *rowsA = a + i * lda;
        long pitch = lda;
        if (rows < 32 || paddedK != k) {
            if (!scratch) scratch = aligned_alloc(64, (size_t)(32 * paddedK));
            memset(scratch, 0, (size_t)(32 * paddedK));
            for (long r = 0; r < rows; r++) memcpy(scratch + r * paddedK, a + (i + r) * lda, (size_t)k);
            rowsA = scratch;
            pitch = paddedK;
        }
        for (long p = 0; p < panelCount; p += 2) {
            const int8_t *w0 = packed + p * panelBytes, *w1 = p + 1 < panelCount ? w0 + panelBytes : w0;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (long q = 0; q < paddedK / 4; q += 16) {
                _tile_loadd(4, rowsA + 4 * q, pitch);
                _tile_loadd(5, rowsA + 16 * pitch + 4 * q, pitch);
                _tile_loadd(6, w0 + q * PANEL * 4, PANEL * 4);
                _tile_loadd(7, w1 + q * PANEL * 4, PANEL * 4);
                _tile_dpbusd(0, 4, 6);
                _tile_dpbusd(1, 4, 7);
                _tile_dpbusd(2, 5, 6);
                _tile_dpbusd(3, 5, 7);
            }
            _tile_stored(0, block, 128);
            _tile_stored(1, block + 16, 128);
            _tile_stored(2, block + 16 * 32, 128);
            _tile_stored(3, block + 16 * 32 + 16, 128);
            long j0 = p * PANEL, columns = n - j0 >= 2 * PANEL ? 2 * PANEL : n - j0;
            amx_finish(block, i, rows, j0, columns, sums, o);
        }
    }
    free(scratch);
    _tile_release();
}

AMX void distill_q8_gemm_amx(long m, long n, long k, const uint8_t *a, long lda, int aZero, const int8_t *packed,
                             const int32_t *sums, int32_t *c, long ldc) {
    amx_output o = {.aZero = aZero, .c = c, .ldc = ldc};
    amx_gemm(m, n, k, a, lda, packed, sums, &o);
}

AMX void distill_q8_gemm_dequantize_rows_amx(long m, long n, long k, const uint8_t *a, long lda, const int8_t *packed,
                                             const int32_t *sums, const float *rowScales, const int32_t *rowZeros,
                                             const float *scales, const float *bias, float *out, long ldo, int32_t *scratch) {
    (void)scratch;
    amx_output o = {.rowScales = rowScales, .rowZeros = rowZeros, .scales = scales, .bias = bias, .out = out, .ldo = ldo};
    amx_gemm(m, n, k, a, lda, packed, sums, &o);
}
#endif
