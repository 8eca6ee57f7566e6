/*
 * loader_loop.c: the life of a loader (loader_run in loader.h), one poll
 * loop on the main thread over the DEALER socket, the signal self-pipe and
 * the workers' pipes:
 *
 *   DISCONNECTED --open, HELLO--> HELLO --WELCOME--> SERVING
 *        ^                          | no answer in backoff: new socket, HELLO
 *        +---- trainer silent for LOADER_SILENCE_BEATS heartbeats, or BYE:
 *              tickets in hand are dropped (the trainer re-issues them)
 *
 * REFUSE exits 1 with the reason. A first SIGINT/SIGTERM stops taking
 * tickets and finishes those in hand within LOADER_GRACE_S, then sends
 * RETURN (whatever is left) and BYE and exits 0; a second signal sends
 * RETURN and BYE at once and exits 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"
#include "loader_conn.h"
#include "loader_tickets.h"
#include "loader_work.h"
#include "util.h"

/* Until WELCOME says otherwise. */
#define LOADER_HEARTBEAT_MS_DEFAULT 1000
/* Heartbeats of silence after which the trainer counts as gone. */
#define LOADER_SILENCE_BEATS 5
/* Waiting for WELCOME: first wait, doubling up to the max, per attempt. */
#define LOADER_BACKOFF_MIN_MS 500
#define LOADER_BACKOFF_MAX_MS 8000
/* Shutdown: time to finish tickets in hand before handing them back. */
#define LOADER_GRACE_S 10.0
/* Time given to RETURN and BYE to leave before the process exits; shorter
 * before WELCOME, when there may be no trainer to take them at all. */
#define LOADER_EXIT_LINGER_MS 2000
#define LOADER_HELLO_LINGER_MS 200
/* Seconds after which a rank endpoint that has not answered HELLO is
 * given up for rank 0 (which assigns a rank again). */
#define LOADER_RANK_GIVE_UP_S 10.0
/* Progress line interval. */
#define LOADER_STATS_S 10.0
/* Messages read per loop turn, so workers and heartbeats are not starved. */
#define LOADER_RECV_BURST 64
/* Tickets received while stopping, handed back in the final RETURN. */
#define LOADER_RETURN_MAX 65536

enum loop_state { STATE_DISCONNECTED, STATE_HELLO, STATE_SERVING };

struct loop {
    const struct loader_opts *o;
    const struct dataset *d;
    struct loader_conn conn;
    struct work_pool *pool;
    struct work_result *results;    /* (o->workers) */
    struct ticket_set tickets;
    struct config cfg;              /* from the last WELCOME */
    /* where the next connection goes: o->endpoint, or the rank endpoint a
     * data-parallel trainer's rank 0 named in WELCOME.serve */
    char target[MSG_NAME_MAX + 1];
    double target_since;            /* when the target became a rank's */
    enum loop_state state;
    double retry_at;                /* DISCONNECTED: when to connect */
    double hello_deadline;          /* HELLO: when to give up this attempt */
    double backoff_s;
    double heartbeat_s;
    double last_rx, last_hb;
    int signals;                    /* signals seen */
    double stop_at;                 /* grace deadline once stopping */
    uint64_t *late;                 /* tickets that came while stopping */
    uint32_t n_late;
    /* progress */
    uint64_t served, samples, failures, unexpected;
    uint64_t window_samples;
    double window_start;
};

static double now_s(void) { return util_time_mono(); }

/* Drops the connection and tickets in hand; reconnects after `delay_s`. */
static void loop_disconnect(struct loop *L, double delay_s, const char *why)
{
    if (L->tickets.count)
        loader_log("%s: dropping %u ticket(s) in hand (the trainer re-issues them)", why,
                   L->tickets.count);
    else
        loader_log("%s", why);
    tickets_clear(&L->tickets);
    conn_close(&L->conn, 0);
    L->state = STATE_DISCONNECTED;
    L->retry_at = now_s() + delay_s;
    /* a rank that went away: rank 0 assigns a rank again */
    snprintf(L->target, sizeof L->target, "%s", L->o->endpoint);
}

