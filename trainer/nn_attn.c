/*
 * nn_attn.c: multi-head self-attention core (softmax(q k^T / sqrt(HD)) v per
 * image and head), forward/backward in three versions (see nn_vit.h):
 * - the optimised one: one cblas_sgemm per product per (image, head),
 *   serial over pairs (BLAS threads inside), softmax in one OpenMP loop
 *   between the sgemm passes;
 * - an _omp one: OpenMP over (image, head) pairs, plain C loops whose inner
 *   dimension is contiguous (K and V are transposed into the thread's
 *   scratch slot) so they vectorise without reassociation;
 * - the _ref one: direct serial loops.
 * Softmax probabilities are kept whole in att; backward recomputes nothing.
 */
#include "nn_vit.h"

#include <math.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

static int attn_threads(void)
{
    int n = omp_get_max_threads();
    return n > NN_ATTN_MAX_SLOTS ? NN_ATTN_MAX_SLOTS : n;
}

/* In-place softmax of one row of n scores. */
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

/* Softmax backward of one row, scaled: ds = scale * p (dp - <p, dp>),
 * written over dp. */
static void attn_softmax_row_backward(float *dp, const float *p, int n,
                                      float scale)
{
    float s = 0.0f;
    for (int j = 0; j < n; j++)
        s += p[j] * dp[j];
    for (int j = 0; j < n; j++)
        dp[j] = scale * p[j] * (dp[j] - s);
}

/* xt (HD,T) = the T rows of stride ld starting at x (HD columns used),
 * transposed. */
static void attn_transpose(float *restrict xt, const float *restrict x,
                           int T, int HD, int ld)
{
    for (int j = 0; j < T; j++)
        for (int d = 0; d < HD; d++)
            xt[(size_t)d * T + j] = x[(size_t)j * ld + d];
}

/* One (image, head): q0/k0/v0 rows of stride ld, out rows of stride D;
 * kt (HD,T) scratch. Inner loops run over contiguous j or d. */
static void attn_pair_forward(float *restrict out, float *restrict p,
                              const float *q0, const float *k0,
                              const float *v0, float *restrict kt, int T,
                              int HD, int ld, int D)
{
    const float scale = 1.0f / sqrtf((float)HD);
    attn_transpose(kt, k0, T, HD, ld);
    for (int i = 0; i < T; i++) {
        float *restrict pi = p + (size_t)i * T;
        const float *restrict qi = q0 + (size_t)i * ld;
        memset(pi, 0, sizeof(float) * T);
        for (int d = 0; d < HD; d++) {
            const float a = qi[d] * scale;
            const float *restrict kd = kt + (size_t)d * T;
            for (int j = 0; j < T; j++)
                pi[j] += a * kd[j];
        }
        attn_softmax_row(pi, T);
        float *restrict oi = out + (size_t)i * D;
        memset(oi, 0, sizeof(float) * HD);
        for (int j = 0; j < T; j++) {
            const float a = pi[j];
            const float *restrict vj = v0 + (size_t)j * ld;
            for (int d = 0; d < HD; d++)
                oi[d] += a * vj[d];
        }
    }
}

size_t nn_attention_scratch_floats(int T, int HD)
{
    return (size_t)NN_ATTN_MAX_SLOTS * ((size_t)T * T + (size_t)HD * T);
}

void nn_attention_forward_omp(float *out, float *att, const float *qkv,
                              float *scratch, int B, int T, int NH, int HD)
{
    const int D = NH * HD, ld = 3 * D;
    const size_t slot = nn_attention_scratch_floats(T, HD) / NN_ATTN_MAX_SLOTS;
#pragma omp parallel num_threads(attn_threads())
    {
        float *kt = scratch + (size_t)omp_get_thread_num() * slot;
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const float *q0 = qkv + (size_t)b * T * ld + (size_t)h * HD;
            attn_pair_forward(out + (size_t)b * T * D + (size_t)h * HD,
                              att + (size_t)bh * T * T, q0, q0 + D,
                              q0 + 2 * D, kt, T, HD, ld, D);
        }
    }
}

/* One (image, head) backward; slot holds one row dp (T) and vt (HD,T);
 * g0 rows of stride D. */
