/*
 * test_msg.c: the wire protocol. Every kind round-trips (blobs decoded in
 * place); malformed, hostile and oversized messages are rejected with the
 * right reason; limits computed from plain numbers; ZMQ_MAXMSGSIZE keeps an
 * oversized frame from ever reaching a receiver. Mutation testing lives in
 * test_msg_mutate.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "msg.h"
#include "test_msg_samples.h"
#include "testing.h"
#include "util.h"

static struct msg_limits lim;
static struct msg_arena arena;

static void encode_ok(const struct msg *m, msgpack_sbuffer *sb)
{
    char err[ERR_LEN] = "";
    msgpack_sbuffer_init(sb);
    int rc = msg_encode(m, sb, err);
    if (rc != 0)
        fprintf(stderr, "encode: %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static void test_roundtrip_every_kind(void)
{
    for (int k = MSG_KIND_FIRST; k <= MSG_KIND_LAST; k++)
        for (int v = 0; v < MSG_SAMPLE_VARIANTS; v++) {
            struct msg in, out;
            msgpack_sbuffer sb;
            char err[ERR_LEN] = "", why[ERR_LEN] = "";
            msg_sample(&in, (enum msg_kind)k, v);
            encode_ok(&in, &sb);
            int rc = msg_decode(&out, sb.data, sb.size, &lim, &arena, err);
            if (rc != 0)
                fprintf(stderr, "%s/%d: %s\n", msg_kind_name((enum msg_kind)k), v, err);
            CU_ASSERT_EQUAL(rc, 0);
            bool same = msg_sample_equal(&in, &out, why);
            if (!same)
                fprintf(stderr, "%s/%d differs: %s\n", msg_kind_name((enum msg_kind)k), v, why);
            CU_ASSERT(same);
            CU_ASSERT(msg_sample_blobs_inside(&out, sb.data, sb.size));
            msgpack_sbuffer_destroy(&sb);
        }
}

static void test_blobs_point_into_the_buffer(void)
{
    struct msg in, out;
    msgpack_sbuffer sb;
    char err[ERR_LEN];
    msg_sample(&in, MSG_KIND_BATCH, 0);
    encode_ok(&in, &sb);
    CU_ASSERT_EQUAL_FATAL(msg_decode(&out, sb.data, sb.size, &lim, &arena, err), 0);
    const uint8_t *base = (const uint8_t *)sb.data;
    CU_ASSERT(out.batch.groups[0].pixels > base &&
              out.batch.groups[0].pixels < base + sb.size);
    /* Changing the buffer changes the decoded view: no copy was made. */
    size_t off = (size_t)(out.batch.groups[1].pixels - base);
    sb.data[off] ^= 0x5a;
    CU_ASSERT_EQUAL(out.batch.groups[1].pixels[0], (uint8_t)(in.batch.groups[1].pixels[0] ^ 0x5a));
    msgpack_sbuffer_destroy(&sb);

    msg_sample(&in, MSG_KIND_EMBED, 0);
    encode_ok(&in, &sb);
    CU_ASSERT_EQUAL_FATAL(msg_decode(&out, sb.data, sb.size, &lim, &arena, err), 0);
    float emb[20];
    int32_t labels[5];
    msg_blob_read_f32(emb, out.embed.emb, 20);
    msg_blob_read_i32(labels, out.embed.labels, 5);
    CU_ASSERT_DOUBLE_EQUAL(emb[3], 3 * 0.25 - 2.0, 0);
    CU_ASSERT_EQUAL(labels[2], -1);
    CU_ASSERT((const char *)out.embed.emb > sb.data &&
              (const char *)out.embed.emb < sb.data + sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- hand-made malformed messages: decode a sample into msgpack objects,
 * edit the tree, pack it again. ---------------------------------------- */

static msgpack_object *obj_field(msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->via.str.size == strlen(key) && memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    CU_FAIL_FATAL("field not in sample");
    return NULL;
}

static void obj_remove(msgpack_object *map, const char *key)
{
    msgpack_object *v = obj_field(map, key);
    msgpack_object_kv *kv = (msgpack_object_kv *)((char *)v - offsetof(msgpack_object_kv, val));
    size_t i = (size_t)(kv - map->via.map.ptr);
    memmove(kv, kv + 1, (map->via.map.size - i - 1) * sizeof *kv);
    map->via.map.size--;
}

static msgpack_object obj_str(const char *s)
{
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    o.via.str.ptr = s;
    o.via.str.size = (uint32_t)strlen(s);
    return o;
}

static msgpack_object obj_uint(uint64_t v)
{
    msgpack_object o = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    o.via.u64 = v;
    return o;
}

/* Adds key: val to map (the kv table is re-allocated in the zone). */
static void obj_add(msgpack_zone *z, msgpack_object *map, const char *key, msgpack_object val)
{
    uint32_t n = map->via.map.size;
    msgpack_object_kv *kv = msgpack_zone_malloc(z, (n + 1) * sizeof *kv);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv);
    memcpy(kv, map->via.map.ptr, n * sizeof *kv);
    kv[n].key = obj_str(key);
    kv[n].val = val;
    map->via.map.ptr = kv;
    map->via.map.size = n + 1;
}

