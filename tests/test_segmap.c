/*
 * test_segmap.c: segmentation maps on synthetic images: a bright square on
 * black whose patch features carry one channel that is high (or low: the
 * polarity rule) on the object. The mask must match the square (IoU 1), the
 * PNG grid must have the documented size and show the mask where the square
 * is; the attention mask and the IoU are checked on hand cases.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "segmap.h"
#include "testing.h"
#include "util.h"

enum { N = 4, FDIM = 6, G = 7, PATCH = 4, H = G * PATCH, W = G * PATCH };

/* Square of 3 x 3 patches at patch (row, col) of each image. */
static const int square_at[N][2] = {{2, 2}, {1, 3}, {3, 1}, {2, 3}};

static int on_object(int i, int py, int px)
{
    return py >= square_at[i][0] && py < square_at[i][0] + 3 &&
           px >= square_at[i][1] && px < square_at[i][1] + 3;
}

/* pixels (N, 1, H, W); features (N, FDIM, G, G) with channel 0 = sign on
 * the object, 0 elsewhere, plus seeded noise on every channel. */
static void make_images(uint8_t *pixels, float *features, float sign)
{
    uint64_t seed = 1234;
    for (int i = 0; i < N; i++) {
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                pixels[(i * H + y) * W + x] =
                    on_object(i, y / PATCH, x / PATCH) ? 200 : 0;
        for (int f = 0; f < FDIM; f++)
            for (int py = 0; py < G; py++)
                for (int px = 0; px < G; px++)
                    features[((i * FDIM + f) * G + py) * G + px] =
                        (f == 0 && on_object(i, py, px) ? sign : 0.0f) +
                        0.05f * (float)testing_rand_normal(&seed);
    }
}

static struct segmap_input make_input(const uint8_t *pixels,
                                      const float *features)
{
    struct segmap_input in = {
        .n = N, .fdim = FDIM, .gh = G, .gw = G, .features = features,
        .channels = 1, .height = H, .width = W, .pixels = pixels,
    };
    return in;
}

