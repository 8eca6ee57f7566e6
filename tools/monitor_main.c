/*
 * monitor_main.c: lejepa-monitor, a live view of a training run:
 *
 *   lejepa-monitor [--connect tcp://HOST:5555] [--out DIR] [--every S]
 *                  [--no-table] [--once] [--tensorboard DIR]
 *   lejepa-monitor --from runs/NAME/metrics.jsonl [--out DIR] [--tensorboard DIR]
 *
 * attaches to the trainer at any time (monitor_conn.c), rebuilds the run's
 * metric history, then follows METRIC; shows a table in the terminal
 * (monitor_table.c) and rewrites DIR/dashboard.html every S seconds
 * (monitor_dash.c); with --tensorboard, every record also goes to a
 * TensorBoard event file (monitor_tb.c). This file holds the command line, signals and the main
 * loop only. Exit status: 0 done (SIGINT, BYE, --once, --from), 1 refused by
 * the trainer or no answer in --once, 2 bad arguments or start-up failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "keys.h"
#include "monitor_conn.h"
#include "monitor_dash.h"
#include "monitor_history.h"
#include "monitor_table.h"
#include "monitor_tb.h"
#include "util.h"

#define MONITOR_DEFAULT_CONNECT "tcp://127.0.0.1:5555"
#define MONITOR_DEFAULT_EVERY_S 5.0
#define MONITOR_TICK_MS 100             /* main loop turn when idle */
#define MONITOR_REDRAW_S 0.5            /* table redraw, at most this often */
#define MONITOR_ONCE_TIMEOUT_S 15.0     /* --once gives up without a history */
#define MONITOR_RUN_NAME_MAX 200

struct monitor_opts {
    const char *connect, *out, *from, *tensorboard;
    double every;
    bool no_table, once;
    struct keys_client keys;        /* --key, --server-key */
};

struct monitor_app {
    struct monitor_opts o;
    struct monitor_history h;
    struct monitor_conn c;
    bool table;
    char run[MONITOR_RUN_NAME_MAX];
    char out_dir[4096], dash_path[4200], segmap_dir[4200];
    double dash_written;            /* Unix time, 0 = never */
    double dash_mono;               /* monotonic time of the last write */
    uint64_t dash_version;          /* h.version at the last write */
    double segmap_mtime;            /* of the PNG shown at the last write */
    struct monitor_tb tb;           /* tb.f NULL: no (more) TensorBoard */
};

static volatile sig_atomic_t stop_requested;
static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    stop_requested = 1;
    if (wake_pipe[1] >= 0 && write(wake_pipe[1], "x", 1) < 0) {
        /* The pipe is full: a wake-up is already pending. */
    }
    errno = saved;
}

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa-monitor [options]\n"
        "       lejepa-monitor --from runs/NAME/metrics.jsonl [--out DIR]\n"
        "\n"
        "Follows a LeJEPA training run: attaches to the trainer at any time,\n"
        "rebuilds the metric history (HISTORY), then follows the live metrics\n"
        "(METRIC). Shows the latest values in the terminal and rewrites\n"
        "DIR/dashboard.html: one self-contained page (inline SVG charts of the\n"
        "loss terms, online-probe / kNN / linear accuracy, throughput, and the\n"
        "latest segmentation grid from DIR/segmaps/).\n"
        "\n"
        "  --connect ENDPOINT  the trainer's work endpoint (default %s)\n"
        "  --out DIR           where dashboard.html goes (default runs/<run name>)\n"
        "  --every SECONDS     dashboard rewrite interval (default %g)\n"
        "  --no-table          plain log lines instead of the redrawn table\n"
        "                      (automatic when stdout is not a terminal)\n"
        "  --once              fetch the history, write the dashboard, exit\n"
        "  --from FILE         build the dashboard from a metrics.jsonl file, no\n"
        "                      trainer needed (default --out: FILE's directory)\n"
        "  --tensorboard DIR   also write every metric to a TensorBoard event file\n"
        "                      in DIR (tags like train/loss, knn/knn_top1); view\n"
        "                      with tensorboard --logdir DIR\n"
        KEYS_CLIENT_HELP
        "  --help, --version\n"
        "\n"
        "Exit status: 0 done (Ctrl-C, end of run, --once, --from), 1 refused by\n"
        "the trainer (REFUSE, or its handshake: keys not accepted) or no history within %g s with --once, 2 bad arguments.\n",
        MONITOR_DEFAULT_CONNECT, MONITOR_DEFAULT_EVERY_S, MONITOR_ONCE_TIMEOUT_S);
}

