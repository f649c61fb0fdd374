#!/usr/bin/env bash
# Full-size shapes (TinyLlama 1.1B, SmolLM2 135M, Qwen2.5 0.5B, Llama 3.2 1B)
# made by ../shared/tools/mkmodel.py with deterministic random weights: each
# must load, report its parameter count, match llama.cpp's logits
# (normalized RMSE <= 0.01, same last argmax) and generate. Models are made
# one at a time into $SLM_MODEL_CACHE (default build/models) and removed
# afterwards unless SLM_KEEP_MODELS=1.
source "$(dirname "$0")/lib.sh"
MK="$SHARED/tools/mkmodel.py"
REF="$SHARED/fixtures/reference"
[[ -f "$MK" && -d "$REF" ]] || skip "$MK or $REF not found"
PY=/usr/bin/python3
$PY -c "import numpy" 2>/dev/null || skip "python3-numpy is not installed (scripts/deps.sh --test installs it)"
CACHE=${SLM_MODEL_CACHE:-$SLM_BUILD/models}
mkdir -p "$CACHE"
free_gb=$(df -P -BG "$CACHE" | awk 'NR==2 {gsub("G","",$4); print $4}')
[[ $free_gb -ge 6 ]] || skip "only ${free_gb} GiB free in $CACHE; these models need up to 3 GiB each"

# preset  sha256-of-F16-file  parameters
models=(
  "smollm2-135m 342c6fa8c4cab73cf9310462874fb0016d51d80148ab6b89ba586f3148e03ae0 124635456"
  "qwen2.5-0.5b 00f33c782a6f1c0b84b9bc26e8efab16229134f8ecf721ca618a8f75188be84c 494032768"
  "tinyllama-1.1b 923dbb2c6f976ced1099861a071b8601143abc0c51693ab9862fe061458b9ba4 1100048384"
  "llama3.2-1b fd13cbfb451f5521c59b20041fa12a1311eee92e80e87156acd475754ab16ec0 1235814400"
)
PROMPT="Once upon a time there was a small robot"
for entry in "${models[@]}"; do
  read -r preset sha params <<<"$entry"
  f="$CACHE/$preset-F16.gguf"
  if [[ ! -f "$f" ]] || [[ "$(sha256sum "$f" | cut -d' ' -f1)" != "$sha" ]]; then
    echo "making $f (mkmodel.py $preset)"
    $PY "$MK" "$preset" "$f" >/dev/null 2>"$TMPD/mk.err" || { bad "mkmodel $preset: $(tail -3 "$TMPD/mk.err")"; continue; }
  fi
  check "$preset sha256" test "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha"

  expect_status 0 "$preset info" "$SLM" info "$f" --json
  check "$preset parameter count" $PY -c "import json,sys; d=json.load(open('$TMPD/out')); assert d['parameters']==$params, d['parameters']"

  expect_status 0 "$preset logits" "$SLM" logits -m "$f" -p "$PROMPT" -o "$TMPD/l.bin"
  check "$preset prompt ids" grep -qF "$(cut -d: -f2 "$REF/ids-$preset-F16.txt" | sed 's/^ *//')" "$TMPD/err"
  $PY - "$TMPD/l.bin" "$REF/logits-$preset-F16.bin" >"$TMPD/cmp" 2>&1 <<'PYEOF'
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype=np.float32)
b = np.fromfile(sys.argv[2], dtype=np.float32)
assert a.size == b.size, (a.size, b.size)
nrmse = float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)) / np.std(b.astype(np.float64)))
n_vocab = {1280000: 32000}.get(b.nbytes, None)
print("nrmse", nrmse)
sys.exit(0 if nrmse <= 0.01 else 1)
PYEOF
  check "$preset logits match llama.cpp ($(cat "$TMPD/cmp" | tail -1))" test $? -eq 0
  # same argmax at the last position
  nv=$($PY -c "import json; print(json.load(open('/dev/stdin'))['hparams']['n_vocab'])" < <("$SLM" info "$f" --json))
  check "$preset last argmax" $PY -c "
import numpy as np
a=np.fromfile('$TMPD/l.bin',dtype=np.float32).reshape(-1,$nv); b=np.fromfile('$REF/logits-$preset-F16.bin',dtype=np.float32).reshape(-1,$nv)
assert a[-1].argmax()==b[-1].argmax()"

  # the GGUF's vocabulary tokenizes as Hugging Face does (tokenizer fixtures)
  fam=$(case $preset in qwen*) echo qwen3 ;; llama3*) echo llama3 ;; *) echo llama2 ;; esac)
  if [[ -f "$SHARED/fixtures/tokenizers/$fam.public.jsonl" ]]; then
    $PY - "$SLM" "$f" "$SHARED/fixtures/tokenizers/$fam.public.jsonl" >"$TMPD/tok" 2>&1 <<'PYEOF'
import json, subprocess, sys
slm, model, fx = sys.argv[1:4]
lines = [json.loads(l) for l in open(fx, encoding="utf-8")]
inp = "".join(json.dumps({"text": l["text"]}) + "\n" for l in lines).encode()
r = subprocess.run([slm, "tokenize", "-m", model, "--special", "--jsonl"], input=inp,
                   capture_output=True, timeout=600)
out = [json.loads(x) for x in r.stdout.decode().split("\n") if x]
# Qwen 3 added <think> and tool tokens that Qwen 2.5's vocabulary lacks
qwen3_only = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>",
              "</tool_response>")
bad = [i for i, (l, o) in enumerate(zip(lines, out))
       if o["ids"] != l["ids"] and not any(t in l["text"] for t in qwen3_only)]
print(f"{len(out)} lines, {len(bad)} differ", [lines[i]["text"][:40] for i in bad[:3]])
sys.exit(0 if len(out) == len(lines) and not bad else 1)
PYEOF
    check "$preset GGUF vocabulary tokenizes like $fam ($(tail -1 "$TMPD/tok"))" test $? -eq 0
  fi

  expect_status 0 "$preset generates" "$SLM" run -m "$f" -p "Hello" -n 8 --temp 0 --config '{"ignore_eos":true}'
  stderr_has "generated 8 tokens" "$preset generated 8 tokens"
  grep -o "generated 8 tokens in [0-9.]* ms ([0-9.]* tok/s)" "$TMPD/err" | sed "s/^/$preset: /"
  [[ "${SLM_KEEP_MODELS:-0}" == 1 ]] || rm -f "$f"
done
finish
