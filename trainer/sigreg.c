/*
 * sigreg.c: the sliced Epps-Pulley statistic and its gradient (see sigreg.h
 * for the math and the API). Fused kernels work on tiles of SIGREG_LANES
 * consecutive slices, vectorised across the tile; each tile is one OpenMP
 * work item with disjoint outputs. BLAS is only called from
 * sigreg_project / sigreg_backward_z, never inside a parallel region.
 * Nothing here allocates.
 */
#include "sigreg.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "rng.h"
#include "util.h"

#define SIGREG_LANES 16      /* slices per tile: one AVX-512 / two AVX2 regs */
#define SIGREG_ROW_BLOCK 64  /* rows summed in float before a double flush */
#define SIGREG_ROWS 4        /* rows in flight: independent recurrence chains */

#ifdef __FMA__
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

int sigreg_grid_init(struct sigreg_grid *g, int knots, double t_max,
                     char *err)
{
    if (knots < 2 || knots > SIGREG_MAX_KNOTS)
        return errf(err, "sigreg: knots = %d, want 2..%d", knots,
                    SIGREG_MAX_KNOTS);
    if (!(t_max > 0.0) || !isfinite(t_max))
        return errf(err, "sigreg: t_max = %g, want a positive number", t_max);
    memset(g, 0, sizeof *g);
    g->knots = knots;
    g->t_max = t_max;
    g->dt = t_max / (knots - 1);
    for (int k = 0; k < knots; k++) {
        /* linspace(0, t_max, T): the last knot is t_max exactly. */
        double t = (k == knots - 1) ? t_max : k * g->dt;
        double w = (k == 0 || k == knots - 1) ? g->dt : 2.0 * g->dt;
        g->t[k] = t;
        g->phi[k] = exp(-0.5 * t * t);
        g->weight[k] = w * g->phi[k];
    }
    return 0;
}

void sigreg_normalize_columns(float *a, int k_dim, int slices)
{
    CHECK(k_dim > 0 && slices > 0);
    /* Tiles of columns so that every pass walks rows contiguously. */
    enum { COLS = 64 };
    int tiles = (slices + COLS - 1) / COLS;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < tiles; b++) {
        int m0 = b * COLS, w = slices - m0 < COLS ? slices - m0 : COLS;
        double ss[COLS] = {0};
        for (int k = 0; k < k_dim; k++) {
            const float *row = a + (size_t)k * slices + m0;
            for (int j = 0; j < w; j++)
                ss[j] += (double)row[j] * row[j];
        }
        for (int j = 0; j < w; j++)
            ss[j] = ss[j] > 0.0 ? 1.0 / sqrt(ss[j]) : 0.0;
        for (int k = 0; k < k_dim; k++) {
            float *row = a + (size_t)k * slices + m0;
            for (int j = 0; j < w; j++) /* a zero column becomes e_(m mod K) */
                row[j] = ss[j] > 0.0 ? (float)(row[j] * ss[j])
                                     : (k == (m0 + j) % k_dim ? 1.0f : 0.0f);
        }
    }
}

void sigreg_directions(float *a, uint64_t seed, uint64_t step, int k_dim,
                       int slices)
{
    CHECK(k_dim > 0 && slices > 0);
    /* Counter-based: row k starts at normal number k * M, i.e. counter
     * 2 k M (each normal consumes two values), so rows fill in parallel. */
#pragma omp parallel for schedule(static)
    for (int k = 0; k < k_dim; k++) {
        struct rng r;
        rng_init(&r, seed, step, SIGREG_RNG_STREAM, 0);
        r.counter = 2 * (uint64_t)k * (uint64_t)slices;
        float *row = a + (size_t)k * slices;
        for (int m = 0; m < slices; m++)
            row[m] = (float)rng_normal(&r);
    }
    sigreg_normalize_columns(a, k_dim, slices);
}

void sigreg_project(float *x, const float *z, const float *a, int n,
                    int k_dim, int slices)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, slices, k_dim,
                1.0f, z, k_dim, a, slices, 0.0f, x, slices);
}

void sigreg_backward_z(float *dz, const float *dx, const float *a, int n,
                       int k_dim, int slices)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, k_dim, slices,
                1.0f, dx, slices, a, slices, 1.0f, dz, k_dim);
}

