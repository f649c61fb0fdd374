#!/usr/bin/env bash
# slm classify, slm eval-intent and slm embed from the command line (issue 7):
# classify's probabilities sum to 1 and are ranked; eval-intent's per-line
# predictions equal classify's, and its accuracy, per-label precision /
# recall / F1 and macro-F1 equal the arithmetic done here by hand on a file
# built so that exactly 3 of 6 labeled lines are right; bad lines are errors
# naming their line; embed's vectors are unit length, of the model's width,
# identical for identical texts and thread counts.
source "$(dirname "$0")/lib.sh"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  M="$TMPD/small.gguf"
  "$SLM_BUILD/tests/test_serve" --write-model "$M" >/dev/null 2>&1 || skip "no model: $SHARED/models/stories260K.gguf is absent and tests/test_serve could not write one"
fi
command -v python3 >/dev/null || skip "python3 not found"

# --help tells the truth; usage errors are exit 2
for c in classify eval-intent embed; do
  expect_status 0 "$c --help" "$SLM" "$c" --help
  stdout_has "usage: slm $c" "$c --help"
done
expect_status 0 "classify --help" "$SLM" classify --help
stdout_has "--prompt-template" "classify --help"
stdout_has "{text}" "classify --help"
expect_status 0 "embed --help" "$SLM" embed --help
stdout_has "--pooling" "embed --help"
expect_status 2 "classify without labels" "$SLM" classify -m "$M" hello
stderr_has "no labels" "classify without labels"
expect_status 2 "classify empty label" "$SLM" classify -m "$M" --labels "a,,b" hello
stderr_has "label 2 is empty" "classify empty label"
expect_status 2 "classify duplicate label" "$SLM" classify -m "$M" --labels "a,b,a" hello
stderr_has "given twice" "classify duplicate label"
expect_status 2 "classify template without {text}" "$SLM" classify -m "$M" --labels a,b --prompt-template "x" hello
stderr_has "{text}" "classify template"
expect_status 2 "classify no text" "$SLM" classify -m "$M" --labels a,b
expect_status 2 "embed bad pooling" "$SLM" embed -m "$M" --pooling max hello
expect_status 2 "embed no text" "$SLM" embed -m "$M"
expect_status 1 "classify missing model" "$SLM" classify -m /nonexistent.gguf --labels a,b hi
stderr_has "/nonexistent.gguf" "classify missing model"

LABELS="happy,sad,angry,pay,payment"
TEXTS=("Lily was happy with her new red ball" "Tom cried because he lost his dog"
  "The cat was angry at the big dog" "Please pay the bill for the toys"
  "Ben made a payment to the shop" "The sun was warm and the birds sang"
  "Mom gave Lily a hug")

# classify: ranked, probabilities sum to 1, every label present once
: >"$TMPD/preds"
for t in "${TEXTS[@]}"; do
  "$SLM" classify -m "$M" --labels "$LABELS" --json "$t" >"$TMPD/c.json" 2>"$TMPD/err"
  rc=$?
  check "classify exit 0 ($t)" test $rc -eq 0
  python3 - "$TMPD/c.json" "$LABELS" >>"$TMPD/preds" 2>"$TMPD/perr" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
labels = sys.argv[2].split(",")
ls = r["labels"]
assert sorted(x["label"] for x in ls) == sorted(labels), ls
total = sum(x["probability"] for x in ls)
assert abs(total - 1.0) < 1e-9, total
ps = [x["probability"] for x in ls]
assert ps == sorted(ps, reverse=True), ps
for x in ls:
    assert x["tokens"] >= 1 and abs(x["mean_logprob"] - x["logprob"] / x["tokens"]) < 1e-9
print(ls[0]["label"])
EOF
  check "classify output ($t): $(cat "$TMPD/perr")" test ! -s "$TMPD/perr"
