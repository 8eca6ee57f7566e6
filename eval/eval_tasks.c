/*
 * eval_tasks.c: the tasks of lejepa-eval on data already in memory: kNN and
 * the linear probe on (train, val) embeddings, segmentation maps of a
 * FEATMAP, and the --tasks parser. Each task becomes one eval_result under
 * the metric names of DESIGN.md §10. No sockets and no file reading here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "eval_snapshot.h"
#include "knn.h"
#include "linprobe.h"
#include "probe_adamw.h"
#include "segmap.h"
#include "util.h"

/* Largest side of one PNG cell: small images are scaled up to about this. */
#define EVAL_SEGMAP_CELL_PX 112
#define EVAL_SEGMAP_MAX_SCALE 8

int eval_parse_tasks(const char *s, unsigned *tasks, char *err)
{
    *tasks = 0;
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 3 && strncmp(p, "knn", 3) == 0)
            *tasks |= EVAL_TASK_KNN;
        else if (len == 6 && strncmp(p, "linear", 6) == 0)
            *tasks |= EVAL_TASK_LINEAR;
        else if (len == 6 && strncmp(p, "segmap", 6) == 0)
            *tasks |= EVAL_TASK_SEGMAP;
        else if (len == 5 && strncmp(p, "probe", 5) == 0)
            *tasks |= EVAL_TASK_PROBE;
        else
            return errf(err, "--tasks %s: unknown task '%.*s' (knn, linear, probe, segmap)",
                        s, (int)len, p);
        p += len + (comma != NULL);
    }
    if (!*tasks)
        return errf(err, "--tasks: empty list (knn, linear, probe, segmap)");
    return 0;
}

static int max_label(const int32_t *labels, int64_t n)
{
    int m = -1;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] > m)
            m = labels[i];
    return m;
}

/* Whether any row is unlabelled (label -1, PROTOCOL.md). */
static bool unlabelled(const int32_t *labels, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0)
            return true;
    return false;
}

/* The few-shot results of eval_tasks_embed: one per method asked. */
static int fewshot_results(const float *train, const int32_t *train_labels,
                           int64_t n_train, const float *val,
                           const int32_t *val_labels, int64_t n_val, int dim,
                           int n_classes, unsigned tasks,
                           const struct fewshot_options *fs, uint64_t step,
                           struct eval_result *out, char *err)
{
    static const enum msg_source source[FEWSHOT_METHODS] = {
        [FEWSHOT_KNN] = MSG_SOURCE_KNN, [FEWSHOT_LINEAR] = MSG_SOURCE_LINEAR,
    };
    bool want[FEWSHOT_METHODS] = {
        [FEWSHOT_KNN] = tasks & EVAL_TASK_KNN,
        [FEWSHOT_LINEAR] = tasks & EVAL_TASK_LINEAR,
    };
    struct fewshot_result *res = xmalloc(sizeof *res);
    double t0 = util_time_mono();
    int n = -1;
    if (fewshot_run(fs, want[FEWSHOT_KNN], want[FEWSHOT_LINEAR], train,
                    train_labels, n_train, val, val_labels, n_val, dim,
                    n_classes, res, err) < 0)
        goto cleanup;
    n = 0;
    for (int s = 0; s < fs->n_shots; s++) {
        if (res->short_classes[s])
            eval_log("few-shot %d: %d classes have fewer than %d train rows; "
                     "all of their rows are taken (%lld rows in all)",
                     fs->shots[s], res->short_classes[s], fs->shots[s],
                     (long long)res->rows[s]);
        for (int m = 0; m < FEWSHOT_METHODS; m++)
            if (want[m])
                eval_log("few-shot %s %d-shot: top1 %.4f +- %.4f over %d seeds",
                         m == FEWSHOT_KNN ? "knn" : "linear", fs->shots[s],
                         res->stat[m][s].mean, res->stat[m][s].std, fs->seeds);
    }
    for (int m = 0; m < FEWSHOT_METHODS; m++) {
        if (!want[m])
            continue;
        struct eval_result *r = &out[n++];
        *r = (struct eval_result){.source = source[m], .step = step};
        for (int s = 0; s < fs->n_shots; s++) {
            r->keys[r->n] = fs->mean_name[m][s];
            r->values[r->n++] = res->stat[m][s].mean;
            r->keys[r->n] = fs->std_name[m][s];
            r->values[r->n++] = res->stat[m][s].std;
        }
    }
    eval_log("few-shot: %d shot counts x %d seeds (%.1f s)", fs->n_shots,
             fs->seeds, util_time_mono() - t0);
cleanup:
    free(res);
    return n;
}

