/*
 * test_faults.c: faults injected into a run, each with the invariant that
 * must hold (issue 12, the bounded form that CI runs):
 * - kill_points: the trainer killed (SIGKILL) between writing a checkpoint
 *   and updating `latest`, and at a moment of the test's choosing, then
 *   resumed: every step of the resumed run has the batch hash and loss of an
 *   uninterrupted run, and no temp file is left; a corrupt newest
 *   checkpoint is passed over for the one before, with a note.
 * - disk_full: the run directory on a tmpfs that fills up: the first failed
 *   checkpoint write stops the run (exit 1) naming the last good
 *   checkpoint, which then resumes the run to its end. Checkpoints are
 *   written while the next step trains, so the run may stop one step later
 *   than the failed checkpoint's, never two.
 * - ckpt_hold: the write of a checkpoint held (a slow disk): the next
 *   steps train meanwhile, on to the next checkpoint, which waits for the
 *   held one; the held checkpoint is of its own step (resuming from it
 *   gives the same steps again).
 * - trainer_restart: real loaders wait while the trainer is killed and
 *   started again on the same address: they find it and serve again, and
 *   the batches are the uninterrupted run's.
 * - stopped_loader: one of two loaders stopped (SIGSTOP) past the silence
 *   limit and continued: the run finishes with the same batches.
 * - early_refusals, excluded_share: what refuses a run (a bad --data, a
 *   busy port, a directory in use or holding checkpoints, too many samples
 *   excluded) does so cleanly, before it can do harm.
 * Faults of the clients (evaluators, loaders) at seeded random moments are
 * in test_faults_clients.c.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "test_pipeline_util.h"
#include "test_train_util.h"
#include "testing.h"
#include "util.h"

/* Files named "*.tmp.*" left in dir (util_atomic_open's temp names). */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static int run_to_end(const struct env *e, const char *name,
                      const char *const *args)
{
    pid_t tr = start_trainer(e, name, args);
    pid_t ld = start_loader(e, "end-loader", NULL);
    int code = testing_wait_exit(tr, RUN_TIMEOUT_S);
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
    return code;
}

static void test_kill_points(void)
{
    struct env e;
    env_init(&e);
    struct line *ref = xcalloc(MAX_LINES, sizeof *ref), *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const every[] = {"--set", "run.ckpt_every=4", "--set",
                                 "run.keep_ckpts=0", NULL};
    int nref = plain_run(&e, "ref", 1, "20", NULL, every, ref);
    CU_ASSERT_EQUAL_FATAL(nref, 20);

    /* 1. killed after ckpt-8 is written, before `latest` names it */
    const char *const run[] = {"--steps", "20", "--set", "run.ckpt_every=4",
                               "--set", "run.keep_ckpts=0", NULL};
    setenv("LEJEPA_TRAIN_FAULT", "ckpt-before-latest:8", 1);
    pid_t tr = start_trainer(&e, "cut", run);
    unsetenv("LEJEPA_TRAIN_FAULT");
    pid_t ld = start_loader(&e, "cut-loader", NULL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 128 + SIGKILL);
    kill(ld, SIGTERM);
    testing_wait_exit(ld, 10);
    CU_ASSERT(file_exists(&e, "cut/ckpt-8.safetensors"));
    char *latest = read_text(&e, "cut/latest");
    CU_ASSERT(latest && strncmp(latest, "ckpt-4.", 7) == 0);
    free(latest);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/cut", e.dir);
    const char *const again[] = {"--resume", dir, NULL};
    CU_ASSERT_EQUAL(run_to_end(&e, "cut", again), 0);
    int n = read_lines(&e, "cut", l);
    /* steps 1-8, then 5-20 again from ckpt-4: each as in the reference */
    CU_ASSERT(n >= 20);
    CU_ASSERT_EQUAL(l[n - 1].step, 20u);
    check_same(l, n, ref, nref, 0);
    CU_ASSERT_EQUAL(count_tmp(dir), 0);

    /* 2. killed at a moment of our choosing, mid-step */
    const char *const run2[] = {"--steps", "20", "--set", "run.ckpt_every=4",
                                NULL};
    tr = start_trainer(&e, "kill", run2);
    ld = start_loader(&e, "kill-loader", NULL);
    CU_ASSERT(wait_lines(&e, "kill", 11, 30));
    kill(tr, SIGKILL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 10), 128 + SIGKILL);
    kill(ld, SIGTERM);
    testing_wait_exit(ld, 10);
    snprintf(dir, sizeof dir, "%s/kill", e.dir);
    /* and the newest checkpoint corrupted: one flipped byte at its end */
    char *text = read_text(&e, "kill/latest");
    CU_ASSERT_FATAL(text != NULL);
    text[strcspn(text, "\n")] = '\0';
    char ck[4400];
    snprintf(ck, sizeof ck, "%s/%s", dir, text);
    FILE *f = fopen(ck, "r+b");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, -3, SEEK_END);
    int c = fgetc(f);
    fseek(f, -3, SEEK_END);
    fputc(c ^ 0x5a, f);
    fclose(f);
    const char *const again2[] = {"--resume", dir, NULL};
    CU_ASSERT_EQUAL(run_to_end(&e, "kill", again2), 0);
    char *log = read_text(&e, "kill/log");
    CU_ASSERT(log && strstr(log, "does not verify") != NULL);
    CU_ASSERT(log && strstr(log, "the newest checkpoint that verifies") != NULL);
    free(log);
    free(text);
    n = read_lines(&e, "kill", l);
    CU_ASSERT_EQUAL(l[n - 1].step, 20u);
    check_same(l, n, ref, nref, 0);
    CU_ASSERT_EQUAL(count_tmp(dir), 0);
    free(ref);
    free(l);
    env_free(&e);
}

