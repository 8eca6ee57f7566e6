/*
 * test_nn_winograd.c: Winograd F(2x2,3x3) and F(4x4,3x3) convolution
 * (trainer/nn_winograd.c) called directly with both tile sizes, so shapes
 * the dispatcher sends elsewhere are covered too. Forward, dinp and dweight
 * against the _ref loops on odd and tiny planes (partial tiles, 1x1, 2x2,
 * 5x7, 7x7, 14x14, 63x64), several channel counts, image blocks and
 * chunks; the tile-size choice; accumulation and finite differences
 * through the shared driver; and the rounding error of both tile sizes and
 * of the float _ref loops against a double-accumulated direct convolution
 * at C = 256.
 */
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn_winograd.h"
#include "test_nn_check.h"

/* Direct 3x3 pad-1 convolution, forward and both gradients (written, not
 * accumulated), summed in double. */
static void conv_direct_double(double *out, double *dx, double *dw,
                               const float *x, const float *w,
                               const float *dout, int B, int C, int H, int W,
                               int OC)
{
    memset(dx, 0, sizeof(double) * B * C * H * W);
    memset(dw, 0, sizeof(double) * OC * C * 9);
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < H; oh++)
                for (int ow = 0; ow < W; ow++) {
                    const size_t oi = (((size_t)b * OC + oc) * H + oh) * W + ow;
                    double acc = 0.0, g = dout[oi];
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < 3; ki++)
                            for (int kj = 0; kj < 3; kj++) {
                                int ih = oh - 1 + ki, iw = ow - 1 + kj;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                size_t xi = (((size_t)b * C + c) * H + ih) * W + iw;
                                size_t wi = ((size_t)(oc * C + c) * 3 + ki) * 3 + kj;
                                acc += (double)w[wi] * x[xi];
                                dx[xi] += g * w[wi];
                                dw[wi] += g * x[xi];
                            }
                    out[oi] = acc;
                }
}

static double rel_err_double(const float *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > num || isnan(d))
            num = d;
        if (fabs(b[i]) > den)
            den = fabs(b[i]);
    }
    return den > 0.0 ? num / den : num;
}

struct wino_bufs {
    float *x, *w, *bias, *dout, *o1, *o2, *dx1, *dx2, *dw1, *dw2, *dw3;
    float *scratch;
    size_t scratch_floats;
};

/* Floats past the scratch's size, filled with WINO_CANARY_VALUE and
 * checked after every call: a kernel that wrote past its scratch would
 * otherwise go unnoticed in a malloc of the exact size. */
#define WINO_CANARY 64
#define WINO_CANARY_VALUE 1234.5f

static bool wino_canary_intact(const struct wino_bufs *t)
{
    for (int i = 0; i < WINO_CANARY; i++)
        if (t->scratch[t->scratch_floats + i] != WINO_CANARY_VALUE)
            return false;
    return true;
}

static void wino_bufs_init(struct wino_bufs *t, int B, int C, int H, int W,
                           int OC, int m, uint64_t seed, float wscale)
{
    const size_t nx = (size_t)B * C * H * W, nw = (size_t)OC * C * 9;
    const size_t no = (size_t)B * OC * H * W;
    const size_t ns = nn_winograd_scratch_floats(B, C, H, W, OC, m);
    t->x = malloc(sizeof(float) * nx), t->w = malloc(sizeof(float) * nw);
    t->bias = malloc(sizeof(float) * OC);
    t->dout = malloc(sizeof(float) * no);
    t->o1 = malloc(sizeof(float) * no), t->o2 = malloc(sizeof(float) * no);
    t->dx1 = malloc(sizeof(float) * nx), t->dx2 = malloc(sizeof(float) * nx);
    t->dw1 = malloc(sizeof(float) * nw), t->dw2 = malloc(sizeof(float) * nw);
    t->dw3 = malloc(sizeof(float) * nw);
    t->scratch = malloc(sizeof(float) * (ns + WINO_CANARY));
    t->scratch_floats = ns;
    for (int i = 0; i < WINO_CANARY; i++)
        t->scratch[ns + i] = WINO_CANARY_VALUE;
    nn_fill_normal(t->x, nx, &seed, 1.0f);
    nn_fill_normal(t->w, nw, &seed, wscale);
    nn_fill_normal(t->bias, OC, &seed, 1.0f);
    nn_fill_normal(t->dout, no, &seed, 1.0f);
}

