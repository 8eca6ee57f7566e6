/*
 * test_nn_linear.c: the fully connected layer. Finite-difference gradients
 * of input, weight and bias (with and without bias) for the optimised and
 * _ref kernels, optimised vs _ref with accumulation and a NULL dinp (also
 * over several of the optimised kernel's row blocks), a case computed
 * by hand, and the sgemm time a profile counts (nn_gemm_profile).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test_nn_check.h"

struct linear_ctx {
    bool ref;
    int B, IN, OUT;
    float *x, *w, *bias, *out, *dout, *dx, *dw, *db;
};

static void linear_ctx_forward(void *p)
{
    struct linear_ctx *c = p;
    (c->ref ? nn_linear_forward_ref : nn_linear_forward)(
        c->out, c->x, c->w, c->bias, c->B, c->IN, c->OUT);
}

static void linear_ctx_backward(void *p)
{
    struct linear_ctx *c = p;
    (c->ref ? nn_linear_backward_ref : nn_linear_backward)(
        c->dx, c->dw, c->bias ? c->db : NULL, c->dout, c->x, c->w, c->B,
        c->IN, c->OUT);
}

/* Linear in every input: no truncation error, only float rounding of L
 * (~1e-6) over the 2e-2 step; atol 1e-3 / rtol 1e-3. */
static void test_linear_gradcheck(void)
{
    for (int v = 0; v < 4; v++) {
        uint64_t seed = 50 + v;
        struct linear_ctx c = {.ref = v & 1, .B = 5, .IN = 7, .OUT = 3};
        bool with_bias = v < 2;
        size_t nx = (size_t)c.B * c.IN, nw = (size_t)c.OUT * c.IN;
        size_t no = (size_t)c.B * c.OUT;
        c.x = malloc(sizeof(float) * nx), c.dx = malloc(sizeof(float) * nx);
        c.w = malloc(sizeof(float) * nw), c.dw = malloc(sizeof(float) * nw);
        c.bias = with_bias ? malloc(sizeof(float) * c.OUT) : NULL;
        c.db = malloc(sizeof(float) * c.OUT);
        c.out = malloc(sizeof(float) * no), c.dout = malloc(sizeof(float) * no);
        nn_fill_normal(c.x, nx, &seed, 1.0f);
        nn_fill_normal(c.w, nw, &seed, 0.5f);
        if (c.bias)
            nn_fill_normal(c.bias, c.OUT, &seed, 0.5f);
        struct nn_tensor t[] = {
            {"x", c.x, c.dx, nx}, {"w", c.w, c.dw, nw},
            {"b", c.bias, c.db, c.OUT},
        };
        struct nn_case cs = {
            .forward = linear_ctx_forward, .backward = linear_ctx_backward,
            .ctx = &c, .out = c.out, .dout = c.dout, .n_out = no,
            .tensors = t, .n_tensors = with_bias ? 3 : 2, .eps = 1e-2,
            .atol = 1e-3, .rtol = 1e-3,
        };
        CU_ASSERT_EQUAL(nn_case_check(&cs, seed, c.ref ? "linear_ref" : "linear"), 0);
        free(c.x), free(c.dx), free(c.w), free(c.dw), free(c.bias);
        free(c.db), free(c.out), free(c.dout);
    }
}

