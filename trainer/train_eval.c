/*
 * train_eval.c: evaluation snapshots (see train_eval.h). Design: training
 * pauses for the snapshot, so every row is embedded with the weights of the
 * same step and the eval forward (which reads the weights) runs in the
 * compute thread while no step does. Rows are fixed for the run: the train
 * subset (evenly spaced indices i * n_train / train_subset, which on a
 * class-sorted index is a stratified sample), then the val rows (the whole
 * split or val_limit evenly spaced ones). Each eval ticket covers rows of one
 * split; at most n_bufs tickets are out at once (their pixels wait in a
 * fixed pool), so memory is bounded whatever the loaders' credit. The PUB
 * socket drops per subscriber: one whose queue is full (it does not read)
 * loses messages alone, so a deaf subscriber never makes a snapshot
 * incomplete for the others (evaluators detect their own gaps). A
 * snapshot waits at most TRAIN_SUBSCRIBE_SETTLE_S for evaluators that
 * just joined, whatever they do meanwhile.
 */
#include "train_eval.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "nn.h"
#include "train_log.h"
#include "util.h"

/* Pixel memory of the eval tickets in flight, and their number's bounds. */
#define EVAL_BUF_BYTES (64u << 20)
#define EVAL_MIN_BUFS 2
#define EVAL_MAX_BUFS 256
/* Val rows the PUB high-water mark allows for when the whole (unknown at
 * bind time) val split is embedded: ImageNet's. */
#define EVAL_HWM_VAL_ROWS 50000
#define EVAL_HWM_BASE 1000
/* Failed eval samples logged one by one per snapshot. */
#define EVAL_FAIL_LOG 5

enum { EVAL_UNISSUED, EVAL_OUT, EVAL_ARRIVED, EVAL_FORWARDED };

struct eval_buf {
    bool used;
    uint32_t ticket;
    uint32_t n;      /* samples that arrived */
    uint8_t *pixels; /* (n, C, size, size) */
    uint64_t *rows;  /* (ticket_size) row of each sample */
    int32_t *labels; /* (ticket_size) */
};

/* Snapshots whose epoch a late RESULT can still be matched to. */
#define EVAL_PAST 16

struct train_eval {
    const struct config *cfg; /* the run's, read only */
    bool active, job_out;
    uint64_t step; /* snapshot id = its step */
    uint32_t epoch;
    /* the last EVAL_PAST snapshots' steps and epochs, for late RESULTs */
    uint64_t past_step[EVAL_PAST];
    uint32_t past_epoch[EVAL_PAST];
    unsigned n_past;
    /* rows: [0, n_tr) train subset, then [n_tr, rows) val */
    uint64_t n_tr, n_va, rows;
    uint64_t n_train; /* the dataset's: where val samples start in a
                       * loader's held bitmap */
    uint64_t *index;  /* (rows) sample index in its split */
    int32_t *labels;  /* (rows) */
    uint8_t *ok;      /* (rows) 1: embedded */
    float *emb;       /* (rows, dim) */
    int dim, classes;
    /* tickets */
    int ts; /* samples per ticket */
    uint32_t n_tk_tr, n_tickets;
    uint8_t *state;      /* (n_tickets) */
    int *buf_of;         /* (n_tickets) buffer index or -1 */
    uint32_t issue_from; /* no unissued ticket below it */
    uint32_t forwarded;
    struct eval_buf *bufs;
    int n_bufs, job_buf;
    size_t plane; /* C * size * size */
    /* eval graph and the probe on its embeddings */
    struct lejepa_eval ev;
    float *ln, *ln_mean, *ln_rstd, *logits; /* (ts, dim) (ts) (ts) (ts, K) */
    long val_correct, val_total;
    /* FEATMAP rows [fm_row, fm_row + fm_n) */
    uint64_t fm_row;
    int fm_n, fdim, gh, gw, heads; /* heads: ViT CLS attention, else 0 */
    uint8_t *fm_pixels;            /* (fm_n, C, size, size) */
    float *fm_feats;               /* (fm_n, fdim, gh, gw) */
    float *fm_attn;                /* (fm_n, heads, gh, gw) */
    /* publishing scratch: one EMBED chunk or the FEATMAP's blobs */
    uint8_t *blob_a, *blob_b, *blob_c;
    double t0, forward_s;
    double settle_from;  /* all forwarded: the settle wait began (0: not) */
    double published_at; /* the last snapshot went out (monotonic; 0: none) */
    uint64_t failed;
    int pub_hwm;
};

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

