/*
 * fake_trainer.c: the fake trainer of the client programs' tests
 * (fake_trainer.h).
 */
#include "fake_trainer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"
#include "util.h"

#define FAKE_PUB_HWM 100000

static void bind_ephemeral(void *s, char *ep, size_t cap)
{
    CU_ASSERT_FATAL(zmq_bind(s, "tcp://127.0.0.1:*") == 0);
    CU_ASSERT_FATAL(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &cap) == 0);
}

void fake_trainer_init(struct fake_trainer *f)
{
    memset(f, 0, sizeof *f);
    f->ctx = zmq_ctx_new();
    CU_ASSERT_FATAL(f->ctx != NULL);
    f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    f->xpub = zmq_socket(f->ctx, ZMQ_XPUB);
    CU_ASSERT_FATAL(f->router && f->xpub);
    int zero = 0, one = 1, hwm = FAKE_PUB_HWM;
    CU_ASSERT(zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero) == 0);
    CU_ASSERT(zmq_setsockopt(f->xpub, ZMQ_LINGER, &zero, sizeof zero) == 0);
    CU_ASSERT(zmq_setsockopt(f->xpub, ZMQ_XPUB_VERBOSE, &one, sizeof one) == 0);
    CU_ASSERT(zmq_setsockopt(f->xpub, ZMQ_SNDHWM, &hwm, sizeof hwm) == 0);
    bind_ephemeral(f->router, f->work_ep, sizeof f->work_ep);
    bind_ephemeral(f->xpub, f->pub_ep, sizeof f->pub_ep);
    msg_limits_default(&f->lim);
    msg_arena_init(&f->arena);
    f->config = "[run]\n";
    f->beating = true;
}

void fake_trainer_free(struct fake_trainer *f)
{
    zmq_close(f->router);
    zmq_close(f->xpub);
    zmq_ctx_term(f->ctx);
    msg_arena_free(&f->arena);
}

void fake_trainer_send(struct fake_trainer *f, const struct msg *m)
{
    char err[ERR_LEN];
    if (msg_send_to(f->router, f->peer, f->peer_len, m, err) < 0)
        fprintf(stderr, "fake trainer: %s\n", err);
}

void fake_trainer_publish(struct fake_trainer *f, const struct msg *m)
{
    char err[ERR_LEN];
    int rc = msg_publish(f->xpub, m, err);
    if (rc < 0)
        fprintf(stderr, "fake trainer: publish: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
}

static void on_hello(struct fake_trainer *f, const struct msg_hello *h)
{
    f->hellos++;
    CU_ASSERT_EQUAL(h->role, f->role);
    CU_ASSERT_EQUAL(h->credit, 0);
    CU_ASSERT_FALSE(h->has_dataset);
    CU_ASSERT_PTR_NOT_NULL(strstr(h->software, f->software ? f->software : ""));
    struct msg r;
    if (f->refuse) {
        r = (struct msg){.kind = MSG_KIND_REFUSE};
        r.refuse.reason = f->refuse;
    } else {
        r = (struct msg){.kind = MSG_KIND_WELCOME};
        r.welcome = (struct msg_welcome){
            .run = "fake-run", .broadcast = f->broadcast ? f->broadcast : f->pub_ep,
            .config = f->config,
            .heartbeat_ms = FAKE_HEARTBEAT_MS, .client_id = f->client_id};
    }
    f->last_hb_in = 0;
    f->beats_since_hello = 0;
    fake_trainer_send(f, &r);
}

static void handle(struct fake_trainer *f, const struct msg *m)
{
    switch (m->kind) {
    case MSG_KIND_HELLO:
        on_hello(f, &m->hello);
        break;
    case MSG_KIND_HEARTBEAT: {
        f->heartbeats_in++;
        f->beats_since_hello++;
        double now = util_time_mono();
        if (f->last_hb_in > 0 && now - f->last_hb_in > f->max_hb_gap)
            f->max_hb_gap = now - f->last_hb_in;
        f->last_hb_in = now;
        break;
    }
    case MSG_KIND_BYE:
        f->byes_in++;
        break;
    default:
        if (f->on_message)
            f->on_message(f, m);
        else
            CU_FAIL("unexpected message kind from the client");
    }
}

/* XPUB_VERBOSE: every (un)subscription arrives as 0x01/0x00 + topic. */
static void note_subscription(struct fake_trainer *f, const char *sub, int n)
{
    if (n < 2 || (sub[0] != 0 && sub[0] != 1) || n - 1 >= (int)sizeof f->topics[0])
        return;
    int k = 0;
    while (k < f->n_topics && (strlen(f->topics[k]) != (size_t)(n - 1) ||
                               memcmp(f->topics[k], sub + 1, (size_t)(n - 1)) != 0))
        k++;
    if (k == f->n_topics) {
        if (k == FAKE_TOPICS)
            return;
        memcpy(f->topics[k], sub + 1, (size_t)(n - 1));
        f->topics[k][n - 1] = '\0';
        f->n_topics++;
    }
    f->topic_on[k] = sub[0] == 1;
}

bool fake_trainer_subscribed(const struct fake_trainer *f, const char *topic)
{
    for (int k = 0; k < f->n_topics; k++)
        if (strcmp(f->topics[k], topic) == 0)
            return f->topic_on[k];
    return false;
}

void fake_trainer_poll(struct fake_trainer *f, int ms)
{
    zmq_pollitem_t items[2] = {{.socket = f->router, .events = ZMQ_POLLIN},
                               {.socket = f->xpub, .events = ZMQ_POLLIN}};
    if (zmq_poll(items, 2, ms) < 0)
        return;
    for (;;) {
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        size_t len = 0;
        int rc = msg_recv_from(f->router, ZMQ_DONTWAIT, f->peer, &len, &frame, &m,
                               &f->lim, &f->arena, err);
        if (rc < 0 && errno == EAGAIN) {
            zmq_msg_close(&frame);
            break;
        }
        CU_ASSERT_EQUAL(rc, 0);
        if (rc == 0) {
            f->peer_len = len;
            handle(f, &m);
        }
        zmq_msg_close(&frame);
    }
    char sub[64];
    int n;
    while ((n = zmq_recv(f->xpub, sub, sizeof sub, ZMQ_DONTWAIT)) > 0)
        note_subscription(f, sub, n < (int)sizeof sub ? n : (int)sizeof sub);
    if (f->after_poll)
        f->after_poll(f);
    double now = util_time_mono();
    if (f->beating && f->peer_len && now - f->last_beat >= FAKE_HEARTBEAT_MS / 1000.0) {
        struct msg hb = {.kind = MSG_KIND_HEARTBEAT};
        hb.heartbeat = (struct msg_heartbeat){.time = util_time_unix()};
        fake_trainer_send(f, &hb);
        f->last_beat = now;
    }
}

pid_t fake_spawn(const char *program, const char *args, const char *log)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "exec '%s' %s", testing_program(program), args);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return testing_spawn(log, true, argv);
}

static void poll_briefly(void *f)
{
    fake_trainer_poll(f, 20);
}

int fake_wait_child(struct fake_trainer *f, pid_t pid, double seconds)
{
    return testing_wait_idle(pid, seconds, f ? poll_briefly : NULL, f);
}

void fake_print_log(const char *title, const char *log)
{
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(log, &len, err);
    if (text)
        fprintf(stderr, "--- %s ---\n%s------------------------\n", title, text);
    free(text);
}
