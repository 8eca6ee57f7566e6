/*
 * eval_worker.c: the scoring thread of eval_worker.h. It touches no socket:
 * results go back through the mutex-protected queue and a byte on a pipe.
 * OpenMP's thread count is per thread, so the worker sets its own.
 */
#include "eval_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "compute.h"
#include "util.h"

static void push_results(struct eval_worker *w, const struct eval_result *r, int n)
{
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < n; i++) {
        if (w->n_results == EVAL_WORKER_RESULTS) {
            eval_log("result queue full: dropping the oldest result");
            memmove(w->results, w->results + 1,
                    (EVAL_WORKER_RESULTS - 1) * sizeof w->results[0]);
            w->n_results--;
        }
        w->results[w->n_results++] = r[i];
    }
    pthread_mutex_unlock(&w->mu);
    char b = 1;
    if (write(w->wake[1], &b, 1) < 0 && errno != EAGAIN)
        eval_log("wake pipe: %s", strerror(errno));
}

static void run_snapshot(struct eval_worker *w, struct eval_snapshot *s)
{
    struct eval_result r[EVAL_EMBED_RESULTS];
    char err[ERR_LEN];
    const struct eval_rows *tr = &s->split[MSG_SPLIT_TRAIN], *va = &s->split[MSG_SPLIT_VAL];
    eval_log("scoring snapshot %llu at step %llu (%lld train, %lld val rows, dim %u)",
             (unsigned long long)s->id, (unsigned long long)s->step, (long long)tr->n,
             (long long)va->n, s->dim);
    int n = eval_tasks_embed(tr->emb, tr->labels, tr->n, va->emb, va->labels, va->n,
                             (int)s->dim, w->tasks, w->fewshot, s->step, r, err);
    if (n < 0)
        eval_log("snapshot %llu at step %llu not scored: %s", (unsigned long long)s->id,
                 (unsigned long long)s->step, err);
    else
        push_results(w, r, n);
}

static void run_featmap(struct eval_worker *w, struct eval_featmap *f, const char *dir)
{
    struct eval_result r;
    char err[ERR_LEN];
    int n = eval_tasks_segmap(f, dir, &r, err);
    if (n < 0)
        eval_log("segmap of step %llu failed: %s", (unsigned long long)f->step, err);
    else
        push_results(w, &r, n);
}

static void *worker_main(void *arg)
{
    struct eval_worker *w = arg;
    compute_set_threads(w->threads);
    char dir[sizeof w->featmap_dir];
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && !w->snap && !w->featmap)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop)
            break;
        struct eval_snapshot *s = w->snap;
        struct eval_featmap *f = s ? NULL : w->featmap;
        if (s)
            w->snap = NULL;
        else
            w->featmap = NULL;
        memcpy(dir, w->featmap_dir, sizeof dir);
        w->busy = true;
        pthread_mutex_unlock(&w->mu);
        if (s)
            run_snapshot(w, s);
        else
            run_featmap(w, f, dir);
        eval_snapshot_free(s);
        eval_featmap_free(f);
        pthread_mutex_lock(&w->mu);
        w->busy = false;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void eval_worker_start(struct eval_worker *w, unsigned tasks,
                       const struct fewshot_options *fewshot, int threads)
{
    memset(w, 0, sizeof *w);
    w->tasks = tasks;
    w->fewshot = fewshot;
    w->threads = threads;
    if (pipe2(w->wake, O_NONBLOCK | O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    if (pthread_mutex_init(&w->mu, NULL) != 0 || pthread_cond_init(&w->cv, NULL) != 0)
        die("pthread mutex/cond init failed");
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        die("pthread_create: %s", strerror(rc));
}

void eval_worker_stop(struct eval_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    eval_snapshot_free(w->snap);
    eval_featmap_free(w->featmap);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    close(w->wake[0]);
    close(w->wake[1]);
}

bool eval_worker_busy(struct eval_worker *w)
{
    pthread_mutex_lock(&w->mu);
    bool busy = w->busy || w->snap || w->featmap;
    pthread_mutex_unlock(&w->mu);
    return busy;
}

void eval_worker_submit_snapshot(struct eval_worker *w, struct eval_snapshot *s)
{
    pthread_mutex_lock(&w->mu);
    if (w->snap) {
        eval_log("snapshot %llu at step %llu skipped: still scoring an earlier one",
                 (unsigned long long)w->snap->id, (unsigned long long)w->snap->step);
        eval_snapshot_free(w->snap);
    }
    w->snap = s;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void eval_worker_submit_featmap(struct eval_worker *w, struct eval_featmap *f,
                                const char *dir)
{
    pthread_mutex_lock(&w->mu);
    if (w->featmap) {
        eval_log("FEATMAP of step %llu skipped: still busy with an earlier job",
                 (unsigned long long)w->featmap->step);
        eval_featmap_free(w->featmap);
    }
    w->featmap = f;
    snprintf(w->featmap_dir, sizeof w->featmap_dir, "%s", dir);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int eval_worker_take_results(struct eval_worker *w, struct eval_result *out, int cap)
{
    char buf[64];
    while (read(w->wake[0], buf, sizeof buf) > 0)
        continue;
    pthread_mutex_lock(&w->mu);
    int n = w->n_results < cap ? w->n_results : cap;
    memcpy(out, w->results, (size_t)n * sizeof *out);
    memmove(w->results, w->results + n, (size_t)(w->n_results - n) * sizeof *out);
    w->n_results -= n;
    pthread_mutex_unlock(&w->mu);
    return n;
}
