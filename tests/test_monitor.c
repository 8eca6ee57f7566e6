/*
 * test_monitor.c: lejepa-monitor's metrics store and dashboard writer on
 * synthetic metrics.jsonl data: which values become points (numbers yes,
 * strings no, null/NaN counted and skipped), duplicate records kept once,
 * the polylines drawn from exactly the stored points (counts per series,
 * downsampling bound, sorted x inside the plot), base64 against RFC 4648's
 * vectors, and the segmentation grid embedded as a data URI.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "monitor_dash.h"
#include "monitor_history.h"
#include "monitor_svg.h"
#include "monitor_table.h"
#include "test_monitor_check.h"
#include "testing.h"
#include "util.h"

#define T0 1764000000.0

static char *render(const struct monitor_history *h, const char *run, const char *segdir)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CU_ASSERT_FATAL(f != NULL);
    struct monitor_dash_info info = {.run = run, .origin = "test", .segmap_dir = segdir,
                                     .now = T0};
    monitor_dash_render(f, h, &info);
    fclose(f);
    return buf;
}

static int add(struct monitor_history *h, const char *line)
{
    char err[ERR_LEN];
    return monitor_history_add_line(h, line, strlen(line), err);
}

static void test_base64(void)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==",
                                       "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        size_t n = monitor_base64_encode((const uint8_t *)in[i], strlen(in[i]), out);
        CU_ASSERT_STRING_EQUAL(out, want[i]);
        CU_ASSERT_EQUAL(n, strlen(want[i]));
    }
    uint8_t bytes[3] = {0xff, 0xfe, 0x00};
    char out[8];
    monitor_base64_encode(bytes, 3, out);
    CU_ASSERT_STRING_EQUAL(out, "//4A");
}

static void test_line_values(void)
{
    struct monitor_history h;
    monitor_history_init(&h);
    CU_ASSERT_EQUAL(add(&h, "{\"time\":1.5,\"step\":3,\"epoch\":1,\"source\":\"train\","
                            "\"loss\":0.5,\"batch_hash\":\"ab12\",\"inv\":null,"
                            "\"flag\":true,\"sigreg\":1e300}"), 1);
    /* Python's json module writes bare NaN / Infinity. */
    CU_ASSERT_EQUAL(add(&h, "{\"time\":2.5,\"step\":4,\"source\":\"train\","
                            "\"loss\":NaN,\"sigreg\":-Infinity,\"note\":\"NaN inside\"}"), 1);
    CU_ASSERT_PTR_NULL(monitor_history_find(&h, "batch_hash"));
    CU_ASSERT_PTR_NULL(monitor_history_find(&h, "flag"));
    CU_ASSERT_PTR_NULL(monitor_history_find(&h, "note"));
    const struct monitor_series *loss = monitor_history_find(&h, "loss");
    const struct monitor_series *inv = monitor_history_find(&h, "inv");
    const struct monitor_series *sig = monitor_history_find(&h, "sigreg");
    CU_ASSERT_FATAL(loss && inv && sig);
    CU_ASSERT_EQUAL(loss->n, 1);
    CU_ASSERT_EQUAL(loss->nonfinite, 1);
    CU_ASSERT_DOUBLE_EQUAL(loss->pts[0].value, 0.5, 0);
    CU_ASSERT_DOUBLE_EQUAL(loss->pts[0].step, 3, 0);
    CU_ASSERT_EQUAL(inv->n, 0);
    CU_ASSERT_EQUAL(inv->nonfinite, 1);
    CU_ASSERT_EQUAL(sig->n, 1);
    CU_ASSERT_EQUAL(sig->nonfinite, 1);
    CU_ASSERT_EQUAL(h.records, 2);
    CU_ASSERT_EQUAL(h.last_step, 4);
    CU_ASSERT_EQUAL(h.last_epoch, 0);

    /* Malformed lines: counted, nothing stored. */
    CU_ASSERT_EQUAL(add(&h, "not json"), -1);
    CU_ASSERT_EQUAL(add(&h, "[1,2]"), -1);
    CU_ASSERT_EQUAL(add(&h, "{\"step\":1,\"loss\":1}"), -1);
    CU_ASSERT_EQUAL(add(&h, "{\"time\":1,\"step\":-1,\"loss\":1}"), -1);
    CU_ASSERT_EQUAL(add(&h, "{\"time\":1,\"step\":1.5,\"loss\":1}"), -1);
    CU_ASSERT_EQUAL(add(&h, "{\"time\":\"x\",\"step\":1,\"loss\":1}"), -1);
    CU_ASSERT_EQUAL(h.bad_lines, 6);
    CU_ASSERT_EQUAL(h.records, 2);
    CU_ASSERT_EQUAL(loss->n, 1);
    monitor_history_free(&h);
}

