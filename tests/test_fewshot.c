/*
 * test_fewshot.c: few-shot evaluation (eval/fewshot.h): the balanced sample
 * (k rows per class, all of a smaller class and that counted, ascending,
 * deterministic per seed, nested across k, about uniform within a class),
 * the --shots / --seeds parser and metric names, and the scores on the
 * committed overlapping-clusters fixture: they grow with k, 100-shot comes
 * close to the full probes, and a k above every class size reproduces the
 * full kNN and linear probe exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute.h"
#include "eval.h"
#include "eval_clusters.h"
#include "fewshot.h"
#include "knn.h"
#include "linprobe.h"
#include "testing.h"
#include "util.h"

/* Classes of sizes 50, 30, 3, 0, 20, interleaved in index order. */
#define N_ROWS 103
static void make_labels(int32_t *y)
{
    static const int size[5] = {50, 30, 3, 0, 20};
    int left[5];
    memcpy(left, size, sizeof left);
    int i = 0;
    while (i < N_ROWS)
        for (int c = 0; c < 5; c++)
            if (left[c] > 0) {
                y[i++] = c;
                left[c]--;
            }
}

static void test_sample_balance(void)
{
    int32_t y[N_ROWS];
    make_labels(y);
    int64_t rows[N_ROWS];
    int shorts = -1;
    int64_t n = fewshot_sample(rows, y, N_ROWS, 5, 5, 0, &shorts);
    /* 5 + 5 + 3 (all of class 2) + 0 + 5 */
    CU_ASSERT_EQUAL(n, 18);
    CU_ASSERT_EQUAL(shorts, 1);
    int per_class[5] = {0};
    for (int64_t i = 0; i < n; i++) {
        CU_ASSERT_FATAL(rows[i] >= 0 && rows[i] < N_ROWS);
        if (i > 0)
            CU_ASSERT(rows[i] > rows[i - 1]);   /* ascending, distinct */
        per_class[y[rows[i]]]++;
    }
    CU_ASSERT(per_class[0] == 5 && per_class[1] == 5 && per_class[2] == 3 &&
              per_class[3] == 0 && per_class[4] == 5);
    /* k above every class: everything, four short classes, in order */
    n = fewshot_sample(rows, y, N_ROWS, 5, 1000, 3, &shorts);
    CU_ASSERT_EQUAL(n, N_ROWS);
    CU_ASSERT_EQUAL(shorts, 4);
    for (int64_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(rows[i], i);
}

static void test_sample_determinism(void)
{
    int32_t y[N_ROWS];
    make_labels(y);
    int64_t a[N_ROWS], b[N_ROWS], c[N_ROWS], big[N_ROWS];
    int64_t na = fewshot_sample(a, y, N_ROWS, 5, 5, 7, NULL);
    int64_t nb = fewshot_sample(b, y, N_ROWS, 5, 5, 7, NULL);
    int64_t nc = fewshot_sample(c, y, N_ROWS, 5, 5, 8, NULL);
    CU_ASSERT_EQUAL_FATAL(na, nb);
    CU_ASSERT_EQUAL_FATAL(na, nc);
    CU_ASSERT_EQUAL(memcmp(a, b, (size_t)na * sizeof *a), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a, c, (size_t)na * sizeof *a), 0);
    /* the 5-shot sample of seed 7 lies inside its 10-shot sample */
    int64_t nbig = fewshot_sample(big, y, N_ROWS, 5, 10, 7, NULL);
    CU_ASSERT_EQUAL(nbig, 10 + 10 + 3 + 10);
    for (int64_t i = 0; i < na; i++) {
        int found = 0;
        for (int64_t j = 0; j < nbig; j++)
            found |= big[j] == a[i];
        CU_ASSERT(found);
    }
}

/* 1-shot of a 10-row class over 4000 seeds: each row should come up about
 * 400 times (binomial sd 19); 300..500 is over 5 sd wide, while a shuffle
 * that favours the first rows or never reaches the last fails by far. */
static void test_sample_uniform(void)
{
    int32_t y[20];
    for (int i = 0; i < 20; i++)
        y[i] = i % 2;
    int hits[20] = {0};
    for (uint64_t s = 0; s < 4000; s++) {
        int64_t rows[20];
        int64_t n = fewshot_sample(rows, y, 20, 2, 1, s, NULL);
        CU_ASSERT_EQUAL_FATAL(n, 2);
        hits[rows[0]]++;
        hits[rows[1]]++;
    }
    for (int i = 0; i < 20; i++)
        CU_ASSERT(hits[i] > 300 && hits[i] < 500);
}

