/*
 * test_attack.c: issue 11's attacks on a live lejepa-train, one case per
 * row (argv[1] names it; meson runs each as attack_<name>). The trainer
 * runs the tiny model of test_train.c over ipc:// sockets with honest
 * tests/fake_loader loaders; the attacker is a DEALER of the test's own
 * (test_attack_util.c) or a fake_loader with an attack option. What must
 * hold under each: the trainer stays up, keeps stepping and welcoming new
 * clients, its VmRSS grows by less than 64 MB, and the attack is counted
 * in the train lines' metrics (bad_messages, refused, clients_dropped,
 * tickets_expired, failures, results_limited). Waits are bounded waits for
 * conditions; nothing asserts how fast anything is.
 */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "msg.h"
#include "testing.h"
#include "test_attack_util.h"
#include "util.h"

/* Train lines every 10 steps: a long attack leaves a short file. */
static const char *const sparse_log[] = {"--set", "run.log_every=10", NULL};
/* limits.result_bytes raised past a history page, so a line over 128 KiB
 * reaches the file and HISTORY must page past it (row 9). */
static const char *const sparse_big[] = {"--set", "run.log_every=10", "--set",
                                         "limits.result_bytes=262144", NULL};

/* A counter of the latest train line; 0 when absent (NAN fails the
 * comparisons that need it present, so callers test isnan themselves). */
static double counter(const struct env *e, const char *name, const char *key)
{
    return train_last(e, name, key, NULL);
}

/* Sum of counters; a missing one counts 0, all missing gives NAN. */
static double counters(const struct env *e, const char *name,
                       const char *const *keys)
{
    double sum = NAN;
    for (int i = 0; keys[i]; i++) {
        double v = counter(e, name, keys[i]);
        if (!isnan(v))
            sum = isnan(sum) ? v : sum + v;
    }
    return sum;
}

/* The counters an attack that is not malformed may land in. */
static const char *const dropped_or_refused[] = {"clients_dropped", "refused",
                                                 "bad_messages", NULL};

/* Asserts that the counters grew past `before` (a NAN before counts 0). */
static void check_counted(const struct env *e, const char *name,
                          const char *const *keys, double before)
{
    double after = counters(e, name, keys);
    fprintf(stderr, "  attack counters: %g before, %g after\n", before, after);
    CU_ASSERT(!isnan(after) && after > (isnan(before) ? 0 : before));
}

static void count_one(const struct json *j, void *ctx)
{
    (void)j;
    (*(int *)ctx)++;
}

/* Lines of the run's metrics.jsonl with the given source. */
static int source_lines(const struct env *e, const char *name, const char *source)
{
    char path[4200];
    int n = 0;
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", e->dir, name);
    metrics_each(path, source, count_one, &n);
    return n;
}

/* Row 1: an evaluator's RESULT with time 1e300 and no values (its line's
 * head alone is longer than the buffer sized from the values). */
static void test_result_time(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    pid_t tr = start_target(&e, "rt", sparse_log);
    pid_t ld = start_loader(&e, "rt-loader", NULL);
    CU_ASSERT_FATAL(wait_step(&e, "rt", 10, 30));
    const char *const counted[] = {"bad_messages", "refused", "results_limited", NULL};
    double before = counters(&e, "rt", counted);
    void *s = attack_dealer(&a, e.work, "rt-eval", 0);
    CU_ASSERT_FATAL(attack_hello(s, MSG_ROLE_EVALUATOR, "rt-eval", 0) == 0);
    CU_ASSERT_FATAL(attack_expect(&a, s, MSG_KIND_WELCOME, 10000));
    CU_ASSERT(attack_result(s, MSG_SOURCE_KNN, 1e300, 1, "", 0, 0, 0) == 0);
    CU_ASSERT(attack_result(s, MSG_SOURCE_KNN, -1e300, 1, "", 0, 0, 0) == 0);
    int ok = check_serving(&a, &e, "rt", tr, 20);
    /* written as valid JSON (every line parses), or refused and counted */
    int knn = source_lines(&e, "rt", "knn");
    fprintf(stderr, "\n  %d of the 2 RESULTs written\n", knn);
    if (knn != 2)
        check_counted(&e, "rt", counted, before);
    zmq_close(s);
    pid_t lds[] = {ld, 0};
    end_target(ok, tr, lds);
    attacker_free(&a);
    env_free(&e);
}

