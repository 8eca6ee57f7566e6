/*
 * msg_decode.c: bytes -> struct msg, validating everything before use
 * (proto/PROTOCOL.md, "What the decoder rejects"). Order: size limit, the
 * raw-bytes pre-pass (msg_precheck.c), msgpack-c's parser, then per field:
 * presence, type, range, limits, shapes against blob sizes. Unknown fields are
 * ignored (forward compatibility). msgpack-c's str/bin objects point into the
 * input (it copies nothing), so blobs stay zero-copy; strings and small
 * arrays are copied into the caller's arena.
 */
#include "msg.h"

#include <math.h>
#include <inttypes.h>
#include <string.h>

#include "util.h"

struct dec {
    const struct msg_limits *lim;
    struct msg_arena *a;
    const char *where;      /* kind name or sub-map path, for messages */
    char *err;
};

static const char *type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "negative int";
    case MSGPACK_OBJECT_FLOAT32: return "float32";
    case MSGPACK_OBJECT_FLOAT64: return "float64";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    }
    return "?";
}

/* At most 64 bytes of a str object, for messages; "" when empty (msgpack-c
 * may leave ptr NULL then). Use with "%.*s", SHOWN_LEN(o), shown(o). */
#define SHOWN_LEN(o) ((int)((o)->via.str.size > 64 ? 64 : (o)->via.str.size))
static const char *shown(const msgpack_object *o)
{
    return o->via.str.size ? o->via.str.ptr : "";
}

static int key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* Every map we read: bounded size, str keys, no duplicates (a duplicate
 * would let two readers of one message see different values). */
static int map_check(const struct dec *d, const msgpack_object *o, size_t max)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return errf(d->err, "%s must be a map, got %s", d->where, type_name(o->type));
    const msgpack_object_map *m = &o->via.map;
    if (m->size > max)
        return errf(d->err, "%s has %u fields, limit %zu", d->where, m->size, max);
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return errf(d->err, "%s: map key must be str, got %s", d->where,
                        type_name(k->type));
        for (uint32_t j = 0; j < i; j++) {
            const msgpack_object *p = &m->ptr[j].key;
            if (p->via.str.size == k->via.str.size &&
                (k->via.str.size == 0 ||
                 memcmp(p->via.str.ptr, k->via.str.ptr, k->via.str.size) == 0))
                return errf(d->err, "%s: duplicate key '%.*s'", d->where,
                            SHOWN_LEN(k), shown(k));
        }
    }
    return 0;
}

static const msgpack_object *field(const struct dec *d, const msgpack_object *map,
                                   const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    errf(d->err, "%s: missing field '%s'", d->where, key);
    return NULL;
}

static int type_error(const struct dec *d, const char *key, const char *want,
                      const msgpack_object *o)
{
    return errf(d->err, "%s.%s must be %s, got %s", d->where, key, want,
                type_name(o->type));
}

static int get_uint(const struct dec *d, const msgpack_object *map, const char *key,
                    uint64_t max, uint64_t *out)
{
    const msgpack_object *o = field(d, map, key);
    if (!o)
        return -1;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return type_error(d, key, "uint", o);
    if (o->via.u64 > max)
        return errf(d->err, "%s.%s = %llu exceeds the limit %llu", d->where, key,
                    (unsigned long long)o->via.u64, (unsigned long long)max);
    *out = o->via.u64;
    return 0;
}

