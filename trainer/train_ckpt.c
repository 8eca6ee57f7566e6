/*
 * train_ckpt.c: checkpoints of a run and resuming from them (DESIGN.md §8).
 * runs/<name>/ckpt-<step>.safetensors holds the model, the AdamW state and,
 * as metadata, the run's config, the step, the total step count, the dataset
 * identity and the sampler state (epoch, its first step, seed, excluded
 * samples with the epoch they failed in); `latest` names the newest file.
 * Both are written atomically; older step checkpoints beyond run.keep_ckpts
 * are deleted after that. Tickets in flight are not saved: a resumed
 * run issues them again, so it trains the same next batch.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "train.h"
#include "util.h"

/* Fault injection for tests/test_faults.c: LEJEPA_TRAIN_FAULT=NAME:STEP
 * kills the process with SIGKILL at the point NAME of step STEP, as a power
 * loss would. Unset (always, outside that test) it does nothing. */
static void fault_point(const char *name, uint64_t step)
{
    const char *spec = getenv("LEJEPA_TRAIN_FAULT");
    size_t n = strlen(name);
    if (spec && strncmp(spec, name, n) == 0 && spec[n] == ':' &&
        strtoull(spec + n + 1, NULL, 10) == step)
        raise(SIGKILL);
}

/* run.keep_ckpts: deletes all but the newest step checkpoints, called once
 * the new one and `latest` are on disk. The one just written (what `latest`
 * names) and the run's final one (step == total) are never deleted. A file
 * that cannot be listed or removed is logged; the run goes on. */
static void rotate(struct train *t)
{
    int64_t keep = t->cfg.run.keep_ckpts;
    if (keep <= 0)
        return;
    char err[ERR_LEN];
    size_t n = 0;
    uint64_t *steps = ckpt_list_steps(t->rundir.dir, &n, err);
    if (!steps) {
        train_log("cannot rotate checkpoints: %s", err);
        return;
    }
    for (size_t i = (size_t)keep; i < n; i++) {
        if (steps[i] == t->prog.step || steps[i] == t->prog.total)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/ckpt-%" PRIu64 ".safetensors",
                 t->rundir.dir, steps[i]);
        if (unlink(path) != 0)
            train_log("cannot delete old checkpoint %s: %s", path,
                      strerror(errno));
        else
            train_log("deleted old checkpoint %s (run.keep_ckpts = %" PRId64
                      ")",
                      path, keep);
    }
    free(steps);
}

int train_ckpt_write(struct train *t, char *err)
{
    /* the sampler state of the next step to train */
    const struct train_slot *s = train_step_slot(&t->steps, t->prog.step);
    uint32_t epoch = s ? s->epoch : t->steps.sampler.epoch;
    uint64_t epoch_start = s ? s->epoch_start : t->steps.sampler.epoch_start;
    char step[32], total[32], ep[32], ep_start[32], seed[32], fp[32], ntr[32],
        nval[32], ncls[32];
    snprintf(step, sizeof step, "%" PRIu64, t->prog.step);
    snprintf(total, sizeof total, "%" PRIu64, t->prog.total);
    snprintf(ep, sizeof ep, "%" PRIu32, epoch);
    snprintf(ep_start, sizeof ep_start, "%" PRIu64, epoch_start);
    snprintf(seed, sizeof seed, "%" PRIu64, t->steps.sampler.seed);
    snprintf(fp, sizeof fp, "%016" PRIx64, t->data.fingerprint);
    snprintf(ntr, sizeof ntr, "%" PRIu64, t->data.n_train);
    snprintf(nval, sizeof nval, "%" PRIu64, t->data.n_val);
    snprintf(ncls, sizeof ncls, "%" PRIu32, t->data.n_classes);
    char *excluded = train_sampler_format_excluded(&t->steps.sampler);
    const char *keys[] = {
        "config",
        "run",
        "step",
        "total_steps",
        "sampler.epoch",
        "sampler.epoch_start",
        "sampler.seed",
        "sampler.excluded",
        "dataset.fingerprint",
        "dataset.n_train",
        "dataset.n_val",
        "dataset.n_classes",
    };
    const char *values[] = {
        t->config_text, t->cfg.run.name, step, total, ep,   ep_start,
        seed,           excluded,        fp,   ntr,   nval, ncls,
    };
    char name[64], path[4200], latest[4200];
    snprintf(name, sizeof name, "ckpt-%" PRIu64 ".safetensors", t->prog.step);
    snprintf(path, sizeof path, "%s/%s", t->rundir.dir, name);
    snprintf(latest, sizeof latest, "%s/latest", t->rundir.dir);
    int rc = ckpt_save(path, &t->engine.model.p, &t->engine.opt, keys, values,
                       sizeof keys / sizeof keys[0], err);
    free(excluded);
    if (rc != 0)
        return -1;
    fault_point("ckpt-before-latest", t->prog.step);
    char text[80];
    int n = snprintf(text, sizeof text, "%s\n", name);
    if (util_write_file_atomic(latest, text, (size_t)n, err) != 0)
        return -1;
    t->prog.last_ckpt_step = t->prog.step;
    t->prog.have_ckpt = true;
    train_log("checkpoint %s (step %" PRIu64 ")", path, t->prog.step);
    rotate(t);
    return 0;
}

