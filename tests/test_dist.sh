#!/bin/sh
# tests/test_dist.sh RANKS PROGRAM: runs the data-parallel test PROGRAM
# under mpirun with RANKS ranks, one OpenMP thread each. Without MPI (no
# mpirun, or PROGRAM not built because meson found no MPI) it skips (77),
# and fails when CI=true: CI installs Open MPI (tools/setup.sh).
ranks=$1
prog=$2
if [ -z "$prog" ] || [ ! -x "$prog" ] || ! command -v mpirun >/dev/null 2>&1; then
    echo "test_dist: no MPI in this build (install libopenmpi-dev openmpi-bin)"
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    exit 77
fi
# Open MPI refuses root without both variables (containers, CI).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1
exec mpirun -n "$ranks" --oversubscribe --bind-to none "$prog"
