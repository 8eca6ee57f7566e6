/*
 * test_evalprog.c: lejepa-eval as a process against a FAKE TRAINER played
 * by this test (ROUTER + XPUB on ephemeral loopback ports, speaking
 * proto/msg.h). The fake WELCOMEs the evaluator, waits for its EMBED and
 * FEATMAP subscriptions (the PUB/SUB slow joiner), then publishes:
 *   step 100  a complete snapshot of three well-separated clusters
 *             -> RESULTs knn (knn_top1) and linear (linear_top1) > 0.9
 *   step 200  the same with chunk 3 dropped -> one system RESULT
 *             eval_incomplete = 1, no accuracy for step 200
 *   step 300  chunks 0-2 only, then snapshot 4 (step 400) starts
 *             -> step 300 incomplete, step 400 scored
 *   step 500  a FEATMAP of bright squares on black, features high on the
 *             squares -> segmaps/step-500.png and latest.png (not blank),
 *             segmap_iou near 1
 *   step 600  a bigger, overlapping snapshot that takes a while to score:
 *             the evaluator's heartbeats must keep going meanwhile
 * then goes silent (the evaluator must say HELLO again), and finally the
 * evaluator gets SIGINT (BYE, exit 0). A REFUSE must exit 1 with the reason.
 * With --shots, a snapshot also brings one few-shot RESULT per task.
 * Heartbeats of the evaluator must keep coming while it scores.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vips/vips.h>

#include "fake_trainer.h"
#include "msg.h"
#include "testing.h"
#include "util.h"

#define MAX_RESULTS 64
#define DIM 16
#define CLASSES 3
#define N_TRAIN 600
#define N_VAL 300
#define CHUNK 128

struct result {
    enum msg_source source;
    uint64_t step;
    uint32_t n;
    char keys[4][32];
    double values[4];
};

struct fake {
    struct fake_trainer ft;         /* first: the callbacks cast back */
    struct result results[MAX_RESULTS];
    int n_results;
};

static void fake_on_message(struct fake_trainer *ft, const struct msg *m)
{
    struct fake *f = (struct fake *)ft;
    if (m->kind != MSG_KIND_RESULT) {
        CU_FAIL("unexpected message kind from the evaluator");
        return;
    }
    CU_ASSERT_FATAL(f->n_results < MAX_RESULTS);
    struct result *r = &f->results[f->n_results++];
    memset(r, 0, sizeof *r);
    r->source = m->result.source;
    r->step = m->result.step;
    r->n = m->result.n_values < 4 ? m->result.n_values : 4;
    for (uint32_t i = 0; i < r->n; i++) {
        snprintf(r->keys[i], sizeof r->keys[i], "%s", m->result.values[i].key);
        r->values[i] = m->result.values[i].value;
    }
}

static void fake_init(struct fake *f)
{
    memset(f, 0, sizeof *f);
    fake_trainer_init(&f->ft);
    f->ft.role = MSG_ROLE_EVALUATOR;
    f->ft.software = "lejepa-eval";
    f->ft.config = "[views]\nchannels = 1\nglobal_size = 28\nlocal_size = 14\n";
    f->ft.client_id = 3;
    f->ft.on_message = fake_on_message;
}

static int count_results(const struct fake *f, enum msg_source source, uint64_t step)
{
    int n = 0;
    for (int i = 0; i < f->n_results; i++)
        n += f->results[i].source == source && f->results[i].step == step;
    return n;
}

static const struct result *find_result(const struct fake *f, enum msg_source source,
                                        uint64_t step)
{
    for (int i = 0; i < f->n_results; i++)
        if (f->results[i].source == source && f->results[i].step == step)
            return &f->results[i];
    return NULL;
}

static double result_value(const struct result *r, const char *key)
{
    for (uint32_t i = 0; r && i < r->n; i++)
        if (strcmp(r->keys[i], key) == 0)
            return r->values[i];
    return NAN;
}