static int get_u32(const struct dec *d, const msgpack_object *map, const char *key,
                   uint64_t max, uint32_t *out)
{
    uint64_t v;
    if (get_uint(d, map, key, max < UINT32_MAX ? max : UINT32_MAX, &v) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* Times and durations: finite numbers (metric values may be NaN/Inf). */
static int get_f64(const struct dec *d, const msgpack_object *map, const char *key,
                   double *out)
{
    const msgpack_object *o = field(d, map, key);
    if (!o)
        return -1;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; break;
    default: return type_error(d, key, "float64", o);
    }
    if (!isfinite(*out))
        return errf(d->err, "%s.%s must be finite", d->where, key);
    return 0;
}

static int get_bool(const struct dec *d, const msgpack_object *map, const char *key,
                    bool *out)
{
    const msgpack_object *o = field(d, map, key);
    if (!o)
        return -1;
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return type_error(d, key, "bool", o);
    *out = o->via.boolean;
    return 0;
}

/* An optional bool: *out false when the key is absent or nil. */
static int get_opt_bool(const struct dec *d, const msgpack_object *map, const char *key,
                        bool *out)
{
    *out = false;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *o = &map->via.map.ptr[i].val;
        if (key_is(&map->via.map.ptr[i].key, key) && o->type != MSGPACK_OBJECT_NIL)
            return get_bool(d, map, key, out);
    }
    return 0;
}

/* Copies a str object into the arena, NUL-terminated; rejects NUL bytes. */
static int str_copy(const struct dec *d, const msgpack_object *o, const char *key,
                    size_t max, const char **out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return type_error(d, key, "str", o);
    size_t n = o->via.str.size;
    if (n > max)
        return errf(d->err, "%s.%s: string of %zu bytes exceeds the limit %zu",
                    d->where, key, n, max);
    if (n && memchr(o->via.str.ptr, '\0', n))
        return errf(d->err, "%s.%s contains a NUL byte", d->where, key);
    char *s = msg_arena_alloc(d->a, n + 1);
    if (n)
        memcpy(s, o->via.str.ptr, n);
    s[n] = '\0';
    *out = s;
    return 0;
}

static int get_str(const struct dec *d, const msgpack_object *map, const char *key,
                   size_t max, const char **out)
{
    const msgpack_object *o = field(d, map, key);
    return o ? str_copy(d, o, key, max, out) : -1;
}

/* An optional string: *out NULL when the key is absent or nil. */
static int get_opt_str(const struct dec *d, const msgpack_object *map, const char *key,
                       size_t max, const char **out)
{
    *out = NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *o = &map->via.map.ptr[i].val;
        if (key_is(&map->via.map.ptr[i].key, key) && o->type != MSGPACK_OBJECT_NIL)
            return str_copy(d, o, key, max, out);
    }
    return 0;
}

static int get_enum(const struct dec *d, const msgpack_object *map, const char *key,
                    const char *(*name_of)(int), int *out)
{
    const msgpack_object *o = field(d, map, key);
    if (!o)
        return -1;
    if (o->type != MSGPACK_OBJECT_STR)
        return type_error(d, key, "str", o);
    for (int i = 0; name_of(i); i++)
        if (key_is(o, name_of(i))) {
            *out = i;
            return 0;
        }
    return errf(d->err, "%s.%s: unknown value '%.*s'", d->where, key, SHOWN_LEN(o),
                shown(o));
}

static const char *role_of(int i) { return msg_role_name((enum msg_role)i); }
static const char *split_of(int i) { return msg_split_name((enum msg_split)i); }
static const char *work_of(int i) { return msg_work_name((enum msg_work)i); }
static const char *fail_class_of(int i)
{
    return msg_fail_class_name((enum msg_fail_class)i);
}

/* BATCH.failures[].class: optional, so that loaders built before it keep
 * working; their failures meant "the file cannot be decoded" (DECODE). */
static int get_fail_class(const struct dec *d, const msgpack_object *map,
                          enum msg_fail_class *out)
{
    *out = MSG_FAIL_DECODE;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, "class")) {
            int c = MSG_FAIL_DECODE;
            if (get_enum(d, map, "class", fail_class_of, &c) < 0)
                return -1;
            *out = (enum msg_fail_class)c;
            break;   /* map_check refused duplicate keys */
        }
    return 0;
}
static const char *source_of(int i) { return msg_source_name((enum msg_source)i); }

