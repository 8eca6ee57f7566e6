/*
 * nn_wino_tile.h: the tile arithmetic of the Winograd kernels
 * (nn_winograd.c, its only user): the 1-D transforms on WINO_VL lanes at
 * once, and the moves between planes (n,[C],H,W) and lanes, where the
 * lanes of a transformed tile are WINO_VL images (column p of a chunk of
 * n images is tile p / n of image p % n). Everything is static inline,
 * so each kernel build compiles it for its own ISA; the AVX-512 build
 * moves data through 16 x 16 transposes in registers, the baseline one
 * value at a time.
 */
#ifndef LEJEPA_NN_WINO_TILE_H
#define LEJEPA_NN_WINO_TILE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#define WINO_MAX_A 6 /* largest patch side a = m + 2 */
/* Lanes the tile arithmetic works on at once: images of a block, or
 * (oc, c) weight pairs. */
#define WINO_VL 16

/* ---- Tile arithmetic on WINO_VL lanes at once, written as fixed-length
 * loops over the lane l so that it compiles to plain vector code (an omp
 * simd loop over images with local tile arrays did not vectorise). A tile
 * of lanes is float[6][6][WINO_VL]; m is a constant wherever these are
 * inlined (always_inline, called with m = 2 or 4 literally). */
#define WINO_TILE (WINO_MAX_A * WINO_MAX_A * WINO_VL)
#define WINO_INLINE static inline __attribute__((always_inline))
#define X(k) x[(k) * xs + l]
#define Y(k) y[(k) * ys + l]

/* y = B^T x (a -> a). */
WINO_INLINE void wino_bt(int m, const float *restrict x, size_t xs,
                         float *restrict y, size_t ys)
{
    for (int l = 0; l < WINO_VL; l++) {
        if (m == 2) {
            Y(0) = X(0) - X(2);
            Y(1) = X(1) + X(2);
            Y(2) = X(2) - X(1);
            Y(3) = X(1) - X(3);
            continue;
        }
        Y(0) = 4.0f * X(0) - 5.0f * X(2) + X(4);
        Y(1) = X(3) + X(4) - 4.0f * (X(1) + X(2));
        Y(2) = X(4) - X(3) + 4.0f * (X(1) - X(2));
        Y(3) = X(4) - X(2) + 2.0f * (X(3) - X(1));
        Y(4) = X(4) - X(2) + 2.0f * (X(1) - X(3));
        Y(5) = 4.0f * X(1) - 5.0f * X(3) + X(5);
    }
}

/* y = B x (a -> a), the adjoint of wino_bt. */
WINO_INLINE void wino_b(int m, const float *restrict x, size_t xs,
                        float *restrict y, size_t ys)
{
    for (int l = 0; l < WINO_VL; l++) {
        if (m == 2) {
            Y(0) = X(0);
            Y(1) = X(1) - X(2) + X(3);
            Y(2) = X(1) + X(2) - X(0);
            Y(3) = -X(3);
            continue;
        }
        Y(0) = 4.0f * X(0);
        Y(1) = 4.0f * (X(2) - X(1) + X(5)) + 2.0f * (X(4) - X(3));
        Y(2) = -5.0f * X(0) - 4.0f * (X(1) + X(2)) - (X(3) + X(4));
        Y(3) = X(1) - X(2) + 2.0f * (X(3) - X(4)) - 5.0f * X(5);
        Y(4) = X(0) + X(1) + X(2) + X(3) + X(4);
        Y(5) = X(5);
    }
}

/* y = A^T x (a -> m). */
WINO_INLINE void wino_at(int m, const float *restrict x, size_t xs,
                         float *restrict y, size_t ys)
{
    for (int l = 0; l < WINO_VL; l++) {
        if (m == 2) {
            Y(0) = X(0) + X(1) + X(2);
            Y(1) = X(1) - X(2) - X(3);
            continue;
        }
        Y(0) = X(0) + X(1) + X(2) + X(3) + X(4);
        Y(1) = X(1) - X(2) + 2.0f * (X(3) - X(4));
        Y(2) = X(1) + X(2) + 4.0f * (X(3) + X(4));
        Y(3) = X(1) - X(2) + 8.0f * (X(3) - X(4)) + X(5);
    }
}

