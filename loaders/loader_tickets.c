/*
 * loader_tickets.c: tickets in hand and the packing of BATCH messages
 * (loader_tickets.h). A job's tag is (ticket serial << 32 | sample position),
 * so a result that arrives after its ticket was dropped (trainer gone) finds
 * no ticket and is discarded.
 */
#include "loader_tickets.h"

#include <inttypes.h>
#include <string.h>

#include "util.h"

void tickets_init(struct ticket_set *s)
{
    memset(s, 0, sizeof *s);
}

void ticket_free(struct held_ticket *h)
{
    if (!h)
        return;
    for (uint32_t i = 0; i < h->t.n; i++) {
        free(h->s[i].pixels);
        free(h->s[i].reason);
    }
    free(h->s);
    free(h->indices);
    free(h);
}

void tickets_clear(struct ticket_set *s)
{
    struct held_ticket *h = s->head;
    while (h) {
        struct held_ticket *next = h->next;
        ticket_free(h);
        h = next;
    }
    s->head = s->tail = NULL;
    s->count = 0;
}

void tickets_add(struct ticket_set *s, const struct msg_ticket *t)
{
    struct held_ticket *h = xcalloc(1, sizeof *h);
    h->serial = ++s->serial;
    h->t = *t;
    h->indices = xmalloc(sizeof *h->indices * (t->n ? t->n : 1));
    memcpy(h->indices, t->indices, sizeof *h->indices * t->n);
    h->t.indices = h->indices;
    h->s = xcalloc(t->n ? t->n : 1, sizeof *h->s);
    for (uint32_t i = 0; i < t->n; i++)
        h->s[i].index = t->indices[i];
    if (s->tail)
        s->tail->next = h;
    else
        s->head = h;
    s->tail = h;
    s->count++;
}

static struct held_ticket *find(const struct ticket_set *s, uint32_t serial)
{
    for (struct held_ticket *h = s->head; h; h = h->next)
        if (h->serial == serial)
            return h;
    return NULL;
}

static void sample_fail(struct held_ticket *h, uint32_t pos, const char *reason,
                        enum msg_fail_class fail_class)
{
    h->s[pos].state = HELD_FAILED;
    h->s[pos].reason = xstrdup(reason);
    h->s[pos].fail_class = fail_class;
    h->done++;
    h->failed++;
}

/* Where a job reads its sample: the file, or the shard and the member's
 * offset. -1 with the reason when this copy cannot. */
static int job_source(const struct dataset *d, int split, uint64_t index,
                      struct work_job *job, char *reason)
{
    const struct dataset_split *sp = &d->split[split];
    if (index >= sp->n)
        return errf(reason, "index %" PRIu64 " out of range for split %s "
                    "(%zu samples)", index, dataset_split_name(split), sp->n);
    if (!dataset_holds(d, split, (size_t)index))
        return errf(reason, "%s: not in this copy of the dataset",
                    sp->paths[index]);
    job->member = -1;
    if (sp->shard && sp->shard[index] >= 0) {
        job->member = (int64_t)sp->offset[index];
        int n = snprintf(job->path, sizeof job->path, "%s/%s", d->root,
                         d->shards[sp->shard[index]]);
        return n < 0 || (size_t)n >= sizeof job->path
            ? errf(reason, "%s: path too long", d->shards[sp->shard[index]])
            : 0;
    }
    if (dataset_sample_path(d, split, (size_t)index, job->path,
                            sizeof job->path) < 0)
        return errf(reason, "%s: path too long", sp->paths[index]);
    return 0;
}

int tickets_next_job(struct ticket_set *s, const struct dataset *d,
                     const struct config_views *v, struct work_job *job, uint64_t *tag)
{
    for (struct held_ticket *h = s->head; h; h = h->next) {
        while (h->next_job < h->t.n) {
            uint32_t pos = h->next_job++;
            struct held_sample *hs = &h->s[pos];
            if (hs->state != HELD_PENDING)
                continue;
            int split = h->t.split == MSG_SPLIT_VAL ? DATASET_VAL : DATASET_TRAIN;
            memset(job, 0, offsetof(struct work_job, path));
            char reason[ERR_LEN];
            if (job_source(d, split, hs->index, job, reason) < 0) {
                /* not this file's fault: a loader with the sample may serve it */
                sample_fail(h, pos, reason, MSG_FAIL_ENV);
                continue;
            }
            job->work = (int32_t)h->t.work;
            job->eval_view = h->t.eval_view;
            job->seed = h->t.seed;
            job->epoch = h->t.epoch;
            job->index = hs->index;
            job->views = *v;
            hs->state = HELD_RUNNING;
            *tag = (uint64_t)h->serial << 32 | pos;
            return 1;
        }
    }
    return 0;
}

void tickets_requeue(struct ticket_set *s, uint64_t tag)
{
    struct held_ticket *h = find(s, (uint32_t)(tag >> 32));
    uint32_t pos = (uint32_t)tag;
    if (!h || pos >= h->t.n || h->s[pos].state != HELD_RUNNING)
        return;
    h->s[pos].state = HELD_PENDING;
    if (pos < h->next_job)
        h->next_job = pos;
}

