/*
 * test_train_eval.c: lejepa-train's eval snapshots end to end (the tiny
 * model and tests/fake_loader of test_train.c, which answers eval tickets
 * with pixels that depend on (seed, split, index) alone). Each case is one
 * meson test (argv[1]). Checks: a run with eval.every publishes complete
 * snapshots (EMBED seq 0..k-1 with the right labels and row counts, the end
 * marker with chunks = k, FEATMAP with the eval-view pixels and the feature
 * grid's shape; for a ViT its patch tokens and CLS attention) and writes
 * probe_acc_val in [0, 1]; the training batches and losses are the same
 * with and without snapshots, also across a resume; a subscriber that never reads loses messages (counted and logged) but does
 * not slow training down; eval tickets a leaving loader returns are issued
 * again.
 */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "msg.h"
#include "rng.h"
#include "testing.h"
#include "test_train_util.h"
#include "util.h"

/* fake_loader's defaults and the tiny model of test_train_util.c */
#define N_TRAIN 40
#define N_VAL 8
#define CLASSES 10
#define SEED 7
#define SIZE 16
#define EMB_DIM 16
#define MAX_SEQ 64

/* The source=eval lines of a run's metrics.jsonl. */
struct eval_line {
    uint64_t step;
    double acc, rows, dropped;
};

struct eval_lines {
    struct eval_line *out;
    int n, cap;
};

static void add_eval_line(const struct json *j, void *ctx)
{
    struct eval_lines *c = ctx;
    if (c->n >= c->cap)
        return;
    struct eval_line *l = &c->out[c->n++];
    double step = json_number(j, "step");
    l->step = isnan(step) ? 0 : (uint64_t)step;
    l->acc = json_number(j, "probe_acc_val");
    l->rows = json_number(j, "eval_rows");
    l->dropped = json_number(j, "eval_dropped");
}

static int read_eval_lines(const struct env *e, const char *name,
                           struct eval_line *out, int cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", e->dir, name);
    struct eval_lines c = {out, 0, cap};
    metrics_each(path, "eval", add_eval_line, &c);
    return c.n;
}

struct span {
    double first, last;
};

static void add_time(const struct json *j, void *ctx)
{
    struct span *s = ctx;
    double t = json_number(j, "time");
    if (isnan(t))
        return;
    if (isnan(s->first))
        s->first = t;
    s->last = t;
}

/* Seconds from the first to the last train line of a run's metrics.jsonl:
 * the training itself, without start-up and the sockets' linger at exit. */
static double train_span(const struct env *e, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", e->dir, name);
    struct span s = {NAN, NAN};
    metrics_each(path, "train", add_time, &s);
    return s.last - s.first;
}

/* What one snapshot's messages added up to. */
struct snap {
    uint64_t step;
    int chunks_seen, end_chunks, ended, featmaps, bad;
    uint8_t seen[MAX_SEQ];
    int n_of[MAX_SEQ];
    int split_of[MAX_SEQ];
    int32_t labels[MAX_SEQ][N_TRAIN + N_VAL];
};

static struct snap *snap_for(struct snap *s, int *n, uint64_t step)
{
    for (int i = 0; i < *n; i++)
        if (s[i].step == step)
            return &s[i];
    CU_ASSERT_FATAL(*n < 4);
    memset(&s[*n], 0, sizeof s[*n]);
    s[*n].step = step;
    return &s[(*n)++];
}

static void on_embed(struct snap *s, const struct msg_embed *m)
{
    if (m->end) {
        s->ended++;
        s->end_chunks = (int)m->chunks;
        return;
    }
    if (m->seq >= MAX_SEQ || m->dim != EMB_DIM || m->n > N_TRAIN + N_VAL) {
        s->bad++;
        return;
    }
    s->chunks_seen++;
    s->seen[m->seq]++;
    s->n_of[m->seq] = (int)m->n;
    s->split_of[m->seq] = (int)m->split;
    msg_blob_read_i32(s->labels[m->seq], m->labels, m->n);
    float *emb = xmalloc((size_t)m->n * m->dim * sizeof *emb);
    msg_blob_read_f32(emb, m->emb, (size_t)m->n * m->dim);
    for (size_t i = 0; i < (size_t)m->n * m->dim; i++)
        s->bad += !isfinite(emb[i]);
    free(emb);
}

