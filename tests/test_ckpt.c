/*
 * test_ckpt.c: a checkpoint loaded in a fresh process continues training
 * with exactly the losses of a run that never stopped; damaged or foreign
 * checkpoints are refused and leave the model untouched; a run directory
 * whose newest checkpoints are damaged resumes from the newest good one;
 * dead writers' temp files are removed.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adamw.h"
#include "ckpt.h"
#include "lejepa.h"
#include "lejepa_cases.h"
#include "rng.h"
#include "testing.h"

#define TOTAL_STEPS 6
#define SPLIT_STEP 3

static const char *self_path;

/* The case "local" with deterministic inputs; with scramble, every weight,
 * statistic and moment is overwritten so only a checkpoint can restore it. */
static void build(struct lejepa *m, struct adamw *o, int scramble)
{
    char err[ERR_LEN];
    CHECK(lejepa_init(m, &lejepa_cases[0].c, err) == 0);
    if (scramble) {
        struct rng r;
        rng_init(&r, 1234, 0, 0, 0);
        float *arenas[] = {m->p.data, m->p.m, m->p.v};
        for (int a = 0; a < 3; a++)
            for (size_t i = 0; i < m->p.learn.total; i++)
                arenas[a][i] = (float)rng_uniform(&r);
        for (size_t i = 0; i < m->p.state.total; i++)
            m->p.state_data[i] = (float)rng_uniform(&r);
    }
    struct rng r;
    rng_init(&r, 99, 0, 0, 0);
    for (int g = 0; g < m->n_groups; g++) {
        float *x = lejepa_input(m, g);
        size_t n = graph_numel(&m->grp[g].g, m->grp[g].in);
        for (size_t i = 0; i < n; i++)
            x[i] = (float)rng_normal(&r);
    }
    adamw_init(o, 0.9, 0.999, 1e-8);
    o->group[PARAMS_GROUP_ENCODER] = (struct adamw_group){CASE_LR_ENCODER, CASE_WD_ENCODER};
    o->group[PARAMS_GROUP_PROBE] = (struct adamw_group){CASE_LR_PROBE, CASE_WD_PROBE};
}

static void run_steps(struct lejepa *m, struct adamw *o, int from, int to,
                      double *losses)
{
    int32_t labels[64];
    for (int i = 0; i < m->c.batch; i++)
        labels[i] = i % m->c.n_classes;
    for (int s = from; s < to; s++) {
        struct lejepa_losses l;
        lejepa_forward_backward(m, labels, (uint64_t)s, &l);
        losses[s] = l.loss;
        adamw_step(o, &m->p,
                   adamw_schedule(s, 2, TOTAL_STEPS, 1e-3));
    }
}

/* The child: a fresh process that loads the checkpoint and goes on. */
static int child(const char *ckpt)
{
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 1);
    struct st_file f;
    char err[ERR_LEN];
    if (ckpt_load(ckpt, &m.p, &o, &f, err) != 0) {
        fprintf(stderr, "child: %s\n", err);
        return 1;
    }
    int step = atoi(st_meta(&f, "step"));
    st_close(&f);
    double losses[TOTAL_STEPS];
    run_steps(&m, &o, step, TOTAL_STEPS, losses);
    for (int s = step; s < TOTAL_STEPS; s++)
        printf("%d %a\n", s, losses[s]);
    lejepa_free(&m);
    return 0;
}