char *train_ckpt_read_config(const char *arg, char *path, size_t path_len,
                             char *err)
{
    char note[CKPT_NOTE_LEN];
    if (ckpt_resolve(arg, path, path_len, note, err) != 0)
        return NULL;
    if (note[0])
        train_log("--resume %s: %s", arg, note);
    struct st_file f;
    if (st_open(&f, path, err) != 0)
        return NULL;
    const char *fmt = st_meta(&f, "format"), *cfg = st_meta(&f, "config");
    char *out = NULL;
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0 || !cfg || !st_meta(&f, "step"))
        errf(err,
             "%s: not a lejepa-train checkpoint (no config or step in its "
             "metadata)",
             path);
    else
        out = xstrdup(cfg);
    st_close(&f);
    return out;
}

static int meta_u64(const struct st_file *f, const char *key, int base,
                    uint64_t *out, const char *path, char *err)
{
    const char *v = st_meta(f, key);
    char *end;
    errno = 0;
    if (!v || !*v || (*out = strtoull(v, &end, base), errno != 0) || *end)
        return errf(err, "%s: metadata '%s' is missing or not a number", path,
                    key);
    return 0;
}

int train_ckpt_read_dataset(const char *path, struct train_dataset *d,
                            char *err)
{
    struct st_file f;
    if (st_open(&f, path, err) != 0)
        return -1;
    uint64_t ncls = 0;
    int rc =
        meta_u64(&f, "dataset.fingerprint", 16, &d->fingerprint, path, err);
    if (rc == 0)
        rc = meta_u64(&f, "dataset.n_train", 10, &d->n_train, path, err);
    if (rc == 0)
        rc = meta_u64(&f, "dataset.n_val", 10, &d->n_val, path, err);
    if (rc == 0)
        rc = meta_u64(&f, "dataset.n_classes", 10, &ncls, path, err);
    st_close(&f);
    if (rc != 0)
        return -1;
    d->n_classes = (uint32_t)ncls;
    d->classes = NULL;
    d->known = true;
    snprintf(d->source, sizeof d->source, "checkpoint");
    return 0;
}

int train_ckpt_restore(struct train *t, char *err)
{
    struct st_file f;
    if (ckpt_load(t->resume, &t->engine.model.p, &t->engine.opt, &f, err) != 0)
        return -1;
    uint64_t step = 0, total = 0, epoch = 0, start = 0, seed = 0;
    int rc = -1;
    if (meta_u64(&f, "step", 10, &step, t->resume, err) ||
        meta_u64(&f, "total_steps", 10, &total, t->resume, err) ||
        meta_u64(&f, "sampler.epoch", 10, &epoch, t->resume, err) ||
        meta_u64(&f, "sampler.epoch_start", 10, &start, t->resume, err) ||
        meta_u64(&f, "sampler.seed", 10, &seed, t->resume, err))
        goto cleanup;
    const char *excluded = st_meta(&f, "sampler.excluded");
    if (!excluded) {
        errf(err, "%s: metadata 'sampler.excluded' is missing", t->resume);
        goto cleanup;
    }
    if (seed != t->steps.sampler.seed || step > total || start > step ||
        epoch >= TRAIN_NOT_EXCLUDED) {
        errf(err,
             "%s: inconsistent sampler state (seed %" PRIu64 " vs the "
             "config's %" PRIu64 ", step %" PRIu64 ", total %" PRIu64 ")",
             t->resume, seed, t->steps.sampler.seed, step, total);
        goto cleanup;
    }
    if (train_sampler_parse_excluded(&t->steps.sampler, excluded, err) != 0)
        goto cleanup;
    if (train_sampler_start_epoch(&t->steps.sampler, (uint32_t)epoch, start,
                                  err) != 0)
        goto cleanup;
    /* the checkpoint may sit on an epoch boundary: nothing is in flight, so
     * the next epoch can be cut at once */
    while (step >=
           t->steps.sampler.epoch_start + t->steps.sampler.steps_in_epoch)
        if (train_sampler_start_epoch(
                &t->steps.sampler, t->steps.sampler.epoch + 1,
                t->steps.sampler.epoch_start + t->steps.sampler.steps_in_epoch,
                err) != 0)
            goto cleanup;
    /* an explicit optim.steps on the command line may lengthen the run */
    if ((uint64_t)t->cfg.optim.steps != total) {
        if ((uint64_t)t->cfg.optim.steps < step) {
            errf(err, "optim.steps = %" PRId64 " but %s is at step %" PRIu64,
                 t->cfg.optim.steps, t->resume, step);
            goto cleanup;
        }
        train_log("optim.steps = %" PRId64
                  " instead of the checkpoint's %" PRIu64
                  ": the schedule changes from here on",
                  t->cfg.optim.steps, total);
        total = (uint64_t)t->cfg.optim.steps;
    }
    if (t->cfg.optim.minutes > 0)
        train_log("optim.minutes ignored: a resumed run keeps its step count");
    t->prog.step = t->steps.next_open = step;
    t->prog.total = total;
    t->prog.total_fixed = true;
    t->prog.last_ckpt_step = step;
    t->prog.have_ckpt = true;
    rc = 0;
cleanup:
    st_close(&f);
    return rc;
}
