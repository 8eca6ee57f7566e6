/*
 * stat.c: lejepa-stat, which tells whether an embedding matrix looks like an
 * isotropic Gaussian by the same statistic the trainer minimises (SIGReg,
 * DESIGN.md §5, trainer/sigreg.h):
 *
 *   lejepa-stat [options] EMB.npy
 *
 * reads EMB.npy (float32 or float64, N x K), projects it on M unit
 * directions (drawn as the trainer draws them for (seed, step), or read from
 * --directions), and prints SIGReg, a summary of the per-slice statistics,
 * the reference values on the same grid and a reading in plain words; --json
 * prints one JSON object instead. --tests adds the classical normality
 * statistics of every slice (stat_tests.h). Rows are processed in chunks, so
 * memory is the matrix plus O(chunk * M). Start-up errors exit 2 with the
 * file named.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "npy.h"
#include "sigreg.h"
#include "stat_tests.h"
#include "compute.h"
#include "util.h"

#define STAT_CHUNK_BYTES (32u << 20)  /* projections held at once */
#define STAT_HEALTHY_RATIO 2.0        /* "close" = within 2x of the floor */
#define STAT_NARROW_STD 0.5           /* projection std below: collapsing */
#define STAT_WIDE_STD 2.0             /* projection std above: too wide */

struct stat_opts {
    int slices, knots, threads, json, standardize, debias;
    int slices_given, seed_given;
    unsigned tests;                  /* enum stat_test bits; 0: none */
    double t_max;
    uint64_t seed, step;
    const char *emb_path, *dir_path;
};

/* Quantiles of a sorted array with linear interpolation (numpy's default). */
struct stat_summary {
    double min, p10, median, p90, max;
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa-stat [options] EMB.npy\n"
        "\n"
        "Reads an embedding matrix (.npy, float32 or float64, N x K) and prints\n"
        "the SIGReg statistic (sliced Epps-Pulley, as in training) with a\n"
        "summary of the per-slice statistics, to check whether the embeddings\n"
        "are isotropic Gaussian N(0, I). A perfect Gaussian sample gives about\n"
        "1.05 on the default grid (the bias floor, for any N); a collapsed\n"
        "(all-zero) embedding gives 0.402 * N.\n"
        "\n"
        "  --slices M        random directions (default %d)\n"
        "  --knots T         quadrature knots on [0, t_max] (default %d)\n"
        "  --t-max X         last knot (default %g)\n"
        "  --seed S          directions of sigreg_directions(S, step) (default 0)\n"
        "  --step S          (default 0)\n"
        "  --directions FILE directions from a .npy (K x M, float32/float64);\n"
        "                    every column is scaled to unit length first (as the\n"
        "                    official code does); excludes --slices/--seed/--step\n"
        "  --debias          the unbiased (U-statistic) SIGReg, as the config key\n"
        "                    loss.sigreg_debias: drops the i = j terms, so a\n"
        "                    perfect Gaussian sample reads about 0 (single\n"
        "                    slices may go negative); all-zero still 0.402 * N\n"
        "  --standardize     center and scale every column to mean 0, std 1\n"
        "                    first: tests the shape apart from the scale\n"
        "  --tests LIST      also per-slice normality tests, a comma list of\n"
        "                    ad, cvm, watson, jb, moments (or all); prints each\n"
        "                    test's mean over slices and its per-slice values\n"
        "                    (JSON) or a summary (text). Projections in double.\n"
        "                    Anderson-Darling (ad), Cramer-von Mises (cvm) and\n"
        "                    Watson's U^2 (watson) test against the fixed\n"
        "                    N(0, 1) without standardising the projections (as\n"
        "                    SIGReg: the target is N(0, I), scale included);\n"
        "                    ad as scipy.stats.goodness_of_fit(norm,\n"
        "                    known_params={'loc': 0, 'scale': 1},\n"
        "                    statistic='ad'), cvm as scipy.stats.cramervonmises(\n"
        "                    x, 'norm'), U^2 = W^2 - n (mean F(x) - 1/2)^2.\n"
        "                    Jarque-Bera (jb) and moments (mean, variance with\n"
        "                    ddof 1, biased skewness and excess kurtosis) use\n"
        "                    the sample's own mean and spread, as\n"
        "                    scipy.stats.jarque_bera and scipy.stats.describe\n"
        "  --threads N       OpenMP / BLAS threads (default: all cores)\n"
        "  --json            print one JSON object instead of text\n"
        "  --help, --version\n"
        "\n"
        "Exit status: 0 on success, 2 on bad arguments or unreadable input.\n",
        SIGREG_DEFAULT_SLICES, SIGREG_DEFAULT_KNOTS, SIGREG_DEFAULT_T_MAX);
}

