/*
 * loader_work.c: the parent side of the decode workers (loader_work.h).
 * Each worker is this program re-executed in worker mode (fork + exec of
 * /proc/self/exe, so the child starts clean: no ZeroMQ threads or sockets
 * inherited, libvips initialised in the child only) talking over a
 * socketpair: the parent writes a struct work_job, the child answers a
 * struct work_reply and its body. A worker that closes its pipe (crash) or
 * overruns the timeout (hang; it is killed) fails its one sample and is
 * replaced. This file never touches libvips or ZeroMQ sockets.
 */
#include "loader_work.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loader.h"

/* A worker that fails to start is retried after this delay. */
#define WORK_RESPAWN_DELAY_S 1.0
/* The fd number a worker finds its pipe on. */
#define WORK_CHILD_FD 3

enum worker_state { WORKER_DEAD, WORKER_STARTING, WORKER_IDLE, WORKER_BUSY };

struct worker {
    enum worker_state state;
    pid_t pid;
    int fd;                     /* parent's end of the socketpair */
    double start;               /* job start / spawn time (monotonic s) */
    double retry_at;            /* DEAD: when to try spawning again */
    uint64_t tag;               /* BUSY: the job's tag, index and size */
    uint64_t index;
    size_t expect;
    char path[WORK_PATH_MAX];
};

struct work_pool {
    int n;
    double timeout_s;
    long memory_mb;             /* RLIMIT_AS of each worker; 0: none */
    struct worker *w;
};

int work_read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int work_write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int work_views_check(const struct config_views *v, char *err)
{
    if (v->channels != 1 && v->channels != 3)
        return errf(err, "views.channels = %lld", (long long)v->channels);
    if (v->global_count < 1 || v->global_count > WORK_VIEWS_MAX || v->local_count < 0 ||
        v->local_count > WORK_VIEWS_MAX)
        return errf(err, "view counts %lld/%lld out of range",
                    (long long)v->global_count, (long long)v->local_count);
    if (v->global_size < 1 || v->global_size > 4096 || v->local_size < 1 ||
        v->local_size > 4096)
        return errf(err, "view sizes %lld/%lld out of range",
                    (long long)v->global_size, (long long)v->local_size);
    return 0;
}

size_t work_sample_bytes(const struct work_job *j)
{
    const struct config_views *v = &j->views;
    size_t g = (size_t)(v->channels * v->global_size * v->global_size);
    if (j->work == MSG_WORK_EVAL)
        return g;
    size_t l = (size_t)(v->channels * v->local_size * v->local_size);
    return (size_t)(v->global_count + (j->eval_view != 0)) * g +
           (size_t)v->local_count * l;
}