/* The rows of one published snapshot. */
struct shape {
    int n_train, n_val, dim, classes, chunk;
    float sep;                      /* class c centred on sep * e_c, noise N(0, 0.5) */
};
static const struct shape SMALL = {N_TRAIN, N_VAL, DIM, CLASSES, CHUNK, 4.0f};
/* Enough rows and overlap that the linear probe takes a while. */
static const struct shape HEAVY = {6000, 2000, 256, 50, 512, 0.6f};
#define MAX_ROWS 8000
#define MAX_DIM 256

static void make_rows(uint64_t *rng, const struct shape *sh, int n, float *emb,
                      int32_t *labels)
{
    for (int i = 0; i < n; i++) {
        int c = (int)(testing_rand_u64(rng) % (uint64_t)sh->classes);
        labels[i] = c;
        for (int d = 0; d < sh->dim; d++)
            emb[(size_t)i * sh->dim + d] = (float)(0.5 * testing_rand_normal(rng)) +
                                           (d == c ? sh->sep : 0.0f);
    }
}

/* Publishes a snapshot as chunks (train, then val), seq from 0. Chunk
 * `drop` (-1: none) is not sent; only the first `upto` chunks are sent
 * (-1: all) and the end marker only when all were. */
static void publish_snapshot(struct fake *f, const struct shape *sh, uint64_t id,
                             uint64_t step, int drop, int upto)
{
    static float emb[MAX_ROWS * MAX_DIM];
    static int32_t labels[MAX_ROWS];
    static uint8_t emb_blob[MAX_ROWS * MAX_DIM * 4], lab_blob[MAX_ROWS * 4];
    uint64_t rng = 1234 + id;
    CU_ASSERT_FATAL(sh->n_train + sh->n_val <= MAX_ROWS && sh->dim <= MAX_DIM);
    make_rows(&rng, sh, sh->n_train + sh->n_val, emb, labels);
    uint32_t seq = 0;
    for (int split = 0; split < 2; split++) {
        int start = split ? sh->n_train : 0;
        int end = split ? sh->n_train + sh->n_val : sh->n_train;
        for (int r = start; r < end; r += sh->chunk, seq++) {
            int n = end - r < sh->chunk ? end - r : sh->chunk;
            if ((int)seq == drop || (upto >= 0 && (int)seq >= upto))
                continue;
            msg_blob_write_f32(emb_blob, emb + (size_t)r * sh->dim, (size_t)n * sh->dim);
            msg_blob_write_i32(lab_blob, labels + r, (size_t)n);
            struct msg m = {.kind = MSG_KIND_EMBED};
            m.embed = (struct msg_embed){
                .snapshot = id, .step = step, .seq = seq,
                .split = split ? MSG_SPLIT_VAL : MSG_SPLIT_TRAIN, .end = false,
                .n = (uint32_t)n, .dim = (uint32_t)sh->dim, .labels = lab_blob,
                .emb = emb_blob};
            fake_trainer_publish(&f->ft, &m);
        }
    }
    if (upto >= 0)
        return;
    struct msg m = {.kind = MSG_KIND_EMBED};
    m.embed = (struct msg_embed){.snapshot = id, .step = step, .seq = seq,
                                 .split = MSG_SPLIT_VAL, .end = true, .chunks = seq,
                                 .n = 0, .dim = (uint32_t)sh->dim, .labels = lab_blob,
                                 .emb = emb_blob};
    fake_trainer_publish(&f->ft, &m);
}

/* FEATMAP: 4 gray 28x28 images with a bright 12x12 square on black at a
 * patch-aligned offset; 7x7 grid of 8-dim features, dims 0-3 high on the
 * square's patches. */
