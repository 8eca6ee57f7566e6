/*
 * monitor_history.c: the metrics store of lejepa-monitor (monitor_history.h):
 * parsing metrics.jsonl lines, the dedupe set and one growing point array
 * per value name. No drawing and no sockets here.
 */
#include "monitor_history.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

#define MONITOR_JSON_DEPTH 8        /* a flat object, maybe a `values` map */
#define MONITOR_KEYS_INITIAL 1024   /* dedupe slots; doubled at half load */
#define MONITOR_SOURCE_MAX 16       /* bytes of a source name in the key */

/* One record's identity in the dedupe set; used = false marks a free slot. */
struct monitor_key {
    bool used;
    char source[MONITOR_SOURCE_MAX];
    uint64_t step;
    double time;
};

void monitor_history_init(struct monitor_history *h)
{
    memset(h, 0, sizeof *h);
}

void monitor_history_free(struct monitor_history *h)
{
    for (size_t i = 0; i < h->n_series; i++)
        free(h->series[i].pts);
    free(h->series);
    free(h->keys);
    memset(h, 0, sizeof *h);
}

void monitor_history_reset(struct monitor_history *h)
{
    uint64_t version = h->version;
    monitor_store_fn on_store = h->on_store;
    void *ctx = h->store_ctx;
    monitor_history_free(h);
    h->version = version + 1;
    h->on_store = on_store;
    h->store_ctx = ctx;
}

/* FNV-1a over the source name and the step: the time is compared with a
 * tolerance, so it cannot be part of the hash. */
static uint64_t key_hash(const char *source, uint64_t step)
{
    uint64_t x = 1469598103934665603ull;
    for (const char *p = source; *p; p++)
        x = (x ^ (uint8_t)*p) * 1099511628211ull;
    for (int i = 0; i < 8; i++)
        x = (x ^ ((step >> (8 * i)) & 0xff)) * 1099511628211ull;
    return x;
}

static void keys_insert(struct monitor_key *slots, size_t cap, const struct monitor_key *k)
{
    size_t i = key_hash(k->source, k->step) & (cap - 1);
    while (slots[i].used)
        i = (i + 1) & (cap - 1);
    slots[i] = *k;
}

static void keys_grow(struct monitor_history *h)
{
    size_t cap = h->cap_keys ? 2 * h->cap_keys : MONITOR_KEYS_INITIAL;
    struct monitor_key *slots = xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < h->cap_keys; i++)
        if (h->keys[i].used)
            keys_insert(slots, cap, &h->keys[i]);
    free(h->keys);
    h->keys = slots;
    h->cap_keys = cap;
}

/* Adds the record's key; returns false when an equal key was there. */
static bool keys_add(struct monitor_history *h, const struct monitor_record *r)
{
    struct monitor_key k = {.used = true, .step = r->step, .time = r->time};
    snprintf(k.source, sizeof k.source, "%s", r->source ? r->source : "");
    if (2 * (h->n_keys + 1) > h->cap_keys)
        keys_grow(h);
    size_t i = key_hash(k.source, k.step) & (h->cap_keys - 1);
    for (; h->keys[i].used; i = (i + 1) & (h->cap_keys - 1)) {
        const struct monitor_key *o = &h->keys[i];
        if (o->step == k.step && strcmp(o->source, k.source) == 0 &&
            fabs(o->time - k.time) <= MONITOR_DEDUPE_TIME_TOL)
            return false;
    }
    h->keys[i] = k;
    h->n_keys++;
    return true;
}

