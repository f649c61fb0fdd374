#!/usr/bin/env bash
# POST /v1/embeddings (OpenAI's shape) and POST /v1/classify on slm serve:
# vectors equal slm embed's, token-array input equals the text's tokens,
# base64 decodes to the same floats, usage counts tokens, classify equals
# slm classify, errors are 400s in OpenAI's shape, requests run beside
# completions on parallel slots, /metrics counts both endpoints. Loopback
# only, bounded in time.
source "$(dirname "$0")/lib.sh"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  M="$TMPD/small.gguf"
  "$SLM_BUILD/tests/test_serve" --write-model "$M" >/dev/null 2>&1 || skip "no model: $SHARED/models/stories260K.gguf is absent and tests/test_serve could not write one"
fi
command -v python3 >/dev/null || skip "python3 not found"
command -v curl >/dev/null || skip "curl not found"

SERVER_PID=
trap 'if [[ -n $SERVER_PID ]]; then kill -KILL $SERVER_PID 2>/dev/null; fi; rm -rf "$TMPD"' EXIT
"$SLM" serve -m "$M" --host 127.0.0.1 --port 0 --parallel 2 --ctx 256 2>"$TMPD/server.log" &
SERVER_PID=$!
wait_listening "$TMPD/server.log" "$SERVER_PID"
if [[ -z $PORT ]]; then
  bad "server did not start: $(head -c 600 "$TMPD/server.log")"
  finish
  exit 1
fi
URL="http://127.0.0.1:$PORT"

# post PATH BODY OUTFILE: prints the HTTP status
post() {
  curl -s -m 60 -o "$3" -w '%{http_code}' -H 'Content-Type: application/json' -d "$2" "$URL$1"
}

# references from the CLI
"$SLM" embed -m "$M" --json "hello there" "a cat sat on the mat" >"$TMPD/cli_embed.json" 2>/dev/null
"$SLM" embed -m "$M" --json --pooling last "hello there" >"$TMPD/cli_last.json" 2>/dev/null
"$SLM" tokenize -m "$M" --add-special "hello there" >"$TMPD/ids.txt" 2>/dev/null
"$SLM" classify -m "$M" --labels "happy,sad,pay,payment" --json "Lily paid for the red ball" \
  >"$TMPD/cli_cls.json" 2>/dev/null
IDS=$(tr ' ' ',' <"$TMPD/ids.txt" | tr -d '\n')

check "embeddings: one string" test "$(post /v1/embeddings '{"input":"hello there","model":"x"}' "$TMPD/e1.json")" = 200
check "embeddings: strings" test "$(post /v1/embeddings '{"input":["hello there","a cat sat on the mat","hello there"]}' "$TMPD/e2.json")" = 200
check "embeddings: token ids" test "$(post /v1/embeddings "{\"input\":[$IDS]}" "$TMPD/e3.json")" = 200
check "embeddings: token arrays" test "$(post /v1/embeddings "{\"input\":[[$IDS],[$IDS]]}" "$TMPD/e4.json")" = 200
check "embeddings: base64" test "$(post /v1/embeddings '{"input":"hello there","encoding_format":"base64"}' "$TMPD/e5.json")" = 200
check "embeddings: last pooling" test "$(post /v1/embeddings '{"input":"hello there","pooling":"last"}' "$TMPD/e6.json")" = 200
check "classify" test "$(post /v1/classify '{"input":"Lily paid for the red ball","labels":["happy","sad","pay","payment"]}' "$TMPD/c1.json")" = 200

python3 - "$TMPD" "$IDS" >"$TMPD/pout" 2>&1 <<'EOF'
import base64, json, math, struct, sys
d = sys.argv[1]
n_ids = len(sys.argv[2].split(","))
J = lambda n: json.load(open(f"{d}/{n}"))
cli = J("cli_embed.json")
dim = cli["dim"]
ref0, ref1 = cli["data"][0]["embedding"], cli["data"][1]["embedding"]
close = lambda a, b: len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-6

e1 = J("e1.json")
assert e1["object"] == "list" and e1["model"], e1.keys()
assert len(e1["data"]) == 1 and e1["data"][0]["object"] == "embedding" and e1["data"][0]["index"] == 0
v = e1["data"][0]["embedding"]
assert len(v) == dim and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5
assert close(v, ref0), "server and CLI differ"
assert e1["usage"]["prompt_tokens"] == n_ids == e1["usage"]["total_tokens"], (e1["usage"], n_ids)

e2 = J("e2.json")
vs = [x["embedding"] for x in e2["data"]]
assert [x["index"] for x in e2["data"]] == [0, 1, 2]
assert close(vs[0], ref0) and close(vs[1], ref1) and vs[0] == vs[2]
assert e2["usage"]["prompt_tokens"] == 2 * n_ids + cli["data"][1]["tokens"], e2["usage"]

e3 = J("e3.json")  # the text's own tokens (BOS included) give the text's vector
assert e3["data"][0]["embedding"] == v, "token ids differ from the text"
e4 = J("e4.json")
assert len(e4["data"]) == 2 and all(x["embedding"] == v for x in e4["data"])

b = base64.b64decode(J("e5.json")["data"][0]["embedding"])
fl = list(struct.unpack("<%df" % dim, b))
assert len(b) == 4 * dim and close(fl, v), "base64"

last = J("e6.json")["data"][0]["embedding"]
assert close(last, J("cli_last.json")["data"][0]["embedding"]) and not close(last, v)

