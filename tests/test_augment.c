/*
 * test_augment.c: the views of a sample. RandomResizedCrop boxes stay inside
 * the image and follow the scale and ratio ranges (thousands of draws, and
 * the fallback); each pixel step on a hand-computed case; the per-view draws
 * happen at their configured rates; views are a pure function of (seed,
 * epoch, index, view); the eval view is the image itself at 28 px and
 * Resize + CenterCrop otherwise.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "augment_ops.h"
#include "config.h"
#include "testing.h"
#include "util.h"

#define NEAR(a, b, tol) CU_ASSERT(fabs((double)(a) - (double)(b)) <= (tol))

/* A w x h image of c channels with seeded random bytes; free px with free(). */
static struct image random_image(int w, int h, int c, uint64_t seed)
{
    struct image im = {w, h, c, xmalloc((size_t)w * h * c)};
    for (size_t i = 0; i < (size_t)w * h * c; i++)
        im.px[i] = (uint8_t)(testing_rand_u64(&seed) >> 56);
    return im;
}

static void crop_stats(int w, int h, double smin, double smax, int n,
                       double *mean_scale, double *mean_logr, double *mean_x)
{
    struct config c;
    config_defaults(&c);
    double ss = 0, sl = 0, sx = 0;
    int fits = 0;
    for (int i = 0; i < n; i++) {
        struct rng r;
        rng_init(&r, 7, 1, (uint64_t)i, 0);
        struct augment_crop b;
        int att = augment_sample_crop(&b, &r, w, h, smin, smax,
                                      c.views.ratio_min, c.views.ratio_max);
        CU_ASSERT(b.x >= 0 && b.y >= 0 && b.w >= 1 && b.h >= 1);
        CU_ASSERT(b.x + b.w <= w && b.y + b.h <= h);
        if (att == 0)
            continue;
        fits++;
        /* Sides are rounded, so area and ratio hold up to half a pixel. */
        double area = (double)b.w * b.h / ((double)w * h);
        double lo = (sqrt(smin * w * h) - 1) * (sqrt(smin * w * h) - 1) / ((double)w * h);
        CU_ASSERT(area >= lo && area <= smax * (1 + 4.0 / sqrt(smax * w * h)));
        double ratio = (double)b.w / b.h;
        CU_ASSERT(ratio >= c.views.ratio_min * (1 - 1.0 / b.w) - 1e-9 &&
                  ratio <= c.views.ratio_max * (1 + 1.0 / b.h) + 1e-9);
        ss += area;
        sl += log(ratio);
        if (b.w < w)
            sx += (double)b.x / (w - b.w);
        else
            sx += 0.5;
    }
    CU_ASSERT(fits > n * 9 / 10);
    *mean_scale = ss / fits;
    *mean_logr = sl / fits;
    *mean_x = sx / fits;
}

static void test_crop_ranges(void)
{
    double ms, ml, mx;
    /* Local scale on 500x375: every first draw fits, so the moments are
     * those of the draws: area uniform on [0.05, 0.3], log ratio symmetric,
     * position uniform. */
    crop_stats(500, 375, 0.05, 0.3, 5000, &ms, &ml, &mx);
    NEAR(ms, 0.175, 0.005);
    NEAR(ml, 0.0, 0.01);
    NEAR(mx, 0.5, 0.02);
    /* Global scale: large draws do not fit and are redrawn, so the mean
     * area sits below the midpoint 0.65 but well above the minimum. */
    crop_stats(500, 375, 0.3, 1.0, 5000, &ms, &ml, &mx);
    CU_ASSERT(ms > 0.45 && ms < 0.65);
    crop_stats(28, 28, 0.3, 1.0, 5000, &ms, &ml, &mx);
    CU_ASSERT(ms > 0.45 && ms < 0.7);
}

static void test_crop_fallback(void)
{
    struct rng r;
    rng_init(&r, 1, 2, 3, 4);
    struct augment_crop b;
    /* 1000x50 at >= 90% area cannot fit a ratio <= 4/3: the fallback is the
     * center crop clamped to ratio 4/3. */
    CU_ASSERT_EQUAL(augment_sample_crop(&b, &r, 1000, 50, 0.9, 1.0, 0.75, 4.0 / 3), 0);
    CU_ASSERT_EQUAL(b.w, 67);
    CU_ASSERT_EQUAL(b.h, 50);
    CU_ASSERT_EQUAL(b.x, 466);
    CU_ASSERT_EQUAL(b.y, 0);
    CU_ASSERT_EQUAL(augment_sample_crop(&b, &r, 50, 1000, 0.9, 1.0, 0.75, 4.0 / 3), 0);
    CU_ASSERT_EQUAL(b.w, 50);
    CU_ASSERT_EQUAL(b.h, 67);
    CU_ASSERT_EQUAL(b.y, 466);
}

