/*
 * npy.h: NumPy .npy files, the format embeddings and labels leave and enter
 * the project in (`lejepa embed` writes PREFIX.emb.npy and PREFIX.labels.npy;
 * evaluators and lejepa-stat read them). Little-endian, C order, 1 to 4
 * dimensions, a handful of dtypes. Writing produces format 1.0 with the
 * data 64-byte aligned, as numpy does; reading accepts versions 1.0, 2.0 and
 * 3.0. No memory mapping, no pickled object arrays, no structured dtypes.
 */
#ifndef LEJEPA_NPY_H
#define LEJEPA_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 4
/* Headers longer than this are refused on read (numpy's own limit for
 * np.load is 10000 bytes); ours are 64 to 128 bytes. */
#define NPY_MAX_HEADER_LEN 65535

enum npy_dtype {
    NPY_F32,   /* '<f4' */
    NPY_F64,   /* '<f8' (read only in practice; writing works too) */
    NPY_I32,   /* '<i4' */
    NPY_I64,   /* '<i8' */
    NPY_U8,    /* '|u1' */
};

/* One array in memory, C order. data is 64-byte aligned and owned by the
 * struct: release it with npy_free(). */
struct npy_array {
    enum npy_dtype dtype;
    int ndim;                       /* 1..NPY_MAX_DIMS */
    int64_t shape[NPY_MAX_DIMS];    /* unused entries are 0 */
    void *data;
    size_t nbytes;                  /* product(shape) * itemsize */
};

/* Bytes per element, and the descr string ('<f4', ...). */
size_t npy_dtype_size(enum npy_dtype dtype);
const char *npy_dtype_descr(enum npy_dtype dtype);

/* Reads a whole .npy file (a regular file: its size is checked against the
 * header before anything is allocated). Returns 0, or -1 with the reason
 * (naming path) in err (ERR_LEN): unreadable file, bad magic or version, malformed header,
 * big-endian or unsupported dtype, fortran_order True, ndim outside 1..4,
 * data shorter or longer than the shape says. On success the caller frees
 * out with npy_free(); on failure out holds nothing to free. */
int npy_read(const char *path, struct npy_array *out, char *err);
void npy_free(struct npy_array *a);

/* Writes data (C order, product(shape) elements of dtype) as a format 1.0
 * .npy file, atomically (util_atomic_*: readers see the old file or the new
 * one). ndim 1..4, every shape entry >= 0; data may be NULL when the array
 * is empty. Returns 0, or -1 with the reason in err. */
int npy_write(const char *path, enum npy_dtype dtype, int ndim,
              const int64_t *shape, const void *data, char *err);

/* Reads a 2-D float32 or float64 matrix as float32 (float64 is converted;
 * a value outside the float range is an error). On success *data is
 * (rows, cols) row-major, 64-byte aligned; the caller frees it with
 * util_free_aligned(). Returns 0, or -1 with the reason in err. */
int npy_read_matrix_f32(const char *path, float **data, int64_t *rows,
                        int64_t *cols, char *err);

/* Reads 1-D integer labels (int32 or int64, as `lejepa embed` and numpy
 * write them) as int32, each in [0, max_label). On success *labels has *n
 * entries; the caller frees it with free(). Returns 0, or -1 with the
 * reason (naming the file) in err. */
int npy_read_labels(const char *path, int64_t max_label, int32_t **labels,
                    int64_t *n, char *err);

#endif
