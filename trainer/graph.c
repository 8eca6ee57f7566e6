/*
 * graph.c: the op tape (see graph.h). This file only plans memory and
 * dispatches to the kernels of nn.h; it holds no arithmetic of its own.
 * The ViT's token ops are built and run by graph_vit.c.
 */
#include "graph.h"

#include <omp.h>
#include <string.h>

#include "dist_bn.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

const char *graph_kind_name(enum graph_op_kind k)
{
    static const char *const names[GRAPH_N_KINDS] = {
        "conv", "bn", "relu", "add", "maxpool", "avgpool", "linear",
        "patch_embed", "layernorm", "token_linear", "attention", "gelu",
        "cls_pool",
    };
    return k < GRAPH_N_KINDS ? names[k] : "?";
}

void graph_init(struct graph *g, struct params *p, int B)
{
    memset(g, 0, sizeof *g);
    CHECK(B > 0);
    g->B = g->B_cap = B;
    g->p = p;
}

void graph_free(struct graph *g)
{
    free(g->t);
    free(g->ops);
    util_free_aligned(g->act);
    util_free_aligned(g->dact);
    util_free_aligned(g->scratch);
    memset(g, 0, sizeof *g);
}

void graph_set_batch(struct graph *g, int B)
{
    CHECK(B > 0 && B <= g->B_cap);
    g->B = B;
}

/* Reserves n floats of the arena, 64-byte aligned. */
void graph_need_scratch(struct graph *g, size_t floats)
{
    if (floats > g->scratch_floats)
        g->scratch_floats = floats;
}

size_t graph_reserve(struct graph *g, size_t n)
{
    size_t off = g->act_total;
    g->act_total += (n + 15) / 16 * 16;
    return off;
}

/* A new tensor; alias >= 0 shares that tensor's activations (in place). */
int graph_new_tensor(struct graph *g, int C, int H, int W, int alias)
{
    if (g->n_t == g->cap_t) {
        g->cap_t = g->cap_t ? 2 * g->cap_t : 64;
        g->t = xrealloc(g->t, (size_t)g->cap_t * sizeof *g->t);
    }
    struct graph_tensor *t = &g->t[g->n_t];
    memset(t, 0, sizeof *t);
    t->C = C;
    t->H = H;
    t->W = W;
    t->producer = g->n_ops - 1;
    t->last_use = -1;
    if (alias >= 0) {
        CHECK(!g->t[alias].overwritten);
        g->t[alias].overwritten = true;
        t->offset = g->t[alias].offset;
    } else {
        t->offset = graph_reserve(g, (size_t)g->B_cap * C * H * W);
    }
    return g->n_t++;
}

struct graph_op *graph_new_op(struct graph *g, enum graph_op_kind kind,
                               int in)
{
    if (g->n_ops == g->cap_ops) {
        g->cap_ops = g->cap_ops ? 2 * g->cap_ops : 64;
        g->ops = xrealloc(g->ops, (size_t)g->cap_ops * sizeof *g->ops);
    }
    struct graph_op *op = &g->ops[g->n_ops++];
    memset(op, 0, sizeof *op);
    CHECK(in >= 0 && in < g->n_t && !g->t[in].overwritten);
    g->t[in].last_use = g->n_ops - 1;
    op->kind = kind;
    op->in = in;
    op->in2 = op->weight = op->bias = op->run_mean = op->run_var = -1;
    op->cls = op->pos = -1;
    return op;
}

int graph_param(struct params_table *t, const char *prefix, const char *suffix,
                 int ndim, const int *shape, enum params_group group,
                 enum params_init init, int fan_in)
{
    char name[PARAMS_NAME_LEN];
    int n = snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    CHECK(n > 0 && (size_t)n < sizeof name);
    int i = params_find(t, name);
    if (i >= 0) {
        CHECK(t->e[i].ndim == ndim);
        for (int d = 0; d < ndim; d++)
            CHECK(t->e[i].shape[d] == shape[d]);
        return i;
    }
    /* A graph built after the arenas exist may only reuse parameters. */
    CHECK(t->frozen == false);
    return params_add(t, name, ndim, shape, group, init, fan_in);
}

