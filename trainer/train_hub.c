/*
 * train_hub.c: what a message on the work socket means (PROTOCOL.md). HELLO
 * registers a client (a loader's dataset is checked against the run's: its
 * own --data index, the checkpoint's, or the first loader's), HEARTBEATs
 * keep it alive, a client silent for TRAIN_SILENCE_BEATS intervals is gone
 * and its tickets are issued again, RETURN hands tickets back, BYE leaves,
 * BATCH goes to the owner of its ticket (a step or a snapshot), RESULT and
 * HISTORY to the run directory. The hub holds no state of its own: it routes
 * between the parts of struct train. Malformed or unexpected messages are
 * counted and logged, never fatal.
 */
#include <inttypes.h>
#include <string.h>

#include "train.h"
#include "util.h"
#include "zap.h"

void train_dataset_free(struct train_dataset *d)
{
    for (uint32_t i = 0; d->classes && i < d->n_classes; i++)
        free(d->classes[i]);
    free(d->classes);
    memset(d, 0, sizeof *d);
}

/* An out ticket's holder is gone or gave it back: its owner issues it again. */
static void reissue(struct train *t, uint64_t ticket)
{
    if (train_tickets_kind(ticket) == TRAIN_TICKET_EVAL) {
        if (t->eval)
            train_eval_reissue(t->eval, &t->net, ticket);
    } else if (t->engine_ready) {
        train_step_reissue(&t->steps, &t->net, ticket);
    }
}

static void remove_client(struct train *t, struct train_client *c,
                          const char *why, bool quiet)
{
    train_net_detach(&t->net, c);
    train_tickets_forget(&t->tickets);
    if (quiet)
        ;
    else if (c->hold.n_held)
        train_log("%s %s: %" PRIu32 " tickets go to the others", c->name, why,
                  c->hold.n_held);
    else
        train_log("%s %s", c->name, why);
    for (uint32_t j = 0; j < c->hold.n_held; j++)
        reissue(t, c->hold.held[j]);
    train_net_free_client(c);
}

void train_hub_remove(struct train *t, struct train_client *c, const char *why)
{
    remove_client(t, c, why, false);
}

static void dataset_describe(char *out, size_t n, uint64_t fp, uint64_t n_train,
                             uint64_t n_val, uint32_t n_classes)
{
    snprintf(out, n,
             "fingerprint %016" PRIx64 " (%" PRIu64 " train, %" PRIu64
             " val, %" PRIu32 " classes)",
             fp, n_train, n_val, n_classes);
}

static void adopt_classes(struct train_dataset *d, const struct msg_dataset *ds)
{
    d->classes = xcalloc(ds->n_classes ? ds->n_classes : 1, sizeof *d->classes);
    for (uint32_t i = 0; i < ds->n_classes; i++)
        d->classes[i] = xstrdup(ds->classes[i]);
}

/* The counts a loader claims, checked before they size anything: splits
 * within limits.max_samples, at least one batch to train on, the classes
 * the online probe needs. */
/* Bytes one snapshot row may cost (its embedding up to 1024 floats, label,
 * flags), for the claim's memory estimate. */
#define TRAIN_CLAIM_ROW_BYTES 4112.0

