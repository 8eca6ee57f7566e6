/*
 * client.c: the client side of the trainer connection (client.h): sockets,
 * the handshake, heartbeats and silence. It decides nothing about what a
 * message means beyond WELCOME and HEARTBEAT; callers handle the rest.
 */
#include "client.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* ---- --connect ----------------------------------------------------------- */

/* True when s is a whole decimal port number 1..65535. */
static bool is_port(const char *s)
{
    if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 5)
        return false;
    long p = strtol(s, NULL, 10);
    return p >= 1 && p <= 65535;
}

/* The tcp endpoint hostport was probably meant as: HOST:PORT as given,
 * HOST alone with the default port, or nothing to suggest (""). */
static void tcp_guess(char *out, size_t cap, const char *hostport)
{
    const char *colon = strrchr(hostport, ':');
    out[0] = '\0';
    if (!*hostport || strchr(hostport, '/') || strchr(hostport, ' '))
        return;
    if (!colon)
        snprintf(out, cap, "tcp://%s:" CLIENT_HINT_PORT, hostport);
    else if (colon == hostport || hostport[0] == '*')
        snprintf(out, cap, "tcp://127.0.0.1:%s",
                 is_port(colon + 1) ? colon + 1 : CLIENT_HINT_PORT);
    else if (is_port(colon + 1))
        snprintf(out, cap, "tcp://%s", hostport);
    else if (!colon[1])
        snprintf(out, cap, "tcp://%s" CLIENT_HINT_PORT, hostport);
}

static int endpoint_error(char *err, const char *ep, const char *what, const char *guess)
{
    if (guess[0])
        return errf(err, "%.300s: %s; did you mean %.300s?", ep, what, guess);
    return errf(err, "%.300s: %s; expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:"
                CLIENT_HINT_PORT, ep, what);
}

int client_endpoint_check(const char *ep, char *err)
{
    char guess[700];
    const char *sep = strstr(ep, "://");
    if (!sep) {
        /* "tcp:HOST:PORT" and "tcp:/HOST:PORT" too */
        const char *rest = ep;
        if (strncmp(rest, "tcp:", 4) == 0)
            rest += 4 + strspn(rest + 4, "/");
        tcp_guess(guess, sizeof guess, rest);
        return endpoint_error(err, ep, "not a ZeroMQ endpoint (no transport such as "
                              "tcp://)", guess);
    }
    size_t tlen = (size_t)(sep - ep);
    const char *rest = sep + 3;
    if (tlen == 3 && strncmp(ep, "ipc", 3) == 0) {
        if (!*rest)
            return errf(err, "%.300s: ipc:// needs the path of a socket file", ep);
        return 0;
    }
    tcp_guess(guess, sizeof guess, rest);
    if (tlen != 3 || strncmp(ep, "tcp", 3) != 0) {
        char what[64];
        snprintf(what, sizeof what, "transport '%.*s' is not one a trainer binds "
                 "(tcp or ipc)", (int)(tlen < 16 ? tlen : 16), ep);
        return endpoint_error(err, ep, what, guess);
    }
    const char *colon = strrchr(rest, ':');
    if (!colon || colon[1] == '\0')
        return endpoint_error(err, ep, "no port", guess);
    if (colon == rest || rest[0] == '*')
        return endpoint_error(err, ep, "a client needs the trainer's host, not a "
                              "wildcard", guess);
    if (!is_port(colon + 1)) {
        char what[80];
        snprintf(what, sizeof what, "port '%.16s' is not a number in 1..65535", colon + 1);
        return endpoint_error(err, ep, what, "");
    }
    return 0;
}

void client_routing_id(char *out, const char *name, unsigned counter)
{
    snprintf(out, CLIENT_ROUTING_ID_MAX, "%.200s/%d/%u", name, (int)getpid(), counter);
}

static int set_int(void *s, int opt, int v, const char *what, char *err)
{
    if (zmq_setsockopt(s, opt, &v, sizeof v) != 0)
        return errf(err, "zmq_setsockopt(%s): %s", what, zmq_strerror(zmq_errno()));
    return 0;
}

