/*
 * prep_png.h: one grayscale PNG in and out for lejepa-prep: encode with
 * libvips and publish atomically (temp name, rename), and check that a file
 * on disk holds exactly given pixels. Safe to call from several threads.
 */
#ifndef LEJEPA_PREP_PNG_H
#define LEJEPA_PREP_PNG_H

#include <stddef.h>
#include <stdint.h>

/* Encodes pix (h rows of w bytes, 8-bit gray) as PNG into tmp, then renames
 * tmp to path, so path is either absent or complete. No fsync: the caller
 * syncs the file system once at the end. Returns 0, or -1 with err naming
 * the file. */
int prep_png_write(const char *path, const char *tmp, const uint8_t *pix,
                   int w, int h, char *err);

/* 1 if path decodes to exactly pix (w x h, one 8-bit band), else 0
 * (unreadable, not a PNG, other size or other pixels). */
int prep_png_matches(const char *path, const uint8_t *pix, int w, int h);

#endif
