/*
 * train_batch.c: the steps in flight. Each of TRAIN_WINDOW slots holds one
 * step: its sample indices, the state of its tickets and a uint8 staging
 * buffer that BATCHes are copied into at their ticket's place, so the bytes
 * of a step do not depend on which loader answered which ticket or when.
 * Tickets go out under credit-based flow control; an answered ticket is done
 * and any later BATCH for it is a dropped duplicate. The model is not
 * touched here (train_compute.c trains on a full slot).
 */
#include <inttypes.h>
#include <string.h>

#include "train_state.h"
#include "util.h"

static size_t group_plane(const struct train *t, int g)
{
    size_t size = (size_t)(g == 0 ? t->cfg.views.global_size : t->cfg.views.local_size);
    return (size_t)t->cfg.views.channels * size * size;
}

static int group_views(const struct train *t, int g)
{
    return (int)(g == 0 ? t->cfg.views.global_count : t->cfg.views.local_count);
}

void train_slots_init(struct train *t)
{
    size_t B = (size_t)t->sampler.batch;
    for (int i = 0; i < TRAIN_WINDOW; i++) {
        struct train_slot *s = &t->slots[i];
        memset(s, 0, sizeof *s);
        s->indices = xmalloc(B * sizeof *s->indices);
        s->ok = xmalloc(B);
        s->labels = xmalloc(B * sizeof *s->labels);
        for (int g = 0; g < 2; g++)
            if (group_views(t, g) > 0)
                s->pixels[g] = xmalloc_aligned((size_t)group_views(t, g) * B *
                                               group_plane(t, g));
        s->tstate = xmalloc((size_t)t->sampler.tickets_per_step);
    }
}

void train_slots_free(struct train *t)
{
    for (int i = 0; i < TRAIN_WINDOW; i++) {
        struct train_slot *s = &t->slots[i];
        free(s->indices);
        free(s->ok);
        free(s->labels);
        for (int g = 0; g < 2; g++)
            util_free_aligned(s->pixels[g]);
        free(s->tstate);
        memset(s, 0, sizeof *s);
    }
}

struct train_slot *train_slot_find(struct train *t, uint64_t step)
{
    for (int i = 0; i < TRAIN_WINDOW; i++)
        if (t->slots[i].used && t->slots[i].step == step)
            return &t->slots[i];
    return NULL;
}

void train_slot_release(struct train *t, struct train_slot *s)
{
    (void)t;
    s->used = false;
    s->computing = false;
}

/* The next epoch is cut only once every ticket of the current one is back:
 * then every failure of the epoch is known, whatever the loaders' speeds. */
static bool epoch_complete(const struct train *t)
{
    for (int i = 0; i < TRAIN_WINDOW; i++) {
        const struct train_slot *s = &t->slots[i];
        if (s->used && s->epoch == t->sampler.epoch &&
            s->tickets_done < t->sampler.tickets_per_step)
            return false;
    }
    return true;
}

void train_slots_open(struct train *t)
{
    struct train_sampler *sm = &t->sampler;
    while (t->next_open < t->total && !t->fatal[0] && !t->sampler_err[0]) {
        struct train_slot *s = NULL;
        for (int i = 0; i < TRAIN_WINDOW && !s; i++)
            if (!t->slots[i].used)
                s = &t->slots[i];
        if (!s)
            return;
        uint64_t step = t->next_open;
        if (step >= sm->epoch_start + sm->steps_in_epoch) {
            if (!epoch_complete(t))
                return;
            if (train_sampler_start_epoch(sm, sm->epoch + 1, step, t->sampler_err) != 0)
                return;
            train_log(t, "epoch %" PRIu32 " starts at step %" PRIu64 ": %" PRIu64
                      " steps of %d (%" PRIu64 " usable samples, %" PRIu64
                      " dropped as the last partial batch, %" PRIu64 " excluded)",
                      sm->epoch, step, sm->steps_in_epoch, sm->batch, sm->n_perm,
                      sm->n_perm % (uint64_t)sm->batch, sm->n_failed);
        }
        s->used = true;
        s->computing = false;
        s->step = step;
        s->epoch = sm->epoch;
        s->epoch_start = sm->epoch_start;
        train_sampler_step_indices(sm, step, s->indices);
        memset(s->ok, 0, (size_t)sm->batch);
        memset(s->labels, 0, (size_t)sm->batch * sizeof *s->labels);
        memset(s->tstate, TICKET_UNISSUED, (size_t)sm->tickets_per_step);
        s->tickets_done = 0;
        t->next_open++;
    }
}