/* cos and sin of theta = dt * x for one tile row, branch-free so that the
 * lane loop vectorises: quadrant reduction with a three-part pi/2
 * (Cody-Waite, exact products for |quadrant| < 2^16), then the cephes
 * minimax polynomials on [-pi/4, pi/4]. Non-finite x gives non-finite
 * results; the quadrant is clamped so the int conversion is always defined. */
static inline void sincos_lanes(float *restrict c, float *restrict s,
                                const float *restrict x, float dt)
{
    for (int j = 0; j < SIGREG_LANES; j++) {
        float th = dt * x[j];
        float v = th * 0.636619772367581343f;
        v = v > 4194304.0f ? 4194304.0f : v;
        v = v < -4194304.0f ? -4194304.0f : v;
        float q = (v + 12582912.0f) - 12582912.0f; /* round to nearest */
        q = (q == q) ? q : 0.0f;
        float r = MADD(q, -1.5703125f, th);
        r = MADD(q, -4.837512969970703125e-4f, r);
        r = MADD(q, -7.54978995489188216e-8f, r);
        float r2 = r * r;
        float ps = MADD(MADD(-1.9515295891e-4f, r2, 8.3321608736e-3f), r2,
                        -1.6666654611e-1f);
        ps = MADD(ps * r2, r, r);
        float pc = MADD(MADD(2.443315711809948e-5f, r2,
                             -1.388731625493765e-3f), r2,
                        4.166664568298827e-2f);
        pc = MADD(pc * r2, r2, MADD(-0.5f, r2, 1.0f));
        int quad = (int)q & 3;
        float sv = (quad & 1) ? pc : ps;
        float cv = (quad & 1) ? ps : pc;
        s[j] = (quad & 2) ? -sv : sv;
        c[j] = ((quad + 1) & 2) ? -cv : cv;
    }
}

/* Copies up to w slices of one row into a full tile, zero-padded. */
static inline void load_lanes(float *restrict dst, const float *restrict src,
                              int w)
{
    for (int j = 0; j < SIGREG_LANES; j++)
        dst[j] = j < w ? src[j] : 0.0f;
}

/* Adds cos / sin of t_k x for `rows` consecutive rows of one tile into
 * ac, as (T, LANES). The recurrence is a chain of dependent multiplies per
 * row; interleaving SIGREG_ROWS rows gives the core independent chains. */
static inline __attribute__((always_inline)) void
sums_rows(float ac[][SIGREG_LANES], float as[][SIGREG_LANES],
          const float *x, int slices, int w, int rows, int nk, float dt)
{
    float c1[SIGREG_ROWS][SIGREG_LANES], s1[SIGREG_ROWS][SIGREG_LANES];
    float c[SIGREG_ROWS][SIGREG_LANES], s[SIGREG_ROWS][SIGREG_LANES];
    for (int r = 0; r < rows; r++) {
        float xv[SIGREG_LANES];
        load_lanes(xv, x + (size_t)r * slices, w);
        sincos_lanes(c1[r], s1[r], xv, dt);
        for (int j = 0; j < SIGREG_LANES; j++) {
            c[r][j] = c1[r][j];
            s[r][j] = s1[r][j];
        }
    }
    for (int j = 0; j < SIGREG_LANES; j++) {
        float sc = c1[0][j], ss = s1[0][j];
        for (int r = 1; r < rows; r++) {
            sc += c1[r][j];
            ss += s1[r][j];
        }
        ac[1][j] += sc;
        as[1][j] += ss;
    }
    for (int k = 2; k < nk; k++) {
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < SIGREG_LANES; j++) {
                float cn = MADD(c[r][j], c1[r][j], -s[r][j] * s1[r][j]);
                float sn = MADD(s[r][j], c1[r][j], c[r][j] * s1[r][j]);
                c[r][j] = cn;
                s[r][j] = sn;
            }
        for (int j = 0; j < SIGREG_LANES; j++) {
            float sc = c[0][j], ss = s[0][j];
            for (int r = 1; r < rows; r++) {
                sc += c[r][j];
                ss += s[r][j];
            }
            ac[k][j] += sc;
            as[k][j] += ss;
        }
    }
}

