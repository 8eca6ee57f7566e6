/*
 * test_loader.c: lejepa-loader end to end, run as subprocesses from the
 * build tree ($LEJEPA_BUILD_ROOT/loaders/lejepa-loader) against a fake
 * trainer in this process (a ROUTER on ipc:// in a temp dir, speaking
 * proto/msg.h), over a generated image folder: seeded random PNGs in three
 * classes plus corrupt, empty, non-image and truncated files.
 *
 * Checks: HELLO carries the dataset's fingerprint, counts and classes;
 * every TICKET gets exactly one BATCH, consistent with its ticket, whose
 * pixels equal augment_views / augment_eval_view called here for the same
 * (seed, epoch, index, view), and a second loader's BATCH for the same
 * ticket byte for byte; bad files come back as failures with their paths
 * and the loader keeps serving; a crashing worker fails one sample; a
 * hanging one times out; malformed messages do not stop it; REFUSE exits 1
 * with the reason printed; a trainer that goes away and comes back gets a
 * new HELLO from a new routing id; SIGTERM mid-work gives RETURN of the
 * unfinished tickets, BYE and exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vips/vips.h>

#include "augment.h"
#include "config.h"
#include "dataset.h"
#include "msg.h"
#include "testing.h"
#include "util.h"

enum { N_CLASSES = 3, PER_CLASS = 6, PER_CLASS_VAL = 2, IMG_W = 23, IMG_H = 19 };

#define HEARTBEAT_MS 200
#define MAX_PEERS 8
#define RECV_TIMEOUT_MS 10000

static const char *const class_names[N_CLASSES] = {"ant", "bee", "cat"};

static const char *config_text =
    "[run]\n"
    "seed = 7\n"
    "ticket_size = 16\n"
    "[views]\n"
    "channels = 3\n"
    "global_count = 2\n"
    "global_size = 12\n"
    "local_count = 3\n"
    "local_size = 6\n"
    "mean = 0.5,0.5,0.5\n"
    "std = 0.25,0.25,0.25\n";

static char *tmp_dir;
static char data_dir[4096];
static char endpoint[4200];
static void *zctx;
static struct config cfg;
static struct dataset ds;

/* ---- dataset ----------------------------------------------------------- */

static void write_png(const char *path, uint64_t *rng)
{
    uint8_t px[IMG_W * IMG_H * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)testing_rand_u64(rng);
    VipsImage *im = vips_image_new_from_memory_copy(px, sizeof px, IMG_W, IMG_H, 3,
                                                    VIPS_FORMAT_UCHAR);
    CHECK(im);
    CHECK(vips_pngsave(im, path, NULL) == 0);
    g_object_unref(im);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    char err[ERR_LEN];
    CHECK(util_write_file_atomic(path, data, len, err) == 0);
}

/* Three classes of random PNGs in train/ and val/, plus bad files in
 * train/bee: empty, not an image, random bytes, a truncated PNG, and a good
 * image whose name the crash/hang test hooks match. */
static void make_dataset(void)
{
    uint64_t rng = 12345;
    char path[4300], err[ERR_LEN];
    snprintf(data_dir, sizeof data_dir, "%s/data", tmp_dir);
    for (int split = 0; split < 2; split++) {
        for (int c = 0; c < N_CLASSES; c++) {
            snprintf(path, sizeof path, "%s/%s/%s", data_dir, split ? "val" : "train",
                     class_names[c]);
            CHECK(util_mkdir_p(path, err) == 0);
            int n = split ? PER_CLASS_VAL : PER_CLASS;
            for (int i = 0; i < n; i++) {
                snprintf(path, sizeof path, "%s/%s/%s/%02d.png", data_dir,
                         split ? "val" : "train", class_names[c], i);
                write_png(path, &rng);
            }
        }
    }
    snprintf(path, sizeof path, "%s/train/bee/zz_empty.png", data_dir);
    write_bytes(path, "", 0);
    snprintf(path, sizeof path, "%s/train/bee/zz_text.jpg", data_dir);
    write_bytes(path, "this is not an image\n", 21);
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)testing_rand_u64(&rng);
    snprintf(path, sizeof path, "%s/train/bee/zz_junk.png", data_dir);
    write_bytes(path, junk, sizeof junk);
    snprintf(path, sizeof path, "%s/train/bee/00.png", data_dir);
    size_t len;
    char *png = util_read_file(path, &len, err);
    CHECK(png);
    snprintf(path, sizeof path, "%s/train/bee/zz_truncated.png", data_dir);
    write_bytes(path, png, len / 2);
    free(png);
    snprintf(path, sizeof path, "%s/train/cat/zz_fault.png", data_dir);
    write_png(path, &rng);
}

