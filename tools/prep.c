/*
 * prep.c: lejepa-prep, which turns a dataset as distributed into the
 * ImageFolder tree every lejepa program reads (loaders/dataset.h):
 *
 *   lejepa-prep fashion-mnist --out DIR [--source DIR]
 *
 * writes DIR/{train,val}/<label>-<name>/<NNNNN>.png (8-bit gray, exact
 * pixels; NNNNN = the index in the idx file) and, last, the marker
 * DIR/.lejepa-prep.json. Resumable: each PNG appears atomically (temp name,
 * rename), the file system is synced once before the marker is written, and
 * the marker is removed before any file is (re)written. So a matching marker
 * means the tree is complete and durable; without one, existing files are
 * decoded and compared before they are kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vips/vips.h>

#include "dataset.h"
#include "lejepa_version.h"
#include "prep_idx.h"
#include "prep_png.h"
#include "compute.h"
#include "util.h"

#define PREP_FORMAT_VERSION 1
#define PREP_MARKER ".lejepa-prep.json"
#define PREP_DEFAULT_SOURCE "/usr/share/datasets/fashion-mnist"
#define PREP_CHUNK 4096          /* images between progress reports */
#define PREP_PROGRESS_SECONDS 1.0
#define FMNIST_SIDE 28
#define FMNIST_CLASSES 10

static const char *const fmnist_classes[FMNIST_CLASSES] = {
    "0-tshirt-top", "1-trouser", "2-pullover", "3-dress", "4-coat",
    "5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-ankle-boot",
};

struct prep_split {
    const char *name;           /* "train" / "val" */
    const char *images_file, *labels_file;
    size_t want_n;              /* count of the real dataset */
    struct prep_idx images, labels;
    uint8_t *present;           /* (n) 1 if its PNG exists in the right folder */
    size_t missing;
    size_t written, kept, replaced, stray, stale_tmp;
};

struct prep_opts {
    const char *out, *source;
    int source_given, threads;
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa-prep fashion-mnist --out DIR [--source DIR] [--threads N]\n"
        "\n"
        "Writes DIR/train/<class>/<NNNNN>.png and DIR/val/<class>/<NNNNN>.png\n"
        "(grayscale PNG, exact pixels, NNNNN = index in the idx file) and the\n"
        "marker DIR/" PREP_MARKER ". Rerunning is safe: a complete output is\n"
        "left alone, an interrupted one is completed.\n"
        "\n"
        "  --out DIR      output folder (created)\n"
        "  --source DIR   folder with train-images-idx3-ubyte[.gz],\n"
        "                 train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz],\n"
        "                 t10k-labels-idx1-ubyte[.gz] (default " PREP_DEFAULT_SOURCE ",\n"
        "                 from Debian's dataset-fashion-mnist; with --source any\n"
        "                 consistent image count is accepted)\n"
        "  --threads N    encoder threads (default: all cores)\n"
        "  --help, --version\n");
}

