/*
 * lejepa_run.c: `lejepa run`: one training run on this machine as separate
 * processes (DESIGN.md §3): lejepa-train, N lejepa-loader, one lejepa-eval
 * with every task asked for, and lejepa-monitor, each in its own process
 * group (lejepa_proc.c) with all its lines kept in runs/<name>/logs/<proc>.log
 * and, prefixed, on the terminal: only progress, results and trouble
 * (lejepa_quiet.c) unless -v. The launcher reads the run's config itself
 * only for the run name, directory and work endpoint; everything else is
 * the trainer's business (the clients learn the config from WELCOME).
 * Each loader gets half the cores shared among the loaders (at least one
 * worker); the trainer keeps run.threads.
 * With --keys DIR every process gets its CurveZMQ pair and the trainer an
 * allow-list of them (lejepa_runnet.c); with --bind the trainer listens
 * beyond loopback; taken ports are replaced by free ones, said aloud.
 * The end: a first Ctrl-C (SIGINT/SIGTERM) goes to the trainer, which
 * finishes its step and writes a checkpoint. Once the trainer has exited
 * (finished or stopped), loaders get SIGTERM, the monitor leaves on the
 * trainer's BYE, and evaluators may finish a snapshot in progress until
 * they use no CPU (timeouts below). A second Ctrl-C stops everything at
 * once, a third kills the process groups. The exit status is the
 * trainer's; a summary of metrics.jsonl follows.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "config.h"
#include "json.h"
#include "lejepa_cli.h"
#include "lejepa_proc.h"
#include "lejepa_quiet.h"
#include "lejepa_runnet.h"
#include "safetensors.h"
#include "util.h"

#define RUN_DEFAULT_CONFIG "configs/fashion-mnist.ini"
#define RUN_DEFAULT_DATA "data/fashion-mnist"
#define RUN_DEFAULT_EVALS "knn,linear,segmap"
#define RUN_DEFAULT_LOADERS 2
#define RUN_MAX_LOADERS 16
#define RUN_MAX_ARGS 256
#define RUN_POLL_MS 100
/* After the trainer exits: an evaluator may finish a snapshot in progress
 * (segmentation maps are written locally) until it has used less than
 * RUN_EVAL_IDLE_CPU_S of CPU over RUN_EVAL_IDLE_S, at most RUN_EVAL_GRACE_S. */
#define RUN_EVAL_GRACE_S 60.0
#define RUN_EVAL_IDLE_S 2.0
#define RUN_EVAL_IDLE_CPU_S 0.1
/* The monitor leaves by itself when the trainer says BYE (after writing the
 * last dashboard); a SIGTERM only after this long. */
#define RUN_MONITOR_GRACE_S 10.0
/* SIGTERM (or SIGINT) to SIGKILL of the process group, for every child but
 * a trainer writing its checkpoint after the first Ctrl-C: that one is
 * only stopped harder by a second Ctrl-C. */
#define RUN_STOP_TIMEOUT_S 15.0

enum { ROLE_TRAIN, ROLE_LOADER, ROLE_EVAL, ROLE_MONITOR };

struct run_opts {
    const char *configs[RUN_MAX_ARGS];
    int n_configs;
    const char *sets[RUN_MAX_ARGS];
    int n_sets;
    int loaders, workers;
    const char *evals;          /* "" or "none": no evaluator */
    const char *minutes, *steps, *name, *data;
    const char *bind, *keys, *resume;
    bool monitor, insecure;
    bool verbose;               /* -v: every child line on the terminal */
};

struct launcher {
    struct run_opts o;
    struct config cfg;
    char name[CONFIG_STR_LEN], run_dir[4096], endpoint[CONFIG_STR_LEN];
    /* the trainer's endpoints after --bind; moved: a port was taken, so
     * they go to the trainer as --set */
    char work[CONFIG_STR_LEN], broadcast[CONFIG_STR_LEN];
    bool moved;
    char set_work[CONFIG_STR_LEN + 16], set_broadcast[CONFIG_STR_LEN + 16];
    char resume_dir[4096];      /* --resume of a run directory: continue in it */
    char out_parent[3800];      /* the run directory's parent (--out) */
    struct proc procs[RUN_MAX_LOADERS + 3];
    int role[RUN_MAX_LOADERS + 3];
    int n;
    double down_since;          /* monotonic time the trainer exited; 0 = running */
    double eval_cpu[RUN_MAX_LOADERS + 3], eval_cpu_at[RUN_MAX_LOADERS + 3];
    int signals;                /* Ctrl-Cs so far */
};

