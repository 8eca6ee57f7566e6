/*
 * monitor_conn.c: the monitor's handshake / history / live sequence of
 * monitor_conn.h on top of proto/client.h. Nothing here draws.
 */
#include "monitor_conn.h"

#include <string.h>
#include <unistd.h>

#include "lejepa_version.h"
#include "monitor_table.h"
#include "util.h"

#define MONITOR_DRAIN_MAX 1000          /* messages per socket per turn */
#define MONITOR_LOG_MALFORMED 10        /* malformed history lines logged */

void monitor_conn_init(struct monitor_conn *c, const char *endpoint, bool follow)
{
    memset(c, 0, sizeof *c);
    c->follow = follow;
    char host[256] = "?";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "?");
    snprintf(c->name, sizeof c->name, "monitor-%d@%s", (int)getpid(), host);
    const struct msg_hello hello = {
        .role = MSG_ROLE_MONITOR, .name = c->name,
        .software = "lejepa-monitor " LEJEPA_VERSION, .pid = (uint64_t)getpid(),
        .credit = 0, .has_dataset = false,
    };
    client_init(&c->cl, endpoint, &hello, monitor_log);
}

void monitor_conn_free(struct monitor_conn *c)
{
    if (c->cl.welcomed)
        client_send_bye(c->cl.work, "monitor stopping", monitor_log);
    client_free(&c->cl, CLIENT_BYE_LINGER_MS);
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

static void request_history(struct monitor_conn *c)
{
    struct msg m = {.kind = MSG_KIND_HISTORY};
    m.history = (struct msg_history){.start = c->history_next};
    client_send(&c->cl, &m);
}

static void on_welcome(struct monitor_conn *c, struct monitor_history *h,
                       const struct msg_welcome *w)
{
    /* Subscribe first: a line appended while the history is fetched then
     * arrives as METRIC (and is deduplicated if both come). */
    static const char *const metric[] = {"METRIC", NULL};
    if (client_welcome(&c->cl, w, c->follow ? metric : NULL, NULL) != 0)
        return;
    if (strcmp(c->run, w->run) != 0) {
        if (c->run[0]) {
            monitor_log("the trainer now runs '%s' (was '%s'): starting over", w->run,
                        c->run);
            monitor_history_reset(h);
        }
        snprintf(c->run, sizeof c->run, "%s", w->run);
        c->run_changed = true;
    }
    c->connects++;
    c->state = MONITOR_CONN_FETCHING;
    c->history_next = 0;
    c->history_done = false;
    c->catchup_sent = false;
    if (c->follow)
        monitor_log("attached to run '%s'; metrics from %s", c->run, c->cl.broadcast);
    else
        monitor_log("attached to run '%s'", c->run);
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

/* What a drain of the monitor's sockets works on. */
struct drain {
    struct monitor_conn *c;
    struct monitor_history *h;
    char *text;                     /* REFUSE / BYE reason (ERR_LEN) */
};

/* A message on the work socket; returns a monitor_conn_event. */
static int on_work(void *ctx, const struct msg *m)
{
    struct drain *d = ctx;
    switch (m->kind) {
    case MSG_KIND_WELCOME:
        on_welcome(d->c, d->h, &m->welcome);
        return MONITOR_CONN_OK;
    case MSG_KIND_HISTORY:
        on_history(d->c, d->h, &m->history, util_time_mono());
        return MONITOR_CONN_OK;
    case MSG_KIND_REFUSE:
        snprintf(d->text, ERR_LEN, "%s", m->refuse.reason);
        return MONITOR_CONN_REFUSED;
    case MSG_KIND_BYE:
        snprintf(d->text, ERR_LEN, "%s", m->bye.reason);
        return MONITOR_CONN_BYE;
    default:
        d->c->cl.malformed++;
        monitor_log("unexpected %s from the trainer (ignored)", msg_kind_name(m->kind));
        return MONITOR_CONN_OK;
    }
}

/* A message on the broadcast socket. */
static int on_broadcast(void *ctx, const struct msg *m)
{
    struct drain *d = ctx;
    if (m->kind == MSG_KIND_METRIC)
        on_metric(d->c, d->h, &m->metric);
    return MONITOR_CONN_OK;
}

enum monitor_conn_event monitor_conn_step(struct monitor_conn *c,
                                          struct monitor_history *h, int wake_fd,
                                          int timeout_ms, char *text)
{
    client_hello_retry(&c->cl, util_time_mono(), MONITOR_HELLO_RETRY_MS / 1000.0);
    zmq_pollitem_t wake = {.fd = wake_fd, .events = ZMQ_POLLIN};
    client_poll(&c->cl, &wake, wake_fd >= 0 ? 1 : 0, timeout_ms);
    struct drain d = {.c = c, .h = h, .text = text};
    if (client_auth_failed(&c->cl, text))
        return MONITOR_CONN_REFUSED;    /* the same keys would fail again */
    int ev = client_drain(&c->cl, false, MONITOR_DRAIN_MAX, on_work, &d);
    if (ev != MONITOR_CONN_OK)
        return (enum monitor_conn_event)ev;
    client_drain(&c->cl, true, MONITOR_DRAIN_MAX, on_broadcast, &d);
    double now = util_time_mono();
    if (!c->cl.welcomed) {
        c->state = MONITOR_CONN_CONNECTING;
        return MONITOR_CONN_OK;
    }
    if (client_keep_alive(&c->cl, now)) {
        c->state = MONITOR_CONN_CONNECTING;
        return MONITOR_CONN_OK;
    }
    if (c->follow && c->history_done && !c->catchup_sent &&
        now - c->done_at >= MONITOR_CATCHUP_MS / 1000.0) {
        c->catchup_sent = true;
        request_history(c);
    }
    return MONITOR_CONN_OK;
}
