/*
 * augment_geom.c: the spatial steps of a view: where RandomResizedCrop cuts
 * (torchvision's rule), the antialiased bilinear resampler that turns the
 * crop into the s x s view (PIL's rule, which torchvision uses on images),
 * and the separable Gaussian blur. Plain C on float planes: measured against
 * libvips extract_area + resize (linear kernel) on a 500x375 image, a crop
 * to 224 takes 0.25 ms here against 1.2 ms, to 96 0.04 against 0.56, to 28
 * 0.003 against 0.41 (libvips' fixed cost per operation dominates small
 * crops). No randomness beyond the stream it is given, no allocation.
 */
#include <math.h>
#include <string.h>

#include "augment_ops.h"
#include "util.h"

int augment_sample_crop(struct augment_crop *out, struct rng *r, int w, int h,
                        double scale_min, double scale_max,
                        double ratio_min, double ratio_max)
{
    CHECK(w > 0 && h > 0);
    double area = (double)w * h;
    double log_lo = log(ratio_min), log_hi = log(ratio_max);
    for (int attempt = 1; attempt <= 10; attempt++) {
        double target = area * rng_range(r, scale_min, scale_max);
        double ratio = exp(rng_range(r, log_lo, log_hi));
        /* nearbyint rounds half to even, like Python's round(). */
        double cw = nearbyint(sqrt(target * ratio));
        double ch = nearbyint(sqrt(target / ratio));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            out->w = (int)cw;
            out->h = (int)ch;
            out->y = (int)rng_below(r, (uint64_t)(h - out->h + 1));
            out->x = (int)rng_below(r, (uint64_t)(w - out->w + 1));
            return attempt;
        }
    }
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < ratio_min)
        ch = (int)nearbyint(w / ratio_min);
    else if (in_ratio > ratio_max)
        cw = (int)nearbyint(h * ratio_max);
    out->w = cw < 1 ? 1 : cw;
    out->h = ch < 1 ? 1 : ch;
    out->x = (w - out->w) / 2;
    out->y = (h - out->h) / 2;
    return 0;
}

/* PIL's precompute_coeffs for one axis: output i of full_out (i in
 * [o0, o0 + n)) reads taps first[i]..first[i]+k-1 of an input of in_size,
 * with weights w[i*k ..] (zero past the box). Returns k. */
static int resize_coeffs(float *wts, int *first, int in_size, int full_out,
                         int o0, int n, int k)
{
    double scale = (double)in_size / full_out;
    double fs = scale > 1 ? scale : 1;
    double support = fs;
    for (int i = 0; i < n; i++) {
        double center = (o0 + i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in_size)
            hi = in_size;
        if (hi - lo > k)
            hi = lo + k;
        if (lo + k > in_size)    /* keep every tap inside the input */
            lo = in_size - k > 0 ? in_size - k : 0;
        double sum = 0;
        float *row = wts + (size_t)i * k;
        for (int t = 0; t < k; t++) {
            int x = lo + t;
            double d = (x - center + 0.5) / fs;
            double f = fabs(d) < 1 ? 1 - fabs(d) : 0;
            if (x >= in_size)
                f = 0;
            row[t] = (float)f;
            sum += f;
        }
        for (int t = 0; t < k; t++)
            row[t] = sum > 0 ? (float)(row[t] / sum) : 0;
        first[i] = lo;
    }
    return k;
}

/* Taps of one axis: enough for the widened triangle, capped by the input. */
static int resize_taps(int in_size, int full_out)
{
    double scale = (double)in_size / full_out;
    int k = (int)ceil((scale > 1 ? scale : 1) * 2) + 1;
    return k < in_size ? k : in_size;
}

size_t augment_resize_scratch(int c, int bw, int bh, int full_w, int full_h,
                              int s)
{
    size_t kx = (size_t)resize_taps(bw, full_w);
    size_t ky = (size_t)resize_taps(bh, full_h);
    return (size_t)c * s * bw + s * (kx + ky) + 2 * (size_t)s;
}

/* Horizontal pass: s rows of bw interleaved float pixels into the planes
 * (C, s, s); C is a constant after inlining. */
static inline __attribute__((always_inline)) void
resize_cols(float *out, const float *vp, int bw, int s, const float *wx,
            const int *fx, int kx, int flip, const int C)
{
    for (int j = 0; j < s; j++) {
        const float *row = vp + (size_t)j * bw * C;
        for (int i = 0; i < s; i++) {
            const float *w = wx + (size_t)i * kx;
            const float *p = row + (size_t)fx[i] * C;
            float acc[3] = {0, 0, 0};
            for (int t = 0; t < kx; t++)
                for (int ch = 0; ch < C; ch++)
                    acc[ch] += w[t] * p[t * C + ch];
            int o = flip ? s - 1 - i : i;
            for (int ch = 0; ch < C; ch++)
                out[((size_t)ch * s + j) * s + o] = acc[ch];
        }
    }
}

