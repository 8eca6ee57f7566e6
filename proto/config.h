/*
 * config.h: the run's configuration, shared by every program (DESIGN.md §9).
 * One INI file (libinih) plus `--set section.key=value` overrides, checked
 * against ONE table of keys (config_keys.c): name, type, bounds, default (a
 * string, parsed like user input), help. Unknown sections and keys and bad
 * values are errors that name the source, the line and the key.
 *
 * struct config is a plain value: fixed-size strings and lists, no pointers,
 * nothing to free; copy it with `=`, compare two with memcmp (every writer
 * zero-fills unused bytes). Adding a section = one struct member below plus
 * rows (and cross-key rules, if any) in config_keys.c; nothing else changes.
 */
#ifndef LEJEPA_CONFIG_H
#define LEJEPA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Storage of a string value, NUL included. libinih (Debian) reads lines of at
 * most 198 characters, so every `key = value` line must fit there (a table
 * test checks the longest value of every key). */
#define CONFIG_STR_LEN 160
/* Storage of a list value; each key's row sets its own, smaller, bound. */
#define CONFIG_LIST_MAX 16

/* A list value: n items in v[0..n-1], the rest zero. */
struct config_int_list {
    int n;
    int64_t v[CONFIG_LIST_MAX];
};

struct config_float_list {
    int n;
    double v[CONFIG_LIST_MAX];
};

/* [run]: names, seeds, endpoints and the cadence of the run. */
struct config_run {
    char name[CONFIG_STR_LEN];      /* "" = the trainer picks run-YYYYmmdd-HHMMSS */
    uint64_t seed;
    char endpoint[CONFIG_STR_LEN];  /* work socket (trainer ROUTER binds) */
    char broadcast[CONFIG_STR_LEN]; /* broadcast socket (trainer PUB binds) */
    int64_t threads;                /* 0 = all cores */
    char dir[CONFIG_STR_LEN];       /* parent of the run directories */
    int64_t ckpt_every;             /* steps; 0 = only at the end */
    int64_t keep_ckpts;             /* newest step checkpoints kept; 0 = all */
    int64_t log_every;              /* steps */
    int64_t ticket_size;            /* samples per ticket */
    char data[CONFIG_STR_LEN];      /* "" = the trainer takes the loaders' summary */
};

/* [views]: the multi-crop view spec and augmentation parameters (§5). */
struct config_views {
    int64_t channels;               /* 1 (gray) or 3 (RGB) */
    int64_t global_count;
    int64_t global_size;            /* pixels, square crops */
    int64_t local_count;
    int64_t local_size;
    double global_scale_min, global_scale_max;   /* fraction of the image area */
    double local_scale_min, local_scale_max;
    double ratio_min, ratio_max;                 /* crop aspect ratio w/h */
    double flip_p;
    double jitter_p;
    double brightness, contrast, saturation, hue;
    double gray_p;
    double blur_p;
    double blur_sigma_min, blur_sigma_max;
    double solarize_p;
    int64_t solarize_threshold;     /* on the 0..255 pixel scale */
    struct config_float_list mean;  /* one per channel, pixels scaled to [0,1] */
    struct config_float_list std;
    uint64_t max_pixels;            /* refuse images whose header claims more */
};

/* [model]: the encoder and projector. Empty shape lists come from the
 * preset (or, with preset = none, from the defaults of the backbone). */
enum config_backbone { CONFIG_BACKBONE_RESNET, CONFIG_BACKBONE_VIT };
enum config_preset {
    CONFIG_PRESET_NONE,
    CONFIG_PRESET_RESNET18,
    CONFIG_PRESET_RESNET34,
    CONFIG_PRESET_VIT_TINY,
    CONFIG_PRESET_VIT_SMALL,
    CONFIG_PRESET_VIT_BASE,
};
enum config_stem { CONFIG_STEM_AUTO, CONFIG_STEM_SMALL, CONFIG_STEM_IMAGENET };
enum config_embed { CONFIG_EMBED_CLS, CONFIG_EMBED_CLS_MEAN };
enum config_bn_running { CONFIG_BN_RUNNING_ALL, CONFIG_BN_RUNNING_GLOBAL };

