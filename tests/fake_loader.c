/*
 * fake_loader.c: a stand-in for lejepa-loader in the trainer's tests. It
 * speaks the loader side of proto/PROTOCOL.md (HELLO with a made-up dataset,
 * TICKET -> one BATCH, HEARTBEAT, RETURN + BYE on SIGTERM, exit on the
 * trainer's BYE) and makes pixels without images: byte k of view v of sample
 * i is a pure function of (seed, epoch, i, v), so batches do not depend on
 * which loader made them; an eval ticket gets one view at the global size,
 * a function of (seed, split, i) alone. Options make it fail some samples
 * (as decode or env failures), work slowly (--delay-ms, from the start or
 * after its first --delay-after answers, up to its --delay-until'th),
 * claim another dataset, send
 * garbage, or misbehave as tests/test_attack.c's attackers: hold its tickets
 * without ever answering them (--never-answer), or forge batches
 * (--forge-batch N: for each of its first N training tickets, a BATCH of the
 * wrong shape, then from a second registered loader identity, "NAME-ghost",
 * credit 0, a BATCH with inverted pixels for the ticket it does not hold,
 * then the honest answer), or leave the last sample of every training
 * answer out (--omit-last). Not installed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "msg.h"
#include "rng.h"
#include "util.h"

#define FAKE_MAX_HELD 256
#define FAKE_HELLO_TIMEOUT_S 20.0
/* View number of an eval ticket's pixels (plus the split): no train view's. */
#define FAKE_EVAL_VIEW 1000

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

struct held {
    void *sock; /* the socket the ticket came on, which answers it */
    uint64_t ticket, step, seed;
    uint32_t epoch, n;
    enum msg_split split;
    enum msg_work work;
    bool eval_view;
    uint64_t indices[1024];
};

/* How answer() makes a BATCH: the honest one, or an attack's. */
enum answer_mode {
    ANSWER_HONEST,
    ANSWER_WRONG_SHAPE, /* the global views at half the run's size */
    ANSWER_FORGED,      /* the right shape, every pixel inverted */
};

struct fake {
    void *sock;
    void *ghost; /* --forge-batch: a second loader identity, or NULL */
    struct msg_limits lim;
    struct msg_arena arena;
    struct config cfg;
    uint32_t heartbeat_ms, classes, credit;
    uint64_t n_train, n_val, fingerprint, fail_mod;
    enum msg_fail_class fail_class;
    bool never_answer;
    int forge_left; /* training tickets still to forge */
    int omit_last;  /* --omit-last */
    int delay_ms, delay_after, delay_until, answered;
    struct held *held;
    int n_held;
    double last_heard, last_beat, next_ready;
};

static void send_on(void *sock, const struct msg *m)
{
    char err[ERR_LEN];
    if (msg_send(sock, m, err) != 0)
        die("fake_loader: send %s: %s", msg_kind_name(m->kind), err);
}

static void send_or_die(struct fake *f, const struct msg *m)
{
    send_on(f->sock, m);
}

static void fill_view(uint8_t *dst, size_t n, uint64_t seed, uint32_t epoch,
                      uint64_t index, uint64_t view)
{
    struct rng r;
    rng_init(&r, seed, epoch, index, view);
    for (size_t k = 0; k < n; k += 8) {
        uint64_t x = rng_u64(&r);
        for (size_t b = 0; b < 8 && k + b < n; b++)
            dst[k + b] = (uint8_t)(x >> (8 * b));
    }
}

