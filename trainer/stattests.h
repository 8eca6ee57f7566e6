/*
 * stattests.h: classical one-sample normality statistics of one slice (the
 * projections of N embeddings on one unit direction), for lejepa-stat's
 * --tests: the paper (arXiv 2511.08544, §4) compares SIGReg's Epps-Pulley
 * with these on sliced projections. Plain double-precision functions, no
 * allocation, no threads; the caller sorts where a function asks for
 * sorted values and runs slices in parallel.
 *
 * Conventions (tools/ref_stattests.py checks them against SciPy):
 *  - Anderson-Darling, Cramer-von Mises and Watson test against the fixed
 *    N(0, 1), without standardising the values first, because SIGReg's
 *    target is N(0, I), scale included. They equal
 *    scipy.stats.goodness_of_fit(norm, data, known_params={'loc': 0,
 *    'scale': 1}, statistic='ad').statistic, scipy.stats.cramervonmises(x,
 *    'norm').statistic and U^2 = W^2 - n (mean F(x) - 1/2)^2.
 *  - Jarque-Bera and the moments standardise by the sample's own mean and
 *    spread (as scipy.stats.jarque_bera and scipy.stats.describe): they see
 *    the shape only.
 */
#ifndef LEJEPA_STATTESTS_H
#define LEJEPA_STATTESTS_H

#include <stdint.h>

/* log of the N(0, 1) CDF, accurate in both tails (scipy's log_ndtr). */
double stattest_norm_logcdf(double x);

/* A^2 = -n - sum_i (2i-1)/n [log F(x_(i)) + log(1 - F(x_(n+1-i)))];
 * sorted (n) ascending, n >= 1. */
double stattest_anderson_darling(const double *sorted, int64_t n);

/* W^2 = 1/(12n) + sum_i ((2i-1)/(2n) - F(x_(i)))^2; sorted (n) ascending. */
double stattest_cramer_von_mises(const double *sorted, int64_t n);

/* Watson's U^2 = W^2 - n (mean_i F(x_i) - 1/2)^2: W^2 made invariant to
 * where the circle of F values starts. sorted (n) ascending. */
double stattest_watson(const double *sorted, int64_t n);

/* mean, variance with ddof 1, biased skewness m3 / m2^1.5 and biased excess
 * kurtosis m4 / m2^2 - 3 (central moments m_j with divisor n), as
 * scipy.stats.describe; skewness and kurtosis are NaN when m2 is 0 and the
 * variance is NaN when n = 1. x (n), any order, n >= 1. */
struct stattest_moments {
    double mean, variance, skewness, kurtosis;
};
void stattest_moments(struct stattest_moments *out, const double *x,
                      int64_t n);

/* JB = n/6 (skewness^2 + kurtosis^2 / 4) from the biased moments above
 * (NaN when the values are all equal). x (n), any order. */
double stattest_jarque_bera(const double *x, int64_t n);

#endif
