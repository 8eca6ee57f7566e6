/*
 * msg_encode.c: struct msg -> one MessagePack map (field lists in
 * proto/PROTOCOL.md). Blob sizes are computed from the shapes in the struct
 * (overflow-checked), so a sender cannot put a blob on the wire that
 * disagrees with its shape. Nothing here reads from the network.
 */
#include "msg.h"

#include <string.h>

#include "util.h"

#define PACK(call) do { if ((call) != 0) goto fail; } while (0)

static int pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int put_str(msgpack_packer *pk, const char *key, const char *val)
{
    return pack_cstr(pk, key) || pack_cstr(pk, val);
}

static int put_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    return pack_cstr(pk, key) || msgpack_pack_uint64(pk, v);
}

static int put_f64(msgpack_packer *pk, const char *key, double v)
{
    return pack_cstr(pk, key) || msgpack_pack_double(pk, v);
}

static int put_bool(msgpack_packer *pk, const char *key, bool v)
{
    return pack_cstr(pk, key) || (v ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
}

static int put_bin(msgpack_packer *pk, const char *key, const void *p, size_t n)
{
    return pack_cstr(pk, key) || msgpack_pack_bin(pk, n) ||
           (n ? msgpack_pack_bin_body(pk, p, n) : 0);
}

static int put_u64_array(msgpack_packer *pk, const char *key, const uint64_t *v, uint32_t n)
{
    if (pack_cstr(pk, key) || msgpack_pack_array(pk, n))
        return -1;
    for (uint32_t i = 0; i < n; i++)
        if (msgpack_pack_uint64(pk, v[i]))
            return -1;
    return 0;
}

static int put_str_array(msgpack_packer *pk, const char *key, const char *const *v,
                         uint32_t n)
{
    if (pack_cstr(pk, key) || msgpack_pack_array(pk, n))
        return -1;
    for (uint32_t i = 0; i < n; i++)
        if (pack_cstr(pk, v[i]))
            return -1;
    return 0;
}

/* Product of the dims times elem, or -1 with err on overflow. */
static int blob_bytes(size_t *out, size_t elem, const uint32_t *dims, int ndims,
                      const char *field, char *err)
{
    size_t n = elem;
    for (int i = 0; i < ndims; i++)
        if (__builtin_mul_overflow(n, (size_t)dims[i], &n))
            return errf(err, "encode: %s size overflows", field);
    *out = n;
    return 0;
}

static int need_blob(const void *p, size_t n, const char *field, char *err)
{
    if (n > 0 && !p)
        return errf(err, "encode: %s is NULL but its shape says %zu bytes", field, n);
    return 0;
}

static int need_str(const char *s, const char *field, char *err)
{
    if (!s)
        return errf(err, "encode: %s is NULL", field);
    return 0;
}

static int need_strs(const char *const *v, uint32_t n, const char *field, char *err)
{
    if (n > 0 && !v)
        return errf(err, "encode: %s is NULL with %u entries", field, n);
    for (uint32_t i = 0; i < n; i++)
        if (!v[i])
            return errf(err, "encode: %s[%u] is NULL", field, i);
    return 0;
}

/* Checks a message's pointers, enum values and shapes before packing. */
static int encode_check(const struct msg *m, char *err)
{
    switch (m->kind) {
    case MSG_KIND_HELLO: {
        const struct msg_hello *h = &m->hello;
        if (!msg_role_name(h->role))
            return errf(err, "encode: HELLO.role %d out of range", (int)h->role);
        if (need_str(h->name, "HELLO.name", err) || need_str(h->software, "HELLO.software", err))
            return -1;
        return h->has_dataset ? need_strs(h->dataset.classes, h->dataset.n_classes,
                                          "HELLO.dataset.classes", err) : 0;
    }
    case MSG_KIND_WELCOME:
        return need_str(m->welcome.run, "WELCOME.run", err) ||
               need_str(m->welcome.broadcast, "WELCOME.broadcast", err) ||
               need_str(m->welcome.config, "WELCOME.config", err) ? -1 : 0;
    case MSG_KIND_REFUSE: return need_str(m->refuse.reason, "REFUSE.reason", err);
    case MSG_KIND_BYE: return need_str(m->bye.reason, "BYE.reason", err);
    case MSG_KIND_HISTORY:
        return need_strs(m->history.lines, m->history.n_lines, "HISTORY.lines", err);
    case MSG_KIND_TICKET:
        if (!msg_split_name(m->ticket.split) || !msg_work_name(m->ticket.work))
            return errf(err, "encode: TICKET split/kind out of range");
        if (m->ticket.eval_view && m->ticket.work != MSG_WORK_TRAIN)
            return errf(err, "encode: TICKET.eval_view needs work = train");
        return m->ticket.n && !m->ticket.indices ? errf(err, "encode: TICKET.indices is NULL") : 0;
    case MSG_KIND_BATCH: {
        const struct msg_batch *b = &m->batch;
        if (!msg_split_name(b->split) || !msg_work_name(b->work))
            return errf(err, "encode: BATCH split/kind out of range");
        if (b->n && (!b->indices || !b->labels))
            return errf(err, "encode: BATCH.indices/labels is NULL");
        if ((b->n_groups && !b->groups) || (b->n_failures && !b->failures))
            return errf(err, "encode: BATCH.groups/failures is NULL");
        for (uint32_t g = 0; g < b->n_groups; g++) {
            const struct msg_group *gr = &b->groups[g];
            uint32_t dims[5] = {gr->views, b->n, gr->c, gr->h, gr->w};
            size_t bytes = 0;
            if (blob_bytes(&bytes, 1, dims, 5, "BATCH.groups.pixels", err) ||
                need_blob(gr->pixels, bytes, "BATCH.groups.pixels", err))
                return -1;
        }
        for (uint32_t i = 0; i < b->n_failures; i++)
            if (need_str(b->failures[i].path, "BATCH.failures.path", err) ||
                need_str(b->failures[i].reason, "BATCH.failures.reason", err) ||
                need_str(msg_fail_class_name(b->failures[i].fail_class),
                         "BATCH.failures.class", err))
                return -1;
        return 0;
    }
    case MSG_KIND_RETURN:
        return m->ret.n && !m->ret.tickets ? errf(err, "encode: RETURN.tickets is NULL") : 0;
    case MSG_KIND_HEARTBEAT: return 0;
    case MSG_KIND_RESULT:
    case MSG_KIND_METRIC: {
        const struct msg_metric *r = &m->metric;
        if (!msg_source_name(r->source))
            return errf(err, "encode: %s.source %d out of range", msg_kind_name(m->kind),
                        (int)r->source);
        if (r->n_values && !r->values)
            return errf(err, "encode: values is NULL");
        for (uint32_t i = 0; i < r->n_values; i++)
            if (need_str(r->values[i].key, "values key", err))
                return -1;
        return 0;
    }
    case MSG_KIND_EMBED: {
        const struct msg_embed *e = &m->embed;
        if (!msg_split_name(e->split))
            return errf(err, "encode: EMBED.split out of range");
        uint32_t dims[2] = {e->n, e->dim};
        size_t lb = 0, eb = 0;
        return blob_bytes(&lb, 4, dims, 1, "EMBED.labels", err) ||
               blob_bytes(&eb, 4, dims, 2, "EMBED.emb", err) ||
               need_blob(e->labels, lb, "EMBED.labels", err) ||
               need_blob(e->emb, eb, "EMBED.emb", err) ? -1 : 0;
    }
    case MSG_KIND_FEATMAP: {
        const struct msg_featmap *f = &m->featmap;
        uint32_t pd[4] = {f->n, f->c, f->h, f->w};
        uint32_t fd[4] = {f->n, f->fdim, f->gh, f->gw};
        uint32_t ad[4] = {f->n, f->heads, f->gh, f->gw};
        size_t pb = 0, lb = 0, fb = 0, ab = 0;
        return blob_bytes(&pb, 1, pd, 4, "FEATMAP.pixels", err) ||
               blob_bytes(&lb, 4, pd, 1, "FEATMAP.labels", err) ||
               blob_bytes(&fb, 4, fd, 4, "FEATMAP.feats", err) ||
               blob_bytes(&ab, 4, ad, 4, "FEATMAP.attn", err) ||
               need_blob(f->pixels, pb, "FEATMAP.pixels", err) ||
               need_blob(f->labels, lb, "FEATMAP.labels", err) ||
               need_blob(f->feats, fb, "FEATMAP.feats", err) ||
               need_blob(f->attn, ab, "FEATMAP.attn", err) ? -1 : 0;
    }
    }
    return errf(err, "encode: unknown kind %d", (int)m->kind);
}

static int pack_header(msgpack_packer *pk, const struct msg *m, uint32_t fields)
{
    return msgpack_pack_map(pk, fields + 2) || put_u64(pk, "v", PROTO_VERSION) ||
           put_str(pk, "kind", msg_kind_name(m->kind));
}

static int pack_work(msgpack_packer *pk, uint64_t ticket, uint64_t step, uint32_t epoch,
                     enum msg_split split, enum msg_work work)
{
    return put_u64(pk, "ticket", ticket) || put_u64(pk, "step", step) ||
           put_u64(pk, "epoch", epoch) || put_str(pk, "split", msg_split_name(split)) ||
           put_str(pk, "work", msg_work_name(work));
}

static int pack_batch(msgpack_packer *pk, const struct msg *m)
{
    const struct msg_batch *b = &m->batch;
    if (pack_header(pk, m, 10) ||
        pack_work(pk, b->ticket, b->step, b->epoch, b->split, b->work) ||
        put_u64_array(pk, "indices", b->indices, b->n) ||
        pack_cstr(pk, "labels") || msgpack_pack_array(pk, b->n))
        return -1;
    for (uint32_t i = 0; i < b->n; i++)
        if (msgpack_pack_int32(pk, b->labels[i]))
            return -1;
    if (pack_cstr(pk, "groups") || msgpack_pack_array(pk, b->n_groups))
        return -1;
    for (uint32_t g = 0; g < b->n_groups; g++) {
        const struct msg_group *gr = &b->groups[g];
        size_t bytes = (size_t)gr->views * b->n * gr->c * gr->h * gr->w;
        if (msgpack_pack_map(pk, 5) || put_u64(pk, "views", gr->views) ||
            put_u64(pk, "c", gr->c) || put_u64(pk, "h", gr->h) || put_u64(pk, "w", gr->w) ||
            put_bin(pk, "pixels", gr->pixels, bytes))
            return -1;
    }
    if (pack_cstr(pk, "failures") || msgpack_pack_array(pk, b->n_failures))
        return -1;
    for (uint32_t i = 0; i < b->n_failures; i++) {
        const struct msg_failure *f = &b->failures[i];
        if (msgpack_pack_map(pk, 4) || put_u64(pk, "index", f->index) ||
            put_str(pk, "path", f->path) || put_str(pk, "reason", f->reason) ||
            put_str(pk, "class", msg_fail_class_name(f->fail_class)))
            return -1;
    }
    return put_f64(pk, "decode_ms", b->decode_ms);
}

static int pack_metric(msgpack_packer *pk, const struct msg *m)
{
    const struct msg_metric *r = &m->metric;
    if (pack_header(pk, m, 5) || put_f64(pk, "time", r->time) ||
        put_u64(pk, "step", r->step) || put_u64(pk, "epoch", r->epoch) ||
        put_str(pk, "source", msg_source_name(r->source)) ||
        pack_cstr(pk, "values") || msgpack_pack_map(pk, r->n_values))
        return -1;
    for (uint32_t i = 0; i < r->n_values; i++)
        if (pack_cstr(pk, r->values[i].key) || msgpack_pack_double(pk, r->values[i].value))
            return -1;
    return 0;
}

static int pack_hello(msgpack_packer *pk, const struct msg *m)
{
    const struct msg_hello *h = &m->hello;
    if (pack_header(pk, m, h->eval_view ? 7 : 6) ||
        put_str(pk, "role", msg_role_name(h->role)) || put_str(pk, "name", h->name) ||
        put_str(pk, "software", h->software) || put_u64(pk, "pid", h->pid) ||
        put_u64(pk, "credit", h->credit) ||
        (h->eval_view && put_bool(pk, "eval_view", true)) || pack_cstr(pk, "dataset"))
        return -1;
    if (!h->has_dataset)
        return msgpack_pack_nil(pk);
    const struct msg_dataset *d = &h->dataset;
    return msgpack_pack_map(pk, d->held ? 5 : 4) ||
           put_u64(pk, "fingerprint", d->fingerprint) ||
           put_u64(pk, "n_train", d->n_train) || put_u64(pk, "n_val", d->n_val) ||
           put_str_array(pk, "classes", d->classes, d->n_classes) ||
           (d->held && put_bin(pk, "held", d->held, (size_t)((d->n_train + d->n_val + 7) / 8)));
}

static int pack_message(msgpack_packer *pk, const struct msg *m)
{
    switch (m->kind) {
    case MSG_KIND_HELLO: return pack_hello(pk, m);
    case MSG_KIND_WELCOME: {
        const struct msg_welcome *w = &m->welcome;
        return pack_header(pk, m, w->serve ? 6 : 5) || put_str(pk, "run", w->run) ||
               put_str(pk, "broadcast", w->broadcast) || put_str(pk, "config", w->config) ||
               put_u64(pk, "heartbeat_ms", w->heartbeat_ms) ||
               put_u64(pk, "client_id", w->client_id) ||
               (w->serve && put_str(pk, "serve", w->serve));
    }
    case MSG_KIND_REFUSE:
        return pack_header(pk, m, 1) || put_str(pk, "reason", m->refuse.reason);
    case MSG_KIND_BYE:
        return pack_header(pk, m, 1) || put_str(pk, "reason", m->bye.reason);
    case MSG_KIND_HISTORY: {
        const struct msg_history *h = &m->history;
        return pack_header(pk, m, 3) || put_u64(pk, "start", h->start) ||
               put_str_array(pk, "lines", h->lines, h->n_lines) || put_bool(pk, "done", h->done);
    }
    case MSG_KIND_TICKET: {
        const struct msg_ticket *t = &m->ticket;
        return pack_header(pk, m, t->eval_view ? 8 : 7) ||
               pack_work(pk, t->ticket, t->step, t->epoch, t->split, t->work) ||
               put_u64(pk, "seed", t->seed) ||
               (t->eval_view && put_bool(pk, "eval_view", true)) ||
               put_u64_array(pk, "indices", t->indices, t->n);
    }
    case MSG_KIND_BATCH: return pack_batch(pk, m);
    case MSG_KIND_RETURN:
        return pack_header(pk, m, 1) || put_u64_array(pk, "tickets", m->ret.tickets, m->ret.n);
    case MSG_KIND_HEARTBEAT:
        return pack_header(pk, m, 2) || put_f64(pk, "time", m->heartbeat.time) ||
               put_u64(pk, "held", m->heartbeat.held);
    case MSG_KIND_RESULT:
    case MSG_KIND_METRIC: return pack_metric(pk, m);
    case MSG_KIND_EMBED: {
        const struct msg_embed *e = &m->embed;
        return pack_header(pk, m, 10) || put_u64(pk, "snapshot", e->snapshot) ||
               put_u64(pk, "step", e->step) || put_u64(pk, "seq", e->seq) ||
               put_str(pk, "split", msg_split_name(e->split)) || put_bool(pk, "end", e->end) ||
               put_u64(pk, "chunks", e->chunks) || put_u64(pk, "n", e->n) ||
               put_u64(pk, "dim", e->dim) ||
               put_bin(pk, "labels", e->labels, (size_t)e->n * 4) ||
               put_bin(pk, "emb", e->emb, (size_t)e->n * e->dim * 4);
    }
    case MSG_KIND_FEATMAP: {
        const struct msg_featmap *f = &m->featmap;
        size_t grid = (size_t)f->n * f->gh * f->gw;
        if (pack_header(pk, m, 14) || put_u64(pk, "snapshot", f->snapshot) ||
            put_u64(pk, "step", f->step) || put_u64(pk, "n", f->n) ||
            put_u64(pk, "c", f->c) || put_u64(pk, "h", f->h) || put_u64(pk, "w", f->w) ||
            put_bin(pk, "pixels", f->pixels, (size_t)f->n * f->c * f->h * f->w) ||
            put_bin(pk, "labels", f->labels, (size_t)f->n * 4) ||
            put_u64(pk, "fdim", f->fdim) || put_u64(pk, "gh", f->gh) ||
            put_u64(pk, "gw", f->gw) || put_bin(pk, "feats", f->feats, grid * f->fdim * 4) ||
            put_u64(pk, "heads", f->heads) || pack_cstr(pk, "attn"))
            return -1;
        return f->heads ? msgpack_pack_bin(pk, grid * f->heads * 4) ||
                          msgpack_pack_bin_body(pk, f->attn, grid * f->heads * 4)
                        : msgpack_pack_nil(pk);
    }
    }
    return -1;
}

int msg_encode(const struct msg *m, msgpack_sbuffer *out, char *err)
{
    if (encode_check(m, err) < 0)
        return -1;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    PACK(pack_message(&pk, m));
    return 0;
fail:
    return errf(err, "encode %s: msgpack write failed (out of memory?)",
                msg_kind_name(m->kind));
}
