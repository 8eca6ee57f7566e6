/*
 * stattests.c: one-sample normality statistics of one slice (see
 * stattests.h for the definitions and the SciPy functions they match).
 * Sums run in double in index order; nothing here allocates or threads.
 */
#include "stattests.h"

#include <math.h>

#define STATTEST_SQRT1_2 0.70710678118654752440
#define STATTEST_LOG_SQRT_2PI 0.91893853320467274178
/* Below this, erfc(-x / sqrt 2) heads for underflow (it does at x ~ -38):
 * the asymptotic series takes over, as in scipy's log_ndtr. */
#define STATTEST_LOGCDF_SERIES_BELOW (-20.0)

/* N(0, 1) CDF; erfc keeps relative accuracy in the lower tail. */
static double norm_cdf(double x)
{
    return 0.5 * erfc(-x * STATTEST_SQRT1_2);
}

double stattest_norm_logcdf(double x)
{
    if (x > 0)
        return log1p(-0.5 * erfc(x * STATTEST_SQRT1_2));
    if (x >= STATTEST_LOGCDF_SERIES_BELOW)
        return log(norm_cdf(x));
    /* Phi(x) = phi(x)/(-x) * (1 - 1/x^2 + 3/x^4 - 15/x^6 + ...); at
     * |x| >= 20 the terms shrink by at least 1/8 per step up to k = 12,
     * and 12 terms leave an error far below double rounding. */
    double r = 1.0 / (x * x), term = 1.0, series = 1.0;
    for (int k = 1; k <= 12; k++) {
        term *= -(2.0 * k - 1.0) * r;
        series += term;
    }
    return -0.5 * x * x - log(-x) - STATTEST_LOG_SQRT_2PI + log(series);
}

double stattest_anderson_darling(const double *sorted, int64_t n)
{
    double s = 0.0;
    /* log(1 - F(x)) = log F(-x): the upper tail keeps its precision. */
    for (int64_t i = 0; i < n; i++)
        s += (2.0 * (double)i + 1.0) / (double)n *
             (stattest_norm_logcdf(sorted[i]) +
              stattest_norm_logcdf(-sorted[n - 1 - i]));
    return -(double)n - s;
}

double stattest_cramer_von_mises(const double *sorted, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (2.0 * (double)i + 1.0) / (2.0 * (double)n) -
                   norm_cdf(sorted[i]);
        s += d * d;
    }
    return 1.0 / (12.0 * (double)n) + s;
}

double stattest_watson(const double *sorted, int64_t n)
{
    double f = 0.0;
    for (int64_t i = 0; i < n; i++)
        f += norm_cdf(sorted[i]);
    double d = f / (double)n - 0.5;
    return stattest_cramer_von_mises(sorted, n) - (double)n * d * d;
}

void stattest_moments(struct stattest_moments *out, const double *x,
                      int64_t n)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += x[i];
    double mean = sum / (double)n;
    double m2 = 0.0, m3 = 0.0, m4 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - mean, d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
    }
    out->mean = mean;
    out->variance = n > 1 ? m2 / (double)(n - 1) : NAN;
    m2 /= (double)n;
    m3 /= (double)n;
    m4 /= (double)n;
    out->skewness = m2 > 0 ? m3 / (m2 * sqrt(m2)) : NAN;
    out->kurtosis = m2 > 0 ? m4 / (m2 * m2) - 3.0 : NAN;
}

double stattest_jarque_bera(const double *x, int64_t n)
{
    struct stattest_moments m;
    stattest_moments(&m, x, n);
    return (double)n / 6.0 *
           (m.skewness * m.skewness + 0.25 * m.kurtosis * m.kurtosis);
}
