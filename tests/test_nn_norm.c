/*
 * test_nn_norm.c: BatchNorm 2-D / 1-D (training and eval mode) and
 * LayerNorm. Finite-difference gradients of input, weight and bias for the
 * optimised and _ref kernels; the running-statistics update and eval-mode
 * output on a case computed by hand; optimised vs _ref on seeded inputs.
 * The fused BatchNorm2d + ReLU the same way, plus its overwrite mode
 * (accumulate false) against the unfused kernels.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test_nn_check.h"

enum norm_kind { NORM_BN2D, NORM_BN1D, NORM_LN, NORM_BN2D_RELU };

/* One context for the three layers; HW is 1 for BatchNorm1d and unused for
 * LayerNorm, whose rows are B and features C. */
struct norm_ctx {
    enum norm_kind kind;
    bool ref, training;
    int B, C, HW;
    float *x, *w, *bias, *out, *dout, *dx, *dw, *db;
    float *mean, *rstd, *rmean, *rvar;
};

static void norm_ctx_forward(void *p)
{
    struct norm_ctx *c = p;
    /* Training passes no running buffers: finite differences must not move
     * them. Eval reads them. */
    float *rm = c->training ? NULL : c->rmean;
    float *rv = c->training ? NULL : c->rvar;
    switch (c->kind) {
    case NORM_BN2D:
        (c->ref ? nn_batchnorm2d_forward_ref : nn_batchnorm2d_forward)(
            c->out, c->mean, c->rstd, rm, rv, c->x, c->w, c->bias, c->B, c->C,
            c->HW, c->training);
        break;
    case NORM_BN1D:
        (c->ref ? nn_batchnorm1d_forward_ref : nn_batchnorm1d_forward)(
            c->out, c->mean, c->rstd, rm, rv, c->x, c->w, c->bias, c->B, c->C,
            c->training);
        break;
    case NORM_LN:
        (c->ref ? nn_layernorm_forward_ref : nn_layernorm_forward)(
            c->out, c->mean, c->rstd, c->x, c->w, c->bias, c->B, c->C,
            NN_LN_EPS);
        break;
    case NORM_BN2D_RELU:
        (c->ref ? nn_batchnorm2d_relu_forward_ref
                : nn_batchnorm2d_relu_forward)(
            c->out, c->mean, c->rstd, rm, rv, c->x, c->w, c->bias, c->B, c->C,
            c->HW, c->training);
        break;
    }
}

static void norm_ctx_backward(void *p)
{
    struct norm_ctx *c = p;
    switch (c->kind) {
    case NORM_BN2D:
        (c->ref ? nn_batchnorm2d_backward_ref : nn_batchnorm2d_backward)(
            c->dx, c->dw, c->db, c->dout, c->x, c->mean, c->rstd, c->w, c->B,
            c->C, c->HW, c->training);
        break;
    case NORM_BN1D:
        (c->ref ? nn_batchnorm1d_backward_ref : nn_batchnorm1d_backward)(
            c->dx, c->dw, c->db, c->dout, c->x, c->mean, c->rstd, c->w, c->B,
            c->C, c->training);
        break;
    case NORM_LN:
        (c->ref ? nn_layernorm_backward_ref : nn_layernorm_backward)(
            c->dx, c->dw, c->db, c->dout, c->x, c->mean, c->rstd, c->w, c->B,
            c->C);
        break;
    case NORM_BN2D_RELU:
        (c->ref ? nn_batchnorm2d_relu_backward_ref
                : nn_batchnorm2d_relu_backward)(
            c->dx, c->dw, c->db, c->dout, c->out, c->x, c->mean, c->rstd, c->w,
            c->B, c->C, c->HW, c->training, true);
        break;
    }
}

