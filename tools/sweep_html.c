/*
 * sweep_html.c: selection.html (sweep_report.h): the runs' table, the
 * correlations and picks, and the (SIGReg, invariance) plane of the paper's
 * Fig. 10 as inline SVG, one point per run coloured by linear_top1 from
 * blue (low) to red (high). Self-contained in the dashboard's style: no
 * script, no external resources. It computes nothing the report has not.
 */
#include <math.h>
#include <string.h>

#include "monitor_svg.h"
#include "sweep_report.h"

#define PLANE_W 720.0
#define PLANE_H 420.0
#define PLANE_LEFT 70.0
#define PLANE_RIGHT 110.0           /* room for the colour bar */
#define PLANE_TOP 16.0
#define PLANE_BOTTOM 46.0
#define PLANE_TICKS 5
#define BAR_STEPS 20
#define SWEEP_MAX_PLOT 1000         /* points drawn (a sweep has at most 999 runs) */

static const char *const PAGE_STYLE =
    "body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:16px 0 6px}"
    ".meta{color:#555;margin:0 0 12px}"
    "table.runs{border-collapse:collapse;margin-bottom:16px;background:#fff}"
    "table.runs td,table.runs th{padding:2px 10px;border-bottom:1px solid #ddd;"
    "text-align:right}"
    "table.runs th{font-weight:600}"
    "table.runs td.name,table.runs td.diff{text-align:left}"
    "td.diff{font-family:monospace;font-size:12px}"
    "tr.best td{background:#fff4d6}"
    "ul.picks{margin:4px 0 12px}"
    "figure.chart{margin:0;background:#fff;border:1px solid #ddd;padding:8px;"
    "width:740px;max-width:100%}"
    "figcaption{font-weight:600;margin-bottom:4px}"
    "svg{width:100%;height:auto}"
    "rect.plot{fill:#fff;stroke:#999}"
    "line.grid{stroke:#e4e4e4}"
    "text{font:11px sans-serif;fill:#333}"
    "text.axis-label{font-size:12px}"
    "circle.run{stroke:#333;stroke-width:0.8}"
    ".dim{color:#777}";

struct plane_axis {
    bool log;
    double lo, hi;                  /* in the axis' own units (log10'd if log) */
};

static double axis_value(const struct plane_axis *a, double v)
{
    return a->log ? log10(v) : v;
}

/* Range of the values (log10 when every one is > 0), padded by 8%. */
static void axis_fit(struct plane_axis *a, const double *v, int n)
{
    a->log = n > 0;
    for (int i = 0; i < n; i++)
        a->log &= v[i] > 0;
    a->lo = INFINITY;
    a->hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double x = axis_value(a, v[i]);
        a->lo = fmin(a->lo, x);
        a->hi = fmax(a->hi, x);
    }
    if (n == 0) {
        a->lo = 0;
        a->hi = 1;
    }
    double pad = a->hi > a->lo ? 0.08 * (a->hi - a->lo) : (a->log ? 0.1 : 0.5);
    a->lo -= pad;
    a->hi += pad;
}

static void number(char *buf, size_t cap, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, "%.4g", v);
    else
        snprintf(buf, cap, "–");
}

/* Blue (low) to red (high) through a light middle, t in [0, 1]. */
static void ramp(double t, char *out, size_t cap)
{
    static const double stops[3][3] = {{44, 123, 182}, {255, 255, 191}, {215, 25, 28}};
    t = fmin(fmax(t, 0.0), 1.0);
    int k = t < 0.5 ? 0 : 1;
    double u = t < 0.5 ? 2 * t : 2 * t - 1;
    int c[3];
    for (int i = 0; i < 3; i++)
        c[i] = (int)lround(stops[k][i] + u * (stops[k + 1][i] - stops[k][i]));
    snprintf(out, cap, "#%02x%02x%02x", c[0], c[1], c[2]);
}

