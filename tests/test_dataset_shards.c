/*
 * test_dataset_shards.c: a dataset as tar shards and as a partial copy
 * (proto/dataset.h). Shards made by GNU tar (another writer than ours,
 * with a name long enough for its own long-name records) list the folder's
 * samples in its order with its labels and fingerprint, and every member
 * reads back as the file's bytes; with the index, a copy holding some
 * shards, or a folder with a file missing, keeps the whole dataset's
 * fingerprint and holds exactly what is there; a shard of another dataset
 * and a malformed index are refused with the file named.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "testing.h"
#include "util.h"

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

static void expect_error(const char *root, const char *needle)
{
    struct dataset d;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(dataset_open(&d, root, err), -1);
    if (!strstr(err, needle)) {
        fprintf(stderr, "error '%s' does not name '%s'\n", err, needle);
        CU_FAIL("error does not say what it should");
    }
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
    CU_ASSERT_EQUAL(s.n_classes, 3);
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

int main(void)
{
    static const struct testing_case cases[] = {
        {"shards and partial copies", test_shards},
        {NULL, NULL},
    };
    return testing_run("dataset_shards", cases);
}
