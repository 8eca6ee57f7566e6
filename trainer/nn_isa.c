/*
 * nn_isa.c: which build of the kernels runs (see nn_isa.h). The table
 * starts on the baseline build, so a program is correct before (and
 * without) the constructor below; the constructor then applies the CPU's
 * features and LEJEPA_ISA.
 */
#define NN_ISA_KERNEL /* the functions' own names, not the table's */
#include "nn_isa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define NN_ISA_BASE_ENTRY(name) .name = name,
struct nn_isa_table nn_isa_table = {NN_ISA_KERNELS(NN_ISA_BASE_ENTRY)};
static const struct nn_isa_table table_base = {NN_ISA_KERNELS(NN_ISA_BASE_ENTRY)};
#undef NN_ISA_BASE_ENTRY

#ifdef NN_ISA_HAVE_AVX512
#define NN_ISA_DECLARE(name) extern __typeof__(name) name##_avx512;
NN_ISA_KERNELS(NN_ISA_DECLARE)
#undef NN_ISA_DECLARE
#define NN_ISA_AVX512_ENTRY(name) .name = name##_avx512,
static const struct nn_isa_table table_avx512 = {
    NN_ISA_KERNELS(NN_ISA_AVX512_ENTRY)};
#undef NN_ISA_AVX512_ENTRY
#endif

static enum nn_isa current = NN_ISA_AVX2;

/* Shared by both kernel builds (not renamed): see nn.h. */
bool nn_gemm_profile;
double nn_gemm_thread_seconds;

const char *nn_isa_name(enum nn_isa isa)
{
    return isa == NN_ISA_AVX512 ? "avx512" : "avx2";
}

bool nn_isa_supported(enum nn_isa isa)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (isa == NN_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#ifdef NN_ISA_HAVE_AVX512
    if (isa == NN_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512cd");
#endif
    return false;
#else
    return isa == NN_ISA_AVX2; /* the one build of other architectures */
#endif
}

enum nn_isa nn_isa_current(void)
{
    return current;
}

int nn_isa_select(enum nn_isa isa, char *err)
{
    static const bool built_avx512 =
#ifdef NN_ISA_HAVE_AVX512
        true;
#else
        false;
#endif
    if (!nn_isa_supported(isa))
        return errf(err, "the %s kernels need %s", nn_isa_name(isa),
                    isa == NN_ISA_AVX2 ? "a CPU with AVX2 and FMA"
                    : built_avx512     ? "a CPU with AVX-512 (F, BW, CD, DQ, VL)"
                                       : "a build that has them (this one has not)");
#ifdef NN_ISA_HAVE_AVX512
    nn_isa_table = isa == NN_ISA_AVX512 ? table_avx512 : table_base;
#else
    nn_isa_table = table_base;
#endif
    current = isa;
    return 0;
}

void nn_isa_print(FILE *out)
{
    fprintf(out, "kernels: %s (LEJEPA_ISA=auto|avx2|avx512; this CPU: %s)\n",
            nn_isa_name(current),
            nn_isa_supported(NN_ISA_AVX512) ? "avx2, avx512" : "avx2");
}

/* LEJEPA_ISA: auto (or unset, or empty), avx2 or avx512. */
__attribute__((constructor)) static void nn_isa_init(void)
{
    const char *want = getenv("LEJEPA_ISA");
    char err[ERR_LEN];
    enum nn_isa isa;
    if (!want || !*want || strcmp(want, "auto") == 0) {
        isa = nn_isa_supported(NN_ISA_AVX512) ? NN_ISA_AVX512 : NN_ISA_AVX2;
    } else if (strcmp(want, "avx2") == 0) {
        isa = NN_ISA_AVX2;
    } else if (strcmp(want, "avx512") == 0) {
        isa = NN_ISA_AVX512;
    } else {
        fprintf(stderr, "lejepa: LEJEPA_ISA=%s: expected auto, avx2 or avx512\n",
                want);
        exit(2);
    }
    if (nn_isa_select(isa, err) != 0) {
        fprintf(stderr, "lejepa: LEJEPA_ISA=%s: %s\n", want ? want : "auto",
                err);
        exit(2);
    }
}
