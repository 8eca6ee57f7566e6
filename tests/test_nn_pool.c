/*
 * test_nn_pool.c: global average pooling and max pooling. Finite-difference
 * gradients for the optimised and _ref kernels (max pooling on distinct
 * inputs, so no step moves the winner), deterministic tie-breaking checked
 * index by index, padding that never wins, and optimised vs _ref.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test_nn_check.h"

struct pool_ctx {
    bool ref, max;
    int B, C, H, W, K, stride, pad;
    float *x, *out, *dout, *dx;
    int32_t *argmax;
};

static void pool_ctx_forward(void *p)
{
    struct pool_ctx *c = p;
    if (c->max)
        (c->ref ? nn_maxpool2d_forward_ref : nn_maxpool2d_forward)(
            c->out, c->argmax, c->x, c->B, c->C, c->H, c->W, c->K, c->stride,
            c->pad);
    else
        (c->ref ? nn_avgpool_global_forward_ref : nn_avgpool_global_forward)(
            c->out, c->x, c->B, c->C, c->H * c->W);
}

static void pool_ctx_backward(void *p)
{
    struct pool_ctx *c = p;
    if (c->max)
        (c->ref ? nn_maxpool2d_backward_ref : nn_maxpool2d_backward)(
            c->dx, c->dout, c->argmax, c->B, c->C, c->H, c->W, c->K,
            c->stride, c->pad);
    else
        (c->ref ? nn_avgpool_global_backward_ref : nn_avgpool_global_backward)(
            c->dx, c->dout, c->B, c->C, c->H * c->W);
}

/* Distinct values 0.01 apart in a seeded random order: a 1e-3 step can
 * never change which input wins a window. Both poolings are piecewise
 * linear, so only float rounding (~1e-4 after the step) remains. */