/* Row 2: 20,000 HELLOs from one socket that never reads its WELCOMEs. */
static void test_hello_flood(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    pid_t tr = start_target(&e, "hf", sparse_log);
    pid_t ld = start_loader(&e, "hf-loader", NULL);
    CU_ASSERT_FATAL(wait_step(&e, "hf", 10, 30));
    long rss0 = proc_rss_kb(tr);
    double before = counters(&e, "hf", dropped_or_refused);
    void *s = attack_dealer(&a, e.work, "hf-flood", 1);
    int sent = 0, stuck = 0;
    while (sent < 20000 && stuck < 10) {
        if (attack_hello(s, MSG_ROLE_MONITOR, "hf-flood", 0) == 0) {
            sent++;
            stuck = 0;
        } else {
            stuck++;
        }
    }
    fprintf(stderr, "\n  sent %d HELLOs (%d sends timed out at the end)\n", sent, stuck);
    int ok = check_serving(&a, &e, "hf", tr, 20);
    long rss1 = proc_rss_kb(tr);
    fprintf(stderr, "  trainer VmRSS %ld kB before, %ld kB after\n", rss0, rss1);
    CU_ASSERT(rss1 > 0 && rss1 - rss0 < ATTACK_RSS_BOUND_KB);
    check_counted(&e, "hf", dropped_or_refused, before);
    pid_t lds[] = {ld, 0};
    end_target(ok, tr, lds);
    zmq_close(s);
    attacker_free(&a);
    env_free(&e);
}

/* Row 3: without --data the first loader's HELLO sizes the run: one that
 * claims 2^62 training samples, then one with fewer than a batch, are
 * refused; an honest loader then trains. (One class, or none, is a valid
 * dataset since unlabelled data trains without the probe.) */
static void test_dataset_claims(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    pid_t tr = start_target(&e, "dc", sparse_log);
    const char *const huge[] = {"--n-train", "4611686018427387904", NULL};
    const char *const tiny[] = {"--n-train", "1", NULL};
    const char *const *claims[] = {huge, tiny};
    const char *names[] = {"dc-huge", "dc-tiny"};
    bool up = true;
    for (int i = 0; i < 2 && up; i++) {
        pid_t bad = start_loader(&e, names[i], claims[i]);
        int rc = testing_wait_exit(bad, 25);
        CU_ASSERT_EQUAL(rc, 3);   /* fake_loader's exit after a REFUSE */
        up = proc_alive(tr);
        CU_ASSERT(up);
        if (rc != 3 || !up)
            fprintf(stderr, "\n  %s: loader exit %d, trainer %s\n", names[i], rc,
                    up ? "up" : "gone");
        char rel[300];
        snprintf(rel, sizeof rel, "%s.out", names[i]);
        char *out = read_text(&e, rel);
        CU_ASSERT(strstr(out, "refused") != NULL);
        free(out);
    }
    if (!up) {
        int rc = testing_wait_exit(tr, 5);
        fprintf(stderr, "  the trainer's exit status: %d\n", rc);
        attacker_free(&a);
        env_free(&e);
        return;
    }
    pid_t ld = start_loader(&e, "dc-loader", NULL);
    CU_ASSERT(wait_step(&e, "dc", 20, 30));
    int ok = check_serving(&a, &e, "dc", tr, 10);
    double refused = counter(&e, "dc", "refused");
    fprintf(stderr, "\n  refused %g\n", refused);
    CU_ASSERT(!isnan(refused) && refused >= 2);
    char *log = read_text(&e, "dc/log");
    CU_ASSERT(strstr(log, "dc-loader joined") != NULL);
    free(log);
    pid_t lds[] = {ld, 0};
    end_target(ok, tr, lds);
    attacker_free(&a);
    env_free(&e);
}

#define DEAF_SOCKETS 6
#define DEAF_REQUESTS 1500

