/*
 * augment_ops.h: the steps of one view, exposed so tests can check each one
 * on hand-computed cases: the RandomResizedCrop parameters, the per-view
 * random draws, the antialiased bilinear resampler and the pixel operations
 * on float (C, n) planes holding 0..255 values. augment.c strings them
 * together; nothing here allocates except where a scratch size is returned.
 */
#ifndef LEJEPA_AUGMENT_OPS_H
#define LEJEPA_AUGMENT_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "augment.h"
#include "rng.h"

/* An integer box of the source image: columns x..x+w-1, rows y..y+h-1. */
struct augment_crop {
    int x, y, w, h;
};

/* torchvision's RandomResizedCrop.get_params on a w x h image: up to 10
 * draws of an area fraction uniform in [scale_min, scale_max) and a ratio
 * (w/h) log-uniform in [ratio_min, ratio_max), sides rounded half to even;
 * the first that fits is placed uniformly. Otherwise the whole image,
 * narrowed to the nearest ratio bound, centered. Returns the attempts used
 * (1..10), or 0 for the fallback. */
int augment_sample_crop(struct augment_crop *out, struct rng *r, int w, int h,
                        double scale_min, double scale_max,
                        double ratio_min, double ratio_max);

/* Everything random about one view. The draws come in a fixed order after
 * the crop (whether or not a step applies), so each step's stream position
 * depends only on how many crop attempts were made. */
struct augment_params {
    struct augment_crop crop;
    int flip;
    int jitter;             /* apply colour jitter at all */
    int order[4];           /* permutation of the four AUGMENT_JITTER_* */
    float brightness, contrast, saturation;     /* factors */
    float hue;                                  /* shift in turns */
    int gray;
    int blur;
    float sigma;
    int solarize;
};
enum {
    AUGMENT_JITTER_BRIGHTNESS, AUGMENT_JITTER_CONTRAST,
    AUGMENT_JITTER_SATURATION, AUGMENT_JITTER_HUE,
};
void augment_draw_params(struct augment_params *p, struct rng *r, int w, int h,
                         double scale_min, double scale_max,
                         const struct config_views *v);

/* Antialiased bilinear resampling as PIL's (torchvision's on PIL images):
 * the box (bx, by, bw, bh) of im is scaled to full_w x full_h (a triangle
 * filter widened by the scale factor when shrinking, clipped to the box) and
 * the s x s window at (ox, oy) of that result is written to out (C, s, s)
 * as floats, mirrored left-right if flip. tmp holds
 * augment_resize_scratch(...) floats. */
size_t augment_resize_scratch(int c, int bw, int bh, int full_w, int full_h,
                              int s);
void augment_resize(float *out, float *tmp, const struct image *im,
                    int bx, int by, int bw, int bh, int full_w, int full_h,
                    int ox, int oy, int s, int flip);

/* Pixel operations on x (c, n), values 0..255, results clamped to 0..255.
 * The grayscale of RGB is 0.299 R + 0.587 G + 0.114 B. Saturation, hue and
 * grayscale do nothing to one channel. */
void augment_brightness(float *x, int c, size_t n, float f);
/* Blends with the mean of the grayscale image. */
void augment_contrast(float *x, int c, size_t n, float f);
/* Blends with the grayscale image. */
void augment_saturation(float *x, int c, size_t n, float f);
/* Rotates the hue by h turns (torchvision's HSV conversion). */
void augment_hue(float *x, int c, size_t n, float h);
/* Every channel becomes the grayscale. */
void augment_grayscale(float *x, int c, size_t n);

/* Kernel size of the Gaussian blur of an s x s view: 10% of s, odd, at
 * least 3 (SimCLR/BYOL's recipe; 23 for 224, 9 for 96, 3 for 28 and 14). */
int augment_blur_ksize(int s);
/* torchvision's GaussianBlur: a normalised k-tap kernel exp(-x^2/2sigma^2),
 * separable, reflect padding (k / 2 < s). Outer taps whose weight is below
 * 1e-7 are skipped (a change of less than 1e-4 of a level). tmp holds
 * s * s floats. */
void augment_blur(float *x, float *tmp, int c, int s, int k, float sigma);

/* Rounds x (n values) half up to uint8 after clamping; then, if solarize,
 * inverts every value >= threshold (255 - v), on the rounded bytes. */
void augment_quantize(uint8_t *out, const float *x, size_t n, int solarize,
                      int threshold);

#endif
