/*
 * nn_winograd.c: Winograd F(mxm,3x3) convolution, m = 2 or 4, forward and
 * backward, for 3x3 stride-1 pad-1 layers (see nn_winograd.h). Each mxm
 * output tile comes from an axa input patch, a = m + 2 (patches overlap by
 * 2, zero padding outside the plane, the last tile of a side may be
 * partial):
 *   Y = A^T [ sum_c (G g G^T) . (B^T d B) ] A,
 * which is a*a GEMMs per chunk of images, M_xi (OC,P) = U_xi (OC,C) V_xi
 * (C,P) over P = n*tiles: 16 multiplies per 4 outputs (m = 2) or 36 per 16
 * (m = 4) instead of 9 per output. Backward is the exact adjoint:
 * dYh = A dY A^T per tile, then
 *   dU_xi += dYh_xi V_xi^T  -> dweight += G^T dU G,
 *   dV_xi  = U_xi^T dYh_xi  -> dinp += B dV B^T scattered over the patches.
 * Matrices are Lavin & Gray's (points 0, -1, 1 for m = 2; 0, +-1, +-2 for
 * m = 4). Each thread runs a slice of the batch start to end, GEMMs
 * included (see NN_MAX_SLICES).
 */
#include "nn_winograd.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "nn_gemm.h"
#include "nn_slice.h"
#include "util.h"

#define WINO_MAX_A 6 /* largest patch side a = m + 2 */
/* Lanes the tile arithmetic works on at once: images of a block, or
 * (oc, c) weight pairs. */
#define WINO_VL 16

bool nn_winograd_supports(int H, int W, int K, int stride, int pad)
{
    return K == 3 && stride == 1 && pad == 1 && H <= NN_WINOGRAD_MAX_SIDE &&
           W <= NN_WINOGRAD_MAX_SIDE;
}

/* Transformed values per image and channel: a*a per tile. */
static size_t wino_work(int m, int H, int W)
{
    return (size_t)(m + 2) * (m + 2) * ((H + m - 1) / m) * ((W + m - 1) / m);
}

/* F(4x4) needs fewer multiplies unless its larger tiles mostly cover
 * padding (2x2 and 1x1 planes: 36 vs 16 values); on 14x14 it still saves a
 * quarter, on 28x28, 7x7 and 4x4 almost half. */
int nn_winograd_tile(int H, int W)
{
    return wino_work(4, H, W) < wino_work(2, H, W) ? 4 : 2;
}

/* Distance between the a*a matrices of a transformed tensor: rows * cols
 * plus one cache line, so that the streams a transform reads or writes do
 * not all map to the same cache sets (rows * cols is often a power of two;
 * without the skew the 7x7 layers ran their transforms 3x slower). */
#define WINO_SKEW 16

/* Threads run a layer's chunks independently (nn_slice.h): each takes a
 * contiguous slice of the batch, in chunks with its own V and M (or Dh)
 * and, in backward, its own dU, summed once at the end. So the GEMMs are
 * single-threaded (OpenBLAS runs one thread inside a parallel region) and
 * a layer is one parallel region instead of ~3 per chunk plus a*a GEMM
 * regions. Each extra slice costs a dU copy: 9.4 MB for 256 x 256
 * channels. */

static size_t wino_xstride(size_t rows, size_t cols)
{
    return rows * cols + WINO_SKEW;
}

/* Images per chunk: V (a*a C) and M (a*a OC) values per tile under
 * NN_WINOGRAD_CHUNK_FLOATS, at least one image, a multiple of WINO_VL
 * where possible. */
static int wino_chunk_images(int B, int C, int OC, int m, int H, int W)
{
    size_t n = NN_WINOGRAD_CHUNK_FLOATS / ((C + OC) * wino_work(m, H, W));
    if (n >= WINO_VL)
        n -= n % WINO_VL;
    if (n < 1)
        n = 1;
    if (n > (size_t)B)
        n = (size_t)B;
    return (int)n;
}

