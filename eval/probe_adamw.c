/*
 * probe_adamw.c: LayerNorm + Linear trained by AdamW on frozen features
 * (probe_adamw.h). The evaluator links no engine code (tools/
 * check_layout.py), so the few kernels are here: the row LayerNorm and its
 * backward, two sgemm calls each way for the Linear, softmax
 * cross-entropy, and AdamW (decoupled weight decay, bias correction) on one
 * flat array of the four tensors.
 */
#include "probe_adamw.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "rng.h"
#include "util.h"

#define PROBE_LN_EPS 1e-5f /* nn.LayerNorm's default */
#define PROBE_BETA1 0.9
#define PROBE_BETA2 0.999
#define PROBE_ADAM_EPS 1e-8

struct probe {
    int d, k, rows;
    size_t n_par;
    float *par, *grad, *m, *v; /* gamma (d), beta (d), W (k, d), b (k) */
    float *x, *xh, *h, *rstd, *z, *dh;
    int32_t *y;
};

static float *gamma_of(const struct probe *q, float *base) { (void)q; return base; }
static float *beta_of(const struct probe *q, float *base) { return base + q->d; }
static float *w_of(const struct probe *q, float *base) { return base + 2 * q->d; }
static float *b_of(const struct probe *q, float *base)
{
    return base + 2 * q->d + (size_t)q->k * q->d;
}

static void probe_init(struct probe *q, int d, int k, int rows, uint64_t seed)
{
    memset(q, 0, sizeof *q);
    q->d = d;
    q->k = k;
    q->rows = rows;
    q->n_par = 2 * (size_t)d + (size_t)k * d + (size_t)k;
    q->par = xcalloc(q->n_par, sizeof(float));
    q->grad = xcalloc(q->n_par, sizeof(float));
    q->m = xcalloc(q->n_par, sizeof(float));
    q->v = xcalloc(q->n_par, sizeof(float));
    for (int i = 0; i < d; i++)
        gamma_of(q, q->par)[i] = 1.0f;
    /* nn.Linear's default: uniform(-1/sqrt(d), 1/sqrt(d)) */
    struct rng r;
    rng_init(&r, seed, 0x70726f6265ULL /* "probe" */, 1, 0);
    const double bound = 1.0 / sqrt((double)d);
    float *w = w_of(q, q->par);
    for (size_t i = 0; i < (size_t)k * d + (size_t)k; i++)
        w[i] = (float)((2.0 * rng_uniform(&r) - 1.0) * bound);
    size_t rd = (size_t)rows * d;
    q->x = xmalloc(rd * sizeof(float));
    q->xh = xmalloc(rd * sizeof(float));
    q->h = xmalloc(rd * sizeof(float));
    q->dh = xmalloc(rd * sizeof(float));
    q->rstd = xmalloc((size_t)rows * sizeof(float));
    q->z = xmalloc((size_t)rows * k * sizeof(float));
    q->y = xmalloc((size_t)rows * sizeof(int32_t));
}

static void probe_free(struct probe *q)
{
    float *bufs[] = {q->par, q->grad, q->m, q->v, q->x, q->xh, q->h, q->dh, q->rstd, q->z};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(q->y);
}

/* Logits (n, k) of the first n rows of q->x into q->z. */
static void forward(struct probe *q, int n)
{
    const int d = q->d, k = q->k;
    const float *g = gamma_of(q, q->par), *be = beta_of(q, q->par);
    for (int i = 0; i < n; i++) {
        const float *x = q->x + (size_t)i * d;
        double mu = 0, var = 0;
        for (int j = 0; j < d; j++)
            mu += x[j];
        mu /= d;
        for (int j = 0; j < d; j++)
            var += (x[j] - mu) * (x[j] - mu);
        float rs = (float)(1.0 / sqrt(var / d + PROBE_LN_EPS));
        q->rstd[i] = rs;
        for (int j = 0; j < d; j++) {
            float xh = (float)(x[j] - mu) * rs;
            q->xh[(size_t)i * d + j] = xh;
            q->h[(size_t)i * d + j] = xh * g[j] + be[j];
        }
    }
    const float *b = b_of(q, q->par);
    for (int i = 0; i < n; i++)
        memcpy(q->z + (size_t)i * k, b, (size_t)k * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, k, d, 1.0f, q->h, d,
                w_of(q, q->par), d, 1.0f, q->z, k);
}

