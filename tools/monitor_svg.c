/*
 * monitor_svg.c: dashboard charts as inline SVG (monitor_svg.h): gathering
 * a chart's points from the store, sorting and downsampling them, axes with
 * 1-2-5 (linear) or decade (log) ticks, one polyline per series and an HTML
 * legend. It writes markup to a stream and nothing else.
 */
#include "monitor_svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Chart geometry in SVG user units (the viewBox scales with the page). */
#define SVG_W 720.0
#define SVG_H 300.0
#define SVG_LEFT 64.0
#define SVG_RIGHT 16.0
#define SVG_TOP 16.0
#define SVG_BOTTOM 44.0
#define SVG_TICKS 6                 /* aimed-for tick count per axis */
#define SVG_MARKER_MAX 60           /* draw dots when a line has few points */

struct xy {
    double x, y;
    size_t order;                   /* arrival order, for a stable sort */
};

/* One series of a chart, gathered and reduced. */
struct chart_line {
    const char *name;
    const struct monitor_series *s;
    size_t total;                   /* points on this chart before reduction */
    size_t skipped;                 /* values <= 0 on a log axis */
    size_t n;
    double *x, *y;                  /* (n) drawn points, y already log10'd */
};

struct axis {
    double lo, hi;                  /* data range of the axis (log10 if log) */
    bool log;
};

void monitor_html_escape(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&#39;", out); break;
        default: fputc(*s, out);
        }
    }
}

void monitor_format_number(char *buf, size_t cap, double v)
{
    double a = fabs(v);
    if (v == 0)
        snprintf(buf, cap, "0");
    else if (a >= 1e6 && a < 1e12)
        snprintf(buf, cap, "%.4gM", v / 1e6);
    else if (a >= 1e4 && a < 1e6)
        snprintf(buf, cap, "%.4gk", v / 1e3);
    else
        snprintf(buf, cap, "%.4g", v);
}