static struct monitor_series *series_get(struct monitor_history *h, const char *name)
{
    for (size_t i = 0; i < h->n_series; i++)
        if (strcmp(h->series[i].name, name) == 0)
            return &h->series[i];
    if (strlen(name) >= MONITOR_NAME_MAX || h->n_series >= MONITOR_MAX_SERIES) {
        h->dropped_names++;
        return NULL;
    }
    h->series = xrealloc(h->series, (h->n_series + 1) * sizeof *h->series);
    struct monitor_series *s = &h->series[h->n_series++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

static void series_push(struct monitor_series *s, const struct monitor_record *r,
                        double v)
{
    if (!isfinite(v)) {
        s->nonfinite++;
        return;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->pts = xrealloc(s->pts, s->cap * sizeof *s->pts);
    }
    s->pts[s->n++] = (struct monitor_point){
        .step = (double)r->step, .time = r->time, .value = v};
    if (!s->has_last || r->time >= s->last_time) {
        s->has_last = true;
        s->last_value = v;
        s->last_step = (double)r->step;
        s->last_time = r->time;
    }
}

int monitor_history_add(struct monitor_history *h, const struct monitor_record *r)
{
    if (!keys_add(h, r)) {
        h->duplicates++;
        return 0;
    }
    for (size_t i = 0; i < r->n; i++) {
        struct monitor_series *s = series_get(h, r->keys[i]);
        if (s)
            series_push(s, r, r->values[i]);
    }
    if (!h->has_records || r->time < h->t_first)
        h->t_first = r->time;
    if (!h->has_records || r->time > h->t_last)
        h->t_last = r->time;
    if (!h->has_records || r->step >= h->last_step) {
        h->last_step = r->step;
        h->last_epoch = r->epoch;
    }
    h->has_records = true;
    h->records++;
    h->version++;
    if (h->on_store)
        h->on_store(h->store_ctx, r);
    return 1;
}

/* Copies a line, replacing bare NaN, Infinity and -Infinity outside strings
 * (what Python's json module writes) by null. out has room for 2 * len + 1. */
static size_t sanitize_nonfinite(const char *in, size_t len, char *out)
{
    static const char *const words[] = {"-Infinity", "Infinity", "NaN"};
    size_t o = 0;
    bool in_str = false;
    for (size_t i = 0; i < len;) {
        char c = in[i];
        if (in_str) {
            out[o++] = c;
            if (c == '\\' && i + 1 < len)
                out[o++] = in[++i];
            else if (c == '"')
                in_str = false;
            i++;
            continue;
        }
        if (c == '"')
            in_str = true;
        bool replaced = false;
        for (size_t w = 0; w < sizeof words / sizeof *words && !replaced; w++) {
            size_t wl = strlen(words[w]);
            if (len - i >= wl && memcmp(in + i, words[w], wl) == 0) {
                memcpy(out + o, "null", 4);
                o += 4;
                i += wl;
                replaced = true;
            }
        }
        if (!replaced)
            out[o++] = in[i++];
    }
    out[o] = '\0';
    return o;
}

/* Values of one object (the line, or its `values` member) into the arrays;
 * returns the new count. */
static size_t collect_values(const struct json *obj, const char **keys, double *vals,
                             size_t n)
{
    for (const struct json *m = obj->child; m; m = m->next) {
        if (strcmp(m->key, "time") == 0 || strcmp(m->key, "step") == 0 ||
            strcmp(m->key, "epoch") == 0 || strcmp(m->key, "source") == 0)
            continue;
        if (m->type == JSON_OBJECT && strcmp(m->key, "values") == 0 && obj->key == NULL) {
            n = collect_values(m, keys, vals, n);
            continue;
        }
        if (n >= MONITOR_MAX_VALUES)
            break;
        if (m->type == JSON_NUMBER) {
            keys[n] = m->key;
            vals[n++] = m->number;
        } else if (m->type == JSON_NULL) {
            keys[n] = m->key;
            vals[n++] = NAN;
        }
    }
    return n;
}

static int parse_record(struct monitor_history *h, const struct json *root, char *err)
{
    if (root->type != JSON_OBJECT)
        return errf(err, "not a JSON object");
    const struct json *t = json_get(root, "time"), *st = json_get(root, "step");
    const struct json *ep = json_get(root, "epoch"), *src = json_get(root, "source");
    if (!t || t->type != JSON_NUMBER || !isfinite(t->number))
        return errf(err, "missing or non-numeric \"time\"");
    uint64_t step, epoch = 0;
    if (!st || json_get_u64(st, &step) < 0)
        return errf(err, "missing or bad \"step\" (a non-negative integer)");
    if (ep && ep->type == JSON_NUMBER && json_get_u64(ep, &epoch) < 0)
        return errf(err, "bad \"epoch\" (a non-negative integer)");
    if (epoch > UINT32_MAX)
        epoch = UINT32_MAX;
    const char *keys[MONITOR_MAX_VALUES];
    double vals[MONITOR_MAX_VALUES];
    struct monitor_record r = {
        .time = t->number,
        .step = step,
        .epoch = (uint32_t)epoch,
        .source = src && src->type == JSON_STRING ? src->string : "",
        .keys = keys,
        .values = vals,
    };
    r.n = collect_values(root, keys, vals, 0);
    return monitor_history_add(h, &r);
}

int monitor_history_add_line(struct monitor_history *h, const char *line, size_t len,
                             char *err)
{
    char perr[ERR_LEN];
    struct json *root = json_parse(line, len, MONITOR_JSON_DEPTH, perr);
    if (!root) {
        char *clean = xmalloc(2 * len + 1);
        size_t n = sanitize_nonfinite(line, len, clean);
        root = json_parse(clean, n, MONITOR_JSON_DEPTH, perr);
        free(clean);
    }
    int rc;
    if (!root)
        rc = errf(err, "%s", perr);
    else
        rc = parse_record(h, root, err);
    json_free(root);
    if (rc < 0)
        h->bad_lines++;
    return rc;
}

long monitor_history_load_file(struct monitor_history *h, const char *path, char *err)
{
    size_t len;
    char *text = util_read_file(path, &len, err);
    if (!text)
        return -1;
    long stored = 0;
    bool first_bad = true;
    size_t lineno = 0;
    for (char *p = text, *end = text + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        size_t k = n;
        while (k > 0 && (p[k - 1] == '\r' || p[k - 1] == ' ' || p[k - 1] == '\t'))
            k--;
        if (k > 0) {
            char lerr[ERR_LEN];
            int rc = monitor_history_add_line(h, p, k, lerr);
            if (rc > 0)
                stored++;
            if (rc < 0 && first_bad) {
                errf(err, "%s:%zu: %s", path, lineno, lerr);
                first_bad = false;
            }
        }
        p += n + 1;
    }
    free(text);
    if (first_bad && err)
        err[0] = '\0';
    return stored;
}

const struct monitor_series *monitor_history_find(const struct monitor_history *h,
                                                  const char *name)
{
    for (size_t i = 0; i < h->n_series; i++)
        if (strcmp(h->series[i].name, name) == 0)
            return &h->series[i];
    return NULL;
}
