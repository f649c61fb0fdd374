#!/usr/bin/env bash
# The CLI as a user drives it: help, errors, and the real stories260K model.
source "$(dirname "$0")/lib.sh"

# --help on every command, exit 0, mentions the command's usage
for c in run info tokenize perplexity logits; do
  expect_status 0 "$c --help" "$SLM" $c --help
  stdout_has "usage: slm $c" "$c --help"
done
expect_status 0 "slm --help" "$SLM" --help
expect_status 2 "no command" "$SLM"
expect_status 2 "unknown command" "$SLM" frobnicate
stderr_has "unknown command" "unknown command"

# bad flags are usage errors that name the option
expect_status 2 "bad -n" "$SLM" run -m x.gguf -p hi -n many
stderr_has "-n" "bad -n"
expect_status 2 "unknown option" "$SLM" run -m x.gguf -p hi --bogus
stderr_has "--bogus" "unknown option"
expect_status 2 "missing value" "$SLM" run -m x.gguf -p
stderr_has "needs a value" "missing value"
expect_status 2 "no prompt" "$SLM" run -m x.gguf
expect_status 1 "missing model file" "$SLM" run -m /nonexistent.gguf -p hi
stderr_has "/nonexistent.gguf" "missing model file"

# not a GGUF file: clear error, no crash
printf 'this is not a model' >"$TMPD/bad.gguf"
expect_status 1 "garbage model" "$SLM" info "$TMPD/bad.gguf"
stderr_has "bad.gguf" "garbage model"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  echo "SKIP part: $M not found; the real-model checks did not run"
  finish
  exit $?
fi

# the published greedy output, streamed, with --echo
"$SLM" run -m "$M" -p "Once upon a time" -n 200 --temp 0 --echo >"$TMPD/greedy" 2>"$TMPD/err"
check "run exit status" test $? -eq 0
check "greedy output matches the published text" cmp -s "$TMPD/greedy" "$SHARED/models/stories260K.greedy200.txt"
check "timing line on stderr" grep -q "tok/s" "$TMPD/err"
# default model from ../shared when -m is absent (run from the project root)
if [[ -f "$SLM_SOURCE/../shared/models/stories260K.gguf" ]]; then
  (cd "$SLM_SOURCE" && SLM_MODEL= "$SLM" run -p "Once upon a time" -n 20 --temp 0 -q >"$TMPD/def" 2>/dev/null)
  check "default model" test -s "$TMPD/def"
else
  echo "SKIP part: no ../shared beside $SLM_SOURCE for the default-model check"
fi
# $SLM_MODEL names the default model
SLM_MODEL="$M" "$SLM" run -p "Once upon a time" -n 5 --temp 0 -q >"$TMPD/def2" 2>/dev/null
check "SLM_MODEL default" test -s "$TMPD/def2"
# no model anywhere: a clear message (only testable when none lies beside the binary)
if [[ ! -f "$(dirname "$SLM")/../../shared/models/stories260K.gguf" ]]; then
  (cd "$TMPD" && SLM_MODEL= "$SLM" run -p "hi" >/dev/null 2>"$TMPD/nomodel.err")
  check "no model: exit 1" test $? -eq 1
  check "no model: says where to get one" grep -q "SLM_MODEL" "$TMPD/nomodel.err"
fi
# config JSON inline and from a file; flags override it
expect_status 0 "config inline" "$SLM" run -m "$M" -p "Once" --config '{"max_tokens":5,"temperature":0}'
echo '{"max_tokens": 3, "temperature": 0}' >"$TMPD/cfg.json"
expect_status 0 "config file" "$SLM" run -m "$M" -p "Once" --config "$TMPD/cfg.json" -n 7
stderr_has "generated 7 tokens" "flags override config"
expect_status 1 "config unknown key" "$SLM" run -m "$M" -p "Once" --config '{"max_tokenz":5}'
stderr_has "max_tokenz" "config unknown key"
expect_status 0 "quantized at load" "$SLM" run -m "$M" -p "Once" -n 4 --config '{"quant":"int8"}'
if [[ -f "$SHARED/models/stories260K-Q4_K_M.gguf" ]]; then
  expect_status 1 "quant the file cannot provide" "$SLM" run -m "$SHARED/models/stories260K-Q4_K_M.gguf" -p "Once" --config '{"quant":"f16"}'
  stderr_has "quant" "quant error"
