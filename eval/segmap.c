/*
 * segmap.c: PCA colour maps, foreground masks, their IoU and the PNG grid
 * (see segmap.h for the decisions). The PCA is pca.c's; the PNG goes
 * through libvips into memory, then util_write_file_atomic.
 */
#include "segmap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "pca.h"
#include "util.h"

#define OTSU_BINS 256
#define GAP_GRAY 96

static int compare_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Value at quantile q of sorted v (n), nearest rank. */
static float quantile(const float *sorted, int64_t n, double q)
{
    int64_t i = (int64_t)floor(q * (double)(n - 1) + 0.5);
    return sorted[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* Otsu's threshold of v (n) on a histogram over [min, max]: the split
 * that maximises the between-class variance. A constant v gives its value
 * (nothing lies above it). */
static float otsu_threshold(const float *v, int64_t n)
{
    float lo = v[0], hi = v[0];
    for (int64_t i = 1; i < n; i++) {
        lo = fminf(lo, v[i]);
        hi = fmaxf(hi, v[i]);
    }
    if (!(hi > lo))
        return hi;
    double hist[OTSU_BINS] = {0}, width = ((double)hi - lo) / OTSU_BINS;
    for (int64_t i = 0; i < n; i++) {
        int b = (int)(((double)v[i] - lo) / width);
        hist[b < 0 ? 0 : b >= OTSU_BINS ? OTSU_BINS - 1 : b] += 1.0;
    }
    double total = 0.0;
    for (int b = 0; b < OTSU_BINS; b++)
        total += (b + 0.5) * hist[b];
    double w0 = 0.0, sum0 = 0.0, best = -1.0;
    int best_b = 0;
    for (int b = 0; b < OTSU_BINS - 1; b++) {
        w0 += hist[b];
        sum0 += (b + 0.5) * hist[b];
        double w1 = (double)n - w0;
        if (w0 == 0.0 || w1 == 0.0)
            continue;
        double m0 = sum0 / w0, m1 = (total - sum0) / w1;
        double between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (between > best) {
            best = between;
            best_b = b;
        }
    }
    /* midway between the two classes' nearest values, so that "v > t"
     * splits exactly as the histogram did */
    float below = lo, above = hi;
    for (int64_t i = 0; i < n; i++) {
        int b = (int)(((double)v[i] - lo) / width);
        if (b <= best_b)
            below = fmaxf(below, v[i]);
        else
            above = fminf(above, v[i]);
    }
    return below + (above - below) * 0.5f;
}

double segmap_iou(const uint8_t *mask, int gh, int gw, const uint8_t *pixels,
                  int channels, int height, int width)
{
    int64_t inter = 0, uni = 0;
    const int64_t plane = (int64_t)height * width;
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            int m = mask[(int64_t)y * gh / height * gw + (int64_t)x * gw / width] != 0;
            int t = 0;
            for (int c = 0; c < channels; c++)
                t |= pixels[c * plane + (int64_t)y * width + x] > 0;
            inter += m && t;
            uni += m || t;
        }
    return uni == 0 ? 1.0 : (double)inter / (double)uni;
}

struct ranked {
    float v;
    int i;
};

/* Descending by value, ascending index on ties. */
static int compare_ranked(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? 1 : -1;
    return x->i - y->i;
}

void segmap_attention_mask(const float *attn, int heads, int gh, int gw,
                           double keep, uint8_t *mask)
{
    const size_t np = (size_t)gh * (size_t)gw;
    struct ranked *r = xmalloc(np * sizeof *r);
    double total = 0.0;
    for (size_t i = 0; i < np; i++) {
        double s = 0.0;
        for (int h = 0; h < heads; h++)
            s += attn[(size_t)h * np + i];
        r[i].v = (float)(s / heads);
        r[i].i = (int)i;
        total += r[i].v;
    }
    memset(mask, 0, np);
    if (total > 0.0) {
        qsort(r, np, sizeof *r, compare_ranked);
        double cum = 0.0;
        for (size_t k = 0; k < np && cum < keep * total; k++) {
            mask[r[k].i] = 1;
            cum += r[k].v;
        }
    }
    free(r);
}

static int check_input(const struct segmap_input *in, char *err)
{
    if (in->n < 1 || in->fdim < 1 || in->gh < 1 || in->gw < 1 ||
        (int64_t)in->n * in->gh * in->gw < 2)
        return errf(err, "segmap: need n, fdim, gh, gw >= 1 and at least two "
                    "patches (got n %d, fdim %d, grid %dx%d)", in->n, in->fdim,
                    in->gh, in->gw);
    if (in->channels != 1 && in->channels != 3)
        return errf(err, "segmap: images must have 1 or 3 channels (got %d)",
                    in->channels);
    if (in->height < 1 || in->width < 1)
        return errf(err, "segmap: bad image size %dx%d", in->height, in->width);
    if (in->attention && in->heads < 1)
        return errf(err, "segmap: attention given with %d heads", in->heads);
    return 0;
}

/* Foreground is the side of the threshold that covers more of the centre
 * than of the border (see segmap.h). */
static int mask_flipped(const float *c0, int n, int gh, int gw, float thr)
{
    int64_t border = 0, border_fg = 0, centre = 0, centre_fg = 0;
    for (int i = 0; i < n; i++)
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < gw; x++) {
                int fg = c0[((int64_t)i * gh + y) * gw + x] > thr;
                if (y == 0 || y == gh - 1 || x == 0 || x == gw - 1) {
                    border++;
                    border_fg += fg;
                }
                if (y >= gh / 4 && y < gh - gh / 4 && x >= gw / 4 &&
                    x < gw - gw / 4) {
                    centre++;
                    centre_fg += fg;
                }
            }
    /* border_fg / border > centre_fg / centre, without division */
    return border_fg * centre > centre_fg * border;
}

