/*
 * train_dist.c: lejepa-train on several ranks (train_dist.h): start-up
 * agreement (config, endpoints, dataset, checkpoint), the claims and
 * outcome of each step's exchange on the main thread's side, and rank 0's
 * choice of rank for each new loader.
 */
#include "train_dist.h"

#include <errno.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train.h"
#include "util.h"

void train_dist_start(struct train_dist *td, int *argc, char ***argv)
{
    memset(td, 0, sizeof *td);
    int world = dist_launched_world();
    if (world <= 1) {
        dist_init_single(&td->d);
        return;
    }
    char err[ERR_LEN];
    if (!dist_have_mpi())
        die("started by mpirun with %d ranks, but this lejepa-train was built "
            "without MPI: install libopenmpi-dev (tools/setup.sh) and rebuild",
            world);
    if (dist_init_mpi(&td->d, argc, argv, err) != 0)
        die("%s", err);
    td->on = td->d.world > 1;
    if (!td->on)
        return;
    char tag[64];
    snprintf(tag, sizeof tag, "lejepa-train[rank %d/%d]", td->d.rank,
             td->d.world);
    train_log_set_tag(tag);
    train_xchg_init(&td->x, &td->d);
    td->loaders = xcalloc((size_t)td->d.world, sizeof *td->loaders);
}

int train_dist_threads(const struct train_dist *td, int threads)
{
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long ranks = local ? strtol(local, NULL, 10) : 0;
    if (threads > 0 || !td->on || ranks <= 1)
        return threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long each = cores / ranks;
    return each > 0 ? (int)each : 1;
}

void train_dist_finish(struct train_dist *td)
{
    train_xchg_free(&td->x);
    free(td->endpoints);
    free(td->loaders);
    dist_finalize(&td->d);
}

/* Rank r's work endpoint from rank 0's: tcp://HOST:PORT+2r (HOST: the
 * rank's --bind, else rank 0's), ipc://PATH.rankR; advertised with a
 * wildcard host replaced by this machine's name. */
static void rank_endpoint(struct train_dist *td, const char *ep0,
                          const char *bind_addr)
{
    int r = td->d.rank;
    if (r == 0) { /* rank 0 binds run.endpoint itself */
        snprintf(td->bind, sizeof td->bind, "%s", ep0);
        snprintf(td->advertise, sizeof td->advertise, "%s", ep0);
        return;
    }
    if (strncmp(ep0, "ipc://", 6) == 0) {
        snprintf(td->bind, sizeof td->bind, "%s.rank%d", ep0, r);
        snprintf(td->advertise, sizeof td->advertise, "%s", td->bind);
        return;
    }
    const char *colon = strrchr(ep0, ':');
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (strncmp(ep0, "tcp://", 6) != 0 || port <= 0 || port + 2L * r > 65535)
        die("run.endpoint %s: a data-parallel run derives each rank's "
            "endpoint from a tcp://HOST:PORT or ipc:// endpoint (port + 2 "
            "rank must stay below 65536)",
            ep0);
    char host[TRAIN_DIST_ENDPOINT_LEN];
    if (bind_addr)
        snprintf(host, sizeof host, "%s", bind_addr);
    else
        snprintf(host, sizeof host, "%.*s", (int)(colon - ep0 - 6), ep0 + 6);
    snprintf(td->bind, sizeof td->bind, "tcp://%.200s:%ld", host,
             port + 2L * r);
    if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0 ||
        strcmp(host, "[::]") == 0) {
        char name[200] = "localhost";
        gethostname(name, sizeof name - 1);
        snprintf(host, sizeof host, "%s", name);
    }
    snprintf(td->advertise, sizeof td->advertise, "tcp://%.200s:%ld", host,
             port + 2L * r);
}

void train_dist_sync_config(struct train *t, const char *bind_addr)
{
    struct train_dist *td = &t->dist;
    if (!td->on)
        return;
    size_t n = strlen(t->config_text);
    char *text = dist_broadcast_blob(&td->d, t->config_text, &n);
    char err[ERR_LEN];
    if (!train_dist_root(td)) {
        config_defaults(&t->cfg);
        if (config_load_string(&t->cfg, text, "rank 0's config", err) != 0 ||
            config_validate(&t->cfg, err) != 0)
            die("%s", err);
    }
    free(text);
    if (t->cfg.optim.batch < td->d.world)
        die("optim.batch = %" PRId64 " is smaller than the %d ranks: every "
            "rank needs at least one sample of each step",
            t->cfg.optim.batch, td->d.world);
    rank_endpoint(td, t->cfg.run.endpoint, bind_addr);
    if (strlen(td->bind) >= sizeof t->cfg.run.endpoint)
        die("rank %d's work endpoint %s is longer than run.endpoint may be "
            "(%zu characters)",
            td->d.rank, td->bind, sizeof t->cfg.run.endpoint - 1);
    if (!train_dist_root(td)) {
        /* rank 0 alone snapshots, checkpoints and writes the run */
        memcpy(t->cfg.run.endpoint, td->bind, strlen(td->bind) + 1);
        t->cfg.eval.every = -1;
        t->cfg.eval.wait_evaluators = 0;
        t->cfg.run.ckpt_every = 0;
        free(t->config_text);
        t->config_text = config_to_string(&t->cfg);
    }
}

