/*
 * train_rundir.c: the run directory and metrics.jsonl (train_rundir.h).
 */
#include "train_rundir.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "json.h"
#include "train_log.h"
#include "util.h"

static void index_line(struct train_rundir *rd, uint64_t offset)
{
    if (rd->lines == rd->line_cap) {
        rd->line_cap = rd->line_cap ? 2 * rd->line_cap : 1024;
        rd->line_off =
            xrealloc(rd->line_off, rd->line_cap * sizeof *rd->line_off);
    }
    rd->line_off[rd->lines++] = offset;
}

static int metrics_open(struct train_rundir *rd, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", rd->dir);
    rd->metrics = fopen(path, "a+");
    if (!rd->metrics)
        return errf(err, "%s: cannot open for appending: %s", path,
                    strerror(errno));
    uint64_t off = 0;
    int c, last = '\n';
    rewind(rd->metrics);
    while ((c = getc(rd->metrics)) != EOF) {
        if (last == '\n')
            index_line(rd, off);
        last = c;
        off++;
    }
    if (last != '\n' && fputc('\n', rd->metrics) == EOF)
        return errf(err, "%s: cannot append: %s", path, strerror(errno));
    fflush(rd->metrics);
    return 0;
}

/* A fresh run in a directory that holds checkpoints would overwrite them
 * and interleave its metrics with theirs. */
static int refuse_fresh(const char *dir, char *err)
{
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT)
        return 0;
    size_t n = 0;
    uint64_t *steps = ckpt_list_steps(dir, &n, err);
    if (!steps)
        return -1;
    uint64_t newest = n ? steps[0] : 0;
    free(steps);
    if (n)
        return errf(err,
                    "%s already holds checkpoints (the newest of step %" PRIu64
                    "): continue it with --resume %s, or give the new run "
                    "another --name",
                    dir, newest, dir);
    return 0;
}

int train_rundir_check_fresh(const char *parent, const char *name, char *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", parent, name);
    return refuse_fresh(dir, err);
}

