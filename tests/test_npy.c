/*
 * test_npy.c: .npy files round-trip for every dtype and rank, data starts at
 * a multiple of 64 bytes, hand-written and numpy-written headers in all the
 * spellings numpy accepts are read, and every malformed file is refused with
 * the file named and the right reason. The numpy-written fixtures come from
 * tools/make-npy-fixtures.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"
#include "testing.h"
#include "util.h"

static char *tmp_dir;

static const char *tmp_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

/* A .npy file from parts: magic, version, header length in the version's
 * width, header text as given, then data bytes. */
static void write_raw(const char *path, int major, const char *header,
                      const void *data, size_t nbytes)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    size_t hlen = strlen(header);
    unsigned char pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major, 0};
    size_t plen = 10;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8 & 0xff);
    if (major >= 2) {
        pre[10] = (unsigned char)(hlen >> 16 & 0xff);
        pre[11] = (unsigned char)(hlen >> 24 & 0xff);
        plen = 12;
    }
    CU_ASSERT_EQUAL(fwrite(pre, 1, plen, f), plen);
    CU_ASSERT_EQUAL(fwrite(header, 1, hlen, f), hlen);
    if (nbytes)
        CU_ASSERT_EQUAL(fwrite(data, 1, nbytes, f), nbytes);
    fclose(f);
}

static void test_round_trip_all_dtypes_and_ranks(void)
{
    static const int64_t shapes[NPY_MAX_DIMS][NPY_MAX_DIMS] = {
        {7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2},
    };
    static const enum npy_dtype dtypes[] = {NPY_F32, NPY_F64, NPY_I32,
                                            NPY_I64, NPY_U8};
    uint64_t rng = 11;
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        for (int ndim = 1; ndim <= NPY_MAX_DIMS; ndim++) {
            char err[ERR_LEN];
            size_t count = 1;
            for (int i = 0; i < ndim; i++)
                count *= (size_t)shapes[ndim - 1][i];
            size_t nbytes = count * npy_dtype_size(dtypes[d]);
            unsigned char *src = malloc(nbytes);
            for (size_t i = 0; i < nbytes; i++)
                src[i] = (unsigned char)testing_rand_u64(&rng);
            const char *path = tmp_path("rt.npy");
            CU_ASSERT_EQUAL_FATAL(npy_write(path, dtypes[d], ndim,
                                            shapes[ndim - 1], src, err), 0);
            struct npy_array a;
            int rc = npy_read(path, &a, err);
            if (rc != 0)
                fprintf(stderr, "%s\n", err);
            CU_ASSERT_EQUAL_FATAL(rc, 0);
            CU_ASSERT_EQUAL(a.dtype, dtypes[d]);
            CU_ASSERT_EQUAL(a.ndim, ndim);
            for (int i = 0; i < ndim; i++)
                CU_ASSERT_EQUAL(a.shape[i], shapes[ndim - 1][i]);
            CU_ASSERT_EQUAL(a.nbytes, nbytes);
            CU_ASSERT(memcmp(a.data, src, nbytes) == 0);
            CU_ASSERT_EQUAL((uintptr_t)a.data % 64, 0);
            npy_free(&a);
            free(src);
        }
    }
}

/* The layout numpy writes: version 1.0, the header padded with spaces and
 * ending in '\n' so that the data starts at a multiple of 64. */