/* Index of a sample by its relative path; fails the test if absent. */
static uint64_t sample_index(int split, const char *rel)
{
    for (size_t i = 0; i < ds.split[split].n; i++)
        if (strcmp(ds.split[split].paths[i], rel) == 0)
            return i;
    CU_FAIL_FATAL("sample not in the index");
    return 0;
}

/* ---- fake trainer ------------------------------------------------------ */

struct peer {
    uint8_t id[256];
    size_t id_len;
};

struct trainer {
    void *sock;
    struct msg_limits lim;
    struct msg_arena arena;
    zmq_msg_t frame;
    bool has_frame;
    uint8_t id[256];        /* the peer of the last message */
    size_t id_len;
    struct msg m;
    struct peer peers[MAX_PEERS];   /* welcomed loaders: sent heartbeats */
    int n_peers;
    double next_hb;
};

static void trainer_open(struct trainer *t)
{
    char err[ERR_LEN];
    memset(t, 0, sizeof *t);
    msg_arena_init(&t->arena);
    struct msg_limit_params p;
    msg_limit_params_from_config(&p, &cfg);
    msg_limits_compute(&t->lim, &p);
    t->sock = zmq_socket(zctx, ZMQ_ROUTER);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->sock);
    int zero = 0;
    CU_ASSERT_EQUAL_FATAL(zmq_setsockopt(t->sock, ZMQ_LINGER, &zero, sizeof zero), 0);
    CU_ASSERT_EQUAL_FATAL(msg_limits_apply(t->sock, &t->lim, err), 0);
    CU_ASSERT_EQUAL_FATAL(zmq_bind(t->sock, endpoint), 0);
}

static void trainer_release(struct trainer *t)
{
    if (t->has_frame)
        zmq_msg_close(&t->frame);
    t->has_frame = false;
}

static void trainer_close(struct trainer *t)
{
    trainer_release(t);
    CU_ASSERT_EQUAL(zmq_close(t->sock), 0);
    msg_arena_free(&t->arena);
}

static void trainer_send(struct trainer *t, const void *id, size_t id_len,
                         const struct msg *m);
static int trainer_recv(struct trainer *t, int timeout_ms);

/* HEARTBEAT to every welcomed peer, as a trainer does. */
static void trainer_heartbeat(struct trainer *t)
{
    struct msg hb = {.kind = MSG_KIND_HEARTBEAT};
    hb.heartbeat = (struct msg_heartbeat){.time = util_time_unix(), .held = 0};
    for (int i = 0; i < t->n_peers; i++)
        trainer_send(t, t->peers[i].id, t->peers[i].id_len, &hb);
}

/* Serves heartbeats for ms while expecting nothing but heartbeats. */
static void trainer_idle(struct trainer *t, int ms)
{
    if (trainer_recv(t, ms) == 0) {
        fprintf(stderr, "fake trainer: unexpected %s\n", msg_kind_name(t->m.kind));
        CU_FAIL("unexpected message while idle");
    }
}

/* Next message (any peer) into t->m within timeout_ms, skipping HEARTBEATs
 * unless want is MSG_KIND_HEARTBEAT. 0, or -1 on timeout. */
static int trainer_recv(struct trainer *t, int timeout_ms)
{
    char err[ERR_LEN];
    double end = util_time_mono() + timeout_ms / 1000.0;
    for (;;) {
        trainer_release(t);
        double now = util_time_mono();
        if (now >= t->next_hb) {
            trainer_heartbeat(t);
            t->next_hb = now + HEARTBEAT_MS / 1000.0;
        }
        long left = (long)((end - now) * 1000.0);
        if (left < 0)
            return -1;
        long to_hb = (long)((t->next_hb - now) * 1000.0) + 1;
        zmq_pollitem_t it = {.socket = t->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, left < to_hb ? left : to_hb) < 0)
            continue;
        if (!(it.revents & ZMQ_POLLIN))
            continue;
        int rc = msg_recv_from(t->sock, ZMQ_DONTWAIT, t->id, &t->id_len, &t->frame, &t->m,
                               &t->lim, &t->arena, err);
        t->has_frame = true;
        if (rc < 0) {
            fprintf(stderr, "fake trainer: bad message: %s\n", err);
            CU_FAIL("the loader sent a malformed message");
            continue;
        }
        if (t->m.kind != MSG_KIND_HEARTBEAT)
            return 0;
    }
}

