/*
 * test_nn_conv.c: 2-D convolution. Finite-difference gradients of input,
 * weight and bias for both the optimised kernel and the _ref loops on odd,
 * strided and padded shapes (1x1 stride-1 both direct on a large plane and
 * chunked on small ones, 3x3 pad-1 on 2x2 and 4x5 planes); optimised vs
 * _ref on seeded inputs large enough to need several im2col chunks and on
 * the shapes nn_conv2d_* send to Winograd (nn_winograd.c, tested in depth
 * by test_nn_winograd.c), to the dense path for planes of at most 2x2, and
 * to im2col; two cases computed by hand; and exact zero weight gradients
 * for kernel taps that meet no non-zero pixel on a 2x2 plane; and the
 * executed-flop count of each path, by hand.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "test_nn_check.h"

typedef void (*conv_fwd_fn)(float *, const float *, const float *,
                            const float *, float *, int, int, int, int, int,
                            int, int, int);
typedef void (*conv_bwd_fn)(float *, float *, float *, const float *,
                            const float *, const float *, float *, int, int,
                            int, int, int, int, int, int);

struct conv_ctx {
    conv_fwd_fn fwd;
    conv_bwd_fn bwd;
    int B, C, H, W, OC, K, stride, pad;
    float *x, *w, *bias, *out, *dout, *dx, *dw, *db, *scratch;
};

static void conv_ctx_forward(void *p)
{
    struct conv_ctx *c = p;
    c->fwd(c->out, c->x, c->w, c->bias, c->scratch, c->B, c->C, c->H, c->W,
           c->OC, c->K, c->stride, c->pad);
}

static void conv_ctx_backward(void *p)
{
    struct conv_ctx *c = p;
    c->bwd(c->dx, c->dw, c->bias ? c->db : NULL, c->dout, c->x, c->w,
           c->scratch, c->B, c->C, c->H, c->W, c->OC, c->K, c->stride,
           c->pad);
}

/* Convolution is linear in each input, so central differences have no
 * truncation error at any step; what is left is float rounding of L
 * divided by the step. The step is 0.1 (0.2 wide): direct sums round L to
 * ~1e-6, but Winograd F(4x4) (4x5 plane below) rounds each output ~10x
 * more, which over a 2e-2 step put differences 1.5e-3 off. atol 1e-3 /
 * rtol 1e-3 leaves room for that and still catches any wrong term (errors
 * of order 0.1-1). */
static int conv_gradcheck(int B, int C, int H, int W, int OC, int K,
                          int stride, int pad, bool with_bias, bool ref,
                          uint64_t seed)
{
    struct conv_ctx c = {
        .fwd = ref ? nn_conv2d_forward_ref : nn_conv2d_forward,
        .bwd = ref ? nn_conv2d_backward_ref : nn_conv2d_backward,
        .B = B, .C = C, .H = H, .W = W, .OC = OC, .K = K, .stride = stride,
        .pad = pad,
    };
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    const size_t nx = (size_t)B * C * H * W, nw = (size_t)OC * C * K * K;
    const size_t no = (size_t)B * OC * OH * OW;
    c.x = malloc(sizeof(float) * nx);
    c.dx = malloc(sizeof(float) * nx);
    c.w = malloc(sizeof(float) * nw);
    c.dw = malloc(sizeof(float) * nw);
    c.bias = with_bias ? malloc(sizeof(float) * OC) : NULL;
    c.db = malloc(sizeof(float) * OC);
    c.out = malloc(sizeof(float) * no);
    c.dout = malloc(sizeof(float) * no);
    size_t ns = nn_conv2d_scratch_floats(B, C, H, W, OC, K, stride, pad);
    c.scratch = malloc(sizeof(float) * (ns ? ns : 1));
    nn_fill_normal(c.x, nx, &seed, 1.0f);
    nn_fill_normal(c.w, nw, &seed, 0.5f);
    if (c.bias)
        nn_fill_normal(c.bias, OC, &seed, 0.5f);
    struct nn_tensor t[] = {
        {"x", c.x, c.dx, nx}, {"w", c.w, c.dw, nw}, {"b", c.bias, c.db, OC},
    };
    struct nn_case cs = {
        .forward = conv_ctx_forward, .backward = conv_ctx_backward,
        .ctx = &c, .out = c.out, .dout = c.dout, .n_out = no, .tensors = t,
        .n_tensors = with_bias ? 3 : 2, .eps = 0.1, .atol = 1e-3,
        .rtol = 1e-3,
    };
    char label[128];
    snprintf(label, sizeof label, "conv%s B%d C%d %dx%d OC%d K%d s%d p%d",
             ref ? "_ref" : "", B, C, H, W, OC, K, stride, pad);
    int fails = nn_case_check(&cs, seed, label);
    free(c.x), free(c.dx), free(c.w), free(c.dw), free(c.bias), free(c.db);
    free(c.out), free(c.dout), free(c.scratch);
    return fails;
}