typedef void (*edit_fn)(msgpack_object *root, msgpack_zone *z);

/* Sample (k, variant) edited by fn, decoded with lim: must fail with err
 * containing want. */
static void expect_reject(enum msg_kind k, int variant, edit_fn fn, const char *want)
{
    struct msg in, out;
    msgpack_sbuffer sb, edited;
    msg_sample(&in, k, variant);
    encode_ok(&in, &sb);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    CU_ASSERT_EQUAL_FATAL(msgpack_unpack_next(&up, sb.data, sb.size, &off),
                          MSGPACK_UNPACK_SUCCESS);
    fn(&up.data, up.zone);
    msgpack_sbuffer_init(&edited);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &edited, msgpack_sbuffer_write);
    CU_ASSERT_EQUAL_FATAL(msgpack_pack_object(&pk, up.data), 0);
    char err[ERR_LEN] = "";
    int rc = msg_decode(&out, edited.data, edited.size, &lim, &arena, err);
    CU_ASSERT_EQUAL(rc, -1);
    if (!strstr(err, want))
        fprintf(stderr, "expected '%s', got '%s'\n", want, err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&edited);
}

static void expect_reject_bytes(const void *buf, size_t len, const char *want)
{
    struct msg out;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(msg_decode(&out, buf, len, &lim, &arena, err), -1);
    if (!strstr(err, want))
        fprintf(stderr, "expected '%s', got '%s'\n", want, err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
}

static void edit_step_as_str(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "step") = obj_str("1000");
}
static void edit_version_2(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "v") = obj_uint(2);
}
static void edit_kind_unknown(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "kind") = obj_str("GOSSIP");
}
static void edit_drop_seed(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_remove(r, "seed");
}
static void edit_drop_eval_view(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_remove(r, "eval_view");
}
static void edit_eval_view_uint(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "eval_view") = obj_uint(1);
}
static void edit_eval_view_on_eval(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "work") = obj_str("eval");
}
static void edit_drop_version(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_remove(r, "v");
}
static void edit_group_h(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(&obj_field(r, "groups")->via.array.ptr[1], "h") = obj_uint(5);
}
static void edit_pixels_short(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_field(&obj_field(r, "groups")->via.array.ptr[0], "pixels")->via.bin.size -= 1;
}
static void edit_views_5(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(&obj_field(r, "groups")->via.array.ptr[0], "views") = obj_uint(5);
}
static void edit_labels_short(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_field(r, "labels")->via.array.size = 2;
}
static void edit_nine_indices(msgpack_object *r, msgpack_zone *z)
{
    msgpack_object *idx = obj_field(r, "indices");
    msgpack_object *nine = msgpack_zone_malloc(z, 9 * sizeof *nine);
    for (int i = 0; i < 9; i++)
        nine[i] = obj_uint((uint64_t)i);
    idx->via.array.ptr = nine;
    idx->via.array.size = 9;
}
static void edit_name_nul(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    msgpack_object *name = obj_field(r, "name");
    name->via.str.ptr = "load\0er";
    name->via.str.size = 7;
}
static void edit_reason_long(msgpack_object *r, msgpack_zone *z)
{
    static char longs[300];
    (void)z;
    memset(longs, 'x', sizeof longs - 1);
    *obj_field(r, "reason") = obj_str(longs);
}
static void edit_duplicate_step(msgpack_object *r, msgpack_zone *z)
{
    obj_add(z, r, "step", obj_uint(5));
}
static void edit_end_with_n(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "n") = obj_uint(1);
}
static void edit_attn_without_heads(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "heads") = obj_uint(0);
}
static void edit_emb_dim_big(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "dim") = obj_uint(9);
}
static void edit_split_bogus(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(r, "split") = obj_str("test");
}
static void edit_value_str(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_field(r, "values")->via.map.ptr[0].val = obj_str("high");
}
static void edit_loader_no_dataset(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_field(r, "dataset")->type = MSGPACK_OBJECT_NIL;
}
/* a held bitmap one byte short of what the counts need */
static void edit_held_short(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_field(obj_field(r, "dataset"), "held")->via.bin.size -= 1;
}
/* counts so large that the bitmap's size overflows */
static void edit_held_counts_huge(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(obj_field(r, "dataset"), "n_train") = obj_uint(UINT64_MAX - 3);
}