/* y = A x (m -> a), the adjoint of wino_at. */
WINO_INLINE void wino_a(int m, const float *restrict x, size_t xs,
                        float *restrict y, size_t ys)
{
    for (int l = 0; l < WINO_VL; l++) {
        if (m == 2) {
            Y(0) = X(0);
            Y(1) = X(0) + X(1);
            Y(2) = X(0) - X(1);
            Y(3) = -X(1);
            continue;
        }
        Y(0) = X(0);
        Y(1) = X(0) + X(1) + X(2) + X(3);
        Y(2) = X(0) - X(1) + X(2) - X(3);
        Y(3) = X(0) + 2.0f * X(1) + 4.0f * X(2) + 8.0f * X(3);
        Y(4) = X(0) - 2.0f * X(1) + 4.0f * X(2) - 8.0f * X(3);
        Y(5) = X(3);
    }
}

/* y = G x (3 -> a). */
WINO_INLINE void wino_g(int m, const float *restrict x, size_t xs,
                        float *restrict y, size_t ys)
{
    for (int l = 0; l < WINO_VL; l++) {
        if (m == 2) {
            Y(0) = X(0);
            Y(1) = 0.5f * (X(0) + X(1) + X(2));
            Y(2) = 0.5f * (X(0) - X(1) + X(2));
            Y(3) = X(2);
            continue;
        }
        Y(0) = X(0) / 4.0f;
        Y(1) = -(X(0) + X(1) + X(2)) / 6.0f;
        Y(2) = -(X(0) - X(1) + X(2)) / 6.0f;
        Y(3) = X(0) / 24.0f + X(1) / 12.0f + X(2) / 6.0f;
        Y(4) = X(0) / 24.0f - X(1) / 12.0f + X(2) / 6.0f;
        Y(5) = X(2);
    }
}

/* y = G^T x (a -> 3), the adjoint of wino_g. */
WINO_INLINE void wino_gt(int m, const float *restrict x, size_t xs,
                         float *restrict y, size_t ys)
{
    for (int l = 0; l < WINO_VL; l++) {
        if (m == 2) {
            Y(0) = X(0) + 0.5f * (X(1) + X(2));
            Y(1) = 0.5f * (X(1) - X(2));
            Y(2) = 0.5f * (X(1) + X(2)) + X(3);
            continue;
        }
        Y(0) = X(0) / 4.0f - (X(1) + X(2)) / 6.0f + (X(3) + X(4)) / 24.0f;
        Y(1) = (X(2) - X(1)) / 6.0f + (X(3) - X(4)) / 12.0f;
        Y(2) = (X(3) + X(4) - X(1) - X(2)) / 6.0f + X(5);
    }
}
#undef X
#undef Y

enum wino_op { WINO_BT, WINO_B, WINO_AT, WINO_A, WINO_G, WINO_GT };

WINO_INLINE void wino_1d(enum wino_op op, int m, const float *x, size_t xs,
                         float *y, size_t ys)
{
    switch (op) {
    case WINO_BT: wino_bt(m, x, xs, y, ys); break;
    case WINO_B: wino_b(m, x, xs, y, ys); break;
    case WINO_AT: wino_at(m, x, xs, y, ys); break;
    case WINO_A: wino_a(m, x, xs, y, ys); break;
    case WINO_G: wino_g(m, x, xs, y, ys); break;
    case WINO_GT: wino_gt(m, x, xs, y, ys); break;
    }
}

/* y = L x L^T for an nin x nin tile of lanes x to an nout x nout tile y
 * (both float[6][6][WINO_VL]): columns first, then rows. */
WINO_INLINE void wino_2d(enum wino_op op, int m, int nin, int nout,
                         const float *x, float *y)
{
    const size_t rsz = WINO_MAX_A * WINO_VL;
    float t[WINO_TILE];
    for (int c = 0; c < nin; c++)
        wino_1d(op, m, x + c * WINO_VL, rsz, t + c * WINO_VL, rsz);
    for (int r = 0; r < nout; r++)
        wino_1d(op, m, t + r * rsz, WINO_VL, y + r * rsz, WINO_VL);
}

/* dst[l] = src[l] for the first cnt lanes, 0 for the rest. */
WINO_INLINE void wino_lanes_load(float *restrict dst, const float *restrict src,
                                 int cnt)
{
    if (cnt == WINO_VL) {
        /* A plain loop here compiled to 16 scalar loads and inserts. */
        memcpy(dst, src, WINO_VL * sizeof(float));
        return;
    }
    for (int l = 0; l < WINO_VL; l++)
        dst[l] = l < cnt ? src[l] : 0.0f;
}

