#!/usr/bin/env bash
# Constrained output (issue 7): every schema in tests/integration/schemas,
# at temperatures 0, 0.8 and 1.5 and several seeds, on stories260K
# (SentencePiece, 512 tokens) and on a tiny random model with the real
# Llama 3 vocabulary (byte-level BPE, 128256 tokens): each output must be
# complete (finish stop/eos), parse and validate against its schema with
# ajv, an independent validator (installed with npm into the build tree).
# Also: --json-object and --grammar outputs, the server's response_format
# (json_schema and json_object answered; an invalid schema is a 400 naming
# response_format), CLI errors. Sanitizer builds run fewer cases.
source "$(dirname "$0")/lib.sh"

STORIES="$SHARED/models/stories260K.gguf"
[[ -f "$STORIES" ]] || skip "$STORIES not found"
command -v node >/dev/null || skip "node not found (scripts/deps.sh --test installs it)"
command -v npm >/dev/null || skip "npm not found (scripts/deps.sh --test installs it)"
PY=/usr/bin/python3
[[ -x $PY ]] || skip "python3 not found"

JS_SRC="$SLM_SOURCE/tests/integration/js-schema"
JS="$SLM_BUILD/tests/js-schema"
mkdir -p "$JS"
if ! cmp -s "$JS_SRC/package.json" "$JS/package.json" || [[ ! -d "$JS/node_modules/ajv" ]]; then
  cp "$JS_SRC/package.json" "$JS/package.json"
  if ! (cd "$JS" && timeout 300 npm install --no-audit --no-fund --loglevel=error >"$TMPD/npm.log" 2>&1); then
    rm -f "$JS/package.json"
    skip "npm install of ajv failed (no registry?): $(tail -c 300 "$TMPD/npm.log")"
  fi
fi
cp "$JS_SRC/validate.mjs" "$JS/validate.mjs"

SCHEMAS=("$SLM_SOURCE"/tests/integration/schemas/*.json)
TEMPS=(0 0.8 1.5)
SEEDS=(1 2)
OBJ_TEMPS=(0 0.8 1.5)
OBJ_SEEDS=(1 2)
OBJ_TOKENS=800
ROTATE=0
if ldd "$SLM" 2>/dev/null | grep -q libasan; then # sanitizers: about 10x slower
  ROTATE=1 # one temperature per schema, in turn
  SEEDS=(3)
  OBJ_TEMPS=(0.8)
  OBJ_SEEDS=(1)
  OBJ_TOKENS=200
fi

# The Llama 3 vocabulary model (kept in the build tree between runs).
MODELS=("$STORIES")
L3="$SLM_BUILD/tests/structured-llama3-tiny.gguf"
L3_TOK="$SHARED/fixtures/tokenizers/llama3/tokenizer.json"
if [[ ! -f $L3 ]]; then
  if [[ -f $L3_TOK && -f $SHARED/tools/mkmodel.py ]] && $PY -c "import numpy" 2>/dev/null; then
    $PY "$JS_SRC/mkmodel_llama3.py" "$SHARED" "$L3.tmp" >"$TMPD/mk.log" 2>&1 && mv "$L3.tmp" "$L3"
  fi
fi
if [[ -f $L3 ]]; then
  MODELS+=("$L3")
else
  bad "could not make the Llama 3 vocabulary model (needs $L3_TOK, $SHARED/tools/mkmodel.py and python3-numpy): $(tail -c 300 "$TMPD/mk.log" 2>/dev/null)"
fi

# One generation; records {label, schema, output, finish} for the validator.
n_runs=0
run_case() { # model schema|"" label args...
  local model=$1 schema=$2 label=$3
  shift 3
  local out="$TMPD/case.out" err="$TMPD/case.err"
  if ! "$SLM" run -m "$model" "$@" >"$out" 2>"$err"; then
    bad "$label: exit status $?: $(tail -c 300 "$err")"
    return
  fi
  local fin
  fin=$(sed -n 's/.*finish: \([a-z]*\).*/\1/p' "$err" | tail -1)
  $PY -c 'import json,sys; print(json.dumps({"label": sys.argv[1], "schema": sys.argv[2] or None, "output": open(sys.argv[3], encoding="utf-8", errors="surrogateescape").read(), "finish": sys.argv[4]}))' \
    "$label" "$schema" "$out" "$fin" >>"$TMPD/results.jsonl" 2>"$TMPD/py.err" ||
    bad "$label: output is not UTF-8: $(head -c 200 "$TMPD/py.err")"
  n_runs=$((n_runs + 1))
  if [[ $fin == stop || $fin == eos ]]; then ok; else bad "$label: finish '$fin' (expected stop or eos)"; fi
}

