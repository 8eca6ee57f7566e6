/*
 * test_prep.c: lejepa-prep end to end, run as a subprocess from the build
 * tree ($LEJEPA_BUILD_ROOT/tools/lejepa-prep) on tiny idx files with seeded
 * random pixels and labels (train gzip-compressed, val plain): every PNG
 * read back with libvips has exactly the source pixels and the label of its
 * class folder; a rerun writes nothing; deleted files, a corrupted file and a
 * leftover temp file are repaired and nothing else is touched; bad idx files
 * are refused with a message naming the file.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vips/vips.h>
#include <zlib.h>

#include "dataset.h"
#include "testing.h"
#include "util.h"

enum { SIDE = 28, PX = SIDE * SIDE, N_TRAIN = 23, N_VAL = 7, N_MAX = 32 };

struct source {
    uint8_t pix[2][N_MAX * PX];
    uint8_t labels[2][N_MAX];
    size_t n[2];
};

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes an idx file (gzip when gz) with the given magic and header. */
static void write_idx(const char *dir, const char *name, int gz, uint32_t magic,
                      size_t n, int dims, const uint8_t *data, size_t len)
{
    uint8_t head[16];
    put_be32(head, magic);
    put_be32(head + 4, (uint32_t)n);
    put_be32(head + 8, SIDE);
    put_be32(head + 12, SIDE);
    size_t head_len = 4 + 4 * (size_t)dims;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, gz ? ".gz" : "");
    gzFile f = gzopen(path, gz ? "wb" : "wbT");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(gzwrite(f, head, (unsigned)head_len), (int)head_len);
    CU_ASSERT_EQUAL(gzwrite(f, data, (unsigned)len), (int)len);
    CU_ASSERT_EQUAL(gzclose(f), Z_OK);
}

static void write_source(const char *dir, const struct source *s)
{
    write_idx(dir, "train-images-idx3-ubyte", 1, 0x803, s->n[0], 3, s->pix[0],
              s->n[0] * PX);
    write_idx(dir, "train-labels-idx1-ubyte", 1, 0x801, s->n[0], 1,
              s->labels[0], s->n[0]);
    write_idx(dir, "t10k-images-idx3-ubyte", 0, 0x803, s->n[1], 3, s->pix[1],
              s->n[1] * PX);
    write_idx(dir, "t10k-labels-idx1-ubyte", 0, 0x801, s->n[1], 1,
              s->labels[1], s->n[1]);
}

static void make_source(struct source *s, uint64_t seed)
{
    s->n[0] = N_TRAIN;
    s->n[1] = N_VAL;
    for (int sp = 0; sp < 2; sp++) {
        for (size_t i = 0; i < s->n[sp] * PX; i++)
            s->pix[sp][i] = (uint8_t)testing_rand_u64(&seed);
        for (size_t i = 0; i < s->n[sp]; i++)
            s->labels[sp][i] = (uint8_t)(testing_rand_u64(&seed) % 10);
    }
}

/* Runs lejepa-prep with the given arguments; returns its exit status and
 * its stdout+stderr in out. */
static int run_prep(const char *args, char *out, size_t len)
{
    return testing_run_program("tools/lejepa-prep", args, out, len);
}

static int contains(const char *out, const char *needle)
{
    if (strstr(out, needle))
        return 1;
    fprintf(stderr, "expected '%s' in:\n%s\n", needle, out);
    return 0;
}

/* Checks the tree against the source via the dataset index: counts, class
 * names in label order, every label, every pixel. Fills inodes (per split,
 * per source index) so reruns can tell which files were rewritten. */
static void check_tree(const char *dir, const struct source *s,
                       ino_t inodes[2][N_MAX])
{
    static const char *const classes[10] = {
        "0-tshirt-top", "1-trouser", "2-pullover", "3-dress", "4-coat",
        "5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-ankle-boot",
    };
    struct dataset d;
    char err[ERR_LEN] = "";
    if (dataset_open(&d, dir, err) != 0)
        fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(d.n_classes, 10);
    for (int c = 0; c < 10; c++)
        CU_ASSERT_STRING_EQUAL(d.classes[c], classes[c]);
    for (int sp = 0; sp < 2; sp++) {
        CU_ASSERT_EQUAL_FATAL(d.split[sp].n, s->n[sp]);
        CU_ASSERT_EQUAL(d.split[sp].skipped, 0);
        int seen[N_MAX] = {0};
        for (size_t k = 0; k < d.split[sp].n; k++) {
            const char *rel = d.split[sp].paths[k];
            const char *base = strrchr(rel, '/') + 1;
            size_t i = (size_t)atoi(base);
            CU_ASSERT_EQUAL(strlen(base), 9);   /* NNNNN.png */
            CU_ASSERT_FATAL(i < s->n[sp]);
            seen[i]++;
            CU_ASSERT_EQUAL(d.split[sp].labels[k], s->labels[sp][i]);
            char path[4096];
            CU_ASSERT_EQUAL(dataset_sample_path(&d, sp, k, path, sizeof path), 0);
            struct stat st;
            CU_ASSERT_EQUAL(stat(path, &st), 0);
            inodes[sp][i] = st.st_ino;
            VipsImage *img = vips_image_new_from_file(path, NULL);
            CU_ASSERT_PTR_NOT_NULL_FATAL(img);
            CU_ASSERT_EQUAL(img->Xsize, SIDE);
            CU_ASSERT_EQUAL(img->Ysize, SIDE);
            CU_ASSERT_EQUAL(img->Bands, 1);
            CU_ASSERT_EQUAL(img->BandFmt, VIPS_FORMAT_UCHAR);
            size_t size = 0;
            void *mem = vips_image_write_to_memory(img, &size);
            CU_ASSERT_PTR_NOT_NULL_FATAL(mem);
            CU_ASSERT_EQUAL(size, PX);
            CU_ASSERT(memcmp(mem, s->pix[sp] + i * PX, PX) == 0);
            g_free(mem);
            g_object_unref(img);
        }
        for (size_t i = 0; i < s->n[sp]; i++)
            CU_ASSERT_EQUAL(seen[i], 1);
    }
    dataset_free(&d);
}

