#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS]: fuzzes the wire protocol decoder (msg_decode) with
# libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer for SECONDS
# (default 60). Configures its own build dir (build-fuzz, CC=clang,
# -Dfuzzing=true), writes a seed corpus of valid messages of every kind, runs
# the fuzzer and exits non-zero on any finding (crash, leak, UBSan error,
# failed re-encode check); the reproducer lands in build-fuzz/fuzz-artifacts/.
#
#   bash tools/fuzz.sh 60
#   build-fuzz/tests/fuzz/fuzz_msg build-fuzz/fuzz-artifacts/crash-...  # replay
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"
build="${FUZZ_BUILD_DIR:-build-fuzz}"
corpus="$build/fuzz-corpus/msg"
artifacts="$build/fuzz-artifacts"

if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found (apt-get install clang libclang-rt-dev)" >&2
  exit 2
fi
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzzing=true -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$build" -j 2 tests/fuzz/fuzz_msg tests/fuzz/fuzz_msg_seeds >/dev/null

mkdir -p "$corpus" "$artifacts"
"$build/tests/fuzz/fuzz_msg_seeds" "$corpus"

log="$build/fuzz-msg.log"
echo "fuzz: running fuzz_msg for ${seconds}s (log: $log)"
rc=0
"$build/tests/fuzz/fuzz_msg" -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
  "$corpus" >"$log" 2>&1 || rc=$?

execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -n 1)
rate=$(awk '/stat::average_exec_per_sec:/ {print $2}' "$log" | tail -n 1)
if [ "$rc" -ne 0 ] || grep -qE "runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$log"; then
  echo "fuzz: FINDING (exit $rc); last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
echo "fuzz: clean: ${execs:-?} inputs in ${seconds}s (${rate:-?} exec/s), corpus $(ls "$corpus" | wc -l) files"
