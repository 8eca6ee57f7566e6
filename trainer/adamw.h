/*
 * adamw.h: AdamW over the flat parameter arena (PyTorch's torch.optim.AdamW
 * semantics: decoupled weight decay p -= lr * wd * p, bias-corrected
 * moments), with per-group learning rate and weight decay, and the
 * learning-rate schedule: linear warm-up from 1% then cosine down to
 * final_ratio of the base rate, stepped per iteration. Each group may follow
 * its own schedule (adamw_step_groups): the online probe trains on the
 * detached embedding, so its rate need not decay with the encoder's.
 */
#ifndef LEJEPA_ADAMW_H
#define LEJEPA_ADAMW_H

#include "params.h"

struct adamw_group {
    double lr, weight_decay;
};

struct adamw {
    struct adamw_group group[PARAMS_N_GROUPS];
    double beta1, beta2, eps;
    long t;                    /* steps taken (bias correction) */
};

/* The schedule a group follows; the order is config.h's enum
 * config_probe_schedule (optim.probe_schedule), checked in adamw.c. */
enum adamw_schedule {
    ADAMW_SCHEDULE_CONSTANT,   /* factor 1 at every step */
    ADAMW_SCHEDULE_COSINE,     /* adamw_schedule: warm-up, then cosine */
};

void adamw_init(struct adamw *o, double beta1, double beta2, double eps);

/* One update of every learnable tensor, with group g's lr scaled by
 * factors[g] (factors has PARAMS_N_GROUPS entries, indexed by enum
 * params_group). Increments o->t first. A group's factor changes only that
 * group's tensors: the others are bit-identical whatever it is. */
void adamw_step_groups(struct adamw *o, struct params *p, const double *factors);

/* adamw_step_groups with every group's factor lr_factor. */
void adamw_step(struct adamw *o, struct params *p, double lr_factor);

/* Multiplier of the base rate at step (0-based) of total steps: linear from
 * 0.01 to 1 over warmup steps (torch LinearLR start_factor 0.01), then
 * cosine from 1 to final_ratio over the remaining steps. */
double adamw_schedule(long step, long warmup, long total, double final_ratio);

/* Multiplier of one group's base rate at step under schedule kind: 1 for
 * ADAMW_SCHEDULE_CONSTANT, adamw_schedule(step, warmup, total, final_ratio)
 * for ADAMW_SCHEDULE_COSINE. The trainer gets the probe group's factor
 * here, with kind = optim.probe_schedule and the encoder's warmup, total
 * and final_lr_ratio. */
double adamw_group_factor(enum adamw_schedule kind, long step, long warmup,
                          long total, double final_ratio);

#endif