void train_dist_gather_endpoints(struct train *t)
{
    struct train_dist *td = &t->dist;
    if (!td->on)
        return;
    td->endpoints = xcalloc((size_t)td->d.world, TRAIN_DIST_ENDPOINT_LEN);
    dist_allgather_bytes(&td->d, td->advertise, td->endpoints,
                         TRAIN_DIST_ENDPOINT_LEN);
    if (train_dist_root(td))
        for (int r = 1; r < td->d.world; r++)
            train_log("rank %d serves loaders at %s", r,
                      td->endpoints + (size_t)r * TRAIN_DIST_ENDPOINT_LEN);
}

void train_dist_sync_dataset(struct train *t)
{
    struct train_dist *td = &t->dist;
    if (!td->on)
        return;
    struct train_dataset *d = &t->data;
    char *text = NULL;
    size_t n = 0;
    if (train_dist_root(td)) {
        /* class names may be unknown yet (a checkpoint's dataset): the
         * first loader's then fill them in on every rank */
        uint32_t names = d->classes ? d->n_classes : 0;
        size_t cap = 256;
        for (uint32_t i = 0; i < names; i++)
            cap += strlen(d->classes[i]) + 1;
        text = xmalloc(cap);
        n = (size_t)snprintf(
            text, cap,
            "%016" PRIx64 " %" PRIu64 " %" PRIu64 " %" PRIu32 " %" PRIu32 "\n",
            d->fingerprint, d->n_train, d->n_val, d->n_classes, names);
        for (uint32_t i = 0; i < names; i++)
            n += (size_t)snprintf(text + n, cap - n, "%s\n", d->classes[i]);
    }
    char *got = dist_broadcast_blob(&td->d, text, &n);
    free(text);
    if (!train_dist_root(td)) {
        train_dataset_free(d);
        memset(d, 0, sizeof *d);
        char *line = strchr(got, '\n');
        uint32_t names = 0;
        if (!line ||
            sscanf(got,
                   "%" SCNx64 " %" SCNu64 " %" SCNu64 " %" SCNu32 " %" SCNu32,
                   &d->fingerprint, &d->n_train, &d->n_val, &d->n_classes,
                   &names) != 5 ||
            (names != 0 && names != d->n_classes))
            die("rank 0's dataset description is malformed");
        if (names)
            d->classes = xcalloc(names, sizeof *d->classes);
        for (uint32_t i = 0; i < names; i++) {
            char *name = line + 1;
            line = strchr(name, '\n');
            if (!line)
                die("rank 0's dataset description is malformed");
            *line = '\0';
            d->classes[i] = xstrdup(name);
        }
        d->known = true;
        snprintf(d->source, sizeof d->source, "rank 0");
    }
    free(got);
}