static uint64_t parse_u64(const char *opt, const char *s)
{
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        die("%s %s: expected a non-negative integer", opt, s);
    return v;
}

static void parse_args(int argc, char **argv, struct stat_opts *o)
{
    static const struct option longs[] = {
        {"slices", required_argument, NULL, 'm'},
        {"knots", required_argument, NULL, 'k'},
        {"t-max", required_argument, NULL, 'x'},
        {"seed", required_argument, NULL, 's'},
        {"step", required_argument, NULL, 'p'},
        {"directions", required_argument, NULL, 'd'},
        {"standardize", no_argument, NULL, 'z'},
        {"debias", no_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"tests", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->slices = SIGREG_DEFAULT_SLICES;
    o->knots = SIGREG_DEFAULT_KNOTS;
    o->t_max = SIGREG_DEFAULT_T_MAX;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm':
            o->slices = (int)util_parse_long("--slices", optarg, 1, 1 << 20);
            o->slices_given = 1;
            break;
        case 'k':
            o->knots = (int)util_parse_long("--knots", optarg, 2, SIGREG_MAX_KNOTS);
            break;
        case 'x':
            errno = 0;
            o->t_max = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->t_max > 0) ||
                !isfinite(o->t_max))
                die("--t-max %s: expected a positive number", optarg);
            break;
        case 's': o->seed = parse_u64("--seed", optarg); o->seed_given = 1; break;
        case 'p': o->step = parse_u64("--step", optarg); o->seed_given = 1; break;
        case 'd': o->dir_path = optarg; break;
        case 'z': o->standardize = 1; break;
        case 'b': o->debias = 1; break;
        case 't': o->threads = (int)util_parse_long("--threads", optarg, 1, 1024); break;
        case 'j': o->json = 1; break;
        case 'T': o->tests = stat_tests_parse(optarg); break;
        case 'h': usage(stdout); exit(0);
        case 'V': compute_print_build_info(stdout, "lejepa-stat"); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind >= argc)
        die("missing EMB.npy; try lejepa-stat --help");
    if (optind + 1 < argc)
        die("unexpected argument '%s' (one embedding file at a time)",
            argv[optind + 1]);
    o->emb_path = argv[optind];
    if (o->dir_path && (o->slices_given || o->seed_given))
        die("--directions %s: M and the directions come from the file; drop "
            "--slices, --seed and --step", o->dir_path);
}

/* Reads a matrix or exits 2; refuses NaN / Inf, naming the entry. */
static float *load_matrix(const char *path, const char *what, int64_t *rows,
                          int64_t *cols)
{
    char err[ERR_LEN];
    float *m;
    if (npy_read_matrix_f32(path, &m, rows, cols, err) < 0)
        die("%s", err);
    size_t count = (size_t)*rows * (size_t)*cols;
    for (size_t i = 0; i < count; i++)
        if (!isfinite(m[i]))
            die("%s: %s entry at row %zu, column %zu is %g; remove or fix "
                "non-finite values first", path, what, i / (size_t)*cols,
                i % (size_t)*cols, m[i]);
    return m;
}

/* Centers and scales every column of z (N, K) to mean 0, std 1 (divisor N);
 * a constant column becomes all zero. Returns the number of such columns. */
static int standardize_columns(float *z, int64_t n, int k_dim)
{
    double *mean = xcalloc((size_t)k_dim, sizeof *mean);
    double *sq = xcalloc((size_t)k_dim, sizeof *sq);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < k_dim; k++)
            mean[k] += z[i * k_dim + k];
    for (int k = 0; k < k_dim; k++)
        mean[k] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < k_dim; k++) {
            double d = z[i * k_dim + k] - mean[k];
            sq[k] += d * d;
        }
    int constant = 0;
    for (int k = 0; k < k_dim; k++) {
        double sd = sqrt(sq[k] / (double)n);
        /* A float column with one value can show a spread of rounding
         * noise around its double mean: treat that as constant too. */
        sq[k] = sd > 1e-6 * fabs(mean[k]) ? 1.0 / sd : 0.0;
        constant += sq[k] == 0.0;
    }
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < k_dim; k++)
            z[i * k_dim + k] = (float)((z[i * k_dim + k] - mean[k]) * sq[k]);
    free(mean);
    free(sq);
    return constant;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *sorted, int n, double q)
{
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1)
        return sorted[n - 1];
    return sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]);
}

