/*
 * test_ckpt.c: a checkpoint loaded in a fresh process continues training
 * with exactly the losses of a run that never stopped; damaged or foreign
 * checkpoints are refused and leave the model untouched.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adamw.h"
#include "ckpt.h"
#include "lejepa.h"
#include "lejepa_cases.h"
#include "rng.h"
#include "testing.h"

#define TOTAL_STEPS 6
#define SPLIT_STEP 3

static const char *self_path;

/* The case "local" with deterministic inputs; with scramble, every weight,
 * statistic and moment is overwritten so only a checkpoint can restore it. */
static void build(struct lejepa *m, struct adamw *o, int scramble)
{
    char err[ERR_LEN];
    CHECK(lejepa_init(m, &lejepa_cases[0].c, err) == 0);
    if (scramble) {
        struct rng r;
        rng_init(&r, 1234, 0, 0, 0);
        float *arenas[] = {m->p.data, m->p.m, m->p.v};
        for (int a = 0; a < 3; a++)
            for (size_t i = 0; i < m->p.learn.total; i++)
                arenas[a][i] = (float)rng_uniform(&r);
        for (size_t i = 0; i < m->p.state.total; i++)
            m->p.state_data[i] = (float)rng_uniform(&r);
    }
    struct rng r;
    rng_init(&r, 99, 0, 0, 0);
    for (int g = 0; g < m->n_groups; g++) {
        float *x = lejepa_input(m, g);
        size_t n = graph_numel(&m->grp[g].g, m->grp[g].in);
        for (size_t i = 0; i < n; i++)
            x[i] = (float)rng_normal(&r);
    }
    adamw_init(o, 0.9, 0.999, 1e-8);
    o->group[PARAMS_GROUP_ENCODER] = (struct adamw_group){CASE_LR_ENCODER, CASE_WD_ENCODER};
    o->group[PARAMS_GROUP_PROBE] = (struct adamw_group){CASE_LR_PROBE, CASE_WD_PROBE};
}

static void run_steps(struct lejepa *m, struct adamw *o, int from, int to,
                      double *losses)
{
    int32_t labels[64];
    for (int i = 0; i < m->c.batch; i++)
        labels[i] = i % m->c.n_classes;
    for (int s = from; s < to; s++) {
        struct lejepa_losses l;
        lejepa_forward_backward(m, labels, (uint64_t)s, &l);
        losses[s] = l.loss;
        adamw_step(o, &m->p,
                   adamw_schedule(s, 2, TOTAL_STEPS, 1e-3));
    }
}

/* The child: a fresh process that loads the checkpoint and goes on. */
static int child(const char *ckpt)
{
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 1);
    struct st_file f;
    char err[ERR_LEN];
    if (ckpt_load(ckpt, &m.p, &o, &f, err) != 0) {
        fprintf(stderr, "child: %s\n", err);
        return 1;
    }
    int step = atoi(st_meta(&f, "step"));
    st_close(&f);
    double losses[TOTAL_STEPS];
    run_steps(&m, &o, step, TOTAL_STEPS, losses);
    for (int s = step; s < TOTAL_STEPS; s++)
        printf("%d %a\n", s, losses[s]);
    lejepa_free(&m);
    return 0;
}

static void test_resume_in_fresh_process(void)
{
    double straight[TOTAL_STEPS], split[TOTAL_STEPS];
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 0);
    run_steps(&m, &o, 0, TOTAL_STEPS, straight);
    lejepa_free(&m);

    build(&m, &o, 0);
    run_steps(&m, &o, 0, SPLIT_STEP, split);
    char *dir = testing_tmpdir(), path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/step3.safetensors", dir);
    const char *key = "step", *value = "3";
    CU_ASSERT_EQUAL_FATAL(ckpt_save(path, &m.p, &o, &key, &value, 1, err), 0);
    lejepa_free(&m);

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --child '%s'", self_path, path);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    int got = 0, s;
    double v;
    while (fscanf(p, "%d %la", &s, &v) == 2) {
        CU_ASSERT(s >= SPLIT_STEP && s < TOTAL_STEPS);
        if (s >= SPLIT_STEP && s < TOTAL_STEPS) {
            split[s] = v;
            got++;
        }
    }
    CU_ASSERT_EQUAL(pclose(p), 0);
    CU_ASSERT_EQUAL(got, TOTAL_STEPS - SPLIT_STEP);
    for (int i = 0; i < TOTAL_STEPS && got == TOTAL_STEPS - SPLIT_STEP; i++) {
        if (straight[i] != split[i])
            fprintf(stderr, "\nstep %d: straight %.9g, resumed %.9g\n", i,
                    straight[i], split[i]);
        CU_ASSERT_EQUAL(straight[i], split[i]);
    }
    testing_rmtree(dir);
    free(dir);
}

