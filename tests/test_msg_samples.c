/*
 * test_msg_samples.c: sample messages, deep comparison and blob bounds for
 * the protocol tests (see test_msg_samples.h). Test-only code.
 */
#include "test_msg_samples.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static uint8_t px_global[2 * 3 * 3 * 8 * 8];    /* (V=2, n=3, c=3, 8, 8) */
static uint8_t px_local[4 * 3 * 3 * 4 * 4];     /* (V=4, n=3, c=3, 4, 4) */
static unsigned char emb_labels[5 * 4];
static unsigned char emb_data[5 * 4 * 4];       /* (5, 4) float32 */
static uint8_t fm_pixels[2 * 1 * 4 * 4];
static unsigned char fm_labels[2 * 4];
static unsigned char fm_feats[2 * 3 * 2 * 2 * 4];
static unsigned char fm_attn[2 * 2 * 2 * 2 * 4];

static void samples_fill(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    for (size_t i = 0; i < sizeof px_global; i++)
        px_global[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof px_local; i++)
        px_local[i] = (uint8_t)(i * 13 + 5);
    int32_t lab[5] = {0, 3, -1, 9, 2};
    msg_blob_write_i32(emb_labels, lab, 5);
    float e[20];
    for (int i = 0; i < 20; i++)
        e[i] = (float)i * 0.25f - 2.0f;
    msg_blob_write_f32(emb_data, e, 20);
    for (size_t i = 0; i < sizeof fm_pixels; i++)
        fm_pixels[i] = (uint8_t)(255 - i);
    int32_t fl[2] = {4, 7};
    msg_blob_write_i32(fm_labels, fl, 2);
    float f[24], a[16];
    for (int i = 0; i < 24; i++)
        f[i] = (float)i / 3.0f;
    for (int i = 0; i < 16; i++)
        a[i] = 1.0f / (float)(i + 1);
    msg_blob_write_f32(fm_feats, f, 24);
    msg_blob_write_f32(fm_attn, a, 16);
}

