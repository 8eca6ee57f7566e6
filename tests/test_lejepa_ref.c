/*
 * test_lejepa_ref.c: the engine against PyTorch (fixtures written by
 * tools/make-fixtures.sh: our initial weights and batch, run through the same
 * model in PyTorch in float64). Per case: each loss term, every parameter
 * gradient, the BatchNorm running statistics after one step, the losses of
 * CASE_STEPS AdamW steps, the weights and the eval-mode embeddings after
 * them (for the ViT cases also the patch feature map and the last block's
 * CLS attention); and our initialisation's
 * per-tensor mean and std against PyTorch's own initialisation.
 *
 * Tolerances: the reference is float64, we compute in float32, so the error
 * is our rounding (~1e-6 relative per op, accumulated over sums of a few
 * thousand terms and through BatchNorm's division by small batch std).
 * Losses: relative 1e-4. Gradients and statistics: max |ours - ref| over a
 * tensor, relative to max |ref| of that tensor (floored at TENSOR_FLOOR),
 * 1e-3; per element relative error is meaningless for entries near zero.
 * The floor matters for a Linear bias followed by BatchNorm: its exact
 * gradient is zero (BN removes any shift), PyTorch's float64 gives ~1e-17 and
 * our float32 ~1e-8: such gradients must be below 1e-6 in absolute terms.
 * AdamW turns that noise into steps of up to lr (it normalises each
 * element), so before every step the test zeroes our gradient wherever the
 * reference's first-step gradient is exactly zero: those zeros are
 * structural (a bias before BatchNorm; the ViT's final LayerNorm bias,
 * whose shift the projector's BatchNorm removes, but which the probe would
 * then see; the key third of qkv.bias, a per-query constant that softmax
 * removes). Whole tensors of zeros are still only checked to be within
 * CASE_STEPS * lr of the reference after the steps.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "ckpt.h"
#include "lejepa.h"
#include "lejepa_cases.h"
#include "testing.h"
#include "util.h"

#define LOSS_RTOL 1e-4
#define TENSOR_RTOL 1e-3
#define TENSOR_FLOOR 1e-5
#define ZERO_GRAD 1e-12
#define ZERO_GRAD_FLOAT_NOISE 1e-6

static double scalar(const struct st_file *f, const char *name)
{
    const struct st_tensor *t = st_find(f, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL_FATAL(t->dtype, ST_F64);
    return ((const double *)t->data)[0];
}

static int close_rel(double got, double want, double rtol)
{
    return fabs(got - want) <= rtol * fmax(fabs(want), 1e-12);
}

/* max |a - ref| / max |ref| over a tensor of ref (F64) against floats. */
static double tensor_err(const float *a, const struct st_tensor *ref, size_t n)
{
    CU_ASSERT_EQUAL(ref->nbytes, n * sizeof(double));
    const double *r = ref->data;
    double diff = 0, scale = TENSOR_FLOOR;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - r[i]));
        scale = fmax(scale, fabs(r[i]));
    }
    return diff / scale;
}

/* Whether the reference gradient of a parameter is identically zero. */
static int zero_grad(const struct st_file *ref, const char *param)
{
    char name[PARAMS_NAME_LEN + 16];
    snprintf(name, sizeof name, "grad.%s", param);
    const struct st_tensor *g = st_find(ref, name);
    if (!g)
        return 0;
    const double *r = g->data;
    for (size_t i = 0; i < g->nbytes / sizeof(double); i++)
        if (fabs(r[i]) > ZERO_GRAD)
            return 0;
    return 1;
}

/* Marks (1) every parameter entry whose reference gradient is exactly zero
 * (see the top of the file). Returns a malloc'd (learn.total) mask. */
static unsigned char *zero_grad_mask(const struct st_file *ref,
                                     const struct params_table *t)
{
    unsigned char *mask = xcalloc(t->total, 1);
    char name[PARAMS_NAME_LEN + 16];
    for (size_t i = 0; i < t->n; i++) {
        snprintf(name, sizeof name, "grad.%s", t->e[i].name);
        const struct st_tensor *g = st_find(ref, name);
        if (!g || g->nbytes != t->e[i].numel * sizeof(double))
            continue;
        const double *r = g->data;
        for (size_t j = 0; j < t->e[i].numel; j++)
            mask[t->e[i].offset + j] = fabs(r[j]) <= ZERO_GRAD;
    }
    return mask;
}

