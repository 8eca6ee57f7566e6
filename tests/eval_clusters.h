/*
 * eval_clusters.h: the overlapping-clusters fixture that
 * tools/eval_reference.py writes under tests/fixtures/eval/ (train and val
 * embeddings with labels, numpy's kNN predictions, and the expected
 * figures as JSON), loaded once for the kNN and linear-probe tests.
 */
#ifndef LEJEPA_TESTS_EVAL_CLUSTERS_H
#define LEJEPA_TESTS_EVAL_CLUSTERS_H

#include <stdint.h>

#include "json.h"

struct clusters {
    float *train, *val;          /* nt x dim, nv x dim */
    int32_t *yt, *yv;            /* labels */
    int32_t *knn_pred;           /* numpy's kNN prediction per val row */
    int64_t nt, nv, dim;
    int classes;
    char *json_text;
    struct json *expected;       /* clusters_expected.json */
};

/* Loads every file of the fixture and checks their shapes agree; a
 * missing or inconsistent file is a fatal CUnit failure. */
void clusters_load(struct clusters *c);
void clusters_free(struct clusters *c);

#endif