static void wino_bufs_free(struct wino_bufs *t)
{
    free(t->x), free(t->w), free(t->bias), free(t->dout), free(t->o1);
    free(t->o2), free(t->dx1), free(t->dx2), free(t->dw1), free(t->dw2);
    free(t->dw3), free(t->scratch);
}

/* Winograd vs _ref, gradients accumulated onto the same non-zero start.
 * Both sum in float in different orders: at C*9 <= 288 terms they agree
 * to < 1e-6 (F(2x2)) and < 3.5e-6 (F(4x4)), within test_nn_conv.c's 1e-5.
 * The weight gradient sums over every pixel of the batch, which on the
 * largest planes (below) is 60000 products: there the float _ref loop's
 * own rounding shows, F(2x2) and F(4x4) both differ from it by 5.6e-6 and
 * 7.9e-6, so those cases allow tol = 3e-5. */
static void wino_compare(int B, int C, int H, int W, int OC, int m,
                         double tol, uint64_t seed)
{
    struct wino_bufs t;
    wino_bufs_init(&t, B, C, H, W, OC, m, seed, 0.3f);
    const size_t nx = (size_t)B * C * H * W, nw = (size_t)OC * C * 9;
    const size_t no = (size_t)B * OC * H * W;
    nn_fill_normal(t.dx1, nx, &seed, 1.0f);
    nn_fill_normal(t.dw1, nw, &seed, 1.0f);
    memcpy(t.dx2, t.dx1, sizeof(float) * nx);
    memcpy(t.dw2, t.dw1, sizeof(float) * nw);
    memcpy(t.dw3, t.dw1, sizeof(float) * nw);
    const float *bias = seed % 2 ? t.bias : NULL;
    nn_winograd_forward(t.o1, t.x, t.w, bias, t.scratch, B, C, H, W, OC, m);
    nn_conv2d_forward_ref(t.o2, t.x, t.w, bias, NULL, B, C, H, W, OC, 3, 1, 1);
    nn_winograd_backward(t.dx1, t.dw1, t.dout, t.x, t.w, t.scratch, B, C, H,
                         W, OC, m);
    nn_conv2d_backward_ref(t.dx2, t.dw2, NULL, t.dout, t.x, t.w, NULL, B, C,
                           H, W, OC, 3, 1, 1);
    nn_winograd_backward(NULL, t.dw3, t.dout, t.x, t.w, t.scratch, B, C, H, W,
                         OC, m);
    double e_out = nn_rel_err(t.o1, t.o2, no);
    double e_dx = nn_rel_err(t.dx1, t.dx2, nx);
    double e_dw = nn_rel_err(t.dw1, t.dw2, nw);
    double e_dw3 = nn_rel_err(t.dw3, t.dw1, nw);
    if (!(e_out < tol && e_dx < tol && e_dw < tol && e_dw3 < 1e-6))
        printf("\nwinograd F(%d) B%d C%d %dx%d OC%d: rel err out %.3g dx %.3g "
               "dw %.3g dw(no dinp) %.3g", m, B, C, H, W, OC, e_out, e_dx,
               e_dw, e_dw3);
    CU_ASSERT(e_out < tol);
    CU_ASSERT(e_dx < tol);
    CU_ASSERT(e_dw < tol);
    CU_ASSERT(e_dw3 < 1e-6);
    CU_ASSERT(wino_canary_intact(&t));
    wino_bufs_free(&t);
}

