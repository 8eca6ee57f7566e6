/*
 * ckpt.h: checkpoints as safetensors files (DESIGN.md §8): every learnable
 * tensor and BatchNorm statistic under its PyTorch state_dict name, the
 * AdamW moments under "optim.m.<name>" / "optim.v.<name>", and string
 * metadata (format, version, step, optimizer step count, the run's config,
 * the sampler state, whatever the caller adds). A weights-only file (no
 * optimizer) is what `lejepa embed` and PyTorch users load.
 * Loading validates everything before it copies anything: a file that does
 * not match the model exactly is refused and the model is left untouched.
 */
#ifndef LEJEPA_CKPT_H
#define LEJEPA_CKPT_H

#include "adamw.h"
#include "params.h"
#include "safetensors.h"

#define CKPT_FORMAT "lejepa-checkpoint"
#define CKPT_VERSION "1"

/* Writes the model (and the optimizer state when o is not NULL) with the
 * caller's metadata pairs, atomically. Returns 0 or -1 with err. */
int ckpt_save(const char *path, const struct params *p, const struct adamw *o,
              const char *const *keys, const char *const *values, size_t n,
              char *err);

/* Loads weights and statistics (and, when o is not NULL, the optimizer
 * moments and step count) into an already built model of the same shape.
 * On success f stays open so the caller can read the metadata (st_meta);
 * the caller closes it. On failure nothing was changed and f is closed. */
int ckpt_load(const char *path, struct params *p, struct adamw *o,
              struct st_file *f, char *err);

#endif