static int wake_fd = -1;   /* stop-signal self-pipe */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa run [--config FILE] [--set section.key=value ...] [--data DIR]\n"
        "                  [--loaders N] [--workers W] [--evals TASKS] [--minutes M]\n"
        "                  [--steps N] [--name NAME] [--no-monitor]\n"
        "                  [--keys DIR] [--bind ADDR] [--insecure] [--resume RUN] [-v]\n"
        "\n"
        "Trains on this machine: starts lejepa-train, N lejepa-loader, one\n"
        "lejepa-eval with TASKS and lejepa-monitor as separate processes and\n"
        "keeps each one's whole output in RUN/logs/<proc>.log, RUN = run.dir/NAME\n"
        "(default runs/NAME). The terminal shows, prefixed ([train], [eval], ...),\n"
        "the trainer's steps, epochs and checkpoints, evaluation results, and any\n"
        "line saying error, warning, refused, failed or cannot (but not a zero\n"
        "count, \"0 failures\"); loader and connection chatter is only logged.\n"
        "Ctrl-C: the trainer finishes its step and writes a checkpoint, then the\n"
        "others stop; a second Ctrl-C stops everything at once.\n"
        "\n"
        "  --config FILE   INI config (may repeat; default %s if it exists)\n"
        "  --set S.K=V     override one config key (may repeat)\n"
        "  --data DIR      dataset (ImageFolder tree, a folder of unlabelled\n"
        "                  images, or tar shards: proto/dataset.h; default run.data, else\n"
        "                  %s, which tools/run.sh prepares)\n"
        "  --loaders N     loader processes (default %d)\n"
        "  --workers W     decode workers per loader (default: half the cores\n"
        "                  shared among the loaders, at least 1)\n"
        "  --evals TASKS   evaluator tasks, knn,linear,segmap (default), or none;\n"
        "                  skipped with a warning when lejepa-eval is not built\n"
        "  --minutes M     time budget (lejepa-train --minutes)\n"
        "  --steps N       total steps (lejepa-train --steps)\n"
        "  --name NAME     run name (default run.name, else run-YYYYmmdd-HHMMSS)\n"
        "  --no-monitor    no lejepa-monitor (no live dashboard.html)\n"
        "  --keys DIR      CurveZMQ for every process: the key pairs of the\n"
        "                  trainer, each loader, the evaluator and the monitor\n"
        "                  (DIR/NAME.key, .pub; made when missing) and the\n"
        "                  trainer's allow-list DIR/%s (lines added by hand\n"
        "                  for clients on other machines are kept)\n"
        "  --bind ADDR     the trainer listens on ADDR (e.g. 0.0.0.0), so that\n"
        "                  clients on other machines can join; beyond loopback\n"
        "                  it needs --keys (or --insecure)\n"
        "  --insecure      --bind beyond loopback without keys (private networks)\n"
        "  --resume RUN    continue a run: its directory (from its newest\n"
        "                  checkpoint, in that directory) or a checkpoint file;\n"
        "                  its config applies, then --config and --set\n"
        "  -v, --verbose   every line of every process on the terminal, chatter too\n"
        "Ports in use (another run) are replaced by the next free ones; the\n"
        "launcher says which.\n"
        "\n"
        "Exit status: the trainer's (0 finished or stopped with a checkpoint);\n"
        "2 on bad arguments.\n",
        RUN_DEFAULT_CONFIG, RUN_DEFAULT_DATA, RUN_DEFAULT_LOADERS, RUN_KEYS_ALLOW);
}

