/*
 * test_pipeline.c: the real lejepa-loader against the real lejepa-train,
 * as processes over ipc:// sockets in a temporary directory, on a generated
 * ImageFolder of 20x20 gray PNGs in three visibly different classes, with a
 * tiny ResNet. Each case is one meson test (the case name is argv[1]).
 * Checks: two loaders train with finite losses that fall; one and three
 * loaders give the same batches and losses; a loader killed with SIGKILL
 * while it holds tickets loses none (the other takes them after the
 * heartbeat timeout, same batches as a reference run) and leaves no decode
 * worker behind; corrupt files (truncated, empty, random bytes, text named
 * .jpg) are reported by exactly their paths and the run trains on; a
 * trainer stopped with SIGINT and resumed continues exactly, the loaders
 * staying up and reconnecting by themselves.
 */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


#include "dataset.h"
#include "json.h"
#include "test_pipeline_util.h"
#include "testing.h"
#include "util.h"

/* 3 x 24 training images, batch 8: 9 steps per epoch. */
#define PER_CLASS 24
#define VAL_PER_CLASS 4
#define DATA_SEED 20251125

/* Loss falls: mean of the first LOSS_WINDOW steps against the last. With
 * run.seed 1..10 this ratio was 0.61-0.80 at lr 5e-3 over 90 steps, and
 * 1.00-1.04 at lr 0 (no learning: only the batches change), so 0.85
 * separates learning from noise on both sides. The run is deterministic
 * (run.threads=1, batches independent of the loaders), so this is not a
 * matter of luck per run. */
#define LOSS_STEPS 90
#define LOSS_WINDOW 10
#define LOSS_RATIO_MAX 0.85

static void test_two_loaders(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", PER_CLASS, VAL_PER_CLASS, DATA_SEED);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    char steps[16];
    snprintf(steps, sizeof steps, "%d", LOSS_STEPS);
    const char *const args[] = {"--steps", steps, "--set", "optim.lr=5e-3", NULL};
    int n = pipe_run(e, "two", data, 2, args, NULL, l);
    CU_ASSERT_EQUAL_FATAL(n, LOSS_STEPS);
    for (int i = 0; i < n; i++) {
        CU_ASSERT(isfinite(l[i].loss));
        CU_ASSERT_EQUAL(l[i].samples, 8);
        CU_ASSERT_EQUAL(l[i].step, (uint64_t)i + 1);
        CU_ASSERT_EQUAL(l[i].epoch, (uint64_t)i / (PIPE_CLASSES * PER_CLASS / 8));
        CU_ASSERT_EQUAL(l[i].failures, 0);
        CU_ASSERT_EQUAL(strlen(l[i].hash), 16);
    }
    double first = pipe_mean_loss(l, 0, LOSS_WINDOW);
    double last = pipe_mean_loss(l, n - LOSS_WINDOW, n);
    printf("(loss %.4f -> %.4f, ratio %.3f) ", first, last, last / first);
    CU_ASSERT(last < LOSS_RATIO_MAX * first);
    /* both loaders did part of the work */
    CU_ASSERT(pipe_loader_served(e, "two-loader0") > 0);
    CU_ASSERT(pipe_loader_served(e, "two-loader1") > 0);
    CU_ASSERT(file_exists(e, "two/ckpt-90.safetensors"));
    free(l);
    free(data);
    pipe_case_end();
}

/* The same run with one and with three loaders: the same batch hash and
 * loss at every step; all three loaders took part. */
static void test_one_vs_three(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", PER_CLASS, VAL_PER_CLASS, DATA_SEED);
    struct line *a = xcalloc(MAX_LINES, sizeof *a), *b = xcalloc(MAX_LINES, sizeof *b);
    const char *const args[] = {"--steps", "24", NULL};
    /* credit 1 each, so the tickets of a step spread over the loaders */
    const char *const credit1[] = {"--credit", "1", NULL};
    int na = pipe_run(e, "one", data, 1, args, NULL, a);
    int nb = pipe_run(e, "three", data, 3, args, credit1, b);
    CU_ASSERT_EQUAL(na, 24);
    CU_ASSERT_EQUAL(nb, 24);
    check_same(a, na, b, nb, 0);
    for (int i = 0; i < na && i < nb; i++)
        CU_ASSERT(a[i].step == b[i].step && a[i].samples == 8 && b[i].samples == 8);
    for (int i = 0; i < 3; i++) {
        char name[64], joined[96];
        snprintf(name, sizeof name, "three-loader%d", i);
        snprintf(joined, sizeof joined, "loader %s joined", name);
        CU_ASSERT(pipe_count_text(e, "three/log", joined) >= 1);
        CU_ASSERT(pipe_loader_served(e, name) > 0);
    }
    free(a);
    free(b);
    free(data);
    pipe_case_end();
}

