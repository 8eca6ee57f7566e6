/*
 * train_compute.c: the compute thread. It takes one full step slot at a time,
 * assembles the step (drops failed samples, keeping ticket order), hashes the
 * assembled bytes, normalises them into the engine's input, runs the LeJEPA
 * step and the online probe, checks that everything is finite and applies
 * AdamW; or, during a snapshot, one eval forward (train_eval.c), which reads
 * the weights and so runs here between steps. Meanwhile the main thread
 * serves the sockets and fills the other slots (double buffering). The
 * thread never touches a socket; it wakes the main loop through a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "train_state.h"
#include "compute.h"
#include "util.h"

/* Moves the surviving samples to the front of each view, in place (the
 * destination v*n+i never lies after the source v*B+keep[i], and later
 * sources lie after both), and hashes the assembled pixels and labels.
 * Returns the number of samples kept. */
static int assemble(struct train *t, struct train_slot *s, int *keep,
                    uint64_t *hash)
{
    const struct config_views *vw = &t->cfg.views;
    size_t B = (size_t)t->sampler.batch;
    size_t n = 0;
    for (size_t b = 0; b < B; b++)
        if (s->ok[b])
            keep[n++] = (int)b;
    uint64_t h = HASH_FNV_OFFSET;
    for (int g = 0; g < 2; g++) {
        int views = (int)(g == 0 ? vw->global_count : vw->local_count);
        size_t size = (size_t)(g == 0 ? vw->global_size : vw->local_size);
        size_t plane = (size_t)vw->channels * size * size;
        for (int v = 0; v < views; v++)
            for (size_t i = 0; i < n; i++)
                memmove(s->pixels[g] + ((size_t)v * n + i) * plane,
                        s->pixels[g] + ((size_t)v * B + (size_t)keep[i]) * plane,
                        plane);
        if (views > 0)
            h = hash_fnv1a(h, s->pixels[g], (size_t)views * n * plane);
    }
    for (size_t i = 0; i < n; i++) {
        s->labels[i] = s->labels[keep[i]];
        uint8_t le[4];
        uint32_t u = (uint32_t)s->labels[i];
        for (int k = 0; k < 4; k++)
            le[k] = (uint8_t)(u >> (8 * k));
        h = hash_fnv1a(h, le, 4);
    }
    *hash = h;
    return (int)n;
}

static void run_step(struct train *t, struct train_slot *s, double lr_factor,
                     int *keep, struct train_step_result *r)
{
    double t0 = util_time_mono();
    memset(r, 0, sizeof *r);
    r->lr_factor = lr_factor;
    r->finite = true;
    r->n = assemble(t, s, keep, &r->hash);
    if (r->n < 2) {
        r->skipped = true;
        r->seconds = util_time_mono() - t0;
        return;
    }
    struct lejepa *m = &t->model;
    lejepa_set_batch(m, r->n);
    for (int g = 0; g < m->n_groups; g++)
        lejepa_load_pixels(m, g, s->pixels[g], t->mean, t->std);
    lejepa_forward_backward(m, s->labels, s->step, &r->losses);
    if (lejepa_check_finite(m, &r->losses, s->step, r->err) != 0)
        r->finite = false;
    else
        adamw_step(&t->opt, &m->p, lr_factor);
    r->seconds = util_time_mono() - t0;
}

static void *compute_main(void *arg)
{
    struct train *t = arg;
    struct train_compute *c = &t->compute;
    /* OpenMP's thread count is per thread: set it here, not in main. */
    compute_set_threads(c->threads);
    int *keep = xmalloc((size_t)t->sampler.batch * sizeof *keep);
    CHECK(pthread_mutex_lock(&c->mu) == 0);
    for (;;) {
        while (!c->has_job && !c->quit)
            CHECK(pthread_cond_wait(&c->cv, &c->mu) == 0);
        if (c->quit)
            break;
        struct train_slot *s = c->slot;
        double lr_factor = c->lr_factor;
        bool eval = c->eval_job;
        c->has_job = false;
        CHECK(pthread_mutex_unlock(&c->mu) == 0);
        struct train_step_result r;
        if (eval)
            train_eval_forward(t);
        else
            run_step(t, s, lr_factor, keep, &r);
        CHECK(pthread_mutex_lock(&c->mu) == 0);
        if (!eval)
            c->result = r;
        c->busy = false;
        char byte = 1;
        ssize_t w;
        do
            w = write(c->wake[1], &byte, 1);
        while (w < 0 && errno == EINTR);
    }
    CHECK(pthread_mutex_unlock(&c->mu) == 0);
    free(keep);
    return NULL;
}

void train_compute_start(struct train *t)
{
    struct train_compute *c = &t->compute;
    CHECK(pthread_mutex_init(&c->mu, NULL) == 0);
    CHECK(pthread_cond_init(&c->cv, NULL) == 0);
    if (pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    c->threads = (int)t->cfg.run.threads;
    c->has_job = c->quit = c->busy = false;
    CHECK(pthread_create(&c->thread, NULL, compute_main, t) == 0);
    c->started = true;
}

void train_compute_stop(struct train *t)
{
    struct train_compute *c = &t->compute;
    if (!c->started)
        return;
    CHECK(pthread_mutex_lock(&c->mu) == 0);
    c->quit = true;
    CHECK(pthread_cond_signal(&c->cv) == 0);
    CHECK(pthread_mutex_unlock(&c->mu) == 0);
    CHECK(pthread_join(c->thread, NULL) == 0);
    close(c->wake[0]);
    close(c->wake[1]);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    c->started = false;
}

void train_compute_submit(struct train *t, struct train_slot *s, double lr_factor)
{
    struct train_compute *c = &t->compute;
    CHECK(pthread_mutex_lock(&c->mu) == 0);
    CHECK(!c->busy);
    s->computing = true;
    c->slot = s;
    c->eval_job = false;
    c->lr_factor = lr_factor;
    c->has_job = true;
    c->busy = true;
    CHECK(pthread_cond_signal(&c->cv) == 0);
    CHECK(pthread_mutex_unlock(&c->mu) == 0);
}

void train_compute_submit_eval(struct train *t)
{
    struct train_compute *c = &t->compute;
    CHECK(pthread_mutex_lock(&c->mu) == 0);
    CHECK(!c->busy);
    c->slot = NULL;
    c->eval_job = true;
    c->has_job = true;
    c->busy = true;
    CHECK(pthread_cond_signal(&c->cv) == 0);
    CHECK(pthread_mutex_unlock(&c->mu) == 0);
}

bool train_compute_poll_done(struct train *t)
{
    struct train_compute *c = &t->compute;
    char buf[16];
    while (read(c->wake[0], buf, sizeof buf) > 0)
        ;
    CHECK(pthread_mutex_lock(&c->mu) == 0);
    bool done = !c->busy;
    CHECK(pthread_mutex_unlock(&c->mu) == 0);
    return done;
}