/* Worst relative error seen by check_tensors, for the log. */
static double worst_err;

/* abs_tol > 0 checks max |ours - ref| <= abs_tol instead (see above). */
static void check_tensors(const struct st_file *ref, const char *prefix,
                          const struct params_table *t, const float *base,
                          const char *what, double zero_grad_abs_tol)
{
    char name[PARAMS_NAME_LEN + 16];
    for (size_t i = 0; i < t->n; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, t->e[i].name);
        const struct st_tensor *r = st_find(ref, name);
        CU_ASSERT_PTR_NOT_NULL(r);
        if (!r)
            continue;
        double e = tensor_err(base + t->e[i].offset, r, t->e[i].numel);
        if (zero_grad_abs_tol > 0 && zero_grad(ref, t->e[i].name)) {
            const double *rv = r->data;
            const float *x = base + t->e[i].offset;
            double diff = 0;
            for (size_t j = 0; j < t->e[i].numel; j++)
                diff = fmax(diff, fabs(x[j] - rv[j]));
            CU_ASSERT(diff <= zero_grad_abs_tol);
            continue;
        }
        if (!(e <= TENSOR_RTOL))
            fprintf(stderr, "\n%s %s: relative error %.3g\n", what, name, e);
        worst_err = fmax(worst_err, e);
        CU_ASSERT(e <= TENSOR_RTOL);
    }
}