static void loop_connect(struct loop *L)
{
    char err[ERR_LEN];
    if (conn_open(&L->conn, L->o->name, L->target, err) < 0 ||
        conn_send_hello(&L->conn, L->o, L->d) < 0) {
        loader_log("cannot connect: %s; retrying in %.1f s", err, L->backoff_s);
        conn_close(&L->conn, 0);
        L->retry_at = now_s() + L->backoff_s;
        return;
    }
    L->state = STATE_HELLO;
    L->hello_deadline = now_s() + L->backoff_s;
}

/* WELCOME: the run's config decides the views and the limits. Returns -1
 * when the config is unusable (the loader cannot serve this trainer). */
static int loop_welcome(struct loop *L, const struct msg_welcome *w)
{
    char err[ERR_LEN];
    struct config c;
    config_defaults(&c);
    if (config_load_string(&c, w->config, "WELCOME config", err) < 0 ||
        config_validate(&c, err) < 0 || work_views_check(&c.views, err) < 0) {
        fprintf(stderr, "lejepa-loader: the trainer's config is unusable: %s\n", err);
        return -1;
    }
    if (w->serve && strcmp(L->target, L->o->endpoint) == 0 &&
        strcmp(w->serve, L->o->endpoint) != 0) {
        /* rank 0 of a data-parallel trainer: serve the rank it names (only
         * rank 0 redirects, so there are no chains) */
        if (client_endpoint_check(w->serve, err) < 0) {
            fprintf(stderr, "lejepa-loader: the trainer names a rank endpoint "
                    "that is unusable: %s\n", err);
            return -1;
        }
        loader_log("the trainer is data parallel: serving the rank at %s", w->serve);
        loop_disconnect(L, 0, "leaving rank 0 for that rank");
        snprintf(L->target, sizeof L->target, "%s", w->serve);
        L->backoff_s = LOADER_BACKOFF_MIN_MS / 1000.0;
        L->target_since = now_s();
        return 0;
    }
    L->cfg = c;
    struct msg_limit_params p;
    msg_limit_params_from_config(&p, &c);
    msg_limits_compute(&L->conn.lim, &p);
    uint32_t hb = w->heartbeat_ms ? w->heartbeat_ms : LOADER_HEARTBEAT_MS_DEFAULT;
    L->heartbeat_s = hb / 1000.0;
    L->state = STATE_SERVING;
    L->backoff_s = LOADER_BACKOFF_MIN_MS / 1000.0;
    L->last_hb = now_s();
    loader_log("welcomed to run %s as client %" PRIu64 " (id %s): views %lldx%lld + "
               "%lldx%lld, %lld channel(s), heartbeat %u ms", w->run, w->client_id,
               L->conn.routing_id, (long long)c.views.global_count,
               (long long)c.views.global_size, (long long)c.views.local_count,
               (long long)c.views.local_size, (long long)c.views.channels, hb);
    return 0;
}

/* One message from the trainer. Returns an exit status to stop with, or -1
 * to carry on. */
