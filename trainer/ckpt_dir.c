/*
 * ckpt_dir.c: a run directory's checkpoints as a whole (see ckpt.h): which
 * one to resume from when `latest` or the newest file is damaged, and the
 * temp files an interrupted atomic write leaves behind. It only reads and
 * verifies checkpoints and removes dead processes' temp files; writing
 * `latest` and rotating checkpoints belong to train_ckpt.c.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "util.h"

bool ckpt_step_of_name(const char *name, uint64_t *step)
{
    const char *prefix = "ckpt-", *suffix = ".safetensors";
    size_t len = strlen(name), np = strlen(prefix), ns = strlen(suffix);
    if (len <= np + ns || strncmp(name, prefix, np) != 0 ||
        strcmp(name + len - ns, suffix) != 0)
        return false;
    if (name[np] == '0' && len - ns - np > 1)
        return false;
    uint64_t v = 0;
    for (const char *p = name + np; p < name + len - ns; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *step = v;
    return true;
}

/* Appends to a note of CKPT_NOTE_LEN bytes (silently truncated: a note
 * is for people, and its start says the most). */
__attribute__((format(printf, 2, 3)))
static void note_add(char *note, const char *fmt, ...)
{
    size_t n = strlen(note);
    if (n + 1 >= CKPT_NOTE_LEN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note + n, CKPT_NOTE_LEN - n, fmt, ap);
    va_end(ap);
}

/* The file `latest` names, as a path: its first line (a bare file name in
 * run_dir, as train_ckpt.c writes it) or, for a symlink, its target. */
static int read_latest(const char *run_dir, char *out, size_t len, char *err)
{
    char lpath[4200], name[4096];
    snprintf(lpath, sizeof lpath, "%s/latest", run_dir);
    struct stat st;
    if (lstat(lpath, &st) != 0)
        return errf(err, "%s: %s", lpath, strerror(errno));
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(lpath, name, sizeof name - 1);
        if (n <= 0)
            return errf(err, "%s: unreadable symlink: %s", lpath,
                        n < 0 ? strerror(errno) : "empty");
        name[n] = '\0';
    } else {
        FILE *f = fopen(lpath, "r");
        if (!f)
            return errf(err, "%s: %s", lpath, strerror(errno));
        /* A corrupt `latest` may be any size: only its first line counts. */
        char *line = fgets(name, sizeof name, f);
        fclose(f);
        if (!line)
            return errf(err, "%s: empty", lpath);
        name[strcspn(name, "\r\n")] = '\0';
        if (!name[0] || strchr(name, '/'))
            return errf(err, "%s: expected a checkpoint file name, found '%.64s'",
                        lpath, name);
    }
    int n = name[0] == '/' ? snprintf(out, len, "%s", name)
                           : snprintf(out, len, "%s/%s", run_dir, name);
    if (n < 0 || (size_t)n >= len)
        return errf(err, "%s: the path it names is too long", lpath);
    return 0;
}

static int cmp_u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The steps of run_dir's ckpt-<step>.safetensors files, newest first
 * (malloc'd, caller frees; NULL with err if the directory is unreadable). */
uint64_t *ckpt_list_steps(const char *run_dir, size_t *n, char *err)
{
    DIR *dir = opendir(run_dir);
    if (!dir) {
        errf(err, "%s: cannot list: %s", run_dir, strerror(errno));
        return NULL;
    }
    uint64_t *steps = xmalloc(16 * sizeof *steps);
    size_t cap = 16;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        uint64_t step;
        if (!ckpt_step_of_name(e->d_name, &step))
            continue;
        if (*n == cap) {
            cap *= 2;
            steps = xrealloc(steps, cap * sizeof *steps);
        }
        steps[(*n)++] = step;
    }
    closedir(dir);
    qsort(steps, *n, sizeof *steps, cmp_u64_desc);
    return steps;
}

/* Verifies candidate; on success copies it to path and adds the version-1
 * warning (if any) to note. */