static struct stat_summary summarize(const double *v, int n)
{
    double *s = xmalloc((size_t)n * sizeof *s);
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    struct stat_summary r = {s[0], quantile(s, n, 0.1), quantile(s, n, 0.5),
                             quantile(s, n, 0.9), s[n - 1]};
    free(s);
    return r;
}

/* What the statistic and the reading need, over all N rows. */
struct stat_result {
    double sigreg;
    double *stat;        /* (M) per-slice statistic */
    double *proj_std;    /* (M) std of each slice's projections */
    double floor;        /* E[biased SIGReg] for an N(0, I) sample:
                            sum W (1 - phi^2) */
    int debias;
    double gaussian;     /* E[SIGReg] for N(0, I): the floor, or 0 debiased */
    double biased;       /* SIGReg on the biased scale, for the reading:
                            the debiased value + the floor on average */
    double collapsed;    /* SIGReg of all zeros: N sum W (1 - phi)^2 */
};

/* SIGReg of z (N, K) under a (K, M), in row chunks: per-slice sums of
 * cos / sin (and of x, x^2 for the projection spread) add up over chunks,
 * exactly the split the data-parallel trainer uses across ranks. */
static void stat_compute(struct stat_result *r, const float *z, const float *a,
                         const struct sigreg_grid *g, int64_t n, int k_dim,
                         int slices)
{
    size_t mt = (size_t)slices * (size_t)g->knots;
    int64_t chunk = STAT_CHUNK_BYTES / ((size_t)slices * sizeof(float));
    if (chunk < 1)
        chunk = 1;
    if (chunk > n)
        chunk = n;
    float *x = xmalloc_aligned((size_t)chunk * (size_t)slices * sizeof *x);
    double *cs = xmalloc_aligned(mt * sizeof *cs);
    double *ss = xmalloc_aligned(mt * sizeof *ss);
    double *cs_tot = xcalloc(mt, sizeof *cs_tot);
    double *ss_tot = xcalloc(mt, sizeof *ss_tot);
    double *sum = xcalloc((size_t)slices, sizeof *sum);
    double *sum2 = xcalloc((size_t)slices, sizeof *sum2);
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        int rows = (int)(n - r0 < chunk ? n - r0 : chunk);
        sigreg_project(x, z + r0 * k_dim, a, rows, k_dim, slices);
        sigreg_sums(cs, ss, x, g, rows, slices);
        for (size_t i = 0; i < mt; i++) {
            cs_tot[i] += cs[i];
            ss_tot[i] += ss[i];
        }
        for (int i = 0; i < rows; i++)
            for (int m = 0; m < slices; m++) {
                double v = x[(size_t)i * slices + m];
                sum[m] += v;
                sum2[m] += v * v;
            }
    }
    r->stat = xmalloc((size_t)slices * sizeof *r->stat);
    r->sigreg = sigreg_statistic(r->stat, cs_tot, ss_tot, g, (long)n, slices);
    r->proj_std = xmalloc((size_t)slices * sizeof *r->proj_std);
    for (int m = 0; m < slices; m++) {
        double mean = sum[m] / (double)n, var = sum2[m] / (double)n - mean * mean;
        r->proj_std[m] = sqrt(var > 0 ? var : 0);
    }
    r->floor = 0;
    r->collapsed = 0;
    for (int k = 0; k < g->knots; k++) {
        r->floor += g->weight[k] * (1 - g->phi[k] * g->phi[k]);
        r->collapsed += g->weight[k] * (1 - g->phi[k]) * (1 - g->phi[k]);
    }
    r->collapsed *= (double)n;
    r->debias = g->debias;
    r->gaussian = g->debias ? 0.0 : r->floor;
    r->biased = g->debias ? r->sigreg + r->floor : r->sigreg;
    util_free_aligned(x);
    util_free_aligned(cs);
    util_free_aligned(ss);
    free(cs_tot);
    free(ss_tot);
    free(sum);
    free(sum2);
}

/* One sentence on where the value sits, using the projections' spread to
 * tell collapse (too narrow) from too wide from a wrong shape. */
