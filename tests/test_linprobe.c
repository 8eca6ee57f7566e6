/*
 * test_linprobe.c: the L-BFGS logistic-regression probe against
 * scikit-learn (tools/eval_reference.py fixtures): at every lambda of the
 * grid the val top-1 within one point and the objective no worse than
 * sklearn's; the lambda search is deterministic and its top-1 matches
 * sklearn's at the chosen lambda; linearly separable data reach 100%; bad
 * labels and options are refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_clusters.h"
#include "json.h"
#include "linprobe.h"
#include "testing.h"
#include "util.h"

/* sklearn's entry for lambda, or NULL. */
static const struct json *sklearn_at(const struct clusters *c, double lambda)
{
    const struct json *arr = json_get(c->expected, "linear");
    for (const struct json *e = arr ? arr->child : NULL; e; e = e->next)
        if (fabs(json_get(e, "lambda")->number - lambda) <= 1e-6 * lambda)
            return e;
    return NULL;
}

static void test_each_lambda_matches_sklearn(void)
{
    struct clusters c;
    clusters_load(&c);
    const struct json *arr = json_get(c.expected, "linear");
    CU_ASSERT_PTR_NOT_NULL_FATAL(arr);
    int count = 0;
    for (const struct json *e = arr->child; e; e = e->next, count++) {
        struct linprobe_options o;
        linprobe_default_options(&o);
        o.n_lambdas = 1;
        o.lambdas[0] = json_get(e, "lambda")->number;
        struct linprobe_result r;
        char err[ERR_LEN];
        double t0 = util_time_mono();
        CU_ASSERT_EQUAL_FATAL(linprobe_run(c.train, c.yt, c.nt, c.val, c.yv,
                                           c.nv, (int)c.dim, c.classes, &o, &r,
                                           NULL, err), 0);
        double want = json_get(e, "top1")->number;
        double want_obj = json_get(e, "objective")->number;
        printf("\n  lambda %.0e: top1 %.4f (sklearn %.4f), objective %.7f "
               "(sklearn %.7f), %d iterations, stop %d, %.3f s",
               o.lambdas[0], r.top1, want, r.train_loss, want_obj,
               r.iterations, (int)r.stop, util_time_mono() - t0);
        CU_ASSERT_TRUE(fabs(r.top1 - want) <= 0.01);
        /* converged: no worse than sklearn's minimum, up to float32 logits */
        CU_ASSERT_TRUE(r.train_loss <= want_obj + 1e-5 * fmax(1.0, want_obj));
        CU_ASSERT_TRUE(r.stop != LINPROBE_STOP_MAX_ITER);
        CU_ASSERT_DOUBLE_EQUAL(r.holdout_top1, -1.0, 0);
    }
    printf("\n");
    CU_ASSERT_EQUAL(count, 6);
    clusters_free(&c);
}

static void test_search_is_deterministic(void)
{
    struct clusters c;
    clusters_load(&c);
    struct linprobe_result a, b;
    char err[ERR_LEN];
    int32_t *pred = xmalloc((size_t)c.nv * sizeof(int32_t));
    double t0 = util_time_mono();
    CU_ASSERT_EQUAL_FATAL(linprobe_run(c.train, c.yt, c.nt, c.val, c.yv, c.nv,
                                       (int)c.dim, c.classes, NULL, &a, pred,
                                       err), 0);
    double secs = util_time_mono() - t0;
    CU_ASSERT_EQUAL_FATAL(linprobe_run(c.train, c.yt, c.nt, c.val, c.yv, c.nv,
                                       (int)c.dim, c.classes, NULL, &b, NULL,
                                       err), 0);
    const struct json *ref = sklearn_at(&c, a.lambda);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    printf("\n  search: lambda %.0e (held-out top1 %.4f), val top1 %.4f "
           "(sklearn %.4f), %d iterations in all, %.3f s\n", a.lambda,
           a.holdout_top1, a.top1, json_get(ref, "top1")->number,
           a.iterations_total, secs);
    CU_ASSERT_TRUE(fabs(a.top1 - json_get(ref, "top1")->number) <= 0.01);
    CU_ASSERT_TRUE(a.holdout_top1 > 0.5);
    CU_ASSERT_EQUAL(a.lambda, b.lambda);
    CU_ASSERT_EQUAL(a.top1, b.top1);
    CU_ASSERT_EQUAL(a.iterations_total, b.iterations_total);
    int64_t correct = 0;
    for (int64_t i = 0; i < c.nv; i++)
        correct += pred[i] == c.yv[i];
    CU_ASSERT_DOUBLE_EQUAL(a.top1, (double)correct / (double)c.nv, 1e-12);
    free(pred);
    clusters_free(&c);
}

/* Labels from a random linear teacher, keeping only points whose best
 * logit beats the second by a margin: separable train and val. */
