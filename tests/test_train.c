/*
 * test_train.c: lejepa-train as a process, end to end over ipc:// sockets in
 * a temporary directory, with tests/fake_loader as its loaders (no images,
 * no real loader needed) and a tiny model. Each case is one meson test (the
 * case name is argv[1]); all of them run the whole program by default.
 * Checks: a run completes with finite losses and a final checkpoint; 1 vs
 * 3 loaders give the same batch hashes and losses; a SIGKILLed or SIGSTOPped
 * loader loses no ticket (its late batches are dropped) and a SIGTERMed one
 * returns its tickets; failed samples are logged and excluded from the next
 * epoch, steps without 2 samples are skipped and a dataset without a usable
 * batch stops the run; another dataset is refused naming both fingerprints
 * (first loader's or --data's); SIGINT gives exit 0 and a final
 * checkpoint; --resume continues exactly (inside an epoch and past its
 * end); garbage is counted, not fatal; HISTORY pages match the file;
 * RESULT is appended and republished as METRIC; a time budget fixes and
 * records the step count.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "json.h"
#include "msg.h"
#include "testing.h"
#include "test_train_util.h"
#include "util.h"

static void test_two_loaders(void)
{
    struct env e;
    env_init(&e);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    int n = plain_run(&e, "two", 2, "12", NULL, NULL, l);
    CU_ASSERT_EQUAL(n, 12);
    for (int i = 0; i < n; i++) {
        CU_ASSERT(isfinite(l[i].loss));
        CU_ASSERT_EQUAL(l[i].samples, 8);
        CU_ASSERT_EQUAL(l[i].step, (uint64_t)i + 1);
        CU_ASSERT_EQUAL(strlen(l[i].hash), 16);
    }
    /* 40 samples, batch 8: 5 steps per epoch */
    CU_ASSERT(n == 12 && l[4].epoch == 0 && l[5].epoch == 1 && l[10].epoch == 2);
    CU_ASSERT(file_exists(&e, "two/ckpt-12.safetensors"));
    CU_ASSERT(file_exists(&e, "two/config.ini"));
    char *latest = read_text(&e, "two/latest");
    CU_ASSERT_STRING_EQUAL(latest, "ckpt-12.safetensors\n");
    free(latest);
    free(l);
    env_free(&e);
}

static void test_one_vs_three(void)
{
    struct env e;
    env_init(&e);
    struct line *a = xcalloc(MAX_LINES, sizeof *a), *b = xcalloc(MAX_LINES, sizeof *b);
    /* slow enough that all three loaders join before the run ends */
    const char *const slow[] = {"--credit", "2", "--delay-ms", "10", NULL};
    /* the probe on eval views: one more group per answer, in the hash */
    const char *const eval[] = {"--set", "optim.probe_views=eval", NULL};
    int na = plain_run(&e, "one", 1, "12", NULL, eval, a);
    int nb = plain_run(&e, "three", 3, "12", slow, eval, b);
    CU_ASSERT_EQUAL(na, 12);
    CU_ASSERT_EQUAL(nb, 12);
    check_same(a, na, b, nb, 0);
    char *log = read_text(&e, "three/log");
    int joined = 0;
    for (const char *p = log; (p = strstr(p, " joined (")); p++)
        joined++;
    CU_ASSERT_EQUAL(joined, 3);
    free(log);
    free(a);
    free(b);
    env_free(&e);
}

static void test_killed_loader(void)
{
    struct env e;
    env_init(&e);
    const char *const slow[] = {"--delay-ms", "40", "--credit", "3", NULL};
    const char *const args[] = {"--steps", "14", NULL};
    pid_t tr = start_trainer(&e, "kill", args);
    pid_t a = start_loader(&e, "kill-a", slow), b = start_loader(&e, "kill-b", slow);
    CU_ASSERT(wait_text(&e, "kill/log", "kill-a joined", 20));
    CU_ASSERT(wait_lines(&e, "kill", 3, 30));
    kill(a, SIGKILL);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 5), 128 + SIGKILL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(b, 10), 0);
    struct line *l = xcalloc(MAX_LINES, sizeof *l), *ref = xcalloc(MAX_LINES, sizeof *ref);
    int n = read_lines(&e, "kill", l);
    CU_ASSERT_EQUAL(n, 14);
    for (int i = 0; i < n; i++)
        CU_ASSERT_EQUAL(l[i].samples, 8);
    char *log = read_text(&e, "kill/log");
    /* gone by silence, or sooner by a send that finds it closed */
    CU_ASSERT(strstr(log, "presumed gone") != NULL ||
              strstr(log, "is gone (connection closed)") != NULL);
    free(log);
    int nr = plain_run(&e, "kill-ref", 1, "14", NULL, NULL, ref);
    check_same(l, n, ref, nr, 0);
    free(l);
    free(ref);
    env_free(&e);
}

