/*
 * compute.c: OpenMP and OpenBLAS set-up (compute.h). Nothing here computes.
 */
#include "compute.h"

#include <limits.h>
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
    /* The real path, not /proc/self/exe: the kernel names the process
     * after the file executed, and ps/top should show lejepa-train, not exe. */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || setenv("OMP_WAIT_POLICY", "passive", 1) != 0)
        return;
    self[n] = '\0';
    execv(self, argv);
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
