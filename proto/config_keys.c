/*
 * config_keys.c: THE table of config keys (config.h) and the rules between
 * keys. A row names its struct field: the macros below take the field name
 * as the key name and fail to compile when the field's C type does not match
 * the row's type. Defaults are strings, parsed by the same code as user input
 * (tests/test_config.c parses every one). Adding a section: a member of
 * struct config, its rows here (contiguous), its rules in config_check_rules.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "util.h"

/* offsetof(struct config, sec.name), plus a compile-time check that the
 * field has C type ctype (_Generic without a match does not compile). */
#define FIELD(sec, name, ctype)                                              \
    .section = #sec, .key = #name,                                           \
    .offset = offsetof(struct config, sec.name) +                            \
              0 * sizeof(_Generic(((struct config *)0)->sec.name, ctype: 1))

#define KEY_BOOL(sec, name, dflt, text)                                      \
    {FIELD(sec, name, bool), .type = CONFIG_BOOL, .def = dflt, .help = text}
#define KEY_INT(sec, name, lo, hi, dflt, text)                               \
    {FIELD(sec, name, int64_t), .type = CONFIG_INT, .int_min = lo,           \
     .int_max = hi, .def = dflt, .help = text}
#define KEY_UINT64(sec, name, lo, hi, dflt, text)                            \
    {FIELD(sec, name, uint64_t), .type = CONFIG_UINT64, .uint_min = lo,      \
     .uint_max = hi, .def = dflt, .help = text}
#define KEY_FLOAT(sec, name, lo, hi, dflt, text)                             \
    {FIELD(sec, name, double), .type = CONFIG_FLOAT, .float_min = lo,        \
     .float_max = hi, .def = dflt, .help = text}
#define KEY_STRING(sec, name, min_len, max_len, chars, dflt, text)           \
    {FIELD(sec, name, char *), .type = CONFIG_STRING, .len_min = min_len,    \
     .len_max = max_len, .charset = chars, .def = dflt, .help = text}
#define KEY_ENUM(sec, name, names, dflt, text)                               \
    {FIELD(sec, name, int), .type = CONFIG_ENUM, .choices = names,           \
     .def = dflt, .help = text}
#define KEY_INT_LIST(sec, name, min_n, max_n, lo, hi, dflt, text)            \
    {FIELD(sec, name, struct config_int_list), .type = CONFIG_INT_LIST,      \
     .len_min = min_n, .len_max = max_n, .int_min = lo, .int_max = hi,       \
     .def = dflt, .help = text}
#define KEY_FLOAT_LIST(sec, name, min_n, max_n, lo, hi, dflt, text)          \
    {FIELD(sec, name, struct config_float_list), .type = CONFIG_FLOAT_LIST,  \
     .len_min = min_n, .len_max = max_n, .float_min = lo, .float_max = hi,   \
     .def = dflt, .help = text}

/* In the order of the enums of config.h. */
static const char *const backbone_names[] = {"resnet", "vit", NULL};
static const char *const preset_names[] = {
    "none", "resnet18", "resnet34", "vit_tiny", "vit_small", "vit_base", NULL,
};
static const char *const stem_names[] = {"auto", "small", "imagenet", NULL};
static const char *const embed_names[] = {"cls", "cls_mean", NULL};
static const char *const bn_running_names[] = {"all", "global", NULL};
static const char *const probe_schedule_names[] = {"constant", "cosine", NULL};
static const char *const probe_views_names[] = {"global", "all", "eval", NULL};

#define PATH_LEN (CONFIG_STR_LEN - 1)
#define STEPS_MAX INT64_C(1000000000)