static void test_wino_matches_ref(void)
{
    /* B, C, H, W, OC: partial tiles on both axes, single-pixel planes, one
     * tile per image, channel counts from 1 up (not multiples of the tile
     * products' 12 or 6 channels); with two threads B = 33 gives slices of
     * 16 and 17 images, whole groups of the 16 the transforms vectorise
     * over (a partial group takes the masked copies).
     * test_wino_image_groups has more. */
    static const int shapes[][5] = {
        {2, 3, 5, 7, 4},  {3, 8, 7, 7, 16}, {2, 5, 2, 2, 6}, {4, 6, 1, 1, 3},
        {2, 4, 1, 5, 3},  {2, 4, 6, 1, 3},  {1, 1, 4, 4, 1}, {3, 16, 14, 14, 8},
        {2, 32, 4, 4, 24}, {5, 12, 3, 3, 7}, {20, 8, 7, 7, 8}, {33, 6, 4, 5, 5},
    };
    for (int m = 2; m <= 4; m += 2)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const int *s = shapes[i];
            wino_compare(s[0], s[1], s[2], s[3], s[4], m, 1e-5, 10 + i);
        }
}

/* Two threads, each with a slice of B / 2 images: slices of 20 (a group
 * of 16 images on one tile, then groups that straddle tiles, stored one
 * lane at a time), of 35 and 50 (a chunk of 32 images, then the rest),
 * 1x1 planes (every column of a tile outside the plane but one), and 16
 * images of 14x14 with 32 channels, whose forward pass runs in bands of
 * one or two tile rows. Partial tiles on 5x7 clip the rows and columns of
 * the 16-image stores and patch additions. */
static void test_wino_image_groups(void)
{
    static const int shapes[][5] = {
        {40, 3, 5, 7, 13}, {70, 2, 1, 1, 3}, {100, 3, 5, 7, 13},
        {32, 32, 14, 14, 13},
    };
    const int threads = omp_get_max_threads();
    omp_set_num_threads(2);
    for (int m = 2; m <= 4; m += 2)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const int *s = shapes[i];
            wino_compare(s[0], s[1], s[2], s[3], s[4], m, 1e-5, 40 + i);
        }
    omp_set_num_threads(threads);
}

/* On the largest supported plane, 16 (C+OC) floats per 2x2 tile and 32x32
 * tiles make 8 images per chunk (36 per 4x4 tile, 16x16 tiles: 14), so
 * B = 9 and B = 15 take a full and a one-image chunk (the dU GEMMs
 * accumulate across chunks), several image blocks per transform in the
 * backward pass and bands of a few tile rows in the forward pass. */
static void test_wino_chunks(void)
{
    CU_ASSERT(NN_WINOGRAD_CHUNK_FLOATS / (16 * (16 + 16) * 32 * 32) == 8);
    CU_ASSERT(NN_WINOGRAD_CHUNK_FLOATS / (36 * (16 + 16) * 16 * 16) == 14);
    CU_ASSERT(nn_winograd_supports(63, 64, 3, 1, 1));
    CU_ASSERT(!nn_winograd_supports(65, 64, 3, 1, 1));
    CU_ASSERT(!nn_winograd_supports(8, 8, 3, 2, 1));
    wino_compare(9, 16, 63, 64, 16, 2, 3e-5, 31);
    wino_compare(15, 16, 64, 63, 16, 4, 3e-5, 32);
}

/* m = 4 wherever its 6x6 tiles need fewer multiplies. */
static void test_wino_tile_choice(void)
{
    CU_ASSERT_EQUAL(nn_winograd_tile(28, 28), 4);
    CU_ASSERT_EQUAL(nn_winograd_tile(14, 14), 4);
    CU_ASSERT_EQUAL(nn_winograd_tile(7, 7), 4);
    CU_ASSERT_EQUAL(nn_winograd_tile(4, 4), 4);
    CU_ASSERT_EQUAL(nn_winograd_tile(2, 2), 2);
    CU_ASSERT_EQUAL(nn_winograd_tile(1, 1), 2);
}

