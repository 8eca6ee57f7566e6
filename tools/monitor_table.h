/*
 * monitor_table.h: what lejepa-monitor shows in the terminal: a table of the
 * latest values redrawn in place (when stdout is a terminal), or one plain
 * line per record (pipes, logs, --no-table), and the monitor's own log
 * messages, which the table keeps in its last lines instead of letting them
 * scroll it away.
 */
#ifndef LEJEPA_MONITOR_TABLE_H
#define LEJEPA_MONITOR_TABLE_H

#include <stdbool.h>
#include <stdio.h>

#include "monitor_history.h"

/* What the table's header says besides the metrics. */
struct monitor_status {
    const char *run;            /* "" before WELCOME */
    const char *origin;         /* endpoint or file */
    const char *state;          /* "connecting", "fetching history", "live" */
    const char *dash_path;      /* "" until known */
    double dash_written;        /* Unix time of the last write, 0 = never */
};

/* true: monitor_log prints at once to stderr; false: it only keeps the
 * message for the table. */
void monitor_log_set_stderr(bool on);
/* A timestamped message of the monitor itself ("trainer silent ..."). */
void monitor_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Clears the terminal and draws the table (ANSI escapes). */
void monitor_table_draw(FILE *out, const struct monitor_history *h,
                        const struct monitor_status *st, double now);

/* One plain line for a record: time, step, epoch, source, its values. */
void monitor_table_log_record(FILE *out, const struct monitor_record *r);

#endif
