/*
 * train_step.c: the steps in flight and the step job (train_step.h). Tickets
 * go out under credit-based flow control; an answered ticket is done and any
 * later BATCH for it is a dropped duplicate.
 */
#include "train_step.h"

#include <inttypes.h>
#include <string.h>

#include <stdio.h>

#include "config.h"
#include "hash.h"
#include "train_log.h"
#include "util.h"

/* Whether the tickets ask for the eval view (TRAIN_GROUPS): when the model
 * has a probe that learns from it. */
static bool eval_view(const struct train_step *st)
{
    return st->cfg->optim.probe_views == CONFIG_PROBE_VIEWS_EVAL &&
        train_probe_classes(st->n_classes) > 0;
}

static int group_views(const struct train_step *st, int g)
{
    const struct config *c = st->cfg;
    if (g == 2)
        return eval_view(st) ? 1 : 0;
    return (int)(g == 0 ? c->views.global_count : c->views.local_count);
}

static int group_size(const struct config *c, int g)
{
    return (int)(g == 1 ? c->views.local_size : c->views.global_size);
}

static size_t group_plane(const struct config *c, int g)
{
    size_t size = (size_t)group_size(c, g);
    return (size_t)c->views.channels * size * size;
}

void train_step_init(struct train_step *st, const struct config *c,
                     uint64_t n_train, uint32_t n_classes)
{
    memset(st, 0, sizeof *st);
    st->cfg = c;
    st->n_classes = n_classes;
    train_sampler_init(&st->sampler, c->run.seed, n_train, (int)c->optim.batch,
                       (int)c->run.ticket_size);
    size_t B = (size_t)st->sampler.batch;
    for (int i = 0; i < TRAIN_WINDOW; i++) {
        struct train_slot *s = &st->slots[i];
        s->indices = xmalloc(B * sizeof *s->indices);
        s->ok = xmalloc(B);
        s->labels = xmalloc(B * sizeof *s->labels);
        for (int g = 0; g < TRAIN_GROUPS; g++)
            if (group_views(st, g) > 0)
                s->pixels[g] = xmalloc_aligned((size_t)group_views(st, g) * B *
                                               group_plane(c, g));
        s->tstate = xmalloc((size_t)st->sampler.tickets_per_step);
        s->tries = xmalloc((size_t)st->sampler.tickets_per_step);
        s->avoid =
            xmalloc((size_t)st->sampler.tickets_per_step * sizeof *s->avoid);
        s->doubt = xmalloc(B * sizeof *s->doubt);
    }
    st->part = xmalloc((size_t)st->sampler.ticket_size * sizeof *st->part);
    struct train_step_job *j = &st->job;
    j->batch = (int)B;
    j->channels = (int)c->views.channels;
    for (int g = 0; g < TRAIN_GROUPS; g++) {
        j->views[g] = group_views(st, g);
        j->size[g] = group_size(c, g);
    }
    j->keep = xmalloc(B * sizeof *j->keep);
}

void train_step_free(struct train_step *st)
{
    for (int i = 0; i < TRAIN_WINDOW; i++) {
        struct train_slot *s = &st->slots[i];
        free(s->indices);
        free(s->ok);
        free(s->labels);
        for (int g = 0; g < TRAIN_GROUPS; g++)
            util_free_aligned(s->pixels[g]);
        free(s->tstate);
        free(s->tries);
        free(s->avoid);
        free(s->doubt);
    }
    free(st->job.keep);
    free(st->part);
    xchg_list_free(&st->excluded);
    train_sampler_free(&st->sampler);
    memset(st, 0, sizeof *st);
}

void train_step_set_dist(struct train_step *st, struct dist *d)
{
    st->dist = d && d->world > 1 ? d : NULL;
    st->job.dist = st->dist;
    st->share_n = st->dist ? dist_share(d, st->sampler.batch, &st->share_start)
                           : st->sampler.batch;
}

/* Data parallel: the other ranks' positions of a new slot are settled, and
 * tickets with none of this rank's are done. */
static bool pending(const struct train_step *st, const struct train_slot *s,
                    int k);