struct wino_ctx {
    int B, C, H, W, OC, m;
    float *x, *w, *bias, *out, *dout, *dx, *dw, *scratch;
};

static void wino_ctx_forward(void *p)
{
    struct wino_ctx *c = p;
    nn_winograd_forward(c->out, c->x, c->w, c->bias, c->scratch, c->B, c->C,
                        c->H, c->W, c->OC, c->m);
}

static void wino_ctx_backward(void *p)
{
    struct wino_ctx *c = p;
    nn_winograd_backward(c->dx, c->dw, c->dout, c->x, c->w, c->scratch, c->B,
                         c->C, c->H, c->W, c->OC, c->m);
}

/* Tolerances as in test_nn_conv.c's gradcheck, but a step of 0.1 instead of
 * 1e-2: the convolution is linear, so a larger step adds no truncation
 * error and divides the float rounding of L by 10. F(4x4)'s forward rounds
 * ~10x more than direct sums, which put one difference of 1e-2 steps 1.4e-3
 * off (analytic 0.0906, the _ref comparison above agrees to 1e-5). */
static void test_wino_gradcheck(void)
{
    static const int shapes[][5] = {
        {2, 3, 5, 7, 4}, {1, 2, 1, 1, 3}, {2, 2, 2, 2, 3}, {1, 3, 4, 3, 2},
    };
    for (size_t i = 0; i < 2 * sizeof shapes / sizeof shapes[0]; i++) {
        const int *s = shapes[i / 2];
        struct wino_ctx c = {.B = s[0], .C = s[1], .H = s[2], .W = s[3],
                             .OC = s[4], .m = i % 2 ? 4 : 2};
        const size_t nx = (size_t)c.B * c.C * c.H * c.W;
        const size_t nw = (size_t)c.OC * c.C * 9;
        const size_t no = (size_t)c.B * c.OC * c.H * c.W;
        uint64_t seed = 200 + i;
        c.x = malloc(sizeof(float) * nx), c.dx = malloc(sizeof(float) * nx);
        c.w = malloc(sizeof(float) * nw), c.dw = malloc(sizeof(float) * nw);
        c.bias = malloc(sizeof(float) * c.OC);
        c.out = malloc(sizeof(float) * no), c.dout = malloc(sizeof(float) * no);
        c.scratch = malloc(sizeof(float) *
                           nn_winograd_scratch_floats(c.B, c.C, c.H, c.W, c.OC,
                                                      c.m));
        nn_fill_normal(c.x, nx, &seed, 1.0f);
        nn_fill_normal(c.w, nw, &seed, 0.5f);
        nn_fill_normal(c.bias, c.OC, &seed, 0.5f);
        struct nn_tensor t[] = {{"x", c.x, c.dx, nx}, {"w", c.w, c.dw, nw}};
        struct nn_case cs = {
            .forward = wino_ctx_forward, .backward = wino_ctx_backward,
            .ctx = &c, .out = c.out, .dout = c.dout, .n_out = no,
            .tensors = t, .n_tensors = 2, .eps = 0.1, .atol = 1e-3,
            .rtol = 1e-3,
        };
        char label[96];
        snprintf(label, sizeof label, "winograd F(%d) B%d C%d %dx%d OC%d",
                 c.m, c.B, c.C, c.H, c.W, c.OC);
        CU_ASSERT_EQUAL(nn_case_check(&cs, seed, label), 0);
        free(c.x), free(c.dx), free(c.w), free(c.dw), free(c.bias);
        free(c.out), free(c.dout), free(c.scratch);
    }
}

