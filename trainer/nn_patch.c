/*
 * nn_patch.c: the ViT input layer (see nn_vit.h): patch embedding as a
 * stride-P convolution done by im2col (the saved `patches`, zero where a
 * crop was padded to a multiple of P and on each image's CLS row) and one
 * cblas_sgemm over all tokens, the
 * CLS token, and the learned position embedding resized with PyTorch's
 * bicubic F.interpolate (align_corners=False) to the crop's token grid.
 */
#include "nn_vit.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "nn_gemm.h"
#include "util.h"

#define BICUBIC_A (-0.75f)

int nn_patch_grid_dim(int in, int P)
{
    CHECK(in > 0 && P > 0);
    return (in + P - 1) / P;
}

size_t nn_patch_embed_scratch_floats(int B, int C, int H, int W, int P, int D)
{
    (void)B;
    const size_t tp = (size_t)nn_patch_grid_dim(H, P) * nn_patch_grid_dim(W, P);
    return tp * D + tp * C * P * P;
}

/* ---- bicubic resize ---------------------------------------------------- */

/* The 4 clamped source indices and weights of output index o along an axis
 * of IN -> OUT, exactly as PyTorch's upsample_bicubic2d (align_corners
 * False): src = (o + 0.5) * IN / OUT - 0.5, not clamped, taps floor(src)-1
 * .. floor(src)+2 clamped to [0, IN-1]. */
static void bicubic_taps(int o, int IN, int OUT, int idx[4], float w[4])
{
    const float scale = (float)IN / (float)OUT;
    const float src = scale * ((float)o + 0.5f) - 0.5f;
    const float fl = floorf(src);
    const float t = src - fl;
    const float A = BICUBIC_A;
    const float x1 = t + 1.0f, x2 = 1.0f - t, x3 = 2.0f - t;
    w[0] = ((A * x1 - 5.0f * A) * x1 + 8.0f * A) * x1 - 4.0f * A;
    w[1] = ((A + 2.0f) * t - (A + 3.0f)) * t * t + 1.0f;
    w[2] = ((A + 2.0f) * x2 - (A + 3.0f)) * x2 * x2 + 1.0f;
    w[3] = ((A * x3 - 5.0f * A) * x3 + 8.0f * A) * x3 - 4.0f * A;
    for (int k = 0; k < 4; k++) {
        int i = (int)fl - 1 + k;
        idx[k] = i < 0 ? 0 : i > IN - 1 ? IN - 1 : i;
    }
}

void nn_bicubic_forward(float *out, const float *inp, int IH, int IW, int OH,
                        int OW, int D)
{
#pragma omp parallel for schedule(static)
    for (int oy = 0; oy < OH; oy++) {
        int iy[4], ix[4];
        float wy[4], wx[4];
        bicubic_taps(oy, IH, OH, iy, wy);
        for (int ox = 0; ox < OW; ox++) {
            bicubic_taps(ox, IW, OW, ix, wx);
            float *restrict o = out + ((size_t)oy * OW + ox) * D;
            memset(o, 0, sizeof(float) * D);
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) {
                    const float w = wy[a] * wx[b];
                    const float *restrict s =
                        inp + ((size_t)iy[a] * IW + ix[b]) * D;
                    for (int d = 0; d < D; d++)
                        o[d] += w * s[d];
                }
        }
    }
}

void nn_bicubic_backward(float *dinp, const float *dout, int IH, int IW,
                         int OH, int OW, int D)
{
    /* taps of different outputs hit the same inputs: serial (tiny) */
    for (int oy = 0; oy < OH; oy++) {
        int iy[4], ix[4];
        float wy[4], wx[4];
        bicubic_taps(oy, IH, OH, iy, wy);
        for (int ox = 0; ox < OW; ox++) {
            bicubic_taps(ox, IW, OW, ix, wx);
            const float *restrict g = dout + ((size_t)oy * OW + ox) * D;
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) {
                    const float w = wy[a] * wx[b];
                    float *restrict s =
                        dinp + ((size_t)iy[a] * IW + ix[b]) * D;
                    for (int d = 0; d < D; d++)
                        s[d] += w * g[d];
                }
        }
    }
}

/* ---- patch embedding ---------------------------------------------------- */

