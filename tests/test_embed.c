/*
 * test_embed.c: `lejepa embed` against the engine. A checkpoint of a tiny
 * model (random weights and BatchNorm statistics, saved with the metadata
 * lejepa-train writes) and a generated image folder of non-square images;
 * the program's PREFIX.emb.npy must equal lejepa_eval_forward on the
 * augment_eval_view of each image computed here, one image at a time,
 * and PREFIX.labels.npy the dataset's labels. Bad inputs (a corrupt
 * checkpoint, a missing dataset, an undecodable image) exit non-zero,
 * name the file and write nothing.
 * --images DIR: a folder of the same images (renamed, nested, with dot
 * entries, a text file and two corrupt images) embeds to the same rows;
 * PREFIX.paths.txt lists the readable images' sorted relative paths, line i
 * naming row i; the corrupt files are named and left out. A missing or
 * image-less folder, or one whose images all fail, exits non-zero naming it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vips/vips.h>

#include "augment.h"
#include "ckpt.h"
#include "config.h"
#include "dataset.h"
#include "lejepa.h"
#include "model_config.h"
#include "npy.h"
#include "test_imgdir.h"
#include "testing.h"
#include "compute.h"
#include "util.h"

#define N_CLASSES 3
#define OUT_CAP 65536
#define TOL 1e-4

static const char *const tiny[] = {
    "model.depths=1,1", "model.widths=8,16", "model.projector=32,16",
    "views.global_size=16", "views.local_size=8", "views.local_count=2",
    "views.mean=0.3", "views.std=0.4", "optim.batch=8", "run.ticket_size=4",
    "loss.slices=16", NULL,
};

static char *tmp;
static char data_dir[4200], ckpt_path[4200];
static struct config cfg;
static struct lejepa model;

/* The tiny model with random BatchNorm statistics, saved as lejepa-train's
 * checkpoints are (config, step, dataset.n_classes metadata). Runs before
 * the suite, hence CHECK. */
static void make_checkpoint(void)
{
    char err[ERR_LEN];
    config_defaults(&cfg);
    for (int i = 0; tiny[i]; i++)
        CHECK(config_set(&cfg, tiny[i], err) == 0);
    struct lejepa_config lc;
    CHECK(model_config_resolve(&lc, &cfg, N_CLASSES, err) == 0);
    CHECK(lejepa_init(&model, &lc, err) == 0);
    uint64_t rng = 99;
    for (size_t i = 0; i < model.p.state.n; i++) {
        const struct params_entry *e = &model.p.state.e[i];
        float *x = model.p.state_data + e->offset;
        int var = strstr(e->name, "running_var") != NULL;
        for (size_t k = 0; k < e->numel; k++)
            x[k] = var ? (float)(0.5 + testing_rand_uniform(&rng))
                       : (float)(0.3 * testing_rand_normal(&rng));
    }
    char *text = config_to_string(&cfg);
    const char *keys[] = {"config", "step", "dataset.n_classes"};
    const char *values[] = {text, "0", "3"};
    snprintf(ckpt_path, sizeof ckpt_path, "%s/ckpt-0.safetensors", tmp);
    CHECK(ckpt_save(ckpt_path, &model.p, NULL, keys, values, 3, err) == 0);
    free(text);
}

static int run_embed(const char *args, char *out)
{
    return testing_run_program("tools/lejepa", args, out, OUT_CAP);
}

/* Embeddings of the split computed here, one image per forward pass. */
static float *expected(const struct dataset *d, int split)
{
    const struct config_views *v = &cfg.views;
    const int G = (int)v->global_size;
    size_t n = d->split[split].n;
    float *want = xmalloc(n * (size_t)model.emb_dim * sizeof *want);
    struct lejepa_eval ev;
    lejepa_eval_init(&ev, &model, 1);
    uint8_t px[16 * 16];
    CU_ASSERT_FATAL(G == 16);
    for (size_t i = 0; i < n; i++) {
        char path[4400], err[ERR_LEN];
        struct image im;
        CU_ASSERT_FATAL(dataset_sample_path(d, split, i, path, sizeof path) == 0);
        CU_ASSERT_FATAL(image_load(&im, path, 1, v->max_pixels, G, err) == 0);
        augment_eval_view(px, &im, v);
        image_free(&im);
        float *x = lejepa_eval_input(&ev);
        for (int k = 0; k < G * G; k++)
            x[k] = ((float)px[k] / 255.0f - (float)v->mean.v[0]) / (float)v->std.v[0];
        const float *e = lejepa_eval_forward(&ev);
        memcpy(want + i * (size_t)model.emb_dim, e, (size_t)model.emb_dim * sizeof *e);
    }
    lejepa_eval_free(&ev);
    return want;
}

