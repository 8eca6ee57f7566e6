/*
 * augment_color.c: the pixel-value steps of a view on float (C, n) planes of
 * 0..255 values: brightness, contrast, saturation and hue (torchvision's
 * ColorJitter, its HSV conversion included), grayscale, and the final
 * rounding to bytes with solarize. Values stay float between steps so a view
 * is rounded once. Nothing here draws random numbers or allocates.
 */
#include <math.h>

#include "augment_ops.h"

/* GCC turns the selects of the hue and rounding loops into vector code only
 * without trapping math; nothing here reads the FP exception flags. This
 * makes hue 3x and rounding 4x faster (measured) and, unlike -ffast-math,
 * changes no result. */
#pragma GCC optimize("no-trapping-math")

static float clamp255(float v)
{
    return v < 0 ? 0 : v > 255 ? 255 : v;
}

/* The grayscale weights of ITU-R 601, as torchvision and PIL. */
#define GRAY_R 0.299f
#define GRAY_G 0.587f
#define GRAY_B 0.114f

void augment_brightness(float *x, int c, size_t n, float f)
{
    for (size_t i = 0; i < (size_t)c * n; i++)
        x[i] = clamp255(x[i] * f);
}

void augment_contrast(float *x, int c, size_t n, float f)
{
    double sum = 0;
    if (c == 1) {
        for (size_t i = 0; i < n; i++)
            sum += x[i];
    } else {
        const float *r = x, *g = x + n, *b = x + 2 * n;
        for (size_t i = 0; i < n; i++)
            sum += GRAY_R * r[i] + GRAY_G * g[i] + GRAY_B * b[i];
    }
    float off = (1 - f) * (float)(sum / (double)n);
    for (size_t i = 0; i < (size_t)c * n; i++)
        x[i] = clamp255(f * x[i] + off);
}

void augment_saturation(float *x, int c, size_t n, float f)
{
    if (c != 3)
        return;
    float *r = x, *g = x + n, *b = x + 2 * n;
    for (size_t i = 0; i < n; i++) {
        float l = (1 - f) * (GRAY_R * r[i] + GRAY_G * g[i] + GRAY_B * b[i]);
        r[i] = clamp255(f * r[i] + l);
        g[i] = clamp255(f * g[i] + l);
        b[i] = clamp255(f * b[i] + l);
    }
}

void augment_grayscale(float *x, int c, size_t n)
{
    if (c != 3)
        return;
    float *r = x, *g = x + n, *b = x + 2 * n;
    for (size_t i = 0; i < n; i++) {
        float l = GRAY_R * r[i] + GRAY_G * g[i] + GRAY_B * b[i];
        r[i] = g[i] = b[i] = l;
    }
}

static inline float min2(float a, float b) { return a < b ? a : b; }
static inline float max2(float a, float b) { return a > b ? a : b; }

/* One channel of hsv2rgb in the branch-free form: with cr = v s = max - min,
 * channel n (5 red, 3 green, 1 blue) is max - cr clamp(min(k, 4 - k), 0, 1),
 * k = (n + 6 hue) mod 6. The same values as torchvision's sector table
 * (p = min, q = max - cr f, t = min + cr f). */
static inline float hsv_channel(float maxc, float cr, float h6, float n)
{
    float k = n + h6;
    k = k >= 6.0f ? k - 6.0f : k;
    return maxc - cr * min2(max2(min2(k, 4.0f - k), 0.0f), 1.0f);
}

/* torchvision's _rgb2hsv, hue shift, _hsv2rgb. Saturation and value pass
 * through unchanged, so only the hue (in sixths of a turn) is computed;
 * written without branches so the loop vectorises. */
void augment_hue(float *x, int c, size_t n, float h)
{
    if (c != 3 || h == 0)
        return;
    float *pr = x, *pg = x + n, *pb = x + 2 * n;
    float shift = 6.0f * h;
    for (size_t i = 0; i < n; i++) {
        float r = pr[i], g = pg[i], b = pb[i];
        float maxc = max2(r, max2(g, b)), minc = min2(r, min2(g, b));
        float cr = maxc - minc;
        float inv = 1.0f / (cr > 0 ? cr : 1.0f);   /* gray: cr = 0, no change */
        /* torchvision's precedence: red, then green, then blue. */
        float h6 = maxc == g ? 2.0f + (b - r) * inv : 4.0f + (r - g) * inv;
        h6 = maxc == r ? (g - b) * inv : h6;
        h6 += shift;            /* in (-4, 8): two wraps at most */
        h6 = h6 < 0 ? h6 + 6.0f : h6;
        h6 = h6 < 0 ? h6 + 6.0f : h6;
        h6 = h6 >= 6.0f ? h6 - 6.0f : h6;
        pr[i] = hsv_channel(maxc, cr, h6, 5.0f);
        pg[i] = hsv_channel(maxc, cr, h6, 3.0f);
        pb[i] = hsv_channel(maxc, cr, h6, 1.0f);
    }
}

void augment_quantize(uint8_t *out, const float *x, size_t n, int solarize,
                      int threshold)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(clamp255(x[i]) + 0.5f);
    if (solarize) {
        uint8_t t = (uint8_t)(threshold > 255 ? 255 : threshold);
        for (size_t i = 0; i < n; i++)
            out[i] = out[i] >= t ? (uint8_t)(255 - out[i]) : out[i];
    }
}
