/*
 * nn_tilegemm.h: the register-blocked product behind the Winograd kernels
 * (nn_winograd.c: the forward pass's U V and the input gradient's U^T dYh)
 * and the im2col path (nn_conv.c: W col and W^T dout): a block of TG_ROWS
 * outputs times TG_COLS columns, summed over C rows in registers,
 *   mb[r][j] = sum_c up[c][r] * v[c][j],
 * with up a packed weight panel (C rows of TG_ROWS values, so that every
 * row is one run of broadcasts) and v TG_COLS consecutive columns of C
 * rows ldv apart. The caller keeps v and the small result in the cache;
 * nothing is packed per call, unlike a BLAS sgemm.
 *
 * Sized for the ISA the file is compiled for: on AVX-512, 12 rows x 32
 * columns (24 zmm accumulators); on AVX2 + FMA, 6 x 16 (12 ymm); elsewhere
 * plain loops of the same shape. Each multiply-add is one rounding (FMA)
 * on x86; the sum runs over c in order, like a dot product.
 */
#ifndef LEJEPA_NN_TILEGEMM_H
#define LEJEPA_NN_TILEGEMM_H

#include <stddef.h>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define TG_ROWS 12
#define TG_COLS 32
#elif defined(__FMA__)
#define TG_ROWS 6
#define TG_COLS 16
#else
#define TG_ROWS 4
#define TG_COLS 16
#endif

/* Output-channel blocks of TG_ROWS for OC channels (the last one padded
 * with zero weights). */
static inline int tg_row_blocks(int OC)
{
    return (OC + TG_ROWS - 1) / TG_ROWS;
}

/* mb (TG_ROWS x TG_COLS, row stride TG_COLS) = up^T v over C rows. */
static inline void tg_product(float *restrict mb, const float *restrict up,
                              const float *restrict v, size_t ldv, int C)
{
#if defined(__AVX512F__)
    __m512 acc[TG_ROWS][2];
#pragma GCC unroll 12
    for (int r = 0; r < TG_ROWS; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int c = 0; c < C; c++) {
        const __m512 x0 = _mm512_loadu_ps(v + c * ldv);
        const __m512 x1 = _mm512_loadu_ps(v + c * ldv + 16);
#pragma GCC unroll 12
        for (int r = 0; r < TG_ROWS; r++) {
            const __m512 u = _mm512_set1_ps(up[c * TG_ROWS + r]);
            acc[r][0] = _mm512_fmadd_ps(u, x0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(u, x1, acc[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < TG_ROWS; r++) {
        _mm512_storeu_ps(mb + r * TG_COLS, acc[r][0]);
        _mm512_storeu_ps(mb + r * TG_COLS + 16, acc[r][1]);
    }
#elif defined(__FMA__)
    __m256 acc[TG_ROWS][2];
#pragma GCC unroll 6
    for (int r = 0; r < TG_ROWS; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int c = 0; c < C; c++) {
        const __m256 x0 = _mm256_loadu_ps(v + c * ldv);
        const __m256 x1 = _mm256_loadu_ps(v + c * ldv + 8);
#pragma GCC unroll 6
        for (int r = 0; r < TG_ROWS; r++) {
            const __m256 u = _mm256_broadcast_ss(up + c * TG_ROWS + r);
            acc[r][0] = _mm256_fmadd_ps(u, x0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(u, x1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < TG_ROWS; r++) {
        _mm256_storeu_ps(mb + r * TG_COLS, acc[r][0]);
        _mm256_storeu_ps(mb + r * TG_COLS + 8, acc[r][1]);
    }
#else
    for (int r = 0; r < TG_ROWS; r++)
        for (int j = 0; j < TG_COLS; j++)
            mb[r * TG_COLS + j] = 0.0f;
    for (int c = 0; c < C; c++)
        for (int r = 0; r < TG_ROWS; r++)
            for (int j = 0; j < TG_COLS; j++)
                mb[r * TG_COLS + j] += up[c * TG_ROWS + r] * v[c * ldv + j];
#endif
}

#endif