static const int conv_shapes[][8] = {
    /* B, C, H, W, OC, K, stride, pad */
    {2, 3, 5, 7, 4, 3, 1, 1},  {2, 3, 5, 7, 4, 3, 2, 1},
    {2, 3, 5, 7, 4, 1, 2, 0},  {2, 2, 9, 11, 3, 7, 2, 3},
    {2, 3, 5, 7, 4, 1, 1, 0},  {3, 2, 6, 6, 2, 2, 2, 0},
    {1, 2, 4, 5, 3, 3, 3, 2},  {2, 2, 1, 2, 3, 3, 1, 1},
    {2, 2, 6, 5, 3, 5, 1, 2},  {2, 3, 32, 33, 2, 1, 1, 0},
    {3, 4, 2, 2, 5, 3, 1, 1},  {2, 8, 4, 5, 3, 3, 1, 1},
};

static void test_conv_gradcheck(void)
{
    const int n = sizeof conv_shapes / sizeof conv_shapes[0];
    for (int ref = 0; ref < 2; ref++)
        for (int i = 0; i < n; i++) {
            const int *s = conv_shapes[i];
            int fails = conv_gradcheck(s[0], s[1], s[2], s[3], s[4], s[5],
                                       s[6], s[7], i % 2 == 0, ref, 100 + i);
            CU_ASSERT_EQUAL(fails, 0);
        }
}

/* Optimised vs _ref: outputs and accumulated gradients agree to ~1e-5
 * relative (the two sum in different orders in float). */
static void conv_compare(int B, int C, int H, int W, int OC, int K,
                         int stride, int pad, uint64_t seed)
{
    const int OH = nn_conv2d_out_dim(H, K, stride, pad);
    const int OW = nn_conv2d_out_dim(W, K, stride, pad);
    const size_t nx = (size_t)B * C * H * W, nw = (size_t)OC * C * K * K;
    const size_t no = (size_t)B * OC * OH * OW;
    size_t ns = nn_conv2d_scratch_floats(B, C, H, W, OC, K, stride, pad);
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw);
    float *bias = malloc(sizeof(float) * OC), *dout = malloc(sizeof(float) * no);
    float *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no);
    float *dx1 = malloc(sizeof(float) * nx), *dx2 = malloc(sizeof(float) * nx);
    float *dw1 = malloc(sizeof(float) * nw), *dw2 = malloc(sizeof(float) * nw);
    float *dw3 = malloc(sizeof(float) * nw);
    float *db1 = malloc(sizeof(float) * OC), *db2 = malloc(sizeof(float) * OC);
    float *scratch = malloc(sizeof(float) * (ns ? ns : 1));
    nn_fill_normal(x, nx, &seed, 1.0f);
    nn_fill_normal(w, nw, &seed, 0.1f);
    nn_fill_normal(bias, OC, &seed, 1.0f);
    nn_fill_normal(dout, no, &seed, 1.0f);
    /* Start the gradients from the same non-zero values: backward adds. */
    nn_fill_normal(dx1, nx, &seed, 1.0f);
    nn_fill_normal(dw1, nw, &seed, 1.0f);
    nn_fill_normal(db1, OC, &seed, 1.0f);
    memcpy(dx2, dx1, sizeof(float) * nx);
    memcpy(dw2, dw1, sizeof(float) * nw);
    memcpy(dw3, dw1, sizeof(float) * nw);
    memcpy(db2, db1, sizeof(float) * OC);

    nn_conv2d_forward(o1, x, w, bias, scratch, B, C, H, W, OC, K, stride, pad);
    nn_conv2d_forward_ref(o2, x, w, bias, NULL, B, C, H, W, OC, K, stride, pad);
    double e_out = nn_rel_err(o1, o2, no);
    nn_conv2d_backward(dx1, dw1, db1, dout, x, w, scratch, B, C, H, W, OC, K,
                       stride, pad);
    nn_conv2d_backward_ref(dx2, dw2, db2, dout, x, w, NULL, B, C, H, W, OC, K,
                           stride, pad);
    /* Without dinp and dbias the weight gradient is unchanged. */
    nn_conv2d_backward(NULL, dw3, NULL, dout, x, w, scratch, B, C, H, W, OC,
                       K, stride, pad);
    double e_dx = nn_rel_err(dx1, dx2, nx), e_dw = nn_rel_err(dw1, dw2, nw);
    double e_db = nn_rel_err(db1, db2, OC), e_dw3 = nn_rel_err(dw3, dw1, nw);
    if (!(e_out < 1e-5 && e_dx < 1e-5 && e_dw < 1e-5 && e_db < 1e-5 &&
          e_dw3 < 1e-6))
        printf("\nconv B%d C%d %dx%d OC%d K%d s%d p%d: rel err out %.3g dx "
               "%.3g dw %.3g db %.3g dw(no dinp) %.3g", B, C, H, W, OC, K,
               stride, pad, e_out, e_dx, e_dw, e_db, e_dw3);
    CU_ASSERT(e_out < 1e-5);
    CU_ASSERT(e_dx < 1e-5);
    CU_ASSERT(e_dw < 1e-5);
    CU_ASSERT(e_db < 1e-5);
    CU_ASSERT(e_dw3 < 1e-6);
    free(x), free(w), free(bias), free(dout), free(o1), free(o2);
    free(dx1), free(dx2), free(dw1), free(dw2), free(dw3);
    free(db1), free(db2), free(scratch);
}