void tickets_complete(struct ticket_set *s, struct work_result *r)
{
    struct held_ticket *h = find(s, (uint32_t)(r->tag >> 32));
    uint32_t pos = (uint32_t)r->tag;
    if (!h || pos >= h->t.n || h->s[pos].state != HELD_RUNNING) {
        free(r->pixels);
        r->pixels = NULL;
        return;
    }
    h->ms += r->ms;
    if (r->ok) {
        h->s[pos].state = HELD_OK;
        h->s[pos].pixels = r->pixels;
        r->pixels = NULL;
        h->done++;
    } else {
        sample_fail(h, pos, r->reason[0] ? r->reason : "unknown error", r->fail_class);
    }
}

struct held_ticket *tickets_pop_done(struct ticket_set *s)
{
    struct held_ticket *prev = NULL;
    for (struct held_ticket *h = s->head; h; prev = h, h = h->next) {
        if (h->done < h->t.n)
            continue;
        if (prev)
            prev->next = h->next;
        else
            s->head = h->next;
        if (s->tail == h)
            s->tail = prev;
        h->next = NULL;
        s->count--;
        return h;
    }
    return NULL;
}

uint32_t tickets_ids(const struct ticket_set *s, uint64_t *out, uint32_t max)
{
    uint32_t k = 0;
    for (const struct held_ticket *h = s->head; h && k < max; h = h->next)
        out[k++] = h->t.ticket;
    return k;
}

/* Copies view plane `view` of every successful sample into group pixels
 * laid out [view][sample][c][h][w]; `offset` is the view's place inside one
 * sample's buffer (global views, then local views). */
static void pack_group(uint8_t *dst, const struct held_ticket *h, uint32_t views,
                       size_t plane, size_t first_offset, uint32_t n_ok)
{
    for (uint32_t vi = 0; vi < views; vi++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < h->t.n; i++) {
            if (h->s[i].state != HELD_OK)
                continue;
            memcpy(dst + ((size_t)vi * n_ok + k) * plane,
                   h->s[i].pixels + first_offset + (size_t)vi * plane, plane);
            k++;
        }
    }
}

void tickets_pack_batch(struct msg *m, struct batch_buf *b, const struct held_ticket *h,
                        const struct dataset *d, const struct config_views *v)
{
    memset(m, 0, sizeof *m);
    memset(b, 0, sizeof *b);
    uint32_t n_ok = h->t.n - h->failed;
    int split = h->t.split == MSG_SPLIT_VAL ? DATASET_VAL : DATASET_TRAIN;
    b->indices = xmalloc(sizeof *b->indices * (n_ok ? n_ok : 1));
    b->labels = xmalloc(sizeof *b->labels * (n_ok ? n_ok : 1));
    b->failures = xcalloc(h->failed ? h->failed : 1, sizeof *b->failures);
    uint32_t k = 0, f = 0;
    for (uint32_t i = 0; i < h->t.n; i++) {
        const struct held_sample *hs = &h->s[i];
        if (hs->state == HELD_OK) {
            b->indices[k] = hs->index;
            b->labels[k++] = d->split[split].labels[hs->index];
        } else {
            b->failures[f].index = hs->index;
            b->failures[f].path = hs->index < d->split[split].n
                                ? d->split[split].paths[hs->index] : "";
            b->failures[f].fail_class = hs->fail_class;
            b->failures[f++].reason = hs->reason;
        }
    }
    CHECK(k == n_ok && f == h->failed);

    /* A sample's views lie in the worker's output in the groups' order
     * (work_sample_bytes), so each group starts where the last ended. */
    uint32_t n_groups = msg_batch_layout(v, h->t.work, h->t.eval_view, b->groups);
    size_t offset = 0;
    for (uint32_t g = 0; g < n_groups; g++) {
        struct msg_group *gr = &b->groups[g];
        size_t plane = (size_t)gr->c * gr->h * gr->w;
        b->pixels[g] = xmalloc(plane * gr->views * n_ok + 1);
        pack_group(b->pixels[g], h, gr->views, plane, offset, n_ok);
        gr->pixels = b->pixels[g];
        offset += plane * gr->views;
    }

    m->kind = MSG_KIND_BATCH;
    struct msg_batch *bt = &m->batch;
    bt->ticket = h->t.ticket;
    bt->step = h->t.step;
    bt->epoch = h->t.epoch;
    bt->split = h->t.split;
    bt->work = h->t.work;
    bt->n = n_ok;
    bt->indices = b->indices;
    bt->labels = b->labels;
    bt->n_groups = n_groups;
    bt->groups = b->groups;
    bt->n_failures = h->failed;
    bt->failures = b->failures;
    bt->decode_ms = h->ms;
}

void tickets_batch_free(struct batch_buf *b)
{
    free(b->indices);
    free(b->labels);
    free(b->failures);
    for (size_t g = 0; g < sizeof b->pixels / sizeof b->pixels[0]; g++)
        free(b->pixels[g]);
    memset(b, 0, sizeof *b);
}
