/*
 * bench_random.h: the kernel benchmarks' inputs (tools/bench_nn_*.c).
 */
#ifndef LEJEPA_BENCH_RANDOM_H
#define LEJEPA_BENCH_RANDOM_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* n floats uniform in [-1, 1) from seed, 64-byte aligned (huge pages from
 * 2 MiB, as the trainer's buffers); the caller frees with
 * util_free_aligned. */
static inline float *bench_alloc_random(size_t n, uint32_t seed)
{
    float *x = xmalloc_aligned(sizeof(float) * (n ? n : 1));
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
    }
    return x;
}

#endif
