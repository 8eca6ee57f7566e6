/*
 * graph_vit.c: the Vision Transformer's ops of the graph tape (see graph.h):
 * builders that plan their tensors and saved blocks, and the forward and
 * backward dispatch to the kernels of nn.h / nn_vit.h. Token tensors are
 * (B, T, 1, D): C holds the token count, W the width. The only arithmetic
 * of its own is the CLS pooling (a copy and a mean).
 */
#include "graph.h"

#include <string.h>

#include "nn.h"
#include "nn_vit.h"
#include "util.h"

int graph_patch_embed(struct graph *g, int in, const char *name, int P, int D,
                      int G0, enum params_group group)
{
    struct graph_tensor x = g->t[in];
    CHECK(P > 0 && D > 0 && G0 > 0);
    int GH = nn_patch_grid_dim(x.H, P), GW = nn_patch_grid_dim(x.W, P);
    int T = 1 + GH * GW;
    struct graph_op *op = graph_new_op(g, GRAPH_PATCH_EMBED, in);
    char proj[PARAMS_NAME_LEN];
    int n = snprintf(proj, sizeof proj, "%s.patch_embed.proj", name);
    CHECK(n > 0 && (size_t)n < sizeof proj);
    int wshape[4] = {D, x.C, P, P};
    int fan_in = x.C * P * P;
    op->weight = graph_param(&g->p->learn, proj, "weight", 4, wshape, group,
                             PARAMS_INIT_UNIFORM_FAN_IN, fan_in);
    op->bias = graph_param(&g->p->learn, proj, "bias", 1, &D, group,
                           PARAMS_INIT_UNIFORM_FAN_IN, fan_in);
    int cshape[3] = {1, 1, D}, pshape[3] = {1, 1 + G0 * G0, D};
    op->cls = graph_param(&g->p->learn, name, "cls_token", 3, cshape, group,
                          PARAMS_INIT_ZEROS, 0);
    op->pos = graph_param(&g->p->learn, name, "pos_embed", 3, pshape, group,
                          PARAMS_INIT_ZEROS, 0);
    op->K = P;
    op->G0 = G0;
    op->save = graph_reserve(g, (size_t)g->B_cap * T * fan_in);
    graph_need_scratch(g, nn_patch_embed_scratch_floats(g->B_cap, x.C, x.H,
                                                        x.W, P, D));
    op->out = graph_new_tensor(g, T, 1, D, -1);
    return op->out;
}

int graph_layernorm(struct graph *g, int in, const char *name, float eps,
                    enum params_group group)
{
    struct graph_tensor x = g->t[in];
    CHECK(x.H == 1);
    int D = x.W;
    struct graph_op *op = graph_new_op(g, GRAPH_LAYERNORM, in);
    op->weight = graph_param(&g->p->learn, name, "weight", 1, &D, group,
                             PARAMS_INIT_ONES, 0);
    op->bias = graph_param(&g->p->learn, name, "bias", 1, &D, group,
                           PARAMS_INIT_ZEROS, 0);
    op->eps = eps;
    op->save = graph_reserve(g, 2 * (size_t)g->B_cap * x.C); /* mean, rstd */
    op->out = graph_new_tensor(g, x.C, 1, D, -1);
    return op->out;
}

int graph_token_linear(struct graph *g, int in, const char *name, int OUT,
                       enum params_group group)
{
    struct graph_tensor x = g->t[in];
    CHECK(x.H == 1 && OUT > 0);
    struct graph_op *op = graph_new_op(g, GRAPH_TOKEN_LINEAR, in);
    graph_linear_params(g, op, name, x.W, OUT, group);
    op->out = graph_new_tensor(g, x.C, 1, OUT, -1);
    return op->out;
}

int graph_attention(struct graph *g, int qkv, int heads)
{
    struct graph_tensor x = g->t[qkv];
    CHECK(x.H == 1 && heads > 0 && x.W % (3 * heads) == 0);
    int T = x.C, D = x.W / 3;
    struct graph_op *op = graph_new_op(g, GRAPH_ATTENTION, qkv);
    op->heads = heads;
    op->save = graph_reserve(g, (size_t)g->B_cap * heads * T * T);
    graph_need_scratch(g, nn_attention_scratch_floats(T, D / heads));
    op->out = graph_new_tensor(g, T, 1, D, -1);
    return op->out;
}

int graph_gelu(struct graph *g, int in)
{
    struct graph_op *op = graph_new_op(g, GRAPH_GELU, in);
    op->out = graph_new_tensor(g, g->t[in].C, g->t[in].H, g->t[in].W, -1);
    return op->out;
}

int graph_cls_pool(struct graph *g, int in, bool cls_mean)
{
    struct graph_tensor x = g->t[in];
    CHECK(x.H == 1 && (!cls_mean || x.C > 1));
    struct graph_op *op = graph_new_op(g, GRAPH_CLS_POOL, in);
    op->cls_mean = cls_mean;
    op->out = graph_new_tensor(g, cls_mean ? 2 * x.W : x.W, 1, 1, -1);
    return op->out;
}

