/*
 * test_safetensors.c: files round-trip exactly; every truncation and every
 * inconsistent header is refused with a reason, never half-loaded.
 */
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "testing.h"
#include "util.h"

static char *write_sample(const char *dir, float *w, int64_t *steps)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    for (int i = 0; i < 6; i++)
        w[i] = 0.5f * (float)i - 1.0f;
    steps[0] = 7;
    steps[1] = -3;
    struct st_tensor t[2] = {
        {.name = "layer.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3},
         .data = w, .nbytes = 24},
        {.name = "steps", .dtype = ST_I64, .ndim = 1, .shape = {2},
         .data = steps, .nbytes = 16},
    };
    const char *keys[] = {"format", "config"};
    const char *vals[] = {"lejepa-ckpt-1", "[run]\nseed = 3\n\"q\""};
    char err[ERR_LEN];
    CU_ASSERT_EQUAL(st_write(path, t, 2, keys, vals, 2, err), 0);
    return path;
}

static void test_roundtrip(void)
{
    char *dir = testing_tmpdir();
    float w[6];
    int64_t steps[2];
    const char *path = write_sample(dir, w, steps);
    struct st_file f;
    char err[ERR_LEN];
    CU_ASSERT_EQUAL_FATAL(st_open(&f, path, err), 0);
    CU_ASSERT_EQUAL(f.n, 2);
    const struct st_tensor *t = st_find(&f, "layer.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(t->dtype, ST_F32);
    CU_ASSERT_EQUAL(t->ndim, 2);
    CU_ASSERT_EQUAL(t->shape[1], 3);
    CU_ASSERT_EQUAL(memcmp(t->data, w, sizeof w), 0);
    CU_ASSERT_EQUAL((uintptr_t)t->data % 8, 0);
    t = st_find(&f, "steps");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(memcmp(t->data, steps, sizeof steps), 0);
    CU_ASSERT_STRING_EQUAL(st_meta(&f, "format"), "lejepa-ckpt-1");
    CU_ASSERT_STRING_EQUAL(st_meta(&f, "config"), "[run]\nseed = 3\n\"q\"");
    CU_ASSERT_PTR_NULL(st_meta(&f, "nope"));
    st_close(&f);
    testing_rmtree(dir);
    free(dir);
}

static void test_every_truncation_refused(void)
{
    char *dir = testing_tmpdir();
    float w[6];
    int64_t steps[2];
    const char *path = write_sample(dir, w, steps);
    size_t len;
    char err[ERR_LEN];
    char *full = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(full);
    char cut[4096];
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    for (size_t n = 0; n < len; n++) {
        CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(cut, full, n, err), 0);
        struct st_file f;
        err[0] = '\0';
        CU_ASSERT_EQUAL(st_open(&f, cut, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cut));
    }
    free(full);
    testing_rmtree(dir);
    free(dir);
}

/* The checksum st_write adds catches a corrupted byte anywhere (CRC-32C
 * detects every burst up to 32 bits), with a message naming the file. The
 * one way through is a flip inside the checksum's own key, which makes the
 * file look like one without a checksum: it then opens with checksummed
 * false, and ckpt.c refuses a checkpoint version that must have one. */
static void test_every_flipped_byte_refused(void)
{
    char *dir = testing_tmpdir();
    float w[6];
    int64_t steps[2];
    const char *path = write_sample(dir, w, steps);
    size_t len;
    char err[ERR_LEN];
    char *full = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(full);
    struct st_file f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, path, err), 0);
    CU_ASSERT(f.checksummed);
    CU_ASSERT_PTR_NOT_NULL(st_meta(&f, ST_META_CHECKSUM));
    st_close(&f);
    char bad[4096];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    size_t refused = 0, named = 0, mismatch = 0, unchecked = 0;
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit += 7) {
            full[i] ^= (char)(1 << bit);
            CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(bad, full, len, err), 0);
            full[i] ^= (char)(1 << bit);
            err[0] = '\0';
            int rc = st_open(&f, bad, err);
            if (rc == 0) {
                CU_ASSERT_FALSE(f.checksummed);
                unchecked++;
                st_close(&f);
            }
            refused += rc == -1;
            named += rc == -1 && strstr(err, bad) != NULL;
            mismatch += strstr(err, "checksum mismatch") != NULL;
        }
    CU_ASSERT_EQUAL(refused + unchecked, 2 * len);
    CU_ASSERT_EQUAL(named, refused);
    CU_ASSERT(unchecked <= 2 * strlen(ST_META_CHECKSUM));
    /* every flip in the tensor data is a mismatch, not some other error */
    CU_ASSERT(mismatch >= 2 * (24 + 16));
    free(full);
    testing_rmtree(dir);
    free(dir);
}

