/*
 * test_lejepa.c: engine behaviour beyond the PyTorch match: a step on fewer
 * samples than the configured batch equals a step of a model built for that
 * batch (ResNet and ViT), uint8 pixels are normalised per channel as
 * configured, sigreg_debias reaches the step's SIGReg and loss, and a
 * probe on the global views only learns from those rows while the
 * encoder's step is unchanged, a probe on the eval view learns from the
 * eval-mode backbone's embeddings of it, and with bn_running_global the
 * running statistics are the global views' alone.
 */
#include <math.h>
#include <string.h>

#include "lejepa.h"
#include "lejepa_cases.h"
#include "rng.h"
#include "testing.h"
#include "util.h"

/* Fills views (group layout (views, n, C, H, W)) for n samples taken from a
 * per-(view, sample) stream, so the same sample gets the same pixels
 * whatever n is. */
static void fill_views(struct lejepa *m, int n)
{
    for (int g = 0; g < m->n_groups; g++) {
        const struct lejepa_group *gr = &m->grp[g];
        size_t img = (size_t)lejepa_in_channels(&m->c) * gr->size * gr->size;
        float *x = lejepa_input(m, g);
        for (int v = 0; v < gr->views; v++)
            for (int i = 0; i < n; i++) {
                struct rng r;
                rng_init(&r, 5, (uint64_t)g, (uint64_t)v, (uint64_t)i);
                float *dst = x + ((size_t)v * n + i) * img;
                for (size_t k = 0; k < img; k++)
                    dst[k] = (float)rng_normal(&r);
            }
    }
    float *x = lejepa_probe_input(m);   /* the eval views, when asked for */
    size_t img = (size_t)lejepa_in_channels(&m->c) * m->c.global_size *
                 m->c.global_size;
    for (int i = 0; x && i < n; i++) {
        struct rng r;
        rng_init(&r, 5, 2, 0, (uint64_t)i);
        for (size_t k = 0; k < img; k++)
            x[(size_t)i * img + k] = (float)rng_normal(&r);
    }
}

/* Whether two models' encoder gradients (everything before the probe's in
 * the arena) are bit-identical. */
static bool encoder_grads_equal(const struct lejepa *a, const struct lejepa *b)
{
    size_t probe_start = a->p.learn.e[a->probe.ln_w].offset;
    int same = 1;
    for (size_t i = 0; i < a->p.learn.n; i++) {
        if (a->p.learn.e[i].offset >= probe_start)
            continue;
        same &= memcmp(params_grad(&a->p, (int)i), params_grad(&b->p, (int)i),
                       a->p.learn.e[i].numel * sizeof(float)) == 0;
    }
    return same;
}

/* Labels of the models stepped by init_and_step (batch <= 6). */
static const int32_t step_labels[6] = {1, 2, 3, 1, 0, 5};

/* A model of config c on fill_views' inputs after one step (step 3). */
static void init_and_step(struct lejepa *m, const struct lejepa_config *c,
                          struct lejepa_losses *out)
{
    char err[ERR_LEN];
    CU_ASSERT_FATAL(c->batch <= 6);
    CU_ASSERT_EQUAL_FATAL(lejepa_init(m, c, err), 0);
    fill_views(m, c->batch);
    lejepa_forward_backward(m, step_labels, 3, out);
}