int train_eval_pub_hwm(const struct config *c)
{
    uint64_t val =
        c->eval.val_limit ? (uint64_t)c->eval.val_limit : EVAL_HWM_VAL_ROWS;
    uint64_t chunks =
        ceil_div((uint64_t)c->eval.train_subset + val, (uint64_t)c->eval.chunk);
    return EVAL_HWM_BASE + (int)chunks + 2;
}

/* n of total samples, evenly spaced: i * total / n (all when n >= total). */
static uint64_t pick_rows(uint64_t *out, uint64_t total, uint64_t n)
{
    if (n == 0 || n >= total)
        n = total;
    for (uint64_t i = 0; i < n; i++)
        out[i] = (uint64_t)((unsigned __int128)i * total / n);
    return n;
}

uint64_t train_eval_rows(const struct config *c, uint64_t n_train,
                         uint64_t n_val)
{
    if (c->eval.every < 0)
        return 0;
    uint64_t tr = (uint64_t)c->eval.train_subset,
             va = (uint64_t)c->eval.val_limit;
    tr = tr < n_train ? tr : n_train;
    va = va == 0 || va > n_val ? n_val : va;
    return tr + va;
}

static uint64_t ticket_id(const struct train_eval *e, uint32_t k)
{
    return TRAIN_EVAL_TICKET_BIT | (e->step << TRAIN_EVAL_STEP_SHIFT) | k;
}

/* First row and sample count of ticket k; its split. */
static uint64_t ticket_rows(const struct train_eval *e, uint32_t k, uint32_t *n,
                            enum msg_split *split)
{
    uint64_t first, end;
    if (k < e->n_tk_tr) {
        first = (uint64_t)k * (uint64_t)e->ts;
        end = e->n_tr;
        *split = MSG_SPLIT_TRAIN;
    } else {
        first = e->n_tr + (uint64_t)(k - e->n_tk_tr) * (uint64_t)e->ts;
        end = e->rows;
        *split = MSG_SPLIT_VAL;
    }
    *n = (uint32_t)(end - first < (uint64_t)e->ts ? end - first
                                                  : (uint64_t)e->ts);
    return first;
}

static void ticket_msg(const struct train_eval *e, uint32_t k,
                       struct msg_ticket *out)
{
    uint32_t n;
    enum msg_split split;
    uint64_t first = ticket_rows(e, k, &n, &split);
    *out = (struct msg_ticket){
        .ticket = ticket_id(e, k),
        .step = e->step,
        .epoch = e->epoch,
        .split = split,
        .work = MSG_WORK_EVAL,
        .seed = e->cfg->run.seed,
        .n = n,
        .indices = e->index + first,
    };
}

