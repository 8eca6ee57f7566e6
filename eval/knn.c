/*
 * knn.c: the DINO weighted kNN classifier (see knn.h). Similarities come
 * from cblas_sgemm against the raw train rows; the train norms are applied
 * while selecting, so the (possibly large) train matrix is never copied.
 * OpenMP runs the per-row selection between GEMMs, never around them.
 */
#include "knn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "util.h"

/* Rows per block also bounded so the per-row scratch stays small when the
 * train set is tiny. */
#define KNN_MAX_BLOCK_ROWS 4096

static int check_inputs(const float *x, const int32_t *labels, int64_t n,
                        int dim, int n_classes, const char *what, char *err)
{
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= n_classes)
            return errf(err, "knn: %s label %d at row %lld outside [0, %d)",
                        what, labels[i], (long long)i, n_classes);
        const float *row = x + i * (int64_t)dim;
        for (int d = 0; d < dim; d++)
            if (!isfinite(row[d]))
                return errf(err, "knn: %s embedding row %lld has a "
                            "non-finite value at column %d", what,
                            (long long)i, d);
    }
    return 0;
}

/* 1/||row||, or 0 for an all-zero row. */
static float inv_norm(const float *row, int dim)
{
    double ss = 0.0;
    for (int d = 0; d < dim; d++)
        ss += (double)row[d] * row[d];
    return ss > 0.0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
}

/* Inserts (s, j) into the descending list top_sim/top_idx of *count <= k
 * entries. Equal similarities keep their arrival order, and rows arrive in
 * increasing index, so the lower index ranks first. */
static void topk_insert(float *top_sim, int64_t *top_idx, int *count, int k,
                        float s, int64_t j)
{
    if (*count == k && !(s > top_sim[k - 1]))
        return;
    int p = *count < k ? *count : k - 1;
    while (p > 0 && top_sim[p - 1] < s) {
        top_sim[p] = top_sim[p - 1];
        top_idx[p] = top_idx[p - 1];
        p--;
    }
    top_sim[p] = s;
    top_idx[p] = j;
    if (*count < k)
        (*count)++;
}

/* Summed exp(sim / T) votes of the top list; lowest class wins ties. */
static int32_t vote(const float *top_sim, const int64_t *top_idx, int count,
                    const int32_t *train_labels, int n_classes,
                    double temperature, double *votes)
{
    memset(votes, 0, (size_t)n_classes * sizeof *votes);
    for (int i = 0; i < count; i++)
        votes[train_labels[top_idx[i]]] += exp((double)top_sim[i] / temperature);
    int32_t best = 0;
    for (int c = 1; c < n_classes; c++)
        if (votes[c] > votes[best])
            best = c;
    return best;
}