/* The FEATMAP a snapshot should carry: n images, fdim x grid x grid
 * features, heads attention maps (0: none). */
struct fm_want {
    uint32_t n, fdim, grid, heads;
};

/* The resnet: widths 8,16 with the small stem, 16 channels at stride 2. */
static const struct fm_want resnet_fm = {5, 16, SIZE / 2, 0};
/* The ViT of vit_args: dim 16 over a 4x4 grid of 4 px patches, 2 heads. */
static const struct fm_want vit_fm = {5, 16, SIZE / 4, 2};
static const char *const vit_args[] = {
    "--set", "model.backbone=vit", "--set", "model.patch=4", "--set",
    "model.dim=16", "--set", "model.depth=1", "--set", "model.heads=2", NULL,
};

/* Each head's CLS attention over the grid: non-negative, summing to at
 * most 1 (the CLS column is left out), not all zero. */
static void check_attention(const struct msg_featmap *m)
{
    size_t grid = (size_t)m->gh * m->gw, na = (size_t)m->n * m->heads * grid;
    float *a = xmalloc(na * sizeof *a);
    msg_blob_read_f32(a, m->attn, na);
    for (size_t r = 0; r < (size_t)m->n * m->heads; r++) {
        double sum = 0;
        int neg = 0;
        for (size_t t = 0; t < grid; t++) {
            neg |= !(a[r * grid + t] >= 0);
            sum += a[r * grid + t];
        }
        CU_ASSERT(!neg && sum > 0 && sum <= 1 + 1e-5);
    }
    free(a);
}

/* FEATMAP of the first want->n val samples: eval-view pixels as the fake
 * loader makes them (view 1000 + split, epoch 0), labels, feature grid. */
static void on_featmap(struct snap *s, const struct msg_featmap *m,
                       const struct fm_want *want)
{
    s->featmaps++;
    CU_ASSERT_EQUAL(m->n, want->n);
    CU_ASSERT_EQUAL(m->c, 1);
    CU_ASSERT_EQUAL(m->h, SIZE);
    CU_ASSERT_EQUAL(m->w, SIZE);
    CU_ASSERT_EQUAL(m->fdim, want->fdim);
    CU_ASSERT_EQUAL(m->gh, want->grid);
    CU_ASSERT_EQUAL(m->gw, want->grid);
    CU_ASSERT_EQUAL(m->heads, want->heads);
    CU_ASSERT_EQUAL(m->attn == NULL, want->heads == 0);
    if (m->n != want->n || m->fdim != want->fdim || m->gh != want->grid ||
        m->gw != want->grid || m->heads != want->heads)
        return;
    if (m->attn)
        check_attention(m);
    int32_t labels[64];
    msg_blob_read_i32(labels, m->labels, m->n);
    for (uint32_t i = 0; i < m->n; i++) {
        CU_ASSERT_EQUAL(labels[i], (int32_t)(i % CLASSES));
        struct rng r;
        rng_init(&r, SEED, 0, i, 1000 + MSG_SPLIT_VAL);
        const uint8_t *px = m->pixels + (size_t)i * SIZE * SIZE;
        int same = 1;
        for (size_t k = 0; k < SIZE * SIZE; k += 8) {
            uint64_t x = rng_u64(&r);
            for (size_t b = 0; b < 8; b++)
                same &= px[k + b] == (uint8_t)(x >> (8 * b));
        }
        CU_ASSERT(same);
    }
    size_t nf = (size_t)m->n * m->fdim * m->gh * m->gw;
    float *f = xmalloc(nf * sizeof *f);
    msg_blob_read_f32(f, m->feats, nf);
    int finite = 1, nonzero = 0;
    for (size_t i = 0; i < nf; i++) {
        finite &= isfinite(f[i]) != 0;
        nonzero |= f[i] != 0;
    }
    CU_ASSERT(finite && nonzero);
    free(f);
}

/* Chunks 0..k-1 each once, the end marker's count k, the train subset's
 * labels (indices 0, 2, 4, ... of 40) then the val split's, in seq order. */
