/*
 * bench_nn_conv.c: times the convolution kernels (nn_conv2d_forward and
 * _backward, whichever path the dispatcher takes) at the shapes of the
 * bench ResNet (configs/bench-resnet.ini: widths 32..256, 2 global views
 * at 28 px and 6 local at 14 px of 128 images), layer by layer, with the
 * GFLOP/s of the multiplies the kernels execute (Winograd does fewer than
 * the direct count). Best of 5 runs each; run by hand, quote the output.
 *
 *   bench_nn_conv [batch]   (images per view group, default 128;
 *                            threads: OMP_NUM_THREADS; kernels: LEJEPA_ISA)
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_random.h"
#include "nn.h"
#include "nn_isa.h"
#include "util.h"

/* One layer: returns forward + backward seconds (best of 5 each). */
static double bench_layer(int B, int C, int H, int OC, int K, int stride)
{
    const int pad = K / 2, OH = (H + 2 * pad - K) / stride + 1;
    const size_t nx = (size_t)B * C * H * H, ny = (size_t)B * OC * OH * OH;
    const size_t nw = (size_t)OC * C * K * K;
    float *x = bench_alloc_random(nx, 1), *dx = bench_alloc_random(nx, 2);
    float *w = bench_alloc_random(nw, 3), *dw = bench_alloc_random(nw, 4);
    float *g = bench_alloc_random(ny, 5), *y = bench_alloc_random(ny, 6);
    float *scratch = bench_alloc_random(
        nn_conv2d_scratch_floats(B, C, H, H, OC, K, stride, pad), 7);
    double tf = 1e9, tb = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = util_time_mono();
        nn_conv2d_forward(y, x, w, NULL, scratch, B, C, H, H, OC, K, stride,
                          pad);
        double t1 = util_time_mono();
        nn_conv2d_backward(dx, dw, NULL, g, x, w, scratch, B, C, H, H, OC, K,
                           stride, pad);
        double t2 = util_time_mono();
        tf = t1 - t0 < tf ? t1 - t0 : tf;
        tb = t2 - t1 < tb ? t2 - t1 : tb;
    }
    const double f =
        nn_conv2d_executed_flops(B, C, H, H, OC, K, stride, pad) / 1e9;
    printf("B=%4d C=%3d %2dpx -> OC=%3d K=%d s=%d: forward %6.1f ms "
           "(%5.1f GFLOP/s)  backward %6.1f ms (%5.1f GFLOP/s)\n",
           B, C, H, OC, K, stride, tf * 1e3, f / tf, tb * 1e3, 2 * f / tb);
    util_free_aligned(x), util_free_aligned(dx), util_free_aligned(w);
    util_free_aligned(dw), util_free_aligned(g), util_free_aligned(y);
    util_free_aligned(scratch);
    return tf + tb;
}

int main(int argc, char **argv)
{
    const int batch = argc > 1 ? atoi(argv[1]) : 128;
    if (batch <= 0) {
        fprintf(stderr, "usage: bench_nn_conv [batch > 0]\n");
        return 2;
    }
    printf("kernels %s\n", nn_isa_name(nn_isa_current()));
    static const int widths[] = {32, 64, 128, 256};
    double total = 0;
    for (int v = 0; v < 2; v++) {
        const int B = batch * (v ? 6 : 2);
        int H = v ? 14 : 28;
        /* The stem (3x3 from 1 channel), then per stage the stride-2 3x3
         * and 1x1 shortcut into it (not in stage 1) and one of its
         * stride-1 3x3 layers (a stage has 3 or 4 of them). */
        total += bench_layer(B, 1, H, widths[0], 3, 1);
        for (int s = 0; s < 4; s++) {
            const int C = widths[s];
            if (s > 0) {
                total += bench_layer(B, C / 2, H, C, 3, 2);
                total += bench_layer(B, C / 2, H, C, 1, 2);
                H = (H - 1) / 2 + 1;
            }
            total += bench_layer(B, C, H, C, 3, 1);
        }
    }
    printf("sum of the layers above: %.1f ms\n", total * 1e3);
    return 0;
}
