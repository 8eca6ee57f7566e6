/*
 * test_nn_vit.c: the ViT kernels of nn_vit.h (GELU, multi-head attention,
 * patch embedding with CLS, position-embedding interpolation and padding).
 * Hand-computed cases for GELU and for attention on two tokens; central
 * finite differences of every input and parameter for the optimised and
 * _ref kernels; optimised vs _ref on odd shapes (3 heads, T = 7 and 50,
 * crops 14 -> 16 with patch 4, grids 7x7 -> 4x4 / 8x8 / 3x4); a padded
 * crop equal to the same crop padded by hand.
 * The PyTorch fixtures are checked by test_nn_vit_ref.c.
 */
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_vit.h"
#include "test_nn_check.h"

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* ---- GELU ---------------------------------------------------------------- */

struct gelu_ctx {
    bool ref;
    size_t n;
    float *x, *out, *dout, *dx;
};

static void gelu_ctx_forward(void *p)
{
    struct gelu_ctx *c = p;
    (c->ref ? nn_gelu_forward_ref : nn_gelu_forward)(c->out, c->x, c->n);
}

static void gelu_ctx_backward(void *p)
{
    struct gelu_ctx *c = p;
    (c->ref ? nn_gelu_backward_ref : nn_gelu_backward)(c->dx, c->dout, c->x,
                                                       c->n);
}

/* Smooth: step 1e-3 gives truncation ~1e-7, float rounding of L (~1e-6)
 * over the step ~1e-3. */
static void test_gelu_gradcheck(void)
{
    for (int ref = 0; ref < 2; ref++) {
        uint64_t seed = 100 + ref;
        struct gelu_ctx c = {.ref = ref, .n = 37};
        c.x = falloc(c.n), c.out = falloc(c.n), c.dout = falloc(c.n);
        c.dx = falloc(c.n);
        nn_fill_normal(c.x, c.n, &seed, 2.0f);
        struct nn_tensor t[] = {{"x", c.x, c.dx, c.n}};
        struct nn_case cs = {
            .forward = gelu_ctx_forward, .backward = gelu_ctx_backward,
            .ctx = &c, .out = c.out, .dout = c.dout, .n_out = c.n,
            .tensors = t, .n_tensors = 1, .eps = 1e-3, .atol = 2e-3,
            .rtol = 1e-3,
        };
        CU_ASSERT_EQUAL(nn_case_check(&cs, seed, ref ? "gelu_ref" : "gelu"), 0);
        free(c.x), free(c.out), free(c.dout), free(c.dx);
    }
}

/* gelu(0) = 0, gelu(1) = Phi(1) = 0.8413447, gelu(-1) = -0.1586553;
 * gelu'(0) = 0.5, gelu'(1) = Phi(1) + phi(1) = 1.0833155,
 * gelu'(-1) = Phi(-1) - phi(-1) = -0.0833155. */
