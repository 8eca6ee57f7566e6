/*
 * monitor_dash.h: the run's dashboard.html, one self-contained page (inline
 * CSS and SVG, the segmentation grid as a base64 data URI; no script, no
 * external resources) rewritten atomically, so a browser reloading it never
 * sees half a file. Layout: a header (run, last step and epoch, latest
 * values, time of writing), the charts of monitor_dash.c's table, then the
 * newest segmentation grid.
 */
#ifndef LEJEPA_MONITOR_DASH_H
#define LEJEPA_MONITOR_DASH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "monitor_history.h"

/* A segmentation PNG larger than this is not embedded (the page would be
 * too heavy to reload every few seconds); the page names the file instead. */
#define MONITOR_SEGMAP_MAX_BYTES (16u << 20)

struct monitor_dash_info {
    const char *run;            /* run name */
    const char *origin;         /* where the data comes from (endpoint / file) */
    const char *segmap_dir;     /* directory of segmentation PNGs, or NULL */
    double now;                 /* Unix time of writing */
    int refresh_s;              /* > 0: the page reloads itself (meta refresh) */
};

/* Writes the whole page to out. */
void monitor_dash_render(FILE *out, const struct monitor_history *h,
                         const struct monitor_dash_info *info);

/* Renders into memory and replaces path atomically. 0 or -1 with err. */
int monitor_dash_write(const char *path, const struct monitor_history *h,
                       const struct monitor_dash_info *info, char *err);

/* The PNG the dashboard shows: dir/latest.png, else the newest *.png in dir
 * (by modification time). Writes its path into out (cap bytes) and its
 * mtime; returns 0, or -1 when there is none. */
int monitor_segmap_find(const char *dir, char *out, size_t cap, double *mtime);

/* Standard base64 (RFC 4648, with padding) of n bytes into out, which has
 * room for 4 * ((n + 2) / 3) + 1 bytes; NUL-terminated. Returns the length. */
size_t monitor_base64_encode(const uint8_t *in, size_t n, char *out);

#endif
