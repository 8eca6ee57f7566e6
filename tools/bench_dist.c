/*
 * bench_dist.c: step time of data-parallel LeJEPA on this machine and what
 * the all-reduce would cost on a network (not a test). Run under mpirun:
 *
 *   OMP_NUM_THREADS=2 ./build/tools/bench_dist
 *   OMP_NUM_THREADS=1 mpirun -n 2 --oversubscribe ./build/tools/bench_dist
 *
 * A ResNet (depths 1,1,1,1, widths 32..256, 32 px, 2 global views,
 * projector 2048, 2048, 128, 1024 slices) on a global batch of 64 split
 * over the ranks, sync_bn on. Rank 0 prints the mean step time, the bytes
 * all-reduced per step, and a cost model for R machines of this kind up
 * to 64 at 10/25/100 Gbit/s (see the comment at the printout).
 */
#include <stdint.h>
#include <stdio.h>

#include "dist.h"
#include "lejepa.h"
#include "rng.h"
#include "util.h"

#define BENCH_BATCH 64
#define BENCH_WARMUP 1
#define BENCH_STEPS 5

int main(int argc, char **argv)
{
    char err[ERR_LEN];
    struct dist d;
    if (dist_have_mpi()) {
        if (dist_init_mpi(&d, &argc, &argv, err) != 0)
            die("bench_dist: %s", err);
    } else {
        dist_init_single(&d);
    }
    struct lejepa_config c = {
        .resnet = {.in_channels = 3, .stem = RESNET_STEM_SMALL, .n_stages = 4,
                   .depths = {1, 1, 1, 1}, .widths = {32, 64, 128, 256}},
        .n_proj = 3, .proj = {2048, 2048, 128}, .n_classes = 10,
        .global_views = 2, .global_size = 32, .lambda = 0.05, .slices = 1024,
        .knots = 17, .t_max = 3.0, .seed = 1, .sync_bn = true};
    int start;
    c.batch = dist_share(&d, BENCH_BATCH, &start);
    struct lejepa m;
    if (lejepa_init(&m, &c, err) != 0)
        die("bench_dist: %s", err);
    lejepa_set_dist(&m, &d);
    float *x = lejepa_input(&m, 0);
    size_t n = graph_numel(&m.grp[0].g, m.grp[0].in);
    struct rng r;
    rng_init(&r, 3, (uint64_t)d.rank, 0, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&r);
    int32_t labels[BENCH_BATCH] = {0};
    struct lejepa_losses L;
    /* alternately: the gradient all-reduce overlapped with backward (the
     * engine's way), and all of it after backward (one bucket larger than
     * the arena: nothing goes out early) */
    const size_t overlap_bucket = m.ov.bucket;
    double t[2] = {0, 0}, bytes = 0;
    for (int s = 0; s < BENCH_WARMUP + 2 * BENCH_STEPS; s++) {
        int mode = s % 2;
        m.ov.bucket = mode ? SIZE_MAX / 2 : overlap_bucket;
        dist_barrier(&d);
        double t0 = util_time_mono(), b0 = d.bytes_reduced;
        lejepa_forward_backward(&m, labels, (uint64_t)s, &L);
        dist_barrier(&d);
        if (s >= BENCH_WARMUP) {
            t[mode] += util_time_mono() - t0;
            bytes += d.bytes_reduced - b0;
        }
    }
    double step = t[0] / BENCH_STEPS;
    bytes /= 2 * BENCH_STEPS;
    if (d.rank == 0) {
        printf("R = %d, global batch %d, %d params (%.1f MB of gradients): "
               "%.3f s per step (%.3f s with the all-reduce after backward), "
               "%.2f MB all-reduced per step, loss %.4f\n",
               d.world, BENCH_BATCH, (int)m.p.learn.total,
               m.p.learn.total * 4e-6, step, t[1] / BENCH_STEPS, bytes * 1e-6,
               L.loss);
        const double gbits[3] = {10, 25, 100};
        double payload = d.world > 1 ? bytes : m.p.learn.total * 4.0;
        /* R machines like this one on the same global batch: each computes
         * 1/R of this run's R = 1 compute (this run's time times its world
         * over R, an upper bound on the speed-up: small shares run the
         * kernels less efficiently); the ring all-reduce moves 2 (R - 1) / R
         * times the gradient bytes through each link. Without overlap a
         * step is compute + comm; with the gradient buckets sent while
         * backward runs (about 2/3 of the compute) at best
         * max(compute, comm + compute / 3). */
        printf("  cost model, global batch %d on R machines of this kind (step "
               "time: compute + all-reduce without overlap / with it; "
               "all-reduce share without overlap):\n",
               BENCH_BATCH);
        for (int R = 2; R <= 64; R *= 2) {
            double compute = step * d.world / R;
            printf("  R = %2d, compute %.4f s:", R, compute);
            for (int k = 0; k < 3; k++) {
                double t = 2.0 * (R - 1) / R * payload / (gbits[k] * 1e9 / 8);
                double overlap = t + compute / 3 > compute ? t + compute / 3 : compute;
                printf("  %3.0f Gbit/s %.3f / %.3f s (%2.0f%%)", gbits[k], compute + t,
                       overlap, 100 * t / (compute + t));
            }
            printf("\n");
        }
    }
    lejepa_free(&m);
    dist_finalize(&d);
    return 0;
}