static void test_layout_is_numpy_v1_aligned(void)
{
    char err[ERR_LEN];
    static const int64_t shape[] = {3, 2};
    static const int32_t v[6] = {1, -2, 3, -4, 5, -6};
    const char *path = tmp_path("layout.npy");
    CU_ASSERT_EQUAL_FATAL(npy_write(path, NPY_I32, 2, shape, v, err), 0);
    size_t len;
    char *buf = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT(memcmp(buf, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
    CU_ASSERT_EQUAL((10 + hlen) % 64, 0);
    CU_ASSERT_EQUAL(len, 10 + hlen + sizeof v);
    CU_ASSERT_EQUAL(buf[10 + hlen - 1], '\n');
    const char *want = "{'descr': '<i4', 'fortran_order': False, "
                       "'shape': (3, 2), }";
    CU_ASSERT(strncmp(buf + 10, want, strlen(want)) == 0);
    CU_ASSERT(memcmp(buf + 10 + hlen, v, sizeof v) == 0);
    free(buf);

    /* 1-D shapes get Python's one-tuple spelling. */
    static const int64_t one[] = {5};
    static const uint8_t bytes[5] = {1, 2, 3, 4, 255};
    CU_ASSERT_EQUAL_FATAL(npy_write(path, NPY_U8, 1, one, bytes, err), 0);
    buf = util_read_file(path, &len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf + 10, "'descr': '|u1'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf + 10, "'shape': (5,), }"));
    CU_ASSERT_EQUAL(len % 64, 5);
    free(buf);
}

static void test_empty_arrays(void)
{
    char err[ERR_LEN];
    static const int64_t shape[] = {0, 64};
    const char *path = tmp_path("empty.npy");
    CU_ASSERT_EQUAL_FATAL(npy_write(path, NPY_F32, 2, shape, NULL, err), 0);
    float *m;
    int64_t rows, cols;
    CU_ASSERT_EQUAL_FATAL(npy_read_matrix_f32(path, &m, &rows, &cols, err), 0);
    CU_ASSERT_EQUAL(rows, 0);
    CU_ASSERT_EQUAL(cols, 64);
    util_free_aligned(m);
}

/* Header spellings numpy (or Python's literal_eval) accepts. */
static void test_hand_written_headers(void)
{
    static const float f6[6] = {1, 2, 3, 4, 5, 6};
    static const struct {
        int major;
        const char *header;
        enum npy_dtype dtype;
        int ndim;
        int64_t shape[2];
        size_t nbytes;
    } cases[] = {
        {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
         NPY_F32, 2, {2, 3}, 24},
        {3, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }\n",
         NPY_F32, 2, {3, 2}, 24},
        {1, "{'shape': (6,), 'fortran_order': False, 'descr': '<f4'}",
         NPY_F32, 1, {6}, 24},
        {1, "{ \"descr\" : \"<i4\" ,\"fortran_order\":False,"
            "\"shape\":( 2 , 3 , ) }   \n", NPY_I32, 2, {2, 3}, 24},
        {1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3L,), }\n",
         NPY_I64, 1, {3}, 24},
        {1, "{'descr':'<f8','fortran_order':False,'shape':(3,)}",
         NPY_F64, 1, {3}, 24},
        {1, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }\n",
         NPY_U8, 1, {5}, 5},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }\n",
         NPY_F32, 2, {0, 3}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[ERR_LEN];
        const char *path = tmp_path("hand.npy");
        write_raw(path, cases[i].major, cases[i].header, f6, cases[i].nbytes);
        struct npy_array a;
        int rc = npy_read(path, &a, err);
        if (rc != 0)
            fprintf(stderr, "case %zu: %s\n", i, err);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_EQUAL(a.dtype, cases[i].dtype);
        CU_ASSERT_EQUAL(a.ndim, cases[i].ndim);
        CU_ASSERT_EQUAL(a.shape[0], cases[i].shape[0]);
        CU_ASSERT_EQUAL(a.shape[1], cases[i].shape[1]);
        CU_ASSERT_EQUAL(a.nbytes, cases[i].nbytes);
        CU_ASSERT(a.nbytes == 0 || memcmp(a.data, f6, a.nbytes) == 0);
        npy_free(&a);
    }
}

/* Every malformed file is refused; the message names the file and says why. */
static void test_rejections_name_file_and_reason(void)
{
    static const unsigned char zeros[64];
    static const struct {
        int major;
        const char *header;
        size_t nbytes;
        const char *reason;
    } cases[] = {
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
         20, "truncated data"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
         28, "trailing bytes"},
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n",
         24, "fortran_order=True"},
        {1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }\n",
         16, "unsupported dtype '<c8'"},
        {1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n",
         8, "big-endian dtype '>f4'"},
        {1, "{'descr': [('a', '<f4')], 'fortran_order': False, "
            "'shape': (2,), }\n", 8, "structured dtypes"},
        {1, "hello, world\n", 0, "does not start with '{'"},
        {1, "{'descr': '<f4', 'fortran_order': False}\n", 0,
         "lacks key 'shape'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
            "'extra': 1}\n", 8, "unexpected key 'extra'"},
        {1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
            "'shape': (2,)}\n", 8, "duplicate key 'descr'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) x}\n",
         24, "expected ',' or '}'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}\n",
         0, "non-negative integers"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} junk\n",
         24, "unexpected text after '}'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}\n", 4,
         "0-d"},
        {1, "{'descr': '<f4', 'fortran_order': False, "
            "'shape': (1, 1, 1, 1, 1)}\n", 4, "more than 4 dimensions"},
        {1, "{'descr': '<f4', 'fortran_order': False, "
            "'shape': (4294967296, 4294967296)}\n", 0, "too large"},
        {1, "{'descr': '<f4', 'fortran_order': False, "
            "'shape': (99999999999999999999,)}\n", 0, "too large"},
        {4, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", 8,
         "version 4.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[ERR_LEN] = "";
        const char *path = tmp_path("bad.npy");
        write_raw(path, cases[i].major, cases[i].header, zeros,
                  cases[i].nbytes);
        struct npy_array a;
        CU_ASSERT_EQUAL(npy_read(path, &a, err), -1);
        int ok = strstr(err, cases[i].reason) && strstr(err, path);
        if (!ok)
            fprintf(stderr, "case %zu: want '%s', got '%s'\n", i,
                    cases[i].reason, err);
        CU_ASSERT(ok);
    }
}