t0=$(date +%s)
for model in "${MODELS[@]}"; do
  mname=$(basename "$model" .gguf)
  k=0
  for schema in "${SCHEMAS[@]}"; do
    sname=$(basename "$schema" .json)
    temps=("${TEMPS[@]}")
    [[ $ROTATE -eq 1 ]] && temps=("${TEMPS[$((k % ${#TEMPS[@]}))]}")
    k=$((k + 1))
    for temp in "${temps[@]}"; do
      for seed in "${SEEDS[@]}"; do
        run_case "$model" "$schema" "$mname/$sname/t$temp/s$seed" -p "Once upon a time" \
          --json-schema "$schema" --temp "$temp" --seed "$seed" -n 600
      done
    done
  done
done
echo "schema runs: $n_runs in $(($(date +%s) - t0)) s"

# Validate everything so far with ajv.
if (cd "$JS" && timeout 120 node validate.mjs "$TMPD/results.jsonl") >"$TMPD/ajv.out" 2>&1; then
  ok
else
  bad "ajv: invalid outputs"
fi
cat "$TMPD/ajv.out" | tail -20
want="$n_runs valid, 0 invalid"
check "ajv validated all $n_runs outputs" grep -qxF "$want" "$TMPD/ajv.out"
check "ran at least 15 schemas on each model" test "$n_runs" -ge $((15 * ${#MODELS[@]}))

# --json-object and --grammar (greedy and sampled); a JSON object may be
# cut by max_tokens (its strings are unbounded, and these models write long
# ones): the complete ones are validated.
: >"$TMPD/results.jsonl"
n_obj=0
n_done=0
for model in "${MODELS[@]}"; do
for temp in "${OBJ_TEMPS[@]}"; do
  for seed in "${OBJ_SEEDS[@]}"; do
    "$SLM" run -m "$model" -p "Once upon a time" --json-object --temp "$temp" --seed "$seed" \
      -n $OBJ_TOKENS >"$TMPD/o.out" 2>"$TMPD/o.err"
    fin=$(sed -n 's/.*finish: \([a-z]*\).*/\1/p' "$TMPD/o.err" | tail -1)
    n_obj=$((n_obj + 1))
    if [[ $fin == stop ]]; then
      n_done=$((n_done + 1))
      $PY -c 'import json,sys; print(json.dumps({"label": "json-object", "schema": None, "output": open(sys.argv[1]).read(), "finish": "stop"}))' "$TMPD/o.out" >>"$TMPD/results.jsonl"
    elif [[ $fin != length ]]; then
      bad "--json-object t$temp s$seed: finish '$fin': $(tail -c 300 "$TMPD/o.err")"
    fi
  done
done
done
echo "json_object: $n_done of $n_obj complete within $OBJ_TOKENS tokens (the rest cut by max_tokens)"
printf 'root ::= "The " animal " is " ("big" | "small") "."\nanimal ::= "cat" | "dog" | [a-z]{3,5}\n' >"$TMPD/g.gbnf"
for temp in 0 1.5; do
  expect_status 0 "--grammar t$temp" "$SLM" run -m "$STORIES" -p "Once" -q --grammar "$TMPD/g.gbnf" --temp "$temp"
  check "--grammar t$temp output matches" grep -qxE 'The [a-z]{3,5} is (big|small)\.' "$TMPD/out"
done
(cd "$JS" && timeout 60 node validate.mjs "$TMPD/results.jsonl") >"$TMPD/ajv2.out" 2>&1
check "json_object outputs are JSON objects" grep -qxF "$n_done valid, 0 invalid" "$TMPD/ajv2.out"

# CLI errors: before generation, naming the file and the problem.
printf '{"type":"object","properties":{"t":{"type":"array","uniqueItems":true}}}' >"$TMPD/bad.json"
expect_status 1 "unsupported keyword" "$SLM" run -m "$STORIES" -p x --json-schema "$TMPD/bad.json"
stderr_has "/properties/t: 'uniqueItems' is not supported" "unsupported keyword message"
printf 'root ::= "a" (' >"$TMPD/bad.gbnf"
expect_status 1 "bad grammar" "$SLM" run -m "$STORIES" -p x --grammar "$TMPD/bad.gbnf"
stderr_has "line 1 col 14" "grammar error position"
printf '{"type":' >"$TMPD/notjson.json"
expect_status 1 "schema not JSON" "$SLM" run -m "$STORIES" -p x --json-schema "$TMPD/notjson.json"
stderr_has "not valid JSON" "schema not JSON message"
expect_status 2 "two constraints" "$SLM" run -m "$STORIES" -p x --json-object --grammar "$TMPD/g.gbnf"

# slm bench --json-schema: decode with the schema beside decode without.
expect_status 0 "bench --json-schema" "$SLM" bench -m "$STORIES" -p 8 -n 64 -r 1 --json \
  --json-schema "$SLM_SOURCE/tests/integration/schemas/14_string_lengths.json"
check "bench reports schema_decode_tps" $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["schema_decode_tps"] > 0 and d["schema_tokens"] >= 3 and "schema_cost_pct" in d, d' "$TMPD/out"

# The server: response_format json_schema and json_object, per request.
SERVER_PID=
trap 'if [[ -n $SERVER_PID ]]; then kill -KILL $SERVER_PID 2>/dev/null; fi; rm -rf "$TMPD"' EXIT
"$SLM" serve -m "$STORIES" --port 0 --parallel 1 2>"$TMPD/server.log" &
SERVER_PID=$!
wait_listening "$TMPD/server.log" "$SERVER_PID"
if [[ -z $PORT ]]; then
  bad "server did not start: $(head -c 600 "$TMPD/server.log")"
else
  : >"$TMPD/results.jsonl"
  $PY - "$PORT" "$SLM_SOURCE/tests/integration/schemas" "$TMPD/results.jsonl" >"$TMPD/srv.out" 2>&1 <<'PYEOF'
import json, sys, urllib.request, urllib.error
port, sdir, out = sys.argv[1], sys.argv[2], sys.argv[3]
fails = 0
def post(body):
    req = urllib.request.Request("http://127.0.0.1:%s/v1/chat/completions" % port, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
msg = [{"role": "user", "content": "Tell me about a cat."}]
with open(out, "w") as f:
    for name, temp in (("02_enum_heavy", 0.8), ("11_refs", 1.0), ("06_anyof", 0)):
        path = "%s/%s.json" % (sdir, name)
        schema = json.load(open(path))
        st, r = post({"messages": msg, "max_tokens": 600, "temperature": temp,
                      "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}})
        if st != 200:
            print("FAIL json_schema %s: HTTP %d %s" % (name, st, r)); fails += 1; continue
        c = r["choices"][0]
        f.write(json.dumps({"label": "server/" + name, "schema": path, "output": c["message"]["content"], "finish": c["finish_reason"]}) + "\n")
        if c["finish_reason"] != "stop":
            print("FAIL json_schema %s: finish %s" % (name, c["finish_reason"])); fails += 1
    # no response_format after one: plain text again (the setting does not stick to the slot)
    st, r = post({"messages": msg, "max_tokens": 8, "temperature": 0})
    if st != 200 or r["choices"][0]["message"]["content"].lstrip().startswith("{"):
        print("FAIL plain request after a json_schema one: %s" % r); fails += 1
    st, r = post({"messages": msg, "max_tokens": 5, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "patternProperties": {}}}}})
    if st != 400 or r["error"].get("param") != "response_format" or "patternProperties" not in r["error"]["message"]:
        print("FAIL invalid schema: HTTP %d %s" % (st, r)); fails += 1
    st, r = post({"messages": msg, "max_tokens": 5, "response_format": {"type": "yaml"}})
    if st != 400 or r["error"].get("param") != "response_format":
        print("FAIL bad type: HTTP %d %s" % (st, r)); fails += 1
    st, r = post({"messages": msg, "max_tokens": 1000, "temperature": 0, "response_format": {"type": "json_object"}})
    if st != 200:
        print("FAIL json_object: HTTP %d %s" % (st, r)); fails += 1
    elif r["choices"][0]["finish_reason"] == "stop":
        f.write(json.dumps({"label": "server/json_object", "schema": None, "output": r["choices"][0]["message"]["content"], "finish": "stop"}) + "\n")
print("server checks: %d failed" % fails)
PYEOF
  cat "$TMPD/srv.out"
  check "server response_format checks" grep -qxF "server checks: 0 failed" "$TMPD/srv.out"
  n_srv=$(wc -l <"$TMPD/results.jsonl")
  (cd "$JS" && timeout 60 node validate.mjs "$TMPD/results.jsonl") >"$TMPD/ajv3.out" 2>&1
  cat "$TMPD/ajv3.out"
  check "server outputs validate" grep -qxF "$n_srv valid, 0 invalid" "$TMPD/ajv3.out"
  kill -TERM $SERVER_PID
  wait $SERVER_PID
  SERVER_PID=
fi
finish