static void norm_ctx_alloc(struct norm_ctx *c, uint64_t *seed)
{
    size_t n = (size_t)c->B * c->C * c->HW;
    size_t nstat = c->kind == NORM_LN ? (size_t)c->B : (size_t)c->C;
    c->x = malloc(sizeof(float) * n);
    c->dx = malloc(sizeof(float) * n);
    c->out = malloc(sizeof(float) * n);
    c->dout = malloc(sizeof(float) * n);
    c->w = malloc(sizeof(float) * c->C);
    c->dw = malloc(sizeof(float) * c->C);
    c->bias = malloc(sizeof(float) * c->C);
    c->db = malloc(sizeof(float) * c->C);
    c->mean = malloc(sizeof(float) * nstat);
    c->rstd = malloc(sizeof(float) * nstat);
    c->rmean = malloc(sizeof(float) * c->C);
    c->rvar = malloc(sizeof(float) * c->C);
    /* Off-centre inputs so the mean subtraction matters. */
    nn_fill_normal(c->x, n, seed, 1.5f);
    for (size_t i = 0; i < n; i++)
        c->x[i] += 0.7f;
    nn_fill_uniform(c->w, c->C, seed, 0.5f, 1.5f);
    nn_fill_normal(c->bias, c->C, seed, 0.5f);
    nn_fill_normal(c->rmean, c->C, seed, 0.5f);
    nn_fill_uniform(c->rvar, c->C, seed, 0.5f, 2.0f);
}

static void norm_ctx_free(struct norm_ctx *c)
{
    free(c->x), free(c->dx), free(c->out), free(c->dout), free(c->w);
    free(c->dw), free(c->bias), free(c->db), free(c->mean), free(c->rstd);
    free(c->rmean), free(c->rvar);
}

/* Moves inputs of BN + ReLU until no pre-activation lies within 0.08 of
 * ReLU's kink, so that no finite-difference step (1e-2 on x, w or b moves
 * one by at most ~0.05) crosses it. Shifting x changes the batch
 * statistics a little, hence the loop. */
static void bn_relu_away_from_kink(struct norm_ctx *c)
{
    const size_t n = (size_t)c->B * c->C * c->HW;
    for (int iter = 0; iter < 20; iter++) {
        int moved = 0;
        nn_batchnorm2d_forward_ref(c->out, c->mean, c->rstd,
                                   c->training ? NULL : c->rmean,
                                   c->training ? NULL : c->rvar, c->x, c->w,
                                   c->bias, c->B, c->C, c->HW, c->training);
        for (size_t i = 0; i < n; i++) {
            const int ch = (int)(i / c->HW % c->C);
            if (c->out[i] > -0.08f && c->out[i] < 0.08f) {
                c->x[i] += (c->out[i] >= 0.0f ? 0.25f : -0.25f) /
                           (c->rstd[ch] * c->w[ch]);
                moved++;
            }
        }
        if (!moved)
            return;
    }
    CU_FAIL("inputs stay near the ReLU kink");
}

/* The normalisations are smooth but not linear: central differences with
 * step 1e-2 on O(1) inputs carry a truncation error ~1e-4 relative, plus
 * float rounding of L (~1e-6 / 2e-2 = 5e-5). atol 2e-3 / rtol 1e-2 covers
 * both; a missing term of the batch-statistics gradient is off by O(0.1). */
static int norm_gradcheck(enum norm_kind kind, bool ref, bool training,
                          int B, int C, int HW, uint64_t seed)
{
    struct norm_ctx c = {.kind = kind, .ref = ref, .training = training,
                         .B = B, .C = C, .HW = HW};
    norm_ctx_alloc(&c, &seed);
    if (kind == NORM_BN2D_RELU)
        bn_relu_away_from_kink(&c);
    size_t n = (size_t)B * C * HW;
    struct nn_tensor t[] = {
        {"x", c.x, c.dx, n}, {"w", c.w, c.dw, C}, {"b", c.bias, c.db, C},
    };
    struct nn_case cs = {
        .forward = norm_ctx_forward, .backward = norm_ctx_backward,
        .ctx = &c, .out = c.out, .dout = c.dout, .n_out = n, .tensors = t,
        .n_tensors = 3, .eps = 1e-2, .atol = 2e-3, .rtol = 1e-2,
    };
    static const char *names[] = {"bn2d", "bn1d", "layernorm", "bn2d_relu"};
    char label[96];
    snprintf(label, sizeof label, "%s%s %s B%d C%d HW%d", names[kind],
             ref ? "_ref" : "", training ? "train" : "eval", B, C, HW);
    int fails = nn_case_check(&cs, seed, label);
    norm_ctx_free(&c);
    return fails;
}

