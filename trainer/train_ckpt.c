/*
 * train_ckpt.c: checkpoints of a run and resuming from them (DESIGN.md §8).
 * runs/<name>/ckpt-<step>.safetensors holds the model, the AdamW state and,
 * as metadata, the run's config, the step, the total step count, the dataset
 * identity and the sampler state (epoch, its first step, seed, excluded
 * samples with the epoch they failed in); `latest` names the newest file.
 * Both are written atomically; older step checkpoints beyond run.keep_ckpts
 * are deleted after that. Tickets in flight are not saved: a resumed
 * run issues them again, so it trains the same next batch.
 * A periodic checkpoint is a copy of all that, taken between two steps and
 * written by the writer thread (train_ckpt_writer.c) while the next steps
 * train; the final one is written here, on the main thread.
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
 * names a point of the checkpoint of step STEP. Unset (always, outside
 * that test) nothing happens. */
static bool fault_due(const char *name, uint64_t step)
{
    const char *spec = getenv("LEJEPA_TRAIN_FAULT");
    size_t n = strlen(name);
    return spec && strncmp(spec, name, n) == 0 && spec[n] == ':' &&
        strtoull(spec + n + 1, NULL, 10) == step;
}

/* Kills the process with SIGKILL at that point, as a power loss would. */
static void fault_point(const char *name, uint64_t step)
{
    if (fault_due(name, step))
        raise(SIGKILL);
}

/* The longest a held write (fault_hold) waits for its release. */
#define TRAIN_FAULT_HOLD_S 60

/* Holds the write there until the run directory has a file named
 * `release`, so a test sees what goes on meanwhile. */
static void fault_hold(const char *name, uint64_t step, const char *dir)
{
    if (!fault_due(name, step))
        return;
    char path[4200];
    snprintf(path, sizeof path, "%s/release", dir);
    struct stat st;
    for (int i = 0; i < TRAIN_FAULT_HOLD_S * 100 && stat(path, &st) != 0; i++)
        usleep(10000);
}

/* run.keep_ckpts: deletes all but the newest step checkpoints, called once
 * the new one and `latest` are on disk. The one just written (what `latest`
 * names) and the run's final one (step == total) are never deleted. A file
 * that cannot be listed or removed is logged; the run goes on. */
static void rotate(const struct train_ckpt_job *j)
{
    if (j->keep <= 0)
        return;
    char err[ERR_LEN];
    size_t n = 0;
    uint64_t *steps = ckpt_list_steps(j->dir, &n, err);
    if (!steps) {
        train_log("cannot rotate checkpoints: %s", err);
        return;
    }
    for (size_t i = (size_t)j->keep; i < n; i++) {
        if (steps[i] == j->step || steps[i] == j->total)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/ckpt-%" PRIu64 ".safetensors", j->dir,
                 steps[i]);
        if (unlink(path) != 0)
            train_log("cannot delete old checkpoint %s: %s", path,
                      strerror(errno));
        else
            train_log("deleted old checkpoint %s (run.keep_ckpts = %" PRId64
                      ")",
                      path, j->keep);
    }
    free(steps);
}

static const char *const meta_keys[TRAIN_CKPT_META_N] = {
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

static char *format_u64(const char *fmt, uint64_t v)
{
    char s[32];
    snprintf(s, sizeof s, fmt, v);
    return xstrdup(s);
}

/* What the checkpoint of t->prog.step holds, the arenas the model's; the
 * caller clears j. */
static void job_fill(struct train *t, struct train_ckpt_job *j)
{
    /* the sampler state of the next step to train */
    const struct train_slot *s = train_step_slot(&t->steps, t->prog.step);
    uint32_t epoch = s ? s->epoch : t->steps.sampler.epoch;
    uint64_t epoch_start = s ? s->epoch_start : t->steps.sampler.epoch_start;
    *j = (struct train_ckpt_job){
        .p = t->engine.model.p,
        .opt = t->engine.opt,
        .step = t->prog.step,
        .total = t->prog.total,
        .keep = t->cfg.run.keep_ckpts,
        .dir = xstrdup(t->rundir.dir),
        .values =
            {
                xstrdup(t->config_text),
                xstrdup(t->cfg.run.name),
                format_u64("%" PRIu64, t->prog.step),
                format_u64("%" PRIu64, t->prog.total),
                format_u64("%" PRIu64, epoch),
                format_u64("%" PRIu64, epoch_start),
                format_u64("%" PRIu64, t->steps.sampler.seed),
                train_sampler_format_excluded(&t->steps.sampler),
                format_u64("%016" PRIx64, t->data.fingerprint),
                format_u64("%" PRIu64, t->data.n_train),
                format_u64("%" PRIu64, t->data.n_val),
                format_u64("%" PRIu64, t->data.n_classes),
            },
    };
}

void train_ckpt_job_clear(struct train_ckpt_job *j)
{
    free(j->dir);
    for (int i = 0; i < TRAIN_CKPT_META_N; i++)
        free(j->values[i]);
    memset(j, 0, sizeof *j);
}

int train_ckpt_job_write(const struct train_ckpt_job *j, char *err)
{
    char name[64], path[4200], latest[4200];
    snprintf(name, sizeof name, "ckpt-%" PRIu64 ".safetensors", j->step);
    snprintf(path, sizeof path, "%s/%s", j->dir, name);
    snprintf(latest, sizeof latest, "%s/latest", j->dir);
    fault_hold("ckpt-hold", j->step, j->dir);
    if (ckpt_save(path, &j->p, &j->opt, meta_keys,
                  (const char *const *)j->values, TRAIN_CKPT_META_N, err) != 0)
        return -1;
    fault_point("ckpt-before-latest", j->step);
    char text[80];
    int n = snprintf(text, sizeof text, "%s\n", name);
    if (util_write_file_atomic(latest, text, (size_t)n, err) != 0)
        return -1;
    train_log("checkpoint %s (step %" PRIu64 ")", path, j->step);
    rotate(j);
    return 0;
}

/* The outcome of the write that was out, into t->prog (a written one is
 * the last good checkpoint from now on). */
int train_ckpt_collect(struct train *t, bool wait, char *err)
{
    uint64_t step = 0;
    int rc = train_ckpt_writer_collect(&t->ckpt, wait, &step, err);
    if (rc == 1) {
        t->prog.last_ckpt_step = step;
        t->prog.have_ckpt = true;
    }
    return rc < 0 ? -1 : 0;
}

int train_ckpt_begin(struct train *t, char *err)
{
    if (train_ckpt_collect(t, true, err) != 0)
        return -1;
    struct train_ckpt_job j;
    job_fill(t, &j);
    const struct params *p = &t->engine.model.p;
    struct train_ckpt_writer *w = &t->ckpt;
    size_t n = p->learn.total * sizeof(float);
    memcpy(w->data, p->data, n);
    memcpy(w->m, p->m, n);
    memcpy(w->v, p->v, n);
    memcpy(w->state_data, p->state_data, p->state.total * sizeof(float));
    j.p.data = w->data;
    j.p.m = w->m;
    j.p.v = w->v;
    j.p.state_data = w->state_data;
    j.p.grad = NULL;
    train_ckpt_writer_submit(w, &j);
    return 0;
}

int train_ckpt_write(struct train *t, char *err)
{
    if (train_ckpt_collect(t, true, err) != 0)
        return -1;
    struct train_ckpt_job j;
    job_fill(t, &j);
    int rc = train_ckpt_job_write(&j, err);
    train_ckpt_job_clear(&j);
    if (rc != 0)
        return -1;
    t->prog.last_ckpt_step = t->prog.step;
    t->prog.have_ckpt = true;
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