struct train_eval *train_eval_new(const struct config *c, uint64_t n_train,
                                  uint64_t n_val, uint32_t n_classes,
                                  struct lejepa *model)
{
    struct train_eval *e = xcalloc(1, sizeof *e);
    e->cfg = c;
    e->pub_hwm = train_eval_pub_hwm(c);
    if (c->eval.every < 0)
        return e;
    e->index = xmalloc((n_train + n_val + 1) * sizeof *e->index);
    e->n_train = n_train;
    e->n_tr = pick_rows(e->index, n_train, (uint64_t)c->eval.train_subset);
    if (c->eval.train_subset == 0)
        e->n_tr = 0;
    e->n_va = pick_rows(e->index + e->n_tr, n_val, (uint64_t)c->eval.val_limit);
    e->rows = e->n_tr + e->n_va;
    CHECK(e->rows == train_eval_rows(c, n_train, n_val));
    e->ts = (int)c->run.ticket_size;
    e->n_tk_tr = (uint32_t)ceil_div(e->n_tr, (uint64_t)e->ts);
    uint64_t n_tickets = e->n_tk_tr + ceil_div(e->n_va, (uint64_t)e->ts);
    CHECK(n_tickets < (UINT64_C(1) << TRAIN_EVAL_STEP_SHIFT));
    e->n_tickets = (uint32_t)n_tickets;
    e->dim = model->emb_dim;
    e->classes = (int)n_classes;
    e->labels = xcalloc(e->rows + 1, sizeof *e->labels);
    e->ok = xcalloc(e->rows + 1, 1);
    e->emb = xmalloc_aligned((e->rows + 1) * (size_t)e->dim * sizeof(float));
    e->state = xcalloc(e->n_tickets + 1, 1);
    e->buf_of = xmalloc((e->n_tickets + 1) * sizeof *e->buf_of);

    size_t size = (size_t)c->views.global_size;
    e->plane = (size_t)c->views.channels * size * size;
    size_t per = (size_t)e->ts * e->plane;
    size_t nb = EVAL_BUF_BYTES / per;
    nb = nb < EVAL_MIN_BUFS  ? EVAL_MIN_BUFS
        : nb > EVAL_MAX_BUFS ? EVAL_MAX_BUFS
                             : nb;
    if (nb > e->n_tickets)
        nb = e->n_tickets ? e->n_tickets : 1;
    e->n_bufs = (int)nb;
    e->bufs = xcalloc(nb, sizeof *e->bufs);
    for (size_t i = 0; i < nb; i++) {
        e->bufs[i].pixels = xmalloc(per);
        e->bufs[i].rows = xmalloc((size_t)e->ts * sizeof *e->bufs[i].rows);
        e->bufs[i].labels = xmalloc((size_t)e->ts * sizeof *e->bufs[i].labels);
    }

    lejepa_eval_init(&e->ev, model, e->ts);
    e->fdim = e->ev.feat_c;
    e->gh = e->ev.feat_h;
    e->gw = e->ev.feat_w;
    e->heads = e->ev.heads;
    size_t D = (size_t)e->dim, K = (size_t)e->classes, ts = (size_t)e->ts;
    e->ln = xmalloc_aligned(ts * D * sizeof(float));
    e->ln_mean = xmalloc_aligned(ts * sizeof(float));
    e->ln_rstd = xmalloc_aligned(ts * sizeof(float));
    e->logits = xmalloc_aligned(ts * K * sizeof(float));

    uint64_t fm = (uint64_t)c->eval.featmap_images;
    uint64_t from_n = e->n_va ? e->n_va : e->n_tr;
    e->fm_row = e->n_va ? e->n_tr : 0;
    e->fm_n = (int)(fm < from_n ? fm : from_n);
    size_t fm_feat = (size_t)e->fdim * (size_t)e->gh * (size_t)e->gw;
    e->fm_pixels = xmalloc((size_t)e->fm_n * e->plane + 1);
    e->fm_feats =
        xmalloc_aligned(((size_t)e->fm_n * fm_feat + 1) * sizeof(float));
    size_t fm_attn = (size_t)e->heads * e->gh * e->gw;
    e->fm_attn =
        xmalloc_aligned(((size_t)e->fm_n * fm_attn + 1) * sizeof(float));

    /* blob_a: int32 labels, blob_b: float32 rows of an EMBED or a FEATMAP */
    size_t chunk = (size_t)c->eval.chunk, fm_n = (size_t)e->fm_n;
    size_t a_items = chunk > fm_n ? chunk : fm_n;
    size_t b_items = chunk * D > fm_n * fm_feat ? chunk * D : fm_n * fm_feat;
    e->blob_a = xmalloc(a_items * 4 + 4);
    e->blob_b = xmalloc(b_items * 4 + 4);
    e->blob_c = xmalloc((size_t)e->fm_n * fm_attn * 4 + 4); /* FEATMAP attn */

