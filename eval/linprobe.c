/*
 * linprobe.c: multinomial logistic regression by full-batch L-BFGS and the
 * probe around it: standardise, choose lambda on a held-out split, refit,
 * score (see linprobe.h for the math and the stopping rules). BLAS is only
 * called between OpenMP regions.
 */
#include "linprobe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "rng.h"
#include "util.h"

#define LS_MAX_TRIALS 40
#define LS_C1 1e-4
#define PAIR_CURVATURE_EPS 1e-10
/* Below this many logits the softmax loop (about a millisecond) runs on one
 * thread: a parallel region costs more than it saves, and far more when
 * other processes hold the cores. */
#define SOFTMAX_PARALLEL_MIN (1 << 18)

void linprobe_default_options(struct linprobe_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_iter = 1000;
    o->history = 10;
    o->grad_tol = 1e-6;
    o->loss_tol = 1e-9;
    o->holdout = 0.1;
    o->seed = 0;
    o->n_lambdas = 6;
    double l = 1e-1;
    for (int i = 0; i < o->n_lambdas; i++, l /= 10.0)
        o->lambdas[i] = l;
}

/* The objective on one data set; the float buffers are scratch. */
struct objective {
    const float *x;    /* (n, dim) */
    const int32_t *y;  /* (n) */
    int64_t n;
    int dim, n_classes;
    double lambda;
    float *wf;         /* (dim, C) float copy of W */
    float *z;          /* (n, C) logits, then (softmax - onehot) / n */
    float *gw;         /* (dim, C) X^T z */
};

static void objective_init(struct objective *ob, const float *x,
                           const int32_t *y, int64_t n, int dim, int n_classes,
                           double lambda)
{
    ob->x = x;
    ob->y = y;
    ob->n = n;
    ob->dim = dim;
    ob->n_classes = n_classes;
    ob->lambda = lambda;
    size_t wc = (size_t)dim * (size_t)n_classes;
    ob->wf = xmalloc_aligned(wc * sizeof(float));
    ob->z = xmalloc_aligned((size_t)n * (size_t)n_classes * sizeof(float));
    ob->gw = xmalloc_aligned(wc * sizeof(float));
}

static void objective_free(struct objective *ob)
{
    util_free_aligned(ob->wf);
    util_free_aligned(ob->z);
    util_free_aligned(ob->gw);
}

