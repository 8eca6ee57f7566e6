/*
 * export.c: the backbone export (see export.h). The trainer already names
 * its backbone tensors as torchvision and timm do under "backbone." (resnet.c,
 * vit.c, graph.c), so the mapping is the prefix and the one tensor we lack;
 * everything else here is checking that the file is what it says.
 */
#include "export.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "safetensors.h"
#include "util.h"

#define EXPORT_PATH_MAX 4200

int export_map_name(const char *ckpt_name, char *out)
{
    const size_t k = strlen(EXPORT_CKPT_PREFIX);
    if (strncmp(ckpt_name, EXPORT_CKPT_PREFIX, k) != 0 || !ckpt_name[k])
        return 0;
    int n = snprintf(out, PARAMS_NAME_LEN, "%s", ckpt_name + k);
    return n > 0 && n < PARAMS_NAME_LEN;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_bn_stat(const char *name)
{
    return ends_with(name, ".running_mean") || ends_with(name, ".running_var");
}

/* The checkpoint's step for num_batches_tracked: metadata "step", or 0 when
 * absent (a checkpoint saved outside lejepa-train). */
static int read_step(const struct st_file *f, const char *path, int64_t *step,
                     char *err)
{
    const char *s = st_meta(f, "step");
    *step = 0;
    if (!s)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return errf(err, "%s: metadata step = '%s' is not a step count", path, s);
    *step = v;
    return 0;
}

int export_backbone(const char *ckpt_path, const char *out_path, char *err)
{
    char path[EXPORT_PATH_MAX];
    char note[CKPT_NOTE_LEN];
    if (ckpt_resolve(ckpt_path, path, sizeof path, note, err) != 0)
        return -1;
    if (note[0])
        util_log("%s", note);
    struct st_file f;
    if (st_open(&f, path, err) != 0)
        return -1;
    int rc = -1;
    struct st_tensor *out = NULL;
    char (*names)[PARAMS_NAME_LEN + 32] = NULL;
    const char *fmt = st_meta(&f, "format"), *ver = st_meta(&f, "version");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0) {
        errf(err, "%s: not a lejepa checkpoint (metadata format is '%s')", path,
             fmt ? fmt : "absent");
        goto cleanup;
    }
    if (!ver || strcmp(ver, CKPT_VERSION) != 0) {
        errf(err, "%s: checkpoint version '%s', this build reads version %s", path,
             ver ? ver : "absent", CKPT_VERSION);
        goto cleanup;
    }
    int64_t step;
    if (read_step(&f, path, &step, err) != 0)
        goto cleanup;
    /* At most every tensor plus one num_batches_tracked per BatchNorm. */
    out = xcalloc(2 * f.n + 1, sizeof *out);
    names = xcalloc(2 * f.n + 1, sizeof *names);
    size_t k = 0, stats = 0, stats_out = 0;
    int vit = 0;
    for (size_t i = 0; i < f.n; i++) {
        const struct st_tensor *t = &f.tensors[i];
        char name[PARAMS_NAME_LEN];
        if (!export_map_name(t->name, name))
            continue;
        if (t->dtype != ST_F32) {
            errf(err, "%s: tensor '%s' is %s, expected F32", path, t->name,
                 st_dtype_name(t->dtype));
            goto cleanup;
        }
        /* BatchNorm statistics follow their module's bias below, in
         * torchvision's state_dict order. */
        if (is_bn_stat(name)) {
            stats++;
            continue;
        }
        vit |= strcmp(name, "cls_token") == 0;
        out[k] = *t;
        snprintf(names[k], sizeof names[k], "%s", name);
        out[k].name = names[k];
        k++;
        if (!ends_with(name, ".bias"))
            continue;
        char mod[PARAMS_NAME_LEN + 32], stat[PARAMS_NAME_LEN + 64];
        snprintf(mod, sizeof mod, "%.*s", (int)(strlen(t->name) - 5), t->name);
        snprintf(stat, sizeof stat, "%s.running_mean", mod);
        const struct st_tensor *mean = st_find(&f, stat);
        snprintf(stat, sizeof stat, "%s.running_var", mod);
        const struct st_tensor *var = st_find(&f, stat);
        if (!mean || !var)
            continue;       /* not a BatchNorm: a conv or linear bias */
        const char *suffix[] = {"running_mean", "running_var", "num_batches_tracked"};
        const struct st_tensor *src[] = {mean, var, NULL};
        for (int s = 0; s < 3; s++) {
            snprintf(names[k], sizeof names[k], "%.*s.%s",
                     (int)(strlen(name) - 5), name, suffix[s]);
            if (src[s]) {
                out[k] = *src[s];
                if (out[k].dtype != ST_F32 || out[k].ndim != 1 ||
                    out[k].shape[0] != t->shape[0]) {
                    errf(err, "%s: BatchNorm statistics of '%s' do not match its "
                         "bias", path, mod);
                    goto cleanup;
                }
                stats_out++;
            } else {
                /* torchvision's buffer: an int64 scalar */
                out[k] = (struct st_tensor){.dtype = ST_I64, .ndim = 0,
                                            .data = &step, .nbytes = sizeof step};
            }
            out[k].name = names[k];
            k++;
        }
    }
    if (k == 0) {
        errf(err, "%s: no tensor named %s* (not a lejepa-train checkpoint?)", path,
             EXPORT_CKPT_PREFIX);
        goto cleanup;
    }
    if (stats_out != stats) {
        errf(err, "%s: %zu BatchNorm statistics have no BatchNorm weight and bias",
             path, stats - stats_out);
        goto cleanup;
    }
    char step_s[32];
    snprintf(step_s, sizeof step_s, "%" PRId64, step);
    const char *config = st_meta(&f, "config");
    const char *keys[] = {"format", "version", "layout", "source", "step", "config"};
    const char *values[] = {EXPORT_FORMAT, EXPORT_VERSION, vit ? "timm" : "torchvision",
                            path, step_s, config};
    rc = st_write(out_path, out, k, keys, values, config ? 6 : 5, err);
cleanup:
    free(out);
    free(names);
    st_close(&f);
    return rc;
}

