/*
 * fuzz_hub.h: one lejepa-train hub inside the fuzzing process, shared by the
 * message-handler fuzz target (fuzz_hub.c) and the program that writes its
 * seeds (fuzz_hub_seeds.c). A struct train set up the way train_main.c does
 * it (a tiny model, a run directory under a fresh temp dir, the sockets on
 * inproc endpoints, no keys, the dataset unknown until the first loader's
 * HELLO) and eight client identities: 0..5 are DEALER sockets connected to
 * the work socket, so WELCOMEs and TICKETs reach them and they register;
 * 6 and 7 are routing ids nobody connected, so every send to them fails
 * with EHOSTUNREACH ("left before its WELCOME").
 *
 * An input is a sequence of records, each
 *   [1 byte: identity in bits 0-2, FUZZ_HUB_HOLD in bit 3]
 *   [4 bytes: payload length, little-endian][payload: one msgpack message]
 * A length beyond the input's end takes what is left. A first byte of
 * exactly FUZZ_HUB_FRESH (identity 0; rare, as each costs an engine
 * build and a thread): the trainer stops (BYE to every client)
 * and starts again before it, its dataset and engine unknown, so the
 * first loader's HELLO and what it claims are fuzzed too. After each record
 * (unless it has FUZZ_HUB_HOLD: a burst) and after the last, the loop's
 * turn runs: what train_loop_run does between messages without blocking.
 * Nothing here waits: steps are never computed (fuzz_hub_turn finishes a
 * full step without training it), and the peers' queues are drained
 * without waiting.
 */
#ifndef LEJEPA_FUZZ_HUB_H
#define LEJEPA_FUZZ_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "train.h"

#define FUZZ_HUB_IDS 8
#define FUZZ_HUB_PEERS 6
#define FUZZ_HUB_ID_MASK 0x07
#define FUZZ_HUB_HOLD 0x08
#define FUZZ_HUB_FRESH 0x80
#define FUZZ_HUB_RECORD_HEAD 5

/* The tiny run every hub of the fuzzer and its seeds trains: a two-stage
 * ResNet on 16x16 gray crops, steps of 4 samples in tickets of 2, a
 * snapshot every 2 steps. limits.max_samples keeps a loader's claimed
 * dataset (the sampler's and the snapshots' arrays) small. */
extern const char *const fuzz_hub_config[];

struct fuzz_hub {
    struct train *t;
    void *peer[FUZZ_HUB_PEERS]; /* DEALERs of identities 0..5 */
    char dir[256];              /* the temp dir holding the run directory */
    uint64_t tidied;            /* calls of fuzz_hub_tidy */
};

/* Builds the hub (exits with a message when it cannot: start-up). */
void fuzz_hub_open(struct fuzz_hub *h);
/* The routing id of identity who (0..7). */
const uint8_t *fuzz_hub_id(int who, size_t *len);
/* One message from identity who: decoded like train_net_recv does and, if
 * it decodes, handled by train_hub_handle. */
void fuzz_hub_message(struct fuzz_hub *h, int who, const uint8_t *payload,
                      size_t len);
/* The loop's turn between messages: heartbeats, silence and expired tickets
 * (train_hub_serve, with nothing waiting on the socket), a snapshot's poll
 * or the step whose batches are all in finished untrained, the window of
 * steps opened, tickets issued, dropped clients removed. */
void fuzz_hub_turn(struct fuzz_hub *h);
/* Runs one input (records as above). */
void fuzz_hub_input(struct fuzz_hub *h, const uint8_t *data, size_t size);
/* Empties the peers' queues; keeps the run directory's files bounded. */
void fuzz_hub_tidy(struct fuzz_hub *h);

#endif
