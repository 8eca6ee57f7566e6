/*
 * nn_gelu.c: GELU in its exact erf form (torch.nn.GELU's default),
 * forward/backward and the _ref twins (see nn_vit.h).
 *   gelu(x)  = 0.5 x (1 + erf(x / sqrt 2))
 *   gelu'(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
 */
#include "nn_vit.h"

#include <math.h>

#define GELU_RSQRT2 0.70710678118654752f
#define GELU_RSQRT2PI 0.39894228040143268f

void nn_gelu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * GELU_RSQRT2));
    }
}

void nn_gelu_backward(float *dinp, const float *dout, const float *inp,
                      size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float cdf = 0.5f * (1.0f + erff(x * GELU_RSQRT2));
        const float pdf = GELU_RSQRT2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void nn_gelu_forward_ref(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + erf(x / sqrt(2.0))));
    }
}

void nn_gelu_backward_ref(float *dinp, const float *dout, const float *inp,
                          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const double x = inp[i];
        const double cdf = 0.5 * (1.0 + erf(x / sqrt(2.0)));
        const double pdf = exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
        dinp[i] += (float)(dout[i] * (cdf + x * pdf));
    }
}
