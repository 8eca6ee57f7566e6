/*
 * npy.c: reading and writing NumPy .npy files (see npy.h). The header is a
 * Python dict literal; we parse exactly the three keys numpy writes and
 * refuse anything else with a message that names the file and the problem.
 * The data is copied, never memory-mapped, and never byte-swapped: big-endian
 * files are refused with a hint.
 */
#include "npy.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
#define NPY_DESCR_MAX 32

static const struct {
    enum npy_dtype dtype;
    const char *descr;
    size_t size;
} npy_types[] = {
    {NPY_F32, "<f4", 4},
    {NPY_F64, "<f8", 8},
    {NPY_I32, "<i4", 4},
    {NPY_I64, "<i8", 8},
    {NPY_U8, "|u1", 1},
};
#define NPY_NTYPES (sizeof npy_types / sizeof npy_types[0])

size_t npy_dtype_size(enum npy_dtype dtype)
{
    for (size_t i = 0; i < NPY_NTYPES; i++)
        if (npy_types[i].dtype == dtype)
            return npy_types[i].size;
    CHECK(!"unknown npy dtype");
    return 0;
}

const char *npy_dtype_descr(enum npy_dtype dtype)
{
    for (size_t i = 0; i < NPY_NTYPES; i++)
        if (npy_types[i].dtype == dtype)
            return npy_types[i].descr;
    CHECK(!"unknown npy dtype");
    return NULL;
}

/* "(3, 4)", "(5,)": the Python spelling, for headers and messages. */
static void npy_format_shape(char *buf, size_t cap, int ndim,
                             const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld",
                              (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, ndim == 1 ? ",)" : ")");
}

/* Bytes for product(shape) elements of size itemsize; -1 on overflow. */
static int npy_data_bytes(int ndim, const int64_t *shape, size_t itemsize,
                          size_t *nbytes)
{
    uint64_t total = itemsize;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 ||
            __builtin_mul_overflow(total, (uint64_t)shape[i], &total))
            return -1;
    }
    if (total > (uint64_t)PTRDIFF_MAX)
        return -1;
    *nbytes = (size_t)total;
    return 0;
}

/* ---- header parsing ---- */

struct npy_header {
    char descr[NPY_DESCR_MAX];
    int fortran_order;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    int have_descr, have_fortran, have_shape;
};

struct npy_parser {
    const char *p;        /* NUL-terminated header text */
    const char *path;
    char *err;
};

static void npy_skip_ws(struct npy_parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
        ps->p++;
}

/* A quoted Python string ('...' or "...") without escapes into out[cap]. */
static int npy_parse_string(struct npy_parser *ps, char *out, size_t cap,
                            const char *what)
{
    char q = *ps->p;
    if (q != '\'' && q != '"')
        return errf(ps->err, "%s: npy header: expected a quoted %s", ps->path,
                    what);
    const char *s = ++ps->p;
    while (*ps->p && *ps->p != q && *ps->p != '\\')
        ps->p++;
    if (*ps->p != q)
        return errf(ps->err, "%s: npy header: unterminated or escaped %s",
                    ps->path, what);
    size_t n = (size_t)(ps->p - s);
    if (n >= cap)
        return errf(ps->err, "%s: npy header: %s '%.*s...' is too long",
                    ps->path, what, 16, s);
    memcpy(out, s, n);
    out[n] = '\0';
    ps->p++;
    return 0;
}

/* A shape tuple: "()", "(5,)", "(3, 4)", "(3, 4,)"; Python 2 "3L" too. */
static int npy_parse_shape(struct npy_parser *ps, struct npy_header *h)
{
    if (*ps->p != '(')
        return errf(ps->err, "%s: npy header: 'shape' must be a tuple like "
                    "(3, 4)", ps->path);
    ps->p++;
    h->ndim = 0;
    for (;;) {
        npy_skip_ws(ps);
        if (*ps->p == ')')
            break;
        if (*ps->p < '0' || *ps->p > '9')
            return errf(ps->err, "%s: npy header: 'shape' entries must be "
                        "non-negative integers", ps->path);
        if (h->ndim == NPY_MAX_DIMS)
            return errf(ps->err, "%s: arrays with more than %d dimensions are "
                        "not supported", ps->path, NPY_MAX_DIMS);
        errno = 0;
        char *end;
        long long v = strtoll(ps->p, &end, 10);
        if (errno == ERANGE)
            return errf(ps->err, "%s: npy header: shape entry %.24s is too "
                        "large", ps->path, ps->p);
        h->shape[h->ndim++] = v;
        ps->p = end;
        if (*ps->p == 'L')
            ps->p++;
        npy_skip_ws(ps);
        if (*ps->p == ',')
            ps->p++;
        else if (*ps->p != ')')
            return errf(ps->err, "%s: npy header: expected ',' or ')' in "
                        "'shape'", ps->path);
    }
    ps->p++;
    return 0;
}

