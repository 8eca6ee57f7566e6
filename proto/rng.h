/*
 * rng.h: the one counter-based random generator of the project. A stream is
 * named by a key derived from up to four integers (run seed, epoch, sample
 * index, view index; or seed and global step for SIGReg directions), and its
 * i-th value is a pure function of (key, i). So any process that names the
 * same stream draws the same numbers, whatever ran before.
 */
#ifndef LEJEPA_RNG_H
#define LEJEPA_RNG_H

#include <stdint.h>

struct rng {
    uint64_t key;
    uint64_t counter;
};

/* Stream for (a, b, c, d); pass 0 for the unused trailing values. */
void rng_init(struct rng *r, uint64_t a, uint64_t b, uint64_t c, uint64_t d);

uint64_t rng_u64(struct rng *r);
/* Uniform in [0, 1) with 53 (double) or 24 (float) random bits. */
double rng_uniform(struct rng *r);
float rng_uniformf(struct rng *r);
/* Uniform in [lo, hi). */
double rng_range(struct rng *r, double lo, double hi);
/* Standard normal by Box-Muller. Each call consumes exactly two counter
 * values (the second value of the pair is not cached), so the n-th normal of
 * a stream is a pure function of (key, n). */
double rng_normal(struct rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(struct rng *r, uint64_t n);

#endif