static void test_resume_in_fresh_process(void)
{
    double straight[TOTAL_STEPS], split[TOTAL_STEPS];
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 0);
    run_steps(&m, &o, 0, TOTAL_STEPS, straight);
    lejepa_free(&m);

    build(&m, &o, 0);
    run_steps(&m, &o, 0, SPLIT_STEP, split);
    char *dir = testing_tmpdir(), path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/step3.safetensors", dir);
    const char *key = "step", *value = "3";
    CU_ASSERT_EQUAL_FATAL(ckpt_save(path, &m.p, &o, &key, &value, 1, err), 0);
    lejepa_free(&m);

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --child '%s'", self_path, path);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    int got = 0, s;
    double v;
    while (fscanf(p, "%d %la", &s, &v) == 2) {
        CU_ASSERT(s >= SPLIT_STEP && s < TOTAL_STEPS);
        if (s >= SPLIT_STEP && s < TOTAL_STEPS) {
            split[s] = v;
            got++;
        }
    }
    CU_ASSERT_EQUAL(pclose(p), 0);
    CU_ASSERT_EQUAL(got, TOTAL_STEPS - SPLIT_STEP);
    for (int i = 0; i < TOTAL_STEPS && got == TOTAL_STEPS - SPLIT_STEP; i++) {
        if (straight[i] != split[i])
            fprintf(stderr, "\nstep %d: straight %.9g, resumed %.9g\n", i,
                    straight[i], split[i]);
        CU_ASSERT_EQUAL(straight[i], split[i]);
    }
    testing_rmtree(dir);
    free(dir);
}

static void test_bad_checkpoints_refused_model_untouched(void)
{
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 0);
    char *dir = testing_tmpdir(), path[4096], cut[4200], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/good.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(ckpt_save(path, &m.p, &o, NULL, NULL, 0, err), 0);
    size_t len;
    char *bytes = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);

    /* Another model's weights (different init) to load into. */
    struct lejepa other;
    struct adamw oo;
    build(&other, &oo, 1);
    size_t nbytes = other.p.learn.total * sizeof(float);
    float *before = xmalloc(nbytes);
    memcpy(before, other.p.data, nbytes);
    struct st_file f;

    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    for (size_t n = 0; n < len; n += len / 37 + 1) {
        CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(cut, bytes, n, err), 0);
        CU_ASSERT_EQUAL(ckpt_load(cut, &other.p, &oo, &f, err), -1);
        CU_ASSERT_EQUAL(memcmp(before, other.p.data, nbytes), 0);
    }
    /* A checkpoint of a differently shaped model. */
    struct lejepa_config c = lejepa_cases[0].c;
    c.resnet.widths[1] = 24;
    struct lejepa wide;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&wide, &c, err), 0);
    snprintf(cut, sizeof cut, "%s/wide.safetensors", dir);
    CU_ASSERT_EQUAL(ckpt_save(cut, &wide.p, NULL, NULL, NULL, 0, err), 0);
    CU_ASSERT_EQUAL(ckpt_load(cut, &other.p, NULL, &f, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "shape"));
    CU_ASSERT_EQUAL(memcmp(before, other.p.data, nbytes), 0);
    lejepa_free(&wide);
    /* A weights-only file cannot resume (no optimizer state). */
    snprintf(cut, sizeof cut, "%s/weights.safetensors", dir);
    CU_ASSERT_EQUAL(ckpt_save(cut, &m.p, NULL, NULL, NULL, 0, err), 0);
    CU_ASSERT_EQUAL(ckpt_load(cut, &other.p, &oo, &f, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "optimizer"));
    CU_ASSERT_EQUAL(memcmp(before, other.p.data, nbytes), 0);
    /* A safetensors file that is not ours. */
    struct st_tensor t = {.name = "x", .dtype = ST_F32, .ndim = 1, .shape = {1},
                          .data = before, .nbytes = 4};
    CU_ASSERT_EQUAL(st_write(cut, &t, 1, NULL, NULL, 0, err), 0);
    CU_ASSERT_EQUAL(ckpt_load(cut, &other.p, NULL, &f, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a lejepa checkpoint"));
    /* The good one loads and matches what was saved. */
    CU_ASSERT_EQUAL(ckpt_load(path, &other.p, &oo, &f, err), 0);
    st_close(&f);
    for (size_t i = 0; i < m.p.learn.n; i++)
        CU_ASSERT_EQUAL(memcmp(params_data(&m.p, (int)i), params_data(&other.p, (int)i),
                               m.p.learn.e[i].numel * sizeof(float)), 0);
    for (size_t i = 0; i < m.p.state.n; i++)
        CU_ASSERT_EQUAL(memcmp(params_state(&m.p, (int)i), params_state(&other.p, (int)i),
                               m.p.state.e[i].numel * sizeof(float)), 0);
    free(before);
    free(bytes);
    lejepa_free(&other);
    lejepa_free(&m);
    testing_rmtree(dir);
    free(dir);
}

static void test_non_finite_named(void)
{
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 0);
    int32_t labels[64] = {0};
    struct lejepa_losses l;
    char err[ERR_LEN];
    lejepa_forward_backward(&m, labels, 0, &l);
    CU_ASSERT_EQUAL(lejepa_check_finite(&m, &l, 0, err), 0);
    /* An infinite weight in the last projector layer poisons the loss. */
    int w = params_find(&m.p.learn, "projector.6.weight");
    CU_ASSERT_FATAL(w >= 0);
    params_data(&m.p, w)[3] = INFINITY;
    lejepa_forward_backward(&m, labels, 7, &l);
    CU_ASSERT_EQUAL(lejepa_check_finite(&m, &l, 7, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "step 7"));
    /* A finite loss with one bad gradient names the tensor. */
    params_data(&m.p, w)[3] = 0.0f;
    lejepa_forward_backward(&m, labels, 8, &l);
    params_grad(&m.p, w)[5] = NAN;
    CU_ASSERT_EQUAL(lejepa_check_finite(&m, &l, 8, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "projector.6.weight"));
    lejepa_free(&m);
}