void msg_sample(struct msg *m, enum msg_kind k, int variant)
{
    static const char *const classes[] = {"tshirt", "trouser", "pullover"};
    static uint8_t held[(6000 + 1000 + 7) / 8]; /* a partial copy */
    for (size_t i = 0; i < sizeof held; i++)
        held[i] = (uint8_t)(i % 3 ? 0xff : 0x5a);
    static const char *const lines[] = {"{\"step\":1,\"loss\":2.5}", "{\"step\":2,\"loss\":2.25}"};
    static const uint64_t ticket_idx[] = {10, 42, 7, 99};
    static const uint64_t batch_idx[] = {10, 42, 7};
    static const int32_t batch_lab[] = {1, -2, 9};
    static const uint64_t returned[] = {3, 4, 5};
    static const struct msg_failure fails[] = {
        {99, "train/sandal/0001.png", "vips: not a PNG file", MSG_FAIL_DECODE},
        {10, "train/bag/0002.png", "worker crashed (signal 9)", MSG_FAIL_ENV},
    };
    static struct msg_group groups[2];
    static const struct msg_value train_vals[] = {
        {"loss", 1.25}, {"inv", 0.5}, {"sigreg", 1.0625}, {"lr", 5e-4}};
    static struct msg_value knn_vals[2];

    samples_fill();
    memset(m, 0, sizeof *m);
    m->kind = k;
    switch (k) {
    case MSG_KIND_HELLO:
        m->hello = (struct msg_hello){
            .role = variant ? MSG_ROLE_MONITOR : MSG_ROLE_LOADER,
            .name = variant ? "mon@host" : "loader-1", .software = "lejepa 0.1.0",
            .pid = 4242, .credit = variant ? 0 : 4, .eval_view = !variant,
            .has_dataset = !variant,
            .dataset = variant ? (struct msg_dataset){0}
                               : (struct msg_dataset){0xfeedfacecafebeefULL, 6000, 1000,
                                                      3, classes, held}};
        break;
    case MSG_KIND_WELCOME:
        m->welcome = (struct msg_welcome){"run-7", "tcp://127.0.0.1:5556",
                                          "[run]\nname = run-7\nseed = 1\n", 1000,
                                          variant ? 1ULL << 40 : 3,
                                          variant ? "tcp://10.0.0.2:5557" : NULL};
        break;
    case MSG_KIND_REFUSE: m->refuse.reason = "dataset fingerprint differs"; break;
    case MSG_KIND_BYE: m->bye.reason = variant ? "" : "shutting down"; break;
    case MSG_KIND_HISTORY:
        m->history = variant ? (struct msg_history){5, 2, lines, true}
                             : (struct msg_history){5, 0, NULL, false};
        break;
    case MSG_KIND_TICKET:
        m->ticket = (struct msg_ticket){
            .ticket = 77, .step = 1000, .epoch = 3,
            .split = variant ? MSG_SPLIT_VAL : MSG_SPLIT_TRAIN,
            .work = variant ? MSG_WORK_EVAL : MSG_WORK_TRAIN, .seed = 0x1234567890ULL,
            .eval_view = !variant, .n = variant ? 1 : 4, .indices = ticket_idx};
        break;
    case MSG_KIND_BATCH:
        groups[0] = (struct msg_group){2, 3, 8, 8, px_global};
        groups[1] = (struct msg_group){4, 3, 4, 4, px_local};
        m->batch = (struct msg_batch){
            .ticket = 77, .step = 1000, .epoch = 3, .split = MSG_SPLIT_TRAIN,
            .work = MSG_WORK_TRAIN, .n = variant ? 0 : 3, .indices = batch_idx,
            .labels = batch_lab, .n_groups = variant ? 1 : 2, .groups = groups,
            .n_failures = variant ? 2 : 1, .failures = fails, .decode_ms = 12.5};
        break;
    case MSG_KIND_RETURN:
        m->ret = (struct msg_return){variant ? 0 : 3, returned};
        break;
    case MSG_KIND_HEARTBEAT:
        m->heartbeat = (struct msg_heartbeat){1764000000.25, variant ? 0 : 2};
        break;
    case MSG_KIND_RESULT:
    case MSG_KIND_METRIC:
        knn_vals[0] = (struct msg_value){"knn_top1", 0.75};
        knn_vals[1] = (struct msg_value){"loss", variant ? __builtin_nan("") : -3.0};
        if (k == MSG_KIND_METRIC && !variant)
            m->metric = (struct msg_metric){1764000001.5, 1000, 3, MSG_SOURCE_TRAIN, 4,
                                            train_vals};
        else
            m->metric = (struct msg_metric){1764000002.0, 900, 2,
                                            variant ? MSG_SOURCE_SYSTEM : MSG_SOURCE_KNN, 2,
                                            knn_vals};
        break;
    case MSG_KIND_EMBED:
        m->embed = variant
            ? (struct msg_embed){.snapshot = 4, .step = 2000, .seq = 3, .split = MSG_SPLIT_VAL,
                                 .end = true, .chunks = 3, .n = 0, .dim = 4}
            : (struct msg_embed){.snapshot = 4, .step = 2000, .seq = 1,
                                 .split = MSG_SPLIT_TRAIN, .chunks = 0, .n = 5, .dim = 4,
                                 .labels = emb_labels, .emb = emb_data};
        break;
    case MSG_KIND_FEATMAP:
        m->featmap = (struct msg_featmap){
            .snapshot = 4, .step = 2000, .n = 2, .c = 1, .h = 4, .w = 4,
            .pixels = fm_pixels, .labels = fm_labels, .fdim = 3, .gh = 2, .gw = 2,
            .feats = fm_feats, .heads = variant ? 0 : 2, .attn = variant ? NULL : fm_attn};
        break;
    }
}

void msg_sample_limits(struct msg_limits *l)
{
    *l = (struct msg_limits){
        .max_msg_bytes = 8192, .max_samples = 8, .max_views = 4, .max_groups = 2,
        .max_pixels = 3 * 8 * 8, .max_emb_dim = 8, .max_feat_elems = 24, .max_str = 256,
        .max_array = 16, .max_values = 8, .max_depth = 4};
}

#define DIFF(cond, name) do { if (cond) { snprintf(why, ERR_LEN, "%s", name); return false; } } while (0)