done
mapfile -t PREDS <"$TMPD/preds"
check "one prediction per text" test ${#PREDS[@]} -eq ${#TEXTS[@]}

# the plain output lists the same best label first
"$SLM" classify -m "$M" --labels "$LABELS" "${TEXTS[0]}" >"$TMPD/plain" 2>/dev/null
check "plain output's first label" test "$(sed -n 2p "$TMPD/plain" | awk '{print $1}')" = "${PREDS[0]}"

# eval-intent input: lines 1-3 labeled with the prediction (right), 4-6 with
# another label (wrong), line 7 unlabeled, a blank line between
python3 - "$LABELS" "$TMPD/eval.jsonl" "$TMPD/expect.json" "${PREDS[@]}" -- "${TEXTS[@]}" <<'EOF'
import json, sys
labels = sys.argv[1].split(",")
out, expect = sys.argv[2], sys.argv[3]
rest = sys.argv[4:]
k = rest.index("--")
preds, texts = rest[:k], rest[k + 1:]
truths = []
with open(out, "w") as f:
    for i, (t, p) in enumerate(zip(texts, preds)):
        if i < 3:
            truth = p
        elif i < 6:
            truth = labels[(labels.index(p) + 1) % len(labels)]
        else:
            truth = None
        truths.append(truth)
        f.write(json.dumps({"text": t, "label": truth} if truth else {"text": t, "id": i}) + "\n")
        if i == 3:
            f.write("\n")
# the arithmetic, by hand
rows = []
macro = []
for l in labels:
    tp = sum(1 for p, t in zip(preds, truths) if t is not None and p == l and t == l)
    npred = sum(1 for p, t in zip(preds, truths) if t is not None and p == l)
    sup = sum(1 for t in truths if t == l)
    prec = tp / npred if npred else 0.0
    rec = tp / sup if sup else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    if sup or npred:
        macro.append(f1)
    rows.append({"label": l, "precision": prec, "recall": rec, "f1": f1, "support": sup, "predicted": npred})
json.dump({"rows": rows, "macro_f1": sum(macro) / len(macro), "preds": preds, "truths": truths}, open(expect, "w"))
EOF

"$SLM" eval-intent -m "$M" --labels "$LABELS" --json "$TMPD/eval.jsonl" >"$TMPD/eval.out" 2>"$TMPD/err"
check "eval-intent exit 0: $(head -c 300 "$TMPD/err")" test $? -eq 0
python3 - "$TMPD/eval.out" "$TMPD/expect.json" >"$TMPD/pout" 2>&1 <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
exp = json.load(open(sys.argv[2]))
per, summ = lines[:-1], lines[-1]["summary"]
assert len(per) == 7, per
# line numbers count the blank line: 1 2 3 4 6 7 8
assert [p["line"] for p in per] == [1, 2, 3, 4, 6, 7, 8], [p["line"] for p in per]
assert [p["label"] for p in per] == exp["preds"], ([p["label"] for p in per], exp["preds"])
for p, t in zip(per, exp["truths"]):
    assert p.get("true_label") == t, (p, t)
    if t is not None:
        assert p["correct"] == (p["label"] == t)
    assert 0 < p["probability"] <= 1
assert summ["lines"] == 7 and summ["labeled"] == 6, summ
assert summ["correct"] == 3, summ
assert summ["accuracy"] == 0.5, summ          # 3 of 6, by construction
got = {r["label"]: r for r in summ["labels"]}
for r in exp["rows"]:
    g = got[r["label"]]
    for k in ("precision", "recall", "f1"):
        assert abs(g[k] - r[k]) < 1e-12, (r, g)
    assert g["support"] == r["support"] and g["predicted"] == r["predicted"], (r, g)
assert abs(summ["macro_f1"] - exp["macro_f1"]) < 1e-12, (summ["macro_f1"], exp["macro_f1"])
print("ok")
EOF
check "eval-intent numbers match the hand computation: $(cat "$TMPD/pout")" grep -qx ok "$TMPD/pout"

# labels taken from the file when --labels is absent: the distinct truths
"$SLM" eval-intent -m "$M" --json --summary-only "$TMPD/eval.jsonl" >"$TMPD/eval2.out" 2>"$TMPD/err"
check "eval-intent without --labels: exit 0 ($(head -c 300 "$TMPD/err"))" test $? -eq 0
check "summary only" test "$(wc -l <"$TMPD/eval2.out")" -eq 1
python3 -c '
import json, sys
exp = json.load(open(sys.argv[2]))
s = json.loads(open(sys.argv[1]).read())["summary"]
want = []
for t in exp["truths"]:
    if t is not None and t not in want: want.append(t)
assert [r["label"] for r in s["labels"]] == want, (s, want)
' "$TMPD/eval2.out" "$TMPD/expect.json" 2>"$TMPD/perr"
check "labels from the file, in order: $(cat "$TMPD/perr")" test ! -s "$TMPD/perr"

# the plain report
"$SLM" eval-intent -m "$M" --labels "$LABELS" "$TMPD/eval.jsonl" >"$TMPD/eval3.out" 2>&1
check "plain report has accuracy 0.5" grep -q "accuracy 0.500000" "$TMPD/eval3.out"
check "plain report has macro-F1" grep -q "macro-F1" "$TMPD/eval3.out"

# bad lines: errors naming the line, before the model runs
printf '{"text":"a","label":"happy"}\n{"text":"b"}\nnot json\n' >"$TMPD/bad1.jsonl"
expect_status 1 "eval-intent bad JSON" "$SLM" eval-intent -m "$M" --labels "$LABELS" "$TMPD/bad1.jsonl"
stderr_has "bad1.jsonl:3: not a JSON object" "eval-intent bad JSON"
printf '{"text":"a"}\n{"label":"happy"}\n' >"$TMPD/bad2.jsonl"
expect_status 1 "eval-intent no text" "$SLM" eval-intent -m "$M" --labels "$LABELS" "$TMPD/bad2.jsonl"
stderr_has "bad2.jsonl:2: no \"text\" string" "eval-intent no text"
printf '{"text":"a","label":"joy"}\n' >"$TMPD/bad3.jsonl"
expect_status 1 "eval-intent unknown label" "$SLM" eval-intent -m "$M" --labels "$LABELS" "$TMPD/bad3.jsonl"
stderr_has "bad3.jsonl:1: label 'joy' is not one of the labels" "eval-intent unknown label"
printf '{"text":"a","label":3}\n' >"$TMPD/bad4.jsonl"
expect_status 1 "eval-intent label not a string" "$SLM" eval-intent -m "$M" --labels "$LABELS" "$TMPD/bad4.jsonl"
stderr_has "bad4.jsonl:1: \"label\" must be a string" "eval-intent label type"
printf '\n\n' >"$TMPD/empty.jsonl"
expect_status 1 "eval-intent empty file" "$SLM" eval-intent -m "$M" --labels "$LABELS" "$TMPD/empty.jsonl"
expect_status 2 "eval-intent no labels anywhere" "$SLM" eval-intent -m "$M" <(printf '{"text":"a"}\n')

# embed: width, unit norm, identical texts and thread counts give identical vectors
"$SLM" info "$M" --json >"$TMPD/info.json" 2>/dev/null
"$SLM" embed -m "$M" --json "hello there" "a cat sat" "hello there" >"$TMPD/e.json" 2>"$TMPD/err"
check "embed --json exit 0: $(head -c 300 "$TMPD/err")" test $? -eq 0
"$SLM" embed -m "$M" -t 1 "hello there" >"$TMPD/e1.txt" 2>/dev/null
"$SLM" embed -m "$M" -t 3 "hello there" >"$TMPD/e3.txt" 2>/dev/null
"$SLM" embed -m "$M" --pooling last --no-normalize "hello there" >"$TMPD/elast.txt" 2>/dev/null
python3 - "$TMPD/e.json" "$TMPD/e1.txt" "$TMPD/e3.txt" "$TMPD/elast.txt" "$TMPD/info.json" >"$TMPD/pout" 2>&1 <<'EOF'
import json, math, sys
r = json.load(open(sys.argv[1]))
d = r["dim"]
width = json.load(open(sys.argv[5]))["hparams"]["dim"]
assert width == d, (width, d)
vs = [x["embedding"] for x in r["data"]]
assert [x["index"] for x in r["data"]] == [0, 1, 2]
assert all(len(v) == d for v in vs) and d > 0
for v in vs:
    assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5
assert vs[0] == vs[2] and vs[0] != vs[1]
a = open(sys.argv[2]).read().split()
b = open(sys.argv[3]).read().split()
assert a == b and len(a) == d, "thread count changes the vector"
assert max(abs(float(x) - y) for x, y in zip(a, vs[0])) < 1e-7
last = [float(x) for x in open(sys.argv[4]).read().split()]
assert len(last) == d and abs(math.sqrt(sum(x * x for x in last)) - 1) > 1e-3, "--no-normalize"
print("ok")
EOF
check "embed vectors: $(cat "$TMPD/pout")" grep -qx ok "$TMPD/pout"

finish