static void test_dedupe(void)
{
    struct monitor_history h;
    monitor_history_init(&h);
    const char *line = "{\"time\":1764000000.123,\"step\":7,\"source\":\"train\",\"loss\":1}";
    CU_ASSERT_EQUAL(add(&h, line), 1);
    CU_ASSERT_EQUAL(add(&h, line), 0);
    /* The same record as a METRIC: float64 time, not the rounded text. */
    const char *keys[] = {"loss"};
    double vals[] = {1};
    struct monitor_record r = {.time = 1764000000.1234567, .step = 7, .source = "train",
                               .n = 1, .keys = keys, .values = vals};
    CU_ASSERT_EQUAL(monitor_history_add(&h, &r), 0);
    /* Another source, another step, or a later time: new records. */
    r.source = "knn";
    CU_ASSERT_EQUAL(monitor_history_add(&h, &r), 1);
    r.source = "train";
    r.step = 8;
    CU_ASSERT_EQUAL(monitor_history_add(&h, &r), 1);
    r.step = 7;
    r.time += 1.0;
    CU_ASSERT_EQUAL(monitor_history_add(&h, &r), 1);
    CU_ASSERT_EQUAL(h.records, 4);
    CU_ASSERT_EQUAL(h.duplicates, 2);
    CU_ASSERT_EQUAL(monitor_history_find(&h, "loss")->n, 4);
    monitor_history_free(&h);
}

