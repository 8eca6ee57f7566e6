/*
 * eval_conn.c: lejepa-eval's online mode (proto/PROTOCOL.md): a DEALER to
 * the trainer's work endpoint (HELLO as an evaluator, WELCOME, HEARTBEAT,
 * RESULT, BYE) and a SUB to the broadcast endpoint WELCOME names, subscribed
 * to EMBED (kNN, linear) and FEATMAP (segmap). The SUB socket's message-size
 * limit comes from the run's config in WELCOME plus generous model numbers
 * (the evaluator does not know the model) and is set before it connects.
 * This thread only moves messages: scoring runs in eval_worker, so heartbeats
 * go out while a task takes seconds. A trainer silent for
 * CLIENT_SILENT_BEATS heartbeats, or one that says BYE, is dropped and HELLO
 * starts over; REFUSE exits 1; SIGINT/SIGTERM send BYE and exit 0. The
 * connection itself (sockets, handshake, heartbeats) is proto/client.h.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "eval.h"
#include "eval_snapshot.h"
#include "eval_worker.h"
#include "lejepa_version.h"
#include "util.h"

#define EVAL_HELLO_RETRY_MS 5000        /* no WELCOME: new socket, new HELLO */
#define EVAL_POLL_MS 100
#define EVAL_DRAIN_MAX 1000             /* messages per socket per turn */
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
    struct client cl;
    const char *topics[3];          /* EMBED and/or FEATMAP, NULL-ended */
    char run[MSG_NAME_MAX];
    char out[4096];                 /* output directory of the current run */
    size_t results_sent, results_dropped;
    struct eval_assembler snaps;
    struct eval_worker worker;
};

static void send_result(struct conn *c, const struct eval_result *r)
{
    if (!c->cl.welcomed) {
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
    if (client_send(&c->cl, &m) == 0)
        c->results_sent++;
}

/* Limits of the broadcast socket: the run's views from its config, the
 * model-dependent numbers at the evaluator's generous bounds. */
static void sub_limits(struct msg_limits *lim, const char *config_text)
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
    msg_limits_compute(lim, &p);
}

static void on_welcome(struct conn *c, const struct msg_welcome *w)
{
    struct msg_limits lim;
    sub_limits(&lim, w->config);
    if (client_welcome(&c->cl, w, c->topics, &lim) != 0)
        return;
    snprintf(c->run, sizeof c->run, "%s", w->run);
    if (c->o->out)
        snprintf(c->out, sizeof c->out, "%s", c->o->out);
    else
        snprintf(c->out, sizeof c->out, "runs/%s", w->run);
    /* a restarted trainer may number its snapshots from the start again */
    c->snaps.any_closed = false;
    eval_log("attached to run '%s' (client %llu); snapshots from %s, output in %s",
             c->run, (unsigned long long)w->client_id, c->cl.broadcast, c->out);
}

/* A message on the work socket; returns 1 on REFUSE (reason logged). */
static int on_work(void *ctx, const struct msg *m)
{
    struct conn *c = ctx;
    switch (m->kind) {
    case MSG_KIND_WELCOME:
        on_welcome(c, &m->welcome);
        return 0;
    case MSG_KIND_REFUSE:
        eval_log("refused by the trainer: %s", m->refuse.reason);
        return 1;
    case MSG_KIND_BYE:
        eval_log("trainer said BYE (%s): waiting for a trainer", m->bye.reason);
        client_disconnect(&c->cl, util_time_mono());
        return 0;
    default:
        c->cl.malformed++;
        eval_log("unexpected %s from the trainer (ignored)", msg_kind_name(m->kind));
        return 0;
    }
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

/* A message on the broadcast socket. */
static int on_broadcast(void *ctx, const struct msg *m)
{
    struct conn *c = ctx;
    if (m->kind == MSG_KIND_EMBED)
        on_embed(c, &m->embed);
    else if (m->kind == MSG_KIND_FEATMAP)
        on_featmap(c, &m->featmap);
    return 0;
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
    const struct msg_hello hello = {
        .role = MSG_ROLE_EVALUATOR, .name = o->name,
        .software = "lejepa-eval " LEJEPA_VERSION, .pid = (uint64_t)getpid(),
        .credit = 0, .has_dataset = false,
    };
    client_init(&c.cl, o->endpoint, &hello, util_log);
    c.cl.keys = &o->keys;
    c.cl.sub_hwm = EVAL_SUB_RCVHWM;
    int nt = 0;
    if (o->tasks & (EVAL_TASK_KNN | EVAL_TASK_LINEAR))
        c.topics[nt++] = "EMBED";
    if (o->tasks & EVAL_TASK_SEGMAP)
        c.topics[nt++] = "FEATMAP";
    c.topics[nt] = NULL;
    eval_assembler_init(&c.snaps, o->max_bytes);
    eval_worker_start(&c.worker, o->tasks, &o->fewshot, o->threads);

    int status = 0;
    for (;;) {
        client_hello_retry(&c.cl, util_time_mono(), EVAL_HELLO_RETRY_MS / 1000.0);
        zmq_pollitem_t items[2] = {
            {.fd = stop_fd, .events = ZMQ_POLLIN},
            {.fd = c.worker.wake[0], .events = ZMQ_POLLIN},
        };
        client_poll(&c.cl, items, 2, EVAL_POLL_MS);
        if (items[0].revents & ZMQ_POLLIN) {
            eval_log("stopping");
            break;
        }
        char text[ERR_LEN];
        if (client_auth_failed(&c.cl, text)) {
            eval_log("%s", text);   /* like a REFUSE: the same keys fail again */
            status = 1;
            break;
        }
        if (client_drain(&c.cl, false, EVAL_DRAIN_MAX, on_work, &c)) {
            status = 1;
            break;
        }
        client_drain(&c.cl, true, EVAL_DRAIN_MAX, on_broadcast, &c);
        send_finished(&c);
        if (c.cl.welcomed)
            client_keep_alive(&c.cl, util_time_mono());
    }

    if (c.cl.welcomed && status == 0)
        client_send_bye(c.cl.work, "evaluator stopping", util_log);
    eval_log("%zu results sent, %zu dropped, %llu malformed messages, %zu late or "
             "duplicate chunks", c.results_sent, c.results_dropped,
             (unsigned long long)c.cl.malformed, c.snaps.ignored);
    bool busy = eval_worker_busy(&c.worker);
    client_free(&c.cl, CLIENT_BYE_LINGER_MS);
    if (busy) {
        /* a kNN or probe in progress cannot be interrupted: leave it */
        eval_log("abandoning the task in progress");
        fflush(stdout);
        fflush(stderr);
        _exit(status);
    }
    eval_worker_stop(&c.worker);
    eval_assembler_free(&c.snaps);
    return status;
}