size_t nn_winograd_scratch_floats(int B, int C, int H, int W, int OC, int m)
{
    CHECK(m == 2 || m == 4);
    const size_t nxi = (size_t)(m + 2) * (m + 2);
    const size_t nt = wino_work(m, H, W) / nxi;
    const size_t n = (size_t)nn_slice_data_images(
        B, wino_chunk_images(B, C, OC, m, H, W));
    /* U and dU, then V and M (or Dh) for one chunk split into up to
     * NN_MAX_SLICES slices, then the other slices' dU copies. */
    return nxi * ((1 + NN_MAX_SLICES) * wino_xstride(OC, C) +
                  (C + OC) * n * nt + 2 * NN_MAX_SLICES * WINO_SKEW);
}

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
        for (int l = 0; l < WINO_VL; l++)
            dst[l] = src[l];
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
    if (cnt == WINO_VL) {
        for (int l = 0; l < WINO_VL; l++)
            dst[l] = add ? dst[l] + src[l] : src[l];
        return;
    }
    for (int l = 0; l < WINO_VL; l++)
        if (l < cnt)
            dst[l] = add ? dst[l] + src[l] : src[l];
}

#define WINO_AT_RC(t, r, c) ((t) + ((r) * WINO_MAX_A + (c)) * WINO_VL)

/* U_xi[oc][c] = (G g G^T)[k][l], xi = k*a + l, WINO_VL (oc,c) pairs at a
 * time. */
WINO_INLINE void wino_weight_block(int m, float *restrict U, size_t us,
                                   const float *restrict weight, // (OC*C,9)
                                   size_t j0, int cnt)
{
    const int a = m + 2;
    float x[WINO_TILE], y[WINO_TILE];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++)
            for (int l = 0; l < WINO_VL; l++)
                WINO_AT_RC(x, r, c)[l] =
                    l < cnt ? weight[(j0 + l) * 9 + 3 * r + c] : 0.0f;
    wino_2d(WINO_G, m, 3, a, x, y);
    for (int r = 0; r < a; r++)
        for (int c = 0; c < a; c++)
            wino_lanes_store(U + (r * a + c) * us + j0, WINO_AT_RC(y, r, c),
                             cnt, false);
}

static void wino_weight_transform(int m, float *restrict U, // (a*a,OC,C)
                                  const float *restrict weight, // (OC,C,3,3)
                                  int OC, int C)
{
    const size_t plane = (size_t)OC * C, us = wino_xstride(OC, C);
#pragma omp parallel for schedule(static)
    for (size_t j0 = 0; j0 < plane; j0 += WINO_VL) {
        const int cnt = plane - j0 < WINO_VL ? (int)(plane - j0) : WINO_VL;
        if (m == 2)
            wino_weight_block(2, U, us, weight, j0, cnt);
        else
            wino_weight_block(4, U, us, weight, j0, cnt);
    }
}

/* dweight[oc][c] += G^T dU G, WINO_VL (oc,c) pairs at a time, dU the sum
 * of ns copies dU_k at dU_k = dU0 (k = 0) or dUk + (k-1) * ks. */
WINO_INLINE void wino_weight_grad_block(int m, float *restrict dweight,
                                        const float *restrict dU0,
                                        const float *restrict dUk, size_t ks,
                                        int ns, size_t us, size_t j0, int cnt)
{
    const int a = m + 2;
    float x[WINO_TILE], y[WINO_TILE], t[WINO_VL];
    for (int r = 0; r < a; r++)
        for (int c = 0; c < a; c++) {
            float *xr = WINO_AT_RC(x, r, c);
            const size_t o = (r * a + c) * us + j0;
            wino_lanes_load(xr, dU0 + o, cnt);
            for (int k = 1; k < ns; k++) {
                wino_lanes_load(t, dUk + (k - 1) * ks + o, cnt);
                for (int l = 0; l < WINO_VL; l++)
                    xr[l] += t[l];
            }
        }
    wino_2d(WINO_GT, m, a, 3, x, y);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++)
            for (int l = 0; l < cnt; l++)
                dweight[(j0 + l) * 9 + 3 * r + c] += WINO_AT_RC(y, r, c)[l];
}

/* Inside a parallel region: dweight += G^T (sum of ns dU copies) G. */
static void wino_weight_backward(int m, float *restrict dweight, // (OC,C,3,3)
                                 const float *dU0, const float *dUk,
                                 size_t ks, int ns, // (a*a,OC,C) each
                                 int OC, int C)
{
    const size_t plane = (size_t)OC * C, us = wino_xstride(OC, C);
#pragma omp for schedule(static)
    for (size_t j0 = 0; j0 < plane; j0 += WINO_VL) {
        const int cnt = plane - j0 < WINO_VL ? (int)(plane - j0) : WINO_VL;
        if (m == 2)
            wino_weight_grad_block(2, dweight, dU0, dUk, ks, ns, us, j0, cnt);
        else
            wino_weight_grad_block(4, dweight, dU0, dUk, ks, ns, us, j0, cnt);
    }
}