static void sums_tile(double *cos_sum, double *sin_sum, const float *x,
                      const struct sigreg_grid *g, int n, int slices, int m0,
                      int w)
{
    const int nk = g->knots;
    const float dt = (float)g->dt;
    float ac[SIGREG_MAX_KNOTS][SIGREG_LANES];
    float as[SIGREG_MAX_KNOTS][SIGREG_LANES];
    double dc[SIGREG_MAX_KNOTS][SIGREG_LANES];
    double ds[SIGREG_MAX_KNOTS][SIGREG_LANES];
    memset(dc, 0, sizeof dc);
    memset(ds, 0, sizeof ds);
    for (int n0 = 0; n0 < n; n0 += SIGREG_ROW_BLOCK) {
        int n1 = n0 + SIGREG_ROW_BLOCK < n ? n0 + SIGREG_ROW_BLOCK : n;
        memset(ac, 0, sizeof(float) * SIGREG_LANES * nk);
        memset(as, 0, sizeof(float) * SIGREG_LANES * nk);
        int i = n0;
        for (; i + SIGREG_ROWS <= n1; i += SIGREG_ROWS)
            sums_rows(ac, as, x + (size_t)i * slices + m0, slices, w,
                      SIGREG_ROWS, nk, dt);
        for (; i < n1; i++)
            sums_rows(ac, as, x + (size_t)i * slices + m0, slices, w, 1, nk,
                      dt);
        for (int k = 1; k < nk; k++)
            for (int j = 0; j < SIGREG_LANES; j++) {
                dc[k][j] += ac[k][j];
                ds[k][j] += as[k][j];
            }
    }
    for (int j = 0; j < w; j++) {
        double *cm = cos_sum + (size_t)(m0 + j) * nk;
        double *sm = sin_sum + (size_t)(m0 + j) * nk;
        cm[0] = n; /* t_0 = 0: cos = 1, sin = 0 exactly */
        sm[0] = 0.0;
        for (int k = 1; k < nk; k++) {
            cm[k] = dc[k][j];
            sm[k] = ds[k][j];
        }
    }
}

void sigreg_sums(double *cos_sum, double *sin_sum, const float *x,
                 const struct sigreg_grid *g, int n, int slices)
{
    CHECK(n > 0 && slices > 0 && g->knots >= 2);
    int tiles = (slices + SIGREG_LANES - 1) / SIGREG_LANES;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < tiles; b++) {
        int m0 = b * SIGREG_LANES;
        int w = slices - m0 < SIGREG_LANES ? slices - m0 : SIGREG_LANES;
        sums_tile(cos_sum, sin_sum, x, g, n, slices, m0, w);
    }
}

/* One knot's term of stat_m / N from the means C, S: |C + iS - phi|^2, or
 * its unbiased form (sigreg.h). */
static double term(const struct sigreg_grid *g, double c, double s,
                   double phi, long n)
{
    if (!g->debias)
        return (c - phi) * (c - phi) + s * s;
    return ((double)n * (c * c + s * s) - 1.0) / (double)(n - 1) -
           2.0 * c * phi + phi * phi;
}

/* The factor r on C and S in the gradient: N / (N - 1) debiased, else 1. */
static double grad_ratio(const struct sigreg_grid *g, long n)
{
    return g->debias ? (double)n / (double)(n - 1) : 1.0;
}

double sigreg_statistic(double *stat, const double *cos_sum,
                        const double *sin_sum, const struct sigreg_grid *g,
                        long n_total, int slices)
{
    CHECK(n_total > (g->debias ? 1 : 0) && slices > 0);
    const int nk = g->knots;
    double total = 0.0;
    for (int m = 0; m < slices; m++) {
        double e = 0.0;
        for (int k = 0; k < nk; k++) {
            double cm = cos_sum[(size_t)m * nk + k] / n_total;
            double sm = sin_sum[(size_t)m * nk + k] / n_total;
            e += g->weight[k] * term(g, cm, sm, g->phi[k], n_total);
        }
        e *= n_total;
        if (stat)
            stat[m] = e;
        total += e;
    }
    return total / slices;
}

/* dx of `rows` consecutive rows of one tile: sum_k ca_k cos(t_k x) +
 * cb_k sin(t_k x); rows interleaved as in sums_rows. */
