/*
 * sigreg.h: SIGReg, the sliced Epps-Pulley statistic that pushes one view's
 * projections Z (N, K) towards an isotropic Gaussian (DESIGN.md §5), with its
 * gradient. It follows the official implementation (integration on [0, t_max]
 * with doubled trapezoid weights), not the paper's Algorithm 1 listing
 * (linspace(-5, 5, 17), plain trapz).
 *
 * Math, for directions A (K, M) and knots t_k = k * t_max / (T - 1):
 *   X = Z A,  C_mk = mean_n cos(t_k X_nm),  S_mk = mean_n sin(t_k X_nm)
 *   stat_m = N * sum_k W_k [(C_mk - phi_k)^2 + S_mk^2],  SIGReg = mean_m stat_m
 *   dSIGReg/dX_nm = (2/M) sum_k W_k t_k [S_mk cos(t_k X_nm)
 *                                        - (C_mk - phi_k) sin(t_k X_nm)]
 *
 * Debiased (grid.debias, config loss.sigreg_debias): C^2 + S^2 =
 * (1/N^2) sum_{i,j} cos(t (x_i - x_j)) holds N diagonal terms equal to 1, so
 * E[stat] of an exact N(0, 1) sample is sum_k W_k (1 - phi_k^2) (1.05246 on
 * the default grid: the "bias floor"), not 0. Dropping them gives the
 * U-statistic (N (C^2 + S^2) - 1) / (N - 1), unbiased for |phi_X(t)|^2; C is
 * already unbiased for Re phi_X(t), so
 *   stat_m = N * sum_k W_k [(N (C^2 + S^2) - 1)/(N - 1) - 2 C phi_k + phi_k^2]
 * has expectation N * sum_k W_k |phi_X(t_k) - phi_k|^2: 0 for a Gaussian
 * (single slices may go negative). With r = N / (N - 1) the gradient is the
 * biased one with S -> r S and C - phi -> r C - phi:
 *   dSIGReg/dX_nm = (2/M) sum_k W_k t_k [r S cos(t_k X_nm)
 *                                        - (r C - phi_k) sin(t_k X_nm)]
 * It needs N >= 2 (the global N under data parallelism).
 *
 * The step is split so that data-parallel training only inserts one
 * all-reduce: sigreg_sums() gives per-slice SUMS of cos and sin over this
 * rank's samples; sum them (and N) across ranks, then sigreg_statistic() and
 * sigreg_backward_x() take the global sums and the global N. Each rank then
 * back-propagates its own samples; the resulting dZ contributions are summed
 * across ranks, not averaged.
 *
 * The fused kernels never materialise an (N, M, T) tensor: cos/sin of all
 * knots follow from one sincos(dt * x) by the angle-addition recurrence. They
 * parallelise with OpenMP over slices; the two GEMMs (OpenBLAS) are called
 * outside any parallel region. Nothing here allocates: callers size buffers
 * with sigreg_scratch_size() at start-up.
 *
 * Backward functions ACCUMULATE (+=) into dZ; zero it before the step.
 */
#ifndef LEJEPA_SIGREG_H
#define LEJEPA_SIGREG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGREG_DEFAULT_SLICES 1024
#define SIGREG_DEFAULT_KNOTS 17
#define SIGREG_DEFAULT_T_MAX 3.0
#define SIGREG_MAX_KNOTS 65

/* The directions of global step s come from the rng stream
 * (run seed, s, SIGREG_RNG_STREAM, 0). The tag ("SIGREG" in ASCII) sits where
 * the loaders' streams (seed, epoch, sample, view) carry a sample index,
 * which never gets near 2^62, so the streams cannot collide. */
#define SIGREG_RNG_STREAM 0x5349475245470000ull

/* The quadrature: knots, target characteristic function and weights. */
struct sigreg_grid {
    int knots;                        /* T >= 2 */
    double t_max;
    double dt;                        /* t_max / (T - 1) */
    double t[SIGREG_MAX_KNOTS];       /* t_k = k * dt */
    double phi[SIGREG_MAX_KNOTS];     /* exp(-t_k^2 / 2), the N(0,1) CF */
    double weight[SIGREG_MAX_KNOTS];  /* W_k = w_k * phi_k, w = 2 dt inside,
                                         dt at both ends */
    bool debias;                      /* the U-statistic form (above); the
                                         grid's users follow it */
};

