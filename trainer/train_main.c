/*
 * train_main.c: lejepa-train, the hub of a run (DESIGN.md §3). Command line
 * and config (file, --set, flags; a resumed run starts from its checkpoint's
 * config), the run directory (config.ini, log, metrics.jsonl, checkpoints),
 * the work (ROUTER) and broadcast (PUB) sockets, signals, the dataset
 * identity from --data, and the orderly end: final checkpoint, BYE to every
 * client. The step loop itself is train_loop.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "export.h"
#include "nn_isa.h"
#include "train.h"
#include "compute.h"
#include "util.h"

static void usage(FILE *out)
{
    fputs(
        "usage: lejepa-train [--config FILE] [--set section.key=value ...]\n"
        "                    [--data DIR] [--resume CKPT] [--minutes M]\n"
        "                    [--steps N] [--name NAME] [--out DIR]\n"
        "                    [--bind ADDR] [--key FILE --allow FILE]\n"
        "Trains a LeJEPA encoder on the batches lejepa-loader processes send.\n"
        "Binds the work endpoint (run.endpoint) and the broadcast endpoint\n"
        "(run.broadcast); loaders, evaluators and monitors connect to the "
        "work\n"
        "endpoint.\n"
        "  --config FILE   INI config (may repeat; later files override)\n"
        "  --set S.K=V     override one config key (may repeat; wins over "
        "files)\n"
        "  --data DIR      the dataset index to check loaders against\n"
        "                  (run.data); without it the first loader's dataset\n"
        "                  is the run's\n"
        "  --resume CKPT   continue from a checkpoint file or a run directory\n"
        "                  (its `latest`); the checkpoint's config applies,\n"
        "                  then flags\n"
        "  --minutes M     time budget (optim.minutes): the step count is "
        "fixed\n"
        "                  after optim.timing_steps steps, capped by "
        "optim.steps,\n"
        "                  and re-fitted every 5 x timing_steps steps from "
        "the\n"
        "                  pace of the steps just done\n"
        "  --steps N       total steps (optim.steps)\n"
        "  --name NAME     run name (run.name); default run-YYYYmmdd-HHMMSS\n"
        "  --out DIR       parent of the run directories (run.dir, default "
        "runs)\n"
        "  --bind ADDR     bind both endpoints on ADDR instead of loopback\n"
        "                  (needs --key and --allow, or --insecure)\n"
        "  --key FILE      the trainer's CurveZMQ key pair (lejepa keys new\n"
        "                  trainer); both sockets then admit only the keys of\n"
        "  --allow FILE    an allow-list, one `ROLE NAME PUBLICKEY` line per\n"
        "                  client key, each in its role (PROTOCOL.md, Keys "
        "and\n"
        "                  roles)\n"
        "  --insecure      bind beyond loopback without keys (warns)\n"
        "  --help-config   every config key with its bounds, default and help\n"
        "  --version       version, BLAS and threads\n"
        "Run directory DIR/NAME: config.ini, log, metrics.jsonl,\n"
        "ckpt-<step>.safetensors (the newest run.keep_ckpts), latest,\n"
        "backbone.safetensors (torchvision/timm names, at the end).\n"
        "SIGINT/SIGTERM: finish the step, checkpoint, exit 0.\n"
        "Several ranks: mpirun -n R lejepa-train ... (a build with MPI): rank "
        "0\n"
        "binds run.endpoint and writes the run, rank r serves loaders at port\n"
        "+ 2r (its --bind address, else rank 0's host); clients connect to\n"
        "rank 0 (README: The trainer on several machines).\n",
        out);
}

/* --resume's value, looked up before the config is parsed (rank 0's
 * alone: the checkpoint is on its disk, and it sends it to the others). */
