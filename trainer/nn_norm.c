/*
 * nn_norm.c: BatchNorm 2-D (B,C,HW), BatchNorm 1-D (B,C) and LayerNorm over
 * the last dimension, forward/backward (see nn.h for the contract). Sums run
 * in double so the batch statistics of a million values stay exact enough.
 * BatchNorm 2-D parallelises over channels (one plane stride each); its
 * _relu variants fuse the ReLU that follows it in the ResNet (one pass and
 * one parallel region instead of two, and no separate zeroing of dinp).
 * BatchNorm 1-D and the LayerNorm parameter gradients over blocks of
 * columns, so the inner loops read rows contiguously.
 */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Columns per thread block for the (rows, cols) reductions. */
#define NORM_COL_BLOCK 64

/* PyTorch's update: momentum 0.1 on the mean and the unbiased variance. */
static void bn_update_running(float *running_mean, float *running_var,
                              int c, double mean, double var_biased,
                              size_t count)
{
    if (!running_mean || !running_var)
        return;
    double unbiased = var_biased * (double)count / (double)(count - 1);
    running_mean[c] = (float)((1.0 - NN_BN_MOMENTUM) * running_mean[c] +
                              NN_BN_MOMENTUM * mean);
    running_var[c] = (float)((1.0 - NN_BN_MOMENTUM) * running_var[c] +
                             NN_BN_MOMENTUM * unbiased);
}

static void bn_check_args(const float *running_mean, const float *running_var,
                          size_t count, bool training)
{
    if (training)
        CHECK(count > 1); /* PyTorch refuses one value per channel too */
    else
        CHECK(running_mean != NULL && running_var != NULL);
}

/* ---- BatchNorm 2-D ---- */

/* The forward of nn_batchnorm2d_forward, with a ReLU on the output when
 * relu is set (one pass and one parallel region for both layers). */
static void bn2d_forward(float *out, float *mean, float *rstd,
                         float *running_mean, float *running_var,
                         const float *inp, const float *weight,
                         const float *bias, int B, int C, int HW,
                         bool training, bool relu)
{
    const size_t count = (size_t)B * HW;
    bn_check_args(running_mean, running_var, count, training);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float m, r;
        if (training) {
            double s = 0.0;
            for (int b = 0; b < B; b++) {
                const float *restrict x = inp + ((size_t)b * C + c) * HW;
                float p = 0.0f;
#pragma omp simd reduction(+ : p)
                for (int j = 0; j < HW; j++)
                    p += x[j];
                s += p;
            }
            double mu = s / count, ss = 0.0;
            for (int b = 0; b < B; b++) {
                const float *restrict x = inp + ((size_t)b * C + c) * HW;
                const float fm = (float)mu;
                float p = 0.0f;
#pragma omp simd reduction(+ : p)
                for (int j = 0; j < HW; j++)
                    p += (x[j] - fm) * (x[j] - fm);
                ss += p;
            }
            double var = ss / count;
            m = (float)mu;
            r = (float)(1.0 / sqrt(var + NN_BN_EPS));
            bn_update_running(running_mean, running_var, c, mu, var, count);
        } else {
            m = running_mean[c];
            r = (float)(1.0 / sqrt((double)running_var[c] + NN_BN_EPS));
        }
        mean[c] = m;
        rstd[c] = r;
        const float scale = r * weight[c], shift = bias[c] - m * scale;
        for (int b = 0; b < B; b++) {
            const float *restrict x = inp + ((size_t)b * C + c) * HW;
            float *restrict y = out + ((size_t)b * C + c) * HW;
            if (relu)
                for (int j = 0; j < HW; j++) {
                    const float v = x[j] * scale + shift;
                    y[j] = v > 0.0f ? v : 0.0f;
                }
            else
                for (int j = 0; j < HW; j++)
                    y[j] = x[j] * scale + shift;
        }
    }
}

void nn_batchnorm2d_forward(float *out, float *mean, float *rstd,
                            float *running_mean, float *running_var,
                            const float *inp, const float *weight,
                            const float *bias, int B, int C, int HW,
                            bool training)
{
    bn2d_forward(out, mean, rstd, running_mean, running_var, inp, weight,
                 bias, B, C, HW, training, false);
}

