/*
 * bench_loader.c: augmented samples per second of one process on one core
 * (decode with image_load + every view with augment_views), against the
 * torchvision pipeline with the same augmentations on the same files
 * (tools/bench_loader.py, run in the same invocation), on two sets:
 * Fashion-MNIST PNGs (2 x 28 + 6 x 14 views, gray) and 500 x 375 JPEG
 * photos (2 x 224 + 6 x 96 views, RGB; generated here from the one photo
 * Debian ships, grace_hopper.jpg from matplotlib, or gradients and noise).
 * A benchmark, not a test: run it by hand, quote its output.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vips/vips.h>

#include "augment.h"
#include "companion.h"
#include "config.h"
#include "dataset.h"
#include "rng.h"
#include "util.h"

#define PHOTO_W 500
#define PHOTO_H 375
#define PHOTO_MARKER ".bench-photos-v1"
#define PHOTO_SOURCE "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"

static void usage(FILE *out)
{
    fprintf(out,
"usage: bench-loader [options]\n"
"Augmented samples/s of one process on one core, C (libvips decode + views)\n"
"vs torchvision (PIL decode + the same transforms), on the same files.\n"
"  --fmnist DIR    lejepa-prep output (default /tmp/fmnist; skipped if absent)\n"
"  --photos DIR    JPEG set, generated there if missing\n"
"                  (default /tmp/lejepa-bench-photos)\n"
"  --files N       files per set (default 2000 Fashion-MNIST, 200 photos)\n"
"  --seconds S     minimum timed seconds per side and set (default 4)\n"
"  --only SET      fmnist or photos\n"
"  --no-torch      skip the torchvision side\n"
"  --json          one JSON object per set instead of text\n");
}

/* 200 photo-like JPEGs: random crops of a real photo (or a gradient),
 * resized to 500 x 375, with Gaussian noise so no two files are alike. */
static void make_photos(const char *dir, int n)
{
    char err[ERR_LEN], path[4096];
    if (util_mkdir_p(dir, err) != 0)
        die("%s", err);
    VipsImage *base = NULL;
    if (access(PHOTO_SOURCE, R_OK) == 0)
        base = vips_image_new_from_file(PHOTO_SOURCE, NULL);
    if (!base) {
        VipsImage *x, *y, *b;
        if (vips_xyz(&x, 640, 480, NULL) ||
            vips_extract_band(x, &y, 0, "n", 2, NULL) ||
            vips_bandjoin_const1(y, &b, 128, NULL))
            die("bench-loader: cannot make a gradient: %s", vips_error_buffer());
        g_object_unref(x);
        g_object_unref(y);
        if (vips_cast_uchar(b, &base, NULL))
            die("bench-loader: %s", vips_error_buffer());
        g_object_unref(b);
    }
    struct rng r;
    rng_init(&r, 2026, 0, 0, 0);
    for (int i = 0; i < n; i++) {
        VipsObject *pool = VIPS_OBJECT(vips_image_new());
        VipsImage **t = (VipsImage **)vips_object_local_array(pool, 6);
        int cw = (int)(rng_range(&r, 0.5, 1.0) * base->Xsize);
        int ch = cw * PHOTO_H / PHOTO_W;
        if (ch > base->Ysize)
            ch = base->Ysize;
        int x = (int)rng_below(&r, (uint64_t)(base->Xsize - cw + 1));
        int y = (int)rng_below(&r, (uint64_t)(base->Ysize - ch + 1));
        snprintf(path, sizeof path, "%s/%04d.jpg", dir, i);
        if (vips_extract_area(base, &t[0], x, y, cw, ch, NULL) ||
            vips_resize(t[0], &t[1], (double)PHOTO_W / cw,
                        "vscale", (double)PHOTO_H / ch, NULL) ||
            vips_gaussnoise(&t[2], t[1]->Xsize, t[1]->Ysize, "sigma", 6.0, NULL) ||
            vips_add(t[1], t[2], &t[3], NULL) ||
            vips_cast_uchar(t[3], &t[4], NULL) ||
            vips_jpegsave(t[4], path, "Q", 90, NULL))
            die("bench-loader: writing %s: %s", path, vips_error_buffer());
        g_object_unref(pool);
    }
    g_object_unref(base);
    snprintf(path, sizeof path, "%s/" PHOTO_MARKER, dir);
    if (util_write_file_atomic(path, "ok\n", 3, err) != 0)
        die("%s", err);
}

/* Rates are per CPU second of the process (the machine may be shared, and
 * both sides run one thread) and, for reference, per wall second. */
