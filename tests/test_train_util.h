/*
 * test_train_util.h: helpers of the lejepa-train end-to-end tests: a
 * temporary run environment with ipc:// endpoints, starting the trainer (tiny
 * model) and fake loaders as processes, waiting for them, and reading the
 * lines of a run's metrics.jsonl. test_launcher.c and test_pipeline.c use
 * the process and metrics helpers too.
 */
#ifndef LEJEPA_TEST_TRAIN_UTIL_H
#define LEJEPA_TEST_TRAIN_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "json.h"

#define MAX_LINES 2048
#define RUN_TIMEOUT_S 50.0

struct env {
    char *dir;
    char work[600], bcast[600];
    char trainer[4096], loader[4096];
};

/* One source=train line of metrics.jsonl. */
struct line {
    uint64_t step, epoch;
    double loss, samples, failures, bad;
    char hash[20];
};

/* The tiny model's config, as --set arguments (NULL-ended). */
extern const char *const train_tiny_config[];

/* A number field of a JSON object; NAN when missing or not a number. */
double json_number(const struct json *o, const char *key);
/* Calls fn(line, ctx) for every line of the metrics.jsonl at path whose
 * source is `source`; returns how many there were (0 when the file is
 * missing). Every line must be JSON (asserted). */
int metrics_each(const char *path, const char *source,
                 void (*fn)(const struct json *line, void *ctx), void *ctx);

void env_init(struct env *e);
void env_free(struct env *e);
/* The trainer with the tiny model: name, then extra arguments (NULL-ended). */
pid_t start_trainer(const struct env *e, const char *name, const char *const *extra);
pid_t start_loader(const struct env *e, const char *name, const char *const *extra);
/* A file under the environment's directory (malloc'd; "" when missing). */
char *read_text(const struct env *e, const char *rel);
int file_exists(const struct env *e, const char *rel);
/* The train lines of run `name` into out (MAX_LINES); returns the count. */
int read_lines(const struct env *e, const char *name, struct line *out);
/* Waits until the file contains needle; 1 if it did. */
int wait_text(const struct env *e, const char *rel, const char *needle,
              double timeout);
/* Waits until the run has at least n train lines; 1 if it got them. */
int wait_lines(const struct env *e, const char *name, int n, double timeout);
/* Same batch hash and loss at every step both runs logged (>= 3 steps). */
void check_same(const struct line *a, int na, const struct line *b, int nb,
                uint64_t from_step);
/* A whole run: loaders, then the trainer for `steps`; asserts exit 0 of all;
 * returns the train lines. */
int plain_run(const struct env *e, const char *name, int loaders,
              const char *steps, const char *const *loader_args,
              const char *const *extra, struct line *out);

#endif