static void run_case(const struct lejepa_case *lc)
{
    char path[4096], err[ERR_LEN];
    struct st_file in, ref, wf;
    snprintf(path, sizeof path, "lejepa_%s_in.safetensors", lc->name);
    CU_ASSERT_EQUAL_FATAL(st_open(&in, testing_fixture(path), err), 0);
    snprintf(path, sizeof path, "lejepa_%s_ref.safetensors", lc->name);
    CU_ASSERT_EQUAL_FATAL(st_open(&ref, testing_fixture(path), err), 0);

    struct lejepa m;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&m, &lc->c, err), 0);
    snprintf(path, sizeof path, "lejepa_%s_weights.safetensors", lc->name);
    /* The committed weights are our own init at the time they were made;
     * loading them keeps the test about the math, not the init's bits. */
    CU_ASSERT_EQUAL_FATAL(ckpt_load(testing_fixture(path), &m.p, NULL, &wf, err), 0);
    st_close(&wf);
    for (int g = 0; g < m.n_groups; g++) {
        const struct st_tensor *x = st_find(&in, g == 0 ? "input.global" : "input.local");
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        CU_ASSERT_EQUAL_FATAL(x->nbytes, graph_numel(&m.grp[g].g, m.grp[g].in) * sizeof(float));
        memcpy(lejepa_input(&m, g), x->data, x->nbytes);
    }
    const struct st_tensor *lab = st_find(&in, "labels");
    CU_ASSERT_PTR_NOT_NULL_FATAL(lab);
    const int32_t *labels = lab->data;

    struct adamw opt;
    adamw_init(&opt, 0.9, 0.999, 1e-8);
    opt.group[PARAMS_GROUP_ENCODER] = (struct adamw_group){CASE_LR_ENCODER, CASE_WD_ENCODER};
    opt.group[PARAMS_GROUP_PROBE] = (struct adamw_group){CASE_LR_PROBE, CASE_WD_PROBE};
    const struct st_tensor *sl = st_find(&ref, "step_losses");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sl);
    const double *want_steps = sl->data;
    unsigned char *zero_mask = zero_grad_mask(&ref, &m.p.learn);
    for (int s = 0; s < CASE_STEPS; s++) {
        struct lejepa_losses L;
        lejepa_forward_backward(&m, labels, (uint64_t)s, &L);
        if (s == 0) {
            CU_ASSERT(close_rel(L.loss, scalar(&ref, "loss"), LOSS_RTOL));
            CU_ASSERT(close_rel(L.inv, scalar(&ref, "inv"), LOSS_RTOL));
            CU_ASSERT(close_rel(L.sigreg, scalar(&ref, "sigreg"), LOSS_RTOL));
            CU_ASSERT(close_rel(L.probe_loss, scalar(&ref, "probe_loss"), LOSS_RTOL));
            fprintf(stderr, "\n  case %s: loss %.7f (ref %.7f) inv %.7f (%.7f) "
                    "sigreg %.7f (%.7f) probe %.7f (%.7f)\n", lc->name, L.loss,
                    scalar(&ref, "loss"), L.inv, scalar(&ref, "inv"), L.sigreg,
                    scalar(&ref, "sigreg"), L.probe_loss, scalar(&ref, "probe_loss"));
            worst_err = 0;
            check_tensors(&ref, "grad.", &m.p.learn, m.p.grad, "gradient",
                          ZERO_GRAD_FLOAT_NOISE);
            fprintf(stderr, "  worst gradient error %.3g\n", worst_err);
            check_tensors(&ref, "state.", &m.p.state, m.p.state_data, "running stat", 0);
        }
        if (!close_rel(L.loss, want_steps[2 * s], LOSS_RTOL) ||
            !close_rel(L.probe_loss, want_steps[2 * s + 1], LOSS_RTOL))
            fprintf(stderr, "\n  step %d: loss %.7f (ref %.7f) probe %.7f (ref %.7f)\n",
                    s, L.loss, want_steps[2 * s], L.probe_loss, want_steps[2 * s + 1]);
        CU_ASSERT(close_rel(L.loss, want_steps[2 * s], LOSS_RTOL));
        CU_ASSERT(close_rel(L.probe_loss, want_steps[2 * s + 1], LOSS_RTOL));
        for (size_t j = 0; j < m.p.learn.total; j++)
            if (zero_mask[j])
                m.p.grad[j] = 0;
        adamw_step(&opt, &m.p, 1.0);
    }
    free(zero_mask);
    worst_err = 0;
    check_tensors(&ref, "final.", &m.p.learn, m.p.data, "weights after steps",
                  CASE_STEPS * CASE_LR_ENCODER);
    fprintf(stderr, "  worst weight error after %d steps %.3g\n", CASE_STEPS,
            worst_err);

    /* Eval mode (running statistics) on the global views. */
    struct lejepa_eval ev;
    lejepa_eval_init(&ev, &m, m.grp[0].g.B);
    memcpy(lejepa_eval_input(&ev), st_find(&in, "input.global")->data,
           graph_numel(&m.grp[0].g, m.grp[0].in) * sizeof(float));
    const float *emb = lejepa_eval_forward(&ev);
    const struct st_tensor *want = st_find(&ref, "eval_emb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    double e = tensor_err(emb, want, (size_t)ev.g.B * m.emb_dim);
    fprintf(stderr, "  eval-mode embedding error %.3g\n", e);
    CU_ASSERT(e <= TENSOR_RTOL);
    if (lc->c.backbone == LEJEPA_BACKBONE_RESNET) {
        CU_ASSERT_EQUAL(ev.feat_c, m.emb_dim);
        CU_ASSERT_EQUAL(ev.heads, 0);
    } else {
        const struct vit_config *v = &lc->c.vit;
        int G = (lc->c.global_size + v->patch - 1) / v->patch;
        CU_ASSERT_FATAL(ev.feat_c == v->dim && ev.feat_h == G && ev.feat_w == G);
        CU_ASSERT_EQUAL_FATAL(ev.heads, v->heads);
        const struct st_tensor *wf = st_find(&ref, "eval_feat");
        const struct st_tensor *wa = st_find(&ref, "eval_attn");
        CU_ASSERT_PTR_NOT_NULL_FATAL(wf);
        CU_ASSERT_PTR_NOT_NULL_FATAL(wa);
        size_t fsz = (size_t)v->dim * G * G, asz = (size_t)v->heads * G * G;
        float *feat = xmalloc((size_t)ev.g.B * fsz * sizeof(float));
        float *attn = xmalloc((size_t)ev.g.B * asz * sizeof(float));
        for (int b = 0; b < ev.g.B; b++)
            lejepa_eval_featmap(&ev, b, feat + b * fsz, attn + b * asz);
        double ef = tensor_err(feat, wf, (size_t)ev.g.B * fsz);
        double ea = tensor_err(attn, wa, (size_t)ev.g.B * asz);
        fprintf(stderr, "  eval-mode patch features error %.3g, CLS "
                "attention error %.3g\n", ef, ea);
        CU_ASSERT(ef <= TENSOR_RTOL);
        CU_ASSERT(ea <= TENSOR_RTOL);
        free(feat);
        free(attn);
    }
    lejepa_eval_free(&ev);
    lejepa_free(&m);
    st_close(&in);
    st_close(&ref);
}