static void answer(struct fake *f, const struct held *h, void *sock,
                   enum answer_mode mode)
{
    const struct config_views *v = &f->cfg.views;
    uint64_t ok[1024];
    int32_t labels[1024];
    struct msg_failure fails[1024];
    char paths[64][64];
    uint32_t n = 0, nf = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        uint64_t idx = h->indices[i];
        if (f->fail_mod && idx % f->fail_mod == 0) {
            snprintf(paths[nf % 64], sizeof paths[0], "train/c%" PRIu64 "/%06" PRIu64 ".png",
                     f->classes ? idx % f->classes : 0, idx);
            fails[nf] = (struct msg_failure){
                idx, paths[nf % 64],
                f->fail_class == MSG_FAIL_ENV ? "fake env failure" : "fake decode failure",
                f->fail_class};
            nf++;
        } else {
            ok[n] = idx;
            /* --classes 0: an unlabelled dataset, every label -1 */
            labels[n] = f->classes ? (int32_t)(idx % f->classes) : -1;
            n++;
        }
    }
    /* --omit-last: an answer that leaves a sample out, with no failure */
    if (f->omit_last && h->work == MSG_WORK_TRAIN && n > 1 && nf == 0)
        n--;
    struct msg_group groups[MSG_BATCH_GROUPS];
    uint8_t *pix[MSG_BATCH_GROUPS] = {NULL, NULL, NULL};
    bool eval = h->work == MSG_WORK_EVAL;
    uint32_t ng = msg_batch_layout(v, h->work, h->eval_view, groups);
    for (uint32_t g = 0; g < ng; g++) {
        /* an eval view: an eval ticket's one group, or the last one */
        bool ev = eval || (h->eval_view && g == ng - 1);
        uint32_t views = groups[g].views, size = groups[g].h;
        if (mode == ANSWER_WRONG_SHAPE && g == 0 && size > 1)
            size /= 2;
        size_t plane = (size_t)v->channels * size * size;
        pix[g] = xmalloc(views * (size_t)n * plane + 1);
        for (uint32_t w = 0; w < views; w++)
            for (uint32_t i = 0; i < n; i++)
                fill_view(pix[g] + ((size_t)w * n + i) * plane, plane, h->seed,
                          ev ? 0 : h->epoch, ok[i],
                          ev ? FAKE_EVAL_VIEW + h->split
                             : (uint64_t)(g == 0 ? 0 : v->global_count) + w);
        if (mode == ANSWER_FORGED)
            for (size_t k = 0; k < views * (size_t)n * plane; k++)
                pix[g][k] ^= 0xff;
        groups[g] = (struct msg_group){views, (uint32_t)v->channels, size, size, pix[g]};
    }
    struct msg m = {.kind = MSG_KIND_BATCH};
    m.batch = (struct msg_batch){
        .ticket = h->ticket, .step = h->step, .epoch = h->epoch,
        .split = h->split, .work = h->work, .n = n, .indices = ok,
        .labels = labels, .n_groups = (uint32_t)ng, .groups = groups,
        .n_failures = nf, .failures = fails, .decode_ms = 1.0,
    };
    send_on(sock, &m);
    for (int g = 0; g < MSG_BATCH_GROUPS; g++)
        free(pix[g]);
}

/* Answers a held ticket; --forge-batch attacks its first training tickets
 * before the honest answer. */
static void answer_held(struct fake *f, const struct held *h)
{
    if (f->forge_left > 0 && h->work == MSG_WORK_TRAIN && h->sock == f->sock) {
        f->forge_left--;
        answer(f, h, h->sock, ANSWER_WRONG_SHAPE);
        if (f->ghost)
            answer(f, h, f->ghost, ANSWER_FORGED);
    }
    answer(f, h, h->sock, ANSWER_HONEST);
}

static void hello(struct fake *f, void *sock, const char *name, uint32_t credit)
{
    char (*names)[16] = xcalloc(f->classes, sizeof *names);
    const char **classes = xcalloc(f->classes, sizeof *classes);
    for (uint32_t i = 0; i < f->classes; i++) {
        snprintf(names[i], sizeof names[i], "c%" PRIu32, i);
        classes[i] = names[i];
    }
    struct msg m = {.kind = MSG_KIND_HELLO};
    m.hello = (struct msg_hello){
        .role = MSG_ROLE_LOADER, .name = name, .software = "fake_loader",
        .pid = (uint64_t)getpid(), .credit = credit, .eval_view = true, .has_dataset = true,
        .dataset = {f->fingerprint, f->n_train, f->n_val, f->classes, classes},
    };
    send_on(sock, &m);
    free(names);
    free(classes);
}

/* One message from the trainer on the ghost socket: tickets are queued
 * like the main socket's; a REFUSE or BYE ends the ghost, not the loader. */
static void handle_ghost(struct fake *f, const struct msg *m)
{
    if (m->kind == MSG_KIND_REFUSE || m->kind == MSG_KIND_BYE) {
        fprintf(stderr, "fake_loader: ghost %s: %s\n", msg_kind_name(m->kind),
                m->kind == MSG_KIND_BYE ? m->bye.reason : m->refuse.reason);
        zmq_close(f->ghost);
        f->ghost = NULL;
        return;
    }
    if (m->kind != MSG_KIND_TICKET)
        return;
    if (f->n_held == FAKE_MAX_HELD || m->ticket.n > 1024)
        die("fake_loader: too many tickets");
    struct held *h = &f->held[f->n_held++];
    *h = (struct held){
        .sock = f->ghost, .ticket = m->ticket.ticket, .step = m->ticket.step,
        .seed = m->ticket.seed, .epoch = m->ticket.epoch, .n = m->ticket.n,
        .split = m->ticket.split, .work = m->ticket.work,
        .eval_view = m->ticket.eval_view,
    };
    memcpy(h->indices, m->ticket.indices, m->ticket.n * sizeof *h->indices);
}

