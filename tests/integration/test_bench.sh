#!/usr/bin/env bash
# slm bench as a user drives it: usage errors, the text report, --json with
# every key issue 5 asks for and sane values, --cold (fresh processes), the
# bandwidth test, and bench/compare.sh without llama.cpp. Small runs only
# (stories260K, a few tokens): bounded in time, not a speed claim.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

expect_status 0 "bench --help" "$SLM" bench --help
stdout_has "usage: slm bench" "bench --help"
stdout_has "--cold" "bench --help lists --cold"
expect_status 0 "slm --help lists bench" "$SLM" --help
stdout_has "bench" "slm --help lists bench"
expect_status 2 "bad -r" "$SLM" bench -m x.gguf -r zero
stderr_has "-r" "bad -r"
expect_status 2 "-n below 2" "$SLM" bench -m x.gguf -n 1
expect_status 2 "unknown option" "$SLM" bench -m x.gguf --bogus
stderr_has "--bogus" "unknown option"
expect_status 2 "--drop-cache without --cold" "$SLM" bench -m x.gguf --drop-cache
expect_status 1 "missing model" "$SLM" bench -m /nonexistent.gguf -r 1
stderr_has "/nonexistent.gguf" "missing model"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  echo "SKIP part: $M not found; the runs did not happen"
  finish
  exit $?
fi

# text report
expect_status 0 "bench text" timeout 120 "$SLM" bench -m "$M" -p 16 -n 8 -r 2 -t 1
for w in "time to 1st token" "prefill" "decode" "p99" "peak RSS" "provider"; do
  stdout_has "$w" "text report has '$w'"
done

# JSON: required keys, medians, sane values
check_json() { # file, threads, prompt, extra python assertions
  $PY - "$1" "$2" "$3" "$4" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
threads, prompt = int(sys.argv[2]), int(sys.argv[3])
keys = ["load_ms", "ttft_ms", "prefill_tps", "decode_tps", "decode_p50_ms", "decode_p95_ms",
        "decode_p99_ms", "decode_max_ms", "peak_rss_bytes", "mapped_bytes", "energy_mj",
        "energy_source", "threads", "provider"]
missing = [k for k in keys if k not in d]
assert not missing, "missing keys %s" % missing
for k in ["load_ms", "ttft_ms", "prefill_tps", "decode_tps", "decode_p50_ms", "energy_mj"]:
    assert isinstance(d[k], (int, float)) and d[k] > 0, (k, d[k])
assert d["decode_p50_ms"] <= d["decode_p95_ms"] <= d["decode_p99_ms"] <= d["decode_max_ms"], d
assert d["peak_rss_bytes"] >= d["mapped_bytes"] > 0, (d["peak_rss_bytes"], d["mapped_bytes"])
assert d["peak_rss_bytes"] < 2 << 30, d["peak_rss_bytes"]
assert d["energy_source"] in ("rapl", "battery", "estimated"), d["energy_source"]
assert d["weights"] in ("copy", "map"), d["weights"]
assert d["threads"] == threads, d["threads"]
assert d["prompt_tokens"] == prompt, d["prompt_tokens"]
assert d["provider"] in d["providers_available"].split(","), d
assert d["features_used"], d
# ttft covers the prefill of the prompt: prompt / prefill rate <= ttft (ms)
assert prompt / d["prefill_tps"] * 1000 <= d["ttft_ms"] * 1.001, d
exec(sys.argv[4])
PYEOF
}
timeout 120 "$SLM" bench -m "$M" -p 20 -n 10 -r 3 -t 2 --json >"$TMPD/b.json" 2>"$TMPD/err"
check "bench --json exit status" test $? -eq 0
check "bench --json keys and values" check_json "$TMPD/b.json" 2 20 "assert d['decode_steps'] == 3 * 9, d['decode_steps']"
check "--json is one line" test "$(wc -l <"$TMPD/b.json")" -eq 1

# the config's providers are honoured and reported
timeout 120 "$SLM" bench -m "$M" -p 8 -n 4 -r 1 -t 1 --json --config '{"providers":["ref"]}' >"$TMPD/r.json" 2>"$TMPD/err"
check "bench with provider ref" check_json "$TMPD/r.json" 1 8 "assert d['provider'] == 'ref', d['provider']"

# the config's weights: copied or mapped, as asked, and said so
for w in copy map; do
  timeout 120 "$SLM" bench -m "$M" -p 8 -n 4 -r 1 -t 1 --json --config "{\"weights\":\"$w\"}" >"$TMPD/w.json" 2>"$TMPD/err"
  check "bench with weights $w" check_json "$TMPD/w.json" 1 8 "assert d['weights'] == '$w', d['weights']"
