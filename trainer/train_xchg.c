/*
 * train_xchg.c: the per-step agreement of the ranks (train_xchg.h). The
 * claims travel as doubles in one all-reduce (sums: rank 0's schedule is
 * sent by rank 0 alone, per-rank counts each in their own slot), the
 * exclusions as (index, epoch) pairs of doubles in a second one, each rank
 * writing at its own offset; indices are below limits.max_samples, far
 * under 2^53, so doubles carry them exactly.
 */
#include "train_xchg.h"

#include <string.h>

#include "util.h"

enum {
    XV_END,
    XV_FATAL,
    XV_N,
    XV_EMPTY,
    XV_TOTAL,
    XV_FIXED,
    XV_LR,
    XV_PROBE,
    XV_RANKS
};

void xchg_list_add(struct xchg_list *l, uint64_t index, uint32_t epoch)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->index = xrealloc(l->index, l->cap * sizeof *l->index);
        l->epoch = xrealloc(l->epoch, l->cap * sizeof *l->epoch);
    }
    l->index[l->n] = index;
    l->epoch[l->n] = epoch;
    l->n++;
}

void xchg_list_free(struct xchg_list *l)
{
    free(l->index);
    free(l->epoch);
    memset(l, 0, sizeof *l);
}

void train_xchg_init(struct train_xchg *x, const struct dist *d)
{
    memset(x, 0, sizeof *x);
    x->rank_loaders = xcalloc((size_t)d->world, sizeof *x->rank_loaders);
    x->v = xcalloc(XV_RANKS + 2 * (size_t)d->world, sizeof *x->v);
}

void train_xchg_free(struct train_xchg *x)
{
    xchg_list_free(&x->mine);
    xchg_list_free(&x->all);
    free(x->rank_loaders);
    free(x->v);
    free(x->buf);
    memset(x, 0, sizeof *x);
}

void train_xchg_run(struct dist *d, struct train_xchg *x)
{
    const int R = d->world, r = d->rank;
    const size_t nv = XV_RANKS + 2 * (size_t)R;
    double *v = x->v;
    memset(v, 0, nv * sizeof *v);
    v[XV_END] = x->end;
    v[XV_FATAL] = x->fatal;
    v[XV_N] = x->n;
    v[XV_EMPTY] = x->n < 1;
    if (r == 0) {
        v[XV_TOTAL] = x->total;
        v[XV_FIXED] = x->total_fixed;
        v[XV_LR] = x->lr_factor;
        v[XV_PROBE] = x->probe_factor;
    }
    v[XV_RANKS + r] = x->loaders;
    v[XV_RANKS + R + r] = (double)x->mine.n;
    atomic_store(&x->waiting_since, util_time_mono());
    dist_allreduce_double(d, v, nv);
    atomic_store(&x->waiting_since, 0.0);
    x->any_end = v[XV_END] > 0;
    x->any_fatal = v[XV_FATAL] > 0;
    x->n_global = (int)v[XV_N];
    x->empty = (int)v[XV_EMPTY];
    x->total0 = v[XV_TOTAL];
    x->fixed0 = v[XV_FIXED];
    x->lr0 = v[XV_LR];
    x->probe0 = v[XV_PROBE];
    size_t total = 0, offset = 0;
    for (int q = 0; q < R; q++) {
        x->rank_loaders[q] = (int)v[XV_RANKS + q];
        size_t k = (size_t)v[XV_RANKS + R + q];
        if (q < r)
            offset += k;
        total += k;
    }
    x->all.n = 0;
    if (total == 0)
        return;
    if (2 * total > x->buf_cap) {
        x->buf_cap = 2 * total;
        x->buf = xrealloc(x->buf, x->buf_cap * sizeof *x->buf);
    }
    memset(x->buf, 0, 2 * total * sizeof *x->buf);
    for (size_t i = 0; i < x->mine.n; i++) {
        x->buf[2 * (offset + i)] = (double)x->mine.index[i];
        x->buf[2 * (offset + i) + 1] = x->mine.epoch[i];
    }
    dist_allreduce_double(d, x->buf, 2 * total);
    for (size_t i = 0; i < total; i++)
        xchg_list_add(&x->all, (uint64_t)x->buf[2 * i],
                      (uint32_t)x->buf[2 * i + 1]);
}