static void print_reading(FILE *out, const struct stat_result *r,
                          const struct stat_summary *sd, int standardized)
{
    double ratio = r->biased / r->floor;
    if (ratio <= STAT_HEALTHY_RATIO) {
        fprintf(out, "reading     close to isotropic N(0, I): %.2fx the value "
                "a perfect Gaussian sample gives (a healthy run sits near "
                "1-2).\n", ratio);
        return;
    }
    fprintf(out, "reading     not isotropic N(0, I): %.3gx the Gaussian floor%s, "
            "%.3g of the all-zero value. ", ratio,
            r->debias ? " (debiased value + the floor)" : "",
            r->sigreg / r->collapsed);
    if (sd->median < STAT_NARROW_STD)
        fprintf(out, "Projections are too narrow (median std %.3g, want 1): "
                "collapsing towards a point.\n", sd->median);
    else if (sd->median > STAT_WIDE_STD)
        fprintf(out, "Projections are too wide (median std %.3g, want 1)%s.\n",
                sd->median, standardized ? "" : "; --standardize tests the "
                "shape apart from the scale");
    else
        fprintf(out, "The scale is about right (median projection std %.3g), "
                "so the shape is off: some directions dominate, tails are "
                "heavy, or the points form clusters.\n", sd->median);
}

static void print_text(const struct stat_opts *o, const struct stat_result *r,
                       const struct stat_tests *t, int64_t n, int k_dim,
                       int slices, int constant)
{
    struct stat_summary s = summarize(r->stat, slices);
    struct stat_summary sd = summarize(r->proj_std, slices);
    printf("embeddings  %s: N = %lld rows, K = %d columns%s\n", o->emb_path,
           (long long)n, k_dim, o->standardize ? ", standardized" : "");
    if (constant)
        printf("            (%d constant columns set to 0)\n", constant);
    if (o->dir_path)
        printf("directions  M = %d from %s (columns scaled to unit length)\n",
               slices, o->dir_path);
    else
        printf("directions  M = %d random (seed %llu, step %llu)\n", slices,
               (unsigned long long)o->seed, (unsigned long long)o->step);
    printf("grid        T = %d knots on [0, %g]\n", o->knots, o->t_max);
    printf("SIGReg      %.6g%s\n", r->sigreg, o->debias ? " (debiased)" : "");
    printf("per slice   min %.4g  p10 %.4g  median %.4g  p90 %.4g  max %.4g\n",
           s.min, s.p10, s.median, s.p90, s.max);
    printf("proj. std   min %.4g  p10 %.4g  median %.4g  p90 %.4g  max %.4g"
           "  (1 for N(0, I))\n", sd.min, sd.p10, sd.median, sd.p90, sd.max);
    if (o->debias)
        printf("reference   0 on average for a perfect N(0, I) sample "
               "(debiased; the biased floor is %.6g); %.6g for a collapsed "
               "(all-zero) one (%.6g * N)\n", r->floor, r->collapsed,
               r->collapsed / (double)n);
    else
        printf("reference   %.6g for a perfect N(0, I) sample (the bias floor, any "
           "N); %.6g for a collapsed (all-zero) one (%.6g * N)\n", r->floor,
           r->collapsed, r->collapsed / (double)n);
    print_reading(stdout, r, &sd, o->standardize);
    if (t->mask) {
        printf("tests       per slice, over %d slices:\n", slices);
        stat_tests_print_text(stdout, t);
    }
}

static void print_json(const struct stat_opts *o, const struct stat_result *r,
                       const struct stat_tests *t, int64_t n, int k_dim,
                       int slices)
{
    struct stat_summary s = summarize(r->stat, slices);
    struct stat_summary sd = summarize(r->proj_std, slices);
    printf("{\"sigreg\": %.9g, \"n\": %lld, \"k\": %d, \"slices\": %d, "
           "\"knots\": %d, \"t_max\": %.9g, \"file\": ", r->sigreg,
           (long long)n, k_dim, slices, o->knots, o->t_max);
    json_write_string(stdout, o->emb_path);
    if (o->dir_path) {
        printf(", \"directions\": ");
        json_write_string(stdout, o->dir_path);
    } else {
        printf(", \"seed\": %llu, \"step\": %llu", (unsigned long long)o->seed,
               (unsigned long long)o->step);
    }
    printf(", \"standardize\": %s, \"debias\": %s",
           o->standardize ? "true" : "false", o->debias ? "true" : "false");
    printf(", \"per_slice\": {\"min\": %.9g, \"p10\": %.9g, \"median\": %.9g, "
           "\"p90\": %.9g, \"max\": %.9g}", s.min, s.p10, s.median, s.p90, s.max);
    printf(", \"projection_std\": {\"min\": %.9g, \"p10\": %.9g, "
           "\"median\": %.9g, \"p90\": %.9g, \"max\": %.9g}", sd.min, sd.p10,
           sd.median, sd.p90, sd.max);
    printf(", \"reference\": {\"gaussian\": %.9g, \"collapsed\": %.9g}",
           r->gaussian, r->collapsed);
    if (t->mask) {
        printf(", ");
        stat_tests_print_json(stdout, t);
    }
    printf("}\n");
}

