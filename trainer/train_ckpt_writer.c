/*
 * train_ckpt_writer.c: the checkpoint writer thread (train_ckpt.h). It
 * runs one job at a time, train_ckpt_job_write, on the copy the main
 * thread handed it, and keeps the outcome until the main thread takes it.
 * The mutex orders the hand-over both ways: the main thread fills the copy
 * only while no job is out, the thread reads it only while one is.
 */
#include <string.h>

#include "train_ckpt.h"

static void *writer_main(void *arg)
{
    struct train_ckpt_writer *w = arg;
    CHECK(pthread_mutex_lock(&w->mu) == 0);
    for (;;) {
        while (!w->has_job && !w->quit)
            CHECK(pthread_cond_wait(&w->cv, &w->mu) == 0);
        if (w->quit)
            break;
        w->has_job = false;
        CHECK(pthread_mutex_unlock(&w->mu) == 0);
        char err[ERR_LEN] = "";
        int rc = train_ckpt_job_write(&w->job, err);
        CHECK(pthread_mutex_lock(&w->mu) == 0);
        w->rc = rc;
        memcpy(w->err, err, sizeof err);
        w->done = true;
        w->busy = false;
        CHECK(pthread_cond_broadcast(&w->cv) == 0);
    }
    CHECK(pthread_mutex_unlock(&w->mu) == 0);
    return NULL;
}

void train_ckpt_writer_start(struct train_ckpt_writer *w,
                             const struct params *p)
{
    memset(w, 0, sizeof *w);
    size_t n = p->learn.total * sizeof(float);
    w->data = xmalloc_aligned(n);
    w->m = xmalloc_aligned(n);
    w->v = xmalloc_aligned(n);
    w->state_data = xmalloc_aligned(p->state.total * sizeof(float));
    CHECK(pthread_mutex_init(&w->mu, NULL) == 0);
    CHECK(pthread_cond_init(&w->cv, NULL) == 0);
    CHECK(pthread_create(&w->thread, NULL, writer_main, w) == 0);
    w->started = true;
}

void train_ckpt_writer_stop(struct train_ckpt_writer *w)
{
    if (!w->started)
        return;
    CHECK(pthread_mutex_lock(&w->mu) == 0);
    while (w->busy)
        CHECK(pthread_cond_wait(&w->cv, &w->mu) == 0);
    w->quit = true;
    CHECK(pthread_cond_broadcast(&w->cv) == 0);
    CHECK(pthread_mutex_unlock(&w->mu) == 0);
    CHECK(pthread_join(w->thread, NULL) == 0);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    train_ckpt_job_clear(&w->job);
    util_free_aligned(w->data);
    util_free_aligned(w->m);
    util_free_aligned(w->v);
    util_free_aligned(w->state_data);
    memset(w, 0, sizeof *w);
}

void train_ckpt_writer_submit(struct train_ckpt_writer *w,
                              const struct train_ckpt_job *j)
{
    CHECK(w->started);
    CHECK(pthread_mutex_lock(&w->mu) == 0);
    CHECK(!w->busy && !w->done);
    train_ckpt_job_clear(&w->job);
    w->job = *j;
    w->has_job = true;
    w->busy = true;
    CHECK(pthread_cond_broadcast(&w->cv) == 0);
    CHECK(pthread_mutex_unlock(&w->mu) == 0);
}

int train_ckpt_writer_collect(struct train_ckpt_writer *w, bool wait,
                              uint64_t *step, char *err)
{
    if (!w->started)
        return 0;
    CHECK(pthread_mutex_lock(&w->mu) == 0);
    while (wait && w->busy)
        CHECK(pthread_cond_wait(&w->cv, &w->mu) == 0);
    int out = 0;
    if (w->done) {
        w->done = false;
        *step = w->job.step;
        out = w->rc == 0 ? 1 : -1;
        if (out < 0)
            errf(err, "%s", w->err);
    }
    CHECK(pthread_mutex_unlock(&w->mu) == 0);
    return out;
}