#define FM_N 4
#define FM_S 28
#define FM_G 7
#define FM_F 8
static void publish_featmap(struct fake *f, uint64_t step)
{
    static uint8_t pixels[FM_N * FM_S * FM_S];
    static float feats[FM_N * FM_F * FM_G * FM_G];
    static uint8_t feat_blob[sizeof feats], lab_blob[FM_N * 4];
    int32_t labels[FM_N] = {0, 1, 2, 0};
    uint64_t rng = 99;
    memset(pixels, 0, sizeof pixels);
    for (int i = 0; i < FM_N; i++) {
        int py = 1 + i % 3, px = 1 + (i + 1) % 3;   /* square: patches py..py+2 */
        for (int y = 4 * py; y < 4 * (py + 3); y++)
            for (int x = 4 * px; x < 4 * (px + 3); x++)
                pixels[(size_t)i * FM_S * FM_S + y * FM_S + x] = 200;
        for (int d = 0; d < FM_F; d++)
            for (int gy = 0; gy < FM_G; gy++)
                for (int gx = 0; gx < FM_G; gx++) {
                    bool on = gy >= py && gy < py + 3 && gx >= px && gx < px + 3;
                    feats[(((size_t)i * FM_F + d) * FM_G + gy) * FM_G + gx] =
                        (float)(0.1 * testing_rand_normal(&rng)) +
                        (on && d < 4 ? 3.0f : 0.0f);
                }
    }
    msg_blob_write_f32(feat_blob, feats, sizeof feats / 4);
    msg_blob_write_i32(lab_blob, labels, FM_N);
    struct msg m = {.kind = MSG_KIND_FEATMAP};
    m.featmap = (struct msg_featmap){
        .snapshot = 9, .step = step, .n = FM_N, .c = 1, .h = FM_S, .w = FM_S,
        .pixels = pixels, .labels = lab_blob, .fdim = FM_F, .gh = FM_G, .gw = FM_G,
        .feats = feat_blob, .heads = 0, .attn = NULL};
    fake_trainer_publish(&f->ft, &m);
}