    struct msg_limit_params lp;
    msg_limit_params_from_config(&lp, c);
    lp.emb_dim = D;
    lp.embed_chunk = chunk;
    lp.featmap_images = (size_t)e->fm_n;
    lp.feat_dim = (size_t)e->fdim;
    lp.grid_h = (size_t)e->gh;
    lp.grid_w = (size_t)e->gw;
    lp.heads = (size_t)e->heads;
    struct msg_limits lim;
    msg_limits_compute(&lim, &lp);
    uint64_t chunks = ceil_div(e->n_tr, chunk) + ceil_div(e->n_va, chunk);
    char when[64] = "at the end";
    if (c->eval.every > 0)
        snprintf(when, sizeof when, "every %" PRId64 " steps and at the end",
                 c->eval.every);
    train_log(
        "eval snapshots %s: %" PRIu64 " train + %" PRIu64 " val rows, %" PRIu64
        " EMBED chunks of <= %zu "
        "x %zu, FEATMAP %d images of %dx%dx%d features; messages up to %zu "
        "bytes; PUB high-water mark %d messages%s",
        when, e->n_tr, e->n_va, chunks, chunk, D, e->fm_n, e->fdim, e->gh,
        e->gw, lim.max_msg_bytes, e->pub_hwm,
        chunks + 2 + EVAL_HWM_BASE > (uint64_t)e->pub_hwm
            ? " (below one snapshot: a slow subscriber loses more)"
            : "");
    return e;
}

void train_eval_free(struct train_eval *e)
{
    if (!e)
        return;
    if (e->index) {
        lejepa_eval_free(&e->ev);
        for (int i = 0; i < e->n_bufs; i++) {
            free(e->bufs[i].pixels);
            free(e->bufs[i].rows);
            free(e->bufs[i].labels);
        }
        free(e->bufs);
        float *fl[] = {e->emb,    e->ln,       e->ln_mean, e->ln_rstd,
                       e->logits, e->fm_feats, e->fm_attn};
        for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
            util_free_aligned(fl[i]);
        free(e->index);
        free(e->labels);
        free(e->ok);
        free(e->state);
        free(e->buf_of);
        free(e->fm_pixels);
        free(e->blob_a);
        free(e->blob_b);
        free(e->blob_c);
    }
    free(e);
}

bool train_eval_due(const struct train_eval *e, uint64_t step, bool end)
{
    if (!e || !e->index || e->rows == 0)
        return false;
    int64_t every = e->cfg->eval.every;
    return end || (every > 0 && step % (uint64_t)every == 0);
}

bool train_eval_epoch_of(const struct train_eval *e, uint64_t step,
                         uint32_t *epoch)
{
    if (!e)
        return false;
    unsigned n = e->n_past < EVAL_PAST ? e->n_past : EVAL_PAST;
    for (unsigned i = 0; i < n; i++)
        if (e->past_step[i] == step) {
            *epoch = e->past_epoch[i];
            return true;
        }
    return false;
}

double train_eval_estimate_seconds(const struct train_eval *e,
                                   double flops_per_s)
{
    if (!e || !e->index || e->rows == 0 || !(flops_per_s > 0))
        return 0;
    double per_row = graph_forward_flops(&e->ev.g) / e->ev.g.B;
    return (double)e->rows * per_row / flops_per_s;
}

double train_eval_published_at(const struct train_eval *e)
{
    return e ? e->published_at : 0;
}

bool train_eval_active(const struct train_eval *e)
{
    return e && e->active;
}

void train_eval_begin(struct train_eval *e, uint64_t step, uint32_t epoch)
{
    e->active = true;
    e->job_out = false;
    e->step = step;
    e->epoch = epoch;
    e->past_step[e->n_past % EVAL_PAST] = e->step;
    e->past_epoch[e->n_past % EVAL_PAST] = epoch;
    e->n_past++;
    memset(e->ok, 0, e->rows);
    memset(e->state, EVAL_UNISSUED, e->n_tickets);
    for (uint32_t k = 0; k < e->n_tickets; k++)
        e->buf_of[k] = -1;
    for (int i = 0; i < e->n_bufs; i++)
        e->bufs[i].used = false;
    e->issue_from = e->forwarded = 0;
    e->val_correct = e->val_total = 0;
    e->failed = 0;
    e->forward_s = 0;
    e->settle_from = 0;
    e->t0 = util_time_mono();
    train_log("snapshot %" PRIu64 " begins: %" PRIu32 " eval tickets; training "
              "pauses",
              e->step, e->n_tickets);
}