static void test_flip(void)
{
    /* A 3x3 RGB image resized to itself is the identity; flip mirrors it. */
    uint8_t px[27];
    for (int i = 0; i < 27; i++)
        px[i] = (uint8_t)(i * 9);
    struct image im = {3, 3, 3, px};
    float out[27], tmp[256];
    CU_ASSERT_FATAL(augment_resize_scratch(3, 3, 3, 3, 3, 3) <= 256);
    augment_resize(out, tmp, &im, 0, 0, 3, 3, 3, 3, 0, 0, 3, 0);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++)
            for (int c = 0; c < 3; c++)
                NEAR(out[(c * 3 + y) * 3 + x], px[(y * 3 + x) * 3 + c], 1e-4);
    augment_resize(out, tmp, &im, 0, 0, 3, 3, 3, 3, 0, 0, 3, 1);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++)
            for (int c = 0; c < 3; c++)
                NEAR(out[(c * 3 + y) * 3 + x], px[(y * 3 + 2 - x) * 3 + c], 1e-4);
}

static void test_resize_by_hand(void)
{
    /* Rows 0,10,20,30 halved: PIL's triangle widened to support 2 gives
     * weights (.75,.75,.25)/1.75 and (.25,.75,.75)/1.75. */
    uint8_t px[16];
    for (int i = 0; i < 16; i++)
        px[i] = (uint8_t)(10 * (i % 4));
    struct image im = {4, 4, 1, px};
    float out[4], tmp[256];
    CU_ASSERT_FATAL(augment_resize_scratch(1, 4, 4, 2, 2, 2) <= 256);
    augment_resize(out, tmp, &im, 0, 0, 4, 4, 2, 2, 0, 0, 2, 0);
    NEAR(out[0], 12.5 / 1.75, 1e-4);
    NEAR(out[1], 40.0 / 1.75, 1e-4);
    NEAR(out[2], 12.5 / 1.75, 1e-4);
    /* A sub-box: columns 1..2 upscaled to 2 is the box itself. */
    augment_resize(out, tmp, &im, 1, 1, 2, 2, 2, 2, 0, 0, 2, 0);
    NEAR(out[0], 10, 1e-4);
    NEAR(out[1], 20, 1e-4);
}

static void test_brightness_contrast(void)
{
    float x[4] = {10, 100, 200, 0};
    augment_brightness(x, 1, 4, 1.5f);
    NEAR(x[0], 15, 1e-4);
    NEAR(x[1], 150, 1e-4);
    NEAR(x[2], 255, 1e-4);
    NEAR(x[3], 0, 1e-4);
    float g[4] = {0, 100, 200, 100};    /* mean 100 */
    augment_contrast(g, 1, 4, 0.5f);
    NEAR(g[0], 50, 1e-4);
    NEAR(g[1], 100, 1e-4);
    NEAR(g[2], 150, 1e-4);
    /* RGB: red and blue pixels, grayscale 76.245 and 29.07, mean 52.6575;
     * factor 0 gives the mean everywhere, factor 2 pushes away from it. */
    float c[6] = {255, 0, 0, 0, 0, 255};
    augment_contrast(c, 3, 2, 0.0f);
    for (int i = 0; i < 6; i++)
        NEAR(c[i], 52.6575, 1e-3);
    float d[6] = {100, 40, 60, 60, 80, 40};   /* R G B planes of 2 pixels */
    double m = (0.299 * 100 + 0.587 * 60 + 0.114 * 80 + 0.299 * 40 +
                0.587 * 60 + 0.114 * 40) / 2;
    augment_contrast(d, 3, 2, 2.0f);
    NEAR(d[0], 200 - m, 1e-3);
    NEAR(d[1], 80 - m, 1e-3);
}

