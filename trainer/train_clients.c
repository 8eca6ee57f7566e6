/*
 * train_clients.c: the work socket (ROUTER) and the registry of its clients.
 * HELLO registers a client (a loader's dataset is checked against the run's:
 * its own --data index, the checkpoint's, or the first loader's), HEARTBEATs
 * keep it alive, a client silent for TRAIN_SILENCE_BEATS intervals is gone
 * and its tickets are issued again, RETURN hands tickets back, BYE leaves.
 * Malformed or unexpected messages are counted and logged, never fatal.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "train_state.h"
#include "util.h"

void train_send(struct train *t, const uint8_t *id, size_t id_len,
                const struct msg *m)
{
    char err[ERR_LEN];
    if (msg_send_to(t->router, id, id_len, m, err) != 0)
        train_log(t, "could not send %s: %s", msg_kind_name(m->kind), err);
}

static void send_text(struct train *t, const uint8_t *id, size_t id_len,
                      enum msg_kind kind, const char *reason)
{
    struct msg m = {.kind = kind};
    if (kind == MSG_KIND_REFUSE)
        m.refuse.reason = reason;
    else
        m.bye.reason = reason;
    train_send(t, id, id_len, &m);
}

void train_dataset_free(struct train_dataset *d)
{
    for (uint32_t i = 0; d->classes && i < d->n_classes; i++)
        free(d->classes[i]);
    free(d->classes);
    memset(d, 0, sizeof *d);
}

struct train_client *train_client_find(struct train *t, const uint8_t *id,
                                       size_t id_len)
{
    for (int i = 0; i < t->n_clients; i++)
        if (t->clients[i]->id_len == id_len &&
            memcmp(t->clients[i]->id, id, id_len) == 0)
            return t->clients[i];
    return NULL;
}

int train_clients_loaders(const struct train *t)
{
    int n = 0;
    for (int i = 0; i < t->n_clients; i++)
        n += t->clients[i]->role == MSG_ROLE_LOADER;
    return n;
}

void train_client_remove(struct train *t, struct train_client *c,
                         const char *why)
{
    int at = -1;
    for (int i = 0; i < t->n_clients; i++)
        if (t->clients[i] == c)
            at = i;
    CHECK(at >= 0);
    t->clients[at] = t->clients[--t->n_clients];
    t->rr = 0;
    if (c->n_held)
        train_log(t, "%s %s: %" PRIu32 " tickets go to the others", c->name, why,
                  c->n_held);
    else
        train_log(t, "%s %s", c->name, why);
    for (uint32_t j = 0; j < c->n_held; j++)
        train_ticket_reissue(t, c->held[j]);
    free(c->held);
    free(c);
}

static void dataset_describe(char *out, size_t n, uint64_t fp, uint64_t n_train,
                             uint64_t n_val, uint32_t n_classes)
{
    snprintf(out, n, "fingerprint %016" PRIx64 " (%" PRIu64 " train, %" PRIu64
             " val, %" PRIu32 " classes)", fp, n_train, n_val, n_classes);
}

static void adopt_classes(struct train_dataset *d, const struct msg_dataset *ds)
{
    d->classes = xcalloc(ds->n_classes ? ds->n_classes : 1, sizeof *d->classes);
    for (uint32_t i = 0; i < ds->n_classes; i++)
        d->classes[i] = xstrdup(ds->classes[i]);
}

/* 0 when the loader's dataset is the run's (adopting it when the run has
 * none yet); -1 with a reason naming both otherwise. */