static void parse_args(int argc, char **argv, struct monitor_opts *o)
{
    static const struct option longs[] = {
        {"connect", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"every", required_argument, NULL, 'e'},
        {"no-table", no_argument, NULL, 'n'},
        {"once", no_argument, NULL, '1'},
        {"from", required_argument, NULL, 'f'},
        {"tensorboard", required_argument, NULL, 't'},
        KEYS_CLIENT_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct monitor_opts){.connect = MONITOR_DEFAULT_CONNECT,
                               .every = MONITOR_DEFAULT_EVERY_S};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        char *end;
        if (keys_client_option(&o->keys, ch, optarg))
            continue;
        switch (ch) {
        case 'c': o->connect = optarg; break;
        case 'o': o->out = optarg; break;
        case 'e':
            errno = 0;
            o->every = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->every > 0) || !isfinite(o->every))
                die("--every %s: expected a positive number of seconds", optarg);
            break;
        case 'n': o->no_table = true; break;
        case '1': o->once = true; break;
        case 'f': o->from = optarg; break;
        case 't': o->tensorboard = optarg; break;
        case 'h': usage(stdout); exit(0);
        case 'V': util_print_build_info(stdout, "lejepa-monitor"); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument '%s'; try lejepa-monitor --help", argv[optind]);
    if (o->from && o->once)
        die("--from already builds the dashboard once; drop --once");
    if (o->from && (o->keys.key_path || o->keys.server_key_path))
        die("--from reads a file: --key and --server-key are for a trainer connection");
    char err[ERR_LEN];
    if (!o->from && client_endpoint_check(o->connect, err) < 0)
        die("--connect %s", err);
    keys_client_load(&o->keys);
}

/* A run name from the network becomes a directory name: only [A-Za-z0-9._-],
 * never "." or "..". */
static void safe_name(char *out, size_t cap, const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < cap; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        out[n++] = ok ? ch : '_';
    }
    out[n] = '\0';
    if (n == 0 || strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        snprintf(out, cap, "run");
}

static void set_out_dir(struct monitor_app *a, const char *dir)
{
    char err[ERR_LEN];
    snprintf(a->out_dir, sizeof a->out_dir, "%s", dir);
    if (util_mkdir_p(a->out_dir, err) < 0)
        die("--out %s: %s", a->out_dir, err);
    snprintf(a->dash_path, sizeof a->dash_path, "%s/dashboard.html", a->out_dir);
    snprintf(a->segmap_dir, sizeof a->segmap_dir, "%s/segmaps", a->out_dir);
}

static void write_dashboard(struct monitor_app *a, const char *origin, int refresh_s)
{
    char err[ERR_LEN];
    struct monitor_dash_info info = {
        .run = a->run, .origin = origin, .segmap_dir = a->segmap_dir,
        .now = util_time_unix(), .refresh_s = refresh_s,
    };
    char png[4096];
    double mtime = 0;
    if (monitor_segmap_find(a->segmap_dir, png, sizeof png, &mtime) < 0)
        mtime = 0;
    if (monitor_dash_write(a->dash_path, &a->h, &info, err) < 0) {
        monitor_log("cannot write the dashboard: %s", err);
        return;
    }
    a->dash_written = info.now;
    a->dash_mono = util_time_mono();
    a->dash_version = a->h.version;
    a->segmap_mtime = mtime;
}

/* Rewrites the dashboard when the interval passed and something changed
 * (new records or a newer segmentation grid). */
static void maybe_write_dashboard(struct monitor_app *a)
{
    if (!a->dash_path[0] || !a->c.history_done ||
        util_time_mono() - a->dash_mono < a->o.every)
        return;
    char png[4096];
    double mtime = 0;
    if (monitor_segmap_find(a->segmap_dir, png, sizeof png, &mtime) < 0)
        mtime = 0;
    if (a->dash_written > 0 && a->h.version == a->dash_version && mtime == a->segmap_mtime)
        return;
    int refresh = (int)ceil(a->o.every);
    write_dashboard(a, a->o.connect, refresh < 2 ? 2 : refresh);
}

static void print_metric(void *ctx, const struct monitor_record *r, int stored)
{
    struct monitor_app *a = ctx;
    if (stored && !a->table && !a->o.once)
        monitor_table_log_record(stdout, r);
}

/* Every stored record, once, into the event file; a write error stops the
 * TensorBoard output (said once), never the monitor. */
static void tb_store(void *ctx, const struct monitor_record *r)
{
    struct monitor_app *a = ctx;
    char err[ERR_LEN];
    if (a->tb.f && monitor_tb_add(&a->tb, r, err) != 0) {
        fprintf(stderr, "lejepa-monitor: TensorBoard output stopped: %s\n", err);
        monitor_tb_close(&a->tb);
    }
}

static void tb_flush(struct monitor_app *a)
{
    char err[ERR_LEN];
    if (a->tb.f && monitor_tb_flush(&a->tb, err) != 0) {
        fprintf(stderr, "lejepa-monitor: TensorBoard output stopped: %s\n", err);
        monitor_tb_close(&a->tb);
    }
}

