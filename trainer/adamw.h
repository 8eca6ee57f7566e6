/*
 * adamw.h: AdamW over the flat parameter arena (PyTorch's torch.optim.AdamW
 * semantics: decoupled weight decay p -= lr * wd * p, bias-corrected
 * moments), with per-group learning rate and weight decay, and the
 * learning-rate schedule: linear warm-up from 1% then cosine down to
 * final_ratio of the base rate, stepped per iteration.
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

void adamw_init(struct adamw *o, double beta1, double beta2, double eps);

/* One update of every learnable tensor, with each group's lr scaled by
 * lr_factor (the schedule). Increments o->t first. */
void adamw_step(struct adamw *o, struct params *p, double lr_factor);

/* Multiplier of the base rate at step (0-based) of total steps: linear from
 * 0.01 to 1 over warmup steps (torch LinearLR start_factor 0.01), then
 * cosine from 1 to final_ratio over the remaining steps. */
double adamw_schedule(long step, long warmup, long total, double final_ratio);

#endif