static int free_buf(const struct train_eval *e)
{
    for (int i = 0; i < e->n_bufs; i++)
        if (!e->bufs[i].used)
            return i;
    return -1;
}

/* 3 when loader c holds every sample of eval ticket k, 2 some, 1 none:
 * the loader that holds the most of it gets it; with none holding all, a
 * partial copy fails (ENV) the rows it lacks rather than the snapshot
 * waiting. */
struct fit_eval {
    const struct train_eval *e;
    uint32_t k;
};

static int fit_eval(void *ctx, const struct train_client *c)
{
    const struct fit_eval *f = ctx;
    if (c->role != MSG_ROLE_LOADER)
        return 0;
    if (!c->held)
        return 3;
    struct msg_ticket t;
    ticket_msg(f->e, f->k, &t);
    uint64_t base = t.split == MSG_SPLIT_VAL ? f->e->n_train : 0;
    uint32_t held = 0;
    for (uint32_t i = 0; i < t.n; i++)
        held += train_net_holds(c, base + t.indices[i]);
    return held == t.n ? 3 : held > 0 ? 2 : 1;
}

void train_eval_issue(struct train_eval *e, struct train_tickets *tk,
                      struct train_net *n)
{
    if (!e || !e->active)
        return;
    for (uint32_t k = e->issue_from; k < e->n_tickets; k++) {
        if (e->state[k] != EVAL_UNISSUED) {
            if (k == e->issue_from)
                e->issue_from++;
            continue;
        }
        int b = e->buf_of[k] >= 0 ? e->buf_of[k] : free_buf(e);
        if (b < 0)
            return;
        struct fit_eval f = {e, k};
        struct train_client *c = train_tickets_loader_fit(tk, n, fit_eval, &f);
        if (!c)
            return;
        e->bufs[b].used = true;
        e->bufs[b].ticket = k;
        e->buf_of[k] = b;
        struct msg_ticket t;
        ticket_msg(e, k, &t);
        train_tickets_send(n, c, &t);
        e->state[k] = EVAL_OUT;
    }
}

/* The ticket number of a current snapshot's id, or -1. */
static int64_t current_ticket(const struct train_eval *e, uint64_t ticket)
{
    uint64_t step = (ticket & ~TRAIN_EVAL_TICKET_BIT) >> TRAIN_EVAL_STEP_SHIFT;
    uint64_t k = ticket & ((UINT64_C(1) << TRAIN_EVAL_STEP_SHIFT) - 1);
    if (!e || !e->active || step != e->step || k >= e->n_tickets)
        return -1;
    return (int64_t)k;
}

void train_eval_reissue(struct train_eval *e, const struct train_net *n,
                        uint64_t ticket)
{
    int64_t k = current_ticket(e, ticket);
    if (k < 0 || e->state[k] != EVAL_OUT || train_tickets_held(n, ticket))
        return;
    e->state[k] = EVAL_UNISSUED;
    if ((uint32_t)k < e->issue_from)
        e->issue_from = (uint32_t)k;
}