static int check_claims(const struct config *c, const struct msg_hello *h,
                        char *err)
{
    const struct msg_dataset *ds = &h->dataset;
    uint64_t most = c->limits.max_samples;
    if (ds->n_train > most || ds->n_val > most)
        return errf(err,
                    "loader %.100s claims %" PRIu64 " train and %" PRIu64
                    " val samples; the trainer takes at most %" PRIu64
                    " per split (limits.max_samples)",
                    h->name, ds->n_train, ds->n_val, most);
    if (ds->n_train < (uint64_t)c->optim.batch)
        return errf(err,
                    "loader %.100s has %" PRIu64 " train samples, fewer "
                    "than one batch of %" PRId64 " (optim.batch)",
                    h->name, ds->n_train, c->optim.batch);
    /* what the claim makes the trainer allocate before any batch: the
     * sampler (permutation and exclusions), the snapshot rows' index and
     * their embeddings (at most TRAIN_CLAIM_ROW_BYTES each) */
    uint64_t rows = train_eval_rows(c, ds->n_train, ds->n_val);
    /* the probe: weights, gradient and two AdamW moments of up to 1024 x
     * classes, and its logits over a batch and a ticket */
    double probe =
        (16.0 * 1024 +
         4.0 *
             (double)(c->optim.batch *
                          (c->views.global_count + c->views.local_count) +
                      c->run.ticket_size)) *
        (double)ds->n_classes;
    double bytes = probe + 20.0 * (double)ds->n_train +
        8.0 * (double)(ds->n_train + ds->n_val) +
        TRAIN_CLAIM_ROW_BYTES * (double)rows;
    if (bytes > (double)c->limits.claim_mb * 1048576.0)
        return errf(err,
                    "loader %.100s claims a dataset (%" PRIu64
                    " train, %" PRIu64
                    " val) that would take %.0f MB of the trainer's memory "
                    "before any batch, over limits.claim_mb = %" PRId64
                    " (eval.val_limit bounds the snapshot rows)",
                    h->name, ds->n_train, ds->n_val, bytes / 1048576.0,
                    c->limits.claim_mb);
    return 0;
}

/* 0 when the loader's dataset is the run's (adopting it when the run has
 * none yet); -1 with a reason naming both otherwise. */
/* A loader that cannot send the eval view cannot serve a run whose probe
 * learns from it (a loader that predates TICKET.eval_view). */
static int check_eval_view(const struct config *c, const struct msg_hello *h,
                           char *err)
{
    if (h->eval_view || c->optim.probe_views != CONFIG_PROBE_VIEWS_EVAL ||
        train_probe_classes(h->dataset.n_classes) == 0)
        return 0;
    return errf(err,
                "this run's online probe learns from each sample's eval view "
                "(optim.probe_views = eval), which loader %.100s (%.100s) "
                "cannot send: run a lejepa-loader as new as the trainer, or "
                "start the trainer with --set optim.probe_views=global",
                h->name, h->software);
}

static int check_dataset(struct train_dataset *d, const struct config *c,
                         const struct msg_hello *h, char *err)
{
    const struct msg_dataset *ds = &h->dataset;
    if (!d->known && check_claims(c, h, err) != 0)
        return -1;
    if (!d->known) {
        d->known = true;
        d->fingerprint = ds->fingerprint;
        d->n_train = ds->n_train;
        d->n_val = ds->n_val;
        d->n_classes = ds->n_classes;
        adopt_classes(d, ds);
        snprintf(d->source, sizeof d->source, "loader %.200s", h->name);
        char desc[160];
        dataset_describe(desc, sizeof desc, d->fingerprint, d->n_train,
                         d->n_val, d->n_classes);
        train_log("dataset from %s: %s", d->source, desc);
        return 0;
    }
    bool same = ds->fingerprint == d->fingerprint &&
        ds->n_train == d->n_train && ds->n_val == d->n_val &&
        ds->n_classes == d->n_classes;
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
    return errf(err,
                "dataset mismatch: loader %.100s has %s, the run's dataset "
                "(from %.100s) has %s%s",
                h->name, theirs, d->source, mine,
                ds->fingerprint == d->fingerprint ? " (class names differ)"
                                                  : "");
}

