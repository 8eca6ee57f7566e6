/*
 * dist_overlap.c: buckets of finished gradients all-reduced during
 * backward (dist_overlap.h).
 */
#include "dist_overlap.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* [lo, hi) of the parameter floats op touches; lo = SIZE_MAX for none. */
static void op_span(const struct graph *g, const struct graph_op *op,
                    size_t *lo, size_t *hi)
{
    const int idx[4] = {op->weight, op->bias, op->cls, op->pos};
    *lo = SIZE_MAX;
    *hi = 0;
    for (int k = 0; k < 4; k++) {
        if (idx[k] < 0)
            continue;
        const struct params_entry *e = &g->p->learn.e[idx[k]];
        *lo = e->offset < *lo ? e->offset : *lo;
        *hi = e->offset + e->numel > *hi ? e->offset + e->numel : *hi;
    }
}

void dist_overlap_init(struct dist_overlap *o, struct dist *d,
                       const struct graph *g, float *grad, size_t end)
{
    memset(o, 0, sizeof *o);
    o->d = d;
    o->grad = grad;
    o->end = end;
    o->n_ops = g->n_ops;
    o->bucket = DIST_BUCKET_BYTES / sizeof(float);
    o->final_from = xmalloc((size_t)(g->n_ops + 1) * sizeof *o->final_from);
    /* after ops i.. ran backward, everything from the lowest offset they
     * touch is final, unless an op before i (still to run) touches
     * something above it: then only from that op's highest offset */
    size_t *below = xmalloc((size_t)(g->n_ops + 1) * sizeof *below);
    below[0] = 0;
    for (int i = 0; i < g->n_ops; i++) {
        size_t lo, hi;
        op_span(g, &g->ops[i], &lo, &hi);
        below[i + 1] = hi > below[i] ? hi : below[i];
    }
    size_t lowest = end;
    o->final_from[g->n_ops] = end;
    for (int i = g->n_ops - 1; i >= 0; i--) {
        size_t lo, hi;
        op_span(g, &g->ops[i], &lo, &hi);
        lowest = lo < lowest ? lo : lowest;
        size_t from = below[i] > lowest ? below[i] : lowest;
        o->final_from[i] = from < end ? from : end;
    }
    free(below);
}

void dist_overlap_free(struct dist_overlap *o)
{
    free(o->final_from);
    memset(o, 0, sizeof *o);
}

void dist_overlap_begin(struct dist_overlap *o)
{
    o->hi = o->end;
}

void dist_overlap_after_op(void *ctx, int i)
{
    struct dist_overlap *o = ctx;
    const size_t from = o->final_from[i];
    while (o->hi > from && o->hi - from >= o->bucket) {
        o->hi -= o->bucket;
        dist_iallreduce_float(o->d, o->grad + o->hi, o->bucket);
    }
    dist_progress(o->d);
}

void dist_overlap_flush(struct dist_overlap *o)
{
    if (o->hi > 0)
        dist_iallreduce_float(o->d, o->grad, o->hi);
    o->hi = 0;
}
