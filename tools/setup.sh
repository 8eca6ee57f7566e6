#!/usr/bin/env bash
# tools/setup.sh: installs the Debian 12 packages that building and running
# need (idempotent: apt runs only when something is missing), then
# configures and builds into ./build.
#
#   bash tools/setup.sh [--test] [--no-build]
#
#   --test      also install what the tests need (CUnit, Open MPI, clang and
#               its fuzzing runtime, clang-format, iproute2, chromium) and
#               build the test suites: tools/test.sh runs after this
#   --no-build  install only
#
# Without --test the test suites are built only if CUnit is already
# installed. Run as root on Debian 12 (bookworm). With CI=true warnings are
# errors.
set -euo pipefail

cd "$(dirname "$0")/.."

usage() {
  echo "usage: bash tools/setup.sh [--test] [--no-build]" >&2
  exit 2
}

test_deps=false
build=true
for arg in "$@"; do
  case "$arg" in
    --test) test_deps=true ;;
    --no-build) build=false ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown argument '$arg'" >&2; usage ;;
  esac
done

# What building and running need. Open MPI is not among them: it is only
# for training on several ranks (mpirun -n R lejepa-train); without it
# meson leaves the optional mpi feature off and lejepa-train runs as one
# process. --test installs it (the data-parallel tests).
packages=(
  build-essential pkg-config meson ninja-build   # compiler and build
  libzmq3-dev                                     # ZeroMQ: the sockets between processes
  libmsgpack-dev                                  # MessagePack: the wire format
  libvips-dev                                     # image decoding and augmentation
  libopenblas-openmp-dev                          # sgemm, OpenMP build
  libinih-dev                                     # INI parser for configs
  zlib1g-dev                                      # gzip idx files of Fashion-MNIST
  libarchive-dev                                  # tar shards of a dataset
  dataset-fashion-mnist                           # the bundled default dataset
)
# What the tests add (tools/test.sh, meson test).
test_packages=(
  libcunit1-dev                                   # unit tests
  libopenmpi-dev openmpi-bin                      # MPI: mpirun -n R lejepa-train and its tests
  clang libclang-rt-14-dev                        # libFuzzer + sanitizers (tools/fuzz.sh)
  clang-format                                    # tools/check_format.sh
  iproute2                                        # network namespaces (tests/test_netns.c)
  chromium                                        # renders the dashboard in its test
)
if $test_deps; then
  packages+=("${test_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}" >&2
    echo "setup: run this script as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages present"
fi

if ! $build; then
  exit 0
fi

werror=false
if [ "${CI:-}" = "true" ]; then
  werror=true
fi
# The test suites need CUnit: built with --test, or when CUnit is there.
tests=false
if $test_deps || pkg-config --exists cunit; then
  tests=true
fi
# --reconfigure, not `meson configure`: meson looks again for the optional
# dependencies it did not find (MPI, once --test has installed it).
if [ -f build/build.ninja ]; then
  meson setup --reconfigure build -Dwerror=$werror -Dtests=$tests >/dev/null
else
  meson setup build -Dwerror=$werror -Dtests=$tests
fi
ninja -C build
echo "setup: built into ./build"
