/*
 * monitor_tb.c: TensorBoard event files (see monitor_tb.h). The protobuf
 * wire format needs only three things here: varints (tags, lengths, the
 * step), little-endian fixed 32/64-bit fields (float, double) and
 * length-delimited fields (strings and nested messages), whose length must
 * be known before their bytes, so nested messages are sized first.
 */
#include "monitor_tb.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "util.h"

/* Protobuf field keys: (field number << 3) | wire type. */
#define PB_VARINT 0
#define PB_FIXED64 1
#define PB_LEN 2
#define PB_FIXED32 5
#define PB_KEY(field, type) ((uint8_t)(((field) << 3) | (type)))

#define TB_SOURCE_MAX 64        /* longer sources are cut in the tag */
#define TB_TAG_MAX (TB_SOURCE_MAX + MONITOR_NAME_MAX + 2)
#define TB_OPEN_TRIES 100      /* name collisions before giving up */

static void put(struct monitor_tb_buf *b, const void *data, size_t len)
{
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2 + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void put_byte(struct monitor_tb_buf *b, uint8_t x)
{
    put(b, &x, 1);
}

static void put_varint(struct monitor_tb_buf *b, uint64_t x)
{
    do {
        uint8_t byte = x & 0x7f;
        x >>= 7;
        put_byte(b, byte | (x ? 0x80 : 0));
    } while (x);
}

static size_t varint_size(uint64_t x)
{
    size_t n = 1;
    while (x >>= 7)
        n++;
    return n;
}

static void put_le(struct monitor_tb_buf *b, uint64_t x, int bytes)
{
    for (int i = 0; i < bytes; i++)
        put_byte(b, (uint8_t)(x >> (8 * i)));
}

static void put_double(struct monitor_tb_buf *b, double v)
{
    uint64_t x;
    memcpy(&x, &v, sizeof x);
    put_le(b, x, 8);
}

static void put_float(struct monitor_tb_buf *b, float v)
{
    uint32_t x;
    memcpy(&x, &v, sizeof x);
    put_le(b, x, 4);
}

static void put_string(struct monitor_tb_buf *b, int field, const char *s, size_t len)
{
    put_byte(b, PB_KEY(field, PB_LEN));
    put_varint(b, len);
    put(b, s, len);
}

void monitor_tb_buf_free(struct monitor_tb_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

uint32_t monitor_tb_mask_crc(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + MONITOR_TB_CRC_MASK_DELTA;
}

/* "<source>/<name>", or the name alone for a record without a source. */
static size_t make_tag(char *tag, const struct monitor_record *r, size_t i)
{
    int n = r->source && r->source[0]
        ? snprintf(tag, TB_TAG_MAX, "%s/%s", r->source, r->keys[i])
        : snprintf(tag, TB_TAG_MAX, "%s", r->keys[i]);
    return n < 0 ? 0 : (size_t)n < TB_TAG_MAX ? (size_t)n : TB_TAG_MAX - 1;
}

size_t monitor_tb_encode_event(struct monitor_tb_buf *b, double wall_time,
                               const struct monitor_record *r)
{
    put_byte(b, PB_KEY(1, PB_FIXED64));
    put_double(b, wall_time);
    if (!r) {
        put_string(b, 3, MONITOR_TB_FILE_VERSION, strlen(MONITOR_TB_FILE_VERSION));
        return 0;
    }
    put_byte(b, PB_KEY(2, PB_VARINT));
    put_varint(b, r->step);
    /* Summary { repeated Value value = 1 }: size it, then write it. */
    char tag[TB_TAG_MAX];
    size_t summary = 0, n = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!isfinite(r->values[i]))
            continue;
        size_t t = make_tag(tag, r, i);
        size_t value = 1 + varint_size(t) + t + 1 + 4;
        summary += 1 + varint_size(value) + value;
    }
    put_byte(b, PB_KEY(5, PB_LEN));
    put_varint(b, summary);
    for (size_t i = 0; i < r->n; i++) {
        if (!isfinite(r->values[i]))
            continue;
        size_t t = make_tag(tag, r, i);
        put_byte(b, PB_KEY(1, PB_LEN));
        put_varint(b, 1 + varint_size(t) + t + 1 + 4);
        put_string(b, 1, tag, t);
        put_byte(b, PB_KEY(2, PB_FIXED32));
        put_float(b, (float)r->values[i]);
        n++;
    }
    return n;
}

void monitor_tb_frame(struct monitor_tb_buf *b, const uint8_t *data, size_t len)
{
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)len >> (8 * i));
    put(b, len8, 8);
    put_le(b, monitor_tb_mask_crc(hash_crc32c(0, len8, 8)), 4);
    put(b, data, len);
    put_le(b, monitor_tb_mask_crc(hash_crc32c(0, data, len)), 4);
}

/* Frames one encoded event and appends it to the file. */
static int write_event(struct monitor_tb *tb, const struct monitor_tb_buf *ev,
                       char *err)
{
    struct monitor_tb_buf rec = {0};
    monitor_tb_frame(&rec, ev->p, ev->n);
    size_t want = rec.n, w = fwrite(rec.p, 1, rec.n, tb->f);
    monitor_tb_buf_free(&rec);
    if (w != want)
        return errf(err, "%s: %s", tb->path, strerror(errno));
    tb->events++;
    return 0;
}

int monitor_tb_open(struct monitor_tb *tb, const char *dir, double now, char *err)
{
    memset(tb, 0, sizeof *tb);
    if (util_mkdir_p(dir, err) < 0)
        return -1;
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    /* Never append to another writer's file: a second monitor started in
     * the same second gets a numbered name. */
    int fd = -1;
    for (int i = 0; i < TB_OPEN_TRIES && fd < 0; i++) {
        if (i == 0)
            snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%ld.%s", dir,
                     (long)now, host);
        else
            snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%ld.%s.%d",
                     dir, (long)now, host, i);
        fd = open(tb->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            return errf(err, "%s: %s", tb->path, strerror(errno));
    }
    if (fd < 0)
        return errf(err, "%s: %d event files of that second exist", dir, TB_OPEN_TRIES);
    tb->f = fdopen(fd, "wb");
    if (!tb->f) {
        close(fd);
        return errf(err, "%s: %s", tb->path, strerror(errno));
    }
    struct monitor_tb_buf ev = {0};
    monitor_tb_encode_event(&ev, now, NULL);
    int rc = write_event(tb, &ev, err);
    monitor_tb_buf_free(&ev);
    if (rc == 0)
        rc = monitor_tb_flush(tb, err);
    if (rc != 0)
        monitor_tb_close(tb);
    return rc;
}

int monitor_tb_add(struct monitor_tb *tb, const struct monitor_record *r, char *err)
{
    struct monitor_tb_buf ev = {0};
    int rc = 0;
    if (monitor_tb_encode_event(&ev, r->time, r) > 0)
        rc = write_event(tb, &ev, err);
    monitor_tb_buf_free(&ev);
    return rc;
}

int monitor_tb_flush(struct monitor_tb *tb, char *err)
{
    if (fflush(tb->f) != 0 || ferror(tb->f))
        return errf(err, "%s: %s", tb->path, strerror(errno));
    return 0;
}

void monitor_tb_close(struct monitor_tb *tb)
{
    if (tb->f)
        fclose(tb->f);
    tb->f = NULL;
}