void *client_socket_open(void *ctx, int type, const char *endpoint,
                         const struct client_socket_opts *o, char *err)
{
    void *s = zmq_socket(ctx, type);
    if (!s) {
        errf(err, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    if (o->routing_id &&
        zmq_setsockopt(s, ZMQ_ROUTING_ID, o->routing_id, strlen(o->routing_id)) != 0) {
        errf(err, "zmq_setsockopt(ZMQ_ROUTING_ID): %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (set_int(s, ZMQ_LINGER, 0, "ZMQ_LINGER", err) < 0 ||
        set_int(s, ZMQ_SNDTIMEO, o->send_timeout_ms, "ZMQ_SNDTIMEO", err) < 0 ||
        (o->hwm > 0 && (set_int(s, ZMQ_SNDHWM, o->hwm, "ZMQ_SNDHWM", err) < 0 ||
                        set_int(s, ZMQ_RCVHWM, o->hwm, "ZMQ_RCVHWM", err) < 0)) ||
        msg_limits_apply(s, o->lim, err) < 0)
        goto fail;
    if ((o->key != NULL) != (o->server_key != NULL)) {
        errf(err, "internal: a client key pair needs the server's key and back");
        goto fail;
    }
    if (o->key && (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, o->server_key,
                                  KEYS_Z85_LEN + 1) != 0 ||
                   zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, o->key->public_z85,
                                  KEYS_Z85_LEN + 1) != 0 ||
                   zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, o->key->secret_z85,
                                  KEYS_Z85_LEN + 1) != 0)) {
        errf(err, "cannot give the socket its CURVE keys: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (o->watch && client_watch_open(o->watch, ctx, s, o->key != NULL, err) < 0)
        goto fail;
    for (int i = 0; o->topics && o->topics[i]; i++)
        if (zmq_setsockopt(s, ZMQ_SUBSCRIBE, o->topics[i], strlen(o->topics[i])) != 0) {
            errf(err, "zmq_setsockopt(ZMQ_SUBSCRIBE %s): %s", o->topics[i],
                 zmq_strerror(zmq_errno()));
            goto fail;
        }
    if (zmq_connect(s, endpoint) != 0) {
        errf(err, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return s;
fail:
    zmq_close(s);
    if (o->watch)
        client_watch_close(o->watch);
    return NULL;
}

/* ---- handshake failures ------------------------------------------------- */

int client_watch_open(struct client_watch *w, void *ctx, void *sock, bool keyed, char *err)
{
    static atomic_uint counter;
    memset(w, 0, sizeof *w);
    w->keyed = keyed;
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://lejepa-watch-%d-%u", (int)getpid(),
             atomic_fetch_add(&counter, 1));
    int events = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    if (zmq_socket_monitor(sock, ep, events) != 0)
        return errf(err, "zmq_socket_monitor: %s", zmq_strerror(zmq_errno()));
    w->pair = zmq_socket(ctx, ZMQ_PAIR);
    int linger = 0;
    if (!w->pair || zmq_setsockopt(w->pair, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(w->pair, ep) != 0) {
        errf(err, "cannot watch the handshakes: %s", zmq_strerror(zmq_errno()));
        client_watch_close(w);
        zmq_socket_monitor(sock, NULL, 0);
        return -1;
    }
    return 0;
}

void client_watch_close(struct client_watch *w)
{
    if (w->pair)
        zmq_close(w->pair);
    w->pair = NULL;
}

/* One event of the monitor (libzmq's v1 format: [u16 event, u32 value],
 * [endpoint]); 0, or -1 when none waits. */
static int watch_event(void *pair, uint16_t *event, uint32_t *value, char *ep, size_t cap)
{
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, pair, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f);
        return -1;
    }
    bool ok = zmq_msg_size(&f) == 6 && zmq_msg_more(&f);
    if (ok) {
        memcpy(event, zmq_msg_data(&f), 2);
        memcpy(value, (char *)zmq_msg_data(&f) + 2, 4);
    }
    ep[0] = '\0';
    while (zmq_msg_more(&f)) {
        zmq_msg_close(&f);
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, pair, 0) < 0)
            break;
        size_t n = zmq_msg_size(&f) < cap - 1 ? zmq_msg_size(&f) : cap - 1;
        memcpy(ep, zmq_msg_data(&f), n);
        ep[n] = '\0';
    }
    zmq_msg_close(&f);
    if (!ok)
        *event = 0;
    return 0;
}

