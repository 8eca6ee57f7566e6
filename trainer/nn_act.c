/*
 * nn_act.c: elementwise ReLU and the residual add, forward/backward (see nn.h
 * for the contract). Memory-bound loops: the optimised versions only add
 * OpenMP over the flat index; the _ref versions are the same loops serial.
 * nn_add_relu_* fuse the residual add with the ReLU after it (one parallel
 * region for both layers, forward and backward).
 */
#include "nn.h"

#include <stdbool.h>

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

void nn_add_scaled_rows_forward(float *out, const float *a, const float *x,
                                const float *scale, int rows, size_t row)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float s = scale[r];
        const size_t o = (size_t)r * row;
        for (size_t i = 0; i < row; i++)
            out[o + i] = s * a[o + i] + x[o + i];
    }
}

void nn_add_scaled_rows_backward(float *da, float *dx, const float *dout,
                                 const float *scale, int rows, size_t row)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float s = scale[r];
        const size_t o = (size_t)r * row;
        for (size_t i = 0; i < row; i++) {
            if (da)
                da[o + i] += s * dout[o + i];
            if (dx)
                dx[o + i] += dout[o + i];
        }
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

/* out may alias a or b. */
void nn_add_relu_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float v = a[i] + b[i];
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

/* One side of nn_add_relu_backward, inside the caller's parallel region. */
static void add_relu_backward_side(float *restrict d,
                                   const float *restrict dout,
                                   const float *restrict out, size_t n,
                                   bool accumulate)
{
    if (accumulate) {
#pragma omp for simd schedule(static) nowait
        for (size_t i = 0; i < n; i++)
            d[i] += out[i] > 0.0f ? dout[i] : 0.0f;
    } else {
#pragma omp for simd schedule(static) nowait
        for (size_t i = 0; i < n; i++)
            d[i] = out[i] > 0.0f ? dout[i] : 0.0f;
    }
}

void nn_add_relu_backward(float *da, float *db, const float *dout,
                          const float *out, size_t n, bool accumulate_a,
                          bool accumulate_b)
{
#pragma omp parallel
    {
        if (da)
            add_relu_backward_side(da, dout, out, n, accumulate_a);
        if (db)
            add_relu_backward_side(db, dout, out, n, accumulate_b);
    }
}

void nn_add_relu_forward_ref(float *out, const float *a, const float *b,
                             size_t n)
{
    nn_add_forward_ref(out, a, b, n);
    nn_relu_forward_ref(out, out, n);
}

void nn_add_relu_backward_ref(float *da, float *db, const float *dout,
                              const float *out, size_t n, bool accumulate_a,
                              bool accumulate_b)
{
    for (size_t i = 0; i < n; i++) {
        const float g = out[i] > 0.0f ? dout[i] : 0.0f;
        if (da)
            da[i] = (accumulate_a ? da[i] : 0.0f) + g;
        if (db)
            db[i] = (accumulate_b ? db[i] : 0.0f) + g;
    }
}
