/*
 * test_knn.c: the DINO kNN classifier: tiny cases computed by hand (tie
 * rules, exp(sim / T) weights that overturn a majority), the blocked
 * sgemm path against the plain double reference across block boundaries,
 * and the clusters fixture of tools/eval_reference.py (numpy, float64), which
 * must be matched exactly, prediction by prediction.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_clusters.h"
#include "json.h"
#include "knn.h"
#include "testing.h"
#include "util.h"

/* Train rows for the hand cases, 2-D:
 *   t0 (1, 0) class 0      t1 (0, 1) class 1     t2 (1, 1) class 1
 *   t3 (2, 0) class 2      t4 (-1, 0) class 0
 * For v = (1, 0): sims 1, 0, 0.7071, 1, -1: t0 and t3 tie at 1. */
static const float hand_train[] = {1, 0, 0, 1, 1, 1, 2, 0, -1, 0};
static const int32_t hand_labels[] = {0, 1, 1, 2, 0};

static void test_ties_by_hand(void)
{
    char err[ERR_LEN];
    const float val[] = {1, 0, 0, 3};
    const int32_t val_labels[] = {0, 1};
    int32_t pred[2];
    double top1;
    /* k = 1: t0 and t3 tie; the lower index (t0, class 0) ranks first. */
    CU_ASSERT_EQUAL_FATAL(knn_top1(hand_train, hand_labels, 5, val, val_labels,
                                   1, 2, 3, 1, 0.07f, &top1, pred, err), 0);
    CU_ASSERT_EQUAL(pred[0], 0);
    CU_ASSERT_DOUBLE_EQUAL(top1, 1.0, 0);
    /* k = 3 for v = (1, 0): t0, t3, t2. Votes class 0 = class 2 =
     * exp(1 / 0.07) = 1600320.19, class 1 = exp(0.7071 / 0.07) = 24380.17:
     * the class tie goes to the lower class, 0.
     * For v = (0, 3): t1 (1), t2 (0.7071), then t0, t3, t4 all at 0 and t0
     * enters: class 1 = 1600320.19 + 24380.17 beats class 0 = 1. */
    CU_ASSERT_EQUAL_FATAL(knn_top1(hand_train, hand_labels, 5, val, val_labels,
                                   2, 2, 3, 3, 0.07f, &top1, pred, err), 0);
    CU_ASSERT_EQUAL(pred[0], 0);
    CU_ASSERT_EQUAL(pred[1], 1);
    CU_ASSERT_DOUBLE_EQUAL(top1, 1.0, 0);
    /* The reference follows the same rules. */
    int32_t ref[2];
    CU_ASSERT_DOUBLE_EQUAL(knn_top1_ref(hand_train, hand_labels, 5, val,
                                        val_labels, 2, 2, 3, 3, 0.07f, ref),
                           1.0, 0);
    CU_ASSERT_EQUAL(ref[0], 0);
    CU_ASSERT_EQUAL(ref[1], 1);
}

static void test_weights_by_hand(void)
{
    char err[ERR_LEN];
    /* v = (1, 0); class A (0) has two rows at cos 0.86, class B (1) one row
     * at cos 0.95, class 2 one row far away (cos -1). k = 3:
     *   T = 0.07: A = 2 exp(0.86 / 0.07) = 433159.6 < B = exp(0.95 / 0.07)
     *             = 783423.4: B wins against the majority;
     *   T = 1:    A = 2 exp(0.86) = 4.726 > B = exp(0.95) = 2.586: A wins. */
    const float sa = sqrtf(1.0f - 0.86f * 0.86f), sb = sqrtf(1.0f - 0.95f * 0.95f);
    const float train[] = {0.86f, sa, -1, 0, 0.95f, sb, 0.86f, -sa};
    const int32_t labels[] = {0, 2, 1, 0};
    const float val[] = {3, 0};
    const int32_t val_label[] = {1};
    int32_t pred;
    double top1;
    CU_ASSERT_EQUAL_FATAL(knn_top1(train, labels, 4, val, val_label, 1, 2, 3, 3,
                                   0.07f, &top1, &pred, err), 0);
    CU_ASSERT_EQUAL(pred, 1);
    CU_ASSERT_DOUBLE_EQUAL(top1, 1.0, 0);
    CU_ASSERT_EQUAL_FATAL(knn_top1(train, labels, 4, val, val_label, 1, 2, 3, 3,
                                   1.0f, &top1, &pred, err), 0);
    CU_ASSERT_EQUAL(pred, 0);
    CU_ASSERT_DOUBLE_EQUAL(top1, 0.0, 0);
    /* k larger than the train set is clamped: all four vote; class 2 adds
     * exp(-1 / 0.07), nothing changes. */
    CU_ASSERT_EQUAL_FATAL(knn_top1(train, labels, 4, val, val_label, 1, 2, 3,
                                   20, 0.07f, &top1, &pred, err), 0);
    CU_ASSERT_EQUAL(pred, 1);
}

