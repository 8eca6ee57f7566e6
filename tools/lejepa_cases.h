/*
 * lejepa_cases.h: the small models and batches that tools/ref_lejepa.py
 * reproduces in PyTorch. Shared by the generator of the fixture inputs
 * (tools/fixture_inputs.c) and the test that matches the fixtures
 * (tests/test_lejepa_ref.c), so both always mean the same model. It lives
 * in tools/ beside its generator; the tests include it from here.
 */
#ifndef LEJEPA_CASES_H
#define LEJEPA_CASES_H

#include "lejepa.h"

#define CASE_STEPS 5
/* AdamW of the reference steps (constant rates, no schedule). */
#define CASE_LR_ENCODER 5e-3
#define CASE_WD_ENCODER 5e-4
#define CASE_LR_PROBE 1e-3
#define CASE_WD_PROBE 1e-7

struct lejepa_case {
    const char *name;
    struct lejepa_config c;
};

static const struct lejepa_case lejepa_cases[] = {
    /* 1 channel, small stem, global and local views. */
    {"local", {
        .resnet = {.in_channels = 1, .stem = RESNET_STEM_SMALL, .n_stages = 2,
                   .depths = {1, 1}, .widths = {8, 16}},
        .n_proj = 3, .proj = {32, 32, 16}, .n_classes = 10, .batch = 6,
        .global_views = 2, .global_size = 12, .local_views = 3, .local_size = 6,
        .lambda = 0.3, .slices = 32, .knots = 17, .t_max = 3.0, .seed = 7}},
    /* 3 channels, ImageNet stem (7x7/2 + max-pool), Vl = 0, odd sizes. */
    {"global", {
        .resnet = {.in_channels = 3, .stem = RESNET_STEM_IMAGENET, .n_stages = 3,
                   .depths = {1, 2, 1}, .widths = {8, 12, 16}},
        .n_proj = 2, .proj = {24, 16}, .n_classes = 5, .batch = 5,
        .global_views = 4, .global_size = 29, .local_views = 0, .local_size = 0,
        .lambda = 0.5, .slices = 24, .knots = 9, .t_max = 2.5, .seed = 11}},
    /* ViT, 2 blocks, 3 heads, 1 channel: global 12 px / patch 4 = the 3x3
     * position grid; local 6 px zero-padded to 8 = a 2x2 grid (bicubic). */
    {"vit", {
        .backbone = LEJEPA_BACKBONE_VIT,
        .vit = {.in_channels = 1, .patch = 4, .dim = 12, .depth = 2,
                .heads = 3, .mlp_ratio = 4.0, .embed = VIT_EMBED_CLS},
        .n_proj = 3, .proj = {32, 32, 16}, .n_classes = 10, .batch = 6,
        .global_views = 2, .global_size = 12, .local_views = 3, .local_size = 6,
        .lambda = 0.3, .slices = 32, .knots = 17, .t_max = 3.0, .seed = 13}},
    /* ViT, 3 channels, CLS + patch mean embedding, MLP ratio 2.5: global
     * 10 px padded to 12 (3x3, the position grid), local 7 padded to 8. */
    {"vit_mean", {
        .backbone = LEJEPA_BACKBONE_VIT,
        .vit = {.in_channels = 3, .patch = 4, .dim = 18, .depth = 2,
                .heads = 3, .mlp_ratio = 2.5, .embed = VIT_EMBED_CLS_MEAN},
        .n_proj = 2, .proj = {24, 16}, .n_classes = 5, .batch = 5,
        .global_views = 2, .global_size = 10, .local_views = 2, .local_size = 7,
        .lambda = 0.5, .slices = 24, .knots = 9, .t_max = 2.5, .seed = 17}},
};

#define N_LEJEPA_CASES (sizeof lejepa_cases / sizeof lejepa_cases[0])

#endif
