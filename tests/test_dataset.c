/*
 * test_dataset.c: the ImageFolder index: bytewise order of classes and files
 * (nested files included), labels, a fingerprint that depends only on the
 * set of relative paths, non-image files skipped and counted, bad trees
 * refused with a reason naming the path, and a plain folder's image list.
 * Then a dataset as tar shards and as a partial copy: shards made by GNU
 * tar (another writer than ours, with a name long enough for its long-name
 * records and one not in ASCII) list the folder's samples in its order
 * with its labels and fingerprint, and every member reads back as the
 * file's bytes; with the index, a copy holding some shards, or a folder
 * with a file missing, keeps the whole dataset's fingerprint and holds
 * exactly what is there; a shard of another dataset, a malformed index and
 * paths reaching outside the dataset are refused with the file named.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "testing.h"
#include "util.h"

/* Creates root/rel (and its parent folders) as an empty file. */
static void touch(const char *root, const char *rel)
{
    testing_put_file(root, rel, "", 0);
}

static void make_dir(const char *root, const char *rel)
{
    char path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CU_ASSERT_EQUAL_FATAL(util_mkdir_p(path, err), 0);
}

static const char *const tree[] = {
    "train/b/2.png", "train/a/sub/deep/x.jpg", "train/a-b/z.webp",
    "train/B/k.PNG", "train/a/10.png", "train/a/9.png", "train/b/1.JPEG",
    "val/a/v1.png", "val/b/v0.tif",
};
enum { TREE_N = sizeof tree / sizeof tree[0] };

/* Writes the tree's files in the order given by perm (a permutation of
 * 0..TREE_N-1) so the index can be checked against creation order. */
static void make_tree(const char *root, const int *perm)
{
    for (int i = 0; i < TREE_N; i++)
        touch(root, tree[perm ? perm[i] : i]);
}

static void test_order_and_labels(void)
{
    char *root = testing_tmpdir();
    make_tree(root, NULL);
    struct dataset d;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(dataset_open(&d, root, err), 0);
    static const char *const classes[] = {"B", "a", "a-b", "b"};
    CU_ASSERT_EQUAL_FATAL(d.n_classes, 4);
    for (int c = 0; c < 4; c++)
        CU_ASSERT_STRING_EQUAL(d.classes[c], classes[c]);
    /* bytewise: "a-b/" < "a/" since '-' < '/', and "10" < "9". */
    static const char *const train[] = {
        "train/B/k.PNG", "train/a-b/z.webp", "train/a/10.png", "train/a/9.png",
        "train/a/sub/deep/x.jpg", "train/b/1.JPEG", "train/b/2.png",
    };
    static const int32_t train_labels[] = {0, 2, 1, 1, 1, 3, 3};
    CU_ASSERT_EQUAL_FATAL(d.split[DATASET_TRAIN].n, 7);
    for (int i = 0; i < 7; i++) {
        CU_ASSERT_STRING_EQUAL(d.split[DATASET_TRAIN].paths[i], train[i]);
        CU_ASSERT_EQUAL(d.split[DATASET_TRAIN].labels[i], train_labels[i]);
    }
    CU_ASSERT_EQUAL_FATAL(d.split[DATASET_VAL].n, 2);
    CU_ASSERT_STRING_EQUAL(d.split[DATASET_VAL].paths[0], "val/a/v1.png");
    CU_ASSERT_EQUAL(d.split[DATASET_VAL].labels[0], 1);
    CU_ASSERT_STRING_EQUAL(d.split[DATASET_VAL].paths[1], "val/b/v0.tif");
    CU_ASSERT_EQUAL(d.split[DATASET_VAL].labels[1], 3);
    CU_ASSERT(d.has_val);

    char path[4096];
    CU_ASSERT_EQUAL(dataset_sample_path(&d, DATASET_VAL, 1, path, sizeof path), 0);
    char want[4096];
    snprintf(want, sizeof want, "%s/val/b/v0.tif", root);
    CU_ASSERT_STRING_EQUAL(path, want);
    CU_ASSERT_EQUAL(dataset_sample_path(&d, DATASET_VAL, 2, path, sizeof path), -1);
    CU_ASSERT_EQUAL(dataset_sample_path(&d, DATASET_VAL, 0, path, 8), -1);
    dataset_free(&d);

    /* A trailing slash on the root changes nothing. */
    char slashed[4096];
    snprintf(slashed, sizeof slashed, "%s//", root);
    CU_ASSERT_EQUAL_FATAL(dataset_open(&d, slashed, err), 0);
    CU_ASSERT_STRING_EQUAL(d.root, root);
    dataset_free(&d);
    testing_rmtree(root);
    free(root);
}