struct result {
    double c_rate, c_wall_rate;             /* samples/s */
    double decode_s, augment_s;             /* CPU seconds per sample */
    double torch_rate, torch_wall_rate;
    int have_torch;
    char versions[128];
};

static double cpu_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Times load + views over the files, round robin, for at least `seconds`. */
static void run_c(struct result *res, char **files, int n,
                  const struct config_views *v, double seconds)
{
    size_t g = (size_t)v->channels * v->global_size * v->global_size;
    size_t l = (size_t)v->channels * v->local_size * v->local_size;
    uint8_t *buf = xmalloc(g * v->global_count + l * v->local_count);
    uint8_t *gp[16], *lp[64];
    for (int k = 0; k < v->global_count; k++)
        gp[k] = buf + k * g;
    for (int k = 0; k < v->local_count; k++)
        lp[k] = buf + g * v->global_count + k * l;
    int target = augment_load_target(v);
    char err[ERR_LEN];
    double dec = 0, aug = 0;
    long done = 0;
    double start = cpu_time(), wall = util_time_mono();
    for (long i = -n / 10; ; i++) {     /* a tenth of a pass of warm-up */
        if (i == 0) {
            dec = aug = 0;
            start = cpu_time();
            wall = util_time_mono();
        }
        double t0 = cpu_time();
        struct image im;
        const char *f = files[(i + n) % n];
        if (image_load(&im, f, (int)v->channels, v->max_pixels, target, err) != 0)
            die("%s", err);
        double t1 = cpu_time();
        augment_views(gp, lp, &im, v, 1, 0, (uint64_t)(i + n));
        double t2 = cpu_time();
        image_free(&im);
        dec += t1 - t0;
        aug += t2 - t1;
        if (i >= 0)
            done++;
        if (i >= 0 && done >= n && t2 - start >= seconds)
            break;
    }
    res->c_wall_rate = done / (util_time_mono() - wall);
    res->c_rate = done / (cpu_time() - start);
    res->decode_s = dec / done;
    res->augment_s = aug / done;
    free(buf);
}

static int run_torch(struct result *res, const char *list,
                     const struct config_views *v, double seconds)
{
    char args[4096], err[ERR_LEN];
    snprintf(args, sizeof args,
             "--list '%s' --channels %d --global-size %d --local-size %d "
             "--global-count %d --local-count %d --seconds %g", list,
             (int)v->channels, (int)v->global_size, (int)v->local_size,
             (int)v->global_count, (int)v->local_count, seconds);
    const struct companion_field f[] = {
        {"samples_per_cpu_s", &res->torch_rate, NULL, 0},
        {"samples_per_s", &res->torch_wall_rate, NULL, 0},
        {"versions", NULL, res->versions, sizeof res->versions},
    };
    if (companion_run(LEJEPA_BENCH_LOADER_SCRIPT, args, f, 3, err) != 0) {
        fprintf(stderr, "bench-loader: %s\n", err);
        return -1;
    }
    return 0;
}

/* Runs one set: C, then torchvision on the same file list. */
static void bench_set(const char *name, char **files, int n,
                      const struct config_views *v, double seconds, int torch,
                      int as_json)
{
    struct result res = {0};
    run_c(&res, files, n, v, seconds);
    char list[] = "/tmp/bench-loader-XXXXXX";
    int fd = mkstemp(list);
    if (fd < 0)
        die("bench-loader: mkstemp: %m");
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\n", files[i]);
    fclose(f);
    res.have_torch = torch && run_torch(&res, list, v, seconds) == 0;
    unlink(list);
    if (torch && !res.have_torch)
        fprintf(stderr, "bench-loader: the torchvision side failed (apt-get "
                        "install python3-torchvision)\n");
    char spec[128];
    snprintf(spec, sizeof spec, "%dx%d + %dx%d px, %d channel%s",
             (int)v->global_count, (int)v->global_size, (int)v->local_count,
             (int)v->local_size, (int)v->channels, v->channels > 1 ? "s" : "");
    if (as_json) {
        printf("{\"set\":\"%s\",\"files\":%d,\"views\":\"%s\",\"threads\":1,"
               "\"samples_per_cpu_s\":%.1f,\"samples_per_s\":%.1f,"
               "\"decode_ms\":%.4f,\"augment_ms\":%.4f", name, n, spec,
               res.c_rate, res.c_wall_rate, 1e3 * res.decode_s,
               1e3 * res.augment_s);
        if (res.have_torch)
            printf(",\"torch_samples_per_cpu_s\":%.1f,\"torch_samples_per_s\":%.1f,"
                   "\"ratio\":%.2f,\"torch\":\"%s\"", res.torch_rate,
                   res.torch_wall_rate, res.c_rate / res.torch_rate, res.versions);
        printf("}\n");
    } else {
        printf("%s: %d files, %s, 1 thread\n", name, n, spec);
        printf("  C:           %8.1f samples per CPU s (%.1f per wall s; decode "
               "%.3f ms, views %.3f ms per sample)\n", res.c_rate,
               res.c_wall_rate, 1e3 * res.decode_s, 1e3 * res.augment_s);
        if (res.have_torch)
            printf("  torchvision: %8.1f samples per CPU s (%.1f per wall s; %s)\n"
                   "  ratio per core: %.2fx\n", res.torch_rate,
                   res.torch_wall_rate, res.versions, res.c_rate / res.torch_rate);
    }
    fflush(stdout);
}