static int run_from_file(struct monitor_app *a)
{
    char err[ERR_LEN];
    long n = monitor_history_load_file(&a->h, a->o.from, err);
    if (n < 0)
        die("%s", err);
    if (a->h.bad_lines)
        fprintf(stderr, "lejepa-monitor: %zu malformed lines skipped; first: %s\n",
                a->h.bad_lines, err);
    char dir[4096], base[4096];
    snprintf(dir, sizeof dir, "%s", a->o.from);
    snprintf(base, sizeof base, "%s", dirname(dir));
    snprintf(dir, sizeof dir, "%s", base);
    safe_name(a->run, sizeof a->run, basename(base));
    set_out_dir(a, a->o.out ? a->o.out : dir);
    write_dashboard(a, a->o.from, 0);
    if (a->dash_written == 0)
        return 1;
    printf("%ld records (%zu duplicates dropped); dashboard %s\n", n, a->h.duplicates,
           a->dash_path);
    if (a->tb.f)
        printf("TensorBoard: %zu events in %s\n", a->tb.events, a->tb.path);
    return 0;
}

static void install_signals(void)
{
    if (pipe(wake_pipe) != 0)
        die("pipe: %s", strerror(errno));
    for (int i = 0; i < 2; i++)
        if (fcntl(wake_pipe[i], F_SETFL, O_NONBLOCK) != 0 ||
            fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC) != 0)
            die("fcntl: %s", strerror(errno));
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        die("sigaction: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
}

static int run_live(struct monitor_app *a)
{
    install_signals();
    a->table = !a->o.no_table && !a->o.once && isatty(STDOUT_FILENO);
    monitor_log_set_stderr(!a->table);
    monitor_conn_init(&a->c, a->o.connect, !a->o.once);
    a->c.cl.keys = &a->o.keys;
    a->c.on_metric = print_metric;
    a->c.cb_ctx = a;
    monitor_log("connecting to %s", a->o.connect);
    double start = util_time_mono(), drawn = 0;
    uint64_t drawn_version = UINT64_MAX;
    int status = 0;
    char text[ERR_LEN];
    while (!stop_requested) {
        enum monitor_conn_event ev =
            monitor_conn_step(&a->c, &a->h, wake_pipe[0], MONITOR_TICK_MS, text);
        char sink[64];
        while (read(wake_pipe[0], sink, sizeof sink) > 0)
            ;
        if (ev == MONITOR_CONN_REFUSED) {
            fprintf(stderr, "lejepa-monitor: refused by the trainer at %s: %s\n",
                    a->o.connect, text);
            status = 1;
            break;
        }
        if (ev == MONITOR_CONN_BYE) {
            monitor_log("the trainer said BYE (%s): the run is over", text);
            break;
        }
        if (a->c.run_changed) {
            a->c.run_changed = false;
            safe_name(a->run, sizeof a->run, a->c.run);
            char dir[4096];
            snprintf(dir, sizeof dir, "runs/%s", a->run);
            set_out_dir(a, a->o.out ? a->o.out : dir);
        }
        if (a->o.once) {
            if (a->c.history_done)
                break;
            if (util_time_mono() - start > MONITOR_ONCE_TIMEOUT_S) {
                fprintf(stderr, "lejepa-monitor: no history from %s within %g s\n",
                        a->o.connect, MONITOR_ONCE_TIMEOUT_S);
                status = 1;
                break;
            }
            continue;
        }
        maybe_write_dashboard(a);
        tb_flush(a);
        double now = util_time_mono();
        if (a->table && now - drawn >= MONITOR_REDRAW_S &&
            (a->h.version != drawn_version || now - drawn >= 1.0)) {
            struct monitor_status st = {
                .run = a->c.run, .origin = a->o.connect,
                .state = monitor_conn_state_name(&a->c), .dash_path = a->dash_path,
                .dash_written = a->dash_written,
            };
            monitor_table_draw(stdout, &a->h, &st, util_time_unix());
            drawn = now;
            drawn_version = a->h.version;
        }
    }
    if (status == 0 && a->dash_path[0] && a->c.connects > 0) {
        write_dashboard(a, a->o.connect, 0);
        if (a->dash_written > 0)
            printf("%zu records (%zu duplicates dropped); dashboard %s\n", a->h.records,
                   a->h.duplicates, a->dash_path);
    }
    monitor_conn_free(&a->c);
    return status;
}

int main(int argc, char **argv)
{
    static struct monitor_app app;
    parse_args(argc, argv, &app.o);
    monitor_history_init(&app.h);
    if (app.o.tensorboard) {
        char err[ERR_LEN];
        if (monitor_tb_open(&app.tb, app.o.tensorboard, util_time_unix(), err) != 0)
            die("--tensorboard %s: %s", app.o.tensorboard, err);
        app.h.on_store = tb_store;
        app.h.store_ctx = &app;
    }
    int status = app.o.from ? run_from_file(&app) : run_live(&app);
    tb_flush(&app);
    monitor_tb_close(&app.tb);
    monitor_history_free(&app.h);
    return status;
}