int train_rundir_open(struct train_rundir *rd, const char *parent,
                      const char *name, bool resuming, char *err)
{
    char path[4200];
    rd->lock_fd = -1;
    snprintf(rd->dir, sizeof rd->dir, "%s/%s", parent, name);
    if (util_mkdir_p(rd->dir, err) != 0 ||
        util_lock_dir(rd->dir, &rd->lock_fd, err) != 0)
        return -1;
    if (!resuming && refuse_fresh(rd->dir, err) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/log", rd->dir);
    if (train_log_open(path, err) != 0)
        return -1;
    int removed = 0;
    if (ckpt_remove_stale_tmp(rd->dir, &removed, err) != 0)
        return -1;
    if (removed)
        train_log("removed %d temp file(s) an earlier crash left in %s",
                  removed, rd->dir);
    return metrics_open(rd, err);
}

void train_rundir_close(struct train_rundir *rd)
{
    if (rd->metrics)
        fclose(rd->metrics);
    free(rd->line_off);
    train_log_close();
    if (rd->lock_fd >= 0)
        close(rd->lock_fd);
    memset(rd, 0, sizeof *rd);
}

int train_rundir_save_config(const struct train_rundir *rd, const char *text,
                             char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.ini", rd->dir);
    return util_write_file_atomic(path, text, strlen(text), err);
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
static void emit(struct train_rundir *rd, const char *line,
                 const struct msg_metric *mm)
{
    if (rd->metrics) {
        fseek(rd->metrics, 0, SEEK_END);
        long off = ftell(rd->metrics);
        if (fprintf(rd->metrics, "%s\n", line) < 0 ||
            fflush(rd->metrics) != 0) {
            snprintf(rd->write_failed, sizeof rd->write_failed,
                     "cannot append to %.160s/metrics.jsonl: %s", rd->dir,
                     strerror(errno));
            train_log("%s", rd->write_failed);
        } else
            index_line(rd, (uint64_t)(off < 0 ? 0 : off));
    }
    if (rd->pub) {
        char err[ERR_LEN];
        struct msg m = {.kind = MSG_KIND_METRIC, .metric = *mm};
        if (msg_publish_nb(rd->pub, &m, err) != 0)
            train_log("could not publish METRIC: %s", err);
    }
}

static size_t metric_head(char *out, size_t cap, const struct msg_metric *mm)
{
    return (size_t)snprintf(out, cap,
                            "{\"time\":%.3f,\"step\":%" PRIu64
                            ",\"epoch\":%" PRIu32 ",\"source\":\"%s\"",
                            mm->time, mm->step, mm->epoch,
                            msg_source_name(mm->source));
}

void train_metrics_write(struct train_rundir *rd, enum msg_source source,
                         uint64_t step, uint32_t epoch,
                         const struct msg_value *values, int n,
                         const char *extra)
{
    struct msg_metric mm = {
        .time = util_time_unix(),
        .step = step,
        .epoch = epoch,
        .source = source,
        .n_values = (uint32_t)n,
        .values = values,
    };
    char line[8192];
    size_t len = metric_head(line, sizeof line, &mm);
    for (int i = 0; i < n; i++)
        len = append_number(line, sizeof line, len, values[i].key,
                            values[i].value);
    if (extra && len < sizeof line)
        len += (size_t)snprintf(line + len, sizeof line - len, "%s", extra);
    if (len + 2 >= sizeof line) {
        train_log("metrics line of step %" PRIu64 " too long, not written",
                  step);
        return;
    }
    snprintf(line + len, sizeof line - len, "}");
    emit(rd, line, &mm);
}

int train_metrics_result(struct train_rundir *rd, const struct msg_metric *r,
                         size_t max_bytes, char *err)
{
    /* keys arrive validated as names; write them as JSON strings. The
     * line is built in a max_bytes buffer: a longer one is refused, never
     * cut or overflowed. */
    char *line = xmalloc(max_bytes + 1);
    FILE *mem = fmemopen(line, max_bytes + 1, "w");
    CHECK(mem);
    fprintf(mem,
            "{\"time\":%.3f,\"step\":%" PRIu64 ",\"epoch\":%" PRIu32
            ",\"source\":\"%s\"",
            r->time, r->step, r->epoch, msg_source_name(r->source));
    for (uint32_t i = 0; i < r->n_values; i++) {
        fputc(',', mem);
        json_write_string(mem, r->values[i].key);
        if (isfinite(r->values[i].value))
            fprintf(mem, ":%.10g", r->values[i].value);
        else
            fputs(":null", mem);
    }
    fputc('}', mem);
    long len = ftell(mem);
    bool bad = ferror(mem) || len < 0 || (size_t)len >= max_bytes;
    fclose(mem);
    if (bad) {
        free(line);
        return errf(err,
                    "RESULT of %" PRIu32 " values makes a metrics line "
                    "over %zu bytes (limits.result_bytes)",
                    r->n_values, max_bytes);
    }
    line[len] = '\0';
    emit(rd, line, r);
    free(line);
    return 0;
}

void train_metrics_history(const struct train_rundir *rd, uint64_t start,
                           struct msg_history *out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", rd->dir);
    FILE *f = start < rd->lines ? fopen(path, "r") : NULL;
    char **lines = xcalloc(TRAIN_HISTORY_PAGE_LINES, sizeof *lines);
    uint32_t n = 0;
    size_t bytes = 0;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    if (f && fseek(f, (long)rd->line_off[start], SEEK_SET) != 0) {
        fclose(f);
        f = NULL;
    }
    while (f && start + n < rd->lines && (got = getline(&buf, &cap, f)) >= 0) {
        if (n == TRAIN_HISTORY_PAGE_LINES ||
            (n > 0 && bytes + (size_t)got > TRAIN_HISTORY_PAGE_BYTES))
            break;
        if ((size_t)got > TRAIN_HISTORY_PAGE_BYTES) {
            /* a line no page holds (an older trainer wrote it): a marker
             * keeps the numbering, so later lines still come */
            lines[n++] = xstrdup("{\"skipped\":\"line over the HISTORY "
                                 "page size\"}");
            bytes += 64;
            continue;
        }
        if (got > 0 && buf[got - 1] == '\n')
            buf[--got] = '\0';
        lines[n++] = xstrdup(buf);
        bytes += (size_t)got + 16;
    }
    free(buf);
    if (f)
        fclose(f);
    *out = (struct msg_history){
        .start = start,
        .n_lines = n,
        .lines = (const char *const *)lines,
        .done = start + n >= rd->lines,
    };
}

void train_metrics_history_free(struct msg_history *h)
{
    char **lines = (char **)h->lines;
    for (uint32_t i = 0; i < h->n_lines; i++)
        free(lines[i]);
    free(lines);
    h->lines = NULL;
    h->n_lines = 0;
}
