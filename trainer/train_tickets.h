/*
 * train_tickets.h: the ticket ledger (DESIGN.md §3, credit-based flow
 * control): which loader holds which ticket, each loader's free credit and
 * the round-robin choice of the next one, what kind a ticket id is, and the
 * check of an answer against its ticket. The owners of the tickets, the
 * training steps (train_step.h) and the eval snapshots (train_eval.h), ask
 * the ledger for a loader and record what they send through it; neither
 * calls the other: the hub (train_hub.c) routes by train_tickets_kind.
 */
#ifndef LEJEPA_TRAIN_TICKETS_H
#define LEJEPA_TRAIN_TICKETS_H

#include <stdbool.h>
#include <stdint.h>

#include "msg.h"
#include "train_net.h"

struct config;

/* Most tickets one loader may hold (its credit is capped to this). */
#define TRAIN_MAX_CREDIT 1024

/* Eval ticket ids: this bit, the snapshot's step << TRAIN_EVAL_STEP_SHIFT and
 * the ticket number, so they never collide with train tickets (step *
 * tickets_per_step + k + 1) and a late BATCH of an older snapshot is known. */
#define TRAIN_EVAL_TICKET_BIT (UINT64_C(1) << 63)
#define TRAIN_EVAL_STEP_SHIFT 28

enum train_ticket_kind { TRAIN_TICKET_TRAIN, TRAIN_TICKET_EVAL };

enum train_ticket_kind train_tickets_kind(uint64_t ticket);

/* What an owner made of an answer (train_step_accept, train_eval_accept). */
enum train_answer {
    TRAIN_ANSWER_TAKEN, /* its samples are in */
    TRAIN_ANSWER_LATE,  /* a duplicate, or for work no longer open */
    TRAIN_ANSWER_BAD,   /* malformed or not its ticket: counted */
};

/* Missed deadlines in a row, and answers with environmental failures in a
 * row, after which a loader is dropped. */
#define TRAIN_EXPIRED_DROP 3
#define TRAIN_ENV_DROP 5
#define TRAIN_BAD_DROP 5
/* The deadline never exceeds this many times limits.ticket_timeout_s; an
 * expired copy at its first holder is reclaimed (its credit freed) after
 * this many deadlines. */
#define TRAIN_DEADLINE_CAP 10.0
#define TRAIN_EXPIRED_RECLAIM 3.0
/* Deadline: limits.ticket_timeout_s, or this many times the measured
 * time from a ticket's send to its answer when that is longer. */
#define TRAIN_DEADLINE_FACTOR 4.0

struct train_tickets {
    int rr;              /* round-robin start among the clients */
    uint64_t duplicates; /* late or duplicate BATCHes dropped */
    uint64_t expired;    /* tickets whose deadline passed */
    uint64_t hedged;     /* second copies of slow tickets sent */
    double answer_s;     /* moving average send -> answer */
    double timeout_s;    /* limits.ticket_timeout_s */
};

/* Whether some loader has free credit. */
bool train_tickets_any_credit(const struct train_net *n);
/* The loader with free credit that fit(ctx, c) ranks highest (0: it
 * cannot serve the ticket at all; exclusions are the fit's to make),
 * round-robin among the best; NULL when none fits. */
struct train_client *train_tickets_loader_fit(
    struct train_tickets *tk, struct train_net *n,
    int (*fit)(void *ctx, const struct train_client *c), void *ctx);
/* Sends ticket m to loader c and records that c holds it. */
void train_tickets_send(struct train_net *n, struct train_client *c,
                        const struct msg_ticket *m);
/* Forgets that c holds the ticket; true when it did (also after its
 * deadline passed: the first answer wins). An answer in time feeds the
 * measured answer time. */
bool train_tickets_drop(struct train_tickets *tk, struct train_client *c,
                        uint64_t ticket, double *sent);
/* The owner took c's answer of a ticket sent at `sent` (as drop gave it):
 * one in time feeds the measured answer time and clears c's streaks. */
void train_tickets_answered(struct train_tickets *tk, struct train_client *c,
                            double sent);
/* The owner refused c's answer as malformed: a loader whose answers keep
 * being malformed (TRAIN_BAD_DROP in a row) is marked to be dropped. */
void train_tickets_bad_answer(struct train_client *c);
/* True when some client holds the ticket before its deadline. */
bool train_tickets_held(const struct train_net *n, uint64_t ticket);
/* Live copies of a ticket (before their deadline); with exactly one, its
 * send time and holder's client_id. */
int train_tickets_copies(const struct train_net *n, uint64_t ticket,
                         double *sent, uint64_t *holder);
/* The current deadline of a ticket, in seconds after its send. */
double train_tickets_deadline(const struct train_tickets *tk);
/* The next ticket whose deadline passed, marked expired at its holder (who
 * may still answer it first); 0 when none. A loader that misses
 * TRAIN_EXPIRED_DROP deadlines in a row is marked to be dropped. */
uint64_t train_tickets_next_expired(struct train_tickets *tk,
                                    struct train_net *n);
/* A client leaves: the round robin starts over. */
void train_tickets_forget(struct train_tickets *tk);

/* A BATCH against the ticket it answers and the run's views: for work =
 * train the global group then the local one, for work = eval one view at
 * the global size; labels below the class count. A train ticket may be
 * answered in part (msg_batch_check_part: a partial copy's share), an eval
 * ticket only whole. 0 or -1 with err. */
int train_tickets_check_answer(const struct config *c, uint32_t n_classes,
                               const struct msg_batch *b,
                               const struct msg_ticket *tk, char *err);

#endif