static void test_zero_vector_and_errors(void)
{
    char err[ERR_LEN];
    /* an all-zero val row has similarity 0 with everything: all five rows
     * tie, k = 2 takes t0 (class 0) and t1 (class 1) with equal weights,
     * class 0 wins the class tie */
    const float val[] = {0, 0};
    const int32_t val_label[] = {0};
    int32_t pred = -1;
    double top1;
    CU_ASSERT_EQUAL(knn_top1(hand_train, hand_labels, 5, val, val_label, 1, 2,
                             3, 2, 0.07f, &top1, &pred, err), 0);
    CU_ASSERT_EQUAL(pred, 0);

    const int32_t bad_labels[] = {0, 1, 3, 2, 0};
    CU_ASSERT_EQUAL(knn_top1(hand_train, bad_labels, 5, val, val_label, 1, 2,
                             3, 2, 0.07f, &top1, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "label 3 at row 2"));
    const float nan_val[] = {NAN, 0};
    CU_ASSERT_EQUAL(knn_top1(hand_train, hand_labels, 5, nan_val, val_label, 1,
                             2, 3, 2, 0.07f, &top1, NULL, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "non-finite"));
    CU_ASSERT_EQUAL(knn_top1(hand_train, hand_labels, 5, val, val_label, 1, 2,
                             3, 2, 0.0f, &top1, NULL, err), -1);
    CU_ASSERT_EQUAL(knn_top1(hand_train, hand_labels, 5, val, val_label, 1, 2,
                             3, 0, 0.07f, &top1, NULL, err), -1);
}

/* 20000 train rows give blocks of 838 val rows: compare the rows around
 * the first two block boundaries and the last ones with the reference. */
static void test_blocks_match_reference(void)
{
    const int64_t n_train = 20000, n_val = 1800;
    const int dim = 8, classes = 5;
    uint64_t seed = 7;
    float *train = xmalloc((size_t)(n_train * dim) * sizeof(float));
    float *val = xmalloc((size_t)(n_val * dim) * sizeof(float));
    int32_t *yt = xmalloc((size_t)n_train * sizeof(int32_t));
    int32_t *yv = xmalloc((size_t)n_val * sizeof(int32_t));
    int32_t *pred = xmalloc((size_t)n_val * sizeof(int32_t));
    for (int64_t i = 0; i < n_train; i++) {
        yt[i] = (int32_t)(testing_rand_u64(&seed) % classes);
        for (int d = 0; d < dim; d++)
            train[i * dim + d] = (float)testing_rand_normal(&seed) +
                                 (d == yt[i] ? 1.5f : 0.0f);
    }
    for (int64_t i = 0; i < n_val; i++) {
        yv[i] = (int32_t)(testing_rand_u64(&seed) % classes);
        for (int d = 0; d < dim; d++)
            val[i * dim + d] = (float)testing_rand_normal(&seed) +
                               (d == yv[i] ? 1.5f : 0.0f);
    }
    char err[ERR_LEN];
    double top1;
    CU_ASSERT_EQUAL_FATAL(knn_top1(train, yt, n_train, val, yv, n_val, dim,
                                   classes, 20, 0.07f, &top1, pred, err), 0);
    int64_t block = KNN_BLOCK_FLOATS / n_train;
    CU_ASSERT_TRUE(block < n_val / 2);
    const int64_t starts[] = {block - 10, 2 * block - 10, n_val - 20};
    int mismatches = 0;
    for (int s = 0; s < 3; s++) {
        int32_t ref[20];
        knn_top1_ref(train, yt, n_train, val + starts[s] * dim,
                     yv + starts[s], 20, dim, classes, 20, 0.07f, ref);
        for (int i = 0; i < 20; i++)
            mismatches += ref[i] != pred[starts[s] + i];
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    int64_t correct = 0;
    for (int64_t i = 0; i < n_val; i++)
        correct += pred[i] == yv[i];
    CU_ASSERT_DOUBLE_EQUAL(top1, (double)correct / (double)n_val, 1e-12);
    printf("\n  blocked kNN 20000 x 1800 (dim 8): top1 %.4f\n", top1);
    free(train);
    free(val);
    free(yt);
    free(yv);
    free(pred);
}

static void test_clusters_fixture(void)
{
    char err[ERR_LEN];
    struct clusters c;
    clusters_load(&c);
    const struct json *knn = json_get(c.expected, "knn");
    CU_ASSERT_PTR_NOT_NULL_FATAL(knn);
    double want_top1 = json_get(knn, "top1")->number;
    int k = (int)json_get(knn, "k")->number;
    float temperature = (float)json_get(knn, "temperature")->number;
    /* the fixture is only meaningful when float32 cannot reorder a top k */
    CU_ASSERT_TRUE(json_get(knn, "min_topk_gap")->number > 4e-6);

    int32_t *pred = xmalloc((size_t)c.nv * sizeof(int32_t));
    double top1;
    CU_ASSERT_EQUAL_FATAL(knn_top1(c.train, c.yt, c.nt, c.val, c.yv, c.nv,
                                   (int)c.dim, c.classes, k, temperature, &top1,
                                   pred, err), 0);
    int mismatches = 0;
    for (int64_t i = 0; i < c.nv; i++)
        mismatches += pred[i] != c.knn_pred[i];
    printf("\n  clusters: top1 %.4f (numpy %.4f), %d differing predictions\n",
           top1, want_top1, mismatches);
    CU_ASSERT_EQUAL(mismatches, 0);
    CU_ASSERT_DOUBLE_EQUAL(top1, want_top1, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(knn_top1_ref(c.train, c.yt, c.nt, c.val, c.yv, c.nv,
                                        (int)c.dim, c.classes, k, temperature,
                                        pred),
                           want_top1, 1e-12);
    free(pred);
    clusters_free(&c);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"equal similarities and equal votes: lower index wins", test_ties_by_hand},
        {"exp(sim/T) weights overturn a majority at T=0.07", test_weights_by_hand},
        {"zero vector, bad labels, NaN, bad T and k", test_zero_vector_and_errors},
        {"sgemm blocks match the double reference", test_blocks_match_reference},
        {"clusters fixture: same predictions as numpy", test_clusters_fixture},
        {NULL, NULL},
    };
    return testing_run("knn", cases);
}
