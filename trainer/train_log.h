/*
 * train_log.h: lejepa-train's log: "HH:MM:SS lejepa-train: message" on stderr
 * and, once the run directory is open, a copy in runs/<name>/log. One log
 * for the process, like a server's: every part of the trainer logs through
 * it without carrying a handle. Thread-safe (a mutex around each line).
 */
#ifndef LEJEPA_TRAIN_LOG_H
#define LEJEPA_TRAIN_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Opens (appends to) the log file; 0, or -1 with err naming the path. */
int train_log_open(const char *path, char *err);
void train_log_close(void);
/* The program name lines start with ("lejepa-train[rank 1/2]"). */
void train_log_set_tag(const char *tag);
void train_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes text as it is to stderr and the log file (the effective config). */
void train_log_raw(const char *text);

/* Lines a peer can make the trainer log (bad messages, refusals, late
 * batches, expired tickets): the first TRAIN_LOG_FIRST of a kind, then one
 * in TRAIN_LOG_EVERY, so no client fills the disk with the log. True when
 * the count-th of its kind is to be logged. */
#define TRAIN_LOG_FIRST 20
#define TRAIN_LOG_EVERY 1000
bool train_log_thin(uint64_t count);

#endif
