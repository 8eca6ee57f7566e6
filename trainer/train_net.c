/*
 * train_net.c: the work and broadcast sockets and the client registry
 * (train_net.h). Malformed messages are counted and logged, never fatal.
 */
#include "train_net.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "config.h"
#include "train_log.h"
#include "util.h"

static void *open_socket(struct train_net *n, int type, const char *endpoint,
                         int hwm, const struct keys_pair *kp, char *err)
{
    void *s = zmq_socket(n->zctx, type);
    if (!s) {
        errf(err, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 1000, on = 1;
    const char *what = NULL;
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0)
        what = "ZMQ_LINGER";
    else if (msg_limits_apply(s, &n->limits, err) != 0)
        what = "";
    /* before bind: a listener copies the options its connections get */
    else if (hwm > 0 && zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0)
        what = "ZMQ_SNDHWM";
    else if (type == ZMQ_ROUTER &&
             zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &on, sizeof on) != 0)
        what = "ZMQ_ROUTER_MANDATORY";
    else if (kp && zap_server_apply(s, &n->zap, kp, err) != 0)
        what = "";
    else if (zmq_bind(s, endpoint) != 0) {
        errf(err,
             "cannot bind %s: %s (another trainer running? change "
             "run.endpoint / run.broadcast)",
             endpoint, zmq_strerror(zmq_errno()));
        what = "";
    }
    if (what) {
        if (what[0])
            errf(err, "zmq_setsockopt(%s): %s", what,
                 zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* The key pair and the ZAP handler with its allow-list. */
static int start_keys(struct train_net *n, const struct train_net_keys *k,
                      struct keys_pair *kp, char *err)
{
    if (!k->allow || !k->allow[0])
        return errf(err,
                    "--key %s needs --allow FILE: the client keys and "
                    "roles the trainer admits (see lejepa keys --help)",
                    k->key);
    struct keys_allow allow = {0};
    if (keys_read_pair(k->key, kp, err) != 0 ||
        keys_allow_load(&allow, k->allow, err) != 0)
        return -1;
    int rc = zap_start(&n->zap, n->zctx, &allow, err);
    if (rc == 0)
        train_log("CurveZMQ on: %zu allowed client key(s) from %s", allow.n,
                  k->allow);
    keys_allow_free(&allow);
    n->keyed = rc == 0;
    return rc;
}

int train_net_open(struct train_net *n, const struct config *c, int pub_hwm,
                   const struct train_net_keys *k, char *err)
{
    struct msg_limit_params lp;
    msg_limit_params_from_config(&lp, c);
    msg_limits_compute(&n->limits, &lp);
    msg_arena_init(&n->arena);
    n->ids = xcalloc(TRAIN_MAX_IDENTITIES, sizeof *n->ids);
    n->zctx = zmq_ctx_new();
    if (!n->zctx)
        return errf(err, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    struct keys_pair kp;
    bool keyed = k && k->key && k->key[0];
    if (keyed && start_keys(n, k, &kp, err) != 0)
        return -1;
    n->router =
        open_socket(n, ZMQ_ROUTER, c->run.endpoint, (int)c->limits.client_queue,
                    keyed ? &kp : NULL, err);
    if (!n->router)
        return -1;
    if (!n->no_pub) {
        n->pub = open_socket(n, ZMQ_PUB, c->run.broadcast, pub_hwm,
                             keyed ? &kp : NULL, err);
        if (!n->pub)
            return -1;
    }
    n->last_beat = util_time_mono();
    return 0;
}

void train_net_close(struct train_net *n)
{
    for (int i = 0; i < n->n_clients; i++)
        train_net_free_client(n->clients[i]);
    n->n_clients = 0;
    if (n->router)
        zmq_close(n->router);
    if (n->pub)
        zmq_close(n->pub);
    if (n->keyed)
        zap_stop(&n->zap);
    n->keyed = false;
    if (n->zctx)
        zmq_ctx_term(n->zctx);
    msg_arena_free(&n->arena);
    free(n->ids);
    n->ids = NULL;
    n->router = n->pub = n->zctx = NULL;
}

/* Every send of the main loop: never blocks. With ZMQ_ROUTER_MANDATORY on
 * the work socket a full queue says EAGAIN and a gone peer EHOSTUNREACH. */
void train_net_send(struct train_net *n, const uint8_t *id, size_t id_len,
                    const struct msg *m)
{
    char err[ERR_LEN];
    if (msg_send_to_nb(n->router, id, id_len, m, err) != 0 && errno != EAGAIN &&
        errno != EHOSTUNREACH)
        train_log("could not send %s: %s", msg_kind_name(m->kind), err);
}

int train_net_send_client(struct train_net *n, struct train_client *c,
                          const struct msg *m)
{
    char err[ERR_LEN];
    if (c->drop[0])
        return -1;
    if (msg_send_to_nb(n->router, c->id, c->id_len, m, err) == 0)
        return 0;
    if (errno == EAGAIN)
        snprintf(c->drop, sizeof c->drop, "has a full queue (does not read)");
    else if (errno == EHOSTUNREACH)
        snprintf(c->drop, sizeof c->drop, "is gone (connection closed)");
    else
        train_log("could not send %s to %s: %s", msg_kind_name(m->kind),
                  c->name, err);
    return -1;
}

void train_net_send_text(struct train_net *n, const uint8_t *id, size_t id_len,
                         enum msg_kind kind, const char *reason)
{
    struct msg m = {.kind = kind};
    if (kind == MSG_KIND_REFUSE)
        m.refuse.reason = reason;
    else
        m.bye.reason = reason;
    train_net_send(n, id, id_len, &m);
}

/* A client that got no WELCOME in time says HELLO again on a new socket (a
 * new routing id) and closes the old one, so while the trainer is busy
 * (building the model) several HELLOs of one process queue up, the dead
 * connections' among them. With ZMQ_ROUTER_MANDATORY a send to a closed
 * peer fails with EHOSTUNREACH instead of vanishing: such a HELLO registers
 * no client (one that would be sent tickets it never answers until it
 * counts as silent). */
bool train_net_welcome(struct train_net *n, const uint8_t *id, size_t id_len,
                       const struct msg *m)
{
    char err[ERR_LEN];
    if (msg_send_to_nb(n->router, id, id_len, m, err) == 0)
        return true;
    if (errno != EHOSTUNREACH && errno != EAGAIN)
        train_log("could not send WELCOME: %s", err);
    return false;
}

void train_net_bad_message(struct train_net *n, const char *who,
                           const char *reason)
{
    n->bad_messages++;
    if (train_log_thin(n->bad_messages))
        train_log("bad message #%" PRIu64 " from %s: %s", n->bad_messages, who,
                  reason);
}

int train_net_recv(struct train_net *n, uint8_t *id, size_t *id_len,
                   zmq_msg_t *frame, struct msg *m)
{
    char err[ERR_LEN];
    *id_len = 0;
    int rc = msg_recv_from(n->router, ZMQ_DONTWAIT, id, id_len, frame, m,
                           &n->limits, &n->arena, err);
    if (rc == 0)
        return 1;
    if (errno == EAGAIN && *id_len == 0)
        return 0;
    struct train_client *c = *id_len ? train_net_find(n, id, *id_len) : NULL;
    train_net_bad_message(n, c ? c->name : "unknown peer", err);
    /* a HELLO of another protocol version is answered (PROTOCOL.md) */
    if (!c && *id_len && strncmp(err, "protocol version", 16) == 0)
        train_net_send_text(n, id, *id_len, MSG_KIND_REFUSE, err);
    return -1;
}

struct train_client *train_net_find(struct train_net *n, const uint8_t *id,
                                    size_t id_len)
{
    for (int i = 0; i < n->n_clients; i++)
        if (n->clients[i]->id_len == id_len &&
            memcmp(n->clients[i]->id, id, id_len) == 0)
            return n->clients[i];
    return NULL;
}

void train_net_who(const struct train_net *n, zmq_msg_t *frame, char *out,
                   size_t cap)
{
    char name[KEYS_NAME_MAX], why[ERR_LEN];
    enum msg_role role;
    if (n->keyed && zap_peer_of(frame, &role, name, sizeof name, why) == 1) {
        snprintf(out, cap, "key %s", name);
        return;
    }
    const char *addr = zmq_msg_gets(frame, "Peer-Address");
    snprintf(out, cap, "address %.60s", addr && addr[0] ? addr : "local");
}

struct train_identity *train_net_identity(struct train_net *n, const char *who)
{
    struct train_identity *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < TRAIN_MAX_IDENTITIES; i++) {
        struct train_identity *r = &n->ids[i];
        if (r->who[0] && strcmp(r->who, who) == 0)
            return r;
        if (!r->who[0] && !free_slot)
            free_slot = r;
        if (r->who[0] && r->clients == 0 &&
            (!oldest || r->used_at < oldest->used_at))
            oldest = r;
    }
    /* more records than clients: one of them is free or unused */
    struct train_identity *r = free_slot ? free_slot : oldest;
    CHECK(r != NULL);
    *r = (struct train_identity){0};
    snprintf(r->who, sizeof r->who, "%s", who);
    return r;
}

bool train_bucket_take(double *tokens, double *at, double rate, double burst,
                       double cost, double now)
{
    if (*at == 0)
        *tokens = burst;
    else
        *tokens += (now - *at) * rate;
    *tokens = *tokens > burst ? burst : *tokens;
    *at = now;
    if (*tokens < cost)
        return false;
    *tokens -= cost;
    return true;
}

struct train_client *train_net_add(struct train_net *n, const uint8_t *id,
                                   size_t id_len, const struct msg_hello *h,
                                   uint32_t credit, struct train_identity *who)
{
    CHECK(n->n_clients < TRAIN_MAX_CLIENTS &&
          id_len <= sizeof n->clients[0]->id);
    struct train_client *c = xcalloc(1, sizeof *c);
    memcpy(c->id, id, id_len);
    c->id_len = id_len;
    c->client_id = ++n->next_client_id;
    snprintf(c->name, sizeof c->name, "%s", h->name);
    c->role = h->role;
    c->hold.credit = credit;
    c->hold.held = xcalloc(credit ? credit : 1, sizeof *c->hold.held);
    c->hold.sent = xcalloc(credit ? credit : 1, sizeof *c->hold.sent);
    c->last_seen = util_time_mono();
    c->joined_at = c->last_seen;
    c->who = who;
    who->clients++;
    who->used_at = c->last_seen;
    n->clients[n->n_clients++] = c;
    return c;
}

void train_net_detach(struct train_net *n, struct train_client *c)
{
    int at = -1;
    for (int i = 0; i < n->n_clients; i++)
        if (n->clients[i] == c)
            at = i;
    CHECK(at >= 0);
    n->clients[at] = n->clients[--n->n_clients];
    c->who->clients--;
}

void train_net_free_client(struct train_client *c)
{
    free(c->hold.held);
    free(c->hold.sent);
    free(c->held);
    free(c);
}

int train_net_count(const struct train_net *n, enum msg_role role)
{
    int k = 0;
    for (int i = 0; i < n->n_clients; i++)
        k += n->clients[i]->role == role;
    return k;
}

bool train_net_beat_due(struct train_net *n)
{
    double now = util_time_mono();
    if (now - n->last_beat < TRAIN_HEARTBEAT_MS / 1000.0)
        return false;
    n->last_beat = now;
    return true;
}

struct train_client *train_net_silent(struct train_net *n, char *why,
                                      size_t len)
{
    double now = util_time_mono();
    double silent = TRAIN_SILENCE_BEATS * TRAIN_HEARTBEAT_MS / 1000.0;
    for (int i = n->n_clients - 1; i >= 0; i--) {
        struct train_client *c = n->clients[i];
        if (now - c->last_seen > silent) {
            snprintf(why, len, "silent for %.1f s, presumed gone",
                     now - c->last_seen);
            return c;
        }
    }
    return NULL;
}

void train_net_beat(struct train_net *n)
{
    struct msg m = {.kind = MSG_KIND_HEARTBEAT};
    m.heartbeat = (struct msg_heartbeat){.time = util_time_unix(), .held = 0};
    for (int i = 0; i < n->n_clients; i++)
        train_net_send_client(n, n->clients[i], &m);
}

bool train_net_evaluators_settling(const struct train_net *n, double settle_s)
{
    double now = util_time_mono();
    for (int i = 0; i < n->n_clients; i++) {
        const struct train_client *c = n->clients[i];
        if (c->role == MSG_ROLE_EVALUATOR && now - c->joined_at < settle_s)
            return true;
    }
    return false;
}

bool train_net_evaluators_done(const struct train_net *n, uint64_t step,
                               double since)
{
    for (int i = 0; i < n->n_clients; i++) {
        const struct train_client *c = n->clients[i];
        if (c->role == MSG_ROLE_EVALUATOR && c->joined_at < since &&
            !(c->has_result && c->result_step == step))
            return false;
    }
    return true;
}

void train_net_log_refusals(struct train_net *n)
{
    if (!n->keyed)
        return;
    struct zap_refusal r[16];
    uint64_t lost = 0;
    size_t got = zap_drain_refusals(&n->zap, r, 16, &lost);
    for (size_t i = 0; i < got; i++)
        train_log("refused a %s connection from %s (key %s): %s",
                  r[i].mechanism, r[i].address[0] ? r[i].address : "?",
                  r[i].key[0] ? r[i].key : "none",
                  zap_reason_text(r[i].reason));
    if (lost)
        train_log("%" PRIu64 " more refusals not logged", lost);
}

uint64_t train_net_key_refusals(const struct train_net *n)
{
    uint64_t total = 0;
    for (int r = 0; n->keyed && r < ZAP_REFUSED_COUNT; r++)
        total += zap_refused(&n->zap, (enum zap_reason)r);
    return total;
}