/* One message from the trainer; returns 1 when the loader should exit. */
static int handle(struct fake *f, const struct msg *m, int *code)
{
    char err[ERR_LEN];
    f->last_heard = util_time_mono();
    switch (m->kind) {
    case MSG_KIND_WELCOME:
        config_defaults(&f->cfg);
        if (config_load_string(&f->cfg, m->welcome.config, "WELCOME", err) != 0)
            die("fake_loader: %s", err);
        f->heartbeat_ms = m->welcome.heartbeat_ms;
        struct msg_limit_params p;
        msg_limit_params_from_config(&p, &f->cfg);
        msg_limits_compute(&f->lim, &p);
        return 0;
    case MSG_KIND_REFUSE:
        fprintf(stderr, "fake_loader: refused: %s\n", m->refuse.reason);
        *code = 3;
        return 1;
    case MSG_KIND_BYE:
        fprintf(stderr, "fake_loader: BYE: %s\n", m->bye.reason);
        *code = 0;
        return 1;
    case MSG_KIND_TICKET:
        if (f->n_held == FAKE_MAX_HELD || m->ticket.n > 1024)
            die("fake_loader: too many tickets");
        struct held *h = &f->held[f->n_held++];
        h->sock = f->sock;
        h->ticket = m->ticket.ticket;
        h->step = m->ticket.step;
        h->seed = m->ticket.seed;
        h->epoch = m->ticket.epoch;
        h->split = m->ticket.split;
        h->work = m->ticket.work;
        h->eval_view = m->ticket.eval_view;
        h->n = m->ticket.n;
        memcpy(h->indices, m->ticket.indices, m->ticket.n * sizeof *h->indices);
        return 0;
    default:
        return 0;
    }
}

static void leave(struct fake *f)
{
    uint64_t ids[FAKE_MAX_HELD];
    uint32_t n = 0;
    for (int i = 0; i < f->n_held; i++)
        if (f->held[i].sock == f->sock)
            ids[n++] = f->held[i].ticket;
    struct msg m = {.kind = MSG_KIND_RETURN};
    m.ret = (struct msg_return){n, ids};
    send_or_die(f, &m);
    struct msg bye = {.kind = MSG_KIND_BYE};
    bye.bye.reason = "fake loader stopping";
    send_or_die(f, &bye);
}

