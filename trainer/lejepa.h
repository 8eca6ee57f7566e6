/*
 * lejepa.h: the LeJEPA model and one training step's forward and backward
 * (DESIGN.md §5): a ResNet or ViT backbone and projector per resolution group
 * (global views, then local views; BatchNorm statistics per group), the
 * invariance term towards the mean of the global views' projections, SIGReg
 * on every view with directions shared by the step, and the online probe
 * (LayerNorm + Linear on detached embeddings: of every view, of the global
 * views only, or of each sample's clean eval view through the eval-mode
 * backbone; probe_views).
 * The optimizer, schedule and checkpoints live elsewhere; everything here is
 * allocated once by lejepa_init.
 *
 * Data parallel (lejepa_set_dist): each of R ranks holds the same weights
 * and runs the step on its share of the global batch; the step's
 * reductions (all in lejepa.c) make the losses and the summed gradients
 * those of one process on the whole batch (BatchNorm: with sync_bn only).
 */
#ifndef LEJEPA_LEJEPA_H
#define LEJEPA_LEJEPA_H

#include <stdbool.h>
#include <stdint.h>

#include "dist.h"
#include "dist_overlap.h"
#include "graph.h"
#include "resnet.h"
#include "sigreg.h"
#include "vit.h"

#define LEJEPA_MAX_PROJ 8
#define LEJEPA_MAX_VIEWS 80

enum lejepa_backbone { LEJEPA_BACKBONE_RESNET, LEJEPA_BACKBONE_VIT };

/* What the online probe learns from; none changes the encoder's gradients.
 * EVAL: one more input per sample (lejepa_probe_input), the eval view the
 * val split is scored on, run through the backbone in eval mode (BatchNorm
 * on the running statistics) after backward, so the probe learns on the
 * features it is judged on. */
enum lejepa_probe_views {
    LEJEPA_PROBE_ALL,                /* every view (zeroed config) */
    LEJEPA_PROBE_GLOBAL,             /* the global views */
    LEJEPA_PROBE_EVAL,               /* the eval view */
};

struct lejepa_config {
    enum lejepa_backbone backbone;   /* which of the two below is used */
    struct resnet_config resnet;
    struct vit_config vit;
    int n_proj;                      /* projector layers, last one linear */
    int proj[LEJEPA_MAX_PROJ];       /* widths, e.g. 2048, 2048, 128 */
    int n_classes;                   /* online probe classes; 0: no probe */
    enum lejepa_probe_views probe_views;
    int batch;                       /* N samples per step (per rank) */
    int global_views, global_size;
    int local_views, local_size;     /* local_views may be 0 */
    double lambda;
    int slices, knots;
    double t_max;
    bool sigreg_debias;              /* unbiased SIGReg (sigreg.h) */
    bool sync_bn;                    /* BatchNorm over all ranks' samples */
    bool bn_running_global;          /* local views keep the running stats */
    uint64_t seed;
};

struct lejepa_group {
    struct graph g;
    int views, size;
    int in, emb, feat, proj;         /* tensor ids in g */
};

/* Input channels of the configured backbone. */
int lejepa_in_channels(const struct lejepa_config *c);

struct lejepa_losses {
    double loss, inv, sigreg;
    double probe_loss;
    int probe_correct, probe_total;
};

/* SIGReg: the knots, directions of the current step and one scratch per
 * view. */
struct lejepa_sigreg {
    struct sigreg_grid grid;
    float *dirs;                     /* (proj_dim, slices) */
    struct sigreg_scratch *ss;
    void *ss_mem;
    double *sig_sums;                /* (views, 2, slices, knots): every
                                        view's cos and sin sums, one block
                                        for one all-reduce */
};

struct lejepa_eval;

/* The online probe: LayerNorm(emb_dim) then Linear(emb_dim, n_classes),
 * its parameter ids and its buffers (rows: lejepa_probe_rows). */
struct lejepa_probe {
    int ln_w, ln_b, w, b;
    float *in, *ln, *mean, *rstd, *logits, *dlogits, *dln;
    int32_t *labels;
    struct lejepa_eval *eval;        /* LEJEPA_PROBE_EVAL: the eval view's
                                      * backbone; NULL otherwise */
};

struct lejepa {
    struct lejepa_config c;
    struct params p;
    struct lejepa_group grp[2];
    int n_groups, views, emb_dim, proj_dim;
    int n;                           /* samples of the current step <= batch */
    struct dist *dist;               /* NULL: the single process */
    long n_global;                   /* samples of the last step, all ranks */
    struct lejepa_probe probe;
    struct lejepa_sigreg sr;
    struct dist_overlap ov; /* data parallel: the all-reduce in backward */
};

/* Builds the model, allocates every arena and initialises the weights from
 * c->seed. Returns 0, or -1 with the reason (an inconsistent config). */
int lejepa_init(struct lejepa *m, const struct lejepa_config *c, char *err);
void lejepa_free(struct lejepa *m);

/* Makes the step data parallel over d's ranks (d outlives m; NULL or a
 * world of 1: the single process, bit-identical to never calling this).
 * Every rank calls lejepa_init with the same config (c.batch: the largest
 * share, dist_share of the global batch) and seed, so all start with the
 * same weights; after loading a checkpoint on rank 0 only, call
 * lejepa_broadcast_weights. With c.sync_bn, BatchNorm in training uses the
 * statistics of every rank's samples; otherwise each rank's own (as
 * PyTorch DDP), and after each step's update the running statistics
 * become their mean over ranks (DDP broadcasts rank 0's instead), so every
 * rank and every checkpoint holds the average over ranks. */
void lejepa_set_dist(struct lejepa *m, struct dist *d);

