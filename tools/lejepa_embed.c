/*
 * lejepa_embed.c: `lejepa embed`: the backbone embeddings of every image of
 * one dataset split under a checkpoint, as PREFIX.emb.npy (float32 (N, D))
 * and PREFIX.labels.npy (int64 (N), numpy's default integer), row i being
 * sample i of the split in the dataset index's order (dataset.h). The model
 * is built from the config saved in the checkpoint; every image goes through
 * the eval view the loaders cut for eval tickets (augment_eval_view, same
 * decode target) and the eval-mode backbone (BatchNorm running statistics).
 * An image that cannot be decoded stops the export with its path: rows
 * must stay aligned with the dataset index, so nothing is skipped, and
 * nothing is written. Both files are written atomically at the end.
 */
#include <errno.h>
#include <getopt.h>
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
#include "export.h"
#include "lejepa.h"
#include "lejepa_cli.h"
#include "model_config.h"
#include "nn.h"
#include "npy.h"
#include "compute.h"
#include "util.h"

#define EMBED_DEFAULT_BATCH 64
#define EMBED_MAX_BATCH 4096
#define EMBED_PROGRESS_S 2.0        /* seconds between progress lines */

struct embed_opts {
    const char *ckpt, *data, *split, *out;
    int batch, threads;
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa embed --ckpt RUN|FILE --data DIR --split train|val --out PREFIX\n"
        "                    [--batch B] [--threads N]\n"
        "\n"
        "Embeds every image of a dataset split with the backbone of a lejepa-train\n"
        "checkpoint (eval mode, the eval view: shorter side resized to the global\n"
        "crop size, center crop) and writes PREFIX.emb.npy (float32, N x D) and\n"
        "PREFIX.labels.npy (int64, N), rows in the dataset's sorted path order.\n"
        "A file that cannot be decoded stops the export naming it (rows must\n"
        "align with the dataset; fix or remove the file). Progress on stderr.\n"
        "\n"
        "  --ckpt RUN|FILE a checkpoint (runs/NAME/ckpt-STEP.safetensors), a run\n"
        "                  directory (its newest checkpoint) or RUN/latest\n"
        "  --data DIR      dataset root (DIR/train/<class>/..., DIR/val/...)\n"
        "  --split S       train or val\n"
        "  --out PREFIX    output prefix (its directory must exist)\n"
        "  --batch B       images per forward pass (default %d)\n"
        "  --threads N     OpenMP/OpenBLAS threads (default all cores)\n"
        "\n"
        "Exit status: 0 written, 2 on any error (nothing written).\n",
        EMBED_DEFAULT_BATCH);
}

static void parse_args(int argc, char **argv, struct embed_opts *o)
{
    static const struct option longs[] = {
        {"ckpt", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},
        {"split", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},
        {"batch", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->batch = EMBED_DEFAULT_BATCH;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'c': o->ckpt = optarg; break;
        case 'd': o->data = optarg; break;
        case 's': o->split = optarg; break;
        case 'o': o->out = optarg; break;
        case 'b': o->batch = (int)util_parse_long("embed --batch", optarg, 1, EMBED_MAX_BATCH); break;
        case 't': o->threads = (int)util_parse_long("embed --threads", optarg, 1, 4096); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("embed: unexpected argument '%s' (see lejepa embed --help)", argv[optind]);
    if (!o->ckpt || !o->data || !o->split || !o->out)
        die("embed: --ckpt, --data, --split and --out are required (see lejepa "
            "embed --help)");
    static char ckpt[4096];
    char err[ERR_LEN];
    char note[CKPT_NOTE_LEN];
    if (ckpt_resolve(o->ckpt, ckpt, sizeof ckpt, note, err) != 0)
        die("embed: --ckpt %s", err);
    if (note[0])
        util_log("embed: %s", note);
    o->ckpt = ckpt;
    /* fail before the work, not after it: the prefix's directory */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", o->out);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (access(dir, W_OK) != 0)
        die("embed: --out %s: directory %s: %s", o->out, dir, strerror(errno));
}

/* The run's config and class count from the checkpoint's metadata. */
static void read_ckpt_config(const char *path, struct config *cfg, int *n_classes)
{
    char err[ERR_LEN];
    struct st_file f;
    if (st_open(&f, path, err) != 0)
        die("embed: %s", err);
    const char *fmt = st_meta(&f, "format"), *text = st_meta(&f, "config");
    const char *ncls = st_meta(&f, "dataset.n_classes");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0 || !text || !ncls)
        die("embed: %s: not a lejepa-train checkpoint (metadata 'format', 'config' "
            "or 'dataset.n_classes' missing)", path);
    char *end;
    errno = 0;
    long n = strtol(ncls, &end, 10);
    if (errno || end == ncls || *end || n < 1 || n > 1000000)
        die("embed: %s: metadata 'dataset.n_classes' = '%s' is not a class count",
            path, ncls);
    *n_classes = (int)n;
    config_defaults(cfg);
    char origin[4200];
    snprintf(origin, sizeof origin, "%s (metadata 'config')", path);
    if (config_load_string(cfg, text, origin, err) != 0 ||
        config_validate(cfg, err) != 0)
        die("embed: %s", err);
    st_close(&f);
}

/* Decodes images [first, first + k) of the split into the eval input as
 * (x / 255 - mean[c]) / std[c] by nn_pixels_normalize, like training. */
static void load_chunk(float *x, const struct dataset *d, int split, size_t first,
                       int k, const struct config_views *v)
{
    const int C = (int)v->channels, G = (int)v->global_size;
    const size_t plane = (size_t)G * G;
    float mean[3], std[3];
    for (int c = 0; c < C; c++) {
        mean[c] = (float)v->mean.v[c];
        std[c] = (float)v->std.v[c];
    }
    char *errs = xcalloc((size_t)k, ERR_LEN);
    int *failed = xcalloc((size_t)k, sizeof *failed);
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < k; i++) {
        char path[4200];
        char *err = errs + (size_t)i * ERR_LEN;
        struct image im;
        uint8_t *px = xmalloc((size_t)C * plane);
        if (dataset_sample_path(d, split, first + (size_t)i, path, sizeof path) != 0) {
            errf(err, "%s: sample %zu: path too long", d->root, first + (size_t)i);
            failed[i] = 1;
        } else if (image_load(&im, path, C, v->max_pixels, G, err) != 0) {
            failed[i] = 1;
        } else {
            augment_eval_view(px, &im, v);
            image_free(&im);
            nn_pixels_normalize(x + (size_t)i * C * plane, px, mean, std, 1, C,
                                plane);
        }
        free(px);
    }
    for (int i = 0; i < k; i++)
        if (failed[i])
            die("embed: %s\n(nothing written: every image of the split must embed "
                "so rows align with the labels; fix or remove the file)",
                errs + (size_t)i * ERR_LEN);
    free(failed);
    free(errs);
}