/* Row 4: HISTORY requests from 6 sockets that never read the replies. */
static void test_history_flood(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    /* a train line per step: the history soon fills 128 KiB pages */
    pid_t tr = start_target(&e, "hi", NULL);
    pid_t ld = start_loader(&e, "hi-loader", NULL);
    CU_ASSERT_FATAL(wait_metrics_bytes(&e, "hi", 300 << 10, 40));
    long rss0 = proc_rss_kb(tr);
    double before = counters(&e, "hi", dropped_or_refused);
    void *deaf[DEAF_SOCKETS];
    for (int k = 0; k < DEAF_SOCKETS; k++) {
        char id[32];
        snprintf(id, sizeof id, "hi-deaf-%d", k);
        deaf[k] = attack_dealer(&a, e.work, id, 1);
    }
    struct msg h = {.kind = MSG_KIND_HISTORY};
    h.history = (struct msg_history){.start = 0};
    int sent = 0;
    for (int i = 0; i < DEAF_REQUESTS; i++)
        for (int k = 0; k < DEAF_SOCKETS; k++)
            sent += attack_send(deaf[k], &h, ZMQ_DONTWAIT) == 0;
    fprintf(stderr, "\n  sent %d HISTORY requests\n", sent);
    /* the trainer's memory while it works through them */
    long peak = rss0;
    for (int i = 0; i < 100 && proc_alive(tr); i++) {
        long r = proc_rss_kb(tr);
        peak = r > peak ? r : peak;
        usleep(100000);
    }
    int ok = check_serving(&a, &e, "hi", tr, 20);
    long r = proc_rss_kb(tr);
    peak = r > peak ? r : peak;
    fprintf(stderr, "  trainer VmRSS %ld kB before, peak %ld kB\n", rss0, peak);
    CU_ASSERT(peak - rss0 < ATTACK_RSS_BOUND_KB);
    check_counted(&e, "hi", dropped_or_refused, before);
    for (int k = 0; k < DEAF_SOCKETS; k++)
        zmq_close(deaf[k]);
    pid_t lds[] = {ld, 0};
    end_target(ok, tr, lds);
    attacker_free(&a);
    env_free(&e);
}

/* Row 5: an evaluator that says HELLO again every 1.5 s: snapshots (every
 * 4 steps) still complete while it does. */
static void test_eval_rehello(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    const char *const args[] = {"--set", "eval.every=4", "--set", "eval.train_subset=8",
                                "--set", "eval.chunk=8", "--set", "run.log_every=4",
                                NULL};
    pid_t tr = start_target(&e, "rh", args);
    pid_t ld = start_loader(&e, "rh-loader", NULL);
    CU_ASSERT_FATAL(wait_text(&e, "rh/metrics.jsonl", "\"source\":\"eval\"", 30));
    void *s = attack_dealer(&a, e.work, "rh-eval", 0);
    int base = source_lines(&e, "rh", "eval"), now = base, hellos = 0;
    double t0 = util_time_mono(), last = 0;
    while (now < base + 3 && util_time_mono() - t0 < 30 && proc_alive(tr)) {
        if (util_time_mono() - last >= 1.5) {
            CU_ASSERT(attack_hello(s, MSG_ROLE_EVALUATOR, "rh-eval", 0) == 0);
            hellos++;
            last = util_time_mono();
        }
        attack_drain(s);
        usleep(100000);
        now = source_lines(&e, "rh", "eval");
    }
    fprintf(stderr, "\n  %d HELLOs: eval lines %d before, %d after\n", hellos, base, now);
    CU_ASSERT(now >= base + 3);
    int ok = check_serving(&a, &e, "rh", tr, 4);
    zmq_close(s);
    pid_t lds[] = {ld, 0};
    end_target(ok, tr, lds);
    attacker_free(&a);
    env_free(&e);
}

/* Row 6: a loader that heartbeats but never answers its tickets; an honest
 * one carries the run. */
static void test_never_answer(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    pid_t tr = start_target(&e, "na", sparse_log);
    const char *const mute[] = {"--never-answer", NULL};
    pid_t bad = start_loader(&e, "na-mute", mute);
    CU_ASSERT(wait_text(&e, "na/log", "na-mute joined", 20));
    pid_t ld = start_loader(&e, "na-loader", NULL);
    int stepped = wait_step(&e, "na", 40, 45);
    CU_ASSERT(stepped);
    uint64_t step;
    /* the mute loader's tickets go to the other by a second copy (hedged)
     * or once their deadline passes (expired): either way it is counted */
    double expired = train_last(&e, "na", "tickets_expired", &step);
    double hedged = train_last(&e, "na", "tickets_hedged", &step);
    fprintf(stderr, "\n  step %" PRIu64 ", tickets_expired %g, tickets_hedged %g\n",
            step, expired, hedged);
    CU_ASSERT(!isnan(expired) && !isnan(hedged) && expired + hedged > 0);
    CU_ASSERT(proc_alive(tr));
    pid_t lds[] = {ld, bad, 0};
    stop_target(tr, lds);
    attacker_free(&a);
    env_free(&e);
}

