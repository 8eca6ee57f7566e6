/*
 * bench_train.c: times LeJEPA training steps (forward, backward, AdamW) of a
 * config in the trainer's own format, against PyTorch on CPU with the same
 * model, batch, views and threads (tools/bench_train.py, run in the same
 * invocation), and against the machine's FMA and sgemm peaks measured here
 * too: the flops the step's GEMMs execute (Winograd does fewer than the
 * direct count) against the FMA peak, the direct count against sgemm.
 * A benchmark, not a test: run it by hand, quote its output.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include <cblas.h>
#include <omp.h>
#ifdef __FMA__
#include <immintrin.h>
#endif

#include "adamw.h"
#include "companion.h"
#include "config.h"
#include "json.h"
#include "lejepa.h"
#include "model_config.h"
#include "nn_isa.h"
#include "rng.h"
#include "compute.h"
#include "util.h"

static void usage(FILE *out)
{
    fprintf(out,
"usage: bench-train [--config FILE] [--set section.key=value ...] [options]\n"
"Times training steps of the config's model (random inputs) and the same\n"
"model in PyTorch (CPU), and prints images/s, the GFLOP a step executes and\n"
"their fraction of the FMA peak measured in the same run, the direct-\n"
"convolution count against the sgemm peak, and the ratio to PyTorch.\n"
"  --steps N       timed steps (default 5)\n"
"  --warmup N      untimed steps first (default 2)\n"
"  --threads N     threads for both sides (default: run.threads, 0 = all)\n"
"  --classes N     online probe classes (default 10)\n"
"  --no-torch      skip the PyTorch side\n"
"  --profile       print where the C step's time goes, per layer kind, and\n"
"                  how much of it is GEMM (the rest: memory passes)\n"
"  --json          print one JSON object instead of text\n"
"  --help-config   list every config key\n"
"  --version       print version, BLAS and threads\n");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best of a few (n x n) sgemms, GFLOP/s. */
static double sgemm_peak(void)
{
    const int n = 2048;
    float *a = xmalloc_aligned((size_t)n * n * sizeof(float));
    float *b = xmalloc_aligned((size_t)n * n * sizeof(float));
    float *c = xmalloc_aligned((size_t)n * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double best = 0;
    for (int r = 0; r < 4; r++) {
        double t0 = util_time_mono();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f,
                    a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * (double)n / (util_time_mono() - t0) / 1e9;
        if (g > best)
            best = g;
    }
    util_free_aligned(a);
    util_free_aligned(b);
    util_free_aligned(c);
    return best;
}

/* The FMA peak of this machine with every thread: 12 independent chains
 * of 256-bit multiply-adds per thread (two FMA pipes of four-cycle
 * latency need at least eight), best of three. Zen 4 runs 512-bit FMAs
 * as two halves, so 256-bit ones reach the same peak there. */
static double fma_peak(void)
{
#ifdef __FMA__
    enum { CHAINS = 12 };
    const long iters = 20000000;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        int nthreads = 1;
        float sink = 0;
        double t0 = util_time_mono();
#pragma omp parallel reduction(+ : sink)
        {
            __m256 acc[CHAINS];
            const __m256 x = _mm256_set1_ps(0.9999f), y = _mm256_set1_ps(1e-4f);
            for (int k = 0; k < CHAINS; k++)
                acc[k] = _mm256_set1_ps((float)k);
            for (long i = 0; i < iters; i++)
                for (int k = 0; k < CHAINS; k++)
                    acc[k] = _mm256_fmadd_ps(acc[k], x, y);
            float lanes[8];
            for (int k = 1; k < CHAINS; k++)
                acc[0] = _mm256_add_ps(acc[0], acc[k]);
            _mm256_storeu_ps(lanes, acc[0]);
            for (int l = 0; l < 8; l++)
                sink += lanes[l];
#pragma omp single
            nthreads = omp_get_num_threads();
        }
        double dt = util_time_mono() - t0;
        double g = 2.0 * 8 * CHAINS * (double)iters * nthreads / dt / 1e9;
        if (g > best && sink == sink) /* sink keeps the loops alive */
            best = g;
    }
    return best;
#else
    return 0; /* built without FMA (-march below x86-64-v3) */
#endif
}

/* Tensor t of g (an input) filled with N(0, 1) draws from r. */
static void fill_normal(struct graph *g, int t, struct rng *r)
{
    float *x = graph_act(g, t);
    size_t n = graph_numel(g, t);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(r);
}

/* What the PyTorch companion measured: its fastest formulation's. */
struct torch_side {
    double step_s, rss_mb;
    char version[64];
    char formulation[64];       /* tools/bench_train.py FORMULATIONS */
};

/* Runs the PyTorch companion, which times each formulation of the step in
 * its own process and answers with the fastest. */
