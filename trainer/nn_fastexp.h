/*
 * nn_fastexp.h: e^x for float loops that must vectorise (GELU, softmax).
 * libm's expf is a scalar call; this inline form compiles to 8 lanes with
 * AVX2 inside `omp simd` loops. e^x = 2^n e^r, n = round(x log2 e),
 * |r| <= ln2 / 2, with Cephes' expf polynomial (relative error ~1e-7) and
 * 2^n built in the exponent bits; x is clamped to [-87, 88] (below e^-87
 * nothing here changes, above it float overflows anyway).
 */
#ifndef LEJEPA_NN_FASTEXP_H
#define LEJEPA_NN_FASTEXP_H

#include <stdint.h>
#include <string.h>

static inline float nn_fast_expf(float x)
{
    /* written so that NaN ends up clamped too (every comparison with it is
     * false): the int conversion below is then defined */
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

#endif
