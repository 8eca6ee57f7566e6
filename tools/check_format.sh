#!/usr/bin/env bash
# tools/check_format.sh: the files under .clang-format's rule must be
# formatted by it (clang-format 14, Debian's). The set grows as files are
# touched: new files join it, older hand-formatted ones when they are
# reworked, so history stays readable. Exits 1 naming each file that
# differs; `clang-format -i FILE` fixes one.
set -uo pipefail
cd "$(dirname "$0")/.."
files=(
  trainer/train.h trainer/train_*.c trainer/train_*.h
  trainer/nn_pixels.c proto/hash.c proto/hash.h
  eval/compute/compute.c eval/compute/compute.h
  tools/lejepa_runnet.c tools/lejepa_runnet.h tests/test_cli.c
  tools/lejepa_quiet.c tools/lejepa_quiet.h tests/test_quiet.c
  tests/test_faults_clients.c tests/test_train_hello.c
  tests/fuzz/fuzz_hub*.c tests/fuzz/fuzz_hub.h
  trainer/nn_tilegemm.h tools/bench_nn_conv.c tools/bench_random.h
)
if ! command -v clang-format >/dev/null; then
  echo "check_format: clang-format is not installed (tools/setup.sh installs it)" >&2
  exit 1
fi
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "check_format: $f is not formatted (clang-format -i $f)"
    bad=1
  fi
done
[ "$bad" -eq 0 ] && echo "check_format: ${#files[@]} files formatted"
exit "$bad"