static const char *find_resume(const struct train *t, int argc, char **argv)
{
    if (!train_dist_root(&t->dist))
        return NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return NULL;
        if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--resume=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

static void set_key(struct config *c, const char *key, const char *value)
{
    char a[512], err[ERR_LEN];
    snprintf(a, sizeof a, "%s=%s", key, value);
    if (config_set(c, a, err) != 0)
        die("%s", err);
}

/* tcp://ADDR:PORT keeping the endpoint's port. */
static void rebind(struct config *c, char *endpoint, const char *addr,
                   const char *key)
{
    const char *colon = strrchr(endpoint, ':');
    if (strncmp(endpoint, "tcp://", 6) != 0 || !colon)
        die("--bind needs tcp endpoints; %s is %s", key, endpoint);
    char value[CONFIG_STR_LEN + 64];
    snprintf(value, sizeof value, "tcp://%s%s", addr, colon);
    set_key(c, key, value);
}

static bool is_loopback(const char *endpoint)
{
    return strncmp(endpoint, "ipc://", 6) == 0 ||
        strncmp(endpoint, "inproc://", 9) == 0 ||
        strncmp(endpoint, "tcp://127.", 10) == 0 ||
        strncmp(endpoint, "tcp://localhost:", 16) == 0 ||
        strncmp(endpoint, "tcp://[::1]:", 12) == 0;
}

static void parse_args(struct train *t, int argc, char **argv)
{
    char err[ERR_LEN];
    config_defaults(&t->cfg);
    const char *resume = find_resume(t, argc, argv);
    if (resume) {
        char *text =
            train_ckpt_read_config(resume, t->resume, sizeof t->resume, err);
        if (!text || config_load_string(&t->cfg, text, t->resume, err) != 0)
            die("%s", err);
        free(text);
        /* the run continues where its checkpoint is (a copied or moved run
         * directory too), not where the checkpoint's config says it was;
         * --out and --name still choose otherwise */
        char dir[4096], parent[4096];
        snprintf(dir, sizeof dir, "%s", t->resume);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
        char *real = realpath(dir, NULL);
        if (real) {
            snprintf(parent, sizeof parent, "%s", real);
            char *base = strrchr(parent, '/');
            char set_name[4200], set_dir[4200], ignore[ERR_LEN];
            if (base && base[1]) {
                *base = '\0';
                snprintf(set_name, sizeof set_name, "run.name=%s", base + 1);
                snprintf(set_dir, sizeof set_dir, "run.dir=%s",
                         parent[0] ? parent : "/");
                /* a name the config cannot hold keeps the checkpoint's */
                struct config keep = t->cfg;
                if (config_set(&t->cfg, set_name, ignore) != 0 ||
                    config_set(&t->cfg, set_dir, ignore) != 0)
                    t->cfg = keep;
            }
            free(real);
        }
    }
    if (config_from_args(&t->cfg, &argc, argv, err) != 0)
        die("%s", err);
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"resume", required_argument, NULL, 'r'},
        {"minutes", required_argument, NULL, 'm'},
        {"steps", required_argument, NULL, 's'},
        {"name", required_argument, NULL, 'n'},
        {"bind", required_argument, NULL, 'b'},
        {"out", required_argument, NULL, 'o'},
        {"key", required_argument, NULL, 'k'},
        {"allow", required_argument, NULL, 'a'},
        {"insecure", no_argument, NULL, 'I'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *bind = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            set_key(&t->cfg, "run.data", optarg);
            break;
        case 'r':
            break;
        case 'm':
            set_key(&t->cfg, "optim.minutes", optarg);
            break;
        case 's':
            set_key(&t->cfg, "optim.steps", optarg);
            break;
        case 'n':
            set_key(&t->cfg, "run.name", optarg);
            break;
        case 'b':
            bind = optarg;
            break;
        case 'o':
            set_key(&t->cfg, "run.dir", optarg);
            break;
        case 'k':
            t->keys.key = optarg;
            break;
        case 'a':
            t->keys.allow = optarg;
            break;
        case 'I':
            t->insecure = true;
            break;
        case 'V':
            compute_print_build_info(stdout, "lejepa-train");
            nn_isa_print(stdout);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    t->bind = bind;
    if (bind) {
        rebind(&t->cfg, t->cfg.run.endpoint, bind, "run.endpoint");
        rebind(&t->cfg, t->cfg.run.broadcast, bind, "run.broadcast");
    }
    if (config_validate(&t->cfg, err) != 0)
        die("%s", err);
    if (!t->cfg.run.name[0]) {
        char name[64];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(name, sizeof name, "run-%Y%m%d-%H%M%S", &tm);
        set_key(&t->cfg, "run.name", name);
    }
}

static void open_run_dir(struct train *t)
{
    char err[ERR_LEN];
    if (train_rundir_open(&t->rundir, t->cfg.run.dir, t->cfg.run.name,
                          t->resume[0] != 0, err) != 0)
        die("%s", err);
    train_log("run %s in %s%s%s", t->cfg.run.name, t->rundir.dir,
              t->resume[0] ? ", resuming " : "", t->resume);
    train_log_raw("effective config:\n");
    train_log_raw(t->config_text);
    if (train_rundir_save_config(&t->rundir, t->config_text, err) != 0)
        die("%s", err);
}

static void open_sockets(struct train *t)
{
    char err[ERR_LEN];
    bool exposed =
        !is_loopback(t->cfg.run.endpoint) || !is_loopback(t->cfg.run.broadcast);
    bool keyed = t->keys.key && t->keys.key[0];
    if (exposed && !keyed && !t->insecure)
        die("%s / %s is beyond loopback and the trainer has no keys: anyone "
            "who reaches these ports could join the run. Make keys with "
            "`lejepa keys new trainer` and `lejepa keys new NAME --role ROLE` "
            "per client, put the clients' lines in an allow-list file and "
            "start with --key keys/trainer.key --allow FILE (README: Loaders "
            "on other machines); --insecure binds without keys on a private "
            "network",
            t->cfg.run.endpoint, t->cfg.run.broadcast);
    if (!keyed && t->keys.allow)
        die("--allow %s needs --key FILE, the trainer's key pair",
            t->keys.allow);
    t->net.no_pub = !train_dist_root(&t->dist);
    if (train_net_open(&t->net, &t->cfg, train_eval_pub_hwm(&t->cfg), &t->keys,
                       err) != 0)
        die("%s", err);
    t->rundir.pub = t->net.pub;
    t->tickets.timeout_s = t->cfg.limits.ticket_timeout_s;
    if (t->net.no_pub)
        train_log("work endpoint %s for this rank's loaders%s",
                  t->cfg.run.endpoint, keyed ? " (CurveZMQ)" : "");
    else
        train_log("work endpoint %s, broadcast %s%s", t->cfg.run.endpoint,
                  t->cfg.run.broadcast, keyed ? " (CurveZMQ)" : "");
    if (exposed && !keyed)
        train_log("WARNING: --insecure: bound beyond loopback without keys; "
                  "anyone who reaches these ports can join the run or read "
                  "its metrics and embeddings");
}

/* The run's dataset from --data (or the checkpoint); otherwise the first
 * loader's, taken when it says HELLO. */
static void load_dataset(struct train *t)
{
    char err[ERR_LEN];
    struct train_dataset from_ckpt = {0};
    if (t->resume[0] &&
        train_ckpt_read_dataset(t->resume, &from_ckpt, err) != 0)
        die("%s", err);
    if (t->cfg.run.data[0]) {
        struct dataset d;
        if (dataset_open(&d, t->cfg.run.data, err) != 0)
            die("%s", err);
        struct train_dataset *td = &t->data;
        td->known = true;
        td->fingerprint = d.fingerprint;
        td->n_train = d.split[DATASET_TRAIN].n;
        td->n_val = d.split[DATASET_VAL].n;
        td->n_classes = (uint32_t)d.n_classes;
        td->classes =
            xcalloc(d.n_classes ? d.n_classes : 1, sizeof *td->classes);
        for (size_t i = 0; i < d.n_classes; i++)
            td->classes[i] = xstrdup(d.classes[i]);
        snprintf(td->source, sizeof td->source, "--data %.200s",
                 t->cfg.run.data);
        dataset_free(&d);
        if (from_ckpt.known && from_ckpt.fingerprint != td->fingerprint)
            die("--data %s has fingerprint %016" PRIx64
                ", the checkpoint %s was "
                "trained on %016" PRIx64,
                t->cfg.run.data, td->fingerprint, t->resume,
                from_ckpt.fingerprint);
        train_log("dataset from %s: fingerprint %016" PRIx64 " (%" PRIu64
                  " train, %" PRIu64 " val, %" PRIu32 " classes)",
                  td->source, td->fingerprint, td->n_train, td->n_val,
                  td->n_classes);
    } else if (from_ckpt.known) {
        t->data = from_ckpt;
    } else {
        train_log("waiting for the first loader's dataset");
    }
}

/* The reason in the BYE every client gets at the end (PROTOCOL.md). */
static const char *bye_reason(const struct train *t, int code)
{
    if (t->ctl.interrupted)
        return "interrupted by signal";
    if (code == 0 && t->engine_ready && t->prog.step >= t->prog.total)
        return "run finished";
    return "trainer stopped";
}

static int finish(struct train *t, int code)
{
    char err[ERR_LEN];
    const struct train_progress *p = &t->prog;
    bool root = train_dist_root(&t->dist);
    if (!root) {
        /* rank 0 writes the run */
    } else if (t->engine_ready && code == 0) {
        if (!p->total_fixed)
            train_log(
                "no final checkpoint: the time budget's step count is not "
                "fixed yet");
        else if ((!p->have_ckpt || p->last_ckpt_step != p->step) &&
                 train_ckpt_write(t, err) != 0) {
            train_log("final checkpoint failed: %s", err);
            code = 1;
        }
    } else if (!t->engine_ready) {
        train_log("no checkpoint: the model was never built");
    }
    /* the backbone alone, named as torchvision/timm name it (lejepa export) */
    if (root && t->engine_ready && code == 0 && p->have_ckpt) {
        char out[4200];
        snprintf(out, sizeof out, "%s/backbone.safetensors", t->rundir.dir);
        if (export_backbone(t->rundir.dir, out, err) != 0)
            train_log("backbone export failed: %s", err);
        else
            train_log("backbone weights of step %" PRIu64 " in %s",
                      p->last_ckpt_step, out);
    }
    if (t->ctl.fatal[0])
        train_log("error: %s", t->ctl.fatal);
    train_hub_bye_all(t, bye_reason(t, code));
    if (t->engine_ready) {
        train_ckpt_writer_stop(&t->ckpt);
        train_engine_stop(&t->engine);
        train_log("%s at step %" PRIu64 " of %" PRIu64 " (%" PRIu64 " bad "
                  "messages, %" PRIu64 " duplicate batches, %" PRIu64
                  " skipped "
                  "steps, %" PRIu64 " samples excluded)",
                  code == 0 && p->step == p->total ? "done" : "stopped",
                  p->step, p->total, t->net.bad_messages, t->tickets.duplicates,
                  t->iv.skipped_steps, t->steps.sampler.n_failed);
        train_eval_free(t->eval);
        train_step_free(&t->steps);
        train_engine_free(&t->engine);
    }
    train_net_close(&t->net);
    train_dataset_free(&t->data);
    free(t->config_text);
    train_rundir_close(&t->rundir);
    if (t->dist.on && !t->engine_ready) {
        /* the other ranks wait for this one's dataset: end them too */
        train_log("stopped before the ranks began: ending every rank");
        dist_abort(&t->dist.d, code ? code : 1);
    }
    train_dist_finish(&t->dist);
    return code;
}

int main(int argc, char **argv)
{
    compute_passive_reexec(argv);
    struct train *t = xcalloc(1, sizeof *t);
    train_dist_start(&t->dist, &argc, &argv);
    const bool root = train_dist_root(&t->dist);
    parse_args(t, argc, argv);
    util_stop_signals_init();
    t->config_text = config_to_string(&t->cfg);
    train_dist_sync_config(t, t->bind);
    compute_set_threads(train_dist_threads(&t->dist, (int)t->cfg.run.threads));
    /* Everything that can refuse the run does so before the run directory
     * exists: an existing run's name, a bad --data, a busy port. */
    char err[ERR_LEN];
    if (root && !t->resume[0] &&
        train_rundir_check_fresh(t->cfg.run.dir, t->cfg.run.name, err) != 0)
        die("%s", err);
    if (root)
        load_dataset(t);
    if (t->dist.on) {
        /* every rank binds, then rank 0 learns where each is; the model is
         * built when rank 0 knows the dataset (at once, or at the first
         * loader's HELLO), the other ranks waiting for it */
        open_sockets(t);
        train_dist_gather_endpoints(t);
        if (t->data.known || !root)
            train_engine_init(t);
    } else {
        /* With the dataset known, the model is built before the sockets
         * open, so no client waits for its WELCOME while the arenas are
         * allocated. */
        if (t->data.known)
            train_engine_init(t);
        open_sockets(t);
    }
    if (root)
        open_run_dir(t);
    int code = train_loop_run(t, util_stop_signals());
    code = finish(t, code);
    free(t);
    return code;
}