/* Rewrites path with byte at (or, for at < 0, at from the end) xor'ed. */
static void flip_byte(const char *path, long at)
{
    size_t len;
    char err[ERR_LEN];
    char *b = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    size_t i = at < 0 ? len - (size_t)(-at) : (size_t)at;
    b[i] ^= 0x10;
    CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(path, b, len, err), 0);
    free(b);
}

static void truncate_file(const char *path, size_t drop)
{
    size_t len;
    char err[ERR_LEN];
    char *b = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(path, b, len - drop, err), 0);
    free(b);
}

/* Issue 11: a flipped byte in the tensor data and a truncated file are both
 * refused, naming the file, and the model is left as it was. */
static void test_corruption_detected(void)
{
    struct lejepa m, other;
    struct adamw o, oo;
    build(&m, &o, 0);
    build(&other, &oo, 1);
    char *dir = testing_tmpdir(), path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/ckpt-7.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(ckpt_save(path, &m.p, &o, NULL, NULL, 0, err), 0);
    CU_ASSERT_EQUAL(ckpt_verify(path, NULL, err), 0);
    size_t nbytes = other.p.learn.total * sizeof(float);
    float *before = xmalloc(nbytes);
    memcpy(before, other.p.data, nbytes);
    struct st_file f;
    const long where[] = {-1, -4000, -(long)(nbytes / 2)};
    for (size_t k = 0; k < sizeof where / sizeof where[0]; k++) {
        flip_byte(path, where[k]);
        err[0] = '\0';
        CU_ASSERT_EQUAL(ckpt_load(path, &other.p, &oo, &f, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "checksum mismatch"));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
        CU_ASSERT_EQUAL(ckpt_verify(path, NULL, err), -1);
        CU_ASSERT_EQUAL(memcmp(before, other.p.data, nbytes), 0);
        flip_byte(path, where[k]);
        CU_ASSERT_EQUAL(ckpt_verify(path, NULL, err), 0);
    }
    truncate_file(path, 4);
    err[0] = '\0';
    CU_ASSERT_EQUAL(ckpt_load(path, &other.p, &oo, &f, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "truncated"));
    CU_ASSERT_EQUAL(ckpt_verify(path, NULL, err), -1);
    CU_ASSERT_EQUAL(memcmp(before, other.p.data, nbytes), 0);
    free(before);
    lejepa_free(&other);
    lejepa_free(&m);
    testing_rmtree(dir);
    free(dir);
}

/* Replaces the first occurrence of from in path's bytes by to (the same
 * length), so a header can be edited in place. */
