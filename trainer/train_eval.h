/*
 * train_eval.h: lejepa-train's evaluation snapshots (DESIGN.md §3, §6;
 * proto/PROTOCOL.md EMBED, FEATMAP). Every eval.every steps and at the end
 * of the run, training pauses; eval tickets (work = eval, one view at the
 * global size) go out under the loaders' credit for a fixed set of rows (the
 * train subset, then val), the compute thread runs the eval-mode backbone
 * on each answered ticket, and the snapshot is published on the PUB socket
 * (EMBED chunks, the end marker, FEATMAP) without ever blocking: a full
 * subscriber queue loses the message, counted and logged. The online
 * probe's accuracy on the val rows goes to metrics.jsonl (probe_acc_val).
 * Snapshots never touch the sampler, the weights or the BatchNorm
 * statistics, so the training batches and losses do not depend on them.
 * The eval forward is a job of the compute thread (train_engine.h) given
 * the engine and this snapshot's buffers, nothing else.
 */
#ifndef LEJEPA_TRAIN_EVAL_H
#define LEJEPA_TRAIN_EVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "lejepa.h"
#include "train_engine.h"
#include "train_net.h"
#include "train_rundir.h"
#include "train_tickets.h"

struct config;
struct train_eval;

/* An evaluator gets this long after its HELLO to subscribe before a
 * snapshot is published. */
#define TRAIN_SUBSCRIBE_SETTLE_S 2.0

/* ZMQ_SNDHWM of the PUB socket: room for one whole snapshot on top of
 * ZeroMQ's default 1000 messages (metrics), before a slow subscriber's
 * messages are dropped. */
int train_eval_pub_hwm(const struct config *c);

/* Rows of every snapshot for a dataset of these split sizes: the train
 * subset (eval.train_subset, 0: none) and the val rows (eval.val_limit,
 * 0: the whole split); 0 when snapshots are off. What train_eval_new
 * allocates for, and what a loader's claim is checked against. */
uint64_t train_eval_rows(const struct config *c, uint64_t n_train,
                         uint64_t n_val);

/* Once the model and the dataset are known: the rows of every snapshot, the
 * eval graph (batch = ticket size) and every buffer. Free with
 * train_eval_free. */
struct train_eval *train_eval_new(const struct config *c, uint64_t n_train,
                                  uint64_t n_val, uint32_t n_classes,
                                  struct lejepa *model);
void train_eval_free(struct train_eval *e);

/* After step `step` finished (end: it was the run's last): true when a
 * snapshot is due now (every eval.every steps, and at the end). */
bool train_eval_due(const struct train_eval *e, uint64_t step, bool end);
/* Sets *epoch to the epoch of the snapshot taken at step (one of the last
 * 16); false, leaving *epoch alone, when there is none. */
bool train_eval_epoch_of(const struct train_eval *e, uint64_t step,
                         uint32_t *epoch);
/* Seconds one snapshot's forward should take at flops_per_s (the training
 * step's measured rate): rows times the eval graph's multiply-adds per
 * image; 0 without snapshots. The time budget reserves it per snapshot. */
double train_eval_estimate_seconds(const struct train_eval *e,
                                   double flops_per_s);
void train_eval_begin(struct train_eval *e, uint64_t step, uint32_t epoch);
bool train_eval_active(const struct train_eval *e);
/* When the last snapshot was published (monotonic seconds; 0: none yet). */
double train_eval_published_at(const struct train_eval *e);
/* The main loop's turn while a snapshot is active (training is paused):
 * collects a finished forward, hands the next answered ticket to the
 * compute thread, and publishes the snapshot once every ticket is done.
 * Returns the snapshot's seconds when it was published now, else 0. */
double train_eval_poll(struct train_eval *e, struct train_engine *eng,
                       struct train_net *n, struct train_rundir *rd);
/* Stops a snapshot (the run is stopping): waits for a forward in flight. */
void train_eval_abandon(struct train_eval *e, struct train_engine *eng,
                        const char *why);

/* Hands eval tickets to loaders with free credit (before train tickets). */
void train_eval_issue(struct train_eval *e, struct train_tickets *tk,
                      struct train_net *n);
/* An eval ticket's loader is gone or returned it: issue it again. */
void train_eval_reissue(struct train_eval *e, const struct train_net *n,
                        uint64_t ticket);
/* A BATCH answering an eval ticket (was_held: loader c held the ticket). */
enum train_answer train_eval_accept(struct train_eval *e,
                                    struct train_tickets *tk,
                                    struct train_net *n, struct train_client *c,
                                    const struct msg_batch *b, bool was_held);

#endif