static void test_rejects_bad_prefix(void)
{
    char err[ERR_LEN];
    struct npy_array a;
    const char *path = tmp_path("prefix.npy");

    CU_ASSERT_EQUAL(util_write_file_atomic(path, "\x93NUM", 4, err), 0);
    CU_ASSERT_EQUAL(npy_read(path, &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "too short"));

    static const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    CU_ASSERT_EQUAL(util_write_file_atomic(path, png, sizeof png - 1, err), 0);
    CU_ASSERT_EQUAL(npy_read(path, &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad magic"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));

    /* Header length pointing past the end of the file. */
    static const char cut[] = "\x93NUMPY\x01\x00\x76\x00{'descr'";
    CU_ASSERT_EQUAL(util_write_file_atomic(path, cut, sizeof cut - 1, err), 0);
    CU_ASSERT_EQUAL(npy_read(path, &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "truncated .npy header"));

    /* A NUL inside the header. */
    static const char nul[] = "\x93NUMPY\x01\x00\x04\x00{\0}\n";
    CU_ASSERT_EQUAL(util_write_file_atomic(path, nul, sizeof nul - 1, err), 0);
    CU_ASSERT_EQUAL(npy_read(path, &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "NUL"));

    CU_ASSERT_EQUAL(npy_read(tmp_path("missing.npy"), &a, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing.npy: cannot open"));
}

static void test_write_rejects_bad_arguments(void)
{
    char err[ERR_LEN];
    static const int64_t neg[] = {2, -1};
    static const int64_t five[] = {1, 1, 1, 1, 1};
    static const float v[2] = {0};
    CU_ASSERT_EQUAL(npy_write(tmp_path("w.npy"), NPY_F32, 2, neg, v, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "negative"));
    CU_ASSERT_EQUAL(npy_write(tmp_path("w.npy"), NPY_F32, 5, five, v, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ndim 5"));
    CU_ASSERT_EQUAL(npy_write(tmp_path("w.npy"), NPY_F32, 1, five, NULL, err),
                    -1);
    CU_ASSERT_EQUAL(npy_write("/nonexistent-dir/w.npy", NPY_F32, 1, five, v,
                              err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent-dir/w.npy"));
}

static void test_read_matrix_converts_f8(void)
{
    char err[ERR_LEN];
    static const int64_t shape[] = {2, 3};
    static const double d[6] = {0.1, -2.5, 3e10, 1e-30, -0.0, 7};
    const char *path = tmp_path("f8.npy");
    CU_ASSERT_EQUAL_FATAL(npy_write(path, NPY_F64, 2, shape, d, err), 0);
    float *m;
    int64_t rows, cols;
    CU_ASSERT_EQUAL_FATAL(npy_read_matrix_f32(path, &m, &rows, &cols, err), 0);
    CU_ASSERT_EQUAL(rows, 2);
    CU_ASSERT_EQUAL(cols, 3);
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(m[i], (float)d[i]);
    util_free_aligned(m);

    static const double big[6] = {0, 0, 0, 0, 1e300, 0};
    CU_ASSERT_EQUAL_FATAL(npy_write(path, NPY_F64, 2, shape, big, err), 0);
    CU_ASSERT_EQUAL(npy_read_matrix_f32(path, &m, &rows, &cols, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "row 1, column 1"));
    CU_ASSERT_PTR_NULL(m);

    static const int64_t flat[] = {6};
    CU_ASSERT_EQUAL_FATAL(npy_write(path, NPY_F64, 1, flat, d, err), 0);
    CU_ASSERT_EQUAL(npy_read_matrix_f32(path, &m, &rows, &cols, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "expected a 2-D"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "(6,)"));

    static const int32_t ints[6] = {0};
    CU_ASSERT_EQUAL_FATAL(npy_write(path, NPY_I32, 2, shape, ints, err), 0);
    CU_ASSERT_EQUAL(npy_read_matrix_f32(path, &m, &rows, &cols, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "'<i4'"));
}

/* Files numpy itself wrote (tools/make-npy-fixtures.py): element i in C
 * order is i * 0.5 - 1 (floats), i * 3 - 7 (ints), i * 7 % 256 (uint8). */
static void check_fixture(const char *name, enum npy_dtype dtype, int ndim,
                          const int64_t *shape)
{
    char err[ERR_LEN];
    struct npy_array a;
    int rc = npy_read(testing_fixture(name), &a, err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(a.dtype, dtype);
    CU_ASSERT_EQUAL(a.ndim, ndim);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        CU_ASSERT_EQUAL(a.shape[i], shape[i]);
        count *= (size_t)shape[i];
    }
    CU_ASSERT_EQUAL_FATAL(a.nbytes, count * npy_dtype_size(dtype));
    for (size_t i = 0; i < count; i++) {
        double f = (double)i * 0.5 - 1, n = (double)i * 3 - 7;
        switch (dtype) {
        case NPY_F32: CU_ASSERT_EQUAL(((float *)a.data)[i], (float)f); break;
        case NPY_F64: CU_ASSERT_EQUAL(((double *)a.data)[i], f); break;
        case NPY_I32: CU_ASSERT_EQUAL(((int32_t *)a.data)[i], n); break;
        case NPY_I64: CU_ASSERT_EQUAL(((int64_t *)a.data)[i], n); break;
        case NPY_U8:
            CU_ASSERT_EQUAL(((uint8_t *)a.data)[i], i * 7 % 256);
            break;
        }
    }
    npy_free(&a);
}

static void test_numpy_written_fixtures(void)
{
    check_fixture("npy/f4_3x4.npy", NPY_F32, 2, (int64_t[]){3, 4});
    check_fixture("npy/f8_2x3.npy", NPY_F64, 2, (int64_t[]){2, 3});
    check_fixture("npy/i4_5.npy", NPY_I32, 1, (int64_t[]){5});
    check_fixture("npy/i8_2x2x2.npy", NPY_I64, 3, (int64_t[]){2, 2, 2});
    check_fixture("npy/u1_2x1x2x3.npy", NPY_U8, 4, (int64_t[]){2, 1, 2, 3});
    check_fixture("npy/f4_0x3.npy", NPY_F32, 2, (int64_t[]){0, 3});
    check_fixture("npy/f4_2x3_v2.npy", NPY_F32, 2, (int64_t[]){2, 3});

    char err[ERR_LEN];
    struct npy_array a;
    CU_ASSERT_EQUAL(npy_read(testing_fixture("npy/f4_3x2_fortran.npy"), &a,
                             err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "fortran_order=True"));
    CU_ASSERT_EQUAL(npy_read(testing_fixture("npy/f4_2x2_bigendian.npy"), &a,
                             err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "big-endian"));
}

int main(void)
{
    tmp_dir = testing_tmpdir();
    static const struct testing_case cases[] = {
        {"round trip of every dtype and rank", test_round_trip_all_dtypes_and_ranks},
        {"numpy v1 layout, data 64-byte aligned", test_layout_is_numpy_v1_aligned},
        {"empty arrays", test_empty_arrays},
        {"hand-written header spellings", test_hand_written_headers},
        {"rejections name file and reason", test_rejections_name_file_and_reason},
        {"bad magic, short and cut files", test_rejects_bad_prefix},
        {"write rejects bad arguments", test_write_rejects_bad_arguments},
        {"2-D matrix read converts float64", test_read_matrix_converts_f8},
        {"numpy-written fixtures", test_numpy_written_fixtures},
        {NULL, NULL},
    };
    int rc = testing_run("npy", cases);
    testing_rmtree(tmp_dir);
    free(tmp_dir);
    return rc;
}