enum train_answer train_eval_accept(struct train_eval *e,
                                    struct train_tickets *tk,
                                    struct train_net *n, struct train_client *c,
                                    const struct msg_batch *b, bool was_held)
{
    char err[ERR_LEN];
    int64_t k = current_ticket(e, b->ticket);
    /* the first answer wins: also one that comes after the ticket's
     * deadline sent it back to the queue (its buffer is still reserved) */
    bool open = k >= 0 &&
        (e->state[k] == EVAL_OUT ||
         (e->state[k] == EVAL_UNISSUED && e->buf_of[k] >= 0));
    if (!open) {
        if (train_log_thin(++tk->duplicates))
            train_log("dropped a late or duplicate eval BATCH for ticket "
                      "%016" PRIx64 " from %s (%" PRIu64 " so far)",
                      b->ticket, c->name, tk->duplicates);
        return TRAIN_ANSWER_LATE;
    }
    struct msg_ticket t;
    ticket_msg(e, (uint32_t)k, &t);
    if (!was_held) {
        errf(err,
             "eval BATCH for ticket %016" PRIx64 ", which it does not hold",
             b->ticket);
    } else if (b->work != MSG_WORK_EVAL) {
        errf(err, "BATCH work '%s' for an eval ticket", msg_work_name(b->work));
    } else if (train_tickets_check_answer(e->cfg, (uint32_t)e->classes, b, &t,
                                          err) == 0) {
        struct eval_buf *eb = &e->bufs[e->buf_of[k]];
        uint64_t first = (uint64_t)(t.indices - e->index);
        uint32_t j = 0;
        for (uint32_t i = 0; i < t.n && j < b->n; i++)
            if (t.indices[i] == b->indices[j]) {
                eb->rows[j] = first + i;
                eb->labels[j] = b->labels[j];
                e->labels[first + i] = b->labels[j];
                j++;
            }
        eb->n = b->n;
        if (b->n)
            memcpy(eb->pixels, b->groups[0].pixels, (size_t)b->n * e->plane);
        for (uint32_t i = 0; i < b->n_failures; i++)
            if (++e->failed <= EVAL_FAIL_LOG)
                train_log("snapshot %" PRIu64 ": %s sample %" PRIu64 " (%s) "
                          "failed: %s; left out",
                          e->step, msg_split_name(t.split),
                          b->failures[i].index, b->failures[i].path,
                          b->failures[i].reason);
        e->state[k] = EVAL_ARRIVED;
        c->batches++;
        return TRAIN_ANSWER_TAKEN;
    }
    train_net_bad_message(n, c->name, err);
    if (was_held)
        train_eval_reissue(e, n, b->ticket);
    return TRAIN_ANSWER_BAD;
}

/* Compute thread: embeds buffer job_buf's samples with the current weights,
 * keeps the FEATMAP rows' pixels and features, and scores the probe on val
 * rows. Reads the model, writes only this snapshot's rows. */
static void forward_job(struct train_engine *eng, void *arg)
{
    struct train_eval *e = arg;
    double t0 = util_time_mono();
    struct eval_buf *eb = &e->bufs[e->job_buf];
    int n = (int)eb->n;
    if (n == 0)
        return;
    const int C = (int)e->cfg->views.channels;
    nn_pixels_normalize(lejepa_eval_input(&e->ev), eb->pixels, eng->mean,
                        eng->std, (size_t)n, C, e->plane / (size_t)C);
    graph_set_batch(&e->ev.g, n);
    const float *emb = lejepa_eval_forward(&e->ev);
    size_t D = (size_t)e->dim, fsz = (size_t)e->fdim * e->gh * e->gw;
    size_t asz = (size_t)e->heads * e->gh * e->gw;
    for (int i = 0; i < n; i++) {
        uint64_t row = eb->rows[i];
        memcpy(e->emb + row * D, emb + (size_t)i * D, D * sizeof(float));
        e->ok[row] = 1;
        if (row >= e->fm_row && row < e->fm_row + (uint64_t)e->fm_n) {
            size_t f = (size_t)(row - e->fm_row);
            memcpy(e->fm_pixels + f * e->plane,
                   eb->pixels + (size_t)i * e->plane, e->plane);
            lejepa_eval_featmap(&e->ev, i, e->fm_feats + f * fsz,
                                e->fm_attn + f * asz);
        }
    }
    if (eb->rows[0] >= e->n_tr && lejepa_has_probe(&eng->model)) {
        const struct lejepa *m = &eng->model;
        const struct params *p = &m->p;
        nn_layernorm_forward(
            e->ln, e->ln_mean, e->ln_rstd, emb, params_data(p, m->probe.ln_w),
            params_data(p, m->probe.ln_b), n, (int)D, NN_LN_EPS);
        nn_linear_forward(e->logits, e->ln, params_data(p, m->probe.w),
                          params_data(p, m->probe.b), n, (int)D, e->classes);
        int correct = 0;
        nn_crossentropy_forward(NULL, &correct, e->logits, eb->labels, n,
                                e->classes);
        e->val_correct += correct;
        e->val_total += n;
    }
    e->forward_s += util_time_mono() - t0;
}