static void plane_svg(FILE *out, const struct sweep_report *r)
{
    double xs[SWEEP_MAX_PLOT], ys[SWEEP_MAX_PLOT];
    int idx[SWEEP_MAX_PLOT], n = 0;
    double acc_lo = INFINITY, acc_hi = -INFINITY;
    for (int i = 0; i < r->n && n < SWEEP_MAX_PLOT; i++) {
        const struct sweep_summary *s = &r->runs[i];
        if (!isfinite(s->sigreg) || !isfinite(s->inv))
            continue;
        xs[n] = s->sigreg;
        ys[n] = s->inv;
        idx[n++] = i;
        if (isfinite(s->linear_top1)) {
            acc_lo = fmin(acc_lo, s->linear_top1);
            acc_hi = fmax(acc_hi, s->linear_top1);
        }
    }
    struct plane_axis ax, ay;
    axis_fit(&ax, xs, n);
    axis_fit(&ay, ys, n);
    const double pw = PLANE_W - PLANE_LEFT - PLANE_RIGHT;
    const double ph = PLANE_H - PLANE_TOP - PLANE_BOTTOM;
#define MAPX(v) (PLANE_LEFT + (axis_value(&ax, (v)) - ax.lo) / (ax.hi - ax.lo) * pw)
#define MAPY(v) (PLANE_TOP + (1.0 - (axis_value(&ay, (v)) - ay.lo) / (ay.hi - ay.lo)) * ph)
    fputs("<figure class=\"chart\" id=\"plane\"><figcaption>SIGReg vs invariance "
          "(mean of the last 10% of logged steps), colour: linear_top1</figcaption>\n",
          out);
    fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" "
            "role=\"img\" data-points=\"%d\">\n", PLANE_W, PLANE_H, n);
    fprintf(out, "<rect class=\"plot\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
            "height=\"%.1f\"/>\n", PLANE_LEFT, PLANE_TOP, pw, ph);
    char buf[64];
    for (int t = 0; t <= PLANE_TICKS; t++) {
        double fx = ax.lo + (ax.hi - ax.lo) * t / PLANE_TICKS;
        double fy = ay.lo + (ay.hi - ay.lo) * t / PLANE_TICKS;
        double px = PLANE_LEFT + pw * t / PLANE_TICKS;
        double py = PLANE_TOP + ph * (1.0 - (double)t / PLANE_TICKS);
        fprintf(out, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                "y2=\"%.1f\"/>", px, PLANE_TOP, px, PLANE_TOP + ph);
        fprintf(out, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                "y2=\"%.1f\"/>\n", PLANE_LEFT, py, PLANE_LEFT + pw, py);
        monitor_format_number(buf, sizeof buf, ax.log ? pow(10, fx) : fx);
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>",
                px, PLANE_TOP + ph + 14, buf);
        monitor_format_number(buf, sizeof buf, ay.log ? pow(10, fy) : fy);
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                PLANE_LEFT - 4, py + 4, buf);
    }
    fprintf(out, "<text class=\"axis-label\" x=\"%.1f\" y=\"%.1f\" "
            "text-anchor=\"middle\">sigreg%s</text>\n", PLANE_LEFT + pw / 2,
            PLANE_H - 8, ax.log ? " (log scale)" : "");
    fprintf(out, "<text class=\"axis-label\" transform=\"translate(14 %.1f) "
            "rotate(-90)\" text-anchor=\"middle\">inv%s</text>\n", PLANE_TOP + ph / 2,
            ay.log ? " (log scale)" : "");
    for (int k = 0; k < n; k++) {
        const struct sweep_summary *s = &r->runs[idx[k]];
        char fill[16] = "#bbbbbb", acc[32];
        if (isfinite(s->linear_top1))
            ramp(acc_hi > acc_lo ? (s->linear_top1 - acc_lo) / (acc_hi - acc_lo) : 0.5,
                 fill, sizeof fill);
        number(acc, sizeof acc, s->linear_top1);
        double cx = MAPX(xs[k]), cy = MAPY(ys[k]);
        fputs("<circle class=\"run\" data-run=\"", out);
        monitor_html_escape(out, s->name);
        fprintf(out, "\" data-linear=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"6\" "
                "fill=\"%s\"><title>", acc, cx, cy, fill);
        monitor_html_escape(out, s->name);
        fprintf(out, ": sigreg %.4g, inv %.4g, linear_top1 %s</title></circle>", xs[k],
                ys[k], acc);
        const char *dash = strrchr(s->name, '-');
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">", cx + 8, cy - 6);
        monitor_html_escape(out, dash ? dash + 1 : s->name);
        fputs("</text>\n", out);
    }
    /* the colour bar: BAR_STEPS swatches, low at the bottom */
    const double bx = PLANE_W - PLANE_RIGHT + 24, bh = ph / BAR_STEPS;
    for (int b = 0; b < BAR_STEPS; b++) {
        char fill[16];
        ramp((b + 0.5) / BAR_STEPS, fill, sizeof fill);
        fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"%.2f\" "
                "fill=\"%s\"/>", bx, PLANE_TOP + ph - (b + 1) * bh, bh + 0.3, fill);
    }
    char lo[32], hi[32];
    number(lo, sizeof lo, acc_lo);
    number(hi, sizeof hi, acc_hi);
    fprintf(out, "\n<text x=\"%.1f\" y=\"%.1f\">%s</text><text x=\"%.1f\" y=\"%.1f\">"
            "%s</text><text x=\"%.1f\" y=\"%.1f\">linear_top1</text>\n", bx + 18,
            PLANE_TOP + 10, hi, bx + 18, PLANE_TOP + ph, lo, bx - 10,
            PLANE_TOP + ph + 14);
    fputs("</svg></figure>\n", out);