static void make_separable(float *x, int32_t *y, int n, int dim, int classes,
                          const float *teacher, uint64_t *seed)
{
    for (int i = 0; i < n;) {
        float *row = x + (size_t)i * (size_t)dim;
        for (int d = 0; d < dim; d++)
            row[d] = (float)testing_rand_normal(seed) * 2.0f + 1.0f;
        double best = -INFINITY, second = -INFINITY;
        int arg = 0;
        for (int c = 0; c < classes; c++) {
            double z = 0.0;
            for (int d = 0; d < dim; d++)
                z += (double)row[d] * teacher[d * classes + c];
            if (z > best) {
                second = best;
                best = z;
                arg = c;
            } else if (z > second) {
                second = z;
            }
        }
        if (best - second > 1.0)
            y[i++] = arg;
    }
}

static void test_separable_reaches_100(void)
{
    enum { NT = 1500, NV = 500, DIM = 12, CLASSES = 4 };
    uint64_t seed = 99;
    float teacher[DIM * CLASSES];
    for (int i = 0; i < DIM * CLASSES; i++)
        teacher[i] = (float)testing_rand_normal(&seed);
    float *xt = xmalloc(NT * DIM * sizeof(float));
    float *xv = xmalloc(NV * DIM * sizeof(float));
    int32_t yt[NT], yv[NV], pred[NT];
    make_separable(xt, yt, NT, DIM, CLASSES, teacher, &seed);
    make_separable(xv, yv, NV, DIM, CLASSES, teacher, &seed);
    struct linprobe_options o;
    linprobe_default_options(&o);
    o.n_lambdas = 1;
    o.lambdas[0] = 1e-6;
    struct linprobe_result r;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(linprobe_run(xt, yt, NT, xv, yv, NV, DIM, CLASSES,
                                       &o, &r, NULL, err), 0);
    /* train accuracy: the probe scored on its own train set */
    struct linprobe_result rt;
    CU_ASSERT_EQUAL_FATAL(linprobe_run(xt, yt, NT, xt, yt, NT, DIM, CLASSES,
                                       &o, &rt, pred, err), 0);
    printf("\n  separable: val top1 %.4f, train top1 %.4f, %d iterations, "
           "loss %.2e\n", r.top1, rt.top1, r.iterations, r.train_loss);
    CU_ASSERT_DOUBLE_EQUAL(r.top1, 1.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(rt.top1, 1.0, 0);
    free(xt);
    free(xv);
}

/* linprobe_fit on a two-point problem: x = +-1, one feature, two classes,
 * lambda 0.5. By symmetry b = 0 and W = [-w, w]; the loss per point is
 * log(1 + exp(-2w)), the penalty lambda w^2, and the stationarity
 * condition 2 / (1 + exp(2w)) = 2 lambda w is solved here by bisection. */
static void test_fit_two_points(void)
{
    const float x[] = {-1.0f, 1.0f};
    const int32_t y[] = {0, 1};
    struct linprobe_options o;
    linprobe_default_options(&o);
    o.grad_tol = 1e-9;
    double p[4] = {0};
    struct linprobe_fit_info info;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(linprobe_fit(x, y, 2, 1, 2, 0.5, &o, p, &info, err), 0);
    double lo = 0.0, hi = 10.0;
    for (int i = 0; i < 100; i++) {
        double mid = 0.5 * (lo + hi);
        if (2.0 / (1.0 + exp(2.0 * mid)) > 2.0 * 0.5 * mid)
            lo = mid;
        else
            hi = mid;
    }
    CU_ASSERT_DOUBLE_EQUAL(p[1], lo, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(p[0], -lo, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(p[2], 0.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(p[3], 0.0, 1e-6);
    /* the logits are float32: W rounded to float moves the loss by ~1e-8 */
    CU_ASSERT_DOUBLE_EQUAL(info.loss,
                           log1p(exp(-2.0 * lo)) + 0.5 * lo * lo, 1e-7);
    CU_ASSERT_TRUE(info.grad_max <= 1e-6);
}

static void test_bad_inputs(void)
{
    const float x[] = {0, 1, 2, 3};
    const int32_t good[] = {0, 1}, bad[] = {0, 2};
    struct linprobe_result r;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL(linprobe_run(x, bad, 2, x, good, 2, 2, 2, NULL, &r, NULL,
                                 err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "train label 2 at row 1"));
    CU_ASSERT_EQUAL(linprobe_run(x, good, 2, x, bad, 2, 2, 2, NULL, &r, NULL,
                                 err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "val label"));
    struct linprobe_options o;
    linprobe_default_options(&o);
    o.lambdas[2] = -1.0;
    CU_ASSERT_EQUAL(linprobe_run(x, good, 2, x, good, 2, 2, 2, &o, &r, NULL,
                                 err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "lambda 2"));
    const float nan_x[] = {0, NAN, 2, 3};
    CU_ASSERT_EQUAL(linprobe_run(nan_x, good, 2, x, good, 2, 2, 2, NULL, &r,
                                 NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "non-finite"));
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"every lambda: top1 within a point of sklearn", test_each_lambda_matches_sklearn},
        {"lambda search: deterministic, sklearn top1 at its lambda", test_search_is_deterministic},
        {"linearly separable data: 100%", test_separable_reaches_100},
        {"two points: the analytic optimum", test_fit_two_points},
        {"bad labels, lambdas, NaN refused", test_bad_inputs},
        {NULL, NULL},
    };
    return testing_run("linprobe", cases);
}
