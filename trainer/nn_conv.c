/*
 * nn_conv.c: 2-D convolution forward/backward (see nn.h for the contract).
 * The general path turns a chunk of images into one im2col matrix
 * (C*K*K, n*OH*OW), sized to stay in the cache; same-size stride-1
 * convolutions build it by flat shifted copies. Its products W col
 * (forward) and W^T dout (input gradient) run in nn_tilegemm.h's
 * register-blocked kernel, a block of output rows times columns at a time,
 * the forward one written straight into out and the other into col ahead
 * of col2im: nothing is packed per call. The weight gradient
 * dout col^T, a sum over every column, is one sgemm per chunk. 1x1
 * stride-1 convolutions on large planes skip im2col and multiply the input
 * planes directly. On the im2col path each thread takes a contiguous slice
 * of the batch (fixed by the thread count: reproducible) and runs it in
 * chunks (in backward into its own dweight copy, summed at the end), so a
 * layer is one parallel region; the other paths run cblas outside
 * parallel regions. No allocation: scratch
 * comes from the caller, sized by nn_conv2d_scratch_floats. 3x3 stride-1
 * pad-1 layers take one of two faster paths: Winograd F(4x4,3x3) or
 * F(2x2,3x3) (nn_winograd.c, 4x or 2.25x fewer multiplies) on planes of
 * 4x4 and up with 4+ input channels, and an exact dense GEMM on planes of
 * at most 2x2 (see conv_use_winograd for why not Winograd there).
 */
#include "nn.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "nn_gemm.h"
#include "nn_slice.h"
#include "nn_tilegemm.h"
#include "nn_winograd.h"
#include "util.h"

int nn_conv2d_out_dim(int in, int k, int stride, int pad)
{
    CHECK(stride > 0 && k > 0 && pad >= 0 && in + 2 * pad >= k);
    return (in + 2 * pad - k) / stride + 1;
}

/* Room the scratch keeps, whatever the build, for the rounding of panels
 * to blocks of TG_ROWS and of columns to blocks of TG_COLS: the scratch
 * is sized by the baseline build and used by either. */
#define CONV_ROW_PAD 16
#define CONV_COL_PAD 32
_Static_assert(TG_ROWS <= CONV_ROW_PAD && TG_COLS <= CONV_COL_PAD,
               "nn_tilegemm.h's blocks must fit the scratch's padding");

/* 1x1 stride-1 convolutions multiply each image's (C, H*W) plane directly,
 * without im2col, when the plane is large enough for a GEMM of its own; on
 * small planes (14x14 and below) one chunked GEMM over many images, after
 * a cheap layout copy, beats B small ones. */
#define CONV_POINTWISE_MIN_HW 1024

static bool conv_is_pointwise(int K, int stride, int pad, size_t ohw)
{
    return K == 1 && stride == 1 && pad == 0 && ohw >= CONV_POINTWISE_MIN_HW;
}

/* Images per chunk: as many as keep col + the (OC, n*OH*OW) staging matrix
 * under NN_CONV_CHUNK_FLOATS, at least one. */
static int conv_chunk_images(int B, int CKK, int OC, size_t ohw)
{
    size_t per_image = (size_t)(CKK + OC) * ohw;
    size_t n = NN_CONV_CHUNK_FLOATS / per_image;
    if (n < 1)
        n = 1;
    if (n > (size_t)B)
        n = (size_t)B;
    return (int)n;
}

