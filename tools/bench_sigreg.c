/*
 * bench_sigreg.c: times one step of SIGReg (directions, forward and backward
 * for every view) with the fused C kernels and with the official PyTorch
 * formulation (tools/bench_sigreg.py, run as a subprocess in the same run,
 * same sizes and threads), prints both times and the ratio. It also feeds
 * both the same z and A and reports how far their values and gradients are
 * apart. A benchmark, not a test: run it by hand on an idle machine.
 *
 *   bench_sigreg [--views 8] [--n 128] [--k 128] [--slices 1024,256]
 *                [--threads 2] [--reps 20] [--python /usr/bin/python3]
 *                [--script tools/bench_sigreg.py] [--json]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"
#include "sigreg.h"
#include "compute.h"
#include "util.h"

#define BENCH_MAX_SIZES 8
#define BENCH_WARMUP 3
#define BENCH_SEED 20251108

struct bench_opts {
    int views, n, k_dim, threads, reps, json;
    int slices[BENCH_MAX_SIZES], n_sizes;
    const char *python, *script;
};

struct bench_result {
    int slices;
    double c_ms, torch_ms, value_c, value_torch, grad_rel_diff;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    die("usage: bench_sigreg [--views V] [--n N] [--k K] [--slices M[,M..]] "
        "[--threads T] [--reps R] [--python PATH] [--script PATH] [--json]");
}

static void parse_opts(struct bench_opts *o, int argc, char **argv)
{
    *o = (struct bench_opts){.views = 8, .n = 128, .k_dim = 128,
                             .threads = 2, .reps = 20,
                             .slices = {1024, 256}, .n_sizes = 2,
                             .python = "/usr/bin/python3",
                             .script = BENCH_SIGREG_SCRIPT};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (!val)
            usage();
        i++;
        if (strcmp(arg, "--views") == 0)
            o->views = atoi(val);
        else if (strcmp(arg, "--n") == 0)
            o->n = atoi(val);
        else if (strcmp(arg, "--k") == 0)
            o->k_dim = atoi(val);
        else if (strcmp(arg, "--threads") == 0)
            o->threads = atoi(val);
        else if (strcmp(arg, "--reps") == 0)
            o->reps = atoi(val);
        else if (strcmp(arg, "--python") == 0)
            o->python = val;
        else if (strcmp(arg, "--script") == 0)
            o->script = val;
        else if (strcmp(arg, "--slices") == 0) {
            o->n_sizes = 0;
            for (const char *p = val; *p && o->n_sizes < BENCH_MAX_SIZES;) {
                o->slices[o->n_sizes++] = (int)strtol(p, (char **)&p, 10);
                if (*p == ',')
                    p++;
                else if (*p)
                    usage();
            }
        } else
            usage();
    }
    if (o->views < 1 || o->n < 1 || o->k_dim < 1 || o->threads < 1 ||
        o->reps < 1 || o->n_sizes < 1)
        usage();
    for (int s = 0; s < o->n_sizes; s++)
        if (o->slices[s] < 1)
            usage();
}

/* One training step's SIGReg work: directions, V forwards, V backwards
 * (dloss = 1/V each: the loss is the mean over views). Returns the loss. */
static double step_c(float *dz, float *a, struct sigreg_scratch *s,
                     const float *z, const struct sigreg_grid *g,
                     const struct bench_opts *o, int slices, uint64_t step,
                     int draw)
{
    size_t view_z = (size_t)o->n * o->k_dim;
    if (draw)
        sigreg_directions(a, BENCH_SEED, step, o->k_dim, slices);
    memset(dz, 0, sizeof(float) * view_z * o->views);
    double loss = 0.0;
    for (int v = 0; v < o->views; v++)
        loss += sigreg_forward(NULL, &s[v], z + v * view_z, a, g, o->n,
                               o->k_dim, slices) / o->views;
    for (int v = 0; v < o->views; v++)
        sigreg_backward(dz + v * view_z, &s[v], 1.0f / o->views, a, g,
                        o->k_dim, slices);
    return loss;
}

static void write_floats(const char *dir, const char *name, const float *p,
                         size_t count)
{
    char path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (util_write_file_atomic(path, p, count * sizeof(float), err) != 0)
        die("%s", err);
}

/* Pulls "key": <number> out of the script's one-line JSON answer. */
static double json_number(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (!p)
        die("bench_sigreg.py printed no \"%s\": %s", key, text);
    return strtod(p + strlen(pat), NULL);
}

/* Runs the PyTorch side on the inputs in dir; fills its time and value and
 * the largest gradient difference relative to the largest C gradient. */
static void run_torch(struct bench_result *r, const struct bench_opts *o,
                      const char *dir, const float *dz_c)
{
    char cmd[8192], line[4096] = "";
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=%d '%s' '%s' --views %d --n %d --k %d "
             "--slices %d --threads %d --reps %d --inputs '%s'",
             o->threads, o->python, o->script, o->views, o->n, o->k_dim,
             r->slices, o->threads, o->reps, dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        die("cannot run %s", cmd);
    char buf[4096];
    while (fgets(buf, sizeof buf, p))
        if (buf[0] == '{')
            snprintf(line, sizeof line, "%s", buf);
    int status = pclose(p);
    if (status != 0 || !line[0])
        die("%s failed (status %d); is python3-torch installed?", cmd, status);
    r->torch_ms = json_number(line, "ms_median");
    r->value_torch = json_number(line, "value");

    char path[4096], err[ERR_LEN];
    size_t len, count = (size_t)o->views * o->n * o->k_dim;
    snprintf(path, sizeof path, "%s/dz_torch.f32", dir);
    float *dz_t = (float *)util_read_file(path, &len, err);
    if (!dz_t)
        die("%s", err);
    if (len != count * sizeof(float))
        die("%s: %zu bytes, want %zu", path, len, count * sizeof(float));
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < count; i++) {
        worst = fmax(worst, fabs((double)dz_t[i] - dz_c[i]));
        scale = fmax(scale, fabs((double)dz_c[i]));
    }
    r->grad_rel_diff = scale > 0 ? worst / scale : worst;
    free(dz_t);
    unlink(path);
}

