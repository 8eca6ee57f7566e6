/*
 * lejepa_embed.c: `lejepa embed`: the backbone embeddings of every image of
 * one dataset split under a checkpoint, as PREFIX.emb.npy (float32 (N, D))
 * and PREFIX.labels.npy (int64 (N), numpy's default integer), row i being
 * sample i of the split in the dataset index's order (dataset.h). The model
 * is built from the config saved in the checkpoint; every image goes through
 * the eval view the loaders cut for eval tickets (augment_eval_view, same
 * decode target) and the eval-mode backbone (BatchNorm running statistics).
 * In a split, an image that cannot be decoded stops the export with its
 * path: rows must stay aligned with the dataset index, so nothing is
 * skipped, and nothing is written.
 * With --images DIR (any folder, no labels) every image file below DIR is
 * embedded in the order of dataset_list_images, and PREFIX.paths.txt names
 * row i's file on line i; there an unreadable image is named on stderr,
 * counted and left out of both files, so rows and lines still correspond.
 * The files are written atomically at the end.
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
    char *images;               /* --images DIR, trailing slashes cut; or NULL */
    int batch, threads;
    enum lejepa_features features; /* --features */
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa embed --ckpt RUN|FILE --data DIR --split train|val --out PREFIX\n"
        "                    [--features F] [--batch B] [--threads N]\n"
        "       lejepa embed --ckpt RUN|FILE --images DIR --out PREFIX\n"
        "                    [--features F] [--batch B] [--threads N]\n"
        "\n"
        "Embeds every image of a dataset split with the backbone of a lejepa-train\n"
        "checkpoint (eval mode, the eval view: shorter side resized to the global\n"
        "crop size, center crop) and writes PREFIX.emb.npy (float32, N x D) and\n"
        "PREFIX.labels.npy (int64, N), rows in the dataset's sorted path order.\n"
        "A file that cannot be decoded stops the export naming it (rows must\n"
        "align with the dataset; fix or remove the file). Progress on stderr.\n"
        "\n"
        "With --images DIR instead of --data and --split: every image file below\n"
        "DIR (any folder, no labels; nested folders included, dotfiles and\n"
        "dot-folders ignored, images chosen by extension) in bytewise order of\n"
        "its path relative to DIR, written as PREFIX.emb.npy and\n"
        "PREFIX.paths.txt: line i is the relative path of row i's file. A file\n"
        "that cannot be decoded is named on stderr, counted in the summary and\n"
        "left out of both files (rows and lines still correspond).\n"
        "\n"
        "  --ckpt RUN|FILE a checkpoint (runs/NAME/ckpt-STEP.safetensors), a run\n"
        "                  directory (its newest checkpoint) or RUN/latest\n"
        "  --data DIR      dataset root (DIR/train/<class>/..., DIR/val/...)\n"
        "  --split S       train or val\n"
        "  --images DIR    embed the images below DIR instead of a split\n"
        "  --out PREFIX    output prefix (its directory must exist)\n"
        "  --features F    embed: the backbone's embedding (default, what the\n"
        "                  projector reads); cls_last2 (ViT): the official\n"
        "                  linear-probe protocol's features, the CLS token of the\n"
        "                  last two blocks each through the final LayerNorm,\n"
        "                  concatenated (2 x dim; score them with lejepa-eval\n"
        "                  --probe adamw)\n"
        "  --batch B       images per forward pass (default %d)\n"
        "  --threads N     OpenMP/OpenBLAS threads (default all cores)\n"
        "\n"
        "Exit status: 0 written (with --images also when some files were\n"
        "skipped), 2 on any error (nothing written): with --images a missing\n"
        "DIR, no image file below it, or none that decodes.\n",
        EMBED_DEFAULT_BATCH);
}