/* Winograd for 3x3 stride-1 pad-1 unless the input has too few channels
 * or the plane is small. With few channels its GEMMs have a short inner
 * dimension (C) and the transforms dominate, while im2col's is 9 C: on
 * 28x28, B = 256, OC = 32, forward + backward took 8 ms (im2col) vs 19 ms
 * (F(4x4)) at C = 1, 14 vs 21 at C = 4, 23 vs 22 at C = 8 and 41 vs 30 at
 * C = 16. On planes under 4x4, post-ReLU inputs often leave a kernel tap
 * with no non-zero pixel across the batch: its exact gradient is 0, but
 * Winograd's transforms mix the whole tile and leave ~1e-7 of rounding,
 * which AdamW's m / sqrt(v) turns into a full-size step (the 2x2 layer of
 * the "global" fixture in test_lejepa_ref drifted 1% in 5 steps). Planes
 * of at most 2x2 take the exact dense path below instead, which is as
 * cheap; 3x3 planes take im2col. */
#define CONV_WINOGRAD_MIN_C 8
#define CONV_WINOGRAD_MIN_SIDE 4

static bool conv_use_winograd(int C, int H, int W, int K, int stride,
                              int pad)
{
    return C >= CONV_WINOGRAD_MIN_C && H >= CONV_WINOGRAD_MIN_SIDE &&
           W >= CONV_WINOGRAD_MIN_SIDE &&
           nn_winograd_supports(H, W, K, stride, pad);
}

/* 3x3 stride-1 pad-1 on planes of at most 2x2 pixels: every output pixel
 * sees every input pixel, so the layer is a dense one, out[b] (OC*HW) =
 * Wd (OC*HW, C*HW) inp[b] (C*HW) with Wd[(oc,o),(c,i)] = weight[oc][c]
 * [ih - oh + 1][iw - ow + 1]. One GEMM over the batch in NCHW as it is,
 * 4 multiplies per output on 2x2 (im2col: 9, mostly padding) and exact. */
static bool conv_is_dense(int H, int W, int K, int stride, int pad)
{
    return K == 3 && stride == 1 && pad == 1 && H <= 2 && W <= 2;
}

/* Offset in (C,3,3) weight rows of the tap joining input pixel i to output
 * pixel o of a (H,W) plane with H, W <= 2. */
static int conv_dense_tap(int o, int i, int W)
{
    return (i / W - o / W + 1) * 3 + (i % W - o % W + 1);
}

static void conv_dense_weight(float *restrict wd,           // (OC*HW, C*HW)
                              const float *restrict weight, // (OC,C,3,3)
                              int OC, int C, int H, int W)
{
    const int hw = H * W;
#pragma omp parallel for schedule(static)
    for (int oc = 0; oc < OC; oc++)
        for (int o = 0; o < hw; o++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < hw; i++)
                    wd[((size_t)oc * hw + o) * C * hw + c * hw + i] =
                        weight[(size_t)(oc * C + c) * 9 +
                               conv_dense_tap(o, i, W)];
}

/* dweight += the taps of dWd (OC*HW, C*HW). */
static void conv_dense_weight_backward(float *restrict dweight,  // (OC,C,3,3)
                                       const float *restrict dwd,
                                       int OC, int C, int H, int W)
{
    const int hw = H * W;
#pragma omp parallel for schedule(static)
    for (int oc = 0; oc < OC; oc++)
        for (int o = 0; o < hw; o++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < hw; i++)
                    dweight[(size_t)(oc * C + c) * 9 +
                            conv_dense_tap(o, i, W)] +=
                        dwd[((size_t)oc * hw + o) * C * hw + c * hw + i];
}

static size_t conv_dense_scratch_floats(int C, int H, int W, int OC)
{
    return (size_t)OC * C * (H * W) * (H * W);
}

double nn_conv2d_executed_flops(int B, int C, int H, int W, int OC, int K,
                                int stride, int pad)
{
    const double cc = 2.0 * C * OC;
    if (conv_use_winograd(C, H, W, K, stride, pad)) {
        const int m = nn_winograd_tile(H, W);
        const double tiles = (double)B * ((H + m - 1) / m) * ((W + m - 1) / m);
        return cc * (m + 2) * (m + 2) * tiles;
    }
    if (conv_is_dense(H, W, K, stride, pad))
        return cc * B * (H * W) * (H * W);
    return cc * B * nn_conv2d_out_dim(H, K, stride, pad) *
           nn_conv2d_out_dim(W, K, stride, pad) * K * K;
}