static void check_split(int split, const char *name, int batch)
{
    char args[16000], prefix[4400], path[4500], err[ERR_LEN];
    char *out = xmalloc(OUT_CAP);
    snprintf(prefix, sizeof prefix, "%s/%s", tmp, name);
    snprintf(args, sizeof args, "embed --ckpt %s --data %s --split %s --out %s "
             "--batch %d --threads 1", ckpt_path, data_dir, name, prefix, batch);
    int rc = run_embed(args, out);
    if (rc != 0)
        fprintf(stderr, "lejepa embed:\n%s\n", out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    struct dataset d;
    CU_ASSERT_FATAL(dataset_open(&d, data_dir, err) == 0);
    size_t n = d.split[split].n;
    struct npy_array emb, lab;
    snprintf(path, sizeof path, "%s.emb.npy", prefix);
    CU_ASSERT_FATAL(npy_read(path, &emb, err) == 0);
    snprintf(path, sizeof path, "%s.labels.npy", prefix);
    CU_ASSERT_FATAL(npy_read(path, &lab, err) == 0);
    CU_ASSERT_EQUAL(emb.dtype, NPY_F32);
    CU_ASSERT_EQUAL(emb.ndim, 2);
    CU_ASSERT_EQUAL(emb.shape[0], (int64_t)n);
    CU_ASSERT_EQUAL(emb.shape[1], model.emb_dim);
    CU_ASSERT_EQUAL(lab.dtype, NPY_I64);
    CU_ASSERT_EQUAL(lab.ndim, 1);
    CU_ASSERT_EQUAL_FATAL(lab.shape[0], (int64_t)n);
    const int64_t *labels = lab.data;
    int mismatched_labels = 0;
    for (size_t i = 0; i < n; i++)
        mismatched_labels += labels[i] != d.split[split].labels[i];
    CU_ASSERT_EQUAL(mismatched_labels, 0);
    CU_ASSERT_EQUAL(labels[n - 1], N_CLASSES - 1);
    float *want = expected(&d, split);
    const float *got = emb.data;
    double worst = 0, spread = 0;
    for (size_t k = 0; k < n * (size_t)model.emb_dim; k++) {
        double diff = fabs(got[k] - want[k]) / (1.0 + fabs(want[k]));
        worst = diff > worst ? diff : worst;
        spread += fabs(want[k] - want[k % (size_t)model.emb_dim]);
    }
    if (worst > TOL)
        fprintf(stderr, "%s: embeddings differ by %g\n", name, worst);
    CU_ASSERT(worst <= TOL);
    CU_ASSERT(spread > 0);      /* images do not all embed alike */
    free(want);
    npy_free(&emb);
    npy_free(&lab);
    dataset_free(&d);
    free(out);
}

static void test_val(void)
{
    check_split(DATASET_VAL, "val", 4);     /* 15 images: a partial last batch */
}

static void test_train(void)
{
    check_split(DATASET_TRAIN, "train", 64);
}

static void test_bad_inputs(void)
{
    char args[16000], path[4400], err[ERR_LEN];
    char *out = xmalloc(OUT_CAP);
    /* a checkpoint that is not one */
    snprintf(path, sizeof path, "%s/bad.safetensors", tmp);
    CU_ASSERT_FATAL(util_write_file_atomic(path, "not a checkpoint at all", 23, err) == 0);
    snprintf(args, sizeof args, "embed --ckpt %s --data %s --split val --out %s/x",
             path, data_dir, tmp);
    CU_ASSERT_NOT_EQUAL(run_embed(args, out), 0);
    CU_ASSERT(strstr(out, path) != NULL);
    /* a missing checkpoint */
    snprintf(args, sizeof args, "embed --ckpt %s/none.safetensors --data %s "
             "--split val --out %s/x", tmp, data_dir, tmp);
    CU_ASSERT_NOT_EQUAL(run_embed(args, out), 0);
    CU_ASSERT(strstr(out, "none.safetensors") != NULL);
    /* the official probe's features need a ViT; this one is a ResNet */
    snprintf(args, sizeof args, "embed --ckpt %s --data %s --split val "
             "--features cls_last2 --out %s/x", ckpt_path, data_dir, tmp);
    CU_ASSERT_NOT_EQUAL(run_embed(args, out), 0);
    CU_ASSERT(strstr(out, "needs a ViT") != NULL);
    snprintf(args, sizeof args, "embed --ckpt %s --data %s --split val "
             "--features bogus --out %s/x", ckpt_path, data_dir, tmp);
    CU_ASSERT_NOT_EQUAL(run_embed(args, out), 0);
    CU_ASSERT(strstr(out, "cls_last2") != NULL);
    /* a missing dataset */
    snprintf(args, sizeof args, "embed --ckpt %s --data %s/nodata --split val "
             "--out %s/x", ckpt_path, tmp, tmp);
    CU_ASSERT_NOT_EQUAL(run_embed(args, out), 0);
    CU_ASSERT(strstr(out, "nodata") != NULL);
    /* an undecodable image: named, nothing written */
    char bad_data[4300];
    snprintf(bad_data, sizeof bad_data, "%s/baddata", tmp);
    imgdir_make(bad_data, 2, 2, 3, 20, 20, 5);
    snprintf(path, sizeof path, "%s/val/c1/001.png", bad_data);
    CU_ASSERT_FATAL(util_write_file_atomic(path, "\x89PNG broken", 11, err) == 0);
    snprintf(args, sizeof args, "embed --ckpt %s --data %s --split val --out %s/y",
             ckpt_path, bad_data, tmp);
    CU_ASSERT_NOT_EQUAL(run_embed(args, out), 0);
    CU_ASSERT(strstr(out, "val/c1/001.png") != NULL);
    snprintf(path, sizeof path, "%s/y.emb.npy", tmp);
    CU_ASSERT(access(path, F_OK) != 0);
    snprintf(path, sizeof path, "%s/x.emb.npy", tmp);
    CU_ASSERT(access(path, F_OK) != 0);
    free(out);
}

/* Copies the file src to dst, making dst's folders. */
static void copy_file(const char *src, const char *dir, const char *rel)
{
    char dst[4400], err[ERR_LEN];
    size_t len;
    char *data = util_read_file(src, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    snprintf(dst, sizeof dst, "%s/%s", dir, rel);
    *strrchr(dst, '/') = '\0';
    CU_ASSERT_FATAL(util_mkdir_p(dst, err) == 0);
    snprintf(dst, sizeof dst, "%s/%s", dir, rel);
    CU_ASSERT_FATAL(util_write_file_atomic(dst, data, len, err) == 0);
    free(data);
}

static void write_text(const char *dir, const char *rel, const char *text)
{
    char path[4400], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    CU_ASSERT_FATAL(util_write_file_atomic(path, text, strlen(text), err) == 0);
}

/* A row of --images output: its relative path and the val sample it is. */
struct image_row {
    const char *rel;
    size_t sample;
};

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const struct image_row *)a)->rel, ((const struct image_row *)b)->rel);
}