struct config_model {
    int backbone;                       /* enum config_backbone */
    int preset;                         /* enum config_preset */
    struct config_int_list depths;      /* BasicBlocks per stage; empty: preset */
    struct config_int_list widths;      /* channels per stage; empty: preset */
    int stem;                           /* enum config_stem */
    int64_t patch;                      /* ViT patch size; 0: the preset's */
    int64_t dim;                        /* ViT width D; 0: the preset's */
    int64_t depth;                      /* ViT blocks; 0: the preset's */
    int64_t heads;                      /* ViT attention heads; 0: the preset's */
    double mlp_ratio;                   /* ViT MLP hidden = dim * mlp_ratio */
    int embed;                          /* enum config_embed */
    struct config_int_list projector;   /* projector widths, last = K */
    bool sync_bn;                       /* BatchNorm statistics over all ranks */
    int bn_running;                     /* enum config_bn_running */
    double drop_path;                   /* ViT stochastic depth, last block */
};

/* [loss]: LeJEPA's trade-off and SIGReg's quadrature (DESIGN.md §5). */
struct config_loss {
    double lambda;
    int64_t slices;                     /* M directions per step */
    int64_t knots;                      /* T */
    double t_max;
    bool sigreg_debias;                 /* the unbiased (U-statistic) form */
};

/* [optim]: AdamW, the schedule and the length of the run. */
enum config_probe_schedule {
    CONFIG_PROBE_SCHEDULE_CONSTANT,     /* the probe's lr at every step */
    CONFIG_PROBE_SCHEDULE_COSINE,       /* the encoder's warm-up and cosine */
};
enum config_probe_views {
    CONFIG_PROBE_VIEWS_GLOBAL,          /* the global views only */
    CONFIG_PROBE_VIEWS_ALL,             /* every view, local crops too */
    CONFIG_PROBE_VIEWS_EVAL,            /* the eval view (TICKET.eval_view) */
};
struct config_optim {
    int64_t batch;                      /* samples per step */
    int64_t steps;                      /* total steps (the cap with minutes) */
    double minutes;                     /* > 0: a time budget fixes the steps */
    int64_t timing_steps;               /* steps measured to fix the budget */
    double lr, weight_decay;
    double probe_lr, probe_weight_decay;
    int probe_schedule;                 /* enum config_probe_schedule */
    int probe_views;                    /* enum config_probe_views */
    double beta1, beta2, eps;
    double warmup_epochs, warmup_fraction;  /* warm-up = min of the two */
    double final_lr_ratio;              /* cosine ends at lr * this */
};

/* [eval]: the trainer's evaluation snapshots (DESIGN.md §3, §6). */
struct config_eval {
    int64_t every;                      /* steps between snapshots; 0: only
                                         * at the end; -1: never */
    int64_t train_subset;               /* labelled train samples embedded */
    int64_t val_limit;                  /* val samples; 0: the whole split */
    int64_t chunk;                      /* samples per EMBED chunk */
    int64_t featmap_images;             /* images in FEATMAP; 0: none */
    char tasks[CONFIG_STR_LEN];         /* the launcher's evaluator tasks */
    int64_t wait_evaluators;            /* evaluators awaited before step 1 */
};

/* [limits]: what the trainer grants one client (DESIGN.md §3: the hub never
 * blocks and never trusts a number). */
struct config_limits {
    int64_t client_queue;               /* messages queued to one client */
    int64_t result_bytes;               /* longest RESULT metrics line */
    double results_per_s;               /* RESULTs per evaluator, sustained */
    int64_t results_burst;              /* ... and at once */
    double ticket_timeout_s;            /* least time a loader gets a ticket */
    double max_excluded;                /* share of excluded samples: stop */
    uint64_t max_samples;               /* largest dataset split accepted */
    int64_t claim_mb;                   /* memory a dataset claim may size */
};

struct config {
    struct config_run run;
    struct config_views views;
    struct config_model model;
    struct config_loss loss;
    struct config_optim optim;
    struct config_eval eval;
    struct config_limits limits;
};