/* f(p); g (same layout as p) receives the gradient. */
static double objective_eval(struct objective *ob, const double *p, double *g)
{
    const int C = ob->n_classes, dim = ob->dim;
    const int64_t n = ob->n;
    const size_t wc = (size_t)dim * (size_t)C;
    const double *b = p + wc;
    for (size_t i = 0; i < wc; i++)
        ob->wf[i] = (float)p[i];
    /* z (n, C) = x (n, dim) . W (dim, C) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, C, dim,
                1.0f, ob->x, dim, ob->wf, C, 0.0f, ob->z, C);
    const double inv_n = 1.0 / (double)n;
    double loss = 0.0;
    #pragma omp parallel for schedule(static) reduction(+:loss) \
        if (n * C >= SOFTMAX_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float *zi = ob->z + i * C;
        int yi = ob->y[i];
        double m = -INFINITY;
        for (int c = 0; c < C; c++)
            m = fmax(m, (double)zi[c] + b[c]);
        double s = 0.0;
        for (int c = 0; c < C; c++)
            s += exp((double)zi[c] + b[c] - m);
        loss += log(s) + m - ((double)zi[yi] + b[yi]);
        for (int c = 0; c < C; c++) {
            double pr = exp((double)zi[c] + b[c] - m) / s;
            zi[c] = (float)((pr - (c == yi)) * inv_n);
        }
    }
    /* gw (dim, C) = x^T (dim, n) . z (n, C) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dim, C, (int)n, 1.0f,
                ob->x, dim, ob->z, C, 0.0f, ob->gw, C);
    double reg = 0.0;
    for (size_t i = 0; i < wc; i++) {
        reg += p[i] * p[i];
        g[i] = (double)ob->gw[i] + ob->lambda * p[i];
    }
    double *gb = g + wc;
    for (int c = 0; c < C; c++)
        gb[c] = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            gb[c] += ob->z[i * C + c];
    return loss * inv_n + 0.5 * ob->lambda * reg;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

/* L-BFGS memory: the last `m` pairs in a ring, oldest at `start`. */
struct lbfgs_memory {
    int m, count, start;
    double *s, *y, *rho;   /* (m, P), (m, P), (m) */
    double *alpha;         /* (m) */
};

/* d = -H g by the two-loop recursion. */
static void lbfgs_direction(const struct lbfgs_memory *mem, const double *g,
                            double *d, size_t P)
{
    for (size_t i = 0; i < P; i++)
        d[i] = -g[i];
    for (int k = mem->count - 1; k >= 0; k--) {
        int j = (mem->start + k) % mem->m;
        const double *s = mem->s + (size_t)j * P, *y = mem->y + (size_t)j * P;
        mem->alpha[j] = mem->rho[j] * dot(s, d, P);
        for (size_t i = 0; i < P; i++)
            d[i] -= mem->alpha[j] * y[i];
    }
    if (mem->count > 0) {
        int j = (mem->start + mem->count - 1) % mem->m;
        const double *y = mem->y + (size_t)j * P;
        double gamma = 1.0 / (mem->rho[j] * dot(y, y, P));
        for (size_t i = 0; i < P; i++)
            d[i] *= gamma;
    }
    for (int k = 0; k < mem->count; k++) {
        int j = (mem->start + k) % mem->m;
        const double *s = mem->s + (size_t)j * P, *y = mem->y + (size_t)j * P;
        double beta = mem->rho[j] * dot(y, d, P);
        for (size_t i = 0; i < P; i++)
            d[i] += s[i] * (mem->alpha[j] - beta);
    }
}

/* Keeps the pair (p_new - p, g_new - g) when its curvature is positive,
 * replacing the oldest when the memory is full. */
static void lbfgs_push(struct lbfgs_memory *mem, const double *p,
                       const double *p_new, const double *g,
                       const double *g_new, size_t P)
{
    double sy = 0.0, yy = 0.0;
    for (size_t i = 0; i < P; i++) {
        double dy = g_new[i] - g[i];
        sy += (p_new[i] - p[i]) * dy;
        yy += dy * dy;
    }
    if (!(sy > PAIR_CURVATURE_EPS * yy) || yy == 0.0)
        return;
    int j = mem->count < mem->m ? (mem->start + mem->count) % mem->m
                                : mem->start;
    double *s = mem->s + (size_t)j * P, *y = mem->y + (size_t)j * P;
    for (size_t i = 0; i < P; i++) {
        s[i] = p_new[i] - p[i];
        y[i] = g_new[i] - g[i];
    }
    mem->rho[j] = 1.0 / sy;
    if (mem->count < mem->m)
        mem->count++;
    else
        mem->start = (mem->start + 1) % mem->m;
}

static int check_options(const struct linprobe_options *o, char *err)
{
    if (o->max_iter < 1 || o->history < 1 || o->history > 100)
        return errf(err, "linprobe: max_iter must be >= 1 and history in "
                    "[1, 100] (got %d, %d)", o->max_iter, o->history);
    if (!(o->grad_tol >= 0.0) || !(o->loss_tol >= 0.0))
        return errf(err, "linprobe: tolerances must be >= 0");
    if (!(o->holdout >= 0.0 && o->holdout < 1.0))
        return errf(err, "linprobe: holdout must be in [0, 1) (got %g)",
                    o->holdout);
    if (o->n_lambdas < 1 || o->n_lambdas > LINPROBE_MAX_LAMBDAS)
        return errf(err, "linprobe: n_lambdas must be in [1, %d] (got %d)",
                    LINPROBE_MAX_LAMBDAS, o->n_lambdas);
    for (int i = 0; i < o->n_lambdas; i++)
        if (!(o->lambdas[i] >= 0.0) || !isfinite(o->lambdas[i]))
            return errf(err, "linprobe: lambda %d is %g, must be a finite "
                        "number >= 0", i, o->lambdas[i]);
    if (o->stats_rows && o->n_stats_rows < 1)
        return errf(err, "linprobe: stats_rows given with n_stats_rows = %lld",
                    (long long)o->n_stats_rows);
    return 0;
}

static int check_labels(const int32_t *y, int64_t n, int n_classes,
                        const char *what, char *err)
{
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= n_classes)
            return errf(err, "linprobe: %s label %d at row %lld outside "
                        "[0, %d)", what, y[i], (long long)i, n_classes);
    return 0;
}

