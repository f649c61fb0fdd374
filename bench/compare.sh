#!/usr/bin/env bash
# slm vs llama.cpp on the same model, side by side.
#
#   bench/compare.sh MODEL.gguf [-p PROMPT_TOKENS] [-n GEN_TOKENS] [-r REPS] [-t THREADS]
#
# Runs `slm bench --json` and, when it can be found ($LLAMA_BENCH, else
# llama-bench on PATH), llama.cpp's `llama-bench -o json` with the same prompt
# length, generation length, repetitions and threads, and prints prefill and
# decode tokens/s of both. Without llama-bench but with $NODE_LLAMA_CPP set to
# a directory where `npm install --prefix DIR node-llama-cpp` ran, it measures
# llama.cpp's prebuilt CPU libraries through bench/llamacpp-node.mjs instead.
# With neither it says so and prints slm's side only. $SLM picks the slm binary (default: slm on PATH, else build/slm).
# Both tools warm the page cache the same way (a warm-up run), so the numbers
# compare warm starts; see docs/PERFORMANCE.md for how to read them.
set -u
here=$(cd "$(dirname "$0")" && pwd)
usage() { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 2; }
[[ $# -ge 1 ]] || usage
model=$1; shift
P=128 N=64 R=5 T=$(nproc)
while [[ $# -gt 0 ]]; do
  case $1 in
    -p) P=${2:?}; shift 2 ;;
    -n) N=${2:?}; shift 2 ;;
    -r) R=${2:?}; shift 2 ;;
    -t) T=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "compare.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ -f $model ]] || { echo "compare.sh: $model not found" >&2; exit 1; }
SLM=${SLM:-$(command -v slm || echo "$here/../build/slm")}
[[ -x $SLM ]] || { echo "compare.sh: slm binary not found (set SLM=path/to/slm)" >&2; exit 1; }
PY=$(command -v python3 || true)
[[ -n $PY ]] || { echo "compare.sh: python3 is needed to read the JSON" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "model   $model"
echo "shape   prompt $P tokens, generate $N, $R repetitions, $T threads"
if ! "$SLM" bench -m "$model" -p "$P" -n "$N" -r "$R" -t "$T" --json >"$tmp/slm.json" 2>"$tmp/slm.err"; then
  echo "compare.sh: slm bench failed:" >&2
  cat "$tmp/slm.err" >&2
  exit 1
fi

LB=${LLAMA_BENCH:-$(command -v llama-bench || true)}
have_llama=0
if [[ -n $LB && -x $LB ]]; then
  if "$LB" -m "$model" -p "$P" -n "$N" -r "$R" -t "$T" -o json >"$tmp/llama.json" 2>"$tmp/llama.err"; then
    have_llama=1
  else
    echo "llama-bench ($LB) failed: $(tail -2 "$tmp/llama.err")"
  fi
elif [[ -n ${NODE_LLAMA_CPP:-} ]]; then
  # no llama-bench: llama.cpp's prebuilt CPU libraries through node-llama-cpp
  # (npm install --prefix "$NODE_LLAMA_CPP" node-llama-cpp); see llamacpp-node.mjs
  if node "$here/llamacpp-node.mjs" "$NODE_LLAMA_CPP" "$model" -p "$P" -n "$N" -r "$R" -t "$T" \
       >"$tmp/llama.json" 2>"$tmp/llama.err"; then
    have_llama=1
    echo "llama.cpp through node-llama-cpp in $NODE_LLAMA_CPP (decode includes its JavaScript loop)"
  else
    echo "node-llama-cpp run failed: $(tail -2 "$tmp/llama.err")"
  fi
else
  echo "llama-bench not found (set LLAMA_BENCH=path or put it on PATH, or NODE_LLAMA_CPP=dir"
  echo "where node-llama-cpp is installed): printing slm only"
fi

"$PY" - "$tmp/slm.json" "$tmp/llama.json" "$have_llama" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
llama = {}
if sys.argv[3] == "1":
    for row in json.load(open(sys.argv[2])):
        if row.get("summary"):  # llamacpp-node.mjs: load time and step percentiles
            llama.update(row)
            continue
        # llama-bench reports a prompt-only row (n_gen 0) and a generation-only row
        key = "prefill" if row.get("n_gen", 0) == 0 else "decode"
        llama[key] = row.get("avg_ts")
def fmt(v):
    return "%10.2f" % v if isinstance(v, (int, float)) else "%10s" % "-"
print("%-28s %10s %10s %8s" % ("", "slm", "llama.cpp", "ratio"))
for key, label in (("prefill", "prefill tok/s"), ("decode", "decode tok/s")):
    a, b = s[key + "_tps"], llama.get(key)
    ratio = "%7.2fx" % (a / b) if b else "%8s" % "-"
    print("%-28s %s %s %s" % (label, fmt(a), fmt(b), ratio))
if "decode_p50_ms" in llama:
    a, b = 1000.0 / s["decode_p50_ms"], llama["decode_tps_at_p50"]
    print("%-28s %s %s %7.2fx" % ("decode tok/s at P50 step", fmt(a), fmt(b), a / b))
    print("%-28s %s" % ("llama.cpp load ms", fmt(llama["load_ms"])))
print("%-28s %s" % ("slm load ms", fmt(s["load_ms"])))
print("%-28s %s" % ("slm time to 1st token ms", fmt(s["ttft_ms"])))
print("%-28s %s / %s" % ("slm decode p50 / p99 ms", fmt(s["decode_p50_ms"]).strip(), fmt(s["decode_p99_ms"]).strip()))
print("%-28s %.1f MiB (mapped %.1f MiB)" % ("slm peak RSS", s["peak_rss_bytes"] / 2**20, s["mapped_bytes"] / 2**20))
print("%-28s %.1f mJ (%s)" % ("slm energy per inference", s["energy_mj"], s["energy_source"]))
print("%-28s %s, %s threads, %s" % ("slm provider", s["provider"], s["threads"], s["cpu"]))
PYEOF