static int npy_parse_value(struct npy_parser *ps, struct npy_header *h,
                           const char *key)
{
    if (strcmp(key, "descr") == 0) {
        if (h->have_descr)
            return errf(ps->err, "%s: npy header: duplicate key 'descr'",
                        ps->path);
        h->have_descr = 1;
        if (*ps->p == '[')
            return errf(ps->err, "%s: structured dtypes are not supported "
                        "(need a plain numeric array)", ps->path);
        return npy_parse_string(ps, h->descr, sizeof h->descr, "'descr'");
    }
    if (strcmp(key, "fortran_order") == 0) {
        if (h->have_fortran)
            return errf(ps->err, "%s: npy header: duplicate key "
                        "'fortran_order'", ps->path);
        h->have_fortran = 1;
        if (strncmp(ps->p, "True", 4) == 0) {
            h->fortran_order = 1;
            ps->p += 4;
        } else if (strncmp(ps->p, "False", 5) == 0) {
            h->fortran_order = 0;
            ps->p += 5;
        } else {
            return errf(ps->err, "%s: npy header: 'fortran_order' must be "
                        "True or False", ps->path);
        }
        return 0;
    }
    if (strcmp(key, "shape") == 0) {
        if (h->have_shape)
            return errf(ps->err, "%s: npy header: duplicate key 'shape'",
                        ps->path);
        h->have_shape = 1;
        return npy_parse_shape(ps, h);
    }
    return errf(ps->err, "%s: npy header: unexpected key '%s' (expected "
                "'descr', 'fortran_order', 'shape')", ps->path, key);
}

/* The dict literal, in any key order, with or without a trailing comma;
 * after '}' only padding whitespace may follow. */
static int npy_parse_header(const char *text, const char *path,
                            struct npy_header *h, char *err)
{
    struct npy_parser ps = {text, path, err};
    memset(h, 0, sizeof *h);
    npy_skip_ws(&ps);
    if (*ps.p != '{')
        return errf(err, "%s: npy header does not start with '{' (garbage "
                    "header?)", path);
    ps.p++;
    for (;;) {
        npy_skip_ws(&ps);
        if (*ps.p == '}')
            break;
        char key[32];
        if (npy_parse_string(&ps, key, sizeof key, "key") < 0)
            return -1;
        npy_skip_ws(&ps);
        if (*ps.p != ':')
            return errf(err, "%s: npy header: expected ':' after key '%s'",
                        path, key);
        ps.p++;
        npy_skip_ws(&ps);
        if (npy_parse_value(&ps, h, key) < 0)
            return -1;
        npy_skip_ws(&ps);
        if (*ps.p == ',')
            ps.p++;
        else if (*ps.p != '}')
            return errf(err, "%s: npy header: expected ',' or '}' after the "
                        "value of '%s'", path, key);
    }
    ps.p++;
    npy_skip_ws(&ps);
    if (*ps.p)
        return errf(err, "%s: npy header: unexpected text after '}'", path);
    if (!h->have_descr || !h->have_fortran || !h->have_shape)
        return errf(err, "%s: npy header lacks key '%s'", path,
                    !h->have_descr ? "descr"
                    : !h->have_fortran ? "fortran_order" : "shape");
    return 0;
}

/* Maps the descr to our dtype, or explains why not. */
static int npy_lookup_descr(const char *descr, const char *path,
                            enum npy_dtype *dtype, char *err)
{
    for (size_t i = 0; i < NPY_NTYPES; i++)
        if (strcmp(descr, npy_types[i].descr) == 0) {
            *dtype = npy_types[i].dtype;
            return 0;
        }
    /* numpy spells one-byte types with '|'; accept the other prefixes. */
    if ((descr[0] == '<' || descr[0] == '=') && strcmp(descr + 1, "u1") == 0) {
        *dtype = NPY_U8;
        return 0;
    }
    if (descr[0] == '>')
        return errf(err, "%s: big-endian dtype '%s' is not supported; "
                    "convert with arr.astype('<%s')", path, descr, descr + 1);
    return errf(err, "%s: unsupported dtype '%s' (supported: '<f4', '<f8', "
                "'<i4', '<i8', '|u1')", path, descr);
}

