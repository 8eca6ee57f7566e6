/*
 * test_sigreg.c: SIGReg against its plain double reference (forward and
 * backward, odd sizes), central finite differences, the split data-parallel
 * API against one process, the sanity values of DESIGN.md §5 (N(0,1) input
 * averages 1.05246, collapse gives 0.402048 N), the recurrence accuracy and
 * the directions (stream naming, unit columns, zero-norm guard). The
 * debiased form (loss.sigreg_debias) runs the same reference, gradient and
 * split checks, its identity with the biased form, and N(0,1) input
 * averaging 0 where the biased form averages the 1.05246 floor.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "sigreg.h"
#include "testing.h"
#include "util.h"

/* One test shape: rows, dims, slices, knots, t_max and the input scale. */
struct shape {
    int n, k, m, t;
    double t_max, scale;
};

static const struct shape shapes[] = {
    {7, 3, 5, 17, 3.0, 1.0},     {33, 10, 17, 9, 2.0, 0.3},
    {128, 16, 40, 17, 3.0, 1.0}, {65, 5, 31, 4, 5.0, 2.0},
    {200, 64, 64, 33, 4.0, 0.7}, {1, 2, 3, 2, 1.0, 1.0},
    {130, 9, 16, 17, 3.0, 3.0},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

/* Set while a case runs again on the debiased statistic (run_debiased). */
static bool debias_mode;

static void grid_or_die(struct sigreg_grid *g, int knots, double t_max)
{
    char err[ERR_LEN];
    if (sigreg_grid_init(g, knots, t_max, err) != 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    g->debias = debias_mode;
}

/* Seeded z (n, k) with N(0, scale^2) entries, in float and double. */
static void fill_inputs(float *zf, double *zd, int n, int k, double scale,
                        uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < n * k; i++) {
        zf[i] = (float)(scale * testing_rand_normal(&st));
        zd[i] = zf[i];
    }
}

/* Directions in float and the same values in double. */
static void fill_directions(float *af, double *ad, int k, int m,
                            uint64_t step)
{
    sigreg_directions(af, 1234, step, k, m);
    for (int i = 0; i < k * m; i++)
        ad[i] = af[i];
}

static struct sigreg_scratch scratch_new(void **mem, int n, int m, int t)
{
    struct sigreg_scratch s;
    *mem = xmalloc_aligned(sigreg_scratch_size(n, m, t));
    sigreg_scratch_init(&s, *mem, n, m, t);
    return s;
}

static void test_grid(void)
{
    struct sigreg_grid g;
    char err[ERR_LEN];
    grid_or_die(&g, 17, 3.0);
    CU_ASSERT_DOUBLE_EQUAL(g.dt, 0.1875, 1e-15);
    CU_ASSERT_EQUAL(g.t[16], 3.0);
    CU_ASSERT_DOUBLE_EQUAL(g.weight[0], 0.1875, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(g.weight[1], 0.375 * exp(-0.5 * 0.1875 * 0.1875),
                           1e-15);
    CU_ASSERT_DOUBLE_EQUAL(g.weight[16], 0.1875 * exp(-4.5), 1e-15);
    /* The sanity constants of DESIGN.md §5 follow from the grid alone:
     * E[stat] under N(0,1) = sum W (1 - phi^2); collapse gives
     * N sum W (1 - phi)^2. */
    double e_gauss = 0, e_zero = 0;
    for (int k = 0; k < g.knots; k++) {
        e_gauss += g.weight[k] * (1 - g.phi[k] * g.phi[k]);
        e_zero += g.weight[k] * (1 - g.phi[k]) * (1 - g.phi[k]);
    }
    CU_ASSERT_DOUBLE_EQUAL(e_gauss, 1.05246, 5e-6);
    CU_ASSERT_DOUBLE_EQUAL(e_zero, 0.402048, 5e-7);
    CU_ASSERT_EQUAL(sigreg_grid_init(&g, 1, 3.0, err), -1);
    CU_ASSERT(strstr(err, "knots") != NULL);
    CU_ASSERT_EQUAL(sigreg_grid_init(&g, SIGREG_MAX_KNOTS + 1, 3.0, err), -1);
    CU_ASSERT_EQUAL(sigreg_grid_init(&g, 17, 0.0, err), -1);
    CU_ASSERT(strstr(err, "t_max") != NULL);
    CU_ASSERT_EQUAL(sigreg_grid_init(&g, 17, NAN, err), -1);
    CU_ASSERT_EQUAL(sigreg_grid_init(&g, 17, INFINITY, err), -1);
}

static void test_directions_stream_and_norms(void)
{
    const int k_dim = 13, m = 37;
    float *a = xmalloc(sizeof(float) * k_dim * m);
    float *b = xmalloc(sizeof(float) * k_dim * m);
    sigreg_directions(a, 99, 7, k_dim, m);
    /* The documented stream: (seed, step, SIGREG_RNG_STREAM, 0), normal
     * number i into element i (row-major), then unit columns. */
    struct rng r;
    rng_init(&r, 99, 7, SIGREG_RNG_STREAM, 0);
    double *raw = xmalloc(sizeof(double) * k_dim * m);
    for (int i = 0; i < k_dim * m; i++)
        raw[i] = (float)rng_normal(&r);
    for (int j = 0; j < m; j++) {
        double ss = 0, ssa = 0;
        for (int k = 0; k < k_dim; k++) {
            ss += raw[k * m + j] * raw[k * m + j];
            ssa += (double)a[k * m + j] * a[k * m + j];
        }
        CU_ASSERT_DOUBLE_EQUAL(ssa, 1.0, 1e-6);
        for (int k = 0; k < k_dim; k++)
            CU_ASSERT_DOUBLE_EQUAL(a[k * m + j], raw[k * m + j] / sqrt(ss),
                                   1e-6);
    }
    sigreg_directions(b, 99, 7, k_dim, m);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof(float) * k_dim * m), 0);
    sigreg_directions(b, 99, 8, k_dim, m);
    int same = 0;
    for (int i = 0; i < k_dim * m; i++)
        same += a[i] == b[i];
    CU_ASSERT(same < 3);
    sigreg_directions(b, 100, 7, k_dim, m);
    same = 0;
    for (int i = 0; i < k_dim * m; i++)
        same += a[i] == b[i];
    CU_ASSERT(same < 3);
    free(raw);
    free(a);
    free(b);
}