void train_dist_sync_resume(struct train *t)
{
    struct train_dist *td = &t->dist;
    if (!td->on)
        return;
    char err[ERR_LEN];
    char *bytes = NULL;
    size_t n = 0;
    if (train_dist_root(td) && t->resume[0] &&
        !(bytes = util_read_file(t->resume, &n, err)))
        die("%s", err);
    char *got = dist_broadcast_blob(&td->d, bytes, &n);
    free(bytes);
    if (!train_dist_root(td) && n > 0) {
        /* the checkpoint is on rank 0's disk: a private copy to restore
         * from, removed once restored (train_dist_attach) */
        const char *tmp = getenv("TMPDIR");
        snprintf(t->resume, sizeof t->resume, "%s/lejepa-resume-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        int fd = mkstemp(t->resume);
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        bool ok = f && fwrite(got, 1, n, f) == n;
        if (f)
            ok = fclose(f) == 0 && ok;
        if (!ok)
            die("%s: cannot write rank 0's checkpoint: %s", t->resume,
                strerror(errno));
    }
    free(got);
}

void train_dist_attach(struct train *t)
{
    struct train_dist *td = &t->dist;
    if (!td->on)
        return;
    if (!train_dist_root(td) && t->resume[0])
        unlink(t->resume);
    lejepa_set_dist(&t->engine.model, &td->d);
    train_step_set_dist(&t->steps, &td->d);
    int start;
    int share = dist_share(&td->d, (int)t->cfg.optim.batch, &start);
    train_log("data parallel: rank %d of %d (pid %ld) fills positions "
              "%d..%d of each batch of %" PRId64 " at %s",
              td->d.rank, td->d.world, (long)getpid(), start, start + share - 1,
              t->cfg.optim.batch, td->advertise);
}

void train_dist_claims(struct train *t, bool end, double lr_factor,
                       double probe_factor)
{
    struct train_xchg *x = &t->dist.x;
    x->end = end;
    x->fatal = end && t->ctl.fatal[0];
    x->loaders = train_net_count(&t->net, MSG_ROLE_LOADER);
    x->total = (double)t->prog.total;
    x->total_fixed = t->prog.total_fixed;
    x->lr_factor = lr_factor;
    x->probe_factor = probe_factor;
}

void train_dist_apply(struct train *t)
{
    struct train_dist *td = &t->dist;
    struct train_xchg *x = &td->x;
    struct train_sampler *sm = &t->steps.sampler;
    uint64_t fresh = 0;
    for (size_t i = 0; i < x->all.n; i++)
        if (x->all.index[i] < sm->n_train)
            fresh += (uint64_t)train_sampler_exclude(sm, x->all.index[i],
                                                     x->all.epoch[i]);
    if (fresh)
        train_log("%" PRIu64 " sample(s) excluded by other ranks' loaders "
                  "(%" PRIu64 " excluded in all)",
                  fresh, sm->n_failed);
    for (int r = 0; r < td->d.world; r++)
        td->loaders[r] = x->rank_loaders[r];
    if (x->any_end) {
        td->over = true;
        if (x->any_fatal && !x->fatal && !t->ctl.fatal[0]) {
            snprintf(t->ctl.fatal, sizeof t->ctl.fatal,
                     "another rank stopped with an error (its own lines say "
                     "which)");
            t->ctl.fatal_code = 1;
        }
    }
}

/* Seconds the compute thread has been in an exchange, 0 when not in one. */
static double exchange_wait(const struct train_dist *td)
{
    double since = atomic_load(&td->x.waiting_since);
    return since > 0 ? util_time_mono() - since : 0;
}

int train_dist_assign(struct train *t)
{
    struct train_dist *td = &t->dist;
    if (!td->on || !td->endpoints)
        return 0;
    td->loaders[0] = train_net_count(&t->net, MSG_ROLE_LOADER);
    if (exchange_wait(td) > TRAIN_DIST_STARVED_S && td->loaders[0] > 0) {
        /* the other ranks' counts are as old as the last exchange, and
         * some rank keeps the next one waiting: most likely one without
         * loaders (its loader restarted, or went to rank 0), which rank 0
         * cannot tell apart from here; the ranks > 0 get new loaders in
         * turn until the exchange goes through */
        td->starved_turn = td->starved_turn % (td->d.world - 1) + 1;
        if (train_log_thin(++td->starved_sent))
            train_log("the ranks' exchange has waited %.0f s: a rank may have "
                      "no loaders (start at least %d); this loader goes to "
                      "rank %d",
                      exchange_wait(td), td->d.world, td->starved_turn);
        return td->starved_turn;
    }
    int best = 0;
    for (int r = 1; r < td->d.world; r++)
        if (td->loaders[r] < td->loaders[best])
            best = r;
    return best;
}

void train_dist_rebalance(struct train *t)
{
    struct train_dist *td = &t->dist;
    const double now = util_time_mono();
    if (!td->on || !train_dist_root(td) ||
        exchange_wait(td) <= TRAIN_DIST_STARVED_S ||
        now - td->moved_at < TRAIN_DIST_STARVED_S ||
        train_net_count(&t->net, MSG_ROLE_LOADER) < 2)
        return;
    struct train_client *pick = NULL;
    for (int i = 0; i < t->net.n_clients; i++) {
        struct train_client *c = t->net.clients[i];
        if (c->role == MSG_ROLE_LOADER && !c->drop[0] &&
            (!pick || c->joined_at > pick->joined_at))
            pick = c;
    }
    if (!pick)
        return;
    td->moved_at = now;
    train_log("the ranks' exchange has waited %.0f s (a rank without "
              "loaders?): %s leaves rank 0, to be sent to another rank",
              exchange_wait(td), pick->name);
    train_net_send_text(&t->net, pick->id, pick->id_len, MSG_KIND_BYE,
                        "rank 0 moves this loader to another rank");
    train_hub_remove(t, pick, "moved to another rank");
}

const char *train_dist_endpoint(const struct train_dist *td, int rank)
{
    return td->endpoints + (size_t)rank * TRAIN_DIST_ENDPOINT_LEN;
}

void train_dist_assigned(struct train_dist *td, int rank)
{
    td->loaders[rank]++;
}