static void settle_others(struct train_step *st, struct train_slot *s)
{
    if (!st->dist)
        return;
    const struct train_sampler *sm = &st->sampler;
    for (int i = 0; i < sm->batch; i++)
        if (i < st->share_start || i >= st->share_start + st->share_n)
            s->ok[i] = 2;
    for (int k = 0; k < sm->tickets_per_step; k++)
        if (!pending(st, s, k)) {
            s->tstate[k] = TICKET_DONE;
            s->tickets_done++;
        }
}

struct train_slot *train_step_slot(struct train_step *st, uint64_t step)
{
    for (int i = 0; i < TRAIN_WINDOW; i++)
        if (st->slots[i].used && st->slots[i].step == step)
            return &st->slots[i];
    return NULL;
}

void train_step_release(struct train_slot *s)
{
    s->used = false;
    s->computing = false;
}

/* The next epoch is cut only once every ticket of the current one is back:
 * then every failure of the epoch is known, whatever the loaders' speeds. */
static bool epoch_complete(const struct train_step *st)
{
    /* data parallel: the other ranks' failures arrive with the exchange of
     * the epoch's last step */
    if (st->dist &&
        st->trained < st->sampler.epoch_start + st->sampler.steps_in_epoch)
        return false;
    for (int i = 0; i < TRAIN_WINDOW; i++) {
        const struct train_slot *s = &st->slots[i];
        if (s->used && s->epoch == st->sampler.epoch &&
            s->tickets_done < st->sampler.tickets_per_step)
            return false;
    }
    return true;
}

