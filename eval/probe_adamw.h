/*
 * probe_adamw.h: the linear probe of the official protocol (I-JEPA, DINO,
 * LeJEPA's evaluations): LayerNorm (learned affine) then Linear, trained
 * on the frozen train features with AdamW by mini-batch cross-entropy, the
 * learning rate on a cosine from lr to 0 over the epochs; top-1 on val.
 * Where linprobe.h is logistic regression to convergence on standardised
 * features (one number per embedding whatever the seed), this is the
 * protocol papers report, so figures can be compared with theirs; every
 * figure says which (README). Deterministic for a seed (the mini-batch
 * order and the Linear's init) and thread count.
 */
#ifndef LEJEPA_PROBE_ADAMW_H
#define LEJEPA_PROBE_ADAMW_H

#include <stddef.h>
#include <stdint.h>

struct probe_adamw_options {
    int epochs;          /* passes over train */
    int batch;           /* rows per AdamW step */
    double lr;           /* peak learning rate (cosine to 0) */
    double weight_decay; /* AdamW's, on every tensor */
    uint64_t seed;
};

#define PROBE_ADAMW_DEFAULTS {.epochs = 100, .batch = 256, .lr = 1e-2, \
                              .weight_decay = 1e-4, .seed = 0}

/* Trains on (n_train, dim) rows with labels in [0, n_classes) and returns
 * top-1 on val in *top1. 0, or -1 with err (sizes, labels out of range). */
int probe_adamw_run(const float *train, const int32_t *train_labels,
                    size_t n_train, const float *val, const int32_t *val_labels,
                    size_t n_val, int dim, int n_classes,
                    const struct probe_adamw_options *o, double *top1,
                    char *err);

#endif