/* Every rank's weights, running statistics and AdamW moments become rank
 * 0's. All ranks call it. */
void lejepa_broadcast_weights(struct lejepa *m);

/* Sets the number of samples n (2 <= n <= c.batch; with a dist of world
 * > 1, 1 <= n and at least 2 over all ranks) of the next steps; a step
 * whose samples partly failed to load trains on the rest. */
void lejepa_set_batch(struct lejepa *m, int n);

/* Input buffer of a group: (views * n, C, size, size) floats, view-major
 * (rows v*n .. v*n+n-1 are view v). Group 0 holds the global views. */
float *lejepa_input(struct lejepa *m, int group);

/* Fills a group's input from uint8 pixels laid out as a BATCH carries them,
 * (views, n, C, size, size), as (x / 255 - mean[c]) / std[c]. */
void lejepa_load_pixels(struct lejepa *m, int group, const uint8_t *pixels,
                        const float *mean, const float *std);

/* LEJEPA_PROBE_EVAL: the eval views' input, (n, C, global_size,
 * global_size), to fill before each step; NULL for the other probes. */
float *lejepa_probe_input(struct lejepa *m);
/* The same from uint8 pixels (n, C, global_size, global_size). */
void lejepa_load_probe_pixels(struct lejepa *m, const uint8_t *pixels,
                              const float *mean, const float *std);

/* Rows the probe learns from per step at the configured batch. */
int lejepa_probe_rows(const struct lejepa *m);

/* One training step's forward and backward on the current n samples:
 * zeroes all gradients, then fills them for the encoder (loss) and the
 * probe (its cross-entropy). labels (n). step seeds the SIGReg directions.
 * Data parallel, every rank calls it in the same step with its own samples
 * (rank r: samples dist_share(d, N, &start) of the global batch): the
 * losses in out are the global batch's on every rank, and the gradients
 * are summed over ranks, ready for the same AdamW step on every rank. */
/* Whether the model has an online probe (n_classes > 0); without one,
 * probe_loss is NaN and probe_total 0. */
static inline bool lejepa_has_probe(const struct lejepa *m)
{
    return m->c.n_classes > 0;
}

void lejepa_forward_backward(struct lejepa *m, const int32_t *labels,
                             uint64_t step, struct lejepa_losses *out);

/* 0 when the loss terms and every gradient of the last step are finite;
 * otherwise -1 with the step and the term or the first parameter whose
 * gradient is not finite in err. */
int lejepa_check_finite(const struct lejepa *m, const struct lejepa_losses *l,
                        uint64_t step, char *err);

/* Eval-mode backbone for batches of `batch` images at the global view size,
 * sharing the model's weights (BatchNorm uses the running statistics).
 * The feature map per image is (feat_c, feat_h, feat_w): the ResNet's last
 * feature map, or the ViT's final normed patch tokens as channels-first
 * (D, GH, GW). A ViT also gives its last block's CLS attention: heads > 0. */
/* What lejepa_eval_forward returns per image: the embedding (what the
 * projector reads), or for a ViT the features of the official linear-probe
 * protocol (I-JEPA, DINO, LeJEPA): the CLS token of the last two blocks,
 * each through the final LayerNorm, concatenated (2 D floats). */
enum lejepa_features { LEJEPA_FEATURES_EMBED, LEJEPA_FEATURES_CLS_LAST2 };

struct lejepa_eval {
    struct graph g;
    int in, emb, feat;               /* feat: tensor of the features */
    int feat_c, feat_h, feat_w;
    int heads;                       /* 0 for ResNet */
    int attn_op;                     /* ViT: the last ATTENTION op */
    int prev_norm, dim;              /* CLS_LAST2: the block before's
                                      * normed tokens, and D */
    float *last2;                    /* CLS_LAST2: (batch, 2 D) */
};
void lejepa_eval_init(struct lejepa_eval *e, struct lejepa *m, int batch);
/* The same with the features f (CLS_LAST2 needs a ViT: checked by
 * lejepa_features_dim). */
void lejepa_eval_init_features(struct lejepa_eval *e, struct lejepa *m,
                               int batch, enum lejepa_features f);
/* Floats per image of features f for model m; -1 with err when m cannot
 * give them. */
int lejepa_features_dim(const struct lejepa *m, enum lejepa_features f,
                        char *err);
void lejepa_eval_free(struct lejepa_eval *e);
/* Input (batch, C, size, size) to fill before lejepa_eval_forward. */
float *lejepa_eval_input(struct lejepa_eval *e);
/* Runs the backbone; returns the embeddings (batch, emb_dim), or the
 * features it was made for (batch, lejepa_features_dim), valid until the
 * next call. */
const float *lejepa_eval_forward(struct lejepa_eval *e);
/* After lejepa_eval_forward, for image i of the batch: its feature map
 * (feat_c, feat_h, feat_w) into feat and, when attn is not NULL and the
 * backbone is a ViT, its last block's CLS attention per head over the patch
 * grid (heads, feat_h * feat_w) into attn: each head's row is the CLS row
 * of the softmax without its CLS column (so it sums to 1 minus the CLS
 * self-attention). Only the images asked for are rearranged. */
void lejepa_eval_featmap(const struct lejepa_eval *e, int i, float *feat,
                         float *attn);

/* Floating-point operations of one training step (for GFLOP/s): every
 * group's forward and backward (3x the forward's multiply-adds) and the
 * probe's eval-view forward, convolutions counted as direct ones. */
double lejepa_step_direct_flops(const struct lejepa *m);
/* What one training step's GEMMs execute (graph_executed_flops of every
 * group, forward and backward, and of the probe's eval-view forward; and
 * SIGReg's projections forward and back). */
double lejepa_step_executed_flops(const struct lejepa *m);

#endif
