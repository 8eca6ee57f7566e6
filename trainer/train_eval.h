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
 */
#ifndef LEJEPA_TRAIN_EVAL_H
#define LEJEPA_TRAIN_EVAL_H

#include <stdbool.h>
#include <stdint.h>

struct train;
struct train_client;
struct msg_batch;
struct config;

/* Eval ticket ids: this bit, the snapshot's step << TRAIN_EVAL_STEP_SHIFT and
 * the ticket number, so they never collide with train tickets (step *
 * tickets_per_step + k + 1) and a late BATCH of an older snapshot is known. */
#define TRAIN_EVAL_TICKET_BIT (UINT64_C(1) << 63)
#define TRAIN_EVAL_STEP_SHIFT 28

/* True when the id is an eval ticket's. */
bool train_eval_ticket(uint64_t ticket);

/* ZMQ_SNDHWM of the PUB socket: room for one whole snapshot on top of
 * ZeroMQ's default 1000 messages (metrics), before a slow subscriber's
 * messages are dropped. */
int train_eval_pub_hwm(const struct config *c);

/* Once the model and the dataset are known: the rows of every snapshot, the
 * eval graph (batch = ticket size) and every buffer. */
void train_eval_init(struct train *t);
void train_eval_free(struct train *t);

/* After step t->step finished (epoch: its epoch): true when a snapshot is
 * due now (every eval.every steps, and at the end of the run). */
bool train_eval_due(const struct train *t);
/* Sets *epoch to the epoch of the snapshot taken at step (one of the last
 * 16); false, leaving *epoch alone, when there is none. */
bool train_eval_epoch_of(const struct train *t, uint64_t step,
                         uint32_t *epoch);
/* Seconds one snapshot's forward should take at flops_per_s (the training
 * step's measured rate): rows times the eval graph's multiply-adds per
 * image; 0 without snapshots. The time budget reserves it per snapshot. */
double train_eval_estimate_seconds(const struct train *t, double flops_per_s);
void train_eval_begin(struct train *t, uint32_t epoch);
bool train_eval_active(const struct train *t);
/* The main loop's turn while a snapshot is active (training is paused):
 * collects a finished forward, hands the next answered ticket to the
 * compute thread, and publishes the snapshot once every ticket is done. */
void train_eval_poll(struct train *t);
/* Stops a snapshot (the run is stopping): waits for a forward in flight. */
void train_eval_abandon(struct train *t, const char *why);

/* Hands eval tickets to loaders with free credit (before train tickets). */
void train_eval_issue(struct train *t);
/* An eval ticket's loader is gone or returned it: issue it again. */
void train_eval_reissue(struct train *t, uint64_t ticket);
/* A BATCH answering an eval ticket (was_held: loader c held the ticket). */
void train_eval_accept(struct train *t, struct train_client *c,
                       const struct msg_batch *b, bool was_held);

/* Compute thread: the forward of the ticket train_eval_poll submitted. */
void train_eval_forward(struct train *t);

#endif