static void test_images(void)
{
    char dir[4300], src[4400], args[16000], prefix[4400], path[4500], err[ERR_LEN];
    char *out = xmalloc(OUT_CAP);
    struct dataset d;
    CU_ASSERT_FATAL(dataset_open(&d, data_dir, err) == 0);
    const struct dataset_split *val = &d.split[DATASET_VAL];
    /* val/cK/NNN.png as cK/NNN.png, and four copies elsewhere: upper case
     * sorts first, "a.png" before "a/x.png" (bytewise), one 4 levels deep */
    static const char *const extra[] = {"B.png", "a.png", "a/x.png", "deep/1/2/3/y.png"};
    enum { N_EXTRA = sizeof extra / sizeof extra[0] };
    const size_t n_rows = val->n + N_EXTRA;
    struct image_row *want = xmalloc(n_rows * sizeof *want);
    snprintf(dir, sizeof dir, "%s/imgs", tmp);
    for (size_t i = 0; i < val->n; i++) {
        CU_ASSERT_FATAL(dataset_sample_path(&d, DATASET_VAL, i, src, sizeof src) == 0);
        want[i] = (struct image_row){val->paths[i] + strlen("val/"), i};
        copy_file(src, dir, want[i].rel);
    }
    for (size_t e = 0; e < N_EXTRA; e++) {
        CU_ASSERT_FATAL(dataset_sample_path(&d, DATASET_VAL, e + 3, src, sizeof src) == 0);
        want[val->n + e] = (struct image_row){extra[e], e + 3};
        copy_file(src, dir, extra[e]);
    }
    qsort(want, n_rows, sizeof *want, cmp_row);
    /* ignored: dot entries (though valid images) and a text file; named and
     * skipped: two corrupt images, mid-batch */
    copy_file(src, dir, ".hidden.png");
    copy_file(src, dir, "c0/.cache/z.png");
    write_text(dir, "notes.txt", "not an image");
    write_text(dir, "c1/001a.png", "\x89PNG broken");
    write_text(dir, "c2/zz.jpg", "\xff\xd8 not a jpeg");

    snprintf(prefix, sizeof prefix, "%s/imgs-out", tmp);
    snprintf(args, sizeof args, "embed --ckpt %s --images %s/ --out %s --batch 4 "
             "--threads 1", ckpt_path, dir, prefix);
    int rc = run_embed(args, out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "c1/001a.png"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "c2/zz.jpg"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "2 skipped"));
    CU_ASSERT_PTR_NULL(strstr(out, ".hidden.png"));
    if (CU_get_number_of_failures())
        fprintf(stderr, "lejepa embed --images:\n%s\n", out);

    struct npy_array emb;
    snprintf(path, sizeof path, "%s.emb.npy", prefix);
    CU_ASSERT_FATAL(npy_read(path, &emb, err) == 0);
    CU_ASSERT_EQUAL(emb.dtype, NPY_F32);
    CU_ASSERT_EQUAL_FATAL(emb.ndim, 2);
    CU_ASSERT_EQUAL_FATAL(emb.shape[1], model.emb_dim);
    snprintf(path, sizeof path, "%s.labels.npy", prefix);
    CU_ASSERT(access(path, F_OK) != 0);         /* no labels to write */
    snprintf(path, sizeof path, "%s.paths.txt", prefix);
    char *text = util_read_file(path, NULL, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t lines = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n';
    CU_ASSERT_EQUAL(lines, (size_t)emb.shape[0]);
    CU_ASSERT_EQUAL(lines, n_rows);

    /* line i is want[i].rel, and row i embeds that file */
    float *ref = expected(&d, DATASET_VAL);
    const float *got = emb.data;
    const size_t D = (size_t)model.emb_dim;
    char *line = text;
    size_t misnamed = 0, misaligned = 0;
    for (size_t i = 0; i < n_rows && i < (size_t)emb.shape[0] && *line; i++) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        if (strcmp(line, want[i].rel) != 0) {
            fprintf(stderr, "paths.txt line %zu: '%s', want '%s'\n", i + 1, line,
                    want[i].rel);
            misnamed++;
        }
        const float *w = ref + want[i].sample * D;
        for (size_t k = 0; k < D; k++)
            if (fabs(got[i * D + k] - w[k]) / (1.0 + fabs(w[k])) > TOL) {
                misaligned++;
                break;
            }
        line = nl + 1;
    }
    CU_ASSERT_EQUAL(misnamed, 0);
    CU_ASSERT_EQUAL(misaligned, 0);
    free(ref);
    free(text);
    npy_free(&emb);
    free(want);
    dataset_free(&d);
    free(out);
}

