/*
 * eval_conn.c: lejepa-eval's online mode (proto/PROTOCOL.md): a DEALER to
 * the trainer's work endpoint (HELLO as an evaluator, WELCOME, HEARTBEAT,
 * RESULT, BYE) and a SUB to the broadcast endpoint WELCOME names, subscribed
 * to EMBED (kNN, linear) and FEATMAP (segmap). The SUB socket's message-size
 * limit comes from the run's config in WELCOME plus generous model numbers
 * (the evaluator does not know the model) and is set before it connects.
 * This thread only moves messages: scoring runs in eval_worker, so heartbeats
 * go out while a task takes seconds. A trainer silent for
 * EVAL_SILENT_BEATS heartbeats, or one that says BYE, is dropped and HELLO
 * starts over; REFUSE exits 1; SIGINT/SIGTERM send BYE and exit 0.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "eval.h"
#include "eval_snapshot.h"
#include "eval_worker.h"
#include "lejepa_version.h"
#include "util.h"

#define EVAL_SILENT_BEATS 5             /* heartbeats of silence = trainer gone */
#define EVAL_HELLO_RETRY_MS 5000        /* no WELCOME: new socket, new HELLO */
#define EVAL_DEFAULT_HEARTBEAT_MS 1000  /* when WELCOME says 0 */
#define EVAL_POLL_MS 100
#define EVAL_SEND_TIMEOUT_MS 1000
#define EVAL_BYE_LINGER_MS 500
#define EVAL_DRAIN_MAX 1000             /* messages per socket per turn */
#define EVAL_LOG_MALFORMED 20           /* malformed messages logged, then quiet */
/* Queued broadcast messages: a whole snapshot's chunks fit many times. */
#define EVAL_SUB_RCVHWM 100000
/* What the evaluator allows on the broadcast socket, not knowing the model. */
#define EVAL_LIMIT_EMB_DIM 8192
#define EVAL_LIMIT_EMBED_CHUNK 4096
#define EVAL_LIMIT_FEATMAP_IMAGES 64
#define EVAL_LIMIT_FEAT_DIM 2048
#define EVAL_LIMIT_GRID 64
#define EVAL_LIMIT_HEADS 16

struct conn {
    const struct eval_opts *o;
    void *ctx, *work, *sub;
    struct msg_limits lim_work, lim_sub;
    struct msg_arena arena;
    bool welcomed;
    char run[MSG_NAME_MAX];
    char out[4096];                 /* output directory of the current run */
    uint32_t heartbeat_ms;
    double hello_sent, last_heard, last_beat;   /* monotonic seconds */
    size_t malformed, results_sent, results_dropped;
    struct eval_assembler snaps;
    struct eval_worker worker;
};

static void close_socket(void **s, int linger_ms)
{
    if (!*s)
        return;
    if (zmq_setsockopt(*s, ZMQ_LINGER, &linger_ms, sizeof linger_ms) != 0)
        eval_log("zmq_setsockopt(ZMQ_LINGER): %s", zmq_strerror(zmq_errno()));
    if (zmq_close(*s) != 0)
        eval_log("zmq_close: %s", zmq_strerror(zmq_errno()));
    *s = NULL;
}

