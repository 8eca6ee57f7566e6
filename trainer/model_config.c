/*
 * model_config.c: config -> lejepa_config (see model_config.h). ViT presets
 * follow timm: vit_tiny D=192 NH=3, vit_small 384/6, vit_base 768/12, all
 * depth 12, patch 16, MLP ratio 4; any nonzero shape key overrides them.
 */
#include "model_config.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

struct preset {
    int n;
    int depths[RESNET_MAX_STAGES];
    int widths[RESNET_MAX_STAGES];
};

static const struct preset resnet_default = {4, {2, 2, 2, 2}, {32, 64, 128, 256}};
static const struct preset resnet18 = {4, {2, 2, 2, 2}, {64, 128, 256, 512}};
static const struct preset resnet34 = {4, {3, 4, 6, 3}, {64, 128, 256, 512}};

struct vit_preset {
    int preset;  /* enum config_preset */
    int patch, dim, depth, heads;
};

static const struct vit_preset vit_presets[] = {
    {CONFIG_PRESET_VIT_TINY, 16, 192, 12, 3},
    {CONFIG_PRESET_VIT_SMALL, 16, 384, 12, 6},
    {CONFIG_PRESET_VIT_BASE, 16, 768, 12, 12},
};

/* The ViT shape: each key from the config, or the preset's when zero. */
static int resolve_vit(struct vit_config *v, const struct config *c, char *err)
{
    const struct config_model *m = &c->model;
    struct vit_preset p = {0};
    for (size_t i = 0; i < sizeof vit_presets / sizeof vit_presets[0]; i++)
        if (vit_presets[i].preset == m->preset)
            p = vit_presets[i];
    v->in_channels = (int)c->views.channels;
    v->patch = m->patch ? (int)m->patch : p.patch;
    v->dim = m->dim ? (int)m->dim : p.dim;
    v->depth = m->depth ? (int)m->depth : p.depth;
    v->heads = m->heads ? (int)m->heads : p.heads;
    v->mlp_ratio = m->mlp_ratio;
    v->drop_path = m->drop_path;
    v->embed = m->embed == CONFIG_EMBED_CLS_MEAN ? VIT_EMBED_CLS_MEAN
                                                 : VIT_EMBED_CLS;
    return vit_check_config(v, err);
}

/* The ResNet shape: depths and widths from the config or the preset, the
 * stem from the config or (auto) the global crop size. */
static int resolve_resnet(struct resnet_config *r, const struct config *c,
                          char *err)
{
    const struct config_model *m = &c->model;
    const struct preset *p = &resnet_default;
    if (m->preset == CONFIG_PRESET_RESNET18)
        p = &resnet18;
    else if (m->preset == CONFIG_PRESET_RESNET34)
        p = &resnet34;
    int n = m->depths.n ? m->depths.n : m->widths.n ? m->widths.n : p->n;
    if ((m->depths.n == 0 || m->widths.n == 0) && n != p->n)
        return errf(err, "model.%s has %d stages but the %s has %d: give "
                    "both depths and widths", m->depths.n ? "depths" : "widths",
                    n, m->preset ? "preset" : "default", p->n);
    if (n > RESNET_MAX_STAGES)
        return errf(err, "at most %d ResNet stages", RESNET_MAX_STAGES);
    r->in_channels = (int)c->views.channels;
    r->n_stages = n;
    for (int i = 0; i < n; i++) {
        r->depths[i] = m->depths.n ? (int)m->depths.v[i] : p->depths[i];
        r->widths[i] = m->widths.n ? (int)m->widths.v[i] : p->widths[i];
    }
    if (m->stem == CONFIG_STEM_AUTO)
        r->stem = c->views.global_size <= 64 ? RESNET_STEM_SMALL
                                             : RESNET_STEM_IMAGENET;
    else
        r->stem = m->stem == CONFIG_STEM_SMALL ? RESNET_STEM_SMALL
                                               : RESNET_STEM_IMAGENET;
    return 0;
}