size_t nn_conv2d_scratch_floats(int B, int C, int H, int W, int OC, int K,
                                int stride, int pad)
{
    if (conv_use_winograd(C, H, W, K, stride, pad))
        return nn_winograd_scratch_floats(B, C, H, W, OC,
                                          nn_winograd_tile(H, W));
    if (conv_is_dense(H, W, K, stride, pad))
        return conv_dense_scratch_floats(C, H, W, OC);
    size_t ohw = (size_t)nn_conv2d_out_dim(H, K, stride, pad) *
                 nn_conv2d_out_dim(W, K, stride, pad);
    if (conv_is_pointwise(K, stride, pad, ohw))
        return 0;
    int CKK = C * K * K;
    int n = nn_slice_data_images(B, conv_chunk_images(B, CKK, OC, ohw));
    return (size_t)(CKK + OC) * (n * ohw + NN_MAX_SLICES * CONV_COL_PAD) +
           (size_t)(NN_MAX_SLICES - 1) * OC * CKK +
           (size_t)(OC + CONV_ROW_PAD) * (CKK + CONV_ROW_PAD);
}

/* Output columns ow in [*lo, *hi) read input column ow*stride - pad + kj
 * inside [0, W); the others read padding. */
static void conv_valid_cols(int *lo, int *hi, int W, int OW, int kj,
                            int stride, int pad)
{
    int first = pad - kj > 0 ? (pad - kj + stride - 1) / stride : 0;
    int last_in = W - 1 + pad - kj; /* ow*stride <= last_in */
    int end = last_in < 0 ? 0 : last_in / stride + 1;
    if (end > OW)
        end = OW;
    if (first > end)
        first = end;
    *lo = first;
    *hi = end;
}

/* Stride 1 with output size = input size (3x3 pad 1 and the like): a row
 * of col is the whole input plane shifted by (ki - pad) rows and (kj - pad)
 * columns, so it is one flat copy; the columns that wrapped around a row
 * edge are then cleared. This keeps the copies long on 7x7 and 4x4 planes. */
static bool conv_is_same_size(int H, int W, int OH, int OW, int stride)
{
    return stride == 1 && OH == H && OW == W;
}

/* Flat range [*lo, *hi) of output positions j whose shifted source j + shift
 * lies inside the plane of hw values. */
static void conv_flat_range(long *lo, long *hi, long hw, long shift)
{
    long a = shift < 0 ? -shift : 0, b = shift > 0 ? hw - shift : hw;
    if (a > hw)
        a = hw;
    if (b < a)
        b = a;
    *lo = a;
    *hi = b;
}

static void conv_shift_copy(float *restrict dst,     // (H*W)
                            const float *restrict x, // (H,W)
                            int H, int W, int ki, int kj, int pad)
{
    const long hw = (long)H * W, shift = (long)(ki - pad) * W + (kj - pad);
    long lo, hi;
    conv_flat_range(&lo, &hi, hw, shift);
    for (long j = 0; j < lo; j++)
        dst[j] = 0.0f;
    for (long j = lo; j < hi; j++)
        dst[j] = x[j + shift];
    for (long j = hi; j < hw; j++)
        dst[j] = 0.0f;
}

/* Zeroes columns outside [lo, hi) of every row of a (OH,OW) plane. */
static void conv_zero_wrapped_cols(float *restrict d, int OH, int OW, int lo,
                                   int hi)
{
    if (lo == 0 && hi == OW)
        return;
    for (int oh = 0; oh < OH; oh++) {
        for (int ow = 0; ow < lo; ow++)
            d[(size_t)oh * OW + ow] = 0.0f;
        for (int ow = hi; ow < OW; ow++)
            d[(size_t)oh * OW + ow] = 0.0f;
    }
}

