/*
 * vit.c: Vision Transformer builder and timm's initialisation (see vit.h).
 * Only graph building and weight init: the arithmetic is in the kernels.
 */
#include "vit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn.h"
#include "nn_vit.h"
#include "rng.h"
#include "util.h"

#define VIT_INIT_STD 0.02
#define VIT_INIT_TRUNC 2.0   /* torch trunc_normal_'s default a = -2, b = 2 */
#define VIT_CLS_STD 1e-6

int vit_check_config(const struct vit_config *c, char *err)
{
    if (c->in_channels < 1)
        return errf(err, "ViT: %d input channels", c->in_channels);
    if (c->patch < 1)
        return errf(err, "model.patch must be set (>= 1) for backbone = vit "
                    "without a preset");
    if (c->dim < 1)
        return errf(err, "model.dim must be set (>= 1) for backbone = vit "
                    "without a preset");
    if (c->depth < 1)
        return errf(err, "model.depth must be set (>= 1) for backbone = vit "
                    "without a preset");
    if (c->heads < 1)
        return errf(err, "model.heads must be set (>= 1) for backbone = vit "
                    "without a preset");
    if (c->dim % c->heads != 0)
        return errf(err, "model.heads = %d does not divide model.dim = %d",
                    c->heads, c->dim);
    if ((int)(c->dim * c->mlp_ratio) < 1)
        return errf(err, "model.mlp_ratio = %g gives an empty MLP for "
                    "model.dim = %d", c->mlp_ratio, c->dim);
    return 0;
}

int vit_embed_dim(const struct vit_config *c)
{
    return c->embed == VIT_EMBED_CLS_MEAN ? 2 * c->dim : c->dim;
}

/* out = a + "." + b; names longer than PARAMS_NAME_LEN are a bug. */
static void join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, PARAMS_NAME_LEN, "%s.%s", a, b);
    CHECK(n > 0 && n < PARAMS_NAME_LEN);
}

/* x + attn(norm1(x)), then + mlp(norm2(.)), each branch dropped per row
 * with probability drop in training (stochastic depth); returns the
 * block's output and its ATTENTION op index in *attn_op. */
static int block(struct graph *g, int x, const struct vit_config *c,
                 const char *name, float drop, int *attn_op)
{
    const enum params_group grp = PARAMS_GROUP_ENCODER;
    const int D = c->dim, hidden = (int)(c->dim * c->mlp_ratio);
    char n[PARAMS_NAME_LEN];
    join(n, name, "norm1");
    int y = graph_layernorm(g, x, n, NN_LN_EPS_VIT, grp);
    join(n, name, "attn.qkv");
    y = graph_token_linear(g, y, n, 3 * D, grp);
    y = graph_attention(g, y, c->heads);
    *attn_op = g->n_ops - 1;
    join(n, name, "attn.proj");
    y = graph_token_linear(g, y, n, D, grp);
    /* y (the proj output) has no other reader: the sum overwrites it */
    x = graph_add_drop(g, y, x, drop);
    join(n, name, "norm2");
    y = graph_layernorm(g, x, n, NN_LN_EPS_VIT, grp);
    join(n, name, "mlp.fc1");
    y = graph_gelu(g, graph_token_linear(g, y, n, hidden, grp));
    join(n, name, "mlp.fc2");
    y = graph_token_linear(g, y, n, D, grp);
    return graph_add_drop(g, y, x, drop);
}

void vit_build(struct graph *g, int in, const struct vit_config *c,
               int pos_size, const char *prefix, struct vit_out *out)
{
    char err[ERR_LEN];
    CHECK(vit_check_config(c, err) == 0);
    CHECK(g->t[in].C == c->in_channels);
    const int G0 = nn_patch_grid_dim(pos_size, c->patch);
    out->GH = nn_patch_grid_dim(g->t[in].H, c->patch);
    out->GW = nn_patch_grid_dim(g->t[in].W, c->patch);
    int x = graph_patch_embed(g, in, prefix, c->patch, c->dim, G0,
                              PARAMS_GROUP_ENCODER);
    char n[PARAMS_NAME_LEN];
    for (int i = 0; i < c->depth; i++) {
        int len = snprintf(n, sizeof n, "%s.blocks.%d", prefix, i);
        CHECK(len > 0 && (size_t)len < sizeof n);
        /* timm: linspace(0, drop_path, depth) */
        float drop = c->depth > 1
            ? (float)(c->drop_path * i / (c->depth - 1))
            : (float)c->drop_path;
        out->prev = x;
        x = block(g, x, c, n, drop, &out->attn_op);
    }
    join(n, prefix, "norm");
    out->tokens = graph_layernorm(g, x, n, NN_LN_EPS_VIT, PARAMS_GROUP_ENCODER);
    out->emb = graph_cls_pool(g, out->tokens, c->embed == VIT_EMBED_CLS_MEAN);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Normal(0, std) redrawn outside [-cut, cut], as torch's trunc_normal_. */
static double trunc_normal(struct rng *r, double std, double cut)
{
    for (;;) {
        double x = std * rng_normal(r);
        if (fabs(x) <= cut)
            return x;
    }
}

void vit_init_params(struct params *p, const char *prefix, uint64_t seed)
{
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < p->learn.n; i++) {
        const struct params_entry *e = &p->learn.e[i];
        if (strncmp(e->name, prefix, plen) != 0 || e->name[plen] != '.')
            continue;
        const char *rest = e->name + plen + 1;
        /* Linears of the blocks: "blocks.I.attn.qkv.weight", "...mlp.fc1.bias" */
        int linear = strncmp(rest, "blocks.", 7) == 0 &&
                     (strstr(rest, ".attn.") || strstr(rest, ".mlp."));
        float *x = params_data(p, (int)i);
        struct rng r;
        rng_init(&r, seed, 3, i, 0);
        if (strcmp(rest, "cls_token") == 0) {
            for (size_t k = 0; k < e->numel; k++)
                x[k] = (float)(VIT_CLS_STD * rng_normal(&r));
        } else if (strcmp(rest, "pos_embed") == 0 ||
                   (linear && ends_with(rest, ".weight"))) {
            for (size_t k = 0; k < e->numel; k++)
                x[k] = (float)trunc_normal(&r, VIT_INIT_STD, VIT_INIT_TRUNC);
        } else if (linear && ends_with(rest, ".bias")) {
            memset(x, 0, e->numel * sizeof *x);
        }
    }
}