static void ticket_of(const struct train *t, const struct train_slot *s, int k,
                      struct msg_ticket *out)
{
    const struct train_sampler *sm = &t->sampler;
    int first = k * sm->ticket_size;
    int n = sm->batch - first < sm->ticket_size ? sm->batch - first : sm->ticket_size;
    *out = (struct msg_ticket){
        .ticket = s->step * (uint64_t)sm->tickets_per_step + (uint64_t)k + 1,
        .step = s->step, .epoch = s->epoch, .split = MSG_SPLIT_TRAIN,
        .work = MSG_WORK_TRAIN, .seed = t->cfg.run.seed, .n = (uint32_t)n,
        .indices = s->indices + first,
    };
}

struct train_client *train_loader_with_credit(struct train *t)
{
    for (int i = 0; i < t->n_clients; i++) {
        struct train_client *c = t->clients[(t->rr + i) % t->n_clients];
        if (c->role == MSG_ROLE_LOADER && c->n_held < c->credit) {
            t->rr = (t->rr + i + 1) % t->n_clients;
            return c;
        }
    }
    return NULL;
}

void train_tickets_issue(struct train *t)
{
    if (!t->engine_ready || t->n_clients == 0)
        return;
    /* a snapshot pauses training: its tickets go first */
    train_eval_issue(t);
    if (train_clients_awaiting_evaluators(t))
        return;
    /* slots in step order, so re-issued tickets of earlier steps go first */
    struct train_slot *order[TRAIN_WINDOW];
    int n = 0;
    for (int i = 0; i < TRAIN_WINDOW; i++)
        if (t->slots[i].used)
            order[n++] = &t->slots[i];
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && order[j]->step < order[j - 1]->step; j--) {
            struct train_slot *tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (int i = 0; i < n; i++) {
        struct train_slot *s = order[i];
        for (int k = 0; k < t->sampler.tickets_per_step; k++) {
            if (s->tstate[k] != TICKET_UNISSUED)
                continue;
            struct train_client *c = train_loader_with_credit(t);
            if (!c)
                return;
            struct msg m = {.kind = MSG_KIND_TICKET};
            ticket_of(t, s, k, &m.ticket);
            train_send(t, c->id, c->id_len, &m);
            c->held[c->n_held++] = m.ticket.ticket;
            s->tstate[k] = TICKET_OUT;
        }
    }
}

/* Slot and ticket number of a ticket id; NULL when its step is not open. */
static struct train_slot *slot_of_ticket(struct train *t, uint64_t ticket, int *k)
{
    if (ticket == 0)
        return NULL;
    uint64_t tps = (uint64_t)t->sampler.tickets_per_step;
    *k = (int)((ticket - 1) % tps);
    return train_slot_find(t, (ticket - 1) / tps);
}

bool train_ticket_held(const struct train *t, uint64_t ticket)
{
    for (int i = 0; i < t->n_clients; i++)
        for (uint32_t j = 0; j < t->clients[i]->n_held; j++)
            if (t->clients[i]->held[j] == ticket)
                return true;
    return false;
}

void train_ticket_reissue(struct train *t, uint64_t ticket)
{
    if (train_eval_ticket(ticket)) {
        train_eval_reissue(t, ticket);
        return;
    }
    int k;
    struct train_slot *s = slot_of_ticket(t, ticket, &k);
    if (s && s->tstate[k] == TICKET_OUT && !train_ticket_held(t, ticket))
        s->tstate[k] = TICKET_UNISSUED;
}

static bool drop_held(struct train_client *c, uint64_t ticket)
{
    for (uint32_t j = 0; j < c->n_held; j++)
        if (c->held[j] == ticket) {
            c->held[j] = c->held[--c->n_held];
            return true;
        }
    return false;
}

/* Shapes the run's config fixes: group 0 the global views, group 1 the
 * local views when there are any; an eval batch: one view at the global
 * size. */
