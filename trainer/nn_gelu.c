/*
 * nn_gelu.c: GELU in its exact erf form (torch.nn.GELU's default),
 * forward/backward and the _ref twins (see nn_vit.h).
 *   gelu(x)  = 0.5 x (1 + erf(x / sqrt 2))
 *   gelu'(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
 */
#include "nn_vit.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define GELU_RSQRT2 0.70710678118654752f
#define GELU_RSQRT2PI 0.39894228040143268f

/* libm's erff and expf are scalar calls and were ~60% of a ViT step's
 * elementwise time; these inline forms vectorise (8 lanes with AVX2).
 * gelu_exp: e^x = 2^n e^r, n = round(x log2 e), |r| <= ln2 / 2, with
 * Cephes' expf polynomial (relative error ~1e-7) and 2^n built in the
 * exponent bits; x is clamped to [-87, 88] (below e^-87 nothing here
 * changes, above it float overflows anyway). */
static inline float gelu_exp(float x)
{
    /* written so that NaN ends up clamped too (every comparison with it is
     * false): the int conversion below is then defined, and GELU's NaN
     * still comes out through t and x */
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    /* round to nearest by the 1.5 * 2^23 trick (|x log2 e| < 2^22) */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

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
    const float e = 1.0f - p * t * gelu_exp(-a * a);
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
        const float pdf = GELU_RSQRT2PI * gelu_exp(-0.5f * x * x);
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