const char *monitor_svg_color(const char *name)
{
    static const struct {
        const char *name, *color;
    } fixed[] = {
        {"loss", "#1f77b4"}, {"inv", "#ff7f0e"}, {"sigreg", "#2ca02c"},
        {"probe_acc_train", "#9467bd"}, {"probe_acc_val", "#d62728"},
        {"knn_top1", "#8c564b"}, {"linear_top1", "#e377c2"},
        {"segmap_iou", "#17becf"}, {"images_per_s", "#1f77b4"},
        {"fewshot_linear_top1_1", "#fbb4c9"}, {"fewshot_linear_top1_5", "#f768a1"},
        {"fewshot_linear_top1_10", "#c51b8a"}, {"fewshot_linear_top1_100", "#7a0177"},
        {"fewshot_knn_top1_1", "#d9c3a8"}, {"fewshot_knn_top1_5", "#bf9b70"},
        {"fewshot_knn_top1_10", "#a6761d"}, {"fewshot_knn_top1_100", "#4d2f29"},
        {"lr", "#bcbd22"}, {"probe_loss", "#9467bd"}, {"loaders", "#2ca02c"},
        {"failures", "#d62728"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (strcmp(fixed[i].name, name) == 0)
            return fixed[i].color;
    return "#555555";
}

static int cmp_xy(const void *a, const void *b)
{
    const struct xy *p = a, *q = b;
    if (p->x != q->x)
        return p->x < q->x ? -1 : 1;
    return p->order < q->order ? -1 : p->order > q->order;
}

size_t monitor_svg_downsample(const double *x, const double *y, size_t n, size_t max,
                              double *ox, double *oy)
{
    CHECK(max >= 2 && max % 2 == 0);
    if (n <= max) {
        memcpy(ox, x, n * sizeof *x);
        memcpy(oy, y, n * sizeof *y);
        return n;
    }
    size_t buckets = max / 2, o = 0;
    for (size_t b = 0; b < buckets; b++) {
        size_t lo = b * n / buckets, hi = (b + 1) * n / buckets;
        size_t imin = lo, imax = lo;
        for (size_t i = lo; i < hi; i++) {
            if (y[i] < y[imin])
                imin = i;
            if (y[i] > y[imax])
                imax = i;
        }
        size_t first = imin < imax ? imin : imax, second = imin < imax ? imax : imin;
        ox[o] = x[first];
        oy[o++] = y[first];
        ox[o] = x[second];
        oy[o++] = y[second];
    }
    return o;
}

/* Points of one series on the chart's axes, sorted by x and reduced. */
static void line_gather(struct chart_line *l, const struct monitor_history *h,
                        const struct monitor_chart *c)
{
    const struct monitor_series *s = l->s;
    if (!s || s->n == 0)
        return;
    struct xy *pts = xmalloc(s->n * sizeof *pts);
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct monitor_point *p = &s->pts[i];
        if (c->log_y && !(p->value > 0)) {
            l->skipped++;
            continue;
        }
        pts[n].x = c->x == MONITOR_X_STEP ? p->step : (p->time - h->t_first) / 60.0;
        pts[n].y = c->log_y ? log10(p->value) : p->value;
        pts[n].order = i;
        n++;
    }
    qsort(pts, n, sizeof *pts, cmp_xy);
    double *x = xmalloc((n + 1) * sizeof *x), *y = xmalloc((n + 1) * sizeof *y);
    for (size_t i = 0; i < n; i++) {
        x[i] = pts[i].x;
        y[i] = pts[i].y;
    }
    free(pts);
    l->total = n;
    size_t cap = n < MONITOR_MAX_POINTS ? n : MONITOR_MAX_POINTS;
    l->x = xmalloc((cap + 1) * sizeof *l->x);
    l->y = xmalloc((cap + 1) * sizeof *l->y);
    l->n = monitor_svg_downsample(x, y, n, MONITOR_MAX_POINTS, l->x, l->y);
    free(x);
    free(y);
}

/* Widens a degenerate range and pads a linear one by 4%. */
static void axis_finish(struct axis *a, bool pad)
{
    if (a->hi - a->lo < 1e-12 * (fabs(a->lo) + fabs(a->hi)) || a->hi <= a->lo) {
        double d = a->log ? 0.5 : (a->lo != 0 ? fabs(a->lo) * 0.1 : 1.0);
        a->lo -= d;
        a->hi += d;
    } else if (pad) {
        double d = 0.04 * (a->hi - a->lo);
        a->lo -= d;
        a->hi += d;
    }
}

/* 1-2-5 tick step for about SVG_TICKS ticks over span. */
static double nice_step(double span)
{
    double raw = span / SVG_TICKS, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static double map_x(const struct axis *a, double v)
{
    return SVG_LEFT + (v - a->lo) / (a->hi - a->lo) * (SVG_W - SVG_LEFT - SVG_RIGHT);
}

static double map_y(const struct axis *a, double v)
{
    return SVG_TOP + (a->hi - v) / (a->hi - a->lo) * (SVG_H - SVG_TOP - SVG_BOTTOM);
}

static void draw_x_axis(FILE *out, const struct axis *a, const char *label)
{
    double step = nice_step(a->hi - a->lo), y0 = SVG_H - SVG_BOTTOM;
    for (double v = ceil(a->lo / step) * step; v <= a->hi + 1e-9 * step; v += step) {
        char buf[32];
        double px = map_x(a, v);
        monitor_format_number(buf, sizeof buf, fabs(v) < 1e-9 * step ? 0 : v);
        fprintf(out, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                "y2=\"%.1f\"/><text class=\"tick\" x=\"%.1f\" y=\"%.1f\" "
                "text-anchor=\"middle\">%s</text>\n",
                px, SVG_TOP, px, y0, px, y0 + 14, buf);
    }
    fprintf(out, "<text class=\"axis-label\" x=\"%.1f\" y=\"%.1f\" "
            "text-anchor=\"middle\">", (SVG_LEFT + SVG_W - SVG_RIGHT) / 2, SVG_H - 8);
    monitor_html_escape(out, label);
    fputs("</text>\n", out);
}

static void draw_y_tick(FILE *out, const struct axis *a, double v, double shown)
{
    char buf[32];
    double py = map_y(a, v);
    monitor_format_number(buf, sizeof buf, shown);
    fprintf(out, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
            "y2=\"%.1f\"/><text class=\"tick\" x=\"%.1f\" y=\"%.1f\" "
            "text-anchor=\"end\">%s</text>\n",
            SVG_LEFT, py, SVG_W - SVG_RIGHT, py, SVG_LEFT - 6, py + 4, buf);
}

static void draw_y_axis(FILE *out, const struct axis *a, const char *label)
{
    if (a->log) {
        /* Decades; 2 and 5 in between when the range spans few decades. */
        bool fine = a->hi - a->lo < 2.5;
        for (double d = floor(a->lo); d <= ceil(a->hi); d++)
            for (int m = 1; m <= 5; m += (m == 1 ? 1 : 3)) {
                if (m > 1 && !fine)
                    break;
                double v = d + log10((double)m);
                if (v >= a->lo && v <= a->hi)
                    draw_y_tick(out, a, v, pow(10, v));
            }
    } else {
        double step = nice_step(a->hi - a->lo);
        for (double v = ceil(a->lo / step) * step; v <= a->hi + 1e-9 * step; v += step)
            draw_y_tick(out, a, v, fabs(v) < 1e-9 * step ? 0 : v);
    }
    double cy = (SVG_TOP + SVG_H - SVG_BOTTOM) / 2;
    fprintf(out, "<text class=\"axis-label\" x=\"14\" y=\"%.1f\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 14 %.1f)\">", cy, cy);
    monitor_html_escape(out, label);
    fputs(a->log ? " (log scale)</text>\n" : "</text>\n", out);
}

static void draw_line(FILE *out, const struct chart_line *l, const struct axis *ax,
                      const struct axis *ay)
{
    const char *color = monitor_svg_color(l->name);
    fprintf(out, "<polyline class=\"series\" data-series=\"%s\" data-points=\"%zu\" "
            "data-total=\"%zu\" stroke=\"%s\" points=\"", l->name, l->n, l->total, color);
    for (size_t i = 0; i < l->n; i++)
        fprintf(out, "%s%.1f,%.1f", i ? " " : "", map_x(ax, l->x[i]), map_y(ay, l->y[i]));
    fputs("\"/>\n", out);
    if (l->n > SVG_MARKER_MAX)
        return;
    fprintf(out, "<g class=\"markers\" data-series=\"%s\" fill=\"%s\">", l->name, color);
    for (size_t i = 0; i < l->n; i++)
        fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\"/>", map_x(ax, l->x[i]),
                map_y(ay, l->y[i]));
    fputs("</g>\n", out);
}

static void draw_legend(FILE *out, const struct chart_line *lines, size_t n_lines)
{
    fputs("<ul class=\"legend\">\n", out);
    for (size_t i = 0; i < n_lines; i++) {
        const struct chart_line *l = &lines[i];
        fprintf(out, "<li><span class=\"swatch\" style=\"background:%s\"></span>"
                "<b>%s</b> ", monitor_svg_color(l->name), l->name);
        if (!l->s || !l->s->has_last) {
            fputs("<span class=\"dim\">no data</span>", out);
        } else {
            char v[32], st[32];
            monitor_format_number(v, sizeof v, l->s->last_value);
            monitor_format_number(st, sizeof st, l->s->last_step);
            fprintf(out, "%s <span class=\"dim\">at step %s; %zu point%s", v, st,
                    l->total, l->total == 1 ? "" : "s");
            if (l->n < l->total)
                fprintf(out, ", downsampled to %zu (min/max per bucket)", l->n);
            if (l->skipped)
                fprintf(out, ", %zu value%s &le; 0 not drawn on the log scale",
                        l->skipped, l->skipped == 1 ? "" : "s");
            if (l->s->nonfinite)
                fprintf(out, ", %zu non-finite value%s not drawn", l->s->nonfinite,
                        l->s->nonfinite == 1 ? "" : "s");
            fputs("</span>", out);
        }
        fputs("</li>\n", out);
    }
    fputs("</ul>\n", out);
}

void monitor_svg_chart(FILE *out, const struct monitor_history *h,
                       const struct monitor_chart *c)
{
    struct chart_line lines[MONITOR_CHART_SERIES];
    size_t n_lines = 0, drawn = 0;
    struct axis ax = {0}, ay = {.log = c->log_y};
    bool any = false, reduced = false;
    for (; n_lines < MONITOR_CHART_SERIES && c->series[n_lines]; n_lines++) {
        struct chart_line *l = &lines[n_lines];
        memset(l, 0, sizeof *l);
        l->name = c->series[n_lines];
        l->s = monitor_history_find(h, l->name);
        line_gather(l, h, c);
        reduced |= l->n < l->total;
        for (size_t i = 0; i < l->n; i++) {
            if (!any || l->x[i] < ax.lo) ax.lo = l->x[i];
            if (!any || l->x[i] > ax.hi) ax.hi = l->x[i];
            if (!any || l->y[i] < ay.lo) ay.lo = l->y[i];
            if (!any || l->y[i] > ay.hi) ay.hi = l->y[i];
            any = true;
        }
        drawn += l->n > 0;
    }
    if (c->y_unit && !c->log_y) {
        ay.lo = any && ay.lo < 0 ? ay.lo : 0;
        ay.hi = any && ay.hi > 1 ? ay.hi : 1;
    }
    axis_finish(&ax, false);
    axis_finish(&ay, !c->y_unit);

    fprintf(out, "<figure class=\"chart\" id=\"%s\">\n<figcaption>", c->id);
    monitor_html_escape(out, c->title);
    fputs("</figcaption>\n", out);
    fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" "
            "role=\"img\" data-chart=\"%s\" data-lines=\"%zu\">\n", SVG_W, SVG_H, c->id,
            drawn);
    fprintf(out, "<rect class=\"plot\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
            "height=\"%.1f\"/>\n", SVG_LEFT, SVG_TOP, SVG_W - SVG_LEFT - SVG_RIGHT,
            SVG_H - SVG_TOP - SVG_BOTTOM);
    if (!any) {
        fprintf(out, "<text class=\"empty\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">"
                "no data yet</text>\n", SVG_W / 2, SVG_H / 2);
    } else {
        draw_x_axis(out, &ax, c->x == MONITOR_X_STEP ? "step"
                                                     : "wall time (minutes since start)");
        draw_y_axis(out, &ay, c->y_label);
        for (size_t i = 0; i < n_lines; i++)
            if (lines[i].n > 0)
                draw_line(out, &lines[i], &ax, &ay);
        if (reduced)
            fprintf(out, "<text class=\"note\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">"
                    "downsampled to &le; %d points</text>\n", SVG_W - SVG_RIGHT,
                    SVG_H - 8, MONITOR_MAX_POINTS);
    }
    fputs("</svg>\n", out);
    draw_legend(out, lines, n_lines);
    fputs("</figure>\n", out);
    for (size_t i = 0; i < n_lines; i++) {
        free(lines[i].x);
        free(lines[i].y);
    }
}
