/*
 * nn_gemm.h: the kernels' one way to call sgemm (row-major), so that a
 * profile can tell GEMM time from the memory passes around it. With
 * nn_gemm_profile off (always, outside bench-train --profile) it is
 * cblas_sgemm and one branch.
 */
#ifndef LEJEPA_NN_GEMM_H
#define LEJEPA_NN_GEMM_H

#include <cblas.h>
#include <omp.h>

#include "nn.h"
#include "util.h"

static inline void nn_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M,
                            int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C,
                            int ldc)
{
    if (!nn_gemm_profile) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb,
                    beta, C, ldc);
        return;
    }
    double t0 = util_time_mono();
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta,
                C, ldc);
    double dt = util_time_mono() - t0;
    /* outside a parallel region OpenBLAS keeps every thread busy */
    if (!omp_in_parallel())
        dt *= omp_get_max_threads();
#pragma omp atomic
    nn_gemm_thread_seconds += dt;
}

/* For GEMM-like work of the calling thread's own inside a parallel region:
 * t0 = nn_gemm_clock() before it, nn_gemm_account(t0) after it adds its
 * seconds to the profile. */
static inline double nn_gemm_clock(void)
{
    return nn_gemm_profile ? util_time_mono() : 0.0;
}

static inline void nn_gemm_account(double t0)
{
    if (!nn_gemm_profile)
        return;
    double dt = util_time_mono() - t0;
#pragma omp atomic
    nn_gemm_thread_seconds += dt;
}

#endif