int eval_tasks_embed(const float *train, const int32_t *train_labels,
                     int64_t n_train, const float *val,
                     const int32_t *val_labels, int64_t n_val, int dim,
                     unsigned tasks, const struct fewshot_options *fs,
                     uint64_t step, struct eval_result *out, char *err)
{
    int a = max_label(train_labels, n_train), b = max_label(val_labels, n_val);
    int n_classes = (a > b ? a : b) + 1;
    int n = 0;
    if (unlabelled(train_labels, n_train) || unlabelled(val_labels, n_val) ||
        n_classes < 2) {
        if (!(tasks & (EVAL_TASK_KNN | EVAL_TASK_LINEAR)))
            return 0;
        /* said once per snapshot, so the trainer knows it was seen */
        eval_log("step %llu: the dataset is unlabelled (or has one class): "
                 "no kNN, linear or few-shot scores", (unsigned long long)step);
        out[0] = (struct eval_result){.source = MSG_SOURCE_SYSTEM, .step = step, .n = 1,
                                      .keys = {"eval_unlabelled"}, .values = {1}};
        return 1;
    }
    if (tasks & EVAL_TASK_KNN) {
        double top1;
        double t0 = util_time_mono();
        if (knn_top1(train, train_labels, n_train, val, val_labels, n_val, dim,
                     n_classes, KNN_DEFAULT_K, KNN_DEFAULT_TEMPERATURE, &top1, NULL,
                     err) < 0)
            return -1;
        eval_log("knn (k=%d) on %lld train / %lld val rows, dim %d, %d classes: "
                 "top1 %.4f (%.1f s)", KNN_DEFAULT_K, (long long)n_train,
                 (long long)n_val, dim, n_classes, top1, util_time_mono() - t0);
        out[n++] = (struct eval_result){.source = MSG_SOURCE_KNN, .step = step, .n = 1,
                                        .keys = {"knn_top1"}, .values = {top1}};
    }
    if (tasks & EVAL_TASK_LINEAR) {
        struct linprobe_result r;
        double t0 = util_time_mono();
        if (linprobe_run(train, train_labels, n_train, val, val_labels, n_val, dim,
                         n_classes, NULL, &r, NULL, err) < 0)
            return -1;
        eval_log("linear probe: top1 %.4f, lambda %g, %d iterations (%.1f s)", r.top1,
                 r.lambda, r.iterations_total, util_time_mono() - t0);
        out[n++] = (struct eval_result){.source = MSG_SOURCE_LINEAR, .step = step, .n = 2,
                                        .keys = {"linear_top1", "linear_lambda"},
                                        .values = {r.top1, r.lambda}};
    }
    if (tasks & EVAL_TASK_PROBE) {
        struct probe_adamw_options po = PROBE_ADAMW_DEFAULTS;
        double top1, t0 = util_time_mono();
        if (probe_adamw_run(train, train_labels, (size_t)n_train, val, val_labels,
                            (size_t)n_val, dim, n_classes, &po, &top1, err) < 0)
            return -1;
        eval_log("AdamW probe (LayerNorm + Linear, %d epochs, lr %g): top1 %.4f (%.1f s)",
                 po.epochs, po.lr, top1, util_time_mono() - t0);
        out[n++] = (struct eval_result){.source = MSG_SOURCE_LINEAR, .step = step, .n = 1,
                                        .keys = {"linear_adamw_top1"}, .values = {top1}};
    }
    if (fs && fs->n_shots > 0 && (tasks & (EVAL_TASK_KNN | EVAL_TASK_LINEAR))) {
        int m = fewshot_results(train, train_labels, n_train, val, val_labels,
                                n_val, dim, n_classes, tasks, fs, step, out + n,
                                err);
        if (m < 0)
            return -1;
        n += m;
    }
    return n;
}