static int loop_handle(struct loop *L, const struct msg *m)
{
    switch (m->kind) {
    case MSG_KIND_REFUSE:
        if (strcmp(L->target, L->o->endpoint) != 0) {
            /* one rank of a data-parallel trainer: rank 0 decides again */
            loader_log("refused by the rank at %s (%s): back to %s", L->target,
                       m->refuse.reason, L->o->endpoint);
            loop_disconnect(L, L->backoff_s, "leaving that rank");
            return -1;
        }
        fprintf(stderr, "lejepa-loader: refused by the trainer: %s\n", m->refuse.reason);
        loader_log("refused by the trainer: %s", m->refuse.reason);
        return 1;
    case MSG_KIND_WELCOME:
        if (L->state != STATE_HELLO)
            break;
        return loop_welcome(L, &m->welcome) < 0 ? 1 : -1;
    case MSG_KIND_BYE:
        if (L->signals) {
            loader_log("trainer said BYE (%s) while stopping", m->bye.reason);
            tickets_clear(&L->tickets);
            L->stop_at = 0;
            return -1;
        }
        loader_log("trainer said BYE: %s", m->bye.reason);
        loop_disconnect(L, LOADER_BACKOFF_MIN_MS / 1000.0,
                        "waiting for a trainer");
        return -1;
    case MSG_KIND_HEARTBEAT:
        return -1;
    case MSG_KIND_TICKET:
        if (L->state != STATE_SERVING)
            break;
        if (L->signals) {
            if (L->n_late < LOADER_RETURN_MAX)
                L->late[L->n_late++] = m->ticket.ticket;
            return -1;
        }
        if (L->tickets.count >= L->o->credit)
            loader_log("ticket %" PRIu64 " beyond the credit of %u (serving it anyway)",
                       m->ticket.ticket, L->o->credit);
        tickets_add(&L->tickets, &m->ticket);
        return -1;
    default:
        break;
    }
    L->unexpected++;
    loader_log("unexpected %s from the trainer (ignored)", msg_kind_name(m->kind));
    return -1;
}

static int loop_receive(struct loop *L)
{
    for (int i = 0; i < LOADER_RECV_BURST && L->conn.sock; i++) {
        zmq_msg_t frame;
        struct msg m;
        int rc = conn_recv(&L->conn, &frame, &m);
        if (rc == 0)
            break;
        L->last_rx = now_s();   /* any frame, even malformed, shows a live peer */
        if (rc < 0)
            continue;
        int status = loop_handle(L, &m);
        zmq_msg_close(&frame);
        if (status >= 0)
            return status;
    }
    return -1;
}

/* Hands samples to idle workers; sends every finished ticket as a BATCH. */
static void loop_work(struct loop *L)
{
    struct work_job job;
    uint64_t tag;
    while (work_pool_idle(L->pool) > 0 &&
           tickets_next_job(&L->tickets, L->d, &L->cfg.views, &job, &tag)) {
        if (work_pool_submit(L->pool, &job, tag) < 0) {
            tickets_requeue(&L->tickets, tag);
            break;
        }
    }
    struct held_ticket *h;
    while ((h = tickets_pop_done(&L->tickets))) {
        struct msg m;
        struct batch_buf b;
        tickets_pack_batch(&m, &b, h, L->d, &L->cfg.views);
        for (uint32_t i = 0; i < m.batch.n_failures; i++)
            loader_log("ticket %" PRIu64 ": sample %" PRIu64 " (%s) failed: %s",
                       h->t.ticket, m.batch.failures[i].index, m.batch.failures[i].path,
                       m.batch.failures[i].reason);
        int rc = conn_send(&L->conn, &m);
        tickets_batch_free(&b);
        L->served++;
        L->samples += h->t.n;
        L->window_samples += h->t.n;
        L->failures += h->failed;
        ticket_free(h);
        if (rc < 0 && !L->signals) {
            loop_disconnect(L, L->backoff_s, "the trainer is not reading");
            return;
        }
    }
}

static void loop_stats(struct loop *L)
{
    double now = now_s();
    if (now - L->window_start < LOADER_STATS_S)
        return;
    double rate = L->window_samples / (now - L->window_start);
    loader_log("%s: %" PRIu64 " tickets served, %.1f samples/s, %" PRIu64 " failures, "
               "%u held, %d busy, %" PRIu64 " malformed",
               L->state == STATE_SERVING ? "serving" : "waiting for a trainer",
               L->served, rate, L->failures, L->tickets.count,
               work_pool_busy(L->pool), L->conn.malformed);
    L->window_start = now;
    L->window_samples = 0;
}

/* Sends RETURN (tickets in hand and those that came late) and BYE; only
 * BYE while waiting for WELCOME. */