/* col (C*K*K, n*OH*OW): row r = (c, ki, kj), column (i, oh, ow). Serial:
 * each thread builds its own slice's col. */
static void conv_im2col(float *restrict col,       // (C*K*K, ld)
                        const float *restrict inp, // (n,C,H,W)
                        size_t ld, int n, int C, int H, int W, int K,
                        int stride, int pad, int OH, int OW)
{
    const int KK = K * K;
    const size_t ohw = (size_t)OH * OW;
    for (int r = 0; r < C * KK; r++) {
        for (size_t j = (size_t)n * ohw; j < ld; j++)
            col[r * ld + j] = 0.0f;
        for (int i = 0; i < n; i++) {
            const int c = r / KK, ki = (r / K) % K, kj = r % K;
            const float *restrict x = inp + ((size_t)i * C + c) * H * W;
            float *restrict dst = col + r * ld + i * ohw;
            int lo, hi;
            conv_valid_cols(&lo, &hi, W, OW, kj, stride, pad);
            if (conv_is_same_size(H, W, OH, OW, stride)) {
                conv_shift_copy(dst, x, H, W, ki, kj, pad);
                conv_zero_wrapped_cols(dst, OH, OW, lo, hi);
                continue;
            }
            for (int oh = 0; oh < OH; oh++) {
                const int ih = oh * stride - pad + ki;
                float *restrict d = dst + (size_t)oh * OW;
                if (ih < 0 || ih >= H) {
                    memset(d, 0, sizeof(float) * OW);
                    continue;
                }
                const float *restrict xr = x + (size_t)ih * W;
                const int shift = kj - pad;
                for (int ow = 0; ow < lo; ow++)
                    d[ow] = 0.0f;
                /* A literal stride 2 (the ResNet downsampling convs) lets
                 * the compiler vectorise the gather; a variable one does
                 * not, and the scalar loop was 20% of those layers. */
                if (stride == 1)
                    for (int ow = lo; ow < hi; ow++)
                        d[ow] = xr[ow + shift];
                else if (stride == 2)
                    for (int ow = lo; ow < hi; ow++)
                        d[ow] = xr[ow * 2 + shift];
                else
                    for (int ow = lo; ow < hi; ow++)
                        d[ow] = xr[ow * stride + shift];
                for (int ow = hi; ow < OW; ow++)
                    d[ow] = 0.0f;
            }
        }
    }
}

/* dinp += col2im(col): the adjoint of conv_im2col, serial like it. Clobbers
 * col (the same-size path clears wrapped columns before one flat add). */
static void conv_col2im(float *restrict dinp, // (n,C,H,W)
                        float *restrict col,  // (C*K*K, ld)
                        size_t ld, int n, int C, int H, int W, int K,
                        int stride, int pad, int OH, int OW)
{
    const int KK = K * K;
    const size_t ohw = (size_t)OH * OW;
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < C; c++) {
            float *restrict dx = dinp + ((size_t)i * C + c) * H * W;
            for (int ki = 0; ki < K; ki++) {
                for (int kj = 0; kj < K; kj++) {
                    const size_t r = (size_t)c * KK + ki * K + kj;
                    float *restrict src = col + r * ld + i * ohw;
                    int lo, hi;
                    conv_valid_cols(&lo, &hi, W, OW, kj, stride, pad);
                    if (conv_is_same_size(H, W, OH, OW, stride)) {
                        conv_zero_wrapped_cols(src, OH, OW, lo, hi);
                        const long hw = (long)H * W;
                        const long fs = (long)(ki - pad) * W + (kj - pad);
                        long flo, fhi;
                        conv_flat_range(&flo, &fhi, hw, fs);
                        for (long j = flo; j < fhi; j++)
                            dx[j + fs] += src[j];
                        continue;
                    }
                    const int shift = kj - pad;
                    for (int oh = 0; oh < OH; oh++) {
                        const int ih = oh * stride - pad + ki;
                        if (ih < 0 || ih >= H)
                            continue;
                        float *restrict dr = dx + (size_t)ih * W;
                        const float *restrict s = src + (size_t)oh * OW;
                        if (stride == 1)
                            for (int ow = lo; ow < hi; ow++)
                                dr[ow + shift] += s[ow];
                        else
                            for (int ow = lo; ow < hi; ow++)
                                dr[ow * stride + shift] += s[ow];
                    }
                }
            }
        }
    }
}

