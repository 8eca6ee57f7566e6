#!/usr/bin/env bash
# tools/test.sh: runs every unit test of ./build (built by
# `tools/setup.sh --test`, which installs what the tests need),
# the folder rules (tools/check_layout.py, tools/check_format.sh), then the
# message-decoder fuzzer for FUZZ_SECONDS (default 60) under
# AddressSanitizer and UndefinedBehaviorSanitizer. Exits non-zero on any
# failure and ends with one "N passed, N failed, N skipped" line.
set -uo pipefail

cd "$(dirname "$0")/.."
fuzz_seconds="${FUZZ_SECONDS:-60}"

# A build made without --test (and without CUnit) has no test suites:
# meson would run nothing and pass.
tests_built=$(meson introspect build --buildoptions 2>/dev/null | python3 -c \
  'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "tests"][0])' \
  2>/dev/null || true)
if [ "$tests_built" != "True" ]; then
  echo "test: ./build has no test suites (or no ./build): run bash tools/setup.sh --test first" >&2
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
meson test -C build --print-errorlogs --num-processes 2 2>&1 | tee "$log"
unit_rc=${PIPESTATUS[0]}

count() { awk -v k="$1" '$1 == k":" {print $2}' "$log" | tail -n 1; }
passed=$(count Ok); failed=$(count Fail); skipped=$(count Skipped)
timeouts=$(count Timeout); xpass=$(count "Unexpected Pass")
passed=${passed:-0}; failed=$((${failed:-0} + ${timeouts:-0} + ${xpass:-0}))
skipped=${skipped:-0}
if [ "$unit_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1   # meson failed before running tests (build error)
fi

# the folder rules (issue 17): link graph, includes, struct and file sizes,
# and the formatting of the files .clang-format covers
layout_rc=0
echo "test: folder rules and formatting"
if python3 tools/check_layout.py build && bash tools/check_format.sh; then
  passed=$((passed + 1))
else
  layout_rc=1
  failed=$((failed + 1))
fi

fuzz_rc=0
if [ "$fuzz_seconds" -gt 0 ] && [ -x tools/fuzz.sh ]; then
  echo "test: fuzzing the message decoder for ${fuzz_seconds}s"
  if bash tools/fuzz.sh "$fuzz_seconds"; then
    passed=$((passed + 1))
  else
    fuzz_rc=1
    failed=$((failed + 1))
  fi
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$unit_rc" -eq 0 ] && [ "$layout_rc" -eq 0 ] && [ "$fuzz_rc" -eq 0 ]