done
# the K/V cache: f16 unless the config asks for f32, at twice the bytes
timeout 120 "$SLM" bench -m "$M" -p 8 -n 4 -r 1 -t 1 --json --config '{"kv_cache":"f32"}' >"$TMPD/k.json" 2>"$TMPD/err"
check "bench with kv_cache f32" check_json "$TMPD/k.json" 1 8 "import json; b = json.load(open('$TMPD/b.json')); assert d['kv_cache'] == 'f32' and b['kv_cache'] == 'f16' and d['n_ctx'] == b['n_ctx'] and d['kv_cache_bytes'] == 2 * b['kv_cache_bytes'] > 0, (d, b)"
# the estimate scales with --watts-per-core
timeout 120 "$SLM" bench -m "$M" -p 8 -n 4 -r 1 -t 1 --json --watts-per-core 0.001 >"$TMPD/w.json" 2>"$TMPD/err"
check "--watts-per-core" check_json "$TMPD/w.json" 1 8 "assert d['energy_source'] != 'estimated' or d['watts_per_core'] == 0.001, d"

# cold start: fresh processes, start -> ready <= start -> first token
timeout 120 "$SLM" bench -m "$M" -p 8 -n 4 -r 2 -t 1 --json --cold >"$TMPD/c.json" 2>"$TMPD/err"
check "bench --cold exit status" test $? -eq 0
check "bench --cold values" check_json "$TMPD/c.json" 1 8 "assert 0 < d['cold_start_to_ready_ms'] <= d['cold_start_to_first_token_ms'] < 60000, d"

# signature verification cost (issue 9): with require_signature every load
# verifies MODEL.sig; verify_ms reports it (0 when no signature is required)
check "verify_ms is 0 without require_signature" $PY -c "import json; d=json.load(open('$TMPD/b.json')); assert d['verify_ms'] == 0 and d['require_signature'] is False and 'verify' not in d, d"
mkdir -p "$TMPD/keys" "$TMPD/trust"
expect_status 0 "keygen for bench" "$SLM" keygen --out "$TMPD/keys/bench"
cp "$TMPD/keys/bench.pub" "$TMPD/trust/"
cp "$M" "$TMPD/signed.gguf"
cp "$M" "$TMPD/unsigned.gguf"
expect_status 0 "sign a copy for bench" "$SLM" sign "$TMPD/signed.gguf" --key "$TMPD/keys/bench.key"
SIGCFG="{\"require_signature\":true,\"trust_dir\":\"$TMPD/trust\"}"
timeout 120 "$SLM" bench -m "$TMPD/signed.gguf" -p 8 -n 4 -r 2 -t 1 --json --config "$SIGCFG" >"$TMPD/s.json" 2>"$TMPD/err"
check "bench signed model exit status" test $? -eq 0
check "bench verify_ms" check_json "$TMPD/s.json" 1 8 "assert d['require_signature'] is True and 0 < d['verify_ms'] <= d['load_ms'], d; v = d['verify']; assert 0 < v['min'] <= v['median'] <= v['max'], v"
expect_status 0 "bench signed text report" timeout 120 "$SLM" bench -m "$TMPD/signed.gguf" -p 8 -n 4 -r 1 -t 1 --config "$SIGCFG"
stdout_has "verify signature" "text report shows the verification time"
timeout 120 "$SLM" bench -m "$TMPD/signed.gguf" -p 8 -n 4 -r 2 -t 1 --json --cold --config "$SIGCFG" >"$TMPD/sc.json" 2>"$TMPD/err"
check "bench signed --cold exit status" test $? -eq 0
check "bench signed --cold verify" check_json "$TMPD/sc.json" 1 8 "cv = d['cold_verify']; assert 0 < cv['median'] <= d['cold_load']['median'] and 0 < cv['max'] <= d['cold_ready']['max'], d"
expect_status 1 "bench unsigned model with require_signature" timeout 120 "$SLM" bench -m "$TMPD/unsigned.gguf" -p 8 -n 4 -r 2 --json --config "$SIGCFG"
stderr_has "missing signature" "bench unsigned model names the check"

# the context limit is a clear error, not a crash
expect_status 1 "prompt beyond the context" timeout 60 "$SLM" bench -m "$M" -p 5000 -n 4 -r 1
stderr_has "context" "prompt beyond the context"

# quantized weights (the 8-bit activation path where the CPU has it)
if timeout 120 "$SLM" quantize "$M" "$TMPD/q8.gguf" --type q8_0 >/dev/null 2>&1; then
  timeout 120 "$SLM" bench -m "$TMPD/q8.gguf" -p 16 -n 8 -r 1 -t 2 --json >"$TMPD/q.json" 2>"$TMPD/err"
  check "bench q8_0" check_json "$TMPD/q.json" 2 16 "assert d['weight_type'] == 'q8_0', d['weight_type']"
