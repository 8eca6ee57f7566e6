/*
 * testing.c: shared CUnit plumbing (see testing.h). The exit status of every
 * test program comes from CU_get_number_of_failures(), never from printing.
 */
#define _XOPEN_SOURCE 700
#include "testing.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

int testing_run(const char *suite_name, const struct testing_case *cases)
{
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "CUnit: cannot initialise the registry\n");
        return 1;
    }
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    if (!suite) {
        fprintf(stderr, "CUnit: cannot add suite %s\n", suite_name);
        CU_cleanup_registry();
        return 1;
    }
    for (const struct testing_case *c = cases; c->name; c++) {
        if (!CU_add_test(suite, c->name, c->fn)) {
            fprintf(stderr, "CUnit: cannot add test %s\n", c->name);
            CU_cleanup_registry();
            return 1;
        }
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures();
    unsigned tests_failed = CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return (failed || tests_failed) ? 1 : 0;
}

int testing_run_named(const char *suite_name, const struct testing_case *cases,
                      int argc, char **argv)
{
    if (argc < 2)
        return testing_run(suite_name, cases);
    for (const struct testing_case *c = cases; c->name; c++)
        if (strcmp(c->name, argv[1]) == 0) {
            struct testing_case one[2] = {*c, {NULL, NULL}};
            return testing_run(suite_name, one);
        }
    fprintf(stderr, "%s: no case '%s'\n", suite_name, argv[1]);
    return 2;
}

void testing_put_file(const char *root, const char *rel, const void *data,
                      size_t len)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    /* its folders, one by one (those that exist stay) */
    for (char *p = path + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        CU_ASSERT_FATAL(mkdir(path, 0755) == 0 || errno == EEXIST);
        *p = '/';
    }
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
    CU_ASSERT_EQUAL(fclose(f), 0);
}

const char *testing_fixture(const char *name)
{
    static char path[4096];
    const char *root = getenv("LEJEPA_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", root ? root : ".", name);
    if (access(path, R_OK) == 0)
        return path;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "fixture %s is missing and CI=true: failing\n", path);
        exit(1);
    }
    fprintf(stderr, "fixture %s is missing: skipping (regenerate it with the "
                    "script in tools/ that writes it)\n", path);
    exit(77);
}

const char *testing_program(const char *rel)
{
    static char path[4096];
    const char *build = getenv("LEJEPA_BUILD_ROOT");
    if (!build) {
        fprintf(stderr, "LEJEPA_BUILD_ROOT is not set: run tests with meson test\n");
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s", build, rel);
    return path;
}

int testing_run_program(const char *rel, const char *args, char *out,
                        size_t cap)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", testing_program(rel), args);
    FILE *p = popen(cmd, "r");
    if (!p) {
        perror("popen");
        exit(1);
    }
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    /* Drain the rest so the child never blocks on a full pipe. */
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0)
        ;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

char *testing_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/lejepa-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        exit(1);
    }
    return strdup(tmpl);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void testing_rmtree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t testing_rand_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double testing_rand_uniform(uint64_t *state)
{
    return (double)(testing_rand_u64(state) >> 11) * 0x1.0p-53;
}

double testing_rand_normal(uint64_t *state)
{
    double u1 = testing_rand_uniform(state), u2 = testing_rand_uniform(state);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

pid_t testing_spawn(const char *log, bool truncate, char **argv)
{
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | (truncate ? O_TRUNC : O_APPEND), 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int testing_wait_idle(pid_t pid, double timeout, void (*idle)(void *ctx),
                      void *ctx)
{
    double end = now_mono() + timeout;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (now_mono() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        if (idle)
            idle(ctx);
        else
            usleep(10000);
    }
}

int testing_wait_exit(pid_t pid, double timeout)
{
    return testing_wait_idle(pid, timeout, NULL, NULL);
}
