/*
 * nn.h: the layer kernels of the trainer, each a forward/backward pair of
 * plain functions in llm.c's argument order (outputs, inputs, weights, then
 * sizes; backward: the gradients it writes, the upstream gradient, the saved
 * forward tensors, then sizes). float32, NCHW, row-major.
 *
 * Conventions every kernel follows:
 * - forward WRITES (=) its outputs; backward ACCUMULATES (+=) into every
 *   gradient buffer it is given, so one zero-grad clears all of them before
 *   a step. The one exception is the loss head, nn_crossentropy_forward,
 *   which writes (=) dlogits because nothing upstream of it exists.
 * - A gradient pointer documented "may be NULL" is skipped (e.g. dinp of the
 *   first conv, or of a head on a detached input); bias may be NULL.
 * - Forward keeps what backward needs (mean/rstd, argmax) in caller-provided
 *   buffers. Kernels never allocate; nn_conv2d_scratch_floats says how big a
 *   scratch buffer the conv needs (no other kernel needs one).
 * - Optimised kernels use OpenMP on loops with disjoint outputs and call
 *   OpenBLAS only outside parallel regions; thread counts are the caller's
 *   (util_set_threads). Beside each one is a plain serial `_ref` loop with the
 *   same signature, kept for the tests.
 * - Buffers do not overlap unless a comment says so.
 */
#ifndef LEJEPA_NN_H
#define LEJEPA_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NN_BN_EPS 1e-5f
#define NN_BN_MOMENTUM 0.1f
#define NN_LN_EPS 1e-5f     /* nn.LayerNorm's default (the probe) */
#define NN_LN_EPS_VIT 1e-6f /* timm's ViT LayerNorms */

/* ---- nn_conv.c: 2-D convolution, square kernel K, same stride and padding
 * on both axes, weight (OC, C, K, K) as in PyTorch, optional bias (OC).
 * OH = nn_conv2d_out_dim(H, K, stride, pad), OW likewise. */

/* Profiling (bench-train --profile): while nn_gemm_profile is set, every
 * sgemm call of the kernels and every block of the Winograd tile products
 * (nn_tilegemm.h) adds its time to nn_gemm_thread_seconds, in
 * thread-seconds (nn_gemm.h), so a profile can split an op's time into
 * GEMM and the memory passes around it. One copy for both kernel builds
 * (nn_isa.c). */
extern bool nn_gemm_profile;
extern double nn_gemm_thread_seconds;

/* floor((in + 2*pad - k) / stride) + 1; also used by max pooling. */
int nn_conv2d_out_dim(int in, int k, int stride, int pad);

/* The floating-point operations nn_conv2d_forward's GEMMs execute (2 per
 * multiply-add) on the path it takes: F(4x4) or F(2x2) Winograd (a*a
 * products of C x OC per tile), the dense 2x2 GEMM, or im2col (the direct
 * count). Transforms and copies are not counted. Its backward executes
 * twice this (input and weight gradients), once without dinp. */
double nn_conv2d_executed_flops(int B, int C, int H, int W, int OC, int K,
                                int stride, int pad);

/* Floats of scratch that nn_conv2d_forward/backward need for these sizes
 * (0 for 1x1 stride-1 convs on planes of 1024 pixels or more, which skip
 * im2col). One buffer of the maximum over all layers
 * serves every conv of a model. The optimised kernel works on chunks of
 * images whose im2col buffer stays under NN_CONV_CHUNK_FLOATS. */
#define NN_CONV_CHUNK_FLOATS ((size_t)1 << 18)
size_t nn_conv2d_scratch_floats(int B, int C, int H, int W, int OC, int K,
                                int stride, int pad);

void nn_conv2d_forward(float *out,          // (B,OC,OH,OW)
                       const float *inp,    // (B,C,H,W)
                       const float *weight, // (OC,C,K,K)
                       const float *bias,   // (OC) or NULL
                       float *scratch,      // nn_conv2d_scratch_floats(...)
                       int B, int C, int H, int W, int OC, int K, int stride,
                       int pad);
void nn_conv2d_backward(float *dinp,          // (B,C,H,W) or NULL
                        float *dweight,       // (OC,C,K,K)
                        float *dbias,         // (OC) or NULL
                        const float *dout,    // (B,OC,OH,OW)
                        const float *inp,     // (B,C,H,W)
                        const float *weight,  // (OC,C,K,K)
                        float *scratch,       // nn_conv2d_scratch_floats(...)
                        int B, int C, int H, int W, int OC, int K, int stride,
                        int pad);
