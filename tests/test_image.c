/*
 * test_image.c: image_load. Files written here with libvips (PNG gray, gray
 * + alpha, RGB, RGBA, 16-bit, JPEG, CMYK JPEG) load to 1 and 3 channels
 * with the expected pixels; JPEG and WebP shrink on load but never below
 * the target; broken
 * files (truncated, corrupt, empty, not an image, a directory, missing) and
 * a header over max_pixels are refused with the path in the message, the
 * latter before any pixel is decoded; 10,000 loads do not grow the RSS;
 * two threads loading and cutting views at once get the same bytes.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vips/vips.h>
#include <zlib.h>

#include "augment.h"
#include "config.h"
#include "testing.h"
#include "util.h"

#define BIG_PIXELS (UINT64_C(1) << 40)

static char *dir;

/* Writes bytes (w, h, bands, format) as name under dir with libvips: JPEG
 * at quality jpeg_q > 0, WebP for jpeg_q < 0, PNG for 0. */
static void save(const char *name, const void *px, int w, int h, int bands,
                 VipsBandFormat fmt, VipsInterpretation space, int jpeg_q)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t size = (size_t)w * h * bands * (fmt == VIPS_FORMAT_USHORT ? 2 : 1);
    VipsImage *im = vips_image_new_from_memory_copy(px, size, w, h, bands, fmt);
    CU_ASSERT_PTR_NOT_NULL_FATAL(im);
    VipsImage *tagged;
    CU_ASSERT_EQUAL_FATAL(vips_copy(im, &tagged, "interpretation", space, NULL), 0);
    int rc = jpeg_q > 0 ? vips_jpegsave(tagged, path, "Q", jpeg_q, NULL)
           : jpeg_q < 0 ? vips_webpsave(tagged, path, NULL)
                        : vips_pngsave(tagged, path, NULL);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    g_object_unref(tagged);
    g_object_unref(im);
}

