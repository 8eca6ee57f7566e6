/*
 * lejepa_proc.c: starting, following and stopping the children of
 * `lejepa run` (lejepa_proc.h). Output lines are written with one fwrite
 * each and flushed, so lines of different children never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lejepa_proc.h"
#include "util.h"

#define PROC_READ_CHUNK 65536
#define PROC_POLL_MAX 32

void proc_say(const char *fmt, ...)
{
    char line[PROC_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stdout, "[lejepa] %s\n", line);
    fflush(stdout);
}

/* In the child between fork and exec: own process group, default signal
 * dispositions, SIGTERM when the launcher dies, output on the pipe. */
static void child_exec(char *const *argv, int out_fd, pid_t parent)
{
    setpgid(0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0)
        dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    execv(argv[0], argv);
    dprintf(2, "lejepa run: cannot start %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int proc_start(struct proc *p, const char *name, char *const *argv,
               const char *log_path, proc_filter shown, char *err)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->shown = shown;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->log = fopen(log_path, "a");
    if (!p->log)
        return errf(err, "%s: %s", log_path, strerror(errno));
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        errf(err, "pipe: %s", strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        errf(err, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        goto fail;
    }
    if (pid == 0)
        child_exec(argv, fds[1], parent);
    setpgid(pid, pid);      /* both sides: whichever runs first */
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    p->pid = pid;
    p->fd = fds[0];
    p->running = true;
    return 0;
fail:
    fclose(p->log);
    p->log = NULL;
    return -1;
}

/* The log gets every line; the terminal those p->shown passes. */
static void emit_line(struct proc *p)
{
    if (!p->shown || p->shown(p->line, p->len)) {
        char out[PROC_LINE_MAX + PROC_NAME_LEN + 8];
        int n = snprintf(out, sizeof out, "[%s] %.*s\n", p->name, (int)p->len,
                         p->line);
        if (n > (int)sizeof out - 1)
            n = (int)sizeof out - 1;
        fwrite(out, 1, (size_t)n, stdout);
        fflush(stdout);
    }
    if (p->log) {
        fprintf(p->log, "%.*s\n", (int)p->len, p->line);
        fflush(p->log);
    }
    p->len = 0;
}

static void read_output(struct proc *p)
{
    char buf[PROC_READ_CHUNK];
    for (;;) {
        ssize_t r = read(p->fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            if (p->len)
                emit_line(p);
            close(p->fd);
            p->fd = -1;
            return;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n') {
                emit_line(p);
                continue;
            }
            p->line[p->len++] = buf[i];
            if (p->len == sizeof p->line)
                emit_line(p);
        }
    }
}

bool proc_pump(struct proc *ps, int n, int wake_fd, int timeout_ms)
{
    struct pollfd fds[PROC_POLL_MAX + 1];
    int owner[PROC_POLL_MAX + 1];
    int k = 0;
    fds[k] = (struct pollfd){.fd = wake_fd, .events = POLLIN};
    owner[k++] = -1;
    for (int i = 0; i < n && k <= PROC_POLL_MAX; i++) {
        if (ps[i].fd < 0)
            continue;
        fds[k] = (struct pollfd){.fd = ps[i].fd, .events = POLLIN};
        owner[k++] = i;
    }
    int r = poll(fds, (nfds_t)k, timeout_ms);
    if (r <= 0)
        return false;
    for (int j = 1; j < k; j++)
        if (fds[j].revents)
            read_output(&ps[owner[j]]);
    return (fds[0].revents & POLLIN) != 0;
}

bool proc_reap(struct proc *p)
{
    if (!p->running)
        return false;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r != p->pid)
        return false;
    p->running = false;
    p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return true;
}

void proc_stop(struct proc *p, int sig)
{
    if (!p->running)
        return;
    if (kill(p->pid, sig) != 0 && errno != ESRCH)
        proc_say("kill %s (pid %d): %s", p->name, (int)p->pid, strerror(errno));
    p->stop_sent = util_time_mono();
}

void proc_kill_group(struct proc *p)
{
    if (p->pid <= 0 || p->group_killed)
        return;
    /* ESRCH: the group is already empty */
    if (kill(-p->pid, SIGKILL) == 0 && p->running)
        proc_say("%s (pid %d) did not stop in time: killed its process group",
                 p->name, (int)p->pid);
    p->group_killed = true;
}

double proc_cpu_seconds(const struct proc *p)
{
    if (!p->running)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the parenthesised command name, which may hold spaces:
     * state is field 3, utime and stime are fields 14 and 15 */
    char *s = strrchr(buf, ')');
    unsigned long long utime, stime;
    if (!s || sscanf(s + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &utime, &stime) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(utime + stime) / (double)(hz > 0 ? hz : 100);
}

void proc_close(struct proc *p)
{
    if (p->fd >= 0) {
        read_output(p);
        if (p->fd >= 0) {
            if (p->len)
                emit_line(p);
            close(p->fd);
            p->fd = -1;
        }
    }
    if (p->log) {
        fclose(p->log);
        p->log = NULL;
    }
}