/* Direct loops; scratch is ignored (may be NULL). */
void nn_conv2d_forward_ref(float *out, const float *inp, const float *weight,
                           const float *bias, float *scratch, int B, int C,
                           int H, int W, int OC, int K, int stride, int pad);
void nn_conv2d_backward_ref(float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp,
                            const float *weight, float *scratch, int B, int C,
                            int H, int W, int OC, int K, int stride, int pad);

/* ---- nn_norm.c: BatchNorm 2-D / 1-D and LayerNorm, eps 1e-5, affine.
 * Training mode normalises with the batch statistics, saves them in
 * mean/rstd, and (when running_mean/running_var are not NULL) updates
 * running = (1 - 0.1) * running + 0.1 * batch_stat with the unbiased batch
 * variance, like PyTorch. Eval mode normalises with the running statistics
 * (which must not be NULL) and saves them in mean/rstd, so backward treats
 * them as constants. Backward must get the same `training` flag. Training
 * needs more than one value per channel (B*HW > 1; CHECK), as in PyTorch. */

void nn_batchnorm2d_forward(float *out,          // (B,C,HW)
                            float *mean,         // (C) saved for backward
                            float *rstd,         // (C) saved for backward
                            float *running_mean, // (C) updated; may be NULL in training
                            float *running_var,  // (C) updated; may be NULL in training
                            const float *inp,    // (B,C,HW), HW = H*W
                            const float *weight, // (C)
                            const float *bias,   // (C)
                            int B, int C, int HW, bool training);
void nn_batchnorm2d_backward(float *dinp,         // (B,C,HW) or NULL
                             float *dweight,      // (C)
                             float *dbias,        // (C)
                             const float *dout,   // (B,C,HW)
                             const float *inp,    // (B,C,HW)
                             const float *mean,   // (C) from forward
                             const float *rstd,   // (C) from forward
                             const float *weight, // (C)
                             int B, int C, int HW, bool training);
void nn_batchnorm2d_forward_ref(float *out, float *mean, float *rstd,
                                float *running_mean, float *running_var,
                                const float *inp, const float *weight,
                                const float *bias, int B, int C, int HW,
                                bool training);
void nn_batchnorm2d_backward_ref(float *dinp, float *dweight, float *dbias,
                                 const float *dout, const float *inp,
                                 const float *mean, const float *rstd,
                                 const float *weight, int B, int C, int HW,
                                 bool training);

/* BatchNorm2d followed by ReLU, fused: out = max(bn(inp), 0) (out must not
 * overlap inp). Backward takes the ReLU output's gradient dout and that
 * output (the mask); dinp is added to when accumulate, else overwritten. */
void nn_batchnorm2d_relu_forward(float *out, float *mean, float *rstd,
                                 float *running_mean, float *running_var,
                                 const float *inp, const float *weight,
                                 const float *bias, int B, int C, int HW,
                                 bool training);
void nn_batchnorm2d_relu_backward(float *dinp,         // (B,C,HW) or NULL
                                  float *dweight,      // (C)
                                  float *dbias,        // (C)
                                  const float *dout,   // (B,C,HW) of the ReLU
                                  const float *out,    // (B,C,HW) ReLU output
                                  const float *inp,    // (B,C,HW)
                                  const float *mean,   // (C) from forward
                                  const float *rstd,   // (C) from forward
                                  const float *weight, // (C)
                                  int B, int C, int HW, bool training,
                                  bool accumulate);
void nn_batchnorm2d_relu_forward_ref(float *out, float *mean, float *rstd,
                                     float *running_mean, float *running_var,
                                     const float *inp, const float *weight,
                                     const float *bias, int B, int C, int HW,
                                     bool training);
void nn_batchnorm2d_relu_backward_ref(float *dinp, float *dweight,
                                      float *dbias, const float *dout,
                                      const float *out, const float *inp,
                                      const float *mean, const float *rstd,
                                      const float *weight, int B, int C,
                                      int HW, bool training, bool accumulate);

/* BatchNorm1d on (B,C): same as the 2-D kernel with HW = 1, laid out for
 * wide C (the projector's 2048). */