int main(int argc, char **argv)
{
    struct fake f = {.credit = 4, .classes = 10, .n_train = 40, .n_val = 8,
                     .fingerprint = 0x1234, .heartbeat_ms = 1000};
    const char *connect = NULL, *name = "fake-loader";
    int garbage = 0;
    static const struct option opts[] = {
        {"connect", required_argument, NULL, 'c'},
        {"credit", required_argument, NULL, 'k'},
        {"classes", required_argument, NULL, 'l'},
        {"n-train", required_argument, NULL, 't'},
        {"n-val", required_argument, NULL, 'v'},
        {"fingerprint", required_argument, NULL, 'f'},
        {"fail-mod", required_argument, NULL, 'm'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"delay-after", required_argument, NULL, 'a'},
        {"delay-until", required_argument, NULL, 'u'},
        {"name", required_argument, NULL, 'n'},
        {"garbage", no_argument, NULL, 'g'},
        {"fail-class", required_argument, NULL, 'C'},
        {"never-answer", no_argument, NULL, 'N'},
        {"forge-batch", required_argument, NULL, 'F'},
        {"omit-last", no_argument, NULL, 'O'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': connect = optarg; break;
        case 'k': f.credit = (uint32_t)atoi(optarg); break;
        case 'l': f.classes = (uint32_t)atoi(optarg); break;
        case 't': f.n_train = strtoull(optarg, NULL, 10); break;
        case 'v': f.n_val = strtoull(optarg, NULL, 10); break;
        case 'f': f.fingerprint = strtoull(optarg, NULL, 16); break;
        case 'm': f.fail_mod = strtoull(optarg, NULL, 10); break;
        case 'd': f.delay_ms = atoi(optarg); break;
        case 'a': f.delay_after = atoi(optarg); break;
        case 'u': f.delay_until = atoi(optarg); break;
        case 'n': name = optarg; break;
        case 'g': garbage = 1; break;
        case 'C':
            if (strcmp(optarg, "env") == 0)
                f.fail_class = MSG_FAIL_ENV;
            else if (strcmp(optarg, "decode") == 0)
                f.fail_class = MSG_FAIL_DECODE;
            else
                die("fake_loader: --fail-class is decode or env, not '%s'", optarg);
            break;
        case 'N': f.never_answer = true; break;
        case 'F': f.forge_left = atoi(optarg); break;
        case 'O': f.omit_last = 1; break;
        default: return 2;
        }
    }
    if (!connect)
        die("fake_loader: --connect ENDPOINT is required");
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    void *ctx = zmq_ctx_new();
    f.sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 500;
    CHECK(zmq_setsockopt(f.sock, ZMQ_LINGER, &linger, sizeof linger) == 0);
    CHECK(zmq_connect(f.sock, connect) == 0);
    msg_limits_default(&f.lim);
    msg_arena_init(&f.arena);
    f.held = xcalloc(FAKE_MAX_HELD, sizeof *f.held);
    hello(&f, f.sock, name, f.credit);
    if (f.forge_left > 0) {
        /* its own routing id, so the trainer sees another client */
        char ghost_name[300];
        snprintf(ghost_name, sizeof ghost_name, "%s-ghost", name);
        f.ghost = zmq_socket(ctx, ZMQ_DEALER);
        CHECK(f.ghost);
        CHECK(zmq_setsockopt(f.ghost, ZMQ_LINGER, &linger, sizeof linger) == 0);
        CHECK(zmq_connect(f.ghost, connect) == 0);
        hello(&f, f.ghost, ghost_name, 0);
    }
    if (garbage)
        CHECK(zmq_send(f.sock, "\xc1garbage", 8, 0) == 8);
    double start = util_time_mono();
    f.last_heard = f.last_beat = start;
    int code = 0, welcomed = 0;
    for (;;) {
        if (stop) {
            leave(&f);
            break;
        }
        zmq_pollitem_t it[2] = {{.socket = f.sock, .events = ZMQ_POLLIN},
                                {.socket = f.ghost, .events = ZMQ_POLLIN}};
        zmq_poll(it, f.ghost ? 2 : 1, 5);
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        while (f.ghost &&
               msg_recv(f.ghost, ZMQ_DONTWAIT, &frame, &m, &f.lim, &f.arena, err) == 0) {
            handle_ghost(&f, &m);
            zmq_msg_close(&frame);
        }
        if (f.ghost)
            zmq_msg_close(&frame);
        int done = 0;
        while (!done && msg_recv(f.sock, ZMQ_DONTWAIT, &frame, &m, &f.lim, &f.arena, err) == 0) {
            welcomed |= m.kind == MSG_KIND_WELCOME;
            done = handle(&f, &m, &code);
            zmq_msg_close(&frame);
        }
        if (!done)
            zmq_msg_close(&frame);
        if (done)
            break;
        double now = util_time_mono();
        /* work first: a loader woken from SIGSTOP answers what it holds
         * before it notices the silence */
        if (f.n_held > 0 && now >= f.next_ready && !f.never_answer) {
            answer_held(&f, &f.held[0]);
            memmove(f.held, f.held + 1, (size_t)(f.n_held - 1) * sizeof *f.held);
            f.n_held--;
            if (++f.answered > f.delay_after &&
                (f.delay_until == 0 || f.answered <= f.delay_until))
                f.next_ready = now + f.delay_ms / 1000.0;
        }
        if (!welcomed && now - start > FAKE_HELLO_TIMEOUT_S)
            die("fake_loader: no WELCOME");
        if (welcomed && now - f.last_heard > 5.0 * f.heartbeat_ms / 1000.0) {
            fprintf(stderr, "fake_loader: trainer silent, exiting\n");
            code = 5;
            break;
        }
        if (now - f.last_beat >= f.heartbeat_ms / 1000.0) {
            struct msg hb = {.kind = MSG_KIND_HEARTBEAT};
            hb.heartbeat = (struct msg_heartbeat){util_time_unix(), (uint32_t)f.n_held};
            send_or_die(&f, &hb);
            if (f.ghost)
                send_on(f.ghost, &hb);
            f.last_beat = now;
        }
    }
    free(f.held);
    msg_arena_free(&f.arena);
    if (f.ghost)
        zmq_close(f.ghost);
    zmq_close(f.sock);
    zmq_ctx_term(ctx);
    return code;
}
