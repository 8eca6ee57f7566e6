/*
 * test_adamw.c: per-group learning-rate factors of AdamW (adamw.h). The
 * online probe's group follows its own schedule (optim.probe_schedule):
 * with the constant schedule its update stays at probe_lr when the
 * encoder's cosine has decayed to lr * final_ratio, and the encoder's
 * parameters are bit-identical whatever the probe's schedule is.
 */
#include <math.h>
#include <string.h>

#include "adamw.h"
#include "config.h"
#include "testing.h"
#include "util.h"

#define N_ENC 300
#define N_PROBE 40
#define TOTAL 60
#define WARMUP 6
#define FINAL_RATIO 1e-3
#define LR_ENC 5e-4
#define LR_PROBE 1e-3

struct toy {
    struct params p;
    struct adamw o;
    int enc, probe;
};

/* Two tensors, one per group, with seeded weights; weight decay 0 so that
 * one step's change is the Adam update alone. */
static void toy_init(struct toy *t)
{
    memset(t, 0, sizeof *t);
    int se[1] = {N_ENC}, sp[1] = {N_PROBE};
    t->enc = params_add(&t->p.learn, "encoder.w", 1, se, PARAMS_GROUP_ENCODER,
                        PARAMS_INIT_UNIFORM_FAN_IN, 8);
    t->probe = params_add(&t->p.learn, "probe.w", 1, sp, PARAMS_GROUP_PROBE,
                          PARAMS_INIT_UNIFORM_FAN_IN, 8);
    params_alloc(&t->p);
    params_init(&t->p, 7);
    adamw_init(&t->o, 0.9, 0.999, 1e-8);
    t->o.group[PARAMS_GROUP_ENCODER] = (struct adamw_group){LR_ENC, 0.0};
    t->o.group[PARAMS_GROUP_PROBE] = (struct adamw_group){LR_PROBE, 0.0};
}

/* Seeded gradients of step s; constant_sign: every gradient > 0, so that
 * Adam's m_hat / sqrt(v_hat) is close to 1 and an update is close to lr. */
static void toy_grads(struct toy *t, int s, bool constant_sign)
{
    uint64_t st = 1000u + (uint64_t)s;
    for (size_t i = 0; i < t->p.learn.n; i++) {
        float *g = params_grad(&t->p, (int)i);
        for (size_t j = 0; j < t->p.learn.e[i].numel; j++) {
            double u = (double)(testing_rand_u64(&st) >> 11) / 9007199254740992.0;
            g[j] = constant_sign ? (float)(0.5 + u) : (float)(2.0 * u - 1.0);
        }
    }
}

