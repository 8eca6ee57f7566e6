/*
 * loader_tickets.h: the tickets a loader holds, sample by sample: which
 * samples wait for a worker, which are under way, which are done (pixels or
 * a failure reason), and the packing of a finished ticket into one BATCH
 * (PROTOCOL.md: successes in ticket order, pixels [view][sample][c][h][w]
 * per resolution group, failures with their relative path and reason).
 * No sockets and no processes here.
 */
#ifndef LEJEPA_LOADER_TICKETS_H
#define LEJEPA_LOADER_TICKETS_H

#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "loader_work.h"
#include "msg.h"

enum held_state { HELD_PENDING, HELD_RUNNING, HELD_OK, HELD_FAILED };

struct held_sample {
    uint64_t index;
    enum held_state state;
    uint8_t *pixels;            /* HELD_OK: work_sample_bytes bytes, owned */
    char *reason;               /* HELD_FAILED: owned */
    enum msg_fail_class fail_class; /* HELD_FAILED: the file's fault or ours */
};

struct held_ticket {
    struct held_ticket *next;
    uint32_t serial;            /* local id: job tags name the ticket by it */
    struct msg_ticket t;        /* t.indices points to indices */
    uint64_t *indices;          /* (t.n) */
    struct held_sample *s;      /* (t.n) */
    uint32_t next_job;          /* first sample not yet handed out */
    uint32_t done, failed;
    double ms;                  /* summed decode time of its samples */
};

struct ticket_set {
    struct held_ticket *head, *tail;   /* arrival order */
    uint32_t count;
    uint32_t serial;
};

/* Buffers behind a packed BATCH; tickets_batch_free releases them. */
struct batch_buf {
    uint64_t *indices;
    int32_t *labels;
    struct msg_failure *failures;
    struct msg_group groups[MSG_BATCH_GROUPS];
    uint8_t *pixels[MSG_BATCH_GROUPS];  /* msg_batch_layout's groups */
};

void tickets_init(struct ticket_set *s);
/* Frees every ticket (dropped: the trainer re-issues them). */
void tickets_clear(struct ticket_set *s);
/* Copies t into the set. */
void tickets_add(struct ticket_set *s, const struct msg_ticket *t);
/* Fills job and tag with the next sample waiting for a worker and marks it
 * running; 1 if there was one, 0 if not. Samples that cannot be decoded at
 * all (index out of range) fail here at once. */
int tickets_next_job(struct ticket_set *s, const struct dataset *d,
                     const struct config_views *v, struct work_job *job, uint64_t *tag);
/* Gives a sample back to the queue (its job could not be submitted). */
void tickets_requeue(struct ticket_set *s, uint64_t tag);
/* Records a worker's result (takes r->pixels); results of tickets no longer
 * held are freed and ignored. */
void tickets_complete(struct ticket_set *s, struct work_result *r);
/* Unlinks and returns a ticket whose samples are all done, or NULL. */
struct held_ticket *tickets_pop_done(struct ticket_set *s);
void ticket_free(struct held_ticket *h);
/* Ids of every held ticket, up to max; returns how many. */
uint32_t tickets_ids(const struct ticket_set *s, uint64_t *out, uint32_t max);

/* Packs a finished ticket into m (a BATCH pointing into b and the ticket). */
void tickets_pack_batch(struct msg *m, struct batch_buf *b, const struct held_ticket *h,
                        const struct dataset *d, const struct config_views *v);
void tickets_batch_free(struct batch_buf *b);

#endif
