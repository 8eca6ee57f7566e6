/*
 * fixture_inputs.c: writes, for every case of tests/lejepa_cases.h, the
 * inputs of the PyTorch reference (tools/ref_lejepa.py): our initial weights
 * (<case>_weights.safetensors, a weights-only checkpoint) and the batch, the
 * labels and the SIGReg directions of steps 0..CASE_STEPS
 * (<case>_in.safetensors). Run by tools/make-fixtures.sh; not a test.
 */
#include <stdio.h>
#include <string.h>

#include "ckpt.h"
#include "lejepa.h"
#include "lejepa_cases.h"
#include "model_config.h"
#include "rng.h"
#include "compute.h"
#include "util.h"

static int write_case(const struct lejepa_case *lc, const char *dir, char *err)
{
    struct lejepa m;
    if (lejepa_init(&m, &lc->c, err) != 0)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/lejepa_%s_weights.safetensors", dir, lc->name);
    if (ckpt_save(path, &m.p, NULL, NULL, NULL, 0, err) != 0)
        return -1;

    struct st_tensor t[2 + 1 + CASE_STEPS + 1];
    size_t n = 0;
    struct rng r;
    rng_init(&r, lc->c.seed, 0xF1C7, 0, 0);
    for (int g = 0; g < m.n_groups; g++) {
        const struct lejepa_group *gr = &m.grp[g];
        float *x = lejepa_input(&m, g);
        size_t numel = graph_numel(&gr->g, gr->in);
        for (size_t i = 0; i < numel; i++)
            x[i] = (float)rng_normal(&r);
        t[n++] = (struct st_tensor){
            .name = g == 0 ? "input.global" : "input.local", .dtype = ST_F32,
            .ndim = 4, .shape = {gr->g.B, lejepa_in_channels(&lc->c), gr->size, gr->size},
            .data = x, .nbytes = numel * sizeof(float)};
    }
    int32_t labels[64];
    CHECK(lc->c.batch <= 64);
    for (int i = 0; i < lc->c.batch; i++)
        labels[i] = (int32_t)rng_below(&r, (uint64_t)lc->c.n_classes);
    t[n++] = (struct st_tensor){.name = "labels", .dtype = ST_I32, .ndim = 1,
                                .shape = {lc->c.batch}, .data = labels,
                                .nbytes = lc->c.batch * sizeof(int32_t)};
    size_t dsize = (size_t)m.proj_dim * lc->c.slices;
    float *dirs = xmalloc(dsize * CASE_STEPS * sizeof(float));
    static char names[CASE_STEPS][16];
    for (int s = 0; s < CASE_STEPS; s++) {
        sigreg_directions(dirs + s * dsize, lc->c.seed, (uint64_t)s, m.proj_dim,
                          lc->c.slices);
        snprintf(names[s], sizeof names[s], "dirs.%d", s);
        t[n++] = (struct st_tensor){.name = names[s], .dtype = ST_F32, .ndim = 2,
                                    .shape = {m.proj_dim, lc->c.slices},
                                    .data = dirs + s * dsize,
                                    .nbytes = dsize * sizeof(float)};
    }
    char extra[256], cfg[2048];
    snprintf(extra, sizeof extra,
             "\"steps\":%d,\"lr_encoder\":%.17g,\"wd_encoder\":%.17g,"
             "\"lr_probe\":%.17g,\"wd_probe\":%.17g", CASE_STEPS,
             CASE_LR_ENCODER, CASE_WD_ENCODER, CASE_LR_PROBE, CASE_WD_PROBE);
    lejepa_config_json(cfg, sizeof cfg, &lc->c, extra);
    const char *key = "case";
    const char *value = cfg;
    snprintf(path, sizeof path, "%s/lejepa_%s_in.safetensors", dir, lc->name);
    int rc = st_write(path, t, n, &key, &value, 1, err);
    free(dirs);
    lejepa_free(&m);
    return rc;
}

/* Whether case `name` is among the names argv[2..argc) (all when none). */
static int wanted(const char *name, int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return argc <= 2;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: fixture-inputs DIR [CASE ...]\n"
                        "writes the inputs of tools/ref_lejepa.py into DIR "
                        "(every case of tests/lejepa_cases.h, or the named "
                        "ones)\n");
        return argc >= 2 ? 0 : 2;
    }
    compute_set_threads(1);
    for (size_t i = 0; i < N_LEJEPA_CASES; i++) {
        if (!wanted(lejepa_cases[i].name, argc, argv))
            continue;
        char err[ERR_LEN];
        if (write_case(&lejepa_cases[i], argv[1], err) != 0)
            die("case %s: %s", lejepa_cases[i].name, err);
        printf("fixture-inputs: wrote case %s\n", lejepa_cases[i].name);
    }
    return 0;
}