static void check_smaller_step(const struct lejepa_config big)
{
    struct lejepa_config small = big;
    small.batch = 4;
    char err[ERR_LEN];
    struct lejepa a, b;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&a, &big, err), 0);
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&b, &small, err), 0);
    lejepa_set_batch(&a, 4);
    fill_views(&a, 4);
    fill_views(&b, 4);
    int32_t labels[4] = {1, 2, 3, 1};
    struct lejepa_losses la, lb;
    lejepa_forward_backward(&a, labels, 3, &la);
    lejepa_forward_backward(&b, labels, 3, &lb);
    CU_ASSERT_DOUBLE_EQUAL(la.loss, lb.loss, 1e-6 * fabs(lb.loss));
    CU_ASSERT_DOUBLE_EQUAL(la.probe_loss, lb.probe_loss, 1e-6 * lb.probe_loss);
    CU_ASSERT_EQUAL(la.probe_total, 4 * a.views);
    double diff = 0, scale = 0;
    for (size_t i = 0; i < a.p.learn.n; i++) {
        const float *ga = params_grad(&a.p, (int)i), *gb = params_grad(&b.p, (int)i);
        for (size_t k = 0; k < a.p.learn.e[i].numel; k++) {
            diff = fmax(diff, fabs(ga[k] - gb[k]));
            scale = fmax(scale, fabs(gb[k]));
        }
    }
    CU_ASSERT(diff <= 1e-5 * scale);
    /* And back to the full batch: a different loss. */
    lejepa_set_batch(&a, big.batch);
    fill_views(&a, big.batch);
    int32_t labels6[6] = {1, 2, 3, 1, 0, 5};
    lejepa_forward_backward(&a, labels6, 3, &la);
    CU_ASSERT(fabs(la.loss - lb.loss) > 1e-6);
    lejepa_free(&a);
    lejepa_free(&b);
}

static void test_smaller_step_equals_smaller_model(void)
{
    check_smaller_step(lejepa_cases[0].c);
}

static void test_smaller_step_vit(void)
{
    CU_ASSERT_EQUAL_FATAL(lejepa_cases[2].c.backbone, LEJEPA_BACKBONE_VIT);
    check_smaller_step(lejepa_cases[2].c);
}

static void test_load_pixels_normalises(void)
{
    struct lejepa_config c = lejepa_cases[1].c;   /* 3 channels, Vl = 0 */
    char err[ERR_LEN];
    struct lejepa m;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&m, &c, err), 0);
    lejepa_set_batch(&m, 3);
    const int S = c.global_size, C = 3, V = c.global_views;
    size_t n = (size_t)V * 3 * C * S * S;
    uint8_t *px = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        px[i] = (uint8_t)(i * 7 % 256);
    const float mean[3] = {0.5f, 0.25f, 0.0f}, std[3] = {0.5f, 0.25f, 1.0f};
    lejepa_load_pixels(&m, 0, px, mean, std);
    const float *x = lejepa_input(&m, 0);
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        int ch = (int)(i / ((size_t)S * S) % C);
        float want = (px[i] / 255.0f - mean[ch]) / std[ch];
        ok &= fabsf(x[i] - want) <= 1e-6f * (1 + fabsf(want));
    }
    CU_ASSERT(ok);
    /* Hand-checked corners: 255 in channel 1 -> (1 - 0.25) / 0.25 = 3. */
    memset(px, 255, n);
    lejepa_load_pixels(&m, 0, px, mean, std);
    CU_ASSERT_DOUBLE_EQUAL(x[(size_t)S * S], 3.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(x[0], 1.0, 1e-6);
    free(px);
    lejepa_free(&m);
}

/* The same weights and views with sigreg_debias on: SIGReg is the mean
 * over views of the debiased statistic of the same sums (recomputed from
 * the biased model's saved sums), and the loss moves by lambda times the
 * change, since the invariance term does not depend on it. */
static void test_debias_reaches_step(void)
{
    struct lejepa_config c = lejepa_cases[0].c, cd = c;
    cd.sigreg_debias = true;
    struct lejepa a, b;
    struct lejepa_losses la, lb;
    init_and_step(&a, &c, &la);
    init_and_step(&b, &cd, &lb);
    CU_ASSERT_FALSE(a.sr.grid.debias);
    CU_ASSERT_TRUE(b.sr.grid.debias);
    struct sigreg_grid gd = a.sr.grid;
    gd.debias = true;
    double want = 0;
    for (int v = 0; v < a.views; v++)
        want += sigreg_statistic(NULL, a.sr.ss[v].cos_sum, a.sr.ss[v].sin_sum, &gd,
                                 c.batch, c.slices) / a.views;
    CU_ASSERT_DOUBLE_EQUAL(lb.sigreg, want, 1e-9 * (1 + fabs(want)));
    CU_ASSERT(la.sigreg - lb.sigreg > 0.1);
    CU_ASSERT_DOUBLE_EQUAL(lb.inv, la.inv, 1e-12 * la.inv);
    CU_ASSERT_DOUBLE_EQUAL(la.loss - lb.loss, c.lambda * (la.sigreg - lb.sigreg),
                           1e-6 * fabs(la.loss));
    lejepa_free(&a);
    lejepa_free(&b);
}