static bool log_contains(const char *log, const char *needle)
{
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(log, &len, err);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

/* The PNG exists and is not one flat colour. */
static void check_png(const char *path)
{
    VipsImage *im = vips_image_new_from_file(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(im);
    double dev = 0;
    CU_ASSERT_EQUAL(vips_deviate(im, &dev, NULL), 0);
    CU_ASSERT(dev > 1.0);
    CU_ASSERT(vips_image_get_width(im) > FM_S);
    g_object_unref(im);
}

static void check_accuracy(const struct fake *f, uint64_t step)
{
    const struct result *knn = find_result(f, MSG_SOURCE_KNN, step);
    const struct result *lin = find_result(f, MSG_SOURCE_LINEAR, step);
    CU_ASSERT_PTR_NOT_NULL(knn);
    CU_ASSERT_PTR_NOT_NULL(lin);
    double k = result_value(knn, "knn_top1"), l = result_value(lin, "linear_top1");
    CU_ASSERT(k > 0.9 && k <= 1.0);
    CU_ASSERT(l > 0.9 && l <= 1.0);
    CU_ASSERT(result_value(lin, "linear_lambda") > 0);
    CU_ASSERT_EQUAL(count_results(f, MSG_SOURCE_KNN, step), 1);
    CU_ASSERT_EQUAL(count_results(f, MSG_SOURCE_LINEAR, step), 1);
}

static void check_incomplete(const struct fake *f, uint64_t step, double got)
{
    const struct result *r = find_result(f, MSG_SOURCE_SYSTEM, step);
    CU_ASSERT_PTR_NOT_NULL(r);
    CU_ASSERT_EQUAL(result_value(r, "eval_incomplete"), 1.0);
    CU_ASSERT_EQUAL(result_value(r, "eval_chunks_got"), got);
    CU_ASSERT_EQUAL(count_results(f, MSG_SOURCE_KNN, step), 0);
    CU_ASSERT_EQUAL(count_results(f, MSG_SOURCE_LINEAR, step), 0);
}

static void test_online(void)
{
    struct fake f;
    fake_init(&f);
    char *dir = testing_tmpdir(), args[8192], log[4200], png[4200];
    snprintf(log, sizeof log, "%s/eval.log", dir);
    snprintf(args, sizeof args, "--connect %s --out '%s/out' --threads 1 --name ev-test",
             f.ft.work_ep, dir);
    pid_t pid = fake_spawn("eval/lejepa-eval", args, log);

    CU_ASSERT_FATAL(FAKE_SERVE_UNTIL(&f.ft, 15, fake_trainer_subscribed(&f.ft, "EMBED") && fake_trainer_subscribed(&f.ft, "FEATMAP")));
    CU_ASSERT_EQUAL(f.ft.hellos, 1);

    /* 600 train + 300 val rows in chunks of 128: seq 0-4 train, 5-7 val. */
    publish_snapshot(&f, &SMALL, 1, 100, -1, -1);
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 30, count_results(&f, MSG_SOURCE_KNN, 100) &&
                                      count_results(&f, MSG_SOURCE_LINEAR, 100)));
    check_accuracy(&f, 100);

    publish_snapshot(&f, &SMALL, 2, 200, 3, -1);
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 15, count_results(&f, MSG_SOURCE_SYSTEM, 200)));
    check_incomplete(&f, 200, 7);
    CU_ASSERT(log_contains(log, "snapshot 2 at step 200 incomplete (got 7 of 8 chunks"));

    publish_snapshot(&f, &SMALL, 3, 300, -1, 3);
    publish_snapshot(&f, &SMALL, 4, 400, -1, -1);
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 30, count_results(&f, MSG_SOURCE_SYSTEM, 300) &&
                                      count_results(&f, MSG_SOURCE_LINEAR, 400)));
    check_incomplete(&f, 300, 3);
    CU_ASSERT(isnan(result_value(find_result(&f, MSG_SOURCE_SYSTEM, 300),
                                 "eval_chunks_total")));
    CU_ASSERT_EQUAL(result_value(find_result(&f, MSG_SOURCE_SYSTEM, 200),
                                 "eval_chunks_total"), 8);
    check_accuracy(&f, 400);

    publish_featmap(&f, 500);
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 30, count_results(&f, MSG_SOURCE_SEGMAP, 500)));
    double iou = result_value(find_result(&f, MSG_SOURCE_SEGMAP, 500), "segmap_iou");
    CU_ASSERT(iou > 0.95 && iou <= 1.0);
    snprintf(png, sizeof png, "%s/out/segmaps/step-500.png", dir);
    check_png(png);
    snprintf(png, sizeof png, "%s/out/segmaps/latest.png", dir);
    check_png(png);

    /* a snapshot that takes a while to score: heartbeats keep coming */
    int beats = f.ft.heartbeats_in;
    double t0 = util_time_mono();
    publish_snapshot(&f, &HEAVY, 5, 600, -1, -1);
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 40, count_results(&f, MSG_SOURCE_LINEAR, 600)));
    fprintf(stderr, "heavy snapshot scored in %.2f s; %d heartbeats meanwhile, "
            "longest gap %.3f s\n", util_time_mono() - t0, f.ft.heartbeats_in - beats,
            f.ft.max_hb_gap);
    const struct result *heavy = find_result(&f, MSG_SOURCE_LINEAR, 600);
    double acc = result_value(heavy, "linear_top1");
    CU_ASSERT(acc > 1.0 / HEAVY.classes && acc <= 1.0);

    /* one connection throughout, and heartbeats went out while the worker
     * scored (a connection thread blocked by scoring sends none meanwhile) */
    CU_ASSERT(f.ft.heartbeats_in - beats >= 2);
    CU_ASSERT_EQUAL(f.ft.hellos, 1);
    for (int i = 0; i < f.n_results; i++) {
        CU_ASSERT(f.results[i].step != 200 || f.results[i].source == MSG_SOURCE_SYSTEM);
        CU_ASSERT(f.results[i].step != 300 || f.results[i].source == MSG_SOURCE_SYSTEM);
    }

    /* the trainer goes silent: a new HELLO within a few heartbeats */
    f.ft.beating = false;
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 5, f.ft.hellos == 2));
    f.ft.beating = true;
    /* a heartbeat after the second HELLO means the WELCOME was taken: the
     * evaluator now holds a connection, and SIGINT must say BYE on it */
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 10, f.ft.beats_since_hello > 0));
    fake_trainer_poll(&f.ft, 300);

    CU_ASSERT_EQUAL(kill(pid, SIGINT), 0);
    CU_ASSERT_EQUAL(fake_wait_child(&f.ft, pid, 10), 0);
    fake_trainer_poll(&f.ft, 100);
    CU_ASSERT_EQUAL(f.ft.byes_in, 1);
    if (CU_get_number_of_failures())
        fake_print_log("evaluator output", log);
    fake_trainer_free(&f.ft);
    testing_rmtree(dir);
    free(dir);
}

