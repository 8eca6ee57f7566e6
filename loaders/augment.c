/*
 * augment.c: one sample's views from its decoded image. Per view: draw every
 * random parameter from the view's own rng stream, crop + resize (+ flip) to
 * float planes, colour jitter in a random order, grayscale, blur, then round
 * to bytes with solarize (DESIGN.md §5; torchvision's semantics, so results
 * compare with the usual SSL recipes). Also the eval view. No libvips here:
 * the image is already decoded, and on small crops plain C is faster.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "augment_ops.h"
#include "util.h"

void augment_draw_params(struct augment_params *p, struct rng *r, int w, int h,
                         double scale_min, double scale_max,
                         const struct config_views *v)
{
    memset(p, 0, sizeof *p);
    augment_sample_crop(&p->crop, r, w, h, scale_min, scale_max,
                        v->ratio_min, v->ratio_max);
    p->flip = rng_uniform(r) < v->flip_p;
    p->jitter = rng_uniform(r) < v->jitter_p;
    /* Fisher-Yates, like torch.randperm(4) feeds ColorJitter. */
    for (int i = 0; i < 4; i++)
        p->order[i] = i;
    for (int i = 3; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1);
        int t = p->order[i];
        p->order[i] = p->order[j];
        p->order[j] = t;
    }
    p->brightness = (float)rng_range(r, fmax(0, 1 - v->brightness), 1 + v->brightness);
    p->contrast = (float)rng_range(r, fmax(0, 1 - v->contrast), 1 + v->contrast);
    p->saturation = (float)rng_range(r, fmax(0, 1 - v->saturation), 1 + v->saturation);
    p->hue = (float)rng_range(r, -v->hue, v->hue);
    p->gray = rng_uniform(r) < v->gray_p;
    p->blur = rng_uniform(r) < v->blur_p;
    p->sigma = (float)rng_range(r, v->blur_sigma_min, v->blur_sigma_max);
    p->solarize = rng_uniform(r) < v->solarize_p;
}

static size_t view_scratch(const struct image *im, int s)
{
    size_t rs = augment_resize_scratch(im->c, im->w, im->h, s, s, s);
    size_t bs = (size_t)s * s;
    return rs > bs ? rs : bs;
}

/* One random view of side s into out (C, s, s); buf holds C*s*s floats and
 * tmp view_scratch(im, s). */
static void view_make(uint8_t *out, float *buf, float *tmp,
                      const struct image *im, const struct config_views *v,
                      int s, double scale_min, double scale_max, struct rng *r)
{
    struct augment_params p;
    augment_draw_params(&p, r, im->w, im->h, scale_min, scale_max, v);
    const struct augment_crop *b = &p.crop;
    augment_resize(buf, tmp, im, b->x, b->y, b->w, b->h, s, s, 0, 0, s, p.flip);
    int c = im->c;
    size_t n = (size_t)s * s;
    if (p.jitter)
        for (int i = 0; i < 4; i++) {
            switch (p.order[i]) {
            case AUGMENT_JITTER_BRIGHTNESS:
                augment_brightness(buf, c, n, p.brightness);
                break;
            case AUGMENT_JITTER_CONTRAST:
                augment_contrast(buf, c, n, p.contrast);
                break;
            case AUGMENT_JITTER_SATURATION:
                augment_saturation(buf, c, n, p.saturation);
                break;
            default:
                augment_hue(buf, c, n, p.hue);
                break;
            }
        }
    if (p.gray)
        augment_grayscale(buf, c, n);
    if (p.blur)
        augment_blur(buf, tmp, c, s, augment_blur_ksize(s), p.sigma);
    augment_quantize(out, buf, (size_t)c * n, p.solarize,
                     (int)v->solarize_threshold);
}

void augment_views(uint8_t *const *global, uint8_t *const *local,
                   const struct image *im, const struct config_views *v,
                   uint64_t seed, uint64_t epoch, uint64_t index)
{
    CHECK(im->c == v->channels && im->w > 0 && im->h > 0);
    int gs = (int)v->global_size, ls = (int)v->local_size;
    int smax = gs > ls ? gs : ls;
    size_t nbuf = (size_t)im->c * smax * smax;
    size_t ntmp = view_scratch(im, gs);
    size_t nl = view_scratch(im, ls);
    if (nl > ntmp)
        ntmp = nl;
    float *buf = xmalloc((nbuf + ntmp) * sizeof(float));
    float *tmp = buf + nbuf;
    for (int64_t k = 0; k < v->global_count; k++) {
        struct rng r;
        rng_init(&r, seed, epoch, index, (uint64_t)k);
        view_make(global[k], buf, tmp, im, v, gs, v->global_scale_min,
                  v->global_scale_max, &r);
    }
    for (int64_t k = 0; k < v->local_count; k++) {
        struct rng r;
        rng_init(&r, seed, epoch, index, (uint64_t)(v->global_count + k));
        view_make(local[k], buf, tmp, im, v, ls, v->local_scale_min,
                  v->local_scale_max, &r);
    }
    free(buf);
}

void augment_eval_view(uint8_t *out, const struct image *im,
                       const struct config_views *v)
{
    CHECK(im->c == v->channels && im->w > 0 && im->h > 0);
    int g = (int)v->global_size, c = im->c;
    /* torchvision Resize(g): the shorter side becomes g, the longer
     * int(g * long / short); CenterCrop(g): offsets round((full - g) / 2). */
    int fw = g, fh = g;
    if (im->w < im->h)
        fh = (int)((double)g * im->h / im->w);
    else if (im->h < im->w)
        fw = (int)((double)g * im->w / im->h);
    int ox = (int)nearbyint((fw - g) / 2.0), oy = (int)nearbyint((fh - g) / 2.0);
    if (im->w == g && im->h == g) {
        for (int ch = 0; ch < c; ch++)
            for (size_t i = 0; i < (size_t)g * g; i++)
                out[(size_t)ch * g * g + i] = im->px[i * c + ch];
        return;
    }
    size_t nbuf = (size_t)c * g * g;
    size_t ntmp = augment_resize_scratch(c, im->w, im->h, fw, fh, g);
    float *buf = xmalloc((nbuf + ntmp) * sizeof(float));
    augment_resize(buf, buf + nbuf, im, 0, 0, im->w, im->h, fw, fh, ox, oy, g, 0);
    augment_quantize(out, buf, nbuf, 0, 0);
    free(buf);
}

int augment_load_target(const struct config_views *v)
{
    double g = v->global_size / sqrt(v->global_scale_min);
    double l = v->local_count > 0 ? v->local_size / sqrt(v->local_scale_min) : 0;
    return (int)ceil(g > l ? g : l);
}