static void loop_hand_back(struct loop *L)
{
    if (L->state == STATE_HELLO)    /* the trainer may have welcomed us already */
        conn_send_bye(&L->conn, "loader shutting down");
    if (L->state != STATE_SERVING)
        return;
    uint32_t n = tickets_ids(&L->tickets, L->late + L->n_late, LOADER_RETURN_MAX - L->n_late);
    n += L->n_late;
    if (n > 0) {
        loader_log("returning %u unfinished ticket(s)", n);
        conn_send_return(&L->conn, L->late, n);
    }
    conn_send_bye(&L->conn, "loader shutting down");
}

/* Milliseconds zmq_poll may sleep: until the earliest timer. */
static long loop_timeout_ms(const struct loop *L)
{
    double now = now_s(), next = L->window_start + LOADER_STATS_S;
    if (L->state == STATE_DISCONNECTED && L->retry_at < next)
        next = L->retry_at;
    if (L->state == STATE_HELLO && L->hello_deadline < next)
        next = L->hello_deadline;
    if (L->state == STATE_SERVING) {
        if (L->last_hb + L->heartbeat_s < next)
            next = L->last_hb + L->heartbeat_s;
        if (L->last_rx + LOADER_SILENCE_BEATS * L->heartbeat_s < next)
            next = L->last_rx + LOADER_SILENCE_BEATS * L->heartbeat_s;
    }
    if (L->signals && L->stop_at < next)
        next = L->stop_at;
    long ms = next <= now ? 0 : (long)((next - now) * 1000.0) + 1;
    long wd = work_pool_next_deadline_ms(L->pool);
    return wd >= 0 && wd < ms ? wd : ms;
}

/* Timers: connect, HELLO retry, heartbeat, trainer silence. */
static void loop_timers(struct loop *L)
{
    double now = now_s();
    if (L->state == STATE_DISCONNECTED && now >= L->retry_at && !L->signals) {
        loop_connect(L);
    } else if (L->state == STATE_HELLO && now >= L->hello_deadline) {
        L->backoff_s *= 2;
        if (L->backoff_s > LOADER_BACKOFF_MAX_MS / 1000.0)
            L->backoff_s = LOADER_BACKOFF_MAX_MS / 1000.0;
        conn_close(&L->conn, 0);
        /* a rank that does not answer for seconds: back to rank 0 */
        if (now - L->target_since >= LOADER_RANK_GIVE_UP_S &&
            strcmp(L->target, L->o->endpoint) != 0) {
            loader_log("the rank at %s does not answer: back to %s", L->target,
                       L->o->endpoint);
            snprintf(L->target, sizeof L->target, "%s", L->o->endpoint);
        }
        loop_connect(L);   /* a fresh socket and routing id, HELLO again */
    } else if (L->state == STATE_SERVING) {
        if (now - L->last_rx > LOADER_SILENCE_BEATS * L->heartbeat_s && !L->signals) {
            loop_disconnect(L, L->backoff_s, "no word from the trainer for "
                            "several heartbeats, reconnecting");
            return;
        }
        if (now - L->last_hb >= L->heartbeat_s) {
            L->last_hb = now;
            if (conn_send_heartbeat(&L->conn, L->tickets.count) < 0 && !L->signals)
                loop_disconnect(L, L->backoff_s, "cannot send a heartbeat");
        }
    }
}

/* Reads the self-pipe; returns an exit status to stop with, or -1. */
static int loop_signal(struct loop *L, int stop_fd)
{
    char buf[16];
    ssize_t r = read(stop_fd, buf, sizeof buf);
    if (r <= 0)
        return -1;
    L->signals += (int)r;
    if (L->signals >= 2) {
        loader_log("second signal: handing back tickets and exiting");
        loop_hand_back(L);
        return 1;
    }
    loader_log("stopping: finishing %u ticket(s) in hand within %.0f s", L->tickets.count,
               LOADER_GRACE_S);
    L->stop_at = now_s() + LOADER_GRACE_S;
    return -1;
}