static inline __attribute__((always_inline)) void
backward_rows(float *dx, float ca[][SIGREG_LANES], float cb[][SIGREG_LANES],
              const float *x, int slices, int w, int rows, int nk, float dt)
{
    float c1[SIGREG_ROWS][SIGREG_LANES], s1[SIGREG_ROWS][SIGREG_LANES];
    float c[SIGREG_ROWS][SIGREG_LANES], s[SIGREG_ROWS][SIGREG_LANES];
    float acc[SIGREG_ROWS][SIGREG_LANES];
    for (int r = 0; r < rows; r++) {
        float xv[SIGREG_LANES];
        load_lanes(xv, x + (size_t)r * slices, w);
        sincos_lanes(c1[r], s1[r], xv, dt);
        for (int j = 0; j < SIGREG_LANES; j++) {
            c[r][j] = c1[r][j];
            s[r][j] = s1[r][j];
            acc[r][j] = MADD(ca[1][j], c1[r][j], cb[1][j] * s1[r][j]);
        }
    }
    for (int k = 2; k < nk; k++)
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < SIGREG_LANES; j++) {
                float cn = MADD(c[r][j], c1[r][j], -s[r][j] * s1[r][j]);
                float sn = MADD(s[r][j], c1[r][j], c[r][j] * s1[r][j]);
                c[r][j] = cn;
                s[r][j] = sn;
                acc[r][j] = MADD(ca[k][j], cn, MADD(cb[k][j], sn, acc[r][j]));
            }
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < w; j++)
            dx[(size_t)r * slices + j] = acc[r][j];
}

static void backward_tile(float *dx, float dloss, const float *x,
                          const double *cos_sum, const double *sin_sum,
                          const struct sigreg_grid *g, long n_total, int n,
                          int slices, int m0, int w)
{
    const int nk = g->knots;
    const float dt = (float)g->dt;
    /* dx = sum_k ca_k cos(t_k x) + cb_k sin(t_k x); k = 0 has t_0 = 0. */
    float ca[SIGREG_MAX_KNOTS][SIGREG_LANES];
    float cb[SIGREG_MAX_KNOTS][SIGREG_LANES];
    double scale = 2.0 * (double)dloss / slices;
    double r = grad_ratio(g, n_total);
    for (int k = 1; k < nk; k++)
        for (int j = 0; j < SIGREG_LANES; j++) {
            double cm = 0.0, sm = 0.0;
            if (j < w) {
                size_t at = (size_t)(m0 + j) * nk + k;
                cm = r * (cos_sum[at] / n_total) - g->phi[k];
                sm = r * (sin_sum[at] / n_total);
            }
            double f = scale * g->weight[k] * g->t[k];
            ca[k][j] = (float)(f * sm);
            cb[k][j] = (float)(-f * cm);
        }
    int i = 0;
    for (; i + SIGREG_ROWS <= n; i += SIGREG_ROWS)
        backward_rows(dx + (size_t)i * slices + m0, ca, cb,
                      x + (size_t)i * slices + m0, slices, w, SIGREG_ROWS, nk,
                      dt);
    for (; i < n; i++)
        backward_rows(dx + (size_t)i * slices + m0, ca, cb,
                      x + (size_t)i * slices + m0, slices, w, 1, nk, dt);
}

void sigreg_backward_x(float *dx, float dloss, const float *x,
                       const double *cos_sum, const double *sin_sum,
                       const struct sigreg_grid *g, long n_total, int n,
                       int slices)
{
    CHECK(n > 0 && n_total >= n && slices > 0 && g->knots >= 2);
    CHECK(n_total > 1 || !g->debias);
    int tiles = (slices + SIGREG_LANES - 1) / SIGREG_LANES;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < tiles; b++) {
        int m0 = b * SIGREG_LANES;
        int w = slices - m0 < SIGREG_LANES ? slices - m0 : SIGREG_LANES;
        backward_tile(dx, dloss, x, cos_sum, sin_sum, g, n_total, n, slices,
                      m0, w);
    }
}

/* Rounds a byte count up to the 64-byte alignment of every piece. */
static size_t align64(size_t bytes)
{
    return (bytes + 63) & ~(size_t)63;
}

size_t sigreg_scratch_size(int n, int slices, int knots)
{
    CHECK(n > 0 && slices > 0 && knots >= 2);
    size_t nm = (size_t)n * slices, mt = (size_t)slices * knots;
    return 2 * align64(nm * sizeof(float)) + 2 * align64(mt * sizeof(double));
}