static void check_snapshot(const struct snap *s, int subset)
{
    CU_ASSERT_EQUAL(s->ended, 1);
    CU_ASSERT_EQUAL(s->bad, 0);
    CU_ASSERT_EQUAL(s->featmaps, 1);
    CU_ASSERT_EQUAL(s->chunks_seen, s->end_chunks);
    int32_t got[N_TRAIN + N_VAL];
    int rows = 0, train_rows = 0, last_split = MSG_SPLIT_TRAIN;
    for (int q = 0; q < s->end_chunks && q < MAX_SEQ; q++) {
        CU_ASSERT_EQUAL(s->seen[q], 1);
        CU_ASSERT(s->split_of[q] >= last_split);
        last_split = s->split_of[q];
        for (int i = 0; i < s->n_of[q] && rows < N_TRAIN + N_VAL; i++)
            got[rows++] = s->labels[q][i];
        if (s->split_of[q] == MSG_SPLIT_TRAIN)
            train_rows += s->n_of[q];
    }
    CU_ASSERT_EQUAL(train_rows, subset);
    CU_ASSERT_EQUAL_FATAL(rows, subset + N_VAL);
    for (int i = 0; i < subset; i++)
        CU_ASSERT_EQUAL(got[i], (int32_t)((i * N_TRAIN / subset) % CLASSES));
    for (int i = 0; i < N_VAL; i++)
        CU_ASSERT_EQUAL(got[subset + i], (int32_t)(i % CLASSES));
}

static void *subscribe(void *ctx, const struct env *e, const char *const *topics,
                       int rcvhwm)
{
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    CU_ASSERT_FATAL(sub != NULL);
    int timeout = 200;
    CU_ASSERT(zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout) == 0);
    CU_ASSERT(zmq_setsockopt(sub, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm) == 0);
    for (int i = 0; topics[i]; i++)
        CU_ASSERT(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i])) == 0);
    CU_ASSERT_FATAL(zmq_connect(sub, e->bcast) == 0);
    return sub;
}

/* Two snapshots of a 6-step run with the given model (extra --set
 * arguments, NULL-ended) and the FEATMAP it should publish. */
static void snapshots(const char *const *model, const struct fm_want *fm)
{
    struct env e;
    env_init(&e);
    const char *args[32] = {
        "--steps", "6", "--set", "eval.every=3", "--set", "eval.train_subset=20",
        "--set", "eval.chunk=6", "--set", "eval.featmap_images=5",
    };
    int na = 10;
    for (int i = 0; model && model[i]; i++)
        args[na++] = model[i];
    args[na] = NULL;
    pid_t tr = start_trainer(&e, "snap", args);
    CU_ASSERT(wait_text(&e, "snap/log", "work endpoint", 20));
    void *ctx = zmq_ctx_new();
    const char *const topics[] = {"EMBED", "FEATMAP", NULL};
    void *sub = subscribe(ctx, &e, topics, 100000);
    usleep(300000);   /* the subscription reaches the trainer first */
    pid_t ld = start_loader(&e, "snap-loader", NULL);

    struct msg_limits lim;
    msg_limits_default(&lim);
    lim.max_msg_bytes = 16 << 20;
    struct msg_arena arena;
    msg_arena_init(&arena);
    struct snap *snaps = xcalloc(4, sizeof *snaps);
    int n_snaps = 0, ends = 0;
    double t0 = util_time_mono();
    while (ends < 2 && util_time_mono() - t0 < 40) {
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        if (msg_recv_sub(sub, 0, &frame, &m, &lim, &arena, err) != 0) {
            zmq_msg_close(&frame);
            continue;
        }
        if (m.kind == MSG_KIND_EMBED) {
            on_embed(snap_for(snaps, &n_snaps, m.embed.snapshot), &m.embed);
            ends += m.embed.end;
            CU_ASSERT_EQUAL(m.embed.step, m.embed.snapshot);
        } else if (m.kind == MSG_KIND_FEATMAP) {
            on_featmap(snap_for(snaps, &n_snaps, m.featmap.snapshot), &m.featmap, fm);
        }
        zmq_msg_close(&frame);
    }
    /* the FEATMAP follows the end marker */
    for (int i = 0; i < 10 && n_snaps == 2 && snaps[1].featmaps == 0; i++) {
        zmq_msg_t frame;
        struct msg m;
        char err[ERR_LEN];
        if (msg_recv_sub(sub, 0, &frame, &m, &lim, &arena, err) == 0 &&
            m.kind == MSG_KIND_FEATMAP)
            on_featmap(snap_for(snaps, &n_snaps, m.featmap.snapshot), &m.featmap, fm);
        zmq_msg_close(&frame);
    }
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
    CU_ASSERT_EQUAL_FATAL(n_snaps, 2);
    CU_ASSERT_EQUAL(snaps[0].step, 3);
    CU_ASSERT_EQUAL(snaps[1].step, 6);
    for (int i = 0; i < n_snaps; i++) {
        check_snapshot(&snaps[i], 20);
        /* 20 train rows in chunks of 6, then 8 val rows: 4 + 2 */
        CU_ASSERT_EQUAL(snaps[i].end_chunks, 6);
    }
    struct eval_line el[8];
    int ne = read_eval_lines(&e, "snap", el, 8);
    CU_ASSERT_EQUAL(ne, 2);
    for (int i = 0; i < ne; i++) {
        CU_ASSERT_EQUAL(el[i].step, 3u * (uint64_t)(i + 1));
        CU_ASSERT(el[i].acc >= 0 && el[i].acc <= 1);
        CU_ASSERT_EQUAL(el[i].rows, 28);
        CU_ASSERT_EQUAL(el[i].dropped, 0);
    }
    char *log = read_text(&e, "snap/log");
    CU_ASSERT(strstr(log, "snapshot 3: 28 rows (0 failed), 6 EMBED chunks") != NULL);
    free(log);
    free(snaps);
    msg_arena_free(&arena);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    env_free(&e);
}