/* Writes a file with the given JSON header and data bytes. */
static void write_raw(const char *path, const char *header, size_t data_len)
{
    size_t hl = strlen(header);
    char *buf = xcalloc(8 + hl + data_len, 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    char err[ERR_LEN];
    CU_ASSERT_EQUAL(util_write_file_atomic(path, buf, 8 + hl + data_len, err), 0);
    free(buf);
}

static void test_inconsistent_headers_refused(void)
{
    static const struct {
        const char *header;
        size_t data;
        const char *reason;
    } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
         "shape needs"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
         "unsupported dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
         "holes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12,
         "holes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
         "outside the file"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
         "bad dimension"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
         "twice"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "not a string"},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "twice"},
        {"{\"__metadata__\":{},\"__metadata__\":{\"k\":\"2\"}}", 0, "twice"},
        {"[1,2]", 0, "not a JSON object"},
        {"{\"a\":", 0, "bad header"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,4],"
         "\"data_offsets\":[0,4]}}", 4, "bad dimension"},
    };
    char *dir = testing_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_raw(path, bad[i].header, bad[i].data);
        struct st_file f;
        char err[ERR_LEN] = "";
        CU_ASSERT_EQUAL(st_open(&f, path, err), -1);
        if (!strstr(err, bad[i].reason))
            fprintf(stderr, "\ncase %zu: got '%s', want '%s'\n", i, err,
                    bad[i].reason);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].reason));
    }
    /* A file without a checksum (PyTorch's) opens, and says so. */
    write_raw(path, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    struct st_file plain;
    char perr[ERR_LEN];
    CU_ASSERT_EQUAL(st_open(&plain, path, perr), 0);
    CU_ASSERT_FALSE(plain.checksummed);
    st_close(&plain);
    /* A checksum somewhere else than st_write puts it is refused. */
    write_raw(path, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
              "\"__metadata__\":{\"checksum\":\"crc32c:00000000\"}}", 2);
    CU_ASSERT_EQUAL(st_open(&plain, path, perr), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(perr, "not in the form and place"));
    /* A header length beyond the file is refused before any parsing. */
    char raw[16] = {(char)0xff, (char)0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    char err[ERR_LEN];
    CU_ASSERT_EQUAL(util_write_file_atomic(path, raw, 10, err), 0);
    struct st_file f;
    CU_ASSERT_EQUAL(st_open(&f, path, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "truncated"));
    testing_rmtree(dir);
    free(dir);
}

/* n one-byte tensors "blocks.<i>.w" (data byte i % 251), except that the
 * tensor at index dup_at (if < n) repeats the name of tensor dup_of. */
static int write_many(const char *path, size_t n, size_t dup_at, size_t dup_of,
                      char *err)
{
    struct st_tensor *t = xcalloc(n, sizeof *t);
    char (*names)[32] = xcalloc(n, sizeof *names);
    unsigned char *data = xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "blocks.%zu.w", i == dup_at ? dup_of : i);
        data[i] = (unsigned char)(i % 251);
        t[i] = (struct st_tensor){.name = names[i], .dtype = ST_U8, .ndim = 1,
                                  .shape = {1}, .data = data + i, .nbytes = 1};
    }
    int rc = st_write(path, t, n, NULL, NULL, 0, err);
    free(t);
    free(names);
    free(data);
    return rc;
}

/* Row 13 of issue 11: names are checked unique by sorting, so a header of
 * 100k entries opens, finds every tensor, and a single repeated name is
 * caught wherever the two copies are. */
static void test_many_tensors(void)
{
    const size_t n = 100000;
    char *dir = testing_tmpdir();
    char path[4096], err[ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/many.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(write_many(path, n, n, 0, err), 0);
    struct st_file f;
    CU_ASSERT_EQUAL_FATAL(st_open(&f, path, err), 0);
    CU_ASSERT_EQUAL(f.n, n);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "blocks.%zu.w", i);
        const struct st_tensor *t = st_find(&f, name);
        found += t && *(const unsigned char *)t->data == i % 251;
    }
    CU_ASSERT_EQUAL(found, n);
    CU_ASSERT_PTR_NULL(st_find(&f, "blocks.100000.w"));
    CU_ASSERT_PTR_NULL(st_find(&f, ""));
    st_close(&f);
    const size_t pairs[][2] = {{1, 0}, {n - 1, 0}, {54321, 54320}, {n - 1, n - 2}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        CU_ASSERT_EQUAL_FATAL(write_many(path, n, pairs[k][0], pairs[k][1], err), 0);
        char want[64];
        snprintf(want, sizeof want, "'blocks.%zu.w' appears twice", pairs[k][1]);
        err[0] = '\0';
        CU_ASSERT_EQUAL(st_open(&f, path, err), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    }
    testing_rmtree(dir);
    free(dir);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"round trip", test_roundtrip},
        {"every truncation refused", test_every_truncation_refused},
        {"inconsistent headers refused", test_inconsistent_headers_refused},
        {"every flipped byte refused", test_every_flipped_byte_refused},
        {"many tensors, one name twice", test_many_tensors},
        {NULL, NULL},
    };
    return testing_run("safetensors", cases);
}
