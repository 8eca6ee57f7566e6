/*
 * nn_linear.c: fully connected layer out = inp weight^T + bias with weight
 * (OUT,IN) in PyTorch's layout, forward/backward (see nn.h). Every product
 * is cblas_sgemm (by blocks of rows where that is faster); only the bias
 * loops use OpenMP, outside BLAS calls.
 */
#include "nn.h"

#include <cblas.h>

#include "nn_gemm.h"

/* Rows per sgemm call for the products whose rows are the batch (the
 * output and the input gradient): OpenBLAS ran the ViT token linears'
 * tall products (12,800 rows, inner dimension 192 or 768, 2 threads)
 * 3-14% faster in blocks of 1,024 rows than in one call, and the bias
 * then goes onto a block still in cache. The weight gradient sums over
 * the rows and stays one call (blocking it gained nothing). */
#define NN_LINEAR_ROW_BLOCK 1024

void nn_linear_forward(float *out, const float *inp, const float *weight,
                       const float *bias, int B, int IN, int OUT)
{
    for (int b0 = 0; b0 < B; b0 += NN_LINEAR_ROW_BLOCK) {
        const int nb = B - b0 < NN_LINEAR_ROW_BLOCK ? B - b0
                                                    : NN_LINEAR_ROW_BLOCK;
        float *ob = out + (size_t)b0 * OUT;
        nn_sgemm(CblasNoTrans, CblasTrans, nb, OUT, IN, 1.0f,
                 inp + (size_t)b0 * IN, IN, weight, IN, 0.0f, ob, OUT);
        if (!bias)
            continue;
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; b++) {
            float *restrict o = ob + (size_t)b * OUT;
            for (int j = 0; j < OUT; j++)
                o[j] += bias[j];
        }
    }
}

void nn_linear_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, int B, int IN, int OUT)
{
    /* (B,OUT) x (OUT,IN), in blocks of rows */
    for (int b0 = 0; dinp && b0 < B; b0 += NN_LINEAR_ROW_BLOCK) {
        const int nb = B - b0 < NN_LINEAR_ROW_BLOCK ? B - b0
                                                    : NN_LINEAR_ROW_BLOCK;
        nn_sgemm(CblasNoTrans, CblasNoTrans, nb, IN, OUT,
                 1.0f, dout + (size_t)b0 * OUT, OUT, weight, IN, 1.0f,
                 dinp + (size_t)b0 * IN, IN);
    }
    /* (OUT,B) x (B,IN) */
    nn_sgemm(CblasTrans, CblasNoTrans, OUT, IN, B, 1.0f,
             dout, OUT, inp, IN, 1.0f, dweight, IN);
    if (!dbias)
        return;
    const int block = 64;
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < OUT; j0 += block) {
        const int nj = OUT - j0 < block ? OUT - j0 : block;
        for (int b = 0; b < B; b++) {
            const float *restrict g = dout + (size_t)b * OUT + j0;
            float *restrict db = dbias + j0;
            for (int j = 0; j < nj; j++)
                db[j] += g[j];
        }
    }
}

void nn_linear_forward_ref(float *out, const float *inp, const float *weight,
                           const float *bias, int B, int IN, int OUT)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OUT; o++) {
            float acc = bias ? bias[o] : 0.0f;
            for (int i = 0; i < IN; i++)
                acc += inp[(size_t)b * IN + i] * weight[(size_t)o * IN + i];
            out[(size_t)b * OUT + o] = acc;
        }
}

void nn_linear_backward_ref(float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp,
                            const float *weight, int B, int IN, int OUT)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OUT; o++) {
            float g = dout[(size_t)b * OUT + o];
            if (dbias)
                dbias[o] += g;
            for (int i = 0; i < IN; i++) {
                dweight[(size_t)o * IN + i] += g * inp[(size_t)b * IN + i];
                if (dinp)
                    dinp[(size_t)b * IN + i] += g * weight[(size_t)o * IN + i];
            }
        }
}
