/*
 * test_probe_adamw.c: the official protocol's AdamW probe (LayerNorm +
 * Linear, eval/probe_adamw.h) on the overlapping-clusters fixture: its
 * val top-1 within 3 points of the same function class fitted to
 * convergence (the L-BFGS logistic regression of linprobe.h, itself
 * checked against scikit-learn, on the LayerNormed rows), the same figure for the same seed, no better than chance
 * plus a margin when the train labels are shuffled (it learns from the
 * labels, not from val), and bad labels or sizes refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_clusters.h"
#include "linprobe.h"
#include "probe_adamw.h"
#include "testing.h"
#include "util.h"

static struct clusters cl;

/* The fixture, loaded by the first case (its checks are CUnit asserts). */
static void need_clusters(void)
{
    if (!cl.train)
        clusters_load(&cl);
}

/* Each row scaled to mean 0 and variance 1 over its features (LayerNorm
 * without the affine, eps 1e-5), into a new array. */
static float *rows_normed(const float *x, int64_t n, int64_t d)
{
    float *y = xmalloc((size_t)(n * d) * sizeof *y);
    for (int64_t i = 0; i < n; i++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < d; j++)
            m += x[i * d + j];
        m /= (double)d;
        for (int64_t j = 0; j < d; j++)
            v += (x[i * d + j] - m) * (x[i * d + j] - m);
        double r = 1.0 / sqrt(v / (double)d + 1e-5);
        for (int64_t j = 0; j < d; j++)
            y[i * d + j] = (float)((x[i * d + j] - m) * r);
    }
    return y;
}

/* The same function class fitted to convergence: L-BFGS logistic
 * regression (its lambda search) on the LayerNormed rows. */
static double logreg_on_normed_rows(void)
{
    float *t = rows_normed(cl.train, cl.nt, cl.dim), *v = rows_normed(cl.val, cl.nv, cl.dim);
    struct linprobe_result r;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL(linprobe_run(t, cl.yt, cl.nt, v, cl.yv, cl.nv, (int)cl.dim, cl.classes,
                                 NULL, &r, NULL, err), 0);
    free(t);
    free(v);
    return r.top1;
}

static double run(const int32_t *yt, uint64_t seed)
{
    struct probe_adamw_options o = PROBE_ADAMW_DEFAULTS;
    o.seed = seed;
    double top1 = -1;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL(probe_adamw_run(cl.train, yt, (size_t)cl.nt, cl.val, cl.yv,
                                    (size_t)cl.nv, (int)cl.dim, cl.classes, &o,
                                    &top1, err), 0);
    return top1;
}

static void test_near_sklearn(void)
{
    need_clusters();
    double best = logreg_on_normed_rows(), a = run(cl.yt, 1);
    fprintf(stderr, "AdamW probe %.4f, logistic regression on the normed rows %.4f\n", a,
            best);
    CU_ASSERT(best > 0.5);
    CU_ASSERT(a >= best - 0.03);
    CU_ASSERT_EQUAL(run(cl.yt, 1), a); /* deterministic */
}

static void test_shuffled_labels(void)
{
    need_clusters();
    int32_t *y = xmalloc((size_t)cl.nt * sizeof *y);
    memcpy(y, cl.yt, (size_t)cl.nt * sizeof *y);
    uint64_t s = 3;
    for (int64_t i = cl.nt - 1; i > 0; i--) {
        int64_t j = (int64_t)(testing_rand_uniform(&s) * (double)(i + 1));
        j = j > i ? i : j;
        int32_t t = y[i];
        y[i] = y[j];
        y[j] = t;
    }
    double a = run(y, 1);
    CU_ASSERT(a < 1.0 / cl.classes + 0.1);
    free(y);
}

static void test_refusals(void)
{
    need_clusters();
    struct probe_adamw_options o = PROBE_ADAMW_DEFAULTS;
    double top1;
    char err[ERR_LEN];
    int32_t *y = xmalloc((size_t)cl.nt * sizeof *y);
    memcpy(y, cl.yt, (size_t)cl.nt * sizeof *y);
    y[5] = cl.classes;
    CU_ASSERT_EQUAL(probe_adamw_run(cl.train, y, (size_t)cl.nt, cl.val, cl.yv,
                                    (size_t)cl.nv, (int)cl.dim, cl.classes, &o,
                                    &top1, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "row 5"));
    o.epochs = 0;
    CU_ASSERT_EQUAL(probe_adamw_run(cl.train, cl.yt, (size_t)cl.nt, cl.val, cl.yv,
                                    (size_t)cl.nv, (int)cl.dim, cl.classes, &o,
                                    &top1, err), -1);
    free(y);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"near scikit-learn's logistic regression", test_near_sklearn},
        {"shuffled train labels: chance", test_shuffled_labels},
        {"bad labels and options refused", test_refusals},
        {NULL, NULL},
    };
    int rc = testing_run("probe_adamw", cases);
    if (cl.train)
        clusters_free(&cl);
    return rc;
}
