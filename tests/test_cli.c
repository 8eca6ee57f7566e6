/*
 * test_cli.c: what a user sees of the programs before any training: one
 * meson test per case.
 *   prefix    every program's errors start with its own name (lejepa-train:,
 *             lejepa-loader:, ...), exit status 2
 *   connect   a --connect without tcp:// (or without a port) is refused at
 *             once by loader, eval and monitor, exit 2, with the endpoint
 *             they probably meant
 *   comm      after re-executing itself with OMP_WAIT_POLICY=passive,
 *             lejepa-train and lejepa-eval still show their own names in
 *             /proc/PID/comm (ps, top), not "exe"
 *   run_args  lejepa run refuses --bind beyond loopback without --keys or
 *             --insecure, and --insecure without --bind, before starting
 *             anything
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testing.h"
#include "util.h"

#define START_WAIT_S 20.0 /* a program re-executing itself */
#define STOP_WAIT_S 20.0

static char *tmp;

/* Runs PROGRAM ARGS; checks the exit status and that the output starts
 * with want_prefix and holds want (may be NULL). */
static void expect(const char *prog, const char *args, int status,
                   const char *want_prefix, const char *want)
{
    char out[8192];
    int rc = testing_run_program(prog, args, out, sizeof out);
    bool ok = rc == status &&
        strncmp(out, want_prefix, strlen(want_prefix)) == 0 &&
        (!want || strstr(out, want));
    if (!ok)
        fprintf(stderr, "%s %s: exit %d (want %d), output:\n%s\n", prog, args,
                rc, status, out);
    CU_ASSERT_EQUAL(rc, status);
    CU_ASSERT_EQUAL(strncmp(out, want_prefix, strlen(want_prefix)), 0);
    if (want)
        CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
}

static void test_prefix(void)
{
    expect("trainer/lejepa-train", "--steps x", 2,
           "lejepa-train: ", "optim.steps");
    expect("trainer/lejepa-train", "surplus", 2,
           "lejepa-train: ", "unexpected argument");
    expect("loaders/lejepa-loader", "--connect tcp://127.0.0.1:5555", 2,
           "lejepa-loader: ", "--data is required");
    expect("eval/lejepa-eval", "--train a", 2, "lejepa-eval: ", "--val PREFIX");
    expect("tools/lejepa-monitor", "--every 0", 2,
           "lejepa-monitor: ", "--every");
    expect("tools/lejepa", "run --loaders 0", 2, "lejepa: ", "run --loaders");
    expect("tools/lejepa-stat", "/nonexistent.npy", 2, "lejepa-stat: ", NULL);
}

static void test_connect(void)
{
    static const char *const progs[] = {
        "loaders/lejepa-loader --data /nonexistent", "eval/lejepa-eval",
        "tools/lejepa-monitor"};
    static const char *const names[] = {
        "lejepa-loader: ", "lejepa-eval: ", "lejepa-monitor: "};
    for (int i = 0; i < 3; i++) {
        char prog[128], args[512];
        const char *sp = strchr(progs[i], ' ');
        snprintf(prog, sizeof prog, "%.*s", sp ? (int)(sp - progs[i]) : 100,
                 progs[i]);
        const char *extra = sp ? sp + 1 : "";
        snprintf(args, sizeof args, "%s --connect 127.0.0.1:5555", extra);
        expect(prog, args, 2, names[i], "did you mean tcp://127.0.0.1:5555?");
        snprintf(args, sizeof args, "%s --connect tcp://trainer-host", extra);
        expect(prog, args, 2, names[i],
               "did you mean tcp://trainer-host:5555?");
        snprintf(args, sizeof args, "%s --connect 'tcp://*:6000'", extra);
        expect(prog, args, 2, names[i], "did you mean tcp://127.0.0.1:6000?");
        snprintf(args, sizeof args, "%s --connect tcp://host:port", extra);
        expect(prog, args, 2, names[i], "not a number in 1..65535");
    }
    /* a well-formed endpoint passes: the loader goes on to its dataset */
    expect("loaders/lejepa-loader",
           "--connect tcp://127.0.0.1:5555 --data /nonexistent", 2,
           "lejepa-loader: ", "/nonexistent");
}

/* /proc/PID/comm without its newline into out. */
static void read_comm(pid_t pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (f) {
        if (!fgets(out, (int)cap, f))
            out[0] = '\0';
        fclose(f);
    }
    out[strcspn(out, "\n")] = '\0';
}

/* Whether pid's environment holds OMP_WAIT_POLICY=passive: set by the
 * program for its re-exec, so seen only once the re-exec happened. */
static bool reexecuted(pid_t pid)
{
    char path[64], buf[65536];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < n;) {
        if (strcmp(buf + i, "OMP_WAIT_POLICY=passive") == 0)
            return true;
        i += strlen(buf + i) + 1;
    }
    return false;
}

/* Starts argv, waits for its re-exec and checks its comm is want. */
static void check_comm(char **argv, const char *want)
{
    char log[4200];
    snprintf(log, sizeof log, "%s/%s.log", tmp, want);
    pid_t pid = testing_spawn(log, true, argv);
    double t0 = util_time_mono();
    while (!reexecuted(pid) && util_time_mono() - t0 < START_WAIT_S)
        usleep(20000);
    CU_ASSERT(reexecuted(pid));
    char comm[64];
    read_comm(pid, comm, sizeof comm);
    if (strcmp(comm, want) != 0)
        fprintf(stderr, "pid %d: comm '%s', want '%s'\n", (int)pid, comm, want);
    CU_ASSERT_STRING_EQUAL(comm, want);
    kill(pid, SIGTERM);
    CU_ASSERT(testing_wait_exit(pid, STOP_WAIT_S) >= 0);
}

static void test_comm(void)
{
    /* the programs re-execute only when the user set no policy */
    unsetenv("OMP_WAIT_POLICY");
    char out[4200], work[4200], bc[4200], train[4200], eval[4200];
    snprintf(train, sizeof train, "%s",
             testing_program("trainer/lejepa-train"));
    snprintf(eval, sizeof eval, "%s", testing_program("eval/lejepa-eval"));
    snprintf(out, sizeof out, "%s/runs", tmp);
    snprintf(work, sizeof work, "run.endpoint=ipc://%s/w", tmp);
    snprintf(bc, sizeof bc, "run.broadcast=ipc://%s/b", tmp);
    /* no --data and no loader: it waits for one */
    char *t[] = {train,   "--out", out,     "--name", "comm",
                 "--set", work,    "--set", bc,       NULL};
    check_comm(t, "lejepa-train");
    char ep[4200];
    snprintf(ep, sizeof ep, "ipc://%s/w", tmp);
    char *e[] = {eval, "--connect", ep, "--tasks", "knn", NULL};
    check_comm(e, "lejepa-eval");
}

static void test_run_args(void)
{
    expect("tools/lejepa", "run --bind 0.0.0.0", 2,
           "lejepa: run: ", "--keys DIR");
    expect("tools/lejepa", "run --insecure", 2, "lejepa: run: ", "--bind");
    char args[4400];
    snprintf(args, sizeof args, "run --resume %s/none", tmp);
    expect("tools/lejepa", args, 2, "lejepa: run: --resume", NULL);
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"prefix", test_prefix},
        {"connect", test_connect},
        {"comm", test_comm},
        {"run_args", test_run_args},
        {NULL, NULL},
    };
    tmp = testing_tmpdir();
    int rc = testing_run_named("cli", all, argc, argv);
    testing_rmtree(tmp);
    free(tmp);
    return rc;
}