static void test_gray_saturation(void)
{
    float x[3] = {100, 50, 200};
    augment_grayscale(x, 3, 1);
    for (int i = 0; i < 3; i++)
        NEAR(x[i], 82.05, 1e-3);
    float s[3] = {100, 50, 200};
    augment_saturation(s, 3, 1, 2.0f);
    NEAR(s[0], 117.95, 1e-3);
    NEAR(s[1], 17.95, 1e-3);
    NEAR(s[2], 255, 1e-3);
    float z[3] = {100, 50, 200};
    augment_saturation(z, 3, 1, 0.0f);
    NEAR(z[0], 82.05, 1e-3);
    /* One channel: saturation, hue and grayscale leave it alone. */
    float one[2] = {30, 220};
    augment_saturation(one, 1, 2, 0.0f);
    augment_hue(one, 1, 2, 0.25f);
    augment_grayscale(one, 1, 2);
    NEAR(one[0], 30, 0);
    NEAR(one[1], 220, 0);
}

static void test_hue(void)
{
    /* Pure colours: red +1/3 turn is green, -1/3 is blue, 1/2 is cyan;
     * a gray pixel does not move. Planes: R of 4 pixels, G, B. */
    float x[12] = {255, 255, 255, 128, 0, 0, 0, 128, 0, 0, 0, 128};
    augment_hue(x, 3, 4, 1.0f / 3);
    NEAR(x[0], 0, 1e-3);
    NEAR(x[4], 255, 1e-3);
    NEAR(x[8], 0, 1e-3);
    NEAR(x[3], 128, 1e-3);
    NEAR(x[7], 128, 1e-3);
    NEAR(x[11], 128, 1e-3);
    float b[3] = {255, 0, 0};
    augment_hue(b, 3, 1, -1.0f / 3);
    NEAR(b[0], 0, 1e-3);
    NEAR(b[1], 0, 1e-3);
    NEAR(b[2], 255, 1e-3);
    float c[3] = {255, 0, 0};
    augment_hue(c, 3, 1, 0.5f);
    NEAR(c[0], 0, 1e-3);
    NEAR(c[1], 255, 1e-3);
    NEAR(c[2], 255, 1e-3);
    /* Half a turn twice is the identity on any colour. */
    float p[3] = {200, 100, 50};
    augment_hue(p, 3, 1, 0.5f);
    augment_hue(p, 3, 1, 0.5f);
    NEAR(p[0], 200, 1e-3);
    NEAR(p[1], 100, 1e-3);
    NEAR(p[2], 50, 1e-3);
}

static void test_solarize_quantize(void)
{
    float x[6] = {127.4f, 127.6f, 128, 255, 0, -3};
    uint8_t q[6];
    augment_quantize(q, x, 6, 0, 128);
    static const uint8_t plain[6] = {127, 128, 128, 255, 0, 0};
    CU_ASSERT_EQUAL(memcmp(q, plain, 6), 0);
    augment_quantize(q, x, 6, 1, 128);
    static const uint8_t sol[6] = {127, 127, 127, 0, 0, 0};
    CU_ASSERT_EQUAL(memcmp(q, sol, 6), 0);
}

static void test_blur(void)
{
    CU_ASSERT_EQUAL(augment_blur_ksize(224), 23);
    CU_ASSERT_EQUAL(augment_blur_ksize(96), 9);
    CU_ASSERT_EQUAL(augment_blur_ksize(28), 3);
    CU_ASSERT_EQUAL(augment_blur_ksize(14), 3);
    enum { S = 31 };
    float x[S * S] = {0}, tmp[S * S];
    x[15 * S + 15] = 255;
    augment_blur(x, tmp, 1, S, 23, 2.0f);
    double sum = 0;
    for (int i = 0; i < S * S; i++)
        sum += x[i];
    NEAR(sum, 255, 1e-2);
    /* Symmetric in x, in y and under transposition; the centre is 255 g0^2
     * with g the normalised 23-tap kernel. */
    for (int y = 0; y < S; y++)
        for (int i = 0; i < S; i++) {
            NEAR(x[y * S + i], x[y * S + (S - 1 - i)], 1e-4);
            NEAR(x[y * S + i], x[(S - 1 - y) * S + i], 1e-4);
            NEAR(x[y * S + i], x[i * S + y], 1e-4);
        }
    double norm = 0;
    for (int t = -11; t <= 11; t++)
        norm += exp(-t * t / 8.0);
    NEAR(x[15 * S + 15], 255 / (norm * norm), 1e-3);
    NEAR(x[15 * S + 16] / x[15 * S + 15], exp(-1 / 8.0), 1e-4);
}

static struct config_views views_default(void)
{
    struct config c;
    config_defaults(&c);
    return c.views;
}