/* The value of key in any RESULT of source and step, or NaN. */
static double any_value(const struct fake *f, enum msg_source source, uint64_t step,
                        const char *key)
{
    for (int i = 0; i < f->n_results; i++)
        if (f->results[i].source == source && f->results[i].step == step &&
            !isnan(result_value(&f->results[i], key)))
            return result_value(&f->results[i], key);
    return NAN;
}

/* --shots 1,5 --seeds 2: after the usual knn and linear RESULTs of a
 * snapshot, one more per task with the mean and std of each shot count.
 * Three well-separated clusters: kNN is near perfect from one shot; the
 * linear probe standardises, which lifts the 13 noise features to the
 * scale of the 3 signal ones, so from one row per class it stays well
 * above chance (1/3) but not perfect (measured 0.69). */
static void test_online_fewshot(void)
{
    struct fake f;
    fake_init(&f);
    char *dir = testing_tmpdir(), args[8192], log[4200];
    snprintf(log, sizeof log, "%s/eval.log", dir);
    snprintf(args, sizeof args, "--connect %s --out '%s/out' --threads 1 --tasks "
             "knn,linear --shots 5,1 --seeds 2", f.ft.work_ep, dir);
    pid_t pid = fake_spawn("eval/lejepa-eval", args, log);
    CU_ASSERT_FATAL(FAKE_SERVE_UNTIL(&f.ft, 15, fake_trainer_subscribed(&f.ft, "EMBED")));
    publish_snapshot(&f, &SMALL, 1, 100, -1, -1);
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 30, count_results(&f, MSG_SOURCE_KNN, 100) == 2 &&
                                      count_results(&f, MSG_SOURCE_LINEAR, 100) == 2));
    static const char *const means[] = {"fewshot_knn_top1_1", "fewshot_knn_top1_5",
                                        "fewshot_linear_top1_1", "fewshot_linear_top1_5"};
    for (int i = 0; i < 4; i++) {
        enum msg_source src = i < 2 ? MSG_SOURCE_KNN : MSG_SOURCE_LINEAR;
        char std[64];
        snprintf(std, sizeof std, "%s_std", means[i]);
        double m = any_value(&f, src, 100, means[i]), sd = any_value(&f, src, 100, std);
        double lo = i == 2 ? 0.5 : 0.9;
        fprintf(stderr, "%s = %g, %s = %g\n", means[i], m, std, sd);
        CU_ASSERT(m > lo && m <= 1.0);
        CU_ASSERT(sd >= 0 && sd < 0.1);
    }
    CU_ASSERT(any_value(&f, MSG_SOURCE_KNN, 100, "knn_top1") > 0.9);
    CU_ASSERT(any_value(&f, MSG_SOURCE_LINEAR, 100, "linear_top1") > 0.9);
    CU_ASSERT(log_contains(log, "few-shot knn 5-shot"));
    CU_ASSERT_EQUAL(kill(pid, SIGINT), 0);
    CU_ASSERT_EQUAL(fake_wait_child(&f.ft, pid, 10), 0);
    if (CU_get_number_of_failures())
        fake_print_log("evaluator output", log);
    fake_trainer_free(&f.ft);
    testing_rmtree(dir);
    free(dir);
}

