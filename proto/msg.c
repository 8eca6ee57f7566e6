/*
 * msg.c: the protocol's small shared pieces: on-wire names of kinds and
 * enums, the arena decoded strings and arrays live in, little-endian blob
 * access, and the BATCH-vs-TICKET cross-check. No encoding or parsing here.
 */
#include "msg.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const kind_names[] = {
    [MSG_KIND_HELLO] = "HELLO",     [MSG_KIND_WELCOME] = "WELCOME", [MSG_KIND_REFUSE] = "REFUSE",
    [MSG_KIND_HISTORY] = "HISTORY", [MSG_KIND_TICKET] = "TICKET",   [MSG_KIND_BATCH] = "BATCH",
    [MSG_KIND_RETURN] = "RETURN",   [MSG_KIND_HEARTBEAT] = "HEARTBEAT",
    [MSG_KIND_RESULT] = "RESULT",   [MSG_KIND_BYE] = "BYE",         [MSG_KIND_EMBED] = "EMBED",
    [MSG_KIND_FEATMAP] = "FEATMAP", [MSG_KIND_METRIC] = "METRIC",
};
static const char *const role_names[] = {"loader", "evaluator", "monitor"};
static const char *const split_names[] = {"train", "val"};
static const char *const work_names[] = {"train", "eval"};
static const char *const fail_class_names[] = {"decode", "env"};
static const char *const source_names[] = {"train", "eval", "knn", "linear",
                                           "segmap", "system"};

#define NAME_OF(table, i) \
    ((unsigned)(i) < sizeof(table) / sizeof(table[0]) ? table[(unsigned)(i)] : NULL)

const char *msg_kind_name(enum msg_kind k) { return NAME_OF(kind_names, k); }
const char *msg_role_name(enum msg_role r) { return NAME_OF(role_names, r); }
const char *msg_split_name(enum msg_split s) { return NAME_OF(split_names, s); }
const char *msg_work_name(enum msg_work w) { return NAME_OF(work_names, w); }
const char *msg_fail_class_name(enum msg_fail_class c)
{
    return NAME_OF(fail_class_names, c);
}
const char *msg_source_name(enum msg_source s) { return NAME_OF(source_names, s); }

/* ---- arena ------------------------------------------------------------ */

struct msg_arena_block {
    struct msg_arena_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

#define ARENA_MIN_BLOCK 4096

void msg_arena_init(struct msg_arena *a)
{
    a->head = NULL;
    a->total = 0;
}

void msg_arena_free(struct msg_arena *a)
{
    struct msg_arena_block *b = a->head;
    while (b) {
        struct msg_arena_block *next = b->next;
        free(b);
        b = next;
    }
    msg_arena_init(a);
}

static struct msg_arena_block *arena_block_new(size_t cap)
{
    struct msg_arena_block *b = xmalloc(sizeof *b + cap);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

void msg_arena_reset(struct msg_arena *a)
{
    if (a->head && a->head->next) {
        size_t total = a->total;
        msg_arena_free(a);
        a->head = arena_block_new(total);
        a->total = total;
    }
    if (a->head)
        a->head->used = 0;
}

void *msg_arena_alloc(struct msg_arena *a, size_t n)
{
    size_t need = (n + 7) & ~(size_t)7;
    CHECK(need >= n);
    struct msg_arena_block *b = a->head;
    if (!b || b->cap - b->used < need) {
        size_t cap = a->total > ARENA_MIN_BLOCK ? a->total : ARENA_MIN_BLOCK;
        if (cap < need)
            cap = need;
        b = arena_block_new(cap);
        b->next = a->head;
        a->head = b;
        a->total += cap;
    }
    void *p = b->data + b->used;
    b->used += need;
    return p;
}

/* ---- little-endian blobs ------------------------------------------------ */

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void store_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

void msg_blob_read_f32(float *dst, const void *blob, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n)
        memcpy(dst, blob, n * sizeof(float));
#else
    const unsigned char *p = blob;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = load_le32(p + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
#endif
}

void msg_blob_read_i32(int32_t *dst, const void *blob, size_t n)
{
    const unsigned char *p = blob;
    for (size_t i = 0; i < n; i++)
        dst[i] = (int32_t)load_le32(p + 4 * i);
}

void msg_blob_write_f32(void *dst, const float *src, size_t n)
{
    unsigned char *p = dst;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        store_le32(p + 4 * i, u);
    }
}

void msg_blob_write_i32(void *dst, const int32_t *src, size_t n)
{
    unsigned char *p = dst;
    for (size_t i = 0; i < n; i++)
        store_le32(p + 4 * i, (uint32_t)src[i]);
}

/* ---- BATCH vs TICKET ---------------------------------------------------- */

/* Position of idx in the ticket, or -1. Tickets hold at most max_samples
 * indices (tens to a few hundred), so a linear scan is fine. */
static long ticket_position(const struct msg_ticket *t, uint64_t idx)
{
    for (uint32_t i = 0; i < t->n; i++)
        if (t->indices[i] == idx)
            return (long)i;
    return -1;
}

static int check_answer(const struct msg_batch *b, const struct msg_ticket *t,
                        bool part, char *err)
{
    if (b->ticket != t->ticket || b->step != t->step || b->epoch != t->epoch ||
        b->split != t->split || b->work != t->work)
        return errf(err, "BATCH for ticket %llu does not match its ticket's "
                    "step/epoch/split/kind", (unsigned long long)b->ticket);
    uint64_t answered = (uint64_t)b->n + b->n_failures;
    if (part ? answered == 0 || answered > t->n : answered != t->n)
        return errf(err, "BATCH for ticket %llu accounts for %u samples + %u "
                    "failures, ticket has %u%s", (unsigned long long)b->ticket,
                    b->n, b->n_failures, t->n, part ? " (and an answer must have one)" : "");
    unsigned char *seen = xcalloc(t->n ? t->n : 1, 1);
    int rc = -1;
    long last = -1;
    for (uint32_t i = 0; i < b->n; i++) {
        long pos = ticket_position(t, b->indices[i]);
        if (pos < 0) {
            errf(err, "BATCH index %llu is not in ticket %llu",
                 (unsigned long long)b->indices[i], (unsigned long long)t->ticket);
            goto cleanup;
        }
        if (pos <= last) {
            errf(err, "BATCH indices are not in ticket order (index %llu)",
                 (unsigned long long)b->indices[i]);
            goto cleanup;
        }
        last = pos;
        seen[pos] = 1;
    }
    for (uint32_t i = 0; i < b->n_failures; i++) {
        long pos = ticket_position(t, b->failures[i].index);
        if (pos < 0 || seen[pos]) {
            errf(err, "BATCH failure index %llu is %s",
                 (unsigned long long)b->failures[i].index,
                 pos < 0 ? "not in the ticket" : "reported twice");
            goto cleanup;
        }
        seen[pos] = 1;
    }
    rc = 0;
cleanup:
    free(seen);
    return rc;
}

int msg_batch_check_ticket(const struct msg_batch *b, const struct msg_ticket *t,
                           char *err)
{
    return check_answer(b, t, false, err);
}

int msg_batch_check_part(const struct msg_batch *b, const struct msg_ticket *t,
                         char *err)
{
    return check_answer(b, t, true, err);
}