/* probe_global_only: the same weights and views as a probe on every view;
 * the loss and every encoder gradient are bit-identical (the probe reads
 * detached embeddings), the probe's rows are the global views' and its
 * loss is the mean cross-entropy of the global rows of the every-view
 * probe's logits. */
static void test_probe_global_only(void)
{
    struct lejepa_config c = lejepa_cases[0].c, cg = c;
    CU_ASSERT_FATAL(c.local_views > 0 && c.n_classes > 0);
    cg.probe_views = LEJEPA_PROBE_GLOBAL;
    struct lejepa a, b;
    struct lejepa_losses la, lb;
    init_and_step(&a, &c, &la);
    init_and_step(&b, &cg, &lb);
    const int N = c.batch, K = c.n_classes, rows = c.global_views * N;
    CU_ASSERT_EQUAL(la.probe_total, a.views * N);
    CU_ASSERT_EQUAL(lb.probe_total, rows);
    CU_ASSERT_EQUAL(la.loss, lb.loss);
    CU_ASSERT(encoder_grads_equal(&a, &b));
    double ce = 0;
    for (int r = 0; r < rows; r++) {
        const float *z = a.probe.logits + (size_t)r * K;
        double mx = z[0], s = 0;
        for (int k = 1; k < K; k++)
            mx = fmax(mx, z[k]);
        for (int k = 0; k < K; k++)
            s += exp(z[k] - mx);
        ce += mx + log(s) - z[step_labels[r % N]];
    }
    ce /= rows;
    CU_ASSERT_DOUBLE_EQUAL(lb.probe_loss, ce, 1e-5 * ce);
    CU_ASSERT(fabs(la.probe_loss - lb.probe_loss) > 1e-4 * ce);
    lejepa_free(&a);
    lejepa_free(&b);
}

/* The probe's mean cross-entropy on rows of embeddings emb (rows, D), by
 * hand in double: LayerNorm with its weights, then Linear. */
static double probe_ce(const struct lejepa *m, const float *emb, int rows,
                       const int32_t *labels)
{
    const int D = m->emb_dim, K = m->c.n_classes;
    const float *lw = params_data(&m->p, m->probe.ln_w);
    const float *lb = params_data(&m->p, m->probe.ln_b);
    const float *w = params_data(&m->p, m->probe.w);
    const float *b = params_data(&m->p, m->probe.b);
    double *ln = xmalloc((size_t)D * sizeof *ln), ce = 0;
    for (int r = 0; r < rows; r++) {
        const float *x = emb + (size_t)r * D;
        double mu = 0, var = 0;
        for (int d = 0; d < D; d++)
            mu += x[d];
        mu /= D;
        for (int d = 0; d < D; d++)
            var += (x[d] - mu) * (x[d] - mu);
        var /= D;
        for (int d = 0; d < D; d++)
            ln[d] = (x[d] - mu) / sqrt(var + NN_LN_EPS) * lw[d] + lb[d];
        double z[64], mx = -INFINITY, s = 0;
        CU_ASSERT_FATAL(K <= 64);
        for (int k = 0; k < K; k++) {
            z[k] = b[k];
            for (int d = 0; d < D; d++)
                z[k] += (double)w[(size_t)k * D + d] * ln[d];
            mx = fmax(mx, z[k]);
        }
        for (int k = 0; k < K; k++)
            s += exp(z[k] - mx);
        ce += mx + log(s) - z[labels[r]];
    }
    free(ln);
    return ce / rows;
}

