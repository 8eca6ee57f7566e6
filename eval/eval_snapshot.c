/*
 * eval_snapshot.c: the snapshot assembler and FEATMAP copies of
 * eval_snapshot.h. ZeroMQ keeps the order of one PUB->SUB pipe, so a lost
 * chunk shows as a seq never seen by the time the end marker arrives; a
 * broken snapshot keeps counting chunks (for the report) but stores nothing.
 * Memory: rows grow by doubling up to the assembler's byte bound.
 */
#include "eval_snapshot.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "util.h"

/* Sequence numbers above this break the snapshot (the seen map's bound). */
#define EVAL_MAX_SEQ (1u << 24)
#define EVAL_ROWS_MIN 256

void eval_snapshot_free(struct eval_snapshot *s)
{
    if (!s)
        return;
    for (int k = 0; k < 2; k++) {
        free(s->split[k].emb);
        free(s->split[k].labels);
    }
    free(s->seen);
    free(s);
}

void eval_assembler_init(struct eval_assembler *a, size_t max_bytes)
{
    memset(a, 0, sizeof *a);
    a->max_bytes = max_bytes;
}

void eval_assembler_free(struct eval_assembler *a)
{
    eval_snapshot_free(a->cur);
    a->cur = NULL;
}

static void snapshot_break(struct eval_snapshot *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void snapshot_break(struct eval_snapshot *s, const char *fmt, ...)
{
    if (s->broken)
        return;
    s->broken = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    /* nothing of it will be scored: give the memory back now */
    for (int k = 0; k < 2; k++) {
        free(s->split[k].emb);
        free(s->split[k].labels);
        memset(&s->split[k], 0, sizeof s->split[k]);
    }
}

void eval_snapshot_describe(const struct eval_snapshot *s, char *out, size_t cap)
{
    char total[32] = "?";
    if (s->ended)
        snprintf(total, sizeof total, "%u", s->chunks);
    snprintf(out, cap, "snapshot %llu at step %llu incomplete (got %u of %s chunks%s%s)",
             (unsigned long long)s->id, (unsigned long long)s->step, s->got, total,
             s->why[0] ? ": " : "", s->why);
}

/* Marks seq as seen; false for a duplicate. */
static bool mark_seen(struct eval_snapshot *s, uint32_t seq)
{
    if (seq >= s->seen_cap) {
        uint32_t cap = s->seen_cap ? s->seen_cap : 64;
        while (cap <= seq)
            cap *= 2;
        s->seen = xrealloc(s->seen, cap);
        memset(s->seen + s->seen_cap, 0, cap - s->seen_cap);
        s->seen_cap = cap;
    }
    if (s->seen[seq])
        return false;
    s->seen[seq] = 1;
    s->got++;
    return true;
}

static void store_rows(struct eval_snapshot *s, const struct msg_embed *e,
                       size_t max_bytes)
{
    if (e->n == 0)
        return;
    if (s->dim == 0)
        s->dim = e->dim;
    if (e->dim != s->dim) {
        snapshot_break(s, "chunk %u has dim %u, earlier chunks %u", e->seq, e->dim,
                       s->dim);
        return;
    }
    size_t row_bytes = (size_t)s->dim * sizeof(float) + sizeof(int32_t);
    int64_t rows = s->split[0].n + s->split[1].n + e->n;
    if ((size_t)rows > max_bytes / row_bytes) {
        snapshot_break(s, "more than %zu MiB of embeddings (--max-mb)", max_bytes >> 20);
        return;
    }
    struct eval_rows *r = &s->split[e->split == MSG_SPLIT_VAL];
    if (r->n + e->n > r->cap) {
        int64_t cap = r->cap ? r->cap : EVAL_ROWS_MIN;
        while (cap < r->n + e->n)
            cap *= 2;
        r->emb = xrealloc(r->emb, (size_t)cap * s->dim * sizeof(float));
        r->labels = xrealloc(r->labels, (size_t)cap * sizeof(int32_t));
        r->cap = cap;
    }
    int32_t *lab = r->labels + r->n;
    msg_blob_read_i32(lab, e->labels, e->n);
    for (uint32_t i = 0; i < e->n; i++)
        if (lab[i] < -1 || lab[i] >= EVAL_MAX_CLASSES) { /* -1: unlabelled */
            snapshot_break(s, "chunk %u has label %d outside [-1, %d)", e->seq, lab[i],
                           EVAL_MAX_CLASSES);
            return;
        }
    msg_blob_read_f32(r->emb + (size_t)r->n * s->dim, e->emb, (size_t)e->n * s->dim);
    r->n += e->n;
}

/* The end marker came: complete, or broken with the reason. */
static void snapshot_close(struct eval_snapshot *s)
{
    if (s->broken)
        return;
    if (s->got != s->chunks || s->seen_cap < s->chunks) {
        snapshot_break(s, s->got > s->chunks ? "chunks numbered beyond the end marker's count"
                                             : "missing chunks");
        return;
    }
    for (uint32_t i = 0; i < s->chunks; i++)
        if (!s->seen[i]) {
            snapshot_break(s, "chunk %u missing", i);
            return;
        }
    if (s->split[MSG_SPLIT_TRAIN].n == 0 || s->split[MSG_SPLIT_VAL].n == 0)
        snapshot_break(s, "no %s rows", s->split[MSG_SPLIT_TRAIN].n == 0 ? "train" : "val");
}

int eval_assembler_add(struct eval_assembler *a, const struct msg_embed *e,
                       struct eval_snapshot *closed[2])
{
    int n_closed = 0;
    if (a->cur && a->cur->id != e->snapshot) {
        snapshot_break(a->cur, "snapshot %llu started before its end marker",
                       (unsigned long long)e->snapshot);
        a->any_closed = true;
        a->last_closed = a->cur->id;
        closed[n_closed++] = a->cur;
        a->cur = NULL;
    }
    if (!a->cur) {
        if (a->any_closed && e->snapshot == a->last_closed) {
            a->ignored++;
            return n_closed;
        }
        a->cur = xcalloc(1, sizeof *a->cur);
        a->cur->id = e->snapshot;
        a->cur->step = e->step;
    }
    struct eval_snapshot *s = a->cur;
    if (e->end) {
        s->ended = true;
        s->chunks = e->chunks;
        snapshot_close(s);
        a->any_closed = true;
        a->last_closed = s->id;
        closed[n_closed++] = s;
        a->cur = NULL;
        return n_closed;
    }
    if (e->seq >= EVAL_MAX_SEQ) {
        snapshot_break(s, "chunk seq %u above %u", e->seq, EVAL_MAX_SEQ);
        s->got++;
        return n_closed;
    }
    if (!mark_seen(s, e->seq)) {
        a->ignored++;
        return n_closed;
    }
    if (!s->broken)
        store_rows(s, e, a->max_bytes);
    return n_closed;
}

struct eval_featmap *eval_featmap_copy(const struct msg_featmap *m,
                                       size_t max_bytes, char *err)
{
    if (m->c != 1 && m->c != 3) {
        errf(err, "FEATMAP of snapshot %llu has %u channels (1 or 3 expected)",
             (unsigned long long)m->snapshot, m->c);
        return NULL;
    }
    if (m->n == 0 || m->n > INT_MAX || m->h > INT_MAX || m->w > INT_MAX ||
        m->fdim == 0 || m->fdim > INT_MAX || m->gh == 0 || m->gw == 0 ||
        m->gh > INT_MAX || m->gw > INT_MAX || m->heads > INT_MAX) {
        errf(err, "FEATMAP of snapshot %llu has an empty or oversized shape",
             (unsigned long long)m->snapshot);
        return NULL;
    }
    size_t pix = (size_t)m->n * m->c * m->h * m->w;
    size_t grid = (size_t)m->n * m->gh * m->gw;
    size_t feats = grid * m->fdim, attn = grid * m->heads;
    if (pix + 4 * (feats + attn) > max_bytes) {
        errf(err, "FEATMAP of snapshot %llu is larger than --max-mb",
             (unsigned long long)m->snapshot);
        return NULL;
    }
    struct eval_featmap *f = xcalloc(1, sizeof *f);
    *f = (struct eval_featmap){
        .snapshot = m->snapshot, .step = m->step, .n = (int)m->n, .c = (int)m->c,
        .h = (int)m->h, .w = (int)m->w, .fdim = (int)m->fdim, .gh = (int)m->gh,
        .gw = (int)m->gw, .heads = (int)m->heads,
    };
    f->pixels = xmalloc(pix ? pix : 1);
    memcpy(f->pixels, m->pixels, pix);
    f->feats = xmalloc(feats * sizeof(float));
    msg_blob_read_f32(f->feats, m->feats, feats);
    if (m->heads) {
        f->attn = xmalloc(attn * sizeof(float));
        msg_blob_read_f32(f->attn, m->attn, attn);
    }
    return f;
}

void eval_featmap_free(struct eval_featmap *f)
{
    if (!f)
        return;
    free(f->pixels);
    free(f->feats);
    free(f->attn);
    free(f);
}