/* K steps; probe_kind: the probe group's schedule. */
static void toy_run(struct toy *t, int k, enum adamw_schedule probe_kind,
                    bool constant_sign)
{
    for (int s = 0; s < k; s++) {
        toy_grads(t, s, constant_sign);
        double f[PARAMS_N_GROUPS];
        f[PARAMS_GROUP_ENCODER] = adamw_schedule(s, WARMUP, TOTAL, FINAL_RATIO);
        f[PARAMS_GROUP_PROBE] =
            adamw_group_factor(probe_kind, s, WARMUP, TOTAL, FINAL_RATIO);
        adamw_step_groups(&t->o, &t->p, f);
    }
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* Constant vs shared (cosine) probe schedule over K steps: the probe's
 * weights differ, the encoder's are bit-identical. */
static void test_probe_schedule_leaves_encoder(void)
{
    struct toy a, b;
    toy_init(&a);
    toy_init(&b);
    toy_run(&a, TOTAL, ADAMW_SCHEDULE_CONSTANT, false);
    toy_run(&b, TOTAL, ADAMW_SCHEDULE_COSINE, false);
    CU_ASSERT_EQUAL(memcmp(params_data(&a.p, a.enc), params_data(&b.p, b.enc),
                           N_ENC * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(a.p.m + a.p.learn.e[a.enc].offset,
                           b.p.m + b.p.learn.e[b.enc].offset, N_ENC * sizeof(float)), 0);
    double d = max_abs_diff(params_data(&a.p, a.probe), params_data(&b.p, b.probe),
                            N_PROBE);
    CU_ASSERT(d > 2 * LR_PROBE);
    params_free(&a.p);
    params_free(&b.p);
}

/* adamw_step (one factor for all groups) is adamw_step_groups with that
 * factor everywhere, bit for bit: existing callers are unchanged. */
static void test_step_is_step_groups(void)
{
    struct toy a, b;
    toy_init(&a);
    toy_init(&b);
    for (int s = 0; s < 10; s++) {
        double f = adamw_schedule(s, WARMUP, TOTAL, FINAL_RATIO);
        double fs[PARAMS_N_GROUPS] = {f, f};
        toy_grads(&a, s, false);
        toy_grads(&b, s, false);
        adamw_step(&a.o, &a.p, f);
        adamw_step_groups(&b.o, &b.p, fs);
    }
    CU_ASSERT_EQUAL(memcmp(a.p.data, b.p.data, a.p.learn.total * sizeof(float)), 0);
    params_free(&a.p);
    params_free(&b.p);
}

/* At the last step, the encoder's factor is ~final_ratio; the probe's
 * update with the constant schedule stays near LR_PROBE (gradients of one
 * sign: Adam's normalised step is ~1). This fails if the probe shared the
 * encoder's schedule (its update would be ~LR_PROBE * 1e-3). */
static void test_probe_update_late(void)
{
    struct toy t;
    toy_init(&t);
    toy_run(&t, TOTAL - 1, ADAMW_SCHEDULE_CONSTANT, true);
    float before_p[N_PROBE], before_e[N_ENC];
    memcpy(before_p, params_data(&t.p, t.probe), sizeof before_p);
    memcpy(before_e, params_data(&t.p, t.enc), sizeof before_e);
    toy_grads(&t, TOTAL - 1, true);
    double f[PARAMS_N_GROUPS];
    f[PARAMS_GROUP_ENCODER] = adamw_schedule(TOTAL - 1, WARMUP, TOTAL, FINAL_RATIO);
    f[PARAMS_GROUP_PROBE] = adamw_group_factor(ADAMW_SCHEDULE_CONSTANT, TOTAL - 1,
                                               WARMUP, TOTAL, FINAL_RATIO);
    adamw_step_groups(&t.o, &t.p, f);
    const float *wp = params_data(&t.p, t.probe), *we = params_data(&t.p, t.enc);
    for (int i = 0; i < N_PROBE; i++) {
        double d = fabs((double)wp[i] - before_p[i]);
        CU_ASSERT(d > 0.5 * LR_PROBE && d < 1.5 * LR_PROBE);
    }
    double de = max_abs_diff(we, before_e, N_ENC);
    CU_ASSERT(de < 0.02 * LR_ENC);
    params_free(&t.p);
}

/* The factors themselves, and the config key that picks the schedule. */
static void test_group_factor(void)
{
    for (long s = 0; s < TOTAL + 5; s++) {
        CU_ASSERT_EQUAL(adamw_group_factor(ADAMW_SCHEDULE_CONSTANT, s, WARMUP, TOTAL,
                                           FINAL_RATIO), 1.0);
        CU_ASSERT_EQUAL(adamw_group_factor(ADAMW_SCHEDULE_COSINE, s, WARMUP, TOTAL,
                                           FINAL_RATIO),
                        adamw_schedule(s, WARMUP, TOTAL, FINAL_RATIO));
    }
    struct config c;
    char err[ERR_LEN];
    config_defaults(&c);
    CU_ASSERT_EQUAL(c.optim.probe_schedule, CONFIG_PROBE_SCHEDULE_CONSTANT);
    CU_ASSERT_EQUAL(config_set(&c, "optim.probe_schedule=cosine", err), 0);
    CU_ASSERT_EQUAL(c.optim.probe_schedule, CONFIG_PROBE_SCHEDULE_COSINE);
    CU_ASSERT_EQUAL((int)ADAMW_SCHEDULE_COSINE, c.optim.probe_schedule);
    CU_ASSERT_NOT_EQUAL(config_set(&c, "optim.probe_schedule=linear", err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "probe_schedule"));
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"probe schedule leaves the encoder bit-identical", test_probe_schedule_leaves_encoder},
        {"adamw_step is adamw_step_groups", test_step_is_step_groups},
        {"constant probe schedule: late update at probe_lr", test_probe_update_late},
        {"adamw_group_factor and optim.probe_schedule", test_group_factor},
        {NULL, NULL},
    };
    return testing_run("adamw", cases);
}
