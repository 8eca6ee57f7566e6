/*
 * test_msg_mutate.c: seeded mutation testing of msg_decode. Every sample
 * message of every kind is mutated thousands of times (bit flips,
 * truncations, byte swaps, type-byte swaps, length/count inflation, inserted
 * bytes); decoding must never crash, and any message it accepts must pass an
 * independent check: blobs inside the buffer with the sizes their shapes
 * imply, and re-encoding then re-decoding gives the same message.
 */
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "test_msg_samples.h"
#include "testing.h"
#include "util.h"

#define MUTATIONS_PER_SAMPLE 5000

static const unsigned char type_bytes[] = {
    0xc0, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
    0xd0, 0xd3, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x80, 0x8f, 0x90,
    0x9f, 0xa0, 0xbf, 0x00, 0x7f, 0xe0, 0xff, 0xd4, 0xc7, 0xc1,
};

/* Sets a length/count at p to a large value when p holds such a header. */
static void inflate_count(unsigned char *p, size_t room, uint64_t *rng)
{
    unsigned b = p[0];
    size_t lenbytes = 0;
    if ((b >= 0x80 && b <= 0x9f) || (b >= 0xa0 && b <= 0xbf)) {
        p[0] = (unsigned char)(b | (b >= 0xa0 ? 0x1f : 0x0f));
        return;
    }
    if (b == 0xc4 || b == 0xd9)
        lenbytes = 1;
    else if (b == 0xc5 || b == 0xda || b == 0xdc || b == 0xde)
        lenbytes = 2;
    else if (b == 0xc6 || b == 0xdb || b == 0xdd || b == 0xdf)
        lenbytes = 4;
    for (size_t i = 1; i <= lenbytes && i < room; i++)
        p[i] = (testing_rand_u64(rng) & 1) ? 0xff : (unsigned char)(p[i] + 1);
}

/* One mutation of buf (len bytes, capacity cap); returns the new length. */
static size_t mutate(unsigned char *buf, size_t len, size_t cap, uint64_t *rng)
{
    size_t pos = len ? (size_t)(testing_rand_u64(rng) % len) : 0;
    switch (testing_rand_u64(rng) % 7) {
    case 0:
        for (int i = 1 + (int)(testing_rand_u64(rng) % 4); i > 0; i--)
            buf[testing_rand_u64(rng) % len] ^= (unsigned char)(1u << (testing_rand_u64(rng) % 8));
        return len;
    case 1:
        return (size_t)(testing_rand_u64(rng) % len);
    case 2: {
        size_t other = (size_t)(testing_rand_u64(rng) % len);
        unsigned char t = buf[pos];
        buf[pos] = buf[other];
        buf[other] = t;
        return len;
    }
    case 3:
        buf[pos] = type_bytes[testing_rand_u64(rng) % sizeof type_bytes];
        return len;
    case 4:
        inflate_count(buf + pos, len - pos, rng);
        return len;
    case 5:
        buf[pos] = (unsigned char)testing_rand_u64(rng);
        return len;
    default: {
        size_t n = 1 + (size_t)(testing_rand_u64(rng) % 8);
        if (len + n > cap)
            return len;
        memmove(buf + pos + n, buf + pos, len - pos);
        for (size_t i = 0; i < n; i++)
            buf[pos + i] = (unsigned char)testing_rand_u64(rng);
        return len + n;
    }
    }
}

/* The independent check of an accepted message. */
static void check_accepted(const struct msg *m, const unsigned char *buf, size_t len,
                           const struct msg_limits *lim)
{
    CU_ASSERT(msg_sample_blobs_inside(m, buf, len));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[ERR_LEN] = "", why[ERR_LEN] = "";
    int rc = msg_encode(m, &sb, err);
    if (rc != 0)
        fprintf(stderr, "re-encode of an accepted %s failed: %s\n", msg_kind_name(m->kind), err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc == 0) {
        struct msg again;
        struct msg_arena a2;
        msg_arena_init(&a2);
        rc = msg_decode(&again, sb.data, sb.size, lim, &a2, err);
        if (rc != 0)
            fprintf(stderr, "re-decode of an accepted %s failed: %s\n",
                    msg_kind_name(m->kind), err);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc == 0) {
            bool same = msg_sample_equal(m, &again, why);
            if (!same)
                fprintf(stderr, "re-decoded %s differs: %s\n", msg_kind_name(m->kind), why);
            CU_ASSERT(same);
        }
        msg_arena_free(&a2);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_mutations_never_crash(void)
{
    struct msg_limits lim;
    msg_sample_limits(&lim);
    struct msg_arena arena;
    msg_arena_init(&arena);
    uint64_t rng = 20261125;
    long accepted = 0, total = 0;
    for (int k = MSG_KIND_FIRST; k <= MSG_KIND_LAST; k++)
        for (int v = 0; v < MSG_SAMPLE_VARIANTS; v++) {
            struct msg in;
            msgpack_sbuffer sb;
            char err[ERR_LEN];
            msg_sample(&in, (enum msg_kind)k, v);
            msgpack_sbuffer_init(&sb);
            CU_ASSERT_EQUAL_FATAL(msg_encode(&in, &sb, err), 0);
            size_t cap = sb.size + 64;
            unsigned char *work = xmalloc(cap);
            for (int i = 0; i < MUTATIONS_PER_SAMPLE; i++) {
                memcpy(work, sb.data, sb.size);
                size_t len = sb.size;
                for (int j = 1 + (int)(testing_rand_u64(&rng) % 3); j > 0 && len > 0; j--)
                    len = mutate(work, len, cap, &rng);
                /* An exact-size copy, so an over-read is past the allocation. */
                unsigned char *exact = xmalloc(len ? len : 1);
                memcpy(exact, work, len);
                struct msg out;
                total++;
                if (msg_decode(&out, exact, len, &lim, &arena, err) == 0) {
                    accepted++;
                    check_accepted(&out, exact, len, &lim);
                } else {
                    CU_ASSERT(err[0] != '\0');
                }
                free(exact);
            }
            free(work);
            msgpack_sbuffer_destroy(&sb);
        }
    printf("\n    %ld mutated messages, %ld accepted and consistent\n", total, accepted);
    msg_arena_free(&arena);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"mutations_never_crash", test_mutations_never_crash},
        {NULL, NULL},
    };
    return testing_run("msg_mutate", cases);
}