void train_step_open(struct train_step *st, uint64_t total)
{
    struct train_sampler *sm = &st->sampler;
    while (st->next_open < total && !st->sampler_err[0]) {
        struct train_slot *s = NULL;
        for (int i = 0; i < TRAIN_WINDOW && !s; i++)
            if (!st->slots[i].used)
                s = &st->slots[i];
        if (!s)
            return;
        uint64_t step = st->next_open;
        if (step >= sm->epoch_start + sm->steps_in_epoch) {
            if (!epoch_complete(st))
                return;
            if (train_sampler_start_epoch(sm, sm->epoch + 1, step,
                                          st->sampler_err) != 0)
                return;
            train_log(
                "epoch %" PRIu32 " starts at step %" PRIu64 ": %" PRIu64
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
        memset(s->tries, 0, (size_t)sm->tickets_per_step);
        memset(s->avoid, 0, (size_t)sm->tickets_per_step * sizeof *s->avoid);
        memset(s->doubt, 0, (size_t)sm->batch * sizeof *s->doubt);
        s->tickets_done = 0;
        settle_others(st, s);
        st->next_open++;
    }
}

static void ticket_of(const struct train_step *st, const struct train_slot *s,
                      int k, struct msg_ticket *out)
{
    const struct train_sampler *sm = &st->sampler;
    int first = k * sm->ticket_size;
    int n = sm->batch - first < sm->ticket_size ? sm->batch - first
                                                : sm->ticket_size;
    *out = (struct msg_ticket){
        .ticket = s->step * (uint64_t)sm->tickets_per_step + (uint64_t)k + 1,
        .step = s->step,
        .epoch = s->epoch,
        .split = MSG_SPLIT_TRAIN,
        .work = MSG_WORK_TRAIN,
        .seed = st->cfg->run.seed,
        .eval_view = eval_view(st),
        .n = (uint32_t)n,
        .indices = s->indices + first,
    };
}

/* ticket_of, and where the ticket's samples start in the slot. */
static size_t ticket_span(const struct train_step *st,
                          const struct train_slot *s, int k,
                          struct msg_ticket *t)
{
    ticket_of(st, s, k, t);
    return (size_t)(t->indices - s->indices);
}

/* Ticket k's samples still to come (not delivered nor settled) that
 * loader c holds, as the TICKET c is sent (indices in st->part); returns
 * their count. A whole copy gets every pending sample. */
static uint32_t ticket_part(const struct train_step *st,
                            const struct train_slot *s, int k,
                            const struct train_client *c, struct msg_ticket *t)
{
    size_t first = ticket_span(st, s, k, t);
    uint32_t m = 0;
    for (uint32_t i = 0; i < t->n; i++)
        if (!s->ok[first + i] && train_net_holds(c, t->indices[i]))
            st->part[m++] = t->indices[i];
    t->indices = st->part;
    t->n = m;
    return m;
}

/* How well c can serve ticket k of slot s: 2 every pending sample, 1 some
 * (a partial copy), 0 none. When strict, also 0 for the loader that failed
 * the ticket last (shun) and for one that doubted a pending sample's
 * decoding: another loader's turn. */
struct fit_ctx {
    const struct train_step *st;
    const struct train_slot *s;
    int k;
    bool strict;
    uint64_t shun; /* client_id, or 0 */
};

static int fit_ticket(void *ctx, const struct train_client *c)
{
    const struct fit_ctx *f = ctx;
    if (c->role != MSG_ROLE_LOADER || c->drop[0] ||
        (f->strict && f->shun && c->client_id == f->shun))
        return 0;
    struct msg_ticket t;
    size_t first = ticket_span(f->st, f->s, f->k, &t);
    uint32_t pending = 0, held = 0;
    for (uint32_t i = 0; i < t.n; i++)
        if (!f->s->ok[first + i]) {
            if (f->strict && f->s->doubt[first + i] == c->client_id)
                return 0;
            pending++;
            held += train_net_holds(c, t.indices[i]);
        }
    return held == 0 ? 0 : held == pending ? 2 : 1;
}

/* Whether some connected loader (credit or not; not c) fits f. */
static bool any_fits(const struct train_net *n, struct fit_ctx *f,
                     const struct train_client *c)
{
    for (int i = 0; i < n->n_clients; i++)
        if (n->clients[i] != c && fit_ticket(f, n->clients[i]) > 0)
            return true;
    return false;
}

/* Whether a loader other than c could serve some of ticket k's pending
 * samples: then a second opinion, or a retry away from c, is possible. */
static bool other_fits(const struct train_step *st, const struct train_slot *s,
                       int k, const struct train_net *n,
                       const struct train_client *c)
{
    struct fit_ctx f = {st, s, k, false, 0};
    return any_fits(n, &f, c);
}

/* Slot position of sample index in ticket k, or -1. */
static long position_in(const struct train_step *st, const struct train_slot *s,
                        int k, uint64_t index)
{
    struct msg_ticket t;
    size_t first = ticket_span(st, s, k, &t);
    for (uint32_t i = 0; i < t.n; i++)
        if (t.indices[i] == index)
            return (long)(first + i);
    return -1;
}

/* Slot s's ticket k still has samples to come. */
static bool pending(const struct train_step *st, const struct train_slot *s,
                    int k)
{
    struct msg_ticket t;
    size_t first = ticket_span(st, s, k, &t);
    for (uint32_t i = 0; i < t.n; i++)
        if (!s->ok[first + i])
            return true;
    return false;
}

/* A second copy of the oldest ticket of slot s that is out at one loader
 * only, for longer than TRAIN_HEDGE_FACTOR times the measured answer time
 * (and TRAIN_HEDGE_MIN_S), to a loader with free credit. */
static void hedge(struct train_step *st, struct train_tickets *tk,
                  struct train_net *n, struct train_slot *s)
{
    double now = util_time_mono(), oldest = now;
    double wait = TRAIN_HEDGE_FACTOR * tk->answer_s;
    wait = wait > TRAIN_HEDGE_MIN_S ? wait : TRAIN_HEDGE_MIN_S;
    int best = -1;
    uint64_t holder = 0;
    for (int k = 0; k < st->sampler.tickets_per_step; k++) {
        if (s->tstate[k] != TICKET_OUT)
            continue;
        struct msg_ticket t;
        ticket_of(st, s, k, &t);
        double sent;
        uint64_t who;
        if (train_tickets_copies(n, t.ticket, &sent, &who) != 1)
            continue;
        if (now - sent > wait && sent < oldest) {
            oldest = sent;
            best = k;
            holder = who;
        }
    }
    if (best < 0)
        return;
    struct fit_ctx f = {st, s, best, true, holder};
    struct train_client *c = train_tickets_loader_fit(tk, n, fit_ticket, &f);
    if (!c || c->client_id == holder)
        return;
    struct msg_ticket t;
    if (ticket_part(st, s, best, c, &t) == 0)
        return;
    train_tickets_send(n, c, &t);
    tk->hedged++;
}

void train_step_issue(struct train_step *st, struct train_tickets *tk,
                      struct train_net *n)
{
    /* nothing can go out (and the scan below costs tickets x loaders) */
    if (!train_tickets_any_credit(n))
        return;
    /* slots in step order, so re-issued tickets of earlier steps go first */
    struct train_slot *order[TRAIN_WINDOW];
    int m = 0;
    for (int i = 0; i < TRAIN_WINDOW; i++)
        if (st->slots[i].used)
            order[m++] = &st->slots[i];
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && order[j]->step < order[j - 1]->step; j--) {
            struct train_slot *tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (int i = 0; i < m; i++) {
        struct train_slot *s = order[i];
        for (int k = 0; k < st->sampler.tickets_per_step; k++) {
            if (s->tstate[k] != TICKET_UNISSUED)
                continue;
            /* a ticket a loader failed (or whose decode failures need a
             * second opinion) waits for another loader that holds its
             * samples; only when there is none does it go back */
            struct fit_ctx f = {st, s, k, true, s->avoid[k]};
            struct train_client *c =
                train_tickets_loader_fit(tk, n, fit_ticket, &f);
            if (!c && !any_fits(n, &f, NULL)) {
                f.strict = false;
                c = train_tickets_loader_fit(tk, n, fit_ticket, &f);
            }
            if (!c) {
                /* no loader with credit holds its samples now; say so when
                 * no connected loader holds them at all */
                if (train_net_count(n, MSG_ROLE_LOADER) > 0 &&
                    !other_fits(st, s, k, n, NULL) &&
                    train_log_thin(++st->unheld))
                    train_log("step %" PRIu64 ": samples of ticket %d are "
                              "held by no connected loader (partial copies): "
                              "waiting for one that has them (%" PRIu64
                              " checks so far)",
                              s->step, k, st->unheld);
                continue;
            }
            struct msg_ticket t;
            ticket_part(st, s, k, c, &t);
            train_tickets_send(n, c, &t);
            s->tstate[k] = TICKET_OUT;
        }
    }
    /* Every ticket is out and a loader still has room: back up the
     * earliest step's slowest ticket on it (a second copy; the first answer
     * wins, the bytes being the same), so one loader that stalls costs the
     * run a moment, not a deadline per ticket. */
    if (m > 0)
        hedge(st, tk, n, order[0]);
}

/* Slot and ticket number of a ticket id; NULL when its step is not open. */
static struct train_slot *slot_of_ticket(struct train_step *st, uint64_t ticket,
                                         int *k)
{
    if (ticket == 0)
        return NULL;
    uint64_t tps = (uint64_t)st->sampler.tickets_per_step;
    *k = (int)((ticket - 1) % tps);
    return train_step_slot(st, (ticket - 1) / tps);
}

void train_step_reissue(struct train_step *st, const struct train_net *n,
                        uint64_t ticket)
{
    int k;
    struct train_slot *s = slot_of_ticket(st, ticket, &k);
    if (s && s->tstate[k] == TICKET_OUT && !train_tickets_held(n, ticket))
        s->tstate[k] = TICKET_UNISSUED;
}

/* Copies the batch's samples into the slot at their place in the step. */
static void copy_samples(const struct train_step *st, struct train_slot *s,
                         const struct msg_ticket *tk,
                         const struct train_client *c,
                         const struct msg_batch *b)
{
    size_t B = (size_t)st->sampler.batch;
    size_t first = (size_t)(tk->indices - s->indices);
    uint32_t j = 0;
    for (uint32_t i = 0; i < tk->n && j < b->n; i++) {
        if (tk->indices[i] != b->indices[j])
            continue;
        size_t pos = first + i;
        /* only samples still to come, and only from a loader that holds
         * them: a sample in place is never overwritten */
        if (s->ok[pos] || !train_net_holds(c, tk->indices[i])) {
            j++;
            continue;
        }
        /* the BATCH's groups are the step's that have views, in order
         * (train_tickets_check_answer) */
        uint32_t bg = 0;
        for (int g = 0; g < TRAIN_GROUPS; g++) {
            if (group_views(st, g) == 0)
                continue;
            const struct msg_group *gr = &b->groups[bg++];
            size_t plane = group_plane(st->cfg, g);
            for (uint32_t v = 0; v < gr->views; v++)
                memcpy(s->pixels[g] + ((size_t)v * B + pos) * plane,
                       gr->pixels + ((size_t)v * b->n + j) * plane, plane);
        }
        s->labels[pos] = b->labels[j];
        s->ok[pos] = 1;
        j++;
    }
}

/* Failures of the file itself exclude the sample once a second loader
 * agrees (TRAIN_ENV_TRIES); environmental ones, and decode failures still
 * in doubt, send the ticket to another loader (up to TRAIN_ENV_TRIES
 * answers), the samples that arrived kept. Returns true when the ticket
 * is done. */
/* An answer accounts for every sample of ticket t still pending that c
 * holds: those it was sent (pending only shrinks), so an honest loader has
 * answered them, and one that leaves some out would be sent them again and
 * again. 0, or -1 with err. */
static int check_accounted(const struct train_slot *s,
                           const struct msg_ticket *t,
                           const struct train_client *c,
                           const struct msg_batch *b, char *err)
{
    size_t first = (size_t)(t->indices - s->indices);
    uint32_t missing = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        uint64_t idx = t->indices[i];
        if (s->ok[first + i] || !train_net_holds(c, idx))
            continue;
        bool found = false;
        for (uint32_t j = 0; j < b->n && !found; j++)
            found = b->indices[j] == idx;
        for (uint32_t j = 0; j < b->n_failures && !found; j++)
            found = b->failures[j].index == idx;
        missing += !found;
    }
    return missing ? errf(err,
                          "BATCH for ticket %" PRIu64 " leaves %" PRIu32
                          " of the samples it was sent unanswered",
                          b->ticket, missing)
                   : 0;
}

/* Sample index of ticket k will bring no pixels this step (ok = 2). */
static void settle_sample(const struct train_step *st, struct train_slot *s,
                          int k, uint64_t index)
{
    struct msg_ticket t;
    size_t first = ticket_span(st, s, k, &t);
    for (uint32_t i = 0; i < t.n; i++)
        if (t.indices[i] == index && !s->ok[first + i])
            s->ok[first + i] = 2;
}

static bool take_failures(struct train_step *st, struct train_slot *s, int k,
                          const struct train_net *n, struct train_client *c,
                          const struct msg_batch *b)
{
    uint32_t env = 0, doubted = 0;
    const struct msg_failure *shown = NULL; /* the first counted, for logs */
    bool other = other_fits(st, s, k, n, c);
    bool last_try = s->tries[k] + 1 >= TRAIN_ENV_TRIES;
    for (uint32_t i = 0; i < b->n_failures; i++) {
        const struct msg_failure *f = &b->failures[i];
        long pos = position_in(st, s, k, f->index);
        /* a sample in place or settled, or one c does not hold: not c's
         * to report (another copy answered it; or a lie) */
        if (pos < 0 || s->ok[pos] || !train_net_holds(c, f->index))
            continue;
        shown = shown ? shown : f;
        if (f->fail_class == MSG_FAIL_ENV) {
            env++;
            continue;
        }
        /* a decode failure excludes the sample when a second loader
         * agrees, or no other could tell, or at the last try */
        bool agreed = s->doubt[pos] && s->doubt[pos] != c->client_id;
        if (!agreed && other && !last_try) {
            if (!s->doubt[pos])
                s->doubt[pos] = c->client_id;
            doubted++;
            continue;
        }
        settle_sample(st, s, k, f->index);
        if (!train_sampler_exclude(&st->sampler, f->index, s->epoch))
            continue;
        if (st->dist)
            xchg_list_add(&st->excluded, f->index, s->epoch);
        train_log("sample %" PRIu64 " (%s) failed: %s; excluded from "
                  "epoch %" PRIu32 " on%s",
                  f->index, f->path, f->reason, s->epoch + 1,
                  agreed ? " (two loaders agree)" : "");
    }
    if (env == 0 || b->n > 0)
        c->hold.env_streak = 0;
    if (env == 0 && doubted == 0)
        return true;
    /* only answers that delivered nothing count towards dropping the
     * loader: a few missing files on its disk are no reason */
    if (env > 0 && b->n == 0 && ++c->hold.env_streak >= TRAIN_ENV_DROP &&
        !c->drop[0])
        snprintf(c->drop, sizeof c->drop,
                 "answered %u tickets in a row with I/O-type failures",
                 c->hold.env_streak);
    if (doubted > 0 || ++s->tries[k] < TRAIN_ENV_TRIES) {
        if (doubted > 0)
            ++s->tries[k];
        s->avoid[k] = c->client_id;
        s->tstate[k] = TICKET_UNISSUED;
        if (doubted > 0 && train_log_thin(++st->doubted))
            train_log("%s says %" PRIu32 " sample(s) of step %" PRIu64
                      " cannot be decoded (first: %s: %s): asking another "
                      "loader before excluding them",
                      c->name, doubted, s->step, shown->path, shown->reason);
        else if (doubted == 0)
            train_log("%s could not load %" PRIu32 " sample(s) of step %" PRIu64
                      " (first: %s: %s); they go to another loader",
                      c->name, env, s->step, shown->path, shown->reason);
        return false;
    }
    train_log("step %" PRIu64 ": %" PRIu32 " sample(s) failed to load %d "
              "times for reasons of the loaders' own (I/O, memory, time): "
              "this step trains without them; they stay in the dataset",
              s->step, env, TRAIN_ENV_TRIES);
    for (uint32_t i = 0; i < b->n_failures; i++)
        if (b->failures[i].fail_class == MSG_FAIL_ENV &&
            train_net_holds(c, b->failures[i].index))
            settle_sample(st, s, k, b->failures[i].index);
    return true;
}

enum train_answer train_step_accept(struct train_step *st,
                                    struct train_tickets *tk,
                                    struct train_net *n, struct train_client *c,
                                    const struct msg_batch *b, bool was_held)
{
    char err[ERR_LEN];
    int k = 0;
    struct train_slot *s = slot_of_ticket(st, b->ticket, &k);
    if (!s || s->tstate[k] == TICKET_DONE || s->computing) {
        if (train_log_thin(++tk->duplicates))
            train_log("dropped a late or duplicate BATCH for ticket %" PRIu64
                      " (step %" PRIu64 ") from %s (%" PRIu64 " so far)",
                      b->ticket, b->step, c->name, tk->duplicates);
        return TRAIN_ANSWER_LATE;
    }
    struct msg_ticket t;
    ticket_of(st, s, k, &t);
    if (!was_held) {
        errf(err, "BATCH for ticket %" PRIu64 ", which it does not hold",
             b->ticket);
    } else if (b->work != MSG_WORK_TRAIN) {
        errf(err, "BATCH work '%s' for a train ticket", msg_work_name(b->work));
    } else if (train_tickets_check_answer(st->cfg, st->n_classes, b, &t, err) ==
                   0 &&
               check_accounted(s, &t, c, b, err) == 0) {
        copy_samples(st, s, &t, c, b);
        c->batches++;
        /* done when every sample arrived or is settled, whatever the
         * failures said (another copy may have brought them); a partial
         * copy's share leaves the rest to the loaders that hold it */
        bool retry = !take_failures(st, s, k, n, c, b);
        if (!pending(st, s, k)) {
            s->tstate[k] = TICKET_DONE;
            s->tickets_done++;
        } else if (!retry) {
            s->tstate[k] = TICKET_UNISSUED;
        }
        return TRAIN_ANSWER_TAKEN;
    }
    train_net_bad_message(n, c->name, err);
    if (was_held) {
        /* to another loader first: this one may answer it the same way */
        s->avoid[k] = c->client_id;
        train_step_reissue(st, n, b->ticket);
    }
    return TRAIN_ANSWER_BAD;
}

struct train_slot *train_step_ready(struct train_step *st, uint64_t step)
{
    struct train_slot *s = train_step_slot(st, step);
    return s && !s->computing && s->tickets_done == st->sampler.tickets_per_step
        ? s
        : NULL;
}

/* Moves the surviving samples to the front of each view, in place (the
 * destination v*n+i never lies after the source v*B+keep[i], and later
 * sources lie after both), and hashes the assembled pixels and labels.
 * Returns the number of samples kept. */
static int assemble(struct train_step_job *j, uint64_t *hash)
{
    struct train_slot *s = j->slot;
    size_t B = (size_t)j->batch;
    size_t n = 0;
    for (size_t b = 0; b < B; b++)
        if (s->ok[b] == 1)
            j->keep[n++] = (int)b;
    uint64_t h = HASH_FNV_OFFSET;
    for (int g = 0; g < TRAIN_GROUPS; g++) {
        size_t plane =
            (size_t)j->channels * (size_t)j->size[g] * (size_t)j->size[g];
        for (int v = 0; v < j->views[g]; v++)
            for (size_t i = 0; i < n; i++)
                memmove(s->pixels[g] + ((size_t)v * n + i) * plane,
                        s->pixels[g] +
                            ((size_t)v * B + (size_t)j->keep[i]) * plane,
                        plane);
        if (j->views[g] > 0)
            h = hash_fnv1a(h, s->pixels[g], (size_t)j->views[g] * n * plane);
    }
    for (size_t i = 0; i < n; i++) {
        s->labels[i] = s->labels[j->keep[i]];
        uint8_t le[4];
        uint32_t u = (uint32_t)s->labels[i];
        for (int k = 0; k < 4; k++)
            le[k] = (uint8_t)(u >> (8 * k));
        h = hash_fnv1a(h, le, 4);
    }
    *hash = h;
    return (int)n;
}

/* Compute thread: one training step on the job's slot. */
static void step_job(struct train_engine *e, void *arg)
{
    struct train_step_job *j = arg;
    struct train_step_result *r = &j->result;
    struct train_slot *s = j->slot;
    double t0 = util_time_mono();
    memset(r, 0, sizeof *r);
    r->lr_factor = j->lr_factor;
    r->finite = true;
    r->n = r->n_local = assemble(j, &r->hash);
    double probe_factor = j->probe_factor;
    bool enough = r->n >= 2;
    if (j->dist) {
        /* agree with the other ranks first: all compute this step on rank
         * 0's schedule, or none does */
        j->x->n = r->n_local;
        train_xchg_run(j->dist, j->x);
        r->ended = j->x->any_end;
        r->n = j->x->n_global;
        r->lr_factor = j->x->lr0;
        probe_factor = j->x->probe0;
        enough = !r->ended && r->n >= 2 && j->x->empty == 0;
    }
    if (!enough) {
        r->skipped = true;
        r->seconds = util_time_mono() - t0;
        return;
    }
    struct lejepa *m = &e->model;
    lejepa_set_batch(m, r->n_local);
    for (int g = 0; g < m->n_groups; g++)
        lejepa_load_pixels(m, g, s->pixels[g], e->mean, e->std);
    /* the model and the tickets read the same config (probe_views) */
    CHECK((j->views[2] > 0) == (lejepa_probe_input(m) != NULL));
    if (j->views[2] > 0)
        lejepa_load_probe_pixels(m, s->pixels[2], e->mean, e->std);
    lejepa_forward_backward(m, s->labels, s->step, &r->losses);
    if (lejepa_check_finite(m, &r->losses, s->step, r->err) != 0) {
        r->finite = false;
    } else {
        /* the probe learns on its own schedule (optim.probe_schedule): it
         * reads detached embeddings, so the encoder's gradients do not
         * depend on it */
        double f[PARAMS_N_GROUPS];
        f[PARAMS_GROUP_ENCODER] = r->lr_factor;
        f[PARAMS_GROUP_PROBE] = probe_factor;
        adamw_step_groups(&e->opt, &m->p, f);
    }
    r->seconds = util_time_mono() - t0;
}

/* This rank's exclusions since the last submit go with the exchange. */
static void hand_exclusions(struct train_step *st, struct train_xchg *x)
{
    struct xchg_list spare = x->mine;
    x->mine = st->excluded;
    st->excluded = spare;
    st->excluded.n = 0;
}

void train_step_submit(struct train_step *st, struct train_engine *e,
                       struct train_slot *s, double lr_factor,
                       double probe_factor, struct train_xchg *x)
{
    s->computing = true;
    st->job.slot = s;
    st->job.lr_factor = lr_factor;
    st->job.probe_factor = probe_factor;
    st->job.x = st->dist ? x : NULL;
    if (st->dist)
        hand_exclusions(st, x);
    train_engine_submit(e, step_job, &st->job);
}

/* Compute thread: the exchange alone (this rank ends the run). */
static void end_job(struct train_engine *e, void *arg)
{
    (void)e;
    struct train_step_job *j = arg;
    j->x->n = 0;
    train_xchg_run(j->dist, j->x);
    j->result = (struct train_step_result){.ended = true, .skipped = true};
}

void train_step_submit_end(struct train_step *st, struct train_engine *e,
                           struct train_xchg *x)
{
    st->job.slot = NULL;
    st->job.x = x;
    hand_exclusions(st, x);
    train_engine_submit(e, end_job, &st->job);
}