static void test_conv_matches_ref(void)
{
    /* 18 images of 288+32 columns x 784 pixels: chunks of 16 and 2. */
    conv_compare(18, 32, 28, 28, 32, 3, 1, 1, 1);
    conv_compare(5, 16, 14, 14, 32, 3, 2, 1, 2);
    conv_compare(5, 16, 14, 14, 32, 1, 2, 0, 3);
    conv_compare(4, 16, 7, 7, 24, 1, 1, 0, 4);
    conv_compare(3, 8, 32, 40, 12, 1, 1, 0, 6);
    conv_compare(3, 4, 9, 9, 6, 5, 1, 2, 7);
    conv_compare(3, 3, 33, 31, 16, 7, 2, 3, 5);
    /* The ResNet's downsampling shapes: many chunks per thread, columns
     * and channels that are not whole blocks of nn_tilegemm.h's kernel. */
    conv_compare(13, 32, 28, 28, 64, 3, 2, 1, 14);
    conv_compare(17, 128, 7, 7, 40, 3, 2, 1, 15);
    conv_compare(9, 40, 14, 14, 28, 1, 2, 0, 16);
    /* Dispatched to Winograd F(4x4) and F(2x2)... */
    conv_compare(5, 16, 7, 7, 24, 3, 1, 1, 8);
    conv_compare(4, 8, 6, 5, 8, 3, 1, 1, 9);
    /* ...to the dense path on planes of at most 2x2... */
    conv_compare(6, 16, 2, 2, 24, 3, 1, 1, 10);
    conv_compare(5, 8, 1, 1, 4, 3, 1, 1, 11);
    conv_compare(4, 8, 2, 1, 6, 3, 1, 1, 12);
    /* ...and to im2col on 3x3 planes and for under 8 input channels. */
    conv_compare(4, 8, 3, 3, 6, 3, 1, 1, 13);
    conv_compare(4, 4, 14, 14, 8, 3, 1, 1, 14);
}