static uint64_t fingerprint_of(const char *root)
{
    struct dataset d;
    char err[ERR_LEN] = "";
    if (dataset_open(&d, root, err) != 0) {
        fprintf(stderr, "%s\n", err);
        CU_FAIL("dataset_open failed");
        return 0;
    }
    uint64_t fp = d.fingerprint;
    dataset_free(&d);
    return fp;
}

static void rename_rel(const char *root, const char *from, const char *to)
{
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", root, from);
    snprintf(b, sizeof b, "%s/%s", root, to);
    CU_ASSERT_EQUAL_FATAL(rename(a, b), 0);
}

static void test_fingerprint(void)
{
    uint64_t seed = 11;
    int perm[TREE_N];
    for (int i = 0; i < TREE_N; i++)
        perm[i] = i;
    for (int i = TREE_N - 1; i > 0; i--) {
        int j = (int)(testing_rand_u64(&seed) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    char *r1 = testing_tmpdir(), *r2 = testing_tmpdir();
    make_tree(r1, NULL);
    make_tree(r2, perm);
    uint64_t fp = fingerprint_of(r1);
    CU_ASSERT_EQUAL(fingerprint_of(r1), fp);
    CU_ASSERT_EQUAL(fingerprint_of(r2), fp);   /* other root, other order */

    char hex[17];
    dataset_format_fingerprint(0x0123456789abcdefull, hex);
    CU_ASSERT_STRING_EQUAL(hex, "0123456789abcdef");

    rename_rel(r2, "train/a/9.png", "train/a/8.png");
    uint64_t renamed = fingerprint_of(r2);
    CU_ASSERT_NOT_EQUAL(renamed, fp);
    rename_rel(r2, "train/a/8.png", "train/a/9.png");
    CU_ASSERT_EQUAL(fingerprint_of(r2), fp);

    touch(r2, "train/b/3.png");
    uint64_t added = fingerprint_of(r2);
    CU_ASSERT_NOT_EQUAL(added, fp);
    CU_ASSERT_NOT_EQUAL(added, renamed);
    char path[4096];
    snprintf(path, sizeof path, "%s/train/b/3.png", r2);
    CU_ASSERT_EQUAL(unlink(path), 0);
    snprintf(path, sizeof path, "%s/train/b/2.png", r2);
    CU_ASSERT_EQUAL(unlink(path), 0);
    CU_ASSERT_NOT_EQUAL(fingerprint_of(r2), fp);

    /* Same files, another split: the split boundary is part of the hash. */
    touch(r2, "train/b/2.png");
    CU_ASSERT_EQUAL(fingerprint_of(r2), fp);
    rename_rel(r2, "val/a/v1.png", "train/a/v1.png");
    CU_ASSERT_NOT_EQUAL(fingerprint_of(r2), fp);

    /* Skipped files do not enter the fingerprint. */
    touch(r1, "train/a/notes.txt");
    touch(r1, "train/a/.DS_Store");
    CU_ASSERT_EQUAL(fingerprint_of(r1), fp);
    testing_rmtree(r1);
    testing_rmtree(r2);
    free(r1);
    free(r2);
}

static void test_fnv_separates_paths(void)
{
    /* "ab"+"c" and "a"+"bc" hash differently once NUL-terminated. */
    uint64_t h1 = hash_fnv1a(HASH_FNV_OFFSET, "ab", 3);
    h1 = hash_fnv1a(h1, "c", 2);
    uint64_t h2 = hash_fnv1a(HASH_FNV_OFFSET, "a", 2);
    h2 = hash_fnv1a(h2, "bc", 3);
    CU_ASSERT_NOT_EQUAL(h1, h2);
    /* Published FNV-1a 64 test vector. */
    CU_ASSERT_EQUAL(hash_fnv1a(HASH_FNV_OFFSET, "a", 1),
                    0xaf63dc4c8601ec8cull);
}

static void test_non_images_skipped(void)
{
    char *root = testing_tmpdir();
    make_tree(root, NULL);
    touch(root, "train/a/readme.txt");
    touch(root, "train/a/sub/noext");
    touch(root, "train/a/.hidden.png");        /* dotfiles: ignored, not counted */
    touch(root, "train/.cache/x.png");         /* dot-folder: not a class */
    touch(root, "train/stray.png");            /* not in a class folder */
    touch(root, "val/b/labels.csv");
    touch(root, "val/b/png");                  /* no extension at all */
    touch(root, "val/b/x.tar.gz");
    struct dataset d;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(dataset_open(&d, root, err), 0);
    CU_ASSERT_EQUAL(d.n_classes, 4);
    CU_ASSERT_EQUAL(d.split[DATASET_TRAIN].n, 7);
    CU_ASSERT_EQUAL(d.split[DATASET_TRAIN].skipped, 3);
    CU_ASSERT_EQUAL(d.split[DATASET_VAL].n, 2);
    CU_ASSERT_EQUAL(d.split[DATASET_VAL].skipped, 3);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    dataset_print_summary(&d, mem);
    fclose(mem);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "train: 7 images, 3 non-image files skipped"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "fingerprint: "));
    free(buf);
    dataset_free(&d);

    CU_ASSERT(dataset_is_image_name("a.JpG"));
    CU_ASSERT(dataset_is_image_name("x.tiff"));
    CU_ASSERT(!dataset_is_image_name(".png"));
    CU_ASSERT(!dataset_is_image_name("a.png.txt"));
    testing_rmtree(root);
    free(root);
}