void nn_batchnorm1d_forward(float *out,          // (B,C)
                            float *mean,         // (C)
                            float *rstd,         // (C)
                            float *running_mean, // (C) or NULL in training
                            float *running_var,  // (C) or NULL in training
                            const float *inp,    // (B,C)
                            const float *weight, // (C)
                            const float *bias,   // (C)
                            int B, int C, bool training);
void nn_batchnorm1d_backward(float *dinp,         // (B,C) or NULL
                             float *dweight,      // (C)
                             float *dbias,        // (C)
                             const float *dout,   // (B,C)
                             const float *inp,    // (B,C)
                             const float *mean,   // (C)
                             const float *rstd,   // (C)
                             const float *weight, // (C)
                             int B, int C, bool training);
void nn_batchnorm1d_forward_ref(float *out, float *mean, float *rstd,
                                float *running_mean, float *running_var,
                                const float *inp, const float *weight,
                                const float *bias, int B, int C, bool training);
void nn_batchnorm1d_backward_ref(float *dinp, float *dweight, float *dbias,
                                 const float *dout, const float *inp,
                                 const float *mean, const float *rstd,
                                 const float *weight, int B, int C,
                                 bool training);

/* LayerNorm over the last dimension D of N rows, rstd = 1/sqrt(var + eps)
 * (NN_LN_EPS for the probe, NN_LN_EPS_VIT in the ViT); backward reads the
 * saved rstd, so it needs no eps. */
void nn_layernorm_forward(float *out,          // (N,D)
                          float *mean,         // (N) saved for backward
                          float *rstd,         // (N) saved for backward
                          const float *inp,    // (N,D)
                          const float *weight, // (D)
                          const float *bias,   // (D)
                          int N, int D, float eps);
void nn_layernorm_backward(float *dinp,         // (N,D) or NULL
                           float *dweight,      // (D)
                           float *dbias,        // (D)
                           const float *dout,   // (N,D)
                           const float *inp,    // (N,D)
                           const float *mean,   // (N)
                           const float *rstd,   // (N)
                           const float *weight, // (D)
                           int N, int D);
void nn_layernorm_forward_ref(float *out, float *mean, float *rstd,
                              const float *inp, const float *weight,
                              const float *bias, int N, int D, float eps);
void nn_layernorm_backward_ref(float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp,
                               const float *mean, const float *rstd,
                               const float *weight, int N, int D);

/* ---- nn_pixels.c: uint8 images to the network input ------------------- */

/* out = (inp / 255 - mean[c]) / std[c] for images of C planes of `plane`
 * pixels each. The optimised kernel multiplies by 1/(255 std) and subtracts
 * mean/std in float; _ref divides in double. */
void nn_pixels_normalize(float *out,             // (images,C,plane)
                         const uint8_t *inp,     // (images,C,plane)
                         const float *mean,      // (C)
                         const float *std,       // (C)
                         size_t images, int C, size_t plane);
void nn_pixels_normalize_ref(float *out, const uint8_t *inp, const float *mean,
                             const float *std, size_t images, int C,
                             size_t plane);

/* ---- nn_act.c: ReLU and the residual add, elementwise over n floats. */

/* out = max(inp, 0). out may equal inp (in place); otherwise no overlap. */
void nn_relu_forward(float *out, const float *inp, size_t n); // (n), (n)
/* dinp += dout where out > 0; needs only the forward OUTPUT, so it works
 * after an in-place forward. */
void nn_relu_backward(float *dinp,       // (n)
                      const float *dout, // (n)
                      const float *out,  // (n) forward output
                      size_t n);
void nn_relu_forward_ref(float *out, const float *inp, size_t n);
void nn_relu_backward_ref(float *dinp, const float *dout, const float *out,
                          size_t n);

/* out = a + b. out may equal a or b. */
void nn_add_forward(float *out, const float *a, const float *b, size_t n);
/* da += dout; db += dout (either may be NULL). */
void nn_add_backward(float *da, float *db, const float *dout, size_t n);
void nn_add_forward_ref(float *out, const float *a, const float *b, size_t n);
/* Rows of `row` floats: out[r] = scale[r] * a[r] + x[r] (out may equal a),
 * and its backward da[r] += scale[r] * dout[r], dx[r] += dout[r] (either
 * may be NULL): a residual branch a with stochastic depth. */
void nn_add_scaled_rows_forward(float *out, const float *a, const float *x,
                                const float *scale, int rows, size_t row);
void nn_add_scaled_rows_backward(float *da, float *dx, const float *dout,
                                 const float *scale, int rows, size_t row);
