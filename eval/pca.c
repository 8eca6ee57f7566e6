/*
 * pca.c: principal components by covariance + LAPACK dsyevr (see pca.h).
 * Debian's OpenBLAS ships LAPACK but no LAPACKE, so dsyevr_ is called with
 * the Fortran convention: every argument by pointer, 32-bit integers, and
 * one hidden length per character argument at the end (gfortran ABI).
 */
#include "pca.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include <cblas.h>

#include "util.h"

extern void dsyevr_(const char *jobz, const char *range, const char *uplo,
                    const int *n, double *a, const int *lda, const double *vl,
                    const double *vu, const int *il, const int *iu,
                    const double *abstol, int *m, double *w, double *z,
                    const int *ldz, int *isuppz, double *work,
                    const int *lwork, int *iwork, const int *liwork, int *info,
                    size_t jobz_len, size_t range_len, size_t uplo_len);

/* Eigenpairs il..iu (1-based, ascending) of the symmetric a (d, d); a is
 * destroyed. w (iu - il + 1), z (d, iu - il + 1) column-major. */
static int eigen_top(double *a, int d, int il, int iu, double *w, double *z,
                     char *err)
{
    int m = 0, info = 0, lwork = -1, liwork = -1, iwork_query = 0;
    double work_query = 0.0, vl = 0.0, vu = 0.0, abstol = 0.0;
    int *isuppz = xmalloc(2 * (size_t)d * sizeof(int));
    dsyevr_("V", "I", "L", &d, a, &d, &vl, &vu, &il, &iu, &abstol, &m, w, z,
            &d, isuppz, &work_query, &lwork, &iwork_query, &liwork, &info,
            1, 1, 1);
    if (info != 0) {
        free(isuppz);
        return errf(err, "pca: dsyevr workspace query failed (info %d)", info);
    }
    lwork = (int)work_query;
    liwork = iwork_query;
    double *work = xmalloc((size_t)lwork * sizeof(double));
    int *iwork = xmalloc((size_t)liwork * sizeof(int));
    dsyevr_("V", "I", "L", &d, a, &d, &vl, &vu, &il, &iu, &abstol, &m, w, z,
            &d, isuppz, work, &lwork, iwork, &liwork, &info, 1, 1, 1);
    free(work);
    free(iwork);
    free(isuppz);
    if (info != 0 || m != iu - il + 1)
        return errf(err, "pca: dsyevr failed (info %d, %d of %d eigenpairs)",
                    info, m, iu - il + 1);
    return 0;
}

int pca_fit(const float *x, int64_t n, int d, int k, float *mean,
            float *components, double *variances, char *err)
{
    if (n < 2 || d < 1 || k < 1 || k > d || n > INT32_MAX)
        return errf(err, "pca: need 2 <= n < 2^31 and 1 <= k <= d (got n %lld, "
                    "d %d, k %d)", (long long)n, d, k);
    double *sum = xcalloc((size_t)d, sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            float v = x[i * d + j];
            if (!isfinite(v)) {
                free(sum);
                return errf(err, "pca: non-finite value at row %lld, column %d",
                            (long long)i, j);
            }
            sum[j] += v;
        }
    for (int j = 0; j < d; j++)
        mean[j] = (float)(sum[j] / (double)n);
    free(sum);

    float *xc = xmalloc_aligned((size_t)n * (size_t)d * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            xc[i * d + j] = x[i * d + j] - mean[j];
    /* cov (d, d), upper triangle in row-major = lower in column-major */
    float *cov = xmalloc_aligned((size_t)d * (size_t)d * sizeof(float));
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, (int)n,
                1.0f / (float)(n - 1), xc, d, 0.0f, cov, d);
    util_free_aligned(xc);
    double *a = xmalloc((size_t)d * (size_t)d * sizeof(double));
    for (size_t i = 0; i < (size_t)d * (size_t)d; i++)
        a[i] = cov[i];
    util_free_aligned(cov);

    double *w = xmalloc((size_t)k * sizeof(double));
    double *z = xmalloc((size_t)d * (size_t)k * sizeof(double));
    int rc = eigen_top(a, d, d - k + 1, d, w, z, err);
    if (rc == 0) {
        for (int i = 0; i < k; i++) {
            const double *col = z + (size_t)(k - 1 - i) * (size_t)d;
            int big = 0;
            for (int j = 1; j < d; j++)
                if (fabs(col[j]) > fabs(col[big]))
                    big = j;
            double sign = col[big] < 0.0 ? -1.0 : 1.0;
            for (int j = 0; j < d; j++)
                components[(size_t)i * (size_t)d + (size_t)j] =
                    (float)(sign * col[j]);
            variances[i] = w[k - 1 - i] > 0.0 ? w[k - 1 - i] : 0.0;
        }
    }
    free(a);
    free(w);
    free(z);
    return rc;
}

void pca_project(const float *x, int64_t n, int d, const float *mean,
                 const float *components, int k, float *out)
{
    /* (x - mean) C^T = x C^T - (mean . C_i) per column i */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, k, d, 1.0f,
                x, d, components, d, 0.0f, out, k);
    for (int i = 0; i < k; i++) {
        double off = 0.0;
        for (int j = 0; j < d; j++)
            off += (double)mean[j] * components[(size_t)i * (size_t)d + (size_t)j];
        for (int64_t r = 0; r < n; r++)
            out[r * k + i] -= (float)off;
    }
}