int graph_input(struct graph *g, int C, int H, int W)
{
    CHECK(g->n_t == 0);  /* tensor 0 is the input; it needs no gradient */
    return graph_new_tensor(g, C, H, W, -1);
}

int graph_conv(struct graph *g, int in, const char *name, int OC, int K,
               int stride, int pad, enum params_group group)
{
    struct graph_tensor x = g->t[in];
    int OH = nn_conv2d_out_dim(x.H, K, stride, pad);
    int OW = nn_conv2d_out_dim(x.W, K, stride, pad);
    CHECK(OH > 0 && OW > 0);
    struct graph_op *op = graph_new_op(g, GRAPH_CONV, in);
    int shape[4] = {OC, x.C, K, K};
    op->weight = graph_param(&g->p->learn, name, "weight", 4, shape, group,
                       PARAMS_INIT_KAIMING_FAN_OUT, 0);
    op->K = K;
    op->stride = stride;
    op->pad = pad;
    graph_need_scratch(g, nn_conv2d_scratch_floats(g->B_cap, x.C, x.H, x.W, OC,
                                                   K, stride, pad));
    op->out = graph_new_tensor(g, OC, OH, OW, -1);
    return op->out;
}

int graph_bn(struct graph *g, int in, const char *name, enum params_group group)
{
    int C = g->t[in].C;
    struct graph_op *op = graph_new_op(g, GRAPH_BN, in);
    op->weight = graph_param(&g->p->learn, name, "weight", 1, &C, group,
                       PARAMS_INIT_ONES, 0);
    op->bias = graph_param(&g->p->learn, name, "bias", 1, &C, group,
                     PARAMS_INIT_ZEROS, 0);
    op->run_mean = graph_param(&g->p->state, name, "running_mean", 1, &C, group,
                         PARAMS_INIT_ZEROS, 0);
    op->run_var = graph_param(&g->p->state, name, "running_var", 1, &C, group,
                        PARAMS_INIT_ONES, 0);
    op->save = graph_reserve(g, 2 * (size_t)C);
    op->out = graph_new_tensor(g, C, g->t[in].H, g->t[in].W, -1);
    return op->out;
}

int graph_relu(struct graph *g, int in, bool in_place)
{
    struct graph_op *op = graph_new_op(g, GRAPH_RELU, in);
    op->out = graph_new_tensor(g, g->t[in].C, g->t[in].H, g->t[in].W,
                         in_place ? in : -1);
    /* Fuse into the op just before when it produced in (so in has no other
     * reader): BN 2-D (not 1-D) or ADD. */
    const struct graph_op *prev = g->n_ops > 1 ? op - 1 : NULL;
    const struct graph_tensor *x = &g->t[in];
    op->fused = in_place && prev && prev->out == in && !prev->fused &&
                ((prev->kind == GRAPH_BN && x->H * x->W > 1) ||
                 (prev->kind == GRAPH_ADD && prev->in != prev->in2));
    return op->out;
}

int graph_add(struct graph *g, int a, int b, bool in_place)
{
    CHECK(g->t[a].C == g->t[b].C && g->t[a].H == g->t[b].H &&
          g->t[a].W == g->t[b].W);
    struct graph_op *op = graph_new_op(g, GRAPH_ADD, a);
    CHECK(b >= 0 && b < g->n_t && !g->t[b].overwritten);
    g->t[b].last_use = g->n_ops - 1;
    op->in2 = b;
    op->out = graph_new_tensor(g, g->t[a].C, g->t[a].H, g->t[a].W,
                         in_place ? a : -1);
    return op->out;
}

int graph_add_drop(struct graph *g, int branch, int x, float drop)
{
    CHECK(drop >= 0 && drop < 1);
    int out = graph_add(g, branch, x, true);
    struct graph_op *op = &g->ops[g->n_ops - 1];
    op->drop = drop;
    if (drop > 0)
        op->save = graph_reserve(g, (size_t)g->B_cap); /* the rows' scales */
    return out;
}

