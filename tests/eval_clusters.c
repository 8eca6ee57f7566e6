/*
 * eval_clusters.c: loads the overlapping-clusters fixture (see
 * eval_clusters.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_clusters.h"
#include "npy.h"
#include "testing.h"
#include "util.h"

/* Labels of a .npy (int32 or int64, 1-D) as int32; NULL (and the reason on
 * stderr) when the file is missing or wrong. */
static int32_t *read_labels(const char *name, int64_t *n)
{
    char err[ERR_LEN];
    int32_t *y = NULL;
    if (npy_read_labels(testing_fixture(name), INT32_MAX, &y, n, err) != 0)
        fprintf(stderr, "%s\n", err);
    return y;
}

static float *read_matrix(const char *name, int64_t *rows, int64_t *cols)
{
    char err[ERR_LEN];
    float *m = NULL;
    if (npy_read_matrix_f32(testing_fixture(name), &m, rows, cols, err) != 0)
        fprintf(stderr, "%s\n", err);
    return m;
}

void clusters_load(struct clusters *c)
{
    char err[ERR_LEN];
    int64_t nv_dim = -1, nyt = -1, nyv = -1, npred = -1;
    memset(c, 0, sizeof *c);
    c->train = read_matrix("eval/clusters_train.emb.npy", &c->nt, &c->dim);
    c->val = read_matrix("eval/clusters_val.emb.npy", &c->nv, &nv_dim);
    c->yt = read_labels("eval/clusters_train.labels.npy", &nyt);
    c->yv = read_labels("eval/clusters_val.labels.npy", &nyv);
    c->knn_pred = read_labels("eval/clusters_knn_pred.npy", &npred);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->train);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->val);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->yt);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->yv);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->knn_pred);
    CU_ASSERT_EQUAL_FATAL(nyt, c->nt);
    CU_ASSERT_EQUAL_FATAL(nyv, c->nv);
    CU_ASSERT_EQUAL_FATAL(npred, c->nv);
    CU_ASSERT_EQUAL_FATAL(nv_dim, c->dim);
    size_t len;
    c->json_text = util_read_file(testing_fixture("eval/clusters_expected.json"),
                                  &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->json_text);
    c->expected = json_parse(c->json_text, len, 8, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c->expected);
    c->classes = (int)json_get(c->expected, "classes")->number;
}

void clusters_free(struct clusters *c)
{
    util_free_aligned(c->train);
    util_free_aligned(c->val);
    free(c->yt);
    free(c->yv);
    free(c->knn_pred);
    json_free(c->expected);
    free(c->json_text);
}