/* Runs augment_views into one malloc'd block; caller frees. */
static uint8_t *run_views(const struct image *im, const struct config_views *v,
                          uint64_t seed, uint64_t epoch, uint64_t index,
                          size_t *len)
{
    size_t gsz = (size_t)v->channels * v->global_size * v->global_size;
    size_t lsz = (size_t)v->channels * v->local_size * v->local_size;
    *len = gsz * v->global_count + lsz * v->local_count;
    uint8_t *all = xmalloc(*len);
    uint8_t *g[16], *l[64];
    for (int k = 0; k < v->global_count; k++)
        g[k] = all + k * gsz;
    for (int k = 0; k < v->local_count; k++)
        l[k] = all + gsz * v->global_count + k * lsz;
    augment_views(g, l, im, v, seed, epoch, index);
    return all;
}

static void test_determinism(void)
{
    struct config_views v = views_default();
    v.channels = 3;
    struct image im = random_image(60, 45, 3, 11);
    size_t n, n2;
    uint8_t *a = run_views(&im, &v, 5, 2, 9, &n);
    uint8_t *b = run_views(&im, &v, 5, 2, 9, &n2);
    CU_ASSERT_EQUAL_FATAL(n, n2);
    CU_ASSERT_EQUAL(memcmp(a, b, n), 0);
    size_t g = 3 * 28 * 28;
    CU_ASSERT_NOT_EQUAL(memcmp(a, a + g, g), 0);    /* view 0 vs view 1 */
    free(b);
    b = run_views(&im, &v, 5, 2, 10, &n2);          /* other sample */
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, n), 0);
    free(b);
    b = run_views(&im, &v, 5, 3, 9, &n2);           /* other epoch */
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, n), 0);
    free(b);
    b = run_views(&im, &v, 6, 2, 9, &n2);           /* other seed */
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, n), 0);
    free(b);
    /* Different crops, not just different colours: another view, sample,
     * epoch or seed moves the box. */
    static const uint64_t names[][4] = {
        {5, 2, 9, 1}, {5, 2, 10, 0}, {5, 3, 9, 0}, {6, 2, 9, 0},
    };
    struct augment_params p0, p1;
    struct rng r0, r1;
    rng_init(&r0, 5, 2, 9, 0);
    augment_draw_params(&p0, &r0, 60, 45, 0.3, 1.0, &v);
    for (int k = 0; k < 4; k++) {
        rng_init(&r1, names[k][0], names[k][1], names[k][2], names[k][3]);
        augment_draw_params(&p1, &r1, 60, 45, 0.3, 1.0, &v);
        CU_ASSERT(memcmp(&p0.crop, &p1.crop, sizeof p0.crop) != 0);
    }
    free(a);
    free(im.px);
}

static void test_draw_rates(void)
{
    struct config_views v = views_default();
    enum { N = 8000 };
    int flip = 0, jit = 0, gray = 0, blur = 0, sol = 0, perms[256] = {0};
    for (int i = 0; i < N; i++) {
        struct rng r;
        rng_init(&r, 3, 0, (uint64_t)i, 1);
        struct augment_params p;
        augment_draw_params(&p, &r, 28, 28, 0.3, 1.0, &v);
        flip += p.flip;
        jit += p.jitter;
        gray += p.gray;
        blur += p.blur;
        sol += p.solarize;
        perms[p.order[0] * 64 + p.order[1] * 16 + p.order[2] * 4 + p.order[3]]++;
        CU_ASSERT(p.brightness >= 0.6f && p.brightness <= 1.4f);
        CU_ASSERT(p.contrast >= 0.6f && p.contrast <= 1.4f);
        CU_ASSERT(p.saturation >= 0.8f && p.saturation <= 1.2f);
        CU_ASSERT(p.hue >= -0.1f && p.hue <= 0.1f);
        CU_ASSERT(p.sigma >= 0.1f && p.sigma <= 2.0f);
    }
    /* Binomial standard error at N = 8000 is at most 0.0056. */
    NEAR(flip / (double)N, 0.5, 0.025);
    NEAR(jit / (double)N, 0.8, 0.025);
    NEAR(gray / (double)N, 0.2, 0.025);
    NEAR(blur / (double)N, 0.5, 0.025);
    NEAR(sol / (double)N, 0.2, 0.025);
    int seen = 0;
    for (int k = 0; k < 256; k++)
        if (perms[k]) {
            seen++;
            NEAR(perms[k] / (double)N, 1 / 24.0, 0.015);
        }
    CU_ASSERT_EQUAL(seen, 24);
}

