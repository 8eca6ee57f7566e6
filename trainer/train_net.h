/*
 * train_net.h: lejepa-train's network side (DESIGN.md §3): the work socket
 * (ROUTER) and the broadcast socket (PUB), the registry of connected
 * clients, sends, WELCOME, heartbeats both ways and silence, and the count
 * of bad messages. It knows who is connected, not what they are doing:
 * tickets (train_tickets.h), batches (train_step.h) and snapshots
 * (train_eval.h) keep their own state, and the hub (train_hub.c) decides
 * what a message means.
 */
#ifndef LEJEPA_TRAIN_NET_H
#define LEJEPA_TRAIN_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "msg.h"
#include "zap.h"

struct config;

/* Interval of HEARTBEATs both ways (WELCOME.heartbeat_ms). */
#define TRAIN_HEARTBEAT_MS 1000
/* A peer silent for this many intervals is gone. */
#define TRAIN_SILENCE_BEATS 5
/* Most clients at once; more HELLOs are refused. */
#define TRAIN_MAX_CLIENTS 256
/* Messages received per call of train_net_recv's caller burst. */
#define TRAIN_RECV_BURST 256

/* The tickets a loader holds (train_tickets.c owns these fields). */
struct train_hold {
    uint32_t credit; /* most tickets it may hold */
    uint64_t *held;  /* (credit) ticket ids out to it */
    double *sent;    /* (credit) when each went out (> 0), or minus when
                      * its deadline passed and it went to another loader:
                      * still counted against credit until answered or
                      * reclaimed */
    uint32_t n_held;
    uint32_t expired_streak; /* deadlines missed since its last answer */
    uint32_t env_streak;     /* answers with nothing but environmental
                              * failures, in a row */
    uint32_t bad_streak;     /* malformed answers in a row */
};

/* Who connects: the key's name with keys, else the peer's IP address.
 * The RESULT and HISTORY budgets belong to it, not to one connection, so
 * reconnecting (or a fresh routing id) refills nothing. At most
 * TRAIN_MAX_IDENTITIES are remembered; the one used longest ago with no
 * client registered is forgotten first. */
#define TRAIN_MAX_IDENTITIES (2 * TRAIN_MAX_CLIENTS)
/* A whole history (the metrics file plus a page) per this many seconds
 * refills an identity's HISTORY budget; twice that is its burst. */
#define TRAIN_HISTORY_REFILL_S 60.0

struct train_identity {
    char who[96];   /* "key NAME", "address A" or "address local"; "" free */
    int clients;    /* registered clients that are it */
    double used_at; /* monotonic seconds of its last HELLO */
    double result_tokens, result_at;   /* RESULTs (limits.results_*) */
    double history_tokens, history_at; /* HISTORY bytes */
};

struct train_client {
    uint8_t id[256]; /* ROUTER routing id */
    size_t id_len;
    uint64_t client_id;
    char name[128];
    enum msg_role role;
    struct train_hold hold;
    double last_seen; /* monotonic seconds */
    double joined_at; /* monotonic seconds of its HELLO */
    uint64_t batches;
    char drop[64]; /* set: drop it (its queue is full, it left); the hub
                    * removes it and re-issues its tickets */
    struct train_identity *who; /* its budgets (train_net_identity) */
    uint8_t *held;     /* a loader's partial copy (HELLO.dataset.held), or NULL:
                    * it holds every sample (train_net_holds) */
    uint64_t returns;  /* RETURNs it sent */
    uint64_t rehellos; /* HELLOs it said again on this connection */
    bool has_result;   /* an evaluator sent a RESULT ... */
    uint64_t result_step; /* ... for this step, last */
};

/* CurveZMQ (PROTOCOL.md "Keys and roles"): the trainer's key pair and the
 * allow-list of client keys; both paths empty: no keys (loopback). */
struct train_net_keys {
    const char *key;   /* the trainer's NAME.key */
    const char *allow; /* the allow-list file */
};

struct train_net {
    void *zctx, *router, *pub;
    bool keyed;               /* both sockets are CURVE servers */
    struct zap_handler zap;   /* admits allow-listed keys (keyed) */
    uint64_t refusals;        /* HELLOs or kinds their key's role forbids */
    uint64_t clients_dropped; /* full queue or gone, not by BYE or silence */
    uint64_t results_limited; /* RESULTs over their size or rate */
    struct msg_limits limits;
    struct msg_arena arena;
    struct train_client *clients[TRAIN_MAX_CLIENTS];
    struct train_identity *ids; /* (TRAIN_MAX_IDENTITIES) */
    int n_clients;
    uint64_t next_client_id;
    double last_beat;
    uint64_t bad_messages;
    bool no_pub; /* set before train_net_open: no broadcast socket (a
                  * data-parallel rank other than 0) */
};

