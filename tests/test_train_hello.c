/*
 * test_train_hello.c: lejepa-train against HELLOs from hand-made peers (a
 * DEALER of the test's own, no loader program): a HELLO whose sender left
 * before the trainer read it registers no client, and a loader that
 * predates TICKET.eval_view is refused by a run whose probe learns from
 * eval views, welcomed by one whose probe does not. Each case is one meson
 * test (the case name is argv[1]).
 */
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "msg.h"
#include "testing.h"
#include "test_train_util.h"
#include "util.h"

/* A DEALER of the test's own, connected and past its handshake. */
static void *raw_dealer(void *ctx, const char *endpoint, const char *id)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    CU_ASSERT_FATAL(s != NULL);
    int zero = 0;
    CU_ASSERT(zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id)) == 0);
    CU_ASSERT(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) == 0);
    CU_ASSERT_FATAL(zmq_connect(s, endpoint) == 0);
    return s;
}

/* HELLO as a loader with fake_loader's dataset; eval_view: whether it says
 * it answers TICKET.eval_view (a loader before it did not). */
static void raw_hello(void *s, const char *name, bool eval_view)
{
    const char *classes[10] = {"c0", "c1", "c2", "c3", "c4",
                               "c5", "c6", "c7", "c8", "c9"};
    struct msg m = {.kind = MSG_KIND_HELLO};
    m.hello = (struct msg_hello){
        .role = MSG_ROLE_LOADER,
        .name = name,
        .software = "test",
        .pid = 1,
        .credit = 2,
        .eval_view = eval_view,
        .has_dataset = true,
        .dataset = {0x1234, 40, 8, 10, classes},
    };
    char err[ERR_LEN];
    CU_ASSERT(msg_send(s, &m, err) == 0);
}

/* The trainer's next message on s, within 10 s, into r (its blobs in frame
 * and arena, which the caller closes and frees): 0, or -1. */
static int raw_reply(void *s, zmq_msg_t *frame, struct msg_arena *arena,
                     struct msg *r)
{
    int timeout = 10000;
    struct msg_limits lim;
    char err[ERR_LEN];
    msg_limits_default(&lim);
    if (zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout) != 0)
        return -1;
    return msg_recv(s, 0, frame, r, &lim, arena, err);
}

/* A HELLO whose sender closed its socket before the trainer read it (a
 * client that gave up waiting for WELCOME and said HELLO again on a new
 * socket) registers no client: the WELCOME cannot be routed. Both HELLOs
 * reach the trainer while it is stopped, so it reads them when the ghost's
 * connection is already closed. Without the check the ghost would be sent
 * tickets until it counted as silent, 5 s later. */
static void test_ghost_hello(void)
{
    struct env e;
    env_init(&e);
    const char *const args[] = {"--steps", "1000", NULL};
    pid_t tr = start_trainer(&e, "ghost", args);
    CU_ASSERT_FATAL(wait_text(&e, "ghost/log", "work endpoint", 20));
    void *ctx = zmq_ctx_new();
    void *live = raw_dealer(ctx, e.work, "live"),
         *ghost = raw_dealer(ctx, e.work, "ghost");
    usleep(300000); /* both connected, handshakes done */
    CU_ASSERT_FATAL(kill(tr, SIGSTOP) == 0);
    raw_hello(ghost, "ghost-loader", true);
    raw_hello(live, "live-loader", true);
    usleep(300000); /* in the kernel's socket buffers */
    zmq_close(ghost);
    usleep(200000);
    CU_ASSERT(kill(tr, SIGCONT) == 0);
    struct msg_arena arena;
    msg_arena_init(&arena);
    zmq_msg_t frame;
    struct msg r;
    CU_ASSERT(raw_reply(live, &frame, &arena, &r) == 0 &&
              r.kind == MSG_KIND_WELCOME);
    zmq_msg_close(&frame);
    CU_ASSERT(wait_text(&e, "ghost/log",
                        "ghost-loader (pid 1) left before its WELCOME", 10));
    kill(tr, SIGTERM);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, 20), 0);
    char *log = read_text(&e, "ghost/log");
    CU_ASSERT(strstr(log, "live-loader joined") != NULL);
    CU_ASSERT(strstr(log, "ghost-loader joined") == NULL);
    CU_ASSERT(strstr(log, "presumed gone") == NULL);
    free(log);
    msg_arena_free(&arena);
    zmq_close(live);
    zmq_ctx_term(ctx);
    env_free(&e);
}

/* A loader that predates TICKET.eval_view (no HELLO.eval_view) is refused
 * by a run whose probe learns from eval views, the reason naming the
 * setting, and welcomed by a run whose probe learns from the global views. */
static void test_old_loader(void)
{
    const char *const probe[2] = {"optim.probe_views=eval",
                                  "optim.probe_views=global"};
    for (int k = 0; k < 2; k++) {
        struct env e;
        env_init(&e);
        const char *const args[] = {"--steps", "1000", "--set", probe[k], NULL};
        pid_t tr = start_trainer(&e, "old", args);
        CU_ASSERT_FATAL(wait_text(&e, "old/log", "work endpoint", 20));
        void *ctx = zmq_ctx_new();
        void *s = raw_dealer(ctx, e.work, "old");
        raw_hello(s, "old-loader", false);
        struct msg_arena arena;
        msg_arena_init(&arena);
        zmq_msg_t frame;
        struct msg r;
        CU_ASSERT_FATAL(raw_reply(s, &frame, &arena, &r) == 0);
        if (k == 0) {
            CU_ASSERT_EQUAL(r.kind, MSG_KIND_REFUSE);
            CU_ASSERT(r.kind == MSG_KIND_REFUSE &&
                      strstr(r.refuse.reason, "optim.probe_views = eval") &&
                      strstr(r.refuse.reason, "old-loader"));
        } else {
            CU_ASSERT_EQUAL(r.kind, MSG_KIND_WELCOME);
        }
        zmq_msg_close(&frame);
        msg_arena_free(&arena);
        zmq_close(s);
        zmq_ctx_term(ctx);
        kill(tr, SIGTERM);
        CU_ASSERT_EQUAL(testing_wait_exit(tr, 20), 0);
        env_free(&e);
    }
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"ghost_hello", test_ghost_hello},
        {"old_loader", test_old_loader},
        {NULL, NULL},
    };
    signal(SIGPIPE, SIG_IGN);
    return testing_run_named("train_hello", all, argc, argv);
}