static void conv_add_bias(float *restrict out, // (B,OC,HW)
                          const float *restrict bias, int B, int OC,
                          size_t hw)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < OC; oc++) {
            float *restrict o = out + ((size_t)b * OC + oc) * hw;
            const float v = bias[oc];
            for (size_t j = 0; j < hw; j++)
                o[j] += v;
        }
}

static void conv_bias_backward(float *restrict dbias,      // (OC)
                               const float *restrict dout, // (B,OC,HW)
                               int B, int OC, size_t hw)
{
#pragma omp parallel for schedule(static)
    for (int oc = 0; oc < OC; oc++) {
        double acc = 0.0;
        for (int b = 0; b < B; b++) {
            const float *restrict g = dout + ((size_t)b * OC + oc) * hw;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (size_t j = 0; j < hw; j++)
                s += g[j];
            acc += s;
        }
        dbias[oc] += (float)acc;
    }
}

/* The im2col path's cut of the batch: one slice per thread (up to ns
 * threads) in chunks of up to ct images, each thread with col and stage of
 * slice_floats from the data area, their rows ld floats apart (the chunk's
 * columns rounded up to a block of TG_COLS); then the dweight copies of
 * threads 1.. (dwk) and the packed weight panels (panels). */
struct conv_plan {
    int CKK, ns, ct;
    size_t ld, slice_floats;
    float *data, *dwk, *panels;
};

static struct conv_plan conv_plan_make(float *scratch, int B, int C, int OC,
                                       int K, size_t ohw)
{
    struct conv_plan p = {.CKK = C * K * K};
    const int chunk = conv_chunk_images(B, p.CKK, OC, ohw);
    p.ns = nn_slices(B);
    p.ct = chunk / p.ns;
    if (p.ct < 1)
        p.ct = 1;
    p.ld = (p.ct * ohw + TG_COLS - 1) / TG_COLS * TG_COLS;
    p.slice_floats = (size_t)(p.CKK + OC) * p.ld;
    p.data = scratch;
    p.dwk = scratch + (size_t)(p.CKK + OC) *
                          (nn_slice_data_images(B, chunk) * ohw +
                           NN_MAX_SLICES * CONV_COL_PAD);
    p.panels = p.dwk + (size_t)(NN_MAX_SLICES - 1) * OC * p.CKK;
    return p;
}

/* Block rb of the panels of a (rows, sum) matrix a (row stride lr,
 * column stride lc) in nn_tilegemm.h's layout: sum runs of TG_ROWS
 * values, rows past the last zero. The forward pass packs W (OC, CKK),
 * the input gradient W^T (CKK, OC), each thread a share of the blocks. */
static void conv_panel_block(float *restrict panels, const float *restrict a,
                             int rb, int rows, int sum, size_t lr, size_t lc)
{
    float *restrict d = panels + (size_t)rb * sum * TG_ROWS;
    for (int s = 0; s < sum; s++)
        for (int r = 0; r < TG_ROWS; r++) {
            const int row = rb * TG_ROWS + r;
            d[s * TG_ROWS + r] = row < rows ? a[row * lr + s * lc] : 0.0f;
        }
}

/* out (.., OC, ohw) of the chunk's columns [q, q + n) (column q is image
 * b0 + q / ohw, pixel q % ohw), channel o: m + bias. */