static void test_bad_checkpoints_refused_model_untouched(void)
{
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 0);
    char *dir = testing_tmpdir(), path[4096], cut[4200], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/good.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(ckpt_save(path, &m.p, &o, NULL, NULL, 0, err), 0);
    size_t len;
    char *bytes = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);

    /* Another model's weights (different init) to load into. */
    struct lejepa other;
    struct adamw oo;
    build(&other, &oo, 1);
    size_t nbytes = other.p.learn.total * sizeof(float);
    float *before = xmalloc(nbytes);
    memcpy(before, other.p.data, nbytes);
    struct st_file f;

    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    for (size_t n = 0; n < len; n += len / 37 + 1) {
        CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(cut, bytes, n, err), 0);
        CU_ASSERT_EQUAL(ckpt_load(cut, &other.p, &oo, &f, err), -1);
        CU_ASSERT_EQUAL(memcmp(before, other.p.data, nbytes), 0);
    }
    /* A checkpoint of a differently shaped model. */
    struct lejepa_config c = lejepa_cases[0].c;
    c.resnet.widths[1] = 24;
    struct lejepa wide;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&wide, &c, err), 0);
    snprintf(cut, sizeof cut, "%s/wide.safetensors", dir);
    CU_ASSERT_EQUAL(ckpt_save(cut, &wide.p, NULL, NULL, NULL, 0, err), 0);
    CU_ASSERT_EQUAL(ckpt_load(cut, &other.p, NULL, &f, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "shape"));
    CU_ASSERT_EQUAL(memcmp(before, other.p.data, nbytes), 0);
    lejepa_free(&wide);
    /* A weights-only file cannot resume (no optimizer state). */
    snprintf(cut, sizeof cut, "%s/weights.safetensors", dir);
    CU_ASSERT_EQUAL(ckpt_save(cut, &m.p, NULL, NULL, NULL, 0, err), 0);
    CU_ASSERT_EQUAL(ckpt_load(cut, &other.p, &oo, &f, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "optimizer"));
    CU_ASSERT_EQUAL(memcmp(before, other.p.data, nbytes), 0);
    /* A safetensors file that is not ours. */
    struct st_tensor t = {.name = "x", .dtype = ST_F32, .ndim = 1, .shape = {1},
                          .data = before, .nbytes = 4};
    CU_ASSERT_EQUAL(st_write(cut, &t, 1, NULL, NULL, 0, err), 0);
    CU_ASSERT_EQUAL(ckpt_load(cut, &other.p, NULL, &f, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a lejepa checkpoint"));
    /* The good one loads and matches what was saved. */
    CU_ASSERT_EQUAL(ckpt_load(path, &other.p, &oo, &f, err), 0);
    st_close(&f);
    for (size_t i = 0; i < m.p.learn.n; i++)
        CU_ASSERT_EQUAL(memcmp(params_data(&m.p, (int)i), params_data(&other.p, (int)i),
                               m.p.learn.e[i].numel * sizeof(float)), 0);
    for (size_t i = 0; i < m.p.state.n; i++)
        CU_ASSERT_EQUAL(memcmp(params_state(&m.p, (int)i), params_state(&other.p, (int)i),
                               m.p.state.e[i].numel * sizeof(float)), 0);
    free(before);
    free(bytes);
    lejepa_free(&other);
    lejepa_free(&m);
    testing_rmtree(dir);
    free(dir);
}

static void test_non_finite_named(void)
{
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 0);
    int32_t labels[64] = {0};
    struct lejepa_losses l;
    char err[ERR_LEN];
    lejepa_forward_backward(&m, labels, 0, &l);
    CU_ASSERT_EQUAL(lejepa_check_finite(&m, &l, 0, err), 0);
    /* An infinite weight in the last projector layer poisons the loss. */
    int w = params_find(&m.p.learn, "projector.6.weight");
    CU_ASSERT_FATAL(w >= 0);
    params_data(&m.p, w)[3] = INFINITY;
    lejepa_forward_backward(&m, labels, 7, &l);
    CU_ASSERT_EQUAL(lejepa_check_finite(&m, &l, 7, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "step 7"));
    /* A finite loss with one bad gradient names the tensor. */
    params_data(&m.p, w)[3] = 0.0f;
    lejepa_forward_backward(&m, labels, 8, &l);
    params_grad(&m.p, w)[5] = NAN;
    CU_ASSERT_EQUAL(lejepa_check_finite(&m, &l, 8, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "projector.6.weight"));
    lejepa_free(&m);
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return child(argv[2]);
    static const struct testing_case cases[] = {
        {"resume in a fresh process", test_resume_in_fresh_process},
        {"bad checkpoints refused, model untouched",
         test_bad_checkpoints_refused_model_untouched},
        {"non-finite loss and gradients named", test_non_finite_named},
        {NULL, NULL},
    };
    return testing_run("checkpoints", cases);
}
