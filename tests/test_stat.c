/*
 * test_stat.c: runs the built lejepa-stat ($LEJEPA_BUILD_ROOT/tools) on
 * matrices written with npy_write: a standard-normal sample sits at the
 * Gaussian floor, an all-zero one at 0.402048 * N, a scaled one far above;
 * given directions reproduce sigreg_forward_ref; --json parses with json.h;
 * bad inputs exit 2 naming the file; --tests matches SciPy's values
 * (tests/fixtures/stat/, written by tools/ref_stattests.py) and the
 * statistics of trainer/stattests.h agree with hand-computed cases.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "json.h"
#include "npy.h"
#include "sigreg.h"
#include "stattests.h"
#include "testing.h"
#include "util.h"

#define N_ROWS 2000
#define K_DIM 64
#define COLLAPSE_PER_N 0.402048    /* DESIGN.md §5, default grid */
#define GAUSS_FLOOR 1.05246

static char *tmp_dir;

static const char *tmp_path(const char *name)
{
    static char path[4][4096];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(path[slot], sizeof path[slot], "%s/%s", tmp_dir, name);
    return path[slot];
}

/* Runs "lejepa-stat ARGS" with stderr merged into out; returns the exit
 * status (-1 if it did not exit normally). */
static int run_stat(const char *args, char *out, size_t cap)
{
    char full[16384];
    snprintf(full, sizeof full, "--threads 2 %s", args);
    return testing_run_program("tools/lejepa-stat", full, out, cap);
}