static void edit_time_nan(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_field(r, "time")->via.f64 = __builtin_nan("");
}
static void edit_two_empty_keys(msgpack_object *r, msgpack_zone *z)
{
    obj_add(z, r, "", obj_uint(1));
    obj_add(z, r, "", obj_uint(2));
}

/* The second failure of BATCH variant 1 (class "env"). */
static msgpack_object *second_failure(msgpack_object *r)
{
    return &obj_field(r, "failures")->via.array.ptr[1];
}
static void edit_class_bogus(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(second_failure(r), "class") = obj_str("maybe");
}
static void edit_class_uint(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    *obj_field(second_failure(r), "class") = obj_uint(1);
}

/* Sample (k, variant) edited by fn must decode; out holds it (in arena). */
static void decode_edited(enum msg_kind k, int variant, edit_fn fn, struct msg *out)
{
    struct msg in;
    msgpack_sbuffer sb, edited;
    msg_sample(&in, k, variant);
    encode_ok(&in, &sb);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    CU_ASSERT_EQUAL_FATAL(msgpack_unpack_next(&up, sb.data, sb.size, &off),
                          MSGPACK_UNPACK_SUCCESS);
    if (fn)
        fn(&up.data, up.zone);
    msgpack_sbuffer_init(&edited);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &edited, msgpack_sbuffer_write);
    CU_ASSERT_EQUAL_FATAL(msgpack_pack_object(&pk, up.data), 0);
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(msg_decode(out, edited.data, edited.size, &lim, &arena, err), 0);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&edited);
}

static void edit_drop_class(msgpack_object *r, msgpack_zone *z)
{
    (void)z;
    obj_remove(second_failure(r), "class");
}

/* TICKET.eval_view: optional, a ticket without it (an older trainer) asks
 * for no eval view, and it is refused where it means nothing. */
static void test_ticket_eval_view(void)
{
    struct msg out;
    decode_edited(MSG_KIND_TICKET, 0, NULL, &out);
    CU_ASSERT(out.ticket.eval_view);
    decode_edited(MSG_KIND_TICKET, 0, edit_drop_eval_view, &out);
    CU_ASSERT(!out.ticket.eval_view);
    CU_ASSERT_EQUAL(out.ticket.n, 4);
    expect_reject(MSG_KIND_TICKET, 0, edit_eval_view_uint,
                  "TICKET.eval_view must be bool, got uint");
    expect_reject(MSG_KIND_TICKET, 0, edit_eval_view_on_eval,
                  "TICKET.eval_view needs work = train");
    struct msg m;
    msgpack_sbuffer sb;
    char err[ERR_LEN] = "";
    msgpack_sbuffer_init(&sb);
    msg_sample(&m, MSG_KIND_TICKET, 1);
    m.ticket.eval_view = true;
    CU_ASSERT_EQUAL(msg_encode(&m, &sb, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "eval_view needs work = train"));
    msgpack_sbuffer_destroy(&sb);
}

/* BATCH.failures[].class: travels both ways, is validated, and a loader
 * that predates it (no field) reads as "decode", what it meant then. */
