/*
 * test_evalprog_offline.c: `lejepa-eval --train PREFIX --val PREFIX` on
 * .npy files written here (three separated clusters; int32 labels for one
 * split, int64 for the other): the printed knn_top1 / linear_top1 must be
 * the numbers knn_top1() and linprobe_run() give in this process, --json
 * must parse and carry them, --shots adds the few-shot names (k above every
 * class: the full kNN), and bad files (missing, wrong label dtype or
 * length, NaN embeddings, dim mismatch) must exit 2 naming the file.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "knn.h"
#include "linprobe.h"
#include "npy.h"
#include "testing.h"
#include "util.h"

#define DIM 12
#define CLASSES 4
#define N_TRAIN 400
#define N_VAL 200

struct data {
    float train[N_TRAIN * DIM], val[N_VAL * DIM];
    int32_t ytrain[N_TRAIN], yval[N_VAL];
};

/* Class c centred on 3 * e_c with N(0, 1) noise: separable but not perfectly. */
static void make(uint64_t *rng, float *x, int32_t *y, int n)
{
    for (int i = 0; i < n; i++) {
        y[i] = (int32_t)(testing_rand_u64(rng) % CLASSES);
        for (int d = 0; d < DIM; d++)
            x[(size_t)i * DIM + d] = (float)testing_rand_normal(rng) +
                                     (d == y[i] ? 3.0f : 0.0f);
    }
}

static void write_split(const char *prefix, const float *x, const int32_t *y, int n,
                        bool int64_labels)
{
    char path[4200], err[ERR_LEN];
    int64_t shape[2] = {n, DIM};
    snprintf(path, sizeof path, "%s.emb.npy", prefix);
    CU_ASSERT_FATAL(npy_write(path, NPY_F32, 2, shape, x, err) == 0);
    snprintf(path, sizeof path, "%s.labels.npy", prefix);
    if (int64_labels) {
        int64_t *y64 = xmalloc((size_t)n * sizeof *y64);
        for (int i = 0; i < n; i++)
            y64[i] = y[i];
        CU_ASSERT_FATAL(npy_write(path, NPY_I64, 1, shape, y64, err) == 0);
        free(y64);
    } else {
        CU_ASSERT_FATAL(npy_write(path, NPY_I32, 1, shape, y, err) == 0);
    }
}

static double line_value(const char *out, const char *key)
{
    char want[64];
    snprintf(want, sizeof want, "\n%s ", key);
    const char *p = strstr(out, want);
    if (!p && strncmp(out, want + 1, strlen(want + 1)) == 0)
        p = out - 1;
    return p ? atof(p + strlen(want)) : NAN;
}

