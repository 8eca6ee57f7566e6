/*
 * segmap.h: segmentation maps from frozen patch features (DESIGN.md §6):
 * PCA of the patch vectors of a whole set of images, the first three
 * components as RGB, a foreground mask from the first component, its IoU
 * with the images' non-zero pixels, the DINO-style CLS-attention mask, and a
 * PNG grid (input | PCA RGB | mask [| attention mask]) per image in rows.
 * No sockets, no model: the caller brings features and pixels.
 *
 * Decisions:
 *  - RGB: each component is scaled across the whole set from its 1st to its
 *    99th percentile (nearest rank) to 0..255, clipped, so a few outlier
 *    patches do not wash out the rest.
 *  - Mask threshold: Otsu's threshold on a 256-bin histogram of the first
 *    component over all patches of the set.
 *  - Mask polarity (the sign of a principal component is arbitrary): the
 *    side of the threshold that is foreground is the one covering a larger
 *    fraction of the CENTRAL patches (rows and columns in [g/4, g - g/4))
 *    than of the BORDER patches (first/last row and column), over the set;
 *    on equal fractions "above the threshold" is foreground.
 *  - Masks are upscaled to pixels by nearest neighbour (pixel (y, x) takes
 *    patch (y * gh / h, x * gw / w)); the ground truth is "any channel > 0";
 *    IoU of two empty masks is 1. segmap_iou_mean is the mean over images.
 *  - Attention mask: heads are averaged, the patches are sorted by
 *    attention and the largest ones are kept until they hold `keep` (0.6)
 *    of the attention mass (DINO's cumulative-sum rule).
 */
#ifndef LEJEPA_SEGMAP_H
#define LEJEPA_SEGMAP_H

#include <stdint.h>

#define SEGMAP_ATTENTION_KEEP 0.6
#define SEGMAP_RGB_LOW_PERCENTILE 0.01
#define SEGMAP_RGB_HIGH_PERCENTILE 0.99

/* What the caller brings; all arrays are read only. */
struct segmap_input {
    int n;                    /* images */
    int fdim, gh, gw;         /* patch grid */
    const float *features;    /* (n, fdim, gh, gw) */
    int channels;             /* 1 (gray) or 3 (RGB) */
    int height, width;        /* eval-view pixels */
    const uint8_t *pixels;    /* (n, channels, height, width) */
    int heads;                /* 0 when there is no attention */
    const float *attention;   /* (n, heads, gh, gw) CLS attention, or NULL */
};

/* What segmap_compute produces; free with segmap_free. */
struct segmap {
    int n, gh, gw;
    uint8_t *rgb;             /* (n, gh, gw, 3) */
    uint8_t *mask;            /* (n, gh, gw) 1 = foreground */
    uint8_t *attn_mask;       /* (n, gh, gw), NULL without attention */
    double *iou;              /* (n) mask vs non-zero pixels */
    double *attn_iou;         /* (n), NULL without attention */
    double iou_mean;
    double attn_iou_mean;     /* -1 without attention */
    double variances[3];      /* PCA eigenvalues (0 beyond fdim) */
    float threshold;          /* Otsu threshold on component 1 */
    int flipped;              /* 1: foreground is below the threshold */
};

/* Computes everything but the PNG. Needs n >= 1, n * gh * gw >= 2,
 * fdim >= 1, channels 1 or 3, finite features. Returns 0, or -1 with the
 * reason in err (ERR_LEN); on failure out holds nothing to free. */
int segmap_compute(const struct segmap_input *in, struct segmap *out,
                   char *err);
void segmap_free(struct segmap *s);

/* Writes the grid as an RGB PNG to path atomically: one row per image,
 * cells of (height * scale, width * scale) pixels separated by
 * SEGMAP_GAP-pixel gray lines: input, PCA RGB, mask, and the attention mask
 * when s has one. The caller has run VIPS_INIT. Returns 0, or -1 with the
 * reason in err. */
#define SEGMAP_GAP 2
int segmap_write_png(const struct segmap *s, const struct segmap_input *in,
                     int scale, const char *path, char *err);

/* Size of the PNG segmap_write_png makes. */
void segmap_png_size(const struct segmap *s, const struct segmap_input *in,
                     int scale, int *png_width, int *png_height);

/* Attention mask of one image: attn (heads, gh, gw) -> mask (gh, gw) with 1
 * on the fewest highest patches of the head-mean holding `keep` of its
 * mass (ties: lower index first). All zero when the attention sums to 0. */
void segmap_attention_mask(const float *attn, int heads, int gh, int gw,
                           double keep, uint8_t *mask);

/* IoU of mask (gh, gw), upscaled to (height, width) by nearest neighbour,
 * with the non-zero pixels of one image (channels, height, width). */
double segmap_iou(const uint8_t *mask, int gh, int gw, const uint8_t *pixels,
                  int channels, int height, int width);

#endif
