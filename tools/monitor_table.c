/*
 * monitor_table.c: the terminal side of lejepa-monitor (monitor_table.h):
 * the redrawn table, plain record lines and the monitor's log ring. It only
 * formats text; it never touches sockets or files.
 */
#include "monitor_table.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "monitor_svg.h"
#include "util.h"

#define LOG_KEEP 5          /* messages shown under the table */
#define LOG_LEN 240

/* The rows of the table: value name and how to label it. */
static const struct {
    const char *name, *label;
} ROWS[] = {
    {"loss", "loss"},
    {"inv", "  invariance"},
    {"sigreg", "  sigreg"},
    {"probe_loss", "probe loss"},
    {"probe_acc_train", "probe acc (train views)"},
    {"probe_acc_val", "probe acc (val)"},
    {"knn_top1", "kNN top-1"},
    {"linear_top1", "linear probe top-1"},
    {"linear_adamw_top1", "AdamW probe top-1"},
    {"fewshot_linear_top1_5", "  5-shot linear top-1"},
    {"fewshot_knn_top1_5", "  5-shot kNN top-1"},
    {"segmap_iou", "segmap IoU"},
    {"images_per_s", "images/s"},
    {"lr", "lr"},
    {"loaders", "loaders connected"},
    {"failures", "failures"},
};

static bool log_stderr = true;
static char log_ring[LOG_KEEP][LOG_LEN];
static unsigned log_count;

void monitor_log_set_stderr(bool on)
{
    log_stderr = on;
}

static void clock_text(char *buf, size_t cap, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (!localtime_r(&s, &tm) || strftime(buf, cap, "%H:%M:%S", &tm) == 0)
        snprintf(buf, cap, "%.0f", t);
}

void monitor_log(const char *fmt, ...)
{
    char msg[LOG_LEN - 16], when[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    clock_text(when, sizeof when, util_time_unix());
    snprintf(log_ring[log_count % LOG_KEEP], LOG_LEN, "%s %s", when, msg);
    log_count++;
    if (log_stderr)
        fprintf(stderr, "lejepa-monitor: %s\n", msg);
}

static void age_text(char *buf, size_t cap, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    if (seconds < 120)
        snprintf(buf, cap, "%.0f s", seconds);
    else if (seconds < 7200)
        snprintf(buf, cap, "%.0f min", seconds / 60);
    else
        snprintf(buf, cap, "%.1f h", seconds / 3600);
}

void monitor_table_draw(FILE *out, const struct monitor_history *h,
                        const struct monitor_status *st, double now)
{
    fputs("\033[H\033[2J", out);
    fprintf(out, "lejepa-monitor  run %s  %s  [%s]\n", st->run[0] ? st->run : "?",
            st->origin, st->state);
    if (h->has_records)
        fprintf(out, "step %llu  epoch %u  ", (unsigned long long)h->last_step,
                h->last_epoch);
    fprintf(out, "records %zu", h->records);
    if (h->duplicates)
        fprintf(out, " (%zu duplicates dropped)", h->duplicates);
    if (h->bad_lines)
        fprintf(out, "  malformed %zu", h->bad_lines);
    fputc('\n', out);
    if (st->dash_path[0]) {
        char age[32];
        age_text(age, sizeof age, now - st->dash_written);
        fprintf(out, "dashboard %s (%s)\n", st->dash_path,
                st->dash_written > 0 ? age : "not written yet");
    }
    fprintf(out, "\n  %-24s %12s %10s %8s\n", "", "latest", "at step", "age");
    for (size_t i = 0; i < sizeof ROWS / sizeof *ROWS; i++) {
        const struct monitor_series *s = monitor_history_find(h, ROWS[i].name);
        char v[32] = "-", step[32] = "", age[32] = "";
        if (s && s->has_last) {
            monitor_format_number(v, sizeof v, s->last_value);
            snprintf(step, sizeof step, "%.0f", s->last_step);
            age_text(age, sizeof age, now - s->last_time);
        }
        fprintf(out, "  %-24s %12s %10s %8s\n", ROWS[i].label, v, step, age);
    }
    if (log_count) {
        fputc('\n', out);
        unsigned first = log_count > LOG_KEEP ? log_count - LOG_KEEP : 0;
        for (unsigned i = first; i < log_count; i++)
            fprintf(out, "  %s\n", log_ring[i % LOG_KEEP]);
    }
    fflush(out);
}

void monitor_table_log_record(FILE *out, const struct monitor_record *r)
{
    char when[16];
    clock_text(when, sizeof when, r->time);
    fprintf(out, "%s step %llu epoch %u %s", when, (unsigned long long)r->step,
            r->epoch, r->source[0] ? r->source : "-");
    for (size_t i = 0; i < r->n; i++) {
        char v[32];     /* a diverged loss shows as nan */
        monitor_format_number(v, sizeof v, r->values[i]);
        fprintf(out, " %s=%s", r->keys[i], v);
    }
    fputc('\n', out);
    fflush(out);
}
