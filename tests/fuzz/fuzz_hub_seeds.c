/*
 * fuzz_hub_seeds.c: writes the seed corpus of the message-handler fuzz
 * target: realistic sessions of clients, played against a hub built like
 * the target's (fuzz_hub.h) and recorded as its inputs, DIR/<session>.hub.
 * The loaders answer the TICKETs the hub really sent them, so their
 * BATCHes (train and eval work) carry the right ids, indices and shapes
 * for the fuzzer's config. Usage: fuzz_hub_seeds DIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_hub.h"
#include "util.h"

#define MAX_TICKETS 64
#define SAMPLES_MAX 16

/* Every loader of the seeds claims this dataset; the first one's becomes
 * the run's. */
static const char *const classes[] = {"cat", "dog", "owl", "yak"};
static const struct msg_dataset dataset = {
    .fingerprint = UINT64_C(0x1e7e9a00c0ffee01),
    .n_train = 64,
    .n_val = 16,
    .n_classes = 4,
    .classes = classes,
};

/* One recorded input: the records said so far. */
struct script {
    uint8_t *buf;
    size_t len, cap;
};

static void append(struct script *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->buf = realloc(s->buf, s->cap);
        CHECK(s->buf != NULL);
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

/* Records m from identity who (head: who and flags) and plays it. */
static void say(struct fuzz_hub *h, struct script *s, int head,
                const struct msg *m)
{
    char err[ERR_LEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (msg_encode(m, &sb, err) < 0)
        die("fuzz_hub_seeds: %s", err);
    uint8_t rec[FUZZ_HUB_RECORD_HEAD] = {
        (uint8_t)head, (uint8_t)sb.size, (uint8_t)(sb.size >> 8),
        (uint8_t)(sb.size >> 16), (uint8_t)(sb.size >> 24)};
    append(s, rec, sizeof rec);
    append(s, sb.data, sb.size);
    fuzz_hub_message(h, head & FUZZ_HUB_ID_MASK, (const uint8_t *)sb.data,
                     sb.size);
    if (!(head & FUZZ_HUB_HOLD))
        fuzz_hub_turn(h);
    msgpack_sbuffer_destroy(&sb);
}

static void save(const char *dir, const char *name, struct script *s)
{
    char path[4200], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s.hub", dir, name);
    if (util_write_file_atomic(path, s->buf, s->len, err) < 0)
        die("fuzz_hub_seeds: %s", err);
    printf("fuzz_hub_seeds: %s (%zu bytes)\n", path, s->len);
    free(s->buf);
    *s = (struct script){0};
}

static void hello(struct fuzz_hub *h, struct script *s, int who,
                  enum msg_role role, uint32_t credit, uint64_t fingerprint)
{
    struct msg m = {.kind = MSG_KIND_HELLO};
    m.hello = (struct msg_hello){
        .role = role,
        .name = role == MSG_ROLE_LOADER ? "loader-seed@fuzz" : "client@fuzz",
        .software = "lejepa 0.1.0",
        .pid = 4242 + (uint64_t)who,
        .credit = credit,
        .eval_view = role == MSG_ROLE_LOADER,
        .has_dataset = role == MSG_ROLE_LOADER,
    };
    if (role == MSG_ROLE_LOADER) {
        m.hello.dataset = dataset;
        m.hello.dataset.fingerprint = fingerprint;
    }
    say(h, s, who, &m);
}

static void simple(struct fuzz_hub *h, struct script *s, int who,
                   enum msg_kind kind)
{
    struct msg m = {.kind = kind};
    if (kind == MSG_KIND_HEARTBEAT)
        m.heartbeat = (struct msg_heartbeat){.time = 1.7e9, .held = 0};
    else if (kind == MSG_KIND_BYE)
        m.bye.reason = "loader stopping";
    else if (kind == MSG_KIND_HISTORY)
        m.history = (struct msg_history){.start = 0};
    say(h, s, who, &m);
}

/* A TICKET kept past the next decode. */
struct ticket {
    struct msg_ticket t;
    uint64_t indices[SAMPLES_MAX];
};

/* The TICKETs waiting in identity who's queue (everything else dropped). */
static int tickets_for(struct fuzz_hub *h, int who, struct ticket *out)
{
    struct msg_limits lim;
    struct msg_arena arena;
    msg_limits_default(&lim);
    lim.max_str = 1 << 20;
    msg_arena_init(&arena);
    int n = 0;
    for (;;) {
        char err[ERR_LEN];
        zmq_msg_t frame;
        struct msg m;
        int rc =
            msg_recv(h->peer[who], ZMQ_DONTWAIT, &frame, &m, &lim, &arena, err);
        if (rc == 0 && m.kind == MSG_KIND_TICKET && n < MAX_TICKETS &&
            m.ticket.n <= SAMPLES_MAX) {
            out[n].t = m.ticket;
            memcpy(out[n].indices, m.ticket.indices,
                   m.ticket.n * sizeof *out[n].indices);
            out[n].t.indices = out[n].indices;
            n++;
        }
        zmq_msg_close(&frame);
        if (rc != 0 && errno == EAGAIN)
            break;
    }
    msg_arena_free(&arena);
    return n;
}

/* The BATCH answering t; the first `failed` samples fail (class fc). */
static void answer(struct fuzz_hub *h, struct script *s, int who,
                   const struct ticket *tk, uint32_t failed,
                   enum msg_fail_class fc)
{
    const struct config *c = &h->t->cfg;
    static uint8_t pixels[2][1 << 16];
    uint64_t idx[SAMPLES_MAX];
    int32_t labels[SAMPLES_MAX];
    struct msg_failure fail[SAMPLES_MAX];
    const struct msg_ticket *t = &tk->t;
    uint32_t n = 0, nf = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        if (i < failed) {
            fail[nf++] = (struct msg_failure){
                .index = t->indices[i],
                .path = "yak/broken.png",
                .reason = "VipsForeignLoad: not a PNG file",
                .fail_class = fc,
            };
            continue;
        }
        idx[n] = t->indices[i];
        labels[n++] = (int32_t)(t->indices[i] % dataset.n_classes);
    }
    struct msg_group g[2];
    uint32_t ch = (uint32_t)c->views.channels;
    uint32_t gs = (uint32_t)c->views.global_size;
    uint32_t ls = (uint32_t)c->views.local_size;
    if (t->work == MSG_WORK_EVAL)
        g[0] = (struct msg_group){.views = 1, .c = ch, .h = gs, .w = gs};
    else
        g[0] = (struct msg_group){.views = (uint32_t)c->views.global_count,
                                  .c = ch,
                                  .h = gs,
                                  .w = gs};
    g[1] = (struct msg_group){
        .views = (uint32_t)c->views.local_count, .c = ch, .h = ls, .w = ls};
    for (int k = 0; k < 2; k++) {
        size_t bytes = (size_t)g[k].views * n * ch * g[k].h * g[k].w;
        CHECK(bytes <= sizeof pixels[k]);
        for (size_t b = 0; b < bytes; b++)
            pixels[k][b] = (uint8_t)(b * 7 + t->ticket);
        g[k].pixels = pixels[k];
    }
    struct msg m = {.kind = MSG_KIND_BATCH};
    m.batch = (struct msg_batch){
        .ticket = t->ticket,
        .step = t->step,
        .epoch = t->epoch,
        .split = t->split,
        .work = t->work,
        .n = n,
        .indices = idx,
        .labels = labels,
        .n_groups = t->work == MSG_WORK_EVAL ? 1 : 2,
        .groups = g,
        .n_failures = nf,
        .failures = fail,
        .decode_ms = 3.5,
    };
    say(h, s, who, &m);
}

/* A loader that answers what it is sent for `rounds` rounds, then hands
 * back what it still holds and leaves. */
static void loader_session(struct fuzz_hub *h, struct script *s, int who,
                           int rounds)
{
    static struct ticket tk[MAX_TICKETS];
    hello(h, s, who, MSG_ROLE_LOADER, 4, dataset.fingerprint);
    simple(h, s, who, MSG_KIND_HEARTBEAT);
    for (int r = 0; r < rounds; r++) {
        int n = tickets_for(h, who, tk);
        for (int i = 0; i < n; i++)
            answer(h, s, who, &tk[i], 0, MSG_FAIL_DECODE);
        /* the compute thread's eval forward of a snapshot */
        usleep(20000);
        fuzz_hub_turn(h);
    }
    int n = tickets_for(h, who, tk);
    uint64_t back[MAX_TICKETS];
    for (int i = 0; i < n; i++)
        back[i] = tk[i].t.ticket;
    struct msg m = {.kind = MSG_KIND_RETURN};
    m.ret = (struct msg_return){.n = (uint32_t)n, .tickets = back};
    say(h, s, who, &m);
    simple(h, s, who, MSG_KIND_BYE);
}

static void result(struct fuzz_hub *h, struct script *s, int who,
                   enum msg_source source, const char *key, double v)
{
    struct msg_value values[] = {{key, v}};
    struct msg m = {.kind = MSG_KIND_RESULT};
    m.result = (struct msg_metric){
        .time = 1.7e9,
        .step = h->t->prog.step,
        .source = source,
        .n_values = 1,
        .values = values,
    };
    say(h, s, who, &m);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        die("usage: fuzz_hub_seeds DIR");
    char err[ERR_LEN];
    if (util_mkdir_p(argv[1], err) < 0)
        die("%s", err);
    const char *dir = argv[1];
    struct fuzz_hub h;
    fuzz_hub_open(&h);
    struct script s = {0};
    static struct ticket tk[MAX_TICKETS];

    hello(&h, &s, 0, MSG_ROLE_LOADER, 4, dataset.fingerprint);
    simple(&h, &s, 0, MSG_KIND_HEARTBEAT);
    save(dir, "loader-hello", &s);

    loader_session(&h, &s, 0, 12);
    save(dir, "loader-steps", &s);

    hello(&h, &s, 1, MSG_ROLE_EVALUATOR, 0, 0);
    simple(&h, &s, 1, MSG_KIND_HEARTBEAT);
    result(&h, &s, 1, MSG_SOURCE_KNN, "knn_top1", 0.25);
    result(&h, &s, 1, MSG_SOURCE_LINEAR, "linear_top1", 0.5);
    result(&h, &s, 1, MSG_SOURCE_TRAIN, "loss", 1.0);
    simple(&h, &s, 1, MSG_KIND_HISTORY);
    simple(&h, &s, 1, MSG_KIND_BYE);
    save(dir, "evaluator", &s);

    hello(&h, &s, 2, MSG_ROLE_MONITOR, 0, 0);
    simple(&h, &s, 2, MSG_KIND_HISTORY);
    simple(&h, &s, 2, MSG_KIND_HEARTBEAT | FUZZ_HUB_HOLD);
    simple(&h, &s, 2, MSG_KIND_HISTORY);
    simple(&h, &s, 2, MSG_KIND_BYE);
    save(dir, "monitor", &s);

    /* a loader that answers with failures: every sample of one ticket a
     * bad file, one sample of the next an I/O error */
    hello(&h, &s, 3, MSG_ROLE_LOADER, 2, dataset.fingerprint);
    int n = tickets_for(&h, 3, tk);
    for (int i = 0; i < n; i++)
        answer(&h, &s, 3, &tk[i], i == 0 ? tk[i].t.n : 1,
               i == 0 ? MSG_FAIL_DECODE : MSG_FAIL_ENV);
    simple(&h, &s, 3, MSG_KIND_BYE);
    save(dir, "loader-failures", &s);

    /* two loaders at once, one of which returns its tickets */
    hello(&h, &s, 4, MSG_ROLE_LOADER, 2, dataset.fingerprint);
    hello(&h, &s, 5, MSG_ROLE_LOADER, 3, dataset.fingerprint);
    n = tickets_for(&h, 5, tk);
    for (int i = 0; i < n; i++)
        answer(&h, &s, 5, &tk[i], 0, MSG_FAIL_DECODE);
    n = tickets_for(&h, 4, tk);
    uint64_t back[MAX_TICKETS];
    for (int i = 0; i < n; i++)
        back[i] = tk[i].t.ticket;
    struct msg m = {.kind = MSG_KIND_RETURN};
    m.ret = (struct msg_return){.n = (uint32_t)n, .tickets = back};
    say(&h, &s, 4, &m);
    simple(&h, &s, 4, MSG_KIND_BYE);
    simple(&h, &s, 5, MSG_KIND_BYE);
    save(dir, "loaders-return", &s);

    /* clients that left before their WELCOME, a dataset that differs, a
     * message before any HELLO */
    hello(&h, &s, 6, MSG_ROLE_LOADER, 2, dataset.fingerprint);
    hello(&h, &s, 7, MSG_ROLE_EVALUATOR, 0, 0);
    hello(&h, &s, 4, MSG_ROLE_LOADER, 2, dataset.fingerprint ^ 1);
    simple(&h, &s, 5, MSG_KIND_HISTORY);
    result(&h, &s, 2, MSG_SOURCE_KNN, "knn_top1", 0.5);
    save(dir, "strangers", &s);

    /* a trainer started again, whose first loader claims another dataset */
    fuzz_hub_tidy(&h);
    fuzz_hub_input(&h, (const uint8_t[]){FUZZ_HUB_FRESH, 0, 0, 0, 0}, 5);
    append(&s, (const uint8_t[]){FUZZ_HUB_FRESH, 0, 0, 0, 0}, 5);
    hello(&h, &s, 5, MSG_ROLE_LOADER, 8, dataset.fingerprint ^ 2);
    simple(&h, &s, 5, MSG_KIND_HEARTBEAT);
    n = tickets_for(&h, 5, tk);
    for (int i = 0; i < n; i++)
        answer(&h, &s, 5, &tk[i], 0, MSG_FAIL_DECODE);
    save(dir, "fresh-run", &s);
    return 0;
}
