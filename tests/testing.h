/*
 * testing.h: the few helpers every CUnit suite shares: run one suite and turn
 * its failures into the exit status, find committed fixtures (a missing one
 * skips with 77 on a developer's machine and fails when CI=true), and a
 * seeded generator for test inputs.
 */
#ifndef LEJEPA_TESTING_H
#define LEJEPA_TESTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <CUnit/CUnit.h>

struct testing_case {
    const char *name;
    void (*fn)(void);
};

/* Runs the cases (terminated by {NULL, NULL}) as one suite; returns the
 * process exit status: 0 when all pass, 1 on any failure. */
int testing_run(const char *suite, const struct testing_case *cases);
/* testing_run, or with argv[1] only the case of that name (meson runs
 * each case as a test of its own); an unknown name exits 2. */
int testing_run_named(const char *suite, const struct testing_case *cases,
                      int argc, char **argv);

/* Writes root/rel (making its folders) with len bytes of data (a fatal
 * CUnit failure when it cannot). */
void testing_put_file(const char *root, const char *rel, const void *data,
                      size_t len);

/* Path of a committed fixture under tests/fixtures/ (from the source tree,
 * via the LEJEPA_SOURCE_ROOT environment set by meson). A missing fixture
 * exits the process: 77 (skip) normally, 1 when CI=true. Returns a static
 * buffer, valid until the next call. */
const char *testing_fixture(const char *name);

/* Fresh temporary directory under $TMPDIR (caller removes it with
 * testing_rmtree). Returns a malloc'd path; the caller frees it. */
char *testing_tmpdir(void);
void testing_rmtree(const char *path);

/* Path of a program built by meson, from its path relative to the build
 * root (e.g. "tools/lejepa-prep"), via LEJEPA_BUILD_ROOT. Static buffer. */
const char *testing_program(const char *rel);

/* Runs "PROGRAM ARGS" (PROGRAM relative to the build root; ARGS is shell
 * text) with stderr merged into out (cap bytes, NUL-terminated); returns the
 * exit status, or -1 when it did not exit normally. */
int testing_run_program(const char *rel, const char *args, char *out,
                        size_t cap);

/* Forks argv[0] (NULL-ended argv) with stdout and stderr in log, appended to
 * or (truncate) replacing it. */
pid_t testing_spawn(const char *log, bool truncate, char **argv);

/* Waits up to timeout seconds for pid, calling idle(ctx) between checks
 * (or sleeping 10 ms when idle is NULL); idle must return within a few tens
 * of ms. Returns the exit status (128 + signal when killed), or -1 after
 * killing it with SIGKILL on timeout. */
int testing_wait_idle(pid_t pid, double timeout, void (*idle)(void *ctx),
                      void *ctx);
int testing_wait_exit(pid_t pid, double timeout);   /* idle = NULL */

/* splitmix64-based generator for seeded test inputs. */
uint64_t testing_rand_u64(uint64_t *state);
double testing_rand_uniform(uint64_t *state);   /* [0, 1) */
double testing_rand_normal(uint64_t *state);    /* N(0, 1) */

#endif