void nn_batchnorm2d_relu_forward(float *out, float *mean, float *rstd,
                                 float *running_mean, float *running_var,
                                 const float *inp, const float *weight,
                                 const float *bias, int B, int C, int HW,
                                 bool training)
{
    bn2d_forward(out, mean, rstd, running_mean, running_var, inp, weight,
                 bias, B, C, HW, training, true);
}

/* The backward of nn_batchnorm2d_backward. With relu_out set, the layer is
 * BN followed by ReLU: dout is the ReLU output's gradient, masked where
 * relu_out is 0. Without accumulate, dinp is overwritten instead of added
 * to (it then needs no zeroing pass before). */
static void bn2d_backward(float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *relu_out,
                          const float *inp, const float *mean,
                          const float *rstd, const float *weight, int B,
                          int C, int HW, bool training, bool accumulate)
{
    const size_t count = (size_t)B * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float m = mean[c], r = rstd[c];
        double sg = 0.0, sgx = 0.0;
        for (int b = 0; b < B; b++) {
            const size_t o = ((size_t)b * C + c) * HW;
            const float *restrict x = inp + o;
            const float *restrict g = dout + o;
            float pg = 0.0f, pgx = 0.0f;
            if (relu_out) {
                const float *restrict y = relu_out + o;
#pragma omp simd reduction(+ : pg, pgx)
                for (int j = 0; j < HW; j++) {
                    const float gj = y[j] > 0.0f ? g[j] : 0.0f;
                    pg += gj;
                    pgx += gj * (x[j] - m);
                }
            } else {
#pragma omp simd reduction(+ : pg, pgx)
                for (int j = 0; j < HW; j++) {
                    pg += g[j];
                    pgx += g[j] * (x[j] - m);
                }
            }
            sg += pg;
            sgx += pgx;
        }
        sgx *= r; /* sum of dout * xhat */
        /* forward: y = xhat * weight[c] + bias[c], xhat = (x - m) * r */
        dbias[c] += (float)sg;
        dweight[c] += (float)sgx;
        if (!dinp)
            continue;
        const float k = weight[c] * r;
        /* forward: m = mean(x), r = 1/sqrt(mean((x - m)^2) + eps), both
         * functions of x in training, so dx gets their paths too:
         * training: dx = k (g - mean(g) - xhat mean(g xhat)); eval (m, r
         * fixed running statistics): dx = k g */
        const float mg = training ? (float)(sg / count) : 0.0f;
        const float mgx = training ? (float)(sgx / count) : 0.0f;
        for (int b = 0; b < B; b++) {
            const size_t o = ((size_t)b * C + c) * HW;
            const float *restrict x = inp + o;
            const float *restrict g = dout + o;
            const float *restrict y = relu_out ? relu_out + o : NULL;
            float *restrict dx = dinp + o;
            if (y && accumulate)
                for (int j = 0; j < HW; j++)
                    dx[j] += k * ((y[j] > 0.0f ? g[j] : 0.0f) - mg -
                                  (x[j] - m) * r * mgx);
            else if (y)
                for (int j = 0; j < HW; j++)
                    dx[j] = k * ((y[j] > 0.0f ? g[j] : 0.0f) - mg -
                                 (x[j] - m) * r * mgx);
            else if (accumulate)
                for (int j = 0; j < HW; j++)
                    dx[j] += k * (g[j] - mg - (x[j] - m) * r * mgx);
            else
                for (int j = 0; j < HW; j++)
                    dx[j] = k * (g[j] - mg - (x[j] - m) * r * mgx);
        }
    }
}

void nn_batchnorm2d_backward(float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp,
                             const float *mean, const float *rstd,
                             const float *weight, int B, int C, int HW,
                             bool training)
{
    bn2d_backward(dinp, dweight, dbias, dout, NULL, inp, mean, rstd, weight,
                  B, C, HW, training, true);
}

void nn_batchnorm2d_relu_backward(float *dinp, float *dweight, float *dbias,
                                  const float *dout, const float *out,
                                  const float *inp, const float *mean,
                                  const float *rstd, const float *weight,
                                  int B, int C, int HW, bool training,
                                  bool accumulate)
{
    bn2d_backward(dinp, dweight, dbias, dout, out, inp, mean, rstd, weight,
                  B, C, HW, training, accumulate);
}