/* A loader killed with SIGKILL while it holds tickets: it joins a running
 * run with a decode worker that hangs on every "square" image (the
 * loader's LEJEPA_LOADER_FAULT test hook), so it is sure to hold tickets
 * when it is killed. The other loader answers second copies of them
 * meanwhile; when a is gone (by silence or a closed connection) its
 * tickets go to the others, and every step equals a reference run's. Its
 * worker dies with it. 600 steps so that it is killed long before the
 * end. */
static void test_killed_loader(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", PER_CLASS, VAL_PER_CLASS, DATA_SEED);
    const char *const args[] = {"--steps", "600", NULL};
    pid_t tr = start_trainer(e, "kill", args);
    pipe_track(tr);
    CU_ASSERT(wait_text(e, "kill/log", "work endpoint", 20));
    pid_t b = pipe_start_loader(e, "kill-b", data, NULL, NULL);
    CU_ASSERT(wait_lines(e, "kill", 3, 30));
    pid_t a = pipe_start_loader(e, "kill-a", data, NULL, "LEJEPA_LOADER_FAULT=hang:/square/");
    CU_ASSERT(wait_text(e, "kill/log", "kill-a joined", 20));
    /* a's worker hangs on the first square image a gets; from then on a
     * holds tickets that b answers as second copies (hedged), so the run
     * goes on, more slowly, until a is killed */
    usleep(1500000);
    struct line *l = xcalloc(MAX_LINES, sizeof *l), *ref = xcalloc(MAX_LINES, sizeof *ref);
    int before = read_lines(e, "kill", l);
    CU_ASSERT(before < 600);
    CU_ASSERT_EQUAL(kill(a, SIGKILL), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 5), 128 + SIGKILL);
    for (int k = 0; k < 200 && !pipe_group_gone(a); k++)
        usleep(10000);
    CU_ASSERT(pipe_group_gone(a));
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    pipe_stop_loader(b);
    int n = read_lines(e, "kill", l);
    CU_ASSERT_EQUAL(n, 600);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(l[i].samples, 8);
        CU_ASSERT_EQUAL(l[i].step, (uint64_t)i + 1);
    }
    char *log = read_text(e, "kill/log");
    /* the trainer learns of the loss by silence or, sooner, by the send
     * that finds the connection closed; either way its tickets move on */
    const char *gone = strstr(log, "kill-a silent for ");
    if (!gone)
        gone = strstr(log, "kill-a is gone");
    const char *moved = gone ? strstr(gone, "dropped: ") : NULL;
    if (gone && (!moved || strchr(gone, '\n') < moved))
        moved = strstr(gone, "presumed gone: ");
    CU_ASSERT(gone && moved);
    if (moved)
        CU_ASSERT(strtol(strchr(moved, ':') + 2, NULL, 10) >= 1);
    free(log);
    int nr = pipe_run(e, "kill-ref", data, 1, args, NULL, ref);
    CU_ASSERT_EQUAL(nr, 600);
    check_same(l, n, ref, nr, 0);
    free(l);
    free(ref);
    free(data);
    pipe_case_end();
}

/* The paths of the log's lines "... (PATH) failed: ...", in order, into
 * paths (max); returns how many such lines there were. */
static int failed_paths(const char *log, char paths[][256], int max)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, ") failed: ")); p++) {
        const char *open = p;
        while (open > log && *open != '(' && open[-1] != '\n')
            open--;
        if (n < max)
            snprintf(paths[n], sizeof paths[n], "%.*s",
                     *open == '(' ? (int)(p - open - 1) : 0, open + 1);
        n++;
    }
    return n;
}

/* 60 good images and the four corrupt files: 64 samples, so epoch 0 (8
 * full steps) tries every file. Each corrupt file is reported once by its
 * relative path, the others never; epoch 0 trains on the 60 good ones and
 * epoch 1 leaves the four out. */