static void test_failures(void)
{
    struct env e;
    env_init(&e);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const fail[] = {"--fail-mod", "10", NULL};
    /* 4 of 40 samples fail: above the default limits.max_excluded */
    const char *const lax[] = {"--set", "limits.max_excluded=0.5", NULL};
    int n = plain_run(&e, "fail", 1, "13", fail, lax, l);
    CU_ASSERT_EQUAL_FATAL(n, 13);
    /* epoch 0: 5 steps hold the 4 failing samples (0, 10, 20, 30) */
    double sum0 = 0;
    for (int i = 0; i < 5; i++)
        sum0 += l[i].samples;
    CU_ASSERT_EQUAL(sum0, 36);
    /* epoch 1: 36 usable samples, 4 steps, all full */
    for (int i = 5; i < 13; i++) {
        CU_ASSERT_EQUAL(l[i].samples, 8);
        CU_ASSERT_EQUAL(l[i].failures, 4);
    }
    CU_ASSERT(l[5].epoch == 1 && l[8].epoch == 1 && l[9].epoch == 2);
    char *log = read_text(&e, "fail/log");
    CU_ASSERT(strstr(log, "sample 10 (train/c0/000010.png) failed: fake decode "
                          "failure; excluded from epoch 1 on") != NULL);
    free(log);
    free(l);
    env_free(&e);
}

/* A decode failure excludes a sample only when a second loader agrees.
 * A loader that calls every sample undecodable, joining beside an honest
 * one, excludes nothing: every step trains its 8 samples. Two loaders that
 * both fail samples 0, 10, 20, 30 (started before the trainer, and slow to
 * answer, so both are connected by the first answer) exclude exactly
 * those, once each. */
static void test_decode_agreement(void)
{
    struct env e;
    env_init(&e);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const args[] = {"--steps", "40", NULL};
    const char *const slow[] = {"--delay-ms", "50", "--credit", "2", NULL};
    const char *const lie[] = {"--fail-mod", "1", NULL};
    pid_t tr = start_trainer(&e, "liar", args);
    pid_t good = start_loader(&e, "liar-good", slow);
    CU_ASSERT(wait_text(&e, "liar/log", "liar-good joined", 20));
    pid_t bad = start_loader(&e, "liar-bad", lie);
    int rc = testing_wait_exit(tr, RUN_TIMEOUT_S);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0) {
        char *out = read_text(&e, "liar/log");
        fprintf(stderr, "trainer exit %d; its log:\n%s\n", rc, out ? out : "(none)");
        free(out);
    }
    CU_ASSERT_EQUAL(testing_wait_exit(good, 10), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(bad, 10), 0);
    int n = read_lines(&e, "liar", l);
    CU_ASSERT_EQUAL_FATAL(n, 40);
    for (int i = 0; i < n; i++)
        CU_ASSERT(l[i].samples == 8 && l[i].failures == 0);
    char *log = read_text(&e, "liar/log");
    CU_ASSERT(strstr(log, "liar-bad says") && strstr(log, "cannot be decoded"));
    CU_ASSERT_PTR_NULL(strstr(log, "excluded from"));
    free(log);

    const char *const fail[] = {"--fail-mod", "10", "--delay-ms", "500", NULL};
    const char *const lax[] = {"--steps", "5", "--set", "limits.max_excluded=0.5", NULL};
    pid_t a = start_loader(&e, "agree-a", fail), b = start_loader(&e, "agree-b", fail);
    tr = start_trainer(&e, "agree", lax);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(b, 10), 0);
    n = read_lines(&e, "agree", l);
    CU_ASSERT_EQUAL_FATAL(n, 5);
    CU_ASSERT_EQUAL(l[4].failures, 4);
    log = read_text(&e, "agree/log");
    int excluded = 0;
    for (const char *p = log; (p = strstr(p, "excluded from epoch 1 on (two loaders agree)"));
         p++)
        excluded++;
    CU_ASSERT_EQUAL(excluded, 4);
    free(log);
    free(l);
    env_free(&e);
}

/* A loader whose answers leave a sample out (no failure for it) has them
 * refused as malformed (else it would be sent the rest again and again):
 * beside an honest loader every step trains 8 samples, as in a run of the
 * honest one alone. */