/* Mean cross-entropy gradient of the n rows into q->grad. */
static void backward(struct probe *q, int n)
{
    const int d = q->d, k = q->k;
    for (int i = 0; i < n; i++) { /* z becomes dL/dz */
        float *z = q->z + (size_t)i * k, top = z[0];
        for (int c = 1; c < k; c++)
            top = z[c] > top ? z[c] : top;
        double s = 0;
        for (int c = 0; c < k; c++)
            s += exp((double)(z[c] - top));
        for (int c = 0; c < k; c++)
            z[c] = (float)(exp((double)(z[c] - top)) / s) / (float)n;
        z[q->y[i]] -= 1.0f / (float)n;
    }
    memset(q->grad, 0, q->n_par * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, d, n, 1.0f, q->z, k, q->h, d,
                0.0f, w_of(q, q->grad), d);
    float *db = b_of(q, q->grad);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < k; c++)
            db[c] += q->z[(size_t)i * k + c];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, k, 1.0f, q->z, k,
                w_of(q, q->par), d, 0.0f, q->dh, d);
    /* the LayerNorm's affine: the features are frozen, so no input gradient */
    float *dg = gamma_of(q, q->grad), *dbe = beta_of(q, q->grad);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            dg[j] += q->dh[(size_t)i * d + j] * q->xh[(size_t)i * d + j];
            dbe[j] += q->dh[(size_t)i * d + j];
        }
}

static void adamw(struct probe *q, long t, double lr, double wd)
{
    const double c1 = 1.0 - pow(PROBE_BETA1, (double)t), c2 = 1.0 - pow(PROBE_BETA2, (double)t);
    for (size_t i = 0; i < q->n_par; i++) {
        double g = q->grad[i];
        q->m[i] = (float)(PROBE_BETA1 * q->m[i] + (1 - PROBE_BETA1) * g);
        q->v[i] = (float)(PROBE_BETA2 * q->v[i] + (1 - PROBE_BETA2) * g * g);
        double step = (q->m[i] / c1) / (sqrt(q->v[i] / c2) + PROBE_ADAM_EPS);
        q->par[i] = (float)(q->par[i] - lr * (step + wd * q->par[i]));
    }
}

static int check_labels(const int32_t *y, size_t n, int k, const char *what, char *err)
{
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return errf(err, "probe: %s label %d of row %zu is outside [0, %d)", what,
                        (int)y[i], i, k);
    return 0;
}

int probe_adamw_run(const float *train, const int32_t *train_labels, size_t n_train,
                    const float *val, const int32_t *val_labels, size_t n_val, int dim,
                    int n_classes, const struct probe_adamw_options *o, double *top1,
                    char *err)
{
    if (n_train == 0 || n_val == 0 || dim <= 0 || n_classes < 2 || o->epochs < 1 ||
        o->batch < 1)
        return errf(err, "probe: %zu train and %zu val rows of dim %d, %d classes, %d "
                    "epochs of batch %d: nothing to fit",
                    n_train, n_val, dim, n_classes, o->epochs, o->batch);
    if (check_labels(train_labels, n_train, n_classes, "train", err) ||
        check_labels(val_labels, n_val, n_classes, "val", err))
        return -1;
    const int B = (size_t)o->batch < n_train ? o->batch : (int)n_train;
    struct probe q;
    probe_init(&q, dim, n_classes, B, o->seed);
    size_t *order = xmalloc(n_train * sizeof *order);
    for (size_t i = 0; i < n_train; i++)
        order[i] = i;
    struct rng r;
    rng_init(&r, o->seed, 0x70726f6265ULL, 0, 0);
    const long total = (long)((n_train + (size_t)B - 1) / (size_t)B) * o->epochs;
    long t = 0;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (size_t i = n_train - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)(rng_u64(&r) % (i + 1)), s = order[i];
            order[i] = order[j];
            order[j] = s;
        }
        for (size_t s = 0; s < n_train; s += (size_t)B) {
            int n = (int)(n_train - s < (size_t)B ? n_train - s : (size_t)B);
            for (int i = 0; i < n; i++) {
                memcpy(q.x + (size_t)i * dim, train + order[s + i] * (size_t)dim,
                       (size_t)dim * sizeof(float));
                q.y[i] = train_labels[order[s + i]];
            }
            forward(&q, n);
            backward(&q, n);
            double lr = o->lr * 0.5 * (1.0 + cos(M_PI * (double)t / (double)total));
            adamw(&q, ++t, lr, o->weight_decay);
        }
    }
    size_t correct = 0;
    for (size_t s = 0; s < n_val; s += (size_t)B) {
        int n = (int)(n_val - s < (size_t)B ? n_val - s : (size_t)B);
        memcpy(q.x, val + s * (size_t)dim, (size_t)n * dim * sizeof(float));
        forward(&q, n);
        for (int i = 0; i < n; i++) {
            const float *z = q.z + (size_t)i * n_classes;
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
