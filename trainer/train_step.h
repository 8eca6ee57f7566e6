/*
 * train_step.h: the training steps in flight (DESIGN.md §3, §5). The sampler
 * cuts each step into tickets; each of TRAIN_WINDOW slots holds one step: its
 * sample indices, the state of its tickets and a uint8 staging buffer that
 * BATCHes are copied into at their ticket's place, so the bytes of a step do
 * not depend on which loader answered which ticket or when. A full slot
 * becomes a job for the compute thread (train_engine.h): assemble the
 * surviving samples, hash them, normalise, LeJEPA forward and backward, the
 * online probe, the finiteness check, AdamW. No snapshot state here
 * (train_eval.h) and no decision of when a step may start (train_loop.c).
 */
#ifndef LEJEPA_TRAIN_STEP_H
#define LEJEPA_TRAIN_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "lejepa.h"
#include "train_engine.h"
#include "train_net.h"
#include "train_sampler.h"
#include "train_tickets.h"
#include "train_xchg.h"

struct config;

/* Answers with environmental failures (I/O error, missing file, worker
 * killed or timed out) a ticket may get, each time from another loader if
 * there is one, before its step trains without those samples (never
 * excluding them on one loader's word). A decode failure excludes a
 * sample once a second loader agrees (or none other is connected, or the
 * ticket has had its TRAIN_ENV_TRIES answers); until then the ticket goes
 * to another loader, and if that one decodes the sample it trains. */
#define TRAIN_ENV_TRIES 3

/* A ticket out at one loader for longer than this many times the
 * measured answer time (and at least TRAIN_HEDGE_MIN_S) gets a second copy
 * on a loader with free credit once every ticket is out. */
#define TRAIN_HEDGE_FACTOR 3.0
#define TRAIN_HEDGE_MIN_S 0.5

/* Steps whose tickets may be out at once, the computing one included: the
 * bound on the trainer's batch memory whatever the loaders' credit. */
#define TRAIN_WINDOW 3

enum train_ticket_state { TICKET_UNISSUED, TICKET_OUT, TICKET_DONE };

/* A step's pixel groups: 0 the global views, 1 the local views, 2 each
 * sample's eval view for the online probe (optim.probe_views = eval with
 * a probe, train_probe_classes: TICKET.eval_view); a group without views
 * is absent from the BATCHes. */
#define TRAIN_GROUPS 3

struct train_slot {
    bool used, computing;
    uint64_t step;
    uint32_t epoch;
    uint64_t epoch_start; /* global step where its epoch began */
    uint64_t *indices;    /* (batch) samples, permutation order */
    uint8_t *ok;          /* (batch) 1: pixels arrived; 2: no pixels will
                           * (excluded, or failed every try): settled */
    int32_t *labels;      /* (batch) */
    uint8_t *pixels[TRAIN_GROUPS]; /* group g: (views, batch, C, size,
                                    * size); see TRAIN_GROUPS */
    uint8_t *tstate; /* (tickets_per_step) enum train_ticket_state */
    uint8_t *tries;  /* (tickets_per_step) answers with env failures */
    uint64_t *avoid; /* (tickets_per_step) client_id that last failed
                           * it for environmental reasons, or 0 */
    uint64_t *doubt; /* (batch) client_id that first said the sample
                           * cannot be decoded, or 0 */
    int tickets_done;
};

struct train_step_result {
    bool skipped; /* fewer than 2 samples survived (over all ranks) */
    bool ended;   /* data parallel: a rank ended the run; not computed */
    bool finite;
    int n;         /* samples trained on (over all ranks) */
    int n_local;   /* of them, this rank's */
    uint64_t hash; /* FNV-1a 64 of the assembled pixels, labels */
    struct lejepa_losses losses;
    double lr_factor;
    double seconds;
    char err[256];
};

/* What the compute thread is handed: the slot's buffers and sizes. */
struct train_step_job {
    struct train_slot *slot;
    int batch, channels;
    int views[TRAIN_GROUPS], size[TRAIN_GROUPS]; /* per group: view
                                                 * count, crop size */
    double lr_factor;     /* the encoder's schedule at this step */
    double probe_factor;  /* the online probe's (optim.probe_schedule) */
    int *keep;            /* (batch) scratch */
    struct dist *dist;    /* data parallel: the ranks; NULL: one process */
    struct train_xchg *x; /* with dist: the exchange before the step */
    struct train_step_result result;
};

struct train_step {
    const struct config *cfg; /* the run's, read only */
    uint32_t n_classes;
    struct train_sampler sampler;
    struct train_slot slots[TRAIN_WINDOW];
    uint64_t next_open;    /* next step to open a slot for */
    uint64_t doubted;      /* answers whose decode failures went to a
                            * second loader for confirmation */
    uint64_t *part;        /* (ticket_size) the indices of a ticket sent */
    uint64_t unheld;       /* times a ticket found no loader holding it */
    char sampler_err[256]; /* no next epoch: fatal once the open
                                     * steps are trained */
    /* data parallel (train_step_set_dist): this rank fills positions
     * [share_start, share_start + share_n) of every step; the next epoch
     * is cut once the ranks exchanged the current one's last step
     * (`trained`, set by the caller), with every rank's exclusions */
    struct dist *dist;
    int share_start, share_n;
    uint64_t trained;
    struct xchg_list excluded; /* this rank's since the last submit */
    struct train_step_job job;
};

void train_step_init(struct train_step *st, const struct config *c,
                     uint64_t n_train, uint32_t n_classes);
void train_step_free(struct train_step *st);
/* Makes this rank fill only its share of each step (before any slot is
 * opened); the step jobs then exchange with the other ranks first. */
void train_step_set_dist(struct train_step *st, struct dist *d);
struct train_slot *train_step_slot(struct train_step *st, uint64_t step);
/* Opens slots for the next steps below total while the window and the
 * epoch rule allow. */
void train_step_open(struct train_step *st, uint64_t total);
void train_step_release(struct train_slot *s);
/* Hands out unissued tickets to loaders with free credit, earliest step
 * first. */
void train_step_issue(struct train_step *st, struct train_tickets *tk,
                      struct train_net *n);
/* Marks an out ticket unissued again (its loader is gone or returned it). */
void train_step_reissue(struct train_step *st, const struct train_net *n,
                        uint64_t ticket);
/* A decoded BATCH for a train ticket from loader c (was_held: c held it):
 * checked against its ticket and the run's views, copied into its step's
 * slot, failures logged and excluded; a bad one is counted and its ticket
 * issued again; a late one dropped. */
enum train_answer train_step_accept(struct train_step *st,
                                    struct train_tickets *tk,
                                    struct train_net *n, struct train_client *c,
                                    const struct msg_batch *b, bool was_held);
/* The slot of step when all its tickets are back, else NULL. */
struct train_slot *train_step_ready(struct train_step *st, uint64_t step);
/* Hands the slot to the compute thread; the result is st->job.result once
 * train_engine_idle. Data parallel: x holds this rank's claims (the
 * exclusions since the last submit are moved into it here), and the step
 * trains on the schedule rank 0 sends. */
void train_step_submit(struct train_step *st, struct train_engine *e,
                       struct train_slot *s, double lr_factor,
                       double probe_factor, struct train_xchg *x);
/* Data parallel: the exchange alone, telling the other ranks that this
 * one ends the run (x->end set by the caller). */
void train_step_submit_end(struct train_step *st, struct train_engine *e,
                           struct train_xchg *x);

#endif
