/*
 * test_quiet.c: the quiet terminal of `lejepa run`. The rule
 * (lejepa_quiet.c) on lines the children really print: progress, results
 * and trouble shown; loader, monitor and connection chatter, and zero
 * counts of failures, hidden. Then a fake child (a shell script) through
 * lejepa_proc.c, with the launcher's stdout in a file: quiet, the terminal
 * gets its warning and step lines but not its chatter; with no filter (-v)
 * every line; its log file gets every line either way, also when it exits
 * non-zero with a last line lacking its newline.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lejepa_proc.h"
#include "lejepa_quiet.h"
#include "testing.h"
#include "util.h"

static char *tmp;

struct case_line {
    const char *line;
    bool shown;
};

static const struct case_line cases[] = {
    /* the trainer's progress and end, results */
    {"13:16:08 lejepa-train: step 1/6 epoch 0 loss 0.22043 probe_acc 0.406 "
     "loaders 2 failures 0 (elapsed 0s, ETA 0s)",
     true},
    {"13:16:08 lejepa-train: epoch 1 starts at step 4: 4 steps of 8", true},
    {"13:16:13 lejepa-train: checkpoint runs/r/ckpt-6.safetensors (step 6)",
     true},
    {"13:16:13 lejepa-train: done at step 6 of 6 (0 bad messages)", true},
    {"13:16:10 lejepa-train: snapshot 6: 40 rows (0 failed), 2 EMBED chunks, "
     "probe_acc_val 0.5000",
     true},
    {"13:16:10 [eval] knn (k=20) on 32 train / 8 val rows: top1 1.0000 (0.0 s)",
     true},
    {"13:16:10 [eval] linear probe: top1 0.8125, lambda 0.1, 56 iterations",
     true},
    {"13:16:10 [eval] segmap of step 6 (8 images) written to x.png: iou 0.4100",
     true},
    /* trouble, in any case, unless counted zero */
    {"13:14:29 lejepa-train: WARNING: --insecure: bound beyond loopback", true},
    {"13:14:29 lejepa-train: refused loader l9: dataset fingerprint differs",
     true},
    {"13:14:29 [loader-1] cannot connect: no route; retrying in 1.0 s", true},
    {"Error: disk full", true},
    {"[loader-2] ticket 12: sample 3 (train/c0/001.png) failed: bad PNG", true},
    {"[loader-1] serving: 40 tickets served, 120.0 samples/s, 3 failures, "
     "0 held",
     true},
    {"step 6 epoch 1 train loss=0.24 failures=10 samples=8", true},
    {"[loader-1] serving: 40 tickets served, 10 failures", true},
    /* chatter */
    {"[loader-1] serving: 40 tickets served, 120.0 samples/s, 0 failures, "
     "0 held, 1 busy, 0 malformed",
     false},
    {"[loader-1] exiting: 13 tickets served, 52 samples, 0 failures", false},
    {"13:14:29 [loader-1] dataset /d: 2 classes, 32 train, 8 val", false},
    {"13:14:29 lejepa-train: loader loader-2 joined (pid 1, credit 2)", false},
    {"13:14:29 [loader-2] welcomed to run r as client 1", false},
    {"13:14:35 lejepa-train: loader-1 was sent BYE", false},
    {"13:16:10 [eval] scoring snapshot 6 at step 6 (32 train, 8 val rows)",
     false},
    {"lejepa-monitor: connecting to ipc:///tmp/w", false},
    {"13:16:10 step 6 epoch 1 train loss=0.2445 failures=0 refused=0", false},
    {"13:16:10 step 6 epoch 1 knn knn_top1=1", false},
    {"13:16:10 step 6 epoch 1 eval probe_acc_val=0.5 eval_rows=40", false},
    {"[run]", false},
    {"name = r", false},
    {"", false},
};

