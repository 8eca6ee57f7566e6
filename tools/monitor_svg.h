/*
 * monitor_svg.h: one dashboard chart as inline SVG (lines of several series
 * against step or wall time, axes with ticks, a legend) drawn from the
 * metrics store. Static markup only: no script, no external resources.
 *
 * Every drawn series is one <polyline> with data-series (the value name),
 * data-points (vertices in its points attribute) and data-total (points of
 * the series on this chart before downsampling), so tests and scripts can
 * check the drawing against the data. Series longer than MONITOR_MAX_POINTS
 * are reduced to the min and max of equal-count buckets (spikes survive),
 * and the chart says so.
 */
#ifndef LEJEPA_MONITOR_SVG_H
#define LEJEPA_MONITOR_SVG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "monitor_history.h"

#define MONITOR_MAX_POINTS 2000     /* vertices per polyline, at most */
#define MONITOR_CHART_SERIES 8

enum monitor_x { MONITOR_X_STEP, MONITOR_X_MINUTES };

struct monitor_chart {
    const char *id;             /* HTML id, [a-z_] */
    const char *title;
    const char *y_label;
    enum monitor_x x;
    bool log_y;                 /* log10 axis; values <= 0 are not drawn */
    bool y_unit;                /* the y range covers at least [0, 1] */
    const char *series[MONITOR_CHART_SERIES + 1];  /* NULL-terminated */
};

/* Writes the chart as a <figure> holding the <svg> and its legend. Wall time
 * is minutes since the first record. */
void monitor_svg_chart(FILE *out, const struct monitor_history *h,
                       const struct monitor_chart *c);

/* Min/max decimation of n points sorted by x into at most max points (max
 * even, >= 2): max/2 buckets of consecutive points, each giving its lowest
 * and highest y in x order. n <= max copies. Returns the count written to
 * ox, oy (room for max). */
size_t monitor_svg_downsample(const double *x, const double *y, size_t n, size_t max,
                              double *ox, double *oy);

/* A fixed colour per value name (the same in every chart and in the table). */
const char *monitor_svg_color(const char *name);

/* Writes s with &, <, >, " and ' escaped for HTML text and attributes. */
void monitor_html_escape(FILE *out, const char *s);

/* A number for a tick or a legend: 4 significant digits, k/M for large. */
void monitor_format_number(char *buf, size_t cap, double v);

#endif
