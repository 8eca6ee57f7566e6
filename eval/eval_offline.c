/*
 * eval_offline.c: lejepa-eval without a trainer: kNN and the linear probe on
 * the files `lejepa embed` writes, PREFIX.emb.npy (float32 or float64,
 * (N, D)) and PREFIX.labels.npy (int32 or int64, (N)), for a train and a val
 * prefix. Results go to stdout, as "name value" lines or, with --json, as
 * one JSON object; every bad file is named and exits 2.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "json.h"
#include "npy.h"
#include "util.h"

struct split_files {
    char emb_path[4200], labels_path[4200];
    float *emb;                     /* (n, dim), util_free_aligned */
    int32_t *labels;                /* (n), free */
    int64_t n, dim;
};

/* The labels file beside the embeddings: one label per row. */
static int read_labels(struct split_files *s, char *err)
{
    int64_t n = 0;
    if (npy_read_labels(s->labels_path, EVAL_MAX_CLASSES, &s->labels, &n, err) < 0)
        return -1;
    if (n != s->n)
        return errf(err, "%s: labels must have shape (%lld,) to match %s",
                    s->labels_path, (long long)s->n, s->emb_path);
    return 0;
}

static int read_split(struct split_files *s, const char *prefix, char *err)
{
    memset(s, 0, sizeof *s);
    snprintf(s->emb_path, sizeof s->emb_path, "%s.emb.npy", prefix);
    snprintf(s->labels_path, sizeof s->labels_path, "%s.labels.npy", prefix);
    if (npy_read_matrix_f32(s->emb_path, &s->emb, &s->n, &s->dim, err) < 0)
        return -1;
    if (s->n < 1 || s->dim < 1 || s->dim > INT32_MAX)
        return errf(err, "%s: empty embedding matrix (%lld, %lld)", s->emb_path,
                    (long long)s->n, (long long)s->dim);
    size_t total = (size_t)s->n * (size_t)s->dim;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(s->emb[i]))
            return errf(err, "%s: non-finite value at row %lld", s->emb_path,
                        (long long)(i / (size_t)s->dim));
    return read_labels(s, err);
}

static void split_free(struct split_files *s)
{
    util_free_aligned(s->emb);
    free(s->labels);
}

static void print_results(const struct eval_opts *o, const struct split_files *tr,
                          const struct split_files *va, const struct eval_result *r,
                          int n)
{
    if (!o->json) {
        for (int i = 0; i < n; i++)
            for (int k = 0; k < r[i].n; k++)
                printf("%s %.6g\n", r[i].keys[k], r[i].values[k]);
        return;
    }
    printf("{\"train\":");
    json_write_string(stdout, o->train);
    printf(",\"val\":");
    json_write_string(stdout, o->val);
    printf(",\"n_train\":%lld,\"n_val\":%lld,\"dim\":%lld", (long long)tr->n,
           (long long)va->n, (long long)tr->dim);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < r[i].n; k++)
            printf(",\"%s\":%.17g", r[i].keys[k], r[i].values[k]);
    printf("}\n");
}

int eval_run_offline(const struct eval_opts *o)
{
    char err[ERR_LEN];
    struct split_files tr, va;
    int status = 2;
    memset(&va, 0, sizeof va);
    if (read_split(&tr, o->train, err) < 0 || read_split(&va, o->val, err) < 0) {
        eval_log("%s", err);
        goto cleanup;
    }
    if (tr.dim != va.dim) {
        eval_log("%s has dim %lld but %s has dim %lld", tr.emb_path, (long long)tr.dim,
                 va.emb_path, (long long)va.dim);
        goto cleanup;
    }
    struct eval_result r[EVAL_EMBED_RESULTS];
    int n = eval_tasks_embed(tr.emb, tr.labels, tr.n, va.emb, va.labels, va.n,
                             (int)tr.dim, o->tasks, &o->fewshot, 0, r, err);
    if (n < 0) {
        eval_log("%s", err);
        goto cleanup;
    }
    print_results(o, &tr, &va, r, n);
    fflush(stdout);
    status = 0;
cleanup:
    split_free(&tr);
    split_free(&va);
    return status;
}
