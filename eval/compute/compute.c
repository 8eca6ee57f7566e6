/*
 * compute.c: OpenMP and OpenBLAS set-up (compute.h). Nothing here computes.
 */
#include "compute.h"

#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

#include <cblas.h>

#include "lejepa_version.h"
#include "util.h"

void compute_passive_reexec(char **argv)
{
    if (getenv("OMP_WAIT_POLICY"))
        return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed: run on with libgomp's default policy. */
}

int compute_set_threads(int n)
{
    if (n > 0) {
        omp_set_num_threads(n);
        openblas_set_num_threads(n);
    }
    return omp_get_max_threads();
}

void compute_print_build_info(FILE *out, const char *program)
{
    util_print_build_info(out, program);
    fprintf(out, "blas: OpenBLAS %s (core %s, from %s)\n",
            openblas_get_config(), openblas_get_corename(),
            LEJEPA_OPENBLAS_DIR);
    fprintf(out, "threads: openmp %d, openblas %d\n", omp_get_max_threads(),
            openblas_get_num_threads());
}
