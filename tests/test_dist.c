/*
 * test_dist.c: data-parallel LeJEPA equals one process on the global batch.
 * Run under mpirun with R ranks (tests/test_dist.sh; R = 1, 2, 3): every
 * rank steps a model on its share of a fixed global batch (dist_share:
 * rank r takes samples [r N / R, (r + 1) N / R)), and rank 0 also steps a
 * single-process model (no dist) on the whole batch. The losses of
 * CASE_STEPS SGD steps, the first step's gradients, and the weights and
 * running statistics after the steps must agree to DIST_RTOL, and every
 * rank must hold rank 0's weights. Cases: tiny ResNets (one with shares of
 * unequal size) and ViTs from tools/lejepa_cases.h with sync_bn on, a pure
 * SIGReg loss (lambda = 1: the SIGReg value and its gradient alone), and
 * sync_bn off (ranks still agree with each other).
 *
 * The steps are plain SGD (w -= SGD_LR g), not AdamW: AdamW's first step
 * is lr times the sign of each gradient element, so elements whose
 * gradient is float noise (zero in exact arithmetic: a Linear bias before
 * BatchNorm) or tiny flip by 2 lr with the summation order, and the
 * weights would then test the noise, not the reductions; the optimizer is
 * the same code on every rank anyway. Gradients are compared per tensor
 * by max |ours - ref| over max |ref|, floored at GRAD_FLOOR times the
 * largest gradient (tensors that are zero in exact arithmetic), to
 * GRAD_RTOL: float sums split over ranks round differently (measured up
 * to ~3e-5 with BatchNorm and LayerNorm in the path). Weights and running
 * statistics: max |ours - ref| over the largest |ref| of their table, to
 * DIST_RTOL (small tensors such as biases carry the same absolute noise).
 *
 * The gradient all-reduce overlaps backward in buckets of 97 floats here
 * (dist_overlap.h), so many buckets go out while backward runs.
 * Built a second time with LEJEPA_DIST_BUG_DIVIDE_SIGREG (meson test
 * dist_bug, should_fail): dividing the SIGReg gradient by the world size
 * must make this test fail for R > 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "lejepa.h"
#include "lejepa_cases.h"
#include "rng.h"
#include "testing.h"
#include "util.h"

#define DIST_RTOL 1e-5
#define GRAD_RTOL 1e-4
#define STATS_RTOL 1e-4
#define GRAD_FLOOR 1e-2
#define SGD_LR 0.001f
#define N_LOSSES 5

static struct dist world;

/* Fills the model's inputs with global samples [start, start + m->n): the
 * pixels of (group, view, sample) come from their own stream, so a sample
 * is the same whichever rank holds it. */
static void fill_inputs(struct lejepa *m, int start, int32_t *labels)
{
    const int n = m->n;
    for (int g = 0; g < m->n_groups; g++) {
        const struct lejepa_group *gr = &m->grp[g];
        size_t img = (size_t)lejepa_in_channels(&m->c) * gr->size * gr->size;
        float *x = lejepa_input(m, g);
        for (int v = 0; v < gr->views; v++)
            for (int i = 0; i < n; i++) {
                struct rng r;
                rng_init(&r, 23, (uint64_t)g, (uint64_t)v,
                         (uint64_t)(start + i));
                float *dst = x + ((size_t)v * n + i) * img;
                for (size_t k = 0; k < img; k++)
                    dst[k] = (float)rng_normal(&r);
            }
    }
    for (int i = 0; i < n; i++)
        labels[i] = (int32_t)((7 * (start + i) + 3) % m->c.n_classes);
}

static void losses_array(double *a, const struct lejepa_losses *l)
{
    a[0] = l->loss;
    a[1] = l->inv;
    a[2] = l->sigreg;
    a[3] = l->probe_loss;
    a[4] = l->probe_correct;
}

static double max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* Worst per-tensor max |a - ref| / max(max |ref|, floor_frac * max |ref|
 * over the table) over a table; errors above rtol are named. */
static double table_err(const struct params_table *t, const float *a,
                        const float *ref, double floor_frac, double rtol,
                        const char *what)
{
    double worst = 0, floor = floor_frac * max_abs(ref, t->total);
    for (size_t i = 0; i < t->n; i++) {
        const struct params_entry *e = &t->e[i];
        double diff = 0;
        for (size_t j = 0; j < e->numel; j++)
            diff = fmax(diff, fabs((double)a[e->offset + j] -
                                   ref[e->offset + j]));
        double err = diff / fmax(max_abs(ref + e->offset, e->numel), floor);
        if (err > rtol)
            fprintf(stderr, "\n  %s %s: relative error %.3g\n", what, e->name,
                    err);
        worst = fmax(worst, err);
    }
    return worst;
}

static void sgd_step(struct params *p)
{
    for (size_t j = 0; j < p->learn.total; j++)
        p->data[j] -= SGD_LR * p->grad[j];
}

/* The distributed run of config c against rank 0's single process; with
 * compare_single false only the agreement between ranks is checked (per-rank
 * BatchNorm is not the global batch's). */
