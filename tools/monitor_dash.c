/*
 * monitor_dash.c: the dashboard page (monitor_dash.h): which charts it has,
 * the header with the latest values, the embedded segmentation grid and the
 * atomic rewrite. Chart drawing itself is monitor_svg.c.
 */
#include "monitor_dash.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "monitor_svg.h"
#include "util.h"

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* The charts, top to bottom (value names of DESIGN.md §10). */
static const struct monitor_chart CHARTS[] = {
    {"loss", "LeJEPA loss and its terms vs step", "loss", MONITOR_X_STEP, true, false,
     {"loss", "inv", "sigreg", NULL}},
    {"acc_step", "Accuracy vs step (online probe, kNN, linear probe)", "accuracy",
     MONITOR_X_STEP, false, true,
     {"probe_acc_train", "probe_acc_val", "knn_top1", "linear_top1", "segmap_iou", NULL}},
    {"acc_time", "Accuracy vs wall time", "accuracy", MONITOR_X_MINUTES, false, true,
     {"probe_acc_train", "probe_acc_val", "knn_top1", "linear_top1", "segmap_iou", NULL}},
    /* The shot counts lejepa-eval --help suggests; other counts are in
     * metrics.jsonl but not drawn. */
    {"fewshot", "Few-shot top-1 vs step (mean over seeds; lejepa-eval --shots)",
     "accuracy", MONITOR_X_STEP, false, true,
     {"fewshot_linear_top1_1", "fewshot_linear_top1_5", "fewshot_linear_top1_10",
      "fewshot_linear_top1_100", "fewshot_knn_top1_1", "fewshot_knn_top1_5",
      "fewshot_knn_top1_10", "fewshot_knn_top1_100", NULL}},
    {"throughput", "Throughput vs step", "images / s", MONITOR_X_STEP, false, false,
     {"images_per_s", NULL}},
    {"probe_loss", "Online probe loss vs step", "cross-entropy", MONITOR_X_STEP, false,
     false, {"probe_loss", NULL}},
    {"lr", "Learning rate vs step", "lr", MONITOR_X_STEP, false, false, {"lr", NULL}},
    {"system", "Loaders connected and sample failures vs step", "count", MONITOR_X_STEP,
     false, false, {"loaders", "failures", NULL}},
};

/* The header's table of latest values, in this order. */
static const char *const HEADER_NAMES[] = {
    "loss", "inv", "sigreg", "probe_acc_train", "probe_acc_val", "knn_top1",
    "linear_top1", "segmap_iou", "images_per_s", "lr", "probe_loss", "loaders",
    "failures",
};

static const char *const PAGE_STYLE =
    "body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}"
    "h1{font-size:20px;margin:0 0 4px}"
    ".meta{color:#555;margin:0 0 12px}"
    "table.latest{border-collapse:collapse;margin-bottom:16px}"
    "table.latest td,table.latest th{padding:2px 10px;border-bottom:1px solid #ddd;"
    "text-align:right}"
    "table.latest th{text-align:left;font-weight:600}"
    ".charts{display:flex;flex-wrap:wrap;gap:16px}"
    "figure.chart{margin:0;background:#fff;border:1px solid #ddd;padding:8px;"
    "width:700px;max-width:100%}"
    "figcaption{font-weight:600;margin-bottom:4px}"
    "svg{width:100%;height:auto}"
    "rect.plot{fill:#fff;stroke:#999}"
    "line.grid{stroke:#e4e4e4}"
    "text{font:11px sans-serif;fill:#333}"
    "text.axis-label{font-size:12px}"
    "text.empty,text.note{fill:#888}"
    "polyline.series{fill:none;stroke-width:1.5;stroke-linejoin:round}"
    "ul.legend{list-style:none;padding:0;margin:4px 0 0}"
    "ul.legend li{margin:2px 0}"
    ".swatch{display:inline-block;width:12px;height:12px;margin-right:6px;"
    "vertical-align:middle}"
    ".dim{color:#777}"
    "section.segmap img{image-rendering:pixelated;max-width:100%;border:1px solid #ddd}";

