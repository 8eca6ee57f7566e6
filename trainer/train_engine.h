/*
 * train_engine.h: the model, its optimizer and the compute thread that runs
 * on them (DESIGN.md §5, §7). The compute thread is a worker: it is given
 * only the engine and runs the job it is handed, a function and the job's
 * own data (a step's slot, train_step.h; an eval forward's buffers,
 * train_eval.h), never a socket or the run's state. It wakes the main loop
 * through a pipe when a job is done. While a job is out the main thread
 * touches neither the model nor the job's data.
 */
#ifndef LEJEPA_TRAIN_ENGINE_H
#define LEJEPA_TRAIN_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "adamw.h"
#include "lejepa.h"

struct config;
struct train_engine;

/* A job: runs on the compute thread with the engine and its data. */
typedef void (*train_job_fn)(struct train_engine *e, void *job);

struct train_engine {
    struct lejepa model;
    struct adamw opt;
    float mean[3], std[3]; /* pixel normalisation (views.mean/std) */
    int threads;           /* OpenMP/BLAS threads of the worker */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, has_job, quit, busy;
    int wake[2]; /* the worker writes a byte when done */
    train_job_fn job_fn;
    void *job;
};

/* The online probe's classes for a dataset of n_classes: none below 2 (one
 * class has nothing to tell apart). The model (train_engine_build) and the
 * tickets' eval view (train_step.c) follow this one rule. */
static inline int train_probe_classes(uint32_t n_classes)
{
    return n_classes >= 2 ? (int)n_classes : 0;
}

/* Builds the model and the optimizer for the config and the class count;
 * exits with a message when the config cannot be built. */
void train_engine_build(struct train_engine *e, const struct config *c,
                        uint32_t n_classes);
void train_engine_start(struct train_engine *e);
void train_engine_stop(struct train_engine *e);
void train_engine_free(struct train_engine *e);
/* Hands a job to the worker (none may be out). */
void train_engine_submit(struct train_engine *e, train_job_fn fn, void *job);
/* True once no job is out (the last one finished). */
bool train_engine_idle(struct train_engine *e);
/* The fd the main loop polls for "a job finished", -1 before start. */
int train_engine_wake_fd(const struct train_engine *e);

#endif