/* The transforms below work on one channel of the n images of a chunk and
 * vectorise across images: column p of a transformed matrix is tile t of
 * image i at p = t*n + i, so each tile's a*a values for a block of images
 * are a*a contiguous runs. A block of nb planes is first copied into
 * buf[pos][j] (pos a position of the zero-bordered (m th + 2, m tw + 2)
 * plane, j the image in the block, row stride nbm), after which every tile
 * is vector arithmetic over WINO_VL images at a time. */
#define WINO_BUF_FLOATS 16384

/* Images per block whose buffer of npos positions fits WINO_BUF_FLOATS,
 * a multiple of WINO_VL where possible (partial lane groups run scalar). */
static int wino_block_images(int n, int npos)
{
    int nb = WINO_BUF_FLOATS / npos;
    if (nb >= WINO_VL)
        nb -= nb % WINO_VL;
    return nb < n ? nb : n;
}

/* V = B^T d B per tile into V[xi * vs + t * n + i]. */
WINO_INLINE void wino_input_channel(int m, float *restrict V, size_t vs,
                                    const float *restrict x, // (n,[C],H,W)
                                    size_t xstride, int n, int H, int W)
{
    const int a = m + 2, th = (H + m - 1) / m, tw = (W + m - 1) / m;
    const int pw = m * tw + 2, npos = (m * th + 2) * pw;
    const int nbm = wino_block_images(n, npos);
    const size_t cs = nbm, rs = pw * cs;
    float buf[WINO_BUF_FLOATS], p[WINO_TILE], y[WINO_TILE];
    memset(buf, 0, sizeof(float) * npos * nbm);
    for (int i0 = 0; i0 < n; i0 += nbm) {
        const int nb = n - i0 < nbm ? n - i0 : nbm;
        const float *restrict xp = x + i0 * xstride;
        for (int r = 0; r < H; r++)
            for (int q = 0; q < W; q++) {
                float *restrict b = buf + ((r + 1) * pw + q + 1) * cs;
                for (int j = 0; j < nb; j++)
                    b[j] = xp[j * xstride + r * W + q];
            }
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++)
                for (int j0 = 0; j0 < nb; j0 += WINO_VL) {
                    const int cnt = nb - j0 < WINO_VL ? nb - j0 : WINO_VL;
                    const float *d = buf + (m * ty * pw + m * tx) * cs + j0;
                    float *v = V + (size_t)(ty * tw + tx) * n + i0 + j0;
                    for (int r = 0; r < a; r++)
                        for (int c = 0; c < a; c++)
                            wino_lanes_load(WINO_AT_RC(p, r, c),
                                            d + r * rs + c * cs, cnt);
                    wino_2d(WINO_BT, m, a, a, p, y);
                    for (int r = 0; r < a; r++)
                        for (int c = 0; c < a; c++)
                            wino_lanes_store(v + (r * a + c) * vs,
                                             WINO_AT_RC(y, r, c), cnt, false);
                }
    }
}

/* The adjoint of wino_input_channel: dx += B dV B^T of every tile, the
 * overlapping patches summed in buf, the padding dropped. */