static void conv_put_row(float *restrict out, const float *restrict m,
                         size_t q, int n, int b0, int OC, int o, size_t ohw,
                         float bias)
{
    while (n > 0) {
        const size_t i = q / ohw, pix = q % ohw;
        const int len = ohw - pix < (size_t)n ? (int)(ohw - pix) : n;
        float *restrict d = out + ((b0 + i) * OC + o) * ohw + pix;
        for (int j = 0; j < len; j++)
            d[j] = m[j] + bias;
        m += len;
        q += len;
        n -= len;
    }
}

/* The forward pass of a chunk of n images from b0: im2col, then each
 * block of TG_ROWS channels times TG_COLS columns in registers
 * (nn_tilegemm.h), straight into out. */
static void conv_forward_chunk(float *out, const float *inp,
                               const float *bias, const struct conv_plan *p,
                               float *restrict col, int b0, int n, int C,
                               int H, int W, int OC, int K, int stride,
                               int pad, int OH, int OW)
{
    const size_t ohw = (size_t)OH * OW, ncols = (size_t)n * ohw;
    float mb[TG_ROWS * TG_COLS];
    conv_im2col(col, inp + b0 * (size_t)C * H * W, p->ld, n, C, H, W, K,
                stride, pad, OH, OW);
    for (int ob = 0; ob < tg_row_blocks(OC); ob++)
        for (size_t q = 0; q < ncols; q += TG_COLS) {
            const double t0 = nn_gemm_clock();
            tg_product(mb, p->panels + (size_t)ob * p->CKK * TG_ROWS,
                       col + q, p->ld, p->CKK);
            nn_gemm_account(t0);
            const int nc = ncols - q < TG_COLS ? (int)(ncols - q) : TG_COLS;
            for (int r = 0; r < TG_ROWS && ob * TG_ROWS + r < OC; r++) {
                const int o = ob * TG_ROWS + r;
                conv_put_row(out, mb + r * TG_COLS, q, nc, b0, OC, o, ohw,
                             bias ? bias[o] : 0.0f);
            }
        }
}

/* Backward of images [b0, b0 + n) by the calling thread: dw += their
 * weight gradient, dinp += their input gradient. */
static void conv_backward_chunk(float *dinp, float *dw, const float *dout,
                                const float *inp, const struct conv_plan *p,
                                float *restrict col, float *restrict stage,
                                int b0, int n, int C, int H, int W, int OC,
                                int K, int stride, int pad, int OH, int OW)
{
    const int CKK = p->CKK;
    const size_t ohw = (size_t)OH * OW, chw = (size_t)C * H * W;
    const size_t ncols = (size_t)n * ohw, ld = p->ld;
    /* (n, OC, OH*OW) -> (OC, n*OH*OW) so dW is one GEMM over the chunk. */
    for (int oc = 0; oc < OC; oc++) {
        float *restrict s = stage + oc * ld;
        for (int i = 0; i < n; i++) {
            const float *restrict g = dout + ((size_t)(b0 + i) * OC + oc) * ohw;
            for (size_t j = 0; j < ohw; j++)
                s[i * ohw + j] = g[j];
        }
        for (size_t j = ncols; j < ld; j++)
            s[j] = 0.0f;
    }
    conv_im2col(col, inp + b0 * chw, ld, n, C, H, W, K, stride, pad, OH, OW);
    nn_sgemm(CblasNoTrans, CblasTrans, OC, CKK, (int)ncols,
             1.0f, stage, (int)ld, col, (int)ld, 1.0f, dw, CKK);
    if (!dinp)
        return;
    /* dcol = W^T dout, a block of TG_ROWS rows times TG_COLS columns at a
     * time (nn_tilegemm.h), overwrites col, then scatters into dinp. */
    float mb[TG_ROWS * TG_COLS];
    for (int rb = 0; rb < tg_row_blocks(CKK); rb++)
        for (size_t q = 0; q < ncols; q += TG_COLS) {
            const double t0 = nn_gemm_clock();
            tg_product(mb, p->panels + (size_t)rb * OC * TG_ROWS, stage + q,
                       ld, OC);
            nn_gemm_account(t0);
            for (int r = 0; r < TG_ROWS && rb * TG_ROWS + r < CKK; r++)
                memcpy(col + (rb * TG_ROWS + r) * ld + q, mb + r * TG_COLS,
                       TG_COLS * sizeof(float));
        }
    conv_col2im(dinp + b0 * chw, col, ld, n, C, H, W, K, stride, pad, OH, OW);
}

