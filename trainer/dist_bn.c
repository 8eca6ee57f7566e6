/*
 * dist_bn.c: synchronised BatchNorm in training mode (config model.sync_bn):
 * the per-channel sums behind the batch mean and variance, and the two sums
 * of the backward, are added across ranks, so every rank normalises with the
 * statistics of the global batch and the result equals nn_norm.c's BatchNorm
 * over the concatenated batch (to rounding). One (B, C, HW) layout serves
 * BatchNorm2d and, with HW = 1, BatchNorm1d. Eval mode and unsynchronised
 * training use nn_norm.c; this file only adds the reductions.
 *
 * Parameter gradients get this rank's sums only: the gradient all-reduce of
 * the step adds the ranks' shares, as for every other parameter.
 */
#include "dist_bn.h"

#include <math.h>

#include "nn.h"
#include "util.h"

/* Columns per thread block when HW = 1 (rows then read contiguously). */
#define BN_COL_BLOCK 64

/* s[c] = sum of x over (B, HW) when fm is NULL, else of (x - fm[c])^2. */
static void channel_sums(double *s, const float *inp, const float *fm, int B,
                         int C, int HW)
{
    if (HW > 1) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            const float m = fm ? fm[c] : 0.0f;
            double acc = 0.0;
            for (int b = 0; b < B; b++) {
                const float *restrict x = inp + ((size_t)b * C + c) * HW;
                float p = 0.0f;
                if (fm) {
#pragma omp simd reduction(+ : p)
                    for (int j = 0; j < HW; j++)
                        p += (x[j] - m) * (x[j] - m);
                } else {
#pragma omp simd reduction(+ : p)
                    for (int j = 0; j < HW; j++)
                        p += x[j];
                }
                acc += p;
            }
            s[c] = acc;
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += BN_COL_BLOCK) {
        const int nc = C - c0 < BN_COL_BLOCK ? C - c0 : BN_COL_BLOCK;
        double acc[BN_COL_BLOCK] = {0};
        for (int b = 0; b < B; b++) {
            const float *restrict x = inp + (size_t)b * C + c0;
            for (int j = 0; j < nc; j++) {
                double d = fm ? (double)(x[j] - fm[c0 + j]) : x[j];
                acc[j] += fm ? d * d : d;
            }
        }
        for (int j = 0; j < nc; j++)
            s[c0 + j] = acc[j];
    }
}

