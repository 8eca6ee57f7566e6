/*
 * rng.c: counter-based generator (see rng.h). Each value is the splitmix64
 * finaliser of key + counter * golden-ratio increment, which passes BigCrush
 * as a stream and is a pure function of its position.
 */
#include "rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rng_init(struct rng *r, uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    uint64_t k = mix64(a + 0x9E3779B97F4A7C15ull);
    k = mix64(k ^ (b + 0x632BE59BD9B4E019ull));
    k = mix64(k ^ (c + 0x8CB92BA72F3D8DD7ull));
    k = mix64(k ^ (d + 0xD1B54A32D192ED03ull));
    r->key = k;
    r->counter = 0;
}

uint64_t rng_u64(struct rng *r)
{
    r->counter++;
    return mix64(r->key + r->counter * 0x9E3779B97F4A7C15ull);
}

double rng_uniform(struct rng *r)
{
    return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}

float rng_uniformf(struct rng *r)
{
    return (float)(rng_u64(r) >> 40) * 0x1.0p-24f;
}

double rng_range(struct rng *r, double lo, double hi)
{
    return lo + (hi - lo) * rng_uniform(r);
}

double rng_normal(struct rng *r)
{
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    /* u1 in (0, 1]: log never sees zero. */
    u1 = 1.0 - u1;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

uint64_t rng_below(struct rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = rng_u64(r);
    } while (x >= limit);
    return x % n;
}