static void test_failure_class(void)
{
    struct msg out;
    decode_edited(MSG_KIND_BATCH, 1, NULL, &out);
    CU_ASSERT_EQUAL_FATAL(out.batch.n_failures, 2);
    CU_ASSERT_EQUAL(out.batch.failures[0].fail_class, MSG_FAIL_DECODE);
    CU_ASSERT_EQUAL(out.batch.failures[1].fail_class, MSG_FAIL_ENV);
    decode_edited(MSG_KIND_BATCH, 1, edit_drop_class, &out);
    CU_ASSERT_EQUAL_FATAL(out.batch.n_failures, 2);
    CU_ASSERT_EQUAL(out.batch.failures[1].fail_class, MSG_FAIL_DECODE);
    expect_reject(MSG_KIND_BATCH, 1, edit_class_bogus,
                  "BATCH.failures[].class: unknown value 'maybe'");
    expect_reject(MSG_KIND_BATCH, 1, edit_class_uint, "class must be str, got uint");
    CU_ASSERT_STRING_EQUAL(msg_fail_class_name(MSG_FAIL_ENV), "env");
    CU_ASSERT_STRING_EQUAL(msg_fail_class_name(MSG_FAIL_DECODE), "decode");
    struct msg m;
    msgpack_sbuffer sb;
    char err[ERR_LEN] = "";
    msgpack_sbuffer_init(&sb);
    msg_sample(&m, MSG_KIND_BATCH, 1);
    struct msg_failure f[2] = {m.batch.failures[0], m.batch.failures[1]};
    f[1].fail_class = (enum msg_fail_class)7;
    m.batch.failures = f;
    CU_ASSERT_EQUAL(msg_encode(&m, &sb, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "BATCH.failures.class"));
    msgpack_sbuffer_destroy(&sb);
}

static void test_rejects_with_reason(void)
{
    expect_reject(MSG_KIND_TICKET, 0, edit_step_as_str, "TICKET.step must be uint, got str");
    expect_reject(MSG_KIND_TICKET, 0, edit_version_2, "protocol version 2");
    expect_reject(MSG_KIND_HEARTBEAT, 0, edit_drop_version, "missing field 'v'");
    expect_reject(MSG_KIND_TICKET, 0, edit_kind_unknown, "unknown kind 'GOSSIP'");
    expect_reject(MSG_KIND_TICKET, 0, edit_drop_seed, "TICKET: missing field 'seed'");
    expect_reject(MSG_KIND_TICKET, 0, edit_nine_indices, "indices has 9 entries, allowed 1..8");
    expect_reject(MSG_KIND_TICKET, 0, edit_duplicate_step, "duplicate key 'step'");
    expect_reject(MSG_KIND_TICKET, 0, edit_split_bogus, "split: unknown value 'test'");
    expect_reject(MSG_KIND_BATCH, 0, edit_group_h, "pixels has 576 bytes, its shape says 720");
    expect_reject(MSG_KIND_BATCH, 0, edit_pixels_short, "pixels has 1151 bytes");
    expect_reject(MSG_KIND_BATCH, 0, edit_views_5, "views = 5 exceeds the limit 4");
    expect_reject(MSG_KIND_BATCH, 0, edit_labels_short, "labels has 2 entries, allowed 3..3");
    expect_reject(MSG_KIND_HELLO, 0, edit_name_nul, "HELLO.name contains a NUL byte");
    expect_reject(MSG_KIND_HELLO, 0, edit_loader_no_dataset, "a loader must send its dataset");
    expect_reject(MSG_KIND_HELLO, 0, edit_held_short, "held has 874 bytes, its shape says 875");
    expect_reject(MSG_KIND_HELLO, 0, edit_held_counts_huge, "n_train + n_val overflows");
    expect_reject(MSG_KIND_BYE, 0, edit_reason_long, "exceeds the limit 256");
    expect_reject(MSG_KIND_EMBED, 1, edit_end_with_n, "end marker must have n = 0");
    expect_reject(MSG_KIND_EMBED, 0, edit_emb_dim_big, "EMBED.dim = 9 exceeds");
    expect_reject(MSG_KIND_FEATMAP, 0, edit_attn_without_heads, "attn must be nil");
    expect_reject(MSG_KIND_RESULT, 0, edit_value_str, "must be float64, got str");
    expect_reject(MSG_KIND_HEARTBEAT, 0, edit_time_nan, "HEARTBEAT.time must be finite");
    expect_reject(MSG_KIND_HEARTBEAT, 0, edit_two_empty_keys, "duplicate key ''");
}

