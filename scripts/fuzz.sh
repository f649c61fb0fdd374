#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and
# UBSan into build-fuzz/, then runs each for a bounded time over its seed
# corpus (tests/fuzz/corpus/<target>/). Any finding (crash, sanitizer report,
# leak, timeout, out-of-memory) fails the run; its input is copied to
# tests/fuzz/regressions/<target>/, which ctest replays (fuzz.<target>) in
# every build from then on. Inputs libFuzzer finds interesting are kept in
# build-fuzz/corpus/<target>/ between runs (not in the repository).
#
# usage: scripts/fuzz.sh [-t SECONDS] [-p PARALLEL] [--no-build] [TARGET...]
#   -t SECONDS   time per target (default 60, or $SLM_FUZZ_SECONDS)
#   -p N         run N targets at once (default 1)
#   --no-build   use the binaries already in build-fuzz/fuzz
#   TARGET       gguf, model, config, sig, tokenizer_json, chat_template,
#                serve_request, safetensors, cloud_sse (default: every target this
#                tree builds)
# exit status: 0 every target ran its time clean, 1 a finding or a failure,
# 2 usage error
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${SLM_FUZZ_SECONDS:-60}
par=1
build=1
targets=()
while (($#)); do
  case $1 in
    -t) secs=${2:?-t needs seconds}; shift 2 ;;
    -p) par=${2:?-p needs a number}; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "fuzz.sh: -t wants seconds > 0" >&2; exit 2; }
[[ $par =~ ^[0-9]+$ && $par -gt 0 ]] || { echo "fuzz.sh: -p wants a number > 0" >&2; exit 2; }

bdir=$root/build-fuzz
if ((build)); then
  command -v clang >/dev/null || { echo "fuzz.sh: clang not found (scripts/deps.sh --test)" >&2; exit 1; }
  # Warnings are not errors here: the fuzz build is about findings, and other
  # compilers' warnings are the normal build's job.
  mkdir -p "$bdir"
  cmake -S "$root" -B "$bdir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSLM_FUZZ=ON -DBUILD_TESTING=OFF -DSLM_WERROR=OFF >"$bdir/build.log" 2>&1 ||
    { cat "$bdir/build.log" >&2; exit 1; }
fi
# Targets this tree builds: the ones CMake configured.
mapfile -t known < <(sed -n 's/^SLM_FUZZ_TARGETS:[A-Z]*=//p' "$bdir/CMakeCache.txt" 2>/dev/null | tr ';' '\n')
if ((${#known[@]} == 0)); then
  mapfile -t known < <(grep -o 'fuzz_[a-z_]*' <(ls "$bdir/fuzz" 2>/dev/null) | sed 's/^fuzz_//')
fi
((${#targets[@]})) || targets=("${known[@]}")
for t in "${targets[@]}"; do
  [[ " ${known[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (have: ${known[*]})" >&2; exit 2; }
done
if ((build)); then
  cmake --build "$bdir" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" >>"$bdir/build.log" 2>&1 ||
    { tail -40 "$bdir/build.log" >&2; exit 1; }
fi

run_one() { # run_one TARGET: exit 0 clean; prints one summary line
  local t=$1 bin=$bdir/fuzz/fuzz_$1 work=$bdir/corpus/$1 art=$bdir/artifacts/$1 log=$bdir/logs/$1.log
  mkdir -p "$work" "$art" "$(dirname "$log")"
  rm -f "$art"/*
  # -timeout: one input may take at most 25 s; -rss_limit_mb: the template
  # interpreter alone may use 768 MiB per render, plus sanitizer overhead.
  "$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$art/" "$work" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1
  local rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  local found=("$art"/*)
  if [[ $rc -ne 0 || -e ${found[0]} ]]; then
    mkdir -p "$root/tests/fuzz/regressions/$t"
    for f in "${found[@]}"; do
      [[ -e $f ]] && cp "$f" "$root/tests/fuzz/regressions/$t/"
    done
    printf '%-16s %5ss  %12s execs  FINDING (exit %d; input saved in tests/fuzz/regressions/%s; log %s)\n' \
      "$t" "$secs" "${execs:-?}" "$rc" "$t" "$log"
    grep -m1 -E 'ERROR: |runtime error|invariant broken|Timeout|out-of-memory' "$log" | sed 's/^/    /'
    return 1
  fi
  printf '%-16s %5ss  %12s execs  clean\n' "$t" "$secs" "${execs:-?}"
}

echo "fuzzing ${#targets[@]} targets for ${secs}s each (${par} at a time)"
fail=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if ((${#pids[@]} >= par)); then
    wait "${pids[0]}" || fail=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if ((fail)); then
  echo "fuzz.sh: findings above; reproduce with build-fuzz/fuzz/fuzz_TARGET INPUT, fix, and keep the input as a regression" >&2
  exit 1
fi
echo "fuzz.sh: all clean"