fi

# memory bandwidth alone (512 MiB, 1 and 2 threads)
timeout 120 "$SLM" bench --bandwidth --json -t 2 >"$TMPD/bw.json" 2>"$TMPD/err"
check "bench --bandwidth" $PY -c "import json; d=json.load(open('$TMPD/bw.json')); assert d['bandwidth_1t_gbs'] > 0.1 and d['bandwidth_nt_gbs'] > 0.1, d"

# compare.sh: says llama-bench is missing (when it is) and prints slm's side
PATH="/usr/bin:/bin" LLAMA_BENCH=/nonexistent/llama-bench SLM="$SLM" timeout 300 \
  bash "$SLM_SOURCE/bench/compare.sh" "$M" -p 8 -n 4 -r 1 -t 1 >"$TMPD/out" 2>"$TMPD/err"
check "compare.sh exit status" test $? -eq 0
stdout_has "llama-bench" "compare.sh mentions llama-bench"
stdout_has "not found" "compare.sh says llama-bench is missing"
stdout_has "decode" "compare.sh prints slm's side"

# compare.sh with NODE_LLAMA_CPP: bench/llamacpp-node.mjs drives a stand-in
# node-llama-cpp (fixed step times; no npm at test time) and compare.sh prints
# llama.cpp's column and the P50-step row from it. Node's timers may fire a
# little before their delay as measured by performance.now() (3.97 ms for a
# 4 ms sleep was seen under load), so the bounds leave 5% for that.
NODE=$(command -v node || true)
if [[ -z $NODE ]]; then
  echo "SKIP part: node not found; the node-llama-cpp path of compare.sh was not run"
else
  FAKE="$TMPD/nlc/node_modules/node-llama-cpp/dist"
  mkdir -p "$FAKE"
  cat >"$FAKE/index.js" <<'JSEOF'
import { statSync } from "node:fs";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export async function getLlama() {
  return {
    async loadModel({ modelPath }) {
      statSync(modelPath); // a missing model fails as it would for real
      return {
        async createContext() {
          return {
            getSequence() {
              return {
                async evaluateWithoutGeneratingNewTokens(tokens) { await sleep(tokens.length); },
                async *evaluate() { for (;;) { await sleep(4); yield 1; } },
              };
            },
            async dispose() {},
          };
        },
        async dispose() {},
      };
    },
  };
}
JSEOF
  timeout 60 "$NODE" "$SLM_SOURCE/bench/llamacpp-node.mjs" "$TMPD/nlc" "$M" -p 20 -n 6 -r 2 -t 1 \
    >"$TMPD/node.json" 2>"$TMPD/err"
  check "llamacpp-node.mjs exit status" test $? -eq 0
  check "llamacpp-node.mjs rows" $PY -c "
import json; rows = json.load(open('$TMPD/node.json'))
assert rows[0]['n_gen'] == 0 and rows[0]['n_prompt'] == 20 and 200 < rows[0]['avg_ts'] <= 1050, rows
assert rows[1]['n_gen'] == 6 and 10 < rows[1]['avg_ts'] <= 265, rows
s = rows[2]; assert s['summary'] and s['threads'] == 1 and s['decode_p50_ms'] >= 3.8, s"
  expect_status 1 "llamacpp-node.mjs without the module" \
    "$NODE" "$SLM_SOURCE/bench/llamacpp-node.mjs" "$TMPD/none" "$M"
  stderr_has "cannot load node-llama-cpp" "llamacpp-node.mjs without the module"
  expect_status 2 "llamacpp-node.mjs bad -n" \
    "$NODE" "$SLM_SOURCE/bench/llamacpp-node.mjs" "$TMPD/nlc" "$M" -n zero
  LLAMA_BENCH=/nonexistent/llama-bench NODE_LLAMA_CPP="$TMPD/nlc" SLM="$SLM" timeout 300 \
    bash "$SLM_SOURCE/bench/compare.sh" "$M" -p 8 -n 4 -r 1 -t 1 >"$TMPD/out" 2>"$TMPD/err"
  check "compare.sh with node-llama-cpp" test $? -eq 0
  stdout_has "through node-llama-cpp" "compare.sh names the node-llama-cpp path"
  stdout_has "decode tok/s at P50 step" "compare.sh prints the P50-step row"
  check "compare.sh prints llama.cpp's decode" grep -Eq "^decode tok/s +[0-9.]+ +[0-9.]+ +[0-9.]+x" "$TMPD/out"
fi
finish