/* Path of sample i of split sp in the output tree. */
static void sample_path(char *buf, size_t len, const char *out,
                        const struct source *s, int sp, size_t i)
{
    static const char *const classes[10] = {
        "0-tshirt-top", "1-trouser", "2-pullover", "3-dress", "4-coat",
        "5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-ankle-boot",
    };
    snprintf(buf, len, "%s/%s/%s/%05zu.png", out, sp ? "val" : "train",
             classes[s->labels[sp][i]], i);
}

static size_t count_changed(ino_t a[2][N_MAX], ino_t b[2][N_MAX],
                            const struct source *s)
{
    size_t changed = 0;
    for (int sp = 0; sp < 2; sp++)
        for (size_t i = 0; i < s->n[sp]; i++)
            changed += a[sp][i] != b[sp][i];
    return changed;
}

static void test_prep_roundtrip_and_resume(void)
{
    static struct source s;
    make_source(&s, 2024);
    char *tmp = testing_tmpdir();
    char src[4096], out[4096], args[8400], log[16384], path[4400];
    snprintf(src, sizeof src, "%s/src", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(util_mkdir_p(src, err), 0);
    write_source(src, &s);
    snprintf(args, sizeof args, "fashion-mnist --source '%s' --out '%s'", src, out);

    static ino_t first[2][N_MAX], again[2][N_MAX];
    CU_ASSERT_EQUAL_FATAL(run_prep(args, log, sizeof log), 0);
    CU_ASSERT(contains(log, "train: 23 images: 23 written, 0 kept"));
    CU_ASSERT(contains(log, "val: 7 images: 7 written, 0 kept"));
    snprintf(path, sizeof path, "%s/.lejepa-prep.json", out);
    CU_ASSERT_EQUAL(access(path, F_OK), 0);
    check_tree(out, &s, first);

    /* Complete output: nothing is written. */
    CU_ASSERT_EQUAL(run_prep(args, log, sizeof log), 0);
    CU_ASSERT(contains(log, "nothing to do"));
    check_tree(out, &s, again);
    CU_ASSERT_EQUAL(count_changed(first, again, &s), 0);

    /* Two deleted files: exactly those are written again. */
    sample_path(path, sizeof path, out, &s, 0, 4);
    CU_ASSERT_EQUAL(unlink(path), 0);
    sample_path(path, sizeof path, out, &s, 1, 6);
    CU_ASSERT_EQUAL(unlink(path), 0);
    CU_ASSERT_EQUAL(run_prep(args, log, sizeof log), 0);
    CU_ASSERT(contains(log, "train: 23 images: 1 written, 22 kept"));
    CU_ASSERT(contains(log, "val: 7 images: 1 written, 6 kept"));
    check_tree(out, &s, again);
    first[0][4] = again[0][4];   /* new files; every other one untouched */
    first[1][6] = again[1][6];
    CU_ASSERT_EQUAL(count_changed(first, again, &s), 0);

    /* An interrupted run: no marker, a leftover temp file, a damaged PNG and
     * a PNG filed under the wrong class. Only the damaged one is rewritten. */
    memcpy(first, again, sizeof first);
    snprintf(path, sizeof path, "%s/.lejepa-prep.json", out);
    CU_ASSERT_EQUAL(unlink(path), 0);
    sample_path(path, sizeof path, out, &s, 0, 9);
    CU_ASSERT_EQUAL(util_write_file_atomic(path, "not a png", 9, err), 0);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    first[0][9] = st.st_ino;
    snprintf(path, sizeof path, "%s/train/%s/.00009.png.tmp.4242", out,
             s.labels[0][9] == 0 ? "1-trouser" : "0-tshirt-top");
    CU_ASSERT_EQUAL(util_write_file_atomic(path, "half", 4, err), 0);
    snprintf(path, sizeof path, "%s/val/%s/00003.png", out,
             s.labels[1][3] == 5 ? "6-shirt" : "5-sandal");
    CU_ASSERT_EQUAL(util_write_file_atomic(path, "stray", 5, err), 0);
    CU_ASSERT_EQUAL(run_prep(args, log, sizeof log), 0);
    CU_ASSERT(contains(log, "train: 23 images: 1 written, 22 kept (1 rewritten"));
    CU_ASSERT(contains(log, "1 temp files of an interrupted run removed"));
    CU_ASSERT(contains(log, "val: 7 images: 0 written, 7 kept, 1 stray files removed"));
    check_tree(out, &s, again);   /* also: no temp or stray file is left */
    CU_ASSERT_NOT_EQUAL(first[0][9], again[0][9]);
    first[0][9] = again[0][9];
    CU_ASSERT_EQUAL(count_changed(first, again, &s), 0);
    snprintf(path, sizeof path, "%s/.lejepa-prep.json", out);
    CU_ASSERT_EQUAL(access(path, F_OK), 0);

    /* Another source into the same folder: the old marker does not match. */
    make_source(&s, 7);
    write_source(src, &s);
    CU_ASSERT_EQUAL(run_prep(args, log, sizeof log), 0);
    CU_ASSERT(contains(log, "from another source"));
    check_tree(out, &s, again);
    testing_rmtree(tmp);
    free(tmp);
}

/* Writes a valid source, breaks one file with `mutate`, runs prep and
 * expects a failure whose message names `file` and contains `reason`. */
static void expect_refused(void (*mutate)(const char *src, struct source *s),
                           const char *file, const char *reason)
{
    static struct source s;
    make_source(&s, 99);
    char *tmp = testing_tmpdir();
    char src[4096], args[8400], log[16384], err[ERR_LEN], name[4200];
    snprintf(src, sizeof src, "%s/src", tmp);
    CU_ASSERT_EQUAL_FATAL(util_mkdir_p(src, err), 0);
    write_source(src, &s);
    mutate(src, &s);
    snprintf(args, sizeof args, "fashion-mnist --source '%s' --out '%s/out'",
             src, tmp);
    CU_ASSERT_NOT_EQUAL(run_prep(args, log, sizeof log), 0);
    snprintf(name, sizeof name, "%s/%s", src, file);
    CU_ASSERT(contains(log, name));
    CU_ASSERT(contains(log, reason));
    testing_rmtree(tmp);
    free(tmp);
}

static void bad_magic(const char *src, struct source *s)
{
    write_idx(src, "train-images-idx3-ubyte", 1, 0x801, s->n[0], 3, s->pix[0],
              s->n[0] * PX);
}

static void bad_label(const char *src, struct source *s)
{
    s->labels[1][2] = 10;
    write_idx(src, "t10k-labels-idx1-ubyte", 0, 0x801, s->n[1], 1,
              s->labels[1], s->n[1]);
}

static void truncated(const char *src, struct source *s)
{
    write_idx(src, "t10k-images-idx3-ubyte", 0, 0x803, s->n[1], 3, s->pix[1],
              s->n[1] * PX - 5);
}

static void count_mismatch(const char *src, struct source *s)
{
    write_idx(src, "train-labels-idx1-ubyte", 1, 0x801, s->n[0] - 1, 1,
              s->labels[0], s->n[0] - 1);
}

static void missing_file(const char *src, struct source *s)
{
    (void)s;
    char path[4200];
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", src);
    CU_ASSERT_EQUAL(unlink(path), 0);
}

static void test_prep_refuses_bad_sources(void)
{
    expect_refused(bad_magic, "train-images-idx3-ubyte.gz", "bad magic");
    expect_refused(bad_label, "t10k-labels-idx1-ubyte", "label 10 at index 2");
    expect_refused(truncated, "t10k-images-idx3-ubyte", "truncated");
    expect_refused(count_mismatch, "train-labels-idx1-ubyte.gz", "22 labels");
    expect_refused(missing_file, "t10k-labels-idx1-ubyte", "cannot open");
}

static void test_prep_usage(void)
{
    char log[16384];
    CU_ASSERT_EQUAL(run_prep("--help", log, sizeof log), 0);
    CU_ASSERT(contains(log, "usage: lejepa-prep fashion-mnist"));
    CU_ASSERT_EQUAL(run_prep("--version", log, sizeof log), 0);
    CU_ASSERT(contains(log, "lejepa-prep "));
    CU_ASSERT_NOT_EQUAL(run_prep("mnist --out /tmp/x", log, sizeof log), 0);
    CU_ASSERT(contains(log, "unknown dataset 'mnist'"));
    CU_ASSERT_NOT_EQUAL(run_prep("fashion-mnist", log, sizeof log), 0);
    CU_ASSERT(contains(log, "--out"));
}

int main(int argc, char **argv)
{
    (void)argc;
    if (VIPS_INIT(argv[0]) != 0)
        return 1;
    vips_cache_set_max(0);   /* files are rewritten under the same names */
    static const struct testing_case cases[] = {
        {"roundtrip and resume", test_prep_roundtrip_and_resume},
        {"bad sources refused", test_prep_refuses_bad_sources},
        {"usage", test_prep_usage},
        {NULL, NULL},
    };
    int rc = testing_run("prep", cases);
    vips_shutdown();
    return rc;
}
