/*
 * test_launcher.c: `lejepa run` end to end on a generated image folder with
 * a tiny model: the trainer, two real loaders, the monitor and (when built)
 * the evaluator as processes. One meson test per case:
 *   run     a few steps: exit 0, finite losses in metrics.jsonl, one log
 *           per process holding every line; the quiet terminal shows
 *           the trainer's steps and the evaluator's results, prefixed,
 *           but not the config dump nor the loaders' WELCOME lines
 *   sigint  SIGINT midway: exit 0 and a final checkpoint named by `latest`
 *   keys    --keys DIR: every process keyed (CurveZMQ), pairs made or reused,
 *           the allow-list written with a hand-added line kept; with -v
 *           the terminal shows each log's first line
 *   bind    --bind 127.0.0.1 --keys DIR with the work port taken: another
 *           port, said aloud, and the run keyed on it
 *   resume  --resume RUN continues a finished run in its directory
 * Both check that no process of the run is left: the pids the launcher
 * printed are gone and no process has this test's directory on its
 * command line (loader workers included).
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vips/vips.h>

#include "json.h"
#include "keys.h"
#include "test_imgdir.h"
#include "test_train_util.h"
#include "testing.h"
#include "util.h"

#define RUN_WAIT_S 50.0         /* a whole run, or a stop after SIGINT */
#define LINES_WAIT_S 40.0       /* the first train lines of the sigint case */

static char *tmp;
static char data_dir[4200];

static char *path_in(const char *fmt, const char *a, const char *b)
{
    char *p = xmalloc(8192);
    snprintf(p, 8192, fmt, a, b);
    return p;
}

/* Starts `lejepa run` with its terminal output in tmp/<name>.out: the tiny
 * model, endpoints work and bc (NULL: ipc sockets in tmp), then extra
 * (NULL-ended, may be NULL). */
static pid_t start_launcher_with(const char *name, const char *steps, const char *work,
                                 const char *bc, const char *const *extra)
{
    static char sets[6][4300];
    char *argv[96];
    int n = 0;
    argv[n++] = xstrdup(testing_program("tools/lejepa"));
    argv[n++] = "run";
    argv[n++] = "--config";
    argv[n++] = path_in("%s/configs/fashion-mnist.ini%s", getenv("LEJEPA_SOURCE_ROOT"), "");
    argv[n++] = "--data";
    argv[n++] = data_dir;
    argv[n++] = "--name";
    argv[n++] = (char *)name;
    argv[n++] = "--loaders";
    argv[n++] = "2";
    argv[n++] = "--workers";
    argv[n++] = "1";
    for (int i = 0; train_tiny_config[i]; i++) {
        argv[n++] = "--set";
        argv[n++] = (char *)train_tiny_config[i];
    }
    snprintf(sets[0], sizeof sets[0], "run.dir=%s/runs", tmp);
    snprintf(sets[1], sizeof sets[1], "run.endpoint=ipc://%s/w-%s", tmp, name);
    snprintf(sets[2], sizeof sets[2], "run.broadcast=ipc://%s/b-%s", tmp, name);
    if (work)
        snprintf(sets[1], sizeof sets[1], "run.endpoint=%s", work);
    if (bc)
        snprintf(sets[2], sizeof sets[2], "run.broadcast=%s", bc);
    snprintf(sets[3], sizeof sets[3], "optim.steps=%s", steps);
    for (int i = 0; i < 4; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    char out[4400];
    snprintf(out, sizeof out, "%s/%s.out", tmp, name);
    return testing_spawn(out, true, argv);
}

static pid_t start_launcher(const char *name, const char *steps)
{
    return start_launcher_with(name, steps, NULL, NULL, NULL);
}

static char *read_rel(const char *rel)
{
    char path[4400], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", tmp, rel);
    char *s = util_read_file(path, NULL, err);
    return s ? s : xstrdup("");
}

/* Whether every line seen had a finite loss. */
static void check_finite(const struct json *j, void *ctx)
{
    int *finite = ctx;
    if (!isfinite(json_number(j, "loss")))
        *finite = 0;
}

static void noop(const struct json *j, void *ctx)
{
    (void)j;
    (void)ctx;
}

static int train_lines(const char *name, int *finite)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/runs/%s/metrics.jsonl", tmp, name);
    *finite = 1;
    return metrics_each(path, "train", check_finite, finite);
}