static void test_val_absent(void)
{
    char *root = testing_tmpdir();
    touch(root, "train/c/1.png");
    struct dataset d;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(dataset_open(&d, root, err), 0);
    CU_ASSERT_EQUAL(d.split[DATASET_VAL].n, 0);
    CU_ASSERT_EQUAL(d.has_val, 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    dataset_print_summary(&d, mem);
    fclose(mem);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "val: none"));
    free(buf);
    dataset_free(&d);
    testing_rmtree(root);
    free(root);
}

/* dataset_open must fail, with err naming `needle`. */
static void expect_error(const char *root, const char *needle)
{
    struct dataset d;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(dataset_open(&d, root, err), -1);
    if (!strstr(err, needle)) {
        fprintf(stderr, "error '%s' does not name '%s'\n", err, needle);
        CU_FAIL("error does not name the path");
    }
    CU_ASSERT_PTR_NULL(d.root);
    dataset_free(&d);
}

static void test_bad_trees(void)
{
    char *root = testing_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/missing", root);
    expect_error(path, path);
    expect_error(root, "/train");              /* no train folder */
    touch(root, "plain");
    snprintf(path, sizeof path, "%s/plain", root);
    expect_error(path, "not a directory");
    make_dir(root, "train/empty-class");
    touch(root, "train/a/readme.txt");
    expect_error(root, "no images");           /* only non-images */
    touch(root, "train/a/1.png");
    touch(root, "val/zebra/1.png");
    snprintf(path, sizeof path, "%s/val/zebra", root);
    expect_error(root, path);                  /* class unknown to train */
    snprintf(path, sizeof path, "%s/val/zebra/1.png", root);
    CU_ASSERT_EQUAL(unlink(path), 0);
    snprintf(path, sizeof path, "%s/val/zebra", root);
    CU_ASSERT_EQUAL(rmdir(path), 0);

    struct dataset d;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(dataset_open(&d, root, err), 0);
    CU_ASSERT_EQUAL(d.n_classes, 2);           /* an empty class still counts */
    dataset_free(&d);

    /* A symlink loop below a class folder hits the depth bound. */
    snprintf(path, sizeof path, "%s/train/a/loop", root);
    CU_ASSERT_EQUAL(symlink("..", path), 0);
    expect_error(root, "nested more than");
    CU_ASSERT_EQUAL(unlink(path), 0);

    if (geteuid() != 0) {   /* root reads through mode 000 */
        snprintf(path, sizeof path, "%s/train/a", root);
        CU_ASSERT_EQUAL(chmod(path, 0), 0);
        expect_error(root, path);
        CU_ASSERT_EQUAL(chmod(path, 0755), 0);
    }
    testing_rmtree(root);
    free(root);
}

static char *summary_of(const struct dataset *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    dataset_print_summary(d, mem);
    fclose(mem);
    return buf;
}

/* Images without class folders: 0 classes, labels -1, paths relative to
 * the root; flat (no train/) or with train/ and val/ folders of images. */