/* An evaluator with default tasks against f; its output in dir/eval.log
 * (log, 4200 bytes). */
static pid_t start_plain_eval(const struct fake *f, const char *dir, char *log)
{
    char args[4608];
    snprintf(log, 4200, "%s/eval.log", dir);
    snprintf(args, sizeof args, "--connect %s --out '%s/o'", f->ft.work_ep, dir);
    return fake_spawn("eval/lejepa-eval", args, log);
}

/* Prints the log if anything failed, then frees the fake and dir. */
static void finish_plain_eval(struct fake *f, char *dir, const char *log)
{
    if (CU_get_number_of_failures())
        fake_print_log("evaluator output", log);
    fake_trainer_free(&f->ft);
    testing_rmtree(dir);
    free(dir);
}

static void test_refused(void)
{
    struct fake f;
    fake_init(&f);
    f.ft.refuse = "evaluators are not welcome here";
    char *dir = testing_tmpdir(), log[4200];
    pid_t pid = start_plain_eval(&f, dir, log);
    CU_ASSERT_EQUAL(fake_wait_child(&f.ft, pid, 15), 1);
    CU_ASSERT(log_contains(log, "refused by the trainer"));
    CU_ASSERT(log_contains(log, "evaluators are not welcome here"));
    finish_plain_eval(&f, dir, log);
}

/* A WELCOME whose broadcast endpoint cannot be subscribed to: the
 * evaluator says BYE, is not attached, and later connects afresh. */
static void test_bad_broadcast(void)
{
    struct fake f;
    fake_init(&f);
    f.ft.broadcast = "nosuchtransport://nowhere";
    char *dir = testing_tmpdir(), log[4200];
    pid_t pid = start_plain_eval(&f, dir, log);
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 15, f.ft.byes_in == 1));
    CU_ASSERT_EQUAL(f.ft.hellos, 1);
    CU_ASSERT(log_contains(log, "nosuchtransport://nowhere"));
    CU_ASSERT(!log_contains(log, "attached to run"));
    f.ft.broadcast = NULL;
    CU_ASSERT(FAKE_SERVE_UNTIL(&f.ft, 15, fake_trainer_subscribed(&f.ft, "EMBED")));
    CU_ASSERT_EQUAL(f.ft.hellos, 2);
    CU_ASSERT(log_contains(log, "attached to run"));
    CU_ASSERT(log_contains(log, "saying HELLO again"));
    CU_ASSERT(!log_contains(log, "no answer from"));    /* it had answered */
    CU_ASSERT_EQUAL(kill(pid, SIGINT), 0);
    CU_ASSERT_EQUAL(fake_wait_child(&f.ft, pid, 10), 0);
    finish_plain_eval(&f, dir, log);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (VIPS_INIT(argv[0]) != 0) {
        fprintf(stderr, "VIPS_INIT failed: %s\n", vips_error_buffer());
        return 1;
    }
    static const struct testing_case cases[] = {
        {"snapshots, incomplete ones, FEATMAP, reconnect, SIGINT", test_online},
        {"--shots: few-shot RESULTs per snapshot", test_online_fewshot},
        {"REFUSE: exit 1 with the reason", test_refused},
        {"unusable broadcast endpoint: BYE, then a new connection", test_bad_broadcast},
        {NULL, NULL},
    };
    return testing_run("evalprog", cases);
}