/* Waits for a message of `kind`, failing the test on anything else. */
static int trainer_expect(struct trainer *t, enum msg_kind kind, int timeout_ms)
{
    if (trainer_recv(t, timeout_ms) < 0) {
        fprintf(stderr, "fake trainer: no %s within %d ms\n", msg_kind_name(kind),
                timeout_ms);
        return -1;
    }
    if (t->m.kind != kind) {
        fprintf(stderr, "fake trainer: got %s, expected %s\n", msg_kind_name(t->m.kind),
                msg_kind_name(kind));
        return -1;
    }
    return 0;
}

static void trainer_send(struct trainer *t, const void *id, size_t id_len,
                         const struct msg *m)
{
    char err[ERR_LEN];
    int rc = msg_send_to(t->sock, id, id_len, m, err);
    if (rc < 0)
        fprintf(stderr, "fake trainer: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
}

/* Receives HELLO, checks its dataset summary, answers WELCOME. */
static void trainer_welcome(struct trainer *t, struct peer *p, uint32_t credit)
{
    CU_ASSERT_EQUAL_FATAL(trainer_expect(t, MSG_KIND_HELLO, RECV_TIMEOUT_MS), 0);
    const struct msg_hello *h = &t->m.hello;
    CU_ASSERT_EQUAL(h->role, MSG_ROLE_LOADER);
    CU_ASSERT(h->has_dataset);
    CU_ASSERT_EQUAL(h->dataset.fingerprint, ds.fingerprint);
    CU_ASSERT_EQUAL(h->dataset.n_train, N_CLASSES * PER_CLASS + 5);
    CU_ASSERT_EQUAL(h->dataset.n_val, N_CLASSES * PER_CLASS_VAL);
    CU_ASSERT_EQUAL_FATAL(h->dataset.n_classes, N_CLASSES);
    for (int c = 0; c < N_CLASSES; c++)
        CU_ASSERT_STRING_EQUAL(h->dataset.classes[c], class_names[c]);
    if (credit)
        CU_ASSERT_EQUAL(h->credit, credit);
    memcpy(p->id, t->id, t->id_len);
    p->id_len = t->id_len;
    if (t->n_peers < MAX_PEERS)
        t->peers[t->n_peers++] = *p;
    struct msg w = {.kind = MSG_KIND_WELCOME};
    w.welcome = (struct msg_welcome){.run = "test-run", .broadcast = "tcp://127.0.0.1:1",
                                     .config = config_text, .heartbeat_ms = HEARTBEAT_MS,
                                     .client_id = 1};
    trainer_send(t, p->id, p->id_len, &w);
}

static struct msg_ticket make_ticket(uint64_t id, enum msg_split split, enum msg_work work,
                                     const uint64_t *idx, uint32_t n)
{
    return (struct msg_ticket){.ticket = id, .step = id * 10, .epoch = 3, .split = split,
                               .work = work, .seed = 7, .n = n, .indices = idx};
}

static void send_ticket_msg(struct trainer *t, const struct peer *p,
                            const struct msg_ticket *tk)
{
    struct msg m = {.kind = MSG_KIND_TICKET, .ticket = *tk};
    trainer_send(t, p->id, p->id_len, &m);
}

static void send_ticket(struct trainer *t, const struct peer *p, uint64_t id,
                        enum msg_split split, enum msg_work work, const uint64_t *idx,
                        uint32_t n)
{
    struct msg_ticket tk = make_ticket(id, split, work, idx, n);
    send_ticket_msg(t, p, &tk);
}

/* ---- loader processes -------------------------------------------------- */

/* Starts the loader; stderr goes to err_path when given. fault sets the
 * worker test hook; memory_mb, when given, --worker-memory-mb. */
static pid_t loader_start(const char *name, const char *credit, const char *timeout,
                          const char *fault, const char *err_path, const char *memory_mb)
{
    const char *root = getenv("LEJEPA_BUILD_ROOT");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    char prog[4096];
    snprintf(prog, sizeof prog, "%s/loaders/lejepa-loader", root);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        if (fault)
            setenv("LEJEPA_LOADER_FAULT", fault, 1);
        if (err_path) {
            int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || dup2(fd, 2) < 0)
                _exit(120);
        }
        const char *args[] = {prog, "--connect", endpoint, "--data", data_dir,
                              "--workers", "2", "--name", name, "--credit", credit,
                              "--sample-timeout", timeout, "--worker-memory-mb",
                              memory_mb, NULL};
        if (!memory_mb)
            args[13] = NULL;
        execv(prog, (char *const *)args);
        _exit(121);
    }
    return pid;
}