static void test_unlabelled(void)
{
    char *root = testing_tmpdir(), path[4096];
    snprintf(path, sizeof path, "%s/flat", root);
    touch(path, "b.jpg");
    touch(path, "a.png");
    touch(path, "2024/c.png");
    touch(path, "notes.txt");
    struct dataset d;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(dataset_open(&d, path, err), 0);
    CU_ASSERT(d.unlabelled && d.flat && !d.has_val);
    CU_ASSERT_EQUAL(d.n_classes, 0);
    CU_ASSERT_EQUAL_FATAL(d.split[DATASET_TRAIN].n, 3);
    CU_ASSERT_STRING_EQUAL(d.split[DATASET_TRAIN].paths[0], "2024/c.png");
    CU_ASSERT_STRING_EQUAL(d.split[DATASET_TRAIN].paths[1], "a.png");
    CU_ASSERT_STRING_EQUAL(d.split[DATASET_TRAIN].paths[2], "b.jpg");
    CU_ASSERT_EQUAL(d.split[DATASET_TRAIN].skipped, 1);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(d.split[DATASET_TRAIN].labels[i], -1);
    char sample[4200];
    CU_ASSERT_EQUAL(dataset_sample_path(&d, DATASET_TRAIN, 1, sample, sizeof sample), 0);
    CU_ASSERT(strstr(sample, "/flat/a.png") != NULL);
    char *s = summary_of(&d);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "unlabelled"));
    free(s);
    uint64_t flat_fp = d.fingerprint;
    dataset_free(&d);

    snprintf(path, sizeof path, "%s/splits", root);
    touch(path, "train/x.png");
    touch(path, "train/y.png");
    touch(path, "val/z.png");
    CU_ASSERT_EQUAL_FATAL(dataset_open(&d, path, err), 0);
    CU_ASSERT(d.unlabelled && !d.flat && d.has_val);
    CU_ASSERT_EQUAL(d.n_classes, 0);
    CU_ASSERT_EQUAL_FATAL(d.split[DATASET_TRAIN].n, 2);
    CU_ASSERT_EQUAL_FATAL(d.split[DATASET_VAL].n, 1);
    CU_ASSERT_STRING_EQUAL(d.split[DATASET_TRAIN].paths[0], "train/x.png");
    CU_ASSERT_STRING_EQUAL(d.split[DATASET_VAL].paths[0], "val/z.png");
    CU_ASSERT_EQUAL(d.split[DATASET_VAL].labels[0], -1);
    CU_ASSERT_NOT_EQUAL(d.fingerprint, flat_fp);
    dataset_free(&d);

    /* a labelled dataset's train/ given as the root: names the parent */
    snprintf(path, sizeof path, "%s/labelled", root);
    touch(path, "train/cat/1.png");
    touch(path, "train/dog/2.png");
    char given[4200];
    snprintf(given, sizeof given, "%s/train", path);
    expect_error(given, "not its root");
    expect_error(given, path);
    /* the same for a flat folder of images that happens to be a split */
    snprintf(given, sizeof given, "%s/splits/train/", root);
    expect_error(given, "the train split");
    /* only folders, none of them train/: no guess */
    snprintf(path, sizeof path, "%s/folders", root);
    touch(path, "cat/1.png");
    expect_error(path, "no train/ folder and no images directly in it");
    testing_rmtree(root);
    free(root);
}

/* A plain folder of images, as `lejepa embed --images` reads it: every
 * image at any depth, bytewise by relative path, dot entries ignored,
 * other files counted; a missing folder names itself. */