/* `lejepa embed ARGS` must fail naming needle and write no PREFIX.emb.npy. */
static void expect_images_error(const char *images, const char *extra,
                                const char *needle)
{
    char args[16000], path[4400];
    char *out = xmalloc(OUT_CAP);
    snprintf(args, sizeof args, "embed --ckpt %s --images %s --out %s/e %s",
             ckpt_path, images, tmp, extra);
    int rc = run_embed(args, out);
    CU_ASSERT(rc != 0 && rc != -1);
    if (!strstr(out, needle)) {
        fprintf(stderr, "lejepa %s:\n%s\n(does not name '%s')\n", args, out, needle);
        CU_FAIL("error message does not name the input");
    }
    snprintf(path, sizeof path, "%s/e.emb.npy", tmp);
    CU_ASSERT(access(path, F_OK) != 0);
    snprintf(path, sizeof path, "%s/e.paths.txt", tmp);
    CU_ASSERT(access(path, F_OK) != 0);
    free(out);
}

static void test_images_errors(void)
{
    char dir[4300], err[ERR_LEN];
    snprintf(dir, sizeof dir, "%s/noimgs", tmp);
    expect_images_error(dir, "", dir);
    /* a folder holding no image file: dot entries and text only */
    snprintf(dir, sizeof dir, "%s/emptyimgs", tmp);
    CU_ASSERT_FATAL(util_mkdir_p(dir, err) == 0);
    write_text(dir, "notes.txt", "not an image");
    write_text(dir, ".x.png", "\x89PNG hidden");
    expect_images_error(dir, "", dir);
    expect_images_error(dir, "", "no image files");
    /* images that all fail to decode: each named, nothing written */
    snprintf(dir, sizeof dir, "%s/badimgs", tmp);
    CU_ASSERT_FATAL(util_mkdir_p(dir, err) == 0);
    write_text(dir, "one.png", "\x89PNG broken");
    write_text(dir, "two.jpg", "not a jpeg");
    expect_images_error(dir, "", "one.png");
    expect_images_error(dir, "", "two.jpg");
    /* --images is instead of a split */
    expect_images_error(dir, "--data x --split val", "--images");
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"val", test_val},
        {"train", test_train},
        {"bad_inputs", test_bad_inputs},
        {"images", test_images},
        {"images_errors", test_images_errors},
        {NULL, NULL},
    };
    if (VIPS_INIT("test_embed") != 0)
        return 1;
    compute_set_threads(1);
    tmp = testing_tmpdir();
    snprintf(data_dir, sizeof data_dir, "%s/data", tmp);
    imgdir_make(data_dir, N_CLASSES, 6, 5, 20, 24, 17);
    make_checkpoint();
    int rc = testing_run("embed", cases);
    lejepa_free(&model);
    testing_rmtree(tmp);
    free(tmp);
    return rc;
}