void sigreg_scratch_init(struct sigreg_scratch *s, void *mem, int n,
                         int slices, int knots)
{
    CHECK(mem && ((uintptr_t)mem & 63) == 0);
    size_t nm = (size_t)n * slices, mt = (size_t)slices * knots;
    char *p = mem;
    s->x = (float *)p;
    p += align64(nm * sizeof(float));
    s->dx = (float *)p;
    p += align64(nm * sizeof(float));
    s->cos_sum = (double *)p;
    p += align64(mt * sizeof(double));
    s->sin_sum = (double *)p;
    s->n_cap = n;
    s->n = 0;
}

double sigreg_forward(double *stat, struct sigreg_scratch *s, const float *z,
                      const float *a, const struct sigreg_grid *g, int n,
                      int k_dim, int slices)
{
    CHECK(n > 0 && n <= s->n_cap);
    s->n = n;
    sigreg_project(s->x, z, a, n, k_dim, slices);
    sigreg_sums(s->cos_sum, s->sin_sum, s->x, g, n, slices);
    return sigreg_statistic(stat, s->cos_sum, s->sin_sum, g, n, slices);
}

void sigreg_backward(float *dz, struct sigreg_scratch *s, float dloss,
                     const float *a, const struct sigreg_grid *g, int k_dim,
                     int slices)
{
    CHECK(s->n > 0);
    sigreg_backward_x(s->dx, dloss, s->x, s->cos_sum, s->sin_sum, g, s->n,
                      s->n, slices);
    sigreg_backward_z(dz, s->dx, a, s->n, k_dim, slices);
}

/* x_nm of the reference: one dot product in double. */
static double ref_project(const double *z, const double *a, int i, int m,
                          int k_dim, int slices)
{
    double v = 0.0;
    for (int k = 0; k < k_dim; k++)
        v += z[(size_t)i * k_dim + k] * a[(size_t)k * slices + m];
    return v;
}

/* Means C_k, S_k of one slice of the reference. */
static void ref_slice_means(double *cm, double *sm, const double *z,
                            const double *a, const struct sigreg_grid *g,
                            int n, int k_dim, int slices, int m)
{
    for (int k = 0; k < g->knots; k++)
        cm[k] = sm[k] = 0.0;
    for (int i = 0; i < n; i++) {
        double xv = ref_project(z, a, i, m, k_dim, slices);
        for (int k = 0; k < g->knots; k++) {
            cm[k] += cos(g->t[k] * xv);
            sm[k] += sin(g->t[k] * xv);
        }
    }
    for (int k = 0; k < g->knots; k++) {
        cm[k] /= n;
        sm[k] /= n;
    }
}

double sigreg_forward_ref(double *stat, const double *z, const double *a,
                          const struct sigreg_grid *g, int n, int k_dim,
                          int slices)
{
    double total = 0.0;
    for (int m = 0; m < slices; m++) {
        double cm[SIGREG_MAX_KNOTS], sm[SIGREG_MAX_KNOTS];
        ref_slice_means(cm, sm, z, a, g, n, k_dim, slices, m);
        double e = 0.0;
        for (int k = 0; k < g->knots; k++)
            e += g->weight[k] * term(g, cm[k], sm[k], g->phi[k], n);
        e *= n;
        if (stat)
            stat[m] = e;
        total += e;
    }
    return total / slices;
}

void sigreg_backward_ref(double *dz, double dloss, const double *z,
                         const double *a, const struct sigreg_grid *g, int n,
                         int k_dim, int slices)
{
    double r = grad_ratio(g, n);
    for (int m = 0; m < slices; m++) {
        double cm[SIGREG_MAX_KNOTS], sm[SIGREG_MAX_KNOTS];
        ref_slice_means(cm, sm, z, a, g, n, k_dim, slices, m);
        for (int i = 0; i < n; i++) {
            double xv = ref_project(z, a, i, m, k_dim, slices);
            double d = 0.0;
            for (int k = 0; k < g->knots; k++) {
                double tk = g->t[k];
                double dc = r * cm[k] - g->phi[k];
                d += g->weight[k] * tk *
                     (r * sm[k] * cos(tk * xv) - dc * sin(tk * xv));
            }
            d *= 2.0 * dloss / slices;
            for (int k = 0; k < k_dim; k++)
                dz[(size_t)i * k_dim + k] += d * a[(size_t)k * slices + m];
        }
    }
}
