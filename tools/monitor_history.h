/*
 * monitor_history.h: the monitor's metrics store. Records (one metrics.jsonl
 * line or one METRIC message, DESIGN.md §10) become points of one series per
 * value name; a record seen twice (history page and broadcast, or a second
 * history fetch after a reconnect) is kept once. It draws nothing and knows
 * no sockets: the table, the dashboard and the connection code read it.
 *
 * Duplicates are recognised by (source, step, time) with time equal within
 * MONITOR_DEDUPE_TIME_TOL seconds, because the same record reaches us as JSON
 * text (time printed in decimal) and as a float64 in METRIC. Line indices
 * cannot be used: METRIC messages carry none.
 */
#ifndef LEJEPA_MONITOR_HISTORY_H
#define LEJEPA_MONITOR_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Same source and step, times closer than this: the same record. */
#define MONITOR_DEDUPE_TIME_TOL 5e-3
/* Distinct value names kept; further names are counted and dropped. */
#define MONITOR_MAX_SERIES 128
/* Value names longer than this are dropped (the wire allows 1024). */
#define MONITOR_NAME_MAX 64
/* Values of one record we look at (the wire's max_values default). */
#define MONITOR_MAX_VALUES 256

struct monitor_point {
    double step;
    double time;        /* Unix seconds */
    double value;       /* finite */
};

struct monitor_series {
    char name[MONITOR_NAME_MAX];
    struct monitor_point *pts;  /* (n), in arrival order, not sorted */
    size_t n, cap;
    size_t nonfinite;           /* NaN/Inf/null values seen, not stored */
    bool has_last;              /* the newest finite value (by time): */
    double last_value, last_step, last_time;
};

/* One record as read from a line or a METRIC message. values[i] may be NaN
 * (a null, NaN or Inf value: counted, not stored); non-numeric values are
 * already left out. */
struct monitor_record {
    double time;
    uint64_t step;
    uint32_t epoch;
    const char *source;         /* "" when absent */
    size_t n;
    const char *const *keys;    /* (n) */
    const double *values;       /* (n) */
};

struct monitor_key;     /* dedupe set entry (monitor_history.c) */

/* Called for every record stored (not for duplicates), wherever it came
 * from (file, HISTORY, METRIC): how records reach other writers (the
 * TensorBoard event file) exactly once. */
typedef void (*monitor_store_fn)(void *ctx, const struct monitor_record *r);

struct monitor_history {
    struct monitor_series *series;  /* (n_series), creation order */
    size_t n_series;
    struct monitor_key *keys;       /* open-addressing set, cap_keys slots */
    size_t n_keys, cap_keys;
    size_t records, duplicates, bad_lines, dropped_names;
    bool has_records;
    double t_first, t_last;         /* min / max record time */
    uint64_t last_step;             /* max step over all records */
    uint32_t last_epoch;            /* epoch of the record with last_step */
    uint64_t version;               /* bumped by every stored record */
    monitor_store_fn on_store;      /* optional; kept by reset */
    void *store_ctx;
};

void monitor_history_init(struct monitor_history *h);
void monitor_history_free(struct monitor_history *h);
/* Forgets every record (a different run attached). */
void monitor_history_reset(struct monitor_history *h);

/* Stores a record. Returns 1 when stored, 0 when it is a duplicate. */
int monitor_history_add(struct monitor_history *h, const struct monitor_record *r);

/* Parses one metrics.jsonl line (an object with numeric `time` and `step`;
 * `epoch` and `source` optional; other members are values: numbers kept,
 * null/NaN/Infinity counted as non-finite, strings and others ignored; bare
 * NaN/Infinity tokens, which are not JSON, are accepted too) and stores it.
 * Returns 1 stored, 0 duplicate, -1 with err for a malformed line (counted
 * in bad_lines). */
int monitor_history_add_line(struct monitor_history *h, const char *line, size_t len,
                             char *err);

/* Reads a metrics.jsonl file: every line through add_line; malformed lines
 * are counted and the first reason is kept in err. Returns the number of
 * lines stored, or -1 with err when the file cannot be read. */
long monitor_history_load_file(struct monitor_history *h, const char *path, char *err);

/* The series of a value name, or NULL when none was seen. */
const struct monitor_series *monitor_history_find(const struct monitor_history *h,
                                                  const char *name);

#endif