static void handle_hello(struct train *t, const uint8_t *id, size_t id_len,
                         const char *who, const struct msg_hello *h)
{
    char err[ERR_LEN];
    struct train_net *n = &t->net;
    struct train_client *old = train_net_find(n, id, id_len);
    uint64_t rehellos = 0;
    double joined_at = 0;
    if (old) {
        joined_at = old->joined_at;
        rehellos = old->rehellos + 1;
        remove_client(t, old, "said HELLO again", !train_log_thin(rehellos));
    }
    if (n->n_clients == TRAIN_MAX_CLIENTS) {
        n->refusals++;
        train_net_send_text(n, id, id_len, MSG_KIND_REFUSE, "too many clients");
        if (train_log_thin(n->refusals))
            train_log("refused %s: too many clients", h->name);
        return;
    }
    if (h->role != MSG_ROLE_LOADER && !train_dist_root(&t->dist)) {
        n->refusals++;
        snprintf(err, sizeof err,
                 "this is rank %d of a data-parallel trainer, which serves "
                 "loaders only: evaluators and monitors connect to rank 0's "
                 "endpoint",
                 t->dist.d.rank);
        train_net_send_text(n, id, id_len, MSG_KIND_REFUSE, err);
        if (train_log_thin(n->refusals))
            train_log("refused %s: %s", h->name, err);
        return;
    }
    if (h->role == MSG_ROLE_LOADER &&
        (check_eval_view(&t->cfg, h, err) != 0 ||
         check_dataset(&t->data, &t->cfg, h, err) != 0)) {
        n->refusals++;
        train_net_send_text(n, id, id_len, MSG_KIND_REFUSE, err);
        if (train_log_thin(n->refusals))
            train_log("REFUSE: %s", err);
        return;
    }
    /* The first loader's dataset fixes the class count: build the model
     * before any WELCOME, so no welcomed client goes without heartbeats
     * while the arenas are allocated. */
    if (!t->engine_ready && t->data.known)
        train_engine_init(t);
    struct msg m = {.kind = MSG_KIND_WELCOME};
    m.welcome = (struct msg_welcome){
        .run = t->cfg.run.name,
        .broadcast = t->cfg.run.broadcast,
        .config = t->config_text,
        .heartbeat_ms = TRAIN_HEARTBEAT_MS,
        .client_id = n->next_client_id + 1,
    };
    /* data parallel: rank 0 sends a loader to the rank with the fewest */
    int rank = h->role == MSG_ROLE_LOADER && t->engine_ready
        ? train_dist_assign(t)
        : 0;
    if (rank > 0) {
        m.welcome.serve = train_dist_endpoint(&t->dist, rank);
        if (train_net_welcome(n, id, id_len, &m)) {
            train_dist_assigned(&t->dist, rank);
            train_log("loader %s (pid %" PRIu64 ") goes to the rank at %s",
                      h->name, h->pid, m.welcome.serve);
        }
        return;
    }
    if (h->role == MSG_ROLE_LOADER && h->dataset.held && t->dist.on &&
        train_log_thin(++t->dist.partial_warned))
        train_log("loader %s is a partial copy: with several ranks every "
                  "rank's loaders together must hold every sample (each "
                  "rank's share spans the dataset)",
                  h->name);
    if (!train_net_welcome(n, id, id_len, &m)) {
        /* gone, or its queue is full: it does not read what it asked for */
        n->clients_dropped++;
        if (train_log_thin(n->clients_dropped))
            train_log("%s %s (pid %" PRIu64 ") left before its WELCOME (it "
                      "closed its connection, or does not read): not "
                      "registered",
                      msg_role_name(h->role), h->name, h->pid);
        return;
    }
    uint32_t credit = h->role == MSG_ROLE_LOADER ? h->credit : 0;
    if (credit > TRAIN_MAX_CREDIT)
        credit = TRAIN_MAX_CREDIT;
    /* the budgets are who's, whatever connection it comes on */
    struct train_client *c =
        train_net_add(n, id, id_len, h, credit, train_net_identity(n, who));
    c->rehellos = rehellos;
    if (h->role == MSG_ROLE_LOADER && h->dataset.held) {
        /* check_dataset matched its counts with the run's */
        size_t bytes = (size_t)((t->data.n_train + t->data.n_val + 7) / 8);
        c->held = xmalloc(bytes);
        memcpy(c->held, h->dataset.held, bytes);
    }
    /* the same connection: its SUB socket subscribed long ago, so a
     * snapshot need not wait for it again */
    if (joined_at > 0)
        c->joined_at = joined_at;
    if (train_log_thin(rehellos + 1))
        train_log("%s %s joined (pid %" PRIu64 ", %s, credit %" PRIu32 ")",
                  msg_role_name(c->role), c->name, h->pid, h->software, credit);
}

