/*
 * train_sampler.h: the trainer is the sampler (DESIGN.md §3). Each epoch is
 * a seeded permutation of the usable training samples, cut into steps of
 * `batch` samples and each step into tickets of `ticket_size` samples.
 * No sockets, no model here.
 */
#ifndef LEJEPA_TRAIN_SAMPLER_H
#define LEJEPA_TRAIN_SAMPLER_H

#include <stdint.h>

#define TRAIN_NOT_EXCLUDED UINT32_MAX

struct train_sampler {
    uint64_t seed, n_train;
    int batch, ticket_size, tickets_per_step;
    /* (n_train) epoch in which the sample failed, TRAIN_NOT_EXCLUDED if never;
     * epoch e's permutation leaves out every sample that failed before e. */
    uint32_t *failed_epoch;
    uint64_t n_failed;
    /* the epoch tickets are being cut from */
    uint32_t epoch;
    uint64_t epoch_start;    /* global step of its first step */
    uint64_t steps_in_epoch; /* floor(usable / batch) */
    uint64_t *perm;          /* (n_train) usable samples, permuted */
    uint64_t n_perm;
};

void train_sampler_init(struct train_sampler *s, uint64_t seed,
                        uint64_t n_train, int batch, int ticket_size);
void train_sampler_free(struct train_sampler *s);
/* Cuts epoch `epoch` starting at global step `start`. -1 with err when fewer
 * usable samples than one batch remain. */
int train_sampler_start_epoch(struct train_sampler *s, uint32_t epoch,
                              uint64_t start, char *err);
/* The batch's sample indices of global step `step` of the current epoch. */
void train_sampler_step_indices(const struct train_sampler *s, uint64_t step,
                                uint64_t *out);
/* Records a failed sample; returns 1 when it was not excluded before. */
int train_sampler_exclude(struct train_sampler *s, uint64_t index,
                          uint32_t epoch);
/* Exclusions as text "index@epoch,..." (malloc'd, caller frees) and back. */
char *train_sampler_format_excluded(const struct train_sampler *s);
int train_sampler_parse_excluded(struct train_sampler *s, const char *text,
                                 char *err);

#endif
