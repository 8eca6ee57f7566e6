#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS [TARGETS]]: fuzzes the parsers that read untrusted
# bytes with libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer,
# SECONDS in total (default 60), split between the targets: the wire
# protocol decoder (fuzz_msg) and the trainer's message handler (fuzz_hub)
# a third each, the JSON reader (fuzz_json) and the safetensors reader
# (fuzz_safetensors) a sixth each. TARGETS (e.g. "json safetensors") runs
# only those, each for SECONDS. Configures its own
# build dir (build-fuzz, CC=clang, -Dfuzzing=true), writes seed corpora,
# runs the fuzzers and exits non-zero on any finding (crash, leak, UBSan
# error, failed round-trip check); the reproducer lands in
# build-fuzz/fuzz-artifacts/.
#
#   bash tools/fuzz.sh 60
#   bash tools/fuzz.sh 300 json
#   build-fuzz/tests/fuzz/fuzz_msg build-fuzz/fuzz-artifacts/crash-...  # replay
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"
targets="${2:-}"
build="${FUZZ_BUILD_DIR:-build-fuzz}"
artifacts="$build/fuzz-artifacts"

if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found (apt-get install clang libclang-rt-dev)" >&2
  exit 2
fi
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzzing=true -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$build" -j 2 tests/fuzz/fuzz_msg tests/fuzz/fuzz_msg_seeds \
  tests/fuzz/fuzz_json tests/fuzz/fuzz_safetensors tests/fuzz/fuzz_parsers_seeds \
  tests/fuzz/fuzz_hub tests/fuzz/fuzz_hub_seeds >/dev/null

mkdir -p "$build/fuzz-corpus/msg" "$artifacts"
"$build/tests/fuzz/fuzz_msg_seeds" "$build/fuzz-corpus/msg"
"$build/tests/fuzz/fuzz_parsers_seeds" "$build/fuzz-corpus" >/dev/null
"$build/tests/fuzz/fuzz_hub_seeds" "$build/fuzz-corpus/hub" >/dev/null 2>&1

# run_one NAME SECONDS [libFuzzer options...]
run_one() {
  local name="$1" secs="$2"
  shift 2
  local log="$build/fuzz-$name.log" corpus="$build/fuzz-corpus/$name" rc=0
  echo "fuzz: running fuzz_$name for ${secs}s (log: $log)"
  "$build/tests/fuzz/fuzz_$name" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    "$@" "$corpus" >"$log" 2>&1 || rc=$?
  local execs rate
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -n 1)
  rate=$(awk '/stat::average_exec_per_sec:/ {print $2}' "$log" | tail -n 1)
  if [ "$rc" -ne 0 ] || grep -qE "runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$log"; then
    echo "fuzz: FINDING in fuzz_$name (exit $rc); last lines of $log:" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
  echo "fuzz: fuzz_$name clean: ${execs:-?} inputs in ${secs}s (${rate:-?} exec/s), corpus $(ls "$corpus" | wc -l) files"
}

# The JSON and safetensors readers get inputs up to 64 KiB so that long
# names, many members and deep nesting are reachable; the hub up to 2 MiB
# (sequences of messages, BATCHes among them), with the trainer's own log
# on stderr closed (-close_fd_mask=2: libFuzzer and the sanitizers keep
# theirs; replay a reproducer without it to read the trainer's log).
hub_opts=(-max_len=2097152 -close_fd_mask=2)
status=0
if [ -z "$targets" ]; then
  third=$(( seconds / 3 > 0 ? seconds / 3 : 1 ))
  sixth=$(( seconds / 6 > 0 ? seconds / 6 : 1 ))
  run_one msg "$third" || status=1
  run_one json "$sixth" -max_len=65536 || status=1
  run_one safetensors "$sixth" -max_len=65536 || status=1
  run_one hub "$third" "${hub_opts[@]}" || status=1
else
  for t in $targets; do
    case "$t" in
      msg) run_one msg "$seconds" || status=1 ;;
      json|safetensors) run_one "$t" "$seconds" -max_len=65536 || status=1 ;;
      hub) run_one hub "$seconds" "${hub_opts[@]}" || status=1 ;;
      *) echo "fuzz: unknown target '$t' (msg, json, safetensors, hub)" >&2; exit 2 ;;
    esac
  done
fi
exit "$status"