/* A bin of exactly `want` bytes (computed by the caller, overflow-checked). */
static int get_bin(const struct dec *d, const msgpack_object *map, const char *key,
                   size_t want, const void **out)
{
    const msgpack_object *o = field(d, map, key);
    if (!o)
        return -1;
    if (o->type != MSGPACK_OBJECT_BIN)
        return type_error(d, key, "bin", o);
    if (o->via.bin.size != want)
        return errf(d->err, "%s.%s has %u bytes, its shape says %zu", d->where, key,
                    o->via.bin.size, want);
    *out = o->via.bin.ptr;
    return 0;
}

static int get_array(const struct dec *d, const msgpack_object *map, const char *key,
                     size_t min, size_t max, const msgpack_object_array **out)
{
    const msgpack_object *o = field(d, map, key);
    if (!o)
        return -1;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return type_error(d, key, "array", o);
    if (o->via.array.size < min || o->via.array.size > max)
        return errf(d->err, "%s.%s has %u entries, allowed %zu..%zu", d->where, key,
                    o->via.array.size, min, max);
    *out = &o->via.array;
    return 0;
}

static int get_u64_array(const struct dec *d, const msgpack_object *map, const char *key,
                         size_t min, size_t max, uint32_t *n, const uint64_t **out)
{
    const msgpack_object_array *arr;
    if (get_array(d, map, key, min, max, &arr) < 0)
        return -1;
    uint64_t *v = msg_arena_alloc(d->a, (size_t)arr->size * sizeof *v);
    for (uint32_t i = 0; i < arr->size; i++) {
        if (arr->ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return errf(d->err, "%s.%s[%u] must be uint, got %s", d->where, key, i,
                        type_name(arr->ptr[i].type));
        v[i] = arr->ptr[i].via.u64;
    }
    *n = arr->size;
    *out = v;
    return 0;
}

static int get_str_array(const struct dec *d, const msgpack_object *map, const char *key,
                         size_t max_count, size_t max_len, uint32_t *n,
                         const char *const **out)
{
    const msgpack_object_array *arr;
    if (get_array(d, map, key, 0, max_count, &arr) < 0)
        return -1;
    const char **v = msg_arena_alloc(d->a, (size_t)arr->size * sizeof *v);
    for (uint32_t i = 0; i < arr->size; i++)
        if (str_copy(d, &arr->ptr[i], key, max_len, &v[i]) < 0)
            return -1;
    *n = arr->size;
    *out = v;
    return 0;
}

/* Product of the dims times elem, or SIZE_MAX on overflow (no bin is that big,
 * so the size check that follows rejects it). */
static size_t shape_bytes(size_t elem, const uint32_t *dims, int ndims)
{
    size_t n = elem;
    for (int i = 0; i < ndims; i++)
        if (__builtin_mul_overflow(n, (size_t)dims[i], &n))
            return SIZE_MAX;
    return n;
}

static int get_work(const struct dec *d, const msgpack_object *r, uint64_t *ticket,
                    uint64_t *step, uint32_t *epoch, enum msg_split *split,
                    enum msg_work *work)
{
    int s = 0, w = 0;
    if (get_uint(d, r, "ticket", UINT64_MAX, ticket) || get_uint(d, r, "step", UINT64_MAX, step) ||
        get_u32(d, r, "epoch", UINT32_MAX, epoch) || get_enum(d, r, "split", split_of, &s) ||
        get_enum(d, r, "work", work_of, &w))
        return -1;
    *split = (enum msg_split)s;
    *work = (enum msg_work)w;
    return 0;
}

static int decode_hello(struct dec *d, const msgpack_object *r, struct msg_hello *h)
{
    int role = 0;
    uint64_t pid;
    if (get_enum(d, r, "role", role_of, &role) || get_str(d, r, "name", MSG_NAME_MAX, &h->name) ||
        get_str(d, r, "software", MSG_NAME_MAX, &h->software) ||
        get_uint(d, r, "pid", UINT64_MAX, &pid) ||
        get_u32(d, r, "credit", d->lim->max_array, &h->credit) ||
        get_opt_bool(d, r, "eval_view", &h->eval_view))
        return -1;
    h->role = (enum msg_role)role;
    h->pid = pid;
    const msgpack_object *ds = field(d, r, "dataset");
    if (!ds)
        return -1;
    if (ds->type == MSGPACK_OBJECT_NIL) {
        if (h->role == MSG_ROLE_LOADER)
            return errf(d->err, "HELLO.dataset: a loader must send its dataset, got nil");
        return 0;
    }
    h->has_dataset = true;
    d->where = "HELLO.dataset";
    struct msg_dataset *s = &h->dataset;
    if (map_check(d, ds, MSG_MAX_FIELDS) ||
        get_uint(d, ds, "fingerprint", UINT64_MAX, &s->fingerprint) ||
        get_uint(d, ds, "n_train", UINT64_MAX, &s->n_train) ||
        get_uint(d, ds, "n_val", UINT64_MAX, &s->n_val) ||
        get_str_array(d, ds, "classes", d->lim->max_array, MSG_NAME_MAX, &s->n_classes,
                      &s->classes))
        return -1;
    /* held: optional (a whole copy need not send it); its size follows the
     * counts, which must then fit the message it came in */
    s->held = NULL;
    for (uint32_t i = 0; i < ds->via.map.size; i++) {
        const msgpack_object *o = &ds->via.map.ptr[i].val;
        if (!key_is(&ds->via.map.ptr[i].key, "held") || o->type == MSGPACK_OBJECT_NIL)
            continue;
        if (s->n_train > UINT64_MAX - 7 - s->n_val)
            return errf(d->err, "HELLO.dataset: n_train + n_val overflows");
        uint64_t want = (s->n_train + s->n_val + 7) / 8;
        const void *bits;
        if (want > UINT32_MAX || get_bin(d, ds, "held", (size_t)want, &bits) < 0)
            return want > UINT32_MAX
                ? errf(d->err, "HELLO.dataset.held: %" PRIu64 " bytes", want)
                : -1;
        s->held = bits;
    }
    return 0;
}

static int decode_group(struct dec *d, const msgpack_object *o, uint32_t n,
                        struct msg_group *g)
{
    if (map_check(d, o, MSG_MAX_FIELDS) ||
        get_u32(d, o, "views", d->lim->max_views, &g->views) ||
        get_u32(d, o, "c", UINT32_MAX, &g->c) || get_u32(d, o, "h", UINT32_MAX, &g->h) ||
        get_u32(d, o, "w", UINT32_MAX, &g->w))
        return -1;
    if (g->views == 0 || g->c == 0 || g->h == 0 || g->w == 0)
        return errf(d->err, "%s: views, c, h, w must be >= 1", d->where);
    uint32_t view[3] = {g->c, g->h, g->w};
    if (shape_bytes(1, view, 3) > d->lim->max_pixels)
        return errf(d->err, "%s: c*h*w = %u*%u*%u exceeds max_pixels %zu", d->where,
                    g->c, g->h, g->w, d->lim->max_pixels);
    uint32_t dims[5] = {g->views, n, g->c, g->h, g->w};
    const void *px;
    if (get_bin(d, o, "pixels", shape_bytes(1, dims, 5), &px) < 0)
        return -1;
    g->pixels = px;
    return 0;
}

static int decode_batch(struct dec *d, const msgpack_object *r, struct msg_batch *b)
{
    const msgpack_object_array *labels, *groups, *fails;
    size_t maxs = d->lim->max_samples;
    if (get_work(d, r, &b->ticket, &b->step, &b->epoch, &b->split, &b->work) ||
        get_u64_array(d, r, "indices", 0, maxs, &b->n, &b->indices) ||
        get_array(d, r, "labels", b->n, b->n, &labels) ||
        get_array(d, r, "groups", 1, d->lim->max_groups, &groups) ||
        get_array(d, r, "failures", 0, maxs, &fails) ||
        get_f64(d, r, "decode_ms", &b->decode_ms))
        return -1;
    if ((size_t)b->n + fails->size > maxs)
        return errf(d->err, "BATCH: %u samples + %u failures exceed max_samples %zu",
                    b->n, fails->size, maxs);
    int32_t *lab = msg_arena_alloc(d->a, (size_t)b->n * sizeof *lab);
    for (uint32_t i = 0; i < b->n; i++) {
        const msgpack_object *o = &labels->ptr[i];
        int64_t v;
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT32_MAX)
            v = (int64_t)o->via.u64;
        else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && o->via.i64 >= INT32_MIN)
            v = o->via.i64;
        else
            return errf(d->err, "BATCH.labels[%u] must be an int32, got %s", i,
                        type_name(o->type));
        lab[i] = (int32_t)v;
    }
    b->labels = lab;
    struct msg_group *gs = msg_arena_alloc(d->a, groups->size * sizeof *gs);
    d->where = "BATCH.groups[]";
    for (uint32_t g = 0; g < groups->size; g++)
        if (decode_group(d, &groups->ptr[g], b->n, &gs[g]) < 0)
            return -1;
    b->n_groups = groups->size;
    b->groups = gs;
    struct msg_failure *fs = msg_arena_alloc(d->a, fails->size * sizeof *fs);
    d->where = "BATCH.failures[]";
    for (uint32_t i = 0; i < fails->size; i++) {
        const msgpack_object *o = &fails->ptr[i];
        if (map_check(d, o, MSG_MAX_FIELDS) ||
            get_uint(d, o, "index", UINT64_MAX, &fs[i].index) ||
            get_str(d, o, "path", MSG_NAME_MAX, &fs[i].path) ||
            get_str(d, o, "reason", d->lim->max_str, &fs[i].reason) ||
            get_fail_class(d, o, &fs[i].fail_class))
            return -1;
    }
    b->n_failures = fails->size;
    b->failures = fs;
    return 0;
}

