/*
 * resnet.c: ResNet backbone builder (see resnet.h). Block layout as
 * torchvision's BasicBlock: conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN,
 * plus the shortcut (identity, or conv1x1(stride) -> BN when the shape
 * changes), then ReLU. Stage i > 0 starts with stride 2.
 */
#include "resnet.h"

#include <stdio.h>

#include "util.h"

/* out = a + "." + b; names longer than PARAMS_NAME_LEN are a bug. */
static void join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, PARAMS_NAME_LEN, "%s.%s", a, b);
    CHECK(n > 0 && n < PARAMS_NAME_LEN);
}

static int basic_block(struct graph *g, int in, const char *name, int width,
                       int stride)
{
    char n[PARAMS_NAME_LEN];
    join(n, name, "conv1");
    int y = graph_conv(g, in, n, width, 3, stride, 1, PARAMS_GROUP_ENCODER);
    join(n, name, "bn1");
    y = graph_relu(g, graph_bn(g, y, n, PARAMS_GROUP_ENCODER), true);
    join(n, name, "conv2");
    y = graph_conv(g, y, n, width, 3, 1, 1, PARAMS_GROUP_ENCODER);
    join(n, name, "bn2");
    y = graph_bn(g, y, n, PARAMS_GROUP_ENCODER);
    int shortcut = in;
    if (stride != 1 || g->t[in].C != width) {
        join(n, name, "downsample.0");
        shortcut = graph_conv(g, in, n, width, 1, stride, 0,
                              PARAMS_GROUP_ENCODER);
        join(n, name, "downsample.1");
        shortcut = graph_bn(g, shortcut, n, PARAMS_GROUP_ENCODER);
    }
    return graph_relu(g, graph_add(g, y, shortcut, true), true);
}

int resnet_build(struct graph *g, int in, const struct resnet_config *c,
                 const char *prefix, int *feat)
{
    CHECK(c->n_stages >= 1 && c->n_stages <= RESNET_MAX_STAGES);
    CHECK(g->t[in].C == c->in_channels);
    char n[PARAMS_NAME_LEN];
    int x;
    join(n, prefix, "conv1");
    if (c->stem == RESNET_STEM_SMALL)
        x = graph_conv(g, in, n, c->widths[0], 3, 1, 1, PARAMS_GROUP_ENCODER);
    else
        x = graph_conv(g, in, n, c->widths[0], 7, 2, 3, PARAMS_GROUP_ENCODER);
    join(n, prefix, "bn1");
    x = graph_relu(g, graph_bn(g, x, n, PARAMS_GROUP_ENCODER), true);
    if (c->stem == RESNET_STEM_IMAGENET)
        x = graph_maxpool(g, x, 3, 2, 1);
    for (int s = 0; s < c->n_stages; s++) {
        for (int b = 0; b < c->depths[s]; b++) {
            int len = snprintf(n, sizeof n, "%s.layer%d.%d", prefix, s + 1, b);
            CHECK(len > 0 && (size_t)len < sizeof n);
            x = basic_block(g, x, n, c->widths[s], (s > 0 && b == 0) ? 2 : 1);
        }
    }
    if (feat)
        *feat = x;
    return graph_avgpool(g, x);
}
