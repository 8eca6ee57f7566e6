/*
 * lejepa_sweep.c: `lejepa sweep`: runs of one config over a grid (--grid,
 * the product of the axes) or a list (--list FILE) of key assignments, one
 * after another, then the selection report (sweep_report.h). Each run is
 * `lejepa run` itself (this program re-executed with `run`), named
 * SWEEP-001, SWEEP-002, ... in run.dir; the sweep's own directory
 * run.dir/SWEEP holds plan.json (the runs, their assignments and exit
 * statuses), selection.json and selection.html. `--report SWEEP_DIR`
 * rebuilds the report from plan.json and the runs' directories.
 * Each run has its own process group; a Ctrl-C here is passed on to the
 * current run (its trainer checkpoints) and no further run starts; the
 * report covers the runs that have metrics.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "json.h"
#include "lejepa_cli.h"
#include "sweep_plan.h"
#include "sweep_report.h"
#include "util.h"

#define SWEEP_DEFAULT_CONFIG "configs/fashion-mnist.ini"
#define SWEEP_DEFAULT_EVALS "knn,linear"
#define SWEEP_MAX_ARGS 256
#define SWEEP_POLL_MS 200
#define SWEEP_PLAN_KIND "lejepa-sweep-plan"
#define SWEEP_PLAN_VERSION 1

struct sweep_opts {
    const char *configs[SWEEP_MAX_ARGS];
    int n_configs;
    const char *sets[SWEEP_MAX_ARGS];
    int n_sets;
    const char *grids[SWEEP_MAX_AXES];
    int n_grids;
    const char *list, *report, *name, *minutes, *steps;
    const char *data, *loaders, *workers, *evals;
    bool monitor, dry_run;
    double alpha;
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa sweep [--config FILE] [--set S.K=V ...]\n"
        "                    (--grid S.K=V1,V2,... ... | --list FILE)\n"
        "                    (--minutes M | --steps N) [--name NAME] [--alpha A]\n"
        "                    [--data DIR] [--loaders N] [--workers W] [--evals TASKS]\n"
        "                    [--no-monitor] [--dry-run]\n"
        "       lejepa sweep --report SWEEP_DIR [--alpha A]\n"
        "\n"
        "Trains one run per combination, one after another, each a `lejepa run`\n"
        "named NAME-001, NAME-002, ... in run.dir (default runs/); run.dir/NAME\n"
        "holds plan.json and the selection report: selection.json and\n"
        "selection.html (final loss, scaled loss loss/lambda^alpha, SIGReg and\n"
        "invariance, online and frozen probes, Spearman's rho of each label-free\n"
        "criterion with linear_top1, and whether its pick is the probe's).\n"
        "\n"
        "  --config FILE   base INI config (may repeat; default %s if it exists)\n"
        "  --set S.K=V     override a key in every run (may repeat)\n"
        "  --grid S.K=V1,V2,...  one axis of the grid (may repeat: the runs are\n"
        "                  the product, the last axis varying fastest); a list\n"
        "                  key's values are separated by ';' (model.widths=8,16;16,32)\n"
        "  --list FILE     one run per line: its S.K=V assignments separated by\n"
        "                  spaces ('--set' before each is allowed; '#' comments)\n"
        "  --minutes M     time budget of each run\n"
        "  --steps N       step count of each run\n"
        "  --name NAME     the sweep's name (default sweep-YYYYmmdd-HHMMSS)\n"
        "  --alpha A       the scaled loss's exponent (default %g, the paper's)\n"
        "  --data, --loaders, --workers, --evals, --no-monitor: as lejepa run\n"
        "                  (--evals default %s: the report needs linear_top1)\n"
        "  --dry-run       check every run's config, write plan.json, train nothing\n"
        "  --report DIR    rebuild DIR/selection.{json,html} from DIR/plan.json\n"
        "\n"
        "Exit status: 0 when every run exited 0; 1 when one did not or the sweep\n"
        "was stopped; 2 on bad arguments.\n",
        SWEEP_DEFAULT_CONFIG, SWEEP_DEFAULT_ALPHA, SWEEP_DEFAULT_EVALS);
}

static void parse_args(int argc, char **argv, struct sweep_opts *o)
{
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"grid", required_argument, NULL, 'g'},   {"list", required_argument, NULL, 'L'},
        {"report", required_argument, NULL, 'r'}, {"name", required_argument, NULL, 'n'},
        {"minutes", required_argument, NULL, 'm'}, {"steps", required_argument, NULL, 'S'},
        {"data", required_argument, NULL, 'd'},   {"loaders", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'}, {"evals", required_argument, NULL, 'e'},
        {"alpha", required_argument, NULL, 'a'},  {"no-monitor", no_argument, NULL, 'M'},
        {"dry-run", no_argument, NULL, 'D'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->monitor = true;
    o->evals = SWEEP_DEFAULT_EVALS;
    o->alpha = SWEEP_DEFAULT_ALPHA;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (o->n_configs == SWEEP_MAX_ARGS)
                die("sweep: too many --config flags");
            o->configs[o->n_configs++] = optarg;
            break;
        case 's':
            if (o->n_sets == SWEEP_MAX_ARGS)
                die("sweep: too many --set flags");
            o->sets[o->n_sets++] = optarg;
            break;
        case 'g':
            if (o->n_grids == SWEEP_MAX_AXES)
                die("sweep: more than %d --grid axes", SWEEP_MAX_AXES);
            o->grids[o->n_grids++] = optarg;
            break;
        case 'L': o->list = optarg; break;
        case 'r': o->report = optarg; break;
        case 'n': o->name = optarg; break;
        case 'm': {
            char *end;
            errno = 0;
            double m = strtod(optarg, &end);
            if (errno || *end || !(m > 0 && m <= 1e6))
                die("sweep --minutes %s: a number of minutes in (0, 1e6]", optarg);
            o->minutes = optarg;
            break;
        }
        case 'S':
            util_parse_long("sweep --steps", optarg, 1, 1000000000L);
            o->steps = optarg;
            break;
        case 'd': o->data = optarg; break;
        case 'l': o->loaders = optarg; break;
        case 'w': o->workers = optarg; break;
        case 'e': o->evals = optarg; break;
        case 'a': {
            char *end;
            errno = 0;
            o->alpha = strtod(optarg, &end);
            if (errno || *end || !isfinite(o->alpha) || fabs(o->alpha) > 100)
                die("sweep --alpha %s: a number in [-100, 100] (the paper uses 0.4)",
                    optarg);
            break;
        }
        case 'M': o->monitor = false; break;
        case 'D': o->dry_run = true; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("sweep: unexpected argument '%s' (see lejepa sweep --help)", argv[optind]);
    if (o->report)
        return;
    if (!o->list == !o->n_grids)
        die("sweep: give the runs with --grid S.K=V1,V2 (repeatable) or --list FILE, "
            "not both");
    if (!o->minutes == !o->steps)
        die("sweep: give each run a budget: --minutes M or --steps N (one of them)");
    if (o->n_configs == 0 && access(SWEEP_DEFAULT_CONFIG, R_OK) == 0)
        o->configs[o->n_configs++] = SWEEP_DEFAULT_CONFIG;
}

static void write_strings(FILE *f, const char *const *s, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        json_write_string(f, s[i]);
    }
    fputc(']', f);
}

/* plan.json: what the sweep runs and, once known, each run's exit status
 * (null: not run yet). Rewritten atomically after every run. */
