/*
 * test_evalprog_snapshot.c: the snapshot assembler of lejepa-eval
 * (eval/eval_snapshot.c) on hand-made EMBED messages: rows land in their
 * split in order, and every way a snapshot can be incomplete closes it as
 * broken (never scored): a missing seq, a new id before the end marker (an
 * end marker alone closes two), a width change, a bad label, the memory
 * bound, seqs beyond the end marker's count. Duplicates and late chunks are
 * counted and dropped.
 */
#include <math.h>
#include <string.h>

#include "eval_snapshot.h"
#include "testing.h"
#include "util.h"

#define D 3

static uint8_t emb_blob[64 * D * 4], lab_blob[64 * 4];

/* n rows of chunk seq: row i of the chunk has values seq*100 + i and label
 * (seq + i) % 3 (or bad_label in row 0 when >= 0). */
static struct msg_embed chunk(uint64_t id, uint32_t seq, enum msg_split split, uint32_t n,
                              uint32_t dim, int bad_label)
{
    float emb[64 * 8];
    int32_t lab[64];
    for (uint32_t i = 0; i < n; i++) {
        lab[i] = (int32_t)((seq + i) % 3);
        for (uint32_t d = 0; d < dim; d++)
            emb[i * dim + d] = (float)(seq * 100 + i) + 0.25f * (float)d;
    }
    if (bad_label >= 0 || bad_label < -1)
        lab[0] = bad_label;
    msg_blob_write_f32(emb_blob, emb, (size_t)n * dim);
    msg_blob_write_i32(lab_blob, lab, n);
    return (struct msg_embed){.snapshot = id, .step = id * 10, .seq = seq, .split = split,
                              .n = n, .dim = dim, .labels = lab_blob, .emb = emb_blob};
}

static struct msg_embed end_marker(uint64_t id, uint32_t chunks)
{
    return (struct msg_embed){.snapshot = id, .step = id * 10, .seq = chunks, .end = true,
                              .chunks = chunks, .split = MSG_SPLIT_VAL, .dim = D,
                              .labels = lab_blob, .emb = emb_blob};
}

static int add(struct eval_assembler *a, struct msg_embed e, struct eval_snapshot *c[2])
{
    return eval_assembler_add(a, &e, c);
}

static void test_complete(void)
{
    struct eval_assembler a;
    struct eval_snapshot *c[2];
    eval_assembler_init(&a, 1 << 20);
    CU_ASSERT_EQUAL(add(&a, chunk(1, 0, MSG_SPLIT_TRAIN, 4, D, -1), c), 0);
    CU_ASSERT_EQUAL(add(&a, chunk(1, 1, MSG_SPLIT_TRAIN, 2, D, -1), c), 0);
    CU_ASSERT_EQUAL(add(&a, chunk(1, 1, MSG_SPLIT_TRAIN, 2, D, -1), c), 0);   /* dup */
    CU_ASSERT_EQUAL(add(&a, chunk(1, 2, MSG_SPLIT_VAL, 3, D, -1), c), 0);
    CU_ASSERT_EQUAL_FATAL(add(&a, end_marker(1, 3), c), 1);
    struct eval_snapshot *s = c[0];
    CU_ASSERT_FALSE(s->broken);
    CU_ASSERT_EQUAL(s->id, 1);
    CU_ASSERT_EQUAL(s->step, 10);
    CU_ASSERT_EQUAL(s->dim, D);
    CU_ASSERT_EQUAL(s->split[MSG_SPLIT_TRAIN].n, 6);
    CU_ASSERT_EQUAL(s->split[MSG_SPLIT_VAL].n, 3);
    CU_ASSERT_EQUAL(s->split[MSG_SPLIT_TRAIN].emb[4 * D + 2], 100.5f);   /* seq 1 row 0 */
    CU_ASSERT_EQUAL(s->split[MSG_SPLIT_TRAIN].labels[5], 2);
    CU_ASSERT_EQUAL(s->split[MSG_SPLIT_VAL].emb[2 * D], 202.0f);
    CU_ASSERT_EQUAL(a.ignored, 1);
    eval_snapshot_free(s);
    /* a late chunk of snapshot 1 is dropped, not a new snapshot */
    CU_ASSERT_EQUAL(add(&a, chunk(1, 2, MSG_SPLIT_VAL, 3, D, -1), c), 0);
    CU_ASSERT_PTR_NULL(a.cur);
    CU_ASSERT_EQUAL(a.ignored, 2);
    eval_assembler_free(&a);
}