/* dst[l] = src[l] (add: +=) for the first cnt lanes. */
WINO_INLINE void wino_lanes_store(float *restrict dst,
                                  const float *restrict src, int cnt,
                                  bool add)
{
    if (cnt == WINO_VL && !add) {
        memcpy(dst, src, WINO_VL * sizeof(float));
        return;
    }
    if (cnt == WINO_VL) {
        for (int l = 0; l < WINO_VL; l++)
            dst[l] += src[l];
        return;
    }
    for (int l = 0; l < WINO_VL; l++)
        if (l < cnt)
            dst[l] = add ? dst[l] + src[l] : src[l];
}

#define WINO_AT_RC(t, r, c) ((t) + ((r) * WINO_MAX_A + (c)) * WINO_VL)

#ifdef __AVX512F__
/* r[i][j] <-> r[j][i] for a 16 x 16 block of floats in registers. */
WINO_INLINE void wino_transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}
#endif

/* dst[q * cs + j] = src[j * xstride + q] for nb images j and W values q
 * of one row: a row of each image to lanes of consecutive positions. One
 * value at a time this was a strided load or store per value, which
 * dominated the transforms; with AVX-512 it goes through 16 x 16 blocks
 * transposed in registers. */
WINO_INLINE void wino_rows_to_lanes(float *restrict dst, size_t cs,
                                    const float *restrict src,
                                    size_t xstride, int nb, int W)
{
#ifdef __AVX512F__
    for (int j0 = 0; j0 < nb; j0 += 16) {
        const int jn = nb - j0 < 16 ? nb - j0 : 16;
        const __mmask16 jm = (__mmask16)((1u << jn) - 1);
        for (int q0 = 0; q0 < W; q0 += 16) {
            const int qn = W - q0 < 16 ? W - q0 : 16;
            const __mmask16 qm = (__mmask16)((1u << qn) - 1);
            __m512 r[16];
            for (int j = 0; j < 16; j++)
                r[j] = j < jn ? _mm512_maskz_loadu_ps(
                                    qm, src + (j0 + j) * xstride + q0)
                              : _mm512_setzero_ps();
            wino_transpose16(r);
            for (int q = 0; q < qn; q++)
                _mm512_mask_storeu_ps(dst + (q0 + q) * cs + j0, jm, r[q]);
        }
    }
#else
    for (int q = 0; q < W; q++)
        for (int j = 0; j < nb; j++)
            dst[q * cs + j] = src[j * xstride + q];
#endif
}

/* The lanes' position in a chunk of n images: column p is tile p / n of
 * image p % n; the tile's top-left output is at row *ty, column *tx. */
WINO_INLINE size_t wino_lane_tile(int m, size_t p, int n, int tw, int *ty,
                                  int *tx)
{
    const size_t t = p / n;
    *ty = (int)(t / tw) * m;
    *tx = (int)(t % tw) * m;
    return p % n;
}

/* Whether the 16 lanes of columns p0.. are one tile of 16 consecutive
 * images (column p is tile p / n of image p % n). */
static inline bool wino_lanes_one_tile(size_t p0, int cnt, int n)
{
    return cnt == WINO_VL && (int)(p0 % n) + WINO_VL <= n;
}

#ifdef __AVX512F__
/* Stores (add: adds) an L x L tile of 16 lanes q, plus bias, to 16
 * consecutive images (planes stride apart from base) with its top-left
 * at row y0, column x0, dropping what lies outside the H x W plane: the
 * tile's rows are transposed in registers, R = 16 / L rows at a time, so
 * that each image gets a masked vector per row instead of L scalars. */