void nn_batchnorm2d_forward_ref(float *out, float *mean, float *rstd,
                                float *running_mean, float *running_var,
                                const float *inp, const float *weight,
                                const float *bias, int B, int C, int HW,
                                bool training)
{
    const size_t count = (size_t)B * HW;
    bn_check_args(running_mean, running_var, count, training);
    for (int c = 0; c < C; c++) {
        double mu, var;
        if (training) {
            double s = 0.0, ss = 0.0;
            for (int b = 0; b < B; b++)
                for (int j = 0; j < HW; j++)
                    s += inp[((size_t)b * C + c) * HW + j];
            mu = s / count;
            for (int b = 0; b < B; b++)
                for (int j = 0; j < HW; j++) {
                    double d = inp[((size_t)b * C + c) * HW + j] - mu;
                    ss += d * d;
                }
            var = ss / count;
            bn_update_running(running_mean, running_var, c, mu, var, count);
        } else {
            mu = running_mean[c];
            var = running_var[c];
        }
        mean[c] = (float)mu;
        rstd[c] = (float)(1.0 / sqrt(var + NN_BN_EPS));
        for (int b = 0; b < B; b++)
            for (int j = 0; j < HW; j++) {
                size_t i = ((size_t)b * C + c) * HW + j;
                out[i] = (inp[i] - mean[c]) * rstd[c] * weight[c] + bias[c];
            }
    }
}

void nn_batchnorm2d_backward_ref(float *dinp, float *dweight, float *dbias,
                                 const float *dout, const float *inp,
                                 const float *mean, const float *rstd,
                                 const float *weight, int B, int C, int HW,
                                 bool training)
{
    const size_t count = (size_t)B * HW;
    for (int c = 0; c < C; c++) {
        double sg = 0.0, sgx = 0.0;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < HW; j++) {
                size_t i = ((size_t)b * C + c) * HW + j;
                double xhat = (inp[i] - mean[c]) * rstd[c];
                sg += dout[i];
                sgx += dout[i] * xhat;
            }
        dbias[c] += (float)sg;
        dweight[c] += (float)sgx;
        if (!dinp)
            continue;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < HW; j++) {
                size_t i = ((size_t)b * C + c) * HW + j;
                double xhat = (inp[i] - mean[c]) * rstd[c];
                double g = dout[i];
                if (training)
                    g -= sg / count + xhat * sgx / count;
                dinp[i] += (float)(weight[c] * rstd[c] * g);
            }
    }
}

void nn_batchnorm2d_relu_forward_ref(float *out, float *mean, float *rstd,
                                     float *running_mean, float *running_var,
                                     const float *inp, const float *weight,
                                     const float *bias, int B, int C, int HW,
                                     bool training)
{
    nn_batchnorm2d_forward_ref(out, mean, rstd, running_mean, running_var,
                               inp, weight, bias, B, C, HW, training);
    nn_relu_forward_ref(out, out, (size_t)B * C * HW);
}

void nn_batchnorm2d_relu_backward_ref(float *dinp, float *dweight,
                                      float *dbias, const float *dout,
                                      const float *out, const float *inp,
                                      const float *mean, const float *rstd,
                                      const float *weight, int B, int C,
                                      int HW, bool training, bool accumulate)
{
    const size_t n = (size_t)B * C * HW;
    float *g = xcalloc(n, sizeof *g);
    nn_relu_backward_ref(g, dout, out, n);
    if (dinp && !accumulate)
        memset(dinp, 0, n * sizeof *dinp);
    nn_batchnorm2d_backward_ref(dinp, dweight, dbias, g, inp, mean, rstd,
                                weight, B, C, HW, training);
    free(g);
}

/* ---- BatchNorm 1-D ---- */

