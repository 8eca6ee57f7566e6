/*
 * test_monitor_tb.c: the monitor's TensorBoard event files, read back by a
 * small reader written here from the format's description (TFRecord:
 * uint64 length, masked CRC-32C of it, data, masked CRC-32C of the data;
 * Event and Summary protobufs), with its own bitwise CRC-32C so a wrong
 * table in hash.c could not hide. Metric lines go through the metrics
 * store (duplicates and null values included) into the event file, and
 * `lejepa-monitor --from FILE --tensorboard DIR` writes one from a
 * metrics.jsonl.
 */
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor_history.h"
#include "monitor_tb.h"
#include "testing.h"
#include "util.h"

#define MAX_VALUES 16
#define MAX_EVENTS 16
#define OUT_CAP 65536

static const char *const lines[] = {
    "{\"time\": 1700000000.5, \"step\": 10, \"epoch\": 0, \"source\": \"train\", "
    "\"loss\": 1.25, \"inv\": 0.5, \"sigreg\": 1.5, \"lr\": 0.0005}",
    "{\"time\": 1700000100.25, \"step\": 200, \"epoch\": 1, \"source\": \"knn\", "
    "\"knn_top1\": 0.75}",
    "{\"time\": 1700000001.5, \"step\": 20, \"source\": \"train\", \"loss\": null, "
    "\"inv\": 0.25}",
    /* the first line again (history page and broadcast): stored once */
    "{\"time\": 1700000000.5, \"step\": 10, \"epoch\": 0, \"source\": \"train\", "
    "\"loss\": 1.25, \"inv\": 0.5, \"sigreg\": 1.5, \"lr\": 0.0005}",
    NULL,
};

struct tb_value {
    char tag[128];
    float value;
};

struct tb_event {
    double wall_time;
    uint64_t step;
    char file_version[32];
    struct tb_value v[MAX_VALUES];
    int n;
};

static char *tmp;
static bool quiet;      /* the damage test expects every read to fail */

