/*
 * fuzz_msg.c: libFuzzer target for msg_decode. Each input is decoded under
 * three sets of limits (the small ones of the test samples, the handshake
 * defaults, and limits computed for a large run). Whatever is accepted must
 * have its blobs inside the input, re-encode, and re-decode to the same
 * message; anything else aborts, which the fuzzer reports.
 */
#include <stdio.h>
#include <stdlib.h>

#include "msg.h"
#include "test_msg_samples.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct msg_limits limits[3];
static struct msg_arena arena, arena2;

static void fuzz_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    msg_sample_limits(&limits[0]);
    msg_limits_default(&limits[1]);
    struct msg_limit_params p = {.samples = 64, .global_views = 2, .global_size = 224,
                                 .local_views = 8, .local_size = 96, .channels = 3,
                                 .emb_dim = 1024, .embed_chunk = 512, .featmap_images = 16,
                                 .feat_dim = 768, .grid_h = 14, .grid_w = 14, .heads = 12,
                                 .margin = 1.25};
    msg_limits_compute(&limits[2], &p);
    msg_arena_init(&arena);
    msg_arena_init(&arena2);
}

static void fail(const char *what, const struct msg *m, const char *detail)
{
    fprintf(stderr, "fuzz_msg: %s (%s): %s\n", what, msg_kind_name(m->kind), detail);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    for (int i = 0; i < 3; i++) {
        struct msg m, again;
        char err[ERR_LEN] = "", why[ERR_LEN] = "";
        if (msg_decode(&m, data, size, &limits[i], &arena, err) < 0) {
            if (err[0] == '\0')
                fail("rejected without a reason", &m, "");
            continue;
        }
        if (!msg_sample_blobs_inside(&m, data, size))
            fail("blob outside the input", &m, "");
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (msg_encode(&m, &sb, err) < 0)
            fail("re-encode failed", &m, err);
        if (msg_decode(&again, sb.data, sb.size, &limits[i], &arena2, err) < 0)
            fail("re-decode failed", &m, err);
        if (!msg_sample_equal(&m, &again, why))
            fail("re-decoded message differs", &m, why);
        msgpack_sbuffer_destroy(&sb);
    }
    return 0;
}