static void no_failures(const struct json *j, void *ctx)
{
    double f = json_number(j, "failures");
    CU_ASSERT_EQUAL(f, 0);
    (*(int *)ctx) += f != 0;
}

/* Row 7: a loader reports every sample as an env failure (its situation,
 * not the file): none is excluded while another loader serves them. */
static void test_env_failures(void)
{
    struct env e;
    env_init(&e);
    const char *const args[] = {"--steps", "12", NULL};
    const char *const env_fail[] = {"--fail-mod", "1", "--fail-class", "env", NULL};
    pid_t tr = start_trainer(&e, "ef", args);
    CU_ASSERT_FATAL(wait_text(&e, "ef/log", "work endpoint", 20));
    pid_t bad = start_loader(&e, "ef-env", env_fail);
    pid_t ld = start_loader(&e, "ef-loader", NULL);
    int rc = testing_wait_exit(tr, RUN_TIMEOUT_S);
    CU_ASSERT_EQUAL(rc, 0);
    int brc = testing_wait_exit(bad, 10);
    fprintf(stderr, "\n  the env-failing loader's exit: %d\n", brc);
    char *said = read_text(&e, "ef-env.out");
    fprintf(stderr, "  it said: %.300s\n", said);
    free(said);
    /* dropped by the trainer for its failures, it exits on the silence */
    CU_ASSERT(brc == 0 || brc == 5);
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/ef/metrics.jsonl", e.dir);
    int with_failures = 0;
    int n = metrics_each(path, "train", no_failures, &with_failures);
    CU_ASSERT_EQUAL(n, 12);
    fprintf(stderr, "\n  %d of %d train lines with failures > 0\n", with_failures, n);
    char *log = read_text(&e, "ef/log");
    CU_ASSERT(strstr(log, "excluded from epoch") == NULL);
    free(log);
    env_free(&e);
}

/* Row 8: RESULT from a loader and from a monitor is refused and counted; a
 * flood of RESULTs from an evaluator (10 s at 1000/s, ~1.2 KB lines) adds
 * less than 1 MB to metrics.jsonl and is counted as results_limited. */