/* out (B, D or 2D): token 0, then the mean of tokens 1..T-1. */
static void cls_pool_forward(float *out, const float *in, int B, int T, int D,
                             bool cls_mean)
{
    const int E = cls_mean ? 2 * D : D;
    const float inv = T > 1 ? 1.0f / (float)(T - 1) : 0.0f;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *x = in + (size_t)b * T * D;
        float *y = out + (size_t)b * E;
        memcpy(y, x, (size_t)D * sizeof(float));
        if (!cls_mean)
            continue;
        float *m = y + D;
        memset(m, 0, (size_t)D * sizeof(float));
        for (int t = 1; t < T; t++)
            for (int j = 0; j < D; j++)
                m[j] += x[(size_t)t * D + j];
        for (int j = 0; j < D; j++)
            m[j] *= inv;
    }
}

/* din += the adjoint of cls_pool_forward. */
static void cls_pool_backward(float *din, const float *dout, int B, int T,
                              int D, bool cls_mean)
{
    const int E = cls_mean ? 2 * D : D;
    const float inv = T > 1 ? 1.0f / (float)(T - 1) : 0.0f;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *dx = din + (size_t)b * T * D;
        const float *dy = dout + (size_t)b * E;
        for (int j = 0; j < D; j++)
            dx[j] += dy[j];
        if (!cls_mean)
            continue;
        for (int t = 1; t < T; t++)
            for (int j = 0; j < D; j++)
                dx[(size_t)t * D + j] += dy[D + j] * inv;
    }
}

void graph_vit_forward_op(struct graph *g, const struct graph_op *op)
{
    struct params *p = g->p;
    const int B = g->B;
    const struct graph_tensor x = g->t[op->in], y = g->t[op->out];
    const float *in = graph_act(g, op->in);
    float *out = graph_act(g, op->out);
    float *save = g->act + op->save;
    switch (op->kind) {
    case GRAPH_PATCH_EMBED:
        nn_patch_embed_forward(out, save, in, params_data(p, op->weight),
                               params_data(p, op->bias),
                               params_data(p, op->cls),
                               params_data(p, op->pos), g->scratch, B, x.C,
                               x.H, x.W, op->K, y.W, op->G0);
        break;
    case GRAPH_LAYERNORM:
        nn_layernorm_forward(out, save, save + (size_t)g->B_cap * x.C, in,
                             params_data(p, op->weight),
                             params_data(p, op->bias), B * x.C, x.W, op->eps);
        break;
    case GRAPH_TOKEN_LINEAR:
        nn_linear_forward(out, in, params_data(p, op->weight),
                          params_data(p, op->bias), B * x.C, x.W, y.W);
        break;
    case GRAPH_ATTENTION:
        nn_attention_forward(out, save, in, g->scratch, B, x.C, op->heads,
                             y.W / op->heads);
        break;
    case GRAPH_GELU:
        nn_gelu_forward(out, in, graph_numel(g, op->out));
        break;
    case GRAPH_CLS_POOL:
        cls_pool_forward(out, in, B, x.C, x.W, op->cls_mean);
        break;
    default:
        CHECK(0);
    }
}

void graph_vit_backward_op(struct graph *g, const struct graph_op *op,
                           float *din, const float *dout)
{
    struct params *p = g->p;
    const int B = g->B;
    const struct graph_tensor x = g->t[op->in], y = g->t[op->out];
    const float *in = graph_act(g, op->in);
    const float *save = g->act + op->save;
    switch (op->kind) {
    case GRAPH_PATCH_EMBED:
        nn_patch_embed_backward(din, params_grad(p, op->weight),
                                params_grad(p, op->bias),
                                params_grad(p, op->cls),
                                params_grad(p, op->pos), dout, save,
                                params_data(p, op->weight), g->scratch, B,
                                x.C, x.H, x.W, op->K, y.W, op->G0);
        break;
    case GRAPH_LAYERNORM:
        nn_layernorm_backward(din, params_grad(p, op->weight),
                              params_grad(p, op->bias), dout, in, save,
                              save + (size_t)g->B_cap * x.C,
                              params_data(p, op->weight), B * x.C, x.W);
        break;
    case GRAPH_TOKEN_LINEAR:
        nn_linear_backward(din, params_grad(p, op->weight),
                           params_grad(p, op->bias), dout, in,
                           params_data(p, op->weight), B * x.C, x.W, y.W);
        break;
    case GRAPH_ATTENTION:
        if (din)
            nn_attention_backward(din, dout, in, save, g->scratch, B, x.C,
                                  op->heads, y.W / op->heads);
        break;
    case GRAPH_GELU:
        if (din)
            nn_gelu_backward(din, dout, in, graph_numel(g, op->out));
        break;
    case GRAPH_CLS_POOL:
        if (din)
            cls_pool_backward(din, dout, B, x.C, x.W, op->cls_mean);
        break;
    default:
        CHECK(0);
    }
}

double graph_vit_op_flops(const struct graph *g, const struct graph_op *op)
{
    const struct graph_tensor x = g->t[op->in], y = g->t[op->out];
    switch (op->kind) {
    case GRAPH_PATCH_EMBED:
        return 2.0 * g->B * y.C * y.W * x.C * op->K * op->K;
    case GRAPH_TOKEN_LINEAR:
        return 2.0 * g->B * x.C * x.W * y.W;
    case GRAPH_ATTENTION: /* q k^T and probs v */
        return 4.0 * g->B * x.C * x.C * y.W;
    default:
        return 0;
    }
}