int segmap_compute(const struct segmap_input *in, struct segmap *out,
                   char *err)
{
    memset(out, 0, sizeof *out);
    if (check_input(in, err) != 0)
        return -1;
    const int n = in->n, fdim = in->fdim, gh = in->gh, gw = in->gw;
    const int64_t np = (int64_t)gh * gw, N = (int64_t)n * np;
    const int k = fdim < 3 ? fdim : 3;

    /* patch vectors (N, fdim) from (n, fdim, gh, gw) */
    float *x = xmalloc_aligned((size_t)N * (size_t)fdim * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int f = 0; f < fdim; f++)
            for (int64_t p = 0; p < np; p++)
                x[((int64_t)i * np + p) * fdim + f] =
                    in->features[((int64_t)i * fdim + f) * np + p];
    float *mean = xmalloc((size_t)fdim * sizeof(float));
    float *comp = xmalloc((size_t)k * (size_t)fdim * sizeof(float));
    float *proj = xmalloc_aligned((size_t)N * (size_t)k * sizeof(float));
    float *col = xmalloc((size_t)N * sizeof(float));
    int rc = pca_fit(x, N, fdim, k, mean, comp, out->variances, err);
    if (rc != 0)
        goto cleanup;
    pca_project(x, N, fdim, mean, comp, k, proj);

    out->n = n;
    out->gh = gh;
    out->gw = gw;
    out->rgb = xcalloc((size_t)N * 3, 1);
    out->mask = xmalloc((size_t)N);
    out->iou = xmalloc((size_t)n * sizeof(double));
    for (int c = 0; c < k; c++) {
        for (int64_t p = 0; p < N; p++)
            col[p] = proj[p * k + c];
        qsort(col, (size_t)N, sizeof(float), compare_float);
        float lo = quantile(col, N, SEGMAP_RGB_LOW_PERCENTILE);
        float hi = quantile(col, N, SEGMAP_RGB_HIGH_PERCENTILE);
        double scale = hi > lo ? 255.0 / ((double)hi - lo) : 0.0;
        for (int64_t p = 0; p < N; p++) {
            double v = ((double)proj[p * k + c] - lo) * scale;
            out->rgb[p * 3 + c] = (uint8_t)lrint(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }

    for (int64_t p = 0; p < N; p++)
        col[p] = proj[p * k];
    out->threshold = otsu_threshold(col, N);
    out->flipped = mask_flipped(col, n, gh, gw, out->threshold);
    for (int64_t p = 0; p < N; p++)
        out->mask[p] = (col[p] > out->threshold) != out->flipped;

    const int64_t img = (int64_t)in->channels * in->height * in->width;
    out->iou_mean = 0.0;
    for (int i = 0; i < n; i++) {
        out->iou[i] = segmap_iou(out->mask + i * np, gh, gw,
                                 in->pixels + i * img, in->channels,
                                 in->height, in->width);
        out->iou_mean += out->iou[i] / n;
    }
    out->attn_iou_mean = -1.0;
    if (in->attention) {
        out->attn_mask = xmalloc((size_t)N);
        out->attn_iou = xmalloc((size_t)n * sizeof(double));
        out->attn_iou_mean = 0.0;
        for (int i = 0; i < n; i++) {
            segmap_attention_mask(in->attention + (int64_t)i * in->heads * np,
                                  in->heads, gh, gw, SEGMAP_ATTENTION_KEEP,
                                  out->attn_mask + i * np);
            out->attn_iou[i] = segmap_iou(out->attn_mask + i * np, gh, gw,
                                          in->pixels + i * img, in->channels,
                                          in->height, in->width);
            out->attn_iou_mean += out->attn_iou[i] / n;
        }
    }
cleanup:
    util_free_aligned(x);
    free(mean);
    free(comp);
    util_free_aligned(proj);
    free(col);
    if (rc != 0)
        segmap_free(out);
    return rc;
}

void segmap_free(struct segmap *s)
{
    free(s->rgb);
    free(s->mask);
    free(s->attn_mask);
    free(s->iou);
    free(s->attn_iou);
    memset(s, 0, sizeof *s);
}

void segmap_png_size(const struct segmap *s, const struct segmap_input *in,
                     int scale, int *png_width, int *png_height)
{
    int cols = s->attn_mask ? 4 : 3;
    *png_width = cols * in->width * scale + (cols + 1) * SEGMAP_GAP;
    *png_height = s->n * in->height * scale + (s->n + 1) * SEGMAP_GAP;
}

/* One cell at (x0, y0) of the RGB canvas (W wide): column 0 is the input,
 * 1 the PCA colours, 2 the mask, 3 the attention mask. */
static void draw_cell(uint8_t *canvas, int W, int x0, int y0, int column,
                      const struct segmap *s, const struct segmap_input *in,
                      int i, int scale)
{
    const int h = in->height, w = in->width, gh = s->gh, gw = s->gw;
    const int64_t np = (int64_t)gh * gw, plane = (int64_t)h * w;
    const uint8_t *pix = in->pixels + (int64_t)i * in->channels * plane;
    for (int y = 0; y < h * scale; y++)
        for (int x = 0; x < w * scale; x++) {
            int py = y / scale, px = x / scale;
            int64_t patch = i * np + (int64_t)py * gh / h * gw +
                            (int64_t)px * gw / w;
            uint8_t *d = canvas + ((int64_t)(y0 + y) * W + x0 + x) * 3;
            for (int c = 0; c < 3; c++) {
                uint8_t v;
                if (column == 0)
                    v = pix[(in->channels == 3 ? c : 0) * plane +
                            (int64_t)py * w + px];
                else if (column == 1)
                    v = s->rgb[patch * 3 + c];
                else if (column == 2)
                    v = s->mask[patch] ? 255 : 0;
                else
                    v = s->attn_mask[patch] ? 255 : 0;
                d[c] = v;
            }
        }
}

int segmap_write_png(const struct segmap *s, const struct segmap_input *in,
                     int scale, const char *path, char *err)
{
    if (scale < 1 || scale > 64)
        return errf(err, "segmap: %s: scale must be in [1, 64] (got %d)",
                    path, scale);
    int W, H;
    segmap_png_size(s, in, scale, &W, &H);
    int cols = s->attn_mask ? 4 : 3;
    size_t bytes = (size_t)W * (size_t)H * 3;
    uint8_t *canvas = xmalloc(bytes);
    memset(canvas, GAP_GRAY, bytes);
    for (int i = 0; i < s->n; i++)
        for (int c = 0; c < cols; c++)
            draw_cell(canvas, W,
                      SEGMAP_GAP + c * (in->width * scale + SEGMAP_GAP),
                      SEGMAP_GAP + i * (in->height * scale + SEGMAP_GAP), c, s,
                      in, i, scale);

    int rc = -1;
    void *png = NULL;
    size_t len = 0;
    VipsImage *img = vips_image_new_from_memory(canvas, bytes, W, H, 3,
                                                VIPS_FORMAT_UCHAR);
    if (!img) {
        errf(err, "segmap: %s: vips_image_new_from_memory failed: %s", path,
             vips_error_buffer());
        vips_error_clear();
        goto cleanup;
    }
    if (vips_pngsave_buffer(img, &png, &len, "strip", TRUE, NULL) != 0) {
        errf(err, "segmap: %s: PNG encoding failed: %s", path,
             vips_error_buffer());
        vips_error_clear();
        goto cleanup;
    }
    rc = util_write_file_atomic(path, png, len, err);
cleanup:
    if (img)
        g_object_unref(img);
    g_free(png);
    free(canvas);
    return rc;
}
