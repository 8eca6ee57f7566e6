/*
 * test_nn_loss.c: softmax cross-entropy. Finite differences of the returned
 * loss against dlogits for the optimised and _ref versions, optimised vs
 * _ref (loss, accuracy count, dlogits; NULL outputs), cases computed by
 * hand, and stability on extreme logits.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test_nn_check.h"

typedef float (*xent_fn)(float *, int *, const float *, const int32_t *, int,
                         int);

struct xent_ctx {
    xent_fn fn;
    int B, K;
    float *logits, *dlogits, *tmp, loss, dloss;
    int32_t *labels;
};

static void xent_ctx_forward(void *p)
{
    struct xent_ctx *c = p;
    c->loss = c->fn(NULL, NULL, c->logits, c->labels, c->B, c->K);
}

/* The kernel WRITES dlogits; the driver expects accumulation, so the test
 * adds dL/dloss * dlogits itself. */
static void xent_ctx_backward(void *p)
{
    struct xent_ctx *c = p;
    c->fn(c->tmp, NULL, c->logits, c->labels, c->B, c->K);
    for (int i = 0; i < c->B * c->K; i++)
        c->dlogits[i] += c->dloss * c->tmp[i];
}

/* Smooth in the logits: step 1e-2 gives truncation ~1e-5 on gradients of
 * size ~1/B, plus float rounding of the loss (~2e-7 / 2e-2 = 1e-5). atol
 * 2e-4 / rtol 1e-2 is well below the 1/B = 0.14 scale of a wrong term. */
static void test_xent_gradcheck(void)
{
    for (int ref = 0; ref < 2; ref++) {
        uint64_t seed = 90 + ref;
        struct xent_ctx c = {
            .fn = ref ? nn_crossentropy_forward_ref : nn_crossentropy_forward,
            .B = 7, .K = 5,
        };
        c.logits = malloc(sizeof(float) * 35);
        c.dlogits = malloc(sizeof(float) * 35);
        c.tmp = malloc(sizeof(float) * 35);
        c.labels = malloc(sizeof(int32_t) * 7);
        nn_fill_normal(c.logits, 35, &seed, 2.0f);
        for (int b = 0; b < 7; b++)
            c.labels[b] = (int32_t)(testing_rand_u64(&seed) % 5);
        struct nn_tensor t[] = {{"logits", c.logits, c.dlogits, 35}};
        struct nn_case cs = {
            .forward = xent_ctx_forward, .backward = xent_ctx_backward,
            .ctx = &c, .out = &c.loss, .dout = &c.dloss, .n_out = 1,
            .tensors = t, .n_tensors = 1, .eps = 1e-2, .atol = 2e-4,
            .rtol = 1e-2,
        };
        CU_ASSERT_EQUAL(nn_case_check(&cs, seed, ref ? "xent_ref" : "xent"), 0);
        free(c.logits), free(c.dlogits), free(c.tmp), free(c.labels);
    }
}

static void test_xent_matches_ref(void)
{
    const int B = 200, K = 10;
    uint64_t seed = 95;
    float *x = malloc(sizeof(float) * B * K);
    float *d1 = malloc(sizeof(float) * B * K), *d2 = malloc(sizeof(float) * B * K);
    int32_t *y = malloc(sizeof(int32_t) * B);
    nn_fill_normal(x, (size_t)B * K, &seed, 3.0f);
    for (int b = 0; b < B; b++)
        y[b] = (int32_t)(testing_rand_u64(&seed) % K);
    int c1 = -1, c2 = -2, c3 = -3;
    float l1 = nn_crossentropy_forward(d1, &c1, x, y, B, K);
    float l2 = nn_crossentropy_forward_ref(d2, &c2, x, y, B, K);
    float l3 = nn_crossentropy_forward(NULL, &c3, x, y, B, K);
    float l4 = nn_crossentropy_forward(NULL, NULL, x, y, B, K);
    CU_ASSERT_DOUBLE_EQUAL(l1, l2, 1e-5 * l2);
    CU_ASSERT_EQUAL(l1, l3);
    CU_ASSERT_EQUAL(l1, l4);
    CU_ASSERT_EQUAL(c1, c2);
    CU_ASSERT_EQUAL(c1, c3);
    CU_ASSERT(c1 > B / K / 2 && c1 < B); /* some right, some wrong */
    CU_ASSERT(nn_rel_err(d1, d2, (size_t)B * K) < 1e-5);
    free(x), free(d1), free(d2), free(y);
}

/* Rows (1,2,3) with label 2: loss log(e + e^2 + e^3) - 3 = 0.4076059644;
 * with label 0: 2.4076059644. Row (0,0) label 0: log 2 and a tie that the
 * first maximum wins (counted correct). */
static void test_xent_by_hand(void)
{
    const double l2 = 0.4076059644443806;
    for (int ref = 0; ref < 2; ref++) {
        xent_fn fn = ref ? nn_crossentropy_forward_ref : nn_crossentropy_forward;
        const float x[6] = {1, 2, 3, 1, 2, 3};
        const int32_t y[2] = {2, 0};
        float d[6];
        int correct = -1;
        float loss = fn(d, &correct, x, y, 2, 3);
        CU_ASSERT_DOUBLE_EQUAL(loss, l2 + 1.0, 1e-6);
        CU_ASSERT_EQUAL(correct, 1);
        const double z = exp(1.0) + exp(2.0) + exp(3.0);
        const double p[3] = {exp(1.0) / z, exp(2.0) / z, exp(3.0) / z};
        for (int k = 0; k < 3; k++) {
            CU_ASSERT_DOUBLE_EQUAL(d[k], (p[k] - (k == 2)) / 2.0, 1e-6);
            CU_ASSERT_DOUBLE_EQUAL(d[3 + k], (p[k] - (k == 0)) / 2.0, 1e-6);
        }
        const float t[2] = {0, 0};
        const int32_t y0 = 0;
        loss = fn(d, &correct, t, &y0, 1, 2);
        CU_ASSERT_DOUBLE_EQUAL(loss, log(2.0), 1e-6);
        CU_ASSERT_EQUAL(correct, 1);
        CU_ASSERT_DOUBLE_EQUAL(d[0], -0.5, 1e-7);
        CU_ASSERT_DOUBLE_EQUAL(d[1], 0.5, 1e-7);
        /* Extreme logits stay finite: loss 1000, dlogits (1, -1). */
        const float e[2] = {1000.0f, 0.0f};
        const int32_t y1 = 1;
        loss = fn(d, &correct, e, &y1, 1, 2);
        CU_ASSERT_DOUBLE_EQUAL(loss, 1000.0, 1e-3);
        CU_ASSERT_EQUAL(correct, 0);
        CU_ASSERT_DOUBLE_EQUAL(d[0], 1.0, 1e-7);
        CU_ASSERT_DOUBLE_EQUAL(d[1], -1.0, 1e-7);
    }
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"finite differences", test_xent_gradcheck},
        {"optimised matches _ref", test_xent_matches_ref},
        {"hand-computed cases", test_xent_by_hand},
        {NULL, NULL},
    };
    return testing_run("nn_loss", cases);
}
