/*
 * ckpt.c: checkpoints over safetensors (see ckpt.h): one file's save,
 * verification and load. The run directory's set of them (which one to
 * resume from, stale temp files) is ckpt_dir.c.
 */
#include "ckpt.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static void fill(struct st_tensor *t, const char *name,
                 const struct params_entry *e, const float *data)
{
    t->name = name;
    t->dtype = ST_F32;
    t->ndim = e->ndim;
    for (int d = 0; d < e->ndim; d++)
        t->shape[d] = e->shape[d];
    t->data = data;
    t->nbytes = e->numel * sizeof(float);
}

int ckpt_save(const char *path, const struct params *p, const struct adamw *o,
              const char *const *keys, const char *const *values, size_t n,
              char *err)
{
    size_t nl = p->learn.n, ns = p->state.n;
    size_t nt = nl + ns + (o ? 2 * nl : 0);
    struct st_tensor *t = xcalloc(nt, sizeof *t);
    char (*names)[PARAMS_NAME_LEN + 16] = xcalloc(2 * nl + 1, sizeof *names);
    size_t k = 0;
    for (size_t i = 0; i < nl; i++)
        fill(&t[k++], p->learn.e[i].name, &p->learn.e[i],
             p->data + p->learn.e[i].offset);
    for (size_t i = 0; i < ns; i++)
        fill(&t[k++], p->state.e[i].name, &p->state.e[i],
             p->state_data + p->state.e[i].offset);
    char t_str[32];
    const char **mk = xcalloc(n + 3, sizeof *mk), **mv = xcalloc(n + 3, sizeof *mv);
    size_t nm = 0;
    mk[nm] = "format", mv[nm++] = CKPT_FORMAT;
    mk[nm] = "version", mv[nm++] = CKPT_VERSION;
    if (o) {
        for (size_t i = 0; i < nl; i++) {
            snprintf(names[2 * i], sizeof names[0], "optim.m.%s", p->learn.e[i].name);
            snprintf(names[2 * i + 1], sizeof names[0], "optim.v.%s", p->learn.e[i].name);
            fill(&t[k++], names[2 * i], &p->learn.e[i], p->m + p->learn.e[i].offset);
            fill(&t[k++], names[2 * i + 1], &p->learn.e[i], p->v + p->learn.e[i].offset);
        }
        snprintf(t_str, sizeof t_str, "%ld", o->t);
        mk[nm] = "optim.t", mv[nm++] = t_str;
    }
    for (size_t i = 0; i < n; i++)
        mk[nm] = keys[i], mv[nm++] = values[i];
    int rc = st_write(path, t, k, mk, mv, nm, err);
    free(t);
    free(names);
    free(mk);
    free(mv);
    return rc;
}

/* The tensor for entry e under name, checked for dtype and shape. */
static const struct st_tensor *expect(const struct st_file *f, const char *name,
                                      const struct params_entry *e,
                                      const char *path, char *err)
{
    const struct st_tensor *t = st_find(f, name);
    if (!t) {
        errf(err, "%s: tensor '%s' is missing (a checkpoint of another model?)",
             path, name);
        return NULL;
    }
    int same = t->dtype == ST_F32 && t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++)
        same = t->shape[d] == e->shape[d];
    if (!same) {
        errf(err, "%s: tensor '%s' has another dtype or shape than the model's "
             "(check the [model] config)", path, name);
        return NULL;
    }
    return t;
}

/* Format and version of an open file, and whether its version needs the
 * checksum st_open verified: 0 verified, 1 a version 1 file without one
 * (note says so), -1 with err. */
