/*
 * test_monitor_check.c: parses the polylines of a dashboard chart back out
 * of the HTML (test_monitor_check.h). Knows the plot rectangle the writer
 * uses (monitor_svg.c: x 64..704, y 16..256 in a 720 x 300 viewBox).
 */
#include "test_monitor_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLOT_X0 64.0
#define PLOT_X1 704.0
#define PLOT_Y0 16.0
#define PLOT_Y1 256.0
#define SLACK 0.11          /* coordinates are printed with one decimal */

/* Value of attribute `name` inside [tag, end) as a string (copied). */
static bool attr(const char *tag, const char *end, const char *name, char *out,
                 size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, " %s=\"", name);
    const char *p = strstr(tag, pat);
    if (!p || p >= end)
        return false;
    p += strlen(pat);
    const char *q = strchr(p, '"');
    if (!q || q > end)
        return false;
    size_t n = (size_t)(q - p) < cap - 1 ? (size_t)(q - p) : cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

static void count_points(const char *tag, const char *end, struct check_poly *p)
{
    const char *s = strstr(tag, " points=\"");
    p->counted = 0;
    p->x_sorted = true;
    p->in_plot = true;
    if (!s || s >= end)
        return;
    s += strlen(" points=\"");
    double last_x = -1e300;
    while (*s && *s != '"') {
        char *e;
        double x = strtod(s, &e);
        if (e == s || *e != ',')
            break;
        double y = strtod(e + 1, &e);
        p->counted++;
        if (x < last_x)
            p->x_sorted = false;
        last_x = x;
        if (x < PLOT_X0 - SLACK || x > PLOT_X1 + SLACK || y < PLOT_Y0 - SLACK ||
            y > PLOT_Y1 + SLACK)
            p->in_plot = false;
        s = e;
        while (*s == ' ')
            s++;
    }
}

int check_chart_polylines(const char *html, const char *chart_id, struct check_poly *out,
                          int max)
{
    char pat[128];
    snprintf(pat, sizeof pat, "<figure class=\"chart\" id=\"%s\"", chart_id);
    const char *fig = strstr(html, pat);
    if (!fig)
        return -1;
    const char *fig_end = strstr(fig, "</figure>");
    if (!fig_end)
        return -1;
    int n = 0;
    for (const char *t = strstr(fig, "<polyline"); t && t < fig_end && n < max;
         t = strstr(t + 1, "<polyline")) {
        const char *end = strstr(t, "/>");
        if (!end)
            break;
        struct check_poly *p = &out[n++];
        char buf[64];
        memset(p, 0, sizeof *p);
        attr(t, end, "data-series", p->series, sizeof p->series);
        p->points_attr = attr(t, end, "data-points", buf, sizeof buf) ? atol(buf) : -1;
        p->total_attr = attr(t, end, "data-total", buf, sizeof buf) ? atol(buf) : -1;
        count_points(t, end, p);
    }
    return n;
}

long check_series_total(const char *html, const char *chart_id, const char *series)
{
    struct check_poly polys[16];
    int n = check_chart_polylines(html, chart_id, polys, 16);
    for (int i = 0; i < n; i++)
        if (strcmp(polys[i].series, series) == 0)
            return polys[i].total_attr;
    return -1;
}
