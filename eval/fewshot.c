/*
 * fewshot.c: balanced k-shot samples and the kNN / linear probe on them
 * (see fewshot.h). The probes themselves live in knn.c and linprobe.c;
 * this file only samples, gathers rows and averages over seeds.
 */
#include "fewshot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knn.h"
#include "linprobe.h"
#include "rng.h"
#include "util.h"

static const char *const method_names[FEWSHOT_METHODS] = {"knn", "linear"};

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int fewshot_options_init(struct fewshot_options *o, const char *shots,
                         int seeds, char *err)
{
    memset(o, 0, sizeof *o);
    if (seeds < 1 || seeds > FEWSHOT_MAX_SEEDS)
        return errf(err, "--seeds %d: want 1..%d", seeds, FEWSHOT_MAX_SEEDS);
    o->seeds = seeds;
    const char *p = shots;
    int n = 0;
    for (;;) {
        char *end;
        errno = 0;
        long k = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || k < 1 ||
            k > FEWSHOT_MAX_K)
            return errf(err, "--shots %s: want a comma list of 1..%d samples "
                        "per class, e.g. 1,5,10,100", shots, FEWSHOT_MAX_K);
        if (n == FEWSHOT_MAX_SHOTS)
            return errf(err, "--shots %s: at most %d shot counts", shots,
                        FEWSHOT_MAX_SHOTS);
        o->shots[n++] = (int)k;
        if (!*end)
            break;
        p = end + 1;
    }
    qsort(o->shots, (size_t)n, sizeof o->shots[0], cmp_int);
    for (int i = 0; i < n; i++)
        if (o->n_shots == 0 || o->shots[o->n_shots - 1] != o->shots[i])
            o->shots[o->n_shots++] = o->shots[i];
    for (int m = 0; m < FEWSHOT_METHODS; m++)
        for (int s = 0; s < o->n_shots; s++) {
            snprintf(o->mean_name[m][s], FEWSHOT_NAME_LEN,
                     "fewshot_%s_top1_%d", method_names[m], o->shots[s]);
            snprintf(o->std_name[m][s], FEWSHOT_NAME_LEN,
                     "fewshot_%s_top1_%d_std", method_names[m], o->shots[s]);
        }
    return 0;
}

int64_t fewshot_sample(int64_t *rows, const int32_t *labels, int64_t n,
                       int n_classes, int k, uint64_t seed,
                       int *short_classes)
{
    CHECK(n_classes > 0 && k > 0);
    /* Counting sort by class keeps each class's rows in index order, the
     * order the shuffle starts from. */
    int64_t *start = xcalloc((size_t)n_classes + 1, sizeof *start);
    int64_t *by_class = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *by_class);
    for (int64_t i = 0; i < n; i++) {
        CHECK(labels[i] >= 0 && labels[i] < n_classes);
        start[labels[i] + 1]++;
    }
    for (int c = 0; c < n_classes; c++)
        start[c + 1] += start[c];
    int64_t *fill = xmalloc((size_t)n_classes * sizeof *fill);
    memcpy(fill, start, (size_t)n_classes * sizeof *fill);
    for (int64_t i = 0; i < n; i++)
        by_class[fill[labels[i]]++] = i;

    int64_t count = 0;
    int shorts = 0;
    for (int c = 0; c < n_classes; c++) {
        int64_t *v = by_class + start[c], nc = start[c + 1] - start[c];
        int64_t take = nc < k ? nc : k;
        shorts += nc > 0 && nc < k;
        struct rng r;
        rng_init(&r, seed, FEWSHOT_RNG_STREAM, (uint64_t)c, 0);
        /* Partial Fisher-Yates: position i gets a uniform pick of the rest,
         * so the first k of a seed are the first k of its larger samples. */
        for (int64_t i = 0; i < take; i++) {
            int64_t j = i + (int64_t)rng_below(&r, (uint64_t)(nc - i));
            int64_t t = v[i];
            v[i] = v[j];
            v[j] = t;
            rows[count++] = v[i];
        }
    }
    qsort(rows, (size_t)count, sizeof *rows, cmp_i64);
    if (short_classes)
        *short_classes = shorts;
    free(start);
    free(by_class);
    free(fill);
    return count;
}

/* Mean and standard deviation (ddof 1; 0 for one seed) of s->top1. */
static void summarise(struct fewshot_stat *s, int seeds)
{
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < seeds; i++)
        sum += s->top1[i];
    s->mean = sum / seeds;
    for (int i = 0; i < seeds; i++)
        sq += (s->top1[i] - s->mean) * (s->top1[i] - s->mean);
    s->std = seeds > 1 ? sqrt(sq / (seeds - 1)) : 0.0;
}

int fewshot_run(const struct fewshot_options *o, bool knn, bool linear,
                const float *train, const int32_t *train_labels,
                int64_t n_train, const float *val, const int32_t *val_labels,
                int64_t n_val, int dim, int n_classes,
                struct fewshot_result *res, char *err)
{
    memset(res, 0, sizeof *res);
    if (n_train < 1 || n_val < 1 || dim < 1 || n_classes < 1)
        return errf(err, "fewshot: need train and val rows (got %lld, %lld)",
                    (long long)n_train, (long long)n_val);
    int rc = -1;
    int64_t *rows = xmalloc((size_t)n_train * sizeof *rows);
    float *x = xmalloc_aligned((size_t)n_train * (size_t)dim * sizeof *x);
    int32_t *y = xmalloc((size_t)n_train * sizeof *y);
    for (int s = 0; s < o->n_shots; s++) {
        int k = o->shots[s];
        struct linprobe_options lo;
        linprobe_default_options(&lo);
        lo.stats_rows = train;
        lo.n_stats_rows = n_train;
        if (k < FEWSHOT_SEARCH_MIN_SHOTS) {
            lo.n_lambdas = 1;
            lo.lambdas[0] = FEWSHOT_SMALL_LAMBDA;
        }
        for (int seed = 0; seed < o->seeds; seed++) {
            int shorts;
            int64_t n = fewshot_sample(rows, train_labels, n_train, n_classes,
                                       k, (uint64_t)seed, &shorts);
            if (seed == 0) {
                res->rows[s] = n;
                res->short_classes[s] = shorts;
            }
            for (int64_t i = 0; i < n; i++) {
                memcpy(x + i * dim, train + rows[i] * dim,
                       (size_t)dim * sizeof *x);
                y[i] = train_labels[rows[i]];
            }
            if (knn &&
                knn_top1(x, y, n, val, val_labels, n_val, dim, n_classes,
                         KNN_DEFAULT_K, KNN_DEFAULT_TEMPERATURE,
                         &res->stat[FEWSHOT_KNN][s].top1[seed], NULL, err) < 0)
                goto cleanup;
            if (linear) {
                struct linprobe_result lr;
                lo.seed = (uint64_t)seed;
                if (linprobe_run(x, y, n, val, val_labels, n_val, dim,
                                 n_classes, &lo, &lr, NULL, err) < 0)
                    goto cleanup;
                res->stat[FEWSHOT_LINEAR][s].top1[seed] = lr.top1;
            }
        }
        for (int m = 0; m < FEWSHOT_METHODS; m++)
            summarise(&res->stat[m][s], o->seeds);
    }
    rc = 0;
cleanup:
    free(rows);
    util_free_aligned(x);
    free(y);
    return rc;
}
