/*
 * monitor_conn.c: the monitor's sockets and the handshake / history / live
 * sequence of monitor_conn.h. Socket options are set before connect: libzmq
 * reads ZMQ_MAXMSGSIZE when a connection starts. Nothing here draws.
 */
#include "monitor_conn.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "lejepa_version.h"
#include "monitor_table.h"
#include "util.h"

#define MONITOR_SEND_TIMEOUT_MS 1000    /* a send never blocks the loop longer */
#define MONITOR_BYE_LINGER_MS 500       /* time given to the BYE on exit */
#define MONITOR_DEFAULT_HEARTBEAT_MS 1000   /* when WELCOME says 0 */
#define MONITOR_DRAIN_MAX 1000          /* messages per socket per turn */
#define MONITOR_LOG_MALFORMED 10        /* malformed messages logged, then quiet */

void monitor_conn_init(struct monitor_conn *c, const char *endpoint, bool follow)
{
    memset(c, 0, sizeof *c);
    c->endpoint = endpoint;
    c->follow = follow;
    c->hello_sent = -INFINITY;
    c->ctx = zmq_ctx_new();
    if (!c->ctx)
        die("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    msg_limits_default(&c->lim);
    msg_arena_init(&c->arena);
}

static void close_socket(void **s, int linger_ms)
{
    if (!*s)
        return;
    if (zmq_setsockopt(*s, ZMQ_LINGER, &linger_ms, sizeof linger_ms) != 0)
        monitor_log("zmq_setsockopt(ZMQ_LINGER): %s", zmq_strerror(zmq_errno()));
    if (zmq_close(*s) != 0)
        monitor_log("zmq_close: %s", zmq_strerror(zmq_errno()));
    *s = NULL;
}

static int send_msg(struct monitor_conn *c, const struct msg *m)
{
    char err[ERR_LEN];
    if (!c->work)
        return -1;
    if (msg_send(c->work, m, err) < 0) {
        monitor_log("cannot send %s: %s", msg_kind_name(m->kind), err);
        return -1;
    }
    return 0;
}

void monitor_conn_free(struct monitor_conn *c)
{
    if (c->work && c->state != MONITOR_CONN_CONNECTING) {
        struct msg m = {.kind = MSG_KIND_BYE};
        m.bye.reason = "monitor stopping";
        send_msg(c, &m);
    }
    close_socket(&c->work, MONITOR_BYE_LINGER_MS);
    close_socket(&c->sub, 0);
    msg_arena_free(&c->arena);
    if (c->ctx && zmq_ctx_term(c->ctx) != 0)
        monitor_log("zmq_ctx_term: %s", zmq_strerror(zmq_errno()));
    c->ctx = NULL;
}

const char *monitor_conn_state_name(const struct monitor_conn *c)
{
    switch (c->state) {
    case MONITOR_CONN_CONNECTING: return "connecting";
    case MONITOR_CONN_FETCHING: return "fetching history";
    case MONITOR_CONN_LIVE: return "live";
    }
    return "?";
}

static void *open_socket(struct monitor_conn *c, int type, const char *endpoint)
{
    char err[ERR_LEN];
    void *s = zmq_socket(c->ctx, type);
    if (!s) {
        monitor_log("zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 0, sndtimeo = MONITOR_SEND_TIMEOUT_MS;
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo) != 0) {
        monitor_log("zmq_setsockopt: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (msg_limits_apply(s, &c->lim, err) < 0) {
        monitor_log("%s", err);
        goto fail;
    }
    if (type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "METRIC", 6) != 0) {
        monitor_log("zmq_setsockopt(ZMQ_SUBSCRIBE): %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_connect(s, endpoint) != 0) {
        monitor_log("connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return s;
fail:
    zmq_close(s);
    return NULL;
}

/* The broadcast endpoint to connect to: a trainer bound to every interface
 * (tcp://0.0.0.0:P, or a star for the host) is reached at the host we
 * reached it at. */
static void broadcast_endpoint(char *out, size_t cap, const char *work, const char *bc)
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

static void send_hello(struct monitor_conn *c, double now)
{
    close_socket(&c->work, 0);
    close_socket(&c->sub, 0);
    c->hello_sent = now;
    c->work = open_socket(c, ZMQ_DEALER, c->endpoint);
    if (!c->work)
        return;
    char host[256] = "?", name[MSG_NAME_MAX];
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "?");
    snprintf(name, sizeof name, "monitor-%d@%s", (int)getpid(), host);
    struct msg m = {.kind = MSG_KIND_HELLO};
    m.hello = (struct msg_hello){
        .role = MSG_ROLE_MONITOR,
        .name = name,
        .software = "lejepa-monitor " LEJEPA_VERSION,
        .pid = (uint64_t)getpid(),
        .credit = 0,
        .has_dataset = false,
    };
    send_msg(c, &m);
}

static void request_history(struct monitor_conn *c)
{
    struct msg m = {.kind = MSG_KIND_HISTORY};
    m.history = (struct msg_history){.start = c->history_next};
    send_msg(c, &m);
}

static void on_welcome(struct monitor_conn *c, struct monitor_history *h,
                       const struct msg_welcome *w, double now)
{
    if (c->state != MONITOR_CONN_CONNECTING) {
        monitor_log("ignoring a second WELCOME");
        return;
    }
    if (strcmp(c->run, w->run) != 0) {
        if (c->run[0]) {
            monitor_log("the trainer now runs '%s' (was '%s'): starting over", w->run,
                        c->run);
            monitor_history_reset(h);
        }
        snprintf(c->run, sizeof c->run, "%s", w->run);
        c->run_changed = true;
    }
    c->heartbeat_ms = w->heartbeat_ms ? w->heartbeat_ms : MONITOR_DEFAULT_HEARTBEAT_MS;
    c->connects++;
    c->state = MONITOR_CONN_FETCHING;
    c->history_next = 0;
    c->history_done = false;
    c->catchup_sent = false;
    c->last_beat = now;
    if (c->follow) {
        /* Subscribe first: a line appended while the history is fetched
         * then arrives as METRIC (and is deduplicated if both come). */
        char bc[MSG_NAME_MAX + 64];
        broadcast_endpoint(bc, sizeof bc, c->endpoint, w->broadcast);
        c->sub = open_socket(c, ZMQ_SUB, bc);
        monitor_log("attached to run '%s'; metrics from %s", c->run, bc);
    } else {
        monitor_log("attached to run '%s'", c->run);
    }
    request_history(c);
}

static void on_history(struct monitor_conn *c, struct monitor_history *h,
                       const struct msg_history *r, double now)
{
    if (c->state == MONITOR_CONN_CONNECTING)
        return;
    if (r->start != c->history_next) {
        monitor_log("HISTORY reply starts at line %llu, expected %llu: asking again",
                    (unsigned long long)r->start, (unsigned long long)c->history_next);
        request_history(c);
        return;
    }
    for (uint32_t i = 0; i < r->n_lines; i++) {
        char err[ERR_LEN];
        if (monitor_history_add_line(h, r->lines[i], strlen(r->lines[i]), err) < 0 &&
            h->bad_lines <= MONITOR_LOG_MALFORMED)
            monitor_log("history line %llu: %s",
                        (unsigned long long)(r->start + i), err);
    }
    c->history_next += r->n_lines;
    c->history_lines += r->n_lines;
    /* An empty page that is not the last would make us ask forever. */
    if (!r->done && r->n_lines == 0)
        monitor_log("empty HISTORY page at line %llu not marked done: "
                    "taking it as the end", (unsigned long long)r->start);
    if (!r->done && r->n_lines > 0) {
        request_history(c);
        return;
    }
    if (!c->history_done) {
        c->history_done = true;
        c->done_at = now;
        c->state = MONITOR_CONN_LIVE;
        monitor_log("history: %llu lines", (unsigned long long)c->history_next);
    }
}

static void on_metric(struct monitor_conn *c, struct monitor_history *h,
                      const struct msg_metric *m)
{
    const char *keys[MONITOR_MAX_VALUES];
    double vals[MONITOR_MAX_VALUES];
    size_t n = m->n_values < MONITOR_MAX_VALUES ? m->n_values : MONITOR_MAX_VALUES;
    for (size_t i = 0; i < n; i++) {
        keys[i] = m->values[i].key;
        vals[i] = m->values[i].value;
    }
    struct monitor_record r = {
        .time = m->time, .step = m->step, .epoch = m->epoch,
        .source = msg_source_name(m->source), .n = n, .keys = keys, .values = vals,
    };
    int stored = monitor_history_add(h, &r);
    if (c->on_metric)
        c->on_metric(c->cb_ctx, &r, stored);
}

static void log_malformed(struct monitor_conn *c, const char *where, const char *err)
{
    c->malformed++;
    if (c->malformed <= MONITOR_LOG_MALFORMED)
        monitor_log("malformed message on the %s socket: %s", where, err);
}

/* Handles what waits on the work socket; returns an event and its text. */
static enum monitor_conn_event drain_work(struct monitor_conn *c, struct monitor_history *h,
                                          double now, char *text)
{
    for (int k = 0; k < MONITOR_DRAIN_MAX && c->work; k++) {
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        if (msg_recv(c->work, ZMQ_DONTWAIT, &frame, &m, &c->lim, &c->arena, err) < 0) {
            zmq_msg_close(&frame);
            if (errno == EAGAIN)
                break;
            log_malformed(c, "work", err);
            continue;
        }
        c->last_heard = now;
        enum monitor_conn_event ev = MONITOR_CONN_OK;
        switch (m.kind) {
        case MSG_KIND_WELCOME: on_welcome(c, h, &m.welcome, now); break;
        case MSG_KIND_HISTORY: on_history(c, h, &m.history, now); break;
        case MSG_KIND_HEARTBEAT: break;
        case MSG_KIND_REFUSE:
            snprintf(text, ERR_LEN, "%s", m.refuse.reason);
            ev = MONITOR_CONN_REFUSED;
            break;
        case MSG_KIND_BYE:
            snprintf(text, ERR_LEN, "%s", m.bye.reason);
            ev = MONITOR_CONN_BYE;
            break;
        default:
            log_malformed(c, "work", msg_kind_name(m.kind));
        }
        zmq_msg_close(&frame);
        if (ev != MONITOR_CONN_OK)
            return ev;
    }
    return MONITOR_CONN_OK;
}

static void drain_sub(struct monitor_conn *c, struct monitor_history *h, double now)
{
    for (int k = 0; k < MONITOR_DRAIN_MAX && c->sub; k++) {
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        if (msg_recv_sub(c->sub, ZMQ_DONTWAIT, &frame, &m, &c->lim, &c->arena, err) < 0) {
            zmq_msg_close(&frame);
            if (errno == EAGAIN)
                break;
            log_malformed(c, "broadcast", err);
            continue;
        }
        c->last_heard = now;
        if (m.kind == MSG_KIND_METRIC)
            on_metric(c, h, &m.metric);
        zmq_msg_close(&frame);
    }
}

static void keep_alive(struct monitor_conn *c, double now)
{
    double beat = c->heartbeat_ms / 1000.0;
    if (now - c->last_heard > MONITOR_SILENT_BEATS * beat) {
        monitor_log("trainer silent for %.1f s: reconnecting to %s", now - c->last_heard,
                    c->endpoint);
        close_socket(&c->work, 0);
        close_socket(&c->sub, 0);
        c->state = MONITOR_CONN_CONNECTING;
        c->hello_sent = -INFINITY;
        return;
    }
    if (now - c->last_beat >= beat) {
        struct msg m = {.kind = MSG_KIND_HEARTBEAT};
        m.heartbeat = (struct msg_heartbeat){.time = util_time_unix(), .held = 0};
        send_msg(c, &m);
        c->last_beat = now;
    }
    if (c->follow && c->history_done && !c->catchup_sent &&
        now - c->done_at >= MONITOR_CATCHUP_MS / 1000.0) {
        c->catchup_sent = true;
        request_history(c);
    }
}

enum monitor_conn_event monitor_conn_step(struct monitor_conn *c,
                                          struct monitor_history *h, int wake_fd,
                                          int timeout_ms, char *text)
{
    double now = util_time_mono();
    if (c->state == MONITOR_CONN_CONNECTING &&
        now - c->hello_sent >= MONITOR_HELLO_RETRY_MS / 1000.0) {
        if (c->hello_sent > -INFINITY)
            monitor_log("no answer from %s for %d s: trying again", c->endpoint,
                        MONITOR_HELLO_RETRY_MS / 1000);
        send_hello(c, now);
        c->last_heard = now;
    }
    zmq_pollitem_t items[3];
    int n = 0;
    if (c->work)
        items[n++] = (zmq_pollitem_t){.socket = c->work, .events = ZMQ_POLLIN};
    if (c->sub)
        items[n++] = (zmq_pollitem_t){.socket = c->sub, .events = ZMQ_POLLIN};
    if (wake_fd >= 0)
        items[n++] = (zmq_pollitem_t){.fd = wake_fd, .events = ZMQ_POLLIN};
    if (zmq_poll(items, n, timeout_ms) < 0 && zmq_errno() != EINTR)
        monitor_log("zmq_poll: %s", zmq_strerror(zmq_errno()));
    now = util_time_mono();
    enum monitor_conn_event ev = drain_work(c, h, now, text);
    if (ev != MONITOR_CONN_OK)
        return ev;
    drain_sub(c, h, now);
    if (c->state != MONITOR_CONN_CONNECTING)
        keep_alive(c, now);
    return MONITOR_CONN_OK;
}