static void parse_args(int argc, char **argv, struct embed_opts *o)
{
    static const struct option longs[] = {
        {"ckpt", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},
        {"split", required_argument, NULL, 's'},
        {"images", required_argument, NULL, 'i'},
        {"out", required_argument, NULL, 'o'},
        {"batch", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"features", required_argument, NULL, 'f'},
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
        case 'i': o->images = optarg; break;
        case 'o': o->out = optarg; break;
        case 'b': o->batch = (int)util_parse_long("embed --batch", optarg, 1, EMBED_MAX_BATCH); break;
        case 't': o->threads = (int)util_parse_long("embed --threads", optarg, 1, 4096); break;
        case 'f':
            if (strcmp(optarg, "embed") == 0)
                o->features = LEJEPA_FEATURES_EMBED;
            else if (strcmp(optarg, "cls_last2") == 0)
                o->features = LEJEPA_FEATURES_CLS_LAST2;
            else
                die("embed: --features %s: expected embed or cls_last2", optarg);
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("embed: unexpected argument '%s' (see lejepa embed --help)", argv[optind]);
    if (o->images && (o->data || o->split))
        die("embed: --images DIR replaces --data and --split: give one or the "
            "other (see lejepa embed --help)");
    if (!o->ckpt || !o->out || (!o->images && (!o->data || !o->split)))
        die("embed: --ckpt, --out and either --data with --split or --images "
            "are required (see lejepa embed --help)");
    if (o->images) {
        size_t len = strlen(o->images);
        while (len > 1 && o->images[len - 1] == '/')
            o->images[--len] = '\0';
    }
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

/* The images to embed, in row order: root + "/" + paths[i]. */
struct embed_list {
    const char *root;
    char **paths;               /* (n) relative to root */
    size_t n;
    const struct dataset *d;    /* a split's samples (shards), or NULL */
    int split;
};

/* Decodes images [first, first + k) of the list into the eval input as
 * (x / 255 - mean[c]) / std[c] by nn_pixels_normalize, like training.
 * Image i that fails sets failed[i] and its reason in errs + i * ERR_LEN
 * (both the caller's, k entries); returns the number that failed. */
static int load_chunk(float *x, const struct embed_list *l, size_t first, int k,
                      const struct config_views *v, int *failed, char *errs)
{
    const int C = (int)v->channels, G = (int)v->global_size;
    const size_t plane = (size_t)G * G;
    float mean[3], std[3];
    for (int c = 0; c < C; c++) {
        mean[c] = (float)v->mean.v[c];
        std[c] = (float)v->std.v[c];
    }
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < k; i++) {
        char path[4200];
        char *err = errs + (size_t)i * ERR_LEN;
        const char *rel = l->paths[first + (size_t)i];
        struct image im;
        uint8_t *px = xmalloc((size_t)C * plane);
        const struct dataset_split *sp = l->d ? &l->d->split[l->split] : NULL;
        size_t at = first + (size_t)i;
        int n = sp && sp->shard && sp->shard[at] >= 0
            ? snprintf(path, sizeof path, "%s/%s", l->root,
                       l->d->shards[sp->shard[at]])
            : snprintf(path, sizeof path, "%s/%s", l->root, rel);
        failed[i] = 0;
        if (n < 0 || (size_t)n >= sizeof path) {
            errf(err, "%s/%s: path too long", l->root, rel);
            failed[i] = 1;
        } else if (sp && sp->shard && sp->shard[at] >= 0) {
            /* a tar shard's member */
            void *buf;
            size_t len;
            char name[4400];
            failed[i] = dataset_read_member(path, sp->offset[at], &buf, &len, name,
                                            sizeof name, err) != 0 ||
                image_load_buffer(&im, buf, len, name, C, v->max_pixels, G, err) != 0;
            free(buf); /* NULL when it could not be read */
        } else if (image_load(&im, path, C, v->max_pixels, G, err) != 0) {
            failed[i] = 1;
        }
        if (!failed[i]) {
            augment_eval_view(px, &im, v);
            image_free(&im);
            nn_pixels_normalize(x + (size_t)i * C * plane, px, mean, std, 1, C,
                                plane);
        }
        free(px);
    }
    int bad = 0;
    for (int i = 0; i < k; i++)
        bad += failed[i];
    return bad;
}

/* PREFIX.emb.npy, then PREFIX.labels.npy (labels not NULL) or
 * PREFIX.paths.txt (paths not NULL): row i's label or relative path. */
static void write_outputs(const char *prefix, const float *emb, const int64_t *labels,
                          char *const *paths, size_t n, int dim)
{
    char path[4200], err[ERR_LEN];
    int64_t shape[2] = {(int64_t)n, dim};
    snprintf(path, sizeof path, "%s.emb.npy", prefix);
    if (npy_write(path, NPY_F32, 2, shape, emb, err) != 0)
        die("embed: %s", err);
    fprintf(stderr, "embed: wrote %s (%zu x %d float32)\n", path, n, dim);
    if (labels) {
        snprintf(path, sizeof path, "%s.labels.npy", prefix);
        if (npy_write(path, NPY_I64, 1, shape, labels, err) != 0)
            die("embed: %s", err);
        fprintf(stderr, "embed: wrote %s (%zu int64)\n", path, n);
    }
    if (paths) {
        size_t len = 0;
        for (size_t i = 0; i < n; i++)
            len += strlen(paths[i]) + 1;
        char *text = xmalloc(len + 1), *end = text;
        for (size_t i = 0; i < n; i++)
            end += sprintf(end, "%s\n", paths[i]);
        snprintf(path, sizeof path, "%s.paths.txt", prefix);
        if (util_write_file_atomic(path, text, len, err) != 0)
            die("embed: %s", err);
        fprintf(stderr, "embed: wrote %s (%zu lines)\n", path, n);
        free(text);
    }
}

/* --images DIR: its image files, less those whose name holds a line break
 * (paths.txt could not name them; said and counted in *skipped). The
 * list's paths point into s. */
static void list_images(struct embed_list *l, struct dataset_split *s,
                        const char *dir, size_t *skipped)
{
    char err[ERR_LEN];
    if (dataset_list_images(s, dir, err) != 0)
        die("embed: --images %s", err);
    if (s->n == 0)
        die("embed: --images %s: no image files below it (%zu other files; images "
            "are chosen by extension: .png, .jpg, .jpeg, .webp, .tif, .gif, .bmp, "
            "...)", dir, s->skipped);
    l->root = dir;
    l->paths = xmalloc(s->n * sizeof *l->paths);
    l->n = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (strpbrk(s->paths[i], "\n\r")) {
            fprintf(stderr, "embed: skipped %s/%s: its name holds a line break, "
                    "which PREFIX.paths.txt cannot list\n", dir, s->paths[i]);
            (*skipped)++;
            continue;
        }
        l->paths[l->n++] = s->paths[i];
    }
}