void nn_batchnorm1d_forward(float *out, float *mean, float *rstd,
                            float *running_mean, float *running_var,
                            const float *inp, const float *weight,
                            const float *bias, int B, int C, bool training)
{
    bn_check_args(running_mean, running_var, (size_t)B, training);
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += NORM_COL_BLOCK) {
        const int nc = C - c0 < NORM_COL_BLOCK ? C - c0 : NORM_COL_BLOCK;
        float scale[NORM_COL_BLOCK], shift[NORM_COL_BLOCK];
        if (training) {
            double s[NORM_COL_BLOCK] = {0}, ss[NORM_COL_BLOCK] = {0};
            float fm[NORM_COL_BLOCK];
            for (int b = 0; b < B; b++) {
                const float *restrict x = inp + (size_t)b * C + c0;
                for (int j = 0; j < nc; j++)
                    s[j] += x[j];
            }
            for (int j = 0; j < nc; j++)
                fm[j] = (float)(s[j] / B);
            for (int b = 0; b < B; b++) {
                const float *restrict x = inp + (size_t)b * C + c0;
                for (int j = 0; j < nc; j++) {
                    double d = x[j] - fm[j];
                    ss[j] += d * d;
                }
            }
            for (int j = 0; j < nc; j++) {
                double var = ss[j] / B;
                mean[c0 + j] = fm[j];
                rstd[c0 + j] = (float)(1.0 / sqrt(var + NN_BN_EPS));
                bn_update_running(running_mean, running_var, c0 + j,
                                  s[j] / B, var, (size_t)B);
            }
        } else {
            for (int j = 0; j < nc; j++) {
                mean[c0 + j] = running_mean[c0 + j];
                rstd[c0 + j] = (float)(1.0 / sqrt((double)running_var[c0 + j] +
                                                  NN_BN_EPS));
            }
        }
        for (int j = 0; j < nc; j++) {
            scale[j] = rstd[c0 + j] * weight[c0 + j];
            shift[j] = bias[c0 + j] - mean[c0 + j] * scale[j];
        }
        for (int b = 0; b < B; b++) {
            const float *restrict x = inp + (size_t)b * C + c0;
            float *restrict y = out + (size_t)b * C + c0;
            for (int j = 0; j < nc; j++)
                y[j] = x[j] * scale[j] + shift[j];
        }
    }
}

void nn_batchnorm1d_backward(float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp,
                             const float *mean, const float *rstd,
                             const float *weight, int B, int C, bool training)
{
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += NORM_COL_BLOCK) {
        const int nc = C - c0 < NORM_COL_BLOCK ? C - c0 : NORM_COL_BLOCK;
        double sg[NORM_COL_BLOCK] = {0}, sgx[NORM_COL_BLOCK] = {0};
        const float *restrict m = mean + c0, *restrict r = rstd + c0;
        for (int b = 0; b < B; b++) {
            const float *restrict x = inp + (size_t)b * C + c0;
            const float *restrict g = dout + (size_t)b * C + c0;
            for (int j = 0; j < nc; j++) {
                sg[j] += g[j];
                sgx[j] += g[j] * ((x[j] - m[j]) * r[j]);
            }
        }
        float k[NORM_COL_BLOCK], mg[NORM_COL_BLOCK], mgx[NORM_COL_BLOCK];
        for (int j = 0; j < nc; j++) {
            dbias[c0 + j] += (float)sg[j];
            dweight[c0 + j] += (float)sgx[j];
            k[j] = weight[c0 + j] * r[j];
            mg[j] = training ? (float)(sg[j] / B) : 0.0f;
            mgx[j] = training ? (float)(sgx[j] / B) : 0.0f;
        }
        if (!dinp)
            continue;
        for (int b = 0; b < B; b++) {
            const float *restrict x = inp + (size_t)b * C + c0;
            const float *restrict g = dout + (size_t)b * C + c0;
            float *restrict dx = dinp + (size_t)b * C + c0;
            for (int j = 0; j < nc; j++)
                dx[j] += k[j] * (g[j] - mg[j] - (x[j] - m[j]) * r[j] * mgx[j]);
        }
    }
}

/* With HW = 1 the 2-D reference loops are exactly BatchNorm1d. */
void nn_batchnorm1d_forward_ref(float *out, float *mean, float *rstd,
                                float *running_mean, float *running_var,
                                const float *inp, const float *weight,
                                const float *bias, int B, int C, bool training)
{
    nn_batchnorm2d_forward_ref(out, mean, rstd, running_mean, running_var, inp,
                               weight, bias, B, C, 1, training);
}

void nn_batchnorm1d_backward_ref(float *dinp, float *dweight, float *dbias,
                                 const float *dout, const float *inp,
                                 const float *mean, const float *rstd,
                                 const float *weight, int B, int C,
                                 bool training)
{
    nn_batchnorm2d_backward_ref(dinp, dweight, dbias, dout, inp, mean, rstd,
                                weight, B, C, 1, training);
}

/* ---- LayerNorm ---- */