/* im2col of image b: patches rows (GH*GW, C*P*P), zero outside (H,W). */
static void patch_im2col(float *restrict rows, const float *restrict img,
                         int C, int H, int W, int P, int GH, int GW)
{
    const int K = C * P * P;
    for (int gy = 0; gy < GH; gy++)
        for (int gx = 0; gx < GW; gx++) {
            float *restrict r = rows + ((size_t)gy * GW + gx) * K;
            for (int c = 0; c < C; c++)
                for (int py = 0; py < P; py++) {
                    const int y = gy * P + py;
                    float *restrict dst = r + ((size_t)c * P + py) * P;
                    for (int px = 0; px < P; px++) {
                        const int x = gx * P + px;
                        dst[px] = y < H && x < W
                                      ? img[((size_t)c * H + y) * W + x]
                                      : 0.0f;
                    }
                }
        }
}

/* Adjoint of patch_im2col: img += rows, padding dropped. */
static void patch_col2im(float *restrict img, const float *restrict rows,
                         int C, int H, int W, int P, int GH, int GW)
{
    const int K = C * P * P;
    for (int gy = 0; gy < GH; gy++)
        for (int gx = 0; gx < GW; gx++) {
            const float *restrict r = rows + ((size_t)gy * GW + gx) * K;
            for (int c = 0; c < C; c++)
                for (int py = 0; py < P; py++) {
                    const int y = gy * P + py;
                    if (y >= H)
                        continue;
                    for (int px = 0; px < P && gx * P + px < W; px++)
                        img[((size_t)c * H + y) * W + gx * P + px] +=
                            r[((size_t)c * P + py) * P + px];
                }
        }
}

void nn_patch_embed_forward(float *out, float *patches, const float *inp,
                            const float *weight, const float *bias,
                            const float *cls, const float *pos,
                            float *scratch, int B, int C, int H, int W, int P,
                            int D, int G0)
{
    const int GH = nn_patch_grid_dim(H, P), GW = nn_patch_grid_dim(W, P);
    const int TP = GH * GW, T = TP + 1, K = C * P * P;
    float *pos_grid = scratch; /* (TP,D) */
    nn_bicubic_forward(pos_grid, pos + D, G0, G0, GH, GW, D);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        memset(patches + (size_t)b * T * K, 0, sizeof(float) * K);
        patch_im2col(patches + ((size_t)b * T + 1) * K,
                     inp + (size_t)b * C * H * W, C, H, W, P, GH, GW);
    }
    /* (B*T,K) x (K,D); the CLS rows come out zero */
    nn_sgemm(CblasNoTrans, CblasTrans, B * T, D, K, 1.0f,
             patches, K, weight, K, 0.0f, out, D);
#pragma omp parallel for schedule(static)
    for (long bt = 0; bt < (long)B * T; bt++) {
        const int t = (int)(bt % T);
        float *restrict o = out + (size_t)bt * D;
        if (t == 0) {
            for (int d = 0; d < D; d++)
                o[d] = cls[d] + pos[d];
        } else {
            const float *restrict pg = pos_grid + (size_t)(t - 1) * D;
            for (int d = 0; d < D; d++)
                o[d] += bias[d] + pg[d];
        }
    }
}

void nn_patch_embed_backward(float *dinp, float *dweight, float *dbias,
                             float *dcls, float *dpos, const float *dout,
                             const float *patches, const float *weight,
                             float *scratch, int B, int C, int H, int W,
                             int P, int D, int G0)
{
    const int GH = nn_patch_grid_dim(H, P), GW = nn_patch_grid_dim(W, P);
    const int TP = GH * GW, T = TP + 1, K = C * P * P;
    float *gsum = scratch;                  /* (TP,D) sum over images */
    float *drows = scratch + (size_t)TP * D; /* (TP,K) one image */
    /* sums over images, parallel over token rows (disjoint outputs) */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *restrict s = t == 0 ? dcls : gsum + (size_t)(t - 1) * D;
        if (t > 0)
            memset(s, 0, sizeof(float) * D);
        for (int b = 0; b < B; b++) {
            const float *restrict g = dout + ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++)
                s[d] += g[d];
        }
    }
    /* dcls now holds old dcls + sum_b dout[b,0]; dpos[0] gets the sum too */
    for (int b = 0; b < B; b++) {
        const float *restrict g = dout + (size_t)b * T * D;
        for (int d = 0; d < D; d++)
            dpos[d] += g[d];
    }
    for (int t = 0; t < TP; t++)
        for (int d = 0; d < D; d++)
            dbias[d] += gsum[(size_t)t * D + d];
    nn_bicubic_backward(dpos + D, gsum, G0, G0, GH, GW, D);
    /* (D,B*T) x (B*T,K); the zero CLS rows add nothing */
    nn_sgemm(CblasTrans, CblasNoTrans, D, K, B * T, 1.0f,
             dout, D, patches, K, 1.0f, dweight, K);
    for (int b = 0; b < B && dinp; b++) {
        const float *g = dout + ((size_t)b * T + 1) * D;
        /* (TP,D) x (D,K) */
        nn_sgemm(CblasNoTrans, CblasNoTrans, TP, K, D, 1.0f,
                 g, D, weight, K, 0.0f, drows, K);
        patch_col2im(dinp + (size_t)b * C * H * W, drows, C, H, W, P, GH, GW);
    }
}

