/*
 * adamw.c: the optimizer step and schedule (see adamw.h).
 */
#include "adamw.h"

#include <math.h>

#include "config.h"
#include "util.h"

_Static_assert((int)ADAMW_SCHEDULE_CONSTANT == (int)CONFIG_PROBE_SCHEDULE_CONSTANT &&
               (int)ADAMW_SCHEDULE_COSINE == (int)CONFIG_PROBE_SCHEDULE_COSINE,
               "enum adamw_schedule follows enum config_probe_schedule");

void adamw_init(struct adamw *o, double beta1, double beta2, double eps)
{
    for (int g = 0; g < PARAMS_N_GROUPS; g++)
        o->group[g] = (struct adamw_group){0, 0};
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->t = 0;
}

void adamw_step(struct adamw *o, struct params *p, double lr_factor)
{
    double factors[PARAMS_N_GROUPS];
    for (int g = 0; g < PARAMS_N_GROUPS; g++)
        factors[g] = lr_factor;
    adamw_step_groups(o, p, factors);
}

void adamw_step_groups(struct adamw *o, struct params *p, const double *factors)
{
    o->t++;
    const float b1 = (float)o->beta1, b2 = (float)o->beta2;
    const double bc1 = 1.0 - pow(o->beta1, (double)o->t);
    const double bc2 = 1.0 - pow(o->beta2, (double)o->t);
    for (size_t i = 0; i < p->learn.n; i++) {
        const struct params_entry *e = &p->learn.e[i];
        const double lr = o->group[e->group].lr * factors[e->group];
        const float decay = (float)(1.0 - lr * o->group[e->group].weight_decay);
        /* PyTorch: p -= lr * (m / bc1) / (sqrt(v / bc2) + eps) */
        const float step_size = (float)(lr / bc1);
        const float inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        const float eps = (float)o->eps;
        float *restrict w = p->data + e->offset;
        const float *restrict g = p->grad + e->offset;
        float *restrict m = p->m + e->offset;
        float *restrict v = p->v + e->offset;
        const size_t n = e->numel;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t j = 0; j < n; j++) {
            w[j] *= decay;
            m[j] = b1 * m[j] + (1.0f - b1) * g[j];
            v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
            w[j] -= step_size * m[j] / (sqrtf(v[j]) * inv_sqrt_bc2 + eps);
        }
    }
}

double adamw_schedule(long step, long warmup, long total, double final_ratio)
{
    CHECK(total > 0);
    if (step < warmup)
        return 0.01 + 0.99 * (double)step / (double)warmup;
    long span = total - warmup;
    if (span <= 0)
        return 1.0;
    double progress = (double)(step - warmup) / (double)span;
    if (progress > 1.0)
        progress = 1.0;
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + cos(M_PI * progress));
}

double adamw_group_factor(enum adamw_schedule kind, long step, long warmup,
                          long total, double final_ratio)
{
    switch (kind) {
    case ADAMW_SCHEDULE_CONSTANT:
        return 1.0;
    case ADAMW_SCHEDULE_COSINE:
        return adamw_schedule(step, warmup, total, final_ratio);
    }
    CHECK(!"unknown adamw_schedule");
    return 1.0;
}