static void test_square_mask_and_png(void)
{
    static uint8_t pixels[N * H * W];
    static float features[N * FDIM * G * G];
    make_images(pixels, features, 1.0f);
    struct segmap_input in = make_input(pixels, features);
    struct segmap s;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(segmap_compute(&in, &s, err), 0);
    printf("\n  IoU %.4f, variances %.4f %.4f %.4f, threshold %.3f, flipped %d\n",
           s.iou_mean, s.variances[0], s.variances[1], s.variances[2],
           s.threshold, s.flipped);
    CU_ASSERT_DOUBLE_EQUAL(s.iou_mean, 1.0, 1e-12);
    CU_ASSERT_EQUAL(s.flipped, 0);
    CU_ASSERT_PTR_NULL(s.attn_mask);
    CU_ASSERT_DOUBLE_EQUAL(s.attn_iou_mean, -1.0, 0);
    CU_ASSERT_TRUE(s.variances[0] > 5 * s.variances[1]);

    char *dir = testing_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/segmap.png", dir);
    const int scale = 2;
    CU_ASSERT_EQUAL_FATAL(segmap_write_png(&s, &in, scale, path, err), 0);
    int pw, ph;
    segmap_png_size(&s, &in, scale, &pw, &ph);
    CU_ASSERT_EQUAL(pw, 3 * W * scale + 4 * SEGMAP_GAP);
    CU_ASSERT_EQUAL(ph, N * H * scale + (N + 1) * SEGMAP_GAP);
    VipsImage *img = vips_image_new_from_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(img);
    CU_ASSERT_EQUAL(vips_image_get_width(img), pw);
    CU_ASSERT_EQUAL(vips_image_get_height(img), ph);
    CU_ASSERT_EQUAL(vips_image_get_bands(img), 3);
    size_t len = 0;
    uint8_t *px = vips_image_write_to_memory(img, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(px);
    CU_ASSERT_EQUAL_FATAL(len, (size_t)pw * (size_t)ph * 3);
    /* every image row: the input and mask cells are white exactly on the
     * square (centre of each patch sampled), and the PCA cell is not flat */
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        int y0 = SEGMAP_GAP + i * (H * scale + SEGMAP_GAP);
        uint8_t lo = 255, hi = 0;
        for (int py = 0; py < G; py++)
            for (int pxl = 0; pxl < G; pxl++) {
                int y = y0 + (py * PATCH + PATCH / 2) * scale;
                int xin = SEGMAP_GAP + (pxl * PATCH + PATCH / 2) * scale;
                int xpca = xin + W * scale + SEGMAP_GAP;
                int xmask = xpca + W * scale + SEGMAP_GAP;
                uint8_t want_in = on_object(i, py, pxl) ? 200 : 0;
                uint8_t want_mask = on_object(i, py, pxl) ? 255 : 0;
                wrong += px[((size_t)y * pw + xin) * 3] != want_in;
                wrong += px[((size_t)y * pw + xmask) * 3 + 1] != want_mask;
                uint8_t v = px[((size_t)y * pw + xpca) * 3];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
        CU_ASSERT_TRUE(hi - lo > 100);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    g_free(px);
    g_object_unref(img);
    segmap_free(&s);
    testing_rmtree(dir);
    free(dir);
}

static void test_polarity_flips(void)
{
    static uint8_t pixels[N * H * W];
    static float features[N * FDIM * G * G];
    make_images(pixels, features, -1.0f);
    struct segmap_input in = make_input(pixels, features);
    struct segmap s;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(segmap_compute(&in, &s, err), 0);
    CU_ASSERT_DOUBLE_EQUAL(s.iou_mean, 1.0, 1e-12);
    /* the component's sign rule makes the object's side negative here */
    CU_ASSERT_EQUAL(s.flipped, 1);
    segmap_free(&s);
}

static void test_attention_mask(void)
{
    /* one head, 2 x 2: 0.5 alone holds < 0.6, with 0.3 it holds 0.8 */
    const float a1[] = {0.3f, 0.5f, 0.05f, 0.15f};
    uint8_t m[4];
    segmap_attention_mask(a1, 1, 2, 2, 0.6, m);
    CU_ASSERT_TRUE(m[0] == 1 && m[1] == 1 && m[2] == 0 && m[3] == 0);
    /* two heads averaged: (0.1, 0.9) and (0.7, 0.3) give 0.4 and 0.6 for
     * the first two patches: 0.6 alone holds 0.6 of the mass (sum 1.0) */
    const float a2[] = {0.1f, 0.9f, 0.0f, 0.0f, 0.7f, 0.3f, 0.0f, 0.0f};
    segmap_attention_mask(a2, 2, 2, 2, 0.6, m);
    CU_ASSERT_TRUE(m[0] == 0 && m[1] == 1 && m[2] == 0 && m[3] == 0);
    const float zero[] = {0, 0, 0, 0};
    segmap_attention_mask(zero, 1, 2, 2, 0.6, m);
    CU_ASSERT_TRUE(m[0] + m[1] + m[2] + m[3] == 0);

    /* through segmap_compute: uniform attention on the 9 object patches;
     * five hold 5/9 < 0.6, six hold 2/3: the first six by index are kept */
    static uint8_t pixels[N * H * W];
    static float features[N * FDIM * G * G];
    static float attn[N * 2 * G * G];
    make_images(pixels, features, 1.0f);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < 2; h++)
            for (int p = 0; p < G * G; p++)
                attn[(i * 2 + h) * G * G + p] = on_object(i, p / G, p % G) ? 1.0f : 0.0f;
    struct segmap_input in = make_input(pixels, features);
    in.heads = 2;
    in.attention = attn;
    struct segmap s;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(segmap_compute(&in, &s, err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s.attn_mask);
    int kept = 0, outside = 0;
    for (int p = 0; p < N * G * G; p++) {
        kept += s.attn_mask[p];
        outside += s.attn_mask[p] && !on_object(p / (G * G), p % (G * G) / G, p % G);
    }
    CU_ASSERT_EQUAL(kept, N * 6);
    CU_ASSERT_EQUAL(outside, 0);
    CU_ASSERT_DOUBLE_EQUAL(s.attn_iou_mean, 6.0 / 9.0, 1e-12);
    int pw, ph;
    segmap_png_size(&s, &in, 1, &pw, &ph);
    CU_ASSERT_EQUAL(pw, 4 * W + 5 * SEGMAP_GAP);
    segmap_free(&s);
}

static void test_iou_by_hand(void)
{
    /* mask 2 x 2 with the top-left patch on, upscaled to 4 x 4: the top-left
     * 2 x 2 pixels. Ground truth: those four plus pixel (3, 3), which is
     * non-zero in the third channel only: IoU 4 / 5. */
    const uint8_t mask[] = {1, 0, 0, 0};
    uint8_t pix[3 * 16] = {0};
    pix[0] = pix[1] = pix[4] = pix[5] = 9;
    pix[2 * 16 + 15] = 1;
    CU_ASSERT_DOUBLE_EQUAL(segmap_iou(mask, 2, 2, pix, 3, 4, 4), 0.8, 1e-12);
    const uint8_t none[] = {0, 0, 0, 0};
    uint8_t black[16] = {0};
    CU_ASSERT_DOUBLE_EQUAL(segmap_iou(none, 2, 2, black, 1, 4, 4), 1.0, 0);
}

static void test_bad_input(void)
{
    static uint8_t pixels[N * H * W];
    static float features[N * FDIM * G * G];
    make_images(pixels, features, 1.0f);
    struct segmap_input in = make_input(pixels, features);
    in.channels = 2;
    struct segmap s;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL(segmap_compute(&in, &s, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "channels"));
    in = make_input(pixels, features);
    features[5] = NAN;
    CU_ASSERT_EQUAL(segmap_compute(&in, &s, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "non-finite"));
}

int main(int argc, char **argv)
{
    (void)argc;
    if (VIPS_INIT(argv[0]) != 0) {
        fprintf(stderr, "VIPS_INIT failed: %s\n", vips_error_buffer());
        return 1;
    }
    static const struct testing_case cases[] = {
        {"square on black: IoU 1, PNG grid shows it", test_square_mask_and_png},
        {"object low in the feature: polarity flips", test_polarity_flips},
        {"attention keeps 60% of the mass", test_attention_mask},
        {"IoU by hand: nearest upscale, any channel", test_iou_by_hand},
        {"bad channels and NaN refused", test_bad_input},
        {NULL, NULL},
    };
    int rc = testing_run("segmap", cases);
    vips_shutdown();
    return rc;
}
