/*
 * loader_work.h: the decode workers of lejepa-loader. Each worker is a
 * forked process that decodes and augments one sample at a time (libvips
 * initialised in the child only), so a crash or a hang inside a decoder
 * costs one sample, never the loader: the parent notices the closed pipe or
 * the timeout, fails the sample with the reason and starts a new worker.
 * Only the parent (which owns the ZeroMQ socket) calls these functions; the
 * parent never touches libvips.
 */
#ifndef LEJEPA_LOADER_WORK_H
#define LEJEPA_LOADER_WORK_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "config.h"
#include "msg.h"
#include "util.h"

#define WORK_PATH_MAX 4096
/* Views per group a job may ask for (the config allows 16 global, 64 local). */
#define WORK_VIEWS_MAX 64

/* One sample to decode: sent as a plain struct through the worker's pipe,
 * so a worker needs no state of its own (the view spec travels with it). */
struct work_job {
    int32_t work;                   /* enum msg_work */
    int32_t eval_view;              /* work = train: the eval view too */
    uint64_t seed, epoch, index;
    struct config_views views;
    int64_t member;                 /* -1: path is the image; else path is a
                                     * tar shard, this its member's offset */
    char path[WORK_PATH_MAX];
};

/* The outcome of one job. */
struct work_result {
    uint64_t tag;                   /* as given to work_pool_submit */
    int ok;
    uint8_t *pixels;                /* ok: len bytes, malloc'd; the caller frees */
    size_t len;
    char reason[ERR_LEN];           /* !ok: why */
    enum msg_fail_class fail_class; /* !ok: the file's fault or the loader's */
    double ms;                      /* wall time the job took */
};

/* What a worker writes back per job: this header, then len bytes: the
 * pixels (ok) or the reason (!ok, no NUL). */
struct work_reply {
    int32_t ok;
    uint32_t len;
    int32_t fail_class;             /* !ok: enum msg_fail_class */
};

/* Blocking full reads/writes on a pipe (EINTR retried): 0, or -1 on EOF or
 * error. */
int work_read_full(int fd, void *buf, size_t len);
int work_write_full(int fd, const void *buf, size_t len);
/* Checks the numbers a job's view spec must satisfy before any buffer is
 * sized from it. 0 or -1 with err. */
int work_views_check(const struct config_views *v, char *err);

/* Bytes of one sample's views: global views then local views, each (C, S, S)
 * uint8 for work = train, then with eval_view the (C, G, G) eval view; that
 * view alone for work = eval. */
size_t work_sample_bytes(const struct work_job *j);

struct work_pool;

/* Starts n workers. timeout_s bounds one job (and a worker's start-up);
 * memory_mb (0: none) is each worker's address-space limit (RLIMIT_AS), so
 * a decompression bomb costs one sample, not the machine. A worker that
 * fails to start is logged and retried. */
struct work_pool *work_pool_new(int n, double timeout_s, long memory_mb);
/* Kills and reaps every worker, frees the pool. */
void work_pool_free(struct work_pool *p);

/* Workers free to take a job now. */
int work_pool_idle(const struct work_pool *p);
/* Jobs under way. */
int work_pool_busy(const struct work_pool *p);
/* Gives the job to an idle worker. 0, or -1 when none is idle or the job
 * could not be written (then the worker is restarted; try again). */
int work_pool_submit(struct work_pool *p, const struct work_job *job, uint64_t tag);

/* Adds a poll item (POLLIN) for every busy worker's pipe to items (room for
 * max); returns how many. */
int work_pool_poll_items(const struct work_pool *p, zmq_pollitem_t *items, int max);
/* Milliseconds until the next job times out (-1: no job under way). */
long work_pool_next_deadline_ms(const struct work_pool *p);
/* After zmq_poll on the items: reads finished jobs, fails crashed and timed
 * out ones (restarting their workers) and restarts dead idle workers. Writes
 * at most max results; returns how many. */
int work_pool_collect(struct work_pool *p, const zmq_pollitem_t *items, int n_items,
                      struct work_result *out, int max);

/* The child side (loader_worker.c): serves jobs on fd until it closes;
 * never returns. */
void work_child_main(int fd) __attribute__((noreturn));

#endif
