/*
 * nn_attn.c: multi-head self-attention core (softmax(q k^T / sqrt(HD)) v per
 * image and head), forward/backward in two versions (see nn_vit.h):
 * - the optimised one: OpenMP over (image, head) pairs; each pair's
 *   products are cblas_sgemm calls, which OpenBLAS runs single-threaded
 *   inside the parallel region, and its softmax rows run between them
 *   while the scores are still in cache, with a vectorised exp. This
 *   relies on OpenBLAS's OpenMP build (Debian's libopenblas0-openmp, the
 *   same libgomp as ours) not threading when omp_in_parallel(): true of
 *   0.3.21 (num_cpu_avail in common_thread.h); OpenBLAS issue #5947
 *   reports a later development version threading there after
 *   openblas_set_num_threads, which compute_set_threads calls;
 * - the _ref one: direct serial loops and libm's expf.
 * Softmax probabilities are kept whole in att; backward recomputes nothing.
 */
#include "nn_vit.h"

#include <math.h>

#include <cblas.h>
#include <omp.h>

#include "nn_gemm.h"
#include "nn_fastexp.h"

static int attn_threads(void)
{
    int n = omp_get_max_threads();
    return n > NN_ATTN_MAX_SLOTS ? NN_ATTN_MAX_SLOTS : n;
}

/* In-place softmax of one row of n scores (libm, for _ref). */
static void attn_softmax_row(float *p, int n)
{
    float mx = p[0];
    for (int j = 1; j < n; j++)
        mx = p[j] > mx ? p[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < n; j++)
        p[j] *= inv;
}

/* The same, vectorised: nn_fast_expf (relative error ~1e-7). A row with a
 * NaN or an infinity goes to attn_softmax_row, so that NaN comes out as
 * with libm (nn_fast_expf clamps NaN, which would hide it). */
static void attn_softmax_row_fast(float *restrict p, int n)
{
    float mx = p[0], bad = 0.0f;
#pragma omp simd reduction(max : mx) reduction(+ : bad)
    for (int j = 0; j < n; j++) {
        mx = p[j] > mx ? p[j] : mx;
        bad += p[j] - p[j];     /* NaN for NaN or +-inf, else 0 */
    }
    if (bad != 0.0f) {
        attn_softmax_row(p, n);
        return;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        p[j] = nn_fast_expf(p[j] - mx);
        sum += p[j];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < n; j++)
        p[j] *= inv;
}

/* Softmax backward of one row, scaled: ds = scale * p (dp - <p, dp>),
 * written over dp. */
static void attn_softmax_row_backward(float *restrict dp,
                                      const float *restrict p, int n,
                                      float scale)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++)
        s += p[j] * dp[j];
#pragma omp simd
    for (int j = 0; j < n; j++)
        dp[j] = scale * p[j] * (dp[j] - s);
}

size_t nn_attention_scratch_floats(int T, int HD)
{
    (void)HD;
    return (size_t)NN_ATTN_MAX_SLOTS * T * T;
}

void nn_attention_forward(float *out, float *att, const float *qkv,
                          float *scratch, int B, int T, int NH, int HD)
{
    (void)scratch;
    const int D = NH * HD, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel for schedule(static) num_threads(attn_threads())
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        const float *q0 = qkv + (size_t)b * T * ld + (size_t)h * HD;
        float *p = att + (size_t)bh * T * T;
        nn_sgemm(CblasNoTrans, CblasTrans, T, T, HD, scale,
                 q0, ld, q0 + D, ld, 0.0f, p, T);
        for (int i = 0; i < T; i++)
            attn_softmax_row_fast(p + (size_t)i * T, T);
        nn_sgemm(CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f,
                 p, T, q0 + 2 * D, ld, 0.0f,
                 out + (size_t)b * T * D + (size_t)h * HD, D);
    }
}