static int check_dataset(struct train *t, const struct msg_hello *h, char *err)
{
    const struct msg_dataset *ds = &h->dataset;
    struct train_dataset *d = &t->data;
    if (!d->known) {
        d->known = true;
        d->fingerprint = ds->fingerprint;
        d->n_train = ds->n_train;
        d->n_val = ds->n_val;
        d->n_classes = ds->n_classes;
        adopt_classes(d, ds);
        snprintf(d->source, sizeof d->source, "loader %.200s", h->name);
        char desc[160];
        dataset_describe(desc, sizeof desc, d->fingerprint, d->n_train, d->n_val,
                         d->n_classes);
        train_log(t, "dataset from %s: %s", d->source, desc);
        return 0;
    }
    bool same = ds->fingerprint == d->fingerprint && ds->n_train == d->n_train &&
                ds->n_val == d->n_val && ds->n_classes == d->n_classes;
    for (uint32_t i = 0; same && d->classes && i < ds->n_classes; i++)
        same = strcmp(ds->classes[i], d->classes[i]) == 0;
    if (same) {
        if (!d->classes)
            adopt_classes(d, ds);
        return 0;
    }
    char mine[160], theirs[160];
    dataset_describe(mine, sizeof mine, d->fingerprint, d->n_train, d->n_val,
                     d->n_classes);
    dataset_describe(theirs, sizeof theirs, ds->fingerprint, ds->n_train,
                     ds->n_val, ds->n_classes);
    return errf(err, "dataset mismatch: loader %.100s has %s, the run's dataset "
                "(from %.100s) has %s%s", h->name, theirs, d->source, mine,
                ds->fingerprint == d->fingerprint ? " (class names differ)" : "");
}

/* Sends WELCOME only when the peer is still connected. A client that got no
 * WELCOME in time says HELLO again on a new socket (a new routing id) and
 * closes the old one, so while the trainer is busy (building the model)
 * several HELLOs of one process queue up here, the dead connections' among
 * them. With ZMQ_ROUTER_MANDATORY a send to a closed peer fails with
 * EHOSTUNREACH instead of vanishing: such a HELLO registers no client (one
 * that would be sent tickets it never answers until it counts as silent). */
static bool send_welcome(struct train *t, const uint8_t *id, size_t id_len,
                         const struct msg *m)
{
    char err[ERR_LEN];
    int on = 1, off = 0;
    if (zmq_setsockopt(t->router, ZMQ_ROUTER_MANDATORY, &on, sizeof on) != 0)
        die("zmq_setsockopt(ZMQ_ROUTER_MANDATORY): %s", zmq_strerror(zmq_errno()));
    int rc = msg_send_to(t->router, id, id_len, m, err);
    int e = zmq_errno();
    if (zmq_setsockopt(t->router, ZMQ_ROUTER_MANDATORY, &off, sizeof off) != 0)
        die("zmq_setsockopt(ZMQ_ROUTER_MANDATORY): %s", zmq_strerror(zmq_errno()));
    if (rc != 0 && e != EHOSTUNREACH)
        train_log(t, "could not send WELCOME: %s", err);
    return rc == 0;
}

static void handle_hello(struct train *t, const uint8_t *id, size_t id_len,
                         const struct msg_hello *h)
{
    char err[ERR_LEN];
    struct train_client *old = train_client_find(t, id, id_len);
    if (old)
        train_client_remove(t, old, "said HELLO again");
    if (t->n_clients == TRAIN_MAX_CLIENTS) {
        send_text(t, id, id_len, MSG_KIND_REFUSE, "too many clients");
        train_log(t, "refused %s: too many clients", h->name);
        return;
    }
    if (h->role == MSG_ROLE_LOADER && check_dataset(t, h, err) != 0) {
        send_text(t, id, id_len, MSG_KIND_REFUSE, err);
        train_log(t, "REFUSE: %s", err);
        return;
    }
    /* The first loader's dataset fixes the class count: build the model
     * before any WELCOME, so no welcomed client goes without heartbeats
     * while the arenas are allocated. */
    if (!t->engine_ready && t->data.known)
        train_engine_init(t);
    struct msg m = {.kind = MSG_KIND_WELCOME};
    m.welcome = (struct msg_welcome){
        .run = t->cfg.run.name, .broadcast = t->cfg.run.broadcast,
        .config = t->config_text, .heartbeat_ms = TRAIN_HEARTBEAT_MS,
        .client_id = t->next_client_id + 1,
    };
    if (!send_welcome(t, id, id_len, &m)) {
        train_log(t, "%s %s (pid %" PRIu64 ") left before its WELCOME (an "
                  "earlier HELLO of a client that tried again)",
                  msg_role_name(h->role), h->name, h->pid);
        return;
    }
    struct train_client *c = xcalloc(1, sizeof *c);
    memcpy(c->id, id, id_len);
    c->id_len = id_len;
    c->client_id = ++t->next_client_id;
    snprintf(c->name, sizeof c->name, "%s", h->name);
    c->role = h->role;
    c->credit = h->role == MSG_ROLE_LOADER ? h->credit : 0;
    if (c->credit > TRAIN_MAX_CREDIT)
        c->credit = TRAIN_MAX_CREDIT;
    c->held = xcalloc(c->credit ? c->credit : 1, sizeof *c->held);
    c->last_seen = util_time_mono();
    c->joined_at = c->last_seen;
    t->clients[t->n_clients++] = c;
    train_log(t, "%s %s joined (pid %" PRIu64 ", %s, credit %" PRIu32 ")",
              msg_role_name(c->role), c->name, h->pid, h->software, c->credit);
}