static void worker_spawn(struct worker *w, long memory_mb)
{
    int sv[2];
    w->state = WORKER_DEAD;
    w->retry_at = util_time_mono() + WORK_RESPAWN_DELAY_S;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        loader_log("worker: socketpair: %s", strerror(errno));
        return;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        loader_log("worker: fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        if (sv[1] == WORK_CHILD_FD)
            fcntl(WORK_CHILD_FD, F_SETFD, 0);
        else if (dup2(sv[1], WORK_CHILD_FD) < 0)
            _exit(126);
        syscall(SYS_close_range, WORK_CHILD_FD + 1, ~0U, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* The limit survives exec; setrlimit is a bare system call. An
         * allocation past it fails (libvips reports "out of memory", glib
         * aborts): either way one sample fails and the worker is replaced. */
        if (memory_mb > 0) {
            rlim_t bytes = (rlim_t)memory_mb << 20;
            struct rlimit rl = {bytes, bytes};
            if (setrlimit(RLIMIT_AS, &rl) != 0)
                _exit(125);
        }
        if (getppid() != parent)
            _exit(0);
        execl("/proc/self/exe", "lejepa-loader", "--worker", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    w->pid = pid;
    w->fd = sv[0];
    w->state = WORKER_STARTING;
    w->start = util_time_mono();
}

/* Kills (when asked) and reaps the worker; returns its wait status. */
static int worker_reap(struct worker *w, int kill_it)
{
    int status = 0;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->pid > 0) {
        if (kill_it)
            kill(w->pid, SIGKILL);
        while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    w->pid = 0;
    w->state = WORKER_DEAD;
    return status;
}

struct work_pool *work_pool_new(int n, double timeout_s, long memory_mb)
{
    CHECK(n > 0);
    signal(SIGPIPE, SIG_IGN);   /* a dead worker's pipe gives EPIPE instead */
    struct work_pool *p = xcalloc(1, sizeof *p);
    p->n = n;
    p->timeout_s = timeout_s;
    p->memory_mb = memory_mb;
    p->w = xcalloc((size_t)n, sizeof *p->w);
    for (int i = 0; i < n; i++) {
        p->w[i].fd = -1;
        worker_spawn(&p->w[i], p->memory_mb);
    }
    return p;
}

void work_pool_free(struct work_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        worker_reap(&p->w[i], 1);
    free(p->w);
    free(p);
}

int work_pool_idle(const struct work_pool *p)
{
    int k = 0;
    for (int i = 0; i < p->n; i++)
        k += p->w[i].state == WORKER_IDLE;
    return k;
}

int work_pool_busy(const struct work_pool *p)
{
    int k = 0;
    for (int i = 0; i < p->n; i++)
        k += p->w[i].state == WORKER_BUSY;
    return k;
}

int work_pool_submit(struct work_pool *p, const struct work_job *job, uint64_t tag)
{
    for (int i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        if (w->state != WORKER_IDLE)
            continue;
        if (work_write_full(w->fd, job, sizeof *job) < 0) {
            int st = worker_reap(w, 1);
            loader_log("worker %d died while idle (status 0x%x); restarting", (int)w->pid, st);
            worker_spawn(w, p->memory_mb);
            return -1;
        }
        w->state = WORKER_BUSY;
        w->tag = tag;
        w->index = job->index;
        w->expect = work_sample_bytes(job);
        snprintf(w->path, sizeof w->path, "%s", job->path);
        w->start = util_time_mono();
        return 0;
    }
    return -1;
}

int work_pool_poll_items(const struct work_pool *p, zmq_pollitem_t *items, int max)
{
    int k = 0;
    for (int i = 0; i < p->n && k < max; i++) {
        const struct worker *w = &p->w[i];
        if (w->state == WORKER_BUSY || w->state == WORKER_STARTING)
            items[k++] = (zmq_pollitem_t){.socket = NULL, .fd = w->fd, .events = ZMQ_POLLIN};
    }
    return k;
}

long work_pool_next_deadline_ms(const struct work_pool *p)
{
    double now = util_time_mono(), next = -1;
    for (int i = 0; i < p->n; i++) {
        const struct worker *w = &p->w[i];
        double t = w->state == WORKER_BUSY || w->state == WORKER_STARTING
                 ? w->start + p->timeout_s
                 : w->state == WORKER_DEAD ? w->retry_at : -1;
        if (t >= 0 && (next < 0 || t < next))
            next = t;
    }
    if (next < 0)
        return -1;
    return next <= now ? 0 : (long)((next - now) * 1000.0) + 1;
}

static int fd_ready(int fd, const zmq_pollitem_t *items, int n)
{
    for (int i = 0; i < n; i++)
        if (items[i].fd == fd && !items[i].socket && (items[i].revents & ZMQ_POLLIN))
            return 1;
    return 0;
}

static void __attribute__((format(printf, 4, 5)))
result_fail(struct work_result *r, const struct worker *w, double now, const char *fmt, ...)
{
    memset(r, 0, sizeof *r);
    r->tag = w->tag;
    r->ms = (now - w->start) * 1000.0;
    /* The worker died or hung: nothing says the file is bad (a decoder
     * bug on one file would repeat, but so would an OOM on a busy host). */
    r->fail_class = MSG_FAIL_ENV;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
}

/* Reads a BUSY worker's reply into r; on any failure fails the sample with
 * what happened to the worker and replaces it. */
static void worker_read_reply(const struct work_pool *p, struct worker *w,
                              struct work_result *r)
{
    struct work_reply h;
    double now;
    if (work_read_full(w->fd, &h, sizeof h) == 0 &&
        (h.ok ? h.len == w->expect : h.len < ERR_LEN)) {
        uint8_t *body = h.ok ? xmalloc(h.len ? h.len : 1) : NULL;
        char reason[ERR_LEN] = "";
        if (work_read_full(w->fd, h.ok ? (void *)body : (void *)reason, h.len) == 0) {
            now = util_time_mono();
            memset(r, 0, sizeof *r);
            r->tag = w->tag;
            r->ms = (now - w->start) * 1000.0;
            r->ok = h.ok != 0;
            r->fail_class = h.fail_class == MSG_FAIL_DECODE ? MSG_FAIL_DECODE
                                                            : MSG_FAIL_ENV;
            r->pixels = body;
            r->len = h.ok ? h.len : 0;
            snprintf(r->reason, sizeof r->reason, "%s", reason);
            w->state = WORKER_IDLE;
            return;
        }
        free(body);
    }
    now = util_time_mono();
    int st = worker_reap(w, 1);
    /* Past RLIMIT_AS, glib aborts and our xmalloc exits: name the limit so
     * that whoever reads the reason can tell. */
    char limit[64] = "";
    if (p->memory_mb > 0)
        snprintf(limit, sizeof limit, "; worker memory limit %ld MB", p->memory_mb);
    if (WIFSIGNALED(st)) {
        result_fail(r, w, now, "worker crashed (signal %d%s)", WTERMSIG(st), limit);
        loader_log("worker crashed (signal %d%s) on sample %llu (%s); restarting",
                   WTERMSIG(st), limit, (unsigned long long)w->index, w->path);
    } else {
        result_fail(r, w, now, "worker exited (status %d%s)", WEXITSTATUS(st), limit);
        loader_log("worker exited (status %d%s) on sample %llu (%s); restarting",
                   WEXITSTATUS(st), limit, (unsigned long long)w->index, w->path);
    }
    worker_spawn(w, p->memory_mb);
}

int work_pool_collect(struct work_pool *p, const zmq_pollitem_t *items, int n_items,
                      struct work_result *out, int max)
{
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        double now = util_time_mono();
        if (w->state == WORKER_STARTING && fd_ready(w->fd, items, n_items)) {
            uint8_t ready;
            if (work_read_full(w->fd, &ready, 1) == 0) {
                w->state = WORKER_IDLE;
            } else {
                int st = worker_reap(w, 1);
                loader_log("worker failed to start (status 0x%x); retrying in %.0f s", st,
                           WORK_RESPAWN_DELAY_S);
                w->retry_at = now + WORK_RESPAWN_DELAY_S;
            }
        } else if (w->state == WORKER_STARTING && now - w->start > p->timeout_s) {
            worker_reap(w, 1);
            loader_log("worker did not start within %g s; retrying in %.0f s", p->timeout_s,
                       WORK_RESPAWN_DELAY_S);
            w->retry_at = now + WORK_RESPAWN_DELAY_S;
        } else if (w->state == WORKER_BUSY && k < max && fd_ready(w->fd, items, n_items)) {
            worker_read_reply(p, w, &out[k++]);
        } else if (w->state == WORKER_BUSY && k < max && now - w->start > p->timeout_s) {
            result_fail(&out[k++], w, now, "timed out after %g s", p->timeout_s);
            loader_log("sample %llu (%s) timed out after %g s; worker killed",
                       (unsigned long long)w->index, w->path, p->timeout_s);
            worker_reap(w, 1);
            worker_spawn(w, p->memory_mb);
        } else if (w->state == WORKER_DEAD && now >= w->retry_at) {
            worker_spawn(w, p->memory_mb);
        }
    }
    return k;
}