static void test_result_abuse(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    pid_t tr = start_target(&e, "ra", sparse_log);
    pid_t ld = start_loader(&e, "ra-loader", NULL);
    CU_ASSERT_FATAL(wait_step(&e, "ra", 10, 30));
    void *lo = attack_dealer(&a, e.work, "ra-fake-loader", 0);
    void *mo = attack_dealer(&a, e.work, "ra-monitor", 0);
    CU_ASSERT(attack_hello(lo, MSG_ROLE_LOADER, "ra-fake-loader", 0) == 0);
    CU_ASSERT(attack_hello(mo, MSG_ROLE_MONITOR, "ra-monitor", 0) == 0);
    CU_ASSERT(attack_expect(&a, lo, MSG_KIND_WELCOME, 10000));
    CU_ASSERT(attack_expect(&a, mo, MSG_KIND_WELCOME, 10000));
    CU_ASSERT(attack_result(lo, MSG_SOURCE_KNN, 1.0, 1, "forged_by_loader_", 1, 20, 0) == 0);
    CU_ASSERT(attack_result(mo, MSG_SOURCE_KNN, 1.0, 1, "forged_by_monitor", 1, 20, 0) == 0);
    uint64_t step;
    train_last(&e, "ra", NULL, &step);
    CU_ASSERT(wait_step(&e, "ra", step + 20, 20));
    double refused = counter(&e, "ra", "refused");
    fprintf(stderr, "\n  refused %g after a loader's and a monitor's RESULT\n", refused);
    CU_ASSERT(!isnan(refused) && refused >= 2);
    CU_ASSERT_EQUAL(metrics_bytes_with(&e, "ra", "forged_by_"), 0);
    zmq_close(lo);
    zmq_close(mo);

    void *ev = attack_dealer(&a, e.work, "ra-eval", 0);
    CU_ASSERT(attack_hello(ev, MSG_ROLE_EVALUATOR, "ra-eval", 0) == 0);
    CU_ASSERT(attack_expect(&a, ev, MSG_KIND_WELCOME, 10000));
    /* an evaluator's system notes go in under eval_* keys only */
    CU_ASSERT(attack_result(ev, MSG_SOURCE_SYSTEM, 1.0, 1, "eval_note_", 1, 20, 0) == 0);
    CU_ASSERT(attack_result(ev, MSG_SOURCE_SYSTEM, 1.0, 1, "sys_forged_", 1, 20, 0) == 0);
    CU_ASSERT(wait_text(&e, "ra/metrics.jsonl", "eval_note_", 10));
    CU_ASSERT_EQUAL(metrics_bytes_with(&e, "ra", "sys_forged_"), 0);
    int sent = 0;
    double t0 = util_time_mono();
    for (int tick = 0; tick < 1000 && proc_alive(tr); tick++) {
        for (int k = 0; k < 10; k++)
            sent += attack_result(ev, MSG_SOURCE_KNN, util_time_unix(), 1, "flood_", 10,
                                  100, ZMQ_DONTWAIT) == 0;
        attack_drain(ev);
        double next = t0 + 0.01 * (tick + 1), now = util_time_mono();
        if (next > now)
            usleep((useconds_t)((next - now) * 1e6));
    }
    int ok = check_serving(&a, &e, "ra", tr, 20);
    long flood = metrics_bytes_with(&e, "ra", "flood_");
    double limited = counter(&e, "ra", "results_limited");
    fprintf(stderr, "  %d flood RESULTs sent: %ld bytes of metrics.jsonl, "
            "results_limited %g\n", sent, flood, limited);
    CU_ASSERT(flood < (1 << 20));
    CU_ASSERT(!isnan(limited) && limited > 0);
    zmq_close(ev);

    /* the same flood on a fresh connection every 100 ms (a new routing id
     * and HELLO each time): the budget is the sender's, not the
     * connection's, so 50 x 100 RESULTs still add less than 1 MB */
    int again = 0;
    for (int k = 0; k < 50 && proc_alive(tr); k++) {
        char id[32];
        snprintf(id, sizeof id, "ra-eval-%d", k);
        void *s = attack_dealer(&a, e.work, id, 0);
        CU_ASSERT(attack_hello(s, MSG_ROLE_EVALUATOR, id, 0) == 0);
        CU_ASSERT(attack_expect(&a, s, MSG_KIND_WELCOME, 10000));
        for (int i = 0; i < 100; i++)
            again += attack_result(s, MSG_SOURCE_KNN, util_time_unix(), 1, "again_", 10,
                                   100, ZMQ_DONTWAIT) == 0;
        usleep(100000);
        zmq_close(s);
    }
    long again_bytes = metrics_bytes_with(&e, "ra", "again_");
    fprintf(stderr, "  %d RESULTs over 50 connections: %ld bytes of metrics.jsonl\n",
            again, again_bytes);
    CU_ASSERT(again_bytes < (1 << 20));
    pid_t lds[] = {ld, 0};
    end_target(ok, tr, lds);
    attacker_free(&a);
    env_free(&e);
}

/* Row 9: one RESULT whose metrics line is ~150 KB, over a history page's
 * 128 KiB: a monitor attaching later still gets the whole history, every
 * reply with lines until the one that says done. */