static void test_omitted_sample(void)
{
    struct env e;
    env_init(&e);
    struct line *ref = xcalloc(MAX_LINES, sizeof *ref), *l = xcalloc(MAX_LINES, sizeof *l);
    int nr = plain_run(&e, "om-ref", 1, "10", NULL, NULL, ref);
    const char *const args[] = {"--steps", "10", NULL};
    const char *const omit[] = {"--omit-last", NULL};
    pid_t tr = start_trainer(&e, "om", args);
    CU_ASSERT(wait_text(&e, "om/log", "work endpoint", 20));
    pid_t bad = start_loader(&e, "om-omitter", omit), ld = start_loader(&e, "om-loader", NULL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    testing_wait_exit(bad, 10); /* dropped (5) or to the end (0) */
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
    int n = read_lines(&e, "om", l);
    CU_ASSERT_EQUAL(n, 10);
    check_same(ref, nr, l, n, 0);
    char *log = read_text(&e, "om/log");
    CU_ASSERT(log && strstr(log, "of the samples it was sent unanswered"));
    free(log);
    free(ref);
    free(l);
    env_free(&e);
}

static void test_fingerprint(void)
{
    struct env e;
    env_init(&e);
    const char *const args[] = {"--steps", "100000", NULL};
    const char *const other[] = {"--fingerprint", "abcdef", NULL};
    pid_t tr = start_trainer(&e, "fp", args);
    pid_t a = start_loader(&e, "fp-good", NULL);
    CU_ASSERT(wait_lines(&e, "fp", 1, 30));
    pid_t b = start_loader(&e, "fp-bad", other);
    CU_ASSERT_EQUAL(testing_wait_exit(b, 20), 3);
    kill(tr, SIGINT);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 20), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    char *out = read_text(&e, "fp-bad.out");
    CU_ASSERT(strstr(out, "refused") != NULL);
    CU_ASSERT(strstr(out, "0000000000abcdef") != NULL);
    CU_ASSERT(strstr(out, "0000000000001234") != NULL);
    CU_ASSERT(strstr(out, "fp-bad") != NULL);
    free(out);
    env_free(&e);
}

static void test_sigint(void)
{
    struct env e;
    env_init(&e);
    const char *const args[] = {"--steps", "100000", NULL};
    pid_t tr = start_trainer(&e, "int", args);
    pid_t a = start_loader(&e, "int-a", NULL);
    CU_ASSERT(wait_lines(&e, "int", 3, 30));
    kill(tr, SIGINT);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 20), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    /* the BYE says why the run ended: a signal, not the step budget */
    char *said = read_text(&e, "int-a.out");
    CU_ASSERT(strstr(said, "BYE: interrupted by signal") != NULL);
    CU_ASSERT(strstr(said, "run finished") == NULL);
    free(said);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    int n = read_lines(&e, "int", l);
    CU_ASSERT_FATAL(n >= 3);
    char *latest = read_text(&e, "int/latest"), want[64];
    snprintf(want, sizeof want, "ckpt-%" PRIu64 ".safetensors\n", l[n - 1].step);
    CU_ASSERT_STRING_EQUAL(latest, want);
    want[strlen(want) - 1] = '\0';
    char rel[128];
    snprintf(rel, sizeof rel, "int/%s", want);
    CU_ASSERT(file_exists(&e, rel));
    /* resume from the run directory (its `latest`), with a shorter run */
    uint64_t last = l[n - 1].step;
    char dir[4200], steps[32];
    snprintf(dir, sizeof dir, "%s/int", e.dir);
    snprintf(steps, sizeof steps, "%" PRIu64, last + 3);
    const char *const again[] = {"--resume", dir, "--steps", steps, NULL};
    tr = start_trainer(&e, "int", again);
    a = start_loader(&e, "int-b", NULL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    int m = read_lines(&e, "int", l);
    CU_ASSERT_EQUAL(m, n + 3);
    CU_ASSERT(m == n + 3 && l[n].step == last + 1 && l[m - 1].step == last + 3);
    said = read_text(&e, "int-b.out");
    CU_ASSERT(strstr(said, "BYE: run finished") != NULL);
    free(said);
    char *log = read_text(&e, "int/log");
    CU_ASSERT(strstr(log, "resumed from") != NULL);
    CU_ASSERT(strstr(log, "BYE to 1 client(s): interrupted by signal") != NULL);
    CU_ASSERT(strstr(log, "BYE to 1 client(s): run finished") != NULL);
    free(log);
    free(latest);
    free(l);
    env_free(&e);
}