static int run_torch(const char *model_json, int steps, int warmup, int threads,
                     struct torch_side *ts)
{
    char args[4096], err[ERR_LEN];
    snprintf(args, sizeof args, "--model '%s' --steps %d --warmup %d --threads %d",
             model_json, steps, warmup, threads);
    const struct companion_field f[] = {
        {"step_s_median", &ts->step_s, NULL, 0},
        {"peak_rss_mb", &ts->rss_mb, NULL, 0},
        {"torch", NULL, ts->version, sizeof ts->version},
        {"formulation", NULL, ts->formulation, sizeof ts->formulation},
    };
    if (companion_run(LEJEPA_BENCH_TRAIN_SCRIPT, args, f, 4, err) != 0) {
        fprintf(stderr, "bench-train: %s\n", err);
        return -1;
    }
    return 0;
}

/* Seconds per step by layer kind (forward, backward) over every group, the
 * rest of the loss step (SIGReg, invariance, probe) and the optimizer. */
static void print_profile(const struct lejepa *m, double loss_s, double opt_s,
                          int steps)
{
    double graph_total = 0, gemm_total = 0;
    fprintf(stderr, "profile (seconds per step; in brackets the part in "
                    "GEMMs: BLAS sgemm and the Winograd tile products; the "
                    "rest is memory passes: transforms, im2col, copies, "
                    "elementwise):\n");
    for (int k = 0; k < GRAPH_N_KINDS; k++) {
        double f = 0, b = 0, gf = 0, gb = 0;
        for (int g = 0; g < m->n_groups; g++) {
            f += m->grp[g].g.seconds[0][k];
            b += m->grp[g].g.seconds[1][k];
            gf += m->grp[g].g.gemm_seconds[0][k];
            gb += m->grp[g].g.gemm_seconds[1][k];
        }
        graph_total += f + b;
        gemm_total += gf + gb;
        if (f + b > 0)
            fprintf(stderr,
                    "  %-8s forward %.3f [%.3f]  backward %.3f [%.3f]\n",
                    graph_kind_name(k), f / steps, gf / steps, b / steps,
                    gb / steps);
    }
    if (m->probe.eval) {    /* optim.probe_views = eval: a forward of its own */
        const struct graph *pg = &m->probe.eval->g;
        double f = 0, gf = 0;
        for (int k = 0; k < GRAPH_N_KINDS; k++) {
            f += pg->seconds[0][k];
            gf += pg->gemm_seconds[0][k];
        }
        graph_total += f;
        gemm_total += gf;
        fprintf(stderr, "  the probe's eval-view forward %.3f [%.3f]\n",
                f / steps, gf / steps);
    }
    fprintf(stderr, "  all ops  %.3f, of which GEMMs %.3f (%.0f%%)\n",
            graph_total / steps, gemm_total / steps,
            100 * gemm_total / graph_total);
    fprintf(stderr, "  loss, SIGReg, probe, zeroing %.3f\n",
            (loss_s - graph_total) / steps);
    fprintf(stderr, "  adamw    %.3f\n", opt_s / steps);
}

