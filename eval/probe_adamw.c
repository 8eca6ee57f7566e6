/*
 * probe_adamw.c: LayerNorm + Linear trained by AdamW on frozen features
 * (probe_adamw.h).
 */
#include "probe_adamw.h"

#include <math.h>
#include <string.h>

#include "adamw.h"
#include "nn.h"
#include "params.h"
#include "rng.h"
#include "util.h"

struct probe {
    struct params p;
    int ln_w, ln_b, w, b;
    int dim, k, rows; /* rows: buffer capacity */
    float *in, *ln, *mean, *rstd, *logits, *dlogits, *dln;
    int32_t *labels;
};

static void probe_init(struct probe *q, int dim, int k, int rows, uint64_t seed)
{
    memset(q, 0, sizeof *q);
    q->dim = dim;
    q->k = k;
    q->rows = rows;
    q->ln_w = params_add(&q->p.learn, "probe.0.weight", 1, &dim,
                         PARAMS_GROUP_PROBE, PARAMS_INIT_ONES, 0);
    q->ln_b = params_add(&q->p.learn, "probe.0.bias", 1, &dim,
                         PARAMS_GROUP_PROBE, PARAMS_INIT_ZEROS, 0);
    int shape[2] = {k, dim};
    q->w = params_add(&q->p.learn, "probe.1.weight", 2, shape,
                      PARAMS_GROUP_PROBE, PARAMS_INIT_UNIFORM_FAN_IN, dim);
    q->b = params_add(&q->p.learn, "probe.1.bias", 1, &k,
                      PARAMS_GROUP_PROBE, PARAMS_INIT_UNIFORM_FAN_IN, dim);
    params_alloc(&q->p);
    params_init(&q->p, seed);
    size_t rd = (size_t)rows * (size_t)dim, rk = (size_t)rows * (size_t)k;
    q->in = xmalloc(rd * sizeof(float));
    q->ln = xmalloc(rd * sizeof(float));
    q->dln = xmalloc(rd * sizeof(float));
    q->mean = xmalloc((size_t)rows * sizeof(float));
    q->rstd = xmalloc((size_t)rows * sizeof(float));
    q->logits = xmalloc(rk * sizeof(float));
    q->dlogits = xmalloc(rk * sizeof(float));
    q->labels = xmalloc((size_t)rows * sizeof(int32_t));
}

static void probe_free(struct probe *q)
{
    params_free(&q->p);
    free(q->in);
    free(q->ln);
    free(q->dln);
    free(q->mean);
    free(q->rstd);
    free(q->logits);
    free(q->dlogits);
    free(q->labels);
}

/* Logits of the first n rows of q->in. */
static void forward(struct probe *q, int n)
{
    const struct params *p = &q->p;
    nn_layernorm_forward(q->ln, q->mean, q->rstd, q->in,
                         params_data(p, q->ln_w), params_data(p, q->ln_b), n,
                         q->dim, NN_LN_EPS);
    nn_linear_forward(q->logits, q->ln, params_data(p, q->w),
                      params_data(p, q->b), n, q->dim, q->k);
}

static int check_labels(const int32_t *y, size_t n, int k, const char *what,
                        char *err)
{
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return errf(err, "probe: %s label %d of row %zu is outside [0, %d)",
                        what, (int)y[i], i, k);
    return 0;
}

int probe_adamw_run(const float *train, const int32_t *train_labels,
                    size_t n_train, const float *val, const int32_t *val_labels,
                    size_t n_val, int dim, int n_classes,
                    const struct probe_adamw_options *o, double *top1,
                    char *err)
{
    if (n_train == 0 || n_val == 0 || dim <= 0 || n_classes < 2 ||
        o->epochs < 1 || o->batch < 1)
        return errf(err, "probe: %zu train and %zu val rows of dim %d, %d "
                    "classes, %d epochs of batch %d: nothing to fit",
                    n_train, n_val, dim, n_classes, o->epochs, o->batch);
    if (check_labels(train_labels, n_train, n_classes, "train", err) ||
        check_labels(val_labels, n_val, n_classes, "val", err))
        return -1;
    const int B = (size_t)o->batch < n_train ? o->batch : (int)n_train;
    struct probe q;
    probe_init(&q, dim, n_classes, B, o->seed);
    struct adamw opt;
    adamw_init(&opt, 0.9, 0.999, 1e-8);
    opt.group[PARAMS_GROUP_PROBE] =
        (struct adamw_group){.lr = o->lr, .weight_decay = o->weight_decay};
    size_t *order = xmalloc(n_train * sizeof *order);
    for (size_t i = 0; i < n_train; i++)
        order[i] = i;
    struct rng r;
    rng_init(&r, o->seed, 0x70726f6265ULL /* "probe" */, 0, 0);
    const size_t steps_per_epoch = (n_train + (size_t)B - 1) / (size_t)B;
    const long total = (long)steps_per_epoch * o->epochs;
    long step = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (size_t i = n_train - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)(rng_u64(&r) % (i + 1));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (size_t s = 0; s < n_train; s += (size_t)B, step++) {
            int n = (int)(n_train - s < (size_t)B ? n_train - s : (size_t)B);
            for (int i = 0; i < n; i++) {
                memcpy(q.in + (size_t)i * dim, train + order[s + i] * (size_t)dim,
                       (size_t)dim * sizeof(float));
                q.labels[i] = train_labels[order[s + i]];
            }
            forward(&q, n);
            memset(q.p.grad, 0, q.p.learn.total * sizeof(float));
            nn_crossentropy_forward(q.dlogits, NULL, q.logits, q.labels, n,
                                    n_classes);
            memset(q.dln, 0, (size_t)n * dim * sizeof(float));
            nn_linear_backward(q.dln, params_grad(&q.p, q.w),
                               params_grad(&q.p, q.b), q.dlogits, q.ln,
                               params_data(&q.p, q.w), n, dim, n_classes);
            nn_layernorm_backward(NULL, params_grad(&q.p, q.ln_w),
                                  params_grad(&q.p, q.ln_b), q.dln, q.in,
                                  q.mean, q.rstd, params_data(&q.p, q.ln_w),
                                  n, dim);
            adamw_step(&opt, &q.p, 0.5 * (1.0 + cos(M_PI * (double)step / (double)total)));
        }
    }
    size_t correct = 0;
    for (size_t s = 0; s < n_val; s += (size_t)B) {
        int n = (int)(n_val - s < (size_t)B ? n_val - s : (size_t)B);
        memcpy(q.in, val + s * (size_t)dim, (size_t)n * dim * sizeof(float));
        forward(&q, n);
        for (int i = 0; i < n; i++) {
            const float *z = q.logits + (size_t)i * n_classes;
            int best = 0;
            for (int c = 1; c < n_classes; c++)
                if (z[c] > z[best])
                    best = c;
            correct += best == val_labels[s + (size_t)i];
        }
    }
    *top1 = (double)correct / (double)n_val;
    free(order);
    probe_free(&q);
    return 0;
}