size_t monitor_base64_encode(const uint8_t *in, size_t n, char *out)
{
    static const char A[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
        out[o++] = A[(v >> 6) & 63];
        out[o++] = A[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
        out[o++] = A[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

int monitor_segmap_find(const char *dir, char *out, size_t cap, double *mtime)
{
    struct stat st;
    snprintf(out, cap, "%s/latest.png", dir);
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
        *mtime = (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    bool found = false;
    double best = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".png") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        double t = (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
        /* Newest first; equal times: the greater name (step-numbered files). */
        if (!found || t > best || (t == best && strcmp(path, out) > 0)) {
            best = t;
            snprintf(out, cap, "%s", path);
            found = true;
        }
    }
    closedir(d);
    *mtime = best;
    return found ? 0 : -1;
}

static void format_time(char *buf, size_t cap, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (!localtime_r(&s, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
        snprintf(buf, cap, "%.0f", t);
}

static void render_header(FILE *out, const struct monitor_history *h,
                          const struct monitor_dash_info *info)
{
    char when[64];
    format_time(when, sizeof when, info->now);
    fputs("<header>\n<h1>LeJEPA run <span id=\"run\">", out);
    monitor_html_escape(out, info->run);
    fputs("</span></h1>\n<p class=\"meta\">", out);
    if (h->has_records)
        fprintf(out, "last step <b id=\"last-step\">%llu</b>, epoch <b>%u</b>; ",
                (unsigned long long)h->last_step, h->last_epoch);
    else
        fputs("no metrics yet; ", out);
    fprintf(out, "%zu records", h->records);
    if (h->duplicates)
        fprintf(out, " (%zu duplicates dropped)", h->duplicates);
    if (h->bad_lines)
        fprintf(out, ", %zu malformed lines skipped", h->bad_lines);
    if (h->has_records)
        fprintf(out, "; %.1f minutes of run", (h->t_last - h->t_first) / 60.0);
    fputs("<br>data from ", out);
    monitor_html_escape(out, info->origin);
    fprintf(out, "; written <time id=\"written\">%s</time> by lejepa-monitor</p>\n", when);

    fputs("<table class=\"latest\"><tr><th>value</th><th>latest</th><th>at step</th>"
          "<th>points</th></tr>\n", out);
    for (size_t i = 0; i < sizeof HEADER_NAMES / sizeof *HEADER_NAMES; i++) {
        const struct monitor_series *s = monitor_history_find(h, HEADER_NAMES[i]);
        if (!s || !s->has_last)
            continue;
        char v[32];
        monitor_format_number(v, sizeof v, s->last_value);
        fprintf(out, "<tr data-name=\"%s\"><th>%s</th><td>%s</td><td>%.0f</td>"
                "<td>%zu</td></tr>\n", s->name, s->name, v, s->last_step, s->n);
    }
    fputs("</table>\n</header>\n", out);
}

static void render_segmap(FILE *out, const char *dir)
{
    fputs("<section class=\"segmap\">\n<h2>Latest segmentation grid</h2>\n", out);
    char path[4096];
    double mtime;
    if (!dir || monitor_segmap_find(dir, path, sizeof path, &mtime) < 0) {
        fputs("<p class=\"dim\">no segmentation maps yet (looked for latest.png or "
              "the newest PNG in ", out);
        monitor_html_escape(out, dir ? dir : "(no directory)");
        fputs(")</p>\n</section>\n", out);
        return;
    }
    char err[ERR_LEN];
    size_t len = 0;
    uint8_t *png = (uint8_t *)util_read_file(path, &len, err);
    const char *problem = NULL;
    if (!png)
        problem = err;
    else if (len < sizeof PNG_SIGNATURE || memcmp(png, PNG_SIGNATURE, sizeof PNG_SIGNATURE))
        problem = "not a PNG file";
    else if (len > MONITOR_SEGMAP_MAX_BYTES)
        problem = "too large to embed";
    if (problem) {
        fputs("<p class=\"dim\">", out);
        monitor_html_escape(out, path);
        fputs(": ", out);
        monitor_html_escape(out, problem);
        fputs("</p>\n</section>\n", out);
        free(png);
        return;
    }
    char *b64 = xmalloc(4 * ((len + 2) / 3) + 1);
    monitor_base64_encode(png, len, b64);
    char when[64];
    format_time(when, sizeof when, mtime);
    fprintf(out, "<figure><img id=\"segmap\" alt=\"segmentation grid\" "
            "data-bytes=\"%zu\" src=\"data:image/png;base64,%s\">\n<figcaption "
            "class=\"dim\">", len, b64);
    monitor_html_escape(out, path);
    fprintf(out, ", modified %s</figcaption></figure>\n</section>\n", when);
    free(b64);
    free(png);
}

void monitor_dash_render(FILE *out, const struct monitor_history *h,
                         const struct monitor_dash_info *info)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", out);
    if (info->refresh_s > 0)
        fprintf(out, "<meta http-equiv=\"refresh\" content=\"%d\">\n", info->refresh_s);
    fputs("<title>", out);
    monitor_html_escape(out, info->run);
    fprintf(out, " - LeJEPA dashboard</title>\n<style>%s</style>\n</head>\n<body>\n",
            PAGE_STYLE);
    render_header(out, h, info);
    fputs("<div class=\"charts\">\n", out);
    for (size_t i = 0; i < sizeof CHARTS / sizeof *CHARTS; i++)
        monitor_svg_chart(out, h, &CHARTS[i]);
    fputs("</div>\n", out);
    render_segmap(out, info->segmap_dir);
    fputs("</body>\n</html>\n", out);
}

struct dash_job {
    const struct monitor_history *h;
    const struct monitor_dash_info *info;
};

static void render_dash(FILE *out, void *ctx)
{
    const struct dash_job *j = ctx;
    monitor_dash_render(out, j->h, j->info);
}

int monitor_dash_write(const char *path, const struct monitor_history *h,
                       const struct monitor_dash_info *info, char *err)
{
    struct dash_job j = {h, info};
    return util_write_rendered(path, render_dash, &j, err);
}