/* lejepa-eval would refuse a bad list only once running: check it first. */
static void check_tasks(const char *list)
{
    static const char *const known[] = {"knn", "linear", "probe", "segmap"};
    for (const char *s = list; *s;) {
        size_t n = strcspn(s, ",");
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            ok |= n == strlen(known[k]) && strncmp(s, known[k], n) == 0;
        if (!ok)
            die("run: --evals %s: unknown task '%.*s' (knn, linear, probe, segmap or none)",
                list, (int)n, s);
        s += n + (s[n] == ',');
    }
}

static void parse_args(int argc, char **argv, struct run_opts *o)
{
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"data", required_argument, NULL, 'd'},
        {"loaders", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'},
        {"evals", required_argument, NULL, 'e'},
        {"minutes", required_argument, NULL, 'm'},
        {"steps", required_argument, NULL, 'S'},
        {"name", required_argument, NULL, 'n'},
        {"no-monitor", no_argument, NULL, 'M'},
        {"keys", required_argument, NULL, 'k'},
        {"bind", required_argument, NULL, 'b'},
        {"insecure", no_argument, NULL, 'I'},
        {"resume", required_argument, NULL, 'r'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->loaders = RUN_DEFAULT_LOADERS;
    o->evals = RUN_DEFAULT_EVALS;
    o->monitor = true;
    int c;
    while ((c = getopt_long(argc, argv, "v", longs, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (o->n_configs == RUN_MAX_ARGS)
                die("run: too many --config flags");
            o->configs[o->n_configs++] = optarg;
            break;
        case 's':
            if (o->n_sets == RUN_MAX_ARGS)
                die("run: too many --set flags");
            o->sets[o->n_sets++] = optarg;
            break;
        case 'd': o->data = optarg; break;
        case 'l': o->loaders = (int)util_parse_long("run --loaders", optarg, 1, RUN_MAX_LOADERS); break;
        case 'w': o->workers = (int)util_parse_long("run --workers", optarg, 1, 1024); break;
        case 'e': o->evals = optarg; break;
        case 'm': o->minutes = optarg; break;
        case 'S': o->steps = optarg; break;
        case 'n': o->name = optarg; break;
        case 'M': o->monitor = false; break;
        case 'k': o->keys = optarg; break;
        case 'b': o->bind = optarg; break;
        case 'I': o->insecure = true; break;
        case 'r': o->resume = optarg; break;
        case 'v': o->verbose = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("run: unexpected argument '%s' (see lejepa run --help)", argv[optind]);
    if (strcmp(o->evals, "none") == 0)
        o->evals = "";
    check_tasks(o->evals);
    if (o->insecure && !o->bind)
        die("run: --insecure only matters with --bind ADDR");
    if (o->insecure && o->keys)
        die("run: --insecure and --keys exclude each other");
    /* a resumed run keeps its own config: no default file over it */
    if (o->n_configs == 0 && !o->resume && access(RUN_DEFAULT_CONFIG, R_OK) == 0)
        o->configs[o->n_configs++] = RUN_DEFAULT_CONFIG;
}

/* --resume RUN: the checkpoint's config, as lejepa-train reads it (RUN a
 * checkpoint file, or a run directory and the file its `latest` names);
 * a run directory is where the run goes on. */
static void load_resume(struct launcher *l)
{
    const char *arg = l->o.resume;
    char ckpt[8400], err[ERR_LEN];
    struct stat st;
    if (stat(arg, &st) != 0)
        die("run: --resume %s: %s", arg, strerror(errno));
    snprintf(ckpt, sizeof ckpt, "%s", arg);
    if (S_ISDIR(st.st_mode)) {
        snprintf(l->resume_dir, sizeof l->resume_dir, "%s", arg);
        size_t n = strlen(l->resume_dir);
        while (n > 1 && l->resume_dir[n - 1] == '/')
            l->resume_dir[--n] = '\0';
        /* the newest checkpoint that verifies, as lejepa-train takes it */
        char note[CKPT_NOTE_LEN];
        if (ckpt_resolve(l->resume_dir, ckpt, sizeof ckpt, note, err) != 0)
            die("run: --resume %s: no checkpoint to continue from (%s)", arg, err);
        if (note[0])
            util_log("run: --resume %s: %s", arg, note);
    }
    struct st_file f;
    if (st_open(&f, ckpt, err) != 0)
        die("run: --resume: %s", err);
    const char *fmt = st_meta(&f, "format"), *text = st_meta(&f, "config");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0 || !text)
        die("run: --resume %s: not a lejepa-train checkpoint (no config in its "
            "metadata)", ckpt);
    if (config_load_string(&l->cfg, text, ckpt, err) != 0)
        die("%s", err);
    st_close(&f);
    proc_say("resuming from %s", ckpt);
}

/* ADDR in place of the host of a tcp endpoint, keeping its port, as
 * lejepa-train --bind does. */
static void rebind(struct config *c, const char *key, const char *endpoint,
                   const char *addr)
{
    const char *colon = strrchr(endpoint, ':');
    if (strncmp(endpoint, "tcp://", 6) != 0 || !colon || colon < endpoint + 6)
        die("run: --bind needs tcp endpoints; %s is %s", key, endpoint);
    char set[2 * CONFIG_STR_LEN], err[ERR_LEN];
    snprintf(set, sizeof set, "%s=tcp://%s%s", key, addr, colon);
    if (config_set(c, set, err) != 0)
        die("run: --bind %s: %s", addr, err);
}

static bool is_loopback(const char *endpoint)
{
    return strncmp(endpoint, "ipc://", 6) == 0 ||
           strncmp(endpoint, "tcp://127.", 10) == 0 ||
           strncmp(endpoint, "tcp://localhost:", 16) == 0 ||
           strncmp(endpoint, "tcp://[::1]:", 12) == 0;
}

/* The trainer's endpoints: --bind, then free ports for taken ones. */
static void choose_endpoints(struct launcher *l)
{
    char err[ERR_LEN];
    if (l->o.bind) {
        rebind(&l->cfg, "run.endpoint", l->cfg.run.endpoint, l->o.bind);
        rebind(&l->cfg, "run.broadcast", l->cfg.run.broadcast, l->o.bind);
    }
    bool open = !is_loopback(l->cfg.run.endpoint) || !is_loopback(l->cfg.run.broadcast);
    if (open && !l->o.keys && !l->o.insecure)
        die("run: %s / %s is beyond loopback: add --keys DIR (the launcher makes "
            "every process's keys there and the trainer's allow-list) or, on a "
            "private network, --insecure", l->cfg.run.endpoint, l->cfg.run.broadcast);
    snprintf(l->work, sizeof l->work, "%s", l->cfg.run.endpoint);
    snprintf(l->broadcast, sizeof l->broadcast, "%s", l->cfg.run.broadcast);
    int w = run_port_pick(l->work, sizeof l->work, run_port_of(l->broadcast), err);
    if (w < 0)
        die("run: %s", err);
    int b = run_port_pick(l->broadcast, sizeof l->broadcast, run_port_of(l->work), err);
    if (b < 0)
        die("run: %s", err);
    if (w)
        proc_say("port %d is in use (another run?): the work endpoint is %s",
                 run_port_of(l->cfg.run.endpoint), l->work);
    if (b)
        proc_say("port %d is in use (another run?): the broadcast endpoint is %s",
                 run_port_of(l->cfg.run.broadcast), l->broadcast);
    if ((w || b) && open)
        proc_say("warning: clients on other machines connect to %s, not %s",
                 l->work, l->cfg.run.endpoint);
    l->moved = w || b;
    snprintf(l->set_work, sizeof l->set_work, "run.endpoint=%s", l->work);
    snprintf(l->set_broadcast, sizeof l->set_broadcast, "run.broadcast=%s",
             l->broadcast);
}

/* The run's config as the trainer will read it: the checkpoint's when
 * resuming, files, then --set. */
static void load_config(struct launcher *l)
{
    char err[ERR_LEN];
    config_defaults(&l->cfg);
    if (l->o.resume)
        load_resume(l);
    for (int i = 0; i < l->o.n_configs; i++)
        if (config_load_file(&l->cfg, l->o.configs[i], err) != 0)
            die("%s", err);
    for (int i = 0; i < l->o.n_sets; i++)
        if (config_set(&l->cfg, l->o.sets[i], err) != 0)
            die("%s", err);
    if (config_validate(&l->cfg, err) != 0)
        die("%s", err);
    if (l->o.name)
        snprintf(l->name, sizeof l->name, "%s", l->o.name);
    else if (l->resume_dir[0]) {
        char *copy = xstrdup(l->resume_dir);
        snprintf(l->name, sizeof l->name, "%s", basename(copy));
        free(copy);
    } else if (l->cfg.run.name[0])
        snprintf(l->name, sizeof l->name, "%s", l->cfg.run.name);
    else {
        time_t t = time(NULL);
        struct tm tm;
        strftime(l->name, sizeof l->name, "run-%Y%m%d-%H%M%S", localtime_r(&t, &tm));
    }
    if (!l->name[0] || strchr(l->name, '/') || strcmp(l->name, ".") == 0 ||
        strcmp(l->name, "..") == 0)
        die("run: bad run name '%s' (a directory name, no '/')", l->name);
    /* a resumed run directory goes on where it is (the trainer gets --out) */
    if (l->resume_dir[0] && !l->o.name) {
        char *copy = xstrdup(l->resume_dir);
        snprintf(l->out_parent, sizeof l->out_parent, "%s", dirname(copy));
        free(copy);
    } else {
        snprintf(l->out_parent, sizeof l->out_parent, "%s", l->cfg.run.dir);
    }
    snprintf(l->run_dir, sizeof l->run_dir, "%s/%s", l->out_parent, l->name);
    if (!l->o.data)
        l->o.data = l->cfg.run.data[0] ? l->cfg.run.data : RUN_DEFAULT_DATA;
    choose_endpoints(l);
    /* clients connect to a wildcard bind through loopback */
    const char *ep = l->work;
    const char *host = strstr(ep, "://");
    if (host && (strncmp(host + 3, "*:", 2) == 0 || strncmp(host + 3, "0.0.0.0:", 8) == 0))
        snprintf(l->endpoint, sizeof l->endpoint, "%.*s127.0.0.1%s",
                 (int)(host + 3 - ep), ep, strchr(host + 3, ':'));
    else
        snprintf(l->endpoint, sizeof l->endpoint, "%s", ep);
}

/* The path of a sibling program: next to this executable (installed), or
 * in the build tree's folder `sub`. Returns false when neither exists. */
static bool find_program(const char *prog, const char *sub, char *out, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return false;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return false;
    *slash = '\0';
    int n1 = snprintf(out, len, "%s/%s", self, prog);
    if (n1 > 0 && (size_t)n1 < len && access(out, X_OK) == 0)
        return true;
    int n2 = snprintf(out, len, "%s/../%s/%s", self, sub, prog);
    return n2 > 0 && (size_t)n2 < len && access(out, X_OK) == 0;
}

static void start(struct launcher *l, int role, const char *name, char **argv)
{
    char log[4200], err[ERR_LEN];
    snprintf(log, sizeof log, "%s/logs/%s.log", l->run_dir, name);
    struct proc *p = &l->procs[l->n];
    if (proc_start(p, name, argv, log, l->o.verbose ? NULL : run_line_shown, err) != 0)
        die("run: cannot start %s: %s", name, err);
    l->role[l->n++] = role;
    proc_say("%s: pid %d, log %s", name, (int)p->pid, log);
}

/* --keys DIR: every process's pair and the allow-list, before the trainer
 * reads it. */
static void prepare_keys(struct launcher *l, bool eval, bool monitor)
{
    struct run_keys_client c[RUN_MAX_LOADERS + 2];
    static char names[RUN_MAX_LOADERS][PROC_NAME_LEN];
    int n = 0;
    for (int i = 0; i < l->o.loaders; i++) {
        snprintf(names[i], sizeof names[i], "loader-%d", i + 1);
        c[n++] = (struct run_keys_client){names[i], MSG_ROLE_LOADER};
    }
    if (eval)
        c[n++] = (struct run_keys_client){"eval", MSG_ROLE_EVALUATOR};
    if (monitor)
        c[n++] = (struct run_keys_client){"monitor", MSG_ROLE_MONITOR};
    char err[ERR_LEN];
    if (run_keys_prepare(l->o.keys, c, n, err) < 0)
        die("run: --keys %s: %s", l->o.keys, err);
}

/* Appends a client's --key and --server-key (keys in DIR) to argv at *k. */
static void client_keys(const struct launcher *l, const char *name, char **argv,
                        int *k, char key[4200], char pub[4200])
{
    if (!l->o.keys)
        return;
    run_keys_path(key, 4200, l->o.keys, name, "key");
    run_keys_path(pub, 4200, l->o.keys, RUN_KEYS_TRAINER, "pub");
    argv[(*k)++] = "--key";
    argv[(*k)++] = key;
    argv[(*k)++] = "--server-key";
    argv[(*k)++] = pub;
}

static void start_all(struct launcher *l)
{
    const struct run_opts *o = &l->o;
    char path[PATH_MAX], workers[16], nm[PROC_NAME_LEN];
    char key[4200], pub[4200], allow[4200];
    char *argv[4 * RUN_MAX_ARGS + 48];   /* --config and --set pairs */
    int k = 0;
    /* The evaluator starts after the trainer; the trainer waits for it
     * before its first step, so a short run's snapshots are not missed. */
    const bool eval = o->evals[0] &&
                      find_program("lejepa-eval", "eval", path, sizeof path);
    const bool monitor = o->monitor &&
                         find_program("lejepa-monitor", "tools", path, sizeof path);
    if (o->keys)
        prepare_keys(l, eval, monitor);

    if (!find_program("lejepa-train", "trainer", path, sizeof path))
        die("run: lejepa-train not found next to this program or in ../trainer "
            "(build it: ninja -C build)");
    argv[k++] = path;
    for (int i = 0; i < o->n_configs; i++) {
        argv[k++] = "--config";
        argv[k++] = (char *)o->configs[i];
    }
    for (int i = 0; i < o->n_sets; i++) {
        argv[k++] = "--set";
        argv[k++] = (char *)o->sets[i];
    }
    /* the evaluators this launch starts, also 0: a resumed run's config
     * may carry the count of the launch before it */
    argv[k++] = "--set";
    argv[k++] = eval ? "eval.wait_evaluators=1" : "eval.wait_evaluators=0";
    if (l->moved) {
        argv[k++] = "--set";
        argv[k++] = l->set_work;
        argv[k++] = "--set";
        argv[k++] = l->set_broadcast;
    }
    if (o->keys) {
        run_keys_path(key, sizeof key, o->keys, RUN_KEYS_TRAINER, "key");
        snprintf(allow, sizeof allow, "%s/%s", o->keys, RUN_KEYS_ALLOW);
    }
    const char *pairs[][2] = {{"--name", l->name}, {"--out", l->out_parent},
                              {"--data", o->data}, {"--minutes", o->minutes},
                              {"--steps", o->steps}, {"--resume", o->resume},
                              {"--bind", o->bind}, {"--key", o->keys ? key : NULL},
                              {"--allow", o->keys ? allow : NULL}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if (!pairs[i][1])
            continue;
        argv[k++] = (char *)pairs[i][0];
        argv[k++] = (char *)pairs[i][1];
    }
    if (o->insecure)
        argv[k++] = "--insecure";
    argv[k] = NULL;
    start(l, ROLE_TRAIN, "train", argv);

    if (!find_program("lejepa-loader", "loaders", path, sizeof path))
        die("run: lejepa-loader not found next to this program or in ../loaders");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int w = o->workers ? o->workers : (int)(cores / 2 / o->loaders);
    snprintf(workers, sizeof workers, "%d", w < 1 ? 1 : w);
    for (int i = 0; i < o->loaders; i++) {
        snprintf(nm, sizeof nm, "loader-%d", i + 1);
        char *a[16] = {path, "--connect", l->endpoint, "--data", (char *)o->data,
                       "--workers", workers, "--name", nm};
        int n = 9;
        client_keys(l, nm, a, &n, key, pub);
        start(l, ROLE_LOADER, nm, a);
    }

    if (o->evals[0] && !eval)
        proc_say("warning: lejepa-eval is not built (not next to this program nor "
                 "in ../eval): running without evaluators");
    else if (eval) {
        CHECK(find_program("lejepa-eval", "eval", path, sizeof path));
        char *a[16] = {path, "--connect", l->endpoint, "--tasks", (char *)o->evals,
                       "--out", l->run_dir, "--name", "eval"};
        int n = 9;
        client_keys(l, "eval", a, &n, key, pub);
        start(l, ROLE_EVAL, "eval", a);
    }

    if (o->monitor && !monitor)
        proc_say("warning: lejepa-monitor is not built: running without a dashboard");
    else if (monitor) {
        CHECK(find_program("lejepa-monitor", "tools", path, sizeof path));
        char *a[16] = {path, "--connect", l->endpoint, "--out", l->run_dir,
                       "--no-table"};
        int n = 6;
        client_keys(l, "monitor", a, &n, key, pub);
        start(l, ROLE_MONITOR, "monitor", a);
    }
}

/* The trainer has exited: loaders stop now, evaluators and the monitor
 * after their grace periods (check_grace) when it finished well. */
static void wind_down(struct launcher *l)
{
    l->down_since = util_time_mono();
    /* a failed trainer sent no BYE and no last snapshot: nothing to wait for */
    bool failed = l->procs[0].status != 0;
    for (int i = 0; i < l->n; i++) {
        if (failed) {
            proc_stop(&l->procs[i], SIGTERM);
        } else if (l->role[i] == ROLE_EVAL) {
            l->eval_cpu[i] = proc_cpu_seconds(&l->procs[i]);
            l->eval_cpu_at[i] = l->down_since;
        } else if (l->role[i] == ROLE_LOADER) {
            proc_stop(&l->procs[i], SIGTERM);
        }
    }
}

static void check_grace(struct launcher *l, double now)
{
    for (int i = 0; i < l->n; i++) {
        struct proc *p = &l->procs[i];
        if (!p->running || p->stop_sent > 0)
            continue;
        if (l->role[i] == ROLE_MONITOR && now - l->down_since >= RUN_MONITOR_GRACE_S)
            proc_stop(p, SIGTERM);
        if (l->role[i] != ROLE_EVAL)
            continue;
        if (now - l->down_since >= RUN_EVAL_GRACE_S) {
            proc_say("%s: grace period of %.0f s over: stopping it", p->name,
                     RUN_EVAL_GRACE_S);
            proc_stop(p, SIGTERM);
        } else if (now - l->eval_cpu_at[i] >= RUN_EVAL_IDLE_S) {
            double cpu = proc_cpu_seconds(p);
            if (cpu < 0 || cpu - l->eval_cpu[i] < RUN_EVAL_IDLE_CPU_S)
                proc_stop(p, SIGTERM);
            l->eval_cpu[i] = cpu;
            l->eval_cpu_at[i] = now;
        }
    }
}

static void on_ctrl_c(struct launcher *l)
{
    l->signals++;
    struct proc *train = &l->procs[0];
    if (l->signals == 1 && train->running) {
        proc_say("stopping: the trainer finishes its step and writes a checkpoint "
                 "(Ctrl-C again to stop everything now)");
        proc_stop(train, SIGINT);
    } else if (l->signals <= 2) {
        proc_say("stopping every process now (Ctrl-C again to kill them)");
        for (int i = 0; i < l->n; i++)
            proc_stop(&l->procs[i], SIGTERM);
        if (!l->down_since)
            l->down_since = util_time_mono();
    } else {
        for (int i = 0; i < l->n; i++)
            proc_kill_group(&l->procs[i]);
    }
}

static bool any_running(const struct launcher *l)
{
    for (int i = 0; i < l->n; i++)
        if (l->procs[i].running)
            return true;
    return false;
}

static void supervise(struct launcher *l)
{
    while (any_running(l)) {
        if (proc_pump(l->procs, l->n, wake_fd, RUN_POLL_MS)) {
            for (int i = util_stop_drain(); i > 0; i--)
                on_ctrl_c(l);
        }
        double now = util_time_mono();
        for (int i = 0; i < l->n; i++) {
            struct proc *p = &l->procs[i];
            if (proc_reap(p)) {
                if (p->status != 0 && !l->o.verbose)
                    proc_say("%s exited with status %d; its whole output: %s/logs/%s.log",
                             p->name, p->status, l->run_dir, p->name);
                else
                    proc_say("%s exited with status %d", p->name, p->status);
                if (i == 0 && !l->down_since)
                    wind_down(l);
                else if (!l->down_since && l->role[i] == ROLE_LOADER)
                    proc_say("warning: %s is gone; the trainer goes on with the "
                             "other loaders", p->name);
            }
            /* the trainer after the first Ctrl-C is writing its checkpoint */
            bool patient = i == 0 && l->signals < 2;
            if (p->running && p->stop_sent > 0 && !patient &&
                now - p->stop_sent > RUN_STOP_TIMEOUT_S)
                proc_kill_group(p);
        }
        if (l->down_since)
            check_grace(l, now);
    }
    /* nothing of ours may outlive the run: workers a child left behind */
    for (int i = 0; i < l->n; i++) {
        kill(-l->procs[i].pid, SIGKILL);
        proc_close(&l->procs[i]);
    }
}

static void print_value(char *out, size_t len, const char *key, double v, uint64_t step)
{
    size_t n = strlen(out);
    if (isnan(v))
        snprintf(out + n, len - n, "  %s -", key);
    else
        snprintf(out + n, len - n, "  %s %.4g (step %llu)", key, v,
                 (unsigned long long)step);
}

/* The last value of each metric of interest in metrics.jsonl. */
static void print_summary(const struct launcher *l)
{
    static const char *const keys[] = {"loss", "probe_acc_val", "knn_top1", "linear_top1"};
    enum { NK = sizeof keys / sizeof keys[0] };
    double val[NK];
    uint64_t step[NK] = {0};
    for (int k = 0; k < NK; k++)
        val[k] = NAN;
    char path[4200], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/metrics.jsonl", l->run_dir);
    size_t len;
    char *text = util_read_file(path, &len, err);
    if (!text) {
        proc_say("no metrics: %s", err);
        return;
    }
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        struct json *j = n ? json_parse(line, n, 8, err) : NULL;
        if (j) {
            const struct json *s = json_get(j, "step");
            for (int k = 0; k < NK; k++) {
                const struct json *v = json_get(j, keys[k]);
                if (v && v->type == JSON_NUMBER) {
                    val[k] = v->number;
                    step[k] = s && s->type == JSON_NUMBER ? (uint64_t)s->number : 0;
                }
            }
            json_free(j);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    char out[1024] = "";
    for (int k = 0; k < NK; k++)
        print_value(out, sizeof out, keys[k], val[k], step[k]);
    proc_say("summary (%s):%s", path, out);
}

static void print_where(const struct launcher *l)
{
    char path[4200], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/latest", l->run_dir);
    char *latest = util_read_file(path, NULL, err);
    if (latest) {
        latest[strcspn(latest, "\r\n")] = '\0';
        proc_say("checkpoint: %s/%s", l->run_dir, latest);
        free(latest);
    }
    proc_say("run directory: %s/  logs: %s/logs/  dashboard: %s/dashboard.html",
             l->run_dir, l->run_dir, l->run_dir);
}

int lejepa_run_main(int argc, char **argv)
{
    struct launcher *l = xcalloc(1, sizeof *l);
    parse_args(argc, argv, &l->o);
    load_config(l);
    struct stat st;
    bool is_dir = stat(l->o.data, &st) == 0 && S_ISDIR(st.st_mode);
    if (!is_dir)
        die("run: dataset %s: not a directory (prepare the default one with "
            "tools/run.sh, or pass --data DIR)", l->o.data);
    char logs[4200], err[ERR_LEN];
    snprintf(logs, sizeof logs, "%s/logs", l->run_dir);
    if (util_mkdir_p(logs, err) != 0)
        die("run: %s", err);
    wake_fd = util_stop_signals_init();
    proc_say("run %s: directory %s/, dashboard %s/dashboard.html", l->name,
             l->run_dir, l->run_dir);
    start_all(l);
    supervise(l);
    int status = l->procs[0].status;
    proc_say("trainer exit status %d", status);
    print_summary(l);
    print_where(l);
    free(l);
    return status;
}