/* Runs with --json and parses the output; the caller frees the tree. */
static struct json *run_json(const char *args)
{
    char out[8192], full[4096], err[ERR_LEN];
    snprintf(full, sizeof full, "--json %s", args);
    int rc = run_stat(full, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "lejepa-stat %s: exit %d: %s\n", full, rc, out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    struct json *j = json_parse(out, strlen(out), 8, err);
    if (!j)
        fprintf(stderr, "bad JSON (%s): %s\n", err, out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    return j;
}

static double num(const struct json *obj, const char *key)
{
    const struct json *v = json_get(obj, key);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL_FATAL(v->type, JSON_NUMBER);
    return v->number;
}

/* z (N, K) standard normal from seed, times scale; written as name. */
static float *write_normal(const char *name, int n, int k_dim, double scale,
                           uint64_t seed)
{
    char err[ERR_LEN];
    float *z = xmalloc((size_t)n * k_dim * sizeof *z);
    for (size_t i = 0; i < (size_t)n * k_dim; i++)
        z[i] = (float)(scale * testing_rand_normal(&seed));
    int64_t shape[2] = {n, k_dim};
    CU_ASSERT_EQUAL_FATAL(npy_write(tmp_path(name), NPY_F32, 2, shape, z, err),
                          0);
    return z;
}

/* Over 40 data seeds (N = 2000, K = 64, M = 1024) SIGReg measured mean
 * 1.055, sd 0.088, range 0.89..1.25; the window 0.70..1.40 is 4 sd wide on
 * each side, while the failures it must catch (scale 3: ~1000, scale 0.1:
 * ~770, a wrong grid or normalisation) are hundreds of sd away. */
static void test_gaussian_sits_at_floor(void)
{
    free(write_normal("gauss.npy", N_ROWS, K_DIM, 1.0, 1));
    char args[4200];
    snprintf(args, sizeof args, "'%s'", tmp_path("gauss.npy"));
    struct json *j = run_json(args);
    double v = num(j, "sigreg");
    CU_ASSERT(v > 0.70 && v < 1.40);
    CU_ASSERT_EQUAL(num(j, "n"), N_ROWS);
    CU_ASSERT_EQUAL(num(j, "k"), K_DIM);
    CU_ASSERT_EQUAL(num(j, "slices"), SIGREG_DEFAULT_SLICES);
    CU_ASSERT_EQUAL(num(j, "knots"), SIGREG_DEFAULT_KNOTS);
    CU_ASSERT_EQUAL(num(j, "t_max"), SIGREG_DEFAULT_T_MAX);
    const struct json *ps = json_get(j, "per_slice");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ps);
    double q[5] = {num(ps, "min"), num(ps, "p10"), num(ps, "median"),
                   num(ps, "p90"), num(ps, "max")};
    for (int i = 0; i < 4; i++)
        CU_ASSERT(q[i] <= q[i + 1]);
    CU_ASSERT(q[0] <= v && v <= q[4]);
    const struct json *ref = json_get(j, "reference");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    CU_ASSERT_DOUBLE_EQUAL(num(ref, "gaussian"), GAUSS_FLOOR, 1e-5);
    json_free(j);

    char out[8192];
    CU_ASSERT_EQUAL(run_stat(args, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "N = 2000 rows, K = 64 columns"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "close to isotropic"));

    /* Same seed and step: same directions, same value; another step: a
     * different (still Gaussian-floor) value. */
    snprintf(args, sizeof args, "--seed 7 --step 3 '%s'", tmp_path("gauss.npy"));
    j = run_json(args);
    double a = num(j, "sigreg");
    json_free(j);
    j = run_json(args);
    CU_ASSERT_EQUAL(num(j, "sigreg"), a);
    json_free(j);
    CU_ASSERT(a != v);
    CU_ASSERT(a > 0.70 && a < 1.40);
}

static void test_zero_matrix_is_collapse_value(void)
{
    char err[ERR_LEN];
    float *z = xcalloc((size_t)N_ROWS * K_DIM, sizeof *z);
    int64_t shape[2] = {N_ROWS, K_DIM};
    CU_ASSERT_EQUAL_FATAL(npy_write(tmp_path("zero.npy"), NPY_F32, 2, shape, z,
                                    err), 0);
    free(z);
    char args[4200];
    snprintf(args, sizeof args, "'%s'", tmp_path("zero.npy"));
    struct json *j = run_json(args);
    double want = COLLAPSE_PER_N * N_ROWS;
    CU_ASSERT(fabs(num(j, "sigreg") - want) <= 1e-5 * want);
    CU_ASSERT(fabs(num(json_get(j, "reference"), "collapsed") - want) <=
              1e-5 * want);
    json_free(j);
    char out[8192];
    CU_ASSERT_EQUAL(run_stat(args, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "too narrow"));
}

/* x * 3: wrong scale, far above the floor (measured ~1000); --standardize
 * removes the scale and brings it back near the floor. */
static void test_scaled_matrix_and_standardize(void)
{
    free(write_normal("scaled.npy", N_ROWS, K_DIM, 3.0, 1));
    char args[4200];
    snprintf(args, sizeof args, "'%s'", tmp_path("scaled.npy"));
    struct json *j = run_json(args);
    CU_ASSERT(num(j, "sigreg") > 300 * GAUSS_FLOOR);
    json_free(j);
    char out[8192];
    CU_ASSERT_EQUAL(run_stat(args, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "too wide"));

    snprintf(args, sizeof args, "--standardize '%s'", tmp_path("scaled.npy"));
    j = run_json(args);
    CU_ASSERT(num(j, "sigreg") < 2 * GAUSS_FLOOR);
    CU_ASSERT_EQUAL(json_get(j, "standardize")->type, JSON_TRUE);
    json_free(j);
}

/* float64 input is converted: the same numbers give the same value. */
static void test_f8_input_matches_f4(void)
{
    char err[ERR_LEN];
    float *z = write_normal("small.npy", 300, 8, 1.0, 5);
    double *d = xmalloc(300 * 8 * sizeof *d);
    for (int i = 0; i < 300 * 8; i++)
        d[i] = z[i];
    int64_t shape[2] = {300, 8};
    CU_ASSERT_EQUAL_FATAL(npy_write(tmp_path("small8.npy"), NPY_F64, 2, shape,
                                    d, err), 0);
    char args[4200];
    snprintf(args, sizeof args, "--slices 64 '%s'", tmp_path("small.npy"));
    struct json *j4 = run_json(args);
    snprintf(args, sizeof args, "--slices 64 '%s'", tmp_path("small8.npy"));
    struct json *j8 = run_json(args);
    CU_ASSERT_EQUAL(num(j4, "sigreg"), num(j8, "sigreg"));
    CU_ASSERT_EQUAL(num(j8, "slices"), 64);
    json_free(j4);
    json_free(j8);
    free(d);
    free(z);
}

/* --directions: the identity (slices = the coordinates) and arbitrary
 * unnormalised directions, against the double reference on the normalised
 * directions. Tolerance 1e-6 (N + |stat|), as in test_sigreg.c. */
static void check_directions(const float *z, const float *a, int slices,
                             const char *name)
{
    char err[ERR_LEN];
    int64_t shape[2] = {K_DIM, slices};
    CU_ASSERT_EQUAL_FATAL(npy_write(tmp_path(name), NPY_F32, 2, shape, a, err),
                          0);
    double *zd = xmalloc((size_t)N_ROWS * K_DIM * sizeof *zd);
    double *ad = xmalloc((size_t)K_DIM * slices * sizeof *ad);
    double *stat = xmalloc((size_t)slices * sizeof *stat);
    for (size_t i = 0; i < (size_t)N_ROWS * K_DIM; i++)
        zd[i] = z[i];
    for (int m = 0; m < slices; m++) {
        double ss = 0;
        for (int k = 0; k < K_DIM; k++)
            ss += (double)a[k * slices + m] * a[k * slices + m];
        for (int k = 0; k < K_DIM; k++)
            ad[k * slices + m] = a[k * slices + m] / sqrt(ss);
    }
    struct sigreg_grid g;
    CU_ASSERT_EQUAL_FATAL(sigreg_grid_init(&g, SIGREG_DEFAULT_KNOTS,
                                           SIGREG_DEFAULT_T_MAX, err), 0);
    double ref = sigreg_forward_ref(stat, zd, ad, &g, N_ROWS, K_DIM, slices);
    double lo = stat[0], hi = stat[0];
    for (int m = 1; m < slices; m++) {
        lo = fmin(lo, stat[m]);
        hi = fmax(hi, stat[m]);
    }
    char args[8400];
    snprintf(args, sizeof args, "--directions '%s' '%s'", tmp_path(name),
             tmp_path("dirz.npy"));
    struct json *j = run_json(args);
    double tol = 1e-6 * (N_ROWS + fabs(ref));
    double v = num(j, "sigreg");
    if (fabs(v - ref) > tol)
        fprintf(stderr, "%s: lejepa-stat %.9g, reference %.9g\n", name, v, ref);
    CU_ASSERT(fabs(v - ref) <= tol);
    CU_ASSERT_EQUAL(num(j, "slices"), slices);
    const struct json *ps = json_get(j, "per_slice");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ps);
    CU_ASSERT(fabs(num(ps, "min") - lo) <= tol);
    CU_ASSERT(fabs(num(ps, "max") - hi) <= tol);
    json_free(j);
    free(zd);
    free(ad);
    free(stat);
}