/* Publishes without blocking: PUB never blocks, and a subscriber whose
 * queue is full loses the message alone. Only a message that cannot be
 * encoded or sent at all is counted as dropped. */
static void publish(void *pub, const struct msg *m, uint64_t *dropped)
{
    char err[ERR_LEN];
    if (msg_publish_nb(pub, m, err) != 0) {
        train_log("publish %s: %s", msg_kind_name(m->kind), err);
        (*dropped)++;
    }
}

/* EMBED chunks of the embedded rows of [from, to) of one split. */
static uint32_t publish_split(struct train_eval *e, void *pub, uint64_t from,
                              uint64_t to, enum msg_split split, uint32_t seq,
                              uint64_t *dropped)
{
    size_t chunk = (size_t)e->cfg->eval.chunk, D = (size_t)e->dim;
    uint64_t r = from;
    for (;;) {
        uint32_t n = 0;
        for (; r < to && n < chunk; r++)
            if (e->ok[r]) {
                msg_blob_write_i32(e->blob_a + (size_t)n * 4, &e->labels[r], 1);
                msg_blob_write_f32(e->blob_b + (size_t)n * D * 4,
                                   e->emb + r * D, D);
                n++;
            }
        if (n == 0)
            return seq;
        struct msg m = {.kind = MSG_KIND_EMBED};
        m.embed = (struct msg_embed){
            .snapshot = e->step,
            .step = e->step,
            .seq = seq++,
            .split = split,
            .n = n,
            .dim = (uint32_t)D,
            .labels = e->blob_a,
            .emb = e->blob_b,
        };
        publish(pub, &m, dropped);
    }
}

static void publish_featmap(struct train_eval *e, void *pub, uint64_t *dropped)
{
    size_t fsz = (size_t)e->fdim * e->gh * e->gw;
    size_t asz = (size_t)e->heads * e->gh * e->gw;
    uint32_t n = 0;
    /* compact the rows that arrived, in place (destination never after source) */
    for (int f = 0; f < e->fm_n; f++) {
        uint64_t row = e->fm_row + (uint64_t)f;
        if (!e->ok[row])
            continue;
        memmove(e->fm_pixels + n * e->plane,
                e->fm_pixels + (size_t)f * e->plane, e->plane);
        msg_blob_write_i32(e->blob_a + (size_t)n * 4, &e->labels[row], 1);
        msg_blob_write_f32(e->blob_b + n * fsz * 4,
                           e->fm_feats + (size_t)f * fsz, fsz);
        msg_blob_write_f32(e->blob_c + n * asz * 4,
                           e->fm_attn + (size_t)f * asz, asz);
        n++;
    }
    if (n == 0)
        return;
    size_t size = (size_t)e->cfg->views.global_size;
    struct msg m = {.kind = MSG_KIND_FEATMAP};
    m.featmap = (struct msg_featmap){
        .snapshot = e->step,
        .step = e->step,
        .n = n,
        .c = (uint32_t)e->cfg->views.channels,
        .h = (uint32_t)size,
        .w = (uint32_t)size,
        .pixels = e->fm_pixels,
        .labels = e->blob_a,
        .fdim = (uint32_t)e->fdim,
        .gh = (uint32_t)e->gh,
        .gw = (uint32_t)e->gw,
        .feats = e->blob_b,
        .heads = (uint32_t)e->heads,
        .attn = e->heads ? e->blob_c : NULL,
    };
    publish(pub, &m, dropped);
}