WINO_INLINE void wino_grad_input_channel(int m,
                                         float *restrict dx, // (n,[C],H,W)
                                         size_t xstride,
                                         const float *restrict dV, size_t vs,
                                         int n, int H, int W)
{
    const int a = m + 2, th = (H + m - 1) / m, tw = (W + m - 1) / m;
    const int pw = m * tw + 2, npos = (m * th + 2) * pw;
    const int nbm = wino_block_images(n, npos);
    const size_t cs = nbm, rs = pw * cs;
    float buf[WINO_BUF_FLOATS], p[WINO_TILE], y[WINO_TILE];
    for (int i0 = 0; i0 < n; i0 += nbm) {
        const int nb = n - i0 < nbm ? n - i0 : nbm;
        memset(buf, 0, sizeof(float) * npos * nbm);
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++)
                for (int j0 = 0; j0 < nb; j0 += WINO_VL) {
                    const int cnt = nb - j0 < WINO_VL ? nb - j0 : WINO_VL;
                    float *d = buf + (m * ty * pw + m * tx) * cs + j0;
                    const float *v = dV + (size_t)(ty * tw + tx) * n + i0 + j0;
                    for (int r = 0; r < a; r++)
                        for (int c = 0; c < a; c++)
                            wino_lanes_load(WINO_AT_RC(p, r, c),
                                            v + (r * a + c) * vs, cnt);
                    wino_2d(WINO_B, m, a, a, p, y);
                    for (int r = 0; r < a; r++)
                        for (int c = 0; c < a; c++)
                            wino_lanes_store(d + r * rs + c * cs,
                                             WINO_AT_RC(y, r, c), cnt, true);
                }
        /* Image by image: contiguous writes, strided reads from buf. */
        for (int j = 0; j < nb; j++) {
            float *restrict dp = dx + (i0 + j) * xstride;
            for (int r = 0; r < H; r++)
                for (int q = 0; q < W; q++)
                    dp[r * W + q] += buf[((r + 1) * pw + q + 1) * cs + j];
        }
    }
}

/* Y = A^T M A per tile, written (=) with the bias added; the part of a
 * partial tile outside the plane is dropped. buf holds the (m th, m tw)
 * output planes of a block. */
WINO_INLINE void wino_output_channel(int m, float *restrict y, // (n,[OC],H,W)
                                     size_t ystride, const float *restrict M,
                                     size_t ms, float bias, int n, int H,
                                     int W)
{
    const int a = m + 2, th = (H + m - 1) / m, tw = (W + m - 1) / m;
    const int ow = m * tw, nbm = wino_block_images(n, m * th * ow);
    const size_t cs = nbm, rs = ow * cs;
    float buf[WINO_BUF_FLOATS], p[WINO_TILE], q[WINO_TILE];
    for (int i0 = 0; i0 < n; i0 += nbm) {
        const int nb = n - i0 < nbm ? n - i0 : nbm;
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++)
                for (int j0 = 0; j0 < nb; j0 += WINO_VL) {
                    const int cnt = nb - j0 < WINO_VL ? nb - j0 : WINO_VL;
                    const float *v = M + (size_t)(ty * tw + tx) * n + i0 + j0;
                    float *o = buf + (m * ty * ow + m * tx) * cs + j0;
                    for (int r = 0; r < a; r++)
                        for (int c = 0; c < a; c++)
                            wino_lanes_load(WINO_AT_RC(p, r, c),
                                            v + (r * a + c) * ms, cnt);
                    wino_2d(WINO_AT, m, a, m, p, q);
                    for (int r = 0; r < m; r++)
                        for (int c = 0; c < m; c++) {
                            float *qq = WINO_AT_RC(q, r, c);
                            for (int l = 0; l < WINO_VL; l++)
                                qq[l] += bias;
                            wino_lanes_store(o + r * rs + c * cs, qq, cnt,
                                             false);
                        }
                }
        /* Image by image: contiguous writes, strided reads from buf. */
        for (int j = 0; j < nb; j++) {
            float *restrict yp = y + (i0 + j) * ystride;
            for (int r = 0; r < H; r++)
                for (int c = 0; c < W; c++)
                    yp[r * W + c] = buf[(r * ow + c) * cs + j];
        }
    }
}

/* dYh = A dY A^T per tile (the adjoint of wino_output_channel), dY zero
 * beyond the plane's edge. */
WINO_INLINE void wino_grad_output_channel(int m, float *restrict Dh,
                                          size_t ds,
                                          const float *restrict dy, // (n,[OC],...)
                                          size_t ystride, int n, int H, int W)
{
    const int a = m + 2, th = (H + m - 1) / m, tw = (W + m - 1) / m;
    const int ow = m * tw, nbm = wino_block_images(n, m * th * ow);
    const size_t cs = nbm, rs = ow * cs;
    float buf[WINO_BUF_FLOATS], p[WINO_TILE], q[WINO_TILE];
    memset(buf, 0, sizeof(float) * m * th * ow * nbm);
    for (int i0 = 0; i0 < n; i0 += nbm) {
        const int nb = n - i0 < nbm ? n - i0 : nbm;
        const float *restrict g = dy + i0 * ystride;
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) {
                float *restrict b = buf + (r * ow + c) * cs;
                for (int j = 0; j < nb; j++)
                    b[j] = g[j * ystride + r * W + c];
            }
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++)
                for (int j0 = 0; j0 < nb; j0 += WINO_VL) {
                    const int cnt = nb - j0 < WINO_VL ? nb - j0 : WINO_VL;
                    const float *o = buf + (m * ty * ow + m * tx) * cs + j0;
                    float *d = Dh + (size_t)(ty * tw + tx) * n + i0 + j0;
                    for (int r = 0; r < m; r++)
                        for (int c = 0; c < m; c++)
                            wino_lanes_load(WINO_AT_RC(p, r, c),
                                            o + r * rs + c * cs, cnt);
                    wino_2d(WINO_A, m, m, a, p, q);
                    for (int r = 0; r < a; r++)
                        for (int c = 0; c < a; c++)
                            wino_lanes_store(d + (r * a + c) * ds,
                                             WINO_AT_RC(q, r, c), cnt, false);
                }
    }
}