static void test_resume(void)
{
    struct env e;
    env_init(&e);
    struct line *a = xcalloc(MAX_LINES, sizeof *a), *b = xcalloc(MAX_LINES, sizeof *b);
    const char *const every[] = {"--set", "run.ckpt_every=3", "--set",
                                 "run.keep_ckpts=0", NULL};
    int na = plain_run(&e, "full", 1, "13", NULL, every, a);
    CU_ASSERT_EQUAL_FATAL(na, 13);
    /* keep_ckpts = 0 keeps every checkpoint */
    const char *const all[] = {"3", "6", "9", "12", "13"};
    for (int k = 0; k < 5; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "full/ckpt-%s.safetensors", all[k]);
        CU_ASSERT(file_exists(&e, rel));
    }
    /* step 3: inside epoch 0; step 6: just past the epoch boundary at 5 */
    const char *from[] = {"ckpt-3", "ckpt-6"};
    for (int k = 0; k < 2; k++) {
        char ck[4200], name[32];
        snprintf(ck, sizeof ck, "%s/full/%s.safetensors", e.dir, from[k]);
        snprintf(name, sizeof name, "resumed%d", k);
        const char *extra[] = {"--resume", ck, "--name", name, NULL};
        pid_t tr = start_trainer(&e, name, extra);
        pid_t ld = start_loader(&e, "resume-loader", NULL);
        CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
        CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
        int nb = read_lines(&e, name, b);
        CU_ASSERT_EQUAL(nb, k == 0 ? 10 : 7);
        CU_ASSERT(nb > 0 && b[0].step == (k == 0 ? 4u : 7u));
        check_same(a, na, b, nb, 0);
    }
    free(a);
    free(b);
    env_free(&e);
}

/* run.keep_ckpts = 2, a checkpoint every 2 steps of 9: the final one and
 * the one before it stay, nothing else. */
