/*
 * augment.h: what a loader does to one sample: decode the file with libvips
 * into an 8-bit image of the run's channel count, then cut its views
 * (RandomResizedCrop, flip, colour jitter, grayscale, Gaussian blur,
 * solarize; DESIGN.md §5, parameters from [views]) or the eval view (resize
 * the shorter side to global_size, center crop). Randomness comes only from
 * rng streams named (run seed, epoch, sample index, view index), so a ticket
 * gives byte-identical views in any process on any run.
 * Nothing here knows about sockets or tickets.
 *
 * libvips: the program calls VIPS_INIT(argv[0]) once before the first
 * image_load and vips_cache_set_max(0) (the operation cache only costs memory
 * and locking here: no file is decoded twice). image_load and the augment_*
 * functions are thread safe (no global state); a program that decodes in
 * several threads of its own should also call vips_concurrency_set(1) so
 * libvips does not start a worker pool per image. One caveat: libvips keeps
 * one process-wide error buffer, so when two threads fail at the same moment
 * a message may carry both reasons.
 */
#ifndef LEJEPA_AUGMENT_H
#define LEJEPA_AUGMENT_H

#include <stdint.h>

#include "config.h"

/* A decoded image: h rows of w pixels of c interleaved uint8 channels. */
struct image {
    int w, h, c;
    uint8_t *px;     /* h * w * c bytes; image_free releases it */
};

/* Decodes path into im with `channels` channels (1 gray or 3 RGB; gray,
 * RGB, RGBA (alpha flattened onto black) and 16-bit inputs are converted,
 * colour to gray with PIL's ITU-R 601 weights, CMYK and other spaces
 * through libvips' colourspace). An image whose header claims more than
 * max_pixels (w * h) is refused before decoding. target is the smallest
 * side the views need: formats that can shrink on load (JPEG, WebP, by
 * 2, 4 or 8) do so, never below it; 0 never shrinks. The decoded size
 * decides the crops, so every loader of a run must pass the same target
 * (augment_load_target). Returns 0, or -1 with the reason (naming the file)
 * in err (ERR_LEN); libvips may also print a warning for a broken file. */
int image_load(struct image *im, const char *path, int channels,
               uint64_t max_pixels, int target, char *err);
/* The same from len bytes in memory (a tar shard's member), named name in
 * errors; buf may be freed once it returns. */
int image_load_buffer(struct image *im, const void *buf, size_t len,
                      const char *name, int channels, uint64_t max_pixels,
                      int target, char *err);
/* Releases im->px (allocated by libvips' g_malloc) and zeroes im; safe on a
 * zeroed or already freed image. */
void image_free(struct image *im);

/* The `target` for image_load that keeps views at full resolution: the
 * shorter image side at which a square crop of the smallest area
 * (scale_min) still has S pixels across, the larger of the global and local
 * values: ceil(S / sqrt(scale_min)). With the default scales, 430 for
 * 224/96 and 63 for 28/14. */
int augment_load_target(const struct config_views *v);

/* The views of one sample, each written as uint8 (C, S, S) planes, with
 * torchvision's semantics (augment_ops.h has each step):
 * global[v] for v < v->global_count (S = global_size), local[v] for
 * v < v->local_count (S = local_size). View v's randomness comes from
 * rng_init(seed, epoch, index, view) with view = v for global views and
 * global_count + v for local ones. */
void augment_views(uint8_t *const *global, uint8_t *const *local,
                   const struct image *im, const struct config_views *v,
                   uint64_t seed, uint64_t epoch, uint64_t index);

/* The eval view, uint8 (C, G, G) with G = global_size: resize so the shorter
 * side is G (for a G x G image, the image itself), then center crop. The same
 * code serves eval tickets and `lejepa embed`. */
void augment_eval_view(uint8_t *out, const struct image *im,
                       const struct config_views *v);

#endif
