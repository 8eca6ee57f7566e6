/*
 * stat_tests.h: lejepa-stat's --tests: the classical normality statistics
 * of trainer/stattests.h on every slice of an embedding matrix, their mean
 * over slices and the per-slice values, as text or as a JSON member.
 * Projections are computed in double, a block of slices at a time, so
 * memory is O(N * block) on top of the matrix.
 */
#ifndef LEJEPA_STAT_TESTS_H
#define LEJEPA_STAT_TESTS_H

#include <stdint.h>
#include <stdio.h>

/* The tests as --tests names them; "moments" gives four rows. */
enum stat_test {
    STAT_TEST_AD, STAT_TEST_CVM, STAT_TEST_WATSON, STAT_TEST_JB,
    STAT_TEST_MOMENTS, STAT_TEST_COUNT,
};

/* Per-slice rows of the result, in output order. */
enum stat_row {
    STAT_ROW_AD, STAT_ROW_CVM, STAT_ROW_WATSON, STAT_ROW_JB, STAT_ROW_MEAN,
    STAT_ROW_VARIANCE, STAT_ROW_SKEWNESS, STAT_ROW_KURTOSIS, STAT_ROW_COUNT,
};

/* Bit mask of tests from a comma list such as "ad,cvm,moments" (or "all");
 * exits 2 naming an unknown test. */
unsigned stat_tests_parse(const char *list);

struct stat_tests {
    unsigned mask;                 /* 1u << enum stat_test */
    int slices;
    double *row[STAT_ROW_COUNT];   /* (M) each; NULL when not asked for */
};

/* Runs the tests in mask on x = z a for z (N, K) and unit directions
 * a (K, M) in double. The caller frees r with stat_tests_free. */
void stat_tests_compute(struct stat_tests *r, unsigned mask, const float *z,
                        const double *a, int64_t n, int k_dim, int slices);
void stat_tests_free(struct stat_tests *r);

/* `"tests": {"ad": {"mean": ..., "per_slice": [...]}, ...,
 *  "moments": {"mean": {...}, "variance": {...}, ...}}` without braces
 * around it, for the caller's object. Non-finite values print as null. */
void stat_tests_print_json(FILE *out, const struct stat_tests *r);

/* One line per statistic: mean over slices, min, median, max. */
void stat_tests_print_text(FILE *out, const struct stat_tests *r);

#endif