static void *open_socket(struct conn *c, int type, const char *endpoint,
                         const struct msg_limits *lim)
{
    char err[ERR_LEN];
    void *s = zmq_socket(c->ctx, type);
    if (!s) {
        eval_log("zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 0, sndtimeo = EVAL_SEND_TIMEOUT_MS, hwm = EVAL_SUB_RCVHWM;
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo) != 0 ||
        (type == ZMQ_SUB && zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0)) {
        eval_log("zmq_setsockopt: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (msg_limits_apply(s, lim, err) < 0) {
        eval_log("%s", err);
        goto fail;
    }
    if (type == ZMQ_SUB) {
        unsigned t = c->o->tasks;
        if (((t & (EVAL_TASK_KNN | EVAL_TASK_LINEAR)) &&
             zmq_setsockopt(s, ZMQ_SUBSCRIBE, "EMBED", 5) != 0) ||
            ((t & EVAL_TASK_SEGMAP) && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "FEATMAP", 7) != 0)) {
            eval_log("zmq_setsockopt(ZMQ_SUBSCRIBE): %s", zmq_strerror(zmq_errno()));
            goto fail;
        }
    }
    if (zmq_connect(s, endpoint) != 0) {
        eval_log("connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return s;
fail:
    zmq_close(s);
    return NULL;
}

static int send_msg(struct conn *c, const struct msg *m)
{
    char err[ERR_LEN];
    if (!c->work)
        return -1;
    if (msg_send(c->work, m, err) < 0) {
        eval_log("cannot send %s: %s", msg_kind_name(m->kind), err);
        return -1;
    }
    return 0;
}

static void send_result(struct conn *c, const struct eval_result *r)
{
    if (!c->welcomed) {
        c->results_dropped++;
        eval_log("no trainer connected: %s result of step %llu dropped",
                 msg_source_name(r->source), (unsigned long long)r->step);
        return;
    }
    struct msg_value v[EVAL_RESULT_VALUES];
    for (int i = 0; i < r->n; i++)
        v[i] = (struct msg_value){.key = r->keys[i], .value = r->values[i]};
    struct msg m = {.kind = MSG_KIND_RESULT};
    m.result = (struct msg_metric){.time = util_time_unix(), .step = r->step, .epoch = 0,
                                   .source = r->source, .n_values = (uint32_t)r->n,
                                   .values = v};
    if (send_msg(c, &m) == 0)
        c->results_sent++;
}

/* A trainer bound to every interface (tcp://0.0.0.0:P or tcp://\*:P) is
 * reached at the host we reached its work socket at. */
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

static void disconnect(struct conn *c, double now)
{
    close_socket(&c->work, 0);
    close_socket(&c->sub, 0);
    c->welcomed = false;
    c->hello_sent = now;
}

static void send_hello(struct conn *c, double now)
{
    disconnect(c, now);
    c->work = open_socket(c, ZMQ_DEALER, c->o->endpoint, &c->lim_work);
    if (!c->work)
        return;
    struct msg m = {.kind = MSG_KIND_HELLO};
    m.hello = (struct msg_hello){
        .role = MSG_ROLE_EVALUATOR, .name = c->o->name,
        .software = "lejepa-eval " LEJEPA_VERSION, .pid = (uint64_t)getpid(),
        .credit = 0, .has_dataset = false,
    };
    send_msg(c, &m);
}

/* Limits of the broadcast socket: the run's views from its config, the
 * model-dependent numbers at the evaluator's generous bounds. */
static void sub_limits(struct conn *c, const char *config_text)
{
    struct config cfg;
    char err[ERR_LEN];
    config_defaults(&cfg);
    if (config_load_string(&cfg, config_text, "WELCOME.config", err) < 0) {
        eval_log("cannot read the run's config (%s): using default view sizes", err);
        config_defaults(&cfg);
    }
    struct msg_limit_params p;
    msg_limit_params_from_config(&p, &cfg);
    p.emb_dim = EVAL_LIMIT_EMB_DIM;
    p.embed_chunk = EVAL_LIMIT_EMBED_CHUNK;
    p.featmap_images = EVAL_LIMIT_FEATMAP_IMAGES;
    p.feat_dim = EVAL_LIMIT_FEAT_DIM;
    p.grid_h = p.grid_w = EVAL_LIMIT_GRID;
    p.heads = EVAL_LIMIT_HEADS;
    msg_limits_compute(&c->lim_sub, &p);
}

static void on_welcome(struct conn *c, const struct msg_welcome *w, double now)
{
    if (c->welcomed) {
        eval_log("ignoring a second WELCOME");
        return;
    }
    if (strcmp(c->run, w->run) != 0)
        snprintf(c->run, sizeof c->run, "%s", w->run);
    if (c->o->out)
        snprintf(c->out, sizeof c->out, "%s", c->o->out);
    else
        snprintf(c->out, sizeof c->out, "runs/%s", w->run);
    c->heartbeat_ms = w->heartbeat_ms ? w->heartbeat_ms : EVAL_DEFAULT_HEARTBEAT_MS;
    c->welcomed = true;
    c->last_beat = now;
    /* a restarted trainer may number its snapshots from the start again */
    c->snaps.any_closed = false;
    sub_limits(c, w->config);
    char bc[MSG_NAME_MAX + 64];
    broadcast_endpoint(bc, sizeof bc, c->o->endpoint, w->broadcast);
    c->sub = open_socket(c, ZMQ_SUB, bc, &c->lim_sub);
    eval_log("attached to run '%s' (client %llu); snapshots from %s, output in %s",
             c->run, (unsigned long long)w->client_id, bc, c->out);
}

static void log_malformed(struct conn *c, const char *where, const char *err)
{
    c->malformed++;
    if (c->malformed <= EVAL_LOG_MALFORMED)
        eval_log("malformed message on the %s socket: %s", where, err);
}

/* Returns 1 on REFUSE (reason logged), else 0. */
static int drain_work(struct conn *c, double now)
{
    for (int k = 0; k < EVAL_DRAIN_MAX && c->work; k++) {
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        if (msg_recv(c->work, ZMQ_DONTWAIT, &frame, &m, &c->lim_work, &c->arena, err) < 0) {
            zmq_msg_close(&frame);
            if (errno == EAGAIN)
                break;
            log_malformed(c, "work", err);
            continue;
        }
        c->last_heard = now;
        int refused = 0;
        switch (m.kind) {
        case MSG_KIND_WELCOME: on_welcome(c, &m.welcome, now); break;
        case MSG_KIND_HEARTBEAT: break;
        case MSG_KIND_REFUSE:
            eval_log("refused by the trainer: %s", m.refuse.reason);
            refused = 1;
            break;
        case MSG_KIND_BYE:
            eval_log("trainer said BYE (%s): waiting for a trainer", m.bye.reason);
            disconnect(c, now);
            break;
        default:
            log_malformed(c, "work", msg_kind_name(m.kind));
        }
        zmq_msg_close(&frame);
        if (refused)
            return 1;
    }
    return 0;
}

static void report_incomplete(struct conn *c, const struct eval_snapshot *s)
{
    char text[512];
    eval_snapshot_describe(s, text, sizeof text);
    eval_log("%s", text);
    /* the total is known only from an end marker; no NaN in metrics.jsonl */
    struct eval_result r = {
        .source = MSG_SOURCE_SYSTEM, .step = s->step, .n = s->ended ? 3 : 2,
        .keys = {"eval_incomplete", "eval_chunks_got", "eval_chunks_total"},
        .values = {1, s->got, s->chunks},
    };
    send_result(c, &r);
}

static void on_embed(struct conn *c, const struct msg_embed *e)
{
    struct eval_snapshot *closed[2];
    int n = eval_assembler_add(&c->snaps, e, closed);
    for (int i = 0; i < n; i++) {
        if (closed[i]->broken) {
            report_incomplete(c, closed[i]);
            eval_snapshot_free(closed[i]);
        } else {
            eval_worker_submit_snapshot(&c->worker, closed[i]);
        }
    }
}

static void on_featmap(struct conn *c, const struct msg_featmap *m)
{
    char err[ERR_LEN];
    struct eval_featmap *f = eval_featmap_copy(m, c->o->max_bytes, err);
    if (!f) {
        eval_log("%s", err);
        return;
    }
    eval_worker_submit_featmap(&c->worker, f, c->out);
}

static void drain_sub(struct conn *c, double now)
{
    for (int k = 0; k < EVAL_DRAIN_MAX && c->sub; k++) {
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        if (msg_recv_sub(c->sub, ZMQ_DONTWAIT, &frame, &m, &c->lim_sub, &c->arena, err) < 0) {
            zmq_msg_close(&frame);
            if (errno == EAGAIN)
                break;
            log_malformed(c, "broadcast", err);
            continue;
        }
        c->last_heard = now;
        if (m.kind == MSG_KIND_EMBED)
            on_embed(c, &m.embed);
        else if (m.kind == MSG_KIND_FEATMAP)
            on_featmap(c, &m.featmap);
        zmq_msg_close(&frame);
    }
}

static void keep_alive(struct conn *c, double now)
{
    double beat = c->heartbeat_ms / 1000.0;
    if (now - c->last_heard > EVAL_SILENT_BEATS * beat) {
        eval_log("trainer silent for %.1f s: reconnecting to %s", now - c->last_heard,
                 c->o->endpoint);
        disconnect(c, -INFINITY);
        return;
    }
    if (now - c->last_beat >= beat) {
        struct msg m = {.kind = MSG_KIND_HEARTBEAT};
        m.heartbeat = (struct msg_heartbeat){.time = util_time_unix(), .held = 0};
        send_msg(c, &m);
        c->last_beat = now;
    }
}

static void send_finished(struct conn *c)
{
    struct eval_result r[EVAL_WORKER_RESULTS];
    int n = eval_worker_take_results(&c->worker, r, EVAL_WORKER_RESULTS);
    for (int i = 0; i < n; i++)
        send_result(c, &r[i]);
}

int eval_run_online(const struct eval_opts *o, int stop_fd)
{
    struct conn c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.hello_sent = -INFINITY;
    c.ctx = zmq_ctx_new();
    if (!c.ctx)
        die("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    msg_limits_default(&c.lim_work);
    msg_limits_default(&c.lim_sub);
    msg_arena_init(&c.arena);
    eval_assembler_init(&c.snaps, o->max_bytes);
    eval_worker_start(&c.worker, o->tasks, o->threads);

    int status = 0;
    for (;;) {
        double now = util_time_mono();
        if (!c.welcomed && now - c.hello_sent >= EVAL_HELLO_RETRY_MS / 1000.0) {
            if (c.hello_sent > -INFINITY)
                eval_log("no answer from %s: saying HELLO again", o->endpoint);
            send_hello(&c, now);
            c.last_heard = now;
        }
        zmq_pollitem_t items[4];
        int n = 0;
        items[n++] = (zmq_pollitem_t){.fd = stop_fd, .events = ZMQ_POLLIN};
        items[n++] = (zmq_pollitem_t){.fd = c.worker.wake[0], .events = ZMQ_POLLIN};
        if (c.work)
            items[n++] = (zmq_pollitem_t){.socket = c.work, .events = ZMQ_POLLIN};
        if (c.sub)
            items[n++] = (zmq_pollitem_t){.socket = c.sub, .events = ZMQ_POLLIN};
        if (zmq_poll(items, n, EVAL_POLL_MS) < 0 && zmq_errno() != EINTR)
            eval_log("zmq_poll: %s", zmq_strerror(zmq_errno()));
        if (items[0].revents & ZMQ_POLLIN) {
            eval_log("stopping");
            break;
        }
        now = util_time_mono();
        if (drain_work(&c, now)) {
            status = 1;
            break;
        }
        drain_sub(&c, now);
        send_finished(&c);
        if (c.welcomed)
            keep_alive(&c, now);
    }

    if (c.welcomed && status == 0) {
        struct msg m = {.kind = MSG_KIND_BYE};
        m.bye.reason = "evaluator stopping";
        send_msg(&c, &m);
    }
    eval_log("%zu results sent, %zu dropped, %zu malformed messages, %zu late or "
             "duplicate chunks", c.results_sent, c.results_dropped, c.malformed,
             c.snaps.ignored);
    bool busy = eval_worker_busy(&c.worker);
    close_socket(&c.work, EVAL_BYE_LINGER_MS);
    close_socket(&c.sub, 0);
    if (zmq_ctx_term(c.ctx) != 0)
        eval_log("zmq_ctx_term: %s", zmq_strerror(zmq_errno()));
    if (busy) {
        /* a kNN or probe in progress cannot be interrupted: leave it */
        eval_log("abandoning the task in progress");
        fflush(stdout);
        fflush(stderr);
        _exit(status);
    }
    eval_worker_stop(&c.worker);
    eval_assembler_free(&c.snaps);
    msg_arena_free(&c.arena);
    return status;
}
