/*
 * image.c: decodes one image file with libvips into 8-bit gray or RGB,
 * interleaved. Whatever libvips reads is converted: alpha is flattened onto
 * black, 16-bit is scaled to 8, CMYK and other spaces go through
 * vips_colourspace. The header is checked against max_pixels before any
 * pixel is decoded, and JPEG/WebP shrink on load when the caller's target
 * allows. Every libvips object of a call lives in one local pool. Nothing
 * here crops, augments or knows about tickets.
 */
#include <stdint.h>
#include <string.h>

#include <vips/vips.h>

#include "augment.h"
#include "util.h"

/* Moves libvips' error buffer into err as "path: reason", one line. */
static int vips_fail(char *err, const char *path)
{
    char *msg = vips_error_buffer_copy();
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        msg[--len] = '\0';
    char one[ERR_LEN];
    size_t o = 0;
    for (const char *p = msg; *p && o + 3 < sizeof one; p++) {
        if (*p == '\n') {
            one[o++] = ';';
            one[o++] = ' ';
        } else {
            one[o++] = *p;
        }
    }
    one[o] = '\0';
    errf(err, "%s: %s", path, len ? one : "libvips failed without a message");
    g_free(msg);
    return -1;
}

/* Largest JPEG shrink (1, 2, 4, 8) keeping the shorter side >= target.
 * libjpeg rounds the shrunk size up, so floor division is conservative. */
static int load_shrink(int w, int h, int target)
{
    int side = w < h ? w : h, s = 1;
    if (target <= 0)
        return 1;
    while (s < 8 && side / (2 * s) >= target)
        s *= 2;
    return s;
}

/* In place, n RGB pixels to n gray bytes: PIL's convert("L"),
 * L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16. */
static void rgb_to_gray(uint8_t *px, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = px + 3 * i;
        px[i] = (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] +
                           0x8000u) >> 16);
    }
}

/* Rows computed per request: bounds the region's own buffer for big
 * images while keeping the per-request cost negligible. */
#define READ_STRIP_ROWS 128

/* The pixels of in (uchar) as one g_malloc'd block, computed in the calling
 * thread through a region, top to bottom. vips_image_write_to_memory would
 * start a worker pool per image, which costs more than decoding a 28 px PNG
 * (0.23 ms against 0.12 ms per Fashion-MNIST file, measured). */
static uint8_t *read_pixels(VipsImage *in, const char *path, char *err)
{
    size_t line = (size_t)in->Xsize * in->Bands;
    uint8_t *px = g_try_malloc(line * in->Ysize);
    if (!px) {
        errf(err, "%s: out of memory for %dx%d pixels", path, in->Xsize, in->Ysize);
        return NULL;
    }
    VipsRegion *reg = vips_region_new(in);
    for (int y = 0; y < in->Ysize; y += READ_STRIP_ROWS) {
        VipsRect r = {0, y, in->Xsize, in->Ysize - y};
        if (r.height > READ_STRIP_ROWS)
            r.height = READ_STRIP_ROWS;
        if (vips_region_prepare(reg, &r)) {
            vips_fail(err, path);
            g_object_unref(reg);
            g_free(px);
            return NULL;
        }
        for (int j = 0; j < r.height; j++)
            memcpy(px + (size_t)(y + j) * line,
                   VIPS_REGION_ADDR(reg, 0, y + j), line);
    }
    g_object_unref(reg);
    return px;
}

/* An image libvips cannot convert by its interpretation: keep 3 bands as
 * sRGB (RGB16 for 16-bit) or one as B_W (GREY16), relabelled. */
static int label_space(VipsImage *in, VipsImage **band, VipsImage **out)
{
    int wide = in->BandFmt == VIPS_FORMAT_USHORT;
    if (in->Bands >= 3) {
        if (vips_extract_band(in, band, 0, "n", 3, NULL))
            return -1;
        return vips_copy(*band, out, "interpretation",
                         wide ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB,
                         NULL);
    }
    if (vips_extract_band(in, band, 0, NULL))
        return -1;
    return vips_copy(*band, out, "interpretation",
                     wide ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W,
                     NULL);
}

/* image_load and image_load_buffer on their source (path names it in
 * errors); takes the source's reference. */