static void handle_return(struct train *t, struct train_client *c,
                          const struct msg_return *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (train_tickets_drop(&t->tickets, c, r->tickets[i], NULL))
            reissue(t, r->tickets[i]);
    if (train_log_thin(++c->returns))
        train_log("%s returned %" PRIu32 " tickets", c->name, r->n);
}

static void handle_batch(struct train *t, struct train_client *c,
                         const struct msg_batch *b)
{
    double sent;
    bool was_held = train_tickets_drop(&t->tickets, c, b->ticket, &sent);
    enum train_answer a = train_tickets_kind(b->ticket) == TRAIN_TICKET_EVAL
        ? train_eval_accept(t->eval, &t->tickets, &t->net, c, b, was_held)
        : train_step_accept(&t->steps, &t->tickets, &t->net, c, b, was_held);
    if (a == TRAIN_ANSWER_TAKEN)
        train_tickets_answered(&t->tickets, c, sent);
    else if (a == TRAIN_ANSWER_BAD)
        train_tickets_bad_answer(c);
}

/* A RESULT carries an evaluator's scores (knn, linear, segmap sources
 * only: train, eval and system lines are the trainer's own), within the
 * client's rate budget and the line size; the trainer stamps its time. */
static void handle_result(struct train *t, struct train_client *c,
                          const struct msg_metric *m)
{
    char err[ERR_LEN];
    const struct config_limits *lim = &t->cfg.limits;
    struct train_net *n = &t->net;
    /* system: an evaluator's own notes (an incomplete or unlabelled
     * snapshot), under eval_* keys only */
    bool sys_ok = m->source == MSG_SOURCE_SYSTEM;
    for (uint32_t i = 0; sys_ok && i < m->n_values; i++)
        sys_ok = strncmp(m->values[i].key, "eval_", 5) == 0;
    if (m->source != MSG_SOURCE_KNN && m->source != MSG_SOURCE_LINEAR &&
        m->source != MSG_SOURCE_SEGMAP && !sys_ok) {
        n->refusals++;
        errf(err,
             "RESULT with source '%s' (an evaluator reports knn, linear, "
             "segmap, or system with eval_* keys)",
             msg_source_name(m->source));
        train_net_bad_message(n, c->name, err);
        return;
    }
    double now = util_time_mono();
    struct train_identity *w = c->who;
    if (!train_bucket_take(&w->result_tokens, &w->result_at, lim->results_per_s,
                           (double)lim->results_burst, 1, now)) {
        if (train_log_thin(++n->results_limited))
            train_log("%s (%s) sends RESULTs faster than "
                      "limits.results_per_s = %g: dropped (%" PRIu64 " so far)",
                      c->name, w->who, lim->results_per_s, n->results_limited);
        return;
    }
    struct msg_metric r = *m;
    r.time = util_time_unix();
    /* EMBED carries no epoch, so evaluators send 0: the trainer knows
     * which epoch its snapshot was taken in. */
    train_eval_epoch_of(t->eval, r.step, &r.epoch);
    if (train_metrics_result(&t->rundir, &r, (size_t)lim->result_bytes, err) !=
        0) {
        n->results_limited++;
        train_net_bad_message(n, c->name, err);
        return;
    }
    c->has_result = true;
    c->result_step = m->step;
    t->ctl.last_result_at = now;
}

/* HISTORY pages to a registered client from its identity's budget: a
 * burst of twice the file plus a page, refilled by one whole history per
 * TRAIN_HISTORY_REFILL_S. A late monitor fetches the whole history (and may
 * retry); a client that asks again and again without reading, on one
 * connection or on many, cannot fill the trainer's memory with copies. */
