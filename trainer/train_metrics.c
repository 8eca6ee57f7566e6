/*
 * train_metrics.c: what the trainer tells people. The terminal log (a copy
 * goes to runs/<name>/log), runs/<name>/metrics.jsonl (one JSON object per
 * line, names of DESIGN.md §10, flushed per line, each line republished as
 * METRIC), evaluators' RESULTs appended the same way, HISTORY answered from
 * the file in pages, and the count of bad messages.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "train_state.h"
#include "util.h"

void train_log(struct train *t, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    fprintf(stderr, "%s lejepa-train: %s\n", stamp, msg);
    if (t->log) {
        fprintf(t->log, "%s lejepa-train: %s\n", stamp, msg);
        fflush(t->log);
    }
}

void train_bad_message(struct train *t, const char *who, const char *reason)
{
    t->bad_messages++;
    if (t->bad_messages <= TRAIN_BAD_LOG_FIRST || t->bad_messages % 1000 == 0)
        train_log(t, "bad message #%" PRIu64 " from %s: %s", t->bad_messages, who,
                  reason);
}

static void index_line(struct train *t, uint64_t offset)
{
    if (t->metrics_lines == t->line_cap) {
        t->line_cap = t->line_cap ? 2 * t->line_cap : 1024;
        t->line_off = xrealloc(t->line_off, t->line_cap * sizeof *t->line_off);
    }
    t->line_off[t->metrics_lines++] = offset;
}

/* Opens metrics.jsonl for appending and indexes the lines already there, so
 * HISTORY pages seek instead of rereading the file. A last line cut short
 * by a crash is ended first. */
int train_metrics_open(struct train *t, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
    t->metrics = fopen(path, "a+");
    if (!t->metrics)
        return errf(err, "%s: cannot open for appending: %s", path, strerror(errno));
    uint64_t off = 0;
    int c, last = '\n';
    rewind(t->metrics);
    while ((c = getc(t->metrics)) != EOF) {
        if (last == '\n')
            index_line(t, off);
        last = c;
        off++;
    }
    if (last != '\n' && fputc('\n', t->metrics) == EOF)
        return errf(err, "%s: cannot append: %s", path, strerror(errno));
    fflush(t->metrics);
    return 0;
}

static size_t append_number(char *out, size_t cap, size_t len, const char *key,
                            double v)
{
    if (len >= cap)
        return len;
    if (isfinite(v))
        len += (size_t)snprintf(out + len, cap - len, ",\"%s\":%.10g", key, v);
    else
        len += (size_t)snprintf(out + len, cap - len, ",\"%s\":null", key);
    return len;
}

/* Appends the line and publishes it; line has no trailing newline. */
static void emit(struct train *t, const char *line, const struct msg_metric *mm)
{
    if (t->metrics) {
        fseek(t->metrics, 0, SEEK_END);
        long off = ftell(t->metrics);
        if (fprintf(t->metrics, "%s\n", line) < 0 || fflush(t->metrics) != 0)
            train_log(t, "cannot append to metrics.jsonl: %s", strerror(errno));
        else
            index_line(t, (uint64_t)(off < 0 ? 0 : off));
    }
    if (t->pub) {
        char err[ERR_LEN];
        struct msg m = {.kind = MSG_KIND_METRIC, .metric = *mm};
        if (msg_publish(t->pub, &m, err) != 0)
            train_log(t, "could not publish METRIC: %s", err);
    }
}

static size_t metric_head(char *out, size_t cap, const struct msg_metric *mm)
{
    return (size_t)snprintf(out, cap, "{\"time\":%.3f,\"step\":%" PRIu64
                            ",\"epoch\":%" PRIu32 ",\"source\":\"%s\"", mm->time,
                            mm->step, mm->epoch, msg_source_name(mm->source));
}

void train_metrics_write(struct train *t, enum msg_source source, uint64_t step,
                         uint32_t epoch, const struct msg_value *values, int n,
                         const char *extra)
{
    struct msg_metric mm = {
        .time = util_time_unix(), .step = step, .epoch = epoch, .source = source,
        .n_values = (uint32_t)n, .values = values,
    };
    char line[8192];
    size_t len = metric_head(line, sizeof line, &mm);
    for (int i = 0; i < n; i++)
        len = append_number(line, sizeof line, len, values[i].key, values[i].value);
    if (extra && len < sizeof line)
        len += (size_t)snprintf(line + len, sizeof line - len, "%s", extra);
    if (len + 2 >= sizeof line) {
        train_log(t, "metrics line of step %" PRIu64 " too long, not written", step);
        return;
    }
    snprintf(line + len, sizeof line - len, "}");
    emit(t, line, &mm);
}

void train_metrics_result(struct train *t, const struct msg_metric *r)
{
    /* keys arrive validated as names; write them as JSON strings */
    size_t cap = 64 + (size_t)r->n_values * (MSG_NAME_MAX * 2 + 40);
    char *line = xmalloc(cap);
    size_t len = metric_head(line, cap, r);
    FILE *mem = fmemopen(line + len, cap - len, "w");
    CHECK(mem);
    for (uint32_t i = 0; i < r->n_values; i++) {
        fputc(',', mem);
        json_write_string(mem, r->values[i].key);
        if (isfinite(r->values[i].value))
            fprintf(mem, ":%.10g", r->values[i].value);
        else
            fputs(":null", mem);
    }
    fputc('}', mem);
    fclose(mem);
    emit(t, line, r);
    free(line);
}

void train_metrics_history(struct train *t, const uint8_t *id, size_t id_len,
                           uint64_t start)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
    FILE *f = start < t->metrics_lines ? fopen(path, "r") : NULL;
    char **lines = xcalloc(TRAIN_HISTORY_PAGE_LINES, sizeof *lines);
    uint32_t n = 0;
    size_t bytes = 0;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    if (f && fseek(f, (long)t->line_off[start], SEEK_SET) != 0) {
        fclose(f);
        f = NULL;
    }
    while (f && start + n < t->metrics_lines && (got = getline(&buf, &cap, f)) >= 0) {
        if (n == TRAIN_HISTORY_PAGE_LINES || bytes + (size_t)got > TRAIN_HISTORY_PAGE_BYTES)
            break;
        if (got > 0 && buf[got - 1] == '\n')
            buf[--got] = '\0';
        lines[n++] = xstrdup(buf);
        bytes += (size_t)got + 16;
    }
    bool done = start + n >= t->metrics_lines;
    free(buf);
    if (f)
        fclose(f);
    struct msg m = {.kind = MSG_KIND_HISTORY};
    m.history = (struct msg_history){
        .start = start, .n_lines = n, .lines = (const char *const *)lines,
        .done = done,
    };
    train_send(t, id, id_len, &m);
    for (uint32_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}
