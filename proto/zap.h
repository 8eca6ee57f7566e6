/*
 * zap.h: the trainer's side of CurveZMQ authentication (proto/PROTOCOL.md,
 * "Keys and roles"): a ZAP handler (ZeroMQ RFC 27) answering libzmq on
 * inproc://zeromq.zap.01 from the allow-list of keys.h, the options that make
 * a socket a CURVE server, and reading back who sent a message.
 *
 * libzmq asks the handler about every CURVE connection before it lets the
 * peer send anything. Without a handler bound in the context, libzmq admits
 * every client that knows the server's public key, so zap_server_apply
 * refuses to key a socket unless the handler is running. The handler thread
 * logs nothing (the trainer's log belongs to its main thread): it counts
 * refusals in atomics and keeps the latest ones in a small ring the main
 * thread drains and logs.
 */
#ifndef LEJEPA_ZAP_H
#define LEJEPA_ZAP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "keys.h"
#include "msg.h"

#define ZAP_DOMAIN "lejepa"
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_RING 64                     /* refusals kept for the main thread */
#define ZAP_USER_ID_MAX (16 + KEYS_NAME_MAX)   /* "evaluator:" + name */

enum zap_reason {
    ZAP_REFUSED_UNKNOWN_KEY,            /* CURVE, key not in the allow-list */
    ZAP_REFUSED_MECHANISM,              /* NULL or PLAIN: keys are required */
    ZAP_REFUSED_DOMAIN,                 /* a ZAP domain other than ZAP_DOMAIN */
    ZAP_REFUSED_MALFORMED,              /* a request that breaks RFC 27 */
    ZAP_REFUSED_COUNT
};

/* One refusal as the main thread logs it. */
struct zap_refusal {
    enum zap_reason reason;
    char key[16];                       /* first 8 Z85 characters + "...", or "" */
    char address[64];                   /* the peer's IP address, as libzmq gives it */
    char mechanism[16];                 /* "CURVE", "NULL", "PLAIN" */
};

struct zap_handler {
    void *ctl;                          /* main thread's end of the stop pipe */
    void *rep, *ctl_peer;               /* the thread's sockets */
    pthread_t thread;
    bool running;
    struct keys_allow allow;            /* the thread's own copy */
    _Atomic uint64_t accepted;
    _Atomic uint64_t refused[ZAP_REFUSED_COUNT];
    pthread_mutex_t lock;               /* guards the ring */
    struct zap_refusal ring[ZAP_RING];
    unsigned ring_start, ring_n;
    uint64_t ring_lost;                 /* overwritten before being drained */
};

/* Binds the handler in ctx (only one per context: a second fails) and
 * starts its thread with a copy of allow. 0, or -1 with err. Stop it before
 * zmq_ctx_term. */
int zap_start(struct zap_handler *z, void *ctx, const struct keys_allow *allow, char *err);
/* Stops and joins the thread, closes its sockets; safe on a stopped one. */
void zap_stop(struct zap_handler *z);

/* Counts, readable from any thread. */
uint64_t zap_accepted(const struct zap_handler *z);
uint64_t zap_refused(const struct zap_handler *z, enum zap_reason r);
const char *zap_reason_text(enum zap_reason r);

/* Moves up to cap refusals (oldest first) into out; returns how many.
 * *lost (may be NULL) gets the count overwritten since the last drain. */
size_t zap_drain_refusals(struct zap_handler *z, struct zap_refusal *out, size_t cap,
                          uint64_t *lost);

/* A server socket of the trainer, before bind: ZMQ_CURVE_SERVER = 1, its
 * secret key, ZMQ_ZAP_DOMAIN = ZAP_DOMAIN. Refused (-1 with err) unless z
 * is running, since without the handler CURVE would admit anyone. */
int zap_server_apply(void *sock, const struct zap_handler *z, const struct keys_pair *server,
                     char *err);

/* "ROLE:NAME" as the handler writes into User-Id. */
void zap_user_id_format(char *out, size_t cap, enum msg_role role, const char *name);
/* Parses a User-Id back: 0 with role and name (cap bytes), or -1 with err. */
int zap_user_id_parse(const char *user_id, enum msg_role *role, char *name, size_t cap,
                      char *err);

/* Who sent frame (any frame of a received message): 1 with role and name
 * when the connection was authenticated by the handler, 0 when it carries
 * no User-Id (a socket without keys), -1 with err for a User-Id this
 * module did not write. */
int zap_peer_of(zmq_msg_t *frame, enum msg_role *role, char *name, size_t cap, char *err);

/* The kinds each role may send to the trainer (DESIGN.md §3): loaders
 * HELLO, BATCH, RETURN; evaluators HELLO, RESULT; monitors HELLO; every
 * role HEARTBEAT, HISTORY and BYE. */
bool zap_role_may_send(enum msg_role role, enum msg_kind kind);

#endif
