/*
 * nn_gelu.c: GELU in its exact erf form (torch.nn.GELU's default),
 * forward/backward and the _ref twins (see nn_vit.h).
 *   gelu(x)  = 0.5 x (1 + erf(x / sqrt 2))
 *   gelu'(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
 */
#include "nn_vit.h"

#include <math.h>

#include "nn_fastexp.h"

#define GELU_RSQRT2 0.70710678118654752f
#define GELU_RSQRT2PI 0.39894228040143268f

/* libm's erff and expf are scalar calls and were ~60% of a ViT step's
 * elementwise time; gelu_erf and nn_fast_expf inline and vectorise (8 lanes
 * with AVX2). */

/* erf(z) by Abramowitz & Stegun 7.1.26: 1 - poly(t) e^(-z^2), t = 1 / (1 +
 * 0.3275911 |z|), absolute error at most 1.5e-7, which GELU adds to 1
 * (so its relative error stays ~1e-7 like float rounding). */
static inline float gelu_erf(float z)
{
    const float a = fabsf(z);
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float e = 1.0f - p * t * nn_fast_expf(-a * a);
    return copysignf(e, z);
}

void nn_gelu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        out[i] = 0.5f * x * (1.0f + gelu_erf(x * GELU_RSQRT2));
    }
}

void nn_gelu_backward(float *dinp, const float *dout, const float *inp,
                      size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float cdf = 0.5f * (1.0f + gelu_erf(x * GELU_RSQRT2));
        const float pdf = GELU_RSQRT2PI * nn_fast_expf(-0.5f * x * x);
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
