/*
 * fixture_ckpt.c: fixture-ckpt, a lejepa-train style run directory holding
 * one checkpoint of a model with random weights, for tools/check_export.py
 * (run by hand) when no trained run is at hand:
 *
 *   fixture-ckpt OUT_DIR [--set section.key=value ...]
 *
 * writes OUT_DIR/ckpt-7.safetensors (model, AdamW moments, the metadata
 * lejepa-train writes: config, step, dataset.n_classes) and OUT_DIR/latest.
 * Every 1-D tensor (BatchNorm and LayerNorm affine, biases) and the
 * BatchNorm statistics are drawn away from their init (ones, zeros) so that
 * a swapped or dropped tensor changes the embeddings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "ckpt.h"
#include "config.h"
#include "lejepa.h"
#include "model_config.h"
#include "rng.h"
#include "util.h"

#define FIXTURE_STEP "7"
#define FIXTURE_CLASSES 3
#define FIXTURE_SEED 20261207

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: fixture-ckpt OUT_DIR [--set section.key=value ...]\n");
        return 2;
    }
    char err[ERR_LEN];
    struct config cfg;
    config_defaults(&cfg);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--set") != 0 || i + 1 == argc)
            die("fixture-ckpt: expected --set section.key=value, got '%s'", argv[i]);
        if (config_set(&cfg, argv[++i], err) != 0)
            die("fixture-ckpt: %s", err);
    }
    if (config_validate(&cfg, err) != 0)
        die("fixture-ckpt: %s", err);
    struct lejepa_config lc;
    if (model_config_resolve(&lc, &cfg, FIXTURE_CLASSES, err) != 0)
        die("fixture-ckpt: %s", err);
    lc.batch = 2;       /* only the weights matter: smallest arenas */
    struct lejepa m;
    if (lejepa_init(&m, &lc, err) != 0)
        die("fixture-ckpt: %s", err);
    struct rng r;
    rng_init(&r, FIXTURE_SEED, 0, 0, 0);
    for (size_t i = 0; i < m.p.learn.n; i++) {
        const struct params_entry *e = &m.p.learn.e[i];
        float *x = params_data(&m.p, (int)i);
        for (size_t k = 0; e->ndim == 1 && k < e->numel; k++)
            x[k] += (float)(0.2 * rng_normal(&r));
    }
    for (size_t i = 0; i < m.p.state.n; i++) {
        const struct params_entry *e = &m.p.state.e[i];
        float *x = params_state(&m.p, (int)i);
        int var = strstr(e->name, "running_var") != NULL;
        for (size_t k = 0; k < e->numel; k++)
            x[k] = var ? (float)rng_range(&r, 0.5, 1.5) : (float)(0.3 * rng_normal(&r));
    }
    struct adamw o;
    adamw_init(&o, 0.9, 0.999, 1e-8);
    o.t = atol(FIXTURE_STEP);
    if (util_mkdir_p(argv[1], err) < 0)
        die("fixture-ckpt: %s", err);
    char *text = config_to_string(&cfg);
    char ncls[16], path[4200], latest[4200];
    snprintf(ncls, sizeof ncls, "%d", FIXTURE_CLASSES);
    const char *keys[] = {"config", "step", "dataset.n_classes"};
    const char *values[] = {text, FIXTURE_STEP, ncls};
    snprintf(path, sizeof path, "%s/ckpt-" FIXTURE_STEP ".safetensors", argv[1]);
    if (ckpt_save(path, &m.p, &o, keys, values, 3, err) != 0)
        die("fixture-ckpt: %s", err);
    snprintf(latest, sizeof latest, "%s/latest", argv[1]);
    const char *name = "ckpt-" FIXTURE_STEP ".safetensors\n";
    if (util_write_file_atomic(latest, name, strlen(name), err) != 0)
        die("fixture-ckpt: %s", err);
    fprintf(stderr, "fixture-ckpt: wrote %s (%zu learnable floats) and %s\n", path,
            params_count(&m.p), latest);
    free(text);
    lejepa_free(&m);
    return 0;
}