static void test_corrupt_files(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", 20, VAL_PER_CLASS, DATA_SEED);
    pipe_add_corrupt(data, DATA_SEED);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    /* 4 of 64 files are corrupt: above the default limits.max_excluded */
    const char *const args[] = {"--steps", "12", "--set",
                                "limits.max_excluded=0.5", NULL};
    int n = pipe_run(e, "bad", data, 2, args, NULL, l);
    CU_ASSERT_EQUAL_FATAL(n, 12);
    double epoch0 = 0;
    for (int i = 0; i < n; i++) {
        CU_ASSERT(isfinite(l[i].loss));
        CU_ASSERT_EQUAL(l[i].epoch, i < 8 ? 0u : 1u);
        if (i < 8)
            epoch0 += l[i].samples;
        else
            CU_ASSERT_EQUAL(l[i].samples, 8);
    }
    CU_ASSERT_EQUAL(epoch0, 60);
    CU_ASSERT_EQUAL(l[7].failures, PIPE_N_CORRUPT);
    CU_ASSERT_EQUAL(l[n - 1].failures, PIPE_N_CORRUPT);
    /* every failure the log reports is one of the corrupt files (eval
     * snapshots may report them again), and training excluded each once */
    char *log = read_text(e, "bad/log");
    char paths[64][256];
    int nf = failed_paths(log, paths, 64);
    CU_ASSERT(nf >= PIPE_N_CORRUPT && nf <= 64);
    for (int i = 0; i < nf && i < 64; i++) {
        int known = 0;
        for (int k = 0; k < PIPE_N_CORRUPT; k++)
            known += strcmp(paths[i], pipe_corrupt_paths[k]) == 0;
        CU_ASSERT_EQUAL(known, 1);
        if (known != 1)
            fprintf(stderr, "unexpected failure reported: '%s'\n", paths[i]);
    }
    for (int k = 0; k < PIPE_N_CORRUPT; k++) {
        char want[400];
        snprintf(want, sizeof want, "(%s) failed: ", pipe_corrupt_paths[k]);
        const char *at = strstr(log, want);
        const char *eol = at ? strchr(at, '\n') : NULL;
        const char *excl = at ? strstr(at, "; excluded from epoch 1 on") : NULL;
        CU_ASSERT(excl != NULL && (!eol || excl < eol));
    }
    CU_ASSERT_EQUAL(pipe_count_text(e, "bad/log", "; excluded from epoch 1 on"),
                    PIPE_N_CORRUPT);
    CU_ASSERT(strstr(log, "epoch 1 starts at step 8: 7 steps of 8 (60 usable "
                          "samples, 4 dropped as the last partial batch, 4 "
                          "excluded)") != NULL);
    free(log);
    free(l);
    free(data);
    pipe_case_end();
}

/* The generated dataset's images moved into one flat folder, as
 * <class>-<file>: an unlabelled dataset (0 classes, labels -1). */
static char *make_unlabelled(const struct env *e, const char *labelled)
{
    struct dataset d;
    char err[ERR_LEN], *flat = xmalloc(4200);
    CU_ASSERT_EQUAL_FATAL(dataset_open(&d, labelled, err), 0);
    snprintf(flat, 4200, "%s/flat", e->dir);
    CU_ASSERT_EQUAL_FATAL(util_mkdir_p(flat, err), 0);
    for (int s = 0; s < DATASET_N_SPLITS; s++)
        for (size_t i = 0; i < d.split[s].n; i++) {
            char from[4200], to[4400], name[256];
            snprintf(name, sizeof name, "%s", d.split[s].paths[i]);
            for (char *c = name; *c; c++)
                *c = *c == '/' ? '-' : *c;
            dataset_sample_path(&d, s, i, from, sizeof from);
            snprintf(to, sizeof to, "%s/%s", flat, name);
            CU_ASSERT_EQUAL_FATAL(rename(from, to), 0);
        }
    dataset_free(&d);
    return flat;
}

struct probe_seen {
    int lines, probe_numbers, eval_lines, eval_rows;
};

static void on_train_line(const struct json *j, void *ctx)
{
    struct probe_seen *p = ctx;
    p->lines++;
    p->probe_numbers += isfinite(json_number(j, "probe_acc_train")) ||
        isfinite(json_number(j, "probe_loss"));
}

static void on_eval_line(const struct json *j, void *ctx)
{
    struct probe_seen *p = ctx;
    p->eval_lines++;
    p->probe_numbers += isfinite(json_number(j, "probe_acc_val"));
    p->eval_rows += json_number(j, "eval_rows") > 0;
}

/* An unlabelled folder of images trains: no online probe (no probe
 * metrics, no probe tensors in the checkpoint), eval snapshots still
 * embed every row, labels are -1 end to end (the trainer drops a BATCH
 * whose labels are not: bad_messages stays 0). */