static int decode_metric(struct dec *d, const msgpack_object *r, struct msg_metric *m)
{
    int src = 0;
    if (get_f64(d, r, "time", &m->time) || get_uint(d, r, "step", UINT64_MAX, &m->step) ||
        get_u32(d, r, "epoch", UINT32_MAX, &m->epoch) ||
        get_enum(d, r, "source", source_of, &src))
        return -1;
    m->source = (enum msg_source)src;
    const msgpack_object *vals = field(d, r, "values");
    if (!vals)
        return -1;
    const char *kind = d->where;
    char where[32];
    snprintf(where, sizeof where, "%s.values", kind);
    d->where = where;
    if (map_check(d, vals, d->lim->max_values) < 0)
        return -1;
    uint32_t n = vals->via.map.size;
    struct msg_value *v = msg_arena_alloc(d->a, (size_t)n * sizeof *v);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &vals->via.map.ptr[i];
        if (str_copy(d, &kv->key, "key", MSG_NAME_MAX, &v[i].key) < 0)
            return -1;
        switch (kv->val.type) {
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: v[i].value = kv->val.via.f64; break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER: v[i].value = (double)kv->val.via.u64; break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: v[i].value = (double)kv->val.via.i64; break;
        default:
            return errf(d->err, "%s['%s'] must be float64, got %s", where, v[i].key,
                        type_name(kv->val.type));
        }
    }
    m->n_values = n;
    m->values = v;
    return 0;
}

