/*
 * loader_main.c: lejepa-loader's command line, log prefix and signals.
 *
 *   lejepa-loader --connect tcp://HOST:5555 --data DIR [--workers N]
 *                 [--name NAME] [--credit C] [--sample-timeout S]
 *                 [--key FILE --server-key FILE] [--worker-memory-mb MB]
 *
 * Opens the dataset index and hands over to loader_run (loader_loop.c).
 * Signal handlers only write a byte to a self-pipe the loop polls. Started
 * as `lejepa-loader --worker` (by the loader itself, never by users) the
 * program is a decode worker serving jobs on fd 3 (loader_worker.c).
 * Start-up errors exit 2; REFUSE exits 1; a clean stop exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "dataset.h"
#include "loader.h"
#include "loader_work.h"
#include "util.h"

#define LOADER_WORKERS_MAX 256
#define LOADER_CREDIT_PER_WORKER 2
#define LOADER_CREDIT_MAX 65536

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa-loader --connect tcp://HOST:5555 --data DIR [options]\n"
        "\n"
        "Decodes and augments the samples the trainer asks for (TICKETs) and\n"
        "sends them back as BATCHes. The view spec comes from the trainer; the\n"
        "loader only needs the trainer's work endpoint and its copy of the\n"
        "dataset (an ImageFolder tree: DIR/train/<class>/..., DIR/val/...; a\n"
        "folder of unlabelled images; or tar shards from `lejepa shard`, all\n"
        "of them or some, with their lejepa-index.txt).\n"
        "It may start before the trainer, reconnects when the trainer goes\n"
        "away and runs until SIGINT/SIGTERM, when it finishes or hands back\n"
        "its tickets (a second signal exits at once).\n"
        "\n"
        "  --connect ENDPOINT   trainer's work socket (tcp://HOST:5555)\n"
        "  --data DIR           dataset root\n"
        "  --workers N          decode processes (default: number of cores)\n"
        "  --name NAME          name in logs and HELLO (default loader@HOST)\n"
        "  --credit C           tickets held at once (default %d x workers)\n"
        "  --sample-timeout S   seconds one sample may take before its worker\n"
        "                       is killed and the sample fails (default %g)\n"
        "  --worker-memory-mb MB  address space of one decode process; a sample\n"
        "                       that needs more fails as 'env' (default %d, 0: none)\n"
        KEYS_CLIENT_HELP
        "  --help, --version\n"
        "\n"
        "Exit status: 0 after a clean stop, 1 when refused by the trainer (REFUSE,\n"
        "or its handshake: keys not accepted) or stopped by a second signal, 2 on\n"
        "bad arguments or an unreadable dataset.\n",
        LOADER_CREDIT_PER_WORKER, LOADER_SAMPLE_TIMEOUT_S, LOADER_WORKER_MEMORY_MB);
}

static void parse_args(int argc, char **argv, struct loader_opts *o)
{
    static const struct option longs[] = {
        {"connect", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},
        {"workers", required_argument, NULL, 'w'},
        {"name", required_argument, NULL, 'n'},
        {"credit", required_argument, NULL, 'k'},
        {"sample-timeout", required_argument, NULL, 't'},
        KEYS_CLIENT_LONGOPTS,
        {"worker-memory-mb", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->sample_timeout_s = LOADER_SAMPLE_TIMEOUT_S;
    o->worker_memory_mb = LOADER_WORKER_MEMORY_MB;
    long credit = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        char *end;
        if (keys_client_option(&o->keys, c, optarg))
            continue;
        switch (c) {
        case 'c': o->endpoint = optarg; break;
        case 'd': o->data = optarg; break;
        case 'w': o->workers = (int)util_parse_long("--workers", optarg, 1, LOADER_WORKERS_MAX); break;
        case 'k': credit = util_parse_long("--credit", optarg, 1, LOADER_CREDIT_MAX); break;
        case 'n':
            if (!optarg[0] || strlen(optarg) >= LOADER_NAME_MAX)
                die("--name: expected 1..%d characters", LOADER_NAME_MAX - 1);
            snprintf(o->name, sizeof o->name, "%s", optarg);
            break;
        case 't':
            errno = 0;
            o->sample_timeout_s = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->sample_timeout_s > 0) ||
                o->sample_timeout_s > 86400)
                die("--sample-timeout %s: expected seconds in (0, 86400]", optarg);
            break;
        case 'm':
            o->worker_memory_mb = util_parse_long("--worker-memory-mb", optarg, 0,
                                                  LOADER_WORKER_MEMORY_MB_MAX);
            break;
        case 'h': usage(stdout); exit(0);
        case 'V': util_print_build_info(stdout, "lejepa-loader"); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->endpoint)
        die("--connect is required, e.g. --connect tcp://127.0.0.1:5555");
    char err[ERR_LEN];
    if (client_endpoint_check(o->endpoint, err) < 0)
        die("--connect %s", err);
    if (!o->data)
        die("--data is required: the dataset root (DIR/train/<class>/...)");
    keys_client_load(&o->keys);
    if (o->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->workers = n < 1 ? 1 : n > LOADER_WORKERS_MAX ? LOADER_WORKERS_MAX : (int)n;
    }
    o->credit = credit ? (uint32_t)credit
                       : (uint32_t)(LOADER_CREDIT_PER_WORKER * o->workers);
    if (!o->name[0]) {
        char host[128] = "localhost";
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = '\0';
        snprintf(o->name, sizeof o->name, "loader@%s", host);
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--worker") == 0)
        work_child_main(3);
    struct loader_opts o;
    parse_args(argc, argv, &o);
    loader_log_set_name(o.name);

    char err[ERR_LEN];
    struct dataset d;
    if (dataset_open(&d, o.data, err) < 0)
        die("%s", err);
    char fp[17];
    dataset_format_fingerprint(d.fingerprint, fp);
    loader_log("dataset %s: %zu classes, %zu train, %zu val, fingerprint %s%s", d.root,
               d.n_classes, d.split[DATASET_TRAIN].n, d.split[DATASET_VAL].n, fp,
               d.n_shards ? " (tar shards)" : "");
    if (d.held)
        loader_log("a partial copy: %zu of the %zu samples are here (%s); the trainer "
                   "gives this loader only those", d.n_held,
                   d.split[DATASET_TRAIN].n + d.split[DATASET_VAL].n,
                   d.n_shards ? "the shards present" : "the files present");

    int stop_fd = util_stop_signals_init();
    int status = loader_run(&o, &d, stop_fd);
    dataset_free(&d);
    return status;
}
