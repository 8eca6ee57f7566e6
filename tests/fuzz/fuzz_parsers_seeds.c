/*
 * fuzz_parsers_seeds.c: writes the seed corpora of fuzz_json and
 * fuzz_safetensors: DIR/json/<n>.json (documents touching every JSON
 * construct) and DIR/safetensors/<n>.safetensors (files as st_write makes
 * them, with metadata, every dtype, zero-size and multi-dim tensors).
 * Usage: fuzz_parsers_seeds DIR
 */
#include <stdio.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

static const char *json_seeds[] = {
    "{\"a\": 1.5, \"b\": [1, 2, {\"c\": null}], \"t\": true, \"f\": false}",
    "\"x\\n\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\r\\t\"",
    "[-0, 1e-3, 2E+10, 9007199254740992, -12.5e2]",
    "{\"time\": 1700000000.25, \"step\": 40, \"source\": \"train\", \"loss\": 0.5}",
    "[[[[[[[[]]]]]]], {}, {\"k\": {\"k\": {\"k\": []}}}]",
    ("{\"__metadata__\":{\"format\":\"lejepa-checkpoint\"},\"w\":{\"dtype\":\"F32\","
     "\"shape\":[2,3],\"data_offsets\":[0,24]}}"),
};

static void write_seed(const char *dir, const char *sub, int i, const char *ext,
                       const void *data, size_t len)
{
    char path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (util_mkdir_p(path, err) < 0)
        die("%s", err);
    snprintf(path, sizeof path, "%s/%s/%d.%s", dir, sub, i, ext);
    if (util_write_file_atomic(path, data, len, err) < 0)
        die("%s", err);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        die("usage: fuzz_parsers_seeds DIR");
    int n = (int)(sizeof json_seeds / sizeof json_seeds[0]);
    for (int i = 0; i < n; i++)
        write_seed(argv[1], "json", i, "json", json_seeds[i], strlen(json_seeds[i]));

    float w[6] = {1, 2, 3, 4, 5, 6};
    double d[2] = {0.5, -1};
    int32_t i32[3] = {1, -2, 3};
    int64_t i64[1] = {7};
    uint8_t u8[5] = {1, 2, 3, 4, 5};
    struct st_tensor t[] = {
        {.name = "layer.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = w, .nbytes = 24},
        {.name = "d", .dtype = ST_F64, .ndim = 1, .shape = {2}, .data = d, .nbytes = 16},
        {.name = "i", .dtype = ST_I32, .ndim = 1, .shape = {3}, .data = i32, .nbytes = 12},
        {.name = "scalar", .dtype = ST_I64, .ndim = 0, .data = i64, .nbytes = 8},
        {.name = "u", .dtype = ST_U8, .ndim = 3, .shape = {1, 5, 1}, .data = u8, .nbytes = 5},
        {.name = "empty", .dtype = ST_F32, .ndim = 2, .shape = {0, 4}, .data = w, .nbytes = 0},
    };
    const char *keys[] = {"format", "version", "config"};
    const char *vals[] = {"lejepa-checkpoint", "1", "[run]\nseed = 3\n"};
    const size_t counts[] = {0, 1, 6};
    const size_t metas[] = {0, 3, 2};
    char dir[4096], err[ERR_LEN];
    snprintf(dir, sizeof dir, "%s/safetensors", argv[1]);
    if (util_mkdir_p(dir, err) < 0)
        die("%s", err);
    for (int i = 0; i < 3; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%d.safetensors", dir, i);
        if (st_write(path, t, counts[i], keys, vals, metas[i], err) < 0)
            die("%s", err);
    }
    printf("fuzz_parsers_seeds: %d JSON and 3 safetensors seeds in %s\n", n, argv[1]);
    return 0;
}