static void test_keep_ckpts(void)
{
    struct env e;
    env_init(&e);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const extra[] = {"--set", "run.ckpt_every=2", "--set",
                                 "run.keep_ckpts=2", NULL};
    CU_ASSERT_EQUAL(plain_run(&e, "keep", 1, "9", NULL, extra, l), 9);
    char path[4200];
    snprintf(path, sizeof path, "%s/keep", e.dir);
    DIR *d = opendir(path);
    CU_ASSERT_FATAL(d != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strncmp(de->d_name, "ckpt-", 5) == 0;
    closedir(d);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT(file_exists(&e, "keep/ckpt-8.safetensors"));
    CU_ASSERT(file_exists(&e, "keep/ckpt-9.safetensors"));
    CU_ASSERT(!file_exists(&e, "keep/ckpt-6.safetensors"));
    char *latest = read_text(&e, "keep/latest");
    CU_ASSERT_STRING_EQUAL(latest, "ckpt-9.safetensors\n");
    char *log = read_text(&e, "keep/log");
    CU_ASSERT(strstr(log, "deleted old checkpoint") != NULL);
    free(log);
    free(latest);
    free(l);
    env_free(&e);
}

/* A DEALER of the test's own: garbage, an unexpected kind, then HELLO as a
 * monitor and HISTORY (which the trainer answers only after a HELLO). */
static void test_garbage_history(void)
{
    struct env e;
    env_init(&e);
    const char *const args[] = {"--steps", "100000", NULL};
    pid_t tr = start_trainer(&e, "junk", args);
    pid_t a = start_loader(&e, "junk-a", NULL);
    CU_ASSERT(wait_lines(&e, "junk", 3, 30));
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    CU_ASSERT_FATAL(zmq_connect(s, e.work) == 0);
    CU_ASSERT(zmq_send(s, "\x93garbage", 8, 0) == 8);
    CU_ASSERT(zmq_send(s, "", 0, 0) == 0);
    char err[ERR_LEN];
    struct msg t = {.kind = MSG_KIND_TICKET};
    uint64_t idx = 1;
    t.ticket = (struct msg_ticket){.ticket = 1, .n = 1, .indices = &idx};
    CU_ASSERT(msg_send(s, &t, err) == 0);
    /* HISTORY in pages: > 128 KiB of lines needs several replies */
    CU_ASSERT(wait_lines(&e, "junk", 450, 40));
    int timeout = 10000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    struct msg_limits lim;
    msg_limits_default(&lim);
    struct msg_arena arena;
    msg_arena_init(&arena);
    lim.max_str = 1 << 20;
    lim.max_msg_bytes = 4 << 20;
    struct msg hello = {.kind = MSG_KIND_HELLO};
    hello.hello = (struct msg_hello){.role = MSG_ROLE_MONITOR, .name = "junk-mon",
                                     .software = "test", .pid = 1};
    CU_ASSERT_FATAL(msg_send(s, &hello, err) == 0);
    char **got = xcalloc(MAX_LINES, sizeof *got);
    uint64_t start = 0;
    int pages = 0, done = 0;
    while (!done && pages < 100) {
        struct msg h = {.kind = MSG_KIND_HISTORY};
        h.history = (struct msg_history){.start = start};
        CU_ASSERT_FATAL(msg_send(s, &h, err) == 0);
        zmq_msg_t frame;
        struct msg r;
        /* WELCOME and HEARTBEATs come too: the reply is the next HISTORY */
        for (;;) {
            CU_ASSERT_FATAL(msg_recv(s, 0, &frame, &r, &lim, &arena, err) == 0);
            if (r.kind == MSG_KIND_HISTORY)
                break;
            zmq_msg_close(&frame);
        }
        CU_ASSERT_FATAL(r.kind == MSG_KIND_HISTORY && r.history.start == start);
        for (uint32_t i = 0; i < r.history.n_lines && start + i < MAX_LINES; i++)
            got[start + i] = xstrdup(r.history.lines[i]);
        start += r.history.n_lines;
        done = r.history.done;
        pages++;
        zmq_msg_close(&frame);
        CU_ASSERT_FATAL(r.history.n_lines > 0 || done);
    }
    CU_ASSERT(done);
    CU_ASSERT(pages >= 2);
    CU_ASSERT(start >= 450 && start < MAX_LINES);
    msg_arena_free(&arena);
    zmq_close(s);
    zmq_ctx_term(ctx);
    kill(tr, SIGINT);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 20), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    /* the pages are the file's first lines, byte for byte */
    char *text = read_text(&e, "junk/metrics.jsonl");
    char *p = text;
    for (uint64_t i = 0; i < start && i < MAX_LINES; i++) {
        char *nl = strchr(p, '\n');
        CU_ASSERT_FATAL(nl != NULL);
        *nl = '\0';
        CU_ASSERT_STRING_EQUAL(got[i] ? got[i] : "", p);
        p = nl + 1;
        free(got[i]);
    }
    free(got);
    free(text);
    char *log = read_text(&e, "junk/log");
    CU_ASSERT(strstr(log, "bad message #3") != NULL);
    CU_ASSERT(strstr(log, "TICKET from a peer that sent no HELLO") != NULL);
    free(log);
    env_free(&e);
}

static void test_time_budget(void)
{
    struct env e;
    env_init(&e);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const budget[] = {"--minutes", "0.01", "--set", "optim.timing_steps=4",
                                  NULL};
    int n = plain_run(&e, "budget", 1, "100000", NULL, budget, l);
    CU_ASSERT(n >= 4);
    char *cfg = read_text(&e, "budget/config.ini"), want[64];
    snprintf(want, sizeof want, "steps = %d\n", n);
    CU_ASSERT(strstr(cfg, want) != NULL);
    CU_ASSERT(strstr(cfg, "minutes = 0\n") != NULL);
    free(cfg);
    char *m = read_text(&e, "budget/metrics.jsonl");
    CU_ASSERT(strstr(m, "\"steps_total\"") != NULL);
    free(m);
    free(l);
    env_free(&e);
}

/* A 6 s time budget timed over its first `timing` steps (capped at `cap`
 * steps), one fake loader with loader_args: the run's steps_total values,
 * in order, into totals (max); *n the steps it ran. Returns how many
 * values there were, after checking that the last is the run's count, in
 * its config.ini too. */
static int refit_run(struct env *e, const char *name, const char *cap,
                     const char *timing, const char *const *loader_args,
                     double *totals, int max, int *n)
{
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    const char *const budget[] = {"--minutes", "0.1", "--set", timing, NULL};
    *n = plain_run(e, name, 1, cap, loader_args, budget, l);
    free(l);
    char rel[300];
    snprintf(rel, sizeof rel, "%s/metrics.jsonl", name);
    char *m = read_text(e, rel);
    int nt = 0;
    for (const char *p = m; nt < max && (p = strstr(p, "\"steps_total\":"));
         p++)
        totals[nt++] = strtod(p + strlen("\"steps_total\":"), NULL);
    free(m);
    CU_ASSERT(nt >= 2);
    if (nt >= 1)
        CU_ASSERT_EQUAL((int)totals[nt - 1], *n);
    snprintf(rel, sizeof rel, "%s/config.ini", name);
    char *cfg = read_text(e, rel), want[64];
    snprintf(want, sizeof want, "steps = %d\n", *n);
    CU_ASSERT(strstr(cfg, want) != NULL);
    free(cfg);
    return nt;
}