static void plan_write(const char *dir, const char *sweep, const struct sweep_opts *o,
                       const struct sweep_plan *p, const int *status)
{
    char path[PATH_MAX + 32], err[ERR_LEN], *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        die("sweep: open_memstream: out of memory");
    fprintf(f, "{\"kind\": \"%s\", \"version\": %d, \"sweep\": ", SWEEP_PLAN_KIND,
            SWEEP_PLAN_VERSION);
    json_write_string(f, sweep);
    fputs(", \"configs\": ", f);
    write_strings(f, o->configs, o->n_configs);
    fputs(", \"sets\": ", f);
    write_strings(f, o->sets, o->n_sets);
    fputs(", \"budget\": ", f);
    json_write_string(f, o->minutes ? "minutes" : "steps");
    fputs(", \"budget_value\": ", f);
    json_write_string(f, o->minutes ? o->minutes : o->steps);
    fputs(",\n \"runs\": [", f);
    for (int r = 0; r < p->n_runs; r++) {
        char name[CONFIG_STR_LEN + 16];
        snprintf(name, sizeof name, "%s-%03d", sweep, r + 1);
        fputs(r ? ",\n  {\"name\": " : "\n  {\"name\": ", f);
        json_write_string(f, name);
        fputs(", \"sets\": ", f);
        const char *sets[SWEEP_MAX_SETS];
        for (int i = 0; i < p->runs[r].n; i++)
            sets[i] = p->runs[r].sets[i];
        write_strings(f, sets, p->runs[r].n);
        if (status[r] < 0)
            fputs(", \"status\": null}", f);
        else
            fprintf(f, ", \"status\": %d}", status[r]);
    }
    fputs("\n ]}\n", f);
    if (fclose(f) != 0)
        die("sweep: rendering plan.json: out of memory");
    snprintf(path, sizeof path, "%s/plan.json", dir);
    if (util_write_file_atomic(path, buf, len, err) != 0)
        die("sweep: %s", err);
    free(buf);
}