static int source_lines(const char *name, const char *source)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/runs/%s/metrics.jsonl", tmp, name);
    return metrics_each(path, source, noop, NULL);
}

struct last {
    const char *key;
    double v;
};

static void take_last(const struct json *j, void *ctx)
{
    struct last *l = ctx;
    double v = json_number(j, l->key);
    if (!isnan(v))
        l->v = v;
}

/* The last value of key in the lines of source, or NAN if none. */
static double last_value(const char *name, const char *source, const char *key)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/runs/%s/metrics.jsonl", tmp, name);
    struct last l = {key, NAN};
    metrics_each(path, source, take_last, &l);
    return l.v;
}

/* A PNG under the run directory that loads and is not one flat colour. */
static int png_not_blank(const char *name, const char *file)
{
    char rel[512];
    snprintf(rel, sizeof rel, "%s/runs/%s/%s", tmp, name, file);
    VipsImage *im = vips_image_new_from_file(rel, NULL);
    if (!im) {
        fprintf(stderr, "cannot load %s: %s\n", rel, vips_error_buffer());
        vips_error_clear();
        return 0;
    }
    double dev = 0;
    int ok = vips_deviate(im, &dev, NULL) == 0 && dev > 1.0;
    g_object_unref(im);
    return ok;
}

/* Nothing the launcher started is alive: the pids it printed
 * ("[lejepa] NAME: pid N, ...") and any process naming tmp. */
static void check_nothing_left(const char *out)
{
    int pids = 0;
    for (const char *s = strstr(out, ": pid "); s; s = strstr(s + 1, ": pid ")) {
        pid_t pid = (pid_t)atoi(s + 6);
        CU_ASSERT(pid > 0);
        CU_ASSERT(kill(pid, 0) != 0 && errno == ESRCH);
        pids++;
    }
    CU_ASSERT(pids >= 4);    /* trainer, 2 loaders, monitor */
    DIR *d = opendir("/proc");
    CU_ASSERT_FATAL(d != NULL);
    struct dirent *e;
    int left = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || atoi(e->d_name) == getpid())
            continue;
        char path[300], cmd[8192];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (!cmd[i])
                cmd[i] = ' ';
        cmd[n] = '\0';
        if (strstr(cmd, tmp)) {
            fprintf(stderr, "left running: pid %s: %s\n", e->d_name, cmd);
            left++;
        }
    }
    closedir(d);
    CU_ASSERT_EQUAL(left, 0);
}

/* Whether text holds line as a whole line. */
static bool has_line(const char *text, const char *line, size_t len)
{
    for (const char *s = text; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : NULL)
        if (strncmp(s, line, len) == 0 && (s[len] == '\n' || s[len] == '\0'))
            return true;
    return false;
}

/* Every terminal line "[proc] X" is a line X of proc's log. */
static void check_terminal_in_log(const char *out, const char *proc, const char *log)
{
    char prefix[64];
    int n = snprintf(prefix, sizeof prefix, "[%s] ", proc);
    int missing = 0;
    for (const char *s = out; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : NULL) {
        if (strncmp(s, prefix, (size_t)n) != 0)
            continue;
        size_t len = strcspn(s + n, "\n");
        if (!has_line(log, s + n, len)) {
            fprintf(stderr, "on the terminal, not in %s.log: %.*s\n", proc, (int)len,
                    s + n);
            missing++;
        }
    }
    CU_ASSERT_EQUAL(missing, 0);
}

/* One log per process; the terminal shows lines of those logs, prefixed:
 * with -v (verbose) each log's first line, else (quiet) the trainer's
 * steps but not its config dump nor a loader's WELCOME. */
