/*
 * export.h: a checkpoint's backbone as a plain safetensors file that
 * PyTorch users load with load_state_dict(strict=True): ResNet tensors
 * named as torchvision's resnet state_dict, ViT tensors as timm's
 * VisionTransformer, without the "backbone." prefix, and nothing else (no
 * projector, online probe or optimizer moments; torchvision's `fc` and
 * timm's `head` are absent too: the export is the backbone only).
 * torchvision's BatchNorm also has an int64 scalar num_batches_tracked,
 * which we do not track; the export writes the checkpoint's step there.
 * The name mapping lives here and only here; the trainer, `lejepa export`
 * and the tests all go through it.
 */
#ifndef LEJEPA_EXPORT_H
#define LEJEPA_EXPORT_H

#include <stddef.h>

#include "params.h"

#define EXPORT_FORMAT "lejepa-backbone"
#define EXPORT_VERSION "1"
/* What the trainer names its backbone's tensors under (lejepa.c). */
#define EXPORT_CKPT_PREFIX "backbone."

/* The exported name of a checkpoint tensor into out (PARAMS_NAME_LEN):
 * returns 1 when the tensor belongs to the export, 0 when it does not
 * (projector, probe, optimizer state). */
int export_map_name(const char *ckpt_name, char *out);

/* Writes the backbone of the checkpoint at ckpt_path (a file, a run
 * directory or its `latest`, as above) to out_path atomically, with
 * metadata format/version, the layout ("torchvision" or "timm"), the
 * source checkpoint, its step and the run's config. Returns 0, or -1 with
 * err (nothing written). A finished run calls it with
 * "<run_dir>/backbone.safetensors". */
int export_backbone(const char *ckpt_path, const char *out_path, char *err);

/* Loads an export back into a built model's backbone (every backbone
 * tensor must be present with its exact shape; nothing is changed on
 * failure). For the tests and for users who start from an export. */
int export_load_backbone(struct params *p, const char *path, char *err);

#endif