static int decode_embed(struct dec *d, const msgpack_object *r, struct msg_embed *e)
{
    int split = 0;
    if (get_uint(d, r, "snapshot", UINT64_MAX, &e->snapshot) ||
        get_uint(d, r, "step", UINT64_MAX, &e->step) ||
        get_u32(d, r, "seq", UINT32_MAX, &e->seq) || get_enum(d, r, "split", split_of, &split) ||
        get_bool(d, r, "end", &e->end) || get_u32(d, r, "chunks", UINT32_MAX, &e->chunks) ||
        get_u32(d, r, "n", UINT32_MAX, &e->n) ||
        get_u32(d, r, "dim", d->lim->max_emb_dim, &e->dim))
        return -1;
    e->split = (enum msg_split)split;
    if (e->end && e->n != 0)
        return errf(d->err, "EMBED: an end marker must have n = 0, got %u", e->n);
    uint32_t dims[2] = {e->n, e->dim};
    return get_bin(d, r, "labels", shape_bytes(4, dims, 1), &e->labels) ||
           get_bin(d, r, "emb", shape_bytes(4, dims, 2), &e->emb) ? -1 : 0;
}

static int decode_featmap(struct dec *d, const msgpack_object *r, struct msg_featmap *f)
{
    if (get_uint(d, r, "snapshot", UINT64_MAX, &f->snapshot) ||
        get_uint(d, r, "step", UINT64_MAX, &f->step) || get_u32(d, r, "n", UINT32_MAX, &f->n) ||
        get_u32(d, r, "c", UINT32_MAX, &f->c) || get_u32(d, r, "h", UINT32_MAX, &f->h) ||
        get_u32(d, r, "w", UINT32_MAX, &f->w) || get_u32(d, r, "fdim", UINT32_MAX, &f->fdim) ||
        get_u32(d, r, "gh", UINT32_MAX, &f->gh) || get_u32(d, r, "gw", UINT32_MAX, &f->gw) ||
        get_u32(d, r, "heads", UINT32_MAX, &f->heads))
        return -1;
    uint32_t view[3] = {f->c, f->h, f->w};
    uint32_t fd[4] = {f->n, f->fdim, f->gh, f->gw};
    uint32_t ad[4] = {f->n, f->heads, f->gh, f->gw};
    if (shape_bytes(1, view, 3) > d->lim->max_pixels)
        return errf(d->err, "FEATMAP: c*h*w exceeds max_pixels %zu", d->lim->max_pixels);
    if (shape_bytes(1, fd, 4) > d->lim->max_feat_elems ||
        shape_bytes(1, ad, 4) > d->lim->max_feat_elems)
        return errf(d->err, "FEATMAP: n*fdim*gh*gw or n*heads*gh*gw exceeds "
                    "max_feat_elems %zu", d->lim->max_feat_elems);
    uint32_t pd[4] = {f->n, f->c, f->h, f->w};
    const void *px;
    if (get_bin(d, r, "pixels", shape_bytes(1, pd, 4), &px) ||
        get_bin(d, r, "labels", shape_bytes(4, pd, 1), &f->labels) ||
        get_bin(d, r, "feats", shape_bytes(4, fd, 4), &f->feats))
        return -1;
    f->pixels = px;
    if (f->heads == 0) {
        const msgpack_object *o = field(d, r, "attn");
        if (!o)
            return -1;
        return o->type == MSGPACK_OBJECT_NIL ? 0 : type_error(d, "attn", "nil (heads = 0)", o);
    }
    return get_bin(d, r, "attn", shape_bytes(4, ad, 4), &f->attn);
}

