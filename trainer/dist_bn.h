/*
 * dist_bn.h: BatchNorm in training mode with the batch statistics of all
 * ranks (synchronised BatchNorm, config model.sync_bn; dist_bn.c). Same
 * arguments and layout as nn.h's BatchNorm (inp (B, C, HW); HW = 1 for
 * BatchNorm1d), plus the dist whose buf holds dist_bn_scratch(C) doubles.
 * Every rank calls these in the same order (they all-reduce).
 */
#ifndef LEJEPA_DIST_BN_H
#define LEJEPA_DIST_BN_H

#include <stdbool.h>
#include <stddef.h>

#include "dist.h"

/* Doubles of dist buf one BatchNorm of C channels needs. */
static inline size_t dist_bn_scratch(int C)
{
    return 2 * (size_t)C + 1;
}

/* out (B,C,HW) = BatchNorm(inp) with the global batch's mean and biased
 * variance, a ReLU after it when relu is set; mean, rstd (C) saved for the
 * backward; running statistics (when not NULL) updated with the global
 * ones. */
void dist_bn_forward(struct dist *d, float *out, float *mean, float *rstd,
                     float *running_mean, float *running_var,
                     const float *inp, const float *weight, const float *bias,
                     int B, int C, int HW, bool relu);

/* Adds this rank's share of dweight, dbias (C); dinp (B,C,HW) (may be NULL)
 * gets the input gradient through the global statistics, added when
 * accumulate is set, else written. relu_out (B,C,HW) is the fused ReLU's
 * output (dout is then the ReLU's output gradient), or NULL. */
void dist_bn_backward(struct dist *d, float *dinp, float *dweight,
                      float *dbias, const float *dout, const float *relu_out,
                      const float *inp, const float *mean, const float *rstd,
                      const float *weight, int B, int C, int HW,
                      bool accumulate);

#endif
