/*
 * train_dist.h: lejepa-train on R ranks under mpirun (DESIGN.md §5, "The
 * trainer on several machines"; PROTOCOL.md, "Several ranks"). Every rank
 * is a whole trainer process with its own work endpoint and loaders, so
 * the data never all passes through one machine; rank 0 alone has the run
 * directory, the broadcast socket, checkpoints, metrics, evaluators and
 * monitors, and sends each loader that says HELLO to it to the rank with
 * the fewest loaders (WELCOME.serve). Every rank cuts the same global
 * sampler and fills its share of each step's positions (dist_share), so
 * the batches do not depend on R or on the loaders; before each step the
 * compute threads agree (train_xchg.h). After start-up only the compute
 * thread calls MPI, so a rank serves its clients while it waits for the
 * others.
 */
#ifndef LEJEPA_TRAIN_DIST_H
#define LEJEPA_TRAIN_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "dist.h"
#include "train_xchg.h"

#define TRAIN_DIST_ENDPOINT_LEN 256
/* An exchange waiting this long on rank 0 makes it suspect a rank without
 * loaders (train_dist_assign). */
#define TRAIN_DIST_STARVED_S 5.0

struct train;

struct train_dist {
    struct dist d;
    bool on; /* started by mpirun with more than one rank */
    char bind[TRAIN_DIST_ENDPOINT_LEN];      /* this rank's work endpoint */
    char advertise[TRAIN_DIST_ENDPOINT_LEN]; /* ... as loaders reach it */
    char *endpoints; /* rank 0: (world * TRAIN_DIST_ENDPOINT_LEN) */
    int *loaders;    /* rank 0: (world) per rank, from the last exchange
                       * plus the loaders sent there since */
    struct train_xchg x;
    int starved_turn; /* the rank the last suspicious wait sent one to */
    uint64_t starved_sent;
    uint64_t partial_warned;
    double moved_at; /* the last loader train_dist_rebalance moved */
    bool end_out;    /* the ending exchange is out */
    int end_code;    /* ... and the exit status it ends with */
    bool over;       /* an exchange said the run ends */
};

/* MPI when mpirun started more than one rank (exits with a message when
 * this build has none); otherwise the single process. */
void train_dist_start(struct train_dist *td, int *argc, char ***argv);
void train_dist_finish(struct train_dist *td);
/* run.threads as given, or for 0 (all cores) with several ranks on this
 * machine, its cores divided among them. */
int train_dist_threads(const struct train_dist *td, int threads);
static inline bool train_dist_root(const struct train_dist *td)
{
    return td->d.rank == 0;
}

/* Start-up, on every rank in this order (main thread, collective):
 * rank 0's effective config on every rank, with each rank's own endpoint
 * (--bind on that rank, else run.endpoint's host; port + 2 rank, or
 * ipc PATH.rankR) and, on ranks > 0, no snapshots and no checkpoints; */
void train_dist_sync_config(struct train *t, const char *bind_addr);
/* every rank's advertised endpoint to rank 0 (after the sockets opened); */
void train_dist_gather_endpoints(struct train *t);
/* rank 0's dataset and, when resuming, its checkpoint (train_engine_init,
 * before the model is restored). */
void train_dist_sync_dataset(struct train *t);
void train_dist_sync_resume(struct train *t);
/* After the checkpoint was restored: the model and the steps go data
 * parallel. */
void train_dist_attach(struct train *t);

/* The claims this rank sends with its next step (main thread, compute
 * thread idle). */
void train_dist_claims(struct train *t, bool end, double lr_factor,
                       double probe_factor);
/* What the exchange of the step just done says (main thread): the other
 * ranks' exclusions, loader counts, rank 0's step count, the end. */
void train_dist_apply(struct train *t);

/* Rank 0: the rank a new loader is to serve (0: rank 0 keeps it), the
 * one with the fewest loaders; while the exchange has waited over
 * TRAIN_DIST_STARVED_S, the ranks > 0 in turn. */
int train_dist_assign(struct train *t);
const char *train_dist_endpoint(const struct train_dist *td, int rank);
/* Rank 0, every turn: while the exchange has waited over
 * TRAIN_DIST_STARVED_S and rank 0 has two loaders or more, one of them
 * (the newest, at most one per TRAIN_DIST_STARVED_S) gets BYE and comes
 * back to be sent to another rank (train_dist_assign). */
void train_dist_rebalance(struct train *t);
/* Rank 0: a loader was sent to rank (its WELCOME went out). */
void train_dist_assigned(struct train_dist *td, int rank);

#endif