int linprobe_fit(const float *x, const int32_t *y, int64_t n, int dim,
                 int n_classes, double lambda,
                 const struct linprobe_options *o, double *params,
                 struct linprobe_fit_info *info, char *err)
{
    if (n < 1 || n > INT32_MAX || dim < 1 || n_classes < 1)
        return errf(err, "linprobe: need 1 <= n < 2^31, dim >= 1, classes "
                    ">= 1 (got %lld, %d, %d)", (long long)n, dim, n_classes);
    if (!(lambda >= 0.0) || !isfinite(lambda))
        return errf(err, "linprobe: lambda must be a finite number >= 0");
    if (check_options(o, err) != 0 ||
        check_labels(y, n, n_classes, "train", err) != 0)
        return -1;

    const size_t P = (size_t)(dim + 1) * (size_t)n_classes;
    struct objective ob;
    objective_init(&ob, x, y, n, dim, n_classes, lambda);
    struct lbfgs_memory mem = {.m = o->history};
    mem.s = xmalloc((size_t)mem.m * P * sizeof(double));
    mem.y = xmalloc((size_t)mem.m * P * sizeof(double));
    mem.rho = xmalloc((size_t)mem.m * sizeof(double));
    mem.alpha = xmalloc((size_t)mem.m * sizeof(double));
    double *g = xmalloc(P * sizeof(double));
    double *d = xmalloc(P * sizeof(double));
    double *p_new = xmalloc(P * sizeof(double));
    double *g_new = xmalloc(P * sizeof(double));

    int rc = -1, iter = 0, evals = 1;
    enum linprobe_stop stop = LINPROBE_STOP_MAX_ITER;
    double f = objective_eval(&ob, params, g);
    if (!isfinite(f)) {
        errf(err, "linprobe: objective is not finite at the starting point");
        goto cleanup;
    }
    while (iter < o->max_iter) {
        if (max_abs(g, P) <= o->grad_tol) {
            stop = LINPROBE_STOP_GRAD;
            break;
        }
        lbfgs_direction(&mem, g, d, P);
        double gd = dot(g, d, P);
        if (!(gd < 0.0)) {   /* not a descent direction: restart */
            mem.count = mem.start = 0;
            for (size_t i = 0; i < P; i++)
                d[i] = -g[i];
            gd = -dot(g, g, P);
        }
        double step = 1.0;
        if (mem.count == 0)
            step = fmin(1.0, 1.0 / sqrt(-gd));
        double f_new = INFINITY;
        int accepted = 0;
        for (int t = 0; t < LS_MAX_TRIALS; t++) {
            for (size_t i = 0; i < P; i++)
                p_new[i] = params[i] + step * d[i];
            f_new = objective_eval(&ob, p_new, g_new);
            evals++;
            if (isfinite(f_new) && f_new <= f + LS_C1 * step * gd) {
                accepted = 1;
                break;
            }
            double next = 0.1 * step;
            if (isfinite(f_new))
                next = -gd * step * step / (2.0 * (f_new - f - gd * step));
            step = fmin(fmax(next, 0.1 * step), 0.5 * step);
        }
        if (!accepted) {
            stop = LINPROBE_STOP_LINE_SEARCH;
            break;
        }
        iter++;
        lbfgs_push(&mem, params, p_new, g, g_new, P);
        double f_old = f;
        memcpy(params, p_new, P * sizeof(double));
        memcpy(g, g_new, P * sizeof(double));
        f = f_new;
        if (f_old - f <= o->loss_tol * fmax(1.0, fabs(f))) {
            stop = max_abs(g, P) <= o->grad_tol ? LINPROBE_STOP_GRAD
                                                : LINPROBE_STOP_LOSS;
            break;
        }
    }
    info->iterations = iter;
    info->evaluations = evals;
    info->loss = f;
    info->grad_max = max_abs(g, P);
    info->stop = stop;
    rc = 0;
cleanup:
    objective_free(&ob);
    free(mem.s);
    free(mem.y);
    free(mem.rho);
    free(mem.alpha);
    free(g);
    free(d);
    free(p_new);
    free(g_new);
    return rc;
}

