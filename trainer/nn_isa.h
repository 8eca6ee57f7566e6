/*
 * nn_isa.h: the kernels chosen at run time for the CPU they run on.
 *
 * The kernel sources (nn_*.c, sigreg.c) are built twice: for the AVX2+FMA
 * baseline every x86-64 build targets (x86-64-v3), and for AVX-512
 * (x86-64-v4, 512-bit vectors) with every symbol suffixed _avx512
 * (nn_isa_rename.h). At start-up nn_isa.c fills nn_isa_table with one
 * build's functions: AVX-512 when the CPU has it (F, BW, DQ, VL), else the
 * baseline; the environment variable LEJEPA_ISA (auto, avx2, avx512)
 * forces one, and a forced AVX-512 on a CPU without it stops the program
 * with a message. Code outside the kernels calls the names below as usual:
 * each is a macro reading the table. The `_ref` loops and the helpers that
 * only size buffers are not dispatched, nor are the SIGReg directions,
 * which every rank of a data-parallel job must draw bit for bit alike.
 *
 * Every kernel header includes this one at its end, so any file that
 * calls a kernel goes through the table.
 */
#ifndef LEJEPA_NN_ISA_H
#define LEJEPA_NN_ISA_H

#include <stdbool.h>
#include <stdio.h>

#include "nn.h"
#include "nn_vit.h"
#include "nn_winograd.h"
#include "sigreg.h"

enum nn_isa { NN_ISA_AVX2, NN_ISA_AVX512, NN_ISA_COUNT };

/* The dispatched kernels. */
#define NN_ISA_KERNELS(X)                                                    \
    X(nn_add_backward) X(nn_add_forward) X(nn_add_relu_backward)             \
    X(nn_add_relu_forward) X(nn_add_scaled_rows_backward)                    \
    X(nn_add_scaled_rows_forward) X(nn_relu_backward) X(nn_relu_forward)     \
    X(nn_attention_backward) X(nn_attention_forward)                         \
    X(nn_conv2d_backward) X(nn_conv2d_forward)                               \
    X(nn_gelu_backward) X(nn_gelu_forward)                                   \
    X(nn_linear_backward) X(nn_linear_forward)                               \
    X(nn_crossentropy_forward)                                               \
    X(nn_batchnorm1d_backward) X(nn_batchnorm1d_forward)                     \
    X(nn_batchnorm2d_backward) X(nn_batchnorm2d_forward)                     \
    X(nn_batchnorm2d_relu_backward) X(nn_batchnorm2d_relu_forward)           \
    X(nn_layernorm_backward) X(nn_layernorm_forward)                         \
    X(nn_bicubic_backward) X(nn_bicubic_forward)                             \
    X(nn_patch_embed_backward) X(nn_patch_embed_forward)                     \
    X(nn_pixels_normalize)                                                   \
    X(nn_avgpool_global_backward) X(nn_avgpool_global_forward)               \
    X(nn_maxpool2d_backward) X(nn_maxpool2d_forward)                         \
    X(nn_winograd_backward) X(nn_winograd_forward)                           \
    X(sigreg_backward) X(sigreg_backward_x) X(sigreg_backward_z)             \
    X(sigreg_forward) X(sigreg_project) X(sigreg_statistic) X(sigreg_sums)

struct nn_isa_table {
#define NN_ISA_MEMBER(name) __typeof__(name) *name;
    NN_ISA_KERNELS(NN_ISA_MEMBER)
#undef NN_ISA_MEMBER
};
extern struct nn_isa_table nn_isa_table;

/* Whether this build has the ISA's kernels and this CPU can run them. */
bool nn_isa_supported(enum nn_isa isa);
/* The ISA whose kernels the table holds now. */
enum nn_isa nn_isa_current(void);
/* "avx2" or "avx512". */
const char *nn_isa_name(enum nn_isa isa);
/* Fills the table with isa's kernels (tests run every variant this way).
 * Returns 0, or -1 with a message in err when !nn_isa_supported(isa). */