int lejepa_embed_main(int argc, char **argv)
{
    struct embed_opts o;
    parse_args(argc, argv, &o);
    int split = o.images ? -1 : dataset_split_parse(o.split);
    if (!o.images && split < 0)
        die("embed: --split %s: expected train or val", o.split);
    compute_set_threads(o.threads);
    if (VIPS_INIT("lejepa") != 0)
        die("VIPS_INIT failed: %s", vips_error_buffer());
    vips_cache_set_max(0);
    vips_concurrency_set(1);    /* parallelism comes from the images of a chunk */

    char err[ERR_LEN];
    /* the images first: a wrong folder fails before the model loads */
    struct dataset d = {0};
    struct dataset_split found = {0};
    struct embed_list list;
    size_t skipped = 0;         /* --images: files left out */
    if (o.images) {
        list_images(&list, &found, o.images, &skipped);
    } else {
        if (dataset_open(&d, o.data, err) != 0)
            die("embed: %s", err);
        if (split == DATASET_VAL && !d.has_val)
            die("embed: %s has no val/ split", o.data);
        if (d.split[split].n == 0)
            die("embed: %s/%s has no images", o.data, o.split);
        list = (struct embed_list){d.root, d.split[split].paths, d.split[split].n, &d,
                                   split};
    }
    const size_t n = list.n;

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

    struct lejepa_eval ev;
    const int dim = lejepa_features_dim(&m, o.features, err);
    if (dim < 0)
        die("embed: --features cls_last2: %s", err);
    lejepa_eval_init_features(&ev, &m, o.batch, o.features);
    const size_t sample = cfg.views.channels * cfg.views.global_size * cfg.views.global_size;
    float *emb = xmalloc((n ? n : 1) * (size_t)dim * sizeof *emb);
    size_t *rows = xmalloc((n ? n : 1) * sizeof *rows);   /* list index of each row */
    int *failed = xcalloc((size_t)o.batch, sizeof *failed);
    char *errs = xcalloc((size_t)o.batch, ERR_LEN);
    if (o.images)
        fprintf(stderr, "embed: %zu images below %s, %d-dim embeddings, batch %d\n",
                n, o.images, dim, o.batch);
    else
        fprintf(stderr, "embed: %zu %s images of %s, %d-dim embeddings, batch %d\n",
                n, o.split, o.data, dim, o.batch);

    double t0 = util_time_mono(), last = t0;
    size_t nonfinite = 0, n_out = 0;
    for (size_t first = 0; first < n; first += (size_t)o.batch) {
        int k = n - first < (size_t)o.batch ? (int)(n - first) : o.batch;
        float *x = lejepa_eval_input(&ev);
        int bad = load_chunk(x, &list, first, k, &cfg.views, failed, errs);
        /* a split's rows must align with its labels: nothing is skipped;
         * with --images a failed image's slot is closed up */
        int kept = 0;
        for (int i = 0; i < k; i++) {
            if (failed[i] && !o.images)
                die("embed: %s\n(nothing written: every image of the split must "
                    "embed so rows align with the labels; fix or remove the file)",
                    errs + (size_t)i * ERR_LEN);
            if (failed[i]) {
                fprintf(stderr, "embed: skipped %s\n", errs + (size_t)i * ERR_LEN);
                continue;
            }
            if (kept != i)
                memmove(x + (size_t)kept * sample, x + (size_t)i * sample,
                        sample * sizeof *x);
            rows[n_out + (size_t)kept++] = first + (size_t)i;
        }
        skipped += (size_t)bad;
        if (kept > 0) {
            graph_set_batch(&ev.g, kept);
            const float *out = lejepa_eval_forward(&ev);
            float *dst = emb + n_out * (size_t)dim;
            memcpy(dst, out, (size_t)kept * dim * sizeof *dst);
            for (size_t j = 0; j < (size_t)kept * dim; j++)
                nonfinite += !isfinite(dst[j]);
            n_out += (size_t)kept;
        }
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
    if (o.images && n_out == 0)
        die("embed: --images %s: none of its %zu image files could be decoded "
            "(named above); nothing written", o.images, n + skipped);
    if (o.images) {
        char **paths = xmalloc(n_out * sizeof *paths);
        for (size_t r = 0; r < n_out; r++)
            paths[r] = list.paths[rows[r]];
        write_outputs(o.out, emb, NULL, paths, n_out, dim);
        free(paths);
        fprintf(stderr, "embed: %zu images embedded, %zu skipped%s\n", n_out, skipped,
                skipped ? " (named above; not in the .npy nor in paths.txt)" : "");
        free(list.paths);
    } else {
        int64_t *labels = xmalloc(n * sizeof *labels);
        for (size_t r = 0; r < n; r++)
            labels[r] = d.split[split].labels[rows[r]];
        write_outputs(o.out, emb, labels, NULL, n, dim);
        free(labels);
    }

    free(errs);
    free(failed);
    free(rows);
    free(emb);
    lejepa_eval_free(&ev);
    dataset_split_free(&found);
    dataset_free(&d);
    lejepa_free(&m);
    vips_shutdown();
    return 0;
}