/* Vertical pass first, on whole rows of interleaved bytes (contiguous, so
 * it vectorises, converting to float on the way), then the horizontal pass
 * on only s rows. Crops are mostly shrunk (bh > s), so this does less
 * scalar work than PIL's horizontal-first order; the result is the same
 * separable filter (float rounding aside). */
void augment_resize(float *out, float *tmp, const struct image *im,
                    int bx, int by, int bw, int bh, int full_w, int full_h,
                    int ox, int oy, int s, int flip)
{
    CHECK(bx >= 0 && by >= 0 && bw > 0 && bh > 0 && bx + bw <= im->w &&
          by + bh <= im->h);
    CHECK(ox >= 0 && oy >= 0 && ox + s <= full_w && oy + s <= full_h);
    CHECK(im->c == 1 || im->c == 3);
    int c = im->c;
    int kx = resize_taps(bw, full_w), ky = resize_taps(bh, full_h);
    float *vp = tmp;
    float *wx = vp + (size_t)c * s * bw;
    float *wy = wx + (size_t)s * kx;
    int *fx = (int *)(wy + (size_t)s * ky);
    int *fy = fx + s;
    resize_coeffs(wx, fx, bw, full_w, ox, s, kx);
    resize_coeffs(wy, fy, bh, full_h, oy, s, ky);

    size_t stride = (size_t)im->w * c, line = (size_t)bw * c;
    const uint8_t *src = im->px + (size_t)by * stride + (size_t)bx * c;
    for (int j = 0; j < s; j++) {
        float *o = vp + (size_t)j * line;
        const float *w = wy + (size_t)j * ky;
        const uint8_t *r0 = src + (size_t)fy[j] * stride;
        for (size_t i = 0; i < line; i++)
            o[i] = w[0] * r0[i];
        for (int t = 1; t < ky; t++) {
            const uint8_t *rt = r0 + (size_t)t * stride;
            float wt = w[t];
            if (wt == 0)
                continue;
            for (size_t i = 0; i < line; i++)
                o[i] += wt * rt[i];
        }
    }
    if (c == 1)
        resize_cols(out, vp, bw, s, wx, fx, kx, flip, 1);
    else
        resize_cols(out, vp, bw, s, wx, fx, kx, flip, 3);
}

int augment_blur_ksize(int s)
{
    int k = (int)(0.1 * s) | 1;
    return k < 3 ? 3 : k;
}

/* Reflect padding without repeating the edge: -1 -> 1, n -> n - 2. */
static int reflect(int i, int n)
{
    while (i < 0 || i >= n) {
        if (i < 0)
            i = -i;
        if (i >= n)
            i = 2 * (n - 1) - i;
    }
    return i;
}

#define BLUR_MAX_K 255
#define BLUR_TAP_MIN 1e-7f

void augment_blur(float *x, float *tmp, int c, int s, int k, float sigma)
{
    CHECK(k >= 1 && k % 2 == 1 && k <= BLUR_MAX_K && s >= 2);
    float w[BLUR_MAX_K];
    int r = k / 2;
    double sum = 0;
    for (int t = 0; t < k; t++) {
        double d = (t - r) / (double)sigma;
        w[t] = (float)exp(-0.5 * d * d);
        sum += w[t];
    }
    for (int t = 0; t < k; t++)
        w[t] = (float)(w[t] / sum);
    /* Taps below BLUR_TAP_MIN (at most 2e-5 of a level over 255 taps) are
     * skipped: at small sigma most of the 10%-of-the-side kernel is zero. */
    int lead = 0;
    while (lead < r && w[lead] < BLUR_TAP_MIN)
        lead++;
    k -= 2 * lead;
    r -= lead;
    memmove(w, w + lead, (size_t)k * sizeof *w);
    for (int ch = 0; ch < c; ch++) {
        float *p = x + (size_t)ch * s * s;
        /* Horizontal into tmp: taps outer, pixels inner so the interior
         * vectorises; the r pixels at each edge read reflected indices. */
        for (int y = 0; y < s; y++) {
            const float *row = p + (size_t)y * s;
            float *o = tmp + (size_t)y * s;
            for (int i = 0; i < s; i++)
                o[i] = 0;
            for (int t = 0; t < k; t++) {
                const float *q = row + t - r;
                float wt = w[t];
                for (int i = r; i < s - r; i++)
                    o[i] += wt * q[i];
            }
            for (int i = 0; i < s; i++) {
                if (i == r && s - r > r)
                    i = s - r;
                float acc = 0;
                for (int t = 0; t < k; t++)
                    acc += w[t] * row[reflect(i + t - r, s)];
                o[i] = acc;
            }
        }
        /* Vertical back into the plane, a row at a time. */
        for (int y = 0; y < s; y++) {
            float *o = p + (size_t)y * s;
            memset(o, 0, (size_t)s * sizeof *o);
            for (int t = 0; t < k; t++) {
                const float *q = tmp + (size_t)reflect(y + t - r, s) * s;
                float wt = w[t];
                for (int i = 0; i < s; i++)
                    o[i] += wt * q[i];
            }
        }
    }
}