static const struct config_key key_table[] = {
    /* [run] */
    KEY_STRING(run, name, 0, 64, "A-Za-z0-9._-", "",
               "run name, the run directory's name; empty: the trainer picks "
               "run-YYYYmmdd-HHMMSS"),
    KEY_UINT64(run, seed, 0, UINT64_MAX, "0",
               "seed of every random choice (init, sampling, augmentation)"),
    KEY_STRING(run, endpoint, 1, PATH_LEN, NULL, "tcp://127.0.0.1:5555",
               "work socket: the trainer's ROUTER binds it, loaders and "
               "evaluators connect"),
    KEY_STRING(run, broadcast, 1, PATH_LEN, NULL, "tcp://127.0.0.1:5556",
               "broadcast socket: the trainer's PUB binds it (embeddings, "
               "metrics)"),
    KEY_INT(run, threads, 0, 256, "0",
            "OpenMP and OpenBLAS threads; 0: all cores"),
    KEY_STRING(run, dir, 1, PATH_LEN, NULL, "runs",
               "parent directory of the run directories"),
    KEY_INT(run, ckpt_every, 0, STEPS_MAX, "500",
            "steps between checkpoints; 0: only at the end"),
    KEY_INT(run, keep_ckpts, 0, 1000000, "3",
            "step checkpoints kept in the run directory (older ones are "
            "deleted once a newer one is written); 0: keep all"),
    KEY_INT(run, log_every, 1, STEPS_MAX, "10",
            "steps between log lines and loss metrics"),
    KEY_INT(run, ticket_size, 1, 1024, "32",
            "samples per ticket (a loader's unit of work)"),
    KEY_STRING(run, data, 0, PATH_LEN, NULL, "",
               "dataset path for the trainer; empty: take the dataset "
               "summary from the first loader"),

    /* [views] */
    KEY_INT(views, channels, 1, 3, "1",
            "image channels: 1 (gray) or 3 (RGB); mean and std have one "
            "item per channel"),
    KEY_INT(views, global_count, 1, 16, "2", "global views per image"),
    KEY_INT(views, global_size, 8, 1024, "28",
            "side of a global view in pixels"),
    KEY_INT(views, local_count, 0, 64, "6", "local views per image"),
    KEY_INT(views, local_size, 4, 1024, "14",
            "side of a local view in pixels (at most global_size)"),
    KEY_FLOAT(views, global_scale_min, 0.001, 1.0, "0.3",
              "smallest global crop, as a fraction of the image area"),
    KEY_FLOAT(views, global_scale_max, 0.001, 1.0, "1.0",
              "largest global crop, as a fraction of the image area"),
    KEY_FLOAT(views, local_scale_min, 0.001, 1.0, "0.05",
              "smallest local crop, as a fraction of the image area"),
    KEY_FLOAT(views, local_scale_max, 0.001, 1.0, "0.3",
              "largest local crop, as a fraction of the image area"),
    KEY_FLOAT(views, ratio_min, 0.1, 10.0, "0.75",
              "smallest crop aspect ratio (width / height)"),
    KEY_FLOAT(views, ratio_max, 0.1, 10.0, "1.3333333333333333",
              "largest crop aspect ratio (width / height)"),
    KEY_FLOAT(views, flip_p, 0.0, 1.0, "0.5",
              "probability of a horizontal flip"),
    KEY_FLOAT(views, jitter_p, 0.0, 1.0, "0.8",
              "probability of colour jitter (brightness, contrast, "
              "saturation, hue)"),
    KEY_FLOAT(views, brightness, 0.0, 1.0, "0.4",
              "brightness factor drawn from [1-b, 1+b]"),
    KEY_FLOAT(views, contrast, 0.0, 1.0, "0.4",
              "contrast factor drawn from [1-c, 1+c]"),
    KEY_FLOAT(views, saturation, 0.0, 1.0, "0.2",
              "saturation factor drawn from [1-s, 1+s] (RGB only)"),
    KEY_FLOAT(views, hue, 0.0, 0.5, "0.1",
              "hue shift drawn from [-h, h] turns (RGB only)"),
    KEY_FLOAT(views, gray_p, 0.0, 1.0, "0.2",
              "probability of converting to grayscale (RGB only)"),
    KEY_FLOAT(views, blur_p, 0.0, 1.0, "0.5",
              "probability of a Gaussian blur"),
    KEY_FLOAT(views, blur_sigma_min, 0.01, 32.0, "0.1",
              "smallest blur sigma in pixels"),
    KEY_FLOAT(views, blur_sigma_max, 0.01, 32.0, "2.0",
              "largest blur sigma in pixels"),
    KEY_FLOAT(views, solarize_p, 0.0, 1.0, "0.2",
              "probability of solarizing"),
    KEY_INT(views, solarize_threshold, 0, 255, "128",
            "solarize inverts pixels at or above this value (0..255)"),
    KEY_FLOAT_LIST(views, mean, 1, 3, 0.0, 1.0, "0.2860",
                   "per-channel mean of pixels scaled to [0,1], subtracted "
                   "before the encoder; as many items as channels"),
    KEY_FLOAT_LIST(views, std, 1, 3, 0.001, 1.0, "0.3530",
                   "per-channel standard deviation of pixels scaled to "
                   "[0,1]; as many items as channels"),
    KEY_UINT64(views, max_pixels, 1, UINT64_C(1) << 40, "178956970",
               "refuse images whose header claims more pixels (width x "
               "height), like PIL's decompression-bomb limit"),

    /* [model] */
    KEY_ENUM(model, backbone, backbone_names, "resnet",
             "encoder family: resnet (BasicBlock) or vit"),
    KEY_ENUM(model, preset, preset_names, "none",
             "timm-style model whose shape fills the empty shape keys: "
             "resnet18, resnet34 (backbone = resnet), vit_tiny (dim 192, "
             "heads 3), vit_small (384, 6), vit_base (768, 12) (backbone = "
             "vit; depth 12, patch 16); a preset of the other family is an "
             "error"),
    KEY_INT_LIST(model, depths, 0, 8, 1, 64, "",
                 "ResNet BasicBlocks per stage; empty: the preset's, or "
                 "2,2,2,2"),
    KEY_INT_LIST(model, widths, 0, 8, 1, 4096, "",
                 "ResNet channels per stage; empty: the preset's, or "
                 "32,64,128,256"),
    KEY_ENUM(model, stem, stem_names, "auto",
             "ResNet stem: small (3x3 stride 1, no max-pool), imagenet "
             "(7x7 stride 2 + max-pool), auto (small up to 64 px crops)"),
    KEY_INT(model, patch, 0, 64, "0",
            "ViT patch size in pixels (crops are zero-padded at the bottom "
            "and right to a multiple); 0: the preset's (16); needed "
            "without a preset"),
    KEY_INT(model, dim, 0, 4096, "0",
            "ViT width D; 0: the preset's; needed without a preset"),
    KEY_INT(model, depth, 0, 64, "0",
            "ViT blocks; 0: the preset's (12); needed without a preset"),
    KEY_INT(model, heads, 0, 64, "0",
            "ViT attention heads (must divide dim); 0: the preset's; needed "
            "without a preset"),
    KEY_FLOAT(model, mlp_ratio, 0.25, 16.0, "4",
              "ViT MLP hidden width = int(dim * mlp_ratio)"),
    KEY_ENUM(model, embed, embed_names, "cls",
             "ViT embedding: cls (the CLS token after the final LayerNorm) "
             "or cls_mean (CLS concatenated with the mean of the patch "
             "tokens: width 2 * dim)"),
    KEY_INT_LIST(model, projector, 1, 8, 1, 65536, "2048,2048,128",
                 "projector widths; hidden layers get BatchNorm1d + ReLU, "
                 "the last is the SIGReg dimension"),
    KEY_FLOAT(model, drop_path, 0.0, 0.9, "0",
              "ViT stochastic depth (drop_path) in training: block i of n "
              "drops each residual branch of a view with probability "
              "drop_path * i / (n - 1) (timm's rule) and scales kept ones "
              "by 1 / (1 - p); 0: off"),
    KEY_BOOL(model, sync_bn, "false",
             "data parallel over MPI ranks: BatchNorm in training uses the "
             "batch statistics of every rank's samples (synchronised "
             "BatchNorm; a step then equals one process on the whole "
             "batch); false: each rank's own, as PyTorch DDP"),
    KEY_ENUM(model, bn_running, bn_running_names, "global",
             "which views update the BatchNorm running statistics (what "
             "eval mode, the embeddings and the exported model use): all "
             "(every resolution group, as PyTorch's multi-crop) or global "
             "(the global views only: the statistics of the size the "
             "val split is embedded at); training steps do not depend on it"),

    /* [loss] */
    KEY_FLOAT(loss, lambda, 0.0, 1.0, "0.05",
              "loss = (1 - lambda) * invariance + lambda * sigreg"),
    KEY_INT(loss, slices, 1, 65536, "1024",
            "SIGReg directions drawn per step"),
    KEY_INT(loss, knots, 2, 65, "17",
            "SIGReg quadrature knots on [0, t_max]"),
    KEY_FLOAT(loss, t_max, 0.1, 100.0, "3.0",
              "SIGReg integration limit"),
    KEY_BOOL(loss, sigreg_debias, "false",
             "SIGReg as an unbiased U-statistic: drops the i = j terms of "
             "|mean e^(itx)|^2, so an N(0, I) batch reads about 0 instead "
             "of the 1.05246 bias floor; off keeps the official statistic"),

    /* [optim] */
    KEY_INT(optim, batch, 2, 65536, "128", "samples per step"),
    KEY_INT(optim, steps, 1, STEPS_MAX, "10000",
            "training steps; with minutes > 0, the cap while timing"),
    KEY_FLOAT(optim, minutes, 0.0, 1e6, "0",
              "time budget in minutes; > 0: the first timing_steps steps "
              "are timed and the total step count fixed from them, then "
              "re-fitted every 5 x timing_steps steps from their pace"),
    KEY_INT(optim, timing_steps, 1, 10000, "20",
            "steps timed to fix the step count of a time budget"),
    KEY_FLOAT(optim, lr, 0.0, 10.0, "5e-4", "AdamW learning rate (encoder)"),
    KEY_FLOAT(optim, weight_decay, 0.0, 10.0, "5e-4",
              "AdamW weight decay (encoder); 5e-2 suits ViTs"),
    KEY_FLOAT(optim, probe_lr, 0.0, 10.0, "1e-3",
              "learning rate of the online probe"),
    KEY_FLOAT(optim, probe_weight_decay, 0.0, 10.0, "1e-7",
              "weight decay of the online probe"),
    KEY_ENUM(optim, probe_schedule, probe_schedule_names, "constant",
             "the online probe's lr schedule: constant (probe_lr at every "
             "step) or cosine (the encoder's warm-up and cosine decay to "
             "final_lr_ratio); the encoder's gradients do not depend on it"),
    KEY_ENUM(optim, probe_views, probe_views_names, "global",
             "what the online probe learns from: global (the global "
             "crops), all (local crops too) or eval (each sample's eval "
             "view: resized and centre-cropped as the val split is scored, "
             "without augmentation, sent by the loaders with the training "
             "views and run through the backbone in eval mode after "
             "backward: one more forward of one view per step, +15% on the "
             "default recipe); the encoder's gradients do not depend on it"),
    KEY_FLOAT(optim, beta1, 0.0, 0.999999, "0.9", "AdamW beta1"),
    KEY_FLOAT(optim, beta2, 0.0, 0.999999999, "0.999", "AdamW beta2"),
    KEY_FLOAT(optim, eps, 1e-12, 1.0, "1e-8", "AdamW epsilon"),
    KEY_FLOAT(optim, warmup_epochs, 0.0, 1000.0, "1.0",
              "linear warm-up length in epochs (capped by warmup_fraction)"),
    KEY_FLOAT(optim, warmup_fraction, 0.0, 1.0, "0.1",
              "linear warm-up length as a fraction of the run (cap)"),
    KEY_FLOAT(optim, final_lr_ratio, 0.0, 1.0, "1e-3",
              "the cosine schedule ends at lr * final_lr_ratio"),

    /* [eval] */
    KEY_INT(eval, every, -1, STEPS_MAX, "500",
            "steps between eval snapshots (EMBED, FEATMAP, probe_acc_val); "
            "0: only at the end of the run; -1: never"),
    KEY_INT(eval, train_subset, 0, 10000000, "10000",
            "labelled train samples embedded per snapshot: evenly spaced "
            "indices i * n_train / train_subset, the same every snapshot "
            "(all when larger than the split; 0: none)"),
    KEY_INT(eval, val_limit, 0, 10000000, "0",
            "val samples embedded per snapshot (evenly spaced like "
            "train_subset); 0: the whole val split"),
    KEY_INT(eval, wait_evaluators, 0, 64, "0",
            "evaluators the trainer waits for (at most 60 s) before its "
            "first training step, so that none misses a snapshot; lejepa "
            "run sets it to the evaluators it starts"),
    KEY_INT(eval, chunk, 1, 4096, "512",
            "samples per EMBED message (lejepa-eval accepts up to 4096)"),
    KEY_INT(eval, featmap_images, 0, 64, "16",
            "images whose last feature map goes out in FEATMAP (lejepa-eval "
            "accepts up to 64): the first val samples of the snapshot (train "
            "ones without a val split)"),
    KEY_STRING(eval, tasks, 0, 64, "A-Za-z0-9,._-", "knn,linear,segmap",
               "evaluator tasks the launcher starts (knn, linear, segmap); "
               "the trainer ignores it"),

    /* [limits] */
    KEY_INT(limits, client_queue, 64, 1000000, "4096",
            "messages the trainer queues to one client (ZMQ_SNDHWM of the "
            "work socket); a client whose queue is full is dropped, its "
            "tickets go to others, and it says HELLO again"),
    KEY_INT(limits, result_bytes, 1024, 1048576, "16384",
            "longest metrics line one RESULT may make; a longer RESULT is "
            "refused (counted in results_limited)"),
    KEY_FLOAT(limits, results_per_s, 0.01, 10000, "10",
              "RESULTs one evaluator may send per second, sustained; more "
              "are dropped (counted in results_limited)"),
    KEY_INT(limits, results_burst, 1, 100000, "100",
            "RESULTs one evaluator may send at once before results_per_s "
            "applies"),
    KEY_FLOAT(limits, ticket_timeout_s, 0.5, 86400, "10",
              "least time a loader gets to answer a ticket; the deadline is "
              "the larger of this and 4 times the measured ticket time; an "
              "expired ticket goes to another loader (the first answer wins)"),
    KEY_UINT64(limits, max_samples, 1, UINT64_C(4000000000), "100000000",
               "largest split (train or val) a dataset may have: a loader's "
               "claim above it is refused before it sizes anything (the "
               "trainer keeps about 24 bytes per sample)"),
    KEY_INT(limits, claim_mb, 16, 1048576, "4096",
            "memory (MB) a loader's dataset claim may make the trainer "
            "allocate before any batch (sampler and snapshot rows); a larger "
            "claim is refused"),
    KEY_FLOAT(limits, max_excluded, 0, 1, "0.05",
              "share of the training samples that may be excluded after "
              "decode failures; past it the run stops with a message"),
};

