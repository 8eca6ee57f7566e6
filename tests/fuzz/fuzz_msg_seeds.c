/*
 * fuzz_msg_seeds.c: writes the fuzzer's seed corpus: one encoded sample
 * message per kind and variant (tests/test_msg_samples.c), as
 * DIR/<KIND>-<variant>.msgpack. Usage: fuzz_msg_seeds DIR
 */
#include <stdio.h>

#include "msg.h"
#include "test_msg_samples.h"
#include "util.h"

int main(int argc, char **argv)
{
    if (argc != 2)
        die("usage: fuzz_msg_seeds DIR");
    char err[ERR_LEN];
    if (util_mkdir_p(argv[1], err) < 0)
        die("%s", err);
    int written = 0;
    for (int k = MSG_KIND_FIRST; k <= MSG_KIND_LAST; k++)
        for (int v = 0; v < MSG_SAMPLE_VARIANTS; v++) {
            struct msg m;
            msgpack_sbuffer sb;
            char path[4096];
            msg_sample(&m, (enum msg_kind)k, v);
            msgpack_sbuffer_init(&sb);
            if (msg_encode(&m, &sb, err) < 0)
                die("%s", err);
            snprintf(path, sizeof path, "%s/%s-%d.msgpack", argv[1],
                     msg_kind_name((enum msg_kind)k), v);
            if (util_write_file_atomic(path, sb.data, sb.size, err) < 0)
                die("%s", err);
            msgpack_sbuffer_destroy(&sb);
            written++;
        }
    printf("fuzz_msg_seeds: %d messages in %s\n", written, argv[1]);
    return 0;
}
