#!/usr/bin/env bash
# tools/setup.sh: installs every Debian 12 package that the build, the tests
# and the default run need (idempotent: apt runs only when something is
# missing), then configures and builds into ./build.
#
#   bash tools/setup.sh [--no-build]
#
# Run as root on Debian 12 (bookworm). With CI=true warnings are errors.
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
  build-essential pkg-config meson ninja-build   # compiler and build
  libzmq3-dev                                     # ZeroMQ: the sockets between processes
  libmsgpack-dev                                  # MessagePack: the wire format
  libvips-dev                                     # image decoding and augmentation
  libopenblas-openmp-dev                          # sgemm, OpenMP build
  libinih-dev                                     # INI parser for configs
  zlib1g-dev                                      # gzip idx files of Fashion-MNIST
  libcunit1-dev                                   # unit tests
  libopenmpi-dev openmpi-bin                      # MPI: data-parallel training and its tests (mpirun)
  clang libclang-rt-14-dev                        # libFuzzer + sanitizers
  clang-format                                    # tools/check_format.sh
  iproute2                                        # network namespaces (tests/test_netns.c)
  dataset-fashion-mnist                           # the bundled default dataset
  chromium                                        # renders the dashboard in its test
)

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

if [ "${1:-}" = "--no-build" ]; then
  exit 0
fi

werror=false
if [ "${CI:-}" = "true" ]; then
  werror=true
fi
if [ -f build/build.ninja ]; then
  meson configure build -Dwerror=$werror >/dev/null
else
  meson setup build -Dwerror=$werror
fi
ninja -C build
echo "setup: built into ./build"