static void test_given_directions_match_reference(void)
{
    /* Columns of different scales, so per-slice values differ widely. */
    float *z = write_normal("dirz.npy", N_ROWS, K_DIM, 1.0, 9);
    for (int i = 0; i < N_ROWS; i++)
        for (int k = 0; k < K_DIM; k++)
            z[i * K_DIM + k] *= (float)(0.5 + k / 32.0);
    char err[ERR_LEN];
    int64_t shape[2] = {N_ROWS, K_DIM};
    CU_ASSERT_EQUAL_FATAL(npy_write(tmp_path("dirz.npy"), NPY_F32, 2, shape, z,
                                    err), 0);
    float *eye = xcalloc(K_DIM * K_DIM, sizeof *eye);
    for (int k = 0; k < K_DIM; k++)
        eye[k * K_DIM + k] = 1.0f;
    check_directions(z, eye, K_DIM, "eye.npy");
    enum { M = 40 };
    float *a = xmalloc(K_DIM * M * sizeof *a);
    uint64_t seed = 21;
    for (int i = 0; i < K_DIM * M; i++)
        a[i] = (float)(7.0 * testing_rand_normal(&seed));
    check_directions(z, a, M, "dirs.npy");
    free(a);
    free(eye);
    free(z);
}

/* Each bad input exits 2 with a message naming the file and the problem. */
static void test_bad_inputs_exit_2(void)
{
    char err[ERR_LEN];
    free(write_normal("one.npy", 1, 4, 1.0, 3));
    free(write_normal("k4.npy", 10, 4, 1.0, 3));
    free(write_normal("k5.npy", 5, 3, 1.0, 3));
    float v[3] = {1, 2, 3};
    int64_t flat[1] = {3};
    CU_ASSERT_EQUAL(npy_write(tmp_path("flat.npy"), NPY_F32, 1, flat, v, err),
                    0);
    float nan2[4] = {0, 1, NAN, 2};
    int64_t sq[2] = {2, 2};
    CU_ASSERT_EQUAL(npy_write(tmp_path("nan.npy"), NPY_F32, 2, sq, nan2, err),
                    0);
    static const char junk[] = "PK\3\4 not a numpy file";
    CU_ASSERT_EQUAL(util_write_file_atomic(tmp_path("junk.npy"), junk,
                                           sizeof junk - 1, err), 0);
    static const struct {
        const char *args_fmt, *file, *want;
    } cases[] = {
        {"'%s'", "missing.npy", "cannot open"},
        {"'%s'", "junk.npy", "bad magic"},
        {"'%s'", "flat.npy", "expected a 2-D"},
        {"'%s'", "one.npy", "at least 2"},
        {"'%s'", "nan.npy", "row 1, column 0"},
        {"--directions '%s' K4", "k5.npy", "directions have 5 rows"},
        {"--slices 0 '%s'", "k4.npy", "--slices 0"},
        {"--knots 1 '%s'", "k4.npy", "--knots 1"},
        {"--t-max -1 '%s'", "k4.npy", "--t-max -1"},
        {"--directions '%s' --seed 3 K4", "k5.npy", "drop --slices"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[8400], fmt[256], out[8192];
        /* "K4" stands for the embeddings file of the directions cases */
        snprintf(fmt, sizeof fmt, "%s", cases[i].args_fmt);
        char *k4 = strstr(fmt, "K4");
        if (k4)
            snprintf(k4, sizeof fmt - (size_t)(k4 - fmt), "'%s'",
                     tmp_path("k4.npy"));
        snprintf(args, sizeof args, fmt, tmp_path(cases[i].file));
        int rc = run_stat(args, out, sizeof out);
        int named = strstr(out, cases[i].file) || cases[i].want[0] == '-';
        if (rc != 2 || !strstr(out, cases[i].want) || !named)
            fprintf(stderr, "case %zu: exit %d, want 2 and '%s': %s", i, rc,
                    cases[i].want, out);
        CU_ASSERT_EQUAL(rc, 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, cases[i].want));
        CU_ASSERT(named);
    }
    char out[8192];
    CU_ASSERT_EQUAL(run_stat("--help", out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: lejepa-stat"));
    CU_ASSERT_EQUAL(run_stat("", out, sizeof out), 2);
}

/* --debias: the same Gaussian sample as test_gaussian_sits_at_floor reads
 * about 0 (the window of that test moved down by the floor: the debiased
 * value is the biased one minus about the floor, sd unchanged), the
 * reference says 0, collapse keeps 0.402048 N, and given directions match
 * the debiased sigreg_forward_ref. */
static void test_debias(void)
{
    free(write_normal("gauss_d.npy", N_ROWS, K_DIM, 1.0, 1));
    char args[8400];
    snprintf(args, sizeof args, "--debias '%s'", tmp_path("gauss_d.npy"));
    struct json *j = run_json(args);
    double v = num(j, "sigreg");
    CU_ASSERT(v > 0.70 - GAUSS_FLOOR && v < 1.40 - GAUSS_FLOOR);
    CU_ASSERT_EQUAL(json_get(j, "debias")->type, JSON_TRUE);
    CU_ASSERT_EQUAL(num(json_get(j, "reference"), "gaussian"), 0.0);
    json_free(j);
    snprintf(args, sizeof args, "'%s'", tmp_path("gauss_d.npy"));
    j = run_json(args);
    CU_ASSERT(num(j, "sigreg") - v > 0.5 * GAUSS_FLOOR);
    CU_ASSERT_EQUAL(json_get(j, "debias")->type, JSON_FALSE);
    json_free(j);

    char err[ERR_LEN];
    enum { N = 300, K = 8, M = 5 };
    float *z = xcalloc(N * K, sizeof *z);
    int64_t shape[2] = {N, K};
    CU_ASSERT_EQUAL_FATAL(npy_write(tmp_path("zero_d.npy"), NPY_F32, 2, shape,
                                    z, err), 0);
    snprintf(args, sizeof args, "--debias --slices %d '%s'", M,
             tmp_path("zero_d.npy"));
    j = run_json(args);
    CU_ASSERT(fabs(num(j, "sigreg") - COLLAPSE_PER_N * N) <=
              1e-5 * COLLAPSE_PER_N * N);
    json_free(j);
    free(z);

    z = write_normal("small_d.npy", N, K, 1.5, 8);
    float a[K * M];
    double zd[N * K], ad[K * M];
    uint64_t seed = 4;
    for (int i = 0; i < K * M; i++)
        a[i] = (float)testing_rand_normal(&seed);
    for (int m = 0; m < M; m++) {
        double ss = 0;
        for (int k = 0; k < K; k++)
            ss += (double)a[k * M + m] * a[k * M + m];
        for (int k = 0; k < K; k++)
            ad[k * M + m] = a[k * M + m] / sqrt(ss);
    }
    for (int i = 0; i < N * K; i++)
        zd[i] = z[i];
    int64_t ashape[2] = {K, M};
    CU_ASSERT_EQUAL_FATAL(npy_write(tmp_path("dirs_d.npy"), NPY_F32, 2, ashape,
                                    a, err), 0);
    struct sigreg_grid g;
    CU_ASSERT_EQUAL_FATAL(sigreg_grid_init(&g, SIGREG_DEFAULT_KNOTS,
                                           SIGREG_DEFAULT_T_MAX, err), 0);
    g.debias = true;
    double ref = sigreg_forward_ref(NULL, zd, ad, &g, N, K, M);
    snprintf(args, sizeof args, "--debias --directions '%s' '%s'",
             tmp_path("dirs_d.npy"), tmp_path("small_d.npy"));
    j = run_json(args);
    CU_ASSERT(fabs(num(j, "sigreg") - ref) <= 1e-6 * (N + fabs(ref)));
    json_free(j);
    free(z);
}

/* Hand cases: one value at 0 has F = 1/2, so A^2 = -1 - 2 log(1/2) and
 * W^2 = 1/12; two values at -1, 1 are symmetric, so U^2 = W^2; the log-CDF
 * is continuous where its asymptotic series takes over and matches
 * log(Phi(x)) from erfc. */
static void test_stattests_by_hand(void)
{
    double zero = 0.0;
    CU_ASSERT_DOUBLE_EQUAL(stattest_anderson_darling(&zero, 1),
                           -1.0 + 2.0 * log(2.0), 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(stattest_cramer_von_mises(&zero, 1), 1.0 / 12,
                           1e-15);
    double pm[2] = {-1.0, 1.0};
    double f = 0.5 * erfc(1.0 / sqrt(2.0));   /* Phi(-1) */
    double w2 = 1.0 / 24 + 2 * (0.25 - f) * (0.25 - f);
    CU_ASSERT_DOUBLE_EQUAL(stattest_cramer_von_mises(pm, 2), w2, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(stattest_watson(pm, 2), w2, 1e-15);
    double ad = -2 - 0.5 * (log(f) + log(f)) - 1.5 * (log(1 - f) + log(1 - f));
    CU_ASSERT_DOUBLE_EQUAL(stattest_anderson_darling(pm, 2), ad, 1e-14);
    for (double x = -37.0; x <= 0.0; x += 0.5) {
        double want = log(0.5 * erfc(-x / sqrt(2.0)));
        CU_ASSERT(fabs(stattest_norm_logcdf(x) - want) <= 1e-13 * fabs(want));
    }
    /* upper tail: log(1 - q) = -q - q^2/2 - ..., q = Phi(-5) ~ 2.9e-7 */
    double q = 0.5 * erfc(5.0 / sqrt(2.0));
    CU_ASSERT(fabs(stattest_norm_logcdf(5.0) + q + q * q / 2) <= 1e-12 * q);
    CU_ASSERT(fabs(stattest_norm_logcdf(-20.0) -
                   stattest_norm_logcdf(-20.0 - 1e-9)) < 1e-6);
    CU_ASSERT(isfinite(stattest_norm_logcdf(-1e3)));
    CU_ASSERT_DOUBLE_EQUAL(stattest_norm_logcdf(40.0), 0.0, 1e-300);

    /* 1, 2, 3, 10: mean 4, m2 = 12.5, m3 = 37.5 - ... by hand below. */
    double v[4] = {1, 2, 3, 10};
    struct stattest_moments mo;
    stattest_moments(&mo, v, 4);
    double d[4] = {-3, -2, -1, 6}, m2 = 0, m3 = 0, m4 = 0;
    for (int i = 0; i < 4; i++) {
        m2 += d[i] * d[i] / 4;
        m3 += d[i] * d[i] * d[i] / 4;
        m4 += d[i] * d[i] * d[i] * d[i] / 4;
    }
    CU_ASSERT_DOUBLE_EQUAL(mo.mean, 4.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(mo.variance, 50.0 / 3, 1e-13);
    CU_ASSERT_DOUBLE_EQUAL(mo.skewness, m3 / pow(m2, 1.5), 1e-13);
    CU_ASSERT_DOUBLE_EQUAL(mo.kurtosis, m4 / (m2 * m2) - 3, 1e-13);
    CU_ASSERT_DOUBLE_EQUAL(stattest_jarque_bera(v, 4),
                           4.0 / 6 * (mo.skewness * mo.skewness +
                                      mo.kurtosis * mo.kurtosis / 4), 1e-13);
    double same[3] = {2, 2, 2};
    stattest_moments(&mo, same, 3);
    CU_ASSERT_DOUBLE_EQUAL(mo.variance, 0.0, 0.0);
    CU_ASSERT(isnan(mo.skewness) && isnan(mo.kurtosis));
}

/* The rows of tools/ref_stattests.py's NAME_ref.npy, in its order. */
static const char *const ref_rows[8][2] = {
    {"ad", NULL}, {"cvm", NULL}, {"watson", NULL}, {"jb", NULL},
    {"moments", "mean"}, {"moments", "variance"}, {"moments", "skewness"},
    {"moments", "kurtosis"},
};

/* lejepa-stat --tests all --directions dirs.npy --json NAME.npy against
 * SciPy's per-slice values, to 1e-9 relative (1e-12 absolute for the
 * moments near 0); the mean over slices is the mean of those. */
static void check_scipy_fixture(const char *name)
{
    char dirs[4096], emb[4096], refp[4096], err[ERR_LEN];
    char file[64];
    snprintf(dirs, sizeof dirs, "%s", testing_fixture("stat/dirs.npy"));
    snprintf(file, sizeof file, "stat/%s.npy", name);
    snprintf(emb, sizeof emb, "%s", testing_fixture(file));
    snprintf(file, sizeof file, "stat/%s_ref.npy", name);
    snprintf(refp, sizeof refp, "%s", testing_fixture(file));
    struct npy_array ref;
    if (npy_read(refp, &ref, err) != 0)
        fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(npy_read(refp, &ref, err), 0);
    CU_ASSERT_FATAL(ref.dtype == NPY_F64 && ref.ndim == 2 &&
                    ref.shape[0] == 8);
    int slices = (int)ref.shape[1];
    const double *want = ref.data;

    char args[8400];
    snprintf(args, sizeof args, "--json --tests all --directions '%s' '%s'",
             dirs, emb);
    static char out[1 << 16];
    int rc = run_stat(args, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "lejepa-stat %s: exit %d: %s\n", args, rc, out);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    struct json *j = json_parse(out, strlen(out), 8, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(num(j, "slices"), slices);
    const struct json *tests = json_get(j, "tests");
    CU_ASSERT_PTR_NOT_NULL_FATAL(tests);
    for (int r = 0; r < 8; r++) {
        const struct json *t = json_get(tests, ref_rows[r][0]);
        if (t && ref_rows[r][1])
            t = json_get(t, ref_rows[r][1]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        const struct json *ps = json_get(t, "per_slice");
        CU_ASSERT_FATAL(ps && ps->type == JSON_ARRAY &&
                        (int)ps->len == slices);
        double mean = 0;
        const struct json *e = ps->child;
        for (int m = 0; m < slices; m++, e = e->next) {
            double w = want[r * slices + m];
            mean += w / slices;
            CU_ASSERT_FATAL(e->type == JSON_NUMBER);
            double tol = 1e-9 * fabs(w) + 1e-12;
            if (fabs(e->number - w) > tol)
                fprintf(stderr, "%s: %s slice %d: %.17g, SciPy %.17g\n",
                        name, ref_rows[r][1] ? ref_rows[r][1] : ref_rows[r][0],
                        m, e->number, w);
            CU_ASSERT(fabs(e->number - w) <= tol);
        }
        CU_ASSERT(fabs(num(t, "mean") - mean) <= 1e-9 * fabs(mean) + 1e-12);
    }
    json_free(j);
    npy_free(&ref);
}

static void test_tests_match_scipy(void)
{
    check_scipy_fixture("gauss");
    check_scipy_fixture("heavy");
}

/* The Gaussian fixture passes where the non-Gaussian one fails: AD's 5%
 * critical value for a fully specified null is 2.49, CvM's 0.461. */
static void test_tests_tell_gaussian_apart(void)
{
    char args[8400], dirs[4096], out[1 << 14], err[ERR_LEN];
    snprintf(dirs, sizeof dirs, "%s", testing_fixture("stat/dirs.npy"));
    const char *names[2] = {"stat/gauss.npy", "stat/heavy.npy"};
    double ad[2], cvm[2];
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "--json --tests ad,cvm --directions '%s' "
                 "'%s'", dirs, testing_fixture(names[i]));
        CU_ASSERT_EQUAL_FATAL(run_stat(args, out, sizeof out), 0);
        struct json *j = json_parse(out, strlen(out), 8, err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        const struct json *t = json_get(j, "tests");
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_PTR_NULL(json_get(t, "jb"));
        CU_ASSERT_PTR_NULL(json_get(t, "moments"));
        ad[i] = num(json_get(t, "ad"), "mean");
        cvm[i] = num(json_get(t, "cvm"), "mean");
        json_free(j);
    }
    CU_ASSERT(ad[0] < 2.49 && ad[1] > 2.49);
    CU_ASSERT(cvm[0] < 0.461 && cvm[1] > 0.461);
    snprintf(args, sizeof args, "--tests ad,bogus '%s'",
             testing_fixture("stat/gauss.npy"));
    CU_ASSERT_EQUAL(run_stat(args, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown test 'bogus'"));
    snprintf(args, sizeof args, "--tests all '%s'",
             testing_fixture("stat/gauss.npy"));
    CU_ASSERT_EQUAL(run_stat(args, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Anderson-Darling"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "excess kurtosis"));
}

int main(void)
{
    tmp_dir = testing_tmpdir();
    static const struct testing_case cases[] = {
        {"standard normal sits at the floor", test_gaussian_sits_at_floor},
        {"all-zero matrix gives 0.402048 N", test_zero_matrix_is_collapse_value},
        {"scaled matrix far above; --standardize", test_scaled_matrix_and_standardize},
        {"float64 input equals float32", test_f8_input_matches_f4},
        {"--directions matches sigreg_forward_ref", test_given_directions_match_reference},
        {"bad inputs exit 2 naming the file", test_bad_inputs_exit_2},
        {"--debias reads ~0 on N(0,1), matches the reference", test_debias},
        {"normality statistics by hand", test_stattests_by_hand},
        {"--tests matches SciPy (fixtures)", test_tests_match_scipy},
        {"--tests tells Gaussian from not", test_tests_tell_gaussian_apart},
        {NULL, NULL},
    };
    int rc = testing_run("stat", cases);
    testing_rmtree(tmp_dir);
    free(tmp_dir);
    return rc;
}
