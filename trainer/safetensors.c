/*
 * safetensors.c: the safetensors format (see safetensors.h). Writing streams
 * the header then each tensor into an atomic file; reading validates the
 * whole header before any tensor is handed out, and the checksum when the
 * file has one.
 */
#include "safetensors.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* Every file we write starts with these bytes, then 8 lowercase hex digits
 * and a quote. A fixed place lets the reader find the value in the raw
 * header without trusting any parse of it; the CRC is computed with the
 * digits as "00000000". */
#define CHECKSUM_PREFIX "{\"__metadata__\":{\"" ST_META_CHECKSUM "\":\"crc32c:"
#define CHECKSUM_DIGITS 8

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8}, [ST_I32] = {"I32", 4},
    [ST_I64] = {"I64", 8}, [ST_U8] = {"U8", 1},
};

size_t st_dtype_size(enum st_dtype d)
{
    return dtypes[d].size;
}

const char *st_dtype_name(enum st_dtype d)
{
    return dtypes[d].name;
}

static int tensor_bytes(const struct st_tensor *t, size_t *out)
{
    size_t n = st_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return -1;
        if (t->shape[i] != 0 && n > SIZE_MAX / (size_t)t->shape[i])
            return -1;
        n *= (size_t)t->shape[i];
    }
    *out = n;
    return 0;
}

int st_write(const char *path, const struct st_tensor *tensors, size_t n,
             const char *const *meta_keys, const char *const *meta_values,
             size_t n_meta, char *err)
{
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *h = open_memstream(&hdr, &hlen);
    CHECK(h != NULL);
    fputs(CHECKSUM_PREFIX "00000000\"", h);
    for (size_t i = 0; i < n_meta; i++) {
        CHECK(strcmp(meta_keys[i], ST_META_CHECKSUM) != 0);
        fputc(',', h);
        json_write_string(h, meta_keys[i]);
        fputc(':', h);
        json_write_string(h, meta_values[i]);
    }
    fputc('}', h);
    size_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const struct st_tensor *t = &tensors[i];
        size_t nb;
        CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        CHECK(tensor_bytes(t, &nb) == 0 && nb == t->nbytes);
        fputc(',', h);
        json_write_string(h, t->name);
        fprintf(h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            fprintf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        fprintf(h, "],\"data_offsets\":[%zu,%zu]}", offset, offset + nb);
        offset += nb;
    }
    fputc('}', h);
    /* Pad with spaces so the data area starts 8-byte aligned. */
    while ((ftell(h) + 8) % 8 != 0)
        fputc(' ', h);
    fclose(h);

    int rc = -1;
    struct atomic_file f;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    /* The CRC covers the length, the header with zeros for the digits, and
     * the data; the digits are patched in before anything is written. */
    uint32_t crc = hash_crc32c(0, len8, 8);
    crc = hash_crc32c(crc, hdr, hlen);
    for (size_t i = 0; i < n; i++)
        crc = hash_crc32c(crc, tensors[i].data, tensors[i].nbytes);
    char digits[CHECKSUM_DIGITS + 1];
    snprintf(digits, sizeof digits, "%08x", (unsigned)crc);
    memcpy(hdr + strlen(CHECKSUM_PREFIX), digits, CHECKSUM_DIGITS);
    if (util_atomic_open(&f, path, err) != 0)
        goto cleanup;
    if (util_atomic_write(&f, len8, 8, err) != 0 ||
        util_atomic_write(&f, hdr, hlen, err) != 0)
        goto cleanup;
    for (size_t i = 0; i < n; i++)
        if (util_atomic_write(&f, tensors[i].data, tensors[i].nbytes, err) != 0)
            goto cleanup;
    rc = util_atomic_commit(&f, err);
cleanup:
    free(hdr);
    return rc;
}

static int parse_dtype(const struct json *v, enum st_dtype *out)
{
    if (!v || v->type != JSON_STRING)
        return -1;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(v->string, dtypes[i].name) == 0) {
            *out = (enum st_dtype)i;
            return 0;
        }
    return -1;
}

struct span {
    size_t begin, end;
};