static void test_rule(void)
{
    int wrong = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s = cases[i].line;
        if (run_line_shown(s, strlen(s)) != cases[i].shown) {
            fprintf(stderr, "%s: %s\n", cases[i].shown ? "hidden" : "shown", s);
            wrong++;
        }
    }
    CU_ASSERT_EQUAL(wrong, 0);
    /* only len bytes are the line (lejepa_proc's buffer has no NUL) */
    const char *s = "chatter here; warning";
    CU_ASSERT_FALSE(run_line_shown(s, strlen("chatter here")));
    CU_ASSERT_TRUE(run_line_shown(s, strlen(s)));
}

#define CHILD_SCRIPT                                                           \
    "printf '[loader-1] serving: 10 tickets served, 0 failures\\n'; "          \
    "printf 'warning: disk almost full\\n'; "                                  \
    "printf 'client x joined\\n'; "                                            \
    "printf 'lejepa-train: step 1/2 loss 0.5\\n'; "                            \
    "printf 'last words'; exit 3"
#define CHILD_LOG                                                              \
    "[loader-1] serving: 10 tickets served, 0 failures\n"                      \
    "warning: disk almost full\nclient x joined\n"                             \
    "lejepa-train: step 1/2 loss 0.5\nlast words\n"

/* Runs the fake child to its end with filter shown, the process's stdout
 * in a file. Returns what reached that stdout (caller frees); its log in
 * *log, its exit status in *status. */
static char *run_child(proc_filter shown, const char *name, char **log,
                       int *status)
{
    char out_path[4400], log_path[4400], err[ERR_LEN];
    snprintf(out_path, sizeof out_path, "%s/%s.out", tmp, name);
    snprintf(log_path, sizeof log_path, "%s/%s.log", tmp, name);
    int wake[2];
    CU_ASSERT_FATAL(pipe(wake) == 0);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CU_ASSERT_FATAL(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    CU_ASSERT_FATAL(saved >= 0 && dup2(fd, 1) == 1);
    close(fd);
    char *argv[] = {"/bin/sh", "-c", CHILD_SCRIPT, NULL};
    struct proc p;
    int rc = proc_start(&p, "fake", argv, log_path, shown, err);
    while (rc == 0 && (p.running || p.fd >= 0)) {
        proc_pump(&p, 1, wake[0], 100);
        proc_reap(&p);
    }
    if (rc == 0)
        proc_close(&p);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(wake[0]);
    close(wake[1]);
    CU_ASSERT_EQUAL(rc, 0);
    *status = rc == 0 ? p.status : -1;
    *log = util_read_file(log_path, NULL, err);
    if (!*log)
        *log = xstrdup("");
    char *out = util_read_file(out_path, NULL, err);
    return out ? out : xstrdup("");
}

static void test_child_quiet(void)
{
    char *log;
    int status;
    char *out = run_child(run_line_shown, "quiet", &log, &status);
    CU_ASSERT_EQUAL(status, 3);
    CU_ASSERT_STRING_EQUAL(log, CHILD_LOG);
    /* the chatter and the unfinished last line stay in the log */
    const char *want = "[fake] warning: disk almost full\n"
                       "[fake] lejepa-train: step 1/2 loss 0.5\n";
    CU_ASSERT_STRING_EQUAL(out, want);
    if (strcmp(out, want) != 0)
        fprintf(stderr, "quiet terminal:\n%s\n", out);
    free(out);
    free(log);
}

static void test_child_verbose(void)
{
    char *log;
    int status;
    char *out = run_child(NULL, "verbose", &log, &status);
    CU_ASSERT_EQUAL(status, 3);
    CU_ASSERT_STRING_EQUAL(log, CHILD_LOG);
    CU_ASSERT_STRING_EQUAL(
        out,
        "[fake] [loader-1] serving: 10 tickets served, 0 failures\n"
        "[fake] warning: disk almost full\n"
        "[fake] client x joined\n"
        "[fake] lejepa-train: step 1/2 loss 0.5\n"
        "[fake] last words\n");
    free(out);
    free(log);
}

int main(void)
{
    static const struct testing_case all[] = {
        {"rule", test_rule},
        {"child_quiet", test_child_quiet},
        {"child_verbose", test_child_verbose},
        {NULL, NULL},
    };
    tmp = testing_tmpdir();
    int rc = testing_run("quiet", all);
    testing_rmtree(tmp);
    free(tmp);
    return rc;
}