void nn_attention_backward(float *dqkv, const float *dout, const float *qkv,
                           const float *att, float *scratch, int B, int T,
                           int NH, int HD)
{
    const int D = NH * HD, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
#pragma omp parallel num_threads(attn_threads())
    {
        float *dp = scratch + (size_t)omp_get_thread_num() * T * T;
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t off = (size_t)b * T * ld + (size_t)h * HD;
            const float *q0 = qkv + off, *k0 = q0 + D, *v0 = q0 + 2 * D;
            float *dq0 = dqkv + off, *dk0 = dq0 + D, *dv0 = dq0 + 2 * D;
            const float *g0 = dout + (size_t)b * T * D + (size_t)h * HD;
            const float *p = att + (size_t)bh * T * T;
            /* forward: out = p v  =>  dv += p^T g, dp = g v^T */
            nn_sgemm(CblasTrans, CblasNoTrans, T, HD, T,
                     1.0f, p, T, g0, D, 1.0f, dv0, ld);
            nn_sgemm(CblasNoTrans, CblasTrans, T, T, HD,
                     1.0f, g0, D, v0, ld, 0.0f, dp, T);
            /* forward: p = softmax(s) row by row, s = scale q k^T
             *   =>  ds = scale * p (dp - <p, dp>) (written over dp) */
            for (int i = 0; i < T; i++)
                attn_softmax_row_backward(dp + (size_t)i * T,
                                          p + (size_t)i * T, T, scale);
            /* forward: s = q k^T (scale folded in above)
             *   =>  dq += ds k, dk += ds^T q */
            nn_sgemm(CblasNoTrans, CblasNoTrans, T, HD, T,
                     1.0f, dp, T, k0, ld, 1.0f, dq0, ld);
            nn_sgemm(CblasTrans, CblasNoTrans, T, HD, T,
                     1.0f, dp, T, q0, ld, 1.0f, dk0, ld);
        }
    }
}

void nn_attention_forward_ref(float *out, float *att, const float *qkv,
                              float *scratch, int B, int T, int NH, int HD)
{
    (void)scratch;
    const int D = NH * HD, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *x = qkv + (size_t)b * T * ld + (size_t)h * HD;
            float *p = att + ((size_t)b * NH + h) * T * T;
            for (int i = 0; i < T; i++) {
                for (int j = 0; j < T; j++) {
                    float s = 0.0f;
                    for (int d = 0; d < HD; d++)
                        s += x[(size_t)i * ld + d] * x[(size_t)j * ld + D + d];
                    p[(size_t)i * T + j] = s * scale;
                }
                attn_softmax_row(p + (size_t)i * T, T);
                for (int d = 0; d < HD; d++) {
                    float s = 0.0f;
                    for (int j = 0; j < T; j++)
                        s += p[(size_t)i * T + j]
                             * x[(size_t)j * ld + 2 * D + d];
                    out[((size_t)b * T + i) * D + (size_t)h * HD + d] = s;
                }
            }
        }
}

void nn_attention_backward_ref(float *dqkv, const float *dout,
                               const float *qkv, const float *att,
                               float *scratch, int B, int T, int NH, int HD)
{
    (void)scratch;
    const int D = NH * HD, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t off = (size_t)b * T * ld + (size_t)h * HD;
            const float *x = qkv + off;
            float *dx = dqkv + off;
            const float *g = dout + (size_t)b * T * D + (size_t)h * HD;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            for (int i = 0; i < T; i++) {
                const float *pi = p + (size_t)i * T;
                /* <p_i, dp_i> with dp_ij = g_i . v_j */
                float s = 0.0f;
                for (int j = 0; j < T; j++) {
                    float dpij = 0.0f;
                    for (int d = 0; d < HD; d++)
                        dpij += g[(size_t)i * D + d]
                                * x[(size_t)j * ld + 2 * D + d];
                    s += pi[j] * dpij;
                }
                for (int j = 0; j < T; j++) {
                    float dpij = 0.0f;
                    for (int d = 0; d < HD; d++)
                        dpij += g[(size_t)i * D + d]
                                * x[(size_t)j * ld + 2 * D + d];
                    const float ds = scale * pi[j] * (dpij - s);
                    for (int d = 0; d < HD; d++) {
                        dx[(size_t)j * ld + 2 * D + d] +=
                            pi[j] * g[(size_t)i * D + d];
                        dx[(size_t)i * ld + d] += ds * x[(size_t)j * ld + D + d];
                        dx[(size_t)j * ld + D + d] += ds * x[(size_t)i * ld + d];
                    }
                }
            }
        }
}