static void test_gelu_by_hand(void)
{
    const float x[3] = {0.0f, 1.0f, -1.0f}, g[3] = {1, 1, 1};
    const double y_want[3] = {0.0, 0.8413447, -0.1586553};
    const double d_want[3] = {0.5, 1.0833155, -0.0833155};
    for (int ref = 0; ref < 2; ref++) {
        float y[3], dx[3] = {1, 1, 1};
        (ref ? nn_gelu_forward_ref : nn_gelu_forward)(y, x, 3);
        (ref ? nn_gelu_backward_ref : nn_gelu_backward)(dx, g, x, 3);
        for (int i = 0; i < 3; i++) {
            CU_ASSERT_DOUBLE_EQUAL(y[i], y_want[i], 1e-6);
            CU_ASSERT_DOUBLE_EQUAL(dx[i], 1.0 + d_want[i], 1e-6);
        }
    }
    /* the far tails and NaN (the inline exp clamps its argument) */
    const float xt[3] = {100.0f, -100.0f, NAN};
    float yt[3], dt[3] = {0, 0, 0};
    nn_gelu_forward(yt, xt, 3);
    nn_gelu_backward(dt, g, xt, 3);
    CU_ASSERT_DOUBLE_EQUAL(yt[0], 100.0, 1e-4);
    CU_ASSERT_DOUBLE_EQUAL(dt[0], 1.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(yt[1], 0.0, 1e-30);
    CU_ASSERT_DOUBLE_EQUAL(dt[1], 0.0, 1e-30);
    CU_ASSERT(isnan(yt[2]) && isnan(dt[2]));
}

static void test_gelu_matches_ref(void)
{
    const size_t n = 10007;
    uint64_t seed = 110;
    float *x = falloc(n), *g = falloc(n), *y1 = falloc(n), *y2 = falloc(n);
    float *d1 = falloc(n), *d2 = falloc(n);
    nn_fill_normal(x, n, &seed, 3.0f);
    nn_fill_normal(g, n, &seed, 1.0f);
    nn_gelu_forward(y1, x, n);
    nn_gelu_forward_ref(y2, x, n);
    CU_ASSERT(nn_rel_err(y1, y2, n) < 1e-6);
    nn_gelu_backward(d1, g, x, n);
    nn_gelu_backward_ref(d2, g, x, n);
    CU_ASSERT(nn_rel_err(d1, d2, n) < 1e-6);
    nn_gelu_forward(x, x, n); /* in place */
    CU_ASSERT(nn_rel_err(x, y2, n) < 1e-6);
    free(x), free(g), free(y1), free(y2), free(d1), free(d2);
}

/* ---- attention ------------------------------------------------------------ */

enum attn_kind { ATTN_OPT, ATTN_REF };

static void attn_forward(enum attn_kind k, float *out, float *att,
                         const float *qkv, float *scratch, int B, int T,
                         int NH, int HD)
{
    (k == ATTN_OPT ? nn_attention_forward
                   : nn_attention_forward_ref)(out, att, qkv, scratch, B, T,
                                               NH, HD);
}

static void attn_backward(enum attn_kind k, float *dqkv, const float *dout,
                          const float *qkv, const float *att, float *scratch,
                          int B, int T, int NH, int HD)
{
    (k == ATTN_OPT ? nn_attention_backward
                   : nn_attention_backward_ref)(dqkv, dout, qkv, att, scratch,
                                                B, T, NH, HD);
}

struct attn_ctx {
    enum attn_kind kind;
    int B, T, NH, HD;
    float *qkv, *dqkv, *out, *dout, *att, *scratch;
};

static void attn_ctx_forward(void *p)
{
    struct attn_ctx *c = p;
    attn_forward(c->kind, c->out, c->att, c->qkv, c->scratch, c->B, c->T,
                 c->NH, c->HD);
}

static void attn_ctx_backward(void *p)
{
    struct attn_ctx *c = p;
    attn_backward(c->kind, c->dqkv, c->dout, c->qkv, c->att, c->scratch, c->B,
                  c->T, c->NH, c->HD);
}

/* Smooth; step 1e-2 on O(1) inputs: truncation ~1e-5, rounding of L
 * (~1e-6 of |L| ~ 10) over the step ~1e-3. */
static void test_attention_gradcheck(void)
{
    static const char *names[] = {"attention", "attention_ref"};
    for (int k = ATTN_OPT; k <= ATTN_REF; k++) {
        uint64_t seed = 200 + k;
        struct attn_ctx c = {.kind = k, .B = 2, .T = 5, .NH = 3, .HD = 4};
        const size_t D = (size_t)c.NH * c.HD, nq = (size_t)c.B * c.T * 3 * D;
        const size_t no = (size_t)c.B * c.T * D;
        c.qkv = falloc(nq), c.dqkv = falloc(nq);
        c.out = falloc(no), c.dout = falloc(no);
        c.att = falloc((size_t)c.B * c.NH * c.T * c.T);
        c.scratch = falloc(nn_attention_scratch_floats(c.T, c.HD));
        nn_fill_normal(c.qkv, nq, &seed, 1.0f);
        struct nn_tensor t[] = {{"qkv", c.qkv, c.dqkv, nq}};
        struct nn_case cs = {
            .forward = attn_ctx_forward, .backward = attn_ctx_backward,
            .ctx = &c, .out = c.out, .dout = c.dout, .n_out = no,
            .tensors = t, .n_tensors = 1, .eps = 1e-2, .atol = 2e-3,
            .rtol = 1e-2,
        };
        CU_ASSERT_EQUAL(nn_case_check(&cs, seed, names[k]), 0);
        free(c.qkv), free(c.dqkv), free(c.out), free(c.dout), free(c.att);
        free(c.scratch);
    }
}

/* One head of width 1 (scale 1), tokens (q, k, v) = (1, 0, 2), (0, ln 3, 6).
 * Row 0 scores (0, ln 3): p = (1/4, 3/4), out = 5; row 1 scores (0, 0):
 * p = (1/2, 1/2), out = 4. With dout = (1, 0): dv = (1/4, 3/4);
 * dp_0 = (2, 6), <p_0, dp_0> = 5, ds_0 = (-3/4, 3/4); dq_0 = 3/4 ln 3,
 * dq_1 = 0, dk = q_0 ds_0 = (-3/4, 3/4). */
static void test_attention_by_hand(void)
{
    const float l3 = logf(3.0f);
    const float qkv[6] = {1, 0, 2, 0, l3, 6}, g[2] = {1, 0};
    const float want_p[4] = {0.25f, 0.75f, 0.5f, 0.5f};
    const float want_d[6] = {0.75f * l3, -0.75f, 0.25f, 0, 0.75f, 0.75f};
    float scratch[NN_ATTN_MAX_SLOTS * 4];
    for (int k = ATTN_OPT; k <= ATTN_REF; k++) {
        float out[2], att[4], d[6] = {0};
        attn_forward(k, out, att, qkv, scratch, 1, 2, 1, 1);
        CU_ASSERT_DOUBLE_EQUAL(out[0], 5.0, 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(out[1], 4.0, 1e-5);
        for (int i = 0; i < 4; i++)
            CU_ASSERT_DOUBLE_EQUAL(att[i], want_p[i], 1e-6);
        attn_backward(k, d, g, qkv, att, scratch, 1, 2, 1, 1);
        for (int i = 0; i < 6; i++)
            CU_ASSERT_DOUBLE_EQUAL(d[i], want_d[i], 1e-5);
    }
}

/* A NaN key spoils every score against it: both kernels give NaN rows
 * (the vectorised exp clamps NaN; the softmax must not hide it). */
static void test_attention_nan(void)
{
    /* T = 3 tokens of (q, k, v), one head of width 1; k of token 1 NaN */
    const float qkv[9] = {1, 0.5f, 2, 0.3f, NAN, 1, -1, 0.2f, 3};
    float scratch[NN_ATTN_MAX_SLOTS * 9];
    for (int k = ATTN_OPT; k <= ATTN_REF; k++) {
        float out[3], att[9];
        attn_forward(k, out, att, qkv, scratch, 1, 3, 1, 1);
        for (int i = 0; i < 3; i++)
            CU_ASSERT(isnan(out[i]));
        CU_ASSERT(isnan(att[1]));
    }
}

/* Optimised vs _ref: forward output and probabilities, backward
 * accumulating onto a nonzero dqkv; rows of att sum to 1. */
static void attention_compare(int B, int T, int NH, int HD, uint64_t seed)
{
    const size_t D = (size_t)NH * HD, nq = (size_t)B * T * 3 * D;
    const size_t no = (size_t)B * T * D, na = (size_t)B * NH * T * T;
    float *qkv = falloc(nq), *g = falloc(no), *init = falloc(nq);
    float *o_ref = falloc(no), *a_ref = falloc(na), *d_ref = falloc(nq);
    float *o = falloc(no), *a = falloc(na), *d = falloc(nq);
    float *scratch = falloc(nn_attention_scratch_floats(T, HD));
    nn_fill_normal(qkv, nq, &seed, 1.5f);
    nn_fill_normal(g, no, &seed, 1.0f);
    nn_fill_normal(init, nq, &seed, 1.0f);
    memcpy(d_ref, init, sizeof(float) * nq);
    nn_attention_forward_ref(o_ref, a_ref, qkv, NULL, B, T, NH, HD);
    nn_attention_backward_ref(d_ref, g, qkv, a_ref, NULL, B, T, NH, HD);
    double worst = 0.0;
    for (size_t r = 0; r < (size_t)B * NH * T; r++) {
        double s = 0.0;
        for (int j = 0; j < T; j++)
            s += a_ref[r * T + j];
        worst = fabs(s - 1.0) > worst ? fabs(s - 1.0) : worst;
    }
    CU_ASSERT(worst < 1e-5);
    for (int k = ATTN_OPT; k < ATTN_REF; k++) {
        memcpy(d, init, sizeof(float) * nq);
        attn_forward(k, o, a, qkv, scratch, B, T, NH, HD);
        attn_backward(k, d, g, qkv, a, scratch, B, T, NH, HD);
        double eo = nn_rel_err(o, o_ref, no), ea = nn_rel_err(a, a_ref, na);
        double ed = nn_rel_err(d, d_ref, nq);
        if (!(eo < 1e-5 && ea < 1e-5 && ed < 1e-5))
            printf("\nattention kind %d B=%d T=%d NH=%d HD=%d: out %.3g "
                   "att %.3g dqkv %.3g", k, B, T, NH, HD, eo, ea, ed);
        CU_ASSERT(eo < 1e-5);
        CU_ASSERT(ea < 1e-5);
        CU_ASSERT(ed < 1e-5);
    }
    free(qkv), free(g), free(init), free(o_ref), free(a_ref), free(d_ref);
    free(o), free(a), free(d), free(scratch);
}

static void test_attention_matches_ref(void)
{
    attention_compare(3, 7, 3, 5, 210);
    attention_compare(4, 50, 3, 64, 211);
    attention_compare(2, 17, 1, 8, 212);
}

/* ---- patch embedding -------------------------------------------------------- */

struct patch_ctx {
    bool ref;
    int B, C, H, W, P, D, G0;
    float *x, *w, *bias, *cls, *pos, *out, *patches, *scratch, *dout;
    float *dx, *dw, *dbias, *dcls, *dpos;
};

static void patch_ctx_forward(void *p)
{
    struct patch_ctx *c = p;
    (c->ref ? nn_patch_embed_forward_ref : nn_patch_embed_forward)(
        c->out, c->patches, c->x, c->w, c->bias, c->cls, c->pos, c->scratch,
        c->B, c->C, c->H, c->W, c->P, c->D, c->G0);
}

static void patch_ctx_backward(void *p)
{
    struct patch_ctx *c = p;
    (c->ref ? nn_patch_embed_backward_ref : nn_patch_embed_backward)(
        c->dx, c->dw, c->dbias, c->dcls, c->dpos, c->dout, c->patches, c->w,
        c->scratch, c->B, c->C, c->H, c->W, c->P, c->D, c->G0);
}

static size_t patch_tokens(const struct patch_ctx *c)
{
    return 1 + (size_t)nn_patch_grid_dim(c->H, c->P)
                   * nn_patch_grid_dim(c->W, c->P);
}

static void patch_ctx_alloc(struct patch_ctx *c, uint64_t *seed)
{
    const size_t nx = (size_t)c->B * c->C * c->H * c->W;
    const size_t K = (size_t)c->C * c->P * c->P, T = patch_tokens(c);
    const size_t npos = (1 + (size_t)c->G0 * c->G0) * c->D;
    c->x = falloc(nx), c->dx = falloc(nx);
    c->w = falloc(c->D * K), c->dw = falloc(c->D * K);
    c->bias = falloc(c->D), c->dbias = falloc(c->D);
    c->cls = falloc(c->D), c->dcls = falloc(c->D);
    c->pos = falloc(npos), c->dpos = falloc(npos);
    c->out = falloc(c->B * T * c->D), c->dout = falloc(c->B * T * c->D);
    c->patches = falloc(c->B * T * K);
    c->scratch = falloc(nn_patch_embed_scratch_floats(c->B, c->C, c->H, c->W,
                                                      c->P, c->D));
    nn_fill_normal(c->x, nx, seed, 1.0f);
    nn_fill_normal(c->w, c->D * K, seed, 0.3f);
    nn_fill_normal(c->bias, c->D, seed, 1.0f);
    nn_fill_normal(c->cls, c->D, seed, 1.0f);
    nn_fill_normal(c->pos, npos, seed, 1.0f);
}

static void patch_ctx_free(struct patch_ctx *c)
{
    free(c->x), free(c->dx), free(c->w), free(c->dw), free(c->bias);
    free(c->dbias), free(c->cls), free(c->dcls), free(c->pos), free(c->dpos);
    free(c->out), free(c->dout), free(c->patches), free(c->scratch);
}

/* Linear in every input and parameter: only float rounding separates the
 * finite difference from backward. Crops 6x6 (padded to 8, grid 2x2 from a
 * 3x3 position grid), 5x7 (grid 2x2 with 1-pixel pads) and 8x8 from G0 = 1
 * (the grid upsampled from one cell). */
static void test_patch_gradcheck(void)
{
    static const int shapes[3][4] = {{6, 6, 4, 3}, {5, 7, 4, 3}, {8, 8, 4, 1}};
    for (int v = 0; v < 6; v++) {
        const int *s = shapes[v / 2];
        uint64_t seed = 300 + v;
        struct patch_ctx c = {.ref = v & 1, .B = 2, .C = 2, .H = s[0],
                              .W = s[1], .P = s[2], .D = 3, .G0 = s[3]};
        patch_ctx_alloc(&c, &seed);
        const size_t K = (size_t)c.C * c.P * c.P;
        struct nn_tensor t[] = {
            {"x", c.x, c.dx, (size_t)c.B * c.C * c.H * c.W},
            {"w", c.w, c.dw, c.D * K},
            {"bias", c.bias, c.dbias, c.D},
            {"cls", c.cls, c.dcls, c.D},
            {"pos", c.pos, c.dpos, (1 + (size_t)c.G0 * c.G0) * c.D},
        };
        struct nn_case cs = {
            .forward = patch_ctx_forward, .backward = patch_ctx_backward,
            .ctx = &c, .out = c.out, .dout = c.dout,
            .n_out = c.B * patch_tokens(&c) * c.D, .tensors = t,
            .n_tensors = 5, .eps = 1e-2, .atol = 1e-3, .rtol = 1e-3,
        };
        CU_ASSERT_EQUAL(nn_case_check(&cs, seed, c.ref ? "patch_ref" : "patch"), 0);
        patch_ctx_free(&c);
    }
}

/* Optimised vs _ref on the ViT-tiny crops: 28 px (7x7 grid, no resize),
 * 14 px (padded to 16, 4x4 grid from 7x7), 32 px (8x8 from 7x7) and a
 * 10x13 crop (3x4 grid). Backward accumulates onto nonzero gradients. */
static void patch_compare(int H, int W, uint64_t seed)
{
    struct patch_ctx a = {.B = 3, .C = 3, .H = H, .W = W, .P = 4, .D = 24,
                          .G0 = 7};
    struct patch_ctx r = a;
    patch_ctx_alloc(&a, &seed);
    uint64_t seed2 = seed;
    patch_ctx_alloc(&r, &seed2);
    const size_t K = (size_t)a.C * a.P * a.P, T = patch_tokens(&a);
    const size_t nx = (size_t)a.B * a.C * a.H * a.W, no = a.B * T * a.D;
    const size_t npos = (1 + (size_t)a.G0 * a.G0) * a.D;
    memcpy(r.x, a.x, sizeof(float) * nx);
    memcpy(r.w, a.w, sizeof(float) * a.D * K);
    memcpy(r.bias, a.bias, sizeof(float) * a.D);
    memcpy(r.cls, a.cls, sizeof(float) * a.D);
    memcpy(r.pos, a.pos, sizeof(float) * npos);
    nn_fill_normal(a.dout, no, &seed, 1.0f);
    memcpy(r.dout, a.dout, sizeof(float) * no);
    float *grads[2][5] = {{a.dx, a.dw, a.dbias, a.dcls, a.dpos},
                          {r.dx, r.dw, r.dbias, r.dcls, r.dpos}};
    const size_t n[5] = {nx, a.D * K, a.D, a.D, npos};
    for (int i = 0; i < 5; i++) {
        nn_fill_normal(grads[0][i], n[i], &seed, 1.0f);
        memcpy(grads[1][i], grads[0][i], sizeof(float) * n[i]);
    }
    patch_ctx_forward(&a);
    r.ref = true;
    patch_ctx_forward(&r);
    CU_ASSERT(nn_rel_err(a.out, r.out, no) < 1e-5);
    CU_ASSERT(nn_rel_err(a.patches, r.patches, T * a.B * K) == 0.0);
    patch_ctx_backward(&a);
    patch_ctx_backward(&r);
    for (int i = 0; i < 5; i++) {
        double e = nn_rel_err(grads[0][i], grads[1][i], n[i]);
        if (!(e < 1e-5))
            printf("\npatch %dx%d grad %d: rel err %.3g", H, W, i, e);
        CU_ASSERT(e < 1e-5);
    }
    patch_ctx_free(&a);
    patch_ctx_free(&r);
}

static void test_patch_matches_ref(void)
{
    patch_compare(28, 28, 320);
    patch_compare(14, 14, 321);
    patch_compare(32, 32, 322);
    patch_compare(10, 13, 323);
}

/* A 14 px crop gives the same tokens as that crop zero-padded to 16 px by
 * hand; the gradient of the padded pixels is simply dropped. With a 4x4
 * position grid (G0 = 4) nothing is resized, so token t of the 16 px crop
 * also equals the conv at that patch plus bias plus pos[1+t]. */
static void test_patch_padding(void)
{
    uint64_t seed = 330;
    struct patch_ctx s = {.B = 2, .C = 3, .H = 14, .W = 14, .P = 4, .D = 5,
                          .G0 = 4};
    struct patch_ctx p = s;
    p.H = p.W = 16;
    patch_ctx_alloc(&s, &seed);
    patch_ctx_alloc(&p, &seed);
    const size_t K = (size_t)s.C * s.P * s.P, T = patch_tokens(&s);
    CU_ASSERT_EQUAL(T, 17);
    memset(p.x, 0, sizeof(float) * s.B * s.C * 16 * 16);
    for (int bc = 0; bc < s.B * s.C; bc++)
        for (int y = 0; y < 14; y++)
            memcpy(p.x + ((size_t)bc * 16 + y) * 16,
                   s.x + ((size_t)bc * 14 + y) * 14, sizeof(float) * 14);
    memcpy(p.w, s.w, sizeof(float) * s.D * K);
    memcpy(p.bias, s.bias, sizeof(float) * s.D);
    memcpy(p.cls, s.cls, sizeof(float) * s.D);
    memcpy(p.pos, s.pos, sizeof(float) * 17 * s.D);
    for (int ref = 0; ref < 2; ref++) {
        s.ref = p.ref = ref;
        patch_ctx_forward(&s);
        patch_ctx_forward(&p);
        CU_ASSERT(nn_rel_err(s.out, p.out, s.B * T * s.D) < 1e-6);
        /* token 16 (last patch) of image 1, channel 2, by hand */
        const int d = 2, gy = 3, gx = 3;
        double want = s.bias[d] + s.pos[16 * s.D + d];
        for (int c = 0; c < s.C; c++)
            for (int py = 0; py < 4; py++)
                for (int px = 0; px < 4; px++) {
                    int y = gy * 4 + py, x = gx * 4 + px;
                    if (y < 14 && x < 14)
                        want += (double)s.w[d * K + (c * 4 + py) * 4 + px]
                                * s.x[((size_t)(s.C + c) * 14 + y) * 14 + x];
                }
        CU_ASSERT_DOUBLE_EQUAL(s.out[(T + 16) * s.D + d], want, 1e-4);
        nn_fill_normal(s.dout, s.B * T * s.D, &seed, 1.0f);
        memcpy(p.dout, s.dout, sizeof(float) * s.B * T * s.D);
        memset(s.dx, 0, sizeof(float) * s.B * s.C * 14 * 14);
        memset(p.dx, 0, sizeof(float) * s.B * s.C * 16 * 16);
        patch_ctx_backward(&s);
        patch_ctx_backward(&p);
        double worst = 0.0;
        for (int bc = 0; bc < s.B * s.C; bc++)
            for (int y = 0; y < 14; y++)
                for (int x = 0; x < 14; x++) {
                    double e = fabs(s.dx[((size_t)bc * 14 + y) * 14 + x]
                                    - p.dx[((size_t)bc * 16 + y) * 16 + x]);
                    worst = e > worst ? e : worst;
                }
        CU_ASSERT(worst < 1e-5);
    }
    patch_ctx_free(&s);
    patch_ctx_free(&p);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"gelu finite differences", test_gelu_gradcheck},
        {"gelu hand-computed case", test_gelu_by_hand},
        {"gelu optimised matches _ref", test_gelu_matches_ref},
        {"attention finite differences", test_attention_gradcheck},
        {"attention on two tokens by hand", test_attention_by_hand},
        {"attention optimised matches _ref", test_attention_matches_ref},
        {"attention: NaN comes through", test_attention_nan},
        {"patch embedding finite differences", test_patch_gradcheck},
        {"patch embedding optimised matches _ref", test_patch_matches_ref},
        {"crop padded to a multiple of the patch", test_patch_padding},
        {NULL, NULL},
    };
    return testing_run("nn_vit", cases);
}