/* Fills the grid (debias false: set it after); returns 0, or -1 with the reason in err (ERR_LEN) when
 * knots is outside [2, SIGREG_MAX_KNOTS] or t_max is not a positive finite
 * number. (The official code asserts an odd knot count; any count works.) */
int sigreg_grid_init(struct sigreg_grid *g, int knots, double t_max,
                     char *err);

/* Directions for one global step: a (K, M) row-major, standard normal, the
 * i-th normal of the stream going to element i, then every column scaled to
 * unit L2 norm. Same (seed, step) gives the same A in any process. */
void sigreg_directions(float *a, uint64_t seed, uint64_t step, int k_dim,
                       int slices);

/* Scales every column of a (K, M) to unit L2 norm; an all-zero column
 * becomes the unit vector e_(m mod K). */
void sigreg_normalize_columns(float *a, int k_dim, int slices);

/* ---- the split step (data-parallel ready) ---- */

/* x (N, M) = z (N, K) @ a (K, M). One sgemm. */
void sigreg_project(float *x, const float *z, const float *a, int n,
                    int k_dim, int slices);

/* Per-slice sums over this rank's samples (overwritten):
 * cos_sum (M, T) = sum_n cos(t_k x_nm), sin_sum (M, T) = sum_n sin(t_k x_nm).
 * x (N, M). Accurate to about 2e-6 * N for |t_max * x| up to ~30; beyond
 * ~1e5 radians float arguments carry no phase information anyway. */
void sigreg_sums(double *cos_sum, double *sin_sum, const float *x,
                 const struct sigreg_grid *g, int n, int slices);

/* SIGReg from global sums over n_total samples; writes stat (M) per slice
 * when stat is not NULL and returns their mean. */
double sigreg_statistic(double *stat, const double *cos_sum,
                        const double *sin_sum, const struct sigreg_grid *g,
                        long n_total, int slices);

/* dx (N, M) = dloss * dSIGReg/dx for this rank's n samples (overwritten),
 * given the global sums over n_total samples and the saved x (N, M). */
void sigreg_backward_x(float *dx, float dloss, const float *x,
                       const double *cos_sum, const double *sin_sum,
                       const struct sigreg_grid *g, long n_total, int n,
                       int slices);

/* dz (N, K) += dx (N, M) @ a^T. One sgemm. */
void sigreg_backward_z(float *dz, const float *dx, const float *a, int n,
                       int k_dim, int slices);

/* ---- one view on one process ---- */

/* What the forward saves for the backward, carved from one caller block. */
struct sigreg_scratch {
    float *x;          /* (N, M) projections */
    float *dx;         /* (N, M) their gradient */
    double *cos_sum;   /* (M, T) */
    double *sin_sum;   /* (M, T) */
    int n_cap;         /* rows the buffers hold */
    int n;             /* rows the last forward saw */
};

/* Bytes for one view's scratch (64-byte aligned pieces). */
size_t sigreg_scratch_size(int n, int slices, int knots);

/* Points s into mem (sigreg_scratch_size bytes, 64-byte aligned; the
 * caller owns and frees mem). */
void sigreg_scratch_init(struct sigreg_scratch *s, void *mem, int n,
                         int slices, int knots);

/* SIGReg of z (N, K) under directions a (K, M); per-slice values into stat
 * (M) when not NULL. Keeps x and the sums in s for sigreg_backward: use one
 * scratch per view when all forwards run before the backwards. */
double sigreg_forward(double *stat, struct sigreg_scratch *s, const float *z,
                      const float *a, const struct sigreg_grid *g, int n,
                      int k_dim, int slices);

/* dz (N, K) += dloss * dSIGReg/dz, from what sigreg_forward kept in s. */
void sigreg_backward(float *dz, struct sigreg_scratch *s, float dloss,
                     const float *a, const struct sigreg_grid *g, int k_dim,
                     int slices);

/* ---- plain references (double, explicit cos/sin per (n, m, k)) ---- */

/* Same as sigreg_forward in double; stat (M) may be NULL. */
double sigreg_forward_ref(double *stat, const double *z, const double *a,
                          const struct sigreg_grid *g, int n, int k_dim,
                          int slices);

/* dz (N, K) += dloss * dSIGReg/dz in double. */
void sigreg_backward_ref(double *dz, double dloss, const double *z,
                         const double *a, const struct sigreg_grid *g, int n,
                         int k_dim, int slices);

/* Calls from outside the kernels go through the run-time table. */
#include "nn_isa.h"

#endif
