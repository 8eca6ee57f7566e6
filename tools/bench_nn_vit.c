/*
 * bench_nn_vit.c: times the ViT kernels of nn_vit.h at vit_tiny sizes (run
 * by hand): the attention core (optimised, OpenMP over image and head)
 * for 3 heads of 64 and T = 50 and 65 tokens, and the patch embedding of
 * 28 px and 14 px RGB crops (patch 4, width 192, position grid 7x7). Best
 * of 3 runs each.
 *
 *   bench_nn_vit [B]        (B images, default 1024; threads: OMP_NUM_THREADS)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_random.h"
#include "nn_vit.h"
#include "util.h"

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void bench_attention(int B, int T)
{
    const int NH = 3, HD = 64, D = NH * HD;
    const size_t nq = (size_t)B * T * 3 * D, no = (size_t)B * T * D;
    const size_t na = (size_t)B * NH * T * T;
    float *qkv = bench_alloc_random(nq, 1), *g = bench_alloc_random(no, 2);
    float *dq = bench_alloc_random(nq, 3);
    float *o = xmalloc_aligned(sizeof(float) * no);
    float *a = xmalloc_aligned(sizeof(float) * na);
    float *scratch =
        xmalloc_aligned(sizeof(float) * nn_attention_scratch_floats(T, HD));
    double tf = 1e9, tb = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        nn_attention_forward(o, a, qkv, scratch, B, T, NH, HD);
        double t1 = bench_now();
        nn_attention_backward(dq, g, qkv, a, scratch, B, T, NH, HD);
        double t2 = bench_now();
        tf = t1 - t0 < tf ? t1 - t0 : tf;
        tb = t2 - t1 < tb ? t2 - t1 : tb;
    }
    const double flops = 4.0 * B * NH * (double)T * T * HD;
    printf("attention B=%d T=%d NH=%d HD=%d: forward %.1f ms (%.0f GFLOP/s), "
           "backward %.1f ms (%.0f GFLOP/s), att %.1f MB\n", B, T, NH, HD,
           tf * 1e3, flops / tf / 1e9, tb * 1e3, 2 * flops / tb / 1e9,
           na * 4.0 / 1e6);
    float *bufs[] = {qkv, g, dq, o, a, scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        util_free_aligned(bufs[i]);
}

static void bench_patch(int B, int HW)
{
    const int C = 3, P = 4, D = 192, G0 = 7, K = C * P * P;
    const int G = nn_patch_grid_dim(HW, P), T = 1 + G * G;
    const size_t nx = (size_t)B * C * HW * HW, npos = (1 + G0 * G0) * D;
    float *x = bench_alloc_random(nx, 4), *dx = bench_alloc_random(nx, 5);
    float *w = bench_alloc_random((size_t)D * K, 6);
    float *dw = bench_alloc_random((size_t)D * K, 7);
    float *bias = bench_alloc_random(D, 8), *db = bench_alloc_random(D, 9);
    float *cls = bench_alloc_random(D, 10), *dc = bench_alloc_random(D, 11);
    float *pos = bench_alloc_random(npos, 12);
    float *dpos = bench_alloc_random(npos, 13);
    float *out = xmalloc_aligned(sizeof(float) * B * T * D);
    float *g = bench_alloc_random((size_t)B * T * D, 14);
    float *patches = xmalloc_aligned(sizeof(float) * B * T * K);
    float *scratch = xmalloc_aligned(
        sizeof(float) * nn_patch_embed_scratch_floats(B, C, HW, HW, P, D));
    double tf = 1e9, tb = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        nn_patch_embed_forward(out, patches, x, w, bias, cls, pos, scratch, B,
                               C, HW, HW, P, D, G0);
        double t1 = bench_now();
        nn_patch_embed_backward(dx, dw, db, dc, dpos, g, patches, w, scratch,
                                B, C, HW, HW, P, D, G0);
        double t2 = bench_now();
        tf = t1 - t0 < tf ? t1 - t0 : tf;
        tb = t2 - t1 < tb ? t2 - t1 : tb;
    }
    printf("patch embed B=%d %dx%d px -> %dx%d tokens + CLS, D=%d: forward "
           "%.1f ms, backward (with dinp) %.1f ms\n", B, HW, HW, G, G, D,
           tf * 1e3, tb * 1e3);
    float *bufs[] = {x,   dx,   w,   dw, bias,    db,     cls,
                     dc,  pos,  dpos, out, g, patches, scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        util_free_aligned(bufs[i]);
}

int main(int argc, char **argv)
{
    const int B = argc > 1 ? atoi(argv[1]) : 1024;
    CHECK(B > 0);
    bench_attention(B, 50);
    bench_attention(B, 65);
    bench_patch(B, 28);
    bench_patch(B, 14);
    return 0;
}
