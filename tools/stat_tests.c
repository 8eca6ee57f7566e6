/*
 * stat_tests.c: lejepa-stat --tests (see stat_tests.h). Slices are handled
 * a block at a time: the block's projections, one contiguous row of N
 * doubles per slice, are computed, tested unsorted (moments, Jarque-Bera),
 * sorted in place and tested again (Anderson-Darling, Cramer-von Mises,
 * Watson). OpenMP over the slices of a block; each writes only its own row.
 */
#include "stat_tests.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "stattests.h"
#include "util.h"

#define STAT_TESTS_BLOCK 64   /* slices projected at once: 64 N doubles */

static const char *const test_names[STAT_TEST_COUNT] = {
    "ad", "cvm", "watson", "jb", "moments",
};
static const char *const row_names[STAT_ROW_COUNT] = {
    "ad", "cvm", "watson", "jb", "mean", "variance", "skewness", "kurtosis",
};
static const char *const row_titles[STAT_ROW_COUNT] = {
    "Anderson-Darling A^2 vs N(0,1)", "Cramer-von Mises W^2 vs N(0,1)",
    "Watson U^2 vs N(0,1)", "Jarque-Bera", "mean", "variance (ddof 1)",
    "skewness", "excess kurtosis",
};

/* The test each row belongs to. */
static enum stat_test row_test(int row)
{
    return row < STAT_ROW_MEAN ? (enum stat_test)row : STAT_TEST_MOMENTS;
}

unsigned stat_tests_parse(const char *list)
{
    if (strcmp(list, "all") == 0)
        return (1u << STAT_TEST_COUNT) - 1;
    unsigned mask = 0;
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int t = 0; t < STAT_TEST_COUNT; t++)
            if (strlen(test_names[t]) == len &&
                strncmp(p, test_names[t], len) == 0)
                found = t;
        if (found < 0)
            die("--tests %s: unknown test '%.*s'; want a comma list of ad, "
                "cvm, watson, jb, moments (or all)", list, (int)len, p);
        mask |= 1u << found;
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    return mask;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* All the asked-for rows of slice m from its projections x (n), which it
 * sorts in place. */
static void test_slice(struct stat_tests *r, int m, double *x, int64_t n)
{
    if (r->mask & (1u << STAT_TEST_MOMENTS)) {
        struct stattest_moments mo;
        stattest_moments(&mo, x, n);
        r->row[STAT_ROW_MEAN][m] = mo.mean;
        r->row[STAT_ROW_VARIANCE][m] = mo.variance;
        r->row[STAT_ROW_SKEWNESS][m] = mo.skewness;
        r->row[STAT_ROW_KURTOSIS][m] = mo.kurtosis;
    }
    if (r->mask & (1u << STAT_TEST_JB))
        r->row[STAT_ROW_JB][m] = stattest_jarque_bera(x, n);
    if (!(r->mask & ((1u << STAT_TEST_AD) | (1u << STAT_TEST_CVM) |
                     (1u << STAT_TEST_WATSON))))
        return;
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    if (r->mask & (1u << STAT_TEST_AD))
        r->row[STAT_ROW_AD][m] = stattest_anderson_darling(x, n);
    if (r->mask & (1u << STAT_TEST_CVM))
        r->row[STAT_ROW_CVM][m] = stattest_cramer_von_mises(x, n);
    if (r->mask & (1u << STAT_TEST_WATSON))
        r->row[STAT_ROW_WATSON][m] = stattest_watson(x, n);
}

