/*
 * client.h: the trainer connection as a client sees it (proto/PROTOCOL.md):
 * a DEALER to the trainer's work endpoint, HELLO, WELCOME, HEARTBEAT both
 * ways, the trainer's silence, BYE, and a SUB to the broadcast endpoint
 * WELCOME names. lejepa-loader uses the socket layer (its own poll loop and
 * backoff); lejepa-eval and lejepa-monitor use struct client. What a client
 * does with TICKETs, EMBEDs or METRICs is its own business, not this file's.
 *
 * Every connection is a new socket with a new routing id (name/pid/counter),
 * so the trainer never takes a reconnected client for the old one. Socket
 * options are set before connect: libzmq reads ZMQ_MAXMSGSIZE and the
 * routing id when a connection starts. Only one thread touches a client.
 */
#ifndef LEJEPA_CLIENT_H
#define LEJEPA_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "msg.h"

#define CLIENT_SILENT_BEATS 5               /* heartbeats of silence = trainer gone */
#define CLIENT_DEFAULT_HEARTBEAT_MS 1000    /* until WELCOME, or when it says 0 */
#define CLIENT_SEND_TIMEOUT_MS 1000         /* a send never blocks longer (default) */
#define CLIENT_BYE_LINGER_MS 500            /* time given to a BYE before closing */
#define CLIENT_ROUTING_ID_MAX 256
/* Malformed messages logged one by one, then every CLIENT_MALFORMED_EVERY-th. */
#define CLIENT_MALFORMED_LOG_FIRST 10
#define CLIENT_MALFORMED_EVERY 100

/* Where a client's lines go (util_log, or the monitor's own log). */
typedef void (*client_log_fn)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the socket layer ------------------------------------------------- */

struct client_socket_opts {
    const char *routing_id;         /* NULL: libzmq picks one */
    int send_timeout_ms;            /* ZMQ_SNDTIMEO */
    int hwm;                        /* ZMQ_SNDHWM and ZMQ_RCVHWM; 0: libzmq's */
    const struct msg_limits *lim;   /* ZMQ_MAXMSGSIZE (msg_limits_apply) */
    const char *const *topics;      /* SUB: NULL-terminated kind names */
    /* CURVE (both or neither): this client's key pair and the trainer's
     * public key (Z85). Without them the socket speaks without keys. */
    const struct keys_pair *key;
    const char *server_key;
    struct client_watch *watch;     /* non-NULL: watch the handshakes */
};

/* ---- handshake failures ------------------------------------------------
 * A CURVE handshake that fails is retried by libzmq every reconnect
 * interval, silently: the client would wait forever for a WELCOME. A watch
 * (zmq_socket_monitor on the socket, opened before it connects) turns the
 * failures into one of these verdicts for a clear log line. */
enum client_auth {
    CLIENT_AUTH_OK,             /* no failure seen */
    CLIENT_AUTH_REFUSED,        /* the trainer's ZAP handler refused our key */
    CLIENT_AUTH_SERVER_KEY,     /* the server could not read our handshake:
                                   not the key given to --server-key */
    CLIENT_AUTH_MISMATCH,       /* keys on one side only */
    CLIENT_AUTH_PROTOCOL,       /* another handshake error */
};
/* A keyed handshake the server just closes is what a wrong --server-key
 * looks like from here, but a keyless server's first few refusals look the
 * same before one arrives as a mechanism mismatch (libzmq 4.3 on loopback:
 * 1-4 of them), and so does a trainer restarting mid-handshake: a verdict
 * needs this many in a row without a mismatch or a success. The same holds
 * the other way: a keyless client's greeting is closed by a CURVE trainer,
 * most often before the mismatch can be read; this many in a row mean the
 * trainer requires keys. */
#define CLIENT_AUTH_CLOSED_REPEAT 10

struct client_watch {
    void *pair;                 /* the monitor's events; NULL when closed */
    bool keyed;                 /* the watched socket was given keys */
    int closed_in_row;          /* handshakes closed by the server */
    uint64_t failures;          /* handshake failures seen */
};

/* Watches sock (before it connects); keyed says whether it was given keys.
 * 0 or -1 with err. */
int client_watch_open(struct client_watch *w, void *ctx, void *sock, bool keyed, char *err);
/* Reads the events waiting (never blocks): CLIENT_AUTH_OK, or a failure
 * with a sentence for the user in text (ERR_LEN bytes) naming endpoint. */
enum client_auth client_watch_check(struct client_watch *w, const char *endpoint, char *text);
void client_watch_close(struct client_watch *w);

/* ---- --connect ----------------------------------------------------------
 * libzmq takes a malformed endpoint such as 127.0.0.1:5555 (no tcp://) and
 * a client would wait for a WELCOME that never comes: clients check their
 * --connect first. */
#define CLIENT_HINT_PORT "5555"     /* the default work port, in hints */

/* 0 when endpoint is tcp://HOST:PORT (PORT 1..65535) or ipc://PATH; else -1
 * with err naming the endpoint, what is wrong and, when one can be guessed,
 * "did you mean tcp://...?". */
int client_endpoint_check(const char *endpoint, char *err);

/* "NAME/PID/COUNTER" into out (CLIENT_ROUTING_ID_MAX bytes). */
void client_routing_id(char *out, const char *name, unsigned counter);

/* A socket of `type` with linger 0 and the options, connected to endpoint;
 * NULL with err. Close it with client_socket_close. */
