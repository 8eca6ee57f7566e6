/*
 * loader_conn.c: the DEALER socket to the trainer and the messages the
 * loader sends (loader_conn.h). Socket options are set before connect:
 * libzmq reads ZMQ_MAXMSGSIZE and the routing id when a connection starts.
 */
#include "loader_conn.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "lejepa_version.h"
#include "util.h"

/* Messages queued per direction before sends block (then time out). */
#define LOADER_HWM 1000
/* A send blocked this long (trainer not reading) counts as a broken link. */
#define LOADER_SEND_TIMEOUT_MS 5000
/* Malformed messages logged one by one, then every LOADER_MALFORMED_EVERY-th. */
#define LOADER_MALFORMED_LOG_FIRST 10
#define LOADER_MALFORMED_EVERY 100

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

static int set_int(void *s, int opt, int v, const char *what, char *err)
{
    if (zmq_setsockopt(s, opt, &v, sizeof v) != 0)
        return errf(err, "zmq_setsockopt(%s): %s", what, zmq_strerror(zmq_errno()));
    return 0;
}

int conn_open(struct loader_conn *c, const char *name, const char *endpoint, char *err)
{
    conn_close(c, 0);
    c->counter++;
    snprintf(c->routing_id, sizeof c->routing_id, "%s/%d/%u", name, (int)getpid(),
             c->counter);
    msg_limits_default(&c->lim);
    void *s = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!s)
        return errf(err, "zmq_socket(DEALER): %s", zmq_strerror(zmq_errno()));
    if (zmq_setsockopt(s, ZMQ_ROUTING_ID, c->routing_id, strlen(c->routing_id)) != 0) {
        errf(err, "zmq_setsockopt(ZMQ_ROUTING_ID): %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    /* This socket only receives small messages (WELCOME, TICKET, ...), so
     * the handshake limits bound what it accepts for the whole connection. */
    if (set_int(s, ZMQ_LINGER, 0, "ZMQ_LINGER", err) < 0 ||
        set_int(s, ZMQ_SNDHWM, LOADER_HWM, "ZMQ_SNDHWM", err) < 0 ||
        set_int(s, ZMQ_RCVHWM, LOADER_HWM, "ZMQ_RCVHWM", err) < 0 ||
        set_int(s, ZMQ_SNDTIMEO, LOADER_SEND_TIMEOUT_MS, "ZMQ_SNDTIMEO", err) < 0 ||
        msg_limits_apply(s, &c->lim, err) < 0)
        goto fail;
    if (zmq_connect(s, endpoint) != 0) {
        errf(err, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    c->sock = s;
    return 0;
fail:
    zmq_close(s);
    return -1;
}

void conn_close(struct loader_conn *c, int linger_ms)
{
    if (!c->sock)
        return;
    char err[ERR_LEN];
    if (set_int(c->sock, ZMQ_LINGER, linger_ms, "ZMQ_LINGER", err) < 0)
        loader_log("%s", err);
    if (zmq_close(c->sock) != 0)
        loader_log("zmq_close: %s", zmq_strerror(zmq_errno()));
    c->sock = NULL;
}

int conn_send(struct loader_conn *c, const struct msg *m)
{
    char err[ERR_LEN];
    if (!c->sock)
        return -1;
    if (msg_send(c->sock, m, err) < 0) {
        loader_log("cannot send %s: %s", msg_kind_name(m->kind), err);
        return -1;
    }
    return 0;
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
        .has_dataset = true,
        .dataset = {
            .fingerprint = d->fingerprint,
            .n_train = d->split[DATASET_TRAIN].n,
            .n_val = d->split[DATASET_VAL].n,
            .n_classes = (uint32_t)d->n_classes,
            .classes = (const char *const *)d->classes,
        },
    };
    return conn_send(c, &m);
}

int conn_send_heartbeat(struct loader_conn *c, uint32_t held)
{
    struct msg m = {.kind = MSG_KIND_HEARTBEAT};
    m.heartbeat = (struct msg_heartbeat){.time = util_time_unix(), .held = held};
    return conn_send(c, &m);
}

int conn_send_return(struct loader_conn *c, const uint64_t *ids, uint32_t n)
{
    struct msg m = {.kind = MSG_KIND_RETURN};
    m.ret = (struct msg_return){.n = n, .tickets = ids};
    return conn_send(c, &m);
}

int conn_send_bye(struct loader_conn *c, const char *reason)
{
    struct msg m = {.kind = MSG_KIND_BYE};
    m.bye = (struct msg_text){.reason = reason};
    return conn_send(c, &m);
}

int conn_recv(struct loader_conn *c, zmq_msg_t *frame, struct msg *m)
{
    char err[ERR_LEN];
    if (!c->sock)
        return 0;
    errno = 0;  /* a decode error leaves errno alone; EAGAIN means "nothing" */
    if (msg_recv(c->sock, ZMQ_DONTWAIT, frame, m, &c->lim, &c->arena, err) == 0)
        return 1;
    int e = errno;
    zmq_msg_close(frame);
    if (e == EAGAIN)
        return 0;
    c->malformed++;
    if (c->malformed <= LOADER_MALFORMED_LOG_FIRST ||
        c->malformed % LOADER_MALFORMED_EVERY == 0)
        loader_log("malformed message from the trainer (#%llu, ignored): %s",
                   (unsigned long long)c->malformed, err);
    return -1;
}
