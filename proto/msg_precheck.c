/*
 * msg_precheck.c: a fast walk over the raw bytes of a message before
 * msgpack-c sees them. msgpack-c allocates an array's or map's element table
 * from the declared count before reading any element, so a 5-byte message
 * declaring 2^32 elements would make it allocate gigabytes. Here every
 * declared length and count is checked against the bytes that remain (each
 * element needs at least one byte), the elements declared in all containers
 * together are bounded (msgpack-c spends 16 bytes per element, so a large
 * frame of one-byte elements would otherwise cost 16x its size), nesting is
 * bounded, and the message must be exactly one value with no trailing bytes.
 * Iterative, no allocation.
 */
#include "msg.h"

#include <string.h>

#include "util.h"

static uint64_t load_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* One value's header at buf[pos]: sets *head (header bytes), *skip (payload
 * bytes after the header) and *count (elements, for containers). Returns 0,
 * or -1 with err when the header itself is cut off or reserved. */
static int header_parse(const unsigned char *buf, size_t len, size_t pos,
                        size_t *head, uint64_t *skip, uint64_t *count,
                        int *container, char *err)
{
    unsigned b = buf[pos];
    size_t lenbytes = 0;      /* size of a length/count field after the tag */
    *head = 1;
    *skip = 0;
    *count = 0;
    *container = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if (b >= 0x80 && b <= 0x8f) {
        *count = 2 * (uint64_t)(b & 0x0f);
        *container = 1;
        return 0;
    }
    if (b >= 0x90 && b <= 0x9f) {
        *count = b & 0x0f;
        *container = 1;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        *skip = b & 0x1f;
        return 0;
    }
    switch (b) {
    case 0xc1:
        return errf(err, "malformed msgpack: reserved byte 0xc1 at offset %zu", pos);
    case 0xca: *skip = 4; return 0;
    case 0xcb: *skip = 8; return 0;
    case 0xcc: case 0xd0: *skip = 1; return 0;
    case 0xcd: case 0xd1: *skip = 2; return 0;
    case 0xce: case 0xd2: *skip = 4; return 0;
    case 0xcf: case 0xd3: *skip = 8; return 0;
    case 0xd4: *skip = 2; return 0;      /* fixext: type byte + data */
    case 0xd5: *skip = 3; return 0;
    case 0xd6: *skip = 5; return 0;
    case 0xd7: *skip = 9; return 0;
    case 0xd8: *skip = 17; return 0;
    case 0xc4: case 0xd9: lenbytes = 1; break;
    case 0xc5: case 0xda: lenbytes = 2; break;
    case 0xc6: case 0xdb: lenbytes = 4; break;
    case 0xc7: lenbytes = 1; break;
    case 0xc8: lenbytes = 2; break;
    case 0xc9: lenbytes = 4; break;
    case 0xdc: lenbytes = 2; *container = 1; break;
    case 0xdd: lenbytes = 4; *container = 1; break;
    case 0xde: lenbytes = 2; *container = 2; break;
    case 0xdf: lenbytes = 4; *container = 2; break;
    default:
        return errf(err, "malformed msgpack: byte 0x%02x at offset %zu", b, pos);
    }
    if (len - pos - 1 < lenbytes)
        return errf(err, "truncated message: header at offset %zu cut off", pos);
    uint64_t n = load_be(buf + pos + 1, lenbytes);
    *head = 1 + lenbytes;
    if (*container) {
        *count = *container == 2 ? 2 * n : n;
        return 0;
    }
    *skip = n + (b >= 0xc7 && b <= 0xc9 ? 1 : 0);   /* ext: + type byte */
    return 0;
}

int msg_precheck(const void *data, size_t len, size_t max_depth, size_t max_elems,
                 char *err)
{
    const unsigned char *buf = data;
    uint64_t left[MSG_DEPTH_CAP + 1];   /* values still due at each level */
    size_t depth = 0, pos = 0;
    uint64_t elems = 0;
    if (max_depth > MSG_DEPTH_CAP)
        max_depth = MSG_DEPTH_CAP;
    if (len == 0)
        return errf(err, "truncated message: empty");
    left[0] = 1;
    for (;;) {
        while (depth > 0 && left[depth] == 0)
            depth--;
        if (depth == 0 && left[0] == 0)
            break;
        if (pos >= len)
            return errf(err, "truncated message: %llu more value(s) expected "
                        "at offset %zu", (unsigned long long)left[depth], pos);
        left[depth]--;
        size_t head;
        uint64_t skip, count;
        int container;
        if (header_parse(buf, len, pos, &head, &skip, &count, &container, err) < 0)
            return -1;
        if (len - pos < head)
            return errf(err, "truncated message: header at offset %zu cut off", pos);
        pos += head;
        size_t remaining = len - pos;
        if (container) {
            if (depth + 1 > max_depth)
                return errf(err, "nesting depth exceeds %zu at offset %zu",
                            max_depth, pos - head);
            if (count > remaining)
                return errf(err, "declared count %llu exceeds the %zu bytes "
                            "remaining at offset %zu (truncated or hostile)",
                            (unsigned long long)count, remaining, pos - head);
            elems += count;
            if (elems > max_elems)
                return errf(err, "containers declare more than %zu elements in "
                            "total (at offset %zu)", max_elems, pos - head);
            if (count > 0)
                left[++depth] = count;
        } else {
            if (skip > remaining)
                return errf(err, "truncated message: value at offset %zu needs "
                            "%llu bytes, %zu remain", pos - head,
                            (unsigned long long)skip, remaining);
            pos += (size_t)skip;
        }
    }
    if (pos != len)
        return errf(err, "trailing bytes: %zu after the message", len - pos);
    return 0;
}
