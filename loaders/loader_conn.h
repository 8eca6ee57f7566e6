/*
 * loader_conn.h: the loader's one ZeroMQ socket, a DEALER connected to the
 * trainer's work endpoint, and the messages the loader sends on it, on top
 * of proto/client.h's socket layer. Every (re)connection is a new socket
 * with a new routing id (name/pid/counter), so the trainer never mistakes a
 * reconnected loader for the old one. Only the main thread of the loader
 * touches this.
 */
#ifndef LEJEPA_LOADER_CONN_H
#define LEJEPA_LOADER_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "dataset.h"
#include "loader.h"
#include "msg.h"

struct loader_conn {
    void *ctx;
    void *sock;                     /* NULL while disconnected */
    const struct keys_client *keys; /* NULL or not enabled: no CURVE */
    struct client_watch watch;      /* the socket's handshakes */
    char routing_id[CLIENT_ROUTING_ID_MAX];
    unsigned counter;               /* connections made so far */
    struct msg_limits lim;          /* decoding: defaults until WELCOME */
    struct msg_arena arena;
    uint64_t malformed;             /* messages rejected by the decoder */
};

void conn_init(struct loader_conn *c);
void conn_free(struct loader_conn *c);
/* New socket, new routing id, handshake limits; connects. 0 or -1 with err. */
int conn_open(struct loader_conn *c, const char *name, const char *endpoint, char *err);
/* True when the trainer's handshake failed in a way retrying will not fix
 * (client.h, client_auth), with the sentence for the log in text. */
bool conn_auth_failed(struct loader_conn *c, const char *endpoint, char *text);
/* Closes the socket, waiting at most linger_ms for queued messages. */
void conn_close(struct loader_conn *c, int linger_ms);

/* Sends m; 0 or -1 with the reason logged (the connection is then
 * considered broken by the caller). */
int conn_send(struct loader_conn *c, const struct msg *m);
int conn_send_hello(struct loader_conn *c, const struct loader_opts *o,
                    const struct dataset *d);
int conn_send_heartbeat(struct loader_conn *c, uint32_t held);
int conn_send_return(struct loader_conn *c, const uint64_t *ids, uint32_t n);
int conn_send_bye(struct loader_conn *c, const char *reason);

/* Receives one message without waiting: 1 with m decoded (close frame once
 * done with m), 0 when nothing is waiting, -1 for a malformed message
 * (counted and logged; frame already closed). */
int conn_recv(struct loader_conn *c, zmq_msg_t *frame, struct msg *m);

#endif