static int decode_body(struct dec *d, const msgpack_object *r, struct msg *m)
{
    const struct msg_limits *l = d->lim;
    switch (m->kind) {
    case MSG_KIND_HELLO: return decode_hello(d, r, &m->hello);
    case MSG_KIND_WELCOME: {
        struct msg_welcome *w = &m->welcome;
        return get_str(d, r, "run", MSG_NAME_MAX, &w->run) ||
               get_str(d, r, "broadcast", MSG_NAME_MAX, &w->broadcast) ||
               get_str(d, r, "config", l->max_str, &w->config) ||
               get_u32(d, r, "heartbeat_ms", UINT32_MAX, &w->heartbeat_ms) ||
               get_uint(d, r, "client_id", UINT64_MAX, &w->client_id) ||
               get_opt_str(d, r, "serve", MSG_NAME_MAX, &w->serve) ? -1 : 0;
    }
    case MSG_KIND_REFUSE: return get_str(d, r, "reason", l->max_str, &m->refuse.reason);
    case MSG_KIND_BYE: return get_str(d, r, "reason", l->max_str, &m->bye.reason);
    case MSG_KIND_HISTORY: {
        struct msg_history *h = &m->history;
        return get_uint(d, r, "start", UINT64_MAX, &h->start) ||
               get_str_array(d, r, "lines", l->max_array, l->max_str, &h->n_lines, &h->lines) ||
               get_bool(d, r, "done", &h->done) ? -1 : 0;
    }
    case MSG_KIND_TICKET: {
        struct msg_ticket *t = &m->ticket;
        return get_work(d, r, &t->ticket, &t->step, &t->epoch, &t->split, &t->work) ||
               get_uint(d, r, "seed", UINT64_MAX, &t->seed) ||
               get_opt_bool(d, r, "eval_view", &t->eval_view) ||
               get_u64_array(d, r, "indices", 1, l->max_samples, &t->n, &t->indices)
            ? -1
            : t->eval_view && t->work != MSG_WORK_TRAIN
            ? errf(d->err, "TICKET.eval_view needs work = train")
            : 0;
    }
    case MSG_KIND_BATCH: return decode_batch(d, r, &m->batch);
    case MSG_KIND_RETURN:
        return get_u64_array(d, r, "tickets", 0, l->max_array, &m->ret.n, &m->ret.tickets);
    case MSG_KIND_HEARTBEAT:
        return get_f64(d, r, "time", &m->heartbeat.time) ||
               get_u32(d, r, "held", UINT32_MAX, &m->heartbeat.held) ? -1 : 0;
    case MSG_KIND_RESULT:
    case MSG_KIND_METRIC: return decode_metric(d, r, &m->metric);
    case MSG_KIND_EMBED: return decode_embed(d, r, &m->embed);
    case MSG_KIND_FEATMAP: return decode_featmap(d, r, &m->featmap);
    }
    return errf(d->err, "unknown kind %d", (int)m->kind);
}

