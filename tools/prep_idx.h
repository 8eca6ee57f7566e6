/*
 * prep_idx.h: reading the idx files of MNIST-style datasets (big-endian
 * magic and dimensions, then raw uint8 data), gzip-compressed or plain, for
 * lejepa-prep. Validates headers and sizes; knows nothing about output.
 */
#ifndef LEJEPA_PREP_IDX_H
#define LEJEPA_PREP_IDX_H

#include <stddef.h>
#include <stdint.h>

#define PREP_IDX_MAGIC_LABELS 0x00000801u   /* idx1: uint8, one dimension */
#define PREP_IDX_MAGIC_IMAGES 0x00000803u   /* idx3: uint8, n x rows x cols */
#define PREP_IDX_MAX_COUNT 10000000u

struct prep_idx {
    char path[4096];    /* the file actually read (with or without .gz) */
    uint8_t *data;      /* (n, rows, cols) or (n); malloc'd, prep_idx_free */
    size_t n;
    size_t rows, cols;  /* 1, 1 for labels */
    uint64_t hash;      /* FNV-1a 64 over the whole decompressed file */
};

/* Reads dir/name.gz, or dir/name when that does not exist, and checks the
 * magic, that images are want_rows x want_cols, and that the data is exactly
 * as long as the header says. Returns 0, or -1 with a reason naming the
 * file in err (ERR_LEN bytes). */
int prep_idx_load(struct prep_idx *idx, const char *dir, const char *name,
                  uint32_t magic, size_t want_rows, size_t want_cols, char *err);
void prep_idx_free(struct prep_idx *idx);

#endif