static void send_history(struct train *t, struct train_client *c,
                         uint64_t start)
{
    struct train_rundir *rd = &t->rundir;
    long size = rd->metrics ? ftell(rd->metrics) : 0;
    double whole = (double)(size > 0 ? size : 0) + TRAIN_HISTORY_PAGE_BYTES;
    struct msg m = {.kind = MSG_KIND_HISTORY};
    train_metrics_history(rd, start, &m.history);
    double bytes = 0;
    for (uint32_t i = 0; i < m.history.n_lines; i++)
        bytes += (double)strlen(m.history.lines[i]) + 16;
    struct train_identity *w = c->who;
    if (train_bucket_take(&w->history_tokens, &w->history_at,
                          whole / TRAIN_HISTORY_REFILL_S, 2 * whole, bytes,
                          util_time_mono())) {
        train_net_send_client(&t->net, c, &m);
    } else {
        /* an empty page, not the last: the client is not left waiting,
         * and may ask again later */
        t->net.refusals++;
        train_net_bad_message(&t->net, c->name,
                              "HISTORY beyond its budget (twice the metrics "
                              "file, refilled once a minute)");
        struct msg none = {.kind = MSG_KIND_HISTORY};
        none.history = (struct msg_history){.start = start};
        train_net_send_client(&t->net, c, &none);
    }
    train_metrics_history_free(&m.history);
}

/* With keys, the role the sender's key is allowed (User-Id of the ZAP
 * handler): a HELLO must claim that role. 0 when it may go on; -1 refused
 * (REFUSE sent, logged, counted). */
static int check_key_role(struct train *t, const uint8_t *id, size_t id_len,
                          zmq_msg_t *frame, const struct msg_hello *h)
{
    char why[ERR_LEN], name[KEYS_NAME_MAX];
    enum msg_role role;
    if (!t->net.keyed)
        return 0;
    int who = zap_peer_of(frame, &role, name, sizeof name, why);
    if (who == 1 && role == h->role)
        return 0;
    if (who == 1)
        errf(why, "key %s is allowed as a %s, not as a %s", name,
             msg_role_name(role), msg_role_name(h->role));
    else if (who == 0)
        errf(why, "connection without a key identity");
    t->net.refusals++;
    train_net_send_text(&t->net, id, id_len, MSG_KIND_REFUSE, why);
    train_log("refused %s %s: %s", msg_role_name(h->role), h->name, why);
    return -1;
}

void train_hub_handle(struct train *t, const uint8_t *id, size_t id_len,
                      zmq_msg_t *frame, const struct msg *m)
{
    char why[ERR_LEN];
    if (m->kind == MSG_KIND_HELLO) {
        char who[96];
        train_net_who(&t->net, frame, who, sizeof who);
        if (check_key_role(t, id, id_len, frame, &m->hello) == 0)
            handle_hello(t, id, id_len, who, &m->hello);
        return;
    }
    struct train_client *c = train_net_find(&t->net, id, id_len);
    if (!c) {
        /* a loader presumed gone that was only slow: its tickets went to
         * others, so its late batch is dropped, like a duplicate */
        if (m->kind == MSG_KIND_BATCH) {
            if (train_log_thin(++t->tickets.duplicates))
                train_log("dropped a late BATCH for ticket %" PRIu64
                          " (step %" PRIu64 ") from a peer no longer "
                          "registered",
                          m->batch.ticket, m->batch.step);
            return;
        }
        if (m->kind != MSG_KIND_HEARTBEAT && m->kind != MSG_KIND_BYE &&
            m->kind != MSG_KIND_RETURN) {
            errf(why, "%s from a peer that sent no HELLO",
                 msg_kind_name(m->kind));
            train_net_bad_message(&t->net, "unknown peer", why);
        }
        return;
    }
    c->last_seen = util_time_mono();
    /* each role sends only its kinds, with keys or without */
    if (!zap_role_may_send(c->role, m->kind)) {
        t->net.refusals++;
        errf(why, "a %s may not send %s", msg_role_name(c->role),
             msg_kind_name(m->kind));
        train_net_bad_message(&t->net, c->name, why);
        return;
    }
    switch (m->kind) {
    case MSG_KIND_HEARTBEAT:
        return;
    case MSG_KIND_BATCH:
        if (c->role == MSG_ROLE_LOADER && t->engine_ready) {
            handle_batch(t, c, &m->batch);
            return;
        }
        break;
    case MSG_KIND_RETURN:
        handle_return(t, c, &m->ret);
        return;
    case MSG_KIND_BYE:
        train_hub_remove(t, c, "said BYE");
        return;
    case MSG_KIND_RESULT:
        handle_result(t, c, &m->result);
        return;
    case MSG_KIND_HISTORY:
        send_history(t, c, m->history.start);
        return;
    default:
        break;
    }
    errf(why, "unexpected %s from %s %s", msg_kind_name(m->kind),
         msg_role_name(c->role), c->name);
    train_net_bad_message(&t->net, c->name, why);
}

