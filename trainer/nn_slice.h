/*
 * nn_slice.h: how the im2col and Winograd convolution paths cut a batch
 * across threads (private to nn_conv.c and nn_winograd.c). Each thread
 * takes one contiguous slice of the batch, fixed by the thread count so
 * that sums are reproducible, and runs it start to end with
 * single-threaded GEMMs inside one parallel region. The scratch has room
 * for NN_MAX_SLICES threads' buffers (each extra one costs a weight
 * gradient copy); with more threads, the extra ones idle in these layers.
 */
#ifndef LEJEPA_NN_SLICE_H
#define LEJEPA_NN_SLICE_H

#include <omp.h>

#define NN_MAX_SLICES 4

/* Threads that run slices of a batch of B images. */
static inline int nn_slices(int B)
{
    int s = omp_get_max_threads();
    if (s > NN_MAX_SLICES)
        s = NN_MAX_SLICES;
    return s > B ? B : s;
}

/* Images the scratch's data area holds: a chunk, or one per slice when a
 * chunk is smaller than that. */
static inline int nn_slice_data_images(int B, int chunk)
{
    int s = B < NN_MAX_SLICES ? B : NN_MAX_SLICES;
    return chunk > s ? chunk : s;
}

/* Images [*lo, *hi) of the calling thread's slice (inside the region). */
static inline void nn_my_slice(int B, int *lo, int *hi)
{
    const long k = omp_get_thread_num(), nk = omp_get_num_threads();
    *lo = (int)(B * k / nk);
    *hi = (int)(B * (k + 1) / nk);
}

#endif
