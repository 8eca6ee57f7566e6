/*
 * util.h: the small helpers every program shares: the always-on CHECK macro,
 * the caller-owned error buffer convention, allocation that fails loudly,
 * atomic file writes and the build/BLAS report behind every --version.
 * Nothing here knows about messages, models or datasets.
 */
#ifndef LEJEPA_UTIL_H
#define LEJEPA_UTIL_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Recoverable errors return -1 and write a reason into a caller-owned buffer
 * of this size; the function that detects the error writes it, callers pass
 * the buffer on. */
#define ERR_LEN 256

/* Invariants: always on, unlike assert(). Prints file:line and aborts. */
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            util_check_failed(__FILE__, __LINE__, #cond);                    \
    } while (0)

void util_check_failed(const char *file, int line, const char *expr)
    __attribute__((noreturn));

/* Writes a printf-style message into err (ERR_LEN bytes, may be NULL) and
 * returns -1, so detectors can write `return errf(err, "...", ...);`. */
int errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The name errors start with: util_set_program's (its last path part),
 * else the program's own (program_invocation_short_name: lejepa-train,
 * lejepa-loader, ...). */
void util_set_program(const char *name);
const char *util_program(void);

/* Start-up failures: print "PROGRAM: <message>" to stderr and exit(2). */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Allocation that exits with a message on failure; the caller frees with
 * free() (xmalloc, xcalloc, xstrdup) or util_free_aligned (xmalloc_aligned). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned, zeroed; free with util_free_aligned(). From
 * UTIL_HUGE_PAGE bytes up, aligned to it and backed by transparent huge
 * pages where the kernel grants them (LEJEPA_HUGEPAGES=0: never asked). */
#define UTIL_HUGE_PAGE ((size_t)2 << 20)
void *xmalloc_aligned(size_t n);
void util_free_aligned(void *p);

/* Seconds since the Unix epoch / since an arbitrary monotonic origin. */
double util_time_unix(void);
double util_time_mono(void);

/* A file written atomically: data goes to path.tmp.<pid>; commit fsyncs it,
 * renames it over path and fsyncs the directory, so readers see the old file
 * or the new one, never a part. Every call returns 0, or -1 with the reason
 * in err, after which the temp file is already removed. */
struct atomic_file {
    int fd;
    char path[4096];
    char tmp[4160];
};
int util_atomic_open(struct atomic_file *f, const char *path, char *err);
int util_atomic_write(struct atomic_file *f, const void *data, size_t len,
                      char *err);
int util_atomic_commit(struct atomic_file *f, char *err);
/* Drops an open atomic file (the target is left untouched). */
void util_atomic_abort(struct atomic_file *f);

/* The whole of data as one atomic file. */
int util_write_file_atomic(const char *path, const void *data, size_t len,
                           char *err);

/* A file made by a renderer: render(out, ctx) writes into memory, then the
 * whole text is written atomically to path (util_write_file_atomic), so a
 * reader never sees half a page. 0, or -1 with err naming path. */
int util_write_rendered(const char *path, void (*render)(FILE *out, void *ctx),
                        void *ctx, char *err);

/* Reads a whole file into a malloc'd buffer (NUL-terminated, caller frees);
 * returns NULL with the reason in err. */
char *util_read_file(const char *path, size_t *len, char *err);

/* Locks a run directory for this process: flock(LOCK_EX | LOCK_NB) on
 * dir/.lock (created if absent), into which the holder's pid is written.
 * Keep *fd open for the process lifetime; the kernel drops the lock when
 * the process exits however it exits, so a crash leaves no stale lock.
 * The fd is close-on-exec, but a fork()ed child shares the lock while it
 * lives. Returns 0, or -1 with a message naming dir and, when the file
 * says, the holder's pid. */
int util_lock_dir(const char *dir, int *fd, char *err);

/* Creates a directory and its parents (mode 0755); 0 or -1 with err. */
int util_mkdir_p(const char *path, char *err);

/* A command-line integer: opt's value s must be a whole number in
 * [lo, hi]; anything else dies naming the option and the value. */
long util_parse_long(const char *opt, const char *s, long lo, long hi);

/* Log lines of the long-running programs: "HH:MM:SS [name] message" on
 * stderr, name set once (e.g. the loader's --name). */
void util_log_set_name(const char *name);
void util_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints the program's version line (--version); programs that compute add
 * their BLAS and threads with compute_print_build_info (eval/compute). */
void util_print_build_info(FILE *out, const char *program);

/* Stop signals of a long-running program: SIGINT and SIGTERM handlers that
 * only count the signal and write one byte to a non-blocking, close-on-exec
 * self-pipe (the main loop polls its read end, so no work happens in the
 * handler); SIGPIPE is ignored. Call once; returns the read end. */
int util_stop_signals_init(void);
/* The self-pipe's read end (-1 before init). */
int util_stop_fd(void);
/* The count of stop signals so far (the handler's only state). */
volatile sig_atomic_t *util_stop_signals(void);
/* Reads the self-pipe empty; returns how many bytes (signals) it held. */
int util_stop_drain(void);

#endif