static void test_downsample(void)
{
    double x[10], y[10], ox[4], oy[4];
    for (int i = 0; i < 10; i++) {
        x[i] = i;
        y[i] = (i * 7) % 10;    /* 0 7 4 1 8 5 2 9 6 3 */
    }
    CU_ASSERT_EQUAL(monitor_svg_downsample(x, y, 10, 4, ox, oy), 4);
    /* Buckets [0,5) and [5,10): min then max in x order. */
    CU_ASSERT_DOUBLE_EQUAL(ox[0], 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(oy[0], 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(ox[1], 4, 0);
    CU_ASSERT_DOUBLE_EQUAL(oy[1], 8, 0);
    CU_ASSERT_DOUBLE_EQUAL(ox[2], 6, 0);
    CU_ASSERT_DOUBLE_EQUAL(oy[2], 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(ox[3], 7, 0);
    CU_ASSERT_DOUBLE_EQUAL(oy[3], 9, 0);

    size_t n = 100000;
    double *bx = malloc(n * sizeof *bx), *by = malloc(n * sizeof *by);
    double *cx = malloc(2000 * sizeof *cx), *cy = malloc(2000 * sizeof *cy);
    uint64_t seed = 42;
    for (size_t i = 0; i < n; i++) {
        bx[i] = (double)i;
        by[i] = testing_rand_uniform(&seed);
    }
    by[61234] = 50;             /* a spike must survive */
    size_t m = monitor_svg_downsample(bx, by, n, 2000, cx, cy);
    CU_ASSERT_EQUAL(m, 2000);
    int spike = 0;
    for (size_t i = 0; i < m; i++) {
        spike += cy[i] == 50;
        if (i)
            CU_ASSERT(cx[i] >= cx[i - 1]);
    }
    CU_ASSERT_EQUAL(spike, 1);
    free(bx);
    free(by);
    free(cx);
    free(cy);
}

/* Expected counts of the synthetic file. */
struct synth {
    long train, nan_loss, eval, knn, linear;
};

/* A seeded metrics.jsonl: train lines with every loss term (some NaN), a
 * string batch_hash, eval/knn/linear lines every 100 steps, a malformed
 * line, and every 7th train line written twice (a restarted writer). */
static void write_synth(const char *path, long steps, struct synth *s)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    memset(s, 0, sizeof *s);
    uint64_t seed = 7;
    for (long i = 0; i < steps; i++) {
        double t = T0 + 0.37 * (double)i, u = testing_rand_uniform(&seed);
        bool nan = i % 97 == 13;
        char loss[32];
        snprintf(loss, sizeof loss, nan ? "NaN" : "%.6f", 1.0 + exp(-(double)i / 500) + u);
        char line[512];
        snprintf(line, sizeof line,
                 "{\"time\":%.3f,\"step\":%ld,\"epoch\":%ld,\"source\":\"train\","
                 "\"loss\":%s,\"inv\":%.6f,\"sigreg\":%.6f,\"lr\":%.3g,"
                 "\"images_per_s\":%.1f,\"probe_acc_train\":%.4f,"
                 "\"batch_hash\":\"%016llx\"}\n",
                 t, i, i / 400, loss, 0.1 + u, 1.0 + u, 5e-4 * (double)(i + 1) / steps,
                 800 + 100 * u, 1 - exp(-(double)i / 300),
                 (unsigned long long)testing_rand_u64(&seed));
        fputs(line, f);
        if (i % 7 == 0)
            fputs(line, f);
        s->train++;
        s->nan_loss += nan;
        if (i % 100 == 0) {
            fprintf(f, "{\"time\":%.3f,\"step\":%ld,\"epoch\":%ld,\"source\":\"eval\","
                       "\"probe_acc_val\":%.4f}\n", t + 0.1, i, i / 400, u);
            fprintf(f, "{\"time\":%.3f,\"step\":%ld,\"epoch\":%ld,\"source\":\"knn\","
                       "\"knn_top1\":%.4f}\n", t + 0.2, i, i / 400, u);
            fprintf(f, "{\"time\":%.3f,\"step\":%ld,\"epoch\":%ld,\"source\":\"linear\","
                       "\"linear_top1\":%.4f}\n", t + 0.3, i, i / 400, u);
            fprintf(f, "{\"time\":%.3f,\"step\":%ld,\"epoch\":%ld,\"source\":\"linear\","
                       "\"fewshot_linear_top1_5\":%.4f,\"fewshot_linear_top1_5_std\":0.01}\n",
                    t + 0.4, i, i / 400, 0.9 * u);
            s->linear++;
            s->eval++;
            s->knn++;
            s->linear++;
        }
        if (i == steps / 2)
            fputs("{\"time\":oops}\n\n", f);
    }
    fclose(f);
}

static void check_chart(const char *html, const char *chart, const char *const *names,
                        const long *totals, int n)
{
    struct check_poly polys[8];
    int got = check_chart_polylines(html, chart, polys, 8);
    CU_ASSERT_EQUAL(got, n);
    for (int k = 0; k < n && k < got; k++) {
        CU_ASSERT_STRING_EQUAL(polys[k].series, names[k]);
        CU_ASSERT_EQUAL(polys[k].total_attr, totals[k]);
        long drawn = totals[k] < MONITOR_MAX_POINTS ? totals[k] : MONITOR_MAX_POINTS;
        CU_ASSERT_EQUAL(polys[k].points_attr, drawn);
        CU_ASSERT_EQUAL(polys[k].counted, drawn);
        CU_ASSERT(polys[k].x_sorted);
        CU_ASSERT(polys[k].in_plot);
    }
}

static void test_file_to_dashboard(void)
{
    char *dir = testing_tmpdir(), path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    struct synth s;
    long steps = 2600;
    write_synth(path, steps, &s);
    struct monitor_history h;
    monitor_history_init(&h);
    long stored = monitor_history_load_file(&h, path, err);
    long records = s.train + s.eval + s.knn + s.linear;
    CU_ASSERT_EQUAL(stored, records);
    CU_ASSERT_EQUAL(h.records, (size_t)records);
    CU_ASSERT_EQUAL(h.duplicates, (size_t)((steps + 6) / 7));
    CU_ASSERT_EQUAL(h.bad_lines, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "metrics.jsonl:"));
    CU_ASSERT_EQUAL(monitor_history_find(&h, "loss")->nonfinite, (size_t)s.nan_loss);

    char *html = render(&h, "synthetic <run>", NULL);
    static const char *const loss_names[] = {"loss", "inv", "sigreg"};
    long loss_totals[] = {s.train - s.nan_loss, s.train, s.train};
    check_chart(html, "loss", loss_names, loss_totals, 3);
    static const char *const acc_names[] = {"probe_acc_train", "probe_acc_val", "knn_top1",
                                            "linear_top1"};
    /* probe_acc_train at step 0 is exactly 0: still drawn on a linear axis. */
    long acc_totals[] = {s.train, s.eval, s.knn, s.linear / 2};
    check_chart(html, "acc_step", acc_names, acc_totals, 4);
    check_chart(html, "acc_time", acc_names, acc_totals, 4);
    static const char *const tp_names[] = {"images_per_s"};
    long tp_totals[] = {s.train};
    check_chart(html, "throughput", tp_names, tp_totals, 1);
    /* few-shot: drawn in its own chart; the _std companions are not */
    static const char *const fs_names[] = {"fewshot_linear_top1_5"};
    long fs_totals[] = {s.linear / 2};
    check_chart(html, "fewshot", fs_names, fs_totals, 1);
    /* No data: a placeholder and no polyline. */
    struct check_poly polys[4];
    CU_ASSERT_EQUAL(check_chart_polylines(html, "system", polys, 4), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(html, "no data yet"));
    CU_ASSERT_PTR_NOT_NULL(strstr(html, "downsampled to &le; 2000 points"));
    CU_ASSERT_PTR_NOT_NULL(strstr(html, "(log scale)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(html, "synthetic &lt;run&gt;"));
    CU_ASSERT_PTR_NULL(strstr(html, "<script"));
    CU_ASSERT_PTR_NULL(strstr(html, "http://www.w3.org/2000/svg\" href"));
    char want[64];
    snprintf(want, sizeof want, "<b id=\"last-step\">%ld</b>", steps - 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(html, want));
    free(html);
    monitor_history_free(&h);
    testing_rmtree(dir);
    free(dir);
}

static void write_bytes(const char *path, const uint8_t *b, size_t n, time_t mtime)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    fwrite(b, 1, n, f);
    fclose(f);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    CU_ASSERT_EQUAL(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_segmap_embed(void)
{
    char *dir = testing_tmpdir(), seg[4096], p[4200], err[ERR_LEN];
    snprintf(seg, sizeof seg, "%s/segmaps", dir);
    CU_ASSERT_FATAL(util_mkdir_p(seg, err) == 0);
    struct monitor_history h;
    monitor_history_init(&h);

    char *html = render(&h, "r", seg);
    CU_ASSERT_PTR_NOT_NULL(strstr(html, "no segmentation maps yet"));
    free(html);

    /* Without latest.png the newest PNG wins (step-000200 is older). */
    uint8_t old_png[12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 'o', 'l', 'd', '!'};
    uint8_t new_png[11] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 'n', 'e', 'w'};
    snprintf(p, sizeof p, "%s/step-000200.png", seg);
    write_bytes(p, old_png, sizeof old_png, 1000000);
    snprintf(p, sizeof p, "%s/step-000100.png", seg);
    write_bytes(p, new_png, sizeof new_png, 2000000);
    snprintf(p, sizeof p, "%s/notes.txt", seg);
    write_bytes(p, (const uint8_t *)"x", 1, 3000000);
    char b64[64], uri[128];
    monitor_base64_encode(new_png, sizeof new_png, b64);
    snprintf(uri, sizeof uri, "src=\"data:image/png;base64,%s\"", b64);
    html = render(&h, "r", seg);
    CU_ASSERT_PTR_NOT_NULL(strstr(html, uri));
    CU_ASSERT_PTR_NOT_NULL(strstr(html, "step-000100.png"));
    free(html);

    /* latest.png wins over anything newer; a non-PNG is named, not embedded. */
    snprintf(p, sizeof p, "%s/latest.png", seg);
    write_bytes(p, old_png, sizeof old_png, 10);
    monitor_base64_encode(old_png, sizeof old_png, b64);
    snprintf(uri, sizeof uri, "src=\"data:image/png;base64,%s\"", b64);
    html = render(&h, "r", seg);
    CU_ASSERT_PTR_NOT_NULL(strstr(html, uri));
    free(html);
    write_bytes(p, (const uint8_t *)"GIF89a......", 12, 10);
    html = render(&h, "r", seg);
    CU_ASSERT_PTR_NOT_NULL(strstr(html, "not a PNG file"));
    CU_ASSERT_PTR_NULL(strstr(html, "data:image/png"));
    free(html);

    /* The file written to disk is the rendered page. */
    snprintf(p, sizeof p, "%s/dashboard.html", dir);
    struct monitor_dash_info info = {.run = "r", .origin = "t", .segmap_dir = seg,
                                     .now = T0, .refresh_s = 5};
    CU_ASSERT_EQUAL(monitor_dash_write(p, &h, &info, err), 0);
    size_t len;
    char *text = util_read_file(p, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "<meta http-equiv=\"refresh\" content=\"5\">"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "</html>\n"));
    free(text);
    monitor_history_free(&h);
    testing_rmtree(dir);
    free(dir);
}

static void test_log_axis_skips_nonpositive(void)
{
    struct monitor_history h;
    monitor_history_init(&h);
    for (int i = 0; i < 10; i++) {
        char line[128];
        snprintf(line, sizeof line, "{\"time\":%d,\"step\":%d,\"loss\":%d,\"inv\":1}",
                 i, i, i - 2);   /* -2, -1, 0: not drawable on a log axis */
        CU_ASSERT_EQUAL(add(&h, line), 1);
    }
    CU_ASSERT_EQUAL(add(&h, "{\"time\":20,\"step\":20,\"sigreg\":1.5}"), 1);
    char *html = render(&h, "r", NULL);
    CU_ASSERT_EQUAL(check_series_total(html, "loss", "loss"), 7);
    CU_ASSERT_EQUAL(check_series_total(html, "loss", "inv"), 10);
    CU_ASSERT_EQUAL(check_series_total(html, "loss", "sigreg"), 1);   /* one point */
    CU_ASSERT_PTR_NOT_NULL(strstr(html, "3 values &le; 0 not drawn on the log scale"));
    free(html);
    monitor_history_free(&h);
}

static void test_table(void)
{
    struct monitor_history h;
    monitor_history_init(&h);
    CU_ASSERT_EQUAL(add(&h, "{\"time\":100,\"step\":3,\"epoch\":1,\"source\":\"train\","
                            "\"loss\":0.5,\"images_per_s\":12345}"), 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct monitor_status st = {.run = "r1", .origin = "tcp://x:5555", .state = "live",
                                .dash_path = "runs/r1/dashboard.html", .dash_written = 95};
    monitor_table_draw(f, &h, &st, 110);
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "run r1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "[live]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "step 3  epoch 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "(15 s)"));
    /* Row: label, latest, at step, age. */
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "loss                              0.5"
                                       "          3     10 s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "12.35k"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "kNN top-1                           -"));
    free(buf);

    const char *keys[] = {"loss", "inv"};
    double vals[] = {0.25, NAN};
    struct monitor_record r = {.time = 100, .step = 9, .epoch = 2, .source = "train",
                               .n = 2, .keys = keys, .values = vals};
    f = open_memstream(&buf, &len);
    monitor_table_log_record(f, &r);
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, " step 9 epoch 2 train loss=0.25 inv=nan\n"));
    free(buf);
    monitor_history_free(&h);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"base64 RFC 4648 vectors", test_base64},
        {"line values: numbers kept, strings ignored, NaN counted", test_line_values},
        {"dedupe by source, step and time", test_dedupe},
        {"min/max downsampling keeps spikes", test_downsample},
        {"synthetic metrics.jsonl to polylines", test_file_to_dashboard},
        {"segmentation grid embedded as data URI", test_segmap_embed},
        {"log axis skips values <= 0", test_log_axis_skips_nonpositive},
        {"terminal table and plain record lines", test_table},
        {NULL, NULL},
    };
    return testing_run("monitor", cases);
}