static void test_snapshots(void)
{
    snapshots(NULL, &resnet_fm);
}

/* A ViT's FEATMAP: its patch tokens as the grid, with CLS attention. */
static void test_snapshots_vit(void)
{
    snapshots(vit_args, &vit_fm);
}

/* Snapshots are extra tickets and a forward in eval mode: the steps' batch
 * hashes and losses do not change, neither in one run nor across a resume. */
static void test_same_batches(void)
{
    struct env e;
    env_init(&e);
    struct line *a = xcalloc(MAX_LINES, sizeof *a), *b = xcalloc(MAX_LINES, sizeof *b);
    const char *const none[] = {"--set", "eval.every=-1", NULL};
    const char *const every[] = {"--set", "eval.every=2", "--set", "run.ckpt_every=5",
                                 NULL};
    int na = plain_run(&e, "plain", 1, "12", NULL, none, a);
    int nb = plain_run(&e, "snaps", 1, "12", NULL, every, b);
    CU_ASSERT_EQUAL(na, 12);
    CU_ASSERT_EQUAL(nb, 12);
    check_same(a, na, b, nb, 0);
    struct eval_line el[16];
    CU_ASSERT_EQUAL(read_eval_lines(&e, "plain", el, 16), 0);
    CU_ASSERT_EQUAL(read_eval_lines(&e, "snaps", el, 16), 6);

    char ck[4200];
    snprintf(ck, sizeof ck, "%s/snaps/ckpt-5.safetensors", e.dir);
    const char *const extra[] = {"--resume", ck, "--name", "again", NULL};
    pid_t tr = start_trainer(&e, "again", extra);
    pid_t ld = start_loader(&e, "again-loader", NULL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
    int nc = read_lines(&e, "again", b);
    CU_ASSERT_EQUAL(nc, 7);
    check_same(a, na, b, nc, 0);
    /* the checkpoint's config keeps eval.every = 2: steps 6, 8, 10, 12 */
    CU_ASSERT_EQUAL(read_eval_lines(&e, "again", el, 16), 4);
    free(a);
    free(b);
    env_free(&e);
}

static void timed_run(const struct env *e, const char *name, void *ctx,
                      void **sub_out)
{
    const char *const args[] = {
        "--steps", "60", "--set", "eval.every=1", "--set", "eval.train_subset=20",
        "--set", "eval.val_limit=8", "--set", "eval.chunk=1", NULL,
    };
    pid_t tr = start_trainer(e, name, args);
    char rel[300];
    snprintf(rel, sizeof rel, "%s/log", name);
    CU_ASSERT(wait_text(e, rel, "work endpoint", 20));
    if (ctx) {
        const char *const all[] = {"", NULL};
        *sub_out = subscribe(ctx, e, all, 1);
        usleep(300000);
    }
    char lname[64];
    snprintf(lname, sizeof lname, "%s-loader", name);
    pid_t ld = start_loader(e, lname, NULL);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(ld, 10), 0);
}

