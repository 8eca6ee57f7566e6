/*
 * test_train_util.c: process and metrics helpers of test_train.c (see
 * test_train_util.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "test_train_util.h"
#include "testing.h"
#include "util.h"

const char *const train_tiny_config[] = {
    "model.depths=1,1", "model.widths=8,16", "model.projector=32,16",
    "views.global_size=16", "views.local_size=8", "views.local_count=2",
    "optim.batch=8", "run.ticket_size=4", "loss.slices=16", "run.log_every=1",
    "run.threads=1", "run.seed=7", NULL,
};

void env_init(struct env *e)
{
    e->dir = testing_tmpdir();
    snprintf(e->work, sizeof e->work, "ipc://%s/work", e->dir);
    snprintf(e->bcast, sizeof e->bcast, "ipc://%s/bcast", e->dir);
    const char *root = getenv("LEJEPA_BUILD_ROOT");
    CU_ASSERT_FATAL(root != NULL);
    snprintf(e->trainer, sizeof e->trainer, "%s/trainer/lejepa-train", root);
    snprintf(e->loader, sizeof e->loader, "%s/tests/fake_loader", root);
}

void env_free(struct env *e)
{
    testing_rmtree(e->dir);
    free(e->dir);
}

/* argv[0..n) then extra (NULL-ended; argv has room), output in DIR/NAME.out. */
static pid_t spawn_named(const struct env *e, const char *name, char **argv, int n,
                         const char *const *extra)
{
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    char log[4200];
    snprintf(log, sizeof log, "%s/%s.out", e->dir, name);
    return testing_spawn(log, false, argv);
}

/* Starts the trainer: name, then extra arguments (NULL-terminated). */
pid_t start_trainer(const struct env *e, const char *name, const char *const *extra)
{
    char *argv[128];
    int n = 0;
    static char sets[4][700];
    int ns = 0;
    argv[n++] = (char *)e->trainer;
    argv[n++] = "--out";
    argv[n++] = e->dir;
    argv[n++] = "--name";
    argv[n++] = (char *)name;
    for (int i = 0; train_tiny_config[i]; i++) {
        argv[n++] = "--set";
        argv[n++] = (char *)train_tiny_config[i];
    }
    snprintf(sets[ns], sizeof sets[0], "run.endpoint=%s", e->work);
    argv[n++] = "--set";
    argv[n++] = sets[ns++];
    snprintf(sets[ns], sizeof sets[0], "run.broadcast=%s", e->bcast);
    argv[n++] = "--set";
    argv[n++] = sets[ns++];
    return spawn_named(e, name, argv, n, extra);
}

pid_t start_loader(const struct env *e, const char *name, const char *const *extra)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)e->loader;
    argv[n++] = "--connect";
    argv[n++] = (char *)e->work;
    argv[n++] = "--name";
    argv[n++] = (char *)name;
    return spawn_named(e, name, argv, n, extra);
}

char *read_text(const struct env *e, const char *rel)
{
    char path[4200], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", e->dir, rel);
    char *s = util_read_file(path, NULL, err);
    return s ? s : xstrdup("");
}

int file_exists(const struct env *e, const char *rel)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", e->dir, rel);
    return stat(path, &st) == 0;
}

double json_number(const struct json *o, const char *key)
{
    const struct json *v = json_get(o, key);
    return v && v->type == JSON_NUMBER ? v->number : NAN;
}

int metrics_each(const char *path, const char *source,
                 void (*fn)(const struct json *line, void *ctx), void *ctx)
{
    char err[ERR_LEN];
    char *text = util_read_file(path, NULL, err);
    if (!text)
        return 0;
    int n = 0;
    for (char *p = text, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl)
            break;
        struct json *j = json_parse(p, (size_t)(nl - p), 8, err);
        CU_ASSERT(j != NULL);
        if (!j)
            continue;
        const struct json *src = json_get(j, "source");
        if (src && src->type == JSON_STRING && strcmp(src->string, source) == 0) {
            n++;
            fn(j, ctx);
        }
        json_free(j);
    }
    free(text);
    return n;
}

struct lines_ctx {
    struct line *out;
    int n;
};

static void add_line(const struct json *j, void *ctx)
{
    struct lines_ctx *c = ctx;
    if (c->n >= MAX_LINES)
        return;
    struct line *l = &c->out[c->n++];
    l->step = (uint64_t)json_number(j, "step");
    l->epoch = (uint64_t)json_number(j, "epoch");
    l->loss = json_number(j, "loss");
    l->samples = json_number(j, "samples");
    l->failures = json_number(j, "failures");
    l->bad = json_number(j, "bad_messages");
    const struct json *h = json_get(j, "batch_hash");
    snprintf(l->hash, sizeof l->hash, "%s", h && h->type == JSON_STRING ? h->string : "");
}

/* The source=train lines of runs' metrics.jsonl. */
int read_lines(const struct env *e, const char *name, struct line *out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", e->dir, name);
    struct lines_ctx c = {out, 0};
    metrics_each(path, "train", add_line, &c);
    return c.n;
}

int wait_text(const struct env *e, const char *rel, const char *needle,
              double timeout)
{
    double t0 = util_time_mono();
    for (;;) {
        char *text = read_text(e, rel);
        int found = strstr(text, needle) != NULL;
        free(text);
        if (found)
            return 1;
        if (util_time_mono() - t0 > timeout)
            return 0;
        usleep(5000);
    }
}

/* Waits until the run has at least n train lines. */
int wait_lines(const struct env *e, const char *name, int n, double timeout)
{
    struct line *l = xcalloc(MAX_LINES, sizeof *l);
    double t0 = util_time_mono();
    int got = 0;
    while ((got = read_lines(e, name, l)) < n && util_time_mono() - t0 < timeout)
        usleep(20000);
    free(l);
    return got >= n;
}

void check_same(const struct line *a, int na, const struct line *b, int nb,
                       uint64_t from_step)
{
    int compared = 0;
    for (int i = 0; i < na; i++) {
        if (a[i].step < from_step)
            continue;
        for (int k = 0; k < nb; k++)
            if (b[k].step == a[i].step) {
                CU_ASSERT_STRING_EQUAL(a[i].hash, b[k].hash);
                CU_ASSERT_EQUAL(a[i].loss, b[k].loss);
                compared++;
            }
    }
    CU_ASSERT(compared >= 3);
}

/* A full run: trainer and `loaders` fake loaders; returns the train lines. */
int plain_run(const struct env *e, const char *name, int loaders,
                     const char *steps, const char *const *loader_args,
                     const char *const *extra, struct line *out)
{
    const char *args[32] = {"--steps", steps};
    int n = 2;
    for (int i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    /* loaders once the sockets are bound, so they all join within a few
     * milliseconds of each other */
    pid_t tr = start_trainer(e, name, args);
    char rel[300];
    snprintf(rel, sizeof rel, "%s/log", name);
    wait_text(e, rel, "work endpoint", 20);
    pid_t ld[4];
    for (int i = 0; i < loaders; i++) {
        char lname[64];
        snprintf(lname, sizeof lname, "%s-loader%d", name, i);
        ld[i] = start_loader(e, lname, loader_args);
    }
    CU_ASSERT_EQUAL(testing_wait_exit(tr, RUN_TIMEOUT_S), 0);
    for (int i = 0; i < loaders; i++)
        CU_ASSERT_EQUAL(testing_wait_exit(ld[i], 10), 0);
    return read_lines(e, name, out);
}
