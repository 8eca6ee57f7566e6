/*
 * params.c: the parameter tables and arenas (see params.h). Initialisation
 * reproduces PyTorch's distributions, not its random bits; the fixture
 * script loads our initial weights instead of drawing its own.
 */
#include "params.h"

#include <math.h>
#include <string.h>

#include "rng.h"
#include "util.h"

int params_add(struct params_table *t, const char *name, int ndim,
               const int *shape, enum params_group group,
               enum params_init init, int fan_in)
{
    CHECK(ndim >= 1 && ndim <= PARAMS_MAX_DIMS);
    CHECK(strlen(name) < PARAMS_NAME_LEN);
    CHECK(params_find(t, name) < 0);
    CHECK(!t->frozen);
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->e = xrealloc(t->e, t->cap * sizeof *t->e);
    }
    struct params_entry *e = &t->e[t->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        CHECK(shape[i] > 0);
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];
    }
    e->offset = t->total;
    e->group = group;
    e->init = init;
    e->fan_in = fan_in;
    t->total += (e->numel + 15) / 16 * 16;
    return (int)t->n++;
}

int params_find(const struct params_table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].name, name) == 0)
            return (int)i;
    return -1;
}

void params_alloc(struct params *p)
{
    p->learn.frozen = p->state.frozen = true;
    size_t n = p->learn.total * sizeof(float);
    p->data = xmalloc_aligned(n);
    p->grad = xmalloc_aligned(n);
    p->m = xmalloc_aligned(n);
    p->v = xmalloc_aligned(n);
    p->state_data = xmalloc_aligned(p->state.total * sizeof(float));
}

void params_free(struct params *p)
{
    util_free_aligned(p->data);
    util_free_aligned(p->grad);
    util_free_aligned(p->m);
    util_free_aligned(p->v);
    util_free_aligned(p->state_data);
    free(p->learn.e);
    free(p->state.e);
    memset(p, 0, sizeof *p);
}

static void init_tensor(float *x, const struct params_entry *e, uint64_t seed,
                        uint64_t stream, uint64_t index)
{
    struct rng r;
    rng_init(&r, seed, stream, index, 0);
    switch (e->init) {
    case PARAMS_INIT_ZEROS:
        memset(x, 0, e->numel * sizeof *x);
        break;
    case PARAMS_INIT_ONES:
        for (size_t i = 0; i < e->numel; i++)
            x[i] = 1.0f;
        break;
    case PARAMS_INIT_KAIMING_FAN_OUT: {
        CHECK(e->ndim == 4);
        double fan_out = (double)e->shape[0] * e->shape[2] * e->shape[3];
        double std = sqrt(2.0 / fan_out);
        for (size_t i = 0; i < e->numel; i++)
            x[i] = (float)(std * rng_normal(&r));
        break;
    }
    case PARAMS_INIT_UNIFORM_FAN_IN: {
        CHECK(e->fan_in > 0);
        double bound = 1.0 / sqrt((double)e->fan_in);
        for (size_t i = 0; i < e->numel; i++)
            x[i] = (float)rng_range(&r, -bound, bound);
        break;
    }
    }
}

void params_init(struct params *p, uint64_t seed)
{
    for (size_t i = 0; i < p->learn.n; i++)
        init_tensor(params_data(p, (int)i), &p->learn.e[i], seed, 1, i);
    for (size_t i = 0; i < p->state.n; i++)
        init_tensor(params_state(p, (int)i), &p->state.e[i], seed, 2, i);
}

size_t params_count(const struct params *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->learn.n; i++)
        n += p->learn.e[i].numel;
    return n;
}