static void fill_distinct(float *x, size_t n, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.01f * (float)i - 0.005f * (float)n;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = testing_rand_u64(seed) % (i + 1);
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

static int pool_gradcheck(bool max, bool ref, int B, int C, int H, int W,
                          int K, int stride, int pad, uint64_t seed)
{
    struct pool_ctx c = {.ref = ref, .max = max, .B = B, .C = C, .H = H,
                         .W = W, .K = K, .stride = stride, .pad = pad};
    size_t nx = (size_t)B * C * H * W, no = (size_t)B * C;
    if (max)
        no *= (size_t)nn_conv2d_out_dim(H, K, stride, pad) *
              nn_conv2d_out_dim(W, K, stride, pad);
    c.x = malloc(sizeof(float) * nx), c.dx = malloc(sizeof(float) * nx);
    c.out = malloc(sizeof(float) * no), c.dout = malloc(sizeof(float) * no);
    c.argmax = malloc(sizeof(int32_t) * no);
    fill_distinct(c.x, nx, &seed);
    struct nn_tensor t[] = {{"x", c.x, c.dx, nx}};
    struct nn_case cs = {
        .forward = pool_ctx_forward, .backward = pool_ctx_backward, .ctx = &c,
        .out = c.out, .dout = c.dout, .n_out = no, .tensors = t,
        .n_tensors = 1, .eps = 1e-3, .atol = 1e-3, .rtol = 1e-3,
    };
    char label[96];
    snprintf(label, sizeof label, "%s%s %dx%d K%d s%d p%d",
             max ? "maxpool" : "avgpool", ref ? "_ref" : "", H, W, K, stride,
             pad);
    int fails = nn_case_check(&cs, seed, label);
    free(c.x), free(c.dx), free(c.out), free(c.dout), free(c.argmax);
    return fails;
}

static void test_pool_gradcheck(void)
{
    for (int ref = 0; ref < 2; ref++) {
        CU_ASSERT_EQUAL(pool_gradcheck(false, ref, 2, 3, 5, 7, 0, 0, 0, 70), 0);
        CU_ASSERT_EQUAL(pool_gradcheck(true, ref, 2, 2, 5, 7, 3, 2, 1, 71), 0);
        CU_ASSERT_EQUAL(pool_gradcheck(true, ref, 2, 2, 8, 8, 3, 2, 1, 72), 0);
        CU_ASSERT_EQUAL(pool_gradcheck(true, ref, 1, 3, 6, 5, 2, 2, 0, 73), 0);
        CU_ASSERT_EQUAL(pool_gradcheck(true, ref, 1, 2, 7, 7, 3, 1, 1, 74), 0);
    }
}

/* A constant 4x4 plane, 3x3 stride 2 pad 1: every window ties, and the
 * winner is the first in-image pixel of the window in row-major order. A
 * negative plane checks that padding never wins. */
static void test_maxpool_ties(void)
{
    for (int ref = 0; ref < 2; ref++)
        for (int sign = -1; sign <= 1; sign += 2) {
            float x[16], out[4], dx[16] = {0};
            int32_t arg[4];
            for (int i = 0; i < 16; i++)
                x[i] = 2.0f * sign;
            (ref ? nn_maxpool2d_forward_ref : nn_maxpool2d_forward)(
                out, arg, x, 1, 1, 4, 4, 3, 2, 1);
            const int32_t want[4] = {0, 1, 4, 5};
            for (int i = 0; i < 4; i++) {
                CU_ASSERT_EQUAL(arg[i], want[i]);
                CU_ASSERT_EQUAL(out[i], 2.0f * sign);
            }
            const float g[4] = {1, 2, 3, 4};
            (ref ? nn_maxpool2d_backward_ref : nn_maxpool2d_backward)(
                dx, g, arg, 1, 1, 4, 4, 3, 2, 1);
            CU_ASSERT_EQUAL(dx[0], 1.0f);
            CU_ASSERT_EQUAL(dx[1], 2.0f);
            CU_ASSERT_EQUAL(dx[4], 3.0f);
            CU_ASSERT_EQUAL(dx[5], 4.0f);
            CU_ASSERT_EQUAL(dx[2] + dx[3] + dx[6] + dx[15], 0.0f);
        }
    /* A later strict maximum wins over an earlier one. */
    const float y[4] = {1, 3, 3, 2};
    float o;
    int32_t a;
    nn_maxpool2d_forward(&o, &a, y, 1, 1, 2, 2, 2, 1, 0);
    CU_ASSERT_EQUAL(a, 1);
    CU_ASSERT_EQUAL(o, 3.0f);
}

/* Few distinct values (many ties) at a realistic size: outputs, argmax and
 * gradients of the two versions agree exactly. */
static void test_pool_matches_ref(void)
{
    const int B = 4, C = 8, H = 28, W = 28;
    const int OH = nn_conv2d_out_dim(H, 3, 2, 1), OW = nn_conv2d_out_dim(W, 3, 2, 1);
    const size_t nx = (size_t)B * C * H * W, no = (size_t)B * C * OH * OW;
    uint64_t seed = 80;
    float *x = malloc(sizeof(float) * nx);
    float *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no);
    float *g = malloc(sizeof(float) * no);
    float *d1 = malloc(sizeof(float) * nx), *d2 = malloc(sizeof(float) * nx);
    int32_t *a1 = malloc(sizeof(int32_t) * no), *a2 = malloc(sizeof(int32_t) * no);
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)(testing_rand_u64(&seed) % 3);
    nn_fill_normal(g, no, &seed, 1.0f);
    nn_fill_normal(d1, nx, &seed, 1.0f);
    memcpy(d2, d1, sizeof(float) * nx);
    nn_maxpool2d_forward(o1, a1, x, B, C, H, W, 3, 2, 1);
    nn_maxpool2d_forward_ref(o2, a2, x, B, C, H, W, 3, 2, 1);
    CU_ASSERT(memcmp(o1, o2, sizeof(float) * no) == 0);
    CU_ASSERT(memcmp(a1, a2, sizeof(int32_t) * no) == 0);
    nn_maxpool2d_backward(d1, g, a1, B, C, H, W, 3, 2, 1);
    nn_maxpool2d_backward_ref(d2, g, a2, B, C, H, W, 3, 2, 1);
    CU_ASSERT(nn_rel_err(d1, d2, nx) < 1e-6);

    nn_fill_normal(x, nx, &seed, 1.0f);
    nn_avgpool_global_forward(o1, x, B, C, H * W);
    nn_avgpool_global_forward_ref(o2, x, B, C, H * W);
    CU_ASSERT(nn_rel_err(o1, o2, (size_t)B * C) < 1e-5);
    memcpy(d2, d1, sizeof(float) * nx);
    nn_avgpool_global_backward(d1, g, B, C, H * W);
    nn_avgpool_global_backward_ref(d2, g, B, C, H * W);
    CU_ASSERT(nn_rel_err(d1, d2, nx) < 1e-6);
    free(x), free(o1), free(o2), free(g), free(d1), free(d2), free(a1), free(a2);
}

/* (1,2,2,2): channel means 2.5 and -1; dout spreads evenly. */
static void test_avgpool_by_hand(void)
{
    const float x[8] = {1, 2, 3, 4, 0, -2, -1, -1}, g[2] = {4, -8};
    float out[2], dx[8] = {0};
    nn_avgpool_global_forward(out, x, 1, 2, 4);
    CU_ASSERT_DOUBLE_EQUAL(out[0], 2.5, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(out[1], -1.0, 1e-6);
    nn_avgpool_global_backward(dx, g, 1, 2, 4);
    for (int i = 0; i < 8; i++)
        CU_ASSERT_DOUBLE_EQUAL(dx[i], i < 4 ? 1.0 : -2.0, 1e-6);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"finite differences", test_pool_gradcheck},
        {"max pool ties and padding", test_maxpool_ties},
        {"optimised matches _ref", test_pool_matches_ref},
        {"average pool by hand", test_avgpool_by_hand},
        {NULL, NULL},
    };
    return testing_run("nn_pool", cases);
}