static void test_rejects_raw_bytes(void)
{
    struct msg in;
    msgpack_sbuffer sb;
    msg_sample(&in, MSG_KIND_BATCH, 0);
    encode_ok(&in, &sb);
    for (size_t cut = 1; cut < sb.size; cut += 97)
        expect_reject_bytes(sb.data, cut, "truncated");
    expect_reject_bytes(sb.data, sb.size - 1, "truncated");
    char *tail = malloc(sb.size + 1);
    memcpy(tail, sb.data, sb.size);
    tail[sb.size] = 0x00;
    expect_reject_bytes(tail, sb.size + 1, "trailing bytes: 1");
    tail[0] = (char)0xc1;
    expect_reject_bytes(tail, sb.size, "reserved byte 0xc1");
    free(tail);
    msgpack_sbuffer_destroy(&sb);

    expect_reject_bytes("", 0, "empty");
    expect_reject_bytes("\x2a", 1, "must be a map, got uint");
    /* 5 bytes declaring 2^32-1 elements: refused before msgpack-c allocates. */
    expect_reject_bytes("\xdd\xff\xff\xff\xff", 5, "declared count 4294967295 exceeds");
    expect_reject_bytes("\x81\xa1x\xdf\xff\xff\xff\xff", 8, "declared count 8589934590");
    expect_reject_bytes("\x81\xa1x\xc6\x7f\xff\xff\xff", 8, "needs 2147483647 bytes");
    /* {"x": [[[[[...]]]]]} nested past max_depth = 4. */
    unsigned char deep[64] = {0x81, 0xa1, 'x'};
    size_t n = 3;
    for (int i = 0; i < 40; i++)
        deep[n++] = 0x91;
    deep[n++] = 0x00;
    expect_reject_bytes(deep, n, "nesting depth exceeds 4");

    /* A valid HEARTBEAT plus an unknown field holding 4000 nils: small in
     * bytes, but more elements than any legal message (msgpack-c would spend
     * 16 bytes on each). */
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    CU_ASSERT_EQUAL(msgpack_pack_map(&pk, 5), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "v", 1), 0);
    CU_ASSERT_EQUAL(msgpack_pack_uint32(&pk, PROTO_VERSION), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "kind", 4), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "HEARTBEAT", 9), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "time", 4), 0);
    CU_ASSERT_EQUAL(msgpack_pack_double(&pk, 1.0), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "held", 4), 0);
    CU_ASSERT_EQUAL(msgpack_pack_uint32(&pk, 0), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "pad", 3), 0);
    CU_ASSERT_EQUAL(msgpack_pack_array(&pk, 4000), 0);
    int rc = 0;
    for (int i = 0; i < 4000; i++)
        rc |= msgpack_pack_nil(&pk);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(sb.size < lim.max_msg_bytes);
    expect_reject_bytes(sb.data, sb.size, "containers declare more than");
    msgpack_sbuffer_destroy(&sb);
}

static void test_rejects_oversized_message(void)
{
    struct msg in;
    msgpack_sbuffer sb;
    msg_sample(&in, MSG_KIND_BATCH, 0);
    encode_ok(&in, &sb);
    struct msg_limits small = lim;
    small.max_msg_bytes = sb.size - 1;
    struct msg out;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL(msg_decode(&out, sb.data, sb.size, &small, &arena, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "exceeds max_msg_bytes"));
    small = lim;
    small.max_pixels = 3 * 8 * 8 - 1;
    CU_ASSERT_EQUAL(msg_decode(&out, sb.data, sb.size, &small, &arena, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "exceeds max_pixels"));
    small = lim;
    small.max_groups = 1;
    CU_ASSERT_EQUAL(msg_decode(&out, sb.data, sb.size, &small, &arena, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "groups has 2 entries, allowed 1..1"));
    msgpack_sbuffer_destroy(&sb);
}

