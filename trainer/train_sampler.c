/*
 * train_sampler.c: the trainer is the sampler (DESIGN.md §3). Each epoch is
 * a seeded permutation of the usable training samples, cut into steps of
 * `batch` samples (the last partial batch of an epoch is dropped) and each
 * step into tickets of `ticket_size` samples. A sample that failed in epoch e
 * is left out from epoch e+1 on; recording the failure's epoch lets a resumed
 * run rebuild any epoch's permutation exactly. No sockets, no model here.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "train_sampler.h"
#include "util.h"

/* Second stream key of the permutation: no loader stream (seed, epoch,
 * sample, view) can name it, sample indices being far below it. */
#define SAMPLER_STREAM_TAG UINT64_C(0xfffffffffffffff0)

void train_sampler_init(struct train_sampler *s, uint64_t seed,
                        uint64_t n_train, int batch, int ticket_size)
{
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->n_train = n_train;
    s->batch = batch;
    s->ticket_size = ticket_size < batch ? ticket_size : batch;
    s->tickets_per_step = (batch + s->ticket_size - 1) / s->ticket_size;
    s->failed_epoch =
        xmalloc((n_train ? n_train : 1) * sizeof *s->failed_epoch);
    for (uint64_t i = 0; i < n_train; i++)
        s->failed_epoch[i] = TRAIN_NOT_EXCLUDED;
    s->perm = xmalloc((n_train ? n_train : 1) * sizeof *s->perm);
}

void train_sampler_free(struct train_sampler *s)
{
    free(s->failed_epoch);
    free(s->perm);
    memset(s, 0, sizeof *s);
}

int train_sampler_start_epoch(struct train_sampler *s, uint32_t epoch,
                              uint64_t start, char *err)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < s->n_train; i++)
        if (s->failed_epoch[i] == TRAIN_NOT_EXCLUDED ||
            s->failed_epoch[i] >= epoch)
            s->perm[n++] = i;
    /* Fisher-Yates from the stream (seed, tag, epoch): same on every run. */
    struct rng r;
    rng_init(&r, s->seed, SAMPLER_STREAM_TAG, epoch, 0);
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = rng_below(&r, i);
        uint64_t tmp = s->perm[i - 1];
        s->perm[i - 1] = s->perm[j];
        s->perm[j] = tmp;
    }
    if (n < (uint64_t)s->batch)
        return errf(err,
                    "epoch %" PRIu32 ": %" PRIu64 " usable training samples "
                    "(%" PRIu64
                    " excluded after failures), fewer than one batch "
                    "of %d",
                    epoch, n, s->n_failed, s->batch);
    s->n_perm = n;
    s->epoch = epoch;
    s->epoch_start = start;
    s->steps_in_epoch = n / (uint64_t)s->batch;
    return 0;
}

void train_sampler_step_indices(const struct train_sampler *s, uint64_t step,
                                uint64_t *out)
{
    CHECK(step >= s->epoch_start && step - s->epoch_start < s->steps_in_epoch);
    uint64_t pos = (step - s->epoch_start) * (uint64_t)s->batch;
    memcpy(out, s->perm + pos, (size_t)s->batch * sizeof *out);
}

int train_sampler_exclude(struct train_sampler *s, uint64_t index,
                          uint32_t epoch)
{
    if (index >= s->n_train || s->failed_epoch[index] != TRAIN_NOT_EXCLUDED)
        return 0;
    s->failed_epoch[index] = epoch;
    s->n_failed++;
    return 1;
}

char *train_sampler_format_excluded(const struct train_sampler *s)
{
    size_t cap = 32 * (size_t)s->n_failed + 1, len = 0;
    char *out = xmalloc(cap);
    out[0] = '\0';
    for (uint64_t i = 0; i < s->n_train; i++) {
        if (s->failed_epoch[i] == TRAIN_NOT_EXCLUDED)
            continue;
        len += (size_t)snprintf(out + len, cap - len, "%s%" PRIu64 "@%" PRIu32,
                                len ? "," : "", i, s->failed_epoch[i]);
        CHECK(len < cap);
    }
    return out;
}

int train_sampler_parse_excluded(struct train_sampler *s, const char *text,
                                 char *err)
{
    const char *p = text;
    while (*p) {
        char *end;
        uint64_t index = strtoull(p, &end, 10);
        if (end == p || *end != '@')
            return errf(err,
                        "sampler.excluded: expected index@epoch at '%.20s'", p);
        p = end + 1;
        unsigned long epoch = strtoul(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0') ||
            epoch >= TRAIN_NOT_EXCLUDED)
            return errf(err, "sampler.excluded: bad epoch at '%.20s'", p);
        if (index >= s->n_train)
            return errf(err,
                        "sampler.excluded: index %" PRIu64
                        " beyond the %" PRIu64 " training samples",
                        index, s->n_train);
        train_sampler_exclude(s, index, (uint32_t)epoch);
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}