WINO_INLINE void wino_tile_to_images(int L, float *restrict base,
                                     size_t stride, const float *restrict q,
                                     float bias, int y0, int x0, int H,
                                     int W, bool add)
{
    unsigned cols = 0;
    for (int c = 0; c < L; c++)
        if (x0 + c >= 0 && x0 + c < W)
            cols |= 1u << c;
    if (!cols)
        return;
    /* Element rr * L + c of a lane's vector lands on column x0 + c of row
     * y: stored from column x0 - rr * L under the mask of the columns
     * inside the plane, or, where that address would lie before the
     * image (its first rows), with those columns (c0.., nc of them)
     * compressed to the low elements and stored from column x0 + c0. */
    const int c0 = __builtin_ctz(cols), nc = __builtin_popcount(cols);
    const __mmask16 run = (__mmask16)((1u << nc) - 1);
    const int R = 16 / L;
    const __m512 b = _mm512_set1_ps(bias);
    for (int r0 = 0; r0 < L; r0 += R) {
        const int rn = L - r0 < R ? L - r0 : R;
        __m512 v[16];
        for (int k = 0; k < 16; k++)
            v[k] = k < rn * L
                       ? _mm512_loadu_ps(WINO_AT_RC(q, r0 + k / L, k % L))
                       : _mm512_setzero_ps();
        wino_transpose16(v); /* v[l]: lane l, element rr * L + c */
        for (int rr = 0; rr < rn; rr++) {
            const int y = y0 + r0 + rr;
            if (y < 0 || y >= H)
                continue;
            const __mmask16 mk = (__mmask16)(cols << (rr * L));
            const ptrdiff_t at = (ptrdiff_t)y * W + x0 - rr * L;
            if (at >= 0) {
                for (int l = 0; l < 16; l++) {
                    float *o = base + l * stride + at;
                    __m512 x = _mm512_add_ps(v[l], b);
                    if (add)
                        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, o));
                    _mm512_mask_storeu_ps(o, mk, x);
                }
                continue;
            }
            const size_t off = (size_t)y * W + x0 + c0;
            for (int l = 0; l < 16; l++) {
                float *o = base + l * stride + off;
                __m512 x =
                    _mm512_maskz_compress_ps(mk, _mm512_add_ps(v[l], b));
                if (add)
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(run, o));
                _mm512_mask_storeu_ps(o, run, x);
            }
        }
    }
}
#endif

/* Writes the m x m output tiles q of cnt lanes, columns p0.. of a chunk of
 * n images, plus the bias; the part of a partial tile outside the plane is
 * dropped. */
WINO_INLINE void wino_store_tiles(int m, float *restrict y, // (n,[OC],H,W)
                                  size_t ystride, const float *restrict q,
                                  float bias, size_t p0, int cnt, int n,
                                  int H, int W)
{
    const int tw = (W + m - 1) / m;
#ifdef __AVX512F__
    if (wino_lanes_one_tile(p0, cnt, n)) {
        int ty, tx;
        const size_t i = wino_lane_tile(m, p0, n, tw, &ty, &tx);
        wino_tile_to_images(m, y + i * ystride, ystride, q, bias, ty, tx, H,
                            W, false);
        return;
    }
#endif
    for (int l = 0; l < cnt; l++) {
        int ty, tx;
        const size_t i = wino_lane_tile(m, p0 + l, n, tw, &ty, &tx);
        const int rows = H - ty < m ? H - ty : m;
        const int cols = W - tx < m ? W - tx : m;
        float *restrict o = y + i * ystride + (size_t)ty * W + tx;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                o[r * W + c] = WINO_AT_RC(q, r, c)[l] + bias;
    }
}

/* Adds the a x a input-gradient patches q of cnt lanes (columns p0.. of a
 * chunk of n images) to dx, dropping the zero padding around the plane;
 * neighbouring patches overlap by 2 and add up. */
WINO_INLINE void wino_add_patches(int m, float *restrict dx, // (n,[C],H,W)
                                  size_t xstride, const float *restrict q,
                                  size_t p0, int cnt, int n, int H, int W)
{
    const int a = m + 2, tw = (W + m - 1) / m;
#ifdef __AVX512F__
    if (wino_lanes_one_tile(p0, cnt, n)) {
        int ty, tx;
        const size_t i = wino_lane_tile(m, p0, n, tw, &ty, &tx);
        wino_tile_to_images(a, dx + i * xstride, xstride, q, 0.0f, ty - 1,
                            tx - 1, H, W, true);
        return;
    }
#endif
    for (int l = 0; l < cnt; l++) {
        int ty, tx;
        const size_t i = wino_lane_tile(m, p0 + l, n, tw, &ty, &tx);
        float *restrict d = dx + i * xstride;
        for (int r = 0; r < a; r++) {
            const int y = ty - 1 + r;
            if (y < 0 || y >= H)
                continue;
            for (int c = 0; c < a; c++) {
                const int x = tx - 1 + c;
                if (x >= 0 && x < W)
                    d[y * W + x] += WINO_AT_RC(q, r, c)[l];
            }
        }
    }
}

#endif
