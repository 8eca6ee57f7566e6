/*
 * lejepa.c: model assembly and the loss of one step (see lejepa.h). Every
 * reduction of the step across ranks happens in lejepa_forward_backward,
 * in this order: the sample count, SIGReg's per-slice cos/sin sums (one
 * all-reduce for all views), the BatchNorm statistics when synchronised
 * (inside the graphs, dist_bn.c), the loss totals, then the gradients.
 * In a world of 1 each of them is a no-op and the arithmetic is the single
 * process's, bit for bit.
 */
#include "lejepa.h"

#include <math.h>
#include <string.h>

#include "dist_bn.h"
#include "nn.h"
#include "util.h"

int lejepa_in_channels(const struct lejepa_config *c)
{
    return c->backbone == LEJEPA_BACKBONE_VIT ? c->vit.in_channels
                                              : c->resnet.in_channels;
}

static int check_config(const struct lejepa_config *c, char *err)
{
    if (c->backbone == LEJEPA_BACKBONE_VIT && vit_check_config(&c->vit, err))
        return -1;
    if (c->batch < 2)
        return errf(err, "batch must be at least 2 (BatchNorm needs it), got %d",
                    c->batch);
    if (c->global_views < 1)
        return errf(err, "global_views must be at least 1");
    if (c->local_views < 0)
        return errf(err, "local_views must not be negative");
    if (c->global_views + c->local_views > LEJEPA_MAX_VIEWS)
        return errf(err, "at most %d views in all", LEJEPA_MAX_VIEWS);
    if (c->n_proj < 1 || c->n_proj > LEJEPA_MAX_PROJ)
        return errf(err, "projector needs 1..%d layers", LEJEPA_MAX_PROJ);
    if (c->n_classes == 1 || c->n_classes < 0)
        return errf(err, "the probe needs at least 2 classes (0: no probe), "
                    "got %d", c->n_classes);
    if (c->lambda < 0 || c->lambda > 1)
        return errf(err, "lambda must be in [0, 1], got %g", c->lambda);
    if (c->probe_views < LEJEPA_PROBE_ALL || c->probe_views > LEJEPA_PROBE_EVAL)
        return errf(err, "probe_views %d is none of all, global, eval",
                    (int)c->probe_views);
    return 0;
}

/* The backbone on g's input tensor in; returns the embedding tensor, sets
 * *feat to the feature tensor (ViT: the normed tokens) and, for a ViT,
 * *vo to what vit_build made. */
static int build_backbone(const struct lejepa_config *c, struct graph *g,
                          int in, int *feat, struct vit_out *vo)
{
    if (c->backbone == LEJEPA_BACKBONE_RESNET)
        return resnet_build(g, in, &c->resnet, "backbone", feat);
    vit_build(g, in, &c->vit, c->global_size, "backbone", vo);
    *feat = vo->tokens;
    return vo->emb;
}

static void build_group(struct lejepa *m, int gi, int views, int size)
{
    const struct lejepa_config *c = &m->c;
    struct lejepa_group *gr = &m->grp[gi];
    gr->views = views;
    gr->size = size;
    graph_init(&gr->g, &m->p, views * c->batch);
    gr->in = graph_input(&gr->g, lejepa_in_channels(c), size, size);
    struct vit_out vo = {0};
    gr->emb = build_backbone(c, &gr->g, gr->in, &gr->feat, &vo);
    int x = gr->emb;
    char name[PARAMS_NAME_LEN];
    for (int i = 0; i < c->n_proj; i++) {
        /* projector.{0,3,6,...}: Linear, then BN1d and ReLU between layers */
        snprintf(name, sizeof name, "projector.%d", 3 * i);
        x = graph_linear(&gr->g, x, name, c->proj[i], PARAMS_GROUP_ENCODER);
        if (i + 1 < c->n_proj) {
            snprintf(name, sizeof name, "projector.%d", 3 * i + 1);
            x = graph_relu(&gr->g, graph_bn(&gr->g, x, name,
                                            PARAMS_GROUP_ENCODER), true);
        }
    }
    gr->proj = x;
}