/* Rounding at the widest layer (C = 256, 2304-term sums), Kaiming-scaled
 * weights (std sqrt(2 / (9 OC))), unit inputs and upstream gradients:
 * errors of both tile sizes and of the float _ref loops against double
 * sums, as max |err| / max |exact|. Measured (see the printout): F(2x2)
 * 4.3e-7 (out), 3.1e-7 (dx, dw), below the float _ref loops (1.5e-6,
 * 7.3e-7, 3.3e-7: longer serial sums); F(4x4) 4.6e-6, 2.5e-6, 2.5e-6,
 * about 10x F(2x2) (its transforms multiply by up to 8 and divide by 24).
 * The bound 2e-5 leaves a margin and is still far below the 1e-3 the
 * training-step fixtures allow. */
static void test_wino_accuracy(void)
{
    const int B = 2, C = 256, H = 7, W = 7, OC = 64;
    const size_t nx = (size_t)B * C * H * W, nw = (size_t)OC * C * 9;
    const size_t no = (size_t)B * OC * H * W;
    struct wino_bufs t;
    wino_bufs_init(&t, B, C, H, W, OC, 4, 77, sqrtf(2.0f / (9.0f * OC)));
    double *o = malloc(sizeof(double) * no), *dx = malloc(sizeof(double) * nx);
    double *dw = malloc(sizeof(double) * nw);
    conv_direct_double(o, dx, dw, t.x, t.w, t.dout, B, C, H, W, OC);
    memset(t.dx2, 0, sizeof(float) * nx), memset(t.dw2, 0, sizeof(float) * nw);
    nn_conv2d_forward_ref(t.o2, t.x, t.w, NULL, NULL, B, C, H, W, OC, 3, 1, 1);
    nn_conv2d_backward_ref(t.dx2, t.dw2, NULL, t.dout, t.x, t.w, NULL, B, C,
                           H, W, OC, 3, 1, 1);
    printf("\n  vs double, C=%d %dx%d: float _ref out %.2g dx %.2g dw %.2g", C,
           H, W, rel_err_double(t.o2, o, no), rel_err_double(t.dx2, dx, nx),
           rel_err_double(t.dw2, dw, nw));
    /* m = 4 needs the larger scratch here (36 vs 16 values per tile). */
    CU_ASSERT(nn_winograd_scratch_floats(B, C, H, W, OC, 2) <=
              nn_winograd_scratch_floats(B, C, H, W, OC, 4));
    for (int m = 2; m <= 4; m += 2) {
        memset(t.dx1, 0, sizeof(float) * nx);
        memset(t.dw1, 0, sizeof(float) * nw);
        nn_winograd_forward(t.o1, t.x, t.w, NULL, t.scratch, B, C, H, W, OC, m);
        nn_winograd_backward(t.dx1, t.dw1, t.dout, t.x, t.w, t.scratch, B, C,
                             H, W, OC, m);
        double e_out = rel_err_double(t.o1, o, no);
        double e_dx = rel_err_double(t.dx1, dx, nx);
        double e_dw = rel_err_double(t.dw1, dw, nw);
        printf("\n  F(%dx%d): out %.2g dx %.2g dw %.2g", m, m, e_out, e_dx,
               e_dw);
        CU_ASSERT(e_out < 2e-5);
        CU_ASSERT(e_dx < 2e-5);
        CU_ASSERT(e_dw < 2e-5);
    }
    printf("\n  ");
    free(o), free(dx), free(dw);
    wino_bufs_free(&t);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"matches _ref on odd and tiny planes", test_wino_matches_ref},
        {"several image chunks", test_wino_chunks},
        {"groups of 16 images, bands", test_wino_image_groups},
        {"tile size choice", test_wino_tile_choice},
        {"finite differences", test_wino_gradcheck},
        {"rounding vs double at C=256", test_wino_accuracy},
        {NULL, NULL},
    };
    return testing_run("nn_winograd", cases);
}