static void bench_size(struct bench_result *r, const struct bench_opts *o,
                       int slices, const char *dir)
{
    struct sigreg_grid g;
    char err[ERR_LEN];
    if (sigreg_grid_init(&g, SIGREG_DEFAULT_KNOTS, SIGREG_DEFAULT_T_MAX,
                         err) != 0)
        die("%s", err);
    size_t view_z = (size_t)o->n * o->k_dim;
    float *z = xmalloc(sizeof(float) * view_z * o->views);
    float *dz = xmalloc(sizeof(float) * view_z * o->views);
    float *a = xmalloc(sizeof(float) * o->k_dim * slices);
    struct sigreg_scratch *s = xmalloc(sizeof *s * o->views);
    void **mem = xmalloc(sizeof *mem * o->views);
    size_t bytes = sigreg_scratch_size(o->n, slices, g.knots);
    for (int v = 0; v < o->views; v++) {
        mem[v] = xmalloc_aligned(bytes);
        sigreg_scratch_init(&s[v], mem[v], o->n, slices, g.knots);
    }
    struct rng rz;
    rng_init(&rz, BENCH_SEED, 0, 0, 0);
    for (size_t i = 0; i < view_z * o->views; i++)
        z[i] = (float)rng_normal(&rz);

    double *ms = xmalloc(sizeof(double) * o->reps);
    for (int rep = 0; rep < BENCH_WARMUP + o->reps; rep++) {
        double t0 = util_time_mono();
        step_c(dz, a, s, z, &g, o, slices, rep + 1, 1);
        double t1 = util_time_mono();
        if (rep >= BENCH_WARMUP)
            ms[rep - BENCH_WARMUP] = (t1 - t0) * 1e3;
    }
    qsort(ms, o->reps, sizeof(double), cmp_double);
    r->slices = slices;
    r->c_ms = ms[o->reps / 2];

    /* Same z and A on both sides for the agreement check. */
    sigreg_directions(a, BENCH_SEED, 12345, o->k_dim, slices);
    r->value_c = step_c(dz, a, s, z, &g, o, slices, 0, 0);
    write_floats(dir, "z.f32", z, view_z * o->views);
    write_floats(dir, "a.f32", a, (size_t)o->k_dim * slices);
    run_torch(r, o, dir, dz);

    for (int v = 0; v < o->views; v++)
        util_free_aligned(mem[v]);
    free(mem), free(s), free(ms), free(z), free(dz), free(a);
}

int main(int argc, char **argv)
{
    struct bench_opts o;
    parse_opts(&o, argc, argv);
    int threads = compute_set_threads(o.threads);
    char dir[] = "/tmp/bench_sigreg-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp %s failed", dir);
    struct bench_result res[BENCH_MAX_SIZES];
    for (int i = 0; i < o.n_sizes; i++)
        bench_size(&res[i], &o, o.slices[i], dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/z.f32", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/a.f32", dir);
    unlink(path);
    rmdir(dir);

    if (o.json) {
        printf("{\"bench\":\"sigreg\",\"views\":%d,\"n\":%d,\"k\":%d,"
               "\"knots\":%d,\"threads\":%d,\"reps\":%d,\"results\":[",
               o.views, o.n, o.k_dim, SIGREG_DEFAULT_KNOTS, threads, o.reps);
        for (int i = 0; i < o.n_sizes; i++)
            printf("%s{\"slices\":%d,\"c_ms\":%.4f,\"torch_ms\":%.4f,"
                   "\"ratio\":%.2f,\"value_c\":%.7g,\"value_torch\":%.7g,"
                   "\"grad_max_rel_diff\":%.3g}",
                   i ? "," : "", res[i].slices, res[i].c_ms, res[i].torch_ms,
                   res[i].torch_ms / res[i].c_ms, res[i].value_c,
                   res[i].value_torch, res[i].grad_rel_diff);
        printf("]}\n");
        return 0;
    }
    printf("SIGReg step (directions + forward + backward), %d views x %d "
           "samples x %d dims, %d knots, %d threads, median of %d\n",
           o.views, o.n, o.k_dim, SIGREG_DEFAULT_KNOTS, threads, o.reps);
    for (int i = 0; i < o.n_sizes; i++)
        printf("  M=%-5d C %8.3f ms   PyTorch %9.3f ms   ratio %6.1fx   "
               "value C %.6f torch %.6f   grad max rel diff %.2e\n",
               res[i].slices, res[i].c_ms, res[i].torch_ms,
               res[i].torch_ms / res[i].c_ms, res[i].value_c,
               res[i].value_torch, res[i].grad_rel_diff);
    return 0;
}