static void parse_args(int argc, char **argv, struct prep_opts *o)
{
    static const struct option longs[] = {
        {"out", required_argument, NULL, 'o'},
        {"source", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->source = PREP_DEFAULT_SOURCE;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'o': o->out = optarg; break;
        case 's': o->source = optarg; o->source_given = 1; break;
        case 't':
            errno = 0;
            o->threads = (int)strtol(optarg, &end, 10);
            if (errno || *end || o->threads < 1 || o->threads > 1024)
                die("--threads %s: expected an integer in 1..1024", optarg);
            break;
        case 'h': usage(stdout); exit(0);
        case 'V': compute_print_build_info(stdout, "lejepa-prep"); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind >= argc)
        die("missing dataset name; try lejepa-prep fashion-mnist --out DIR");
    if (strcmp(argv[optind], "fashion-mnist") != 0)
        die("unknown dataset '%s' (known: fashion-mnist)", argv[optind]);
    if (optind + 1 < argc)
        die("unexpected argument '%s'", argv[optind + 1]);
    if (!o->out)
        die("missing --out DIR");
}

static void load_split(struct prep_split *s, const struct prep_opts *o)
{
    char err[ERR_LEN];
    if (prep_idx_load(&s->images, o->source, s->images_file,
                      PREP_IDX_MAGIC_IMAGES, FMNIST_SIDE, FMNIST_SIDE, err) != 0 ||
        prep_idx_load(&s->labels, o->source, s->labels_file,
                      PREP_IDX_MAGIC_LABELS, 1, 1, err) != 0)
        die("%s", err);
    if (s->images.n != s->labels.n)
        die("%s has %zu images but %s has %zu labels", s->images.path,
            s->images.n, s->labels.path, s->labels.n);
    if (!o->source_given && s->images.n != s->want_n)
        die("%s: %zu images, expected %zu for Fashion-MNIST (use --source "
            "for other data)", s->images.path, s->images.n, s->want_n);
    for (size_t i = 0; i < s->labels.n; i++)
        if (s->labels.data[i] >= FMNIST_CLASSES)
            die("%s: label %u at index %zu is outside 0..%d", s->labels.path,
                s->labels.data[i], i, FMNIST_CLASSES - 1);
}

/* Digits of the file names: 5 (the idx files' own numbering), more only for
 * larger sources, so names sort in index order. */
static int name_width(size_t n)
{
    int w = 5;
    for (size_t lim = 100000; lim < n; lim *= 10)
        w++;
    return w;
}

/* 1 and the index if name is exactly <width digits>.png. */
static int parse_sample_name(const char *name, int width, size_t *index)
{
    size_t v = 0;
    for (int i = 0; i < width; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (size_t)(name[i] - '0');
    }
    if (strcmp(name + width, ".png") != 0)
        return 0;
    *index = v;
    return 1;
}

/* Records which samples already have their PNG in the right class folder;
 * removes temp files of an interrupted run and sample-named PNGs that do not
 * belong to this source (wrong class or index beyond the count). */
static void scan_split(struct prep_split *s, const char *out)
{
    size_t n = s->images.n;
    int width = name_width(n);
    s->present = xcalloc(n, 1);
    for (int c = 0; c < FMNIST_CLASSES; c++) {
        char dir_path[4096], path[4400];
        snprintf(dir_path, sizeof dir_path, "%s/%s/%s", out, s->name,
                 fmnist_classes[c]);
        DIR *dir = opendir(dir_path);
        if (!dir)
            die("%s: cannot open: %s", dir_path, strerror(errno));
        struct dirent *e;
        while ((errno = 0, e = readdir(dir)) != NULL) {
            size_t i;
            int remove_it = 0;
            if (e->d_name[0] == '.') {
                remove_it = strstr(e->d_name, ".png.tmp.") != NULL;
                s->stale_tmp += (size_t)remove_it;
            } else if (parse_sample_name(e->d_name, width, &i)) {
                if (i < n && s->labels.data[i] == c)
                    s->present[i] = 1;
                else
                    remove_it = 1, s->stray++;
            }
            snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
            if (remove_it && unlink(path) != 0)
                die("%s: cannot remove: %s", path, strerror(errno));
        }
        if (errno)
            die("%s: cannot read: %s", dir_path, strerror(errno));
        closedir(dir);
    }
    for (size_t i = 0; i < n; i++)
        s->missing += !s->present[i];
}

/* The marker's text: everything a rerun compares, plus the source path.
 * Returns a malloc'd string; the caller frees it. */
static char *marker_text(const struct prep_split *sp, const char *source,
                         uint64_t source_hash)
{
    size_t cap = 6 * strlen(source) + 1024, len = 0;
    char *text = xmalloc(cap), *esc = xmalloc(6 * strlen(source) + 1);
    for (const unsigned char *p = (const unsigned char *)source; *p; p++) {
        if (*p == '"' || *p == '\\')
            len += (size_t)sprintf(esc + len, "\\%c", *p);
        else if (*p < 0x20)
            len += (size_t)sprintf(esc + len, "\\u%04x", *p);
        else
            esc[len++] = (char)*p;
    }
    esc[len] = '\0';
    char classes[256] = "";
    for (int c = 0; c < FMNIST_CLASSES; c++)
        snprintf(classes + strlen(classes), sizeof classes - strlen(classes),
                 "%s\"%s\"", c ? ", " : "", fmnist_classes[c]);
    snprintf(text, cap,
             "{\n  \"format\": \"lejepa-prep\",\n  \"format_version\": %d,\n"
             "  \"dataset\": \"fashion-mnist\",\n  \"source\": \"%s\",\n"
             "  \"program_version\": \"%s\",\n  \"source_fnv1a\": \"%016llx\",\n"
             "  \"train\": %zu,\n  \"val\": %zu,\n  \"classes\": [%s]\n}\n",
             PREP_FORMAT_VERSION, esc, LEJEPA_VERSION,
             (unsigned long long)source_hash, sp[0].images.n, sp[1].images.n,
             classes);
    free(esc);
    return text;
}

/* A marker matches when everything but the source path and the program
 * version is identical (the bytes of the source decide, not where they
 * were read from). */
static int marker_matches(const char *have, const char *want)
{
    const char *h = strstr(have, "\"source_fnv1a\""), *w = strstr(want, "\"source_fnv1a\"");
    const char *hs = strstr(have, "\"source\""), *ws = strstr(want, "\"source\"");
    if (!h || !w || !hs || !ws || hs - have != ws - want)
        return 0;
    return strncmp(have, want, (size_t)(ws - want)) == 0 && strcmp(h, w) == 0;
}

static void report_progress(const struct prep_split *s, size_t done,
                            double *last, int final)
{
    double now = util_time_mono();
    if (!final && now - *last < PREP_PROGRESS_SECONDS)
        return;
    *last = now;
    fprintf(stderr, "\r  %s: %zu/%zu (%.0f%%)%s", s->name, done, s->images.n,
            100.0 * (double)done / (double)s->images.n, final ? "\n" : "");
}

/* Writes every PNG that is missing, and, without a matching marker, every
 * existing one whose pixels differ. Exits with the first error. */
static void write_split(struct prep_split *s, const char *out, int marker_ok,
                        int tty)
{
    size_t n = s->images.n, px = FMNIST_SIDE * FMNIST_SIDE;
    int width = name_width(n);
    long pid = (long)getpid();
    double last = util_time_mono();
    int failed = 0, progress = tty && (s->missing > PREP_CHUNK || !marker_ok);
    char first_err[ERR_LEN] = "";
    size_t written = 0, kept = 0, replaced = 0;
    for (size_t start = 0; start < n && !failed; start += PREP_CHUNK) {
        size_t end = start + PREP_CHUNK < n ? start + PREP_CHUNK : n;
        #pragma omp parallel for schedule(dynamic, 16) reduction(+:written, kept, replaced)
        for (size_t i = start; i < end; i++) {
            int stop;
            #pragma omp atomic read
            stop = failed;
            if (stop)
                continue;
            const uint8_t *pix = s->images.data + i * px;
            char path[4096], tmp[4200], err[ERR_LEN];
            const char *cls = fmnist_classes[s->labels.data[i]];
            snprintf(path, sizeof path, "%s/%s/%s/%0*zu.png", out, s->name,
                     cls, width, i);
            if (s->present[i]) {
                if (marker_ok || prep_png_matches(path, pix, FMNIST_SIDE,
                                                  FMNIST_SIDE)) {
                    kept++;
                    continue;
                }
                replaced++;
            }
            snprintf(tmp, sizeof tmp, "%s/%s/%s/.%0*zu.png.tmp.%ld", out,
                     s->name, cls, width, i, pid);
            if (prep_png_write(path, tmp, pix, FMNIST_SIDE, FMNIST_SIDE,
                               err) != 0) {
                #pragma omp critical(prep_error)
                if (!failed) {
                    memcpy(first_err, err, ERR_LEN);
                    #pragma omp atomic write
                    failed = 1;
                }
                continue;
            }
            written++;
        }
        if (progress)
            report_progress(s, end, &last, end == n || failed);
    }
    if (failed)
        die("%s", first_err);
    s->written = written;
    s->kept = kept;
    s->replaced = replaced;
}

static void sync_output(const char *out)
{
    int fd = open(out, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || syncfs(fd) != 0)
        die("%s: cannot sync the file system: %s", out, strerror(errno));
    close(fd);
}

static void make_class_dirs(const char *out)
{
    char path[4096], err[ERR_LEN];
    for (int s = 0; s < DATASET_N_SPLITS; s++)
        for (int c = 0; c < FMNIST_CLASSES; c++) {
            snprintf(path, sizeof path, "%s/%s/%s", out, dataset_split_name(s),
                     fmnist_classes[c]);
            if (util_mkdir_p(path, err) != 0)
                die("%s", err);
        }
}

static void print_index(const char *out)
{
    struct dataset d;
    char err[ERR_LEN];
    double t0 = util_time_mono();
    if (dataset_open(&d, out, err) != 0)
        die("the tree just written does not index: %s", err);
    double dt = util_time_mono() - t0;
    dataset_print_summary(&d, stdout);
    printf("  indexed in %.3f s\n", dt);
    dataset_free(&d);
}

int main(int argc, char **argv)
{
    if (VIPS_INIT(argv[0]) != 0)
        die("cannot initialise libvips: %s", vips_error_buffer());
    struct prep_opts o;
    parse_args(argc, argv, &o);
    int threads = compute_set_threads(o.threads);
    vips_concurrency_set(1);    /* parallelism comes from our OpenMP loop */
    vips_cache_set_max(0);      /* every image is used once */

    double t0 = util_time_mono();
    struct prep_split sp[DATASET_N_SPLITS] = {
        {.name = "train", .images_file = "train-images-idx3-ubyte",
         .labels_file = "train-labels-idx1-ubyte", .want_n = 60000},
        {.name = "val", .images_file = "t10k-images-idx3-ubyte",
         .labels_file = "t10k-labels-idx1-ubyte", .want_n = 10000},
    };
    uint64_t source_hash = HASH_FNV_OFFSET;
    for (int s = 0; s < DATASET_N_SPLITS; s++) {
        load_split(&sp[s], &o);
        uint64_t h[2] = {sp[s].images.hash, sp[s].labels.hash};
        source_hash = hash_fnv1a(source_hash, h, sizeof h);
    }
    printf("lejepa-prep: fashion-mnist from %s into %s (%d threads)\n",
           o.source, o.out, threads);

    char marker_path[4096], err[ERR_LEN];
    snprintf(marker_path, sizeof marker_path, "%s/" PREP_MARKER, o.out);
    char *want = marker_text(sp, o.source, source_hash);
    char *have = util_read_file(marker_path, NULL, NULL);
    int marker_ok = have && marker_matches(have, want);
    if (have && !marker_ok)
        printf("  %s is from another source or version: checking every "
               "existing file\n", marker_path);
    make_class_dirs(o.out);
    size_t todo = 0;
    for (int s = 0; s < DATASET_N_SPLITS; s++) {
        scan_split(&sp[s], o.out);
        todo += sp[s].missing + sp[s].stray + sp[s].stale_tmp;
    }

    if (marker_ok && todo == 0) {
        printf("  %s is complete (marker matches the source): nothing to do\n",
               o.out);
    } else {
        if (have && unlink(marker_path) != 0)
            die("%s: cannot remove the old marker: %s", marker_path,
                strerror(errno));
        int tty = isatty(STDERR_FILENO);
        for (int s = 0; s < DATASET_N_SPLITS; s++) {
            struct prep_split *p = &sp[s];
            write_split(p, o.out, marker_ok, tty);
            printf("  %s: %zu images: %zu written, %zu kept", p->name,
                   p->images.n, p->written, p->kept);
            if (p->replaced)
                printf(" (%zu rewritten: pixels differed)", p->replaced);
            if (p->stray)
                printf(", %zu stray files removed", p->stray);
            if (p->stale_tmp)
                printf(", %zu temp files of an interrupted run removed",
                       p->stale_tmp);
            putchar('\n');
        }
        sync_output(o.out);
        if (util_write_file_atomic(marker_path, want, strlen(want), err) != 0)
            die("%s", err);
        printf("  done in %.1f s; wrote %s\n", util_time_mono() - t0,
               marker_path);
    }
    fflush(stdout);
    print_index(o.out);

    for (int s = 0; s < DATASET_N_SPLITS; s++) {
        prep_idx_free(&sp[s].images);
        prep_idx_free(&sp[s].labels);
        free(sp[s].present);
    }
    free(want);
    free(have);
    vips_shutdown();
    return 0;
}
