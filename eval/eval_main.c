/*
 * eval_main.c: lejepa-eval's command line, log and signals.
 *
 *   lejepa-eval --connect tcp://HOST:5555 [--tasks knn,linear,segmap] [--out DIR]
 *   lejepa-eval --train PREFIX --val PREFIX [--tasks knn,linear] [--json]
 *
 * The first follows a trainer's eval snapshots (eval_conn.c), the second
 * scores exported embeddings once (eval_offline.c). Signal handlers only
 * write a byte to a self-pipe the online loop polls. Exit status: 0 done,
 * 1 refused by the trainer, 2 bad arguments or files.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vips/vips.h>

#include "client.h"
#include "compute.h"
#include "eval.h"
#include "util.h"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa-eval --connect tcp://HOST:5555 [--tasks LIST] [--out DIR]\n"
        "       lejepa-eval --train PREFIX --val PREFIX [--tasks knn,linear] [--json]\n"
        "       (either with [--shots 1,5,10,100 [--seeds 3]] for few-shot scores)\n"
        "\n"
        "Online: follows a trainer's eval snapshots (EMBED chunks, FEATMAP) from\n"
        "the broadcast endpoint its WELCOME names, scores every complete snapshot\n"
        "and sends the numbers back as RESULTs (knn_top1, linear_top1 and\n"
        "linear_lambda, linear_adamw_top1, segmap_iou). A snapshot with missing chunks is reported\n"
        "as incomplete (source system, eval_incomplete = 1), never scored.\n"
        "Segmentation maps go to DIR/segmaps/step-<step>.png and latest.png.\n"
        "Any number of evaluators may come and go; runs until SIGINT/SIGTERM.\n"
        "\n"
        "Offline: kNN and the linear probe on the files `lejepa embed` writes,\n"
        "PREFIX.emb.npy (float32 (N, D)) and PREFIX.labels.npy (int32/int64 (N)).\n"
        "\n"
        "  --connect ENDPOINT   trainer's work socket (tcp://HOST:5555)\n"
        "  --tasks LIST         knn,linear,segmap (default all online,\n"
        "                       knn,linear offline); also probe: the official\n"
        "                       protocol's probe, LayerNorm + Linear trained by\n"
        "                       AdamW (linear_adamw_top1; pair it with lejepa\n"
        "                       embed --features cls_last2 for a ViT)\n"
        "  --out DIR            output directory (default runs/<run name>)\n"
        "  --train PREFIX       offline train split\n"
        "  --val PREFIX         offline val split\n"
        "  --json               offline: print one JSON object instead of lines\n"
        "  --shots LIST         also few-shot: for each k of LIST and each seed, k\n"
        "                       train rows per class (all of a smaller class),\n"
        "                       drawn from the seed; the tasks' kNN and linear\n"
        "                       probe trained on them, scored on all val rows;\n"
        "                       reports fewshot_knn_top1_K, fewshot_linear_top1_K\n"
        "                       (mean over seeds) and *_std (std over seeds)\n"
        "  --seeds N            few-shot samples per k (default %d, at most %d)\n"
        "  --threads N          OpenMP/OpenBLAS threads (default all cores)\n"
        "  --name NAME          name in logs and HELLO (default eval@HOST)\n"
        "  --max-mb MB          memory bound of one snapshot (default %d)\n"
        KEYS_CLIENT_HELP
        "  --help, --version\n"
        "\n"
        "Exit status: 0 done, 1 refused by the trainer (REFUSE, or its handshake:\n"
        "keys not accepted), 2 bad arguments or files.\n",
        FEWSHOT_DEFAULT_SEEDS, FEWSHOT_MAX_SEEDS, EVAL_DEFAULT_MAX_MB);
}

static void parse_args(int argc, char **argv, struct eval_opts *o)
{
    static const struct option longs[] = {
        {"connect", required_argument, NULL, 'c'},
        {"tasks", required_argument, NULL, 't'},
        {"out", required_argument, NULL, 'o'},
        {"train", required_argument, NULL, 'T'},
        {"val", required_argument, NULL, 'v'},
        {"json", no_argument, NULL, 'j'},
        {"threads", required_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},
        {"max-mb", required_argument, NULL, 'm'},
        KEYS_CLIENT_LONGOPTS,
        {"shots", required_argument, NULL, 's'},
        {"seeds", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->max_bytes = (size_t)EVAL_DEFAULT_MAX_MB << 20;
    char err[ERR_LEN];
    const char *shots = NULL;
    int seeds = FEWSHOT_DEFAULT_SEEDS;
    bool seeds_given = false;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (keys_client_option(&o->keys, c, optarg))
            continue;
        switch (c) {
        case 'c': o->endpoint = optarg; break;
        case 't':
            if (eval_parse_tasks(optarg, &o->tasks, err) < 0)
                die("%s", err);
            o->tasks_given = true;
            break;
        case 'o': o->out = optarg; break;
        case 'T': o->train = optarg; break;
        case 'v': o->val = optarg; break;
        case 'j': o->json = true; break;
        case 'p': o->threads = (int)util_parse_long("--threads", optarg, 1, 4096); break;
        case 's': shots = optarg; break;
        case 'S':
            seeds = (int)util_parse_long("--seeds", optarg, 1, FEWSHOT_MAX_SEEDS);
            seeds_given = true;
            break;
        case 'm': o->max_bytes = (size_t)util_parse_long("--max-mb", optarg, 1, 1 << 20) << 20; break;
        case 'n':
            if (!optarg[0] || strlen(optarg) >= sizeof o->name)
                die("--name: expected 1..%zu characters", sizeof o->name - 1);
            snprintf(o->name, sizeof o->name, "%s", optarg);
            break;
        case 'h': usage(stdout); exit(0);
        case 'V': compute_print_build_info(stdout, "lejepa-eval"); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    bool offline = o->train || o->val;
    if (offline && o->endpoint)
        die("--connect and --train/--val exclude each other (see --help)");
    if (offline && (!o->train || !o->val))
        die("offline mode needs both --train PREFIX and --val PREFIX");
    if (!offline && !o->endpoint)
        die("--connect tcp://HOST:5555 or --train PREFIX --val PREFIX is required");
    if (o->endpoint && client_endpoint_check(o->endpoint, err) < 0)
        die("--connect %s", err);
    if (offline && (o->tasks & EVAL_TASK_SEGMAP))
        die("--tasks segmap needs a trainer's FEATMAP (--connect); offline: knn,linear");
    if (!offline && o->json)
        die("--json is for offline mode (--train/--val)");
    if (offline && (o->keys.key_path || o->keys.server_key_path))
        die("--key and --server-key are for online mode (--connect)");
    keys_client_load(&o->keys);
    if (!o->tasks_given)
        o->tasks = offline ? EVAL_TASK_KNN | EVAL_TASK_LINEAR
                           : EVAL_TASK_KNN | EVAL_TASK_LINEAR | EVAL_TASK_SEGMAP;
    if (shots && fewshot_options_init(&o->fewshot, shots, seeds, err) < 0)
        die("%s", err);
    if (seeds_given && !shots)
        die("--seeds %d: few-shot evaluation needs --shots (e.g. --shots 1,5,10,100)",
            seeds);
    if (shots && !(o->tasks & (EVAL_TASK_KNN | EVAL_TASK_LINEAR)))
        die("--shots: few-shot runs the kNN and/or linear tasks; add knn or linear "
            "to --tasks");
    if (!o->name[0]) {
        char host[128] = "localhost";
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = '\0';
        snprintf(o->name, sizeof o->name, "eval@%s", host);
    }
}

int main(int argc, char **argv)
{
    compute_passive_reexec(argv);
    struct eval_opts o;
    parse_args(argc, argv, &o);
    compute_set_threads(o.threads);
    if (o.train) {
        eval_log_set_name("eval");
        return eval_run_offline(&o);
    }
    eval_log_set_name(o.name);
    if (VIPS_INIT(argv[0]) != 0)
        die("VIPS_INIT failed: %s", vips_error_buffer());
    int status = eval_run_online(&o, util_stop_signals_init());
    vips_shutdown();
    return status;
}