static void test_options(void)
{
    struct fewshot_options o;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(fewshot_options_init(&o, "100,5,1,5", 3, err), 0);
    CU_ASSERT_EQUAL(o.n_shots, 3);
    CU_ASSERT(o.shots[0] == 1 && o.shots[1] == 5 && o.shots[2] == 100);
    CU_ASSERT_EQUAL(o.seeds, 3);
    CU_ASSERT_STRING_EQUAL(o.mean_name[FEWSHOT_LINEAR][1], "fewshot_linear_top1_5");
    CU_ASSERT_STRING_EQUAL(o.std_name[FEWSHOT_LINEAR][1],
                           "fewshot_linear_top1_5_std");
    CU_ASSERT_STRING_EQUAL(o.mean_name[FEWSHOT_KNN][2], "fewshot_knn_top1_100");
    CU_ASSERT_STRING_EQUAL(o.std_name[FEWSHOT_KNN][0], "fewshot_knn_top1_1_std");
    CU_ASSERT_EQUAL_FATAL(fewshot_options_init(&o, "100000", 1, err), 0);
    CU_ASSERT(strlen(o.std_name[FEWSHOT_LINEAR][0]) < FEWSHOT_NAME_LEN - 1);
    static const char *const bad[] = {"0", "", "5,", "a", "1,,2", "-3",
                                      "100001", "1,2,3,4,5,6,7,8,9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CU_ASSERT_EQUAL(fewshot_options_init(&o, bad[i], 3, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "--shots"));
    }
    CU_ASSERT_EQUAL(fewshot_options_init(&o, "5", 0, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "--seeds"));
    CU_ASSERT_EQUAL(fewshot_options_init(&o, "5", FEWSHOT_MAX_SEEDS + 1, err), -1);
}

/* The fixture's 10 overlapping clusters (180..220 train rows per class):
 * full kNN 0.86, full linear 0.914 (clusters_expected.json). */
static void test_clusters(void)
{
    struct clusters c;
    clusters_load(&c);
    struct fewshot_options o;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(fewshot_options_init(&o, "1,5,100,1000", 3, err), 0);
    struct fewshot_result *r = xmalloc(sizeof *r);
    CU_ASSERT_EQUAL_FATAL(fewshot_run(&o, true, true, c.train, c.yt, c.nt,
                                      c.val, c.yv, c.nv, (int)c.dim, c.classes,
                                      r, err), 0);
    double knn_full;
    struct linprobe_result lin;
    CU_ASSERT_EQUAL_FATAL(knn_top1(c.train, c.yt, c.nt, c.val, c.yv, c.nv,
                                   (int)c.dim, c.classes, KNN_DEFAULT_K,
                                   KNN_DEFAULT_TEMPERATURE, &knn_full, NULL,
                                   err), 0);
    CU_ASSERT_EQUAL_FATAL(linprobe_run(c.train, c.yt, c.nt, c.val, c.yv, c.nv,
                                       (int)c.dim, c.classes, NULL, &lin, NULL,
                                       err), 0);
    const struct fewshot_stat *k = r->stat[FEWSHOT_KNN];
    const struct fewshot_stat *l = r->stat[FEWSHOT_LINEAR];
    printf("\n  full: knn %.4f linear %.4f", knn_full, lin.top1);
    for (int s = 0; s < o.n_shots; s++)
        printf("\n  %4d-shot (%lld rows): knn %.4f +- %.4f, linear %.4f +- %.4f",
               o.shots[s], (long long)r->rows[s], k[s].mean, k[s].std,
               l[s].mean, l[s].std);
    printf("\n");
    CU_ASSERT_EQUAL(r->rows[0], 10);
    CU_ASSERT_EQUAL(r->rows[1], 50);
    CU_ASSERT_EQUAL(r->rows[2], 1000);
    CU_ASSERT_EQUAL(r->short_classes[2], 0);
    /* more shots, better scores; 1-shot well above chance (0.1) */
    for (int m = 0; m < FEWSHOT_METHODS; m++) {
        const struct fewshot_stat *st = r->stat[m];
        CU_ASSERT(st[0].mean > 0.25);
        CU_ASSERT(st[0].mean < st[1].mean && st[1].mean < st[2].mean);
        CU_ASSERT(st[0].std > 0);   /* different samples, different scores */
        for (int s = 0; s < o.n_shots; s++)
            for (int i = 0; i < o.seeds; i++)
                CU_ASSERT(st[s].top1[i] >= 0 && st[s].top1[i] <= 1);
    }
    /* 100-shot (half of train) comes within 3 points of the full probes */
    CU_ASSERT(fabs(k[2].mean - knn_full) <= 0.03);
    CU_ASSERT(fabs(l[2].mean - lin.top1) <= 0.03);
    /* 1000-shot takes every row: the full kNN on every seed; seed 0 of the
     * linear probe is the full probe (same rows, order and options) */
    CU_ASSERT_EQUAL(r->rows[3], c.nt);
    CU_ASSERT_EQUAL(r->short_classes[3], c.classes);
    for (int i = 0; i < o.seeds; i++)
        CU_ASSERT_EQUAL(k[3].top1[i], knn_full);
    CU_ASSERT_EQUAL(k[3].std, 0.0);
    CU_ASSERT_EQUAL(l[3].top1[0], lin.top1);
    free(r);
    clusters_free(&c);
}

