/*
 * nn_winograd.h: Winograd F(2x2,3x3) and F(4x4,3x3) for 3x3 stride-1 pad-1
 * convolutions,
 * private to nn_conv.c (which dispatches to it) and its tests. Same tensor
 * layouts and conventions as nn_conv2d_* in nn.h: forward writes, backward
 * accumulates, scratch from the caller, no allocation; each thread runs a
 * slice of the batch with single-threaded GEMMs inside one OpenMP region.
 * Sums are float32 like the im2col path; the transforms add a little
 * rounding (see tests/test_nn_winograd.c for measured errors).
 */
#ifndef LEJEPA_NN_WINOGRAD_H
#define LEJEPA_NN_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>

/* Largest side the transforms handle (they keep a zero-bordered copy of a
 * plane on the stack); larger planes take the im2col path, where GEMMs are
 * large anyway. */
#define NN_WINOGRAD_MAX_SIDE 64
/* The per-chunk transformed tensors (a*a (C + OC) values per tile) stay
 * under this many floats; the chunk is at least one image. */
#define NN_WINOGRAD_CHUNK_FLOATS ((size_t)1 << 22)

/* True for the shapes the Winograd kernels accept (K=3, stride 1, pad 1,
 * H and W <= NN_WINOGRAD_MAX_SIDE); nn_conv.c decides whether it pays off. */
bool nn_winograd_supports(int H, int W, int K, int stride, int pad);

/* The output tile side m (2 or 4) that needs fewer multiplies on an (H,W)
 * plane; every function below takes m explicitly so tests can run both. */
int nn_winograd_tile(int H, int W);

size_t nn_winograd_scratch_floats(int B, int C, int H, int W, int OC, int m);

void nn_winograd_forward(float *out,          // (B,OC,H,W)
                         const float *inp,    // (B,C,H,W)
                         const float *weight, // (OC,C,3,3)
                         const float *bias,   // (OC) or NULL
                         float *scratch,      // nn_winograd_scratch_floats
                         int B, int C, int H, int W, int OC, int m);

/* dinp (may be NULL) and dweight accumulate; the bias gradient is the
 * caller's (it does not depend on the algorithm). */
void nn_winograd_backward(float *dinp,         // (B,C,H,W) or NULL
                          float *dweight,      // (OC,C,3,3)
                          const float *dout,   // (B,OC,H,W)
                          const float *inp,    // (B,C,H,W)
                          const float *weight, // (OC,C,3,3)
                          float *scratch,      // nn_winograd_scratch_floats
                          int B, int C, int H, int W, int OC, int m);

/* Calls from outside the kernels go through the run-time table. */
#include "nn_isa.h"

#endif
