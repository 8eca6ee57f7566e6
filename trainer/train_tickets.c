/*
 * train_tickets.c: the ticket ledger (train_tickets.h).
 */
#include "train_tickets.h"

#include <inttypes.h>

#include <stdio.h>

#include "config.h"
#include "util.h"

enum train_ticket_kind train_tickets_kind(uint64_t ticket)
{
    return (ticket & TRAIN_EVAL_TICKET_BIT) ? TRAIN_TICKET_EVAL
                                            : TRAIN_TICKET_TRAIN;
}

static bool has_credit(const struct train_client *c)
{
    return c->role == MSG_ROLE_LOADER && !c->drop[0] &&
        c->hold.n_held < c->hold.credit;
}

bool train_tickets_any_credit(const struct train_net *n)
{
    for (int i = 0; i < n->n_clients; i++)
        if (has_credit(n->clients[i]))
            return true;
    return false;
}

struct train_client *train_tickets_loader_fit(
    struct train_tickets *tk, struct train_net *n,
    int (*fit)(void *ctx, const struct train_client *c), void *ctx)
{
    struct train_client *best = NULL;
    int best_score = 0, at = 0;
    for (int i = 0; i < n->n_clients; i++) {
        struct train_client *c = n->clients[(tk->rr + i) % n->n_clients];
        if (!has_credit(c))
            continue;
        int score = fit(ctx, c);
        if (score > best_score) {
            best = c;
            best_score = score;
            at = i;
        }
    }
    if (best)
        tk->rr = (tk->rr + at + 1) % n->n_clients;
    return best;
}

void train_tickets_send(struct train_net *n, struct train_client *c,
                        const struct msg_ticket *t)
{
    CHECK(c->hold.n_held < c->hold.credit);
    struct msg m = {.kind = MSG_KIND_TICKET, .ticket = *t};
    /* recorded even when the send fails: the client is then dropped and
     * the ticket re-issued with its others */
    train_net_send_client(n, c, &m);
    c->hold.held[c->hold.n_held] = t->ticket;
    c->hold.sent[c->hold.n_held++] = util_time_mono();
}

bool train_tickets_drop(struct train_tickets *tk, struct train_client *c,
                        uint64_t ticket, double *sent)
{
    (void)tk;
    struct train_hold *h = &c->hold;
    for (uint32_t j = 0; j < h->n_held; j++)
        if (h->held[j] == ticket) {
            if (sent)
                *sent = h->sent[j];
            h->n_held--;
            h->held[j] = h->held[h->n_held];
            h->sent[j] = h->sent[h->n_held];
            return true;
        }
    if (sent)
        *sent = 0;
    return false;
}

void train_tickets_answered(struct train_tickets *tk, struct train_client *c,
                            double sent)
{
    c->hold.bad_streak = 0;
    if (sent > 0) {
        double s = util_time_mono() - sent;
        tk->answer_s = tk->answer_s > 0 ? 0.9 * tk->answer_s + 0.1 * s : s;
        c->hold.expired_streak = 0;
    }
}

void train_tickets_bad_answer(struct train_client *c)
{
    if (++c->hold.bad_streak >= TRAIN_BAD_DROP && !c->drop[0])
        snprintf(c->drop, sizeof c->drop, "sent %u malformed answers in a row",
                 c->hold.bad_streak);
}

bool train_tickets_held(const struct train_net *n, uint64_t ticket)
{
    double sent;
    uint64_t holder;
    return train_tickets_copies(n, ticket, &sent, &holder) > 0;
}

int train_tickets_copies(const struct train_net *n, uint64_t ticket,
                         double *sent, uint64_t *holder)
{
    int copies = 0;
    for (int i = 0; i < n->n_clients; i++) {
        const struct train_hold *h = &n->clients[i]->hold;
        for (uint32_t j = 0; j < h->n_held; j++)
            if (h->held[j] == ticket && h->sent[j] > 0) {
                copies++;
                *sent = h->sent[j];
                *holder = n->clients[i]->client_id;
            }
    }
    return copies;
}

double train_tickets_deadline(const struct train_tickets *tk)
{
    double measured = TRAIN_DEADLINE_FACTOR * tk->answer_s;
    double cap = TRAIN_DEADLINE_CAP * tk->timeout_s;
    double d = measured > tk->timeout_s ? measured : tk->timeout_s;
    return d < cap ? d : cap;
}

uint64_t train_tickets_next_expired(struct train_tickets *tk,
                                    struct train_net *n)
{
    double now = util_time_mono(), deadline = train_tickets_deadline(tk);
    for (int i = 0; i < n->n_clients; i++) {
        struct train_client *c = n->clients[i];
        struct train_hold *h = &c->hold;
        for (uint32_t j = 0; j < h->n_held; j++) {
            if (h->sent[j] < 0) {
                /* expired long ago and never answered: free its credit */
                if (now + h->sent[j] > TRAIN_EXPIRED_RECLAIM * deadline) {
                    h->n_held--;
                    h->held[j] = h->held[h->n_held];
                    h->sent[j] = h->sent[h->n_held];
                    j--;
                }
                continue;
            }
            if (now - h->sent[j] < deadline)
                continue;
            h->sent[j] = -now;
            tk->expired++;
            if (++h->expired_streak >= TRAIN_EXPIRED_DROP && !c->drop[0])
                snprintf(c->drop, sizeof c->drop,
                         "missed %u ticket deadlines in a row",
                         h->expired_streak);
            return h->held[j];
        }
    }
    return 0;
}

void train_tickets_forget(struct train_tickets *tk)
{
    tk->rr = 0;
}

int train_tickets_check_answer(const struct config *c, uint32_t n_classes,
                               const struct msg_batch *b,
                               const struct msg_ticket *tk, char *err)
{
    bool eval = b->work == MSG_WORK_EVAL;
    if ((eval ? msg_batch_check_ticket(b, tk, err)
              : msg_batch_check_part(b, tk, err)) != 0)
        return -1;
    struct msg_group want[MSG_BATCH_GROUPS];
    const uint32_t n_want =
        msg_batch_layout(&c->views, b->work, tk->eval_view, want);
    if (b->n_groups != n_want)
        return errf(
            err, "BATCH has %" PRIu32 " groups, the ticket%s needs %" PRIu32,
            b->n_groups, tk->eval_view ? " with its eval view" : "", n_want);
    for (uint32_t g = 0; g < n_want; g++) {
        const struct msg_group *gr = &b->groups[g], *w = &want[g];
        if (gr->views != w->views || gr->c != w->c || gr->h != w->h ||
            gr->w != w->w)
            return errf(
                err,
                "BATCH group %" PRIu32 " is %" PRIu32 " views of %" PRIu32
                "x%" PRIu32 "x%" PRIu32 ", the run's config wants %" PRIu32
                " of %" PRIu32 "x%" PRIu32 "x%" PRIu32,
                g, gr->views, gr->c, gr->h, gr->w, w->views, w->c, w->h, w->w);
    }
    /* an unlabelled dataset (0 classes) labels every sample -1 */
    for (uint32_t i = 0; i < b->n; i++)
        if (n_classes == 0
                ? b->labels[i] != -1
                : b->labels[i] < 0 || (uint32_t)b->labels[i] >= n_classes)
            return errf(err,
                        "BATCH label %" PRId32 " of sample %" PRIu64
                        " outside the %" PRIu32 " classes%s",
                        b->labels[i], b->indices[i], n_classes,
                        n_classes ? "" : " (unlabelled: -1)");
    return 0;
}