static void test_list_images(void)
{
    static const char *const files[] = {
        "b/2.png", "a.jpg", "B.PNG", "a/10.png", "a/9.png", "a/sub/x.webp",
        "notes.txt", ".hidden.png", ".cache/c.png", "a/.d/e.png",
    };
    static const char *const want[] = {
        "B.PNG", "a.jpg", "a/10.png", "a/9.png", "a/sub/x.webp", "b/2.png",
    };
    char *root = testing_tmpdir();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        touch(root, files[i]);
    struct dataset_split s;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(dataset_list_images(&s, root, err), 0);
    CU_ASSERT_EQUAL_FATAL(s.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < s.n; i++) {
        CU_ASSERT_STRING_EQUAL(s.paths[i], want[i]);
        CU_ASSERT_EQUAL(s.labels[i], -1);
    }
    CU_ASSERT_EQUAL(s.skipped, 1);             /* notes.txt */
    dataset_split_free(&s);

    char path[4096];
    snprintf(path, sizeof path, "%s/missing", root);
    CU_ASSERT_EQUAL(dataset_list_images(&s, path, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_EQUAL(s.n, 0);
    snprintf(path, sizeof path, "%s/a.jpg", root);
    CU_ASSERT_EQUAL(dataset_list_images(&s, path, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a directory"));
    snprintf(path, sizeof path, "%s/empty", root);
    make_dir(root, "empty");
    CU_ASSERT_EQUAL(dataset_list_images(&s, path, err), 0);
    CU_ASSERT_EQUAL(s.n, 0);
    dataset_split_free(&s);
    testing_rmtree(root);
    free(root);
}

/* ---- tar shards and partial copies ---- */

#define LONG_DIR "a-folder-name-long-enough-that-ustar-cannot-hold-it-in-its-100-bytes"

static const char *const files[] = {
    "train/cat/1.png", "train/cat/2.png", "train/dog/3.png",
    "train/dog/" LONG_DIR "/4.png", "train/eel/5.\xc3\xa9t\xc3\xa9.png", "val/cat/6.png",
    "val/dog/7.png",
};
enum { N_FILES = sizeof files / sizeof files[0] };

/* root/rel with distinct bytes of its own (its name, repeated). */
static void write_file(const char *root, const char *rel)
{
    size_t n = strlen(rel);
    char *text = xmalloc(50 * n);
    for (int i = 0; i < 50; i++)
        memcpy(text + (size_t)i * n, rel, n);
    testing_put_file(root, rel, text, 50 * n);
    free(text);
}

static void sh(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "'%s' exited %d\n", cmd, rc);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static void test_shards(void)
{
    char *dir = testing_tmpdir(), folder[1024], shards[1024], part[1024],
         cmd[8192], err[ERR_LEN];
    snprintf(folder, sizeof folder, "%s/folder", dir);
    snprintf(shards, sizeof shards, "%s/shards", dir);
    snprintf(part, sizeof part, "%s/part", dir);
    for (int i = 0; i < N_FILES; i++)
        write_file(folder, files[i]);
    make_dir(folder, "train/fox"); /* an empty class: it sorts last */
    /* three shards by GNU tar; member order in a shard is not sorted */
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && cd '%s' && tar cf '%s/b.tar' train/dog val && "
             "tar cf '%s/a.tar' train/eel train/cat",
             shards, folder, shards, shards);
    sh(cmd);

    struct dataset f, s;
    CU_ASSERT_EQUAL_FATAL(dataset_open(&f, folder, err), 0);
    CU_ASSERT_EQUAL_FATAL(dataset_open(&s, shards, err), 0);
    CU_ASSERT_EQUAL(s.fingerprint, f.fingerprint);
    CU_ASSERT_EQUAL(f.n_classes, 4);
    CU_ASSERT_EQUAL(s.n_classes, 3); /* no index: classes from members */
    CU_ASSERT_EQUAL(s.n_shards, 2);
    CU_ASSERT_PTR_NULL(s.held);
    CU_ASSERT(s.has_val);
    for (int sp = 0; sp < DATASET_N_SPLITS; sp++) {
        CU_ASSERT_EQUAL_FATAL(s.split[sp].n, f.split[sp].n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s.split[sp].shard);
        for (size_t i = 0; i < s.split[sp].n; i++) {
            CU_ASSERT_STRING_EQUAL(s.split[sp].paths[i], f.split[sp].paths[i]);
            CU_ASSERT_EQUAL(s.split[sp].labels[i], f.split[sp].labels[i]);
            /* the member's bytes are the file's */
            char shard_path[8192], file[8192], name[8192];
            snprintf(shard_path, sizeof shard_path, "%s/%s", shards,
                     s.shards[s.split[sp].shard[i]]);
            dataset_sample_path(&f, sp, i, file, sizeof file);
            void *buf;
            size_t len, flen;
            CU_ASSERT_EQUAL_FATAL(dataset_read_member(shard_path, s.split[sp].offset[i],
                                                      &buf, &len, name, sizeof name, err),
                                  0);
            char *want = util_read_file(file, &flen, err);
            CU_ASSERT_PTR_NOT_NULL_FATAL(want);
            CU_ASSERT(len == flen && memcmp(buf, want, len) == 0);
            CU_ASSERT_PTR_NOT_NULL(strstr(name, s.split[sp].paths[i]));
            free(buf);
            free(want);
        }
    }

    /* a partial copy: the index and one of the two shards */
    CU_ASSERT_EQUAL_FATAL(dataset_write_index(&s, shards, err), 0);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/a.tar' '%s/%s' '%s/'", part,
             shards, shards, DATASET_INDEX, part);
    sh(cmd);
    struct dataset p;
    CU_ASSERT_EQUAL_FATAL(dataset_open(&p, part, err), 0);
    CU_ASSERT_EQUAL(p.fingerprint, f.fingerprint);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p.held);
    CU_ASSERT_EQUAL(p.n_held, 3); /* eel/5, cat/1, cat/2 */
    for (int sp = 0; sp < DATASET_N_SPLITS; sp++)
        for (size_t i = 0; i < p.split[sp].n; i++) {
            const char *path = p.split[sp].paths[i];
            int in_a = strncmp(path, "train/eel/", 10) == 0 ||
                strncmp(path, "train/cat/", 10) == 0;
            CU_ASSERT_EQUAL(dataset_holds(&p, sp, i), in_a);
        }
    dataset_free(&p);

    /* a shard of another dataset beside the index */
    snprintf(cmd, sizeof cmd, "cd '%s' && tar cf '%s/b.tar' train/cat", folder, part);
    sh(cmd);
    expect_error(part, "is not in the index");
    /* an index that is not one */
    snprintf(cmd, sizeof cmd, "printf 'hello\\n' > '%s/%s'", part, DATASET_INDEX);
    sh(cmd);
    expect_error(part, DATASET_INDEX);
    /* entries and members that would reach outside the dataset */
    snprintf(cmd, sizeof cmd, "printf 'lejepa-index 1\ntrain/cat/../../../etc/x.png\t-\n' > '%s/%s'",
             part, DATASET_INDEX);
    sh(cmd);
    expect_error(part, "not a path inside the dataset");
    snprintf(cmd, sizeof cmd,
             "rm '%s/%s' '%s/b.tar' && cd '%s/train' && tar cf '%s/b.tar' --transform 's|^|../|' cat",
             part, DATASET_INDEX, part, folder, part);
    sh(cmd);
    expect_error(part, "not a path inside the dataset");

    /* a folder with its index and a file missing: the same dataset */
    CU_ASSERT_EQUAL_FATAL(dataset_write_index(&f, folder, err), 0);
    snprintf(cmd, sizeof cmd, "rm '%s/train/dog/3.png'", folder);
    sh(cmd);
    struct dataset g;
    CU_ASSERT_EQUAL_FATAL(dataset_open(&g, folder, err), 0);
    CU_ASSERT_EQUAL(g.fingerprint, f.fingerprint);
    CU_ASSERT_EQUAL(g.n_classes, 4); /* the index keeps the empty class */
    CU_ASSERT_EQUAL(g.n_held, (size_t)N_FILES - 1);
    CU_ASSERT_EQUAL_FATAL(g.split[DATASET_TRAIN].n, 5);
    for (size_t i = 0; i < g.split[DATASET_TRAIN].n; i++)
        CU_ASSERT_EQUAL(dataset_holds(&g, DATASET_TRAIN, i),
                        strcmp(g.split[DATASET_TRAIN].paths[i], "train/dog/3.png") != 0);
    dataset_free(&g);
    dataset_free(&s);
    dataset_free(&f);
    testing_rmtree(dir);
    free(dir);
}

static void test_split_names(void)
{
    CU_ASSERT_STRING_EQUAL(dataset_split_name(DATASET_TRAIN), "train");
    CU_ASSERT_STRING_EQUAL(dataset_split_name(DATASET_VAL), "val");
    CU_ASSERT_EQUAL(dataset_split_parse("train"), DATASET_TRAIN);
    CU_ASSERT_EQUAL(dataset_split_parse("val"), DATASET_VAL);
    CU_ASSERT_EQUAL(dataset_split_parse("test"), -1);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"order and labels", test_order_and_labels},
        {"fingerprint", test_fingerprint},
        {"fnv separates paths", test_fnv_separates_paths},
        {"non-images skipped", test_non_images_skipped},
        {"val absent", test_val_absent},
        {"bad trees", test_bad_trees},
        {"unlabelled", test_unlabelled},
        {"split names", test_split_names},
        {"list images", test_list_images},
        {"shards and partial copies", test_shards},
        {NULL, NULL},
    };
    return testing_run("dataset", cases);
}