void stat_tests_compute(struct stat_tests *r, unsigned mask, const float *z,
                        const double *a, int64_t n, int k_dim, int slices)
{
    memset(r, 0, sizeof *r);
    r->mask = mask;
    r->slices = slices;
    for (int row = 0; row < STAT_ROW_COUNT; row++)
        if (mask & (1u << row_test(row)))
            r->row[row] = xcalloc((size_t)slices, sizeof(double));
    int block = slices < STAT_TESTS_BLOCK ? slices : STAT_TESTS_BLOCK;
    double *x = xmalloc((size_t)block * (size_t)n * sizeof *x);
    double *ab = xmalloc((size_t)block * (size_t)k_dim * sizeof *ab);
    for (int m0 = 0; m0 < slices; m0 += block) {
        int w = slices - m0 < block ? slices - m0 : block;
        /* The block's directions as rows, so each dot product walks two
         * contiguous vectors. */
        for (int j = 0; j < w; j++)
            for (int k = 0; k < k_dim; k++)
                ab[(size_t)j * k_dim + k] = a[(size_t)k * slices + m0 + j];
#pragma omp parallel for schedule(dynamic)
        for (int j = 0; j < w; j++) {
            double *xj = x + (size_t)j * (size_t)n;
            const double *aj = ab + (size_t)j * k_dim;
            for (int64_t i = 0; i < n; i++) {
                const float *zi = z + (size_t)i * (size_t)k_dim;
                double v = 0.0;
                for (int k = 0; k < k_dim; k++)
                    v += (double)zi[k] * aj[k];
                xj[i] = v;
            }
            test_slice(r, m0 + j, xj, n);
        }
    }
    free(x);
    free(ab);
}

void stat_tests_free(struct stat_tests *r)
{
    for (int row = 0; row < STAT_ROW_COUNT; row++)
        free(r->row[row]);
    memset(r, 0, sizeof *r);
}

static void print_number(FILE *out, double v)
{
    if (isfinite(v))
        fprintf(out, "%.17g", v);
    else
        fputs("null", out);
}

/* Mean over slices; NaN when any slice is NaN (all-equal projections). */
static double row_mean(const double *v, int slices)
{
    double s = 0.0;
    for (int m = 0; m < slices; m++)
        s += v[m];
    return s / slices;
}

static void print_row_json(FILE *out, const struct stat_tests *r, int row)
{
    fprintf(out, "{\"mean\": ");
    print_number(out, row_mean(r->row[row], r->slices));
    fprintf(out, ", \"per_slice\": [");
    for (int m = 0; m < r->slices; m++) {
        if (m)
            fputs(", ", out);
        print_number(out, r->row[row][m]);
    }
    fputs("]}", out);
}

void stat_tests_print_json(FILE *out, const struct stat_tests *r)
{
    fputs("\"tests\": {", out);
    int first = 1;
    for (int row = 0; row < STAT_ROW_MEAN; row++) {
        if (!r->row[row])
            continue;
        fprintf(out, "%s\"%s\": ", first ? "" : ", ", row_names[row]);
        print_row_json(out, r, row);
        first = 0;
    }
    if (r->mask & (1u << STAT_TEST_MOMENTS)) {
        fprintf(out, "%s\"moments\": {", first ? "" : ", ");
        for (int row = STAT_ROW_MEAN; row < STAT_ROW_COUNT; row++) {
            fprintf(out, "%s\"%s\": ", row == STAT_ROW_MEAN ? "" : ", ",
                    row_names[row]);
            print_row_json(out, r, row);
        }
        fputc('}', out);
    }
    fputc('}', out);
}

void stat_tests_print_text(FILE *out, const struct stat_tests *r)
{
    double *s = xmalloc((size_t)r->slices * sizeof *s);
    for (int row = 0; row < STAT_ROW_COUNT; row++) {
        if (!r->row[row])
            continue;
        memcpy(s, r->row[row], (size_t)r->slices * sizeof *s);
        /* NaN (all-equal projections) would break the order: say so. */
        int nan = 0;
        for (int m = 0; m < r->slices; m++)
            nan += isnan(s[m]);
        if (nan) {
            fprintf(out, "%-31s undefined on %d slices (all projections "
                    "equal)\n", row_titles[row], nan);
            continue;
        }
        qsort(s, (size_t)r->slices, sizeof *s, cmp_double);
        fprintf(out, "%-31s mean %.5g  min %.5g  median %.5g  max %.5g\n",
                row_titles[row], row_mean(s, r->slices), s[0],
                s[r->slices / 2], s[r->slices - 1]);
    }
    free(s);
}
