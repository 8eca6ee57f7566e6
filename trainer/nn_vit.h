/*
 * nn_vit.h: the kernels a Vision Transformer adds to nn.h: patch embedding
 * with CLS token and learned position embedding (bicubic-interpolated to the
 * token grid of smaller crops, which are zero-padded at the bottom and right
 * to a multiple of the patch), multi-head self-attention and GELU. The
 * LayerNorm, linear layers and residual adds of a pre-norm block are the
 * ones in nn.h. Same conventions as nn.h: llm.c argument order, forward
 * WRITES (=), backward ACCUMULATES (+=), no allocation inside kernels
 * (scratch sizes come from a function), OpenMP only over disjoint outputs,
 * BLAS only outside parallel regions, and a plain serial `_ref` twin.
 */
#ifndef LEJEPA_NN_VIT_H
#define LEJEPA_NN_VIT_H

#include <stddef.h>

/* ---- nn_patch.c: patch embedding, CLS token, position embedding.
 * An image (C,H,W) is cut into P x P patches after zero-padding it to
 * Hp = ceil(H/P)*P rows and Wp = ceil(W/P)*P columns, giving a token grid
 * GH = Hp/P by GW = Wp/P (token t = gy*GW + gx, as PyTorch's conv output
 * flattened). Each patch (C,P,P) times weight (D,C,P,P), the stride-P conv
 * of PyTorch, plus bias. Token 0 is the CLS token. The learned position
 * embedding pos (1 + G0*G0, D) has one row for CLS then a G0 x G0 grid; the
 * grid is resized to GH x GW with PyTorch's F.interpolate(mode='bicubic',
 * align_corners=False) (no antialias) and added to the patch tokens:
 *   out[b,0]   = cls + pos[0]
 *   out[b,1+t] = weight . patch_t + bias + interp(pos[1:])[t]
 * T = 1 + GH*GW tokens per image. The saved im2col `patches` has one row
 * per token, the CLS row of each image all zero, so that one sgemm over all
 * B*T rows makes every token (2% more flops than the patches alone, but one
 * large product instead of B small ones). */

/* ceil(in / P): tokens along one axis of a crop of `in` pixels. */
int nn_patch_grid_dim(int in, int P);

/* Floats of scratch that nn_patch_embed_forward/backward need. */
size_t nn_patch_embed_scratch_floats(int B, int C, int H, int W, int P, int D);

void nn_patch_embed_forward(float *out,          // (B,T,D)
                            float *patches,      // (B*T, C*P*P) saved
                            const float *inp,    // (B,C,H,W)
                            const float *weight, // (D,C,P,P)
                            const float *bias,   // (D)
                            const float *cls,    // (D)
                            const float *pos,    // (1+G0*G0, D)
                            float *scratch,      // nn_patch_embed_scratch_floats
                            int B, int C, int H, int W, int P, int D, int G0);
void nn_patch_embed_backward(float *dinp,          // (B,C,H,W) or NULL
                             float *dweight,       // (D,C,P,P)
                             float *dbias,         // (D)
                             float *dcls,          // (D)
                             float *dpos,          // (1+G0*G0, D)
                             const float *dout,    // (B,T,D)
                             const float *patches, // (B*T, C*P*P)
                             const float *weight,  // (D,C,P,P)
                             float *scratch,       // as forward
                             int B, int C, int H, int W, int P, int D,
                             int G0);
/* Direct loops; patches is still written / read (same layout), scratch is
 * ignored (may be NULL). */
void nn_patch_embed_forward_ref(float *out, float *patches, const float *inp,
                                const float *weight, const float *bias,
                                const float *cls, const float *pos,
                                float *scratch, int B, int C, int H, int W,
                                int P, int D, int G0);
void nn_patch_embed_backward_ref(float *dinp, float *dweight, float *dbias,
                                 float *dcls, float *dpos, const float *dout,
                                 const float *patches, const float *weight,
                                 float *scratch, int B, int C, int H, int W,
                                 int P, int D, int G0);

/* The bicubic resize alone (PyTorch F.interpolate, mode='bicubic',
 * align_corners=False, A = -0.75, border indices clamped), channels last:
 * out (OH,OW,D) from inp (IH,IW,D). Backward is its adjoint (+=). Used by
 * the patch embedding on the grid part of pos; tested against PyTorch. */
void nn_bicubic_forward(float *out,       // (OH,OW,D)
                        const float *inp, // (IH,IW,D)
                        int IH, int IW, int OH, int OW, int D);
void nn_bicubic_backward(float *dinp,       // (IH,IW,D)
                         const float *dout, // (OH,OW,D)
                         int IH, int IW, int OH, int OW, int D);

/* ---- nn_attn.c: multi-head self-attention core, as timm's Attention
 * between its qkv and proj linears. qkv (B,T,3,NH,HD) is the qkv linear's
 * output (D = NH*HD); out (B,T,NH,HD) = (B,T,D) is softmax(q k^T / sqrt(HD))
 * v per (image, head), heads concatenated. att keeps ALL softmax
 * probabilities (B,NH,T,T): backward needs them, and in eval mode the CLS
 * row att[b,h,0,:] of the last block is the per-head attention map. Memory:
 * B*NH*T*T floats per block (B=1024, NH=3, T=50: 30.7 MB; T=65: 51.9 MB),
 * linear in the number of images; besides it only the fixed scratch below.
 * The optimised kernel runs OpenMP over the (image, head) pairs, each
 * pair's products one single-threaded cblas_sgemm, its softmax rows in
 * between. */

#define NN_ATTN_MAX_SLOTS 64 /* the kernels use at most this many threads */

/* Floats of scratch the attention kernels may use (_ref none, the
 * optimised backward one T*T slot per thread): NN_ATTN_MAX_SLOTS * T*T
 * (T=50: 640 kB). HD does not enter it now; it stays in the signature so
 * callers need not know which kernel needs what. */
size_t nn_attention_scratch_floats(int T, int HD);

void nn_attention_forward(float *out,       // (B,T,D)
                          float *att,       // (B,NH,T,T) probs, saved
                          const float *qkv, // (B,T,3*D)
                          float *scratch,   // nn_attention_scratch_floats
                          int B, int T, int NH, int HD);
void nn_attention_backward(float *dqkv,       // (B,T,3*D)
                           const float *dout, // (B,T,D)
                           const float *qkv,  // (B,T,3*D)
                           const float *att,  // (B,NH,T,T) from forward
                           float *scratch,    // nn_attention_scratch_floats
                           int B, int T, int NH, int HD);
/* Direct loops; scratch is ignored (may be NULL). */
void nn_attention_forward_ref(float *out, float *att, const float *qkv,
                              float *scratch, int B, int T, int NH, int HD);
void nn_attention_backward_ref(float *dqkv, const float *dout,
                               const float *qkv, const float *att,
                               float *scratch, int B, int T, int NH, int HD);

/* ---- nn_gelu.c: GELU, exact erf form as torch.nn.GELU():
 * out = 0.5 x (1 + erf(x / sqrt(2))). out may equal inp for the forward,
 * but backward needs the forward INPUT. */
void nn_gelu_forward(float *out, const float *inp, size_t n); // (n), (n)
void nn_gelu_backward(float *dinp,       // (n)
                      const float *dout, // (n)
                      const float *inp,  // (n) forward input
                      size_t n);
void nn_gelu_forward_ref(float *out, const float *inp, size_t n);
void nn_gelu_backward_ref(float *dinp, const float *dout, const float *inp,
                          size_t n);

/* Calls from outside the kernels go through the run-time table. */
#include "nn_isa.h"

#endif