int main(int argc, char **argv)
{
    struct config cfg;
    char err[ERR_LEN];
    config_defaults(&cfg);
    if (config_from_args(&cfg, &argc, argv, err) != 0)
        die("%s", err);
    int steps = 5, warmup = 2, threads = -1, classes = 10, torch = 1, as_json = 0;
    int profile = 0;
    static const struct option opts[] = {
        {"steps", required_argument, NULL, 's'},
        {"warmup", required_argument, NULL, 'w'},
        {"threads", required_argument, NULL, 't'},
        {"classes", required_argument, NULL, 'c'},
        {"no-torch", no_argument, NULL, 'n'},
        {"profile", no_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 's': steps = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'c': classes = atoi(optarg); break;
        case 'n': torch = 0; break;
        case 'p': profile = 1; break;
        case 'j': as_json = 1; break;
        case 'V':
            compute_print_build_info(stdout, "bench-train");
            nn_isa_print(stdout);
            return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (steps < 1 || warmup < 0 || classes < 2)
        die("--steps must be >= 1, --warmup >= 0, --classes >= 2");
    if (threads < 0)
        threads = (int)cfg.run.threads;
    threads = compute_set_threads(threads);

    struct lejepa_config lc;
    if (model_config_resolve(&lc, &cfg, classes, err) != 0)
        die("%s", err);
    /* PyTorch first: once our OpenMP threads exist, a spinning one would
     * steal a core from it (with OMP_WAIT_POLICY=active). */
    struct torch_side ts = {0};
    char model_json[2048];
    lejepa_config_json(model_json, sizeof model_json, &lc, NULL);
    int have_torch = torch && run_torch(model_json, steps, warmup, threads, &ts) == 0;
    const double torch_s = ts.step_s; /* the ratio's numerator, below */
    if (torch && !have_torch)
        fprintf(stderr, "bench-train: the PyTorch side failed (is python3-torch "
                        "installed? apt-get install python3-torch)\n");
    struct lejepa m;
    if (lejepa_init(&m, &lc, err) != 0)
        die("%s", err);
    struct rng r;
    rng_init(&r, 1, 2, 3, 4);
    for (int g = 0; g < m.n_groups; g++)
        fill_normal(&m.grp[g].g, m.grp[g].in, &r);
    if (m.probe.eval)   /* optim.probe_views = eval */
        fill_normal(&m.probe.eval->g, m.probe.eval->in, &r);
    int32_t *labels = xmalloc((size_t)lc.batch * sizeof *labels);
    for (int i = 0; i < lc.batch; i++)
        labels[i] = (int32_t)rng_below(&r, (uint64_t)classes);
    struct adamw opt;
    adamw_init(&opt, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.eps);
    opt.group[PARAMS_GROUP_ENCODER] = (struct adamw_group){cfg.optim.lr, cfg.optim.weight_decay};
    opt.group[PARAMS_GROUP_PROBE] = (struct adamw_group){cfg.optim.probe_lr, cfg.optim.probe_weight_decay};

    double *t = xmalloc((size_t)steps * sizeof *t);
    double loss_s = 0, opt_s = 0;
    for (int s = 0; s < warmup + steps; s++) {
        for (int g = 0; g < m.n_groups; g++)
            m.grp[g].g.profile = profile && s >= warmup;
        if (m.probe.eval)
            m.probe.eval->g.profile = profile && s >= warmup;
        nn_gemm_profile = profile && s >= warmup;
        double t0 = util_time_mono();
        struct lejepa_losses L;
        lejepa_forward_backward(&m, labels, (uint64_t)s, &L);
        double t1 = util_time_mono();
        adamw_step(&opt, &m.p, 1.0);
        if (s >= warmup) {
            loss_s += t1 - t0;
            opt_s += util_time_mono() - t1;
        }
        if (s >= warmup)
            t[s - warmup] = util_time_mono() - t0;
        if (!as_json)
            fprintf(stderr, "bench-train: step %d %.3f s loss %.4f\n", s,
                    util_time_mono() - t0, L.loss);
    }
    if (profile)
        print_profile(&m, loss_s, opt_s, steps);
    qsort(t, (size_t)steps, sizeof *t, cmp_double);
    double med = t[steps / 2];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = ru.ru_maxrss / 1024.0;
    double gflops = lejepa_step_direct_flops(&m) / med / 1e9;
    double peak = sgemm_peak();
    double exec_gflop = lejepa_step_executed_flops(&m) / 1e9;
    double fma = fma_peak();

    const char *policy = getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY")
                                                   : "default (active spin)";
    if (as_json) {
        printf("{\"images_per_s\":%.3f,\"step_s_median\":%.5f,\"gflops\":%.2f,"
               "\"sgemm_peak_gflops\":%.2f,\"peak_fraction\":%.4f,"
               "\"peak_rss_mb\":%.1f,\"threads\":%d,\"batch\":%d,\"views\":%d,"
               "\"omp_wait_policy\":\"%s\",\"isa\":\"%s\","
               "\"executed_gflop_per_step\":%.3f,\"executed_gflops\":%.2f,"
               "\"fma_peak_gflops\":%.2f,\"executed_fma_fraction\":%.4f",
               lc.batch / med, med, gflops, peak, gflops / peak, rss_mb,
               threads, lc.batch, m.views, policy,
               nn_isa_name(nn_isa_current()), exec_gflop, exec_gflop / med,
               fma, exec_gflop / med / fma);
        if (have_torch)
            printf(",\"torch_step_s_median\":%.5f,\"torch_images_per_s\":%.3f,"
                   "\"torch_peak_rss_mb\":%.1f,\"speedup\":%.3f,\"torch\":\"%s\","
                   "\"torch_formulation\":\"%s\"",
                   torch_s, lc.batch / torch_s, ts.rss_mb, torch_s / med,
                   ts.version, ts.formulation);
        printf("}\n");
    } else {
        printf("model: %s\n", model_json);
        printf("threads %d, batch %d, %d views, OMP_WAIT_POLICY %s, kernels %s\n",
               threads, lc.batch, m.views, policy,
               nn_isa_name(nn_isa_current()));
        printf("C:       %.3f s/step  %.1f images/s  peak RSS %.0f MB\n", med,
               lc.batch / med, rss_mb);
        printf("  executed: %.1f GFLOP/step (the GEMMs on the paths taken) = "
               "%.1f GFLOP/s, %.0f%% of the FMA peak %.1f GFLOP/s measured "
               "here\n",
               exec_gflop, exec_gflop / med, 100 * exec_gflop / med / fma, fma);
        printf("  direct-convolution count: %.1f GFLOP/step = %.1f GFLOP/s, "
               "%.0f%% of the sgemm peak %.1f GFLOP/s%s\n",
               gflops * med, gflops, 100 * gflops / peak, peak,
               lc.backbone == LEJEPA_BACKBONE_RESNET
                   ? " (nominal: Winograd multiplies fewer)"
                   : "");
        if (have_torch)
            printf("PyTorch: %.3f s/step  %.1f images/s  peak RSS %.0f MB "
                   "(torch %s, %s: the fastest formulation of the step "
                   "tools/bench_train.py found)\nspeedup: %.2fx\n", torch_s,
                   lc.batch / torch_s, ts.rss_mb, ts.version, ts.formulation,
                   torch_s / med);
    }
    free(t);
    free(labels);
    lejepa_free(&m);
    return 0;
}