static void expect_broken(struct eval_snapshot *s, const char *why)
{
    char text[512];
    CU_ASSERT_TRUE(s->broken);
    eval_snapshot_describe(s, text, sizeof text);
    if (!strstr(text, why))
        fprintf(stderr, "got '%s', wanted '%s'\n", text, why);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, why));
    eval_snapshot_free(s);
}

static void test_incomplete(void)
{
    struct eval_assembler a;
    struct eval_snapshot *c[2];
    eval_assembler_init(&a, 1 << 20);
    /* a gap */
    add(&a, chunk(1, 0, MSG_SPLIT_TRAIN, 4, D, -1), c);
    add(&a, chunk(1, 2, MSG_SPLIT_VAL, 4, D, -1), c);
    CU_ASSERT_EQUAL_FATAL(add(&a, end_marker(1, 3), c), 1);
    expect_broken(c[0], "snapshot 1 at step 10 incomplete (got 2 of 3 chunks");
    /* a new id before the end marker, and that id's end marker alone */
    add(&a, chunk(2, 0, MSG_SPLIT_TRAIN, 4, D, -1), c);
    CU_ASSERT_EQUAL_FATAL(add(&a, end_marker(3, 5), c), 2);
    expect_broken(c[0], "snapshot 2 at step 20 incomplete (got 1 of ? chunks: snapshot 3 "
                        "started before its end marker)");
    expect_broken(c[1], "snapshot 3 at step 30 incomplete (got 0 of 5 chunks");
    /* a width change */
    add(&a, chunk(4, 0, MSG_SPLIT_TRAIN, 4, D, -1), c);
    add(&a, chunk(4, 1, MSG_SPLIT_VAL, 4, D + 1, -1), c);
    CU_ASSERT_EQUAL_FATAL(add(&a, end_marker(4, 2), c), 1);
    expect_broken(c[0], "dim 4");
    /* a label out of range */
    add(&a, chunk(5, 0, MSG_SPLIT_TRAIN, 4, D, -1), c);
    add(&a, chunk(5, 1, MSG_SPLIT_VAL, 4, D, -7), c);
    CU_ASSERT_EQUAL_FATAL(add(&a, end_marker(5, 2), c), 1);
    expect_broken(c[0], "label -7");
    /* seqs beyond the count */
    add(&a, chunk(6, 0, MSG_SPLIT_TRAIN, 4, D, -1), c);
    add(&a, chunk(6, 1, MSG_SPLIT_VAL, 4, D, -1), c);
    add(&a, chunk(6, 5, MSG_SPLIT_VAL, 4, D, -1), c);
    CU_ASSERT_EQUAL_FATAL(add(&a, end_marker(6, 2), c), 1);
    expect_broken(c[0], "beyond");
    /* no val rows */
    add(&a, chunk(7, 0, MSG_SPLIT_TRAIN, 4, D, -1), c);
    CU_ASSERT_EQUAL_FATAL(add(&a, end_marker(7, 1), c), 1);
    expect_broken(c[0], "no val rows");
    eval_assembler_free(&a);

    /* the memory bound: 16 bytes per row here, 100 bytes allowed */
    eval_assembler_init(&a, 100);
    add(&a, chunk(8, 0, MSG_SPLIT_TRAIN, 4, D, -1), c);
    add(&a, chunk(8, 1, MSG_SPLIT_VAL, 4, D, -1), c);
    CU_ASSERT_EQUAL_FATAL(add(&a, end_marker(8, 2), c), 1);
    expect_broken(c[0], "--max-mb");
    eval_assembler_free(&a);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"complete snapshot, duplicate and late chunks", test_complete},
        {"every way to be incomplete", test_incomplete},
        {NULL, NULL},
    };
    return testing_run("evalprog_snapshot", cases);
}
