/*
 * lejepa_main.c: the `lejepa` program: dispatches to its subcommands
 * (lejepa_cli.h). Nothing else lives here.
 */
#include <stdio.h>
#include <string.h>

#include "lejepa_cli.h"
#include "compute.h"
#include "util.h"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa run [options]     train: trainer, loaders, evaluators and a\n"
        "                                monitor as processes on this machine\n"
        "       lejepa sweep [options]   runs over a grid of config values, one after\n"
        "                                another, and a label-free selection report\n"
        "       lejepa embed [options]   a checkpoint's embeddings of a dataset split\n"
        "                                as .npy files\n"
        "       lejepa export [options]  a checkpoint's backbone as torchvision /\n"
        "                                timm weights (.safetensors)\n"
        "       lejepa keys new NAME     a CurveZMQ key pair (NAME.key, NAME.pub) and\n"
        "                                its allow-list line\n"
        "       lejepa shard DIR --out OUT  a dataset as tar shards plus its index\n"
        "       lejepa index DIR         the index that lets a partial copy of DIR\n"
        "                                train (lejepa-index.txt)\n"
        "       lejepa COMMAND --help    the options of a command\n"
        "       lejepa --version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "embed") == 0)
        compute_passive_reexec(argv);
    if (strcmp(cmd, "run") == 0)
        return lejepa_run_main(argc - 1, argv + 1);
    if (strcmp(cmd, "sweep") == 0)
        return lejepa_sweep_main(argc - 1, argv + 1);
    if (strcmp(cmd, "keys") == 0)
        return lejepa_keys_main(argc - 1, argv + 1);
    if (strcmp(cmd, "embed") == 0)
        return lejepa_embed_main(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0)
        return lejepa_export_main(argc - 1, argv + 1);
    if (strcmp(cmd, "shard") == 0 || strcmp(cmd, "index") == 0)
        return lejepa_shard_main(argc - 1, argv + 1, cmd[0] == 'i');
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        compute_print_build_info(stdout, "lejepa");
        return 0;
    }
    fprintf(stderr, "lejepa: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