static uint32_t crc32c_bitwise(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t masked(const uint8_t *p, size_t n)
{
    uint32_t c = crc32c_bitwise(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static uint64_t le(const uint8_t *p, int bytes)
{
    uint64_t x = 0;
    for (int i = bytes - 1; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

/* One protobuf field at *p: returns 0 and advances, -1 when malformed. */
struct pb {
    int field, type;
    uint64_t v;             /* varint, fixed32, fixed64 */
    const uint8_t *data;    /* length-delimited */
    size_t len;
};

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    *out = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *out |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

static int pb_next(const uint8_t **p, const uint8_t *end, struct pb *f)
{
    uint64_t key;
    if (pb_varint(p, end, &key) != 0)
        return -1;
    f->field = (int)(key >> 3);
    f->type = (int)(key & 7);
    switch (f->type) {
    case 0: return pb_varint(p, end, &f->v);
    case 1:
        if (end - *p < 8) return -1;
        f->v = le(*p, 8); *p += 8; return 0;
    case 5:
        if (end - *p < 4) return -1;
        f->v = le(*p, 4); *p += 4; return 0;
    case 2:
        if (pb_varint(p, end, &f->v) != 0 || f->v > (uint64_t)(end - *p))
            return -1;
        f->data = *p; f->len = (size_t)f->v; *p += f->len; return 0;
    default: return -1;
    }
}

static int decode_value(const uint8_t *p, const uint8_t *end, struct tb_value *v)
{
    struct pb f;
    memset(v, 0, sizeof *v);
    while (p < end) {
        if (pb_next(&p, end, &f) != 0)
            return -1;
        if (f.field == 1 && f.type == 2 && f.len < sizeof v->tag)
            memcpy(v->tag, f.data, f.len);
        else if (f.field == 2 && f.type == 5) {
            uint32_t x = (uint32_t)f.v;
            memcpy(&v->value, &x, sizeof x);
        } else
            return -1;
    }
    return 0;
}

static int decode_event(const uint8_t *p, const uint8_t *end, struct tb_event *e)
{
    struct pb f;
    memset(e, 0, sizeof *e);
    while (p < end) {
        if (pb_next(&p, end, &f) != 0)
            return -1;
        if (f.field == 1 && f.type == 1) {
            memcpy(&e->wall_time, &f.v, sizeof e->wall_time);
        } else if (f.field == 2 && f.type == 0) {
            e->step = f.v;
        } else if (f.field == 3 && f.type == 2 && f.len < sizeof e->file_version) {
            memcpy(e->file_version, f.data, f.len);
        } else if (f.field == 5 && f.type == 2) {
            const uint8_t *q = f.data, *qend = f.data + f.len;
            struct pb g;
            while (q < qend) {
                if (pb_next(&q, qend, &g) != 0 || g.field != 1 || g.type != 2 ||
                    e->n == MAX_VALUES ||
                    decode_value(g.data, g.data + g.len, &e->v[e->n++]) != 0)
                    return -1;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

/* Reads a whole event file; every framing CRC must hold. Returns the
 * number of events, or -1 (printed) on any damage. */
static int read_events(const char *path, struct tb_event *ev, int cap)
{
    size_t len;
    char err[ERR_LEN];
    uint8_t *buf = (uint8_t *)util_read_file(path, &len, err);
    if (!buf) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    int n = 0;
    size_t off = 0;
    while (off < len) {
        if (len - off < 12 || n == cap)
            goto bad;
        uint64_t dlen = le(buf + off, 8);
        if ((uint32_t)le(buf + off + 8, 4) != masked(buf + off, 8))
            goto bad;
        if (dlen > len - off - 16)
            goto bad;
        const uint8_t *data = buf + off + 12;
        if ((uint32_t)le(data + dlen, 4) != masked(data, dlen))
            goto bad;
        if (decode_event(data, data + dlen, &ev[n++]) != 0)
            goto bad;
        off += 16 + dlen;
    }
    free(buf);
    return n;
bad:
    if (!quiet)
        fprintf(stderr, "%s: damaged at byte %zu (event %d)\n", path, off, n);
    free(buf);
    return -1;
}

/* The one events.out.tfevents.* file in dir (its path into out). */
static int find_event_file(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int found = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "events.out.tfevents.", 20) == 0) {
            int k = snprintf(out, cap, "%s/%s", dir, de->d_name);
            found += k > 0 && (size_t)k < cap ? 1 : 2;
        }
    closedir(d);
    return found == 1 ? 0 : -1;
}

static const struct tb_value *find_tag(const struct tb_event *e, const char *tag)
{
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->v[i].tag, tag) == 0)
            return &e->v[i];
    return NULL;
}

/* The events the lines above must give, after the file_version event. */
static void check_events(const struct tb_event *ev, int n)
{
    CU_ASSERT_EQUAL_FATAL(n, 4);
    CU_ASSERT_STRING_EQUAL(ev[0].file_version, "brain.Event:2");
    CU_ASSERT(ev[0].wall_time > 1e9);
    CU_ASSERT_EQUAL(ev[0].n, 0);

    CU_ASSERT_EQUAL(ev[1].step, 10);
    CU_ASSERT_DOUBLE_EQUAL(ev[1].wall_time, 1700000000.5, 1e-6);
    CU_ASSERT_EQUAL(ev[1].n, 4);
    const char *tags[] = {"train/loss", "train/inv", "train/sigreg", "train/lr"};
    const float want[] = {1.25f, 0.5f, 1.5f, 0.0005f};
    for (int i = 0; i < 4; i++) {
        const struct tb_value *v = find_tag(&ev[1], tags[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        CU_ASSERT_EQUAL(v->value, want[i]);
    }
    CU_ASSERT_EQUAL(ev[2].step, 200);
    CU_ASSERT_EQUAL(ev[2].n, 1);
    const struct tb_value *knn = find_tag(&ev[2], "knn/knn_top1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(knn);
    CU_ASSERT_EQUAL(knn->value, 0.75f);
    /* a null loss is left out, the other value of the line stays */
    CU_ASSERT_EQUAL(ev[3].step, 20);
    CU_ASSERT_EQUAL(ev[3].n, 1);
    CU_ASSERT_PTR_NULL(find_tag(&ev[3], "train/loss"));
    CU_ASSERT_PTR_NOT_NULL(find_tag(&ev[3], "train/inv"));
}

static void store(void *ctx, const struct monitor_record *r)
{
    char err[ERR_LEN];
    CU_ASSERT(monitor_tb_add(ctx, r, err) == 0);
}

static void test_store_to_events(void)
{
    char dir[4200], path[4400], err[ERR_LEN];
    snprintf(dir, sizeof dir, "%s/tb-store/nested", tmp);
    struct monitor_tb tb;
    CU_ASSERT_FATAL(monitor_tb_open(&tb, dir, 1700000000.0, err) == 0);
    struct monitor_history h;
    monitor_history_init(&h);
    h.on_store = store;
    h.store_ctx = &tb;
    for (int i = 0; lines[i]; i++)
        monitor_history_add_line(&h, lines[i], strlen(lines[i]), err);
    CU_ASSERT_EQUAL(h.duplicates, 1);
    CU_ASSERT_EQUAL(monitor_tb_flush(&tb, err), 0);
    CU_ASSERT_EQUAL(tb.events, 4);
    monitor_tb_close(&tb);
    monitor_history_free(&h);
    CU_ASSERT_FATAL(find_event_file(dir, path, sizeof path) == 0);
    CU_ASSERT(strstr(path, "events.out.tfevents.1700000000.") != NULL);
    struct tb_event ev[MAX_EVENTS];
    check_events(ev, read_events(path, ev, MAX_EVENTS));
}

/* The reader is strict: one flipped byte anywhere is found. */
static void test_damage_is_seen(void)
{
    struct monitor_tb_buf ev = {0}, rec = {0};
    const char *keys[] = {"loss"};
    const double values[] = {2.0};
    struct monitor_record r = {.time = 5.0, .step = 3, .source = "train", .n = 1,
                               .keys = keys, .values = values};
    CU_ASSERT_EQUAL(monitor_tb_encode_event(&ev, r.time, &r), 1);
    monitor_tb_frame(&rec, ev.p, ev.n);
    CU_ASSERT_EQUAL(rec.n, ev.n + 16);
    char path[4200], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/one.tfevents", tmp);
    struct tb_event out[2];
    size_t flipped = 0;
    quiet = true;
    for (size_t i = 0; i <= rec.n; i++) {
        if (i < rec.n)
            rec.p[i] ^= 0x10;
        CU_ASSERT_FATAL(util_write_file_atomic(path, rec.p, rec.n, err) == 0);
        int n = read_events(path, out, 2);
        if (i < rec.n) {
            flipped += n < 0;
            rec.p[i] ^= 0x10;
        } else {
            CU_ASSERT_EQUAL(n, 1);
            CU_ASSERT_STRING_EQUAL(out[0].v[0].tag, "train/loss");
            CU_ASSERT_EQUAL(out[0].v[0].value, 2.0f);
        }
    }
    quiet = false;
    CU_ASSERT_EQUAL(flipped, rec.n);
    monitor_tb_buf_free(&ev);
    monitor_tb_buf_free(&rec);
}

static void test_monitor_from_file(void)
{
    char metrics[4200], tbdir[4200], out_dir[4200], path[4400], args[16000], err[ERR_LEN];
    snprintf(metrics, sizeof metrics, "%s/run/metrics.jsonl", tmp);
    snprintf(tbdir, sizeof tbdir, "%s/tb-cli", tmp);
    snprintf(out_dir, sizeof out_dir, "%s/run", tmp);
    CU_ASSERT_FATAL(util_mkdir_p(out_dir, err) == 0);
    FILE *f = fopen(metrics, "w");
    CU_ASSERT_FATAL(f != NULL);
    for (int i = 0; lines[i]; i++)
        fprintf(f, "%s\n", lines[i]);
    fclose(f);
    char *out = xmalloc(OUT_CAP);
    snprintf(args, sizeof args, "--from %s --tensorboard %s", metrics, tbdir);
    int rc = testing_run_program("tools/lejepa-monitor", args, out, OUT_CAP);
    if (rc != 0)
        fprintf(stderr, "lejepa-monitor:\n%s\n", out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(strstr(out, "TensorBoard: 4 events") != NULL);
    CU_ASSERT_FATAL(find_event_file(tbdir, path, sizeof path) == 0);
    struct tb_event ev[MAX_EVENTS];
    check_events(ev, read_events(path, ev, MAX_EVENTS));
    free(out);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"store_to_events", test_store_to_events},
        {"damage_is_seen", test_damage_is_seen},
        {"monitor_from_file", test_monitor_from_file},
        {NULL, NULL},
    };
    tmp = testing_tmpdir();
    int rc = testing_run("monitor_tb", cases);
    testing_rmtree(tmp);
    free(tmp);
    return rc;
}