static int load_source(struct image *im, VipsSource *src, const char *path,
                       int channels, uint64_t max_pixels, int target,
                       char *err)
{
    CHECK(channels == 1 || channels == 3);
    memset(im, 0, sizeof *im);
    int rc = -1;
    VipsObject *pool = VIPS_OBJECT(vips_image_new());
    VipsImage **t = (VipsImage **)vips_object_local_array(pool, 10);
    if (!src) {
        vips_fail(err, path);
        goto cleanup;
    }
    t[0] = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                      "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    if (!t[0]) {
        vips_fail(err, path);
        goto cleanup;
    }
    VipsImage *in = t[0];
    uint64_t pixels = (uint64_t)in->Xsize * (uint64_t)in->Ysize;
    if (pixels > max_pixels) {
        errf(err, "%s: %dx%d is %llu pixels, more than views.max_pixels = %llu; "
             "not decoded", path, in->Xsize, in->Ysize,
             (unsigned long long)pixels, (unsigned long long)max_pixels);
        goto cleanup;
    }
    const char *loader = "";
    if (vips_image_get_typeof(in, "vips-loader") &&
        vips_image_get_string(in, "vips-loader", &loader) != 0) {
        loader = "";            /* unknown loader: no shrink on load */
        vips_error_clear();
    }
    int shrink = load_shrink(in->Xsize, in->Ysize, target);
    if (shrink > 1 && vips_isprefix("jpegload", loader)) {
        t[1] = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                          "fail_on", VIPS_FAIL_ON_ERROR,
                                          "shrink", shrink, NULL);
        if (!t[1]) {
            vips_fail(err, path);
            goto cleanup;
        }
        in = t[1];
    } else if (shrink > 1 && vips_isprefix("webpload", loader)) {
        t[1] = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                          "fail_on", VIPS_FAIL_ON_ERROR,
                                          "scale", 1.0 / shrink, NULL);
        if (!t[1]) {
            vips_fail(err, path);
            goto cleanup;
        }
        in = t[1];
    }
    if (vips_image_hasalpha(in)) {
        /* Background defaults to black; max_alpha follows the format. */
        if (vips_flatten(in, &t[2], NULL)) {
            vips_fail(err, path);
            goto cleanup;
        }
        in = t[2];
    }
    if (!vips_colourspace_issupported(in)) {
        if (label_space(in, &t[3], &t[4])) {
            vips_fail(err, path);
            goto cleanup;
        }
        in = t[4];
    }
    /* Gray stays gray; everything else becomes sRGB first, and RGB to gray
     * happens below on the bytes with PIL's weights, the same ITU-R 601
     * luma as the grayscale augmentation. libvips' own sRGB -> B_W works in
     * linear light and would give other values than torchvision. */
    VipsInterpretation space = vips_image_guess_interpretation(in);
    int gray_in = space == VIPS_INTERPRETATION_B_W ||
                  space == VIPS_INTERPRETATION_GREY16;
    int to_gray = channels == 1 && !gray_in;
    VipsInterpretation want = channels == 1 && gray_in ? VIPS_INTERPRETATION_B_W
                                                       : VIPS_INTERPRETATION_sRGB;
    /* The common case (an 8-bit file already in the wanted space) skips
     * the no-op operation: on a 28 px PNG each libvips operation costs
     * about as much as the decode. */
    int ready = space == want && in->BandFmt == VIPS_FORMAT_UCHAR &&
                in->Bands == (want == VIPS_INTERPRETATION_B_W ? 1 : 3);
    if (!ready) {
        if (vips_colourspace(in, &t[5], want, NULL)) {
            vips_fail(err, path);
            goto cleanup;
        }
        in = t[5];
    }
    if (in->BandFmt == VIPS_FORMAT_USHORT) {
        if (vips_rshift_const1(in, &t[6], 8, NULL) ||
            vips_cast_uchar(t[6], &t[7], NULL)) {
            vips_fail(err, path);
            goto cleanup;
        }
        in = t[7];
    } else if (in->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(in, &t[6], NULL)) {
            vips_fail(err, path);
            goto cleanup;
        }
        in = t[6];
    }
    int bands = to_gray ? 3 : channels;
    if (in->Bands != bands) {
        errf(err, "%s: %d bands after conversion to %d channel%s", path,
             in->Bands, channels, channels == 1 ? "" : "s");
        goto cleanup;
    }
    uint8_t *px = read_pixels(in, path, err);
    if (!px)
        goto cleanup;
    if (to_gray)
        rgb_to_gray(px, (size_t)in->Xsize * in->Ysize);
    im->w = in->Xsize;
    im->h = in->Ysize;
    im->c = channels;
    im->px = px;
    rc = 0;
cleanup:
    if (src)
        g_object_unref(src);
    g_object_unref(pool);
    return rc;
}

int image_load(struct image *im, const char *path, int channels,
               uint64_t max_pixels, int target, char *err)
{
    /* A source, not a file name: libvips would parse "[...]" in a path as
     * load options. */
    return load_source(im, vips_source_new_from_file(path), path, channels,
                       max_pixels, target, err);
}

int image_load_buffer(struct image *im, const void *buf, size_t len,
                      const char *name, int channels, uint64_t max_pixels,
                      int target, char *err)
{
    return load_source(im, vips_source_new_from_memory(buf, len), name,
                       channels, max_pixels, target, err);
}

void image_free(struct image *im)
{
    g_free(im->px);
    memset(im, 0, sizeof *im);
}