static void test_disk_full(void)
{
    struct env e;
    env_init(&e);
    char small[4200];
    snprintf(small, sizeof small, "%s/small", e.dir);
    CU_ASSERT_FATAL(mkdir(small, 0755) == 0);
    /* room for the log, metrics and about two checkpoints of the tiny model */
    CU_ASSERT_FATAL(mount("tmpfs", small, "tmpfs", 0, "size=640k") == 0);
    const char *const args[] = {"--out", small, "--steps", "40", "--set",
                                "run.ckpt_every=1", "--set", "run.keep_ckpts=0",
                                NULL};
    int code = run_to_end(&e, "full", args);
    CU_ASSERT_EQUAL(code, 1);
    char *out = read_text(&e, "full.out");
    const char *at = out ? strstr(out, "The last good checkpoint is ckpt-") : NULL;
    CU_ASSERT(at != NULL);
    /* that checkpoint, copied off the full disk, resumes the run */
    if (at) {
        unsigned long step = strtoul(at + strlen("The last good checkpoint is ckpt-"),
                                     NULL, 10);
        CU_ASSERT(step >= 1 && step < 40);
        /* with run.ckpt_every=1 the write of step+1 is the one that failed;
         * at most step+2 trained before the run stopped */
        const char *stop = strstr(out, "stopped at step ");
        CU_ASSERT(stop != NULL);
        if (stop) {
            unsigned long last = strtoul(stop + strlen("stopped at step "), NULL, 10);
            CU_ASSERT(last >= step + 1 && last <= step + 2);
        }
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "cp -r %s/full %s/saved", small, e.dir);
        CU_ASSERT_FATAL(system(cmd) == 0);
        char ck[4400], rel[64];
        snprintf(rel, sizeof rel, "saved/ckpt-%lu.safetensors", step);
        snprintf(ck, sizeof ck, "%s/%s", e.dir, rel);
        CU_ASSERT(file_exists(&e, rel));
        const char *const resume[] = {"--resume", ck, "--name", "saved", NULL};
        CU_ASSERT_EQUAL(run_to_end(&e, "saved", resume), 0);
        struct line *l = xcalloc(MAX_LINES, sizeof *l);
        int n = read_lines(&e, "saved", l);
        CU_ASSERT(n > 0 && l[n - 1].step == 40u);
        free(l);
    }
    free(out);
    CU_ASSERT(umount(small) == 0);
    env_free(&e);
}

/* LEJEPA_TRAIN_FAULT=ckpt-hold:8 holds the write of ckpt-8 until the run
 * directory has a file `release`. */