static int try_candidate(const char *cand, char *path, size_t len, char *note,
                         char *why)
{
    char vnote[CKPT_NOTE_LEN];
    int v = ckpt_verify(cand, vnote, why);
    if (v < 0)
        return -1;
    if (strlen(cand) >= len)
        return errf(why, "%s: path longer than the caller's buffer", cand);
    memcpy(path, cand, strlen(cand) + 1);
    if (v == 1)
        note_add(note, "%s%s", note[0] ? "; " : "", vnote);
    return 0;
}

int ckpt_find_newest_valid(const char *run_dir, char *path, size_t len,
                           char *note, char *err)
{
    note[0] = '\0';
    char cand[4200], why[ERR_LEN], latest[4200] = "";
    if (read_latest(run_dir, latest, sizeof latest, why) != 0)
        note_add(note, "no usable `latest` (%s)", why);
    else if (try_candidate(latest, path, len, note, why) == 0)
        return 0;
    else
        note_add(note, "`latest` names a checkpoint that does not verify (%s)", why);
    size_t n = 0;
    uint64_t *steps = ckpt_list_steps(run_dir, &n, err);
    if (!steps)
        return -1;
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        snprintf(cand, sizeof cand, "%s/ckpt-%" PRIu64 ".safetensors", run_dir,
                 steps[i]);
        if (strcmp(cand, latest) == 0)
            continue;
        if (try_candidate(cand, path, len, note, why) == 0) {
            note_add(note, "; using %s, the newest checkpoint that verifies", cand);
            rc = 0;
            break;
        }
        note_add(note, "; skipped %s (%s)", cand, why);
    }
    free(steps);
    if (rc != 0)
        errf(err, "%s: no checkpoint verifies (%zu ckpt-<step>.safetensors "
             "files): %.160s", run_dir, n, note);
    return rc;
}

int ckpt_resolve(const char *arg, char *path, size_t len, char *note,
                 char *err)
{
    note[0] = '\0';
    struct stat st;
    if (stat(arg, &st) != 0)
        return errf(err, "%s: %s", arg, strerror(errno));
    char dir[4096];
    const char *base = strrchr(arg, '/');
    base = base ? base + 1 : arg;
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof dir, "%s", arg);
    } else if (strcmp(base, "latest") == 0) {
        /* RUN/latest stands for its run directory */
        snprintf(dir, sizeof dir, "%.*s",
                 base > arg ? (int)(base - arg - 1) : 1, base > arg ? arg : ".");
    } else {
        if ((size_t)snprintf(path, len, "%s", arg) >= len)
            return errf(err, "%s: path too long", arg);
        return 0;
    }
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    return ckpt_find_newest_valid(dir, path, len, note, err);
}

/* The pid of a temp file name "<anything>.tmp.<pid>" (util_atomic_open),
 * or 0 for any other name. */
static pid_t tmp_pid(const char *name)
{
    const char *tag = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp."))
        tag = p;
    if (!tag || tag == name || !tag[5])
        return 0;
    long v = 0;
    for (const char *p = tag + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT_MAX - 9) / 10)
            return 0;
        v = v * 10 + (*p - '0');
    }
    return (pid_t)v;
}

int ckpt_remove_stale_tmp(const char *run_dir, int *removed, char *err)
{
    *removed = 0;
    DIR *dir = opendir(run_dir);
    if (!dir)
        return errf(err, "%s: cannot list: %s", run_dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        pid_t pid = tmp_pid(e->d_name);
        if (pid <= 0 || pid == getpid())
            continue;
        /* EPERM: alive, another user's. Only ESRCH proves the writer gone. */
        if (kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", run_dir, e->d_name);
        if (unlink(path) == 0)
            (*removed)++;
        else if (errno != ENOENT && rc == 0)
            rc = errf(err, "%s: cannot remove stale temp file: %s", path,
                      strerror(errno));
    }
    closedir(dir);
    return rc;
}