void nn_conv2d_forward(float *out, const float *inp, const float *weight,
                       const float *bias, float *scratch, int B, int C, int H,
                       int W, int OC, int K, int stride, int pad)
{
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    const size_t ohw = (size_t)OH * OW, chw = (size_t)C * H * W;
    if (conv_use_winograd(C, H, W, K, stride, pad)) {
        nn_winograd_forward(out, inp, weight, bias, scratch, B, C, H, W, OC,
                            nn_winograd_tile(H, W));
        return;
    }
    if (conv_is_dense(H, W, K, stride, pad)) {
        CHECK(scratch != NULL);
        const int ni = C * H * W, no = OC * H * W;
        conv_dense_weight(scratch, weight, OC, C, H, W);
        nn_sgemm(CblasNoTrans, CblasTrans, B, no, ni, 1.0f,
                 inp, ni, scratch, ni, 0.0f, out, no);
        if (bias)
            conv_add_bias(out, bias, B, OC, ohw);
        return;
    }
    if (conv_is_pointwise(K, stride, pad, ohw)) {
        for (int b = 0; b < B; b++)
            nn_sgemm(CblasNoTrans, CblasNoTrans, OC,
                     (int)ohw, C, 1.0f, weight, C, inp + b * chw,
                     (int)ohw, 0.0f, out + (size_t)b * OC * ohw, (int)ohw);
        if (bias)
            conv_add_bias(out, bias, B, OC, ohw);
        return;
    }
    CHECK(scratch != NULL);
    const struct conv_plan p = conv_plan_make(scratch, B, C, OC, K, ohw);
#pragma omp parallel num_threads(p.ns)
    {
        float *col = p.data + omp_get_thread_num() * p.slice_floats;
#pragma omp for schedule(static)
        for (int ob = 0; ob < tg_row_blocks(OC); ob++)
            conv_panel_block(p.panels, weight, ob, OC, p.CKK, p.CKK, 1);
        int lo, hi;
        nn_my_slice(B, &lo, &hi);
        for (int b0 = lo; b0 < hi; b0 += p.ct) {
            const int n = hi - b0 < p.ct ? hi - b0 : p.ct;
            conv_forward_chunk(out, inp, bias, &p, col, b0, n, C, H, W, OC, K,
                               stride, pad, OH, OW);
        }
    }
}