static void test_unknown_fields_are_ignored(void)
{
    struct msg in, out;
    msgpack_sbuffer sb;
    msg_sample(&in, MSG_KIND_HEARTBEAT, 0);
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* {"future": [1, {}], "held": 2, "kind": "HEARTBEAT", "time": t, "v": 1} */
    CU_ASSERT_EQUAL(msgpack_pack_map(&pk, 5), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "future", 6), 0);
    CU_ASSERT_EQUAL(msgpack_pack_array(&pk, 2), 0);
    CU_ASSERT_EQUAL(msgpack_pack_int(&pk, 1), 0);
    CU_ASSERT_EQUAL(msgpack_pack_map(&pk, 0), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "held", 4), 0);
    CU_ASSERT_EQUAL(msgpack_pack_uint32(&pk, 2), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "kind", 4), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "HEARTBEAT", 9), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "time", 4), 0);
    CU_ASSERT_EQUAL(msgpack_pack_double(&pk, in.heartbeat.time), 0);
    CU_ASSERT_EQUAL(msgpack_pack_str_with_body(&pk, "v", 1), 0);
    CU_ASSERT_EQUAL(msgpack_pack_uint32(&pk, PROTO_VERSION), 0);
    char err[ERR_LEN] = "", why[ERR_LEN];
    CU_ASSERT_EQUAL(msg_decode(&out, sb.data, sb.size, &lim, &arena, err), 0);
    CU_ASSERT(msg_sample_equal(&in, &out, why));
    msgpack_sbuffer_destroy(&sb);
}

