/*
 * dist.c: the cross-rank sums of data-parallel training (see dist.h). With
 * LEJEPA_HAVE_MPI (meson found MPI) the calls go to MPI_COMM_WORLD; a world
 * of 1 returns before touching MPI, so the single process never needs it.
 * Nothing here knows what the arrays mean.
 */
#include "dist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef LEJEPA_HAVE_MPI
#include <mpi.h>
#endif

#include "util.h"

void dist_init_single(struct dist *d)
{
    memset(d, 0, sizeof *d);
    d->world = 1;
}

bool dist_have_mpi(void)
{
#ifdef LEJEPA_HAVE_MPI
    return true;
#else
    return false;
#endif
}

int dist_init_mpi(struct dist *d, int *argc, char ***argv, char *err)
{
    dist_init_single(d);
#ifdef LEJEPA_HAVE_MPI
    int up = 0, provided = MPI_THREAD_SINGLE;
    MPI_Initialized(&up);
    /* SERIALIZED: the trainer calls MPI from its compute thread as well as
     * from main, never from both at once (train_engine.h) */
    if (!up &&
        MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) !=
            MPI_SUCCESS)
        return errf(err, "MPI_Init failed (run under mpirun?)");
    if (up)
        MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_SERIALIZED)
        return errf(err,
                    "this MPI library offers thread level %d, the "
                    "trainer needs MPI_THREAD_SERIALIZED",
                    provided);
    /* Errors abort the job (MPI's default): a rank cannot leave a
     * collective alone without hanging the others. */
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    d->mpi = true;
    return 0;
#else
    (void)argc;
    (void)argv;
    return errf(err,
                "this build has no MPI (install libopenmpi-dev and "
                "reconfigure: meson finds it by itself)");
#endif
}

void dist_finalize(struct dist *d)
{
    free(d->buf);
    free(d->reqs);
#ifdef LEJEPA_HAVE_MPI
    if (d->mpi)
        MPI_Finalize();
#endif
    memset(d, 0, sizeof *d);
}

void dist_reserve(struct dist *d, size_t n)
{
    if (n <= d->buf_cap)
        return;
    d->buf = xrealloc(d->buf, n * sizeof *d->buf);
    d->buf_cap = n;
}

#ifdef LEJEPA_HAVE_MPI
/* MPI counts are int: large arrays go in pieces. */
#define DIST_MAX_COUNT (1 << 30)

static void allreduce(struct dist *d, void *x, size_t n, size_t elem,
                      MPI_Datatype type, size_t piece)
{
    char *p = x;
    d->bytes_reduced += (double)n * elem;
    while (n > 0) {
        size_t k = n < piece ? n : piece;
        CHECK(MPI_Allreduce(MPI_IN_PLACE, p, (int)k, type, MPI_SUM,
                            MPI_COMM_WORLD) == MPI_SUCCESS);
        p += k * elem;
        n -= k;
    }
}
#endif

void dist_allreduce_float(struct dist *d, float *x, size_t n)
{
    if (d->world == 1 || n == 0)
        return;
#ifdef LEJEPA_HAVE_MPI
    allreduce(d, x, n, sizeof *x, MPI_FLOAT, DIST_MAX_COUNT);
#else
    (void)x;
#endif
}

void dist_allreduce_double(struct dist *d, double *x, size_t n)
{
    if (d->world == 1 || n == 0)
        return;
#ifdef LEJEPA_HAVE_MPI
    allreduce(d, x, n, sizeof *x, MPI_DOUBLE, DIST_MAX_COUNT);
#else
    (void)x;
#endif
}

void dist_iallreduce_float(struct dist *d, float *x, size_t n)
{
    if (d->world == 1 || n == 0)
        return;
#ifdef LEJEPA_HAVE_MPI
    CHECK(n < DIST_MAX_COUNT);
    if (d->n_reqs == d->cap_reqs) {
        d->cap_reqs = d->cap_reqs ? 2 * d->cap_reqs : 64;
        d->reqs = xrealloc(d->reqs, (size_t)d->cap_reqs * sizeof(MPI_Request));
    }
    MPI_Request *r = (MPI_Request *)d->reqs + d->n_reqs++;
    d->bytes_reduced += (double)n * sizeof *x;
    CHECK(MPI_Iallreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM,
                         MPI_COMM_WORLD, r) == MPI_SUCCESS);
#else
    (void)x;
#endif
}

void dist_progress(struct dist *d)
{
#ifdef LEJEPA_HAVE_MPI
    int done = 0;
    if (d->n_reqs > 0)
        CHECK(MPI_Testall(d->n_reqs, d->reqs, &done, MPI_STATUSES_IGNORE) ==
              MPI_SUCCESS);
#else
    (void)d;
#endif
}

void dist_wait(struct dist *d)
{
#ifdef LEJEPA_HAVE_MPI
    if (d->n_reqs > 0)
        CHECK(MPI_Waitall(d->n_reqs, d->reqs, MPI_STATUSES_IGNORE) ==
              MPI_SUCCESS);
#endif
    d->n_reqs = 0;
}

void dist_allreduce_float_buckets(struct dist *d, float *x, size_t n)
{
    if (d->world == 1 || n == 0)
        return;
#ifdef LEJEPA_HAVE_MPI
    allreduce(d, x, n, sizeof *x, MPI_FLOAT, DIST_BUCKET_BYTES / sizeof *x);
#else
    (void)x;
#endif
}

void dist_broadcast_float(struct dist *d, float *x, size_t n)
{
    dist_broadcast_bytes(d, x, n * sizeof *x);
}

void dist_broadcast_bytes(struct dist *d, void *x, size_t n)
{
    if (d->world == 1 || n == 0)
        return;
#ifdef LEJEPA_HAVE_MPI
    char *p = x;
    while (n > 0) {
        size_t k = n < DIST_MAX_COUNT ? n : DIST_MAX_COUNT;
        CHECK(MPI_Bcast(p, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD) == MPI_SUCCESS);
        p += k;
        n -= k;
    }
#else
    (void)x;
#endif
}

void *dist_broadcast_blob(struct dist *d, const void *x, size_t *n)
{
    uint64_t len = *n;
    dist_broadcast_bytes(d, &len, sizeof len);
    char *out = xmalloc(len + 1);
    if (d->rank == 0 && len)
        memcpy(out, x, len);
    dist_broadcast_bytes(d, out, len);
    out[len] = '\0';
    *n = (size_t)len;
    return out;
}

void dist_allgather_bytes(struct dist *d, const void *mine, void *all, size_t n)
{
    if (d->world == 1) {
        memcpy(all, mine, n);
        return;
    }
#ifdef LEJEPA_HAVE_MPI
    CHECK(n < DIST_MAX_COUNT);
    CHECK(MPI_Allgather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE,
                        MPI_COMM_WORLD) == MPI_SUCCESS);
#endif
}

int dist_launched_world(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE",
                                       "PMI_SIZE", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            long w = strtol(v, NULL, 10);
            return w > 0 && w < 1 << 20 ? (int)w : 0;
        }
    }
    return 0;
}

void dist_abort(struct dist *d, int code)
{
#ifdef LEJEPA_HAVE_MPI
    if (d->mpi && d->world > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)d;
    exit(code);
}

void dist_barrier(struct dist *d)
{
    if (d->world == 1)
        return;
#ifdef LEJEPA_HAVE_MPI
    CHECK(MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS);
#endif
}

int dist_share(const struct dist *d, int n, int *start)
{
    long s = (long)d->rank * n / d->world;
    long e = (long)(d->rank + 1) * n / d->world;
    if (start)
        *start = (int)s;
    return (int)(e - s);
}