static char **fmnist_files(const char *dir, int *n)
{
    char marker[4096], err[ERR_LEN];
    snprintf(marker, sizeof marker, "%s/.lejepa-prep.json", dir);
    if (access(marker, R_OK) != 0) {
        fprintf(stderr, "bench-loader: no %s; make it with `lejepa-prep "
                        "fashion-mnist --out %s`. Skipping Fashion-MNIST.\n",
                marker, dir);
        return NULL;
    }
    struct dataset d;
    if (dataset_open(&d, dir, err) != 0)
        die("%s", err);
    size_t total = d.split[DATASET_TRAIN].n;
    if ((size_t)*n > total)
        *n = (int)total;
    char **files = xmalloc((size_t)*n * sizeof *files);
    for (int i = 0; i < *n; i++) {
        char path[4096];
        /* Spread over the classes: every (total / n)-th sample. */
        if (dataset_sample_path(&d, DATASET_TRAIN, (size_t)i * (total / *n),
                                path, sizeof path) != 0)
            die("bench-loader: sample path too long");
        files[i] = xstrdup(path);
    }
    dataset_free(&d);
    return files;
}

static char **photo_files(const char *dir, int *n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/" PHOTO_MARKER, dir);
    struct stat st;
    int have = 0;
    if (stat(path, &st) == 0) {
        snprintf(path, sizeof path, "%s/%04d.jpg", dir, *n - 1);
        have = access(path, R_OK) == 0;
    }
    if (!have) {
        fprintf(stderr, "bench-loader: writing %d JPEGs of %dx%d to %s\n", *n,
                PHOTO_W, PHOTO_H, dir);
        make_photos(dir, *n);
    }
    char **files = xmalloc((size_t)*n * sizeof *files);
    for (int i = 0; i < *n; i++) {
        snprintf(path, sizeof path, "%s/%04d.jpg", dir, i);
        files[i] = xstrdup(path);
    }
    return files;
}

static void free_files(char **files, int n)
{
    for (int i = 0; i < n; i++)
        free(files[i]);
    free(files);
}

int main(int argc, char **argv)
{
    if (VIPS_INIT(argv[0]))
        die("libvips failed to start: %s", vips_error_buffer());
    vips_cache_set_max(0);
    vips_concurrency_set(1);
    const char *fmnist = "/tmp/fmnist", *photos = "/tmp/lejepa-bench-photos";
    const char *only = NULL;
    int nfiles = 0, torch = 1, as_json = 0;
    double seconds = 4;
    static const struct option opts[] = {
        {"fmnist", required_argument, NULL, 'f'},
        {"photos", required_argument, NULL, 'p'},
        {"files", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 's'},
        {"only", required_argument, NULL, 'o'},
        {"no-torch", no_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'f': fmnist = optarg; break;
        case 'p': photos = optarg; break;
        case 'n': nfiles = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'o': only = optarg; break;
        case 'T': torch = 0; break;
        case 'j': as_json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (nfiles < 0 || !(seconds > 0) ||
        (only && strcmp(only, "fmnist") != 0 && strcmp(only, "photos") != 0))
        die("--files must be >= 1, --seconds > 0, --only fmnist or photos");
    struct config cfg;
    config_defaults(&cfg);
    if (!only || strcmp(only, "fmnist") == 0) {
        int n = nfiles ? nfiles : 2000;
        char **files = fmnist_files(fmnist, &n);
        if (files) {
            bench_set("fashion-mnist", files, n, &cfg.views, seconds, torch, as_json);
            free_files(files, n);
        }
    }
    if (!only || strcmp(only, "photos") == 0) {
        int n = nfiles ? nfiles : 200;
        char **files = photo_files(photos, &n);
        struct config_views v = cfg.views;
        v.channels = 3;
        v.global_size = 224;
        v.local_size = 96;
        bench_set("photos-500x375", files, n, &v, seconds, torch, as_json);
        free_files(files, n);
    }
    vips_shutdown();
    return 0;
}
