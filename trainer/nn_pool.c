/*
 * nn_pool.c: global average pooling (B,C,HW)->(B,C) and KxK max pooling
 * with stride and padding, forward/backward (see nn.h for the contract).
 * Max pooling saves the winner's index so backward is a scatter; both run
 * one (image, channel) plane per OpenMP iteration, so writes never race.
 */
#include "nn.h"

#include "util.h"

void nn_avgpool_global_forward(float *out, const float *inp, int B, int C,
                               int HW)
{
    const float scale = 1.0f / HW;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)B * C; p++) {
        const float *restrict x = inp + p * HW;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < HW; j++)
            s += x[j];
        out[p] = s * scale;
    }
}

void nn_avgpool_global_backward(float *dinp, const float *dout, int B, int C,
                                int HW)
{
    const float scale = 1.0f / HW;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)B * C; p++) {
        float *restrict dx = dinp + p * HW;
        const float g = dout[p] * scale;
        for (int j = 0; j < HW; j++)
            dx[j] += g;
    }
}

void nn_avgpool_global_forward_ref(float *out, const float *inp, int B, int C,
                                   int HW)
{
    for (size_t p = 0; p < (size_t)B * C; p++) {
        float s = 0.0f;
        for (int j = 0; j < HW; j++)
            s += inp[p * HW + j];
        out[p] = s / HW;
    }
}

void nn_avgpool_global_backward_ref(float *dinp, const float *dout, int B,
                                    int C, int HW)
{
    for (size_t p = 0; p < (size_t)B * C; p++)
        for (int j = 0; j < HW; j++)
            dinp[p * HW + j] += dout[p] / HW;
}

/* One (H,W) plane; the window is clipped to the image, so padding never
 * wins, and strict > keeps the first maximum in row-major order. */
static void maxpool_plane(float *restrict out, int32_t *restrict argmax,
                          const float *restrict x, int H, int W, int OH,
                          int OW, int K, int stride, int pad)
{
    for (int oh = 0; oh < OH; oh++) {
        const int h0 = oh * stride - pad;
        const int hs = h0 < 0 ? 0 : h0, he = h0 + K > H ? H : h0 + K;
        for (int ow = 0; ow < OW; ow++) {
            const int w0 = ow * stride - pad;
            const int ws = w0 < 0 ? 0 : w0, we = w0 + K > W ? W : w0 + K;
            int best = hs * W + ws;
            float v = x[best];
            for (int h = hs; h < he; h++)
                for (int w = ws; w < we; w++)
                    if (x[h * W + w] > v) {
                        v = x[h * W + w];
                        best = h * W + w;
                    }
            out[oh * OW + ow] = v;
            argmax[oh * OW + ow] = best;
        }
    }
}

static void maxpool_check(int H, int W, int K, int stride, int pad)
{
    CHECK(K > 0 && stride > 0 && pad >= 0 && pad < K && H > 0 && W > 0);
}

void nn_maxpool2d_forward(float *out, int32_t *argmax, const float *inp,
                          int B, int C, int H, int W, int K, int stride,
                          int pad)
{
    maxpool_check(H, W, K, stride, pad);
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    const size_t ohw = (size_t)OH * OW, hw = (size_t)H * W;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)B * C; p++)
        maxpool_plane(out + p * ohw, argmax + p * ohw, inp + p * hw, H, W, OH,
                      OW, K, stride, pad);
}

void nn_maxpool2d_backward(float *dinp, const float *dout,
                           const int32_t *argmax, int B, int C, int H, int W,
                           int K, int stride, int pad)
{
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    const size_t ohw = (size_t)OH * OW, hw = (size_t)H * W;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < (size_t)B * C; p++) {
        float *restrict dx = dinp + p * hw;
        const float *restrict g = dout + p * ohw;
        const int32_t *restrict a = argmax + p * ohw;
        for (size_t j = 0; j < ohw; j++)
            dx[a[j]] += g[j];
    }
}

void nn_maxpool2d_forward_ref(float *out, int32_t *argmax, const float *inp,
                              int B, int C, int H, int W, int K, int stride,
                              int pad)
{
    maxpool_check(H, W, K, stride, pad);
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    for (size_t p = 0; p < (size_t)B * C; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int best = -1;
                float v = 0.0f;
                for (int ki = 0; ki < K; ki++)
                    for (int kj = 0; kj < K; kj++) {
                        int h = oh * stride - pad + ki;
                        int w = ow * stride - pad + kj;
                        if (h < 0 || h >= H || w < 0 || w >= W)
                            continue;
                        float x = inp[p * H * W + (size_t)h * W + w];
                        if (best < 0 || x > v) {
                            v = x;
                            best = h * W + w;
                        }
                    }
                out[(p * OH + oh) * OW + ow] = v;
                argmax[(p * OH + oh) * OW + ow] = best;
            }
}

void nn_maxpool2d_backward_ref(float *dinp, const float *dout,
                               const int32_t *argmax, int B, int C, int H,
                               int W, int K, int stride, int pad)
{
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    for (size_t p = 0; p < (size_t)B * C; p++)
        for (int j = 0; j < OH * OW; j++)
            dinp[p * H * W + argmax[p * OH * OW + j]] += dout[p * OH * OW + j];
}
