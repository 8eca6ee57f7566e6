/*
 * linprobe.h: the linear probe of frozen embeddings (DESIGN.md §6): features
 * standardised with the train set's mean and standard deviation, then
 * multinomial logistic regression trained to convergence by full-batch
 * L-BFGS, the L2 strength chosen on a held-out part of the train set, a
 * refit on all of train, top-1 on val. Pure math on caller-owned arrays.
 *
 * Objective, for weights W (dim, C) and bias b (C), z_i = x_i W + b:
 *     f = (1/n) sum_i [logsumexp(z_i) - z_i[y_i]] + (lambda/2) ||W||^2
 * (the bias is not penalised). This is scikit-learn's LogisticRegression
 * (multinomial, lbfgs) with C = 1 / (lambda * n).
 *
 * L-BFGS: two-loop recursion with the last `history` pairs (s, y), a pair
 * is kept only when s.y > 1e-10 y.y; initial scaling gamma = s.y / y.y;
 * backtracking line search with the Armijo condition (c1 = 1e-4), trial
 * step 1 (1 / ||g|| on the first iteration), quadratic interpolation for the
 * next trial clamped to [0.1, 0.5] of the last. Logits and gradients are two
 * sgemm calls per evaluation (the data stay float32, the iterate and
 * the L-BFGS memory are double). It stops at the first of:
 *   - max |g| <= grad_tol                         (LINPROBE_STOP_GRAD)
 *   - f_prev - f <= loss_tol * max(1, |f|)         (LINPROBE_STOP_LOSS)
 *   - the line search finds no decrease in 40 trials; with float32 logits
 *     this means the loss is flat to its rounding (LINPROBE_STOP_LINE_SEARCH)
 *   - max_iter iterations                          (LINPROBE_STOP_MAX_ITER)
 *
 * Model selection: a held-out fraction of train (a permutation drawn from
 * the rng stream (seed, LINPROBE_RNG_STREAM)) scores every lambda of the
 * grid, fitted from the largest lambda down, each warm-started from the
 * previous; the best held-out top-1 wins, ties go to the LARGER lambda.
 * The refit on all train starts from the winner's weights. Without a
 * search (one lambda, holdout 0, or a single train row) the first lambda is
 * fitted on all train. Memory: one standardised float copy of train and of
 * val, plus (n, C) logits; the L-BFGS memory is 2 * history * (dim + 1) * C
 * doubles. Standardisation
 * uses the mean and std (ddof 0) of all train rows (held-out part included);
 * a constant feature (std 0) is set to 0 in train and val. Prediction ties
 * go to the lower class index.
 */
#ifndef LEJEPA_LINPROBE_H
#define LEJEPA_LINPROBE_H

#include <stdint.h>

#define LINPROBE_MAX_LAMBDAS 16
/* "LINPROBE" in ASCII, the stream tag of the held-out permutation. */
#define LINPROBE_RNG_STREAM 0x4c494e50524f4245ull

enum linprobe_stop {
    LINPROBE_STOP_GRAD,
    LINPROBE_STOP_LOSS,
    LINPROBE_STOP_LINE_SEARCH,
    LINPROBE_STOP_MAX_ITER,
};

struct linprobe_options {
    int max_iter;          /* per fit; default 1000 */
    int history;           /* L-BFGS pairs kept; default 10 */
    double grad_tol;       /* default 1e-6 */
    double loss_tol;       /* default 1e-9 */
    double holdout;        /* fraction of train held out; default 0.1 */
    uint64_t seed;         /* default 0 */
    int n_lambdas;         /* 1..LINPROBE_MAX_LAMBDAS; 1 skips the search */
    double lambdas[LINPROBE_MAX_LAMBDAS];   /* default 1e-1, 1e-2 .. 1e-6 */
    /* Rows (n_stats_rows, dim) whose mean and std standardise train and
     * val instead of train's own; default NULL. A few-shot probe passes
     * all train embeddings: a handful of labelled rows gives near-zero
     * stds that blow noise features up. */
    const float *stats_rows;
    int64_t n_stats_rows;
};

/* Fills o with the defaults above. */
void linprobe_default_options(struct linprobe_options *o);

/* One fit on already standardised rows. */
struct linprobe_fit_info {
    int iterations;
    int evaluations;       /* objective + gradient evaluations */
    double loss;           /* final objective */
    double grad_max;       /* final max |g| */
    enum linprobe_stop stop;
};

/* Minimises the objective on x (n, dim) with labels y (n) in [0, C).
 * params ((dim + 1) * C doubles: W row-major (dim, C), then b (C)) holds
 * the starting point (zeros for a cold start) and receives the solution.
 * Returns 0, or -1 with the reason in err (ERR_LEN): bad sizes or labels,
 * a non-finite objective. */
int linprobe_fit(const float *x, const int32_t *y, int64_t n, int dim,
                 int n_classes, double lambda,
                 const struct linprobe_options *o, double *params,
                 struct linprobe_fit_info *info, char *err);

/* Class predictions (n) of params for x (n, dim): argmax of x W + b. */
void linprobe_predict(const float *x, int64_t n, int dim, int n_classes,
                      const double *params, int32_t *pred);

struct linprobe_result {
    double top1;              /* on val */
    double lambda;            /* chosen */
    double holdout_top1;      /* of the chosen lambda, -1 without a search */
    int iterations;           /* of the final fit on all train */
    int iterations_total;     /* search included */
    int evaluations_total;    /* objective + gradient evaluations, all fits */
    double train_loss;        /* final objective */
    enum linprobe_stop stop;  /* of the final fit */
};

/* The whole probe: standardise, choose lambda, refit, score val.
 *   train (n_train, dim), train_labels (n_train), val (n_val, dim),
 *   val_labels (n_val), pred (n_val) or NULL.
 * o may be NULL for the defaults. Returns 0, or -1 with the reason in err:
 * bad sizes or options, a label outside [0, n_classes), non-finite input. */
int linprobe_run(const float *train, const int32_t *train_labels,
                 int64_t n_train, const float *val, const int32_t *val_labels,
                 int64_t n_val, int dim, int n_classes,
                 const struct linprobe_options *o, struct linprobe_result *res,
                 int32_t *pred, char *err);

#endif