void dist_bn_forward(struct dist *d, float *out, float *mean, float *rstd,
                     float *running_mean, float *running_var,
                     const float *inp, const float *weight, const float *bias,
                     int B, int C, int HW, bool relu)
{
    CHECK(d->buf_cap >= dist_bn_scratch(C));
    double *s = d->buf;
    channel_sums(s, inp, NULL, B, C, HW);
    s[C] = (double)B * HW;
    dist_allreduce_double(d, s, (size_t)C + 1);
    const double count = s[C];
    CHECK(count > 1.0);
    for (int c = 0; c < C; c++) {
        mean[c] = (float)(s[c] / count);
        /* PyTorch: momentum 0.1 on the mean and the unbiased variance. */
        if (running_mean)
            running_mean[c] = (float)((1.0 - NN_BN_MOMENTUM) * running_mean[c] +
                                      NN_BN_MOMENTUM * (s[c] / count));
    }
    /* The centred sums around the rounded global mean, as nn_norm.c does. */
    channel_sums(s, inp, mean, B, C, HW);
    dist_allreduce_double(d, s, (size_t)C);
    for (int c = 0; c < C; c++) {
        double var = s[c] / count;
        rstd[c] = (float)(1.0 / sqrt(var + NN_BN_EPS));
        if (running_var)
            running_var[c] = (float)((1.0 - NN_BN_MOMENTUM) * running_var[c] +
                                     NN_BN_MOMENTUM * var * count / (count - 1));
    }
    const size_t rows = (size_t)B * C;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < rows; i++) {
        const int c = (int)(i % C);
        const float scale = rstd[c] * weight[c];
        const float shift = bias[c] - mean[c] * scale;
        const float *restrict x = inp + i * HW;
        float *restrict y = out + i * HW;
        for (int j = 0; j < HW; j++) {
            const float v = x[j] * scale + shift;
            y[j] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

/* sg[c] = sum of g, sgx[c] = sum of g * xhat over (B, HW), g masked by
 * relu_out > 0 when relu_out is not NULL. */
static void grad_sums(double *sg, double *sgx, const float *dout,
                      const float *relu_out, const float *inp,
                      const float *mean, const float *rstd, int B, int C,
                      int HW)
{
    if (HW > 1) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            const float m = mean[c];
            double a = 0.0, ax = 0.0;
            for (int b = 0; b < B; b++) {
                const size_t o = ((size_t)b * C + c) * HW;
                float pg = 0.0f, pgx = 0.0f;
                for (int j = 0; j < HW; j++) {
                    const float gj =
                        relu_out && !(relu_out[o + j] > 0.0f) ? 0.0f
                                                              : dout[o + j];
                    pg += gj;
                    pgx += gj * (inp[o + j] - m);
                }
                a += pg;
                ax += pgx;
            }
            sg[c] = a;
            sgx[c] = ax * rstd[c];
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += BN_COL_BLOCK) {
        const int nc = C - c0 < BN_COL_BLOCK ? C - c0 : BN_COL_BLOCK;
        double a[BN_COL_BLOCK] = {0}, ax[BN_COL_BLOCK] = {0};
        for (int b = 0; b < B; b++) {
            const size_t o = (size_t)b * C + c0;
            for (int j = 0; j < nc; j++) {
                const float gj =
                    relu_out && !(relu_out[o + j] > 0.0f) ? 0.0f : dout[o + j];
                a[j] += gj;
                ax[j] += gj * ((inp[o + j] - mean[c0 + j]) * rstd[c0 + j]);
            }
        }
        for (int j = 0; j < nc; j++) {
            sg[c0 + j] = a[j];
            sgx[c0 + j] = ax[j];
        }
    }
}

void dist_bn_backward(struct dist *d, float *dinp, float *dweight,
                      float *dbias, const float *dout, const float *relu_out,
                      const float *inp, const float *mean, const float *rstd,
                      const float *weight, int B, int C, int HW,
                      bool accumulate)
{
    CHECK(d->buf_cap >= dist_bn_scratch(C));
    double *sg = d->buf, *sgx = d->buf + C;
    grad_sums(sg, sgx, dout, relu_out, inp, mean, rstd, B, C, HW);
    /* forward: y = xhat * weight + bias: this rank's share of the
     * parameter gradients, summed later with the others */
    for (int c = 0; c < C; c++) {
        dbias[c] += (float)sg[c];
        dweight[c] += (float)sgx[c];
    }
    if (!dinp)
        return;
    sgx[C] = (double)B * HW;
    dist_allreduce_double(d, d->buf, 2 * (size_t)C + 1);
    const double count = sgx[C];
    /* dx = weight * rstd * (g - mean(g) - xhat mean(g xhat)), the means over
     * the global batch (the batch statistics are functions of all of it). */
    const size_t rows = (size_t)B * C;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < rows; i++) {
        const int c = (int)(i % C);
        const float m = mean[c], r = rstd[c], k = weight[c] * r;
        const float mg = (float)(sg[c] / count);
        const float mgx = (float)(sgx[c] / count);
        const float *restrict x = inp + i * HW;
        const float *restrict g = dout + i * HW;
        const float *restrict y = relu_out ? relu_out + i * HW : NULL;
        float *restrict dx = dinp + i * HW;
        for (int j = 0; j < HW; j++) {
            const float gj = y && !(y[j] > 0.0f) ? 0.0f : g[j];
            const float v = k * (gj - mg - (x[j] - m) * r * mgx);
            dx[j] = accumulate ? dx[j] + v : v;
        }
    }
}