/* V (a*a, C, n*T) of a chunk of n images, by the calling thread. */
static void wino_chunk_input(int m, float *restrict V, size_t vs,
                             const float *restrict inp, // (n,C,H,W)
                             int n, int C, int H, int W, size_t P)
{
    const size_t chw = (size_t)C * H * W, hw = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        if (m == 2)
            wino_input_channel(2, V + c * P, vs, inp + c * hw, chw, n, H, W);
        else
            wino_input_channel(4, V + c * P, vs, inp + c * hw, chw, n, H, W);
    }
}

/* How a layer's batch is cut: one slice per thread (up to ns threads),
 * run in chunks of up to ct images, each thread with buffers of
 * nxi * (vs + ms) floats from the data area of the scratch. */
struct wino_plan {
    int m, nxi, ns, ct;
    size_t T, hw, us, slice_floats;
    float *U, *dU, *data, *dUk; /* dUk: the dU copies of threads 1.. */
};

static struct wino_plan wino_plan_make(float *scratch, int B, int C, int H,
                                       int W, int OC, int m)
{
    CHECK(scratch != NULL && nn_winograd_supports(H, W, 3, 1, 1));
    CHECK(m == 2 || m == 4);
    struct wino_plan p = {.m = m, .nxi = (m + 2) * (m + 2)};
    p.T = wino_work(m, H, W) / p.nxi;
    p.hw = (size_t)H * W;
    p.us = wino_xstride(OC, C);
    const int chunk = wino_chunk_images(B, C, OC, m, H, W);
    p.ns = nn_slices(B);
    p.ct = chunk / p.ns;
    if (p.ct >= WINO_VL)
        p.ct -= p.ct % WINO_VL;
    if (p.ct < 1)
        p.ct = 1;
    p.slice_floats = p.nxi * (wino_xstride(C, p.ct * p.T) +
                              wino_xstride(OC, p.ct * p.T));
    p.U = scratch;
    p.dU = p.U + p.nxi * p.us;
    p.data = p.dU + p.nxi * p.us;
    const size_t images = (size_t)nn_slice_data_images(B, chunk);
    p.dUk = p.data + p.nxi * ((C + OC) * images * p.T +
                              2 * NN_MAX_SLICES * WINO_SKEW);
    return p;
}

void nn_winograd_forward(float *out, const float *inp, const float *weight,
                         const float *bias, float *scratch, int B, int C,
                         int H, int W, int OC, int m)
{
    const struct wino_plan p = wino_plan_make(scratch, B, C, H, W, OC, m);
    const int nxi = p.nxi;
    const size_t hw = p.hw, us = p.us;
    wino_weight_transform(m, p.U, weight, OC, C);
#pragma omp parallel num_threads(p.ns)
    {
        float *V = p.data + omp_get_thread_num() * p.slice_floats;
        float *M = V + nxi * wino_xstride(C, p.ct * p.T); // (a*a,OC,n*T)
        int lo, hi;
        nn_my_slice(B, &lo, &hi);
        for (int b0 = lo; b0 < hi; b0 += p.ct) {
            const int n = hi - b0 < p.ct ? hi - b0 : p.ct;
            const size_t P = (size_t)n * p.T;
            const size_t vs = wino_xstride(C, P), ms = wino_xstride(OC, P);
            wino_chunk_input(m, V, vs, inp + (size_t)b0 * C * hw, n, C, H, W,
                             P);
            for (int xi = 0; xi < nxi; xi++)
                nn_sgemm(CblasNoTrans, CblasNoTrans, OC,
                         (int)P, C, 1.0f, p.U + xi * us, C, V + xi * vs,
                         (int)P, 0.0f, M + xi * ms, (int)P);
            float *o = out + (size_t)b0 * OC * hw;
            for (int oc = 0; oc < OC; oc++) {
                const float bv = bias ? bias[oc] : 0.0f;
                if (m == 2)
                    wino_output_channel(2, o + oc * hw, OC * hw, M + oc * P,
                                        ms, bv, n, H, W);
                else
                    wino_output_channel(4, o + oc * hw, OC * hw, M + oc * P,
                                        ms, bv, n, H, W);
            }
        }
    }
}