static void test_encode_refuses_bad_structs(void)
{
    struct msg m;
    msgpack_sbuffer sb;
    char err[ERR_LEN] = "";
    msgpack_sbuffer_init(&sb);
    msg_sample(&m, MSG_KIND_FEATMAP, 0);
    m.featmap.attn = NULL;
    CU_ASSERT_EQUAL(msg_encode(&m, &sb, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "FEATMAP.attn is NULL"));
    msg_sample(&m, MSG_KIND_BATCH, 0);
    struct msg_group g = {UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, NULL};
    m.batch.groups = &g;
    m.batch.n_groups = 1;
    CU_ASSERT_EQUAL(msg_encode(&m, &sb, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "overflows"));
    m.kind = (enum msg_kind)99;
    CU_ASSERT_EQUAL(msg_encode(&m, &sb, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown kind"));
    msgpack_sbuffer_destroy(&sb);
}

static void test_batch_matches_ticket(void)
{
    struct msg t, b;
    char err[ERR_LEN] = "";
    msg_sample(&t, MSG_KIND_TICKET, 0);
    msg_sample(&b, MSG_KIND_BATCH, 0);
    CU_ASSERT_EQUAL(msg_batch_check_ticket(&b.batch, &t.ticket, err), 0);
    uint64_t swapped[3] = {42, 10, 7};
    b.batch.indices = swapped;
    CU_ASSERT_EQUAL(msg_batch_check_ticket(&b.batch, &t.ticket, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ticket order"));
    uint64_t stranger[3] = {10, 42, 8};
    b.batch.indices = stranger;
    CU_ASSERT_EQUAL(msg_batch_check_ticket(&b.batch, &t.ticket, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "index 8 is not in ticket 77"));
    msg_sample(&b, MSG_KIND_BATCH, 1);     /* 0 samples + 2 failures */
    CU_ASSERT_EQUAL(msg_batch_check_ticket(&b.batch, &t.ticket, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ticket has 4"));
}

static void test_limits(void)
{
    struct msg_limits d, c;
    msg_limits_default(&d);
    CU_ASSERT(d.max_depth <= MSG_DEPTH_CAP && d.max_msg_bytes >= 65536);
    /* ImageNet-like: 32 samples x (2 x 3x224x224 + 6 x 3x96x96), plus the
     * eval view (3x224x224) a train ticket may ask for. */
    struct msg_limit_params p = {.samples = 32, .global_views = 2, .global_size = 224,
                                 .local_views = 6, .local_size = 96, .channels = 3,
                                 .emb_dim = 768, .embed_chunk = 256, .featmap_images = 16,
                                 .feat_dim = 384, .grid_h = 14, .grid_w = 14, .heads = 6,
                                 .margin = 1.25};
    msg_limits_compute(&c, &p);
    size_t batch = 32 * (3 * 3 * 224 * 224 + 6 * 3 * 96 * 96);
    CU_ASSERT(c.max_msg_bytes >= batch * 5 / 4 && c.max_msg_bytes < batch * 2);
    CU_ASSERT(c.max_pixels >= 3 * 224 * 224);
    CU_ASSERT(c.max_samples >= 32 && c.max_views >= 6 && c.max_emb_dim >= 768);
    CU_ASSERT(c.max_feat_elems >= 16 * 384 * 14 * 14);
    /* Absurd inputs saturate instead of wrapping around. */
    p.samples = SIZE_MAX / 2;
    msg_limits_compute(&c, &p);
    CU_ASSERT_EQUAL(c.max_msg_bytes, SIZE_MAX);
}

/* Limits from a run's config admit the largest BATCH that config produces
 * and refuse one with more views or bigger crops than it configures. */
static void test_limits_from_config(void)
{
    struct config cfg;
    char err[ERR_LEN];
    config_defaults(&cfg);
    CU_ASSERT_EQUAL_FATAL(config_set(&cfg, "views.global_size=384", err), 0);
    CU_ASSERT_EQUAL_FATAL(config_set(&cfg, "views.local_size=96", err), 0);
    CU_ASSERT_EQUAL_FATAL(config_set(&cfg, "views.channels=3", err), 0);
    struct msg_limit_params p;
    msg_limit_params_from_config(&p, &cfg);
    CU_ASSERT_EQUAL(p.samples, (size_t)cfg.run.ticket_size);
    CU_ASSERT_EQUAL(p.local_views, (size_t)cfg.views.local_count);
    struct msg_limits lim;
    msg_limits_compute(&lim, &p);
    size_t batch = (size_t)cfg.run.ticket_size * 3 *
                   (3 * 384 * 384 + 6 * 96 * 96);
    CU_ASSERT(lim.max_msg_bytes >= batch && lim.max_msg_bytes < 2 * batch);
    /* The margin admits 384 px crops, not 448 px ones. */
    CU_ASSERT(lim.max_pixels >= 3 * 384 * 384 && lim.max_pixels < 3 * 448 * 448);
    CU_ASSERT(lim.max_samples >= (size_t)cfg.run.ticket_size);
    CU_ASSERT(lim.max_views >= 6);
}

/* ZMQ_MAXMSGSIZE on the receiver: a frame above it is dropped by the
 * transport (the connection is closed), a later small one arrives. inproc
 * does not enforce the option, so this runs over ipc. */
static void test_socket_drops_oversized_frame(void)
{
    char *dir = testing_tmpdir();
    char ep[4200], err[ERR_LEN] = "";
    snprintf(ep, sizeof ep, "ipc://%s/work.sock", dir);
    void *ctx = zmq_ctx_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    void *rx = zmq_socket(ctx, ZMQ_ROUTER), *big = zmq_socket(ctx, ZMQ_DEALER),
         *small = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, timeout = 2000;
    CU_ASSERT_EQUAL(zmq_setsockopt(rx, ZMQ_RCVTIMEO, &timeout, sizeof timeout), 0);
    for (void **s = (void *[]){rx, big, small, NULL}; *s; s++)
        CU_ASSERT_EQUAL(zmq_setsockopt(*s, ZMQ_LINGER, &linger, sizeof linger), 0);
    struct msg m, out;
    msgpack_sbuffer sb;
    msg_sample(&m, MSG_KIND_BATCH, 0);
    encode_ok(&m, &sb);
    struct msg_limits rl = lim;
    rl.max_msg_bytes = sb.size - 1;      /* the batch is one byte too big */
    msgpack_sbuffer_destroy(&sb);
    CU_ASSERT_EQUAL(msg_limits_apply(rx, &rl, err), 0);
    CU_ASSERT_EQUAL_FATAL(zmq_bind(rx, ep), 0);
    CU_ASSERT_EQUAL(zmq_connect(big, ep), 0);
    CU_ASSERT_EQUAL(zmq_connect(small, ep), 0);
    CU_ASSERT_EQUAL(msg_send(big, &m, err), 0);
    usleep(100 * 1000);
    struct msg hb;
    msg_sample(&hb, MSG_KIND_HEARTBEAT, 0);
    CU_ASSERT_EQUAL(msg_send(small, &hb, err), 0);

    unsigned char id[256];
    size_t id_len = 0;
    zmq_msg_t frame;
    int rc = msg_recv_from(rx, 0, id, &id_len, &frame, &out, &rl, &arena, err);
    if (rc != 0)
        fprintf(stderr, "recv: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(out.kind, MSG_KIND_HEARTBEAT);
    zmq_msg_close(&frame);
    timeout = 300;
    CU_ASSERT_EQUAL(zmq_setsockopt(rx, ZMQ_RCVTIMEO, &timeout, sizeof timeout), 0);
    rc = msg_recv_from(rx, 0, id, &id_len, &frame, &out, &rl, &arena, err);
    CU_ASSERT_EQUAL(rc, -1);            /* the batch never arrives */
    CU_ASSERT_EQUAL(errno, EAGAIN);
    zmq_msg_close(&frame);
    CU_ASSERT_EQUAL(zmq_close(big), 0);
    CU_ASSERT_EQUAL(zmq_close(small), 0);
    CU_ASSERT_EQUAL(zmq_close(rx), 0);
    CU_ASSERT_EQUAL(zmq_ctx_term(ctx), 0);
    testing_rmtree(dir);
    free(dir);
}

/* PUB/SUB framing: topic frame = kind name, subscribers filter on it. */
static void test_publish_topics(void)
{
    char err[ERR_LEN] = "";
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_PUB), *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0, timeout = 2000;
    CU_ASSERT_EQUAL(zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof linger), 0);
    CU_ASSERT_EQUAL(zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger), 0);
    CU_ASSERT_EQUAL(zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout), 0);
    CU_ASSERT_EQUAL(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "METRIC", 6), 0);
    CU_ASSERT_EQUAL_FATAL(zmq_bind(pub, "inproc://msg-pub"), 0);
    CU_ASSERT_EQUAL_FATAL(zmq_connect(sub, "inproc://msg-pub"), 0);
    usleep(50 * 1000);
    struct msg e, mt, out;
    msg_sample(&e, MSG_KIND_EMBED, 0);
    msg_sample(&mt, MSG_KIND_METRIC, 0);
    CU_ASSERT_EQUAL(msg_publish(pub, &e, err), 0);
    CU_ASSERT_EQUAL(msg_publish(pub, &mt, err), 0);
    zmq_msg_t frame;
    CU_ASSERT_EQUAL(msg_recv_sub(sub, 0, &frame, &out, &lim, &arena, err), 0);
    CU_ASSERT_EQUAL(out.kind, MSG_KIND_METRIC);   /* EMBED was filtered out */
    zmq_msg_close(&frame);
    CU_ASSERT_EQUAL(zmq_close(pub), 0);
    CU_ASSERT_EQUAL(zmq_close(sub), 0);
    CU_ASSERT_EQUAL(zmq_ctx_term(ctx), 0);
}

int main(void)
{
    msg_sample_limits(&lim);
    msg_arena_init(&arena);
    static const struct testing_case cases[] = {
        {"roundtrip_every_kind", test_roundtrip_every_kind},
        {"blobs_point_into_the_buffer", test_blobs_point_into_the_buffer},
        {"rejects_with_reason", test_rejects_with_reason},
        {"failure class", test_failure_class},
        {"ticket eval_view", test_ticket_eval_view},
        {"rejects_raw_bytes", test_rejects_raw_bytes},
        {"rejects_oversized_message", test_rejects_oversized_message},
        {"unknown_fields_are_ignored", test_unknown_fields_are_ignored},
        {"encode_refuses_bad_structs", test_encode_refuses_bad_structs},
        {"batch_matches_ticket", test_batch_matches_ticket},
        {"limits", test_limits},
        {"limits from a config", test_limits_from_config},
        {"socket_drops_oversized_frame", test_socket_drops_oversized_frame},
        {"publish_topics", test_publish_topics},
        {NULL, NULL},
    };
    int rc = testing_run("msg", cases);
    msg_arena_free(&arena);
    return rc;
}
