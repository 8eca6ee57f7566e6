/*
 * nn_loss.c: softmax cross-entropy with integer labels, the loss head of the
 * online probe (see nn.h). One function gives the mean loss, the accuracy
 * count and dlogits, which it WRITES (=): nothing upstream accumulates into
 * it. Rows are independent, so the optimised version runs rows in parallel.
 */
#include "nn.h"

#include <math.h>

#include "util.h"

/* Loss of one row (log-sum-exp shifted by the row maximum); writes the row's
 * dlogits scaled by inv_b when drow is not NULL; sets *correct to whether
 * the first maximum is the label. */
static double xent_row(float *restrict drow, int *correct,
                       const float *restrict row, int label, int K,
                       float inv_b)
{
    CHECK(label >= 0 && label < K);
    int arg = 0;
    for (int k = 1; k < K; k++)
        if (row[k] > row[arg])
            arg = k;
    const float mx = row[arg];
    double sum = 0.0;
    for (int k = 0; k < K; k++)
        sum += exp((double)(row[k] - mx));
    if (drow) {
        for (int k = 0; k < K; k++)
            drow[k] = (float)(exp((double)(row[k] - mx)) / sum) * inv_b;
        drow[label] -= inv_b;
    }
    *correct = arg == label;
    return log(sum) - (double)(row[label] - mx);
}

float nn_crossentropy_forward(float *dlogits, int *n_correct,
                              const float *logits, const int32_t *labels,
                              int B, int K)
{
    CHECK(B > 0 && K > 0);
    const float inv_b = 1.0f / B;
    double loss = 0.0;
    int correct = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, correct)
    for (int b = 0; b < B; b++) {
        int ok;
        loss += xent_row(dlogits ? dlogits + (size_t)b * K : NULL, &ok,
                         logits + (size_t)b * K, labels[b], K, inv_b);
        correct += ok;
    }
    if (n_correct)
        *n_correct = correct;
    return (float)(loss / B);
}

float nn_crossentropy_forward_ref(float *dlogits, int *n_correct,
                                  const float *logits, const int32_t *labels,
                                  int B, int K)
{
    CHECK(B > 0 && K > 0);
    double loss = 0.0;
    int correct = 0;
    for (int b = 0; b < B; b++) {
        const float *row = logits + (size_t)b * K;
        int label = labels[b];
        CHECK(label >= 0 && label < K);
        double mx = row[0];
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (row[k] > mx) {
                mx = row[k];
                arg = k;
            }
        double sum = 0.0;
        for (int k = 0; k < K; k++)
            sum += exp(row[k] - mx);
        loss += log(sum) - (row[label] - mx);
        correct += arg == label;
        if (dlogits)
            for (int k = 0; k < K; k++)
                dlogits[(size_t)b * K + k] =
                    (float)((exp(row[k] - mx) / sum - (k == label)) / B);
    }
    if (n_correct)
        *n_correct = correct;
    return (float)(loss / B);
}