static void test_norm_gradcheck(void)
{
    for (int ref = 0; ref < 2; ref++) {
        for (int tr = 0; tr < 2; tr++) {
            CU_ASSERT_EQUAL(norm_gradcheck(NORM_BN2D, ref, tr, 3, 4, 35, 10), 0);
            CU_ASSERT_EQUAL(norm_gradcheck(NORM_BN2D, ref, tr, 2, 3, 1, 11), 0);
            CU_ASSERT_EQUAL(norm_gradcheck(NORM_BN1D, ref, tr, 6, 70, 1, 12), 0);
        }
        for (int tr = 0; tr < 2; tr++)
            CU_ASSERT_EQUAL(
                norm_gradcheck(NORM_BN2D_RELU, ref, tr, 3, 4, 35, 15), 0);
        CU_ASSERT_EQUAL(norm_gradcheck(NORM_LN, ref, false, 5, 70, 1, 13), 0);
        CU_ASSERT_EQUAL(norm_gradcheck(NORM_LN, ref, false, 3, 3, 1, 14), 0);
    }
}

/* x = 1 2 3 4 in one channel (B=2, HW=2 or B=4 for 1-D): mean 2.5, biased
 * variance 1.25, unbiased 5/3. From running (0, 1), momentum 0.1 gives
 * running mean 0.25 and running var 0.9 + 0.1 * 5/3 = 1.0666667. */