enum config_type {
    CONFIG_BOOL,        /* bool: true/false, yes/no, on/off, 1/0 */
    CONFIG_INT,         /* int64_t within [int_min, int_max] */
    CONFIG_UINT64,      /* uint64_t within [uint_min, uint_max] */
    CONFIG_FLOAT,       /* finite double within [float_min, float_max] */
    CONFIG_STRING,      /* char[CONFIG_STR_LEN], len_min..len_max characters */
    CONFIG_ENUM,        /* int: index of the value in choices */
    CONFIG_INT_LIST,    /* struct config_int_list: "2,2,2,2", items in int bounds */
    CONFIG_FLOAT_LIST,  /* struct config_float_list: "0.5,0.5", items in float bounds */
};

/* One row of the key table. Bounds are inclusive; the fields a type does
 * not use are zero. */
struct config_key {
    const char *section;
    const char *key;
    enum config_type type;
    size_t offset;                  /* of the value in struct config */
    int64_t int_min, int_max;       /* CONFIG_INT, CONFIG_INT_LIST items */
    uint64_t uint_min, uint_max;    /* CONFIG_UINT64 */
    double float_min, float_max;    /* CONFIG_FLOAT, CONFIG_FLOAT_LIST items */
    int len_min, len_max;           /* string characters, list items */
    const char *charset;            /* CONFIG_STRING: allowed bytes, NULL = any */
    const char *const *choices;     /* CONFIG_ENUM: NULL-terminated */
    const char *def;                /* default, parsed like user input */
    const char *help;
};

/* The key table, in the order of config_to_string and config_print_help
 * (rows of one section are contiguous). */
const struct config_key *config_keys(size_t *count);

/* The row of section.key, or NULL. */
const struct config_key *config_find_key(const char *section, const char *key);

/* Fills c with every key's default (zeroing the whole struct first). */
void config_defaults(struct config *c);

/* Apply an INI file / INI text on top of c. A key may appear once per
 * source. On error returns -1 with "<path>:<line>: <reason>" in err (ERR_LEN)
 * and leaves c unchanged. origin names the text in messages. */
int config_load_file(struct config *c, const char *path, char *err);
int config_load_string(struct config *c, const char *text, const char *origin,
                       char *err);

/* Applies one "section.key=value" assignment (spaces around the key and the
 * value are ignored). -1 with the reason in err; c unchanged then. */
int config_set(struct config *c, const char *assignment, char *err);

/* Rules between keys (min <= max pairs, list lengths vs channels, ...) and
 * each key's own bounds, once every source is applied. -1 with err naming
 * the keys. */
int config_validate(const struct config *c, char *err);

/* The rules between keys alone (config_keys.c, beside the table); called by
 * config_validate after each key's own bounds. */
int config_check_rules(const struct config *c, char *err);

/* INI text of every key, in table order. Loading it into config_defaults()
 * gives back an identical struct (floats in the shortest form that reads
 * back exactly). Returns a malloc'd string; the caller frees it. */
char *config_to_string(const struct config *c);

/* Every key with its type, bounds, default and help, grouped by section. */
void config_print_help(FILE *out);

/*
 * The command-line helper every main calls first, on defaults:
 *   --config FILE, --config=FILE     load an INI file (may repeat)
 *   --set S.K=V, --set=S.K=V         override one key (may repeat)
 *   --help-config                    print config_print_help to stdout, exit 0
 * Consumed arguments are removed from argv (argc updated, argv[argc] = NULL);
 * the others stay in order for the program's own parsing; "--" ends the scan.
 * Every --config file is applied first, in order, then every --set, in
 * order, wherever they stand, so overrides always win. Then config_validate
 * runs. Returns 0, or -1 with the reason in err (the caller dies with it);
 * on error c, argc and argv are unchanged.
 */
int config_from_args(struct config *c, int *argc, char **argv, char *err);

/* One value of one key (config_value.c). parse: text -> *field, -1 with the
 * bare reason in err ("above the maximum 1024", no key name); field is left
 * unchanged on error and unused bytes of strings and lists are zeroed.
 * format: *field -> text (NUL-terminated, truncated to n). */
int config_parse_value(const struct config_key *k, const char *text,
                       void *field, char *err);
void config_format_value(const struct config_key *k, const void *field,
                         char *out, size_t n);

/* Longest text config_format_value can write for any value within k's
 * bounds (used to check that every key fits one INI line). */
size_t config_value_max_len(const struct config_key *k);

#endif