fi
# context trimming is reported on stderr
expect_status 0 "trimming" "$SLM" run -m "$M" -p "Once upon a time" -n 100 --temp 0 --ctx 32
stderr_has "trimmed" "trimming reported"
# same seed, 1 and 2 threads, same tokens
"$SLM" run -m "$M" -p "Once upon a time" -n 60 --temp 0.9 --seed 42 -t 1 -q >"$TMPD/t1" 2>/dev/null
"$SLM" run -m "$M" -p "Once upon a time" -n 60 --temp 0.9 --seed 42 -t 2 -q >"$TMPD/t2" 2>/dev/null
check "1 and 2 threads agree" cmp -s "$TMPD/t1" "$TMPD/t2"

# info
expect_status 0 "info" "$SLM" info "$M"
stdout_has "llama" "info arch"
stdout_has "vocab 512" "info vocab"
expect_status 0 "info --json" "$SLM" info "$M" --json
check "info --json parses" python3 -c "import json,sys; d=json.load(open('$TMPD/out')); assert d['hparams']['n_layers']==5 and len(d['tensors'])==48" 
expect_status 0 "info --providers" "$SLM" info --providers
stdout_has "ref" "providers lists ref"

# tokenize
expect_status 0 "tokenize" "$SLM" tokenize -m "$M" --add-special "Once upon a time"
check "tokenize ids" grep -qx "1 403 407 261 378" "$TMPD/out"
expect_status 0 "tokenize --json" "$SLM" tokenize -m "$M" --json "Once upon a time"
check "tokenize json" python3 -c "import json; d=json.load(open('$TMPD/out')); assert d['ids']==[403,407,261,378], d"

# perplexity, by the reference protocol
if [[ -f "$SHARED/fixtures/reference/eval_stories.txt" ]]; then
  expect_status 0 "perplexity" "$SLM" perplexity -m "$M" -f "$SHARED/fixtures/reference/eval_stories.txt" --json
  check "perplexity value" python3 -c "import json; d=json.load(open('$TMPD/out')); assert abs(d['perplexity']-4.056078)/4.056078 < 0.005 and d['tokens']==2413, d"
fi

# logits
expect_status 0 "logits" "$SLM" logits -m "$M" -p "Once upon a time there was a small robot" -o "$TMPD/l.bin"
check "logits size" test "$(stat -c %s "$TMPD/l.bin")" -eq $((15 * 512 * 4))
# -o through a symlink replaces the target and keeps the link; a FIFO is written in place
printf 'old' >"$TMPD/target.bin"
chmod 600 "$TMPD/target.bin"
ln -s "$TMPD/target.bin" "$TMPD/link.bin"
expect_status 0 "logits to a symlink" "$SLM" logits -m "$M" -p "Once" -o "$TMPD/link.bin"
check "symlink kept" test -L "$TMPD/link.bin"
check "target written" test "$(stat -c %s "$TMPD/target.bin")" -eq $((2 * 512 * 4))
check "target mode kept" test "$(stat -c %a "$TMPD/target.bin")" = 600
mkfifo "$TMPD/fifo"
(timeout 20 cat "$TMPD/fifo" | wc -c >"$TMPD/fifo.count") &
reader=$!
expect_status 0 "logits to a FIFO" timeout 20 "$SLM" logits -m "$M" -p "Once" -o "$TMPD/fifo"
wait $reader
check "FIFO got the logits" test "$(tr -d ' ' <"$TMPD/fifo.count")" -eq $((2 * 512 * 4))
check "FIFO still a FIFO" test -p "$TMPD/fifo"
# a FIFO given as a model is refused, not waited on
expect_status 1 "FIFO model" timeout 20 "$SLM" info "$TMPD/fifo"
stderr_has "not a regular file" "FIFO model refused"
# names that are not UTF-8 still give valid JSON
python3 -c "b=open('$M','rb').read(); open('$TMPD/badname.gguf','wb').write(b.replace(b'output_norm', b'output_nor\x80', 1))"
expect_status 0 "info --json, non-UTF-8 name" "$SLM" info "$TMPD/badname.gguf" --json
check "info --json stays valid JSON" python3 -c "import json; json.load(open('$TMPD/out', encoding='utf-8'))"
expect_status 1 "logits unwritable" "$SLM" logits -m "$M" -p "Once" -o /nonexistent/dir/l.bin
check "no file left behind" test ! -e /nonexistent/dir/l.bin

finish