void linprobe_predict(const float *x, int64_t n, int dim, int n_classes,
                      const double *params, int32_t *pred)
{
    const size_t wc = (size_t)dim * (size_t)n_classes;
    float *wf = xmalloc_aligned(wc * sizeof(float));
    float *z = xmalloc_aligned((size_t)n * (size_t)n_classes * sizeof(float));
    for (size_t i = 0; i < wc; i++)
        wf[i] = (float)params[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, n_classes,
                dim, 1.0f, x, dim, wf, n_classes, 0.0f, z, n_classes);
    const double *b = params + wc;
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * n_classes;
        int32_t best = 0;
        double best_v = (double)zi[0] + b[0];
        for (int c = 1; c < n_classes; c++)
            if ((double)zi[c] + b[c] > best_v) {
                best_v = (double)zi[c] + b[c];
                best = c;
            }
        pred[i] = best;
    }
    util_free_aligned(wf);
    util_free_aligned(z);
}

static double accuracy(const float *x, const int32_t *y, int64_t n, int dim,
                       int n_classes, const double *params, int32_t *pred)
{
    linprobe_predict(x, n, dim, n_classes, params, pred);
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++)
        correct += pred[i] == y[i];
    return (double)correct / (double)n;
}

/* Column mean and 1/std (ddof 0; 0 for a constant column) of x (n, dim). */
static int standard_stats(const float *x, int64_t n, int dim, double *mean,
                          double *inv_std, char *err)
{
    double *sq = xcalloc((size_t)dim, sizeof(double));
    memset(mean, 0, (size_t)dim * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            float v = x[i * dim + j];
            if (!isfinite(v)) {
                free(sq);
                return errf(err, "linprobe: train row %lld has a non-finite "
                            "value at column %d", (long long)i, j);
            }
            mean[j] += v;
        }
    for (int j = 0; j < dim; j++)
        mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            double c = x[i * dim + j] - mean[j];
            sq[j] += c * c;
        }
    for (int j = 0; j < dim; j++) {
        double sd = sqrt(sq[j] / (double)n);
        inv_std[j] = sd > 0.0 ? 1.0 / sd : 0.0;
    }
    free(sq);
    return 0;
}

/* dst row r = standardised src row order[r] (order NULL: row r). */
static int standardise(float *dst, const float *src, const int64_t *order,
                       int64_t n, int dim, const double *mean,
                       const double *inv_std, const char *what, char *err)
{
    for (int64_t r = 0; r < n; r++) {
        const float *s = src + (order ? order[r] : r) * dim;
        for (int j = 0; j < dim; j++) {
            if (!isfinite(s[j]))
                return errf(err, "linprobe: %s row %lld has a non-finite "
                            "value at column %d", what,
                            (long long)(order ? order[r] : r), j);
            dst[r * dim + j] = (float)((s[j] - mean[j]) * inv_std[j]);
        }
    }
    return 0;
}

static int compare_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