/* A loader that answers its first tickets at once and then one every
 * 60 ms: the first fit (over 4 steps) counts on the fast pace, which
 * would take the run far past its 6 s; the re-fit at the end of the first
 * window (20 steps) brings the count down to what the slow pace allows,
 * and the run ends with it. */
static void test_time_budget_refit(void)
{
    struct env e;
    env_init(&e);
    const char *const slow_later[] = {
        "--delay-ms", "60", "--delay-after", "12", "--credit", "2", NULL};
    double totals[16];
    int n,
        nt = refit_run(&e, "refit", "100000", "optim.timing_steps=4",
                       slow_later, totals, 16, &n);
    CU_ASSERT(nt >= 2 && totals[nt - 1] < totals[0]);
    char *log = read_text(&e, "refit/log");
    CU_ASSERT(strstr(log, "time budget re-fitted at step 24") != NULL);
    free(log);
    env_free(&e);
}

/* The other way: a loader slow for its first answers and fast after. The
 * first fit (over 2 slow steps) counts on the slow pace; the re-fits raise
 * the count, up to the cap (optim.steps = 300, which the recorded counts
 * must not replace). */
static void test_time_budget_refit_up(void)
{
    struct env e;
    env_init(&e);
    const char *const slow_first[] = {
        "--delay-ms", "200", "--delay-until", "8", "--credit", "2", NULL};
    double totals[64];
    int n,
        nt = refit_run(&e, "refitup", "300", "optim.timing_steps=2", slow_first,
                       totals, 64, &n);
    CU_ASSERT(nt >= 2 && totals[nt - 1] > totals[0]);
    CU_ASSERT(nt >= 1 && totals[nt - 1] <= 300);
    env_free(&e);
}

/* A loader stopped (SIGSTOP) past the silence limit is presumed gone; its
 * tickets go to the other; its late batches, once it runs again, are dropped. */
static void test_stalled_loader(void)
{
    struct env e;
    env_init(&e);
    /* a answers one ticket every 2 s, so it holds tickets when stopped */
    const char *const slowest[] = {"--delay-ms", "2000", "--credit", "2", NULL};
    const char *const slow[] = {"--delay-ms", "20", "--credit", "2", NULL};
    const char *const args[] = {"--steps", "220", NULL};
    pid_t tr = start_trainer(&e, "stall", args);
    CU_ASSERT(wait_text(&e, "stall/log", "work endpoint", 20));
    pid_t a = start_loader(&e, "stall-a", slowest), b = start_loader(&e, "stall-b", slow);
    CU_ASSERT(wait_text(&e, "stall/log", "stall-a joined", 20));
    CU_ASSERT(wait_lines(&e, "stall", 3, 30));
    kill(a, SIGSTOP);
    usleep(7500000);
    kill(a, SIGCONT);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(b, 10), 0);
    int rc = testing_wait_exit(a, 10);
    CU_ASSERT(rc == 0 || rc == 5);
    struct line *l = xcalloc(MAX_LINES, sizeof *l), *ref = xcalloc(MAX_LINES, sizeof *ref);
    int n = read_lines(&e, "stall", l);
    CU_ASSERT_EQUAL(n, 220);
    for (int i = 0; i < n; i++)
        CU_ASSERT_EQUAL(l[i].samples, 8);
    char *log = read_text(&e, "stall/log");
    CU_ASSERT(strstr(log, "stall-a silent for") != NULL);
    CU_ASSERT(strstr(log, "dropped a late BATCH") != NULL);
    free(log);
    int nr = plain_run(&e, "stall-ref", 1, "220", NULL, NULL, ref);
    check_same(l, n, ref, nr, 0);
    free(l);
    free(ref);
    env_free(&e);
}

/* With eval.wait_evaluators = 1 training waits for the evaluator (no
 * step while only the loader is there); its RESULT then lands in
 * metrics.jsonl and comes back as METRIC. */