static void attn_pair_backward(float *dq0, float *dk0, float *dv0,
                               const float *g0, const float *q0,
                               const float *k0, const float *v0,
                               const float *p, float *slot, int T, int HD,
                               int ld, int D)
{
    const float scale = 1.0f / sqrtf((float)HD);
    float *restrict dp = slot, *restrict vt = slot + T;
    attn_transpose(vt, v0, T, HD, ld);
    for (int i = 0; i < T; i++) {
        const float *restrict pi = p + (size_t)i * T;
        const float *restrict gi = g0 + (size_t)i * D;
        const float *restrict qi = q0 + (size_t)i * ld;
        float *restrict dqi = dq0 + (size_t)i * ld;
        memset(dp, 0, sizeof(float) * T);
        for (int d = 0; d < HD; d++) {
            const float a = gi[d];
            const float *restrict vd = vt + (size_t)d * T;
            for (int j = 0; j < T; j++)
                dp[j] += a * vd[j];
        }
        for (int j = 0; j < T; j++) {
            const float a = pi[j];
            float *restrict dvj = dv0 + (size_t)j * ld;
            for (int d = 0; d < HD; d++)
                dvj[d] += a * gi[d];
        }
        attn_softmax_row_backward(dp, pi, T, scale);
        for (int j = 0; j < T; j++) {
            const float a = dp[j];
            const float *restrict kj = k0 + (size_t)j * ld;
            float *restrict dkj = dk0 + (size_t)j * ld;
            for (int d = 0; d < HD; d++) {
                dqi[d] += a * kj[d];
                dkj[d] += a * qi[d];
            }
        }
    }
}

void nn_attention_backward_omp(float *dqkv, const float *dout,
                               const float *qkv, const float *att,
                               float *scratch, int B, int T, int NH, int HD)
{
    const int D = NH * HD, ld = 3 * D;
    const size_t slot = nn_attention_scratch_floats(T, HD) / NN_ATTN_MAX_SLOTS;
#pragma omp parallel num_threads(attn_threads())
    {
        float *mine = scratch + (size_t)omp_get_thread_num() * slot;
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t off = (size_t)b * T * ld + (size_t)h * HD;
            const float *q0 = qkv + off;
            float *dq0 = dqkv + off;
            attn_pair_backward(dq0, dq0 + D, dq0 + 2 * D,
                               dout + (size_t)b * T * D + (size_t)h * HD, q0,
                               q0 + D, q0 + 2 * D, att + (size_t)bh * T * T,
                               mine, T, HD, ld, D);
        }
    }
}

void nn_attention_forward(float *out, float *att, const float *qkv,
                          float *scratch, int B, int T, int NH, int HD)
{
    (void)scratch;
    const int D = NH * HD, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
    for (int bh = 0; bh < B * NH; bh++) {
        const float *q0 = qkv + (size_t)(bh / NH) * T * ld
                          + (size_t)(bh % NH) * HD;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, scale,
                    q0, ld, q0 + D, ld, 0.0f, att + (size_t)bh * T * T, T);
    }
#pragma omp parallel for schedule(static)
    for (long r = 0; r < (long)B * NH * T; r++)
        attn_softmax_row(att + (size_t)r * T, T);
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        const float *v0 = qkv + (size_t)b * T * ld + 2 * D + (size_t)h * HD;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f,
                    att + (size_t)bh * T * T, T, v0, ld, 0.0f,
                    out + (size_t)b * T * D + (size_t)h * HD, D);
    }
}

void nn_attention_backward(float *dqkv, const float *dout, const float *qkv,
                           const float *att, float *scratch, int B, int T,
                           int NH, int HD)
{
    const int D = NH * HD, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
    float *dp = scratch;
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        const size_t off = (size_t)b * T * ld + (size_t)h * HD;
        const float *q0 = qkv + off, *k0 = q0 + D, *v0 = q0 + 2 * D;
        float *dq0 = dqkv + off, *dk0 = dq0 + D, *dv0 = dq0 + 2 * D;
        const float *g0 = dout + (size_t)b * T * D + (size_t)h * HD;
        const float *p = att + (size_t)bh * T * T;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HD, T, 1.0f,
                    p, T, g0, D, 1.0f, dv0, ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, 1.0f,
                    g0, D, v0, ld, 0.0f, dp, T);
        for (int i = 0; i < T; i++)
            attn_softmax_row_backward(dp + (size_t)i * T, p + (size_t)i * T,
                                      T, scale);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f,
                    dp, T, k0, ld, 1.0f, dq0, ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HD, T, 1.0f,
                    dp, T, q0, ld, 1.0f, dk0, ld);
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
