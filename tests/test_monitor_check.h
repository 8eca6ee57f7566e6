/*
 * test_monitor_check.h: reading a dashboard.html back in the monitor tests:
 * the polylines of one chart with their data attributes and the vertices
 * actually present in their points attribute.
 */
#ifndef LEJEPA_TEST_MONITOR_CHECK_H
#define LEJEPA_TEST_MONITOR_CHECK_H

#include <stdbool.h>

struct check_poly {
    char series[64];
    long points_attr;       /* data-points */
    long total_attr;        /* data-total */
    long counted;           /* "x,y" pairs in points */
    bool x_sorted;          /* x never decreases */
    bool in_plot;           /* every vertex inside the plot rectangle */
};

/* Polylines inside <figure ... id="chart_id"> ... </figure>; returns how
 * many (at most max), or -1 when the chart is missing. */
int check_chart_polylines(const char *html, const char *chart_id, struct check_poly *out,
                          int max);

/* data-total of one series in one chart; -1 when it has no polyline. */
long check_series_total(const char *html, const char *chart_id, const char *series);

#endif
