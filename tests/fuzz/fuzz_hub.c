/*
 * fuzz_hub.c: libFuzzer target for lejepa-train's message handler
 * (train_hub_handle) with eight client identities (fuzz_hub.h: the record
 * format, which identities are connected). One hub lives for the whole
 * process and keeps its state from input to input, as a real trainer does
 * from message to message: clients, tickets, steps, snapshots, the first
 * loader's dataset and the engine built from it. Anything that crashes,
 * trips a sanitizer, exits (die()) or blocks on a client's bytes is a
 * finding. Inputs up to 2 MiB (tools/fuzz.sh: -max_len=2097152); run it
 * with -close_fd_mask=2, the trainer logs every client that comes and goes
 * to stderr.
 */
#include <stdint.h>

#include "fuzz_hub.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzz_hub hub;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_hub_open(&hub);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_hub_input(&hub, data, size);
    fuzz_hub_tidy(&hub);
    return 0;
}