static void test_constant_image(void)
{
    /* Every step maps a constant gray image to a constant one (brightness
     * and solarize change the value, nothing else does), whatever the
     * shape: odd and degenerate shapes exercise the crop fallback and the
     * resampler's edges. */
    static const int shapes[][2] = {
        {1, 1}, {1, 500}, {500, 1}, {3, 2}, {37, 23}, {28, 28}, {640, 480},
    };
    static const int sizes[][2] = {{28, 14}, {224, 96}};
    struct config_views v = views_default();
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int c = 1; c <= 3; c += 2)
            for (int z = 0; z < 2; z++) {
                v.channels = c;
                v.global_size = sizes[z][0];
                v.local_size = sizes[z][1];
                int w = shapes[k][0], h = shapes[k][1];
                struct image im = {w, h, c, xmalloc((size_t)w * h * c)};
                memset(im.px, 77, (size_t)w * h * c);
                size_t n;
                uint8_t *a = run_views(&im, &v, 1, 0, k, &n);
                size_t gsz = (size_t)c * v.global_size * v.global_size;
                size_t lsz = (size_t)c * v.local_size * v.local_size;
                int bad = 0;
                for (size_t i = 0; i < n; i++) {
                    size_t start = i < 2 * gsz ? i / gsz * gsz
                                               : 2 * gsz + (i - 2 * gsz) / lsz * lsz;
                    bad += a[i] != a[start];
                }
                CU_ASSERT_EQUAL(bad, 0);
                free(a);
                free(im.px);
            }
    /* Geometry alone keeps the value itself. */
    v = views_default();
    v.jitter_p = v.solarize_p = 0;
    v.blur_p = 1;
    struct image im = {37, 23, 1, xmalloc(37 * 23)};
    memset(im.px, 77, 37 * 23);
    size_t n;
    uint8_t *a = run_views(&im, &v, 1, 0, 0, &n);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL_FATAL(a[i], 77);
    free(a);
    free(im.px);
}

static void test_eval_view(void)
{
    struct config_views v = views_default();
    for (int c = 1; c <= 3; c += 2) {
        v.channels = c;
        struct image im = random_image(28, 28, c, 3);
        uint8_t out[3 * 28 * 28];
        augment_eval_view(out, &im, &v);
        for (int ch = 0; ch < c; ch++)
            for (int i = 0; i < 28 * 28; i++)
                CU_ASSERT_EQUAL_FATAL(out[ch * 784 + i], im.px[i * c + ch]);
        free(im.px);
    }
    /* 40x30 ramp 6x: Resize(28) makes 37x28, CenterCrop drops round(4.5)
     * = 4 columns on the left. Inside, a linear ramp resamples to about
     * itself at the output pixel's centre (within a unit: the widened
     * triangle's taps are not symmetric around every centre); one column
     * off would be 6.5 off. */
    v.channels = 1;
    struct image im = {40, 30, 1, xmalloc(40 * 30)};
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 40; x++)
            im.px[y * 40 + x] = (uint8_t)(6 * x);
    uint8_t out[28 * 28];
    augment_eval_view(out, &im, &v);
    for (int y = 0; y < 28; y++)
        for (int j = 2; j < 26; j++)
            NEAR(out[y * 28 + j], 6 * ((j + 4 + 0.5) * 40.0 / 37 - 0.5), 1.0);
    free(im.px);
}

static void test_load_target(void)
{
    struct config_views v = views_default();
    CU_ASSERT_EQUAL(augment_load_target(&v), 63);
    v.global_size = 224;
    v.local_size = 96;
    CU_ASSERT_EQUAL(augment_load_target(&v), 430);
    v.local_count = 0;
    CU_ASSERT_EQUAL(augment_load_target(&v), 409);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"crop inside, scale and ratio ranges", test_crop_ranges},
        {"crop fallback is a clamped center crop", test_crop_fallback},
        {"flip mirrors columns", test_flip},
        {"resize weights by hand", test_resize_by_hand},
        {"brightness and contrast", test_brightness_contrast},
        {"grayscale and saturation", test_gray_saturation},
        {"hue of pure colours", test_hue},
        {"solarize and rounding", test_solarize_quantize},
        {"blur of an impulse", test_blur},
        {"views are a function of their name", test_determinism},
        {"per-view draw rates", test_draw_rates},
        {"constant image stays constant", test_constant_image},
        {"eval view", test_eval_view},
        {"load target", test_load_target},
        {NULL, NULL},
    };
    return testing_run("augment", cases);
}