static int cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Fills one tensor from its header entry and its byte span in the data. */
static int parse_entry(const struct json *e, struct st_tensor *t,
                       struct span *span, size_t data_len, const char *path,
                       char *err)
{
    if (e->type != JSON_OBJECT)
        return errf(err, "%s: tensor '%s' is not an object", path, e->key);
    if (parse_dtype(json_get(e, "dtype"), &t->dtype) != 0)
        return errf(err, "%s: tensor '%s' has a missing or unsupported dtype",
                    path, e->key);
    const struct json *shape = json_get(e, "shape");
    if (!shape || shape->type != JSON_ARRAY || shape->len > ST_MAX_DIMS)
        return errf(err, "%s: tensor '%s' has a bad shape", path, e->key);
    t->ndim = (int)shape->len;
    int d = 0;
    for (const struct json *s = shape->child; s; s = s->next, d++) {
        uint64_t v;
        if (json_get_u64(s, &v) != 0 || v > (uint64_t)INT64_MAX)
            return errf(err, "%s: tensor '%s' has a bad dimension", path, e->key);
        t->shape[d] = (int64_t)v;
    }
    const struct json *off = json_get(e, "data_offsets");
    uint64_t begin, end;
    if (!off || off->type != JSON_ARRAY || off->len != 2 ||
        json_get_u64(off->child, &begin) != 0 ||
        json_get_u64(off->child->next, &end) != 0 || begin > end ||
        end > data_len)
        return errf(err, "%s: tensor '%s' has data_offsets outside the file "
                    "(truncated?)", path, e->key);
    size_t nb = 0;
    if (tensor_bytes(t, &nb) != 0 || nb != end - begin)
        return errf(err, "%s: tensor '%s' has %llu bytes but its shape needs "
                    "%zu", path, e->key, (unsigned long long)(end - begin), nb);
    t->name = e->key;
    t->nbytes = nb;
    span->begin = begin;
    span->end = end;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const struct st_tensor *x = *(const struct st_tensor *const *)a;
    const struct st_tensor *y = *(const struct st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Sorts the tensors by name for st_find and refuses a name given twice by
 * comparing neighbours: n log n, where a scan per entry was quadratic (11 s
 * at 80k entries). The JSON reader already refuses duplicate member names;
 * this keeps the format's rule true whatever the reader does. */
static int index_names(struct st_file *f, const char *path, char *err)
{
    f->by_name = xcalloc(f->n + 1, sizeof *f->by_name);
    for (size_t i = 0; i < f->n; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_tensor_name);
    for (size_t i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return errf(err, "%s: tensor '%s' appears twice", path,
                        f->by_name[i]->name);
    return 0;
}

static int hex_digit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* A file whose metadata has a checksum must have it where st_write puts
 * it, and the CRC of its bytes must match. Files without one (PyTorch's,
 * ours from before checksums) pass with f->checksummed false; whether that
 * is acceptable is the caller's policy (ckpt.c warns). */
static int verify_checksum(struct st_file *f, const char *path, char *err)
{
    const char *v = st_meta(f, ST_META_CHECKSUM);
    if (!v)
        return 0;
    size_t np = strlen(CHECKSUM_PREFIX), hl = f->header_len;
    const char *hdr = f->buf + 8, *digits = hdr + np;
    bool placed = hl > np + CHECKSUM_DIGITS &&
                  memcmp(hdr, CHECKSUM_PREFIX, np) == 0 &&
                  digits[CHECKSUM_DIGITS] == '"' && strlen(v) == 7 + CHECKSUM_DIGITS &&
                  memcmp(v + 7, digits, CHECKSUM_DIGITS) == 0;
    for (int i = 0; placed && i < CHECKSUM_DIGITS; i++)
        placed = hex_digit(digits[i]);
    if (!placed)
        return errf(err, "%s: checksum '%.40s' is not in the form and place "
                    "this program writes (header edited by another tool?)",
                    path, v);
    uint32_t crc = hash_crc32c(0, f->buf, 8);
    crc = hash_crc32c(crc, hdr, np);
    crc = hash_crc32c(crc, "00000000", CHECKSUM_DIGITS);
    crc = hash_crc32c(crc, digits + CHECKSUM_DIGITS, hl - np - CHECKSUM_DIGITS);
    crc = hash_crc32c(crc, hdr + hl, f->len - 8 - hl);
    char want[CHECKSUM_DIGITS + 1];
    snprintf(want, sizeof want, "%08x", (unsigned)crc);
    if (memcmp(want, digits, CHECKSUM_DIGITS) != 0)
        return errf(err, "%s: checksum mismatch (stored %.8s, computed %s): the "
                    "file is corrupt", path, digits, want);
    f->checksummed = true;
    return 0;
}

int st_open(struct st_file *f, const char *path, char *err)
{
    size_t len;
    char *buf = util_read_file(path, &len, err);
    if (!buf) {
        memset(f, 0, sizeof *f);
        return -1;
    }
    return st_open_buffer(f, buf, len, path, err);
}

int st_open_buffer(struct st_file *f, char *buf, size_t len, const char *path,
                   char *err)
{
    memset(f, 0, sizeof *f);
    f->buf = buf;
    f->len = len;
    uint64_t hlen = 0;
    struct span *spans = NULL;
    if (f->len < 8) {
        errf(err, "%s: not a safetensors file (%zu bytes)", path, f->len);
        goto fail;
    }
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)(unsigned char)f->buf[i] << (8 * i);
    if (hlen > ST_MAX_HEADER || hlen > f->len - 8) {
        errf(err, "%s: header length %llu does not fit the file (%zu bytes): "
             "truncated or not safetensors", path, (unsigned long long)hlen,
             f->len);
        goto fail;
    }
    char jerr[ERR_LEN];
    f->header = json_parse(f->buf + 8, hlen, 8, jerr);
    if (!f->header || f->header->type != JSON_OBJECT) {
        errf(err, "%s: bad header: %s", path,
             f->header ? "not a JSON object" : jerr);
        goto fail;
    }
    char *data = f->buf + 8 + hlen;
    size_t data_len = f->len - 8 - hlen;
    f->header_len = (size_t)hlen;
    f->tensors = xcalloc(f->header->len, sizeof *f->tensors);
    spans = xcalloc(f->header->len, sizeof *spans);
    for (const struct json *e = f->header->child; e; e = e->next) {
        if (strcmp(e->key, "__metadata__") == 0) {
            if (e->type != JSON_OBJECT) {
                errf(err, "%s: __metadata__ is not an object", path);
                goto fail;
            }
            for (const struct json *m = e->child; m; m = m->next)
                if (m->type != JSON_STRING) {
                    errf(err, "%s: metadata '%s' is not a string", path, m->key);
                    goto fail;
                }
            f->meta = e;
            continue;
        }
        if (parse_entry(e, &f->tensors[f->n], &spans[f->n], data_len, path,
                        err) != 0)
            goto fail;
        f->tensors[f->n].data = data + spans[f->n].begin;
        f->n++;
    }
    /* Offsets must tile [0, data_len) exactly: no holes, no overlap. */
    qsort(spans, f->n, sizeof *spans, cmp_span);
    size_t expect = 0;
    int tiled = 1;
    for (size_t i = 0; i < f->n; i++) {
        tiled &= spans[i].begin == expect;
        expect = spans[i].end;
    }
    if (!tiled || expect != data_len) {
        errf(err, "%s: tensor data overlaps, has holes or is truncated "
             "(%zu bytes described, %zu present)", path, expect, data_len);
        goto fail;
    }
    if (index_names(f, path, err) != 0 || verify_checksum(f, path, err) != 0)
        goto fail;
    free(spans);
    return 0;
fail:
    free(spans);
    st_close(f);
    return -1;
}

void st_close(struct st_file *f)
{
    json_free(f->header);
    free(f->by_name);
    free(f->tensors);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
    size_t lo = 0, hi = f->by_name ? f->n : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0)
            return f->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *st_meta(const struct st_file *f, const char *key)
{
    const struct json *v = json_get(f->meta, key);
    return v ? v->string : NULL;
}
