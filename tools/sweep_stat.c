/*
 * sweep_stat.c: average ranks and Spearman's rho (sweep_stat.h). The ranks
 * come from an index sort, O(n log n); a sweep has tens of runs, but the
 * function must not care.
 */
#include "sweep_stat.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

static const double *sort_keys;   /* qsort has no context argument */

static int by_value(const void *a, const void *b)
{
    double x = sort_keys[*(const size_t *)a], y = sort_keys[*(const size_t *)b];
    if (x < y)
        return -1;
    if (x > y)
        return 1;
    /* equal values: keep index order, so the result does not depend on qsort */
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    return (i > j) - (i < j);
}

void sweep_ranks(const double *x, size_t n, double *rank)
{
    size_t *idx = xmalloc((n ? n : 1) * sizeof *idx);
    for (size_t i = 0; i < n; i++) {
        CHECK(isfinite(x[i]));
        idx[i] = i;
    }
    sort_keys = x;
    qsort(idx, n, sizeof *idx, by_value);
    sort_keys = NULL;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && x[idx[j]] == x[idx[i]])
            j++;
        /* positions i..j-1 hold ranks i+1..j: their mean */
        double r = 0.5 * (double)(i + 1 + j);
        for (size_t k = i; k < j; k++)
            rank[idx[k]] = r;
        i = j;
    }
    free(idx);
}

double sweep_spearman(const double *x, const double *y, size_t n)
{
    if (n < 2)
        return NAN;
    double *rx = xmalloc(2 * n * sizeof *rx), *ry = rx + n;
    sweep_ranks(x, n, rx);
    sweep_ranks(y, n, ry);
    /* every rank vector has mean (n + 1) / 2 */
    const double mean = 0.5 * (double)(n + 1);
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double dx = rx[i] - mean, dy = ry[i] - mean;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    free(rx);
    if (sxx == 0 || syy == 0)
        return NAN;
    return sxy / sqrt(sxx * syy);
}