const struct config_key *config_keys(size_t *count)
{
    *count = sizeof key_table / sizeof key_table[0];
    return key_table;
}

/* section.lo_key <= section.hi_key for two float keys, named in the error
 * with their values as a config file would write them. */
static int check_min_max(const struct config *c, const char *section,
                         const char *lo_key, const char *hi_key, char *err)
{
    const struct config_key *lo = config_find_key(section, lo_key);
    const struct config_key *hi = config_find_key(section, hi_key);
    CHECK(lo && hi && lo->type == CONFIG_FLOAT && hi->type == CONFIG_FLOAT);
    double lo_v, hi_v;
    memcpy(&lo_v, (const char *)c + lo->offset, sizeof lo_v);
    memcpy(&hi_v, (const char *)c + hi->offset, sizeof hi_v);
    if (lo_v <= hi_v)
        return 0;
    char lo_text[64], hi_text[64];
    config_format_value(lo, &lo_v, lo_text, sizeof lo_text);
    config_format_value(hi, &hi_v, hi_text, sizeof hi_text);
    return errf(err, "%s.%s = %s is larger than %s.%s = %s", section, lo_key,
                lo_text, section, hi_key, hi_text);
}

static int check_endpoint(const char *value, const char *key, char *err)
{
    const char *sep = strstr(value, "://");
    if (!sep || sep == value || !sep[3])
        return errf(err, "run.%s = %s: expected transport://address, "
                    "e.g. tcp://127.0.0.1:5555", key, value);
    return 0;
}