/* The export's tensor for a model entry, checked for dtype and shape. */
static const struct st_tensor *expect(const struct st_file *f, const char *path,
                                      const struct params_entry *e, char *err)
{
    char name[PARAMS_NAME_LEN];
    if (!export_map_name(e->name, name))
        return NULL;
    const struct st_tensor *t = st_find(f, name);
    if (!t) {
        errf(err, "%s: tensor '%s' is missing (an export of another model?)", path,
             name);
        return NULL;
    }
    int same = t->dtype == ST_F32 && t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++)
        same = t->shape[d] == e->shape[d];
    if (!same) {
        errf(err, "%s: tensor '%s' has another dtype or shape than the model's", path,
             name);
        return NULL;
    }
    return t;
}

int export_load_backbone(struct params *p, const char *path, char *err)
{
    struct st_file f;
    if (st_open(&f, path, err) != 0)
        return -1;
    int rc = -1;
    const char *fmt = st_meta(&f, "format"), *ver = st_meta(&f, "version");
    size_t n = p->learn.n + p->state.n;
    const struct st_tensor **src = xcalloc(n + 1, sizeof *src);
    if (!fmt || strcmp(fmt, EXPORT_FORMAT) != 0 || !ver ||
        strcmp(ver, EXPORT_VERSION) != 0) {
        errf(err, "%s: not a %s file of version %s (metadata format '%s', version "
             "'%s'; a checkpoint becomes one with lejepa export)", path, EXPORT_FORMAT,
             EXPORT_VERSION, fmt ? fmt : "absent", ver ? ver : "absent");
        goto cleanup;
    }
    /* Validate every tensor first, copy after: never half-loaded. */
    char name[PARAMS_NAME_LEN];
    for (size_t i = 0; i < n; i++) {
        const struct params_entry *e = i < p->learn.n ? &p->learn.e[i]
                                                      : &p->state.e[i - p->learn.n];
        if (export_map_name(e->name, name) && !(src[i] = expect(&f, path, e, err)))
            goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        if (!src[i])
            continue;
        float *dst = i < p->learn.n
            ? p->data + p->learn.e[i].offset
            : p->state_data + p->state.e[i - p->learn.n].offset;
        memcpy(dst, src[i]->data, src[i]->nbytes);
    }
    rc = 0;
cleanup:
    free(src);
    st_close(&f);
    return rc;
}