void nn_conv2d_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, float *scratch, int B, int C,
                        int H, int W, int OC, int K, int stride, int pad)
{
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    const size_t ohw = (size_t)OH * OW, chw = (size_t)C * H * W;
    if (dbias)
        conv_bias_backward(dbias, dout, B, OC, ohw);
    if (conv_use_winograd(C, H, W, K, stride, pad)) {
        nn_winograd_backward(dinp, dweight, dout, inp, weight, scratch, B, C,
                             H, W, OC, nn_winograd_tile(H, W));
        return;
    }
    if (conv_is_dense(H, W, K, stride, pad)) {
        CHECK(scratch != NULL);
        const int ni = C * H * W, no = OC * H * W;
        if (dinp) {
            conv_dense_weight(scratch, weight, OC, C, H, W);
            nn_sgemm(CblasNoTrans, CblasNoTrans, B, ni, no,
                     1.0f, dout, no, scratch, ni, 1.0f, dinp, ni);
        }
        /* dWd = dout^T inp, then each tap sums its (o, i) pairs. */
        nn_sgemm(CblasTrans, CblasNoTrans, no, ni, B, 1.0f,
                 dout, no, inp, ni, 0.0f, scratch, ni);
        conv_dense_weight_backward(dweight, scratch, OC, C, H, W);
        return;
    }
    if (conv_is_pointwise(K, stride, pad, ohw)) {
        for (int b = 0; b < B; b++) {
            const float *g = dout + (size_t)b * OC * ohw;
            nn_sgemm(CblasNoTrans, CblasTrans, OC, C,
                     (int)ohw, 1.0f, g, (int)ohw, inp + b * chw, (int)ohw,
                     1.0f, dweight, C);
            if (dinp)
                nn_sgemm(CblasTrans, CblasNoTrans, C,
                         (int)ohw, OC, 1.0f, weight, C, g, (int)ohw, 1.0f,
                         dinp + b * chw, (int)ohw);
        }
        return;
    }
    CHECK(scratch != NULL);
    const struct conv_plan p = conv_plan_make(scratch, B, C, OC, K, ohw);
    const size_t nw = (size_t)OC * p.CKK;
#pragma omp parallel num_threads(p.ns)
    {
        /* Thread 0 adds into dweight; the others into their copies. */
        const int k = omp_get_thread_num(), nk = omp_get_num_threads();
        float *dw = k ? p.dwk + (k - 1) * nw : dweight;
        float *col = p.data + k * p.slice_floats; // (CKK, ld)
        float *stage = col + (size_t)p.CKK * p.ld;  // (OC, ld)
        if (k)
            memset(dw, 0, nw * sizeof(float));
        if (dinp) {
#pragma omp for schedule(static)
            for (int rb = 0; rb < tg_row_blocks(p.CKK); rb++)
                conv_panel_block(p.panels, weight, rb, p.CKK, OC, 1, p.CKK);
        }
        int lo, hi;
        nn_my_slice(B, &lo, &hi);
        for (int b0 = lo; b0 < hi; b0 += p.ct) {
            const int n = hi - b0 < p.ct ? hi - b0 : p.ct;
            conv_backward_chunk(dinp, dw, dout, inp, &p, col, stage, b0, n, C,
                                H, W, OC, K, stride, pad, OH, OW);
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (size_t j = 0; j < nw; j++)
            for (int i = 1; i < nk; i++)
                dweight[j] += p.dwk[(i - 1) * nw + j];
    }
}

void nn_conv2d_forward_ref(float *out, const float *inp, const float *weight,
                           const float *bias, float *scratch, int B, int C,
                           int H, int W, int OC, int K, int stride, int pad)
{
    (void)scratch;
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float acc = bias ? bias[oc] : 0.0f;
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int ih = oh * stride - pad + ki;
                                int iw = ow * stride - pad + kj;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                acc += weight[((oc * C + c) * K + ki) * K + kj] *
                                       inp[(((size_t)b * C + c) * H + ih) * W + iw];
                            }
                    out[(((size_t)b * OC + oc) * OH + oh) * OW + ow] = acc;
                }
}

void nn_conv2d_backward_ref(float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp,
                            const float *weight, float *scratch, int B, int C,
                            int H, int W, int OC, int K, int stride, int pad)
{
    (void)scratch;
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float g = dout[(((size_t)b * OC + oc) * OH + oh) * OW + ow];
                    if (dbias)
                        dbias[oc] += g;
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int ih = oh * stride - pad + ki;
                                int iw = ow * stride - pad + kj;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                size_t xi = (((size_t)b * C + c) * H + ih) * W + iw;
                                size_t wi = ((oc * C + c) * K + ki) * K + kj;
                                dweight[wi] += g * inp[xi];
                                if (dinp)
                                    dinp[xi] += g * weight[wi];
                            }
                }
}
