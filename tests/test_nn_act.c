/*
 * test_nn_act.c: ReLU and the residual add. Finite-difference gradients for
 * the optimised and _ref kernels, in-place ReLU with backward from the
 * output, optional NULL gradients of the add, and optimised vs _ref; the
 * fused add + ReLU the same way and against the unfused kernels.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test_nn_check.h"

struct act_ctx {
    bool ref;
    size_t n;
    float *a, *b, *out, *dout, *da, *db;
};

static void relu_ctx_forward(void *p)
{
    struct act_ctx *c = p;
    (c->ref ? nn_relu_forward_ref : nn_relu_forward)(c->out, c->a, c->n);
}

static void relu_ctx_backward(void *p)
{
    struct act_ctx *c = p;
    (c->ref ? nn_relu_backward_ref : nn_relu_backward)(c->da, c->dout, c->out,
                                                       c->n);
}

static void add_ctx_forward(void *p)
{
    struct act_ctx *c = p;
    (c->ref ? nn_add_forward_ref : nn_add_forward)(c->out, c->a, c->b, c->n);
}

static void add_ctx_backward(void *p)
{
    struct act_ctx *c = p;
    (c->ref ? nn_add_backward_ref : nn_add_backward)(c->da, c->db, c->dout,
                                                     c->n);
}

/* Inputs at least 0.05 away from ReLU's kink and a 1e-2 step, so the finite
 * difference never crosses it; both layers are piecewise linear, so only
 * float rounding (~1e-5 after dividing by the step) separates the two. */
static void add_relu_ctx_forward(void *p)
{
    struct act_ctx *c = p;
    (c->ref ? nn_add_relu_forward_ref : nn_add_relu_forward)(c->out, c->a,
                                                             c->b, c->n);
}

static void add_relu_ctx_backward(void *p)
{
    struct act_ctx *c = p;
    (c->ref ? nn_add_relu_backward_ref : nn_add_relu_backward)(
        c->da, c->db, c->dout, c->out, c->n, true, true);
}

static void fill_away_from_zero(float *x, size_t n, uint64_t *seed)
{
    nn_fill_uniform(x, n, seed, 0.05f, 2.0f);
    for (size_t i = 0; i < n; i++)
        if (testing_rand_uniform(seed) < 0.5)
            x[i] = -x[i];
}

static void test_act_gradcheck(void)
{
    const size_t n = 77;
    for (int ref = 0; ref < 2; ref++) {
        uint64_t seed = 30 + ref;
        struct act_ctx c = {.ref = ref, .n = n};
        c.a = malloc(sizeof(float) * n), c.b = malloc(sizeof(float) * n);
        c.out = malloc(sizeof(float) * n), c.dout = malloc(sizeof(float) * n);
        c.da = malloc(sizeof(float) * n), c.db = malloc(sizeof(float) * n);
        fill_away_from_zero(c.a, n, &seed);
        fill_away_from_zero(c.b, n, &seed);
        struct nn_tensor ta[] = {{"x", c.a, c.da, n}};
        struct nn_case relu = {
            .forward = relu_ctx_forward, .backward = relu_ctx_backward,
            .ctx = &c, .out = c.out, .dout = c.dout, .n_out = n,
            .tensors = ta, .n_tensors = 1, .eps = 1e-2, .atol = 1e-3,
            .rtol = 1e-3,
        };
        CU_ASSERT_EQUAL(nn_case_check(&relu, seed, ref ? "relu_ref" : "relu"), 0);
        struct nn_tensor tb[] = {{"a", c.a, c.da, n}, {"b", c.b, c.db, n}};
        struct nn_case add = relu;
        add.forward = add_ctx_forward, add.backward = add_ctx_backward;
        add.tensors = tb, add.n_tensors = 2;
        CU_ASSERT_EQUAL(nn_case_check(&add, seed, ref ? "add_ref" : "add"), 0);
        /* keep a + b away from the kink too */
        for (size_t i = 0; i < n; i++)
            if (c.a[i] + c.b[i] > -0.05f && c.a[i] + c.b[i] < 0.05f)
                c.b[i] += 0.1f;
        struct nn_case add_relu = add;
        add_relu.forward = add_relu_ctx_forward;
        add_relu.backward = add_relu_ctx_backward;
        CU_ASSERT_EQUAL(nn_case_check(&add_relu, seed,
                                      ref ? "add_relu_ref" : "add_relu"), 0);
        free(c.a), free(c.b), free(c.out), free(c.dout), free(c.da), free(c.db);
    }
}