/* The online probe's parameters: LayerNorm(D) then Linear(D, K). */
static void add_probe(struct lejepa *m, int D, int K)
{
    m->probe.ln_w = params_add(&m->p.learn, "probe.0.weight", 1, &D,
                               PARAMS_GROUP_PROBE, PARAMS_INIT_ONES, 0);
    m->probe.ln_b = params_add(&m->p.learn, "probe.0.bias", 1, &D,
                               PARAMS_GROUP_PROBE, PARAMS_INIT_ZEROS, 0);
    int wshape[2] = {K, D};
    m->probe.w = params_add(&m->p.learn, "probe.1.weight", 2, wshape,
                            PARAMS_GROUP_PROBE, PARAMS_INIT_UNIFORM_FAN_IN, D);
    m->probe.b = params_add(&m->p.learn, "probe.1.bias", 1, &K,
                            PARAMS_GROUP_PROBE, PARAMS_INIT_UNIFORM_FAN_IN, D);
}

/* Embeddings per sample the probe learns from: every view (the global
 * ones first), the global views, or the eval view. */
static int probe_views(const struct lejepa *m)
{
    switch (m->c.probe_views) {
    case LEJEPA_PROBE_GLOBAL: return m->c.global_views;
    case LEJEPA_PROBE_EVAL: return 1;
    case LEJEPA_PROBE_ALL: break;
    }
    return m->views;
}

int lejepa_probe_rows(const struct lejepa *m)
{
    return lejepa_has_probe(m) ? probe_views(m) * m->c.batch : 0;
}

int lejepa_init(struct lejepa *m, const struct lejepa_config *c, char *err)
{
    memset(m, 0, sizeof *m);
    if (check_config(c, err) != 0)
        return -1;
    if (sigreg_grid_init(&m->sr.grid, c->knots, c->t_max, err) != 0)
        return -1;
    m->sr.grid.debias = c->sigreg_debias;
    m->c = *c;
    m->n_groups = c->local_views > 0 ? 2 : 1;
    m->views = c->global_views + c->local_views;
    m->n = c->batch;
    build_group(m, 0, c->global_views, c->global_size);
    if (m->n_groups == 2) {
        build_group(m, 1, c->local_views, c->local_size);
        m->grp[1].g.keep_running = c->bn_running_global;
    }
    m->emb_dim = m->grp[0].g.t[m->grp[0].emb].C;
    m->proj_dim = c->proj[c->n_proj - 1];

    int D = m->emb_dim, K = c->n_classes;
    if (K > 0)
        add_probe(m, D, K);
    params_alloc(&m->p);
    params_init(&m->p, c->seed);
    if (c->backbone == LEJEPA_BACKBONE_VIT)
        vit_init_params(&m->p, "backbone", c->seed);
    for (int g = 0; g < m->n_groups; g++)
        graph_alloc(&m->grp[g].g, true);

    size_t rows = (size_t)lejepa_probe_rows(m);
    if (K > 0 && c->probe_views == LEJEPA_PROBE_EVAL) {
        m->probe.eval = xmalloc(sizeof *m->probe.eval);
        lejepa_eval_init(m->probe.eval, m, c->batch);
    }
    if (K > 0) {
        m->probe.in = xmalloc_aligned(rows * D * sizeof(float));
        m->probe.ln = xmalloc_aligned(rows * D * sizeof(float));
        m->probe.dln = xmalloc_aligned(rows * D * sizeof(float));
        m->probe.mean = xmalloc_aligned(rows * sizeof(float));
        m->probe.rstd = xmalloc_aligned(rows * sizeof(float));
        m->probe.logits = xmalloc_aligned(rows * K * sizeof(float));
        m->probe.dlogits = xmalloc_aligned(rows * K * sizeof(float));
        m->probe.labels = xmalloc_aligned(rows * sizeof(int32_t));
    }

    m->sr.dirs = xmalloc_aligned((size_t)m->proj_dim * c->slices * sizeof(float));
    size_t ss_bytes = sigreg_scratch_size(c->batch, c->slices, c->knots);
    m->sr.ss_mem = xmalloc_aligned(ss_bytes * (size_t)m->views);
    m->sr.ss = xcalloc((size_t)m->views, sizeof *m->sr.ss);
    const size_t mt = (size_t)c->slices * c->knots;
    m->sr.sig_sums = xmalloc_aligned(2 * mt * m->views * sizeof(double));
    for (int v = 0; v < m->views; v++) {
        sigreg_scratch_init(&m->sr.ss[v], (char *)m->sr.ss_mem + v * ss_bytes,
                            c->batch, c->slices, c->knots);
        /* the sums of all views in one block, for one all-reduce */
        m->sr.ss[v].cos_sum = m->sr.sig_sums + 2 * mt * v;
        m->sr.ss[v].sin_sum = m->sr.sig_sums + 2 * mt * v + mt;
    }
    m->n_global = c->batch;
    return 0;
}

