/*
 * params.h: the parameter store. Every learnable tensor of the model is a row
 * in one table (PyTorch state_dict name, shape, optimizer group, init rule)
 * and a slice of one contiguous 64-byte aligned block; gradients and the
 * AdamW moments are blocks of the same layout, so zero-grad, the optimizer
 * step and checkpointing are loops over flat arrays. Non-learnable state
 * (BatchNorm running statistics) lives in a second table and block.
 * Tables are filled at model build time; arenas are allocated once after.
 */
#ifndef LEJEPA_PARAMS_H
#define LEJEPA_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARAMS_NAME_LEN 96
#define PARAMS_MAX_DIMS 4

enum params_group { PARAMS_GROUP_ENCODER, PARAMS_GROUP_PROBE, PARAMS_N_GROUPS };

enum params_init {
    PARAMS_INIT_ZEROS,
    PARAMS_INIT_ONES,
    /* Conv weights as torchvision's ResNet: kaiming_normal_(mode="fan_out",
     * nonlinearity="relu"): N(0, 2 / (OC*K*K)). */
    PARAMS_INIT_KAIMING_FAN_OUT,
    /* nn.Linear / nn.Conv2d defaults: weight and bias U(-1/sqrt(fan_in),
     * 1/sqrt(fan_in)) (kaiming_uniform_ with a = sqrt(5)). */
    PARAMS_INIT_UNIFORM_FAN_IN,
};

struct params_entry {
    char name[PARAMS_NAME_LEN];
    int ndim;
    int shape[PARAMS_MAX_DIMS];
    size_t offset;             /* in floats, 16-float (64-byte) aligned */
    size_t numel;
    enum params_group group;
    enum params_init init;
    int fan_in;                /* for PARAMS_INIT_UNIFORM_FAN_IN */
};

struct params_table {
    struct params_entry *e;
    size_t n, cap;
    size_t total;              /* floats, including alignment padding */
    bool frozen;               /* set by params_alloc: no more rows */
};

struct params {
    struct params_table learn; /* weights: data, grad, m, v */
    struct params_table state; /* running statistics: data only */
    float *data, *grad, *m, *v;
    float *state_data;
};

/* Adds a tensor to a table and returns its index. fan_in matters only for
 * PARAMS_INIT_UNIFORM_FAN_IN. Names must be unique (CHECKed). */
int params_add(struct params_table *t, const char *name, int ndim,
               const int *shape, enum params_group group,
               enum params_init init, int fan_in);

/* Allocates the arenas (zeroed) once both tables are complete. */
void params_alloc(struct params *p);
void params_free(struct params *p);

/* Fills every learnable tensor and every state tensor by its init rule from
 * a generator stream named by (seed, tensor index). */
void params_init(struct params *p, uint64_t seed);

static inline float *params_data(const struct params *p, int i)
{
    return p->data + p->learn.e[i].offset;
}
static inline float *params_grad(const struct params *p, int i)
{
    return p->grad + p->learn.e[i].offset;
}
static inline float *params_state(const struct params *p, int i)
{
    return p->state_data + p->state.e[i].offset;
}

/* Index of a tensor by name, or -1. */
int params_find(const struct params_table *t, const char *name);

/* Number of learnable floats (without padding), for logs. */
size_t params_count(const struct params *p);

#endif