/* v and kind: checked before anything kind-specific. */
static int decode_envelope(struct dec *d, const msgpack_object *r, struct msg *m)
{
    d->where = "message";
    if (map_check(d, r, MSG_MAX_FIELDS) < 0)
        return -1;
    uint64_t v;
    if (get_uint(d, r, "v", UINT64_MAX, &v) < 0)
        return -1;
    if (v != PROTO_VERSION)
        return errf(d->err, "protocol version %llu, this program speaks version %d",
                    (unsigned long long)v, PROTO_VERSION);
    const msgpack_object *k = field(d, r, "kind");
    if (!k)
        return -1;
    if (k->type != MSGPACK_OBJECT_STR)
        return type_error(d, "kind", "str", k);
    for (int i = MSG_KIND_FIRST; i <= MSG_KIND_LAST; i++)
        if (key_is(k, msg_kind_name((enum msg_kind)i))) {
            m->kind = (enum msg_kind)i;
            d->where = msg_kind_name(m->kind);
            return 0;
        }
    return errf(d->err, "unknown kind '%.*s'", SHOWN_LEN(k), shown(k));
}

int msg_decode(struct msg *m, const void *buf, size_t len,
               const struct msg_limits *lim, struct msg_arena *a, char *err)
{
    memset(m, 0, sizeof *m);
    msg_arena_reset(a);
    if (len > lim->max_msg_bytes)
        return errf(err, "message of %zu bytes exceeds max_msg_bytes %zu", len,
                    lim->max_msg_bytes);
    if (msg_precheck(buf, len, lim->max_depth, msg_limits_elems(lim), err) < 0)
        return -1;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = -1;
    msgpack_unpack_return ur = msgpack_unpack_next(&up, buf, len, &off);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
        errf(err, "msgpack parse failed (code %d at offset %zu of %zu)", (int)ur, off, len);
        goto cleanup;
    }
    struct dec d = {.lim = lim, .a = a, .where = "message", .err = err};
    if (decode_envelope(&d, &up.data, m) < 0 || decode_body(&d, &up.data, m) < 0)
        goto cleanup;
    rc = 0;
cleanup:
    msgpack_unpacked_destroy(&up);
    if (rc < 0)
        memset(m, 0, sizeof *m);
    return rc;
}