static void test_unlabelled(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", PER_CLASS, VAL_PER_CLASS, DATA_SEED);
    char *flat = make_unlabelled(e, data);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const args[] = {"--steps", "18", "--set", "eval.every=9", NULL};
    int n = pipe_run(e, "unl", flat, 2, args, NULL, l);
    CU_ASSERT_EQUAL_FATAL(n, 18);
    for (int i = 0; i < n; i++) {
        CU_ASSERT(isfinite(l[i].loss));
        CU_ASSERT_EQUAL(l[i].samples, 8);
        CU_ASSERT_EQUAL(l[i].failures, 0);
        CU_ASSERT_EQUAL(l[i].bad, 0);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/unl/metrics.jsonl", e->dir);
    struct probe_seen seen = {0};
    metrics_each(path, "train", on_train_line, &seen);
    metrics_each(path, "eval", on_eval_line, &seen);
    CU_ASSERT(seen.lines > 0);
    CU_ASSERT_EQUAL(seen.probe_numbers, 0);
    CU_ASSERT_EQUAL(seen.eval_lines, 2);
    CU_ASSERT_EQUAL(seen.eval_rows, 2);
    CU_ASSERT(pipe_count_text(e, "unl/log", "val, 0 classes") >= 1);
    /* the checkpoint holds no probe tensors */
    char *ck = read_text(e, "unl/ckpt-18.safetensors");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ck);
    CU_ASSERT_PTR_NULL(strstr(ck + 8, "probe."));
    CU_ASSERT_PTR_NOT_NULL(strstr(ck + 8, "projector."));
    free(ck);
    free(l);
    free(flat);
    free(data);
    pipe_case_end();
}

/* Runs `lejepa ARGS` (the built program) and asserts it exits 0. */
static void run_lejepa(const char *args)
{
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "'%s/tools/lejepa' %s >/dev/null", getenv("LEJEPA_BUILD_ROOT"),
             args);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "'%s' exited %d\n", cmd, rc);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

/* Partial copies (PROTOCOL.md, HELLO.dataset.held): the dataset as 5 tar
 * shards, two loaders holding shards {0, 1, 2} and {2, 3, 4}, then a
 * folder copy with its index and 6 files removed beside a whole one.
 * Every sample trains (8 per step, none excluded), each loader only ever
 * gets what it holds (no failure at all), and every batch equals a
 * one-loader run on the folder (hash and loss): the data may be spread
 * over machines without changing the run. */
static void test_partial_copies(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", PER_CLASS, VAL_PER_CLASS, DATA_SEED);
    char args[16384], a[2048], b[2048], f[2048];
    snprintf(args, sizeof args, "shard '%s' --out '%s/shards' --per-shard 20", data, e->dir);
    run_lejepa(args);
    snprintf(a, sizeof a, "%s/copy-a", e->dir);
    snprintf(b, sizeof b, "%s/copy-b", e->dir);
    snprintf(args, sizeof args,
             "mkdir -p '%s' '%s' && cd '%s/shards' && cp lejepa-index.txt shard-000000.tar "
             "shard-000001.tar shard-000002.tar '%s' && cp lejepa-index.txt shard-000002.tar "
             "shard-000003.tar shard-000004.tar '%s'",
             a, b, e->dir, a, b);
    CU_ASSERT_EQUAL_FATAL(system(args), 0);
    struct line *ref = xcalloc(MAX_LINES, sizeof *ref), *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const steps[] = {"--steps", "18", NULL};
    int nr = pipe_run(e, "whole", data, 1, steps, NULL, ref);
    CU_ASSERT_EQUAL_FATAL(nr, 18);
    const char *const shards[] = {a, b};
    int n = pipe_run_each(e, "shards", shards, 2, steps, NULL, l);
    CU_ASSERT_EQUAL(n, 18);
    check_same(ref, nr, l, n, 0);
    for (int i = 0; i < n; i++)
        CU_ASSERT(l[i].samples == 8 && l[i].failures == 0);
    CU_ASSERT_EQUAL(pipe_count_text(e, "shards/log", "could not load"), 0);
    CU_ASSERT(pipe_count_text(e, "shards-loader0.out", "a partial copy: 60 of the 84") == 1);
    CU_ASSERT(pipe_loader_served(e, "shards-loader0") > 0);
    CU_ASSERT(pipe_loader_served(e, "shards-loader1") > 0);

    /* a folder copy with its index and files missing, beside a whole one */
    snprintf(f, sizeof f, "%s/copy-f", e->dir);
    snprintf(args, sizeof args, "cp -r '%s' '%s'", data, f);
    CU_ASSERT_EQUAL_FATAL(system(args), 0);
    snprintf(args, sizeof args, "index '%s'", f);
    run_lejepa(args);
    snprintf(args, sizeof args, "cd '%s' && find train -name '*.png' | sort | awk 'NR %% 12 == 0' "
             "| xargs rm", f);
    CU_ASSERT_EQUAL_FATAL(system(args), 0);
    const char *const mixed[] = {f, data};
    n = pipe_run_each(e, "mixed", mixed, 2, steps, NULL, l);
    CU_ASSERT_EQUAL(n, 18);
    check_same(ref, nr, l, n, 0);
    for (int i = 0; i < n; i++)
        CU_ASSERT(l[i].samples == 8 && l[i].failures == 0);
    CU_ASSERT(pipe_count_text(e, "mixed-loader0.out", "a partial copy: 78 of the 84") == 1);
    CU_ASSERT_EQUAL(pipe_count_text(e, "mixed/log", "could not load"), 0);

    /* copy a alone lacks shards 3 and 4: the run waits, and says why */
    pid_t tr = start_trainer(e, "alone", steps);
    pipe_track(tr);
    CU_ASSERT(wait_text(e, "alone/log", "work endpoint", 20));
    pid_t ld = pipe_start_loader(e, "alone-loader", a, NULL, NULL);
    CU_ASSERT(wait_text(e, "alone/log", "held by no connected loader", 30));
    CU_ASSERT_EQUAL(kill(tr, SIGINT), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 30), 0);
    pipe_stop_loader(ld);
    free(ref);
    free(l);
    free(data);
    pipe_case_end();
}