static int check_run(const struct config_run *r, char *err)
{
    if (r->name[0] == '.')
        return errf(err, "run.name = %s: must not start with '.' (it names "
                    "a directory)", r->name);
    if (check_endpoint(r->endpoint, "endpoint", err) < 0 ||
        check_endpoint(r->broadcast, "broadcast", err) < 0)
        return -1;
    if (strcmp(r->endpoint, r->broadcast) == 0)
        return errf(err, "run.endpoint and run.broadcast are both %s: the "
                    "two sockets need different addresses", r->endpoint);
    return 0;
}

static int check_views(const struct config_views *v, char *err)
{
    if (v->channels != 1 && v->channels != 3)
        return errf(err, "views.channels = %" PRId64 ": must be 1 (gray) or "
                    "3 (RGB)", v->channels);
    if (v->mean.n != v->channels)
        return errf(err, "views.mean has %d item%s but views.channels = %"
                    PRId64 ": give one per channel", v->mean.n,
                    v->mean.n == 1 ? "" : "s", v->channels);
    if (v->std.n != v->channels)
        return errf(err, "views.std has %d item%s but views.channels = %"
                    PRId64 ": give one per channel", v->std.n,
                    v->std.n == 1 ? "" : "s", v->channels);
    if (v->local_size > v->global_size)
        return errf(err, "views.local_size = %" PRId64 " is larger than "
                    "views.global_size = %" PRId64, v->local_size,
                    v->global_size);
    return 0;
}