static void test_big_result(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    pid_t tr = start_target(&e, "br", sparse_big);
    pid_t ld = start_loader(&e, "br-loader", NULL);
    CU_ASSERT_FATAL(wait_step(&e, "br", 10, 30));
    void *ev = attack_dealer(&a, e.work, "br-eval", 0);
    CU_ASSERT(attack_hello(ev, MSG_ROLE_EVALUATOR, "br-eval", 0) == 0);
    CU_ASSERT(attack_expect(&a, ev, MSG_KIND_WELCOME, 10000));
    CU_ASSERT(attack_result(ev, MSG_SOURCE_KNN, util_time_unix(), 5, "big_", 150, 1000,
                            0) == 0);
    uint64_t at;
    train_last(&e, "br", NULL, &at);
    /* lines after the big one */
    CU_ASSERT(wait_step(&e, "br", at + 30, 20));
    uint64_t want;
    train_last(&e, "br", NULL, &want);
    fprintf(stderr, "\n  RESULT sent near step %" PRIu64 ", history wanted through "
            "step %" PRIu64 "; big line in the file: %ld bytes\n",
            at, want, metrics_bytes_with(&e, "br", "big_000_"));

    void *mo = attack_dealer(&a, e.work, "br-monitor", 0);
    CU_ASSERT(attack_hello(mo, MSG_ROLE_MONITOR, "br-monitor", 0) == 0);
    CU_ASSERT(attack_expect(&a, mo, MSG_KIND_WELCOME, 10000));
    int rcvtimeo = 10000;
    CU_ASSERT(zmq_setsockopt(mo, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo) == 0);
    uint64_t start = 0, seen_step = 0;
    int pages = 0, done = 0, empty = 0;
    while (!done && pages < 500) {
        struct msg h = {.kind = MSG_KIND_HISTORY};
        h.history = (struct msg_history){.start = start};
        CU_ASSERT_FATAL(attack_send(mo, &h, 0) == 0);
        zmq_msg_t frame;
        struct msg r;
        char err[ERR_LEN];
        int rc;
        /* heartbeats and the like may come first */
        while ((rc = msg_recv(mo, 0, &frame, &r, &a.lim, &a.arena, err)) == 0 &&
               r.kind != MSG_KIND_HISTORY)
            zmq_msg_close(&frame);
        CU_ASSERT(rc == 0);
        if (rc != 0) {
            fprintf(stderr, "  no HISTORY reply for start %" PRIu64 ": %s\n", start, err);
            zmq_msg_close(&frame);
            break;
        }
        CU_ASSERT_EQUAL(r.history.start, start);
        for (uint32_t i = 0; i < r.history.n_lines; i++) {
            struct json *j = json_parse(r.history.lines[i], strlen(r.history.lines[i]),
                                        8, err);
            CU_ASSERT(j != NULL);
            const struct json *src = j ? json_get(j, "source") : NULL;
            double st = j ? json_number(j, "step") : NAN;
            if (src && src->type == JSON_STRING && strcmp(src->string, "train") == 0 &&
                !isnan(st) && (uint64_t)st > seen_step)
                seen_step = (uint64_t)st;
            json_free(j);
        }
        start += r.history.n_lines;
        done = r.history.done;
        empty = r.history.n_lines == 0 && !done;
        pages++;
        zmq_msg_close(&frame);
        if (empty) {
            fprintf(stderr, "  an empty page at line %" PRIu64 " that is not done\n",
                    start);
            break;
        }
    }
    fprintf(stderr, "  %d pages, %" PRIu64 " lines, done %d, last train step %" PRIu64
            "\n", pages, start, done, seen_step);
    CU_ASSERT(!empty);
    CU_ASSERT(done);
    CU_ASSERT(seen_step >= want);
    int ok = check_serving(&a, &e, "br", tr, 10);
    zmq_close(mo);
    zmq_close(ev);
    pid_t lds[] = {ld, 0};
    end_target(ok, tr, lds);
    attacker_free(&a);
    env_free(&e);
}

/* The files of a run that a second trainer must leave alone. */
static const char *const run_files[] = {"config.ini", "log", "metrics.jsonl", "latest",
                                        "ckpt-6.safetensors", NULL};

static void read_run_files(const struct env *e, const char *name, char **out)
{
    for (int i = 0; run_files[i]; i++) {
        char rel[300];
        snprintf(rel, sizeof rel, "%s/%s", name, run_files[i]);
        out[i] = read_text(e, rel);
    }
}

static void check_run_files(const struct env *e, const char *name, char **before)
{
    char *after[8];
    read_run_files(e, name, after);
    for (int i = 0; run_files[i]; i++) {
        int same = strcmp(before[i], after[i]) == 0;
        CU_ASSERT(same);
        if (!same)
            fprintf(stderr, "  %s/%s changed\n", name, run_files[i]);
        free(before[i]);
        free(after[i]);
    }
}

/* A second fresh trainer on the run's directory: exits non-zero, says why
 * and what to do, touches nothing. */
static void second_fresh(const struct env *e, const char *name, const char *out,
                         const char *const *want_any)
{
    char *before[8];
    read_run_files(e, name, before);
    /* its own sockets: failing to bind is not the point */
    struct env e2 = *e;
    snprintf(e2.work, sizeof e2.work, "ipc://%s/work-%s", e->dir, out);
    snprintf(e2.bcast, sizeof e2.bcast, "ipc://%s/bcast-%s", e->dir, out);
    const char *const args[] = {"--name", name, "--steps", "6", NULL};
    pid_t tr = start_trainer(&e2, out, args);
    int rc = testing_wait_exit(tr, 15);
    fprintf(stderr, "\n  second trainer on %s: exit %d\n", name, rc);
    CU_ASSERT(rc > 0 && rc < 128);
    char rel[300];
    snprintf(rel, sizeof rel, "%s.out", out);
    char *said = read_text(e, rel);
    int says = 0;
    for (int i = 0; want_any[i]; i++)
        says |= strstr(said, want_any[i]) != NULL;
    CU_ASSERT(says);
    CU_ASSERT(strstr(said, name) != NULL);
    if (!says)
        fprintf(stderr, "  it said: %.500s\n", said);
    free(said);
    check_run_files(e, name, before);
}