/* ---- reading ---- */

static uint32_t npy_le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

int npy_read(const char *path, struct npy_array *out, char *err)
{
    int rc = -1;
    char *text = NULL;
    void *data = NULL;
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        errf(err, "%s: cannot stat: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        errf(err, "%s: not a regular file", path);
        goto cleanup;
    }
    uint64_t file_size = (uint64_t)st.st_size;
    unsigned char pre[12];
    if (file_size < 10 || fread(pre, 1, 10, f) != 10) {
        errf(err, "%s: too short to be a .npy file (%llu bytes)", path,
             (unsigned long long)file_size);
        goto cleanup;
    }
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        errf(err, "%s: not a .npy file (bad magic; expected \\x93NUMPY)", path);
        goto cleanup;
    }
    int major = pre[6], minor = pre[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
        errf(err, "%s: unsupported .npy format version %d.%d (supported: "
             "1.0, 2.0, 3.0)", path, major, minor);
        goto cleanup;
    }
    uint64_t prefix = 10, hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
    if (major >= 2) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            errf(err, "%s: truncated .npy header", path);
            goto cleanup;
        }
        prefix = 12;
        hlen = npy_le32(pre + 8);
    }
    if (hlen > NPY_MAX_HEADER_LEN) {
        errf(err, "%s: .npy header length %llu exceeds the limit %d", path,
             (unsigned long long)hlen, NPY_MAX_HEADER_LEN);
        goto cleanup;
    }
    if (prefix + hlen > file_size) {
        errf(err, "%s: truncated .npy header (%llu bytes announced, file has "
             "%llu)", path, (unsigned long long)hlen,
             (unsigned long long)(file_size - prefix));
        goto cleanup;
    }
    text = xmalloc(hlen + 1);
    if (fread(text, 1, hlen, f) != hlen) {
        errf(err, "%s: read failed in the header", path);
        goto cleanup;
    }
    text[hlen] = '\0';
    if (strlen(text) != hlen) {
        errf(err, "%s: npy header contains a NUL byte (garbage header?)", path);
        goto cleanup;
    }
    struct npy_header h;
    if (npy_parse_header(text, path, &h, err) < 0)
        goto cleanup;
    enum npy_dtype dtype = NPY_F32;
    if (npy_lookup_descr(h.descr, path, &dtype, err) < 0)
        goto cleanup;
    if (h.fortran_order) {
        errf(err, "%s: fortran_order=True arrays are not supported; save "
             "np.ascontiguousarray(arr) instead", path);
        goto cleanup;
    }
    char shape_text[128];
    npy_format_shape(shape_text, sizeof shape_text, h.ndim, h.shape);
    if (h.ndim < 1) {
        errf(err, "%s: 0-d (scalar) arrays are not supported", path);
        goto cleanup;
    }
    size_t nbytes;
    if (npy_data_bytes(h.ndim, h.shape, npy_dtype_size(dtype), &nbytes) < 0) {
        errf(err, "%s: shape %s is too large (byte count overflows)", path,
             shape_text);
        goto cleanup;
    }
    uint64_t have = file_size - prefix - hlen;
    if (have != nbytes) {
        errf(err, "%s: %s: shape %s of '%s' needs %zu data bytes, file has "
             "%llu", path, have < nbytes ? "truncated data" : "trailing bytes "
             "after the data", shape_text, h.descr, nbytes,
             (unsigned long long)have);
        goto cleanup;
    }
    data = xmalloc_aligned(nbytes);
    if (nbytes && fread(data, 1, nbytes, f) != nbytes) {
        errf(err, "%s: read failed in the data: %s", path,
             ferror(f) ? strerror(errno) : "file shrank");
        goto cleanup;
    }
    out->dtype = dtype;
    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof out->shape);
    out->data = data;
    out->nbytes = nbytes;
    data = NULL;
    rc = 0;
cleanup:
    util_free_aligned(data);
    free(text);
    fclose(f);
    return rc;
}

void npy_free(struct npy_array *a)
{
    util_free_aligned(a->data);
    memset(a, 0, sizeof *a);
}

/* ---- writing ---- */