static void test_result_metric(void)
{
    struct env e;
    env_init(&e);
    const char *const args[] = {"--steps", "100000", "--set",
                                "eval.wait_evaluators=1", NULL};
    pid_t tr = start_trainer(&e, "res", args);
    pid_t a = start_loader(&e, "res-a", NULL);
    CU_ASSERT(wait_text(&e, "res/log", "res-a joined", 20));
    CU_ASSERT(wait_text(&e, "res/log", "waiting up to 60 s for 1 evaluator", 20));
    usleep(1500000);
    struct line *early = xcalloc(MAX_LINES, sizeof *early);
    CU_ASSERT_EQUAL(read_lines(&e, "res", early), 0);
    free(early);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER), *sub = zmq_socket(ctx, ZMQ_SUB);
    CU_ASSERT_FATAL(zmq_connect(s, e.work) == 0 && zmq_connect(sub, e.bcast) == 0);
    CU_ASSERT(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "METRIC", 6) == 0);
    int timeout = 10000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char err[ERR_LEN];
    struct msg h = {.kind = MSG_KIND_HELLO};
    h.hello = (struct msg_hello){.role = MSG_ROLE_EVALUATOR, .name = "test-eval",
                                 .software = "test", .pid = 1};
    CU_ASSERT(msg_send(s, &h, err) == 0);
    struct msg_limits lim;
    msg_limits_default(&lim);
    lim.max_str = 1 << 20;
    lim.max_msg_bytes = 4 << 20;
    struct msg_arena arena;
    msg_arena_init(&arena);
    zmq_msg_t frame;
    struct msg r;
    CU_ASSERT_FATAL(msg_recv(s, 0, &frame, &r, &lim, &arena, err) == 0);
    CU_ASSERT_EQUAL(r.kind, MSG_KIND_WELCOME);
    CU_ASSERT_STRING_EQUAL(r.welcome.run, "res");
    zmq_msg_close(&frame);
    CU_ASSERT(wait_lines(&e, "res", 2, 30));
    struct msg_value v = {"knn_top1", 0.5};
    struct msg res = {.kind = MSG_KIND_RESULT};
    res.result = (struct msg_metric){.time = 1.0, .step = 2, .epoch = 0,
                                     .source = MSG_SOURCE_KNN, .n_values = 1,
                                     .values = &v};
    CU_ASSERT(msg_send(s, &res, err) == 0);
    int seen_knn = 0;
    for (int i = 0; i < 5000 && !seen_knn; i++) {
        if (msg_recv_sub(sub, 0, &frame, &r, &lim, &arena, err) != 0) {
            zmq_msg_close(&frame);
            break;
        }
        seen_knn = r.metric.source == MSG_SOURCE_KNN && r.metric.n_values == 1 &&
                   r.metric.values[0].value == 0.5;
        zmq_msg_close(&frame);
    }
    CU_ASSERT(seen_knn);
    struct msg bye = {.kind = MSG_KIND_BYE};
    bye.bye.reason = "done";
    CU_ASSERT(msg_send(s, &bye, err) == 0);
    msg_arena_free(&arena);
    zmq_close(s);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    kill(tr, SIGINT);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 20), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    char *m = read_text(&e, "res/metrics.jsonl");
    CU_ASSERT(strstr(m, "\"step\":2,\"epoch\":0,\"source\":\"knn\",\"knn_top1\":0.5}") != NULL);
    free(m);
    env_free(&e);
}

/* --data: the trainer's own index is the reference; a loader with the same
 * dataset trains, one with another is refused naming --data. */
static void test_data_flag(void)
{
    struct env e;
    env_init(&e);
    char path[4200], err[ERR_LEN];
    for (int c = 0; c < 10; c++)
        for (int i = 0; i < 4; i++) {
            snprintf(path, sizeof path, "%s/ds/train/c%d", e.dir, c);
            CU_ASSERT_FATAL(util_mkdir_p(path, err) == 0);
            snprintf(path, sizeof path, "%s/ds/train/c%d/%d.png", e.dir, c, i);
            CU_ASSERT_FATAL(util_write_file_atomic(path, "", 0, err) == 0);
        }
    snprintf(path, sizeof path, "%s/ds", e.dir);
    struct dataset d;
    CU_ASSERT_FATAL(dataset_open(&d, path, err) == 0);
    char fp[17];
    dataset_format_fingerprint(d.fingerprint, fp);
    dataset_free(&d);
    const char *const args[] = {"--steps", "6", "--data", path, NULL};
    const char *const good[] = {"--fingerprint", fp, "--n-val", "0", NULL};
    const char *const bad[] = {"--n-val", "0", NULL};
    pid_t b = start_loader(&e, "data-bad", bad);
    usleep(100000);
    pid_t tr = start_trainer(&e, "data", args);
    CU_ASSERT_EQUAL(testing_wait_exit(b, 20), 3);
    pid_t a = start_loader(&e, "data-good", good);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    CU_ASSERT_EQUAL(read_lines(&e, "data", l), 6);
    char *out = read_text(&e, "data-bad.out");
    CU_ASSERT(strstr(out, "from --data") != NULL);
    CU_ASSERT(strstr(out, fp) != NULL);
    free(out);
    free(l);
    env_free(&e);
}

