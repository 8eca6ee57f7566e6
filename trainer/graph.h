/*
 * graph.h: a model as a tape of layer ops over named activation tensors, for
 * one fixed batch size and input resolution. The ResNet and projector
 * builders append ops; forward runs the tape, backward runs it in reverse
 * calling each kernel's backward. Activations, their gradients and the conv
 * scratch are three arenas allocated once (graph_alloc), so the step loop
 * never allocates. Parameters live in the shared struct params: two graphs
 * (global and local resolution) built with the same names share weights.
 * A ViT's tokens are tensors too: B images of T tokens of D floats, stored
 * as C = T, H = 1, W = D (graph_vit.c builds and runs those ops).
 */
#ifndef LEJEPA_GRAPH_H
#define LEJEPA_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "dist.h"
#include "params.h"

enum graph_op_kind {
    GRAPH_CONV,
    GRAPH_BN,       /* BatchNorm2d on (B,C,H,W), BatchNorm1d when H = W = 1 */
    GRAPH_RELU,
    GRAPH_ADD,
    GRAPH_MAXPOOL,
    GRAPH_AVGPOOL,  /* global average pooling to (B,C,1,1) */
    GRAPH_LINEAR,   /* on (B,C,1,1) tensors */
    /* ViT ops on token tensors (B, T, 1, D), graph_vit.c */
    GRAPH_PATCH_EMBED,  /* image (B,C,H,W) -> tokens, CLS and pos added */
    GRAPH_LAYERNORM,    /* over D, per token */
    GRAPH_TOKEN_LINEAR, /* per token: (B*T, IN) -> (B*T, OUT), one sgemm */
    GRAPH_ATTENTION,    /* qkv (B,T,1,3D) -> (B,T,1,D), probs saved */
    GRAPH_GELU,
    GRAPH_CLS_POOL,     /* tokens -> (B, D or 2D, 1, 1) embedding */
    GRAPH_N_KINDS,
};

/* "conv", "bn", ... for reports. */
const char *graph_kind_name(enum graph_op_kind k);

/* A tensor of the graph: B images of C x H x W floats. An in-place op's
 * output shares its input's activation offset (the input is then
 * "overwritten" and may have no other consumer); gradients are never shared
 * in place but planned by liveness: goffset places the gradient in the
 * gradient arena, reused by tensors whose gradients are never live at once. */
struct graph_tensor {
    int C, H, W;
    size_t offset;    /* activation arena, floats */
    size_t goffset;   /* gradient arena, floats (graph_alloc plans it) */
    bool overwritten; /* an in-place op consumed it */
    int producer;     /* op that writes it, -1 for the input */
    int last_use;     /* last op that reads it, -1 if none (an output) */
};

struct graph_op {
    enum graph_op_kind kind;
    int in, in2, out;       /* tensor ids (in2 only for ADD) */
    int weight, bias;       /* learnable param indices, -1 if none */
    int run_mean, run_var;  /* state indices for BN */
    int K, stride, pad;
    size_t save;            /* saved-for-backward block in the arena */
    /* An in-place ReLU right after a BN 2-D or an ADD whose output it
     * consumes: the previous op's fused kernel does its work, forward and
     * backward, so the tape skips this op. */
    bool fused;
    /* ViT ops: PATCH_EMBED's CLS token and position embedding (param
     * indices, -1 otherwise) and its position grid G0 (K is the patch);
     * ATTENTION's heads (save holds its probabilities (B,NH,T,T));
     * LAYERNORM's eps; CLS_POOL with the patch-token mean. */
    int cls, pos;
    int G0, heads;
    float eps;
    bool cls_mean;
    /* ADD of a residual branch (in) to x (in2) with stochastic depth: in
     * training each row's branch is dropped with this probability (kept
     * ones scaled by 1 / (1 - drop)); save holds the rows' scales. */
    float drop;
};

struct graph {
    int B;          /* images of the current batch, at most B_cap */
    int B_cap;      /* images the arenas were planned for */
    struct params *p;
    struct graph_tensor *t;
    int n_t, cap_t;
    struct graph_op *ops;
    int n_ops, cap_ops;
    size_t act_total, dact_total, scratch_floats;
    float *act, *dact, *scratch;
    /* Synchronised BatchNorm: when not NULL, training-mode BN ops use the
     * batch statistics of every rank (dist_bn.h); NULL: this process's. */
    struct dist *bn_dist;
    /* Training-mode BN ops leave the running statistics as they are (the
     * local views' group when only the global views' statistics count). */
    bool keep_running;
    /* The stream of this pass's drop_path masks (the run seed and the
     * step, set by the model before a training forward). */
    uint64_t drop_seed, drop_step;
    /* Called (when set) after each op's backward, with its index. */
    void (*after_backward)(void *ctx, int op);
    void *after_ctx;
    /* When profile is set, seconds spent per op kind, forward and backward,
     * and the part of them in sgemm (with nn_gemm_profile set). */
    bool profile;
    double seconds[2][GRAPH_N_KINDS];
    double gemm_seconds[2][GRAPH_N_KINDS];
};

/* A graph for batches of up to B images. */
void graph_init(struct graph *g, struct params *p, int B);

/* Runs later passes on the first B images (B <= B_cap): tensors keep their
 * offsets, so a smaller batch uses a prefix of each tensor. */
void graph_set_batch(struct graph *g, int B);
void graph_free(struct graph *g);