/* Row 10: a fresh run with a --name (and --out) already used: while the
 * first trainer runs, and after it finished with checkpoints. */
static void test_run_dir_reuse(void)
{
    struct env e;
    env_init(&e);
    const char *const in_use[] = {"in use", "--resume", NULL};
    const char *const finished[] = {"--resume", NULL};
    pid_t tr = start_target(&e, "live", NULL);
    /* the first trainer's last write before it waits for loaders */
    CU_ASSERT_FATAL(wait_text(&e, "live/config.ini", "[run]", 20));
    second_fresh(&e, "live", "live-again", in_use);
    CU_ASSERT(proc_alive(tr));
    stop_target(tr, NULL);

    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    CU_ASSERT_EQUAL_FATAL(plain_run(&e, "done", 1, "6", NULL, NULL, l), 6);
    CU_ASSERT(file_exists(&e, "done/ckpt-6.safetensors"));
    second_fresh(&e, "done", "done-again", finished);
    free(l);
    env_free(&e);
}

/* Row 11's snapshots as an honest subscriber receives them. */
#define SNAP_MAX 160
#define SEQ_MAX 64

struct honest {
    void *sub;
    struct attacker *a;
    int n;
    uint64_t id[SNAP_MAX];
    int ended[SNAP_MAX], chunks[SNAP_MAX];
    uint8_t seen[SNAP_MAX][SEQ_MAX];
};

static void honest_read(void *ctx)
{
    struct honest *h = ctx;
    for (int k = 0; k < 200; k++) {
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        if (msg_recv_sub(h->sub, ZMQ_DONTWAIT, &frame, &m, &h->a->lim, &h->a->arena,
                         err) != 0) {
            zmq_msg_close(&frame);
            usleep(2000);
            return;
        }
        if (m.kind == MSG_KIND_EMBED) {
            int i = 0;
            while (i < h->n && h->id[i] != m.embed.snapshot)
                i++;
            if (i == h->n && h->n < SNAP_MAX)
                h->id[h->n++] = m.embed.snapshot;
            if (i < h->n) {
                if (m.embed.end) {
                    h->ended[i]++;
                    h->chunks[i] = (int)m.embed.chunks;
                } else if (m.embed.seq < SEQ_MAX) {
                    h->seen[i][m.embed.seq]++;
                }
            }
        }
        zmq_msg_close(&frame);
    }
}

/* Row 11: a subscriber on the broadcast port that never reads; an honest
 * one that reads gets every snapshot whole. */