static void edit_file(const char *path, const char *from, const char *to)
{
    size_t len, n = strlen(from);
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(strlen(to), n);
    char *b = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    char *at = strstr(b + 8, from);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    memcpy(at, to, n);
    CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(path, b, len, err), 0);
    free(b);
}

/* A file as written before checksums: version 1, no checksum key (blanked
 * to spaces, which JSON ignores). It loads, with a note; a version 2 file
 * that lost its checksum key is corrupt. */
static void test_unchecked_version_1(void)
{
    struct lejepa m, other;
    struct adamw o, oo;
    build(&m, &o, 0);
    build(&other, &oo, 1);
    char *dir = testing_tmpdir(), path[4096], err[ERR_LEN], note[CKPT_NOTE_LEN];
    snprintf(path, sizeof path, "%s/old.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(ckpt_save(path, &m.p, &o, NULL, NULL, 0, err), 0);
    size_t len;
    char *b = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    const char *key = strstr(b + 8, "\"checksum\":\"crc32c:");
    CU_ASSERT_PTR_NOT_NULL_FATAL(key);
    char checksum[64] = "", blank[64];
    memcpy(checksum, key, strlen("\"checksum\":\"crc32c:01234567\","));
    memset(blank, ' ', sizeof blank);
    blank[strlen(checksum)] = '\0';
    free(b);
    edit_file(path, checksum, blank);
    CU_ASSERT_EQUAL(ckpt_verify(path, note, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "without its checksum"));
    edit_file(path, "\"version\":\"2\"", "\"version\":\"1\"");
    CU_ASSERT_EQUAL(ckpt_verify(path, note, err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(note, "no checksum"));
    struct st_file f;
    CU_ASSERT_EQUAL(ckpt_load(path, &other.p, &oo, &f, err), 0);
    st_close(&f);
    for (size_t i = 0; i < m.p.learn.n; i++)
        CU_ASSERT_EQUAL(memcmp(params_data(&m.p, (int)i), params_data(&other.p, (int)i),
                               m.p.learn.e[i].numel * sizeof(float)), 0);
    lejepa_free(&other);
    lejepa_free(&m);
    testing_rmtree(dir);
    free(dir);
}

/* A run directory with ckpt-1..3 and `latest` naming ckpt-3. */
static void make_run_dir(const char *dir, struct lejepa *m, struct adamw *o)
{
    char path[4096], err[ERR_LEN];
    for (int s = 1; s <= 3; s++) {
        snprintf(path, sizeof path, "%s/ckpt-%d.safetensors", dir, s);
        m->p.data[0] = (float)s;
        CU_ASSERT_EQUAL_FATAL(ckpt_save(path, &m->p, o, NULL, NULL, 0, err), 0);
    }
    snprintf(path, sizeof path, "%s/latest", dir);
    CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(path, "ckpt-3.safetensors\n", 19, err), 0);
}

static void expect_found(const char *dir, int step, const char *note_has)
{
    char path[4096], want[4096], note[CKPT_NOTE_LEN], err[ERR_LEN] = "";
    snprintf(want, sizeof want, "%s/ckpt-%d.safetensors", dir, step);
    int rc = ckpt_find_newest_valid(dir, path, sizeof path, note, err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        return;
    CU_ASSERT_STRING_EQUAL(path, want);
    if (note_has) {
        CU_ASSERT_PTR_NOT_NULL(strstr(note, note_has));
        CU_ASSERT_PTR_NOT_NULL(strstr(note, want));
    } else {
        CU_ASSERT_STRING_EQUAL(note, "");
    }
}

static void test_fallback_to_newest_good(void)
{
    struct lejepa m;
    struct adamw o;
    build(&m, &o, 0);
    char *dir = testing_tmpdir(), path[4096], link[4200], note[CKPT_NOTE_LEN],
         err[ERR_LEN];
    make_run_dir(dir, &m, &o);
    expect_found(dir, 3, NULL);
    /* `latest` as a symlink (relative) is followed as well */
    snprintf(link, sizeof link, "%s/latest", dir);
    CU_ASSERT_EQUAL_FATAL(unlink(link), 0);
    CU_ASSERT_EQUAL_FATAL(symlink("ckpt-2.safetensors", link), 0);
    expect_found(dir, 2, NULL);
    CU_ASSERT_EQUAL_FATAL(unlink(link), 0);
    CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(link, "ckpt-3.safetensors\n", 19, err), 0);
    /* the newest is corrupt: the note names it and the one chosen */
    snprintf(path, sizeof path, "%s/ckpt-3.safetensors", dir);
    flip_byte(path, -100);
    expect_found(dir, 2, "checksum mismatch");
    ckpt_find_newest_valid(dir, link, sizeof link, note, err);
    CU_ASSERT_PTR_NOT_NULL(strstr(note, path));
    /* and the next one truncated */
    snprintf(path, sizeof path, "%s/ckpt-2.safetensors", dir);
    truncate_file(path, 1000);
    expect_found(dir, 1, "skipped");
    /* without `latest` at all, the newest that verifies */
    snprintf(link, sizeof link, "%s/latest", dir);
    CU_ASSERT_EQUAL_FATAL(unlink(link), 0);
    expect_found(dir, 1, "no usable `latest`");
    /* a `latest` of garbage */
    CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(link, "\x01\xff/zz", 5, err), 0);
    expect_found(dir, 1, "expected a checkpoint file name");
    /* nothing verifies: an error naming the directory */
    snprintf(path, sizeof path, "%s/ckpt-1.safetensors", dir);
    flip_byte(path, 20);
    err[0] = '\0';
    CU_ASSERT_EQUAL(ckpt_find_newest_valid(dir, link, sizeof link, note, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no checkpoint verifies"));
    lejepa_free(&m);
    testing_rmtree(dir);
    free(dir);
}

/* A pid that was a process and is no more: a child that exited, reaped. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

static void test_stale_tmp_removed(void)
{
    char *dir = testing_tmpdir(), path[4200], err[ERR_LEN];
    pid_t dead = dead_pid();
    struct {
        char name[128];
        bool removed;
    } files[] = {
        {"", true}, {"", true}, {"", false}, {"", false},
        {"notes.tmp.abc", false}, {"metrics.jsonl", false}, {".tmp.", false},
    };
    snprintf(files[0].name, sizeof files[0].name, "ckpt-5.safetensors.tmp.%d", (int)dead);
    snprintf(files[1].name, sizeof files[1].name, "latest.tmp.%d", (int)dead);
    /* a live writer: our parent (the test runner) and ourselves */
    snprintf(files[2].name, sizeof files[2].name, "dashboard.html.tmp.%d", (int)getppid());
    snprintf(files[3].name, sizeof files[3].name, "ckpt-6.safetensors.tmp.%d", (int)getpid());
    size_t n = sizeof files / sizeof files[0];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        FILE *f = fopen(path, "w");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fclose(f);
    }
    int removed = -1;
    CU_ASSERT_EQUAL(ckpt_remove_stale_tmp(dir, &removed, err), 0);
    CU_ASSERT_EQUAL(removed, 2);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        CU_ASSERT_EQUAL(stat(path, &st) != 0, files[i].removed);
    }
    CU_ASSERT_EQUAL(ckpt_remove_stale_tmp(dir, &removed, err), 0);
    CU_ASSERT_EQUAL(removed, 0);
    snprintf(path, sizeof path, "%s/absent", dir);
    CU_ASSERT_EQUAL(ckpt_remove_stale_tmp(path, &removed, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    testing_rmtree(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return child(argv[2]);
    static const struct testing_case cases[] = {
        {"resume in a fresh process", test_resume_in_fresh_process},
        {"bad checkpoints refused, model untouched",
         test_bad_checkpoints_refused_model_untouched},
        {"non-finite loss and gradients named", test_non_finite_named},
        {"corruption detected", test_corruption_detected},
        {"version 1 without checksum", test_unchecked_version_1},
        {"fallback to the newest good checkpoint", test_fallback_to_newest_good},
        {"stale temp files removed", test_stale_tmp_removed},
        {NULL, NULL},
    };
    return testing_run("checkpoints", cases);
}