int graph_maxpool(struct graph *g, int in, int K, int stride, int pad)
{
    struct graph_tensor x = g->t[in];
    struct graph_op *op = graph_new_op(g, GRAPH_MAXPOOL, in);
    op->K = K;
    op->stride = stride;
    op->pad = pad;
    int OH = nn_conv2d_out_dim(x.H, K, stride, pad);
    int OW = nn_conv2d_out_dim(x.W, K, stride, pad);
    CHECK(OH > 0 && OW > 0);
    op->save = graph_reserve(g, (size_t)g->B_cap * x.C * OH * OW); /* int32 argmax */
    op->out = graph_new_tensor(g, x.C, OH, OW, -1);
    return op->out;
}

int graph_avgpool(struct graph *g, int in)
{
    struct graph_op *op = graph_new_op(g, GRAPH_AVGPOOL, in);
    op->out = graph_new_tensor(g, g->t[in].C, 1, 1, -1);
    return op->out;
}

void graph_linear_params(struct graph *g, struct graph_op *op,
                         const char *name, int IN, int OUT,
                         enum params_group group)
{
    int shape[2] = {OUT, IN};
    op->weight = graph_param(&g->p->learn, name, "weight", 2, shape, group,
                             PARAMS_INIT_UNIFORM_FAN_IN, IN);
    op->bias = graph_param(&g->p->learn, name, "bias", 1, &OUT, group,
                           PARAMS_INIT_UNIFORM_FAN_IN, IN);
}

int graph_linear(struct graph *g, int in, const char *name, int OUT,
                 enum params_group group)
{
    struct graph_tensor x = g->t[in];
    CHECK(x.H == 1 && x.W == 1);
    struct graph_op *op = graph_new_op(g, GRAPH_LINEAR, in);
    graph_linear_params(g, op, name, x.C, OUT, group);
    op->out = graph_new_tensor(g, OUT, 1, 1, -1);
    return op->out;
}

/* Backward runs ops n-1 .. 0. Tensor t's gradient is first written by its
 * last reader (or before the pass, for outputs: n_ops) and last read by its
 * producer: it is live over op indices [producer, first_write]. */
static int grad_first_write(const struct graph *g, int t)
{
    return g->t[t].last_use >= 0 ? g->t[t].last_use : g->n_ops;
}

/* First op (in forward order) whose backward reads t's gradient: its
 * producer, or the op before when the producer is fused into that one. */
static int grad_last_read(const struct graph *g, int t)
{
    int p = g->t[t].producer;
    return p > 0 && g->ops[p].fused ? p - 1 : p;
}

/* Places every gradient (but the input's) at the lowest offset that no
 * tensor live at the same time occupies, largest tensors first. */
static void plan_gradients(struct graph *g)
{
    int n = g->n_t;
    int *order = xmalloc((size_t)n * sizeof *order);
    bool *placed = xcalloc((size_t)n, sizeof *placed);
    for (int i = 0; i < n; i++)
        order[i] = i;
    /* insertion sort by size, descending (a few hundred tensors) */
    for (int i = 1; i < n; i++) {
        int x = order[i], j = i - 1;
        size_t sx = (size_t)g->t[x].C * g->t[x].H * g->t[x].W;
        while (j >= 0 && (size_t)g->t[order[j]].C * g->t[order[j]].H *
                                 g->t[order[j]].W < sx) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = x;
    }
    g->dact_total = 0;
    for (int k = 0; k < n; k++) {
        int t = order[k];
        /* The input needs none; a tensor read only by a fused ReLU has its
         * gradient skipped (the fused kernel reads the ReLU's). */
        int r = g->t[t].last_use;
        if (t == 0 || (r >= 0 && g->ops[r].fused))
            continue;
        size_t size = ((size_t)g->B_cap * g->t[t].C * g->t[t].H * g->t[t].W +
                       15) / 16 * 16;
        int lo = grad_last_read(g, t), hi = grad_first_write(g, t);
        size_t off = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (int u = 0; u < n; u++) {
                if (!placed[u])
                    continue;
                int ulo = grad_last_read(g, u), uhi = grad_first_write(g, u);
                size_t usize = ((size_t)g->B_cap * g->t[u].C * g->t[u].H *
                                g->t[u].W + 15) / 16 * 16;
                bool time = !(hi < ulo || uhi < lo);
                bool space = off < g->t[u].goffset + usize &&
                             g->t[u].goffset < off + size;
                if (time && space) {
                    off = g->t[u].goffset + usize;
                    moved = true;
                }
            }
        }
        g->t[t].goffset = off;
        placed[t] = true;
        if (off + size > g->dact_total)
            g->dact_total = off + size;
    }
    free(order);
    free(placed);
}

