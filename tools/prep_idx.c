/*
 * prep_idx.c: loads one idx file (see prep_idx.h). zlib's gzread reads
 * gzip and plain files alike, so both spellings of a name go through it.
 */
#include "prep_idx.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "dataset.h"
#include "util.h"

/* Reads exactly len bytes; returns the count read (short at end of file) or
 * -1 with err on a decompression or read error. */
static long long read_full(gzFile f, const char *path, void *buf, size_t len,
                           char *err)
{
    size_t got = 0;
    while (got < len) {
        size_t want = len - got;
        if (want > INT_MAX / 2)
            want = INT_MAX / 2;
        int r = gzread(f, (char *)buf + got, (unsigned)want);
        if (r < 0) {
            int zerr = 0;
            const char *msg = gzerror(f, &zerr);
            errf(err, "%s: cannot read: %s", path,
                 zerr == Z_ERRNO ? strerror(errno) : msg);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long long)got;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

int prep_idx_load(struct prep_idx *idx, const char *dir, const char *name,
                  uint32_t magic, size_t want_rows, size_t want_cols, char *err)
{
    memset(idx, 0, sizeof *idx);
    int rc = -1;
    gzFile f = NULL;
    int n = snprintf(idx->path, sizeof idx->path, "%s/%s.gz", dir, name);
    if (n < 0 || (size_t)n >= sizeof idx->path)
        return errf(err, "%s: source path too long", dir);
    if (access(idx->path, F_OK) != 0)
        snprintf(idx->path, sizeof idx->path, "%s/%s", dir, name);
    f = gzopen(idx->path, "rb");
    if (!f) {
        errf(err, "%s(.gz): cannot open: %s", idx->path,
             errno ? strerror(errno) : "out of memory");
        goto cleanup;
    }
    gzbuffer(f, 1 << 17);

    int dims = magic == PREP_IDX_MAGIC_IMAGES ? 3 : 1;
    unsigned char head[16];
    size_t head_len = 4 + 4 * (size_t)dims;
    long long r = read_full(f, idx->path, head, head_len, err);
    if (r < 0)
        goto cleanup;
    if ((size_t)r < head_len) {
        errf(err, "%s: truncated header (%lld of %zu bytes)", idx->path, r,
             head_len);
        goto cleanup;
    }
    uint32_t got_magic = be32(head);
    if (got_magic != magic) {
        errf(err, "%s: bad magic 0x%08x, expected 0x%08x (idx%d %s)",
             idx->path, got_magic, magic, dims,
             dims == 3 ? "images" : "labels");
        goto cleanup;
    }
    idx->n = be32(head + 4);
    idx->rows = dims == 3 ? be32(head + 8) : 1;
    idx->cols = dims == 3 ? be32(head + 12) : 1;
    if (idx->n == 0 || idx->n > PREP_IDX_MAX_COUNT) {
        errf(err, "%s: header says %zu items (expected 1..%u)", idx->path,
             idx->n, PREP_IDX_MAX_COUNT);
        goto cleanup;
    }
    if (idx->rows != want_rows || idx->cols != want_cols) {
        errf(err, "%s: images are %zux%zu, expected %zux%zu", idx->path,
             idx->rows, idx->cols, want_rows, want_cols);
        goto cleanup;
    }
    size_t len = idx->n * idx->rows * idx->cols;
    idx->data = xmalloc(len + 1);
    r = read_full(f, idx->path, idx->data, len + 1, err);
    if (r < 0)
        goto cleanup;
    if ((size_t)r != len) {
        errf(err, "%s: %s: header promises %zu data bytes, file has %s%lld",
             idx->path, (size_t)r < len ? "truncated" : "trailing data", len,
             (size_t)r > len ? "more than " : "", r);
        goto cleanup;
    }
    idx->hash = hash_fnv1a(HASH_FNV_OFFSET, head, head_len);
    idx->hash = hash_fnv1a(idx->hash, idx->data, len);
    rc = 0;
cleanup:
    if (f)
        gzclose(f);
    if (rc != 0) {
        free(idx->data);
        idx->data = NULL;
    }
    return rc;
}

void prep_idx_free(struct prep_idx *idx)
{
    free(idx->data);
    idx->data = NULL;
}