static int check_model(const struct config *c, char *err)
{
    const struct config_model *m = &c->model;
    int resnet_preset = m->preset == CONFIG_PRESET_RESNET18 ||
                        m->preset == CONFIG_PRESET_RESNET34;
    if (m->preset != CONFIG_PRESET_NONE &&
        resnet_preset != (m->backbone == CONFIG_BACKBONE_RESNET))
        return errf(err, "model.preset = %s does not fit model.backbone = %s",
                    preset_names[m->preset], backbone_names[m->backbone]);
    if (m->backbone == CONFIG_BACKBONE_RESNET && m->depths.n && m->widths.n &&
        m->depths.n != m->widths.n)
        return errf(err, "model.depths has %d stages but model.widths has %d",
                    m->depths.n, m->widths.n);
    if (c->run.ticket_size > c->optim.batch)
        return errf(err, "run.ticket_size = %" PRId64 " is larger than "
                    "optim.batch = %" PRId64, c->run.ticket_size,
                    c->optim.batch);
    return 0;
}

int config_check_rules(const struct config *c, char *err)
{
    if (check_run(&c->run, err) < 0 || check_views(&c->views, err) < 0 ||
        check_model(c, err) < 0)
        return -1;
    static const char *const views_pairs[][2] = {
        {"global_scale_min", "global_scale_max"},
        {"local_scale_min", "local_scale_max"},
        {"ratio_min", "ratio_max"},
        {"blur_sigma_min", "blur_sigma_max"},
    };
    for (size_t i = 0; i < sizeof views_pairs / sizeof views_pairs[0]; i++)
        if (check_min_max(c, "views", views_pairs[i][0], views_pairs[i][1], err) < 0)
            return -1;
    return 0;
}