/* Every sample fails: each step is skipped (fewer than 2 samples), then the
 * next epoch has no usable sample and the run stops with a clear error. */
static void test_all_fail(void)
{
    struct env e;
    env_init(&e);
    const char *const fail[] = {"--fail-mod", "1", NULL};
    /* every sample may be excluded: the epoch's own check stops the run */
    const char *const args[] = {"--steps", "20", "--set",
                                "limits.max_excluded=1", NULL};
    pid_t a = start_loader(&e, "allfail-a", fail);
    usleep(100000);
    pid_t tr = start_trainer(&e, "allfail", args);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 1);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    char *log = read_text(&e, "allfail/log");
    CU_ASSERT(strstr(log, "step 1 skipped: only 0 of its 8 samples loaded") != NULL);
    CU_ASSERT(strstr(log, "step 5 skipped") != NULL);
    CU_ASSERT(strstr(log, "epoch 1: 0 usable training samples (40 excluded after "
                          "failures), fewer than one batch of 8") != NULL);
    CU_ASSERT(!file_exists(&e, "allfail/latest"));
    free(log);
    env_free(&e);
}

/* A loader stopped with SIGTERM hands its tickets back (RETURN, BYE): the
 * others take them at once, no silence timeout, same batches. */
static void test_returned_tickets(void)
{
    struct env e;
    env_init(&e);
    const char *const slow[] = {"--delay-ms", "300", "--credit", "3", NULL};
    const char *const fast[] = {"--delay-ms", "10", "--credit", "2", NULL};
    const char *const args[] = {"--steps", "14", NULL};
    pid_t tr = start_trainer(&e, "ret", args);
    pid_t a = start_loader(&e, "ret-a", slow), b = start_loader(&e, "ret-b", fast);
    CU_ASSERT(wait_text(&e, "ret/log", "ret-a joined", 20));
    CU_ASSERT(wait_lines(&e, "ret", 2, 30));
    double t0 = util_time_mono();
    kill(a, SIGTERM);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT(util_time_mono() - t0 < 4.0);
    CU_ASSERT_EQUAL(testing_wait_exit(b, 10), 0);
    struct line *l = xcalloc(MAX_LINES, sizeof *l), *ref = xcalloc(MAX_LINES, sizeof *ref);
    int n = read_lines(&e, "ret", l);
    CU_ASSERT_EQUAL(n, 14);
    char *log = read_text(&e, "ret/log");
    CU_ASSERT(strstr(log, "ret-a returned") != NULL);
    CU_ASSERT(strstr(log, "ret-a said BYE") != NULL);
    CU_ASSERT(strstr(log, "presumed gone") == NULL);
    free(log);
    int nr = plain_run(&e, "ret-ref", 1, "14", NULL, NULL, ref);
    check_same(l, n, ref, nr, 0);
    free(l);
    free(ref);
    env_free(&e);
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"two_loaders", test_two_loaders},
        {"one_vs_three", test_one_vs_three},
        {"killed_loader", test_killed_loader},
        {"failures", test_failures},
        {"decode_agreement", test_decode_agreement},
        {"omitted_sample", test_omitted_sample},
        {"fingerprint", test_fingerprint},
        {"sigint", test_sigint},
        {"resume", test_resume},
        {"keep_ckpts", test_keep_ckpts},
        {"garbage_history", test_garbage_history},
        {"time_budget", test_time_budget},
        {"time_budget_refit", test_time_budget_refit},
        {"time_budget_refit_up", test_time_budget_refit_up},
        {"stalled_loader", test_stalled_loader},
        {"result_metric", test_result_metric},
        {"data_flag", test_data_flag},
        {"all_fail", test_all_fail},
        {"returned_tickets", test_returned_tickets},
        {NULL, NULL},
    };
    signal(SIGPIPE, SIG_IGN);
    return testing_run_named("train", all, argc, argv);
}