/* Builders: each returns the id of its output tensor. Parameters are found
 * by name in g->p, or added there when absent (so the first graph built
 * creates them and later graphs share them). Names follow PyTorch's
 * state_dict (prefix + ".weight", ".bias", ".running_mean", ...). */
int graph_input(struct graph *g, int C, int H, int W);
int graph_conv(struct graph *g, int in, const char *name, int OC, int K,
               int stride, int pad, enum params_group group);
int graph_bn(struct graph *g, int in, const char *name, enum params_group group);
/* in_place: the output overwrites the input's (a's) activations. */
int graph_relu(struct graph *g, int in, bool in_place);
int graph_add(struct graph *g, int a, int b, bool in_place);
/* branch + x in place of branch, the branch dropped per row (image) with
 * probability drop in training passes: stochastic depth (drop_path). A
 * row's mask is drawn from rng stream (drop_seed, drop_step, op, row). */
int graph_add_drop(struct graph *g, int branch, int x, float drop);
int graph_maxpool(struct graph *g, int in, int K, int stride, int pad);
int graph_avgpool(struct graph *g, int in);
int graph_linear(struct graph *g, int in, const char *name, int OUT,
                 enum params_group group);

/* ViT builders (graph_vit.c) on token tensors (B, T, 1, D). name is the
 * parameter prefix as for the others. graph_patch_embed takes an image
 * tensor (B,C,H,W) and makes T = 1 + ceil(H/P)*ceil(W/P) tokens of width D
 * with parameters name.cls_token (1,1,D), name.pos_embed (1,1+G0*G0,D),
 * name.patch_embed.proj.weight (D,C,P,P) and .bias (D) (init: zeros for
 * the first two, PyTorch's Conv2d default for the proj; vit.c applies
 * timm's init on top). graph_token_linear has nn.Linear's default init. */
int graph_patch_embed(struct graph *g, int in, const char *name, int P, int D,
                      int G0, enum params_group group);
int graph_layernorm(struct graph *g, int in, const char *name, float eps,
                    enum params_group group);
int graph_token_linear(struct graph *g, int in, const char *name, int OUT,
                       enum params_group group);
/* qkv (B,T,1,3D) -> (B,T,1,D) with D = heads * HD. */
int graph_attention(struct graph *g, int qkv, int heads);
int graph_gelu(struct graph *g, int in);
/* (B,T,1,D) -> (B,D,1,1): token 0; with cls_mean (B,2D,1,1): token 0 then
 * the mean of tokens 1..T-1. */
int graph_cls_pool(struct graph *g, int in, bool cls_mean);

/* Internals shared by graph.c and graph_vit.c, not for model builders:
 * arena reservation, tensor and op creation, parameter lookup-or-add, and
 * the ViT ops' dispatch (din is NULL for the graph's input). */
size_t graph_reserve(struct graph *g, size_t n);
/* Grows the shared scratch (one block, reused by every op) to floats. */
void graph_need_scratch(struct graph *g, size_t floats);
int graph_new_tensor(struct graph *g, int C, int H, int W, int alias);
struct graph_op *graph_new_op(struct graph *g, enum graph_op_kind kind, int in);
int graph_param(struct params_table *t, const char *prefix, const char *suffix,
                int ndim, const int *shape, enum params_group group,
                enum params_init init, int fan_in);
/* op's weight (OUT, IN) and bias (OUT) as name.weight / name.bias, both
 * PyTorch's Linear default init (uniform, fan-in IN). */
void graph_linear_params(struct graph *g, struct graph_op *op,
                         const char *name, int IN, int OUT,
                         enum params_group group);
void graph_vit_forward_op(struct graph *g, const struct graph_op *op);
void graph_vit_backward_op(struct graph *g, const struct graph_op *op,
                           float *din, const float *dout);
double graph_vit_op_flops(const struct graph *g, const struct graph_op *op);

/* Allocates the arenas; call once after building and after params_alloc.
 * Without need_grad (eval-only graphs) no gradient arena is made; with it,
 * the gradients are placed by liveness (see struct graph_tensor). */
void graph_alloc(struct graph *g, bool need_grad);

static inline float *graph_act(const struct graph *g, int t)
{
    return g->act + g->t[t].offset;
}
static inline float *graph_dact(const struct graph *g, int t)
{
    return g->dact + g->t[t].goffset;
}
static inline size_t graph_numel(const struct graph *g, int t)
{
    return (size_t)g->B * g->t[t].C * g->t[t].H * g->t[t].W;
}

/* Runs ops [0, n_ops). Training mode uses batch statistics and updates the
 * BN running statistics; eval mode uses the running statistics. */
void graph_forward(struct graph *g, bool training);

/* Zeroes the gradients of the graph's outputs (tensors no op reads); call
 * before adding the loss's gradient into them. */
void graph_zero_out_grads(struct graph *g);

/* Reverse pass: accumulates parameter gradients into g->p->grad. Needs the
 * activations of the last graph_forward in the same mode. Every other
 * activation gradient is zeroed just before its first writer. */
void graph_backward(struct graph *g, bool training);

/* Multiply-adds of one forward pass (for GFLOP/s reports), convolutions
 * counted as direct ones. */
double graph_forward_flops(const struct graph *g);
/* Floating-point operations the GEMMs execute on the paths taken
 * (nn_conv2d_executed_flops: Winograd does fewer than the direct count):
 * a forward pass, or with backward a training step: backward twice the
 * forward, once for the op on the input, whose gradient nobody needs. */
double graph_executed_flops(const struct graph *g, bool backward);

#endif
