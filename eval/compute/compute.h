/*
 * compute.h: thread set-up and the BLAS report of the programs that compute
 * (trainer, evaluator, embed, stat, benchmarks). It is the one place that
 * knows OpenMP and OpenBLAS are both in the process; proto/ (linked by every
 * program, loaders included) knows neither. Only eval/ and trainer/ and
 * tools/ link it.
 */
#ifndef LEJEPA_COMPUTE_H
#define LEJEPA_COMPUTE_H

#include <stdio.h>

/* libgomp's threads spin while they wait for each other. When another
 * process holds one of the cores (a loader, an evaluator on the same
 * machine), a spinning thread waits for a descheduled peer and a training
 * step measured 30x slower. libgomp reads OMP_WAIT_POLICY only at start-up,
 * so this re-executes the program with OMP_WAIT_POLICY=passive unless the
 * user set a policy; call it first in main. Returns only when no re-exec
 * happened (policy already set, or exec failed). */
void compute_passive_reexec(char **argv);

/* Sets OpenMP and OpenBLAS thread counts together; n <= 0 keeps the default
 * (all cores). Returns the count in force. OpenMP's count is per calling
 * thread: a compute thread calls it itself. */
int compute_set_threads(int n);

/* --version of a computing program: the version line, the BLAS library it
 * runs (OpenBLAS config string and core) and the thread counts. */
void compute_print_build_info(FILE *out, const char *program);

#endif
