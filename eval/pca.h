/*
 * pca.h: the leading principal components of a set of row vectors (patch
 * features for segmentation maps: N up to a few thousand, D up to a few
 * hundred). Center, covariance with one BLAS rank-k update (D x D), then
 * LAPACK's dsyevr for only the top eigenpairs. Pure math on caller-owned
 * arrays.
 *
 * Conventions: the covariance divides by N - 1 (as numpy.cov and
 * sklearn's explained_variance_), so the returned variances are its
 * eigenvalues; each component is a unit vector whose largest-magnitude
 * entry is positive (the first such entry on exact ties), so the signs are
 * deterministic.
 */
#ifndef LEJEPA_PCA_H
#define LEJEPA_PCA_H

#include <stdint.h>

/* Top-k components of x (n, d) row-major:
 *   mean        (d)     column means
 *   components  (k, d)  row i = i-th principal axis, decreasing variance
 *   variances   (k)     eigenvalues of the covariance, decreasing
 * Needs n >= 2 and 1 <= k <= d. Returns 0, or -1 with the reason in err
 * (ERR_LEN): bad sizes, a non-finite input, the eigensolver failing. */
int pca_fit(const float *x, int64_t n, int d, int k, float *mean,
            float *components, double *variances, char *err);

/* out (n, k) = (x - mean) components^T, one GEMM (call it outside any
 * OpenMP region). */
void pca_project(const float *x, int64_t n, int d, const float *mean,
                 const float *components, int k, float *out);

#endif