/* Exit status of pid within timeout_s, or -1 (then it is killed). */
static int loader_wait(pid_t pid, double timeout_s)
{
    double end = util_time_mono() + timeout_s;
    int st;
    while (util_time_mono() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static int loader_alive(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

/* ---- checks ------------------------------------------------------------ */

/* Views of one sample computed here, as the loader must compute them (with
 * eval_view, then the eval view of the image decoded for them). */
static void expected_views(uint8_t *out, int split, uint64_t index, enum msg_work work,
                           bool eval_view, uint64_t seed, uint64_t epoch)
{
    char path[4096], err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(dataset_sample_path(&ds, split, index, path, sizeof path), 0);
    struct image im;
    const struct config_views *v = &cfg.views;
    int target = work == MSG_WORK_EVAL ? (int)v->global_size : augment_load_target(v);
    CU_ASSERT_EQUAL_FATAL(image_load(&im, path, (int)v->channels, v->max_pixels, target,
                                     err), 0);
    if (work == MSG_WORK_EVAL) {
        augment_eval_view(out, &im, v);
    } else {
        uint8_t *g[16], *l[16];
        size_t gb = (size_t)(v->channels * v->global_size * v->global_size);
        size_t lb = (size_t)(v->channels * v->local_size * v->local_size);
        for (int i = 0; i < v->global_count; i++)
            g[i] = out + (size_t)i * gb;
        for (int i = 0; i < v->local_count; i++)
            l[i] = out + (size_t)v->global_count * gb + (size_t)i * lb;
        augment_views(g, l, &im, v, seed, epoch, index);
        if (eval_view)
            augment_eval_view(out + (size_t)v->global_count * gb +
                                  (size_t)v->local_count * lb,
                              &im, v);
    }
    image_free(&im);
}

/* Checks a BATCH against its ticket and against views computed here.
 * Returns the number of pixel mismatches. */
static int check_batch(const struct msg_batch *b, const struct msg_ticket *t)
{
    char err[ERR_LEN];
    int rc = msg_batch_check_ticket(b, t, err);
    if (rc < 0)
        fprintf(stderr, "batch vs ticket: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    const struct config_views *v = &cfg.views;
    int split = t->split == MSG_SPLIT_VAL ? DATASET_VAL : DATASET_TRAIN;
    int eval = t->work == MSG_WORK_EVAL;
    uint32_t train_groups = eval || v->local_count == 0 ? 1u : 2u;
    CU_ASSERT_EQUAL_FATAL(b->n_groups, train_groups + t->eval_view);
    uint32_t c = (uint32_t)v->channels, gs = (uint32_t)v->global_size;
    uint32_t ls = (uint32_t)v->local_size;
    CU_ASSERT(b->groups[0].views == (eval ? 1u : (uint32_t)v->global_count) &&
              b->groups[0].c == c && b->groups[0].h == gs && b->groups[0].w == gs);
    if (!eval)
        CU_ASSERT(b->groups[1].views == (uint32_t)v->local_count && b->groups[1].c == c &&
                  b->groups[1].h == ls && b->groups[1].w == ls);
    size_t gplane = (size_t)c * gs * gs, lplane = (size_t)c * ls * ls;
    uint8_t *want = xmalloc(gplane * 16 + lplane * 16);
    int mismatches = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        CU_ASSERT_EQUAL(b->labels[i], ds.split[split].labels[b->indices[i]]);
        expected_views(want, split, b->indices[i], t->work, t->eval_view, t->seed, t->epoch);
        uint32_t gv = b->groups[0].views;
        for (uint32_t vi = 0; vi < gv; vi++)
            mismatches += memcmp(b->groups[0].pixels + ((size_t)vi * b->n + i) * gplane,
                                 want + vi * gplane, gplane) != 0;
        for (uint32_t vi = 0; !eval && vi < b->groups[1].views; vi++)
            mismatches += memcmp(b->groups[1].pixels + ((size_t)vi * b->n + i) * lplane,
                                 want + gv * gplane + vi * lplane, lplane) != 0;
        if (t->eval_view) {
            const struct msg_group *ev = &b->groups[train_groups];
            CU_ASSERT(ev->views == 1 && ev->c == c && ev->h == gs && ev->w == gs);
            mismatches += memcmp(ev->pixels + (size_t)i * gplane,
                                 want + gv * gplane + (size_t)v->local_count * lplane,
                                 gplane) != 0;
        }
    }
    free(want);
    CU_ASSERT_EQUAL(mismatches, 0);
    return mismatches;
}

static const char *failure_reason(const struct msg_batch *b, uint64_t index)
{
    for (uint32_t i = 0; i < b->n_failures; i++)
        if (b->failures[i].index == index)
            return b->failures[i].reason;
    return NULL;
}

static int failure_class(const struct msg_batch *b, uint64_t index)
{
    for (uint32_t i = 0; i < b->n_failures; i++)
        if (b->failures[i].index == index)
            return (int)b->failures[i].fail_class;
    return -1;
}

static const char *failure_path(const struct msg_batch *b, uint64_t index)
{
    for (uint32_t i = 0; i < b->n_failures; i++)
        if (b->failures[i].index == index)
            return b->failures[i].path;
    return NULL;
}

/* Copies of group pixels, to compare two loaders. */
struct blob {
    uint8_t *p[2];
    size_t n[2];
};

static void blob_take(struct blob *x, const struct msg_batch *b)
{
    for (uint32_t g = 0; g < b->n_groups && g < 2; g++) {
        const struct msg_group *gr = &b->groups[g];
        x->n[g] = (size_t)gr->views * b->n * gr->c * gr->h * gr->w;
        x->p[g] = xmalloc(x->n[g] + 1);
        memcpy(x->p[g], gr->pixels, x->n[g]);
    }
}

/* ---- tests ------------------------------------------------------------- */

/* Tickets to two loaders: views match augment here and each other; bad
 * files and out-of-range indices are failures with paths; a crashing
 * worker fails one sample; malformed messages are survived. */
static void test_serve(void)
{
    struct trainer t;
    trainer_open(&t);
    pid_t a = loader_start("loader-a", "3", "30", "crash:zz_fault", NULL, NULL);
    pid_t b = loader_start("loader-b", "5", "30", NULL, NULL, NULL);
    struct peer pa, pb;
    trainer_welcome(&t, &pa, 0);
    trainer_welcome(&t, &pb, 0);
    /* Which HELLO came first is up to the scheduler: name the peers by id. */
    if (memmem(pa.id, pa.id_len, "loader-b", 8)) {
        struct peer tmp = pa;
        pa = pb;
        pb = tmp;
    }
    CU_ASSERT_PTR_NOT_NULL(memmem(pa.id, pa.id_len, "loader-a", 8));

    static const char *const good_paths[8] = {
        "train/cat/02.png", "train/ant/00.png", "train/bee/01.png", "train/ant/03.png",
        "train/cat/00.png", "train/bee/05.png", "train/cat/05.png", "train/ant/05.png",
    };
    uint64_t good[8];
    for (int i = 0; i < 8; i++)
        good[i] = sample_index(DATASET_TRAIN, good_paths[i]);
    uint64_t val[4] = {5, 0, 3, 1};
    uint64_t bad[7] = {
        sample_index(DATASET_TRAIN, "train/bee/00.png"),
        sample_index(DATASET_TRAIN, "train/bee/zz_empty.png"),
        sample_index(DATASET_TRAIN, "train/bee/zz_text.jpg"),
        sample_index(DATASET_TRAIN, "train/bee/zz_junk.png"),
        sample_index(DATASET_TRAIN, "train/bee/zz_truncated.png"),
        999,
        sample_index(DATASET_TRAIN, "train/cat/zz_fault.png"),
    };
    struct msg_ticket tk[4] = {
        make_ticket(101, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, good, 8),
        make_ticket(102, MSG_SPLIT_VAL, MSG_WORK_EVAL, val, 4),
        make_ticket(103, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, bad, 7),
        make_ticket(104, MSG_SPLIT_VAL, MSG_WORK_TRAIN, val, 4),
    };
    tk[3].eval_view = true;     /* the eval view after the training views */
    for (int i = 0; i < 4; i++)
        send_ticket_msg(&t, &pa, &tk[i]);
    send_ticket_msg(&t, &pb, &tk[0]);

    int got[4] = {0}, got_b = 0;
    struct blob from_a = {0}, from_b = {0};
    for (int k = 0; k < 5; k++) {
        if (trainer_expect(&t, MSG_KIND_BATCH, RECV_TIMEOUT_MS) < 0) {
            CU_FAIL("a ticket got no BATCH");
            break;
        }
        const struct msg_batch *bt = &t.m.batch;
        int which = (int)bt->ticket - 101;
        CU_ASSERT_FATAL(which >= 0 && which < 4);
        int from_peer_a = t.id_len == pa.id_len && !memcmp(t.id, pa.id, pa.id_len);
        check_batch(bt, &tk[which]);
        if (!from_peer_a) {
            got_b++;
            blob_take(&from_b, bt);
            continue;
        }
        got[which]++;
        if (which == 0)
            blob_take(&from_a, bt);
        if (which == 1 || which == 3) {
            CU_ASSERT_EQUAL(bt->n, 4);
        }
        if (which == 0) {
            CU_ASSERT_EQUAL(bt->n, 8);
        }
        if (which == 2) {
            CU_ASSERT_EQUAL(bt->n, 1);
            CU_ASSERT_EQUAL(bt->n_failures, 6);
            CU_ASSERT_STRING_EQUAL(failure_path(bt, bad[1]), "train/bee/zz_empty.png");
            CU_ASSERT_STRING_EQUAL(failure_path(bt, bad[2]), "train/bee/zz_text.jpg");
            CU_ASSERT_STRING_EQUAL(failure_path(bt, bad[3]), "train/bee/zz_junk.png");
            CU_ASSERT_STRING_EQUAL(failure_path(bt, bad[4]), "train/bee/zz_truncated.png");
            CU_ASSERT_STRING_EQUAL(failure_path(bt, bad[6]), "train/cat/zz_fault.png");
            for (int i = 1; i < 7; i++) {
                const char *r = failure_reason(bt, bad[i]);
                CU_ASSERT(r && r[0]);
            }
            /* the files' own faults, then the loader's (index, crash) */
            for (int i = 1; i < 5; i++)
                CU_ASSERT_EQUAL(failure_class(bt, bad[i]), MSG_FAIL_DECODE);
            CU_ASSERT_EQUAL(failure_class(bt, 999), MSG_FAIL_ENV);
            CU_ASSERT_EQUAL(failure_class(bt, bad[6]), MSG_FAIL_ENV);
            const char *r = failure_reason(bt, bad[6]);
            CU_ASSERT(r && strstr(r, "worker crashed (signal 11"));
            r = failure_reason(bt, 999);
            CU_ASSERT(r && strstr(r, "out of range"));
        }
    }
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(got[i], 1);
    CU_ASSERT_EQUAL(got_b, 1);
    for (int g = 0; g < 2; g++) {
        CU_ASSERT(from_a.n[g] > 0 && from_a.n[g] == from_b.n[g]);
        CU_ASSERT(from_a.p[g] && from_b.p[g] &&
                  memcmp(from_a.p[g], from_b.p[g], from_a.n[g]) == 0);
        free(from_a.p[g]);
        free(from_b.p[g]);
    }
    /* No second BATCH for any ticket. */
    CU_ASSERT_EQUAL(trainer_recv(&t, 3 * HEARTBEAT_MS), -1);

    /* Malformed frames: garbage, a wrong kind, a message of the wrong
     * version; then the loader still serves. */
    const char *junk[] = {"\xc1", "\x81\xa1v\x02", "not msgpack at all"};
    for (int i = 0; i < 3; i++) {
        CU_ASSERT(zmq_send(t.sock, pa.id, pa.id_len, ZMQ_SNDMORE) >= 0);
        CU_ASSERT(zmq_send(t.sock, junk[i], strlen(junk[i]), 0) >= 0);
    }
    send_ticket(&t, &pa, 105, MSG_SPLIT_TRAIN, MSG_WORK_EVAL, good, 3);
    struct msg_ticket t5 = make_ticket(105, MSG_SPLIT_TRAIN, MSG_WORK_EVAL, good, 3);
    CU_ASSERT_EQUAL(trainer_expect(&t, MSG_KIND_BATCH, RECV_TIMEOUT_MS), 0);
    if (t.m.kind == MSG_KIND_BATCH)
        check_batch(&t.m.batch, &t5);
    CU_ASSERT(loader_alive(a));
    CU_ASSERT(loader_alive(b));

    kill(a, SIGTERM);
    kill(b, SIGTERM);
    int byes = 0;
    while (byes < 2 && trainer_recv(&t, RECV_TIMEOUT_MS) == 0) {
        CU_ASSERT_EQUAL(t.m.kind, MSG_KIND_BYE);
        byes += t.m.kind == MSG_KIND_BYE;
    }
    CU_ASSERT_EQUAL(byes, 2);
    CU_ASSERT_EQUAL(loader_wait(a, 15), 0);
    CU_ASSERT_EQUAL(loader_wait(b, 15), 0);
    trainer_close(&t);
}

/* REFUSE: exit 1 with the reason on stderr. */
static void test_refuse(void)
{
    struct trainer t;
    trainer_open(&t);
    char err_path[4200];
    snprintf(err_path, sizeof err_path, "%s/refuse.err", tmp_dir);
    pid_t a = loader_start("loader-r", "2", "30", NULL, err_path, NULL);
    CU_ASSERT_EQUAL_FATAL(trainer_expect(&t, MSG_KIND_HELLO, RECV_TIMEOUT_MS), 0);
    struct msg r = {.kind = MSG_KIND_REFUSE};
    r.refuse.reason = "dataset fingerprint differs (testing)";
    trainer_send(&t, t.id, t.id_len, &r);
    CU_ASSERT_EQUAL(loader_wait(a, 15), 1);
    char err[ERR_LEN];
    char *text = util_read_file(err_path, NULL, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "dataset fingerprint differs (testing)"));
    free(text);
    trainer_close(&t);
}

/* The trainer goes away (socket closed) and comes back: a new HELLO from a
 * new routing id. Also: the loader started before any trainer. */
static void test_reconnect(void)
{
    pid_t a = loader_start("loader-c", "2", "30", NULL, NULL, NULL);
    usleep(1200000);   /* no trainer yet: the loader keeps trying */
    struct trainer t;
    trainer_open(&t);
    struct peer p1, p2;
    trainer_welcome(&t, &p1, 2);
    uint64_t idx[2] = {0, 1};
    send_ticket(&t, &p1, 201, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, idx, 2);
    CU_ASSERT_EQUAL(trainer_expect(&t, MSG_KIND_BATCH, RECV_TIMEOUT_MS), 0);
    trainer_close(&t);
    usleep(200000);
    trainer_open(&t);
    trainer_welcome(&t, &p2, 2);
    CU_ASSERT(p1.id_len != p2.id_len || memcmp(p1.id, p2.id, p1.id_len) != 0);
    send_ticket(&t, &p2, 202, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, idx, 2);
    CU_ASSERT_EQUAL(trainer_expect(&t, MSG_KIND_BATCH, RECV_TIMEOUT_MS), 0);
    /* BYE from the trainer: the loader waits for the next one. */
    struct msg bye = {.kind = MSG_KIND_BYE};
    bye.bye.reason = "run finished";
    trainer_send(&t, p2.id, p2.id_len, &bye);
    struct peer p3;
    trainer_welcome(&t, &p3, 2);
    CU_ASSERT(p3.id_len != p2.id_len || memcmp(p3.id, p2.id, p2.id_len) != 0);
    send_ticket(&t, &p3, 203, MSG_SPLIT_VAL, MSG_WORK_EVAL, idx, 2);
    CU_ASSERT_EQUAL(trainer_expect(&t, MSG_KIND_BATCH, RECV_TIMEOUT_MS), 0);
    kill(a, SIGTERM);
    CU_ASSERT_EQUAL(trainer_expect(&t, MSG_KIND_BYE, RECV_TIMEOUT_MS), 0);
    CU_ASSERT_EQUAL(loader_wait(a, 15), 0);
    trainer_close(&t);
}

/* --worker-memory-mb: a sample that allocates past the limit (the hook
 * touches 1 GiB; without the limit it would decode) fails as env, naming
 * the limit; the worker is replaced and serves the next sample. */
static void test_memory_limit(void)
{
    struct trainer t;
    trainer_open(&t);
    pid_t a = loader_start("loader-m", "2", "30", "alloc:ant/00", NULL, "512");
    struct peer p;
    trainer_welcome(&t, &p, 0);
    uint64_t idx[2] = {sample_index(DATASET_TRAIN, "train/ant/00.png"),
                       sample_index(DATASET_TRAIN, "train/ant/01.png")};
    /* twice: the replaced worker runs under the same limit */
    for (uint64_t id = 301; id <= 302; id++) {
        send_ticket(&t, &p, id, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, idx, 2);
        CU_ASSERT_EQUAL_FATAL(trainer_expect(&t, MSG_KIND_BATCH, RECV_TIMEOUT_MS), 0);
        const struct msg_batch *bt = &t.m.batch;
        CU_ASSERT_EQUAL(bt->n, 1);
        CU_ASSERT_EQUAL(bt->n_failures, 1);
        const char *r = failure_reason(bt, idx[0]);
        CU_ASSERT(r && strstr(r, "worker memory limit 512 MB"));
        CU_ASSERT_EQUAL(failure_class(bt, idx[0]), MSG_FAIL_ENV);
    }
    kill(a, SIGTERM);
    CU_ASSERT_EQUAL(trainer_expect(&t, MSG_KIND_BYE, RECV_TIMEOUT_MS), 0);
    CU_ASSERT_EQUAL(loader_wait(a, 15), 0);
    trainer_close(&t);
}

/* A hanging sample times out (worker killed); SIGTERM while a ticket is
 * stuck: after the grace period RETURN names it and the ticket that came
 * after the signal, then BYE and exit 0. */
static void test_hang_and_stop(void)
{
    struct trainer t;
    trainer_open(&t);
    pid_t a = loader_start("loader-h", "4", "1.5", "hang:zz_fault", NULL, NULL);
    pid_t b = loader_start("loader-s", "4", "50", "hang:zz_fault", NULL, NULL);
    struct peer pa, pb;
    trainer_welcome(&t, &pa, 4);
    trainer_welcome(&t, &pb, 4);
    if (memmem(pa.id, pa.id_len, "loader-s", 8)) {
        struct peer tmp = pa;
        pa = pb;
        pb = tmp;
    }
    uint64_t idx[3] = {0, sample_index(DATASET_TRAIN, "train/cat/zz_fault.png"), 1};
    send_ticket(&t, &pa, 301, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, idx, 3);
    send_ticket(&t, &pb, 302, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, idx, 3);
    CU_ASSERT_EQUAL_FATAL(trainer_expect(&t, MSG_KIND_BATCH, RECV_TIMEOUT_MS), 0);
    CU_ASSERT_EQUAL(t.m.batch.ticket, 301);
    CU_ASSERT_EQUAL(t.m.batch.n, 2);
    const char *r = failure_reason(&t.m.batch, idx[1]);
    CU_ASSERT(r && strstr(r, "timed out"));

    kill(b, SIGTERM);
    trainer_idle(&t, 300);
    send_ticket(&t, &pb, 303, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, idx, 1);
    CU_ASSERT_EQUAL_FATAL(trainer_expect(&t, MSG_KIND_RETURN, 15000), 0);
    CU_ASSERT_EQUAL_FATAL(t.m.ret.n, 2);
    uint64_t r0 = t.m.ret.tickets[0], r1 = t.m.ret.tickets[1];
    CU_ASSERT((r0 == 302 && r1 == 303) || (r0 == 303 && r1 == 302));
    CU_ASSERT_EQUAL(trainer_expect(&t, MSG_KIND_BYE, RECV_TIMEOUT_MS), 0);
    CU_ASSERT_EQUAL(loader_wait(b, 10), 0);

    /* A second signal: RETURN at once, exit 1. */
    send_ticket(&t, &pa, 304, MSG_SPLIT_TRAIN, MSG_WORK_TRAIN, idx, 3);
    trainer_idle(&t, 300);
    kill(a, SIGTERM);
    trainer_idle(&t, 200);
    kill(a, SIGTERM);
    CU_ASSERT_EQUAL_FATAL(trainer_expect(&t, MSG_KIND_RETURN, 5000), 0);
    CU_ASSERT_EQUAL(t.m.ret.n, 1);
    CU_ASSERT_EQUAL(t.m.ret.tickets[0], 304);
    CU_ASSERT_EQUAL(loader_wait(a, 10), 1);
    trainer_close(&t);
}

int main(void)
{
    if (VIPS_INIT("test_loader") != 0)
        return 1;
    vips_cache_set_max(0);
    tmp_dir = testing_tmpdir();
    snprintf(endpoint, sizeof endpoint, "ipc://%s/work.sock", tmp_dir);
    char err[ERR_LEN];
    config_defaults(&cfg);
    if (config_load_string(&cfg, config_text, "test", err) < 0 ||
        config_validate(&cfg, err) < 0) {
        fprintf(stderr, "test config: %s\n", err);
        return 1;
    }
    zctx = zmq_ctx_new();
    static const struct testing_case cases[] = {
        {"serve", test_serve},
        {"refuse", test_refuse},
        {"reconnect", test_reconnect},
        {"hang_and_stop", test_hang_and_stop},
        {"memory_limit", test_memory_limit},
        {NULL, NULL},
    };
    make_dataset();
    if (dataset_open(&ds, data_dir, err) < 0) {
        fprintf(stderr, "dataset: %s\n", err);
        return 1;
    }
    int status = testing_run("loader", cases);
    dataset_free(&ds);
    zmq_ctx_term(zctx);
    testing_rmtree(tmp_dir);
    free(tmp_dir);
    return status;
}