static int loop_turn(struct loop *L, int stop_fd)
{
    enum { MAX_ITEMS = 3 + 1024 };
    zmq_pollitem_t items[MAX_ITEMS];
    int n = 0;
    items[n++] = (zmq_pollitem_t){.fd = stop_fd, .events = ZMQ_POLLIN};
    int sock_item = -1;
    if (L->conn.sock) {
        sock_item = n;
        items[n++] = (zmq_pollitem_t){.socket = L->conn.sock, .events = ZMQ_POLLIN};
    }
    if (L->conn.watch.pair)     /* a failed handshake wakes the loop */
        items[n++] = (zmq_pollitem_t){.socket = L->conn.watch.pair, .events = ZMQ_POLLIN};
    int first_worker = n;
    n += work_pool_poll_items(L->pool, items + n, MAX_ITEMS - n);
    if (zmq_poll(items, n, loop_timeout_ms(L)) < 0) {
        if (zmq_errno() != EINTR)
            loader_log("zmq_poll: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int status = -1;
    if ((items[0].revents & ZMQ_POLLIN) && (status = loop_signal(L, stop_fd)) >= 0)
        return status;
    char text[ERR_LEN];
    if (conn_auth_failed(&L->conn, L->target, text)) {
        /* like a REFUSE: retrying with the same keys cannot succeed (at
         * a rank of a data-parallel trainer: back to rank 0) */
        loader_log("%s", text);
        if (strcmp(L->target, L->o->endpoint) == 0)
            return 1;
        loop_disconnect(L, L->backoff_s, "leaving that rank");
        return -1;
    }
    if (sock_item >= 0 && (items[sock_item].revents & ZMQ_POLLIN) &&
        (status = loop_receive(L)) >= 0)
        return status;
    int k = work_pool_collect(L->pool, items + first_worker, n - first_worker, L->results,
                              L->o->workers);
    for (int i = 0; i < k; i++)
        tickets_complete(&L->tickets, &L->results[i]);
    loop_work(L);
    loop_timers(L);
    loop_stats(L);
    if (L->signals && (L->tickets.count == 0 || now_s() >= L->stop_at)) {
        loop_hand_back(L);
        return 0;
    }
    return -1;
}

int loader_run(const struct loader_opts *o, const struct dataset *d, int stop_fd)
{
    struct loop L;
    memset(&L, 0, sizeof L);
    L.o = o;
    L.d = d;
    conn_init(&L.conn);
    L.conn.keys = &o->keys;
    tickets_init(&L.tickets);
    L.pool = work_pool_new(o->workers, o->sample_timeout_s, o->worker_memory_mb);
    L.results = xcalloc((size_t)o->workers, sizeof *L.results);
    L.late = xmalloc(sizeof *L.late * LOADER_RETURN_MAX);
    L.backoff_s = LOADER_BACKOFF_MIN_MS / 1000.0;
    L.heartbeat_s = LOADER_HEARTBEAT_MS_DEFAULT / 1000.0;
    L.window_start = now_s();
    L.state = STATE_DISCONNECTED;
    snprintf(L.target, sizeof L.target, "%s", o->endpoint);
    loader_log("%d worker(s), credit %u, connecting to %s%s", o->workers, o->credit,
               o->endpoint, o->keys.enabled ? " with CurveZMQ keys" : "");

    int status;
    while ((status = loop_turn(&L, stop_fd)) < 0)
        ;
    loader_log("exiting: %" PRIu64 " tickets served, %" PRIu64 " samples, %" PRIu64
               " failures, %" PRIu64 " malformed messages", L.served, L.samples,
               L.failures, L.conn.malformed);
    conn_close(&L.conn, L.state == STATE_SERVING ? LOADER_EXIT_LINGER_MS
                                                 : LOADER_HELLO_LINGER_MS);
    tickets_clear(&L.tickets);
    work_pool_free(L.pool);
    conn_free(&L.conn);
    free(L.results);
    free(L.late);
    return status;
}
