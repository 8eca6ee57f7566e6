/*
 * sweep_stat.h: the statistics of the sweep's selection report: ranks with
 * ties given their average rank, and Spearman's rank correlation (Pearson's
 * correlation of those ranks, as scipy.stats.spearmanr computes it). Pure
 * functions on arrays; no files, no config.
 */
#ifndef LEJEPA_SWEEP_STAT_H
#define LEJEPA_SWEEP_STAT_H

#include <stddef.h>

/* Ranks 1..n of x[0..n) into rank; tied values share the mean of the ranks
 * they span (x = {3, 1, 3} gives {2.5, 1, 2.5}). Values must be finite. */
void sweep_ranks(const double *x, size_t n, double *rank);

/* Spearman's rho of the pairs (x[i], y[i]), i < n, ties as average ranks.
 * NaN when n < 2 or when either side is constant (rho is undefined; SciPy
 * returns nan there too). Values must be finite. */
double sweep_spearman(const double *x, const double *y, size_t n);

#endif