/* Bitwise, so NaN equals the same NaN. */
static bool f64_same(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static bool str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

static bool blob_eq(const void *a, const void *b, size_t n)
{
    return n == 0 || (a && b && memcmp(a, b, n) == 0);
}

static bool metric_equal(const struct msg_metric *a, const struct msg_metric *b, char *why)
{
    DIFF(!f64_same(a->time, b->time) || a->step != b->step || a->epoch != b->epoch, "metric header");
    DIFF(a->source != b->source || a->n_values != b->n_values, "metric source/count");
    for (uint32_t i = 0; i < a->n_values; i++) {
        DIFF(!str_eq(a->values[i].key, b->values[i].key), "metric key");
        DIFF(!f64_same(a->values[i].value, b->values[i].value), "metric value");
    }
    return true;
}

static bool batch_equal(const struct msg_batch *a, const struct msg_batch *b, char *why)
{
    DIFF(a->ticket != b->ticket || a->step != b->step || a->epoch != b->epoch ||
         a->split != b->split || a->work != b->work, "batch header");
    DIFF(a->n != b->n || a->n_groups != b->n_groups || a->n_failures != b->n_failures,
         "batch counts");
    DIFF(!f64_same(a->decode_ms, b->decode_ms), "batch decode_ms");
    for (uint32_t i = 0; i < a->n; i++)
        DIFF(a->indices[i] != b->indices[i] || a->labels[i] != b->labels[i],
             "batch indices/labels");
    for (uint32_t g = 0; g < a->n_groups; g++) {
        const struct msg_group *x = &a->groups[g], *y = &b->groups[g];
        DIFF(x->views != y->views || x->c != y->c || x->h != y->h || x->w != y->w,
             "group shape");
        DIFF(!blob_eq(x->pixels, y->pixels, (size_t)x->views * a->n * x->c * x->h * x->w),
             "group pixels");
    }
    for (uint32_t i = 0; i < a->n_failures; i++)
        DIFF(a->failures[i].index != b->failures[i].index ||
             !str_eq(a->failures[i].path, b->failures[i].path) ||
             !str_eq(a->failures[i].reason, b->failures[i].reason) ||
             a->failures[i].fail_class != b->failures[i].fail_class, "failure");
    return true;
}

bool msg_sample_equal(const struct msg *a, const struct msg *b, char *why)
{
    DIFF(a->kind != b->kind, "kind");
    switch (a->kind) {
    case MSG_KIND_HELLO: {
        const struct msg_hello *x = &a->hello, *y = &b->hello;
        DIFF(x->role != y->role || !str_eq(x->name, y->name) ||
             !str_eq(x->software, y->software) || x->pid != y->pid ||
             x->credit != y->credit || x->eval_view != y->eval_view ||
             x->has_dataset != y->has_dataset, "hello");
        if (x->has_dataset) {
            DIFF(x->dataset.fingerprint != y->dataset.fingerprint ||
                 x->dataset.n_train != y->dataset.n_train ||
                 x->dataset.n_val != y->dataset.n_val ||
                 x->dataset.n_classes != y->dataset.n_classes, "hello dataset");
            for (uint32_t i = 0; i < x->dataset.n_classes; i++)
                DIFF(!str_eq(x->dataset.classes[i], y->dataset.classes[i]), "hello class");
            size_t held = (size_t)((x->dataset.n_train + x->dataset.n_val + 7) / 8);
            DIFF(!x->dataset.held != !y->dataset.held ||
                     (x->dataset.held && memcmp(x->dataset.held, y->dataset.held, held) != 0),
                 "hello held");
        }
        return true;
    }
    case MSG_KIND_WELCOME:
        DIFF(!str_eq(a->welcome.run, b->welcome.run) ||
             !str_eq(a->welcome.broadcast, b->welcome.broadcast) ||
             !str_eq(a->welcome.config, b->welcome.config) ||
             a->welcome.heartbeat_ms != b->welcome.heartbeat_ms ||
             a->welcome.client_id != b->welcome.client_id ||
             !a->welcome.serve != !b->welcome.serve ||
             (a->welcome.serve && !str_eq(a->welcome.serve, b->welcome.serve)), "welcome");
        return true;
    case MSG_KIND_REFUSE:
    case MSG_KIND_BYE:
        DIFF(!str_eq(a->bye.reason, b->bye.reason), "reason");
        return true;
    case MSG_KIND_HISTORY:
        DIFF(a->history.start != b->history.start || a->history.done != b->history.done ||
             a->history.n_lines != b->history.n_lines, "history");
        for (uint32_t i = 0; i < a->history.n_lines; i++)
            DIFF(!str_eq(a->history.lines[i], b->history.lines[i]), "history line");
        return true;
    case MSG_KIND_TICKET: {
        const struct msg_ticket *x = &a->ticket, *y = &b->ticket;
        DIFF(x->ticket != y->ticket || x->step != y->step || x->epoch != y->epoch ||
             x->split != y->split || x->work != y->work || x->seed != y->seed ||
             x->eval_view != y->eval_view || x->n != y->n, "ticket");
        for (uint32_t i = 0; i < x->n; i++)
            DIFF(x->indices[i] != y->indices[i], "ticket indices");
        return true;
    }
    case MSG_KIND_BATCH: return batch_equal(&a->batch, &b->batch, why);
    case MSG_KIND_RETURN:
        DIFF(a->ret.n != b->ret.n, "return count");
        for (uint32_t i = 0; i < a->ret.n; i++)
            DIFF(a->ret.tickets[i] != b->ret.tickets[i], "return tickets");
        return true;
    case MSG_KIND_HEARTBEAT:
        DIFF(!f64_same(a->heartbeat.time, b->heartbeat.time) || a->heartbeat.held != b->heartbeat.held,
             "heartbeat");
        return true;
    case MSG_KIND_RESULT:
    case MSG_KIND_METRIC: return metric_equal(&a->metric, &b->metric, why);
    case MSG_KIND_EMBED: {
        const struct msg_embed *x = &a->embed, *y = &b->embed;
        DIFF(x->snapshot != y->snapshot || x->step != y->step || x->seq != y->seq ||
             x->split != y->split || x->end != y->end || x->chunks != y->chunks ||
             x->n != y->n || x->dim != y->dim, "embed header");
        DIFF(!blob_eq(x->labels, y->labels, (size_t)x->n * 4), "embed labels");
        DIFF(!blob_eq(x->emb, y->emb, (size_t)x->n * x->dim * 4), "embed emb");
        return true;
    }
    case MSG_KIND_FEATMAP: {
        const struct msg_featmap *x = &a->featmap, *y = &b->featmap;
        DIFF(x->snapshot != y->snapshot || x->step != y->step || x->n != y->n ||
             x->c != y->c || x->h != y->h || x->w != y->w || x->fdim != y->fdim ||
             x->gh != y->gh || x->gw != y->gw || x->heads != y->heads, "featmap header");
        size_t grid = (size_t)x->n * x->gh * x->gw;
        DIFF(!blob_eq(x->pixels, y->pixels, (size_t)x->n * x->c * x->h * x->w), "featmap pixels");
        DIFF(!blob_eq(x->labels, y->labels, (size_t)x->n * 4), "featmap labels");
        DIFF(!blob_eq(x->feats, y->feats, grid * x->fdim * 4), "featmap feats");
        DIFF(!blob_eq(x->attn, y->attn, grid * x->heads * 4), "featmap attn");
        return true;
    }
    }
    DIFF(true, "unknown kind");
}

static bool inside(const void *p, size_t n, const void *buf, size_t len)
{
    if (n == 0)
        return true;
    const unsigned char *b = buf, *q = p;
    return q && q >= b && q <= b + len && n <= (size_t)(b + len - q);
}

bool msg_sample_blobs_inside(const struct msg *m, const void *buf, size_t len)
{
    switch (m->kind) {
    case MSG_KIND_BATCH:
        for (uint32_t g = 0; g < m->batch.n_groups; g++) {
            const struct msg_group *x = &m->batch.groups[g];
            if (!inside(x->pixels, (size_t)x->views * m->batch.n * x->c * x->h * x->w, buf, len))
                return false;
        }
        return true;
    case MSG_KIND_EMBED:
        return inside(m->embed.labels, (size_t)m->embed.n * 4, buf, len) &&
               inside(m->embed.emb, (size_t)m->embed.n * m->embed.dim * 4, buf, len);
    case MSG_KIND_FEATMAP: {
        const struct msg_featmap *f = &m->featmap;
        size_t grid = (size_t)f->n * f->gh * f->gw;
        return inside(f->pixels, (size_t)f->n * f->c * f->h * f->w, buf, len) &&
               inside(f->labels, (size_t)f->n * 4, buf, len) &&
               inside(f->feats, grid * f->fdim * 4, buf, len) &&
               inside(f->attn, grid * f->heads * 4, buf, len);
    }
    default:
        return true;
    }
}