static void test_offline(void)
{
    static struct data d;
    uint64_t rng = 42;
    make(&rng, d.train, d.ytrain, N_TRAIN);
    make(&rng, d.val, d.yval, N_VAL);
    char *dir = testing_tmpdir(), tr[4096], va[4096], args[9000];
    snprintf(tr, sizeof tr, "%s/tr", dir);
    snprintf(va, sizeof va, "%s/va", dir);
    write_split(tr, d.train, d.ytrain, N_TRAIN, false);
    write_split(va, d.val, d.yval, N_VAL, true);

    double knn;
    char err[ERR_LEN];
    CU_ASSERT_FATAL(knn_top1(d.train, d.ytrain, N_TRAIN, d.val, d.yval, N_VAL, DIM,
                             CLASSES, KNN_DEFAULT_K, KNN_DEFAULT_TEMPERATURE, &knn,
                             NULL, err) == 0);
    struct linprobe_result lin;
    CU_ASSERT_FATAL(linprobe_run(d.train, d.ytrain, N_TRAIN, d.val, d.yval, N_VAL, DIM,
                                 CLASSES, NULL, &lin, NULL, err) == 0);
    CU_ASSERT(knn > 0.8 && knn < 1.0);
    CU_ASSERT(lin.top1 > 0.8 && lin.top1 < 1.0);

    static char out[65536];
    snprintf(args, sizeof args, "--train '%s' --val '%s' --threads 2", tr, va);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 0);
    CU_ASSERT_DOUBLE_EQUAL(line_value(out, "knn_top1"), knn, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(line_value(out, "linear_top1"), lin.top1, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(line_value(out, "linear_lambda"), lin.lambda, 1e-5 * lin.lambda);

    snprintf(args, sizeof args, "--train '%s' --val '%s' --tasks knn --json", tr, va);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 0);
    const char *brace = strstr(out, "\n{");
    brace = out[0] == '{' ? out : brace ? brace + 1 : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(brace);
    struct json *j = json_parse(brace, strcspn(brace, "\n"), 8, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const struct json *v = json_get(j, "knn_top1");
    CU_ASSERT_PTR_NOT_NULL(v);
    if (v)
        CU_ASSERT_DOUBLE_EQUAL(v->number, knn, 1e-12);
    CU_ASSERT_PTR_NULL(json_get(j, "linear_top1"));
    v = json_get(j, "n_val");
    CU_ASSERT(v && v->number == N_VAL);
    json_free(j);

    /* few-shot: 1000 per class takes every row, so the kNN is the full one */
    snprintf(args, sizeof args, "--train '%s' --val '%s' --tasks knn --shots 1000,2 "
             "--seeds 2 --json --threads 2", tr, va);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 0);
    brace = strstr(out, "\n{");
    brace = out[0] == '{' ? out : brace ? brace + 1 : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(brace);
    j = json_parse(brace, strcspn(brace, "\n"), 8, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    v = json_get(j, "fewshot_knn_top1_1000");
    CU_ASSERT(v && v->number == knn);
    v = json_get(j, "fewshot_knn_top1_1000_std");
    CU_ASSERT(v && v->number == 0);
    v = json_get(j, "fewshot_knn_top1_2");
    CU_ASSERT(v && v->number > 0.25 && v->number <= 1);
    CU_ASSERT_PTR_NOT_NULL(json_get(j, "fewshot_knn_top1_2_std"));
    CU_ASSERT_PTR_NULL(json_get(j, "fewshot_linear_top1_2"));
    json_free(j);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "all of their rows are taken"));
    snprintf(args, sizeof args, "--train '%s' --val '%s' --shots 1,0", tr, va);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--shots 1,0"));
    snprintf(args, sizeof args, "--train '%s' --val '%s' --seeds 2", tr, va);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "needs --shots"));

    /* bad files: exit 2, the file named */
    char bad[4200], path[4300];
    snprintf(args, sizeof args, "--train '%s/nothing' --val '%s'", dir, va);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "nothing.emb.npy"));

    snprintf(bad, sizeof bad, "%s/short", dir);
    write_split(bad, d.val, d.yval, N_VAL, false);
    int64_t shape[1] = {N_VAL - 1};
    snprintf(path, sizeof path, "%s.labels.npy", bad);
    CU_ASSERT_FATAL(npy_write(path, NPY_I32, 1, shape, d.yval, err) == 0);
    snprintf(args, sizeof args, "--train '%s' --val '%s'", tr, bad);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "short.labels.npy"));

    shape[0] = N_VAL;
    CU_ASSERT_FATAL(npy_write(path, NPY_F32, 1, shape, d.val, err) == 0);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "short.labels.npy"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "int32 or int64"));

    write_split(bad, d.val, d.yval, N_VAL, false);
    static float nan_val[N_VAL * DIM];
    memcpy(nan_val, d.val, sizeof nan_val);
    nan_val[5 * DIM + 1] = NAN;
    int64_t eshape[2] = {N_VAL, DIM};
    snprintf(path, sizeof path, "%s.emb.npy", bad);
    CU_ASSERT_FATAL(npy_write(path, NPY_F32, 2, eshape, nan_val, err) == 0);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "short.emb.npy"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "row 5"));

    eshape[1] = DIM - 1;
    CU_ASSERT_FATAL(npy_write(path, NPY_F32, 2, eshape, d.val, err) == 0);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "short.emb.npy"));

    /* arguments */
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", "--train x", out, sizeof out), 2);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", "--train x --val y --tasks segmap",
                                        out, sizeof out), 2);
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", "--connect tcp://127.0.0.1:1 "
                                        "--tasks knn,bogus", out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bogus"));
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", "--help", out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--connect"));
    CU_ASSERT_EQUAL(testing_run_program("eval/lejepa-eval", "--version", out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "lejepa-eval"));
    testing_rmtree(dir);
    free(dir);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"offline knn + linear on .npy, --json, bad files", test_offline},
        {NULL, NULL},
    };
    return testing_run("evalprog_offline", cases);
}
