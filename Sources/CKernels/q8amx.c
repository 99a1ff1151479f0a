/* The int8 GEMM on Intel AMX (Advanced Matrix Extensions: Sapphire Rapids and later Xeons):
   TDPBUSD multiplies a tile of 16 rows × 64 uint8 activations by a tile of 16 quads × 16
   channels of int8 weights (the packed panels of q8.c are that tile's layout as they are)
   and adds the four-product sums into 16 × 16 int32 lanes, wrapping, as vpdpbusd does: the
   same exact integers as every other path (CKernels.h). The rest of the AMX path's kernels
   are the AVX-512 VNNI path's (dispatch.c). */
#pragma STDC FP_CONTRACT OFF
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
   `distill_q8_packed_count` leaves room for that read). */
AMX void distill_q8_gemm_amx(long m, long n, long k, const uint8_t *a, long lda, int aZero, const int8_t *packed,
                             const int32_t *sums, int32_t *c, long ldc) {
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
            __m512i zero = _mm512_set1_epi32(aZero);
            for (long half = 0; half < columns; half += PANEL) {
                long count = columns - half >= PANEL ? PANEL : columns - half;
                __mmask16 mask = (__mmask16)(count >= 16 ? 0xFFFF : (1u << count) - 1);
                __m512i correction = _mm512_mullo_epi32(zero, _mm512_maskz_loadu_epi32(mask, sums + j0 + half));
                for (long r = 0; r < rows; r++) {
                    __m512i v = _mm512_sub_epi32(_mm512_load_si512((const void *)(block + r * 32 + half)), correction);
                    _mm512_mask_storeu_epi32(c + (i + r) * ldc + j0 + half, mask, v);
                }
            }
        }
    }
    free(scratch);
    _tile_release();
}
#endif
