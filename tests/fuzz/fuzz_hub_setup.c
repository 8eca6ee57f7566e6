/*
 * fuzz_hub_setup.c: the hub of the message-handler fuzz target and of its
 * seeds program (fuzz_hub.h). Start-up failures exit: they are the
 * harness's, not the input's. It must not decide what a message means:
 * that is train_hub_handle's job, the code under test.
 */
#include "fuzz_hub.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compute.h"
#include "util.h"

const char *const fuzz_hub_config[] = {
    "model.depths=1,1",
    "model.widths=8,16",
    "model.projector=32,16",
    "views.global_size=16",
    "views.local_size=8",
    "views.local_count=2",
    "optim.batch=4",
    "run.ticket_size=2",
    "loss.slices=16",
    "run.log_every=1",
    "run.threads=1",
    "run.seed=7",
    "optim.steps=1000000",
    "eval.every=2",
    "eval.train_subset=4",
    "eval.val_limit=4",
    "eval.chunk=2",
    "eval.featmap_images=2",
    "limits.max_samples=4096",
    "limits.ticket_timeout_s=0.5",
    NULL,
};

/* The run directory's files are rewritten from empty beyond these (a real
 * run's grow with its length; the fuzzer's would grow with its inputs). */
#define FUZZ_HUB_MAX_LINES 20000
#define FUZZ_HUB_MAX_LOG (16L << 20)
#define FUZZ_HUB_TIDY_EVERY 1024

static char ids[FUZZ_HUB_IDS][32];

const uint8_t *fuzz_hub_id(int who, size_t *len)
{
    *len = strlen(ids[who]);
    return (const uint8_t *)ids[who];
}

