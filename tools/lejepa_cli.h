/*
 * lejepa_cli.h: the subcommands of the `lejepa` program (lejepa_main.c
 * dispatches): `run` starts a whole training pipeline on this machine
 * (lejepa_run.c), `embed` exports a checkpoint's embeddings of a dataset
 * split (lejepa_embed.c), `export` writes its backbone's weights for
 * PyTorch (lejepa_export.c), `keys` makes CurveZMQ key files
 * (lejepa_keys.c), `sweep` trains a grid of runs and reports which one
 * its loss would pick (lejepa_sweep.c), `shard` and `index` write a
 * dataset's tar shards and index (lejepa_shard.c). Each takes the arguments after its name
 * (argv[0] is the subcommand) and returns the process exit status.
 */
#ifndef LEJEPA_CLI_H
#define LEJEPA_CLI_H

#include <stdbool.h>

int lejepa_run_main(int argc, char **argv);
int lejepa_embed_main(int argc, char **argv);
int lejepa_export_main(int argc, char **argv);
int lejepa_keys_main(int argc, char **argv);
/* `lejepa shard` (index_only false) and `lejepa index` (true). */
int lejepa_shard_main(int argc, char **argv, bool index_only);
int lejepa_sweep_main(int argc, char **argv);

#endif
