/*
 * dist_overlap.h: the gradient all-reduce overlapped with the backward
 * pass. The last graph to run backward (the local views', else the
 * global's) finishes each parameter's gradient when its op is done; as
 * the finished tail of the encoder's gradient arena grows past
 * DIST_BUCKET_BYTES, that bucket goes out as a non-blocking all-reduce
 * while backward goes on (MPI_Iallreduce, progressed between ops by
 * MPI_Testall: Open MPI moves a non-blocking collective only inside MPI
 * calls). Buckets are cut at the same offsets on every rank (the same
 * graph), so the collectives are issued in the same order everywhere.
 * The rest (the head of the arena, then the probe) goes after backward;
 * dist_overlap_finish waits for all. The sums are those of
 * dist_allreduce_float_buckets up to the summation order.
 */
#ifndef LEJEPA_DIST_OVERLAP_H
#define LEJEPA_DIST_OVERLAP_H

#include <stddef.h>

#include "dist.h"
#include "graph.h"

struct dist_overlap {
    struct dist *d;
    float *grad;
    size_t *final_from; /* (n_ops + 1): gradient floats [final_from[i],
                         * end) are final once ops i.. have run backward */
    size_t end;         /* the encoder's gradients are [0, end) */
    size_t hi;          /* [hi, end) is out */
    size_t bucket;      /* floats per bucket */
    int n_ops;
};

/* For the graph g that runs backward last, over the gradient arena grad
 * whose first `end` floats belong to the graphs' parameters. */
void dist_overlap_init(struct dist_overlap *o, struct dist *d,
                       const struct graph *g, float *grad, size_t end);
void dist_overlap_free(struct dist_overlap *o);
/* Before the backward passes: nothing is out. */
void dist_overlap_begin(struct dist_overlap *o);
/* graph.h's after_backward hook: op i of the last graph is done. */
void dist_overlap_after_op(void *ctx, int i);
/* After the last backward: the rest of [0, end) goes out; then the
 * caller all-reduces what lies beyond end (blocking) and calls
 * dist_wait. */
void dist_overlap_flush(struct dist_overlap *o);

#endif