void *client_socket_open(void *ctx, int type, const char *endpoint,
                         const struct client_socket_opts *o, char *err);

/* Closes *s (if any) waiting at most linger_ms for queued messages; *s = NULL. */
void client_socket_close(void **s, int linger_ms, client_log_fn log);

/* Sends m on the DEALER; 0, or -1 with the reason logged (-1 also when
 * sock is NULL). */
int client_send_msg(void *sock, const struct msg *m, client_log_fn log);
int client_send_heartbeat(void *sock, uint32_t held, client_log_fn log);
int client_send_bye(void *sock, const char *reason, client_log_fn log);

/* Receives one message without waiting (sub: the broadcast socket's two
 * frames). Returns 1 with m decoded (close frame once done with m), 0 when
 * nothing waits (or sock is NULL), -1 for a malformed message (counted in
 * *malformed and logged, frame already closed). */
int client_recv_msg(void *sock, bool sub, zmq_msg_t *frame, struct msg *m,
                    const struct msg_limits *lim, struct msg_arena *arena,
                    uint64_t *malformed, client_log_fn log);

/* The broadcast endpoint to connect to: WELCOME.broadcast, except that a
 * trainer bound to every interface (tcp://0.0.0.0:P or tcp://\*:P) is
 * reached at the host we reached its work endpoint at. */
void client_broadcast_endpoint(char *out, size_t cap, const char *work,
                               const char *bc);

/* ---- one connection to a trainer (evaluator, monitor) ------------------ */

struct client {
    void *ctx, *work, *sub;         /* sockets NULL while disconnected */
    const struct keys_client *keys; /* NULL or not enabled: no CURVE */
    struct client_watch watch_work, watch_sub;
    const char *endpoint;           /* the work endpoint (caller-owned) */
    struct msg_hello hello;         /* sent on every connection; its strings
                                       are the caller's */
    client_log_fn log;
    int send_timeout_ms;            /* CLIENT_SEND_TIMEOUT_MS unless set */
    int sub_hwm;                    /* SUB receive queue; 0: libzmq's */
    struct msg_limits lim_work;     /* handshake limits */
    struct msg_limits lim_sub;      /* set by client_welcome */
    struct msg_arena arena;
    char routing_id[CLIENT_ROUTING_ID_MAX];
    unsigned connections;           /* sockets opened so far */
    bool welcomed;
    bool dropped;                   /* client_disconnect since the last HELLO */
    uint32_t heartbeat_ms;          /* from WELCOME */
    char broadcast[MSG_NAME_MAX + 64];  /* SUB endpoint of this connection */
    double hello_sent, last_heard, last_beat;   /* monotonic seconds */
    uint64_t malformed;
};

/* No socket yet: the first client_hello_retry connects. */
void client_init(struct client *c, const char *endpoint, const struct msg_hello *hello,
                 client_log_fn log);
/* Closes the sockets (the work socket waits at most linger_ms, so a BYE
 * sent just before may leave) and the context. */
void client_free(struct client *c, int linger_ms);

/* When not welcomed and retry_s passed since the last HELLO (at once after
 * client_init or a silent trainer): a new DEALER, a new routing id, HELLO. */
void client_hello_retry(struct client *c, double now, double retry_s);

/* Drops both sockets; the next HELLO goes out retry_s after now. */
void client_disconnect(struct client *c, double now);

/* Takes a WELCOME: heartbeat interval, then (topics non-NULL) a SUB to the
 * broadcast endpoint with limits sub_lim (NULL: the defaults). Returns 0,
 * 1 for a second WELCOME on this connection (ignored, logged), -1 when the
 * SUB could not be opened (logged, BYE sent, disconnected: the next HELLO
 * goes out after the caller's retry interval). Only 0 means welcomed. */
int client_welcome(struct client *c, const struct msg_welcome *w,
                   const char *const *topics, const struct msg_limits *sub_lim);

/* Waits up to timeout_ms for the sockets and the caller's items (put first
 * in the poll set, their revents written back). -1 on a poll error (logged;
 * EINTR is not one). */
int client_poll(struct client *c, zmq_pollitem_t *items, int n_items, long timeout_ms);

/* As client_recv_msg on the work (sub false) or broadcast socket; any frame
 * on the work socket counts as a sign of life, broadcasts do not. */
int client_recv(struct client *c, bool sub, zmq_msg_t *frame, struct msg *m);
int client_send(struct client *c, const struct msg *m);

/* Called with each decoded message but HEARTBEAT (which only shows the
 * trainer is alive); a nonzero return stops the drain and is returned. */
typedef int (*client_handler_fn)(void *ctx, const struct msg *m);

/* Handles up to max messages waiting on the work (sub false) or broadcast
 * socket with fn; malformed ones are counted and skipped. Returns fn's first
 * nonzero value, else 0. */
int client_drain(struct client *c, bool sub, int max, client_handler_fn fn, void *ctx);

/* Every turn: true when a handshake of either socket failed in a way
 * retrying will not fix (client_auth above), with the sentence in text
 * (ERR_LEN bytes); the caller logs it and exits like on REFUSE. */
bool client_auth_failed(struct client *c, char *text);

/* Welcomed clients, every turn: a trainer silent for CLIENT_SILENT_BEATS
 * heartbeats is dropped (logged; HELLO again at the next retry) and true is
 * returned; otherwise a HEARTBEAT goes out when one is due. */
bool client_keep_alive(struct client *c, double now);

#endif