int model_config_resolve(struct lejepa_config *out, const struct config *c,
                         int n_classes, char *err)
{
    memset(out, 0, sizeof *out);
    const struct config_model *m = &c->model;
    if (m->backbone == CONFIG_BACKBONE_VIT) {
        out->backbone = LEJEPA_BACKBONE_VIT;
        if (resolve_vit(&out->vit, c, err) != 0)
            return -1;
    } else if (resolve_resnet(&out->resnet, c, err) != 0) {
        return -1;
    }
    if (m->projector.n > LEJEPA_MAX_PROJ)
        return errf(err, "model.projector: at most %d layers", LEJEPA_MAX_PROJ);
    out->n_proj = m->projector.n;
    for (int i = 0; i < m->projector.n; i++)
        out->proj[i] = (int)m->projector.v[i];
    out->n_classes = n_classes;
    out->probe_views = c->optim.probe_views == CONFIG_PROBE_VIEWS_GLOBAL
                           ? LEJEPA_PROBE_GLOBAL
                       : c->optim.probe_views == CONFIG_PROBE_VIEWS_EVAL
                           ? LEJEPA_PROBE_EVAL
                           : LEJEPA_PROBE_ALL;
    out->batch = (int)c->optim.batch;
    out->global_views = (int)c->views.global_count;
    out->global_size = (int)c->views.global_size;
    out->local_views = (int)c->views.local_count;
    out->local_size = (int)c->views.local_size;
    out->lambda = c->loss.lambda;
    out->slices = (int)c->loss.slices;
    out->knots = (int)c->loss.knots;
    out->t_max = c->loss.t_max;
    out->sigreg_debias = c->loss.sigreg_debias;
    out->sync_bn = c->model.sync_bn;
    out->bn_running_global = c->model.bn_running == CONFIG_BN_RUNNING_GLOBAL;
    out->seed = c->run.seed;
    return 0;
}

/* Appends "a,b,c" of n ints to out. */
static void append_ints(char *out, size_t cap, const int *v, int n)
{
    for (int i = 0; i < n; i++) {
        size_t len = strlen(out);
        int w = snprintf(out + len, cap - len, "%s%d", i ? "," : "", v[i]);
        CHECK(w > 0 && (size_t)w < cap - len);
    }
}

void lejepa_config_json(char *out, size_t cap, const struct lejepa_config *c,
                        const char *extra)
{
    char shape[512], proj[128] = "";
    int w;
    if (c->backbone == LEJEPA_BACKBONE_VIT) {
        w = snprintf(shape, sizeof shape,
            "\"patch\":%d,\"dim\":%d,\"depth\":%d,\"heads\":%d,"
            "\"mlp_ratio\":%.17g,\"embed\":\"%s\"", c->vit.patch, c->vit.dim,
            c->vit.depth, c->vit.heads, c->vit.mlp_ratio,
            c->vit.embed == VIT_EMBED_CLS_MEAN ? "cls_mean" : "cls");
    } else {
        char depths[128] = "", widths[128] = "";
        append_ints(depths, sizeof depths, c->resnet.depths, c->resnet.n_stages);
        append_ints(widths, sizeof widths, c->resnet.widths, c->resnet.n_stages);
        w = snprintf(shape, sizeof shape,
            "\"stem\":\"%s\",\"depths\":[%s],\"widths\":[%s]",
            c->resnet.stem == RESNET_STEM_SMALL ? "small" : "imagenet", depths,
            widths);
    }
    CHECK(w > 0 && (size_t)w < sizeof shape);
    append_ints(proj, sizeof proj, c->proj, c->n_proj);
    int n = snprintf(out, cap,
        "{\"backbone\":\"%s\",\"in_channels\":%d,%s,"
        "\"proj\":[%s],\"n_classes\":%d,\"batch\":%d,\"global_views\":%d,"
        "\"global_size\":%d,\"local_views\":%d,\"local_size\":%d,"
        "\"lambda\":%.17g,\"slices\":%d,\"knots\":%d,\"t_max\":%.17g,"
        "\"sigreg_debias\":%s,\"probe_views\":\"%s\"%s%s}",
        c->backbone == LEJEPA_BACKBONE_VIT ? "vit" : "resnet",
        lejepa_in_channels(c), shape, proj, c->n_classes, c->batch,
        c->global_views, c->global_size, c->local_views, c->local_size,
        c->lambda, c->slices, c->knots, c->t_max,
        c->sigreg_debias ? "true" : "false",
        c->probe_views == LEJEPA_PROBE_EVAL     ? "eval"
        : c->probe_views == LEJEPA_PROBE_GLOBAL ? "global"
                                                : "all",
        extra ? "," : "",
        extra ? extra : "");
    CHECK(n > 0 && (size_t)n < cap);
}