/* Binds the work and broadcast endpoints of the config; pub_hwm is the PUB
 * socket's ZMQ_SNDHWM. With keys (k->key set) both sockets are CURVE
 * servers behind the ZAP handler. 0, or -1 with err. */
int train_net_open(struct train_net *n, const struct config *c, int pub_hwm,
                   const struct train_net_keys *k, char *err);
/* Logs the ZAP handler's refusals since the last call. */
void train_net_log_refusals(struct train_net *n);
/* Connections the ZAP handler refused so far (0 without keys). */
uint64_t train_net_key_refusals(const struct train_net *n);
void train_net_close(struct train_net *n);

/* Sends m to one peer; a failure is logged, never fatal. */
void train_net_send(struct train_net *n, const uint8_t *id, size_t id_len,
                    const struct msg *m);
/* Sends m to a registered client without ever blocking; a full queue or a
 * vanished peer marks the client to be dropped (c->drop). 0, or -1. */
int train_net_send_client(struct train_net *n, struct train_client *c,
                          const struct msg *m);
/* REFUSE (or BYE) with a reason. */
void train_net_send_text(struct train_net *n, const uint8_t *id, size_t id_len,
                         enum msg_kind kind, const char *reason);
/* Sends WELCOME only when the peer is still connected; false when it left. */
bool train_net_welcome(struct train_net *n, const uint8_t *id, size_t id_len,
                       const struct msg *m);

/* The next message of the work socket, ZMQ_DONTWAIT. 1: *m holds a message
 * (the frame stays open until zmq_msg_close); 0: none waiting; -1: a bad
 * message, counted and logged (a HELLO of another protocol version is
 * answered with REFUSE). */
int train_net_recv(struct train_net *n, uint8_t *id, size_t *id_len,
                   zmq_msg_t *frame, struct msg *m);
/* Counts and logs a malformed, oversized or unexpected message. */
void train_net_bad_message(struct train_net *n, const char *who,
                           const char *reason);

struct train_client *train_net_find(struct train_net *n, const uint8_t *id,
                                    size_t id_len);
/* The identity of the sender of frame, as a string for
 * train_net_identity: "key NAME" with keys, else "address IP" (TCP) or
 * "address local" (ipc://). */
void train_net_who(const struct train_net *n, zmq_msg_t *frame, char *out,
                   size_t cap);
/* The record of who (found, new, or the least recently used one with no
 * registered client, reset). */
struct train_identity *train_net_identity(struct train_net *n, const char *who);
/* A token bucket: refills at rate per second up to burst (full on first
 * use, *at == 0); takes cost and returns true when that many are there. */
bool train_bucket_take(double *tokens, double *at, double rate, double burst,
                       double cost, double now);
/* Registers a welcomed client (credit: the loader's, already capped) as
 * one of the identity who. */
struct train_client *train_net_add(struct train_net *n, const uint8_t *id,
                                   size_t id_len, const struct msg_hello *h,
                                   uint32_t credit, struct train_identity *who);
/* Takes c out of the registry; the caller frees it with train_net_free_client
 * once its tickets are re-issued. */
void train_net_detach(struct train_net *n, struct train_client *c);
void train_net_free_client(struct train_client *c);
int train_net_count(const struct train_net *n, enum msg_role role);
/* Whether loader c holds sample b of the dataset (b: a train index, or
 * n_train + a val index). */
static inline bool train_net_holds(const struct train_client *c, uint64_t b)
{
    return !c->held || (c->held[b / 8] >> (b % 8)) & 1;
}

/* Once per TRAIN_HEARTBEAT_MS: true when it is time to beat (then call
 * train_net_silent until NULL, then train_net_beat). */
bool train_net_beat_due(struct train_net *n);
/* A client silent for TRAIN_SILENCE_BEATS intervals, or NULL. */
struct train_client *train_net_silent(struct train_net *n, char *why,
                                      size_t len);
void train_net_beat(struct train_net *n);

/* Whether an evaluator joined less than settle_s ago: its SUB socket may
 * not be subscribed yet (ZeroMQ's slow joiner). */
bool train_net_evaluators_settling(const struct train_net *n, double settle_s);
/* Whether every evaluator that joined before `since` (monotonic seconds)
 * has sent a RESULT for step: a later one never saw that snapshot. */
bool train_net_evaluators_done(const struct train_net *n, uint64_t step,
                               double since);

#endif
