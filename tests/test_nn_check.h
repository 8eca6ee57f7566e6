/*
 * test_nn_check.h: helpers shared by the tests/test_nn_*.c programs: seeded
 * fills, a relative error between two tensors, and one gradient-check
 * driver. The driver treats a layer as L = sum_i dout_i * out_i for a random
 * dout, compares backward's gradients with central finite differences of L
 * (evaluated in double over a float forward), and checks that a second
 * backward call accumulates (gradients exactly double).
 */
#ifndef LEJEPA_TEST_NN_CHECK_H
#define LEJEPA_TEST_NN_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"

static inline void nn_fill_normal(float *x, size_t n, uint64_t *seed,
                                  float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)testing_rand_normal(seed) * scale;
}

static inline void nn_fill_uniform(float *x, size_t n, uint64_t *seed,
                                   float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * (float)testing_rand_uniform(seed);
}

/* max |a - b| / max |b| (plain max |a - b| when b is all zero). */
static inline double nn_rel_err(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > num || isnan(d))
            num = d;
        if (fabs(b[i]) > den)
            den = fabs(b[i]);
    }
    return den > 0.0 ? num / den : num;
}

/* One tensor the layer reads and the gradient backward writes for it. */
struct nn_tensor {
    const char *name;
    float *value;
    float *grad;
    size_t n;
};

/* A layer under test: forward(ctx) recomputes out from the current values;
 * backward(ctx) accumulates into every grad from dout and the state of the
 * last forward. */
struct nn_case {
    void (*forward)(void *ctx);
    void (*backward)(void *ctx);
    void *ctx;
    const float *out;
    float *dout;
    size_t n_out;
    struct nn_tensor *tensors;
    int n_tensors;
    double eps;  /* finite-difference step */
    double atol; /* |fd - analytic| <= atol + rtol * |analytic| */
    double rtol;
};

static inline double nn_case_loss(struct nn_case *c)
{
    c->forward(c->ctx);
    double l = 0.0;
    for (size_t i = 0; i < c->n_out; i++)
        l += (double)c->dout[i] * c->out[i];
    return l;
}

/* Checks at most 64 evenly spread elements of each tensor (all of a small
 * one). Returns the number of failures and prints the first few. */
static inline int nn_case_check(struct nn_case *c, uint64_t seed,
                                const char *label)
{
    int fails = 0;
    if (c->n_tensors > 8)
        return 1;
    nn_fill_normal(c->dout, c->n_out, &seed, 1.0f);
    c->forward(c->ctx);
    for (int t = 0; t < c->n_tensors; t++)
        memset(c->tensors[t].grad, 0, sizeof(float) * c->tensors[t].n);
    c->backward(c->ctx);
    float *first[8];
    for (int t = 0; t < c->n_tensors; t++) {
        first[t] = malloc(sizeof(float) * c->tensors[t].n);
        memcpy(first[t], c->tensors[t].grad, sizeof(float) * c->tensors[t].n);
    }
    c->backward(c->ctx);
    for (int t = 0; t < c->n_tensors; t++) {
        struct nn_tensor *x = &c->tensors[t];
        for (size_t i = 0; i < x->n; i++)
            if (fabsf(x->grad[i] - 2.0f * first[t][i]) >
                1e-5f * (1.0f + fabsf(first[t][i]))) {
                if (fails++ < 5)
                    printf("\n%s %s[%zu]: backward does not accumulate "
                           "(%g then %g)", label, x->name, i, first[t][i],
                           x->grad[i]);
            }
        size_t step = x->n > 64 ? x->n / 64 : 1;
        for (size_t i = 0; i < x->n; i += step) {
            /* divide by the step float rounding actually took */
            const float v = x->value[i];
            const float hi = (float)(v + c->eps), lo = (float)(v - c->eps);
            x->value[i] = hi;
            double lp = nn_case_loss(c);
            x->value[i] = lo;
            double lm = nn_case_loss(c);
            x->value[i] = v;
            double fd = (lp - lm) / ((double)hi - lo);
            double an = first[t][i];
            if (!(fabs(fd - an) <= c->atol + c->rtol * fabs(an))) {
                if (fails++ < 5)
                    printf("\n%s d%s[%zu]: analytic %.6g, finite diff %.6g",
                           label, x->name, i, an, fd);
            }
        }
        free(first[t]);
    }
    c->forward(c->ctx);
    return fails;
}

#endif