/* Backward of images [b0, b0 + n) by the calling thread, with its buffers
 * V and Dh: dU = (add when accumulate) their dU, dinp += their input
 * gradient. */
static void wino_backward_chunk(const struct wino_plan *p, float *dU,
                                float *V, float *Dh, bool accumulate,
                                float *dinp, const float *dout,
                                const float *inp, int b0, int n, int C,
                                int H, int W, int OC)
{
    const int m = p->m, nxi = p->nxi;
    const size_t hw = p->hw, us = p->us;
    const size_t P = (size_t)n * p->T;
    const size_t vs = wino_xstride(C, P), ds = wino_xstride(OC, P);
    wino_chunk_input(m, V, vs, inp + (size_t)b0 * C * hw, n, C, H, W, P);
    const float *g = dout + (size_t)b0 * OC * hw;
    for (int oc = 0; oc < OC; oc++) {
        if (m == 2)
            wino_grad_output_channel(2, Dh + oc * P, ds, g + oc * hw, OC * hw,
                                     n, H, W);
        else
            wino_grad_output_channel(4, Dh + oc * P, ds, g + oc * hw, OC * hw,
                                     n, H, W);
    }
    /* dV_xi overwrites V_xi once the dU_xi GEMM has read it. */
    for (int xi = 0; xi < nxi; xi++) {
        nn_sgemm(CblasNoTrans, CblasTrans, OC, C, (int)P,
                 1.0f, Dh + xi * ds, (int)P, V + xi * vs, (int)P,
                 accumulate ? 1.0f : 0.0f, dU + xi * us, C);
        if (dinp)
            nn_sgemm(CblasTrans, CblasNoTrans, C, (int)P,
                     OC, 1.0f, p->U + xi * us, C, Dh + xi * ds, (int)P,
                     0.0f, V + xi * vs, (int)P);
    }
    if (!dinp)
        return;
    float *dx = dinp + (size_t)b0 * C * hw;
    for (int c = 0; c < C; c++) {
        if (m == 2)
            wino_grad_input_channel(2, dx + c * hw, C * hw, V + c * P, vs, n,
                                    H, W);
        else
            wino_grad_input_channel(4, dx + c * hw, C * hw, V + c * P, vs, n,
                                    H, W);
    }
}

void nn_winograd_backward(float *dinp, float *dweight, const float *dout,
                          const float *inp, const float *weight,
                          float *scratch, int B, int C, int H, int W, int OC,
                          int m)
{
    const struct wino_plan p = wino_plan_make(scratch, B, C, H, W, OC, m);
    const size_t dus = (size_t)p.nxi * p.us;
    if (dinp)
        wino_weight_transform(m, p.U, weight, OC, C);
#pragma omp parallel num_threads(p.ns)
    {
        const int k = omp_get_thread_num();
        float *dU = k ? p.dUk + (k - 1) * dus : p.dU;        // (a*a,OC,C)
        float *V = p.data + k * p.slice_floats;              // (a*a,C,n*T)
        float *Dh = V + p.nxi * wino_xstride(C, p.ct * p.T); // (a*a,OC,n*T)
        int lo, hi;
        nn_my_slice(B, &lo, &hi);
        for (int b0 = lo; b0 < hi; b0 += p.ct) {
            const int n = hi - b0 < p.ct ? hi - b0 : p.ct;
            wino_backward_chunk(&p, dU, V, Dh, b0 > lo, dinp, dout, inp, b0,
                                n, C, H, W, OC);
        }
        if (hi == lo)
            memset(dU, 0, dus * sizeof(float));
#pragma omp barrier
        wino_weight_backward(m, dweight, p.dU, p.dUk, dus,
                             omp_get_num_threads(), OC, C);
    }
}