c = J("c1.json")
ref = J("cli_cls.json")
assert c["object"] == "classification" and c["model"]
assert [x["label"] for x in c["labels"]] == [x["label"] for x in ref["labels"]]
assert abs(sum(x["probability"] for x in c["labels"]) - 1) < 1e-9
for x, y in zip(c["labels"], ref["labels"]):
    assert abs(x["probability"] - y["probability"]) < 1e-9, (x, y)
u = c["usage"]
assert u["prompt_tokens"] == ref["prompt_tokens"]
assert u["total_tokens"] == u["prompt_tokens"] + sum(x["tokens"] for x in c["labels"])
print("ok")
EOF
check "responses: $(cat "$TMPD/pout")" grep -qx ok "$TMPD/pout"

# errors: 400 in OpenAI's shape, naming the field
err() { # err WHAT PATH BODY PARAM
  local code
  code=$(post "$2" "$3" "$TMPD/err.json")
  if [[ $code == 400 ]] && python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert e["type"] == "invalid_request_error" and e["message"], e
assert sys.argv[2] == "-" or e["param"] == sys.argv[2], e
' "$TMPD/err.json" "$4" 2>/dev/null; then ok; else bad "$1: HTTP $code $(head -c 300 "$TMPD/err.json")"; fi
}
err "no input" /v1/embeddings '{}' input
err "empty array" /v1/embeddings '{"input":[]}' input
err "mixed array" /v1/embeddings '{"input":["a",[1,2]]}' input
err "bad token id" /v1/embeddings '{"input":[1,99999999]}' input
err "fractional token id" /v1/embeddings '{"input":[1,2.5]}' input
err "empty token array" /v1/embeddings '{"input":[[]]}' input
err "bad encoding_format" /v1/embeddings '{"input":"a","encoding_format":"int8"}' encoding_format
err "dimensions" /v1/embeddings '{"input":"a","dimensions":3}' dimensions
err "bad pooling" /v1/embeddings '{"input":"a","pooling":"max"}' pooling
err "not an object" /v1/embeddings '[1,2]' -
err "classify no labels" /v1/classify '{"input":"a"}' labels
err "classify empty labels" /v1/classify '{"input":"a","labels":[]}' labels
err "classify duplicate labels" /v1/classify '{"input":"a","labels":["x","x"]}' labels
err "classify empty label" /v1/classify '{"input":"a","labels":["x",""]}' labels
err "classify no input" /v1/classify '{"labels":["x","y"]}' input
err "classify template" /v1/classify '{"input":"a","labels":["x","y"],"prompt_template":"no slot"}' prompt_template
LONG=$(python3 -c 'print("hello there " * 300)')
code=$(post /v1/embeddings "{\"input\":\"$LONG\"}" "$TMPD/err.json")
check "input longer than the context: 400 ($code)" test "$code" = 400
check "context error code" grep -q context_length_exceeded "$TMPD/err.json"
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$URL/v1/embeddings")
check "GET /v1/embeddings is 405 ($code)" test "$code" = 405

# beside completions on parallel slots: all answer, vectors unchanged
pids=()
for i in 1 2 3; do
  post /v1/embeddings '{"input":["hello there","a cat sat on the mat"]}' "$TMPD/p_e$i.json" >"$TMPD/p_e$i.code" &
  pids+=($!)
  post /v1/classify '{"input":"Lily paid for the red ball","labels":["happy","sad","pay","payment"]}' "$TMPD/p_c$i.json" >"$TMPD/p_c$i.code" &
  pids+=($!)
  post /v1/completions '{"prompt":"Once upon a time","max_tokens":16,"temperature":0}' "$TMPD/p_g$i.json" >"$TMPD/p_g$i.code" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
python3 - "$TMPD" >"$TMPD/pout" 2>&1 <<'EOF'
import json, sys
d = sys.argv[1]
ref = json.load(open(f"{d}/e2.json"))["data"]
c0 = json.load(open(f"{d}/c1.json"))["labels"]
for i in (1, 2, 3):
    for k in ("e", "c", "g"):
        code = open(f"{d}/p_{k}{i}.code").read().strip()
        assert code in ("200", "429"), (k, i, code)
        if code != "200":
            continue
        r = json.load(open(f"{d}/p_{k}{i}.json"))
        if k == "e":
            assert [x["embedding"] for x in r["data"]] == [x["embedding"] for x in ref[:2]]
        if k == "c":
            assert [(x["label"], x["probability"]) for x in r["labels"]] == [(x["label"], x["probability"]) for x in c0]
print("ok")
EOF
check "parallel requests: $(cat "$TMPD/pout")" grep -qx ok "$TMPD/pout"

curl -s -m 10 "$URL/metrics" >"$TMPD/metrics.txt"
check "metrics count /v1/embeddings" grep -q 'slm_requests_total{endpoint="/v1/embeddings",status="200"}' "$TMPD/metrics.txt"
check "metrics count /v1/classify" grep -q 'slm_requests_total{endpoint="/v1/classify",status="400"}' "$TMPD/metrics.txt"

kill -TERM $SERVER_PID
for _ in $(seq 100); do kill -0 $SERVER_PID 2>/dev/null || break; sleep 0.1; done
if kill -0 $SERVER_PID 2>/dev/null; then bad "server did not stop on SIGTERM"; else ok; fi
wait $SERVER_PID 2>/dev/null
SERVER_PID=
finish