/* Runs `lejepa run` for run r in its own process group and waits for it;
 * stop signals received meanwhile go to it as SIGINT. Returns its exit
 * status (128 + signal when killed). */
static int run_one(char **argv, int wake_fd, int *stops)
{
    pid_t pid = fork();
    if (pid < 0)
        die("sweep: fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        execv("/proc/self/exe", argv);
        fprintf(stderr, "sweep: exec /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    for (;;) {
        struct pollfd pfd = {.fd = wake_fd, .events = POLLIN};
        int rc = poll(&pfd, 1, SWEEP_POLL_MS);
        if (rc > 0) {
            for (int i = util_stop_drain(); i > 0; i--) {
                (*stops)++;
                fprintf(stdout, "[sweep] stop: passing it to the run; no further run "
                        "starts\n");
                fflush(stdout);
                kill(pid, SIGINT);
            }
        }
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (w < 0 && errno != EINTR)
            die("sweep: waitpid: %s", strerror(errno));
    }
}

static int build_report(const char *dir, double alpha)
{
    char path[PATH_MAX + 32], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/plan.json", dir);
    size_t len;
    char *text = util_read_file(path, &len, err);
    if (!text)
        die("sweep --report: %s (a sweep directory holds plan.json)", err);
    struct json *j = json_parse(text, len, 8, err);
    if (!j)
        die("sweep --report: %s: %s", path, err);
    const struct json *kind = json_get(j, "kind"), *version = json_get(j, "version");
    const struct json *sweep = json_get(j, "sweep"), *runs = json_get(j, "runs");
    if (!kind || kind->type != JSON_STRING || strcmp(kind->string, SWEEP_PLAN_KIND) != 0)
        die("sweep --report: %s: not a sweep plan (kind %s expected)", path,
            SWEEP_PLAN_KIND);
    if (!version || version->type != JSON_NUMBER || version->number != SWEEP_PLAN_VERSION)
        die("sweep --report: %s: plan version %g; this lejepa reads version %d", path,
            version && version->type == JSON_NUMBER ? version->number : -1.0,
            SWEEP_PLAN_VERSION);
    if (!sweep || sweep->type != JSON_STRING || !runs || runs->type != JSON_ARRAY)
        die("sweep --report: %s: no sweep name or runs", path);
    /* the runs are the sweep directory's siblings */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *pd = dirname(parent);
    int n = (int)runs->len;
    const char **names = xcalloc((size_t)n + 1, sizeof *names);
    char **dirs = xcalloc((size_t)n + 1, sizeof *dirs);
    int k = 0;
    for (const struct json *r = runs->child; r; r = r->next) {
        const struct json *nm = json_get(r, "name");
        if (!nm || nm->type != JSON_STRING || strchr(nm->string, '/'))
            die("sweep --report: %s: run %d has no valid name", path, k + 1);
        names[k] = nm->string;
        dirs[k] = xmalloc(strlen(pd) + strlen(nm->string) + 2);
        sprintf(dirs[k], "%s/%s", pd, nm->string);
        k++;
    }
    struct sweep_report rep;
    if (sweep_report_build(&rep, names, (const char *const *)dirs, k, alpha, err) != 0)
        die("sweep --report: %s", err);
    if (sweep_report_write(&rep, dir, sweep->string, err) != 0)
        die("sweep --report: %s", err);
    char rl[32], rs[32];
    snprintf(rl, sizeof rl, "%.3f", rep.rho_loss);
    snprintf(rs, sizeof rs, "%.3f", rep.rho_scaled);
    printf("[sweep] %s: %d runs, Spearman vs linear_top1 over %d: loss %s, scaled loss "
           "%s (alpha %g)\n", sweep->string, rep.n, rep.n_corr, rl, rs, alpha);
    printf("[sweep] picks: loss %s, scaled loss %s, linear_top1 %s\n",
           rep.pick_loss >= 0 ? rep.runs[rep.pick_loss].name : "-",
           rep.pick_scaled >= 0 ? rep.runs[rep.pick_scaled].name : "-",
           rep.pick_linear >= 0 ? rep.runs[rep.pick_linear].name : "-");
    printf("[sweep] report: %s/selection.html, %s/selection.json\n", dir, dir);
    sweep_report_free(&rep);
    for (int i = 0; i < k; i++)
        free(dirs[i]);
    free(dirs);
    free(names);
    json_free(j);
    free(text);
    return 0;
}

static bool valid_name(const char *s)
{
    return *s && strlen(s) <= 60 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
                                              "nopqrstuvwxyz0123456789._-") == strlen(s) &&
           strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int lejepa_sweep_main(int argc, char **argv)
{
    struct sweep_opts *o = xcalloc(1, sizeof *o);
    parse_args(argc, argv, o);
    if (o->report) {
        int rc = build_report(o->report, o->alpha);
        free(o);
        return rc;
    }
    char err[ERR_LEN];
    struct config base;
    config_defaults(&base);
    for (int i = 0; i < o->n_configs; i++)
        if (config_load_file(&base, o->configs[i], err) != 0)
            die("%s", err);
    for (int i = 0; i < o->n_sets; i++)
        if (config_set(&base, o->sets[i], err) != 0)
            die("%s", err);

    struct sweep_plan plan;
    if (o->n_grids) {
        struct sweep_axis *axes = xcalloc((size_t)o->n_grids, sizeof *axes);
        for (int i = 0; i < o->n_grids; i++)
            if (sweep_axis_parse(&axes[i], o->grids[i], err) != 0)
                die("sweep: %s", err);
        if (sweep_plan_grid(&plan, axes, o->n_grids, err) != 0)
            die("%s", err);
        free(axes);
    } else {
        char *text = util_read_file(o->list, NULL, err);
        if (!text)
            die("sweep --list: %s", err);
        if (sweep_plan_list(&plan, text, o->list, err) != 0)
            die("sweep --list %s", err);
        free(text);
    }
    if (sweep_plan_check(&plan, &base, err) != 0)
        die("sweep: %s", err);

    char sweep[CONFIG_STR_LEN], dir[PATH_MAX];
    if (o->name) {
        snprintf(sweep, sizeof sweep, "%s", o->name);
    } else {
        time_t t = time(NULL);
        struct tm tm;
        strftime(sweep, sizeof sweep, "sweep-%Y%m%d-%H%M%S", localtime_r(&t, &tm));
    }
    if (!valid_name(sweep))
        die("sweep: bad name '%s' (letters, digits, '.', '_', '-'; at most 60)", sweep);
    snprintf(dir, sizeof dir, "%s/%s", base.run.dir, sweep);
    struct stat st;
    if (stat(dir, &st) == 0)
        die("sweep: %s exists (choose another --name, or rebuild its report with "
            "--report %s)", dir, dir);
    for (int r = 0; r < plan.n_runs; r++) {
        char rd[PATH_MAX + 16];
        snprintf(rd, sizeof rd, "%s-%03d", dir, r + 1);
        if (stat(rd, &st) == 0)
            die("sweep: run directory %s exists (choose another --name)", rd);
    }
    if (util_mkdir_p(dir, err) != 0)
        die("sweep: %s", err);
    int *status = xmalloc((size_t)plan.n_runs * sizeof *status);
    for (int r = 0; r < plan.n_runs; r++)
        status[r] = -1;
    plan_write(dir, sweep, o, &plan, status);
    printf("[sweep] %s: %d runs, plan %s/plan.json\n", sweep, plan.n_runs, dir);
    for (int r = 0; r < plan.n_runs; r++) {
        printf("[sweep]   %s-%03d:", sweep, r + 1);
        for (int i = 0; i < plan.runs[r].n; i++)
            printf(" %s", plan.runs[r].sets[i]);
        putchar('\n');
    }
    fflush(stdout);
    if (o->dry_run) {
        sweep_plan_free(&plan);
        free(status);
        free(o);
        return 0;
    }

    int wake_fd = util_stop_signals_init(), stops = 0, failed = 0;
    for (int r = 0; r < plan.n_runs && stops == 0; r++) {
        char name[CONFIG_STR_LEN + 16];
        snprintf(name, sizeof name, "%s-%03d", sweep, r + 1);
        char *a[8 * SWEEP_MAX_ARGS];
        int k = 0;
        a[k++] = "lejepa";
        a[k++] = "run";
        for (int i = 0; i < o->n_configs; i++) {
            a[k++] = "--config";
            a[k++] = (char *)o->configs[i];
        }
        for (int i = 0; i < o->n_sets; i++) {
            a[k++] = "--set";
            a[k++] = (char *)o->sets[i];
        }
        for (int i = 0; i < plan.runs[r].n; i++) {
            a[k++] = "--set";
            a[k++] = plan.runs[r].sets[i];
        }
        const char *pairs[][2] = {
            {"--name", name}, {"--minutes", o->minutes}, {"--steps", o->steps},
            {"--data", o->data}, {"--loaders", o->loaders}, {"--workers", o->workers},
            {"--evals", o->evals},
        };
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
            if (pairs[i][1]) {
                a[k++] = (char *)pairs[i][0];
                a[k++] = (char *)pairs[i][1];
            }
        if (!o->monitor)
            a[k++] = "--no-monitor";
        a[k] = NULL;
        printf("[sweep] run %d/%d: %s\n", r + 1, plan.n_runs, name);
        fflush(stdout);
        status[r] = run_one(a, wake_fd, &stops);
        failed += status[r] != 0;
        printf("[sweep] %s exited with status %d\n", name, status[r]);
        plan_write(dir, sweep, o, &plan, status);
    }
    if (stops)
        printf("[sweep] stopped: the report covers the runs that have metrics\n");
    build_report(dir, o->alpha);
    sweep_plan_free(&plan);
    free(status);
    free(o);
    return failed || stops ? 1 : 0;
}