/* Fraction of pixels that are zero in every channel. */
static double background_fraction(const struct eval_featmap *f)
{
    size_t plane = (size_t)f->h * f->w, zero = 0;
    for (int i = 0; i < f->n; i++) {
        const uint8_t *img = f->pixels + (size_t)i * f->c * plane;
        for (size_t p = 0; p < plane; p++) {
            int any = 0;
            for (int c = 0; c < f->c; c++)
                any |= img[(size_t)c * plane + p];
            zero += !any;
        }
    }
    return (double)zero / (double)(plane * (size_t)f->n);
}

/* Copies the step's PNG over latest.png, atomically. */
static int replace_latest(const char *src, const char *dst, char *err)
{
    size_t len;
    char *data = util_read_file(src, &len, err);
    if (!data)
        return -1;
    int rc = util_write_file_atomic(dst, data, len, err);
    free(data);
    return rc;
}

int eval_tasks_segmap(const struct eval_featmap *f, const char *dir,
                      struct eval_result *out, char *err)
{
    struct segmap_input in = {
        .n = f->n, .fdim = f->fdim, .gh = f->gh, .gw = f->gw, .features = f->feats,
        .channels = f->c, .height = f->h, .width = f->w, .pixels = f->pixels,
        .heads = f->heads, .attention = f->attn,
    };
    struct segmap s;
    if (segmap_compute(&in, &s, err) < 0)
        return -1;
    int rc = -1;
    char segdir[4096], path[4200], latest[4200];
    snprintf(segdir, sizeof segdir, "%s/segmaps", dir);
    if (util_mkdir_p(segdir, err) < 0)
        goto cleanup;
    int side = f->h > f->w ? f->h : f->w;
    int scale = side >= EVAL_SEGMAP_CELL_PX ? 1 : EVAL_SEGMAP_CELL_PX / side;
    if (scale > EVAL_SEGMAP_MAX_SCALE)
        scale = EVAL_SEGMAP_MAX_SCALE;
    snprintf(path, sizeof path, "%s/step-%llu.png", segdir, (unsigned long long)f->step);
    snprintf(latest, sizeof latest, "%s/latest.png", segdir);
    if (segmap_write_png(&s, &in, scale, path, err) < 0 ||
        replace_latest(path, latest, err) < 0)
        goto cleanup;
    double bg = background_fraction(f);
    if (bg < EVAL_SEGMAP_MIN_BACKGROUND) {
        eval_log("segmap of step %llu written to %s; only %.1f%% zero pixels: no "
                 "natural foreground, segmap_iou not reported",
                 (unsigned long long)f->step, path, 100 * bg);
        rc = 0;
        goto cleanup;
    }
    *out = (struct eval_result){.source = MSG_SOURCE_SEGMAP, .step = f->step, .n = 1,
                                .keys = {"segmap_iou"}, .values = {s.iou_mean}};
    if (s.attn_iou) {
        out->keys[1] = "segmap_attn_iou";
        out->values[1] = s.attn_iou_mean;
        out->n = 2;
    }
    eval_log("segmap of step %llu (%d images) written to %s: iou %.4f",
             (unsigned long long)f->step, f->n, path, s.iou_mean);
    rc = 1;
cleanup:
    segmap_free(&s);
    return rc;
}