static void check_logs(const char *name, const char *out, bool verbose)
{
    static const char *const procs[] = {"train", "loader-1", "loader-2", "monitor"};
    for (size_t i = 0; i < sizeof procs / sizeof procs[0]; i++) {
        char rel[512], prefix[64];
        snprintf(rel, sizeof rel, "runs/%s/logs/%s.log", name, procs[i]);
        char *log = read_rel(rel);
        CU_ASSERT(strlen(log) > 0);
        if (!log[0])
            fprintf(stderr, "empty or missing: %s\n", rel);
        check_terminal_in_log(out, procs[i], log);
        snprintf(prefix, sizeof prefix, "[%s] ", procs[i]);
        char *first = xstrdup(log);
        first[strcspn(first, "\n")] = '\0';
        char *want = path_in("%s%s", prefix, first);
        if (verbose)
            CU_ASSERT(strstr(out, want) != NULL);
        free(want);
        free(first);
        if (!verbose && strncmp(procs[i], "loader", 6) == 0) {
            CU_ASSERT_PTR_NOT_NULL(strstr(log, "] welcomed to run "));
            CU_ASSERT_PTR_NULL(strstr(out, "] welcomed to run "));
        }
        if (!verbose && strcmp(procs[i], "train") == 0) {
            CU_ASSERT(has_line(log, "[run]", 5));
            CU_ASSERT_PTR_NULL(strstr(out, "[train] [run]\n"));
            CU_ASSERT_PTR_NOT_NULL(strstr(out, " lejepa-train: step 1/"));
        }
        free(log);
    }
    if (access(testing_program("eval/lejepa-eval"), X_OK) == 0) {
        char rel[512];
        snprintf(rel, sizeof rel, "runs/%s/logs/eval.log", name);
        char *log = read_rel(rel);
        CU_ASSERT(strlen(log) > 0);
        check_terminal_in_log(out, "eval", log);
        /* the evaluator's results are on the quiet terminal too */
        if (!verbose) {
            CU_ASSERT_PTR_NOT_NULL(strstr(out, "] knn (k="));
            CU_ASSERT_PTR_NOT_NULL(strstr(out, "] linear probe: top1 "));
        }
        free(log);
    } else {
        CU_ASSERT(strstr(out, "running without evaluators") != NULL);
    }
}

static void test_run(void)
{
    /* 6 steps of 8 over 32 train images: the final snapshot is in epoch 1 */
    pid_t pid = start_launcher("r", "6");
    int status = testing_wait_exit(pid, RUN_WAIT_S);
    char *out = read_rel("r.out");
    if (status != 0)
        fprintf(stderr, "launcher output:\n%s\n", out);
    CU_ASSERT_EQUAL(status, 0);
    int finite;
    int n = train_lines("r", &finite);
    CU_ASSERT(n >= 1);
    CU_ASSERT(finite);
    check_logs("r", out, false);
    /* The trainer waits for the evaluator's results of the final snapshot
     * before it says BYE, so they reach metrics.jsonl. */
    if (access(testing_program("eval/lejepa-eval"), X_OK) == 0) {
        CU_ASSERT(source_lines("r", "knn") >= 1);
        CU_ASSERT(source_lines("r", "linear") >= 1);
        /* Two classes whose objects differ in brightness: far above the
         * 0.5 of chance even for an encoder trained 4 steps. */
        double knn = last_value("r", "knn", "knn_top1");
        double lin = last_value("r", "linear", "linear_top1");
        double probe = last_value("r", "eval", "probe_acc_val");
        fprintf(stderr, "  knn_top1 %.3f linear_top1 %.3f probe_acc_val %.3f\n",
                knn, lin, probe);
        CU_ASSERT(knn >= 0.75 && knn <= 1.0);
        CU_ASSERT(lin >= 0.0 && lin <= 1.0);
        CU_ASSERT(probe >= 0.0 && probe <= 1.0);
        CU_ASSERT(png_not_blank("r", "segmaps/latest.png"));
        /* evaluators send epoch 0; the trainer logs its snapshot's epoch */
        CU_ASSERT_EQUAL(last_value("r", "knn", "epoch"), 1.0);
        CU_ASSERT_EQUAL(last_value("r", "train", "epoch"), 1.0);
    }
    CU_ASSERT(strstr(out, "[lejepa] summary") != NULL);
    CU_ASSERT(strstr(out, "dashboard.html") != NULL);
    check_nothing_left(out);
    if (status == 0 && CU_get_number_of_failures())
        fprintf(stderr, "launcher output:\n%s\n", out);
    free(out);
}