void lejepa_free(struct lejepa *m)
{
    dist_overlap_free(&m->ov);
    for (int g = 0; g < m->n_groups; g++)
        graph_free(&m->grp[g].g);
    if (m->probe.eval) {
        lejepa_eval_free(m->probe.eval);
        free(m->probe.eval);
    }
    params_free(&m->p);
    float *bufs[] = {m->probe.in, m->probe.ln, m->probe.dln, m->probe.mean,
                     m->probe.rstd, m->probe.logits, m->probe.dlogits,
                     m->sr.dirs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        util_free_aligned(bufs[i]);
    util_free_aligned(m->probe.labels);
    util_free_aligned(m->sr.ss_mem);
    util_free_aligned(m->sr.sig_sums);
    free(m->sr.ss);
    memset(m, 0, sizeof *m);
}

/* Whether the step's reductions cross processes. */
static bool parallel(const struct lejepa *m)
{
    return m->dist && m->dist->world > 1;
}

void lejepa_set_dist(struct lejepa *m, struct dist *d)
{
    m->dist = d;
    bool sync = m->c.sync_bn && d && d->world > 1;
    size_t need = 4;  /* the count and the loss totals */
    for (int g = 0; g < m->n_groups; g++) {
        struct graph *gr = &m->grp[g].g;
        gr->bn_dist = sync ? d : NULL;
        for (int i = 0; i < gr->n_ops; i++)
            if (gr->ops[i].kind == GRAPH_BN) {
                size_t s = dist_bn_scratch(gr->t[gr->ops[i].in].C);
                need = s > need ? s : need;
            }
    }
    if (d)
        dist_reserve(d, need);
    dist_overlap_free(&m->ov);
    struct graph *last = &m->grp[m->n_groups - 1].g;
    last->after_backward = NULL;
    if (d && d->world > 1) {
        /* the encoder's gradients come first in the arena, the probe's
         * after (lejepa_init) */
        size_t end = lejepa_has_probe(m) ? m->p.learn.e[m->probe.ln_w].offset
                                         : m->p.learn.total;
        dist_overlap_init(&m->ov, d, last, m->p.grad, end);
        last->after_backward = dist_overlap_after_op;
        last->after_ctx = &m->ov;
    }
}

void lejepa_broadcast_weights(struct lejepa *m)
{
    if (!parallel(m))
        return;
    const size_t n = m->p.learn.total;
    dist_broadcast_float(m->dist, m->p.data, n);
    dist_broadcast_float(m->dist, m->p.m, n);
    dist_broadcast_float(m->dist, m->p.v, n);
    dist_broadcast_float(m->dist, m->p.state_data, m->p.state.total);
}

void lejepa_set_batch(struct lejepa *m, int n)
{
    CHECK(n >= (parallel(m) ? 1 : 2) && n <= m->c.batch);
    m->n = n;
    for (int g = 0; g < m->n_groups; g++)
        graph_set_batch(&m->grp[g].g, m->grp[g].views * n);
    if (m->probe.eval)
        graph_set_batch(&m->probe.eval->g, n);
}

void lejepa_load_pixels(struct lejepa *m, int group, const uint8_t *pixels,
                        const float *mean, const float *std)
{
    const struct lejepa_group *gr = &m->grp[group];
    const int C = lejepa_in_channels(&m->c);
    const size_t plane = (size_t)gr->size * gr->size;
    const size_t images = (size_t)gr->views * m->n;
    nn_pixels_normalize(lejepa_input(m, group), pixels, mean, std, images, C,
                        plane);
}

float *lejepa_probe_input(struct lejepa *m)
{
    return m->probe.eval ? lejepa_eval_input(m->probe.eval) : NULL;
}

void lejepa_load_probe_pixels(struct lejepa *m, const uint8_t *pixels,
                              const float *mean, const float *std)
{
    CHECK(m->probe.eval);
    const size_t plane = (size_t)m->c.global_size * m->c.global_size;
    nn_pixels_normalize(lejepa_probe_input(m), pixels, mean, std, (size_t)m->n,
                        lejepa_in_channels(&m->c), plane);
}

float *lejepa_input(struct lejepa *m, int group)
{
    CHECK(group >= 0 && group < m->n_groups);
    return graph_act(&m->grp[group].g, m->grp[group].in);
}

/* Projections of view v (global views first): (N, K) rows in a group. */
static float *view_rows(struct lejepa *m, int v, bool grad)
{
    int gi = v < m->c.global_views ? 0 : 1;
    int local = gi == 0 ? v : v - m->c.global_views;
    struct lejepa_group *gr = &m->grp[gi];
    float *base = grad ? graph_dact(&gr->g, gr->proj)
                       : graph_act(&gr->g, gr->proj);
    return base + (size_t)local * m->n * m->proj_dim;
}

/* invariance = mean over (v, n, k) of (mu - P_v)^2, mu = mean of the global
 * views; adds its gradient times scale to the projections' gradients. The
 * mean is over the global batch (m->n_global samples); returns the sum of
 * this rank's terms, to be summed across ranks and divided by
 * V * n_global * K. */
static double invariance(struct lejepa *m, float scale)
{
    const int K = m->proj_dim, Vg = m->c.global_views, V = m->views;
    const size_t NK = (size_t)m->n * K;
    const size_t NK_global = (size_t)m->n_global * K;
    const float *P[LEJEPA_MAX_VIEWS];
    float *dP[LEJEPA_MAX_VIEWS];
    for (int v = 0; v < V; v++) {
        P[v] = view_rows(m, v, false);
        dP[v] = view_rows(m, v, true);
    }
    const float coef = scale * 2.0f / (float)((double)V * NK_global);
    double total = 0;
    /* dL/dP_w = coef * [(P_w - mu) + [w global] (1/Vg) sum_v (mu - P_v)] */
    #pragma omp parallel for reduction(+ : total) schedule(static)
    for (size_t i = 0; i < NK; i++) {
        float mu = 0;
        for (int v = 0; v < Vg; v++)
            mu += P[v][i];
        mu /= (float)Vg;
        float dev_sum = 0;
        for (int v = 0; v < V; v++) {
            float d = mu - P[v][i];
            total += (double)d * d;
            dev_sum += d;
        }
        for (int v = 0; v < V; v++) {
            float g = P[v][i] - mu;
            if (v < Vg)
                g += dev_sum / (float)Vg;
            dP[v][i] += coef * g;
        }
    }
    return total;
}

static void probe_step(struct lejepa *m, const int32_t *labels,
                       struct lejepa_losses *out)
{
    const int N = m->n, D = m->emb_dim, K = m->c.n_classes;
    const int pv = probe_views(m);
    const int rows = pv * N;
    for (int v = 0; v < pv; v++) {
        const float *emb;
        if (m->probe.eval) {
            /* the weights of this step's forward, BatchNorm in eval mode */
            emb = lejepa_eval_forward(m->probe.eval);
        } else {
            int gi = v < m->c.global_views ? 0 : 1;
            int local = gi == 0 ? v : v - m->c.global_views;
            const struct lejepa_group *gr = &m->grp[gi];
            emb = graph_act(&gr->g, gr->emb) + (size_t)local * N * D;
        }
        memcpy(m->probe.in + (size_t)v * N * D, emb,
               (size_t)N * D * sizeof(float));
        for (int n = 0; n < N; n++)
            m->probe.labels[v * N + n] = labels[n];
    }
    struct params *p = &m->p;
    nn_layernorm_forward(m->probe.ln, m->probe.mean, m->probe.rstd,
                         m->probe.in, params_data(p, m->probe.ln_w),
                         params_data(p, m->probe.ln_b), rows, D, NN_LN_EPS);
    nn_linear_forward(m->probe.logits, m->probe.ln, params_data(p, m->probe.w),
                      params_data(p, m->probe.b), rows, D, K);
    out->probe_loss = nn_crossentropy_forward(m->probe.dlogits,
                                              &out->probe_correct,
                                              m->probe.logits,
                                              m->probe.labels, rows, K);
    out->probe_total = rows;
    if (parallel(m)) {
        /* the mean over every rank's rows: this rank's share of it */
        const long rows_global = (long)pv * m->n_global;
        const float share = (float)rows / (float)rows_global;
        const size_t nl = (size_t)rows * K;
        for (size_t i = 0; i < nl; i++)
            m->probe.dlogits[i] *= share;
    }
    memset(m->probe.dln, 0, (size_t)rows * D * sizeof(float));
    nn_linear_backward(m->probe.dln, params_grad(p, m->probe.w),
                       params_grad(p, m->probe.b), m->probe.dlogits,
                       m->probe.ln, params_data(p, m->probe.w), rows, D, K);
    /* The probe sees detached embeddings: no input gradient. */
    nn_layernorm_backward(NULL, params_grad(p, m->probe.ln_w),
                          params_grad(p, m->probe.ln_b), m->probe.dln,
                          m->probe.in, m->probe.mean, m->probe.rstd,
                          params_data(p, m->probe.ln_w), rows, D);
}

/* SIGReg of every view on the global batch: this rank's cos/sin sums,
 * summed across ranks, give the global C and S; each rank back-propagates
 * its own samples with them into the projections' gradients (dloss each;
 * the gradient all-reduce then SUMS the ranks' shares). */
static double sigreg_views(struct lejepa *m, uint64_t step, float dloss)
{
    const struct lejepa_config *c = &m->c;
    const int N = m->n, K = m->proj_dim, M = c->slices, V = m->views;
    sigreg_directions(m->sr.dirs, c->seed, step, K, M);
    for (int v = 0; v < V; v++) {
        struct sigreg_scratch *s = &m->sr.ss[v];
        CHECK(N <= s->n_cap);
        s->n = N;
        sigreg_project(s->x, view_rows(m, v, false), m->sr.dirs, N, K, M);
        sigreg_sums(s->cos_sum, s->sin_sum, s->x, &m->sr.grid, N, M);
    }
    if (m->dist)
        dist_allreduce_double(m->dist, m->sr.sig_sums,
                              2 * (size_t)M * c->knots * V);
    double sig = 0;
    for (int v = 0; v < V; v++)
        sig += sigreg_statistic(NULL, m->sr.ss[v].cos_sum, m->sr.ss[v].sin_sum,
                                &m->sr.grid, m->n_global, M);
#ifdef LEJEPA_DIST_BUG_DIVIDE_SIGREG
    /* The known bug of other implementations, kept only so that a test can
     * show that tests/test_dist.c catches it (meson test dist_bug). */
    if (m->dist)
        dloss /= (float)m->dist->world;
#endif
    for (int v = 0; v < V; v++) {
        struct sigreg_scratch *s = &m->sr.ss[v];
        sigreg_backward_x(s->dx, dloss, s->x, s->cos_sum, s->sin_sum,
                          &m->sr.grid, m->n_global, N, M);
        sigreg_backward_z(view_rows(m, v, true), s->dx, m->sr.dirs, N, K, M);
    }
    return sig / V;
}

void lejepa_forward_backward(struct lejepa *m, const int32_t *labels,
                             uint64_t step, struct lejepa_losses *out)
{
    const struct lejepa_config *c = &m->c;
    const int N = m->n, K = m->proj_dim, V = m->views;
    const bool par = parallel(m);
    double tot[4] = {(double)N, 0, 0, 0};
    if (par)
        dist_allreduce_double(m->dist, tot, 1);
    m->n_global = (long)tot[0];
    CHECK(m->n_global >= 2);
    memset(m->p.grad, 0, m->p.learn.total * sizeof(float));
    for (int g = 0; g < m->n_groups; g++) {
        /* drop_path masks: a stream per step and group (then op and row),
         * apart from every other stream of the run's seed */
        m->grp[g].g.drop_seed = c->seed ^ 0x64726f7070617468ULL; /* "droppath" */
        m->grp[g].g.drop_step = 2 * step + (uint64_t)g;
        graph_forward(&m->grp[g].g, true);
        graph_zero_out_grads(&m->grp[g].g);
    }
    if (par && !c->sync_bn && m->p.state.total > 0) {
        /* per-rank BatchNorm: once this step has updated them, the running
         * statistics become their mean over ranks (an exponential average
         * is linear: the running average of every rank's batch
         * statistics), so every rank, and every checkpoint, holds it */
        dist_allreduce_float(m->dist, m->p.state_data, m->p.state.total);
        const float inv = 1.0f / (float)m->dist->world;
        for (size_t i = 0; i < m->p.state.total; i++)
            m->p.state_data[i] *= inv;
    }

    const float lambda = (float)c->lambda;
    double inv_total = invariance(m, 1.0f - lambda);
    out->sigreg = sigreg_views(m, step, lambda / (float)V);

    if (par)
        dist_overlap_begin(&m->ov);
    for (int g = 0; g < m->n_groups; g++)
        graph_backward(&m->grp[g].g, true);
    if (par)
        dist_overlap_flush(&m->ov);
    if (lejepa_has_probe(m)) {
        probe_step(m, labels, out);
    } else {
        out->probe_loss = NAN;
        out->probe_correct = out->probe_total = 0;
    }
    if (par) {
        tot[0] = inv_total;
        tot[1] = out->probe_total ? out->probe_loss * out->probe_total : 0;
        tot[2] = out->probe_correct;
        tot[3] = out->probe_total;
        dist_allreduce_double(m->dist, tot, 4);
        inv_total = tot[0];
        out->probe_loss = tot[3] > 0 ? tot[1] / tot[3] : NAN;
        out->probe_correct = (int)tot[2];
        out->probe_total = (int)tot[3];
        /* the encoder's buckets went out during backward; the probe's
         * gradients now, then all of them are waited for */
        dist_allreduce_float_buckets(m->dist, m->p.grad + m->ov.end,
                                     m->p.learn.total - m->ov.end);
        dist_wait(m->dist);
    }
    out->inv = inv_total / ((double)V * ((size_t)m->n_global * K));
    out->loss = (1.0 - c->lambda) * out->inv + c->lambda * out->sigreg;
}

static int all_finite(const float *x, size_t n)
{
    int ok = 1;
    #pragma omp parallel for reduction(& : ok) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        ok &= isfinite(x[i]) ? 1 : 0;
    return ok;
}

int lejepa_check_finite(const struct lejepa *m, const struct lejepa_losses *l,
                        uint64_t step, char *err)
{
    const struct {
        const char *name;
        double v;
    } terms[] = {{"invariance", l->inv}, {"sigreg", l->sigreg},
                 {"loss", l->loss}, {"probe_loss", l->probe_loss}};
    size_t n_terms = sizeof terms / sizeof terms[0] - !lejepa_has_probe(m);
    for (size_t i = 0; i < n_terms; i++)
        if (!isfinite(terms[i].v))
            return errf(err, "step %llu: %s is %g", (unsigned long long)step,
                        terms[i].name, terms[i].v);
    for (size_t i = 0; i < m->p.learn.n; i++) {
        const struct params_entry *e = &m->p.learn.e[i];
        if (!all_finite(m->p.grad + e->offset, e->numel))
            return errf(err, "step %llu: the gradient of %s is not finite "
                        "(loss %g)", (unsigned long long)step, e->name, l->loss);
    }
    return 0;
}

int lejepa_features_dim(const struct lejepa *m, enum lejepa_features f,
                        char *err)
{
    if (f == LEJEPA_FEATURES_EMBED)
        return m->emb_dim;
    if (m->c.backbone != LEJEPA_BACKBONE_VIT)
        return errf(err, "the CLS of the last two blocks needs a ViT backbone "
                    "(this checkpoint is a ResNet)");
    return 2 * m->c.vit.dim;
}

void lejepa_eval_init(struct lejepa_eval *e, struct lejepa *m, int batch)
{
    lejepa_eval_init_features(e, m, batch, LEJEPA_FEATURES_EMBED);
}

void lejepa_eval_init_features(struct lejepa_eval *e, struct lejepa *m,
                               int batch, enum lejepa_features f)
{
    memset(e, 0, sizeof *e);
    const struct lejepa_config *c = &m->c;
    graph_init(&e->g, &m->p, batch);
    e->in = graph_input(&e->g, lejepa_in_channels(c), c->global_size,
                        c->global_size);
    struct vit_out vo = {0};
    e->emb = build_backbone(c, &e->g, e->in, &e->feat, &vo);
    e->prev_norm = -1;
    if (f == LEJEPA_FEATURES_CLS_LAST2) {
        CHECK(c->backbone == LEJEPA_BACKBONE_VIT);
        /* the final norm's weights ("backbone.norm", looked up, not
         * added) on the tokens the last block reads */
        e->prev_norm = graph_layernorm(&e->g, vo.prev, "backbone.norm",
                                       NN_LN_EPS_VIT, PARAMS_GROUP_ENCODER);
        e->dim = c->vit.dim;
        e->last2 = xmalloc((size_t)batch * 2 * (size_t)e->dim * sizeof(float));
    }
    graph_alloc(&e->g, false);
    const struct graph_tensor *ft = &e->g.t[e->feat];
    if (c->backbone == LEJEPA_BACKBONE_RESNET) {
        e->feat_c = ft->C;
        e->feat_h = ft->H;
        e->feat_w = ft->W;
        return;
    }
    e->feat_c = ft->W;
    e->feat_h = vo.GH;
    e->feat_w = vo.GW;
    e->heads = c->vit.heads;
    e->attn_op = vo.attn_op;
}

void lejepa_eval_free(struct lejepa_eval *e)
{
    free(e->last2);
    graph_free(&e->g);
    memset(e, 0, sizeof *e);
}

float *lejepa_eval_input(struct lejepa_eval *e)
{
    return graph_act(&e->g, e->in);
}

const float *lejepa_eval_forward(struct lejepa_eval *e)
{
    graph_forward(&e->g, false);
    if (e->prev_norm < 0)
        return graph_act(&e->g, e->emb);
    /* token 0 of each image's (T, D) block: the block before's, then the
     * last's (the final normed tokens) */
    const size_t D = (size_t)e->dim, T = (size_t)e->g.t[e->feat].C;
    const float *prev = graph_act(&e->g, e->prev_norm);
    const float *last = graph_act(&e->g, e->feat);
    for (int b = 0; b < e->g.B; b++) {
        memcpy(e->last2 + (size_t)b * 2 * D, prev + (size_t)b * T * D,
               D * sizeof(float));
        memcpy(e->last2 + (size_t)b * 2 * D + D, last + (size_t)b * T * D,
               D * sizeof(float));
    }
    return e->last2;
}

void lejepa_eval_featmap(const struct lejepa_eval *e, int i, float *feat,
                         float *attn)
{
    CHECK(i >= 0 && i < e->g.B);
    const int D = e->feat_c, grid = e->feat_h * e->feat_w;
    const float *f = graph_act(&e->g, e->feat);
    if (!e->heads) {    /* ResNet: already (B, C, H, W) */
        memcpy(feat, f + (size_t)i * D * grid, (size_t)D * grid * sizeof(float));
        return;
    }
    /* ViT: tokens (B, T, D) without the CLS token -> (D, GH*GW) */
    const int T = 1 + grid, NH = e->heads;
    const float *x = f + (size_t)i * T * D;
    for (int t = 0; t < grid; t++)
        for (int d = 0; d < D; d++)
            feat[(size_t)d * grid + t] = x[(size_t)(1 + t) * D + d];
    if (!attn)
        return;
    /* attention probabilities (B, NH, T, T): the CLS rows */
    const float *att = e->g.act + e->g.ops[e->attn_op].save;
    for (int h = 0; h < NH; h++)
        memcpy(attn + (size_t)h * grid, att + ((size_t)i * NH + h) * T * T + 1,
               (size_t)grid * sizeof(float));
}

double lejepa_step_executed_flops(const struct lejepa *m)
{
    /* SIGReg: each view's projections onto the directions, and back */
    double f = 2.0 * 2.0 * m->views * m->n * m->proj_dim * m->c.slices;
    for (int g = 0; g < m->n_groups; g++)
        f += graph_executed_flops(&m->grp[g].g, true);
    if (m->probe.eval)
        f += graph_executed_flops(&m->probe.eval->g, false);
    return f;
}

double lejepa_step_direct_flops(const struct lejepa *m)
{
    /* backward costs about twice the forward's multiply-adds */
    double f = 0;
    for (int g = 0; g < m->n_groups; g++)
        f += 3.0 * graph_forward_flops(&m->grp[g].g);
    if (m->probe.eval)
        f += graph_forward_flops(&m->probe.eval->g);
    return f;
}
