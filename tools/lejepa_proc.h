/*
 * lejepa_proc.h: the child processes of `lejepa run`: each is started in its
 * own process group with stdout and stderr on one pipe; every line goes,
 * unprefixed, to its log file and, with a "[name] " prefix, to the terminal
 * when the child's filter (if any) passes it. The
 * launcher signals the group leader to stop a child and SIGKILLs the whole
 * group (loader workers included) when it does not stop in time, so nothing
 * outlives the launcher. Nothing here knows what the children are.
 */
#ifndef LEJEPA_PROC_H
#define LEJEPA_PROC_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#define PROC_NAME_LEN 32
#define PROC_LINE_MAX 4096      /* longer lines are cut into pieces */

/* true: the line (len bytes, no newline, not NUL-terminated) also goes to
 * the terminal. */
typedef bool (*proc_filter)(const char *line, size_t len);

struct proc {
    char name[PROC_NAME_LEN];   /* "train", "loader-1", "eval", "monitor" */
    pid_t pid;                  /* also its process group id */
    bool running;               /* started and not yet reaped */
    int status;                 /* once reaped: exit code, or 128 + signal */
    int fd;                     /* read end of its output pipe; -1 at EOF */
    FILE *log;                  /* its log file; NULL once closed */
    proc_filter shown;          /* NULL: every line on the terminal */
    char line[PROC_LINE_MAX];   /* the partial line read so far */
    size_t len;
    double stop_sent;           /* monotonic time of the stop signal; 0 = none */
    bool group_killed;
};

/* Starts argv[0] (a path) as name with its output logged to log_path
 * (appended), and the lines shown passes (all when NULL) on the terminal.
 * Returns 0, or -1 with the reason in err (ERR_LEN); an exec failure shows
 * as the child's exit status 127 and a line in its log. */
int proc_start(struct proc *p, const char *name, char *const *argv,
               const char *log_path, proc_filter shown, char *err);

/* Waits up to timeout_ms for output of any child or a byte on wake_fd,
 * then forwards every complete line read. Returns true when wake_fd is
 * readable (the caller drains it). */
bool proc_pump(struct proc *ps, int n, int wake_fd, int timeout_ms);

/* Reaps p if it has exited; true exactly once, when it does. */
bool proc_reap(struct proc *p);

/* Sends sig to the group leader of a running child and notes the time. */
void proc_stop(struct proc *p, int sig);

/* SIGKILL to the child's whole process group (workers it forked too). */
void proc_kill_group(struct proc *p);

/* CPU seconds (user + system, all threads) the child has used; -1 when
 * unknown (not running, /proc unreadable). */
double proc_cpu_seconds(const struct proc *p);

/* Prints one line "[lejepa] ..." on stdout (the launcher's own messages). */
void proc_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Forwards the partial last line, closes the pipe and the log. */
void proc_close(struct proc *p);

#endif
