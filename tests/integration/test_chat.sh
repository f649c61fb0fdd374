#!/usr/bin/env bash
# slm chat and slm template as a user drives them.
source "$(dirname "$0")/lib.sh"
F="$SHARED/fixtures/tokenizers"
M="$SHARED/models/stories260K.gguf"

expect_status 0 "chat --help" "$SLM" chat --help
stdout_has "usage: slm chat" "chat help"
expect_status 0 "template --help" "$SLM" template --help

# a built-in format renders without any model
printf '[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi <|im_start|>"}]' >"$TMPD/msgs.json"
expect_status 0 "template --builtin chatml" "$SLM" template --builtin chatml --messages "$TMPD/msgs.json" --add-generation-prompt
check "chatml rendering" bash -c "printf '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi <|im_start|><|im_end|>\n<|im_start|>assistant\n' | cmp -s - '$TMPD/out'"

# the chat fixtures render byte for byte through the CLI
if [[ -f "$F/qwen3.chat.public.jsonl" ]] && command -v python3 >/dev/null; then
  for t in llama3 qwen3 gemma3; do
    python3 - "$SLM" "$F" "$t" "$TMPD" >"$TMPD/res" 2>&1 <<'PYEOF'
import json, subprocess, sys
slm, F, t, tmp = sys.argv[1:5]
bad = 0
for i, line in enumerate(open(f"{F}/{t}.chat.public.jsonl", encoding="utf-8")):
    d = json.loads(line)
    p = f"{tmp}/m{i}.json"
    json.dump(d["messages"], open(p, "w", encoding="utf-8"), ensure_ascii=False)
    args = [slm, "template", "--tokenizer-config", f"{F}/{t}/tokenizer_config.json", "--messages", p]
    if d.get("add_generation_prompt"):
        args.append("--add-generation-prompt")
    r = subprocess.run(args, capture_output=True, timeout=60)
    if r.returncode != 0 or r.stdout.decode("utf-8") != d["rendered"]:
        bad += 1
        print(f"{t} line {i + 1}: exit {r.returncode} {r.stderr.decode()[:200]}")
sys.exit(1 if bad else 0)
PYEOF
    rc=$?
    cat "$TMPD/res"
    check "$t chat fixtures through slm template" test $rc -eq 0
  done
fi

if [[ -f "$M" ]]; then
  # stories260K has no chat template: chat falls back to a named built-in
  printf 'Hello\nTell me more\n/exit\n' | "$SLM" chat -m "$M" -n 8 --temp 0 >"$TMPD/out" 2>"$TMPD/err"
  check "chat exits 0" test $? -eq 0
  stderr_has 'built-in "llama2" chat format' "fallback named"
  check "two replies" test "$(wc -l <"$TMPD/out")" -ge 2
fi
expect_status 1 "chat missing model" "$SLM" chat -m /nonexistent.gguf
finish
