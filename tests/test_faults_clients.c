/*
 * test_faults_clients.c: faults of the trainer's clients, injected at
 * seeded random moments into a live run (issue 12, the bounded form CI
 * runs; test_faults.c has the trainer's own). Each case states its
 * invariant above it. The seed comes from LEJEPA_FAULTS_SEED, else from the
 * clock, and is printed, so a failing moment can be chosen again (the
 * processes' own timing still varies from run to run).
 * - evaluator_killed: lejepa-eval killed with SIGKILL;
 * - evaluator_stopped: lejepa-eval stopped past the silence limit, then
 *   continued;
 * - loader_kill_stop: one of two real loaders stopped and continued, then
 *   killed;
 * - loader_oom: a real loader whose decode workers die at their memory
 *   limit on every sample, beside a healthy one.
 * It never waits for a duration to assert on it: every wait is for a
 * condition, with a generous timeout.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_pipeline_util.h"
#include "test_train_util.h"
#include "testing.h"
#include "util.h"

/* 3 x 24 training images, batch 8: 9 steps per epoch (test_pipeline.c's) */
#define PER_CLASS 24
#define VAL_PER_CLASS 4
#define DATA_SEED 20251125
/* How long a condition may take to show before the case fails. */
#define WAIT_S 30.0

/* The case's seed: LEJEPA_FAULTS_SEED, else the clock; printed. */
static uint64_t faults_seed(const char *name)
{
    const char *s = getenv("LEJEPA_FAULTS_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0)
                      : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    fprintf(stderr, "\n  %s: seed %llu (LEJEPA_FAULTS_SEED=%llu repeats it)\n",
            name, (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

/* A uniform integer in [lo, hi]. */
static int rand_between(uint64_t *rng, int lo, int hi)
{
    return lo + (int)(testing_rand_uniform(rng) * (hi - lo + 1));
}

/* The last step in the run's train lines; 0 before the first. */
static uint64_t last_step(const struct env *e, const char *name)
{
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    int n = read_lines(e, name, l);
    uint64_t step = n > 0 ? l[n - 1].step : 0;
    free(l);
    return step;
}

/* Waits until the run has logged step `step`. */
static int wait_step(const struct env *e, const char *name, uint64_t step,
                     double timeout)
{
    double t0 = util_time_mono();
    while (last_step(e, name) < step) {
        if (util_time_mono() - t0 > timeout)
            return 0;
        usleep(20000);
    }
    return 1;
}

/* Waits until the file holds one of two texts. */
static int wait_either(const struct env *e, const char *rel, const char *a,
                       const char *b, double timeout)
{
    double t0 = util_time_mono();
    for (;;) {
        char *text = read_text(e, rel);
        int found = strstr(text, a) || strstr(text, b);
        free(text);
        if (found)
            return 1;
        if (util_time_mono() - t0 > timeout)
            return 0;
        usleep(20000);
    }
}

/* Waits until the file holds needle at least n times. */
static int wait_count(const struct env *e, const char *rel, const char *needle,
                      int n, double timeout)
{
    double t0 = util_time_mono();
    while (pipe_count_text(e, rel, needle) < n) {
        if (util_time_mono() - t0 > timeout)
            return 0;
        usleep(20000);
    }
    return 1;
}

struct results {
    uint64_t after; /* only lines of a later step count */
    int n;
};

static void count_result(const struct json *j, void *ctx)
{
    struct results *r = ctx;
    double step = json_number(j, "step");
    r->n += !isnan(step) && step > (double)r->after;
}

/* metrics.jsonl lines of run `name` from `source` with a step > after. */
static int results_after(const struct env *e, const char *name,
                         const char *source, uint64_t after)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", e->dir, name);
    struct results r = {after, 0};
    metrics_each(path, source, count_result, &r);
    return r.n;
}

/* Waits until an evaluator has scored a snapshot taken after step `after`:
 * a knn and a linear RESULT of a later step in metrics.jsonl. */
static int wait_scored(const struct env *e, const char *name, uint64_t after,
                       double timeout)
{
    double t0 = util_time_mono();
    while (!results_after(e, name, "knn", after) ||
           !results_after(e, name, "linear", after)) {
        if (util_time_mono() - t0 > timeout)
            return 0;
        usleep(50000);
    }
    return 1;
}

/* After a failure, the tails of the case's logs (NULL-ended, relative to
 * e->dir) on stderr, to tell what the processes saw. */
static void dump_if_failed(const struct env *e, const char *const *rels)
{
    if (CU_get_number_of_failures() == 0)
        return;
    for (int i = 0; rels[i]; i++) {
        char *text = read_text(e, rels[i]);
        size_t len = strlen(text);
        fprintf(stderr, "---- %s (last 4000 bytes) ----\n%s\n", rels[i],
                text + (len > 4000 ? len - 4000 : 0));
        free(text);
    }
}

/* 1 while pid runs (it has not exited; a stopped process runs). */
static int running(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

/* A trainer that snapshots every few steps and runs until SIGINT, one fake
 * loader, and an evaluator named NAME-eval1, attached. */
static pid_t start_eval_run(const struct env *e, const char *name,
                            pid_t *loader, pid_t *eval)
{
    const char *const args[] = {"--steps", "1000000", "--set", "eval.every=5",
                                NULL};
    const char *const slow[] = {"--delay-ms", "10", NULL};
    const char *const tasks[] = {"--tasks", "knn,linear", NULL};
    char rel[300], who[300], lname[300];
    pid_t tr = start_trainer(e, name, args);
    pipe_track(tr);
    snprintf(rel, sizeof rel, "%s/log", name);
    CU_ASSERT_FATAL(wait_text(e, rel, "work endpoint", 20));
    snprintf(lname, sizeof lname, "%s-loader", name);
    *loader = start_loader(e, lname, slow);
    pipe_track(*loader);
    snprintf(who, sizeof who, "%s-eval1", name);
    *eval = pipe_start_evaluator(e, who, tasks);
    snprintf(who, sizeof who, "%s-eval1 joined", name);
    CU_ASSERT_FATAL(wait_text(e, rel, who, 20));
    return tr;
}

/* Ends an eval run: SIGINT to the trainer (exit 0), SIGTERM to the
 * evaluator still up (exit 0); the fake loader leaves on the BYE. */
static void end_eval_run(pid_t tr, pid_t loader, pid_t eval)
{
    CU_ASSERT_EQUAL(kill(tr, SIGINT), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(loader, 10), 0);
    CU_ASSERT_EQUAL(kill(eval, SIGTERM), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(eval, 15), 0);
}

/* Invariant: an evaluator killed (SIGKILL) at any moment, whether waiting
 * for a snapshot, receiving one or scoring it, costs the run nothing: the
 * trainer keeps training (its step count grows, it does not exit), removes
 * the evaluator from its clients (logged: connection closed or silence),
 * and an evaluator started afterwards attaches and scores a complete
 * snapshot (a knn and a linear RESULT of a later step, no incomplete one). */
static void test_evaluator_killed(void)
{
    struct env *e = pipe_case_begin();
    uint64_t rng = faults_seed("evaluator_killed");
    pid_t loader, ev;
    pid_t tr = start_eval_run(e, "ek", &loader, &ev);
    /* the first snapshot comes 2 s after the HELLO and takes about a
     * second to score: a moment in the first 4 s hits any phase */
    int ms = rand_between(&rng, 0, 4000);
    fprintf(stderr, "  SIGKILL to the evaluator %d ms after it joined\n", ms);
    usleep((useconds_t)ms * 1000);
    CU_ASSERT_EQUAL(kill(ev, SIGKILL), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(ev, 10), 128 + SIGKILL);
    uint64_t at = last_step(e, "ek");
    CU_ASSERT(wait_either(e, "ek/log", "ek-eval1 is gone",
                          "ek-eval1 silent for", WAIT_S));
    CU_ASSERT(wait_step(e, "ek", at + 20, WAIT_S));
    CU_ASSERT(running(tr));

    const char *const tasks[] = {"--tasks", "knn,linear", NULL};
    pid_t ev2 = pipe_start_evaluator(e, "ek-eval2", tasks);
    CU_ASSERT_FATAL(wait_text(e, "ek/log", "ek-eval2 joined", 20));
    uint64_t joined = last_step(e, "ek");
    CU_ASSERT(wait_scored(e, "ek", joined, WAIT_S));
    CU_ASSERT_EQUAL(results_after(e, "ek", "system", joined), 0);
    CU_ASSERT(pipe_count_text(e, "ek-eval2.out", "scoring snapshot") >= 1);
    CU_ASSERT(running(tr));
    end_eval_run(tr, loader, ev2);
    const char *const logs[] = {"ek/log", "ek-eval1.out", "ek-eval2.out", NULL};
    dump_if_failed(e, logs);
    pipe_case_end();
}

/* Invariant: training never waits on an evaluator that does not read. One
 * stopped (SIGSTOP) until the trainer has removed it for silence and has
 * trained on meanwhile, then continued (SIGCONT), says HELLO again on its
 * own and scores a snapshot taken after it came back. */
static void test_evaluator_stopped(void)
{
    struct env *e = pipe_case_begin();
    uint64_t rng = faults_seed("evaluator_stopped");
    pid_t loader, ev;
    pid_t tr = start_eval_run(e, "es", &loader, &ev);
    int ms = rand_between(&rng, 0, 4000);
    fprintf(stderr, "  SIGSTOP to the evaluator %d ms after it joined\n", ms);
    usleep((useconds_t)ms * 1000);
    CU_ASSERT_EQUAL(kill(ev, SIGSTOP), 0);
    uint64_t at = last_step(e, "es");
    /* stopped until both have shown, however long that takes */
    CU_ASSERT(wait_text(e, "es/log", "es-eval1 silent for", WAIT_S));
    CU_ASSERT(wait_step(e, "es", at + 20, WAIT_S));
    CU_ASSERT(running(tr));
    CU_ASSERT_EQUAL(pipe_count_text(e, "es/log", "es-eval1 joined"), 1);
    CU_ASSERT_EQUAL(kill(ev, SIGCONT), 0);

    CU_ASSERT(wait_count(e, "es/log", "es-eval1 joined", 2, WAIT_S));
    uint64_t back = last_step(e, "es");
    CU_ASSERT(wait_scored(e, "es", back, WAIT_S));
    CU_ASSERT(running(tr));
    end_eval_run(tr, loader, ev);
    const char *const logs[] = {"es/log", "es-eval1.out", NULL};
    dump_if_failed(e, logs);
    pipe_case_end();
}

/* Every step of a run trained its full batch: 8 samples, none excluded. */
static void check_full(const struct line *l, int n, int steps)
{
    CU_ASSERT_EQUAL(n, steps);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(l[i].step, (uint64_t)i + 1);
        CU_ASSERT_EQUAL(l[i].samples, 8);
        CU_ASSERT_EQUAL(l[i].failures, 0);
    }
}

/* A run of lejepa-train (args) with real loaders named NAME-a, NAME-b, ...
 * that stops by SIGINT once it has logged step `until` (or ends by itself
 * first); asserts exit 0 of all. Returns the train lines. */
static int run_until(const struct env *e, const char *name, const char *data,
                     int loaders, const char *const *args, uint64_t until,
                     struct line *out)
{
    char rel[300];
    pid_t tr = start_trainer(e, name, args);
    pipe_track(tr);
    snprintf(rel, sizeof rel, "%s/log", name);
    CU_ASSERT(wait_text(e, rel, "work endpoint", 20));
    pid_t ld[PIPE_MAX_LOADERS];
    for (int i = 0; i < loaders; i++) {
        char lname[128];
        snprintf(lname, sizeof lname, "%s-%c", name, 'a' + i);
        ld[i] = pipe_start_loader(e, lname, data, NULL, NULL);
    }
    CU_ASSERT(wait_step(e, name, until, RUN_TIMEOUT_S));
    kill(tr, SIGINT);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    for (int i = 0; i < loaders; i++)
        pipe_stop_loader(ld[i]);
    return read_lines(e, name, out);
}

/* Invariant: a loader stopped (SIGSTOP) for a random time, sometimes past
 * the silence limit, continued, then killed (SIGKILL), each at a random
 * step, while a second loader runs, costs no sample: every step trains its
 * full batch, none is excluded, and every step's batch hash and loss are
 * those of an undisturbed run of the same seed. The run stops by SIGINT
 * some steps after the kill, so its length follows the machine's speed;
 * the reference run has the same --steps (the lr schedule) and stops past
 * the same step. */
static void test_loader_kill_stop(void)
{
    struct env *e = pipe_case_begin();
    uint64_t rng = faults_seed("loader_kill_stop");
    char *data =
        pipe_make_dataset(e, "data", PER_CLASS, VAL_PER_CLASS, DATA_SEED);
    const char *const args[] = {"--steps", "2000", NULL};
    int stop_at = rand_between(&rng, 3, 40);
    int stop_ms = rand_between(&rng, 200, 7000);
    int kill_after = rand_between(&rng, 5, 60);
    fprintf(stderr,
            "  loader a stopped at step %d for %d ms, killed %d steps "
            "after it continued\n",
            stop_at, stop_ms, kill_after);
    pid_t tr = start_trainer(e, "ks", args);
    pipe_track(tr);
    CU_ASSERT_FATAL(wait_text(e, "ks/log", "work endpoint", 20));
    pid_t a = pipe_start_loader(e, "ks-a", data, NULL, NULL);
    pid_t b = pipe_start_loader(e, "ks-b", data, NULL, NULL);
    CU_ASSERT(wait_step(e, "ks", (uint64_t)stop_at, WAIT_S));
    CU_ASSERT_EQUAL(kill(a, SIGSTOP), 0);
    usleep((useconds_t)stop_ms * 1000);
    CU_ASSERT_EQUAL(kill(a, SIGCONT), 0);
    uint64_t kill_at = last_step(e, "ks") + (uint64_t)kill_after;
    CU_ASSERT(wait_step(e, "ks", kill_at, WAIT_S));
    CU_ASSERT(running(tr)); /* else the kill hit nothing */
    CU_ASSERT_EQUAL(kill(a, SIGKILL), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 5), 128 + SIGKILL);
    CU_ASSERT(wait_step(e, "ks", last_step(e, "ks") + 30, WAIT_S));
    kill(tr, SIGINT);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    pipe_stop_loader(b);
    struct line *l = xcalloc(MAX_LINES, sizeof *l),
                *ref = xcalloc(MAX_LINES, sizeof *ref);
    int n = read_lines(e, "ks", l);
    CU_ASSERT_FATAL(n > 0);
    check_full(l, n, (int)l[n - 1].step);
    int nr = run_until(e, "ks-ref", data, 1, args, l[n - 1].step, ref);
    CU_ASSERT(nr >= n);
    check_same(l, n, ref, nr, 0);
    const char *const logs[] = {"ks/log", "ks-a.out", "ks-b.out", NULL};
    dump_if_failed(e, logs);
    free(l);
    free(ref);
    free(data);
    pipe_case_end();
}

/* Invariant: a loader whose decode workers die at their memory limit on
 * every sample (--worker-memory-mb and the workers' allocation hook: each
 * training sample asks for 1 GiB, glib aborts) excludes nothing: its
 * failures are the environment's (PROTOCOL.md: retried elsewhere, never
 * excluded), the run goes on to its last step with the healthy loader
 * started beside it, and the failing loader counts and logs its workers'
 * deaths. The failing loader starts alone, so that the trainer certainly
 * takes some of its answers (beside a fast loader, all of them come after
 * the other's copies); the healthy one joins once it has. */
static void test_loader_oom(void)
{
    struct env *e = pipe_case_begin();
    char *data =
        pipe_make_dataset(e, "data", PER_CLASS, VAL_PER_CLASS, DATA_SEED);
    const char *const args[] = {"--steps", "60", NULL};
    const char *const small[] = {"--worker-memory-mb", "512", NULL};
    pid_t tr = start_trainer(e, "oom", args);
    pipe_track(tr);
    CU_ASSERT_FATAL(wait_text(e, "oom/log", "work endpoint", 20));
    pid_t a = pipe_start_loader(e, "oom-a", data, small,
                                "LEJEPA_LOADER_FAULT=alloc:/train/");
    CU_ASSERT(wait_text(e, "oom/log", "oom-a could not load", WAIT_S));
    pid_t b = pipe_start_loader(e, "oom-b", data, NULL, NULL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    pipe_stop_loader(a);
    pipe_stop_loader(b);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    int n = read_lines(e, "oom", l);
    CU_ASSERT_EQUAL(n, 60);
    for (int i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(l[i].step, (uint64_t)i + 1);
        CU_ASSERT_EQUAL(l[i].failures, 0);
    }
    char *log = read_text(e, "oom/log");
    CU_ASSERT(strstr(log, "excluded from epoch") == NULL);
    CU_ASSERT(strstr(log, "done at step 60 of 60") != NULL);
    free(log);
    int deaths = pipe_count_text(e, "oom-a.out",
                                 "worker memory limit 512 MB) on sample");
    fprintf(stderr, "  oom-a: %d decode workers died at their memory limit\n",
            deaths);
    CU_ASSERT(deaths >= 3);
    /* its exit line counts them among its failures (those of tickets it
     * still held: a death for a ticket taken back meanwhile is only
     * logged) */
    char *out = read_text(e, "oom-a.out");
    const char *said = strstr(out, " samples, ");
    long failures = said ? strtol(said + 10, NULL, 10) : -1;
    CU_ASSERT(failures > 0 && failures <= deaths);
    free(out);
    const char *const logs[] = {"oom/log", "oom-a.out", "oom-b.out", NULL};
    dump_if_failed(e, logs);
    free(l);
    free(data);
    pipe_case_end();
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"evaluator_killed", test_evaluator_killed},
        {"evaluator_stopped", test_evaluator_stopped},
        {"loader_kill_stop", test_loader_kill_stop},
        {"loader_oom", test_loader_oom},
        {NULL, NULL},
    };
    return pipe_main("faults_clients", all, argc, argv);
}
