/*
 * train_ckpt.h: the checkpoint writer of lejepa-train (DESIGN.md §8). A
 * periodic checkpoint is a copy of what it holds, taken by the main thread
 * between two steps (the compute thread idle), and written by the writer
 * thread while training goes on: the file, `latest`, the rotation. One
 * write at most is out; its outcome is collected by the main thread. The
 * writer is given only its job, never the run's state, and touches neither
 * the model nor the sockets.
 */
#ifndef LEJEPA_TRAIN_CKPT_H
#define LEJEPA_TRAIN_CKPT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "adamw.h"
#include "params.h"
#include "util.h"

/* The metadata pairs of a checkpoint: config, run, step, total_steps, the
 * sampler's epoch, epoch_start, seed and excluded list, the dataset's
 * fingerprint and counts. */
#define TRAIN_CKPT_META_N 12

/* What one checkpoint holds. p is the model's params struct by value: its
 * tables (read-only once built) and either the model's arenas (a write on
 * the main thread) or the writer's copies of them (grad is never read).
 * The strings are malloc'd and freed by train_ckpt_job_clear. */
struct train_ckpt_job {
    struct params p;
    struct adamw opt;
    uint64_t step, total;
    int64_t keep; /* run.keep_ckpts */
    char *dir;    /* the run directory */
    char *values[TRAIN_CKPT_META_N];
};

struct train_ckpt_writer {
    /* the copy's arenas, in the model's layout (NULL: no periodic ones) */
    float *data, *m, *v, *state_data;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, has_job, busy, quit;
    struct train_ckpt_job job; /* the writer's while busy */
    bool done;                 /* an outcome the main thread has not taken */
    int rc;                    /* its result: 0, or -1 with err */
    char err[ERR_LEN];
};

/* Writes j: the file, the fault point, `latest`, then the rotation. Runs
 * on either thread; reads only j. 0, or -1 with err. */
int train_ckpt_job_write(const struct train_ckpt_job *j, char *err);
void train_ckpt_job_clear(struct train_ckpt_job *j);

/* Allocates the copy's arenas for p's layout and starts the thread;
 * exits when it cannot. */
void train_ckpt_writer_start(struct train_ckpt_writer *w,
                             const struct params *p);
/* Waits for a write that is out, joins the thread and frees the copy (an
 * outcome not taken is dropped). Does nothing when never started. */
void train_ckpt_writer_stop(struct train_ckpt_writer *w);
/* Hands j to the thread, which owns its strings from here (none may be
 * out; j's arenas are the writer's copies). */
void train_ckpt_writer_submit(struct train_ckpt_writer *w,
                              const struct train_ckpt_job *j);
/* The outcome of the last write, once: 0 when there is none (nothing was
 * out, or it is still out and wait is false), 1 when it was written (*step
 * its step), -1 when it failed (err says why, *step its step). With wait,
 * a write still out is waited for first. */
int train_ckpt_writer_collect(struct train_ckpt_writer *w, bool wait,
                              uint64_t *step, char *err);

#endif