static void test_bn_running_stats_by_hand(void)
{
    const float x[4] = {1, 2, 3, 4}, w = 1.0f, b = 0.0f;
    for (int v = 0; v < 3; v++) {
        float rm = 0.0f, rv = 1.0f, mean, rstd, out[4];
        if (v == 0)
            nn_batchnorm2d_forward(out, &mean, &rstd, &rm, &rv, x, &w, &b, 2,
                                   1, 2, true);
        else if (v == 1)
            nn_batchnorm2d_forward_ref(out, &mean, &rstd, &rm, &rv, x, &w, &b,
                                       2, 1, 2, true);
        else
            nn_batchnorm1d_forward(out, &mean, &rstd, &rm, &rv, x, &w, &b, 4,
                                   1, true);
        CU_ASSERT_DOUBLE_EQUAL(mean, 2.5, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(rstd, 1.0 / sqrt(1.25 + 1e-5), 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(rm, 0.25, 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(rv, 0.9 + 0.1 * 5.0 / 3.0, 1e-6);
        for (int i = 0; i < 4; i++)
            CU_ASSERT_DOUBLE_EQUAL(out[i], (x[i] - 2.5) / sqrt(1.25 + 1e-5),
                                   1e-5);
        /* Eval mode uses the running statistics and leaves them alone. */
        const float w2 = 2.0f, b2 = 0.5f;
        if (v == 2)
            nn_batchnorm1d_forward(out, &mean, &rstd, &rm, &rv, x, &w2, &b2,
                                   4, 1, false);
        else
            nn_batchnorm2d_forward(out, &mean, &rstd, &rm, &rv, x, &w2, &b2,
                                   2, 1, 2, false);
        double r = 1.0 / sqrt(0.9 + 0.1 * 5.0 / 3.0 + 1e-5);
        for (int i = 0; i < 4; i++)
            CU_ASSERT_DOUBLE_EQUAL(out[i], (x[i] - 0.25) * r * 2.0 + 0.5, 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(rm, 0.25, 1e-7);
        CU_ASSERT_DOUBLE_EQUAL(rv, 0.9 + 0.1 * 5.0 / 3.0, 1e-6);
        /* Eval backward: dx = w * rstd * dout, no batch terms. */
        const float g[4] = {1, -2, 0.5f, 3};
        float dx[4] = {0}, dw = 0.0f, db = 0.0f;
        nn_batchnorm2d_backward(dx, &dw, &db, g, x, &mean, &rstd, &w2, 2, 1,
                                2, false);
        for (int i = 0; i < 4; i++)
            CU_ASSERT_DOUBLE_EQUAL(dx[i], 2.0 * r * g[i], 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(db, 2.5, 1e-6);
    }
}

/* Optimised vs _ref on one kind: outputs, saved statistics, running
 * statistics and accumulated gradients agree to 1e-5 relative. */
static void norm_compare(enum norm_kind kind, bool training, int B, int C,
                         int HW, uint64_t seed)
{
    struct norm_ctx a = {.kind = kind, .training = training, .B = B, .C = C,
                         .HW = HW};
    struct norm_ctx r = a;
    r.ref = true;
    uint64_t s2 = seed;
    norm_ctx_alloc(&a, &seed);
    norm_ctx_alloc(&r, &s2);
    size_t n = (size_t)B * C * HW;
    size_t nstat = kind == NORM_LN ? (size_t)B : (size_t)C;
    nn_fill_normal(a.dout, n, &seed, 1.0f);
    memcpy(r.dout, a.dout, sizeof(float) * n);
    nn_fill_normal(a.dx, n, &seed, 1.0f);
    memcpy(r.dx, a.dx, sizeof(float) * n);
    memset(a.dw, 0, sizeof(float) * C), memset(r.dw, 0, sizeof(float) * C);
    memset(a.db, 0, sizeof(float) * C), memset(r.db, 0, sizeof(float) * C);
    norm_ctx_forward(&a);
    norm_ctx_forward(&r);
    if (kind != NORM_LN && training) { /* the running update, separately */
        if (kind == NORM_BN2D_RELU) {
            nn_batchnorm2d_relu_forward(a.out, a.mean, a.rstd, a.rmean,
                                        a.rvar, a.x, a.w, a.bias, B, C, HW,
                                        true);
            nn_batchnorm2d_relu_forward_ref(r.out, r.mean, r.rstd, r.rmean,
                                            r.rvar, r.x, r.w, r.bias, B, C,
                                            HW, true);
        } else if (kind == NORM_BN2D) {
            nn_batchnorm2d_forward(a.out, a.mean, a.rstd, a.rmean, a.rvar,
                                   a.x, a.w, a.bias, B, C, HW, true);
            nn_batchnorm2d_forward_ref(r.out, r.mean, r.rstd, r.rmean, r.rvar,
                                       r.x, r.w, r.bias, B, C, HW, true);
        } else {
            nn_batchnorm1d_forward(a.out, a.mean, a.rstd, a.rmean, a.rvar, a.x,
                                   a.w, a.bias, B, C, true);
            nn_batchnorm1d_forward_ref(r.out, r.mean, r.rstd, r.rmean, r.rvar,
                                       r.x, r.w, r.bias, B, C, true);
        }
        CU_ASSERT(nn_rel_err(a.rmean, r.rmean, C) < 1e-5);
        CU_ASSERT(nn_rel_err(a.rvar, r.rvar, C) < 1e-5);
    }
    norm_ctx_backward(&a);
    norm_ctx_backward(&r);
    double e[6] = {
        nn_rel_err(a.out, r.out, n), nn_rel_err(a.mean, r.mean, nstat),
        nn_rel_err(a.rstd, r.rstd, nstat), nn_rel_err(a.dx, r.dx, n),
        nn_rel_err(a.dw, r.dw, C), nn_rel_err(a.db, r.db, C),
    };
    for (int i = 0; i < 6; i++) {
        if (!(e[i] < 1e-5))
            printf("\nnorm kind %d train %d: rel err #%d = %.3g", kind,
                   training, i, e[i]);
        CU_ASSERT(e[i] < 1e-5);
    }
    norm_ctx_free(&a);
    norm_ctx_free(&r);
}

/* The fused BN + ReLU equals nn_batchnorm2d_forward then nn_relu_forward
 * bit for bit, and its backward equals nn_relu_backward into a zeroed
 * buffer then nn_batchnorm2d_backward; with accumulate false it overwrites
 * whatever dinp held. */
static void test_bn_relu_matches_unfused(void)
{
    const int B = 6, C = 5, HW = 49;
    const size_t n = (size_t)B * C * HW;
    for (int tr = 0; tr < 2; tr++) {
        uint64_t seed = 24 + tr;
        struct norm_ctx c = {.kind = NORM_BN2D, .training = tr, .B = B,
                             .C = C, .HW = HW};
        norm_ctx_alloc(&c, &seed);
        float *y = malloc(sizeof(float) * n), *gm = calloc(n, sizeof(float));
        float *dx = malloc(sizeof(float) * n);
        float dw[5] = {0}, db[5] = {0}, mean[5], rstd[5];
        float *rm = tr ? NULL : c.rmean, *rv = tr ? NULL : c.rvar;
        nn_fill_normal(c.dout, n, &seed, 1.0f);
        nn_batchnorm2d_forward(c.out, c.mean, c.rstd, rm, rv, c.x, c.w,
                               c.bias, B, C, HW, tr);
        nn_relu_forward(c.out, c.out, n);
        nn_batchnorm2d_relu_forward(y, mean, rstd, rm, rv, c.x, c.w, c.bias,
                                    B, C, HW, tr);
        CU_ASSERT(memcmp(y, c.out, sizeof(float) * n) == 0);
        CU_ASSERT(memcmp(mean, c.mean, sizeof mean) == 0);
        CU_ASSERT(memcmp(rstd, c.rstd, sizeof rstd) == 0);
        nn_relu_backward(gm, c.dout, c.out, n);
        memset(c.dx, 0, sizeof(float) * n);
        memset(c.dw, 0, sizeof(float) * C), memset(c.db, 0, sizeof(float) * C);
        nn_batchnorm2d_backward(c.dx, c.dw, c.db, gm, c.x, c.mean, c.rstd,
                                c.w, B, C, HW, tr);
        nn_fill_normal(dx, n, &seed, 1.0f); /* garbage to overwrite */
        nn_batchnorm2d_relu_backward(dx, dw, db, c.dout, y, c.x, mean, rstd,
                                     c.w, B, C, HW, tr, false);
        CU_ASSERT(memcmp(dx, c.dx, sizeof(float) * n) == 0);
        CU_ASSERT(memcmp(dw, c.dw, sizeof dw) == 0);
        CU_ASSERT(memcmp(db, c.db, sizeof db) == 0);
        free(y), free(gm), free(dx);
        norm_ctx_free(&c);
    }
}

static void test_norm_matches_ref(void)
{
    for (int tr = 0; tr < 2; tr++) {
        norm_compare(NORM_BN2D_RELU, tr, 8, 16, 49, 26);
        norm_compare(NORM_BN2D, tr, 8, 16, 49, 20);
        norm_compare(NORM_BN2D, tr, 5, 3, 784, 21);
        norm_compare(NORM_BN1D, tr, 64, 200, 1, 22);
    }
    norm_compare(NORM_LN, false, 33, 300, 1, 23);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"finite differences, train and eval", test_norm_gradcheck},
        {"running statistics by hand", test_bn_running_stats_by_hand},
        {"optimised matches _ref", test_norm_matches_ref},
        {"fused BN + ReLU matches the unfused kernels",
         test_bn_relu_matches_unfused},
        {NULL, NULL},
    };
    return testing_run("nn_norm", cases);
}
