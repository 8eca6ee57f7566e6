/*
 * train_rundir.h: the run directory runs/<name>/ (DESIGN.md §8, §10) as the
 * trainer writes it: config.ini, the log (train_log.h), metrics.jsonl and
 * (train_ckpt.c) the checkpoints. metrics.jsonl is appended by the trainer
 * only, one JSON object per line, flushed per line and republished as
 * METRIC; HISTORY pages are read back from it through a line index. Nothing
 * here touches the model or a client.
 */
#ifndef LEJEPA_TRAIN_RUNDIR_H
#define LEJEPA_TRAIN_RUNDIR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "msg.h"

/* Bytes of metrics lines per HISTORY reply (well under the message limit). */
#define TRAIN_HISTORY_PAGE_BYTES (128 * 1024)
#define TRAIN_HISTORY_PAGE_LINES 1000

struct train_rundir {
    char dir[4096];     /* runs/<name> */
    FILE *metrics;      /* metrics.jsonl, opened "a+" */
    uint64_t *line_off; /* (lines) where each line starts */
    uint64_t lines, line_cap;
    void *pub;              /* METRIC copies go here; NULL before bind */
    int lock_fd;            /* DIR/.lock, held while the trainer runs */
    char write_failed[256]; /* set: a metrics write failed (disk full?) */
};

/* Makes parent/name and locks it (one trainer per run directory); a fresh
 * run (resuming false) is refused where checkpoints exist. Removes temp
 * files a crash left, then opens the log and metrics.jsonl (indexing the
 * lines already there; a last line cut short by a crash is ended first).
 * 0, or -1 with err naming the path and what to do. */
int train_rundir_open(struct train_rundir *rd, const char *parent,
                      const char *name, bool resuming, char *err);
void train_rundir_close(struct train_rundir *rd);
/* The refusal of a fresh run where checkpoints exist, before anything is
 * created (train_rundir_open checks again under the lock). 0 or -1. */
int train_rundir_check_fresh(const char *parent, const char *name, char *err);
/* config.ini, atomically; -1 with err. */
int train_rundir_save_config(const struct train_rundir *rd, const char *text,
                             char *err);

/* Appends one line (values may be NaN: written as null), publishes it as
 * METRIC. extra: raw JSON members appended to the line (",\"k\":v") or NULL. */
void train_metrics_write(struct train_rundir *rd, enum msg_source source,
                         uint64_t step, uint32_t epoch,
                         const struct msg_value *values, int n,
                         const char *extra);
/* An evaluator's RESULT, appended and republished the same way; -1 with
 * err (nothing written) when its line would reach max_bytes. */
int train_metrics_result(struct train_rundir *rd, const struct msg_metric *r,
                         size_t max_bytes, char *err);
/* One HISTORY reply from line `start` on, into *out (its lines malloc'd:
 * free them with train_metrics_history_free). */
void train_metrics_history(const struct train_rundir *rd, uint64_t start,
                           struct msg_history *out);
void train_metrics_history_free(struct msg_history *h);

#endif