#undef MAPX
#undef MAPY
}

static void cell(FILE *out, double v, const char *fmt)
{
    if (isfinite(v))
        fprintf(out, fmt, v);
    else
        fputs("<td class=\"dim\">–</td>", out);
}

static void pick_line(FILE *out, const struct sweep_report *r, const char *what, int i,
                      bool label_free)
{
    fprintf(out, "<li>%s: ", what);
    if (i < 0) {
        fputs("<span class=\"dim\">none</span>", out);
    } else {
        fputs("<b>", out);
        monitor_html_escape(out, r->runs[i].name);
        fputs("</b>", out);
        if (r->pick_linear >= 0 && i != r->pick_linear) {
            char gap[32];
            number(gap, sizeof gap,
                   r->runs[r->pick_linear].linear_top1 - r->runs[i].linear_top1);
            fprintf(out, " (not the probe's pick: linear_top1 %s lower)", gap);
        } else if (r->pick_linear >= 0 && label_free) {
            fputs(" (the probe's pick)", out);
        }
    }
    fputs("</li>\n", out);
}

void sweep_report_html(FILE *out, const struct sweep_report *r, const char *sweep)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<title>", out);
    monitor_html_escape(out, sweep);
    fprintf(out, " — sweep selection</title><style>%s</style></head><body>\n", PAGE_STYLE);
    fputs("<h1>Sweep ", out);
    monitor_html_escape(out, sweep);
    fprintf(out, "</h1>\n<p class=\"meta\">%d runs. Label-free criteria: the training "
            "loss (mean of the last %.0f%% of logged steps) and the scaled loss "
            "loss / &lambda;<sup>&alpha;</sup> with &alpha; = %g (LeJEPA paper, Eq. 8); "
            "checked against the frozen linear probe (linear_top1).</p>\n", r->n,
            100 * SWEEP_FINAL_FRACTION, r->alpha);
    char a[32], b[32];
    number(a, sizeof a, r->rho_loss);
    number(b, sizeof b, r->rho_scaled);
    fprintf(out, "<h2>Selection</h2>\n<p>Spearman rank correlation with linear_top1 "
            "over %d runs (ties: average ranks; a good criterion is strongly "
            "negative, lower loss &harr; higher accuracy): loss <b id=\"rho_loss\">%s"
            "</b>, scaled loss <b id=\"rho_scaled\">%s</b>.</p>\n<ul class=\"picks\">\n",
            r->n_corr, a, b);
    pick_line(out, r, "lowest loss", r->pick_loss, true);
    pick_line(out, r, "lowest scaled loss", r->pick_scaled, true);
    pick_line(out, r, "highest linear_top1 (uses labels)", r->pick_linear, false);
    fputs("</ul>\n<h2>Runs</h2>\n<table class=\"runs\"><tr><th>run</th><th>config "
          "differences</th><th>steps</th><th>loss</th><th>scaled loss</th><th>inv</th>"
          "<th>sigreg</th><th>probe_acc_val</th><th>knn_top1</th><th>linear_top1</th>"
          "</tr>\n", out);
    for (int i = 0; i < r->n; i++) {
        const struct sweep_summary *s = &r->runs[i];
        fprintf(out, "<tr%s data-run=\"", i == r->pick_linear ? " class=\"best\"" : "");
        monitor_html_escape(out, s->name);
        fputs("\"><td class=\"name\">", out);
        monitor_html_escape(out, s->name);
        if (!s->has_metrics)
            fputs(" <span class=\"dim\">(no metrics)</span>", out);
        fputs("</td><td class=\"diff\">", out);
        monitor_html_escape(out, s->diff);
        fprintf(out, "</td><td>%llu</td>", (unsigned long long)s->last_step);
        cell(out, s->loss, "<td>%.5g</td>");
        cell(out, s->scaled_loss, "<td>%.5g</td>");
        cell(out, s->inv, "<td>%.5g</td>");
        cell(out, s->sigreg, "<td>%.5g</td>");
        cell(out, s->probe_acc_val, "<td>%.4f</td>");
        cell(out, s->knn_top1, "<td>%.4f</td>");
        cell(out, s->linear_top1, "<td>%.4f</td>");
        fputs("</tr>\n", out);
    }
    fputs("</table>\n<h2>The (SIGReg, invariance) plane</h2>\n", out);
    plane_svg(out, r);
    fputs("<p class=\"dim\">selection.json holds the same numbers.</p>\n"
          "</body></html>\n", out);
}