int knn_top1(const float *train, const int32_t *train_labels, int64_t n_train,
             const float *val, const int32_t *val_labels, int64_t n_val,
             int dim, int n_classes, int k, float temperature, double *top1,
             int32_t *pred, char *err)
{
    if (n_train < 1 || n_val < 1 || dim < 1 || n_classes < 1 || k < 1)
        return errf(err, "knn: need n_train, n_val, dim, n_classes, k >= 1 "
                    "(got %lld, %lld, %d, %d, %d)", (long long)n_train,
                    (long long)n_val, dim, n_classes, k);
    if (n_train > INT32_MAX || n_val > INT32_MAX)
        return errf(err, "knn: more than 2^31 rows are not supported");
    if (!(temperature > 0.0f) || !isfinite(temperature))
        return errf(err, "knn: temperature must be a positive number (got %g)",
                    (double)temperature);
    if (check_inputs(train, train_labels, n_train, dim, n_classes, "train",
                     err) != 0 ||
        check_inputs(val, val_labels, n_val, dim, n_classes, "val", err) != 0)
        return -1;
    if (k > n_train)
        k = (int)n_train;

    int64_t block = KNN_BLOCK_FLOATS / n_train;
    if (block < 1)
        block = 1;
    if (block > KNN_MAX_BLOCK_ROWS)
        block = KNN_MAX_BLOCK_ROWS;
    if (block > n_val)
        block = n_val;

    float *inv_train = xmalloc_aligned((size_t)n_train * sizeof(float));
    float *vblock = xmalloc_aligned((size_t)(block * dim) * sizeof(float));
    float *sims = xmalloc_aligned((size_t)(block * n_train) * sizeof(float));
    float *top_sim = xmalloc((size_t)(block * k) * sizeof(float));
    int64_t *top_idx = xmalloc((size_t)(block * k) * sizeof(int64_t));
    double *votes = xmalloc((size_t)(block * n_classes) * sizeof(double));

    for (int64_t j = 0; j < n_train; j++)
        inv_train[j] = inv_norm(train + j * dim, dim);

    int64_t correct = 0;
    for (int64_t v0 = 0; v0 < n_val; v0 += block) {
        int64_t rows = n_val - v0 < block ? n_val - v0 : block;
        for (int64_t r = 0; r < rows; r++) {
            const float *src = val + (v0 + r) * dim;
            float s = inv_norm(src, dim);
            for (int d = 0; d < dim; d++)
                vblock[r * dim + d] = src[d] * s;
        }
        /* sims (rows, n_train) = vblock (rows, dim) . train^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows,
                    (int)n_train, dim, 1.0f, vblock, dim, train, dim, 0.0f,
                    sims, (int)n_train);
        int64_t block_correct = 0;
        #pragma omp parallel for schedule(static) reduction(+:block_correct)
        for (int64_t r = 0; r < rows; r++) {
            const float *srow = sims + r * n_train;
            float *ts = top_sim + r * k;
            int64_t *ti = top_idx + r * k;
            int count = 0;
            for (int64_t j = 0; j < n_train; j++)
                topk_insert(ts, ti, &count, k, srow[j] * inv_train[j], j);
            int32_t p = vote(ts, ti, count, train_labels, n_classes,
                             temperature, votes + r * n_classes);
            if (pred)
                pred[v0 + r] = p;
            block_correct += p == val_labels[v0 + r];
        }
        correct += block_correct;
    }
    *top1 = (double)correct / (double)n_val;

    util_free_aligned(inv_train);
    util_free_aligned(vblock);
    util_free_aligned(sims);
    free(top_sim);
    free(top_idx);
    free(votes);
    return 0;
}

double knn_top1_ref(const float *train, const int32_t *train_labels,
                    int64_t n_train, const float *val,
                    const int32_t *val_labels, int64_t n_val, int dim,
                    int n_classes, int k, float temperature, int32_t *pred)
{
    if (k > n_train)
        k = (int)n_train;
    double *sim = xmalloc((size_t)n_train * sizeof(double));
    double *top = xmalloc((size_t)k * sizeof(double));
    int64_t *idx = xmalloc((size_t)k * sizeof(int64_t));
    double *votes = xmalloc((size_t)n_classes * sizeof(double));
    uint8_t *taken = xmalloc((size_t)n_train);
    int64_t correct = 0;
    for (int64_t v = 0; v < n_val; v++) {
        const float *a = val + v * dim;
        double na = 0.0;
        for (int d = 0; d < dim; d++)
            na += (double)a[d] * a[d];
        for (int64_t j = 0; j < n_train; j++) {
            const float *b = train + j * dim;
            double dot = 0.0, nb = 0.0;
            for (int d = 0; d < dim; d++) {
                dot += (double)a[d] * b[d];
                nb += (double)b[d] * b[d];
            }
            sim[j] = na > 0.0 && nb > 0.0 ? dot / sqrt(na * nb) : 0.0;
        }
        /* k passes of "largest not yet taken, lowest index on ties" */
        memset(taken, 0, (size_t)n_train);
        for (int i = 0; i < k; i++) {
            int64_t best = -1;
            for (int64_t j = 0; j < n_train; j++)
                if (!taken[j] && (best < 0 || sim[j] > sim[best]))
                    best = j;
            taken[best] = 1;
            idx[i] = best;
            top[i] = sim[best];
        }
        memset(votes, 0, (size_t)n_classes * sizeof *votes);
        for (int i = 0; i < k; i++)
            votes[train_labels[idx[i]]] += exp(top[i] / (double)temperature);
        int32_t p = 0;
        for (int c = 1; c < n_classes; c++)
            if (votes[c] > votes[p])
                p = c;
        pred[v] = p;
        correct += p == val_labels[v];
    }
    free(sim);
    free(top);
    free(idx);
    free(votes);
    free(taken);
    return (double)correct / (double)n_val;
}