void graph_alloc(struct graph *g, bool need_grad)
{
    CHECK(g->p->data != NULL);
    g->act = xmalloc_aligned(g->act_total * sizeof(float));
    if (need_grad) {
        plan_gradients(g);
        g->dact = xmalloc_aligned(g->dact_total * sizeof(float));
    }
    g->scratch = xmalloc_aligned((g->scratch_floats + 16) * sizeof(float));
}

/* Op i's drop_path scales of this pass: 0 for a dropped row, else
 * 1 / (1 - drop); row r's from rng stream (drop_seed, drop_step, i, r). */
static void drop_scales(const struct graph *g, int i, float *scale)
{
    const float drop = g->ops[i].drop, keep = 1.0f / (1.0f - drop);
    for (int r = 0; r < g->B; r++) {
        struct rng rng;
        rng_init(&rng, g->drop_seed, g->drop_step, (uint64_t)i, (uint64_t)r);
        scale[r] = rng_uniformf(&rng) < drop ? 0.0f : keep;
    }
}

/* An op's seconds since t0, and (dir 0 forward, 1 backward) the wall time
 * its sgemm calls took: their thread-seconds since gemm0 over the threads. */
static void profile_add(struct graph *g, int dir, int kind, double t0,
                        double gemm0)
{
    g->seconds[dir][kind] += util_time_mono() - t0;
    g->gemm_seconds[dir][kind] +=
        (nn_gemm_thread_seconds - gemm0) / omp_get_max_threads();
}

void graph_forward(struct graph *g, bool training)
{
    struct params *p = g->p;
    const int B = g->B;
    for (int i = 0; i < g->n_ops; i++) {
        const struct graph_op *op = &g->ops[i];
        if (op->fused)
            continue;
        /* A fused ReLU next writes in place over this op's output. */
        const bool relu = i + 1 < g->n_ops && g->ops[i + 1].fused;
        const struct graph_tensor x = g->t[op->in];
        const struct graph_tensor y = g->t[op->out];
        double t0 = g->profile ? util_time_mono() : 0;
        const double gemm0 = g->profile ? nn_gemm_thread_seconds : 0;
        const float *in = graph_act(g, op->in);
        float *out = graph_act(g, op->out);
        float *save = g->act + op->save;
        size_t n = graph_numel(g, op->out);
        switch (op->kind) {
        case GRAPH_CONV:
            nn_conv2d_forward(out, in, params_data(p, op->weight), NULL,
                              g->scratch, B, x.C, x.H, x.W, y.C, op->K,
                              op->stride, op->pad);
            break;
        case GRAPH_BN: {
            float *rm = params_state(p, op->run_mean);
            float *rv = params_state(p, op->run_var);
            if (training && g->keep_running)
                rm = rv = NULL;
            if (training && g->bn_dist)
                dist_bn_forward(g->bn_dist, out, save, save + x.C, rm, rv, in,
                                params_data(p, op->weight),
                                params_data(p, op->bias), B, x.C, x.H * x.W,
                                relu);
            else if (x.H * x.W == 1)
                nn_batchnorm1d_forward(out, save, save + x.C, rm, rv, in,
                                       params_data(p, op->weight),
                                       params_data(p, op->bias), B, x.C,
                                       training);
            else
                (relu ? nn_batchnorm2d_relu_forward : nn_batchnorm2d_forward)(
                    out, save, save + x.C, rm, rv, in, params_data(p, op->weight),
                    params_data(p, op->bias), B, x.C, x.H * x.W, training);
            break;
        }
        case GRAPH_RELU:
            nn_relu_forward(out, in, n);
            break;
        case GRAPH_ADD:
            if (op->drop > 0 && training) {
                drop_scales(g, i, save);
                nn_add_scaled_rows_forward(out, in, graph_act(g, op->in2),
                                           save, B, n / (size_t)B);
            } else {
                (relu ? nn_add_relu_forward : nn_add_forward)(
                    out, in, graph_act(g, op->in2), n);
            }
            break;
        case GRAPH_MAXPOOL:
            nn_maxpool2d_forward(out, (int32_t *)save, in, B, x.C, x.H, x.W,
                                 op->K, op->stride, op->pad);
            break;
        case GRAPH_AVGPOOL:
            nn_avgpool_global_forward(out, in, B, x.C, x.H * x.W);
            break;
        case GRAPH_LINEAR:
            nn_linear_forward(out, in, params_data(p, op->weight),
                              params_data(p, op->bias), B, x.C, y.C);
            break;
        case GRAPH_PATCH_EMBED:
        case GRAPH_LAYERNORM:
        case GRAPH_TOKEN_LINEAR:
        case GRAPH_ATTENTION:
        case GRAPH_GELU:
        case GRAPH_CLS_POOL:
            graph_vit_forward_op(g, op);
            break;
        case GRAPH_N_KINDS:
            CHECK(0);
        }
        if (g->profile)
            profile_add(g, 0, op->kind, t0, gemm0);
    }
}

