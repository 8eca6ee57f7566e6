/*
 * test_pca.c: PCA recovers a decomposition built on purpose: X = 1 m^T +
 * U S V^T with zero-mean orthonormal U (n, d), chosen singular values S and
 * orthonormal V (d, d). The top three components must be V's first three
 * columns (up to the documented sign), the variances s_i^2 / (n - 1) to 1e-4
 * relative, the mean m, and the projections U S. Bad sizes are refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pca.h"
#include "testing.h"
#include "util.h"

/* Orthonormalises the columns of a (rows, cols) row-major in place by
 * modified Gram-Schmidt, in double. */
static void orthonormalise_columns(double *a, int rows, int cols)
{
    for (int j = 0; j < cols; j++) {
        for (int i = 0; i < j; i++) {
            double d = 0.0;
            for (int r = 0; r < rows; r++)
                d += a[r * cols + i] * a[r * cols + j];
            for (int r = 0; r < rows; r++)
                a[r * cols + j] -= d * a[r * cols + i];
        }
        double nrm = 0.0;
        for (int r = 0; r < rows; r++)
            nrm += a[r * cols + j] * a[r * cols + j];
        nrm = sqrt(nrm);
        for (int r = 0; r < rows; r++)
            a[r * cols + j] /= nrm;
    }
}

static void test_known_decomposition(void)
{
    enum { N = 300, D = 24, K = 3 };
    static const double s[D] = {40, 25, 12, 6, 5, 4, 3.5, 3, 2.5, 2, 1.8,
                                1.6, 1.4, 1.2, 1, 0.9, 0.8, 0.7, 0.6, 0.5,
                                0.4, 0.3, 0.2, 0.1};
    uint64_t seed = 31;
    double *u = xmalloc(N * D * sizeof(double));
    double *v = xmalloc(D * D * sizeof(double));
    double m[D];
    for (int i = 0; i < N * D; i++)
        u[i] = testing_rand_normal(&seed);
    /* zero-mean columns stay zero-mean under Gram-Schmidt */
    for (int j = 0; j < D; j++) {
        double mu = 0.0;
        for (int r = 0; r < N; r++)
            mu += u[r * D + j] / N;
        for (int r = 0; r < N; r++)
            u[r * D + j] -= mu;
    }
    orthonormalise_columns(u, N, D);
    for (int i = 0; i < D * D; i++)
        v[i] = testing_rand_normal(&seed);
    orthonormalise_columns(v, D, D);
    for (int j = 0; j < D; j++)
        m[j] = 3.0 * testing_rand_normal(&seed);

    float *x = xmalloc(N * D * sizeof(float));
    for (int r = 0; r < N; r++)
        for (int c = 0; c < D; c++) {
            double acc = m[c];
            for (int j = 0; j < D; j++)
                acc += u[r * D + j] * s[j] * v[c * D + j];
            x[r * D + c] = (float)acc;
        }

    char err[ERR_LEN];
    float mean[D], comp[K * D], proj[N * K];
    double var[K];
    CU_ASSERT_EQUAL_FATAL(pca_fit(x, N, D, K, mean, comp, var, err), 0);
    for (int j = 0; j < D; j++)
        CU_ASSERT_DOUBLE_EQUAL(mean[j], m[j], 1e-4);
    pca_project(x, N, D, mean, comp, K, proj);
    double worst_var = 0.0, worst_dot = 0.0;
    for (int i = 0; i < K; i++) {
        double want = s[i] * s[i] / (N - 1);
        worst_var = fmax(worst_var, fabs(var[i] - want) / want);
        double d = 0.0;
        int big = 0;
        for (int c = 0; c < D; c++) {
            d += comp[i * D + c] * v[c * D + i];
            if (fabsf(comp[i * D + c]) > fabsf(comp[i * D + big]))
                big = c;
        }
        worst_dot = fmax(worst_dot, 1.0 - fabs(d));
        /* sign rule: largest-magnitude entry positive */
        CU_ASSERT_TRUE(comp[i * D + big] > 0.0f);
        /* projections are U S times the sign that aligns comp with V */
        double sign = d < 0 ? -1.0 : 1.0, worst_proj = 0.0;
        for (int r = 0; r < N; r++)
            worst_proj = fmax(worst_proj, fabs(proj[r * K + i] -
                                               sign * u[r * D + i] * s[i]));
        CU_ASSERT_TRUE(worst_proj < 1e-3 * s[0]);
    }
    printf("\n  worst variance error %.2e (relative), worst 1 - |v.c| %.2e\n",
           worst_var, worst_dot);
    CU_ASSERT_TRUE(worst_var < 1e-4);
    CU_ASSERT_TRUE(worst_dot < 1e-6);
    free(u);
    free(v);
    free(x);
}

/* A flipped input flips no sign: the rule depends on the axis only. */
static void test_signs_are_deterministic(void)
{
    enum { N = 50, D = 4 };
    float x[N * D], xn[N * D];
    uint64_t seed = 5;
    for (int i = 0; i < N * D; i++) {
        x[i] = (float)(testing_rand_normal(&seed) * (1 + i % D));
        xn[i] = -x[i];
    }
    char err[ERR_LEN];
    float mean[D], a[2 * D], b[2 * D];
    double va[2], vb[2];
    CU_ASSERT_EQUAL_FATAL(pca_fit(x, N, D, 2, mean, a, va, err), 0);
    CU_ASSERT_EQUAL_FATAL(pca_fit(xn, N, D, 2, mean, b, vb, err), 0);
    for (int i = 0; i < 2 * D; i++)
        CU_ASSERT_DOUBLE_EQUAL(a[i], b[i], 1e-5);
    CU_ASSERT_TRUE(va[0] >= va[1]);
}

static void test_bad_sizes(void)
{
    char err[ERR_LEN];
    float x[8] = {0}, mean[4], comp[16];
    double var[4];
    CU_ASSERT_EQUAL(pca_fit(x, 1, 4, 1, mean, comp, var, err), -1);
    CU_ASSERT_EQUAL(pca_fit(x, 2, 4, 5, mean, comp, var, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "k <= d"));
    x[3] = NAN;
    CU_ASSERT_EQUAL(pca_fit(x, 2, 4, 1, mean, comp, var, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "non-finite"));
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"known U S V^T: components, variances, projections", test_known_decomposition},
        {"signs do not depend on the data's sign", test_signs_are_deterministic},
        {"bad sizes and NaN refused", test_bad_sizes},
        {NULL, NULL},
    };
    return testing_run("pca", cases);
}
