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
 *
 * The products U V (forward) and U^T dYh (input gradient) are fused with
 * the transforms around them: nn_tilegemm.h's register-blocked kernel
 * writes a block of TG_ROWS channels x TG_COLS columns for all a*a
 * matrices into a buffer that stays in the cache, and the output (or
 * input-gradient) transform reads it from there, so M and dV never go to
 * memory and nothing is packed per call; the forward pass also cuts the
 * plane into bands of tile rows so that V stays in L2. The weight
 * gradient dU = dYh V^T, whose sum runs over all the columns, stays one
 * BLAS sgemm per matrix and chunk.
 */
#include "nn_winograd.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "nn_gemm.h"
#include "nn_slice.h"
#include "nn_tilegemm.h"
#include "nn_wino_tile.h"
#include "util.h"

/* Room the scratch keeps, whatever the build, for the packed weight
 * panels (the forward pass's output channels, or the input gradient's
 * input channels, rounded up to a block of TG_ROWS) and the column
 * padding (each channel's row of a transformed chunk rounded up to a
 * block of TG_COLS): the scratch is sized by the baseline build and used
 * by either. */
#define WINO_ROW_PAD 16
#define WINO_COL_PAD 32
_Static_assert(TG_ROWS <= WINO_ROW_PAD && TG_COLS <= WINO_COL_PAD &&
                   WINO_COL_PAD % TG_COLS == 0 && TG_COLS % WINO_VL == 0,
               "nn_tilegemm.h's blocks must fit the scratch's padding");

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
 * contiguous slice of the batch, in chunks with its own V and, in
 * backward, its own Dh and dU (the dU copies summed once at the end). So
 * the GEMMs are single-threaded (OpenBLAS runs one thread inside a parallel region) and
 * a layer is one parallel region instead of ~3 per chunk plus a*a GEMM
 * regions. Each extra slice costs a dU copy: 9.4 MB for 256 x 256
 * channels. */

static size_t wino_xstride(size_t rows, size_t cols)
{
    return rows * cols + WINO_SKEW;
}

/* Images per chunk: V (a*a C) and Dh (a*a OC) values per tile under
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
    /* dU, then V (its rows padded) and Dh for one chunk split into up
     * to NN_MAX_SLICES slices, then the other slices' dU copies, then
     * the packed panels. */
    return nxi * (NN_MAX_SLICES * wino_xstride(OC, C) +
                  (C + OC) * n * nt +
                  NN_MAX_SLICES *
                      (2 * WINO_SKEW + (size_t)(C + OC) * WINO_COL_PAD) +
                  (size_t)(OC + WINO_ROW_PAD) * (C + WINO_ROW_PAD));
}

/* The panels nn_tilegemm.h broadcasts, of U_xi = (G g G^T)[k][l] (xi =
 * k*a + l) for the forward pass (outputs o = oc, sums over s = c) or of
 * U^T for the input gradient (transpose: o = c, s = oc): per matrix and
 * block of TG_ROWS outputs, the rows of the sum, TG_ROWS values each,
 *   Up[((xi * nob + o / TG_ROWS) * nsum + s) * TG_ROWS + o % TG_ROWS],
 * zero past the last output. Written straight from the weights, WINO_VL
 * consecutive input channels c (contiguous weights) at a time. */
struct wino_panels {
    float *Up;
    int nob, nsum, C;
    bool transpose;
};

static inline size_t wino_panel_at(const struct wino_panels *pp, int xi,
                                   int oc, int c)
{
    const int o = pp->transpose ? c : oc, s = pp->transpose ? oc : c;
    return (((size_t)xi * pp->nob + o / TG_ROWS) * pp->nsum + s) * TG_ROWS +
           o % TG_ROWS;
}