static void handle_return(struct train *t, struct train_client *c,
                          const struct msg_return *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        for (uint32_t j = 0; j < c->n_held; j++)
            if (c->held[j] == r->tickets[i]) {
                c->held[j] = c->held[--c->n_held];
                train_ticket_reissue(t, r->tickets[i]);
                break;
            }
    train_log(t, "%s returned %" PRIu32 " tickets", c->name, r->n);
}

static void handle(struct train *t, const uint8_t *id, size_t id_len,
                   const struct msg *m)
{
    char why[ERR_LEN];
    if (m->kind == MSG_KIND_HELLO) {
        handle_hello(t, id, id_len, &m->hello);
        return;
    }
    struct train_client *c = train_client_find(t, id, id_len);
    if (!c) {
        /* a history request needs no registration: answer it */
        if (m->kind == MSG_KIND_HISTORY) {
            train_metrics_history(t, id, id_len, m->history.start);
            return;
        }
        /* a loader presumed gone that was only slow: its tickets went to
         * others, so its late batch is dropped, like a duplicate */
        if (m->kind == MSG_KIND_BATCH) {
            t->duplicates++;
            train_log(t, "dropped a late BATCH for ticket %" PRIu64 " (step %"
                      PRIu64 ") from a peer no longer registered",
                      m->batch.ticket, m->batch.step);
            return;
        }
        if (m->kind != MSG_KIND_HEARTBEAT && m->kind != MSG_KIND_BYE &&
            m->kind != MSG_KIND_RETURN) {
            errf(why, "%s from a peer that sent no HELLO", msg_kind_name(m->kind));
            train_bad_message(t, "unknown peer", why);
        }
        return;
    }
    c->last_seen = util_time_mono();
    switch (m->kind) {
    case MSG_KIND_HEARTBEAT:
        return;
    case MSG_KIND_BATCH:
        if (c->role == MSG_ROLE_LOADER && t->engine_ready) {
            train_batch_accept(t, c, &m->batch);
            return;
        }
        break;
    case MSG_KIND_RETURN:
        handle_return(t, c, &m->ret);
        return;
    case MSG_KIND_BYE:
        train_client_remove(t, c, "said BYE");
        return;
    case MSG_KIND_RESULT:
        c->has_result = true;
        c->result_step = m->result.step;
        t->last_result_at = util_time_mono();
        struct msg_metric r = m->result;
        /* EMBED carries no epoch, so evaluators send 0: the trainer knows
         * which epoch its snapshot was taken in. */
        train_eval_epoch_of(t, r.step, &r.epoch);
        train_metrics_result(t, &r);
        return;
    case MSG_KIND_HISTORY:
        train_metrics_history(t, id, id_len, m->history.start);
        return;
    default:
        break;
    }
    errf(why, "unexpected %s from %s %s", msg_kind_name(m->kind),
         msg_role_name(c->role), c->name);
    train_bad_message(t, c->name, why);
}

