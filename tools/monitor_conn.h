/*
 * monitor_conn.h: lejepa-monitor's link to the trainer (proto/PROTOCOL.md):
 * DEALER to the work endpoint, HELLO as a monitor, WELCOME, then SUB to the
 * broadcast endpoint subscribed to METRIC *before* the HISTORY requests, so
 * no line falls between the two (lines arriving both ways are deduplicated
 * by the store); HISTORY pages from line 0 until done, and one catch-up
 * request MONITOR_CATCHUP_MS later for lines published while the
 * subscription was still being set up. The connection itself (sockets,
 * heartbeats, a trainer silent for CLIENT_SILENT_BEATS intervals dropped and
 * the handshake started over) is proto/client.h; after a reconnection the
 * whole history is fetched again: cheap, and right even when the trainer was
 * restarted.
 */
#ifndef LEJEPA_MONITOR_CONN_H
#define LEJEPA_MONITOR_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "msg.h"
#include "monitor_history.h"

#define MONITOR_HELLO_RETRY_MS 5000     /* no WELCOME: new socket, new HELLO */
#define MONITOR_CATCHUP_MS 1000         /* second HISTORY fetch after done */

enum monitor_conn_state {
    MONITOR_CONN_CONNECTING,    /* HELLO sent, waiting for WELCOME */
    MONITOR_CONN_FETCHING,      /* HISTORY pages in progress */
    MONITOR_CONN_LIVE,          /* history complete; following METRIC */
};

/* What one monitor_conn_step ended with. */
enum monitor_conn_event {
    MONITOR_CONN_OK,
    MONITOR_CONN_REFUSED,       /* REFUSE, or a failed handshake (keys):
                                   reason in the text; exit 1 */
    MONITOR_CONN_BYE,           /* the trainer said BYE (run over) */
};

/* Called for every METRIC record (stored: 1 new, 0 duplicate). */
typedef void (*monitor_metric_fn)(void *ctx, const struct monitor_record *r, int stored);

struct monitor_conn {
    struct client cl;
    char name[MSG_NAME_MAX];    /* HELLO.name: monitor-PID@HOST */
    bool follow;                /* subscribe to METRIC (false for --once) */
    enum monitor_conn_state state;
    char run[MSG_NAME_MAX];     /* "" until the first WELCOME */
    bool run_changed;           /* set on a WELCOME naming a new run; the
                                   caller clears it */
    uint64_t history_next;      /* next line index to ask for */
    bool history_done;          /* a reply with done arrived this connection */
    bool catchup_sent;
    double done_at;
    uint64_t history_lines;     /* lines received in HISTORY replies */
    unsigned connects;          /* WELCOMEs received */
    monitor_metric_fn on_metric;
    void *cb_ctx;
};

void monitor_conn_init(struct monitor_conn *c, const char *endpoint, bool follow);
/* Sends BYE when connected (best effort), closes everything. */
void monitor_conn_free(struct monitor_conn *c);

/* One turn: (re)connects when needed, waits up to timeout_ms for messages
 * on the sockets or for wake_fd (a self-pipe; -1 for none) to be readable,
 * handles every message that arrived (history lines and METRIC records go
 * into h), sends heartbeats and detects silence. REFUSE and BYE return
 * their event with the reason in text (ERR_LEN bytes). */
enum monitor_conn_event monitor_conn_step(struct monitor_conn *c,
                                          struct monitor_history *h, int wake_fd,
                                          int timeout_ms, char *text);

/* "connecting", "fetching history" or "live". */
const char *monitor_conn_state_name(const struct monitor_conn *c);

#endif
