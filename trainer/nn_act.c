/*
 * nn_act.c: elementwise ReLU and the residual add, forward/backward (see nn.h
 * for the contract). Memory-bound loops: the optimised versions only add
 * OpenMP over the flat index; the _ref versions are the same loops serial.
 */
#include "nn.h"

/* out may alias inp here, so no restrict on the forward. */
void nn_relu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void nn_relu_backward(float *restrict dinp, const float *restrict dout,
                      const float *restrict out, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

void nn_relu_forward_ref(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void nn_relu_backward_ref(float *dinp, const float *dout, const float *out,
                          size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (out[i] > 0.0f)
            dinp[i] += dout[i];
}

/* out may alias a or b. */
void nn_add_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void nn_add_backward(float *da, float *db, const float *dout, size_t n)
{
    if (da) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++)
            da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++)
            db[i] += dout[i];
    }
}

void nn_add_forward_ref(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void nn_add_backward_ref(float *da, float *db, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (da)
            da[i] += dout[i];
        if (db)
            db[i] += dout[i];
    }
}