/* Only the methods asked for run; their mean/std of one seed is its value
 * with std 0. */
static void test_methods_and_one_seed(void)
{
    struct clusters c;
    clusters_load(&c);
    struct fewshot_options o;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(fewshot_options_init(&o, "5", 1, err), 0);
    struct fewshot_result *r = xmalloc(sizeof *r);
    CU_ASSERT_EQUAL_FATAL(fewshot_run(&o, true, false, c.train, c.yt, c.nt,
                                      c.val, c.yv, c.nv, (int)c.dim, c.classes,
                                      r, err), 0);
    CU_ASSERT(r->stat[FEWSHOT_KNN][0].mean > 0.25);
    CU_ASSERT_EQUAL(r->stat[FEWSHOT_KNN][0].mean, r->stat[FEWSHOT_KNN][0].top1[0]);
    CU_ASSERT_EQUAL(r->stat[FEWSHOT_KNN][0].std, 0.0);
    CU_ASSERT_EQUAL(r->stat[FEWSHOT_LINEAR][0].top1[0], 0.0);   /* not run */
    free(r);
    clusters_free(&c);
}

/* eval_tasks_embed on unlabelled rows (label -1, PROTOCOL.md) or one
 * class: no kNN, linear or few-shot result but one system note (none when
 * no label task was asked); with the labels back, all. */
static void test_unlabelled_rows(void)
{
    struct clusters c;
    clusters_load(&c);
    struct fewshot_options o;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(fewshot_options_init(&o, "5", 1, err), 0);
    struct eval_result *r = xcalloc(EVAL_EMBED_RESULTS, sizeof *r);
    unsigned tasks = EVAL_TASK_KNN | EVAL_TASK_LINEAR;
    int32_t *none = xmalloc((size_t)c.nt * sizeof *none);
    int32_t *one = xcalloc((size_t)c.nv, sizeof *one);
    for (int64_t i = 0; i < c.nt; i++)
        none[i] = -1;
    CU_ASSERT_EQUAL(eval_tasks_embed(c.train, none, c.nt, c.val, c.yv, c.nv, (int)c.dim,
                                     tasks, &o, 7, r, err), 1);
    CU_ASSERT_EQUAL(r[0].source, MSG_SOURCE_SYSTEM);
    CU_ASSERT_STRING_EQUAL(r[0].keys[0], "eval_unlabelled");
    none[0] = c.yt[0]; /* one unlabelled row is enough to skip */
    none[c.nt - 1] = -1;
    CU_ASSERT_EQUAL(eval_tasks_embed(c.train, none, c.nt, c.val, c.yv, c.nv, (int)c.dim,
                                     tasks, &o, 7, r, err), 1);
    int32_t *yt1 = xcalloc((size_t)c.nt, sizeof *yt1);
    CU_ASSERT_EQUAL(eval_tasks_embed(c.train, yt1, c.nt, c.val, one, c.nv, (int)c.dim,
                                     tasks, &o, 7, r, err), 1);
    CU_ASSERT_EQUAL(eval_tasks_embed(c.train, yt1, c.nt, c.val, one, c.nv, (int)c.dim,
                                     EVAL_TASK_SEGMAP, &o, 7, r, err), 0);
    CU_ASSERT_EQUAL(eval_tasks_embed(c.train, c.yt, c.nt, c.val, c.yv, c.nv, (int)c.dim,
                                     tasks, &o, 7, r, err), 4);
    free(yt1);
    free(one);
    free(none);
    free(r);
    clusters_free(&c);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* libgomp spinning on a shared 2-core machine made this suite 10x
     * slower; lejepa-eval does the same (compute.h). */
    compute_passive_reexec(argv);
    static const struct testing_case cases[] = {
        {"sample: k per class, short classes whole", test_sample_balance},
        {"sample: same seed same rows, nested in k", test_sample_determinism},
        {"sample: about uniform within a class", test_sample_uniform},
        {"--shots / --seeds and metric names", test_options},
        {"cluster fixture: sensible few-shot scores", test_clusters},
        {"only the asked methods; one seed", test_methods_and_one_seed},
        {"unlabelled rows: no label task", test_unlabelled_rows},
        {NULL, NULL},
    };
    return testing_run("fewshot", cases);
}
