/*
 * eval_snapshot.h: putting eval snapshots back together from the broadcast
 * (proto/PROTOCOL.md, EMBED and FEATMAP). EMBED chunks carry seq 0..k-1
 * across the train and val splits, then an end marker says k. A snapshot is
 * complete only when the end marker came and every seq below k was seen
 * exactly once with one embedding width; anything else (a gap, a new
 * snapshot id before the end marker, a width change, too many rows for the
 * memory bound, a bad label) closes it as incomplete, and it is never scored.
 * FEATMAP messages are copied out of their frame whole. No sockets here.
 */
#ifndef LEJEPA_EVAL_SNAPSHOT_H
#define LEJEPA_EVAL_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "util.h"

/* Rows of one split, grown by doubling: emb (n, dim), labels (n). */
struct eval_rows {
    float *emb;
    int32_t *labels;
    int64_t n, cap;
};

struct eval_snapshot {
    uint64_t id, step;
    uint32_t dim;                   /* 0 until the first non-empty chunk */
    struct eval_rows split[2];      /* MSG_SPLIT_TRAIN, MSG_SPLIT_VAL */
    uint8_t *seen;                  /* (seen_cap) 1 = chunk seq arrived */
    uint32_t seen_cap;
    uint32_t got;                   /* distinct chunks received */
    uint32_t chunks;                /* from the end marker; 0 before it */
    bool ended;
    bool broken;                    /* not to be scored; reason in why */
    char why[ERR_LEN];
};

/* Frees everything the snapshot holds and the struct itself (NULL is ok). */
void eval_snapshot_free(struct eval_snapshot *s);

/* Assembles one snapshot at a time. max_bytes bounds the embeddings held. */
struct eval_assembler {
    struct eval_snapshot *cur;      /* open snapshot, or NULL */
    size_t max_bytes;
    uint64_t last_closed;           /* id of the last snapshot closed */
    bool any_closed;
    size_t ignored;                 /* late or duplicate chunks */
};

void eval_assembler_init(struct eval_assembler *a, size_t max_bytes);
void eval_assembler_free(struct eval_assembler *a);

/* Takes one EMBED message (its blobs are copied). A message may close up to
 * two snapshots: the open one, when a message of a new snapshot id arrives
 * before its end marker, and the new one, when that message is its end
 * marker. Closed snapshots go to closed[0..return) in order; the caller
 * owns them (eval_snapshot_free). A closed snapshot is complete (to be
 * scored) when !broken; otherwise why says what went wrong. Chunks of a
 * snapshot already closed are counted in ignored and dropped. */
int eval_assembler_add(struct eval_assembler *a, const struct msg_embed *e,
                       struct eval_snapshot *closed[2]);

/* "snapshot S at step N incomplete (got x of y chunks[: why])" into out. */
void eval_snapshot_describe(const struct eval_snapshot *s, char *out, size_t cap);

/* A FEATMAP copied out of its frame (blobs converted to host floats). */
struct eval_featmap {
    uint64_t snapshot, step;
    int n, c, h, w;
    uint8_t *pixels;                /* (n, c, h, w) */
    int fdim, gh, gw;
    float *feats;                   /* (n, fdim, gh, gw) */
    int heads;                      /* 0: attn is NULL */
    float *attn;                    /* (n, heads, gh, gw) */
};

/* Copies m into a new eval_featmap (free with eval_featmap_free); NULL with
 * err when the shape is out of what segmap accepts (c not 1 or 3, sizes
 * over INT_MAX) or bigger than max_bytes. */
struct eval_featmap *eval_featmap_copy(const struct msg_featmap *m,
                                       size_t max_bytes, char *err);
void eval_featmap_free(struct eval_featmap *f);

#endif