/* An uninterrupted reference run, then the same run stopped with SIGINT
 * (final checkpoint) and resumed from its run directory: every step once,
 * with the reference's batch hash and loss. The same two loaders serve all
 * three trainers: they stay up and reconnect by themselves. */
static void test_sigint_resume(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", PER_CLASS, VAL_PER_CLASS, DATA_SEED);
    const char *const args[] = {"--steps", "200", NULL};
    pid_t tr = start_trainer(e, "ref", args);
    pipe_track(tr);
    CU_ASSERT(wait_text(e, "ref/log", "work endpoint", 20));
    pid_t ld[2] = {pipe_start_loader(e, "sig-a", data, NULL, NULL),
                   pipe_start_loader(e, "sig-b", data, NULL, NULL)};
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);

    tr = start_trainer(e, "int", args);
    pipe_track(tr);
    CU_ASSERT(wait_lines(e, "int", 20, 30));
    CU_ASSERT_EQUAL(kill(tr, SIGINT), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 20), 0);
    struct line *l = xcalloc(MAX_LINES, sizeof *l), *ref = xcalloc(MAX_LINES, sizeof *ref);
    int k = read_lines(e, "int", l);
    CU_ASSERT_FATAL(k >= 20 && k < 200);
    printf("(stopped at step %d) ", k);
    char *latest = read_text(e, "int/latest"), want[64];
    snprintf(want, sizeof want, "ckpt-%d.safetensors\n", k);
    CU_ASSERT_STRING_EQUAL(latest, want);
    free(latest);

    char dir[4200];
    snprintf(dir, sizeof dir, "%s/int", e->dir);
    const char *const again[] = {"--resume", dir, NULL};
    tr = start_trainer(e, "int", again);
    pipe_track(tr);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    /* the loaders are still the ones started at first */
    for (int i = 0; i < 2; i++) {
        int st;
        CU_ASSERT_EQUAL(waitpid(ld[i], &st, WNOHANG), 0);
        pipe_stop_loader(ld[i]);
    }
    int n = read_lines(e, "int", l), nr = read_lines(e, "ref", ref);
    CU_ASSERT_EQUAL(nr, 200);
    CU_ASSERT_EQUAL(n, 200);
    for (int i = 0; i < n; i++)
        CU_ASSERT_EQUAL(l[i].step, (uint64_t)i + 1);
    check_same(l, n, ref, nr, 0);
    char *log = read_text(e, "int/log");
    const char *resumed = strstr(log, "resumed from");
    CU_ASSERT_FATAL(resumed != NULL);
    CU_ASSERT(strstr(log, "sig-a joined") && strstr(log, "sig-a joined") < resumed);
    CU_ASSERT(strstr(log, "sig-b joined") && strstr(log, "sig-b joined") < resumed);
    CU_ASSERT(strstr(resumed, "sig-a joined") != NULL);
    CU_ASSERT(strstr(resumed, "sig-b joined") != NULL);
    free(log);
    free(l);
    free(ref);
    free(data);
    pipe_case_end();
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"two_loaders", test_two_loaders},
        {"one_vs_three", test_one_vs_three},
        {"killed_loader", test_killed_loader},
        {"corrupt_files", test_corrupt_files},
        {"sigint_resume", test_sigint_resume},
        {"unlabelled", test_unlabelled},
        {"partial_copies", test_partial_copies},
        {NULL, NULL},
    };
    return pipe_main("pipeline", all, argc, argv);
}