static void set_key(struct config *c, const char *assignment)
{
    char err[ERR_LEN];
    if (config_set(c, assignment, err) != 0)
        die("fuzz_hub: %s", err);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static char tmp_dir[256];

static void remove_tmp_dir(void)
{
    if (tmp_dir[0])
        nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The peers' routing ids become known to the ROUTER when it reads from
 * their pipes: each sends one frame, which is read here, so the first
 * WELCOME to them is routable. */
static void connect_peers(struct fuzz_hub *h)
{
    struct train *t = h->t;
    int linger = 0, wait_ms = 5000, forever = -1;
    for (int i = 0; i < FUZZ_HUB_PEERS; i++) {
        size_t len;
        const uint8_t *id = fuzz_hub_id(i, &len);
        void *s = zmq_socket(t->net.zctx, ZMQ_DEALER);
        if (!s || zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
            zmq_setsockopt(s, ZMQ_ROUTING_ID, id, len) != 0 ||
            zmq_connect(s, t->cfg.run.endpoint) != 0 ||
            zmq_send(s, "", 0, 0) != 0)
            die("fuzz_hub: peer %d: %s", i, zmq_strerror(zmq_errno()));
        h->peer[i] = s;
    }
    if (zmq_setsockopt(t->net.router, ZMQ_RCVTIMEO, &wait_ms, sizeof wait_ms))
        die("fuzz_hub: ZMQ_RCVTIMEO: %s", zmq_strerror(zmq_errno()));
    for (int i = 0; i < 2 * FUZZ_HUB_PEERS; i++) {
        zmq_msg_t part;
        CHECK(zmq_msg_init(&part) == 0);
        if (zmq_msg_recv(&part, t->net.router, 0) < 0)
            die("fuzz_hub: the peers' first frames: %s",
                zmq_strerror(zmq_errno()));
        zmq_msg_close(&part);
    }
    if (zmq_setsockopt(t->net.router, ZMQ_RCVTIMEO, &forever, sizeof forever))
        die("fuzz_hub: ZMQ_RCVTIMEO: %s", zmq_strerror(zmq_errno()));
}

/* train_main.c's, which the target does not link (it has its own main):
 * the time budget rewrites config.ini through it. */

void fuzz_hub_open(struct fuzz_hub *h)
{
    char err[ERR_LEN], set[512];
    memset(h, 0, sizeof *h);
    for (int i = 0; i < FUZZ_HUB_IDS; i++)
        snprintf(ids[i], sizeof ids[i], "%s-%d/%d/0",
                 i < FUZZ_HUB_PEERS ? "peer" : "ghost", i, (int)getpid());
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof h->dir, "%s/fuzz-hub-XXXXXX",
             tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(h->dir))
        die("fuzz_hub: mkdtemp %s: cannot create", h->dir);
    snprintf(tmp_dir, sizeof tmp_dir, "%s", h->dir);
    atexit(remove_tmp_dir);

    struct train *t = xcalloc(1, sizeof *t);
    h->t = t;
    config_defaults(&t->cfg);
    for (int i = 0; fuzz_hub_config[i]; i++)
        set_key(&t->cfg, fuzz_hub_config[i]);
    /* FUZZ_HUB_SET="s.k=v;s.k=v": more keys, to fuzz or replay another run */
    char more[1024];
    snprintf(more, sizeof more, "%s",
             getenv("FUZZ_HUB_SET") ? getenv("FUZZ_HUB_SET") : "");
    for (char *save, *a = strtok_r(more, ";", &save); a;
         a = strtok_r(NULL, ";", &save))
        set_key(&t->cfg, a);
    snprintf(set, sizeof set, "run.dir=%s", h->dir);
    set_key(&t->cfg, set);
    set_key(&t->cfg, "run.name=run");
    snprintf(set, sizeof set, "run.endpoint=inproc://fuzz-hub-work-%d",
             (int)getpid());
    set_key(&t->cfg, set);
    snprintf(set, sizeof set, "run.broadcast=inproc://fuzz-hub-pub-%d",
             (int)getpid());
    set_key(&t->cfg, set);
    if (config_validate(&t->cfg, err) != 0)
        die("fuzz_hub: %s", err);
    compute_set_threads((int)t->cfg.run.threads);

    /* train_main.c: open_run_dir, no --data (the first loader's dataset),
     * open_sockets without keys */
    if (train_rundir_open(&t->rundir, t->cfg.run.dir, t->cfg.run.name, false,
                          err) != 0)
        die("fuzz_hub: %s", err);
    t->config_text = config_to_string(&t->cfg);
    if (train_rundir_save_config(&t->rundir, t->config_text, err) != 0)
        die("fuzz_hub: %s", err);
    if (train_net_open(&t->net, &t->cfg, train_eval_pub_hwm(&t->cfg), &t->keys,
                       err) != 0)
        die("fuzz_hub: %s", err);
    t->rundir.pub = t->net.pub;
    t->tickets.timeout_s = t->cfg.limits.ticket_timeout_s;
    connect_peers(h);
}

void fuzz_hub_message(struct fuzz_hub *h, int who, const uint8_t *payload,
                      size_t len)
{
    struct train *t = h->t;
    char err[ERR_LEN];
    size_t id_len;
    const uint8_t *id = fuzz_hub_id(who, &id_len);
    /* the body frame as msg_recv_from leaves it: blobs point into it, and
     * zap_peer_of reads its (absent) User-Id */
    zmq_msg_t frame;
    CHECK(zmq_msg_init_size(&frame, len) == 0);
    if (len)
        memcpy(zmq_msg_data(&frame), payload, len);
    struct msg m;
    if (msg_decode(&m, zmq_msg_data(&frame), len, &t->net.limits, &t->net.arena,
                   err) == 0)
        train_hub_handle(t, id, id_len, &frame, &m);
    else
        train_net_bad_message(&t->net, "fuzz input", err);
    zmq_msg_close(&frame);
}

/* train_loop.c's turn for a step whose batches are all in, without the
 * training: the slot is released and the step counted done, and the
 * snapshot due after it begins. Not once the real run would have stopped
 * (no next epoch, too many samples excluded). */
static void finish_ready_step(struct train *t)
{
    const struct train_sampler *sm = &t->steps.sampler;
    if (t->steps.sampler_err[0] ||
        (double)sm->n_failed > t->cfg.limits.max_excluded * (double)sm->n_train)
        return;
    struct train_slot *s = train_step_ready(&t->steps, t->prog.step);
    if (!s)
        return;
    uint32_t epoch = s->epoch;
    train_step_release(s);
    t->prog.step++;
    if (train_eval_due(t->eval, t->prog.step, false))
        train_eval_begin(t->eval, t->prog.step, epoch);
}

void fuzz_hub_turn(struct fuzz_hub *h)
{
    struct train *t = h->t;
    train_hub_serve(t);
    if (t->engine_ready) {
        if (train_eval_active(t->eval))
            train_eval_poll(t->eval, &t->engine, &t->net, &t->rundir);
        else
            finish_ready_step(t);
        train_step_open(&t->steps, t->prog.total);
    }
    train_hub_issue(t);
    train_hub_sweep(t);
}

/* What train_main.c's finish does before the process exits, then the state
 * of a process that starts again on the same run directory and sockets:
 * the next loader's HELLO says what the dataset is and builds the engine. */
static void fresh_run(struct fuzz_hub *h)
{
    struct train *t = h->t;
    train_hub_bye_all(t, "trainer stopped");
    if (t->engine_ready) {
        train_ckpt_writer_stop(&t->ckpt);
        train_engine_stop(&t->engine);
        train_eval_free(t->eval);
        train_step_free(&t->steps);
        train_engine_free(&t->engine);
    }
    train_dataset_free(&t->data);
    t->eval = NULL;
    t->engine_ready = false;
    memset(&t->engine, 0, sizeof t->engine);
    memset(&t->steps, 0, sizeof t->steps);
    t->tickets =
        (struct train_tickets){.timeout_s = t->cfg.limits.ticket_timeout_s};
    t->prog = (struct train_progress){0};
    t->iv = (struct train_interval){0};
    t->ctl = (struct train_control){0};
}

void fuzz_hub_input(struct fuzz_hub *h, const uint8_t *data, size_t size)
{
    size_t at = 0;
    if (size >= FUZZ_HUB_RECORD_HEAD && data[0] == FUZZ_HUB_FRESH)
        fresh_run(h);
    bool turned = true;
    while (size - at >= FUZZ_HUB_RECORD_HEAD) {
        uint8_t head = data[at];
        uint32_t len = (uint32_t)data[at + 1] | (uint32_t)data[at + 2] << 8 |
            (uint32_t)data[at + 3] << 16 | (uint32_t)data[at + 4] << 24;
        at += FUZZ_HUB_RECORD_HEAD;
        if (len > size - at)
            len = (uint32_t)(size - at);
        fuzz_hub_message(h, head & FUZZ_HUB_ID_MASK, data + at, len);
        at += len;
        turned = !(head & FUZZ_HUB_HOLD);
        if (turned)
            fuzz_hub_turn(h);
    }
    if (!turned)
        fuzz_hub_turn(h);
}

static long file_size(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Starts the run directory's log and metrics.jsonl again from empty once
 * they are large (through its own close and open: the lock, the line
 * index and the METRIC copies stay consistent). */
static void bound_rundir(struct fuzz_hub *h)
{
    struct train *t = h->t;
    struct train_rundir *rd = &t->rundir;
    if (rd->lines < FUZZ_HUB_MAX_LINES &&
        file_size(rd->dir, "log") < FUZZ_HUB_MAX_LOG &&
        file_size(rd->dir, "metrics.jsonl") < FUZZ_HUB_MAX_LOG)
        return;
    char dir[4096], path[4200], err[ERR_LEN];
    snprintf(dir, sizeof dir, "%s", rd->dir);
    train_rundir_close(rd);
    snprintf(path, sizeof path, "%s/log", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    remove(path);
    if (train_rundir_open(rd, t->cfg.run.dir, t->cfg.run.name, false, err) != 0)
        die("fuzz_hub: %s", err);
    rd->pub = t->net.pub;
}

void fuzz_hub_tidy(struct fuzz_hub *h)
{
    for (int i = 0; i < FUZZ_HUB_PEERS; i++) {
        zmq_msg_t part;
        CHECK(zmq_msg_init(&part) == 0);
        while (zmq_msg_recv(&part, h->peer[i], ZMQ_DONTWAIT) >= 0)
            ;
        zmq_msg_close(&part);
    }
    if (++h->tidied % FUZZ_HUB_TIDY_EVERY == 0)
        bound_rundir(h);
}