int train_batch_check_groups(const struct train *t, const struct msg_batch *b,
                             char *err)
{
    bool eval = b->work == MSG_WORK_EVAL;
    int want = !eval && t->cfg.views.local_count > 0 ? 2 : 1;
    if ((int)b->n_groups != want)
        return errf(err, "BATCH has %" PRIu32 " groups, the run's views need %d",
                    b->n_groups, want);
    for (int g = 0; g < want; g++) {
        const struct msg_group *gr = &b->groups[g];
        uint32_t size = (uint32_t)(g == 0 ? t->cfg.views.global_size
                                          : t->cfg.views.local_size);
        int views = eval ? 1 : group_views(t, g);
        if (gr->views != (uint32_t)views ||
            gr->c != (uint32_t)t->cfg.views.channels || gr->h != size || gr->w != size)
            return errf(err, "BATCH group %d is %" PRIu32 " views of %" PRIu32 "x%"
                        PRIu32 "x%" PRIu32 ", the run's config wants %d of %dx%"
                        PRIu32 "x%" PRIu32, g, gr->views, gr->c, gr->h, gr->w,
                        views, (int)t->cfg.views.channels, size, size);
    }
    for (uint32_t i = 0; i < b->n; i++)
        if (b->labels[i] < 0 || (uint32_t)b->labels[i] >= t->data.n_classes)
            return errf(err, "BATCH label %" PRId32 " of sample %" PRIu64
                        " outside the %" PRIu32 " classes", b->labels[i],
                        b->indices[i], t->data.n_classes);
    return 0;
}

/* Copies the batch's samples into the slot at their place in the step. */
static void copy_samples(struct train *t, struct train_slot *s,
                         const struct msg_ticket *tk, const struct msg_batch *b)
{
    size_t B = (size_t)t->sampler.batch;
    size_t first = (size_t)(tk->indices - s->indices);
    uint32_t j = 0;
    for (uint32_t i = 0; i < tk->n && j < b->n; i++) {
        if (tk->indices[i] != b->indices[j])
            continue;
        size_t pos = first + i;
        for (uint32_t g = 0; g < b->n_groups; g++) {
            size_t plane = group_plane(t, (int)g);
            for (uint32_t v = 0; v < b->groups[g].views; v++)
                memcpy(s->pixels[g] + ((size_t)v * B + pos) * plane,
                       b->groups[g].pixels + ((size_t)v * b->n + j) * plane, plane);
        }
        s->labels[pos] = b->labels[j];
        s->ok[pos] = 1;
        j++;
    }
}

void train_batch_accept(struct train *t, struct train_client *c,
                        const struct msg_batch *b)
{
    char err[ERR_LEN];
    bool was_held = drop_held(c, b->ticket);
    if (train_eval_ticket(b->ticket)) {
        train_eval_accept(t, c, b, was_held);
        return;
    }
    int k = 0;
    struct train_slot *s = slot_of_ticket(t, b->ticket, &k);
    if (!s || s->tstate[k] == TICKET_DONE || s->computing) {
        t->duplicates++;
        train_log(t, "dropped a late or duplicate BATCH for ticket %" PRIu64
                  " (step %" PRIu64 ") from %s", b->ticket, b->step, c->name);
        return;
    }
    struct msg_ticket tk;
    ticket_of(t, s, k, &tk);
    if (b->work != MSG_WORK_TRAIN) {
        errf(err, "BATCH work '%s' for a train ticket", msg_work_name(b->work));
    } else if (msg_batch_check_ticket(b, &tk, err) == 0 &&
               train_batch_check_groups(t, b, err) == 0) {
        copy_samples(t, s, &tk, b);
        for (uint32_t i = 0; i < b->n_failures; i++) {
            const struct msg_failure *f = &b->failures[i];
            if (train_sampler_exclude(&t->sampler, f->index, s->epoch))
                train_log(t, "sample %" PRIu64 " (%s) failed: %s; excluded from "
                          "epoch %" PRIu32 " on", f->index, f->path, f->reason,
                          s->epoch + 1);
        }
        s->tstate[k] = TICKET_DONE;
        s->tickets_done++;
        c->batches++;
        return;
    }
    train_bad_message(t, c->name, err);
    if (was_held)
        train_ticket_reissue(t, b->ticket);
}