int linprobe_run(const float *train, const int32_t *train_labels,
                 int64_t n_train, const float *val, const int32_t *val_labels,
                 int64_t n_val, int dim, int n_classes,
                 const struct linprobe_options *o, struct linprobe_result *res,
                 int32_t *pred, char *err)
{
    struct linprobe_options defaults;
    if (!o) {
        linprobe_default_options(&defaults);
        o = &defaults;
    }
    if (n_train < 1 || n_val < 1 || dim < 1 || n_classes < 1 ||
        n_train > INT32_MAX || n_val > INT32_MAX)
        return errf(err, "linprobe: need n_train, n_val, dim, n_classes >= 1 "
                    "(got %lld, %lld, %d, %d)", (long long)n_train,
                    (long long)n_val, dim, n_classes);
    if (check_options(o, err) != 0 ||
        check_labels(train_labels, n_train, n_classes, "train", err) != 0 ||
        check_labels(val_labels, n_val, n_classes, "val", err) != 0)
        return -1;

    int search = o->n_lambdas > 1 && o->holdout > 0.0 && n_train >= 2;
    int64_t n_hold = 0;
    if (search) {
        n_hold = llround(o->holdout * (double)n_train);
        n_hold = n_hold < 1 ? 1 : n_hold > n_train - 1 ? n_train - 1 : n_hold;
    }
    const int64_t n_fit = n_train - n_hold;
    const size_t P = (size_t)(dim + 1) * (size_t)n_classes;

    int rc = -1;
    double *mean = xmalloc((size_t)dim * sizeof(double));
    double *inv_std = xmalloc((size_t)dim * sizeof(double));
    int64_t *order = xmalloc((size_t)n_train * sizeof(int64_t));
    int32_t *ys = xmalloc((size_t)n_train * sizeof(int32_t));
    int32_t *pred_buf = xmalloc((size_t)(n_val > n_hold ? n_val : n_hold) *
                                sizeof(int32_t));
    float *xs = xmalloc_aligned((size_t)n_train * (size_t)dim * sizeof(float));
    float *xv = xmalloc_aligned((size_t)n_val * (size_t)dim * sizeof(float));
    double *params = xcalloc(P, sizeof(double));
    double *best = xcalloc(P, sizeof(double));

    /* held-out rows last: Fisher-Yates over the identity */
    for (int64_t i = 0; i < n_train; i++)
        order[i] = i;
    if (search) {
        struct rng r;
        rng_init(&r, o->seed, LINPROBE_RNG_STREAM, 0, 0);
        for (int64_t i = n_train - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
            int64_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    for (int64_t i = 0; i < n_train; i++)
        ys[i] = train_labels[order[i]];
    if (standard_stats(o->stats_rows ? o->stats_rows : train,
                       o->stats_rows ? o->n_stats_rows : n_train, dim, mean,
                       inv_std, err) != 0 ||
        standardise(xs, train, order, n_train, dim, mean, inv_std, "train",
                    err) != 0 ||
        standardise(xv, val, NULL, n_val, dim, mean, inv_std, "val", err) != 0)
        goto cleanup;

    res->iterations_total = 0;
    res->evaluations_total = 0;
    res->holdout_top1 = -1.0;
    res->lambda = o->lambdas[0];
    struct linprobe_fit_info info;
    if (search) {
        double lambdas[LINPROBE_MAX_LAMBDAS];
        memcpy(lambdas, o->lambdas, (size_t)o->n_lambdas * sizeof(double));
        qsort(lambdas, (size_t)o->n_lambdas, sizeof(double), compare_desc);
        for (int i = 0; i < o->n_lambdas; i++) {
            if (linprobe_fit(xs, ys, n_fit, dim, n_classes, lambdas[i], o,
                             params, &info, err) != 0)
                goto cleanup;
            res->iterations_total += info.iterations;
            res->evaluations_total += info.evaluations;
            double acc = accuracy(xs + n_fit * dim, ys + n_fit, n_hold, dim,
                                  n_classes, params, pred_buf);
            if (acc > res->holdout_top1) {
                res->holdout_top1 = acc;
                res->lambda = lambdas[i];
                memcpy(best, params, P * sizeof(double));
            }
        }
        memcpy(params, best, P * sizeof(double));
    }
    if (linprobe_fit(xs, ys, n_train, dim, n_classes, res->lambda, o, params,
                     &info, err) != 0)
        goto cleanup;
    res->iterations = info.iterations;
    res->iterations_total += info.iterations;
    res->evaluations_total += info.evaluations;
    res->train_loss = info.loss;
    res->stop = info.stop;
    res->top1 = accuracy(xv, val_labels, n_val, dim, n_classes, params,
                         pred ? pred : pred_buf);
    rc = 0;
cleanup:
    free(mean);
    free(inv_std);
    free(order);
    free(ys);
    free(pred_buf);
    util_free_aligned(xs);
    util_free_aligned(xv);
    free(params);
    free(best);
    return rc;
}