/* probe_views = eval: the probe's rows are the eval views, its loss that of
 * the probe on the embeddings of a separate eval-mode backbone (BatchNorm on
 * the running statistics) with the stepped model's weights; the loss and
 * every encoder gradient are a probe on every view's, bit for bit. */
static void test_probe_eval_view(void)
{
    struct lejepa_config c = lejepa_cases[0].c, ce = c;
    CU_ASSERT_FATAL(c.n_classes > 0 && c.resnet.depths[0] > 0);
    ce.probe_views = LEJEPA_PROBE_EVAL;
    struct lejepa a, b;
    struct lejepa_losses la, lb;
    init_and_step(&a, &c, &la);
    init_and_step(&b, &ce, &lb);
    CU_ASSERT_PTR_NULL(lejepa_probe_input(&a));
    CU_ASSERT_PTR_NOT_NULL_FATAL(lejepa_probe_input(&b));
    const int N = c.batch;
    CU_ASSERT_EQUAL(lb.probe_total, N);
    CU_ASSERT_EQUAL(lejepa_probe_rows(&b), N);
    CU_ASSERT_EQUAL(la.loss, lb.loss);
    CU_ASSERT(encoder_grads_equal(&a, &b));
    struct lejepa_eval e;
    lejepa_eval_init(&e, &b, N);
    size_t img = (size_t)lejepa_in_channels(&c) * c.global_size * c.global_size;
    memcpy(lejepa_eval_input(&e), lejepa_probe_input(&b), N * img * sizeof(float));
    double want = probe_ce(&b, lejepa_eval_forward(&e), N, step_labels);
    CU_ASSERT_DOUBLE_EQUAL(lb.probe_loss, want, 1e-5 * want);
    /* in training mode (batch statistics) the same pixels read otherwise */
    graph_forward(&e.g, true);
    double train_mode = probe_ce(&b, graph_act(&e.g, e.emb), N, step_labels);
    CU_ASSERT(fabs(train_mode - want) > 1e-3 * want);
    lejepa_eval_free(&e);
    lejepa_free(&a);
    lejepa_free(&b);
}

/* bn_running_global: after a step the running statistics equal those of
 * a model without local views (the same global views), while the loss is
 * the every-group model's; with every group updating them they differ. */
static void test_bn_running_global(void)
{
    struct lejepa_config c = lejepa_cases[0].c, cg = c, c0 = c;
    CU_ASSERT_FATAL(c.local_views > 0);
    cg.bn_running_global = true;
    c0.local_views = 0;
    struct lejepa a, b, z;
    struct lejepa_losses la, lb, lz;
    init_and_step(&a, &c, &la);
    init_and_step(&b, &cg, &lb);
    init_and_step(&z, &c0, &lz);
    CU_ASSERT_FATAL(a.p.state.total > 0 && a.p.state.total == z.p.state.total);
    CU_ASSERT_EQUAL(la.loss, lb.loss);
    const size_t bytes = a.p.state.total * sizeof(float);
    CU_ASSERT(memcmp(b.p.state_data, z.p.state_data, bytes) == 0);
    CU_ASSERT(memcmp(a.p.state_data, z.p.state_data, bytes) != 0);
    lejepa_free(&a);
    lejepa_free(&b);
    lejepa_free(&z);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"a smaller step equals a smaller model", test_smaller_step_equals_smaller_model},
        {"the same with a ViT", test_smaller_step_vit},
        {"pixels normalised per channel", test_load_pixels_normalises},
        {"sigreg_debias reaches the step", test_debias_reaches_step},
        {"a probe on the global views only", test_probe_global_only},
        {"a probe on the eval view", test_probe_eval_view},
        {"running statistics of the global views only", test_bn_running_global},
        {NULL, NULL},
    };
    return testing_run("lejepa", cases);
}
