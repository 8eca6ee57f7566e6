/*
 * eval_worker.h: the thread that scores snapshots, so the main thread keeps
 * the sockets (heartbeats, chunks of the next snapshot) while kNN, the
 * linear probe or a segmentation map take seconds. One job runs at a time;
 * one complete snapshot and one FEATMAP may wait. A newer one replaces a
 * waiting one of the same kind (the older is dropped and logged), so memory
 * stays bounded by a few snapshots whatever the trainer's pace. Finished
 * results queue until the main thread takes them; a byte on wake_fd says so.
 */
#ifndef LEJEPA_EVAL_WORKER_H
#define LEJEPA_EVAL_WORKER_H

#include <pthread.h>
#include <stdbool.h>

#include "eval.h"
#include "eval_snapshot.h"

#define EVAL_WORKER_RESULTS 32

struct eval_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wake[2];                    /* pipe: [0] polled by the main thread */
    unsigned tasks;
    const struct fewshot_options *fewshot;   /* the program's; may be NULL */
    int threads;
    bool stop, busy;
    struct eval_snapshot *snap;     /* waiting, or NULL */
    struct eval_featmap *featmap;   /* waiting, or NULL */
    char featmap_dir[4096];         /* --out of the waiting FEATMAP */
    struct eval_result results[EVAL_WORKER_RESULTS];
    int n_results;
};

/* Starts the thread; exits the program when it cannot. fewshot (may be
 * NULL) must outlive the worker: results point at its metric names. */
void eval_worker_start(struct eval_worker *w, unsigned tasks,
                       const struct fewshot_options *fewshot, int threads);
/* Waits for the job in progress, then stops the thread; frees waiting jobs. */
void eval_worker_stop(struct eval_worker *w);
/* True while a job runs or waits. */
bool eval_worker_busy(struct eval_worker *w);

/* Hand over a complete snapshot / a FEATMAP (the worker frees them). */
void eval_worker_submit_snapshot(struct eval_worker *w, struct eval_snapshot *s);
void eval_worker_submit_featmap(struct eval_worker *w, struct eval_featmap *f,
                                const char *dir);

/* Moves up to cap finished results into out (oldest first); returns the
 * count. Drains wake_fd. */
int eval_worker_take_results(struct eval_worker *w, struct eval_result *out, int cap);

#endif
