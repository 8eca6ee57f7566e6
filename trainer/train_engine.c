/*
 * train_engine.c: the model, the optimizer and the compute thread
 * (train_engine.h).
 */
#include "train_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "compute.h"
#include "config.h"
#include "model_config.h"
#include "params.h"
#include "util.h"

void train_engine_build(struct train_engine *e, const struct config *c,
                        uint32_t n_classes)
{
    char err[ERR_LEN];
    struct lejepa_config lc;
    if (model_config_resolve(&lc, c, train_probe_classes(n_classes), err) != 0)
        die("%s", err);
    if (lejepa_init(&e->model, &lc, err) != 0)
        die("%s", err);
    adamw_init(&e->opt, c->optim.beta1, c->optim.beta2, c->optim.eps);
    e->opt.group[PARAMS_GROUP_ENCODER] =
        (struct adamw_group){c->optim.lr, c->optim.weight_decay};
    e->opt.group[PARAMS_GROUP_PROBE] =
        (struct adamw_group){c->optim.probe_lr, c->optim.probe_weight_decay};
    for (int ch = 0; ch < c->views.mean.n; ch++) {
        e->mean[ch] = (float)c->views.mean.v[ch];
        e->std[ch] = (float)c->views.std.v[ch];
    }
    e->threads = (int)c->run.threads;
}

static void *worker_main(void *arg)
{
    struct train_engine *e = arg;
    /* OpenMP's thread count is per thread: set it here, not in main. */
    compute_set_threads(e->threads);
    CHECK(pthread_mutex_lock(&e->mu) == 0);
    for (;;) {
        while (!e->has_job && !e->quit)
            CHECK(pthread_cond_wait(&e->cv, &e->mu) == 0);
        if (e->quit)
            break;
        train_job_fn fn = e->job_fn;
        void *job = e->job;
        e->has_job = false;
        CHECK(pthread_mutex_unlock(&e->mu) == 0);
        fn(e, job);
        CHECK(pthread_mutex_lock(&e->mu) == 0);
        e->busy = false;
        char byte = 1;
        ssize_t w;
        do
            w = write(e->wake[1], &byte, 1);
        while (w < 0 && errno == EINTR);
    }
    CHECK(pthread_mutex_unlock(&e->mu) == 0);
    return NULL;
}

void train_engine_start(struct train_engine *e)
{
    CHECK(pthread_mutex_init(&e->mu, NULL) == 0);
    CHECK(pthread_cond_init(&e->cv, NULL) == 0);
    if (pipe2(e->wake, O_NONBLOCK | O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    e->has_job = e->quit = e->busy = false;
    CHECK(pthread_create(&e->thread, NULL, worker_main, e) == 0);
    e->started = true;
}

void train_engine_stop(struct train_engine *e)
{
    if (!e->started)
        return;
    CHECK(pthread_mutex_lock(&e->mu) == 0);
    e->quit = true;
    CHECK(pthread_cond_signal(&e->cv) == 0);
    CHECK(pthread_mutex_unlock(&e->mu) == 0);
    CHECK(pthread_join(e->thread, NULL) == 0);
    close(e->wake[0]);
    close(e->wake[1]);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    e->started = false;
}

void train_engine_free(struct train_engine *e)
{
    train_engine_stop(e);
    lejepa_free(&e->model);
}

void train_engine_submit(struct train_engine *e, train_job_fn fn, void *job)
{
    CHECK(pthread_mutex_lock(&e->mu) == 0);
    CHECK(!e->busy);
    e->job_fn = fn;
    e->job = job;
    e->has_job = true;
    e->busy = true;
    CHECK(pthread_cond_signal(&e->cv) == 0);
    CHECK(pthread_mutex_unlock(&e->mu) == 0);
}

bool train_engine_idle(struct train_engine *e)
{
    char buf[16];
    while (read(e->wake[0], buf, sizeof buf) > 0)
        ;
    CHECK(pthread_mutex_lock(&e->mu) == 0);
    bool idle = !e->busy;
    CHECK(pthread_mutex_unlock(&e->mu) == 0);
    return idle;
}

int train_engine_wake_fd(const struct train_engine *e)
{
    return e->started ? e->wake[0] : -1;
}