static int check_header(const struct st_file *f, const char *path, char *note,
                        char *err)
{
    const char *fmt = st_meta(f, "format"), *ver = st_meta(f, "version");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0)
        return errf(err, "%s: not a lejepa checkpoint (metadata format is '%s')",
                    path, fmt ? fmt : "absent");
    /* Checkpoints written before checksums existed are version 1: they
     * still load (a run must be able to resume across the upgrade), with a
     * warning, since nothing can tell whether their bytes are intact. */
    if (ver && strcmp(ver, CKPT_VERSION_UNCHECKED) == 0 && !f->checksummed) {
        if (note)
            snprintf(note, CKPT_NOTE_LEN, "%s: checkpoint version 1 has no "
                     "checksum; loaded without verifying its bytes", path);
        return 1;
    }
    if (!ver || strcmp(ver, CKPT_VERSION) != 0)
        return errf(err, "%s: checkpoint version '%s', this build reads versions "
                    "%s and %s", path, ver ? ver : "absent",
                    CKPT_VERSION_UNCHECKED, CKPT_VERSION);
    /* A version 2 file always has one: its absence means the header's
     * checksum key itself was damaged. */
    if (!f->checksummed)
        return errf(err, "%s: version %s checkpoint without its checksum: the "
                    "file is corrupt", path, CKPT_VERSION);
    return 0;
}

int ckpt_verify(const char *path, char *note, char *err)
{
    struct st_file f;
    if (note)
        note[0] = '\0';
    if (st_open(&f, path, err) != 0)
        return -1;
    int rc = check_header(&f, path, note, err);
    st_close(&f);
    return rc;
}

int ckpt_load(const char *path, struct params *p, struct adamw *o,
              struct st_file *f, char *err)
{
    if (st_open(f, path, err) != 0)
        return -1;
    char note[CKPT_NOTE_LEN];
    int hc = check_header(f, path, note, err);
    if (hc < 0)
        goto fail;
    if (hc == 1)
        util_log("warning: %s", note);
    long t = 0;
    if (o) {
        const char *ts = st_meta(f, "optim.t");
        char *end;
        if (!ts || (t = strtol(ts, &end, 10)) < 0 || *end != '\0' || end == ts) {
            errf(err, "%s: no optimizer state (a weights-only file cannot "
                 "resume training)", path);
            goto fail;
        }
    }
    /* Validate every tensor first, copy after: never half-loaded. */
    size_t nl = p->learn.n, ns = p->state.n, k = 0;
    const struct st_tensor **src = xcalloc(3 * nl + ns + 1, sizeof *src);
    char name[PARAMS_NAME_LEN + 16];
    for (size_t i = 0; i < nl; i++)
        if (!(src[k++] = expect(f, p->learn.e[i].name, &p->learn.e[i], path, err)))
            goto fail_src;
    for (size_t i = 0; i < ns; i++)
        if (!(src[k++] = expect(f, p->state.e[i].name, &p->state.e[i], path, err)))
            goto fail_src;
    for (size_t i = 0; o && i < nl; i++) {
        snprintf(name, sizeof name, "optim.m.%s", p->learn.e[i].name);
        if (!(src[k++] = expect(f, name, &p->learn.e[i], path, err)))
            goto fail_src;
        snprintf(name, sizeof name, "optim.v.%s", p->learn.e[i].name);
        if (!(src[k++] = expect(f, name, &p->learn.e[i], path, err)))
            goto fail_src;
    }
    k = 0;
    for (size_t i = 0; i < nl; i++, k++)
        memcpy(p->data + p->learn.e[i].offset, src[k]->data, src[k]->nbytes);
    for (size_t i = 0; i < ns; i++, k++)
        memcpy(p->state_data + p->state.e[i].offset, src[k]->data, src[k]->nbytes);
    for (size_t i = 0; o && i < nl; i++) {
        memcpy(p->m + p->learn.e[i].offset, src[k]->data, src[k]->nbytes);
        k++;
        memcpy(p->v + p->learn.e[i].offset, src[k]->data, src[k]->nbytes);
        k++;
    }
    if (o)
        o->t = t;
    free(src);
    return 0;
fail_src:
    free(src);
fail:
    st_close(f);
    return -1;
}