void graph_zero_out_grads(struct graph *g)
{
    CHECK(g->dact != NULL);
    for (int t = 1; t < g->n_t; t++)
        if (g->t[t].last_use < 0)
            memset(graph_dact(g, t), 0, graph_numel(g, t) * sizeof(float));
}

/* Zeroes the gradients that op i writes first (see grad_first_write). */
static void zero_first_writes(struct graph *g, int i)
{
    const struct graph_op *op = &g->ops[i];
    int ins[2] = {op->in, op->in2};
    for (int k = 0; k < 2; k++)
        if (ins[k] > 0 && g->t[ins[k]].last_use == i)
            memset(graph_dact(g, ins[k]), 0,
                   graph_numel(g, ins[k]) * sizeof(float));
}

void graph_backward(struct graph *g, bool training)
{
    CHECK(g->dact != NULL);
    struct params *p = g->p;
    const int B = g->B;
    for (int i = g->n_ops - 1; i >= 0; i--) {
        const struct graph_op *op = &g->ops[i];
        if (op->fused)
            continue;
        /* With a fused ReLU next, the gradient comes from its output, and
         * the fused kernels overwrite the input gradients they write
         * first instead of zeroing them. */
        const struct graph_op *relu =
            i + 1 < g->n_ops && g->ops[i + 1].fused ? &g->ops[i + 1] : NULL;
        const struct graph_tensor x = g->t[op->in];
        const struct graph_tensor y = g->t[op->out];
        double t0 = g->profile ? util_time_mono() : 0;
        const double gemm0 = g->profile ? nn_gemm_thread_seconds : 0;
        if (!relu)
            zero_first_writes(g, i);
        /* Tensor 0 is the graph's input: it needs no gradient. */
        float *din = op->in == 0 ? NULL : graph_dact(g, op->in);
        const float *dout = graph_dact(g, relu ? relu->out : op->out);
        const float *in = graph_act(g, op->in);
        const float *save = g->act + op->save;
        size_t n = graph_numel(g, op->out);
        switch (op->kind) {
        case GRAPH_CONV:
            nn_conv2d_backward(din, params_grad(p, op->weight), NULL, dout, in,
                               params_data(p, op->weight), g->scratch, B, x.C,
                               x.H, x.W, y.C, op->K, op->stride, op->pad);
            break;
        case GRAPH_BN:
            if (training && g->bn_dist)
                dist_bn_backward(g->bn_dist, din, params_grad(p, op->weight),
                                 params_grad(p, op->bias), dout,
                                 relu ? graph_act(g, relu->out) : NULL, in,
                                 save, save + x.C, params_data(p, op->weight),
                                 B, x.C, x.H * x.W,
                                 !relu || g->t[op->in].last_use != i);
            else if (x.H * x.W == 1)
                nn_batchnorm1d_backward(din, params_grad(p, op->weight),
                                        params_grad(p, op->bias), dout, in,
                                        save, save + x.C,
                                        params_data(p, op->weight), B, x.C,
                                        training);
            else if (relu)
                nn_batchnorm2d_relu_backward(
                    din, params_grad(p, op->weight), params_grad(p, op->bias),
                    dout, graph_act(g, relu->out), in, save, save + x.C,
                    params_data(p, op->weight), B, x.C, x.H * x.W, training,
                    g->t[op->in].last_use != i);
            else
                nn_batchnorm2d_backward(din, params_grad(p, op->weight),
                                        params_grad(p, op->bias), dout, in,
                                        save, save + x.C,
                                        params_data(p, op->weight), B, x.C,
                                        x.H * x.W, training);
            break;
        case GRAPH_RELU:
            if (din)
                nn_relu_backward(din, dout, graph_act(g, op->out), n);
            break;
        case GRAPH_ADD:
            if (op->drop > 0 && training)
                nn_add_scaled_rows_backward(
                    din, op->in2 == 0 ? NULL : graph_dact(g, op->in2), dout,
                    save, B, n / (size_t)B);
            else if (relu)
                nn_add_relu_backward(
                    din, op->in2 == 0 ? NULL : graph_dact(g, op->in2), dout,
                    graph_act(g, relu->out), n, g->t[op->in].last_use != i,
                    g->t[op->in2].last_use != i);
            else
                nn_add_backward(din,
                                op->in2 == 0 ? NULL : graph_dact(g, op->in2),
                                dout, n);
            break;
        case GRAPH_MAXPOOL:
            if (din)
                nn_maxpool2d_backward(din, dout, (const int32_t *)save, B, x.C,
                                      x.H, x.W, op->K, op->stride, op->pad);
            break;
        case GRAPH_AVGPOOL:
            if (din)
                nn_avgpool_global_backward(din, dout, B, x.C, x.H * x.W);
            break;
        case GRAPH_LINEAR:
            nn_linear_backward(din, params_grad(p, op->weight),
                               params_grad(p, op->bias), dout, in,
                               params_data(p, op->weight), B, x.C, y.C);
            break;
        case GRAPH_PATCH_EMBED:
        case GRAPH_LAYERNORM:
        case GRAPH_TOKEN_LINEAR:
        case GRAPH_ATTENTION:
        case GRAPH_GELU:
        case GRAPH_CLS_POOL:
            graph_vit_backward_op(g, op, din, dout);
            break;
        case GRAPH_N_KINDS:
            CHECK(0);
        }
        if (g->profile)
            profile_add(g, 1, op->kind, t0, gemm0);
        if (g->after_backward)
            g->after_backward(g->after_ctx, i);
    }
}