/* x = 1..9 in a 3x3 plane. */
static void test_conv_by_hand(void)
{
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float w2[4] = {1, 2, 3, 4}, bias = 0.5f;
    const float ones9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, ones4[4] = {1, 1, 1, 1};
    const size_t ns = nn_conv2d_scratch_floats(1, 1, 3, 3, 1, 2, 1, 0);
    const size_t ns2 = nn_conv2d_scratch_floats(1, 1, 3, 3, 1, 3, 2, 1);
    float *scratch = malloc((ns > ns2 ? ns : ns2) * sizeof(float));
    for (int ref = 0; ref < 2; ref++) {
        conv_fwd_fn fwd = ref ? nn_conv2d_forward_ref : nn_conv2d_forward;
        conv_bwd_fn bwd = ref ? nn_conv2d_backward_ref : nn_conv2d_backward;
        /* 2x2 kernel, stride 1, no padding: out = 37 47 67 77 (+ bias). */
        float out[4];
        fwd(out, x, w2, &bias, scratch, 1, 1, 3, 3, 1, 2, 1, 0);
        const float want[4] = {37.5f, 47.5f, 67.5f, 77.5f};
        for (int i = 0; i < 4; i++)
            CU_ASSERT_DOUBLE_EQUAL(out[i], want[i], 1e-5);
        /* dout = 1: dW = window sums, dX = how often each pixel meets each
         * weight, dbias = 4 outputs. */
        float dx[9] = {0}, dw[4] = {0}, db = 0.0f;
        bwd(dx, dw, &db, ones4, x, w2, scratch, 1, 1, 3, 3, 1, 2, 1, 0);
        const float want_dw[4] = {12, 16, 24, 28};
        const float want_dx[9] = {1, 3, 2, 4, 10, 6, 3, 7, 4};
        for (int i = 0; i < 4; i++)
            CU_ASSERT_DOUBLE_EQUAL(dw[i], want_dw[i], 1e-5);
        for (int i = 0; i < 9; i++)
            CU_ASSERT_DOUBLE_EQUAL(dx[i], want_dx[i], 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(db, 4.0, 1e-6);
        /* 3x3 ones kernel, stride 2, pad 1: each output is the sum of the
         * 2x2 block of x its clipped window covers. */
        CU_ASSERT(nn_conv2d_out_dim(3, 3, 2, 1) == 2);
        fwd(out, x, ones9, NULL, scratch, 1, 1, 3, 3, 1, 3, 2, 1);
        const float want_s2[4] = {12, 16, 24, 28};
        for (int i = 0; i < 4; i++)
            CU_ASSERT_DOUBLE_EQUAL(out[i], want_s2[i], 1e-5);
    }
    free(scratch);
}

/* On a 2x2 plane whose only non-zero pixel is (0,0), the taps in the last
 * kernel row or column never meet a non-zero input, so their gradient is
 * exactly 0, as in PyTorch; the dense path must keep it 0 (Winograd leaves
 * ~1e-7 there, which AdamW would turn into full steps: see nn_conv.c). */
static void test_conv_exact_zero_taps(void)
{
    enum { B = 3, C = 4, OC = 3 };
    float x[B * C * 4] = {0}, w[OC * C * 9], dout[B * OC * 4];
    float dw[OC * C * 9] = {0}, scratch[OC * C * 16];
    uint64_t seed = 41;
    for (int i = 0; i < B * C; i++)
        x[i * 4] = 1.0f + (float)i;
    nn_fill_normal(w, OC * C * 9, &seed, 1.0f);
    nn_fill_normal(dout, B * OC * 4, &seed, 1.0f);
    CU_ASSERT(nn_conv2d_scratch_floats(B, C, 2, 2, OC, 3, 1, 1) <=
              OC * C * 16);
    nn_conv2d_backward(NULL, dw, NULL, dout, x, w, scratch, B, C, 2, 2, OC,
                       3, 1, 1);
    for (int j = 0; j < OC * C; j++)
        for (int t = 0; t < 9; t++) {
            const bool unreached = t / 3 == 2 || t % 3 == 2;
            CU_ASSERT((dw[j * 9 + t] == 0.0f) == unreached);
        }
}

/* nn_conv2d_executed_flops: 2 C OC per product, a*a products per
 * Winograd tile, HW x HW per image on the dense path, the direct count
 * otherwise. */
static void test_executed_flops(void)
{
    const double cc = 2.0 * 16 * 32;
    /* 28x28: F(4x4), 7x7 tiles of 6x6 per image */
    CU_ASSERT_DOUBLE_EQUAL(nn_conv2d_executed_flops(2, 16, 28, 28, 32, 3, 1, 1),
                           cc * 36 * 2 * 49, 0.5);
    /* 7x7: F(4x4), 2x2 tiles */
    CU_ASSERT_DOUBLE_EQUAL(nn_conv2d_executed_flops(3, 16, 7, 7, 32, 3, 1, 1),
                           cc * 36 * 3 * 4, 0.5);
    /* 2x2: the dense GEMM, 4 x 4 taps per image */
    CU_ASSERT_DOUBLE_EQUAL(nn_conv2d_executed_flops(5, 16, 2, 2, 32, 3, 1, 1),
                           cc * 5 * 16, 0.5);
    /* stride 2 and C < 8 take im2col: the direct count */
    CU_ASSERT_DOUBLE_EQUAL(nn_conv2d_executed_flops(2, 16, 28, 28, 32, 3, 2, 1),
                           cc * 2 * 14 * 14 * 9, 0.5);
    CU_ASSERT_DOUBLE_EQUAL(nn_conv2d_executed_flops(2, 1, 28, 28, 32, 3, 1, 1),
                           2.0 * 32 * 2 * 28 * 28 * 9, 0.5);
    CU_ASSERT_DOUBLE_EQUAL(nn_conv2d_executed_flops(4, 16, 7, 7, 32, 1, 1, 0),
                           cc * 4 * 49, 0.5);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"finite differences, odd/strided/padded shapes", test_conv_gradcheck},
        {"optimised matches _ref", test_conv_matches_ref},
        {"hand-computed cases", test_conv_by_hand},
        {"exact zero gradients on 2x2 planes", test_conv_exact_zero_taps},
        {"executed flops of each path", test_executed_flops},
        {NULL, NULL},
    };
    return testing_run("nn_conv", cases);
}