static void test_sigint(void)
{
    pid_t pid = start_launcher("s", "100000");
    double t0 = util_time_mono();
    int finite = 1;
    while (train_lines("s", &finite) < 2 && util_time_mono() - t0 < LINES_WAIT_S)
        usleep(100000);
    CU_ASSERT(train_lines("s", &finite) >= 2);
    CU_ASSERT_EQUAL(kill(pid, SIGINT), 0);
    int status = testing_wait_exit(pid, RUN_WAIT_S);
    char *out = read_rel("s.out");
    if (status != 0)
        fprintf(stderr, "launcher output:\n%s\n", out);
    CU_ASSERT_EQUAL(status, 0);
    char *latest = read_rel("runs/s/latest");
    latest[strcspn(latest, "\n")] = '\0';
    CU_ASSERT(strncmp(latest, "ckpt-", 5) == 0);
    char rel[600];
    snprintf(rel, sizeof rel, "runs/s/%s", latest);
    char path[5000];
    snprintf(path, sizeof path, "%s/%s", tmp, rel);
    CU_ASSERT(latest[0] && access(path, R_OK) == 0);
    CU_ASSERT(strstr(out, "[lejepa] checkpoint: ") != NULL);
    check_nothing_left(out);
    free(latest);
    free(out);
}

/* A finished run: exit 0, and the trainer's log names CurveZMQ and both
 * loaders (a keyed trainer admits only keyed clients). */
static void check_keyed_run(const char *name, int status, const char *out)
{
    if (status != 0)
        fprintf(stderr, "launcher output:\n%s\n", out);
    CU_ASSERT_EQUAL(status, 0);
    char rel[512];
    snprintf(rel, sizeof rel, "runs/%s/log", name);
    char *log = read_rel(rel);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "(CurveZMQ)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "loader loader-1 joined"));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "loader loader-2 joined"));
    free(log);
    int finite;
    CU_ASSERT(train_lines(name, &finite) >= 1);
    if (access(testing_program("eval/lejepa-eval"), X_OK) == 0)
        CU_ASSERT(source_lines(name, "knn") >= 1);
    snprintf(rel, sizeof rel, "%s/runs/%s/dashboard.html", tmp, name);
    CU_ASSERT_EQUAL(access(rel, R_OK), 0);
    check_nothing_left(out);
}

static const struct keys_allow_entry *allowed(const struct keys_allow *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->e[i].name, name) == 0)
            return &a->e[i];
    return NULL;
}

static void test_keys(void)
{
    char dir[4300], path[4400], text[512], err[ERR_LEN];
    snprintf(dir, sizeof dir, "%s/keys", tmp);
    /* loader-1's pair exists already (reused); a loader on another machine
     * is in the allow-list already (kept) */
    struct keys_pair pre, remote;
    CU_ASSERT_FATAL(keys_generate(&pre, err) == 0);
    CU_ASSERT_FATAL(keys_write_pair(dir, "loader-1", &pre, false, NULL, NULL, err) == 0);
    CU_ASSERT_FATAL(keys_generate(&remote, err) == 0);
    snprintf(path, sizeof path, "%s/allow.txt", dir);
    snprintf(text, sizeof text, KEYS_ALLOW_MAGIC "\nloader remote-1 %s\n",
             remote.public_z85);
    CU_ASSERT_FATAL(util_write_file_atomic(path, text, strlen(text), err) == 0);

    const char *extra[] = {"--keys", dir, "-v", NULL};
    int status = testing_wait_exit(start_launcher_with("k", "6", NULL, NULL, extra),
                                   RUN_WAIT_S);
    char *out = read_rel("k.out");
    check_keyed_run("k", status, out);
    check_logs("k", out, true);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "made trainer loader-2"));

    struct stat st;
    snprintf(path, sizeof path, "%s/trainer.key", dir);
    CU_ASSERT(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    char pub[KEYS_Z85_LEN + 1];
    snprintf(path, sizeof path, "%s/loader-1.pub", dir);
    CU_ASSERT(keys_read_public(path, pub, err) == 0 && strcmp(pub, pre.public_z85) == 0);
    struct keys_allow a;
    snprintf(path, sizeof path, "%s/allow.txt", dir);
    CU_ASSERT_FATAL(keys_allow_load(&a, path, err) == 0);
    const bool eval = access(testing_program("eval/lejepa-eval"), X_OK) == 0;
    CU_ASSERT_EQUAL(a.n, eval ? 5u : 4u);
    const struct keys_allow_entry *e = allowed(&a, "remote-1");
    CU_ASSERT(e && strcmp(e->public_z85, remote.public_z85) == 0);
    e = allowed(&a, "loader-1");
    CU_ASSERT(e && e->role == MSG_ROLE_LOADER && strcmp(e->public_z85, pre.public_z85) == 0);
    e = allowed(&a, "loader-2");
    CU_ASSERT(e && e->role == MSG_ROLE_LOADER);
    e = allowed(&a, "monitor");
    CU_ASSERT(e && e->role == MSG_ROLE_MONITOR);
    if (eval) {
        e = allowed(&a, "eval");
        CU_ASSERT(e && e->role == MSG_ROLE_EVALUATOR);
    }
    keys_allow_free(&a);
    free(out);
}