/* One op's forward flops; a convolution's as the direct count or (executed)
 * as the GEMMs of the path nn_conv2d_forward takes. */
static double op_forward_flops(const struct graph *g, const struct graph_op *op,
                               bool executed)
{
    const struct graph_tensor x = g->t[op->in], y = g->t[op->out];
    if (op->kind == GRAPH_CONV)
        return executed ? nn_conv2d_executed_flops(g->B, x.C, x.H, x.W, y.C,
                                                   op->K, op->stride, op->pad)
                        : 2.0 * g->B * y.C * y.H * y.W * x.C * op->K * op->K;
    if (op->kind == GRAPH_LINEAR)
        return 2.0 * g->B * y.C * x.C;
    return graph_vit_op_flops(g, op);
}

double graph_executed_flops(const struct graph *g, bool backward)
{
    double f = 0;
    /* backward: the input gradient (none for tensor 0) and the rest */
    for (int i = 0; i < g->n_ops; i++)
        f += op_forward_flops(g, &g->ops[i], true) *
             (!backward ? 1.0 : g->ops[i].in == 0 ? 2.0 : 3.0);
    return f;
}

double graph_forward_flops(const struct graph *g)
{
    double f = 0;
    for (int i = 0; i < g->n_ops; i++)
        f += op_forward_flops(g, &g->ops[i], false);
    return f;
}