static void test_act_matches_ref(void)
{
    const size_t n = 100003;
    uint64_t seed = 40;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    float *o1 = malloc(sizeof(float) * n), *o2 = malloc(sizeof(float) * n);
    float *g = malloc(sizeof(float) * n);
    float *d1 = malloc(sizeof(float) * n), *d2 = malloc(sizeof(float) * n);
    float *e1 = malloc(sizeof(float) * n), *e2 = malloc(sizeof(float) * n);
    nn_fill_normal(a, n, &seed, 1.0f);
    nn_fill_normal(b, n, &seed, 1.0f);
    nn_fill_normal(g, n, &seed, 1.0f);
    nn_fill_normal(d1, n, &seed, 1.0f);
    memcpy(d2, d1, sizeof(float) * n);

    nn_relu_forward(o1, a, n);
    nn_relu_forward_ref(o2, a, n);
    CU_ASSERT(memcmp(o1, o2, sizeof(float) * n) == 0);
    nn_relu_backward(d1, g, o1, n);
    nn_relu_backward_ref(d2, g, o2, n);
    CU_ASSERT(nn_rel_err(d1, d2, n) == 0.0);
    /* In place: the same output, and backward needs only that output. */
    memcpy(e1, a, sizeof(float) * n);
    nn_relu_forward(e1, e1, n);
    CU_ASSERT(memcmp(e1, o2, sizeof(float) * n) == 0);

    nn_add_forward(o1, a, b, n);
    nn_add_forward_ref(o2, a, b, n);
    CU_ASSERT(memcmp(o1, o2, sizeof(float) * n) == 0);
    memcpy(e1, a, sizeof(float) * n);
    nn_add_forward(e1, e1, b, n); /* out aliases a */
    CU_ASSERT(memcmp(e1, o2, sizeof(float) * n) == 0);
    memcpy(e1, d1, sizeof(float) * n);
    memcpy(e2, d1, sizeof(float) * n);
    memcpy(d2, d1, sizeof(float) * n);
    nn_add_backward(d1, e1, g, n);
    nn_add_backward_ref(d2, e2, g, n);
    CU_ASSERT(nn_rel_err(d1, d2, n) == 0.0);
    CU_ASSERT(nn_rel_err(e1, e2, n) == 0.0);
    /* NULL skips that side. */
    memcpy(e2, e1, sizeof(float) * n);
    nn_add_backward(NULL, e1, g, n);
    nn_add_backward_ref(NULL, e2, g, n);
    CU_ASSERT(nn_rel_err(e1, e2, n) == 0.0);
    nn_add_backward(d1, NULL, g, n);
    nn_add_backward_ref(d2, NULL, g, n);
    CU_ASSERT(nn_rel_err(d1, d2, n) == 0.0);
    free(a), free(b), free(o1), free(o2), free(g), free(d1), free(d2);
    free(e1), free(e2);
}

/* The fused add + ReLU equals add then ReLU bit for bit (in place too);
 * backward equals ReLU backward into a zeroed buffer then the add backward,
 * with each side overwritten or accumulated as asked, and NULL skipped. */
static void test_add_relu_matches_unfused(void)
{
    const size_t n = 100003;
    uint64_t seed = 41;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    float *y = malloc(sizeof(float) * n), *y2 = malloc(sizeof(float) * n);
    float *g = malloc(sizeof(float) * n), *gm = calloc(n, sizeof(float));
    float *d1 = malloc(sizeof(float) * n), *d2 = malloc(sizeof(float) * n);
    float *e1 = malloc(sizeof(float) * n), *e2 = malloc(sizeof(float) * n);
    nn_fill_normal(a, n, &seed, 1.0f);
    nn_fill_normal(b, n, &seed, 1.0f);
    nn_fill_normal(g, n, &seed, 1.0f);
    nn_add_forward(y, a, b, n);
    nn_relu_forward(y, y, n);
    memcpy(y2, a, sizeof(float) * n);
    nn_add_relu_forward(y2, y2, b, n); /* out aliases a */
    CU_ASSERT(memcmp(y, y2, sizeof(float) * n) == 0);
    nn_add_relu_forward_ref(y2, a, b, n);
    CU_ASSERT(memcmp(y, y2, sizeof(float) * n) == 0);
    nn_relu_backward(gm, g, y, n);
    for (int mode = 0; mode < 4; mode++) {
        const bool acc_a = mode & 1, acc_b = mode & 2;
        nn_fill_normal(d1, n, &seed, 1.0f);
        nn_fill_normal(e1, n, &seed, 1.0f);
        memcpy(d2, d1, sizeof(float) * n);
        memcpy(e2, e1, sizeof(float) * n);
        if (!acc_a)
            memset(d2, 0, sizeof(float) * n);
        if (!acc_b)
            memset(e2, 0, sizeof(float) * n);
        nn_add_backward(d2, e2, gm, n);
        nn_add_relu_backward(d1, e1, g, y, n, acc_a, acc_b);
        CU_ASSERT(memcmp(d1, d2, sizeof(float) * n) == 0);
        CU_ASSERT(memcmp(e1, e2, sizeof(float) * n) == 0);
        nn_add_relu_backward_ref(NULL, e1, g, y, n, acc_a, true);
        nn_add_backward(NULL, e2, gm, n);
        CU_ASSERT(memcmp(e1, e2, sizeof(float) * n) == 0);
    }
    free(a), free(b), free(y), free(y2), free(g), free(gm);
    free(d1), free(d2), free(e1), free(e2);
}

static void test_act_by_hand(void)
{
    const float x[4] = {-1.0f, 0.0f, 2.0f, -0.5f}, g[4] = {1, 2, 3, 4};
    float y[4], dx[4] = {10, 10, 10, 10};
    nn_relu_forward(y, x, 4);
    nn_relu_backward(dx, g, y, 4);
    const float want_y[4] = {0, 0, 2, 0}, want_dx[4] = {10, 10, 13, 10};
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(y[i], want_y[i]);
        CU_ASSERT_EQUAL(dx[i], want_dx[i]);
    }
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"finite differences", test_act_gradcheck},
        {"optimised matches _ref, in place", test_act_matches_ref},
        {"fused add + ReLU matches the unfused kernels",
         test_add_relu_matches_unfused},
        {"relu by hand", test_act_by_hand},
        {NULL, NULL},
    };
    return testing_run("nn_act", cases);
}
