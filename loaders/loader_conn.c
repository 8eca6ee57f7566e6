/*
 * loader_conn.c: the DEALER socket to the trainer and the messages the
 * loader sends (loader_conn.h), through proto/client.h's socket layer.
 */
#include "loader_conn.h"

#include <string.h>
#include <unistd.h>

#include "lejepa_version.h"
#include "util.h"

/* Messages queued per direction before sends block (then time out). */
#define LOADER_HWM 1000
/* A send blocked this long (trainer not reading) counts as a broken link. */
#define LOADER_SEND_TIMEOUT_MS 5000

void conn_init(struct loader_conn *c)
{
    memset(c, 0, sizeof *c);
    c->ctx = zmq_ctx_new();
    if (!c->ctx)
        die("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    msg_limits_default(&c->lim);
    msg_arena_init(&c->arena);
}

void conn_free(struct loader_conn *c)
{
    conn_close(c, 0);
    msg_arena_free(&c->arena);
    if (c->ctx && zmq_ctx_term(c->ctx) != 0)
        loader_log("zmq_ctx_term: %s", zmq_strerror(zmq_errno()));
    c->ctx = NULL;
}

int conn_open(struct loader_conn *c, const char *name, const char *endpoint, char *err)
{
    conn_close(c, 0);
    client_routing_id(c->routing_id, name, ++c->counter);
    msg_limits_default(&c->lim);
    /* This socket only receives small messages (WELCOME, TICKET, ...), so
     * the handshake limits bound what it accepts for the whole connection. */
    struct client_socket_opts o = {
        .routing_id = c->routing_id, .send_timeout_ms = LOADER_SEND_TIMEOUT_MS,
        .hwm = LOADER_HWM, .lim = &c->lim, .watch = &c->watch,
    };
    if (c->keys && c->keys->enabled) {
        o.key = &c->keys->pair;
        o.server_key = c->keys->server_public;
    }
    c->sock = client_socket_open(c->ctx, ZMQ_DEALER, endpoint, &o, err);
    return c->sock ? 0 : -1;
}

void conn_close(struct loader_conn *c, int linger_ms)
{
    client_socket_close(&c->sock, linger_ms, loader_log);
    client_watch_close(&c->watch);
}

bool conn_auth_failed(struct loader_conn *c, const char *endpoint, char *text)
{
    return client_watch_check(&c->watch, endpoint, text) != CLIENT_AUTH_OK;
}

int conn_send(struct loader_conn *c, const struct msg *m)
{
    return client_send_msg(c->sock, m, loader_log);
}

int conn_send_hello(struct loader_conn *c, const struct loader_opts *o,
                    const struct dataset *d)
{
    struct msg m = {.kind = MSG_KIND_HELLO};
    m.hello = (struct msg_hello){
        .role = MSG_ROLE_LOADER,
        .name = o->name,
        .software = "lejepa-loader " LEJEPA_VERSION,
        .pid = (uint64_t)getpid(),
        .credit = o->credit,
        .eval_view = true,     /* TICKET.eval_view answered */
        .has_dataset = true,
        .dataset = {
            .fingerprint = d->fingerprint,
            .n_train = d->split[DATASET_TRAIN].n,
            .n_val = d->split[DATASET_VAL].n,
            .n_classes = (uint32_t)d->n_classes,
            .classes = (const char *const *)d->classes,
            .held = d->held, /* a partial copy: what it can serve */
        },
    };
    return conn_send(c, &m);
}

int conn_send_heartbeat(struct loader_conn *c, uint32_t held)
{
    return client_send_heartbeat(c->sock, held, loader_log);
}

int conn_send_return(struct loader_conn *c, const uint64_t *ids, uint32_t n)
{
    struct msg m = {.kind = MSG_KIND_RETURN};
    m.ret = (struct msg_return){.n = n, .tickets = ids};
    return conn_send(c, &m);
}

int conn_send_bye(struct loader_conn *c, const char *reason)
{
    return client_send_bye(c->sock, reason, loader_log);
}

int conn_recv(struct loader_conn *c, zmq_msg_t *frame, struct msg *m)
{
    return client_recv_msg(c->sock, false, frame, m, &c->lim, &c->arena,
                           &c->malformed, loader_log);
}