int nn_isa_select(enum nn_isa isa, char *err);
/* One line for --version: the kernels running and how to force them. */
void nn_isa_print(FILE *out);

/* NN_ISA_KERNEL: defined by the kernel sources and nn_isa.c, which name
 * the functions themselves. Each line below is one X(...) above (the
 * test isa_dispatch checks both lists agree). */
#ifndef NN_ISA_KERNEL
#define nn_add_backward (*nn_isa_table.nn_add_backward)
#define nn_add_forward (*nn_isa_table.nn_add_forward)
#define nn_add_relu_backward (*nn_isa_table.nn_add_relu_backward)
#define nn_add_relu_forward (*nn_isa_table.nn_add_relu_forward)
#define nn_add_scaled_rows_backward (*nn_isa_table.nn_add_scaled_rows_backward)
#define nn_add_scaled_rows_forward (*nn_isa_table.nn_add_scaled_rows_forward)
#define nn_relu_backward (*nn_isa_table.nn_relu_backward)
#define nn_relu_forward (*nn_isa_table.nn_relu_forward)
#define nn_attention_backward (*nn_isa_table.nn_attention_backward)
#define nn_attention_forward (*nn_isa_table.nn_attention_forward)
#define nn_conv2d_backward (*nn_isa_table.nn_conv2d_backward)
#define nn_conv2d_forward (*nn_isa_table.nn_conv2d_forward)
#define nn_gelu_backward (*nn_isa_table.nn_gelu_backward)
#define nn_gelu_forward (*nn_isa_table.nn_gelu_forward)
#define nn_linear_backward (*nn_isa_table.nn_linear_backward)
#define nn_linear_forward (*nn_isa_table.nn_linear_forward)
#define nn_crossentropy_forward (*nn_isa_table.nn_crossentropy_forward)
#define nn_batchnorm1d_backward (*nn_isa_table.nn_batchnorm1d_backward)
#define nn_batchnorm1d_forward (*nn_isa_table.nn_batchnorm1d_forward)
#define nn_batchnorm2d_backward (*nn_isa_table.nn_batchnorm2d_backward)
#define nn_batchnorm2d_forward (*nn_isa_table.nn_batchnorm2d_forward)
#define nn_batchnorm2d_relu_backward (*nn_isa_table.nn_batchnorm2d_relu_backward)
#define nn_batchnorm2d_relu_forward (*nn_isa_table.nn_batchnorm2d_relu_forward)
#define nn_layernorm_backward (*nn_isa_table.nn_layernorm_backward)
#define nn_layernorm_forward (*nn_isa_table.nn_layernorm_forward)
#define nn_bicubic_backward (*nn_isa_table.nn_bicubic_backward)
#define nn_bicubic_forward (*nn_isa_table.nn_bicubic_forward)
#define nn_patch_embed_backward (*nn_isa_table.nn_patch_embed_backward)
#define nn_patch_embed_forward (*nn_isa_table.nn_patch_embed_forward)
#define nn_pixels_normalize (*nn_isa_table.nn_pixels_normalize)
#define nn_avgpool_global_backward (*nn_isa_table.nn_avgpool_global_backward)
#define nn_avgpool_global_forward (*nn_isa_table.nn_avgpool_global_forward)
#define nn_maxpool2d_backward (*nn_isa_table.nn_maxpool2d_backward)
#define nn_maxpool2d_forward (*nn_isa_table.nn_maxpool2d_forward)
#define nn_winograd_backward (*nn_isa_table.nn_winograd_backward)
#define nn_winograd_forward (*nn_isa_table.nn_winograd_forward)
#define sigreg_backward (*nn_isa_table.sigreg_backward)
#define sigreg_backward_x (*nn_isa_table.sigreg_backward_x)
#define sigreg_backward_z (*nn_isa_table.sigreg_backward_z)
#define sigreg_forward (*nn_isa_table.sigreg_forward)
#define sigreg_project (*nn_isa_table.sigreg_project)
#define sigreg_statistic (*nn_isa_table.sigreg_statistic)
#define sigreg_sums (*nn_isa_table.sigreg_sums)
#endif

#endif