static void test_ckpt_hold(void)
{
    struct env e;
    env_init(&e);
    const char *const args[] = {"--steps", "16", "--set", "run.ckpt_every=4",
                                "--set", "run.keep_ckpts=0", NULL};
    setenv("LEJEPA_TRAIN_FAULT", "ckpt-hold:8", 1);
    pid_t tr = start_trainer(&e, "hold", args);
    unsetenv("LEJEPA_TRAIN_FAULT");
    pid_t ld = start_loader(&e, "hold-loader", NULL);
    /* steps 9-11 train while ckpt-8 is being written (a write on the main
     * thread would hold them back too) */
    CU_ASSERT(wait_lines(&e, "hold", 11, 30));
    /* ckpt-12 waits for ckpt-8: step 13 does not start */
    CU_ASSERT(!wait_lines(&e, "hold", 13, 1));
    CU_ASSERT(!file_exists(&e, "hold/ckpt-8.safetensors"));
    char *latest = read_text(&e, "hold/latest");
    CU_ASSERT(strncmp(latest, "ckpt-4.", 7) == 0);
    free(latest);
    char path[4200];
    snprintf(path, sizeof path, "%s/hold/release", e.dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fclose(f);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
    struct line *ref = xcalloc(MAX_LINES, sizeof *ref), *l = xcalloc(MAX_LINES, sizeof *l);
    int nref = read_lines(&e, "hold", ref);
    CU_ASSERT_EQUAL(nref, 16);
    CU_ASSERT(file_exists(&e, "hold/ckpt-8.safetensors"));
    CU_ASSERT(file_exists(&e, "hold/ckpt-12.safetensors"));
    /* ckpt-8 holds step 8's weights, not those of the steps trained while
     * it was written: steps 9-16 again from it are the same */
    char cmd[9000], ck[4400];
    snprintf(cmd, sizeof cmd, "cp -r %s/hold %s/again", e.dir, e.dir);
    CU_ASSERT_FATAL(system(cmd) == 0);
    snprintf(ck, sizeof ck, "%s/again/ckpt-8.safetensors", e.dir);
    const char *const resume[] = {"--resume", ck, NULL};
    CU_ASSERT_EQUAL(run_to_end(&e, "again", resume), 0);
    int n = read_lines(&e, "again", l);
    CU_ASSERT_EQUAL(n, 16 + 8);
    CU_ASSERT_EQUAL(l[n - 1].step, 16u);
    check_same(l + 16, n - 16, ref, nref, 9);
    free(ref);
    free(l);
    env_free(&e);
}

static void test_trainer_restart(void)
{
    struct env *e = pipe_case_begin();
    char *data = pipe_make_dataset(e, "data", 10, 2, 5);
    struct line *ref = xcalloc(MAX_LINES, sizeof *ref), *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const args[] = {"--steps", "24", "--set", "run.ckpt_every=4", NULL};
    int nref = pipe_run(e, "ref", data, 1, args, NULL, ref);
    CU_ASSERT_EQUAL_FATAL(nref, 24);
    pid_t tr = start_trainer(e, "again", args);
    pipe_track(tr);
    CU_ASSERT(wait_text(e, "again/log", "work endpoint", 20));
    pid_t a = pipe_start_loader(e, "again-a", data, NULL, NULL);
    pid_t b = pipe_start_loader(e, "again-b", data, NULL, NULL);
    CU_ASSERT(wait_lines(e, "again", 9, 60));
    kill(tr, SIGKILL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 10), 128 + SIGKILL);
    /* the loaders keep running, waiting for a trainer on the address */
    sleep(1);
    CU_ASSERT(kill(a, 0) == 0 && kill(b, 0) == 0);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/again", e->dir);
    const char *const resume[] = {"--resume", dir, NULL};
    tr = start_trainer(e, "again", resume);
    pipe_track(tr);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    /* Each loader joined the first trainer; at least one rejoined the
     * second without being restarted, and neither exited. (Requiring
     * both was a race under load: one loader can serve the 16 resumed
     * steps before the other's reconnect comes round.) */
    CU_ASSERT(pipe_count_text(e, "again/log", "again-a joined") +
                  pipe_count_text(e, "again/log", "again-b joined") >=
              3);
    CU_ASSERT(kill(a, 0) == 0 && kill(b, 0) == 0);
    pipe_stop_loader(a);
    pipe_stop_loader(b);
    int n = read_lines(e, "again", l);
    CU_ASSERT(n > 0 && l[n - 1].step == 24u);
    check_same(l, n, ref, nref, 0);
    free(ref);
    free(l);
    free(data);
    pipe_case_end();
}

static void test_stopped_loader(void)
{
    struct env e;
    env_init(&e);
    struct line *ref = xcalloc(MAX_LINES, sizeof *ref), *l = xcalloc(MAX_LINES, sizeof *l);
    int nref = plain_run(&e, "ref", 1, "30", NULL, NULL, ref);
    CU_ASSERT_EQUAL_FATAL(nref, 30);
    const char *const args[] = {"--steps", "30", NULL};
    const char *const slow[] = {"--delay-ms", "40", NULL};
    pid_t tr = start_trainer(&e, "stop", args);
    pid_t a = start_loader(&e, "stop-a", slow);
    pid_t b = start_loader(&e, "stop-b", slow);
    CU_ASSERT(wait_lines(&e, "stop", 4, 30));
    kill(a, SIGSTOP);
    sleep(7);   /* past the 5 silent heartbeats */
    kill(a, SIGCONT);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    testing_wait_exit(a, 10);
    testing_wait_exit(b, 10);
    int n = read_lines(&e, "stop", l);
    CU_ASSERT_EQUAL(n, 30);
    check_same(l, n, ref, nref, 0);
    free(ref);
    free(l);
    env_free(&e);
}

/* What refuses a run does so before the run directory exists: a bad
 * --data and a busy port leave no directory and print no config; a second
 * trainer on a run directory in use is refused by its lock, and a fresh
 * run where checkpoints exist is refused with the --resume to use. */
