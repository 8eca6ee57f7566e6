/*
 * vit.h: the Vision Transformer backbone as graph ops, laid out as timm's
 * VisionTransformer (class token, learned position embedding, pre-norm
 * blocks: x + attn(norm1(x)), x + mlp(norm2(x)) with an exact-GELU MLP, a
 * final LayerNorm, eps 1e-6 everywhere). Parameter names are timm's
 * state_dict under the given prefix ("backbone.blocks.0.attn.qkv.weight").
 * Crops smaller than the global size get the position grid bicubic-resized
 * to their token grid; sizes not a multiple of the patch are zero-padded at
 * the bottom and right (the kernels of nn_vit.h do both).
 */
#ifndef LEJEPA_VIT_H
#define LEJEPA_VIT_H

#include <stdint.h>

#include "graph.h"

enum vit_embed {
    VIT_EMBED_CLS,      /* the CLS token after the final norm: D floats */
    VIT_EMBED_CLS_MEAN, /* and the mean of the patch tokens: 2D floats */
};

struct vit_config {
    int in_channels;    /* 1 or 3 */
    int patch;          /* P */
    int dim;            /* D, a multiple of heads */
    int depth;          /* blocks */
    int heads;          /* NH */
    double mlp_ratio;   /* MLP hidden = (int)(dim * mlp_ratio), as timm */
    double drop_path;   /* stochastic depth of the last block (timm's
                         * linear rule over the blocks); 0: none */
    enum vit_embed embed;
};

/* What vit_build made: the embedding (B, E, 1, 1), the final normed tokens
 * (B, T, 1, D) (token 0 the CLS, then the GH x GW patch grid row-major),
 * the op index of the last block's ATTENTION (its save block holds the
 * probabilities (B, NH, T, T)), and the token grid. */
struct vit_out {
    int emb, tokens, attn_op;
    int GH, GW;
    int prev; /* the tokens the last block reads (the block before's
               * output; the patch embedding's with one block) */
};

/* 0, or -1 with the reason naming the model keys (patch, dim, depth,
 * heads, mlp_ratio). */
int vit_check_config(const struct vit_config *c, char *err);

/* Width of the embedding: D, or 2D with cls_mean. */
int vit_embed_dim(const struct vit_config *c);

/* Appends the backbone to g for the (B, in_channels, H, W) tensor in; the
 * position embedding has a G0 x G0 grid, G0 = ceil(pos_size / patch)
 * (pos_size: the global crop size, the same for every graph sharing the
 * weights). */
void vit_build(struct graph *g, int in, const struct vit_config *c,
               int pos_size, const char *prefix, struct vit_out *out);

/* timm's init_weights on the ViT tensors under prefix (after params_init
 * drew the module defaults): Linear weights (qkv, proj, fc1, fc2) and
 * pos_embed trunc_normal(std 0.02, cut at +-2 as torch's trunc_normal_),
 * Linear biases zero, cls_token normal(std 1e-6). The patch projection
 * keeps nn.Conv2d's default (timm's init_weights only visits nn.Linear),
 * LayerNorms ones/zeros. Draws from our rng, stream (seed, 3, tensor). */
void vit_init_params(struct params *p, const char *prefix, uint64_t seed);

#endif