static void test_deaf_subscriber(void)
{
    struct env e;
    struct attacker a;
    env_init(&e);
    attacker_init(&a);
    const char *const args[] = {
        "--steps", "150", "--set", "eval.every=1", "--set", "eval.train_subset=20",
        "--set", "eval.val_limit=8", "--set", "eval.chunk=1", NULL,
    };
    pid_t tr = start_trainer(&e, "ds", args);
    CU_ASSERT_FATAL(wait_text(&e, "ds/log", "work endpoint", 20));
    void *deaf = zmq_socket(a.ctx, ZMQ_SUB);
    int one = 1, small = 4096, zero = 0, big = 1000000;
    CU_ASSERT(zmq_setsockopt(deaf, ZMQ_RCVHWM, &one, sizeof one) == 0);
    CU_ASSERT(zmq_setsockopt(deaf, ZMQ_RCVBUF, &small, sizeof small) == 0);
    CU_ASSERT(zmq_setsockopt(deaf, ZMQ_LINGER, &zero, sizeof zero) == 0);
    CU_ASSERT(zmq_setsockopt(deaf, ZMQ_SUBSCRIBE, "", 0) == 0);
    CU_ASSERT_FATAL(zmq_connect(deaf, e.bcast) == 0);
    struct honest *h = xcalloc(1, sizeof *h);
    h->a = &a;
    h->sub = zmq_socket(a.ctx, ZMQ_SUB);
    CU_ASSERT(zmq_setsockopt(h->sub, ZMQ_RCVHWM, &big, sizeof big) == 0);
    CU_ASSERT(zmq_setsockopt(h->sub, ZMQ_LINGER, &zero, sizeof zero) == 0);
    CU_ASSERT(zmq_setsockopt(h->sub, ZMQ_SUBSCRIBE, "EMBED", 5) == 0);
    CU_ASSERT_FATAL(zmq_connect(h->sub, e.bcast) == 0);
    usleep(300000);   /* both subscriptions reach the trainer first */
    pid_t ld = start_loader(&e, "ds-loader", NULL);
    CU_ASSERT_EQUAL(testing_wait_idle(tr, RUN_TIMEOUT_S, honest_read, h), 0);
    for (int i = 0; i < 50; i++)
        honest_read(h);
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
    int complete = 0;
    for (int i = 0; i < h->n; i++) {
        int ok = h->ended[i] == 1 && h->chunks[i] > 0 && h->chunks[i] <= SEQ_MAX;
        for (int q = 0; ok && q < h->chunks[i]; q++)
            ok = h->seen[i][q] == 1;
        complete += ok;
        if (!ok && complete + 5 > i) {
            int got = 0;
            for (int q = 0; q < SEQ_MAX; q++)
                got += h->seen[i][q];
            fprintf(stderr, "\n  snapshot %" PRIu64 ": %d chunks of %d, end marker %d",
                    h->id[i], got, h->chunks[i], h->ended[i]);
        }
    }
    fprintf(stderr, "\n  honest subscriber: %d snapshots seen, %d complete\n", h->n,
            complete);
    CU_ASSERT_EQUAL(h->n, 150);
    CU_ASSERT_EQUAL(complete, h->n);
    zmq_close(deaf);
    zmq_close(h->sub);
    free(h);
    attacker_free(&a);
    env_free(&e);
}

/* Row 12: a loader forges batches (the wrong shape for its ticket; from a
 * second registered identity, inverted pixels for a ticket that identity
 * does not hold): counted as bad, and the steps' batches are those of an
 * undisturbed run. */
static void test_forged_batch(void)
{
    struct env e;
    env_init(&e);
    struct line *ref = xcalloc(MAX_LINES, sizeof *ref), *l = xcalloc(MAX_LINES, sizeof *l);
    int nr = plain_run(&e, "fb-ref", 1, "12", NULL, NULL, ref);
    CU_ASSERT_EQUAL(nr, 12);
    const char *const args[] = {"--steps", "12", NULL};
    const char *const forge[] = {"--forge-batch", "4", NULL};
    pid_t tr = start_trainer(&e, "fb", args);
    CU_ASSERT_FATAL(wait_text(&e, "fb/log", "work endpoint", 20));
    pid_t bad = start_loader(&e, "fb-forger", forge);
    CU_ASSERT(wait_text(&e, "fb/log", "fb-forger-ghost joined", 10));
    pid_t ld = start_loader(&e, "fb-loader", NULL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    /* the forger may be dropped for its malformed answers (it then exits
     * on the trainer's silence, 5), or stay to the end (0) */
    int brc = testing_wait_exit(bad, 10);
    CU_ASSERT(brc == 0 || brc == 5);
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
    int n = read_lines(&e, "fb", l);
    CU_ASSERT_EQUAL(n, 12);
    check_same(ref, nr, l, n, 0);
    int differ = 0;
    for (int i = 0; i < n && i < nr; i++)
        differ += strcmp(ref[i].hash, l[i].hash) != 0;
    fprintf(stderr, "\n  %d of %d steps' batch hashes differ from the undisturbed run; "
            "bad_messages %g\n", differ, n, n ? l[n - 1].bad : NAN);
    CU_ASSERT(n > 0 && l[n - 1].bad > 0);
    free(ref);
    free(l);
    env_free(&e);
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"result_time", test_result_time},
        {"hello_flood", test_hello_flood},
        {"dataset_claims", test_dataset_claims},
        {"history_flood", test_history_flood},
        {"eval_rehello", test_eval_rehello},
        {"never_answer", test_never_answer},
        {"env_failures", test_env_failures},
        {"result_abuse", test_result_abuse},
        {"big_result", test_big_result},
        {"run_dir_reuse", test_run_dir_reuse},
        {"deaf_subscriber", test_deaf_subscriber},
        {"forged_batch", test_forged_batch},
        {NULL, NULL},
    };
    signal(SIGPIPE, SIG_IGN);
    return testing_run_named("attack", all, argc, argv);
}
