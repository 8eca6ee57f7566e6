/*
 * dist.h: the reductions of data-parallel training (DESIGN.md §5, "Multi-node
 * data parallel"). R processes (ranks) each run the step on their share of
 * the global batch; the few sums that cross samples (SIGReg's cos/sin sums,
 * the invariance total, BatchNorm statistics when synchronised, the probe's
 * loss, the parameter gradients) are summed in place across ranks here.
 *
 * Two implementations behind one struct: the single process (world 1, every
 * call a no-op, so callers need no special case and their numerics are
 * untouched) and MPI (dist_mpi.c, built when meson finds MPI). Nothing here
 * knows the model; lejepa.c decides what is reduced.
 *
 * Every rank must make the same calls in the same order (MPI collectives).
 */
#ifndef LEJEPA_DIST_H
#define LEJEPA_DIST_H

#include <stdbool.h>
#include <stddef.h>

/* Gradients go in buckets of this many bytes (one MPI_Allreduce each). */
#define DIST_BUCKET_BYTES (4u << 20)

struct dist {
    int rank;                /* 0 .. world - 1 */
    int world;               /* 1: the single process */
    bool mpi;                /* dist_mpi_init made it (dist_finalize ends MPI) */
    double *buf;             /* scratch for callers' packed sums */
    size_t buf_cap;          /* doubles in buf */
    double bytes_reduced;    /* bytes all-reduced since the last reset */
    void *reqs;              /* (cap_reqs) MPI_Request: non-blocking ones out */
    int n_reqs, cap_reqs;
};

/* The single process: rank 0 of 1. Never fails. */
void dist_init_single(struct dist *d);

/* Whether this build has MPI (dist_init_mpi may then be called). */
bool dist_have_mpi(void);

/* MPI_Init (with argc/argv, which may be NULL) and the rank and size of
 * MPI_COMM_WORLD; OpenMP threads are the caller's (OMP_NUM_THREADS, ideally
 * cores / ranks per node). Returns 0, or -1 with the reason in err when the
 * build has no MPI or MPI fails to start. */
int dist_init_mpi(struct dist *d, int *argc, char ***argv, char *err);

/* Frees buf and, after dist_init_mpi, calls MPI_Finalize. */
void dist_finalize(struct dist *d);

/* Grows d->buf to hold at least n doubles (start-up only: the step loop
 * only uses what was reserved before). */
void dist_reserve(struct dist *d, size_t n);

/* In-place sums across ranks: x (n) on every rank becomes the sum of all
 * ranks' x. No-ops in a world of 1. */
void dist_allreduce_float(struct dist *d, float *x, size_t n);
void dist_allreduce_double(struct dist *d, double *x, size_t n);
/* Same as dist_allreduce_float, in DIST_BUCKET_BYTES pieces (for the
 * gradient arena: bounded MPI buffers, and the first buckets travel while
 * the last are packed by the library). */
void dist_allreduce_float_buckets(struct dist *d, float *x, size_t n);

/* Starts the in-place sum of x (n floats, n < 2^30) across ranks without
 * waiting (x may not be touched until dist_wait); dist_progress lets the
 * library move the sums out; dist_wait waits for every one. */
void dist_iallreduce_float(struct dist *d, float *x, size_t n);
void dist_progress(struct dist *d);
void dist_wait(struct dist *d);

/* x (n) on every rank becomes rank 0's. */
void dist_broadcast_float(struct dist *d, float *x, size_t n);

/* x (n bytes) on every rank becomes rank 0's. */
void dist_broadcast_bytes(struct dist *d, void *x, size_t n);
/* Rank 0's x (*n bytes; the other ranks' x and *n are ignored) on every
 * rank: a malloc'd copy, NUL-terminated, its length in *n. */
void *dist_broadcast_blob(struct dist *d, const void *x, size_t *n);

/* all (world * n bytes): rank r's mine (n bytes) at all + r n, on every
 * rank. */
void dist_allgather_bytes(struct dist *d, const void *mine, void *all,
                          size_t n);

/* The world size mpirun (Open MPI, or a PMI/PMIx launcher) started this
 * process in, from its environment; 0 when not started by one. */
int dist_launched_world(void);

/* Ends every rank's process (MPI_Abort) with code; exit(code) alone in a
 * world of 1. */
void dist_abort(struct dist *d, int code) __attribute__((noreturn));

void dist_barrier(struct dist *d);

/* This rank's share of n samples: [start, start + count) with
 * start = floor(rank * n / world); counts differ by at most one when
 * world does not divide n. Returns count. */
int dist_share(const struct dist *d, int n, int *start);

#endif
