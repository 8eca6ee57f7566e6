/*
 * safetensors.h: reading and writing safetensors files (8-byte little-endian
 * header length, JSON header, raw little-endian tensor bytes), the format of
 * checkpoints and exported weights, so PyTorch users load them directly.
 * This file knows nothing of models or optimizers: it moves named tensors
 * and string metadata, and refuses any file that is not exactly consistent.
 */
#ifndef LEJEPA_SAFETENSORS_H
#define LEJEPA_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "util.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (64u << 20)

enum st_dtype { ST_F32, ST_F64, ST_I32, ST_I64, ST_U8 };

struct st_tensor {
    const char *name;
    enum st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;          /* nbytes bytes, little-endian */
    size_t nbytes;
};

/* Metadata key of the CRC-32C st_write adds to every file ("crc32c:" and 8
 * hex digits), over the length prefix, the header (digits as zeros) and
 * the data. It is only metadata: the file stays plain safetensors. */
#define ST_META_CHECKSUM "checksum"

/* Writes the tensors (in the given order) and the metadata (n_meta pairs of
 * key, value strings; none may be ST_META_CHECKSUM) to path atomically,
 * with a checksum. Names must be unique. */
int st_write(const char *path, const struct st_tensor *tensors, size_t n,
             const char *const *meta_keys, const char *const *meta_values,
             size_t n_meta, char *err);

/* A file read whole and validated: every tensor's dtype, shape and offsets
 * are consistent, offsets tile the data area exactly, names are unique,
 * metadata values are strings. Tensor data points into buf. Opening costs
 * O(n log n) in the header's entries (tools/bench_safetensors measures it),
 * so a hostile 64 MiB header cannot stall the reader. */
struct st_file {
    char *buf;
    size_t len;
    size_t header_len;         /* JSON header bytes; buf + 8 is its start */
    struct json *header;
    struct st_tensor *tensors; /* in file order */
    size_t n;
    const struct st_tensor **by_name; /* the n tensors sorted by name */
    const struct json *meta;   /* __metadata__ object, or NULL */
    bool checksummed;          /* had a checksum, and it matched */
};

/* Returns 0, or -1 with a reason naming the path (nothing is kept). A file
 * with a checksum that does not match is refused; one without a checksum
 * opens with checksummed false. */
int st_open(struct st_file *f, const char *path, char *err);
/* The same checks on a file already in memory: takes buf (malloc'd, len
 * bytes) whatever the outcome; st_close or a failure frees it.
 * name stands for the path in messages. */
int st_open_buffer(struct st_file *f, char *buf, size_t len, const char *name,
                   char *err);
void st_close(struct st_file *f);

/* The tensor called name, or NULL; O(log n). */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
/* Metadata value for key, or NULL. */
const char *st_meta(const struct st_file *f, const char *key);

size_t st_dtype_size(enum st_dtype d);
const char *st_dtype_name(enum st_dtype d);

#endif
