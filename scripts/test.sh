#!/usr/bin/env bash
# Builds slm from scratch and runs the whole test suite.
#   scripts/test.sh             release build in build/, every test
#   scripts/test.sh --sanitize  ASan+UBSan build in build-asan/, every test
#                               but the big synthetic-model ones
# Tests that need ../shared (real models, reference outputs) skip, saying
# so, when it is absent; set SLM_SHARED to point elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
jobs=$(nproc)
if [[ "${1:-}" == "--sanitize" ]]; then
  dir=build-asan
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DSLM_SANITIZE=ON >/dev/null
  cmake --build "$dir" -j"$jobs"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd "$dir" && ctest --output-on-failure -j"$jobs" -LE big)
else
  dir=build
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure -j"$jobs")
fi