/* The directions for --tests in double, every column scaled to unit length
 * in double: from the file as stored (float32 or float64), or the float
 * random directions. (K, M); the caller frees it with free(). */
static double *unit_directions_f64(const char *path, const float *a,
                                   int k_dim, int slices)
{
    double *d = xmalloc((size_t)k_dim * (size_t)slices * sizeof *d);
    size_t count = (size_t)k_dim * (size_t)slices;
    if (path) {
        char err[ERR_LEN];
        struct npy_array arr;
        if (npy_read(path, &arr, err) < 0)
            die("%s", err);
        /* load_matrix read the same file: shape and values are checked. */
        for (size_t i = 0; i < count; i++)
            d[i] = arr.dtype == NPY_F64 ? ((const double *)arr.data)[i]
                                        : ((const float *)arr.data)[i];
        npy_free(&arr);
    } else {
        for (size_t i = 0; i < count; i++)
            d[i] = a[i];
    }
    for (int m = 0; m < slices; m++) {
        double ss = 0.0;
        for (int k = 0; k < k_dim; k++)
            ss += d[(size_t)k * slices + m] * d[(size_t)k * slices + m];
        /* a zero column becomes e_(m mod K), as sigreg_normalize_columns */
        for (int k = 0; k < k_dim; k++)
            d[(size_t)k * slices + m] =
                ss > 0.0 ? d[(size_t)k * slices + m] / sqrt(ss)
                         : (k == m % k_dim ? 1.0 : 0.0);
    }
    return d;
}

int main(int argc, char **argv)
{
    struct stat_opts o;
    parse_args(argc, argv, &o);
    compute_set_threads(o.threads);
    char err[ERR_LEN];
    struct sigreg_grid g;
    if (sigreg_grid_init(&g, o.knots, o.t_max, err) < 0)
        die("%s", err);
    g.debias = o.debias;

    int64_t n, k64;
    float *z = load_matrix(o.emb_path, "embedding", &n, &k64);
    if (n < 2)
        die("%s: N = %lld rows; the statistic needs at least 2 embeddings",
            o.emb_path, (long long)n);
    if (k64 < 1 || k64 > INT_MAX)
        die("%s: K = %lld columns; want 1..%d", o.emb_path, (long long)k64,
            INT_MAX);
    int k_dim = (int)k64;
    int constant = o.standardize ? standardize_columns(z, n, k_dim) : 0;

    float *a;
    int slices = o.slices;
    double *a64 = NULL;
    if (o.dir_path) {
        int64_t rows, cols;
        a = load_matrix(o.dir_path, "direction", &rows, &cols);
        if (rows != k64)
            die("%s: directions have %lld rows but the embeddings in %s have "
                "K = %d columns; want a K x M matrix", o.dir_path,
                (long long)rows, o.emb_path, k_dim);
        if (cols < 1 || cols > (1 << 20))
            die("%s: M = %lld directions; want 1..%d", o.dir_path,
                (long long)cols, 1 << 20);
        slices = (int)cols;
        if (o.tests)
            a64 = unit_directions_f64(o.dir_path, NULL, k_dim, slices);
        sigreg_normalize_columns(a, k_dim, slices);
    } else {
        a = xmalloc_aligned((size_t)k_dim * (size_t)slices * sizeof *a);
        sigreg_directions(a, o.seed, o.step, k_dim, slices);
    }

    if (o.tests && !a64)
        a64 = unit_directions_f64(NULL, a, k_dim, slices);

    struct stat_result r;
    stat_compute(&r, z, a, &g, n, k_dim, slices);
    struct stat_tests t = {0};
    if (o.tests)
        stat_tests_compute(&t, o.tests, z, a64, n, k_dim, slices);
    if (o.json)
        print_json(&o, &r, &t, n, k_dim, slices);
    else
        print_text(&o, &r, &t, n, k_dim, slices, constant);
    if (fflush(stdout) != 0)
        die("writing the output failed: %s", strerror(errno));
    free(r.stat);
    free(r.proj_std);
    stat_tests_free(&t);
    free(a64);
    util_free_aligned(a);
    util_free_aligned(z);
    return 0;
}