void nn_layernorm_forward(float *out, float *mean, float *rstd,
                          const float *inp, const float *weight,
                          const float *bias, int N, int D, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *restrict x = inp + (size_t)n * D;
        float *restrict y = out + (size_t)n * D;
        double s = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < D; j++)
            s += x[j];
        const float m = (float)(s / D);
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < D; j++)
            ss += (double)(x[j] - m) * (x[j] - m);
        const float r = (float)(1.0 / sqrt(ss / D + eps));
        for (int j = 0; j < D; j++)
            y[j] = (x[j] - m) * r * weight[j] + bias[j];
        mean[n] = m;
        rstd[n] = r;
    }
}

void nn_layernorm_backward(float *dinp, float *dweight, float *dbias,
                           const float *dout, const float *inp,
                           const float *mean, const float *rstd,
                           const float *weight, int N, int D)
{
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *restrict x = inp + (size_t)n * D;
            const float *restrict g = dout + (size_t)n * D;
            float *restrict dx = dinp + (size_t)n * D;
            const float m = mean[n], r = rstd[n];
            /* forward: y[j] = (x[j] - m) * r * weight[j] + bias[j], with
             * m = mean(x) and r = 1/sqrt(mean((x - m)^2) + eps); with
             * dn = g * weight and xhat = (x - m) * r:
             * dx = r (dn - mean(dn) - xhat mean(dn xhat)) */
            double sdn = 0.0, sdnx = 0.0;
#pragma omp simd reduction(+ : sdn, sdnx)
            for (int j = 0; j < D; j++) {
                float dn = g[j] * weight[j];
                sdn += dn;
                sdnx += dn * ((x[j] - m) * r);
            }
            const float mdn = (float)(sdn / D), mdnx = (float)(sdnx / D);
            for (int j = 0; j < D; j++)
                dx[j] += r * (g[j] * weight[j] - mdn - (x[j] - m) * r * mdnx);
        }
    }
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < D; j0 += NORM_COL_BLOCK) {
        const int nj = D - j0 < NORM_COL_BLOCK ? D - j0 : NORM_COL_BLOCK;
        double sw[NORM_COL_BLOCK] = {0}, sb[NORM_COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *restrict x = inp + (size_t)n * D + j0;
            const float *restrict g = dout + (size_t)n * D + j0;
            const float m = mean[n], r = rstd[n];
            /* forward: y[j] = xhat[j] * weight[j] + bias[j] */
            for (int j = 0; j < nj; j++) {
                sb[j] += g[j];
                sw[j] += g[j] * ((x[j] - m) * r);
            }
        }
        for (int j = 0; j < nj; j++) {
            dweight[j0 + j] += (float)sw[j];
            dbias[j0 + j] += (float)sb[j];
        }
    }
}

void nn_layernorm_forward_ref(float *out, float *mean, float *rstd,
                              const float *inp, const float *weight,
                              const float *bias, int N, int D, float eps)
{
    for (int n = 0; n < N; n++) {
        double s = 0.0, ss = 0.0;
        for (int j = 0; j < D; j++)
            s += inp[(size_t)n * D + j];
        double m = s / D;
        for (int j = 0; j < D; j++) {
            double d = inp[(size_t)n * D + j] - m;
            ss += d * d;
        }
        mean[n] = (float)m;
        rstd[n] = (float)(1.0 / sqrt(ss / D + eps));
        for (int j = 0; j < D; j++) {
            size_t i = (size_t)n * D + j;
            out[i] = (inp[i] - mean[n]) * rstd[n] * weight[j] + bias[j];
        }
    }
}

void nn_layernorm_backward_ref(float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp,
                               const float *mean, const float *rstd,
                               const float *weight, int N, int D)
{
    for (int n = 0; n < N; n++) {
        double sdn = 0.0, sdnx = 0.0;
        for (int j = 0; j < D; j++) {
            size_t i = (size_t)n * D + j;
            double xhat = (inp[i] - mean[n]) * rstd[n];
            double dn = dout[i] * weight[j];
            sdn += dn;
            sdnx += dn * xhat;
            dweight[j] += (float)(dout[i] * xhat);
            dbias[j] += dout[i];
        }
        if (!dinp)
            continue;
        for (int j = 0; j < D; j++) {
            size_t i = (size_t)n * D + j;
            double xhat = (inp[i] - mean[n]) * rstd[n];
            double dn = dout[i] * weight[j];
            dinp[i] += (float)(rstd[n] * (dn - sdn / D - xhat * sdnx / D));
        }
    }
}