static const char *at(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void load_ok(struct image *im, const char *name, int channels,
                    int target)
{
    char err[ERR_LEN] = "";
    int rc = image_load(im, at(name), channels, BIG_PIXELS, target, err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(im->c, channels);
}

static void test_gray_png(void)
{
    uint8_t px[6 * 4];
    for (int i = 0; i < 24; i++)
        px[i] = (uint8_t)(i * 11);
    save("gray.png", px, 6, 4, 1, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_B_W, 0);
    struct image im;
    load_ok(&im, "gray.png", 1, 0);
    CU_ASSERT_EQUAL(im.w, 6);
    CU_ASSERT_EQUAL(im.h, 4);
    CU_ASSERT_EQUAL(memcmp(im.px, px, 24), 0);
    image_free(&im);
    CU_ASSERT_PTR_NULL(im.px);
    load_ok(&im, "gray.png", 3, 0);
    for (int i = 0; i < 24; i++)
        for (int c = 0; c < 3; c++)
            CU_ASSERT_EQUAL(im.px[i * 3 + c], px[i]);
    image_free(&im);
    /* gray + alpha: flattened on black, v * a / 255. */
    uint8_t ga[2 * 2 * 2] = {200, 255, 200, 0, 100, 128, 40, 255};
    save("gray_alpha.png", ga, 2, 2, 2, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_B_W, 0);
    load_ok(&im, "gray_alpha.png", 1, 0);
    CU_ASSERT_EQUAL(im.px[0], 200);
    CU_ASSERT_EQUAL(im.px[1], 0);
    CU_ASSERT(abs(im.px[2] - 50) <= 1);
    CU_ASSERT_EQUAL(im.px[3], 40);
    image_free(&im);
}

static void test_rgb_png(void)
{
    uint8_t px[3 * 2 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255,
                             10, 20, 30, 200, 100, 50, 255, 255, 255};
    save("rgb.png", px, 3, 2, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, 0);
    struct image im;
    load_ok(&im, "rgb.png", 3, 0);
    CU_ASSERT_EQUAL(im.w, 3);
    CU_ASSERT_EQUAL(im.h, 2);
    CU_ASSERT_EQUAL(memcmp(im.px, px, 18), 0);
    image_free(&im);
    /* To gray with PIL's L = (19595 R + 38470 G + 7471 B + 32768) >> 16. */
    load_ok(&im, "rgb.png", 1, 0);
    static const uint8_t l[6] = {76, 150, 29, 18, 124, 255};
    CU_ASSERT_EQUAL(memcmp(im.px, l, 6), 0);
    image_free(&im);
    /* RGBA: alpha flattened onto black. */
    uint8_t rgba[2 * 4] = {200, 100, 50, 255, 200, 100, 50, 0};
    save("rgba.png", rgba, 2, 1, 4, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, 0);
    load_ok(&im, "rgba.png", 3, 0);
    static const uint8_t flat[6] = {200, 100, 50, 0, 0, 0};
    CU_ASSERT_EQUAL(memcmp(im.px, flat, 6), 0);
    image_free(&im);
    load_ok(&im, "rgba.png", 1, 0);
    CU_ASSERT_EQUAL(im.px[0], 124);
    CU_ASSERT_EQUAL(im.px[1], 0);
    image_free(&im);
}

static void test_16bit_png(void)
{
    uint16_t g[4] = {0, 40000, 65535, 256};
    save("gray16.png", g, 2, 2, 1, VIPS_FORMAT_USHORT, VIPS_INTERPRETATION_GREY16, 0);
    struct image im;
    load_ok(&im, "gray16.png", 1, 0);
    static const uint8_t want[4] = {0, 156, 255, 1};
    for (int i = 0; i < 4; i++)
        CU_ASSERT(abs(im.px[i] - want[i]) <= 1);
    image_free(&im);
    load_ok(&im, "gray16.png", 3, 0);
    for (int i = 0; i < 4; i++)
        CU_ASSERT(abs(im.px[3 * i + 2] - want[i]) <= 1);
    image_free(&im);
    uint16_t rgb[3] = {65535, 32768, 0};
    save("rgb16.png", rgb, 1, 1, 3, VIPS_FORMAT_USHORT, VIPS_INTERPRETATION_RGB16, 0);
    load_ok(&im, "rgb16.png", 3, 0);
    CU_ASSERT(abs(im.px[0] - 255) <= 1);
    CU_ASSERT(abs(im.px[1] - 128) <= 1);
    CU_ASSERT(abs(im.px[2] - 0) <= 1);
    image_free(&im);
}

static void test_jpeg(void)
{
    /* Flat colour blocks survive JPEG at Q 95 within a few levels. */
    enum { W = 64, H = 48 };
    uint8_t *px = xmalloc(W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = px + (y * W + x) * 3;
            p[0] = x < W / 2 ? 200 : 30;
            p[1] = 120;
            p[2] = y < H / 2 ? 60 : 180;
        }
    save("rgb.jpg", px, W, H, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, 95);
    struct image im;
    load_ok(&im, "rgb.jpg", 3, 0);
    CU_ASSERT_EQUAL(im.w, W);
    CU_ASSERT_EQUAL(im.h, H);
    const uint8_t *p = im.px + (10 * W + 10) * 3;
    CU_ASSERT(abs(p[0] - 200) <= 4 && abs(p[1] - 120) <= 4 && abs(p[2] - 60) <= 4);
    p = im.px + (40 * W + 50) * 3;
    CU_ASSERT(abs(p[0] - 30) <= 4 && abs(p[1] - 120) <= 4 && abs(p[2] - 180) <= 4);
    image_free(&im);
    load_ok(&im, "rgb.jpg", 1, 0);
    int l = (19595 * 200 + 38470 * 120 + 7471 * 60 + 32768) >> 16;
    CU_ASSERT(abs(im.px[10 * W + 10] - l) <= 4);
    image_free(&im);
    free(px);

    /* Shrink on load: 800x600 keeps its shorter side >= target. */
    uint8_t *big = xcalloc(800 * 600, 3);
    save("big.jpg", big, 800, 600, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, 75);
    static const int targets[][3] = {
        {0, 800, 600}, {300, 400, 300}, {301, 800, 600}, {150, 200, 150},
        {100, 200, 150}, {60, 100, 75}, {10, 100, 75},
    };
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        load_ok(&im, "big.jpg", 3, targets[i][0]);
        CU_ASSERT_EQUAL(im.w, targets[i][1]);
        CU_ASSERT_EQUAL(im.h, targets[i][2]);
        image_free(&im);
    }
    /* WebP scales on load too. */
    save("big.webp", big, 800, 600, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, -1);
    load_ok(&im, "big.webp", 3, 150);
    CU_ASSERT_EQUAL(im.w, 200);
    CU_ASSERT_EQUAL(im.h, 150);
    image_free(&im);
    load_ok(&im, "big.webp", 3, 0);
    CU_ASSERT_EQUAL(im.w, 800);
    image_free(&im);
    free(big);

    /* CMYK JPEG through libvips' colour management: no ink is white, full
     * black ink is near black. */
    uint8_t cmyk[2 * 4] = {0, 0, 0, 0, 0, 0, 0, 255};
    save("cmyk.jpg", cmyk, 2, 1, 4, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_CMYK, 95);
    load_ok(&im, "cmyk.jpg", 3, 0);
    CU_ASSERT(im.px[0] > 230 && im.px[1] > 230 && im.px[2] > 230);
    CU_ASSERT(im.px[3] < 60 && im.px[4] < 60 && im.px[5] < 60);
    if (!(im.px[0] > 230 && im.px[3] < 60))
        fprintf(stderr, "cmyk: %d %d %d / %d %d %d\n", im.px[0], im.px[1],
                im.px[2], im.px[3], im.px[4], im.px[5]);
    image_free(&im);
}

/* Writes raw bytes as dir/name. */
static void put(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(at(name), "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL_FATAL(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void refused(const char *path, uint64_t max_pixels, const char *why)
{
    struct image im;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(image_load(&im, path, 3, max_pixels, 0, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NULL(im.px);
    if (why)
        CU_ASSERT_PTR_NOT_NULL(strstr(err, why));
    if (!strstr(err, path) || (why && !strstr(err, why)))
        fprintf(stderr, "unexpected message: %s\n", err);
    else if (getenv("TEST_IMAGE_VERBOSE"))
        fprintf(stderr, "refused: %s\n", err);
}

/* A PNG chunk: length, type, data, CRC over type and data. */
static size_t png_chunk(uint8_t *out, const char *type, const uint8_t *data,
                        uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    memcpy(out + 4, type, 4);
    if (len)
        memcpy(out + 8, data, len);
    uint32_t crc = (uint32_t)crc32(0, out + 4, 4 + len);
    out[8 + len] = (uint8_t)(crc >> 24);
    out[9 + len] = (uint8_t)(crc >> 16);
    out[10 + len] = (uint8_t)(crc >> 8);
    out[11 + len] = (uint8_t)crc;
    return 12 + len;
}

static void test_refusals(void)
{
    char *data;
    size_t len;
    char err[ERR_LEN];
    uint8_t px[64 * 64 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 7);
    save("ok.png", px, 64, 64, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, 0);
    save("ok.jpg", px, 64, 64, 3, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_sRGB, 90);

    data = util_read_file(at("ok.png"), &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    put("truncated.png", data, len / 2);
    data[len / 2] ^= 0x55;      /* inside the IDAT: CRC and zlib fail */
    data[len / 2 + 1] ^= 0xaa;
    put("corrupt.png", data, len);
    free(data);
    data = util_read_file(at("ok.jpg"), &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    put("truncated.jpg", data, len / 2);
    free(data);
    put("empty.png", "", 0);
    put("text.png", "hello, not an image\n", 20);

    refused(at("truncated.png"), BIG_PIXELS, NULL);
    refused(at("corrupt.png"), BIG_PIXELS, NULL);
    refused(at("truncated.jpg"), BIG_PIXELS, NULL);
    refused(at("empty.png"), BIG_PIXELS, NULL);
    refused(at("text.png"), BIG_PIXELS, NULL);
    refused(dir, BIG_PIXELS, NULL);
    refused(at("missing.png"), BIG_PIXELS, NULL);

    /* max_pixels: 64 x 64 = 4096 is allowed at 4096 and refused below. */
    struct image im;
    CU_ASSERT_EQUAL(image_load(&im, at("ok.png"), 3, 4096, 0, err), 0);
    image_free(&im);
    refused(at("ok.png"), 4095, "max_pixels");

    /* A header claiming 60000 x 60000 gray pixels (3.6 GB) and one row of
     * data: refused for its size, with no decoding tried (decoding would
     * fail differently, on the missing rows). */
    uint8_t png[256];
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(png, sig, 8);
    size_t n = 8;
    uint8_t ihdr[13] = {0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60, 8, 0, 0, 0, 0};
    n += png_chunk(png + n, "IHDR", ihdr, 13);
    uint8_t row[16] = {0}, z[64];
    uLongf zlen = sizeof z;
    CU_ASSERT_EQUAL_FATAL(compress(z, &zlen, row, sizeof row), Z_OK);
    n += png_chunk(png + n, "IDAT", z, (uint32_t)zlen);
    n += png_chunk(png + n, "IEND", NULL, 0);
    put("huge.png", png, n);
    double t0 = util_time_mono();
    refused(at("huge.png"), 178956970, "max_pixels");
    CU_ASSERT(util_time_mono() - t0 < 1.0);
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_no_leak(void)
{
    uint8_t px[28 * 28];
    for (int i = 0; i < 784; i++)
        px[i] = (uint8_t)(i * 3);
    save("leak.png", px, 28, 28, 1, VIPS_FORMAT_UCHAR, VIPS_INTERPRETATION_B_W, 0);
    struct image im;
    char err[ERR_LEN];
    long before = 0;
    for (int i = 0; i < 11000; i++) {
        if (i == 1000)
            before = rss_kb();
        CU_ASSERT_EQUAL_FATAL(image_load(&im, at("leak.png"), i % 2 ? 3 : 1,
                                         BIG_PIXELS, 0, err), 0);
        image_free(&im);
        if (i % 100 == 0) {     /* failures must not leak either */
            CU_ASSERT_EQUAL_FATAL(image_load(&im, at("text.png"), 1, BIG_PIXELS,
                                             0, err), -1);
        }
    }
    long growth = rss_kb() - before;
    if (growth > 2048)
        fprintf(stderr, "RSS grew by %ld kB over 10,000 loads\n", growth);
    CU_ASSERT(growth <= 2048);
}

/* Loads rgb.jpg (written by the JPEG case) and cuts its default views (3 channels), n times, into out
 * (the bytes of the last round). */
struct thread_job {
    int n;
    char path[4096];    /* at() returns one static buffer: not for threads */
    uint8_t out[2 * 3 * 28 * 28 + 6 * 3 * 14 * 14];
    int failed;
};

static void *views_job(void *arg)
{
    struct thread_job *job = arg;
    struct config c;
    config_defaults(&c);
    c.views.channels = 3;
    uint8_t *g[2] = {job->out, job->out + 3 * 784};
    uint8_t *l[6];
    for (int k = 0; k < 6; k++)
        l[k] = job->out + 2 * 3 * 784 + k * 3 * 196;
    char err[ERR_LEN];
    for (int i = 0; i < job->n; i++) {
        struct image im;
        if (image_load(&im, job->path, 3, BIG_PIXELS, 0, err) != 0) {
            fprintf(stderr, "thread load %d failed: %s\n", i, err);
            job->failed = 1;
            return NULL;
        }
        augment_views(g, l, &im, &c.views, 42, 1, 7);
        image_free(&im);
    }
    return NULL;
}

static void test_threads(void)
{
    /* Two threads at once give the bytes of one thread alone. */
    static struct thread_job solo = {.n = 1}, a = {.n = 200}, b = {.n = 200};
    struct thread_job *jobs[] = {&solo, &a, &b};
    for (int k = 0; k < 3; k++)
        snprintf(jobs[k]->path, sizeof jobs[k]->path, "%s", at("rgb.jpg"));
    views_job(&solo);
    CU_ASSERT_FATAL(!solo.failed);
    pthread_t ta, tb;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&ta, NULL, views_job, &a), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&tb, NULL, views_job, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CU_ASSERT(!a.failed && !b.failed);
    CU_ASSERT_EQUAL(memcmp(a.out, solo.out, sizeof solo.out), 0);
    CU_ASSERT_EQUAL(memcmp(b.out, solo.out, sizeof solo.out), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (VIPS_INIT(argv[0]))
        vips_error_exit("vips init");
    vips_cache_set_max(0);
    vips_concurrency_set(1);
    dir = testing_tmpdir();
    static const struct testing_case cases[] = {
        {"gray PNG, gray + alpha", test_gray_png},
        {"RGB and RGBA PNG", test_rgb_png},
        {"16-bit PNG", test_16bit_png},
        {"JPEG, WebP, CMYK, shrink on load", test_jpeg},
        {"refusals name the file", test_refusals},
        {"10,000 loads do not leak", test_no_leak},
        {"two threads, same bytes", test_threads},
        {NULL, NULL},
    };
    int rc = testing_run("image", cases);
    testing_rmtree(dir);
    free(dir);
    vips_shutdown();
    return rc;
}
