/*
 * resnet.h: the ResNet backbone (BasicBlock) as graph ops: the small-image
 * stem (3x3 stride 1, no max-pool) or the ImageNet stem (7x7 stride 2 +
 * 3x3 max-pool), stages of BasicBlocks with configurable depths and widths,
 * global average pooling. Parameter names match torchvision's resnet
 * state_dict under the given prefix ("backbone.conv1.weight", ...).
 */
#ifndef LEJEPA_RESNET_H
#define LEJEPA_RESNET_H

#include "graph.h"

#define RESNET_MAX_STAGES 8

enum resnet_stem { RESNET_STEM_SMALL, RESNET_STEM_IMAGENET };

struct resnet_config {
    int in_channels;              /* 1 or 3 */
    enum resnet_stem stem;
    int n_stages;
    int depths[RESNET_MAX_STAGES];
    int widths[RESNET_MAX_STAGES];
};

/* Appends the backbone for inputs of H x W to g, whose tensor `in` holds
 * the (B, in_channels, H, W) input. Returns the (B, widths[last], 1, 1)
 * embedding tensor; *feat gets the last feature map (B, C, h, w) before
 * pooling (for segmentation maps). */
int resnet_build(struct graph *g, int in, const struct resnet_config *c,
                 const char *prefix, int *feat);

#endif