void train_clients_serve(struct train *t)
{
    /* a bounded burst, so heartbeats and the step loop keep their turn */
    for (int burst = 0; burst < 256; burst++) {
        uint8_t id[256];
        size_t id_len = 0;
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        int rc = msg_recv_from(t->router, ZMQ_DONTWAIT, id, &id_len, &frame, &m,
                               &t->limits, &t->arena, err);
        if (rc != 0 && errno == EAGAIN && id_len == 0) {
            zmq_msg_close(&frame);
            return;
        }
        if (rc != 0) {
            struct train_client *c = id_len ? train_client_find(t, id, id_len) : NULL;
            train_bad_message(t, c ? c->name : "unknown peer", err);
            /* a HELLO of another protocol version is answered (PROTOCOL.md) */
            if (!c && id_len && strncmp(err, "protocol version", 16) == 0)
                send_text(t, id, id_len, MSG_KIND_REFUSE, err);
        } else {
            handle(t, id, id_len, &m);
        }
        zmq_msg_close(&frame);
    }
}

void train_clients_heartbeat(struct train *t)
{
    double now = util_time_mono();
    if (now - t->last_beat < TRAIN_HEARTBEAT_MS / 1000.0)
        return;
    t->last_beat = now;
    double silent = TRAIN_SILENCE_BEATS * TRAIN_HEARTBEAT_MS / 1000.0;
    for (int i = t->n_clients - 1; i >= 0; i--) {
        struct train_client *c = t->clients[i];
        if (now - c->last_seen > silent) {
            char why[64];
            snprintf(why, sizeof why, "silent for %.1f s, presumed gone",
                     now - c->last_seen);
            train_client_remove(t, c, why);
        }
    }
    struct msg m = {.kind = MSG_KIND_HEARTBEAT};
    m.heartbeat = (struct msg_heartbeat){.time = util_time_unix(), .held = 0};
    for (int i = 0; i < t->n_clients; i++)
        train_send(t, t->clients[i]->id, t->clients[i]->id_len, &m);
}

void train_clients_bye_all(struct train *t, const char *reason)
{
    if (t->n_clients > 0)
        train_log(t, "BYE to %d client(s): %s", t->n_clients, reason);
    while (t->n_clients > 0) {
        struct train_client *c = t->clients[t->n_clients - 1];
        send_text(t, c->id, c->id_len, MSG_KIND_BYE, reason);
        c->n_held = 0;
        train_client_remove(t, c, "was sent BYE");
    }
}

int train_clients_evaluators(const struct train *t)
{
    int n = 0;
    for (int i = 0; i < t->n_clients; i++)
        n += t->clients[i]->role == MSG_ROLE_EVALUATOR;
    return n;
}

#define TRAIN_EVALS_WAIT_S 60

bool train_clients_awaiting_evaluators(struct train *t)
{
    const int want = (int)t->cfg.eval.wait_evaluators;
    if (t->evals_wait_over || want <= 0 || t->step > 0)
        return false;
    const int have = train_clients_evaluators(t);
    const double now = util_time_mono();
    if (t->evals_wait_t0 == 0) {
        t->evals_wait_t0 = now;
        if (have < want)
            train_log(t, "waiting up to %d s for %d evaluator(s) before the "
                      "first step (eval.wait_evaluators)", TRAIN_EVALS_WAIT_S,
                      want);
    }
    if (have >= want || now - t->evals_wait_t0 > TRAIN_EVALS_WAIT_S) {
        t->evals_wait_over = true;
        if (have < want)
            train_log(t, "only %d of %d evaluator(s) joined in %d s: training "
                      "starts without the others", have, want,
                      TRAIN_EVALS_WAIT_S);
        return false;
    }
    return true;
}

bool train_clients_evaluators_done(const struct train *t, uint64_t step)
{
    for (int i = 0; i < t->n_clients; i++) {
        const struct train_client *c = t->clients[i];
        if (c->role == MSG_ROLE_EVALUATOR &&
            !(c->has_result && c->result_step == step))
            return false;
    }
    return true;
}

bool train_clients_evaluators_settling(const struct train *t)
{
    double now = util_time_mono();
    for (int i = 0; i < t->n_clients; i++) {
        const struct train_client *c = t->clients[i];
        if (c->role == MSG_ROLE_EVALUATOR &&
            now - c->joined_at < TRAIN_SUBSCRIBE_SETTLE_S)
            return true;
    }
    return false;
}
