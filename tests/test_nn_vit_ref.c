/*
 * test_nn_vit_ref.c: the ViT kernels against PyTorch, using the fixtures
 * tools/ref_vit_kernels.py wrote to tests/fixtures/vit/: the bicubic resize
 * (F.interpolate, align_corners=False) of a 7x7 grid to 4x4, 8x8 and 3x5
 * with its gradient, and through the patch embedding's position term; the
 * attention core (timm's Attention between qkv and proj) forward,
 * probabilities and gradient; GELU and its derivative. A missing fixture
 * skips (fails under CI=true).
 */
#include <stdlib.h>
#include <string.h>

#include "npy.h"
#include "nn_vit.h"
#include "test_nn_check.h"
#include "util.h"

/* Loads tests/fixtures/vit/NAME.npy, a float32 array of n elements. */
static float *fixture(const char *name, size_t n, struct npy_array *a)
{
    char path[256], err[ERR_LEN];
    snprintf(path, sizeof path, "vit/%s.npy", name);
    int rc = npy_read(testing_fixture(path), a, err);
    if (rc != 0)
        printf("\n%s", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(a->dtype, NPY_F32);
    CU_ASSERT_EQUAL_FATAL(a->nbytes, n * sizeof(float));
    return a->data;
}

static void test_bicubic_matches_torch(void)
{
    static const int sizes[3][2] = {{4, 4}, {8, 8}, {3, 5}};
    const int G0 = 7, D = 5;
    struct npy_array ain;
    const float *in = fixture("bicubic_in", G0 * G0 * D, &ain);
    for (int s = 0; s < 3; s++) {
        const int OH = sizes[s][0], OW = sizes[s][1];
        const size_t no = (size_t)OH * OW * D;
        char name[64];
        struct npy_array ao, ag, ad;
        snprintf(name, sizeof name, "bicubic_out_%dx%d", OH, OW);
        const float *want = fixture(name, no, &ao);
        snprintf(name, sizeof name, "bicubic_dout_%dx%d", OH, OW);
        const float *g = fixture(name, no, &ag);
        snprintf(name, sizeof name, "bicubic_dinp_%dx%d", OH, OW);
        const float *want_d = fixture(name, G0 * G0 * D, &ad);
        float *out = calloc(no, sizeof(float));
        float *d = calloc(G0 * G0 * D, sizeof(float));
        nn_bicubic_forward(out, in, G0, G0, OH, OW, D);
        nn_bicubic_backward(d, g, G0, G0, OH, OW, D);
        double eo = nn_rel_err(out, want, no);
        double ed = nn_rel_err(d, want_d, G0 * G0 * D);
        if (!(eo < 1e-6 && ed < 1e-6))
            printf("\nbicubic %dx%d: out %.3g dinp %.3g", OH, OW, eo, ed);
        CU_ASSERT(eo < 1e-6);
        CU_ASSERT(ed < 1e-6);

        /* the same through the patch embedding: zero images, weights and
         * bias leave only the resized position grid in the patch tokens */
        const int P = 2, C = 1, T = 1 + OH * OW;
        float *pos = calloc((1 + G0 * G0) * D, sizeof(float));
        memcpy(pos + D, in, sizeof(float) * G0 * G0 * D);
        float *zeros = calloc((size_t)C * P * P * D + OH * P * OW * P, 4);
        float *tok = calloc((size_t)T * D, sizeof(float));
        float *patches = calloc((size_t)T * C * P * P, sizeof(float));
        float *scratch = calloc(
            nn_patch_embed_scratch_floats(1, C, OH * P, OW * P, P, D), 4);
        for (int ref = 0; ref < 2; ref++) {
            (ref ? nn_patch_embed_forward_ref : nn_patch_embed_forward)(
                tok, patches, zeros, zeros, zeros, zeros, pos, scratch, 1, C,
                OH * P, OW * P, P, D, G0);
            CU_ASSERT(nn_rel_err(tok + D, want, no) < 1e-6);
        }
        free(out), free(d), free(pos), free(zeros), free(tok), free(patches);
        free(scratch);
        npy_free(&ao), npy_free(&ag), npy_free(&ad);
    }
    npy_free(&ain);
}

static void test_attention_matches_torch(void)
{
    const int B = 2, T = 5, NH = 3, HD = 4, D = NH * HD;
    const size_t nq = (size_t)B * T * 3 * D, no = (size_t)B * T * D;
    const size_t na = (size_t)B * NH * T * T;
    struct npy_array aq, ag, aa, ao, ad;
    const float *qkv = fixture("attn_qkv", nq, &aq);
    const float *g = fixture("attn_dout", no, &ag);
    const float *want_a = fixture("attn_att", na, &aa);
    const float *want_o = fixture("attn_out", no, &ao);
    const float *want_d = fixture("attn_dqkv", nq, &ad);
    float *out = malloc(sizeof(float) * no), *att = malloc(sizeof(float) * na);
    float *d = malloc(sizeof(float) * nq);
    float *scratch = malloc(sizeof(float) * nn_attention_scratch_floats(T, HD));
    void (*fwd[2])(float *, float *, const float *, float *, int, int, int,
                   int) = {nn_attention_forward, nn_attention_forward_ref};
    void (*bwd[2])(float *, const float *, const float *, const float *,
                   float *, int, int, int, int) = {nn_attention_backward,
                                                   nn_attention_backward_ref};
    for (int k = 0; k < 2; k++) {
        memset(d, 0, sizeof(float) * nq);
        fwd[k](out, att, qkv, scratch, B, T, NH, HD);
        bwd[k](d, g, qkv, att, scratch, B, T, NH, HD);
        double eo = nn_rel_err(out, want_o, no);
        double ea = nn_rel_err(att, want_a, na);
        double ed = nn_rel_err(d, want_d, nq);
        if (!(eo < 1e-5 && ea < 1e-5 && ed < 1e-5))
            printf("\nattention %d vs torch: out %.3g att %.3g dqkv %.3g", k,
                   eo, ea, ed);
        CU_ASSERT(eo < 1e-5);
        CU_ASSERT(ea < 1e-5);
        CU_ASSERT(ed < 1e-5);
    }
    free(out), free(att), free(d), free(scratch);
    npy_free(&aq), npy_free(&ag), npy_free(&aa), npy_free(&ao);
    npy_free(&ad);
}

static void test_gelu_matches_torch(void)
{
    const size_t n = 64;
    struct npy_array ax, ay, ag;
    const float *x = fixture("gelu_in", n, &ax);
    const float *want_y = fixture("gelu_out", n, &ay);
    const float *want_g = fixture("gelu_grad", n, &ag);
    float y[64], g[64], ones[64];
    for (size_t i = 0; i < n; i++)
        ones[i] = 1.0f;
    for (int ref = 0; ref < 2; ref++) {
        memset(g, 0, sizeof g);
        (ref ? nn_gelu_forward_ref : nn_gelu_forward)(y, x, n);
        (ref ? nn_gelu_backward_ref : nn_gelu_backward)(g, ones, x, n);
        CU_ASSERT(nn_rel_err(y, want_y, n) < 1e-6);
        CU_ASSERT(nn_rel_err(g, want_g, n) < 1e-6);
    }
    npy_free(&ax), npy_free(&ay), npy_free(&ag);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"bicubic resize matches torch", test_bicubic_matches_torch},
        {"attention matches torch", test_attention_matches_torch},
        {"gelu matches torch", test_gelu_matches_torch},
        {NULL, NULL},
    };
    return testing_run("nn_vit_ref", cases);
}