static const struct lejepa_case *find_case(const char *name)
{
    for (size_t i = 0; i < N_LEJEPA_CASES; i++)
        if (strcmp(lejepa_cases[i].name, name) == 0)
            return &lejepa_cases[i];
    CU_FAIL_FATAL("no such case");
    return NULL;
}

static void test_case_local(void) { run_case(find_case("local")); }
static void test_case_global(void) { run_case(find_case("global")); }
static void test_case_vit(void) { run_case(find_case("vit")); }
static void test_case_vit_mean(void) { run_case(find_case("vit_mean")); }

/* Our init against PyTorch's: per tensor, the mean and std must agree
 * within six standard errors of a sample of that size. */
static void test_init_matches_pytorch(void)
{
    for (size_t c = 0; c < N_LEJEPA_CASES; c++) {
        const struct lejepa_case *lc = &lejepa_cases[c];
        char path[4096], err[ERR_LEN];
        snprintf(path, sizeof path, "lejepa_%s_ref.safetensors", lc->name);
        struct st_file ref;
        CU_ASSERT_EQUAL_FATAL(st_open(&ref, testing_fixture(path), err), 0);
        struct lejepa m;
        CU_ASSERT_EQUAL_FATAL(lejepa_init(&m, &lc->c, err), 0);
        const struct params_table *tabs[2] = {&m.p.learn, &m.p.state};
        const float *bases[2] = {m.p.data, m.p.state_data};
        for (int k = 0; k < 2; k++) {
            for (size_t i = 0; i < tabs[k]->n; i++) {
                const struct params_entry *e = &tabs[k]->e[i];
                const float *x = bases[k] + e->offset;
                double s = 0, ss = 0;
                for (size_t j = 0; j < e->numel; j++) {
                    s += x[j];
                    ss += (double)x[j] * x[j];
                }
                double mean = s / e->numel;
                double sd = sqrt(fmax(ss / e->numel - mean * mean, 0));
                char name[PARAMS_NAME_LEN + 16];
                snprintf(name, sizeof name, "init_mean.%s", e->name);
                double want_mean = scalar(&ref, name);
                snprintf(name, sizeof name, "init_std.%s", e->name);
                double want_sd = scalar(&ref, name);
                double n = (double)e->numel;
                double tol_mean = 6 * want_sd * sqrt(2 / n) + 1e-6;
                double tol_sd = 6 * want_sd / sqrt(n) + 1e-6;
                int ok = fabs(mean - want_mean) <= tol_mean &&
                         fabs(sd - want_sd) <= tol_sd;
                if (!ok)
                    fprintf(stderr, "\n%s: mean %.4g std %.4g, PyTorch %.4g %.4g\n",
                            e->name, mean, sd, want_mean, want_sd);
                CU_ASSERT(ok);
            }
        }
        lejepa_free(&m);
        st_close(&ref);
    }
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"case local (Vg=2, Vl=3, small stem)", test_case_local},
        {"case global (Vg=4, Vl=0, ImageNet stem)", test_case_global},
        {"case vit (2 blocks, 3 heads, local crops padded)", test_case_vit},
        {"case vit_mean (3 channels, CLS + patch mean)", test_case_vit_mean},
        {"initialisation matches PyTorch's", test_init_matches_pytorch},
        {NULL, NULL},
    };
    return testing_run("lejepa vs PyTorch", cases);
}