WINO_INLINE void wino_panel_block(int m, const struct wino_panels *pp,
                                  const float *restrict weight, int oc,
                                  int c0)
{
    const int a = m + 2, C = pp->C;
    const int cnt = C - c0 < WINO_VL ? C - c0 : WINO_VL;
    const float *w = weight + ((size_t)oc * C + c0) * 9;
    float x[WINO_TILE], y[WINO_TILE];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++)
            for (int l = 0; l < WINO_VL; l++)
                WINO_AT_RC(x, r, c)[l] = l < cnt ? w[l * 9 + 3 * r + c] : 0.0f;
    wino_2d(WINO_G, m, 3, a, x, y);
    for (int xi = 0; xi < a * a; xi++)
        for (int l = 0; l < cnt; l++)
            pp->Up[wino_panel_at(pp, xi, oc, c0 + l)] =
                WINO_AT_RC(y, xi / a, xi % a)[l];
}

static void wino_weight_panels(int m, float *restrict Up,
                               const float *restrict weight, // (OC,C,3,3)
                               int OC, int C, bool transpose)
{
    const int nout = transpose ? C : OC, nsum = transpose ? OC : C;
    const struct wino_panels pp = {.Up = Up, .nob = tg_row_blocks(nout),
                                   .nsum = nsum, .C = C,
                                   .transpose = transpose};
    const int nxi = (m + 2) * (m + 2), ng = (C + WINO_VL - 1) / WINO_VL;
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (int j = 0; j < OC * ng; j++) {
            if (m == 2)
                wino_panel_block(2, &pp, weight, j / ng, j % ng * WINO_VL);
            else
                wino_panel_block(4, &pp, weight, j / ng, j % ng * WINO_VL);
        }
        /* The last block's outputs past nout weigh zero. */
#pragma omp for schedule(static)
        for (int xi = 0; xi < nxi; xi++)
            for (int s = 0; s < nsum; s++)
                for (int o = nout; o < pp.nob * TG_ROWS; o++)
                    Up[wino_panel_at(&pp, xi, transpose ? s : o,
                                     transpose ? o : s)] = 0.0f;
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
 * are a*a contiguous runs. A block of nb planes (or, in the forward
 * pass, of a band of their tile rows) is first copied into buf[pos][j]
 * (pos a position of the zero-bordered plane or band, m * rows + 2 by
 * m tw + 2, j the image in the block, row stride nbm), after which every
 * tile is vector arithmetic over WINO_VL images at a time. */
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

/* V = B^T d B per tile of the tile rows [ty0, ty1) (a band of the plane)
 * into V[xi * vs + t * n + i], t counted from the band's first tile. */
WINO_INLINE void wino_input_channel(int m, float *restrict V, size_t vs,
                                    const float *restrict x, // (n,[C],H,W)
                                    size_t xstride, int n, int H, int W,
                                    int ty0, int ty1)
{
    const int a = m + 2, tw = (W + m - 1) / m, top = m * ty0 - 1;
    const int pw = m * tw + 2, npos = (m * (ty1 - ty0) + 2) * pw;
    const int nbm = wino_block_images(n, npos);
    /* The band's patches read input rows [r0, r1); buf row k holds input
     * row top + k, and what lies outside the plane stays zero. */
    const int r0 = top > 0 ? top : 0;
    const int r1 = m * ty1 + 1 < H ? m * ty1 + 1 : H;
    const size_t cs = nbm, rs = pw * cs;
    float buf[WINO_BUF_FLOATS], p[WINO_TILE], y[WINO_TILE];
    memset(buf, 0, sizeof(float) * npos * nbm);
    for (int i0 = 0; i0 < n; i0 += nbm) {
        const int nb = n - i0 < nbm ? n - i0 : nbm;
        const float *restrict xp = x + i0 * xstride;
        for (int r = r0; r < r1; r++)
            wino_rows_to_lanes(buf + ((r - top) * pw + 1) * cs, cs,
                               xp + r * W, xstride, nb, W);
        for (int ty = 0; ty < ty1 - ty0; ty++)
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

/* dYh = A dY A^T per tile (the adjoint of the forward pass's output
 * transform), dY zero beyond the plane's edge. */
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
            wino_rows_to_lanes(buf + r * ow * cs, cs, g + r * W, ystride, nb,
                               W);
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

/* V (a*a, C, n*T) of a chunk of n images, tile rows [ty0, ty1) (T tiles
 * per image in that band), by the calling thread. */
static void wino_chunk_input(int m, float *restrict V, size_t vs,
                             const float *restrict inp, // (n,C,H,W)
                             int n, int C, int H, int W, size_t ld, int ty0,
                             int ty1)
{
    const size_t chw = (size_t)C * H * W, hw = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        if (m == 2)
            wino_input_channel(2, V + c * ld, vs, inp + c * hw, chw, n, H, W,
                               ty0, ty1);
        else
            wino_input_channel(4, V + c * ld, vs, inp + c * hw, chw, n, H, W,
                               ty0, ty1);
    }
}

/* How a layer's batch is cut: one slice per thread (up to ns threads),
 * run in chunks of up to ct images, each thread with slice_floats floats
 * (its V and Dh) from the data area of the scratch. */
struct wino_plan {
    int m, nxi, ns, ct;
    size_t T, hw, us, slice_floats;
    float *dU, *data, *dUk; /* dUk: the dU copies of threads 1.. */
    float *Up; /* U's packed panels (forward) or U^T's (backward) */
};

/* A chunk's row length (floats between channels of one a*a matrix):
 * its P columns rounded up to whole tile-product blocks. */
static size_t wino_row_floats(size_t P)
{
    return (P + TG_COLS - 1) / TG_COLS * TG_COLS;
}

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
    p.slice_floats =
        p.nxi * (wino_xstride(C, p.ct * p.T + WINO_COL_PAD) +
                 wino_xstride(OC, p.ct * p.T + WINO_COL_PAD));
    p.dU = scratch;
    p.data = p.dU + p.nxi * p.us;
    const size_t images = (size_t)nn_slice_data_images(B, chunk);
    p.dUk = p.data + p.nxi * ((C + OC) * images * p.T +
                              NN_MAX_SLICES * (2 * WINO_SKEW +
                                               (size_t)(C + OC) *
                                                   WINO_COL_PAD));
    p.Up = p.dUk + (size_t)(NN_MAX_SLICES - 1) * p.nxi * p.us;
    return p;
}

/* The a*a tile products of one block of TG_ROWS outputs (panel block ob of
 * nob, sums over nsum rows) and the TG_COLS columns at X + p0 (rows ld
 * apart, matrices xs apart) into mb[xi][r][j]. */
WINO_INLINE void wino_block_products(int nxi, float *restrict mb,
                                     const float *restrict Up, int nob,
                                     int ob, int nsum, const float *X,
                                     size_t xs, size_t ld, size_t p0)
{
    const double t0 = nn_gemm_clock();
    for (int xi = 0; xi < nxi; xi++)
        tg_product(mb + xi * TG_ROWS * TG_COLS,
                   Up + ((size_t)xi * nob + ob) * nsum * TG_ROWS,
                   X + xi * xs + p0, ld, nsum);
    nn_gemm_account(t0);
}

/* Tile of lanes pt (float[6][6][WINO_VL]) from row r, lanes g.. of the
 * block products mb. */
WINO_INLINE void wino_block_tile(int a, float *restrict pt,
                                 const float *restrict mb, int r, int g)
{
    for (int xi = 0; xi < a * a; xi++)
        wino_lanes_load(WINO_AT_RC(pt, xi / a, xi % a),
                        mb + xi * TG_ROWS * TG_COLS + r * TG_COLS + g,
                        WINO_VL);
}

/* The lanes of columns p0 + g.. that exist among P. */
static inline int wino_block_lanes(size_t P, size_t p0, int g)
{
    return P - p0 - g < WINO_VL ? (int)(P - p0 - g) : WINO_VL;
}

/* The fused products and the transform after them over a chunk's P
 * columns, a block of TG_COLS columns and TG_ROWS output channels at a
 * time: the a*a products of a block stay in mb, in the cache, where the
 * transform reads them, so they never go to memory. Forward (grad
 * false): y (n,nout,H,W) = A^T (U V) A + bias, X = V; input gradient
 * (grad true): y (n,nout,H,W) += B (U^T Dh) B^T over the patches, X = Dh.
 * X's rows are ld apart and its matrices xs; Up holds the matching
 * panels (sums over nsum channels); pbase is the first column's index in
 * the chunk. */
WINO_INLINE void wino_chunk_fused(int m, bool grad, float *restrict y,
                                  const float *restrict X, size_t xs,
                                  size_t ld, const float *restrict Up,
                                  const float *bias, int n, int nsum,
                                  int nout, int H, int W, size_t P,
                                  size_t pbase)
{
    const int a = m + 2, nob = tg_row_blocks(nout);
    const size_t hw = (size_t)H * W;
    float mb[WINO_MAX_A * WINO_MAX_A * TG_ROWS * TG_COLS]
        __attribute__((aligned(64)));
    float pt[WINO_TILE], q[WINO_TILE];
    for (size_t p0 = 0; p0 < P; p0 += TG_COLS)
        for (int ob = 0; ob < nob; ob++) {
            wino_block_products(a * a, mb, Up, nob, ob, nsum, X, xs, ld, p0);
            for (int r = 0; r < TG_ROWS && ob * TG_ROWS + r < nout; r++) {
                const int o = ob * TG_ROWS + r;
                for (int g = 0; g < TG_COLS && p0 + g < P; g += WINO_VL) {
                    const int cnt = wino_block_lanes(P, p0, g);
                    wino_block_tile(a, pt, mb, r, g);
                    if (grad) {
                        wino_2d(WINO_B, m, a, a, pt, q);
                        wino_add_patches(m, y + o * hw, nout * hw, q,
                                         pbase + p0 + g, cnt, n, H, W);
                    } else {
                        wino_2d(WINO_AT, m, a, m, pt, q);
                        wino_store_tiles(m, y + o * hw, nout * hw, q,
                                         bias ? bias[o] : 0.0f,
                                         pbase + p0 + g, cnt, n, H, W);
                    }
                }
            }
        }
}

/* Zeroes columns P..ld of every row (nxi matrices xs apart, rows ld
 * apart): the tile products read them into lanes that are never stored,
 * and nothing uninitialised should be read. */
static void wino_zero_padding(float *X, size_t xs, int nxi, int rows,
                              size_t ld, size_t P)
{
    if (ld > P)
        for (int xi = 0; xi < nxi; xi++)
            for (int r = 0; r < rows; r++)
                memset(X + xi * xs + r * ld + P, 0, (ld - P) * sizeof(float));
}

/* The forward pass works on chunks of up to WINO_FWD_IMAGES images (whole
 * blocks of tile-product columns, so that 1-tile planes fill them) and
 * on bands of whole tile rows whose transformed input, a*a C values per
 * tile and image, stays under WINO_BAND_FLOATS (in L2): the band's
 * transform, products and output transform then run in the cache. Both
 * measured on the bench ResNet's layers (tools/bench_nn_conv): 16 images
 * or a 2x larger or smaller band cost 6-25% more. */
#define WINO_FWD_IMAGES 32
#define WINO_BAND_FLOATS ((size_t)1 << 17)

/* Forward of images [b0, b0 + n), tile rows [ty0, ty1), by the calling
 * thread with its buffer V. */
static void wino_forward_band(const struct wino_plan *p, float *V,
                              float *out, const float *inp,
                              const float *bias, int b0, int n, int ty0,
                              int ty1, int C, int H, int W, int OC)
{
    const int m = p->m, tw = (W + m - 1) / m;
    const size_t P = (size_t)n * tw * (ty1 - ty0), ld = wino_row_floats(P);
    const size_t vs = wino_xstride(C, ld), pbase = (size_t)ty0 * tw * n;
    wino_chunk_input(m, V, vs, inp + (size_t)b0 * C * p->hw, n, C, H, W, ld,
                     ty0, ty1);
    wino_zero_padding(V, vs, p->nxi, C, ld, P);
    float *o = out + (size_t)b0 * OC * p->hw;
    if (m == 2)
        wino_chunk_fused(2, false, o, V, vs, ld, p->Up, bias, n, C, OC, H, W,
                         P, pbase);
    else
        wino_chunk_fused(4, false, o, V, vs, ld, p->Up, bias, n, C, OC, H, W,
                         P, pbase);
}

void nn_winograd_forward(float *out, const float *inp, const float *weight,
                         const float *bias, float *scratch, int B, int C,
                         int H, int W, int OC, int m)
{
    const struct wino_plan p = wino_plan_make(scratch, B, C, H, W, OC, m);
    wino_weight_panels(m, p.Up, weight, OC, C, false);
    const int th = (H + m - 1) / m, tw = (W + m - 1) / m;
    const int nf = p.ct < WINO_FWD_IMAGES ? p.ct : WINO_FWD_IMAGES;
#pragma omp parallel num_threads(p.ns)
    {
        float *V = p.data + omp_get_thread_num() * p.slice_floats;
        int lo, hi;
        nn_my_slice(B, &lo, &hi);
        for (int b0 = lo; b0 < hi; b0 += nf) {
            const int n = hi - b0 < nf ? hi - b0 : nf;
            size_t rows = WINO_BAND_FLOATS / ((size_t)p.nxi * C * n * tw);
            const int band = rows < 1 ? 1 : rows > (size_t)th ? th : (int)rows;
            for (int ty0 = 0; ty0 < th; ty0 += band)
                wino_forward_band(&p, V, out, inp, bias, b0, n, ty0,
                                  th - ty0 < band ? th : ty0 + band, C, H, W,
                                  OC);
        }
    }
}

/* Backward of images [b0, b0 + n) by the calling thread, with its buffers
 * V and Dh: dU = (add when accumulate) their dU, dinp += their input
 * gradient (U^T's panels in p->Up). */
static void wino_backward_chunk(const struct wino_plan *p, float *dU,
                                float *V, float *Dh, bool accumulate,
                                float *dinp, const float *dout,
                                const float *inp, int b0, int n, int C,
                                int H, int W, int OC)
{
    const int m = p->m, nxi = p->nxi;
    const size_t hw = p->hw, us = p->us;
    const size_t P = (size_t)n * p->T, ld = wino_row_floats(P);
    const size_t vs = wino_xstride(C, ld), ds = wino_xstride(OC, ld);
    wino_chunk_input(m, V, vs, inp + (size_t)b0 * C * hw, n, C, H, W, ld, 0,
                     (H + m - 1) / m);
    const float *g = dout + (size_t)b0 * OC * hw;
    for (int oc = 0; oc < OC; oc++) {
        if (m == 2)
            wino_grad_output_channel(2, Dh + oc * ld, ds, g + oc * hw,
                                     OC * hw, n, H, W);
        else
            wino_grad_output_channel(4, Dh + oc * ld, ds, g + oc * hw,
                                     OC * hw, n, H, W);
    }
    for (int xi = 0; xi < nxi; xi++)
        nn_sgemm(CblasNoTrans, CblasTrans, OC, C, (int)P, 1.0f,
                 Dh + xi * ds, (int)ld, V + xi * vs, (int)ld,
                 accumulate ? 1.0f : 0.0f, dU + xi * us, C);
    if (!dinp)
        return;
    wino_zero_padding(Dh, ds, nxi, OC, ld, P);
    float *dx = dinp + (size_t)b0 * C * hw;
    if (m == 2)
        wino_chunk_fused(2, true, dx, Dh, ds, ld, p->Up, NULL, n, OC, C, H,
                         W, P, 0);
    else
        wino_chunk_fused(4, true, dx, Dh, ds, ld, p->Up, NULL, n, OC, C, H,
                         W, P, 0);
}

void nn_winograd_backward(float *dinp, float *dweight, const float *dout,
                          const float *inp, const float *weight,
                          float *scratch, int B, int C, int H, int W, int OC,
                          int m)
{
    const struct wino_plan p = wino_plan_make(scratch, B, C, H, W, OC, m);
    const size_t dus = (size_t)p.nxi * p.us;
    if (dinp)
        wino_weight_panels(m, p.Up, weight, OC, C, true);
#pragma omp parallel num_threads(p.ns)
    {
        const int k = omp_get_thread_num();
        float *dU = k ? p.dUk + (k - 1) * dus : p.dU;        // (a*a,OC,C)
        float *V = p.data + k * p.slice_floats;              // (a*a,C,n*T)
        float *Dh = V + p.nxi * wino_xstride(C, p.ct * p.T + WINO_COL_PAD);
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