static void run(struct lejepa_config c, bool compare_single)
{
    char err[ERR_LEN];
    const int N = c.batch;
    int start, count = dist_share(&world, N, &start);
    CU_ASSERT_FATAL(count >= 1);
    const bool root = world.rank == 0;

    struct lejepa ref, dm;
    int32_t *labels = xmalloc((size_t)N * sizeof *labels);
    if (root) {
        CU_ASSERT_EQUAL_FATAL(lejepa_init(&ref, &c, err), 0);
        fill_inputs(&ref, 0, labels);
    }
    struct lejepa_config cd = c;
    cd.batch = count;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&dm, &cd, err), 0);
    lejepa_set_dist(&dm, &world);
    /* buckets of 97 floats: the tiny models' gradients go out in many
     * non-blocking all-reduces during backward (dist_overlap.h), not in
     * the one flush after it that 4 MB buckets would leave */
    dm.ov.bucket = 97;
    int32_t *my_labels = xmalloc((size_t)count * sizeof *my_labels);
    fill_inputs(&dm, start, my_labels);

    const size_t P = dm.p.learn.total, S = dm.p.state.total;
    double worst_loss = 0, worst_grad = 0;
    for (int s = 0; s < CASE_STEPS; s++) {
        struct lejepa_losses lr, ld;
        double a[N_LOSSES], b[N_LOSSES];
        if (root) {
            lejepa_forward_backward(&ref, labels, (uint64_t)s, &lr);
            losses_array(b, &lr);
        }
        lejepa_forward_backward(&dm, my_labels, (uint64_t)s, &ld);
        losses_array(a, &ld);
        CU_ASSERT_EQUAL(ld.probe_total, N * dm.views);
        if (root && compare_single) {
            for (int k = 0; k < N_LOSSES; k++) {
                double e = fabs(a[k] - b[k]) / fmax(fabs(b[k]), 1e-12);
                if (e > DIST_RTOL)
                    fprintf(stderr, "\n  step %d loss term %d: %.9g vs %.9g\n",
                            s, k, a[k], b[k]);
                worst_loss = fmax(worst_loss, e);
                CU_ASSERT(e <= DIST_RTOL);
            }
            if (s == 0) {
                worst_grad = table_err(&ref.p.learn, dm.p.grad, ref.p.grad,
                                       GRAD_FLOOR, GRAD_RTOL,
                                       "gradient");
                CU_ASSERT(worst_grad <= GRAD_RTOL);
            }
        }
        if (root)
            sgd_step(&ref.p);
        sgd_step(&dm.p);
    }

    /* every rank holds rank 0's weights */
    float *w0 = xmalloc((P + S) * sizeof *w0);
    memcpy(w0, dm.p.data, P * sizeof *w0);
    memcpy(w0 + P, dm.p.state_data, S * sizeof *w0);
    dist_broadcast_float(&world, w0, P + S);
    double rank_err =
        table_err(&dm.p.learn, dm.p.data, w0, 1.0, DIST_RTOL, "rank weights");
    if (compare_single)
        rank_err = fmax(rank_err, table_err(&dm.p.state, dm.p.state_data,
                                            w0 + P, 1.0, DIST_RTOL, "rank state"));
    CU_ASSERT(rank_err <= DIST_RTOL);
    if (root && compare_single) {
        double we = table_err(&ref.p.learn, dm.p.data, ref.p.data, 1.0, DIST_RTOL,
                              "weights after steps");
        double se = table_err(&ref.p.state, dm.p.state_data,
                              ref.p.state_data, 1.0, STATS_RTOL, "running stats");
        CU_ASSERT(we <= DIST_RTOL);
        CU_ASSERT(se <= STATS_RTOL);
        fprintf(stderr, "\n  R = %d: worst loss error %.3g, gradient %.3g, "
                "weights after %d steps %.3g, running stats %.3g",
                world.world, worst_loss, worst_grad, CASE_STEPS, we, se);
    }
    if (root)
        lejepa_free(&ref);
    lejepa_free(&dm);
    free(w0);
    free(labels);
    free(my_labels);
}

static struct lejepa_config find_case(const char *name)
{
    for (size_t i = 0; i < N_LEJEPA_CASES; i++)
        if (strcmp(lejepa_cases[i].name, name) == 0)
            return lejepa_cases[i].c;
    CU_FAIL_FATAL("no such case");
    return lejepa_cases[0].c;
}

static void test_resnet(void)
{
    struct lejepa_config c = find_case("local");
    c.sync_bn = true;
    run(c, true);
}

static void test_resnet_uneven(void)
{
    struct lejepa_config c = find_case("global");
    c.batch = 7;  /* shares 3 + 4 and 2 + 2 + 3 (each rank needs 2) */
    c.sync_bn = true;
    c.sigreg_debias = true;
    run(c, true);
}

static void test_vit(void)
{
    struct lejepa_config c = find_case("vit");
    c.sync_bn = true;
    run(c, true);
}

static void test_sigreg_only(void)
{
    struct lejepa_config c = find_case("vit_mean");
    c.batch = 6;  /* each of 3 ranks needs 2 samples */
    c.sync_bn = true;
    c.lambda = 1.0;
    run(c, true);
}

static void test_per_rank_bn(void)
{
    struct lejepa_config c = find_case("local");
    run(c, world.world == 1);
}

int main(int argc, char **argv)
{
    char err[ERR_LEN];
    if (dist_init_mpi(&world, &argc, &argv, err) != 0) {
        fprintf(stderr, "test_dist: %s\n", err);
        return 1;
    }
    static const struct testing_case cases[] = {
        {"ResNet, sync_bn: R ranks equal one process", test_resnet},
        {"ResNet, ImageNet stem, N = 7 (unequal shares), debiased SIGReg",
         test_resnet_uneven},
        {"ViT, sync_bn: R ranks equal one process", test_vit},
        {"SIGReg alone (lambda = 1): value and gradient", test_sigreg_only},
        {"per-rank BatchNorm: ranks agree", test_per_rank_bn},
        {NULL, NULL},
    };
    int rc = testing_run("data parallel", cases);
    dist_finalize(&world);
    return rc;
}
