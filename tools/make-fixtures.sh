#!/usr/bin/env bash
# tools/make-fixtures.sh: regenerates the PyTorch reference fixtures in
# tests/fixtures/ (needs Debian's python3-torch: apt-get install python3-torch).
# Our side writes the initial weights and batches; PyTorch (float64) writes
# the losses, gradients and AdamW steps the tests match. Commit the result.
# Usage: tools/make-fixtures.sh [CASE ...]  (default: every case of
# tools/lejepa_cases.h); BUILD=DIR picks the build directory (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "make-fixtures: PyTorch missing: apt-get install python3-torch" >&2
  exit 1
fi
build="${BUILD:-build}"
ninja -C "$build" tools/fixture-inputs
mkdir -p tests/fixtures
"./$build/tools/fixture-inputs" tests/fixtures "$@"
/usr/bin/python3 tools/ref_lejepa.py tests/fixtures "$@"
echo "make-fixtures: tests/fixtures updated"
