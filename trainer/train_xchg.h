/*
 * train_xchg.h: what the ranks of a data-parallel trainer agree on before
 * each step (train_dist.h): whether the run ends, rank 0's schedule, the
 * samples each rank has for the step, its loader count and the samples it
 * excluded since the last exchange. One exchange is two MPI all-reduces
 * (the second only when some rank excluded samples) on the compute
 * thread, so every rank computes the same steps on the same schedule and
 * cuts the same epochs. No sockets and no run state here.
 */
#ifndef LEJEPA_TRAIN_XCHG_H
#define LEJEPA_TRAIN_XCHG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"

/* Samples excluded (after decode failures) and the epoch they failed in. */
struct xchg_list {
    uint64_t *index;
    uint32_t *epoch;
    size_t n, cap;
};

void xchg_list_add(struct xchg_list *l, uint64_t index, uint32_t epoch);
void xchg_list_free(struct xchg_list *l);

struct train_xchg {
    /* this rank's claims, set before the exchange */
    bool end;    /* it ends the run: a signal, an error, its last step */
    bool fatal;  /* ... because of an error */
    int n;       /* samples it has for the step */
    int loaders; /* loaders connected to it */
    double total, total_fixed, lr_factor, probe_factor; /* read on rank 0 */
    struct xchg_list mine; /* its exclusions since the last exchange */
    /* the outcome, the same on every rank */
    bool any_end, any_fatal;
    int n_global;                       /* samples over all ranks */
    int empty;                          /* ranks without a sample */
    double total0, fixed0, lr0, probe0; /* rank 0's */
    int *rank_loaders;                  /* (world) */
    struct xchg_list all;               /* every rank's exclusions */
    double *v, *buf;                    /* scratch */
    size_t buf_cap;
    /* monotonic time the compute thread entered the exchange, 0 outside
     * it (the main thread reads it: train_dist_assign) */
    _Atomic double waiting_since;
};

void train_xchg_init(struct train_xchg *x, const struct dist *d);
void train_xchg_free(struct train_xchg *x);
/* The exchange: every rank calls it once per step (or once to end the
 * run), with its claims in x; the outcome in x. Compute thread. */
void train_xchg_run(struct dist *d, struct train_xchg *x);

#endif