static void test_early_refusals(void)
{
    struct env e;
    env_init(&e);
    const char *const nodata[] = {"--data", "/nonexistent/lejepa-data", NULL};
    pid_t tr = start_trainer(&e, "nodata", nodata);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 20), 2);
    CU_ASSERT(!file_exists(&e, "nodata"));
    char *out = read_text(&e, "nodata.out");
    CU_ASSERT(out && strstr(out, "/nonexistent/lejepa-data") != NULL);
    CU_ASSERT(out && strstr(out, "effective config") == NULL);
    free(out);

    const char *const longrun[] = {"--steps", "100000", "--set",
                                   "run.ckpt_every=2", NULL};
    pid_t first = start_trainer(&e, "first", longrun);
    pid_t a = start_loader(&e, "first-a", NULL);
    CU_ASSERT(wait_lines(&e, "first", 3, 30));
    /* a port in use: the test holds one (ipc:// endpoints are taken over,
     * not refused, so this one is tcp) */
    void *ctx = zmq_ctx_new(), *hold = zmq_socket(ctx, ZMQ_ROUTER);
    CU_ASSERT_FATAL(zmq_bind(hold, "tcp://127.0.0.1:*") == 0);
    char taken[256], set_taken[300];
    size_t len = sizeof taken;
    CU_ASSERT_FATAL(zmq_getsockopt(hold, ZMQ_LAST_ENDPOINT, taken, &len) == 0);
    snprintf(set_taken, sizeof set_taken, "run.endpoint=%s", taken);
    const char *const clash[] = {"--set", set_taken, NULL};
    pid_t busy = start_trainer(&e, "busy", clash);
    CU_ASSERT_EQUAL(testing_wait_exit(busy, 20), 2);
    CU_ASSERT(!file_exists(&e, "busy"));
    out = read_text(&e, "busy.out");
    CU_ASSERT(out && strstr(out, "cannot bind") != NULL);
    CU_ASSERT(out && strstr(out, "effective config") == NULL);
    free(out);
    zmq_close(hold);
    zmq_ctx_term(ctx);

    char w2[700], b2[700];
    snprintf(w2, sizeof w2, "run.endpoint=ipc://%s/w2", e.dir);
    snprintf(b2, sizeof b2, "run.broadcast=ipc://%s/b2", e.dir);
    /* the name "first" again while it runs, on other endpoints: its lock
     * refuses the twin (or, once a checkpoint exists, the early check) */
    const char *const twin[] = {"--name", "first", "--set", w2, "--set", b2,
                                NULL};
    pid_t t2 = start_trainer(&e, "twin", twin);
    CU_ASSERT_EQUAL(testing_wait_exit(t2, 20), 2);
    out = read_text(&e, "twin.out");
    CU_ASSERT(out && (strstr(out, "continue it with --resume") != NULL ||
                      strstr(out, "is in use by process") != NULL));
    free(out);
    kill(first, SIGINT);
    CU_ASSERT_EQUAL(testing_wait_exit(first, 30), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    /* a fresh run where checkpoints exist: refused, nothing touched */
    char *before = read_text(&e, "first/metrics.jsonl");
    pid_t t3 = start_trainer(&e, "again", twin);
    CU_ASSERT_EQUAL(testing_wait_exit(t3, 20), 2);
    out = read_text(&e, "again.out");
    CU_ASSERT(out && strstr(out, "continue it with --resume") != NULL);
    free(out);
    char *after = read_text(&e, "first/metrics.jsonl");
    CU_ASSERT(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
    env_free(&e);
}

/* Past limits.max_excluded (default 5%) of the training samples excluded
 * after decode failures, the run stops with a message that names the
 * limit, before training on what is left. */
static void test_excluded_share(void)
{
    struct env e;
    env_init(&e);
    const char *const fail[] = {"--fail-mod", "10", NULL};
    const char *const args[] = {"--steps", "20", NULL};
    pid_t tr = start_trainer(&e, "share", args);
    pid_t a = start_loader(&e, "share-a", fail);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 1);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    char *log = read_text(&e, "share/log");
    CU_ASSERT(strstr(log, "more than limits.max_excluded = 0.05") != NULL);
    CU_ASSERT(strstr(log, "done at step") == NULL);
    free(log);
    env_free(&e);
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"kill_points", test_kill_points},
        {"disk_full", test_disk_full},
        {"ckpt_hold", test_ckpt_hold},
        {"trainer_restart", test_trainer_restart},
        {"stopped_loader", test_stopped_loader},
        {"early_refusals", test_early_refusals},
        {"excluded_share", test_excluded_share},
        {NULL, NULL},
    };
    pipe_init();
    return testing_run_named("faults", all, argc, argv);
}