int npy_write(const char *path, enum npy_dtype dtype, int ndim,
              const int64_t *shape, const void *data, char *err)
{
    if (ndim < 1 || ndim > NPY_MAX_DIMS)
        return errf(err, "%s: cannot write ndim %d (supported 1..%d)", path,
                    ndim, NPY_MAX_DIMS);
    size_t nbytes;
    if (npy_data_bytes(ndim, shape, npy_dtype_size(dtype), &nbytes) < 0)
        return errf(err, "%s: cannot write: negative or overflowing shape",
                    path);
    if (nbytes && !data)
        return errf(err, "%s: cannot write: no data for a non-empty array",
                    path);
    char shape_text[128];
    npy_format_shape(shape_text, sizeof shape_text, ndim, shape);
    /* 10 bytes of prefix, the dict, space padding and '\n' so that the data
     * starts at a multiple of NPY_ALIGN. */
    char header[256];
    int len = snprintf(header, sizeof header,
                       "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                       npy_dtype_descr(dtype), shape_text);
    CHECK(len > 0 && len < 160);
    size_t total = (size_t)(10 + len + 1 + NPY_ALIGN - 1) / NPY_ALIGN
                   * NPY_ALIGN;
    size_t hlen = total - 10;
    memset(header + len, ' ', hlen - 1 - (size_t)len);
    header[hlen - 1] = '\n';
    unsigned char pre[10];
    memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);

    struct atomic_file af;
    if (util_atomic_open(&af, path, err) < 0)
        return -1;
    if (util_atomic_write(&af, pre, sizeof pre, err) < 0 ||
        util_atomic_write(&af, header, hlen, err) < 0 ||
        (nbytes && util_atomic_write(&af, data, nbytes, err) < 0))
        return -1;
    return util_atomic_commit(&af, err);
}

int npy_read_matrix_f32(const char *path, float **data, int64_t *rows,
                        int64_t *cols, char *err)
{
    struct npy_array a;
    *data = NULL;
    if (npy_read(path, &a, err) < 0)
        return -1;
    if (a.ndim != 2 || (a.dtype != NPY_F32 && a.dtype != NPY_F64)) {
        char shape_text[128];
        npy_format_shape(shape_text, sizeof shape_text, a.ndim, a.shape);
        errf(err, "%s: expected a 2-D float32 or float64 matrix, got shape %s "
             "of '%s'", path, shape_text, npy_dtype_descr(a.dtype));
        npy_free(&a);
        return -1;
    }
    *rows = a.shape[0];
    *cols = a.shape[1];
    if (a.dtype == NPY_F32) {
        *data = a.data;
        return 0;
    }
    size_t count = a.nbytes / sizeof(double);
    const double *src = a.data;
    float *dst = xmalloc_aligned(count * sizeof(float));
    for (size_t i = 0; i < count; i++) {
        if (isfinite(src[i]) && fabs(src[i]) > FLT_MAX) {
            errf(err, "%s: value %g at row %lld, column %lld is outside the "
                 "float32 range", path, src[i], (long long)(i / (size_t)*cols),
                 (long long)(i % (size_t)*cols));
            util_free_aligned(dst);
            npy_free(&a);
            return -1;
        }
        dst[i] = (float)src[i];
    }
    npy_free(&a);
    *data = dst;
    return 0;
}

int npy_read_labels(const char *path, int64_t max_label, int32_t **labels,
                    int64_t *n, char *err)
{
    struct npy_array a;
    if (npy_read(path, &a, err) < 0)
        return -1;
    int rc = -1;
    int32_t *y = NULL;
    if (a.dtype != NPY_I32 && a.dtype != NPY_I64) {
        errf(err, "%s: labels must be int32 or int64, got %s", path,
             npy_dtype_descr(a.dtype));
        goto cleanup;
    }
    if (a.ndim != 1) {
        errf(err, "%s: labels must be 1-D, got %d dimensions", path, a.ndim);
        goto cleanup;
    }
    y = xmalloc((size_t)(a.shape[0] ? a.shape[0] : 1) * sizeof *y);
    for (int64_t i = 0; i < a.shape[0]; i++) {
        int64_t v = a.dtype == NPY_I32 ? ((const int32_t *)a.data)[i]
                                       : ((const int64_t *)a.data)[i];
        if (v < 0 || v >= max_label) {
            errf(err, "%s: label %lld at row %lld is outside [0, %lld)", path,
                 (long long)v, (long long)i, (long long)max_label);
            goto cleanup;
        }
        y[i] = (int32_t)v;
    }
    *labels = y;
    *n = a.shape[0];
    y = NULL;
    rc = 0;
cleanup:
    free(y);
    npy_free(&a);
    return rc;
}