/* Publishes the snapshot and writes its metrics; returns its seconds. */
static double finish(struct train_eval *e, void *pub, struct train_rundir *rd)
{
    double t_pub = util_time_mono();
    e->published_at = t_pub;
    uint64_t dropped = 0;
    uint32_t chunks =
        publish_split(e, pub, 0, e->n_tr, MSG_SPLIT_TRAIN, 0, &dropped);
    chunks = publish_split(e, pub, e->n_tr, e->rows, MSG_SPLIT_VAL, chunks,
                           &dropped);
    struct msg end = {.kind = MSG_KIND_EMBED};
    end.embed = (struct msg_embed){
        .snapshot = e->step,
        .step = e->step,
        .seq = chunks,
        .split = e->n_va ? MSG_SPLIT_VAL : MSG_SPLIT_TRAIN,
        .end = true,
        .chunks = chunks,
        .n = 0,
        .dim = (uint32_t)e->dim,
        .labels = e->blob_a,
        .emb = e->blob_b,
    };
    publish(pub, &end, &dropped);
    publish_featmap(e, pub, &dropped);
    double now = util_time_mono();
    double seconds = now - e->t0;
    uint64_t rows = 0;
    for (uint64_t r = 0; r < e->rows; r++)
        rows += e->ok[r];
    double acc =
        e->val_total ? (double)e->val_correct / (double)e->val_total : NAN;
    if (dropped)
        train_log("snapshot %" PRIu64 ": %" PRIu64 " messages dropped (slow "
                  "subscriber)",
                  e->step, dropped);
    train_log("snapshot %" PRIu64 ": %" PRIu64 " rows (%" PRIu64
              " failed), %" PRIu32
              " EMBED chunks + FEATMAP, %.2f s (forward %.2f s, publish "
              "%.2f s), probe_acc_val %.4f",
              e->step, rows, e->failed, chunks, seconds, e->forward_s,
              now - t_pub, acc);
    struct msg_value v[] = {
        {"probe_acc_val", acc},
        {"eval_rows", (double)rows},
        {"eval_seconds", seconds},
        {"eval_dropped", (double)dropped},
    };
    train_metrics_write(rd, MSG_SOURCE_EVAL, e->step, e->epoch, v,
                        (int)(sizeof v / sizeof v[0]), NULL);
    e->active = false;
    return seconds;
}

double train_eval_poll(struct train_eval *e, struct train_engine *eng,
                       struct train_net *n, struct train_rundir *rd)
{
    if (e->job_out) {
        if (!train_engine_idle(eng))
            return 0;
        e->job_out = false;
        struct eval_buf *eb = &e->bufs[e->job_buf];
        e->state[eb->ticket] = EVAL_FORWARDED;
        e->buf_of[eb->ticket] = -1;
        eb->used = false;
        e->forwarded++;
    }
    if (e->forwarded == e->n_tickets) {
        /* one deadline per snapshot: an evaluator saying HELLO again and
         * again cannot hold training paused */
        double now = util_time_mono();
        if (e->settle_from == 0)
            e->settle_from = now;
        if (now - e->settle_from >= TRAIN_SUBSCRIBE_SETTLE_S ||
            !train_net_evaluators_settling(n, TRAIN_SUBSCRIBE_SETTLE_S))
            return finish(e, n->pub, rd);
        return 0;
    }
    for (int i = 0; i < e->n_bufs; i++)
        if (e->bufs[i].used && e->state[e->bufs[i].ticket] == EVAL_ARRIVED) {
            e->job_buf = i;
            e->job_out = true;
            train_engine_submit(eng, forward_job, e);
            return 0;
        }
    return 0;
}

void train_eval_abandon(struct train_eval *e, struct train_engine *eng,
                        const char *why)
{
    while (e->job_out && !train_engine_idle(eng))
        usleep(1000);
    e->job_out = false;
    e->active = false;
    train_log("snapshot %" PRIu64 " abandoned (%" PRIu32 " of %" PRIu32
              " tickets done): %s",
              e->step, e->forwarded, e->n_tickets, why);
}
