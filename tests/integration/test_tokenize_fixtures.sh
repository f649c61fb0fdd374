#!/usr/bin/env bash
# `slm tokenize --jsonl` against the Hugging Face fixtures: for every line of
# <tok>.public.jsonl, ids (--special), ids_special (--special --add-special)
# and decoded must be equal, for the five tokenizers of ../shared.
source "$(dirname "$0")/lib.sh"
F="$SHARED/fixtures/tokenizers"
[[ -d "$F" ]] || skip "$F not found"
command -v python3 >/dev/null || skip "python3 not found"
for t in llama2 mistral llama3 qwen3 gemma3; do
  [[ -f "$F/$t.public.jsonl" ]] || { echo "SKIP part: $t"; continue; }
  python3 - "$SLM" "$F" "$t" >"$TMPD/res" 2>&1 <<'PYEOF'
import json, subprocess, sys
slm, F, t = sys.argv[1:4]
lines = [json.loads(l) for l in open(f"{F}/{t}.public.jsonl", encoding="utf-8")]
inp = "".join(json.dumps({"text": l["text"]}) + "\n" for l in lines).encode()
def run(extra):
    r = subprocess.run([slm, "tokenize", "--tokenizer", f"{F}/{t}/tokenizer.json", "--special",
                        "--jsonl"] + extra, input=inp, capture_output=True, timeout=300)
    if r.returncode != 0:
        sys.exit(f"exit {r.returncode}: {r.stderr.decode()[:300]}")
    return [json.loads(x) for x in r.stdout.decode().split("\n") if x]
a, b = run([]), run(["--add-special"])
if len(a) != len(lines) or len(b) != len(lines):
    sys.exit(f"{len(a)}/{len(b)} output lines for {len(lines)} inputs")
bad = [i for i, (l, x, y) in enumerate(zip(lines, a, b))
       if x["ids"] != l["ids"] or y["ids"] != l["ids_special"] or x["decoded"] != l["decoded"]]
print(f"{t}: {len(lines) - len(bad)}/{len(lines)} agree")
for i in bad[:5]:
    print(f"  line {i + 1}: {lines[i]['text'][:60]!r}: got {a[i]['ids'][:12]} want {lines[i]['ids'][:12]}")
sys.exit(1 if bad else 0)
PYEOF
  rc=$?
  cat "$TMPD/res"
  check "$t fixtures through slm tokenize --jsonl" test $rc -eq 0
done
# the same vocabulary from a GGUF: stories260K's ids for the published prompt
M="$SHARED/models/stories260K.gguf"
if [[ -f "$M" ]]; then
  expect_status 0 "tokenize -m" "$SLM" tokenize -m "$M" --add-special "Once upon a time"
  check "stories260K ids" grep -qx "1 403 407 261 378" "$TMPD/out"
fi
expect_status 1 "missing tokenizer.json" "$SLM" tokenize --tokenizer /nonexistent/tokenizer.json hi
stderr_has "/nonexistent/tokenizer.json" "missing tokenizer.json named"
echo '{"nottext": 1}' | "$SLM" tokenize --tokenizer "$F/llama3/tokenizer.json" --jsonl >/dev/null 2>"$TMPD/err"
check "bad jsonl line is an error" test $? -eq 1
stderr_has "line 1" "bad jsonl line named"
finish