void nn_patch_embed_forward_ref(float *out, float *patches, const float *inp,
                                const float *weight, const float *bias,
                                const float *cls, const float *pos,
                                float *scratch, int B, int C, int H, int W,
                                int P, int D, int G0)
{
    (void)scratch;
    const int GH = nn_patch_grid_dim(H, P), GW = nn_patch_grid_dim(W, P);
    const int TP = GH * GW, T = TP + 1, K = C * P * P;
    for (int b = 0; b < B; b++) {
        for (int d = 0; d < D; d++)
            out[(size_t)b * T * D + d] = cls[d] + pos[d];
        for (int k = 0; k < K; k++)
            patches[(size_t)b * T * K + k] = 0.0f;
        for (int gy = 0; gy < GH; gy++)
            for (int gx = 0; gx < GW; gx++) {
                const int t = gy * GW + gx;
                float *row = patches + ((size_t)b * T + 1 + t) * K;
                for (int c = 0; c < C; c++)
                    for (int py = 0; py < P; py++)
                        for (int px = 0; px < P; px++) {
                            const int y = gy * P + py, x = gx * P + px;
                            row[(c * P + py) * P + px] =
                                y < H && x < W
                                    ? inp[(((size_t)b * C + c) * H + y) * W + x]
                                    : 0.0f;
                        }
                int iy[4], ix[4];
                float wy[4], wx[4];
                bicubic_taps(gy, G0, GH, iy, wy);
                bicubic_taps(gx, G0, GW, ix, wx);
                for (int d = 0; d < D; d++) {
                    float s = bias[d];
                    for (int k = 0; k < K; k++)
                        s += weight[(size_t)d * K + k] * row[k];
                    for (int a = 0; a < 4; a++)
                        for (int e = 0; e < 4; e++)
                            s += wy[a] * wx[e]
                                 * pos[(1 + (size_t)iy[a] * G0 + ix[e]) * D + d];
                    out[((size_t)b * T + 1 + t) * D + d] = s;
                }
            }
    }
}

void nn_patch_embed_backward_ref(float *dinp, float *dweight, float *dbias,
                                 float *dcls, float *dpos, const float *dout,
                                 const float *patches, const float *weight,
                                 float *scratch, int B, int C, int H, int W,
                                 int P, int D, int G0)
{
    (void)scratch;
    const int GH = nn_patch_grid_dim(H, P), GW = nn_patch_grid_dim(W, P);
    const int TP = GH * GW, T = TP + 1, K = C * P * P;
    for (int b = 0; b < B; b++) {
        for (int d = 0; d < D; d++) {
            dcls[d] += dout[(size_t)b * T * D + d];
            dpos[d] += dout[(size_t)b * T * D + d];
        }
        for (int gy = 0; gy < GH; gy++)
            for (int gx = 0; gx < GW; gx++) {
                const int t = gy * GW + gx;
                const float *row = patches + ((size_t)b * T + 1 + t) * K;
                const float *g = dout + ((size_t)b * T + 1 + t) * D;
                int iy[4], ix[4];
                float wy[4], wx[4];
                bicubic_taps(gy, G0, GH, iy, wy);
                bicubic_taps(gx, G0, GW, ix, wx);
                for (int d = 0; d < D; d++) {
                    dbias[d] += g[d];
                    for (int k = 0; k < K; k++)
                        dweight[(size_t)d * K + k] += g[d] * row[k];
                    for (int a = 0; a < 4; a++)
                        for (int e = 0; e < 4; e++)
                            dpos[(1 + (size_t)iy[a] * G0 + ix[e]) * D + d] +=
                                wy[a] * wx[e] * g[d];
                }
                if (!dinp)
                    continue;
                for (int c = 0; c < C; c++)
                    for (int py = 0; py < P; py++)
                        for (int px = 0; px < P; px++) {
                            const int y = gy * P + py, x = gx * P + px;
                            if (y >= H || x >= W)
                                continue;
                            float s = 0.0f;
                            for (int d = 0; d < D; d++)
                                s += g[d]
                                     * weight[(size_t)d * K + (c * P + py) * P + px];
                            dinp[(((size_t)b * C + c) * H + y) * W + x] += s;
                        }
            }
    }
}