/* A subscriber that never reads: 60 snapshots of 31 messages overflow its
 * queue (high-water mark 1000 + one snapshot); the PUB socket drops its
 * messages alone, so the trainer neither waits nor loses a snapshot for
 * anyone else (no drop is charged to the snapshot), and trains the same
 * batches as fast. */
static void test_deaf_subscriber(void)
{
    struct env e;
    env_init(&e);
    void *ctx = zmq_ctx_new(), *sub = NULL;
    timed_run(&e, "ref", NULL, NULL);
    timed_run(&e, "deaf", ctx, &sub);
    double ref = train_span(&e, "ref"), deaf = train_span(&e, "deaf");
    fprintf(stderr, "\n  60 steps with a snapshot after each: %.2f s without a "
            "subscriber, %.2f s with a deaf one\n", ref, deaf);
    CU_ASSERT(deaf < 1.5 * ref + 1);
    struct line *a = xcalloc(MAX_LINES, sizeof *a), *b = xcalloc(MAX_LINES, sizeof *b);
    int na = read_lines(&e, "ref", a), nb = read_lines(&e, "deaf", b);
    CU_ASSERT_EQUAL(na, 60);
    CU_ASSERT_EQUAL(nb, 60);
    check_same(a, na, b, nb, 0);
    struct eval_line el[64];
    int ne = read_eval_lines(&e, "deaf", el, 64);
    CU_ASSERT_EQUAL(ne, 60);
    for (int i = 0; i < ne; i++) {
        CU_ASSERT_EQUAL(el[i].rows, 28);
        CU_ASSERT_EQUAL(el[i].dropped, 0);
    }
    CU_ASSERT_EQUAL(read_eval_lines(&e, "ref", el, 64), 60);
    for (int i = 0; i < 60; i++)
        CU_ASSERT_EQUAL(el[i].dropped, 0);
    free(a);
    free(b);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    env_free(&e);
}

/* A loader that leaves during a snapshot returns its eval tickets; they go
 * to the other loader and the snapshot completes with every row. */
static void test_returned_eval_tickets(void)
{
    struct env e;
    env_init(&e);
    const char *const args[] = {"--steps", "4", "--set", "eval.every=2", NULL};
    const char *const slow[] = {"--delay-ms", "40", "--credit", "1", NULL};
    const char *const stuck[] = {"--delay-ms", "100000", "--credit", "4", NULL};
    pid_t tr = start_trainer(&e, "ret", args);
    pid_t b = start_loader(&e, "ret-b", slow);
    CU_ASSERT(wait_text(&e, "ret/log", "snapshot 2 begins", 30));
    pid_t a = start_loader(&e, "ret-a", stuck);
    CU_ASSERT(wait_text(&e, "ret/log", "ret-a joined", 10));
    usleep(200000);
    kill(a, SIGTERM);
    CU_ASSERT_EQUAL(testing_wait_exit(a, 10), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    CU_ASSERT_EQUAL(testing_wait_exit(b, 10), 0);
    char *log = read_text(&e, "ret/log");
    CU_ASSERT(strstr(log, "ret-a returned 4 tickets") != NULL);
    free(log);
    struct eval_line el[8];
    int ne = read_eval_lines(&e, "ret", el, 8);
    CU_ASSERT_EQUAL(ne, 2);
    for (int i = 0; i < ne; i++)
        CU_ASSERT_EQUAL(el[i].rows, N_TRAIN + N_VAL);
    env_free(&e);
}

int main(int argc, char **argv)
{
    static const struct testing_case all[] = {
        {"snapshots", test_snapshots},
        {"snapshots_vit", test_snapshots_vit},
        {"same_batches", test_same_batches},
        {"deaf_subscriber", test_deaf_subscriber},
        {"returned_eval_tickets", test_returned_eval_tickets},
        {NULL, NULL},
    };
    signal(SIGPIPE, SIG_IGN);
    return testing_run_named("train_eval", all, argc, argv);
}