static void test_zero_norm_guard(void)
{
    const int k_dim = 3, m = 5;
    float a[15] = {0};
    a[0 * m + 1] = 3.0f; /* column 1: (3, 4, 0) -> (0.6, 0.8, 0) */
    a[1 * m + 1] = 4.0f;
    a[2 * m + 4] = -2.0f; /* column 4: (0, 0, -2) -> (0, 0, -1) */
    sigreg_normalize_columns(a, k_dim, m);
    CU_ASSERT_DOUBLE_EQUAL(a[0 * m + 1], 0.6, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(a[1 * m + 1], 0.8, 1e-7);
    CU_ASSERT_EQUAL(a[2 * m + 4], -1.0f);
    /* Zero columns 0, 2, 3 become e_(m mod K): e_0, e_2, e_0. */
    const int zero_cols[] = {0, 2, 3};
    for (int c = 0; c < 3; c++) {
        int j = zero_cols[c];
        for (int k = 0; k < k_dim; k++)
            CU_ASSERT_EQUAL(a[k * m + j], k == j % k_dim ? 1.0f : 0.0f);
    }
    for (int i = 0; i < k_dim * m; i++)
        CU_ASSERT(isfinite(a[i]));
}

/* One sample per slice, so cos_sum / sin_sum are cos / sin of t_k x itself:
 * the float sincos plus 15 recurrence steps against double cos / sin for
 * |x| up to 10 (|t x| up to 30). float32 rounding of the argument alone
 * (what the official float code does) costs |t x| * 6e-8 = 1.8e-6 here. */
static void test_recurrence_accuracy(void)
{
    const int m = 4001;
    struct sigreg_grid g;
    grid_or_die(&g, 17, 3.0);
    float *x = xmalloc(sizeof(float) * m);
    double *cs = xmalloc(sizeof(double) * m * g.knots);
    double *ss = xmalloc(sizeof(double) * m * g.knots);
    for (int j = 0; j < m; j++)
        x[j] = (float)(-10.0 + 20.0 * j / (m - 1));
    sigreg_sums(cs, ss, x, &g, 1, m);
    double worst = 0;
    for (int j = 0; j < m; j++)
        for (int k = 0; k < g.knots; k++) {
            double ec = fabs(cs[j * g.knots + k] - cos(g.t[k] * x[j]));
            double es = fabs(ss[j * g.knots + k] - sin(g.t[k] * x[j]));
            worst = fmax(worst, fmax(ec, es));
        }
    printf("\n  recurrence: max |error| over |x| <= 10, 17 knots: %.2e\n",
           worst);
    CU_ASSERT(worst < 3e-6);
    free(x);
    free(cs);
    free(ss);
}

/* Fused float forward against the double reference, per slice. The fused
 * error is at most ~2e-6 in each C, S (float sincos + recurrence), which
 * could move stat_m by up to N * 2 * sum W * 2e-6 ~ 1e-5 N if every error
 * lined up; they do not: measured worst 1e-7 N (all shapes below), so the
 * tolerance 1e-6 (N + |stat|) keeps a 10x margin. */
static void test_forward_matches_reference(void)
{
    for (int c = 0; c < N_SHAPES; c++) {
        const struct shape *sh = &shapes[c];
        if (debias_mode && sh->n < 2)
            continue;    /* the U-statistic needs two samples */
        struct sigreg_grid g;
        grid_or_die(&g, sh->t, sh->t_max);
        float *z = xmalloc(sizeof(float) * sh->n * sh->k);
        double *zd = xmalloc(sizeof(double) * sh->n * sh->k);
        float *a = xmalloc(sizeof(float) * sh->k * sh->m);
        double *ad = xmalloc(sizeof(double) * sh->k * sh->m);
        double *stat = xmalloc(sizeof(double) * sh->m);
        double *stat_ref = xmalloc(sizeof(double) * sh->m);
        void *mem;
        struct sigreg_scratch s = scratch_new(&mem, sh->n, sh->m, sh->t);
        fill_inputs(z, zd, sh->n, sh->k, sh->scale, 100 + c);
        fill_directions(a, ad, sh->k, sh->m, c);
        double v = sigreg_forward(stat, &s, z, a, &g, sh->n, sh->k, sh->m);
        double v_ref = sigreg_forward_ref(stat_ref, zd, ad, &g, sh->n, sh->k,
                                          sh->m);
        double worst = 0;
        for (int j = 0; j < sh->m; j++)
            worst = fmax(worst, fabs(stat[j] - stat_ref[j]));
        double tol = 1e-6 * sh->n + 1e-6 * fabs(v_ref);
        if (worst > tol)
            printf("\n  shape %d: forward max |diff| %.3e > %.3e\n", c, worst,
                   tol);
        CU_ASSERT(worst <= tol);
        CU_ASSERT(fabs(v - v_ref) <= tol);
        CU_ASSERT(v_ref > 0 || debias_mode);  /* debiased may go below 0 */
        util_free_aligned(mem);
        free(z), free(zd), free(a), free(ad), free(stat), free(stat_ref);
    }
}

/* Fused backward (float) against the reference (double); dz starts
 * non-zero to check that both accumulate. Measured worst 4e-6 of the
 * largest gradient entry; tolerance 1e-4. */
static void test_backward_matches_reference(void)
{
    for (int c = 0; c < N_SHAPES; c++) {
        const struct shape *sh = &shapes[c];
        if (debias_mode && sh->n < 2)
            continue;
        const int nk = sh->n * sh->k;
        const float dloss = 0.37f;
        struct sigreg_grid g;
        grid_or_die(&g, sh->t, sh->t_max);
        float *z = xmalloc(sizeof(float) * nk);
        double *zd = xmalloc(sizeof(double) * nk);
        float *a = xmalloc(sizeof(float) * sh->k * sh->m);
        double *ad = xmalloc(sizeof(double) * sh->k * sh->m);
        float *dz = xmalloc(sizeof(float) * nk);
        double *dz_ref = xmalloc(sizeof(double) * nk);
        void *mem;
        struct sigreg_scratch s = scratch_new(&mem, sh->n, sh->m, sh->t);
        fill_inputs(z, zd, sh->n, sh->k, sh->scale, 200 + c);
        fill_directions(a, ad, sh->k, sh->m, 50 + c);
        for (int i = 0; i < nk; i++)
            dz[i] = (float)(dz_ref[i] = 0.5 * (i % 3) - 0.5);
        sigreg_forward(NULL, &s, z, a, &g, sh->n, sh->k, sh->m);
        sigreg_backward(dz, &s, dloss, a, &g, sh->k, sh->m);
        sigreg_backward_ref(dz_ref, dloss, zd, ad, &g, sh->n, sh->k, sh->m);
        double worst = 0, scale = 0;
        for (int i = 0; i < nk; i++) {
            double gref = dz_ref[i] - (0.5 * (i % 3) - 0.5);
            scale = fmax(scale, fabs(gref));
            worst = fmax(worst, fabs(dz[i] - dz_ref[i]));
        }
        if (worst > 1e-4 * scale + 1e-6)
            printf("\n  shape %d: backward max |diff| %.3e (max |grad| %.3e)\n",
                   c, worst, scale);
        CU_ASSERT(scale > 0);
        CU_ASSERT(worst <= 1e-4 * scale + 1e-6);
        util_free_aligned(mem);
        free(z), free(zd), free(a), free(ad), free(dz), free(dz_ref);
    }
}

/* Central differences (h = 1e-5) of the double reference statistic w.r.t.
 * every entry of a small z: the reference gradient must match to 1e-7 of
 * the largest entry (measured 2e-10: h^2 truncation and double rounding),
 * and the fused float gradient to 1e-5 (measured 1.4e-7). */
static void test_finite_differences(void)
{
    const struct shape fd_shapes[] = {
        {6, 4, 5, 17, 3.0, 1.0},
        {9, 3, 7, 8, 2.5, 0.4},
        {5, 5, 19, 17, 3.0, 2.0},
    };
    for (int c = 0; c < 3; c++) {
        const struct shape *sh = &fd_shapes[c];
        const int nk = sh->n * sh->k;
        const double h = 1e-5;
        struct sigreg_grid g;
        grid_or_die(&g, sh->t, sh->t_max);
        float *z = xmalloc(sizeof(float) * nk);
        double *zd = xmalloc(sizeof(double) * nk);
        float *a = xmalloc(sizeof(float) * sh->k * sh->m);
        double *ad = xmalloc(sizeof(double) * sh->k * sh->m);
        float *dz = xcalloc(nk, sizeof(float));
        double *dz_ref = xcalloc(nk, sizeof(double));
        void *mem;
        struct sigreg_scratch s = scratch_new(&mem, sh->n, sh->m, sh->t);
        fill_inputs(z, zd, sh->n, sh->k, sh->scale, 300 + c);
        fill_directions(a, ad, sh->k, sh->m, 70 + c);
        sigreg_backward_ref(dz_ref, 1.0, zd, ad, &g, sh->n, sh->k, sh->m);
        sigreg_forward(NULL, &s, z, a, &g, sh->n, sh->k, sh->m);
        sigreg_backward(dz, &s, 1.0f, a, &g, sh->k, sh->m);
        double worst_ref = 0, worst_fused = 0, scale = 0;
        for (int i = 0; i < nk; i++) {
            double keep = zd[i];
            zd[i] = keep + h;
            double fp = sigreg_forward_ref(NULL, zd, ad, &g, sh->n, sh->k,
                                           sh->m);
            zd[i] = keep - h;
            double fm = sigreg_forward_ref(NULL, zd, ad, &g, sh->n, sh->k,
                                           sh->m);
            zd[i] = keep;
            double fd = (fp - fm) / (2 * h);
            scale = fmax(scale, fabs(fd));
            worst_ref = fmax(worst_ref, fabs(fd - dz_ref[i]));
            worst_fused = fmax(worst_fused, fabs(fd - dz[i]));
        }
        CU_ASSERT(scale > 1e-3);
        CU_ASSERT(worst_ref <= 1e-7 * scale + 1e-9);
        CU_ASSERT(worst_fused <= 1e-5 * scale);
        if (worst_ref > 1e-7 * scale + 1e-9 || worst_fused > 1e-5 * scale)
            printf("\n  fd %d: ref %.3e fused %.3e scale %.3e\n", c, worst_ref,
                   worst_fused, scale);
        util_free_aligned(mem);
        free(z), free(zd), free(a), free(ad), free(dz), free(dz_ref);
    }
}

/* Two "ranks" holding rows [0, n1) and [n1, n): summing their per-slice sums
 * and N, then back-propagating each rank's rows with the global sums, gives
 * what one process computes on all rows. */
static void test_split_matches_single_process(void)
{
    const int n = 70, n1 = 27, k_dim = 12, m = 45, t = 17;
    struct sigreg_grid g;
    grid_or_die(&g, t, 3.0);
    float *z = xmalloc(sizeof(float) * n * k_dim);
    double *zd = xmalloc(sizeof(double) * n * k_dim);
    float *a = xmalloc(sizeof(float) * k_dim * m);
    double *ad = xmalloc(sizeof(double) * k_dim * m);
    float *dz_one = xcalloc(n * k_dim, sizeof(float));
    float *dz_two = xcalloc(n * k_dim, sizeof(float));
    float *x = xmalloc(sizeof(float) * n * m);
    float *dx = xmalloc(sizeof(float) * n * m);
    double *cs[2], *ss[2];
    for (int r = 0; r < 2; r++) {
        cs[r] = xmalloc(sizeof(double) * m * t);
        ss[r] = xmalloc(sizeof(double) * m * t);
    }
    void *mem;
    struct sigreg_scratch s = scratch_new(&mem, n, m, t);
    fill_inputs(z, zd, n, k_dim, 1.3, 400);
    fill_directions(a, ad, k_dim, m, 9);
    double one = sigreg_forward(NULL, &s, z, a, &g, n, k_dim, m);
    sigreg_backward(dz_one, &s, 1.0f, a, &g, k_dim, m);

    const int rows[2] = {n1, n - n1}, first[2] = {0, n1};
    for (int r = 0; r < 2; r++) {
        sigreg_project(x + (size_t)first[r] * m, z + (size_t)first[r] * k_dim,
                       a, rows[r], k_dim, m);
        sigreg_sums(cs[r], ss[r], x + (size_t)first[r] * m, &g, rows[r], m);
    }
    for (int i = 0; i < m * t; i++) { /* the all-reduce */
        cs[0][i] += cs[1][i];
        ss[0][i] += ss[1][i];
    }
    double two = sigreg_statistic(NULL, cs[0], ss[0], &g, n, m);
    /* Only the float partial sums of 64-row blocks differ (measured 7e-9
     * relative, 2e-7 for dz). */
    CU_ASSERT_DOUBLE_EQUAL(two, one, 1e-6 * fabs(one));
    for (int r = 0; r < 2; r++) {
        sigreg_backward_x(dx + (size_t)first[r] * m, 1.0f,
                          x + (size_t)first[r] * m, cs[0], ss[0], &g, n,
                          rows[r], m);
        sigreg_backward_z(dz_two + (size_t)first[r] * k_dim,
                          dx + (size_t)first[r] * m, a, rows[r], k_dim, m);
    }
    double worst = 0, scale = 0;
    for (int i = 0; i < n * k_dim; i++) {
        worst = fmax(worst, fabs(dz_one[i] - dz_two[i]));
        scale = fmax(scale, fabs(dz_one[i]));
    }
    CU_ASSERT(worst <= 1e-5 * scale);
    util_free_aligned(mem);
    for (int r = 0; r < 2; r++)
        free(cs[r]), free(ss[r]);
    free(z), free(zd), free(a), free(ad), free(dz_one), free(dz_two), free(x),
        free(dx);
}

/* Collapse: z = 0 gives C = 1, S = 0 on every slice, so every stat_m is
 * exactly N sum W (1 - phi)^2 = 0.402048 N, and the gradient vanishes. */
static void test_zero_input(void)
{
    const int n = 96, k_dim = 20, m = 50, t = 17;
    struct sigreg_grid g;
    grid_or_die(&g, t, 3.0);
    float *z = xcalloc(n * k_dim, sizeof(float));
    float *a = xmalloc(sizeof(float) * k_dim * m);
    float *dz = xcalloc(n * k_dim, sizeof(float));
    double *stat = xmalloc(sizeof(double) * m);
    void *mem;
    struct sigreg_scratch s = scratch_new(&mem, n, m, t);
    sigreg_directions(a, 5, 5, k_dim, m);
    double v = sigreg_forward(stat, &s, z, a, &g, n, k_dim, m);
    /* |C + iS| = 1: the debiased form gives the same value */
    CU_ASSERT_DOUBLE_EQUAL(v / n, 0.402048, 0.402048 * 1e-5);
    for (int j = 0; j < m; j++)
        CU_ASSERT_DOUBLE_EQUAL(stat[j] / n, 0.402048, 0.402048 * 1e-5);
    sigreg_backward(dz, &s, 1.0f, a, &g, k_dim, m);
    for (int i = 0; i < n * k_dim; i++)
        CU_ASSERT_EQUAL(dz[i], 0.0f);
    util_free_aligned(mem);
    free(z), free(a), free(dz), free(stat);
}

/* N(0,1) input: every projection is exactly N(0,1), C and S are unbiased,
 * so E[stat_m] = sum W (1 - phi^2) = 1.05246 for any N (bias floor).
 * Monte Carlo error: slices of one z are correlated (directions in K = 64
 * dims overlap), so the average over M slices is not an average of M
 * independent values (per-slice sd 0.95, but per-seed sd of the slice
 * average 0.092, measured over 400 seeds: ~108 effective slices). Seeds are
 * independent, so the standard error comes from the spread of the S = 64
 * per-seed averages (expected 0.092 / 8 = 0.0115) and we accept
 * |mean - 1.05246| <= 4.5 SE: with the SE estimated from 64 values
 * (Student t, 63 dof) a correct kernel fails this about 3 times in 10^5.
 * So that a noisy, broken kernel cannot pass on a wide tolerance, the SE
 * must also stay below 0.025 (about twice the expected value). */
static void test_gaussian_input_mean(void)
{
    const int n = 512, k_dim = 64, m = 1024, t = 17, seeds = 64;
    struct sigreg_grid g, gd;
    grid_or_die(&g, t, 3.0);
    gd = g;
    gd.debias = true;
    float *z = xmalloc(sizeof(float) * n * k_dim);
    double *zd = xmalloc(sizeof(double) * n * k_dim);
    float *a = xmalloc(sizeof(float) * k_dim * m);
    void *mem;
    struct sigreg_scratch s = scratch_new(&mem, n, m, t);
    /* [0]: biased, [1]: debiased, on the same samples and sums; the
     * debiased value runs through the fused forward. */
    double sum[2] = {0, 0}, sum2[2] = {0, 0};
    for (int r = 0; r < seeds; r++) {
        fill_inputs(z, zd, n, k_dim, 1.0, 1000 + r);
        sigreg_directions(a, 77, r, k_dim, m);
        double v[2];
        v[1] = sigreg_forward(NULL, &s, z, a, &gd, n, k_dim, m);
        v[0] = sigreg_statistic(NULL, s.cos_sum, s.sin_sum, &g, n, m);
        for (int b = 0; b < 2; b++) {
            sum[b] += v[b];
            sum2[b] += v[b] * v[b];
        }
    }
    static const double expect[2] = {1.05246, 0.0};
    for (int b = 0; b < 2; b++) {
        double mean = sum[b] / seeds;
        double sd = sqrt((sum2[b] - seeds * mean * mean) / (seeds - 1));
        double se = sd / sqrt(seeds);
        printf("\n  N(0,1) %s: mean %.5f (expect %g), per-seed sd %.4f, "
               "SE %.4f", b ? "debiased" : "biased", mean, expect[b], sd, se);
        CU_ASSERT(se < 0.025);
        CU_ASSERT(fabs(mean - expect[b]) <= 4.5 * se);
    }
    printf("\n");
    util_free_aligned(mem);
    free(z), free(zd), free(a);
}

/* By the algebra of sigreg.h, per slice
 *   debiased = biased + N/(N-1) sum_k W_k (C_k^2 + S_k^2 - 1),
 * checked on the reference means for a Gaussian, a wide (scale 3) and a
 * narrow (scale 0.2) input; far from Gaussian the two nearly agree (the
 * correction is at most N/(N-1) sum W in size), at N(0,1) they differ by
 * about the floor. */
static void test_debias_identity(void)
{
    const int n = 40, k_dim = 6, m = 9, t = 17;
    const double scales[3] = {1.0, 3.0, 0.2};
    struct sigreg_grid g, gd;
    grid_or_die(&g, t, 3.0);
    gd = g;
    gd.debias = true;
    double zd[40 * 6], ad[6 * 9], sb[9], sd[9];
    float zf[40 * 6], af[6 * 9];
    fill_directions(af, ad, k_dim, m, 3);
    double wsum = 0;
    for (int k = 0; k < t; k++)
        wsum += g.weight[k];
    for (int c = 0; c < 3; c++) {
        fill_inputs(zf, zd, n, k_dim, scales[c], 600 + c);
        sigreg_forward_ref(sb, zd, ad, &g, n, k_dim, m);
        sigreg_forward_ref(sd, zd, ad, &gd, n, k_dim, m);
        for (int j = 0; j < m; j++) {
            double corr = 0;
            for (int k = 0; k < t; k++) {
                double cm = 0, sm = 0;
                for (int i = 0; i < n; i++) {
                    double x = 0;
                    for (int d = 0; d < k_dim; d++)
                        x += zd[i * k_dim + d] * ad[d * m + j];
                    cm += cos(g.t[k] * x) / n;
                    sm += sin(g.t[k] * x) / n;
                }
                corr += g.weight[k] * (cm * cm + sm * sm - 1);
            }
            corr *= (double)n / (n - 1);
            CU_ASSERT_DOUBLE_EQUAL(sd[j], sb[j] + corr, 1e-12 * (1 + sb[j]));
            CU_ASSERT(corr <= 0 && corr >= -(double)n / (n - 1) * wsum);
        }
    }
}

static void run_debiased(void (*fn)(void))
{
    debias_mode = true;
    fn();
    debias_mode = false;
}
static void test_forward_debiased(void) { run_debiased(test_forward_matches_reference); }
static void test_backward_debiased(void) { run_debiased(test_backward_matches_reference); }
static void test_fd_debiased(void) { run_debiased(test_finite_differences); }
static void test_split_debiased(void) { run_debiased(test_split_matches_single_process); }
static void test_zero_debiased(void) { run_debiased(test_zero_input); }

/* A non-finite input must show in the statistic, never be hidden. */
static void test_nan_propagates(void)
{
    const int n = 8, k_dim = 4, m = 16, t = 17;
    struct sigreg_grid g;
    grid_or_die(&g, t, 3.0);
    float z[32], a[64];
    double zd[32];
    void *mem;
    struct sigreg_scratch s = scratch_new(&mem, n, m, t);
    fill_inputs(z, zd, n, k_dim, 1.0, 9);
    sigreg_directions(a, 1, 1, k_dim, m);
    z[5] = NAN;
    CU_ASSERT(isnan(sigreg_forward(NULL, &s, z, a, &g, n, k_dim, m)));
    z[5] = INFINITY;
    CU_ASSERT(!isfinite(sigreg_forward(NULL, &s, z, a, &g, n, k_dim, m)));
    util_free_aligned(mem);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"grid and sanity constants", test_grid},
        {"directions: stream, unit columns, steps",
         test_directions_stream_and_norms},
        {"directions: zero-norm guard", test_zero_norm_guard},
        {"recurrence accuracy |x| <= 10", test_recurrence_accuracy},
        {"forward fused vs reference", test_forward_matches_reference},
        {"backward fused vs reference", test_backward_matches_reference},
        {"central finite differences", test_finite_differences},
        {"split sums == single process", test_split_matches_single_process},
        {"zero input gives 0.402048 N", test_zero_input},
        {"N(0,1) input averages 1.05246, debiased 0", test_gaussian_input_mean},
        {"debiased = biased + N/(N-1) sum W (|C+iS|^2 - 1)", test_debias_identity},
        {"debiased: forward fused vs reference", test_forward_debiased},
        {"debiased: backward fused vs reference", test_backward_debiased},
        {"debiased: central finite differences", test_fd_debiased},
        {"debiased: split sums == single process", test_split_debiased},
        {"debiased: zero input gives 0.402048 N", test_zero_debiased},
        {"non-finite input propagates", test_nan_propagates},
        {NULL, NULL},
    };
    return testing_run("sigreg", cases);
}