enum client_auth client_watch_check(struct client_watch *w, const char *endpoint, char *text)
{
    uint16_t ev;
    uint32_t value;
    char ep[256];
    while (w->pair && watch_event(w->pair, &ev, &value, ep, sizeof ep) == 0) {
        const char *where = ep[0] ? ep : endpoint;
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            w->closed_in_row = 0;
            continue;
        }
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            w->failures++;
            errf(text, "the trainer at %s refused this client's key (status %u): it is not "
                 "in the trainer's allow-list, or listed for another role", where,
                 (unsigned)value);
            return CLIENT_AUTH_REFUSED;
        }
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            w->failures++;
            if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
                if (w->keyed)
                    errf(text, "%s speaks without keys but this client was given --key and "
                         "--server-key: both sides need keys, or neither", where);
                else
                    errf(text, "%s requires CurveZMQ keys: start this client with --key "
                         "FILE --server-key FILE", where);
                return CLIENT_AUTH_MISMATCH;
            }
            if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC && w->keyed) {
                errf(text, "the server at %s did not prove the expected server key: not "
                     "the trainer you were given (--server-key)", where);
                return CLIENT_AUTH_SERVER_KEY;
            }
            errf(text, "handshake with %s failed: protocol error 0x%x", where,
                 (unsigned)value);
            return CLIENT_AUTH_PROTOCOL;
        }
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && w->keyed) {
            /* A CURVE server that cannot open our HELLO (it was sealed for
             * another server key) just closes the connection. */
            w->failures++;
            if (++w->closed_in_row >= CLIENT_AUTH_CLOSED_REPEAT) {
                errf(text, "the server at %s closed %d CURVE handshakes in a row: it did "
                     "not prove the expected server key, so it is not the trainer you were "
                     "given (--server-key)", where, w->closed_in_row);
                return CLIENT_AUTH_SERVER_KEY;
            }
        } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            /* A CURVE server closes a keyless greeting at once: the mismatch
             * is reported only when our side read its greeting first, which
             * on loopback may not happen for dozens of attempts. */
            w->failures++;
            if (++w->closed_in_row >= CLIENT_AUTH_CLOSED_REPEAT) {
                errf(text, "%s requires CurveZMQ keys (it closed %d handshakes in a row "
                     "without keys): start this client with --key FILE --server-key FILE",
                     where, w->closed_in_row);
                return CLIENT_AUTH_MISMATCH;
            }
        }
    }
    return CLIENT_AUTH_OK;
}

void client_socket_close(void **s, int linger_ms, client_log_fn log)
{
    if (!*s)
        return;
    if (zmq_setsockopt(*s, ZMQ_LINGER, &linger_ms, sizeof linger_ms) != 0)
        log("zmq_setsockopt(ZMQ_LINGER): %s", zmq_strerror(zmq_errno()));
    if (zmq_close(*s) != 0)
        log("zmq_close: %s", zmq_strerror(zmq_errno()));
    *s = NULL;
}

int client_send_msg(void *sock, const struct msg *m, client_log_fn log)
{
    char err[ERR_LEN];
    if (!sock)
        return -1;
    if (msg_send(sock, m, err) < 0) {
        log("cannot send %s: %s", msg_kind_name(m->kind), err);
        return -1;
    }
    return 0;
}

int client_send_heartbeat(void *sock, uint32_t held, client_log_fn log)
{
    struct msg m = {.kind = MSG_KIND_HEARTBEAT};
    m.heartbeat = (struct msg_heartbeat){.time = util_time_unix(), .held = held};
    return client_send_msg(sock, &m, log);
}

int client_send_bye(void *sock, const char *reason, client_log_fn log)
{
    struct msg m = {.kind = MSG_KIND_BYE};
    m.bye = (struct msg_text){.reason = reason};
    return client_send_msg(sock, &m, log);
}

int client_recv_msg(void *sock, bool sub, zmq_msg_t *frame, struct msg *m,
                    const struct msg_limits *lim, struct msg_arena *arena,
                    uint64_t *malformed, client_log_fn log)
{
    char err[ERR_LEN];
    if (!sock)
        return 0;
    errno = 0;  /* a decode error leaves errno alone; EAGAIN means "nothing" */
    int rc = sub ? msg_recv_sub(sock, ZMQ_DONTWAIT, frame, m, lim, arena, err)
                 : msg_recv(sock, ZMQ_DONTWAIT, frame, m, lim, arena, err);
    if (rc == 0)
        return 1;
    int e = errno;
    zmq_msg_close(frame);
    if (e == EAGAIN)
        return 0;
    (*malformed)++;
    if (*malformed <= CLIENT_MALFORMED_LOG_FIRST || *malformed % CLIENT_MALFORMED_EVERY == 0)
        log("malformed message on the %s socket (#%llu, ignored): %s",
            sub ? "broadcast" : "work", (unsigned long long)*malformed, err);
    return -1;
}