void nn_add_backward_ref(float *da, float *db, const float *dout, size_t n);
/* The add followed by ReLU, fused: out = max(a + b, 0) (out may equal a or
 * b). Backward: da, db (either may be NULL) get dout where out > 0, added
 * to when accumulate_a / _b, else overwritten. */
void nn_add_relu_forward(float *out, const float *a, const float *b,
                         size_t n);
void nn_add_relu_backward(float *da, float *db, const float *dout,
                          const float *out, size_t n, bool accumulate_a,
                          bool accumulate_b);
void nn_add_relu_forward_ref(float *out, const float *a, const float *b,
                             size_t n);
void nn_add_relu_backward_ref(float *da, float *db, const float *dout,
                              const float *out, size_t n, bool accumulate_a,
                              bool accumulate_b);

/* ---- nn_pool.c: global average pooling and max pooling. */

void nn_avgpool_global_forward(float *out,       // (B,C)
                               const float *inp, // (B,C,HW)
                               int B, int C, int HW);
void nn_avgpool_global_backward(float *dinp,       // (B,C,HW)
                                const float *dout, // (B,C)
                                int B, int C, int HW);
void nn_avgpool_global_forward_ref(float *out, const float *inp, int B, int C,
                                   int HW);
void nn_avgpool_global_backward_ref(float *dinp, const float *dout, int B,
                                    int C, int HW);

/* Max pooling with a KxK window (the ImageNet stem uses K=3, stride 2, pad 1);
 * padding never wins (PyTorch pads with -inf), every window must hold at
 * least one input pixel (pad < K, as PyTorch requires pad <= K/2). Ties go to
 * the first maximum in row-major window order. argmax holds, per output, the
 * index h*W + w of the winner inside its (H,W) input plane. */
void nn_maxpool2d_forward(float *out,       // (B,C,OH,OW)
                          int32_t *argmax,  // (B,C,OH,OW) saved for backward
                          const float *inp, // (B,C,H,W)
                          int B, int C, int H, int W, int K, int stride,
                          int pad);
void nn_maxpool2d_backward(float *dinp,           // (B,C,H,W)
                           const float *dout,     // (B,C,OH,OW)
                           const int32_t *argmax, // (B,C,OH,OW)
                           int B, int C, int H, int W, int K, int stride,
                           int pad);
void nn_maxpool2d_forward_ref(float *out, int32_t *argmax, const float *inp,
                              int B, int C, int H, int W, int K, int stride,
                              int pad);
void nn_maxpool2d_backward_ref(float *dinp, const float *dout,
                               const int32_t *argmax, int B, int C, int H,
                               int W, int K, int stride, int pad);

/* ---- nn_linear.c: out = inp weight^T + bias, weight (OUT,IN) as in
 * PyTorch. */

void nn_linear_forward(float *out,          // (B,OUT)
                       const float *inp,    // (B,IN)
                       const float *weight, // (OUT,IN)
                       const float *bias,   // (OUT) or NULL
                       int B, int IN, int OUT);
void nn_linear_backward(float *dinp,         // (B,IN) or NULL
                        float *dweight,      // (OUT,IN)
                        float *dbias,        // (OUT) or NULL
                        const float *dout,   // (B,OUT)
                        const float *inp,    // (B,IN)
                        const float *weight, // (OUT,IN)
                        int B, int IN, int OUT);
void nn_linear_forward_ref(float *out, const float *inp, const float *weight,
                           const float *bias, int B, int IN, int OUT);
void nn_linear_backward_ref(float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp,
                            const float *weight, int B, int IN, int OUT);

/* ---- nn_loss.c: softmax cross-entropy with integer labels in [0, K).
 * Returns the mean loss over the batch, WRITES (=) dlogits = (softmax - onehot)
 * / B (skipped when dlogits is NULL) and, when n_correct is not NULL, stores
 * the number of rows whose argmax (first maximum on ties) equals the label. */
float nn_crossentropy_forward(float *dlogits,       // (B,K) or NULL
                              int *n_correct,       // scalar or NULL
                              const float *logits,  // (B,K)
                              const int32_t *labels, // (B)
                              int B, int K);
float nn_crossentropy_forward_ref(float *dlogits, int *n_correct,
                                  const float *logits, const int32_t *labels,
                                  int B, int K);

/* Calls from outside the kernels go through the run-time table. */
#include "nn_isa.h"

#endif