/* Optimised vs _ref on B rows, accumulating onto nonzero gradients. */
static void linear_compare(int B, int IN, int OUT, uint64_t seed)
{
    const size_t nx = (size_t)B * IN, nw = (size_t)OUT * IN, no = (size_t)B * OUT;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw);
    float *bias = malloc(sizeof(float) * OUT), *g = malloc(sizeof(float) * no);
    float *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no);
    float *dx1 = malloc(sizeof(float) * nx), *dx2 = malloc(sizeof(float) * nx);
    float *dw1 = malloc(sizeof(float) * nw), *dw2 = malloc(sizeof(float) * nw);
    float *dw3 = malloc(sizeof(float) * nw);
    float *db1 = malloc(sizeof(float) * OUT), *db2 = malloc(sizeof(float) * OUT);
    nn_fill_normal(x, nx, &seed, 1.0f);
    nn_fill_normal(w, nw, &seed, 0.1f);
    nn_fill_normal(bias, OUT, &seed, 1.0f);
    nn_fill_normal(g, no, &seed, 1.0f);
    nn_fill_normal(dx1, nx, &seed, 1.0f);
    nn_fill_normal(dw1, nw, &seed, 1.0f);
    nn_fill_normal(db1, OUT, &seed, 1.0f);
    memcpy(dx2, dx1, sizeof(float) * nx);
    memcpy(dw2, dw1, sizeof(float) * nw);
    memcpy(dw3, dw1, sizeof(float) * nw);
    memcpy(db2, db1, sizeof(float) * OUT);
    nn_linear_forward(o1, x, w, bias, B, IN, OUT);
    nn_linear_forward_ref(o2, x, w, bias, B, IN, OUT);
    CU_ASSERT(nn_rel_err(o1, o2, no) < 1e-5);
    nn_linear_backward(dx1, dw1, db1, g, x, w, B, IN, OUT);
    nn_linear_backward_ref(dx2, dw2, db2, g, x, w, B, IN, OUT);
    CU_ASSERT(nn_rel_err(dx1, dx2, nx) < 1e-5);
    CU_ASSERT(nn_rel_err(dw1, dw2, nw) < 1e-5);
    CU_ASSERT(nn_rel_err(db1, db2, OUT) < 1e-5);
    nn_linear_backward(NULL, dw3, NULL, g, x, w, B, IN, OUT);
    CU_ASSERT(nn_rel_err(dw3, dw1, nw) < 1e-6);
    free(x), free(w), free(bias), free(g), free(o1), free(o2), free(dx1);
    free(dx2), free(dw1), free(dw2), free(dw3), free(db1), free(db2);
}

static void test_linear_matches_ref(void)
{
    linear_compare(64, 300, 130, 60);
    /* two blocks of nn_linear.c's 1,024 rows and a remainder */
    linear_compare(2500, 40, 24, 61);
}

/* x = (1, 2), W = [[1,0],[0,1],[1,1]], b = (0.5, -0.5, 0): y = (1.5, 1.5, 3).
 * dout = (1, 0, 2): dx = dout W = (3, 2), dW = dout^T x, db = dout. */
static void test_linear_by_hand(void)
{
    const float x[2] = {1, 2}, w[6] = {1, 0, 0, 1, 1, 1};
    const float b[3] = {0.5f, -0.5f, 0.0f}, g[3] = {1, 0, 2};
    for (int ref = 0; ref < 2; ref++) {
        float y[3], dx[2] = {0}, dw[6] = {0}, db[3] = {0};
        (ref ? nn_linear_forward_ref : nn_linear_forward)(y, x, w, b, 1, 2, 3);
        CU_ASSERT_DOUBLE_EQUAL(y[0], 1.5, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(y[1], 1.5, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(y[2], 3.0, 1e-6);
        (ref ? nn_linear_backward_ref : nn_linear_backward)(dx, dw, db, g, x,
                                                            w, 1, 2, 3);
        const float want_dw[6] = {1, 2, 0, 0, 2, 4};
        CU_ASSERT_DOUBLE_EQUAL(dx[0], 3.0, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(dx[1], 2.0, 1e-6);
        for (int i = 0; i < 6; i++)
            CU_ASSERT_DOUBLE_EQUAL(dw[i], want_dw[i], 1e-6);
        for (int i = 0; i < 3; i++)
            CU_ASSERT_DOUBLE_EQUAL(db[i], g[i], 1e-6);
    }
}

/* With nn_gemm_profile set the kernel's sgemm time is counted, without
 * it nothing is. */
static void test_gemm_profile_counts(void)
{
    const int B = 256, IN = 256, OUT = 256;
    float *x = calloc((size_t)B * IN, sizeof(float));
    float *w = calloc((size_t)OUT * IN, sizeof(float));
    float *y = calloc((size_t)B * OUT, sizeof(float));
    CU_ASSERT_FATAL(x && w && y);
    const double before = nn_gemm_thread_seconds;
    nn_linear_forward(y, x, w, NULL, B, IN, OUT);
    CU_ASSERT_EQUAL(nn_gemm_thread_seconds, before);
    nn_gemm_profile = true;
    for (int r = 0; r < 4; r++)
        nn_linear_forward(y, x, w, NULL, B, IN, OUT);
    nn_gemm_profile = false;
    CU_ASSERT(nn_gemm_thread_seconds > before);
    free(x);
    free(w);
    free(y);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"finite differences", test_linear_gradcheck},
        {"optimised matches _ref", test_linear_matches_ref},
        {"hand-computed case", test_linear_by_hand},
        {"sgemm time counted only when profiling", test_gemm_profile_counts},
        {NULL, NULL},
    };
    return testing_run("nn_linear", cases);
}