static void write_outputs(const char *prefix, const float *emb, const int64_t *labels,
                          size_t n, int dim)
{
    char path[4200], err[ERR_LEN];
    int64_t shape[2] = {(int64_t)n, dim};
    snprintf(path, sizeof path, "%s.emb.npy", prefix);
    if (npy_write(path, NPY_F32, 2, shape, emb, err) != 0)
        die("embed: %s", err);
    fprintf(stderr, "embed: wrote %s (%zu x %d float32)\n", path, n, dim);
    snprintf(path, sizeof path, "%s.labels.npy", prefix);
    if (npy_write(path, NPY_I64, 1, shape, labels, err) != 0)
        die("embed: %s", err);
    fprintf(stderr, "embed: wrote %s (%zu int64)\n", path, n);
}

int lejepa_embed_main(int argc, char **argv)
{
    struct embed_opts o;
    parse_args(argc, argv, &o);
    int split = dataset_split_parse(o.split);
    if (split < 0)
        die("embed: --split %s: expected train or val", o.split);
    compute_set_threads(o.threads);
    if (VIPS_INIT("lejepa") != 0)
        die("VIPS_INIT failed: %s", vips_error_buffer());
    vips_cache_set_max(0);
    vips_concurrency_set(1);    /* parallelism comes from the images of a chunk */

    char err[ERR_LEN];
    struct config cfg;
    int n_classes;
    read_ckpt_config(o.ckpt, &cfg, &n_classes);
    struct lejepa_config lc;
    if (model_config_resolve(&lc, &cfg, n_classes, err) != 0)
        die("embed: %s: %s", o.ckpt, err);
    lc.batch = 2;               /* only the eval graph runs: smallest training arenas */
    struct lejepa m;
    if (lejepa_init(&m, &lc, err) != 0)
        die("embed: %s: %s", o.ckpt, err);
    struct st_file f;
    if (ckpt_load(o.ckpt, &m.p, NULL, &f, err) != 0)
        die("embed: %s", err);
    st_close(&f);

    struct dataset d;
    if (dataset_open(&d, o.data, err) != 0)
        die("embed: %s", err);
    if (split == DATASET_VAL && !d.has_val)
        die("embed: %s has no val/ split", o.data);
    size_t n = d.split[split].n;
    if (n == 0)
        die("embed: %s/%s has no images", o.data, o.split);

    struct lejepa_eval ev;
    lejepa_eval_init(&ev, &m, o.batch);
    const int dim = m.emb_dim;
    float *emb = xmalloc(n * (size_t)dim * sizeof *emb);
    int64_t *labels = xmalloc(n * sizeof *labels);
    for (size_t i = 0; i < n; i++)
        labels[i] = d.split[split].labels[i];
    fprintf(stderr, "embed: %zu %s images of %s, %d-dim embeddings, batch %d\n", n,
            o.split, o.data, dim, o.batch);

    double t0 = util_time_mono(), last = t0;
    size_t nonfinite = 0;
    for (size_t first = 0; first < n; first += (size_t)o.batch) {
        int k = n - first < (size_t)o.batch ? (int)(n - first) : o.batch;
        graph_set_batch(&ev.g, k);
        load_chunk(lejepa_eval_input(&ev), &d, split, first, k, &cfg.views);
        const float *out = lejepa_eval_forward(&ev);
        float *dst = emb + first * (size_t)dim;
        memcpy(dst, out, (size_t)k * dim * sizeof *dst);
        for (size_t j = 0; j < (size_t)k * dim; j++)
            nonfinite += !isfinite(dst[j]);
        double now = util_time_mono();
        if (now - last >= EMBED_PROGRESS_S || first + (size_t)k == n) {
            fprintf(stderr, "embed: %zu/%zu images (%.0f images/s)\n",
                    first + (size_t)k, n, (double)(first + (size_t)k) / (now - t0 + 1e-9));
            last = now;
        }
    }
    if (nonfinite)
        fprintf(stderr, "embed: warning: %zu embedding values are not finite (a "
                "diverged checkpoint?)\n", nonfinite);
    write_outputs(o.out, emb, labels, n, dim);

    free(emb);
    free(labels);
    lejepa_eval_free(&ev);
    dataset_free(&d);
    lejepa_free(&m);
    vips_shutdown();
    return 0;
}
