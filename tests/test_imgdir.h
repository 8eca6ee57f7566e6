/*
 * test_imgdir.h: a small ImageFolder tree of seeded random gray PNGs
 * (libvips) for the tests of `lejepa run` and `lejepa embed`:
 * root/{train,val}/c<k>/<i>.png. The caller has called VIPS_INIT.
 */
#ifndef LEJEPA_TEST_IMGDIR_H
#define LEJEPA_TEST_IMGDIR_H

#include <stdint.h>

/* Writes classes x per_class images of w x h pixels per split (val gets
 * per_class_val) under root, seeded by seed. */
void imgdir_make(const char *root, int classes, int per_class, int per_class_val,
                 int w, int h, uint64_t seed);

#endif