void train_hub_serve(struct train *t)
{
    /* a bounded burst, so heartbeats and the step loop keep their turn */
    for (int burst = 0; burst < TRAIN_RECV_BURST; burst++) {
        uint8_t id[256];
        size_t id_len;
        zmq_msg_t frame;
        struct msg m;
        int rc = train_net_recv(&t->net, id, &id_len, &frame, &m);
        if (rc == 1)
            train_hub_handle(t, id, id_len, &frame, &m);
        zmq_msg_close(&frame);
        if (rc == 0)
            break;
    }
    train_hub_sweep(t);
    if (!train_net_beat_due(&t->net))
        return;
    train_net_log_refusals(&t->net);
    char why[64];
    struct train_client *c;
    while ((c = train_net_silent(&t->net, why, sizeof why)))
        train_hub_remove(t, c, why);
    /* tickets past their deadline go to another loader; the first answer
     * wins (the bytes of a ticket do not depend on who makes them) */
    uint64_t ticket;
    while ((ticket = train_tickets_next_expired(&t->tickets, &t->net))) {
        if (train_log_thin(t->tickets.expired))
            train_log("ticket %016" PRIx64 " missed its deadline of %.1f s "
                      "(%" PRIu64 " so far): it goes to another loader",
                      ticket, train_tickets_deadline(&t->tickets),
                      t->tickets.expired);
        reissue(t, ticket);
    }
    train_net_beat(&t->net);
    train_hub_sweep(t);
}

void train_hub_sweep(struct train *t)
{
    struct train_net *n = &t->net;
    for (int i = n->n_clients - 1; i >= 0; i--) {
        struct train_client *c = n->clients[i];
        if (c->drop[0]) {
            char why[80];
            snprintf(why, sizeof why, "%s: dropped", c->drop);
            n->clients_dropped++;
            train_hub_remove(t, c, why);
            i = n->n_clients; /* removal reorders the array: start over */
        }
    }
}

void train_hub_bye_all(struct train *t, const char *reason)
{
    struct train_net *n = &t->net;
    if (n->n_clients > 0)
        train_log("BYE to %d client(s): %s", n->n_clients, reason);
    while (n->n_clients > 0) {
        struct train_client *c = n->clients[n->n_clients - 1];
        train_net_send_text(n, c->id, c->id_len, MSG_KIND_BYE, reason);
        c->hold.n_held = 0;
        train_hub_remove(t, c, "was sent BYE");
    }
}

void train_hub_issue(struct train *t)
{
    if (!t->engine_ready || t->net.n_clients == 0)
        return;
    /* a snapshot pauses training: its tickets go first */
    if (train_eval_active(t->eval))
        train_eval_issue(t->eval, &t->tickets, &t->net);
    train_step_issue(&t->steps, &t->tickets, &t->net);
    train_hub_sweep(t);
}