static void test_bind(void)
{
    /* a port of our own, listening, stands for another run's */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    CU_ASSERT_FATAL(s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                    listen(s, 1) == 0 && getsockname(s, (struct sockaddr *)&sa, &len) == 0);
    int port = ntohs(sa.sin_port);
    char work[64], bc[64], dir[4300], want[128];
    snprintf(work, sizeof work, "tcp://127.0.0.1:%d", port);
    snprintf(bc, sizeof bc, "tcp://127.0.0.1:%d", port == 65535 ? port - 1 : port + 1);
    snprintf(dir, sizeof dir, "%s/keys", tmp);
    const char *extra[] = {"--keys", dir, "--bind", "127.0.0.1", NULL};
    int status = testing_wait_exit(start_launcher_with("b", "6", work, bc, extra),
                                   RUN_WAIT_S);
    close(s);
    char *out = read_rel("b.out");
    check_keyed_run("b", status, out);
    snprintf(want, sizeof want, "port %d is in use (another run?): the work endpoint is "
             "tcp://127.0.0.1:", port);
    const char *said = strstr(out, want);
    CU_ASSERT_PTR_NOT_NULL_FATAL(said);
    int picked = atoi(said + strlen(want));
    CU_ASSERT(picked > 0 && picked != port);
    snprintf(want, sizeof want, "work endpoint tcp://127.0.0.1:%d,", picked);
    char *log = read_rel("runs/b/log");
    CU_ASSERT_PTR_NOT_NULL(strstr(log, want));
    free(log);
    free(out);
}

static void test_resume(void)
{
    int status = testing_wait_exit(start_launcher("u", "3"), RUN_WAIT_S);
    CU_ASSERT_EQUAL_FATAL(status, 0);
    double first = last_value("u", "train", "step");
    /* the run's own config, data and directory: only --resume and --steps.
     * No evaluator: the launcher then sets eval.wait_evaluators=0 over the
     * checkpoint's 1, or the resumed trainer would wait 60 s for one. */
    char run[4300];
    snprintf(run, sizeof run, "%s/runs/u", tmp);
    char *argv[] = {xstrdup(testing_program("tools/lejepa")), "run", "--resume", run,
                    "--steps", "6", "--loaders", "2", "--workers", "1", "--evals", "none",
                    NULL};
    char outp[4400];
    snprintf(outp, sizeof outp, "%s/u2.out", tmp);
    status = testing_wait_exit(testing_spawn(outp, true, argv), RUN_WAIT_S);
    free(argv[0]);
    char *out = read_rel("u2.out");
    if (status != 0)
        fprintf(stderr, "launcher output:\n%s\n", out);
    CU_ASSERT_EQUAL(status, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "[lejepa] resuming from "));
    char *log = read_rel("runs/u/log");
    CU_ASSERT_PTR_NOT_NULL(strstr(log, ", resuming "));
    free(log);
    double last = last_value("u", "train", "step");
    fprintf(stderr, "  train steps: %g, then %g after --resume\n", first, last);
    CU_ASSERT(first >= 1 && last > first);
    check_nothing_left(out);
    free(out);
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"run", test_run},
        {"sigint", test_sigint},
        {"keys", test_keys},
        {"bind", test_bind},
        {"resume", test_resume},
        {NULL, NULL},
    };
    signal(SIGPIPE, SIG_IGN);
    if (VIPS_INIT("test_launcher") != 0)
        return 1;
    tmp = testing_tmpdir();
    snprintf(data_dir, sizeof data_dir, "%s/data", tmp);
    imgdir_make(data_dir, 2, 16, 4, 20, 20, 42);
    int rc = testing_run_named("launcher", all, argc, argv);
    if (!getenv("LEJEPA_KEEP_TMP"))
        testing_rmtree(tmp);
    else
        fprintf(stderr, "kept %s\n", tmp);
    free(tmp);
    return rc;
}