void client_broadcast_endpoint(char *out, size_t cap, const char *work, const char *bc)
{
    const char *host = strstr(bc, "://");
    const char *port = host ? strrchr(host + 3, ':') : NULL;
    bool wild = host && port && (strncmp(host + 3, "*:", 2) == 0 ||
                                 strncmp(host + 3, "0.0.0.0:", 8) == 0);
    const char *whost = strstr(work, "://");
    const char *wport = whost ? strrchr(whost + 3, ':') : NULL;
    if (!wild || !wport) {
        snprintf(out, cap, "%s", bc);
        return;
    }
    snprintf(out, cap, "%.*s%s", (int)(wport - work), work, port);
}

void client_init(struct client *c, const char *endpoint, const struct msg_hello *hello,
                 client_log_fn log)
{
    memset(c, 0, sizeof *c);
    c->endpoint = endpoint;
    c->hello = *hello;
    c->log = log;
    c->send_timeout_ms = CLIENT_SEND_TIMEOUT_MS;
    c->heartbeat_ms = CLIENT_DEFAULT_HEARTBEAT_MS;
    c->hello_sent = -INFINITY;
    c->ctx = zmq_ctx_new();
    if (!c->ctx)
        die("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    msg_limits_default(&c->lim_work);
    msg_limits_default(&c->lim_sub);
    msg_arena_init(&c->arena);
}

/* Keys for a socket of c's, or none. */
static void client_opts_keys(const struct client *c, struct client_socket_opts *o)
{
    if (c->keys && c->keys->enabled) {
        o->key = &c->keys->pair;
        o->server_key = c->keys->server_public;
    }
}

static void client_close_all(struct client *c, int linger_ms)
{
    client_socket_close(&c->work, linger_ms, c->log);
    client_socket_close(&c->sub, 0, c->log);
    client_watch_close(&c->watch_work);
    client_watch_close(&c->watch_sub);
}

bool client_auth_failed(struct client *c, char *text)
{
    return client_watch_check(&c->watch_work, c->endpoint, text) != CLIENT_AUTH_OK ||
           client_watch_check(&c->watch_sub, c->broadcast, text) != CLIENT_AUTH_OK;
}

void client_free(struct client *c, int linger_ms)
{
    client_close_all(c, linger_ms);
    msg_arena_free(&c->arena);
    if (c->ctx && zmq_ctx_term(c->ctx) != 0)
        c->log("zmq_ctx_term: %s", zmq_strerror(zmq_errno()));
    c->ctx = NULL;
}

void client_disconnect(struct client *c, double now)
{
    client_close_all(c, 0);
    c->welcomed = false;
    c->hello_sent = now;
    c->dropped = true;
}

void client_hello_retry(struct client *c, double now, double retry_s)
{
    if (c->welcomed || now - c->hello_sent < retry_s)
        return;
    if (c->hello_sent > -INFINITY && c->dropped)  /* the reason is logged */
        c->log("saying HELLO again to %s", c->endpoint);
    else if (c->hello_sent > -INFINITY)
        c->log("no answer from %s for %.0f s: saying HELLO again", c->endpoint, retry_s);
    client_disconnect(c, now);
    c->dropped = false;
    c->last_heard = now;
    client_routing_id(c->routing_id, c->hello.name, ++c->connections);
    char err[ERR_LEN];
    struct client_socket_opts o = {
        .routing_id = c->routing_id, .send_timeout_ms = c->send_timeout_ms,
        .lim = &c->lim_work, .watch = &c->watch_work,
    };
    client_opts_keys(c, &o);
    c->work = client_socket_open(c->ctx, ZMQ_DEALER, c->endpoint, &o, err);
    if (!c->work) {
        c->log("%s", err);
        return;
    }
    struct msg m = {.kind = MSG_KIND_HELLO};
    m.hello = c->hello;
    client_send(c, &m);
}

int client_welcome(struct client *c, const struct msg_welcome *w,
                   const char *const *topics, const struct msg_limits *sub_lim)
{
    if (c->welcomed) {
        c->log("ignoring a second WELCOME");
        return 1;
    }
    c->welcomed = true;
    c->heartbeat_ms = w->heartbeat_ms ? w->heartbeat_ms : CLIENT_DEFAULT_HEARTBEAT_MS;
    c->last_beat = util_time_mono();
    client_broadcast_endpoint(c->broadcast, sizeof c->broadcast, c->endpoint,
                              w->broadcast);
    if (!topics)
        return 0;
    if (sub_lim)
        c->lim_sub = *sub_lim;
    else
        msg_limits_default(&c->lim_sub);
    char err[ERR_LEN];
    struct client_socket_opts o = {
        .send_timeout_ms = c->send_timeout_ms, .hwm = c->sub_hwm,
        .lim = &c->lim_sub, .topics = topics, .watch = &c->watch_sub,
    };
    client_opts_keys(c, &o);
    c->sub = client_socket_open(c->ctx, ZMQ_SUB, c->broadcast, &o, err);
    if (!c->sub) {
        /* A client that cannot hear the broadcasts is no use to the run:
         * leave, and try the whole connection again later. */
        c->log("%s: leaving, HELLO again later", err);
        char reason[ERR_LEN + 32];
        snprintf(reason, sizeof reason, "cannot subscribe: %s", err);
        client_send_bye(c->work, reason, c->log);
        client_socket_close(&c->work, CLIENT_BYE_LINGER_MS, c->log);
        client_disconnect(c, util_time_mono());
        return -1;
    }
    return 0;
}

int client_poll(struct client *c, zmq_pollitem_t *items, int n_items, long timeout_ms)
{
    enum { MAX_ITEMS = 16 };
    CHECK(n_items >= 0 && n_items <= MAX_ITEMS - 4);
    zmq_pollitem_t all[MAX_ITEMS];
    int n = 0;
    for (int i = 0; i < n_items; i++)
        all[n++] = items[i];
    if (c->work)
        all[n++] = (zmq_pollitem_t){.socket = c->work, .events = ZMQ_POLLIN};
    if (c->sub)
        all[n++] = (zmq_pollitem_t){.socket = c->sub, .events = ZMQ_POLLIN};
    /* a failed handshake wakes the caller, who asks client_auth_failed */
    if (c->watch_work.pair)
        all[n++] = (zmq_pollitem_t){.socket = c->watch_work.pair, .events = ZMQ_POLLIN};
    if (c->watch_sub.pair)
        all[n++] = (zmq_pollitem_t){.socket = c->watch_sub.pair, .events = ZMQ_POLLIN};
    int rc = zmq_poll(all, n, timeout_ms);
    int e = rc < 0 ? zmq_errno() : 0;
    if (rc < 0 && e != EINTR)
        c->log("zmq_poll: %s", zmq_strerror(e));
    for (int i = 0; i < n_items; i++)
        items[i].revents = rc < 0 ? 0 : all[i].revents;
    return rc < 0 && e != EINTR ? -1 : 0;
}

int client_recv(struct client *c, bool sub, zmq_msg_t *frame, struct msg *m)
{
    int rc = client_recv_msg(sub ? c->sub : c->work, sub, frame, m,
                             sub ? &c->lim_sub : &c->lim_work, &c->arena,
                             &c->malformed, c->log);
    /* Only the work socket says the trainer still counts this client: a
     * trainer that removed it (silent too long) stops its heartbeats but
     * goes on publishing, and a client kept alive by the broadcasts would
     * never say HELLO again, its RESULTs dropped as from an unknown peer. */
    if (rc != 0 && !sub)
        c->last_heard = util_time_mono();
    return rc;
}

int client_send(struct client *c, const struct msg *m)
{
    return client_send_msg(c->work, m, c->log);
}

int client_drain(struct client *c, bool sub, int max, client_handler_fn fn, void *ctx)
{
    for (int k = 0; k < max; k++) {
        zmq_msg_t frame;
        struct msg m;
        int rc = client_recv(c, sub, &frame, &m);
        if (rc == 0)
            break;
        if (rc < 0)
            continue;
        int stop = m.kind == MSG_KIND_HEARTBEAT ? 0 : fn(ctx, &m);
        zmq_msg_close(&frame);
        if (stop)
            return stop;
    }
    return 0;
}

bool client_keep_alive(struct client *c, double now)
{
    double beat = c->heartbeat_ms / 1000.0;
    if (now - c->last_heard > CLIENT_SILENT_BEATS * beat) {
        c->log("trainer silent for %.1f s: reconnecting to %s", now - c->last_heard,
               c->endpoint);
        client_disconnect(c, -INFINITY);
        return true;
    }
    if (now - c->last_beat >= beat) {
        client_send_heartbeat(c->work, 0, c->log);
        c->last_beat = now;
    }
    return false;
}
