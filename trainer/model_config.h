/*
 * model_config.h: turns the run's config ([model], [views], [loss], [optim],
 * DESIGN.md §9) into the engine's lejepa_config: presets fill empty shape
 * keys (ResNet or ViT), the stem is chosen from the crop size when set to
 * auto.
 */
#ifndef LEJEPA_MODEL_CONFIG_H
#define LEJEPA_MODEL_CONFIG_H

#include "config.h"
#include "lejepa.h"

/* n_classes comes from the dataset (the online probe's output). Returns 0,
 * or -1 with the reason naming the config keys. */
int model_config_resolve(struct lejepa_config *out, const struct config *c,
                         int n_classes, char *err);

/* The engine config as one JSON object, for the PyTorch companions
 * (tools/ref_lejepa.py, tools/bench_train.py): backbone ("resnet" | "vit"),
 * in_channels, then the backbone's shape: patch, dim, depth, heads,
 * mlp_ratio, embed ("cls" | "cls_mean") for a ViT, stem, depths, widths for
 * a ResNet; then proj, n_classes, batch, global/local views and sizes, lambda,
 * slices, knots, t_max, sigreg_debias, then the caller's extra members (text such as
 * "\"steps\":5", or NULL). CHECKs that cap suffices. */
void lejepa_config_json(char *out, size_t cap, const struct lejepa_config *c,
                        const char *extra);

#endif
