#!/usr/bin/env bash
# Per-request LoRA adapters in slm serve (issue 8): adapters loaded once at
# start (--lora NAME=PATH[:SCALE]); each request's "adapter" picks one (or
# none); every request's greedy output equals what `slm run --lora` gives,
# sequentially (switching back and forth) and under concurrency (12 requests
# mixing two GGUF adapters, a PEFT one and none, --parallel 3). Refusals: unknown names (400
# naming the field), bad --lora, unsigned adapters. Loopback only, bounded.
source "$(dirname "$0")/lib.sh"

M="$SHARED/models/stories260K.gguf"
[[ -f "$M" ]] || skip "$M not found"
command -v python3 >/dev/null || skip "python3 not found"
command -v curl >/dev/null || skip "curl not found"

SERVER_PID=
trap 'if [[ -n $SERVER_PID ]]; then kill -KILL $SERVER_PID 2>/dev/null; fi; rm -rf "$TMPD"' EXIT

# A random adapter for stories260K on five matrices (see lib.sh). mkadapter OUT SEED
mkadapter() {
  mk_lora_adapter "$1" "$2" 8 0.08 "0:attn_q:8 1:attn_k:8 2:attn_v:4 3:ffn_up:8 4:ffn_down:16"
}
mkadapter "$TMPD/a.gguf" 1
mkadapter "$TMPD/b.gguf" 2
# A Hugging Face PEFT adapter (directory) on q/k/v/o_proj of every layer.
python3 - "$TMPD/peft" <<'EOF'
import json, os, random, struct, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
rng = random.Random(3)
r = 4
hdr, data, off = {"__metadata__": {"format": "pt"}}, b"", 0
for l in range(5):
    for m, i, o in (("q_proj", 64, 64), ("k_proj", 64, 32), ("v_proj", 64, 32), ("o_proj", 64, 64)):
        for nm, shape in (("lora_A", [r, i]), ("lora_B", [o, r])):
            n = shape[0] * shape[1]
            blob = struct.pack("<%df" % n, *[rng.gauss(0, 0.1) for _ in range(n)])
            key = "base_model.model.model.layers.%d.self_attn.%s.%s.weight" % (l, m, nm)
            hdr[key] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(blob)]}
            data += blob
            off += len(blob)
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(d + "/adapter_model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + data)
json.dump({"peft_type": "LORA", "r": r, "lora_alpha": 8, "bias": "none",
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
          open(d + "/adapter_config.json", "w"))
EOF

# start_server LOG ARGS...: sets SERVER_PID and PORT
start_server() {
  local log=$1; shift
  : >"$log" # here, not in the background child: see wait_listening
  "$SLM" serve -m "$M" --port 0 "$@" 2>"$log" &
  SERVER_PID=$!
  wait_listening "$log" "$SERVER_PID" && return 0
  bad "server did not start: $(head -c 600 "$log")"
  return 1
}
stop_server() {
  kill -TERM $SERVER_PID 2>/dev/null
  for _ in $(seq 100); do kill -0 $SERVER_PID 2>/dev/null || break; sleep 0.1; done
  kill -KILL $SERVER_PID 2>/dev/null
  wait $SERVER_PID 2>/dev/null
  SERVER_PID=
}

# References: slm run, greedy, for each prompt and adapter choice.
P0="Once upon a time"
P1="The little dog"
N=24
ref() { # ref PROMPT OUT [--lora SPEC]
  local p=$1 out=$2; shift 2
  "$SLM" run -m "$M" -p "$p" -n $N --temp 0 -q -t 1 "$@" >"$out" 2>"$TMPD/ref.err" ||
    bad "slm run $*: $(head -c 300 "$TMPD/ref.err")"
}
ref "$P0" "$TMPD/r0-A" --lora "$TMPD/a.gguf"
ref "$P0" "$TMPD/r0-B" --lora "$TMPD/b.gguf:0.5"
ref "$P0" "$TMPD/r0-none"
ref "$P0" "$TMPD/r0-P" --lora "$TMPD/peft"
ref "$P1" "$TMPD/r1-A" --lora "$TMPD/a.gguf"
ref "$P1" "$TMPD/r1-B" --lora "$TMPD/b.gguf:0.5"
ref "$P1" "$TMPD/r1-none"
ref "$P1" "$TMPD/r1-P" --lora "$TMPD/peft"
check "adapter A changes the output" bash -c "! cmp -s '$TMPD/r0-A' '$TMPD/r0-none'"
check "adapter B changes the output" bash -c "! cmp -s '$TMPD/r0-B' '$TMPD/r0-none'"
check "A and B differ" bash -c "! cmp -s '$TMPD/r0-A' '$TMPD/r0-B'"
check "the PEFT adapter changes the output" bash -c "! cmp -s '$TMPD/r0-P' '$TMPD/r0-none'"


cat >"$TMPD/common.py" <<'EOF'
import http.client, json, sys, threading
port, tmpd = int(sys.argv[1]), sys.argv[2]
passed = failed = 0
lock = threading.Lock()
def check(what, ok, detail=""):
    global passed, failed
    with lock:
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL: %s %s" % (what, detail), file=sys.stderr)
def post(path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)
prompts = ["Once upon a time", "The little dog"]
def ref(i, ad):
    return open("%s/r%d-%s" % (tmpd, i, ad or "none"), "rb").read().decode()
def complete(i, ad):
    body = {"prompt": prompts[i], "max_tokens": 24, "temperature": 0}
    if ad is not None:
        body["adapter"] = ad
    return post("/v1/completions", body)
def finish():
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
EOF

# --parallel 3: sequential switching, then 12 concurrent requests
start_server "$TMPD/s1.log" --parallel 3 -t 1 --lora A="$TMPD/a.gguf" --lora B="$TMPD/b.gguf:0.5" \
  --lora P="$TMPD/peft"
if [[ -n $PORT ]]; then
  run_py serve_lora 120 "$TMPD" <<EOF
exec(open("$TMPD/common.py").read())
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
c.request("GET", "/v1/models")
m = json.loads(c.getresponse().read())
names = [a["name"] for a in m["data"][0].get("adapters", [])]
check("/v1/models lists the adapters", names == ["A", "B", "P"], str(m))
# the same prompt back to back with different adapters: no stale cache
for ad in ["A", None, "A", "B", "B", "P", None, "A", "P"]:
    st, r = complete(0, ad)
    got = r["choices"][0]["text"] if st == 200 else None
    check("sequential %s" % ad, got == ref(0, ad), "%r vs %r" % (got, ref(0, ad)))
# 12 concurrent requests mixing adapters (GGUF, PEFT, none) and prompts, twice
jobs = [(k % 2, ["A", "B", None, "P"][k % 4]) for k in range(12)]
for wave in range(2):
    out = [None] * len(jobs)
    def go(k):
        try:
            out[k] = complete(*jobs[k])
        except Exception as e:
            out[k] = (0, str(e))
    ts = [threading.Thread(target=go, args=(k,)) for k in range(len(jobs))]
    for t in ts: t.start()
    for t in ts: t.join(90)
    for k, (i, ad) in enumerate(jobs):
        st, r = out[k] if out[k] else (0, None)
        got = r["choices"][0]["text"] if st == 200 else None
        check("concurrent wave %d #%d (%s, prompt %d)" % (wave, k, ad, i), got == ref(i, ad),
              "status %s: %r vs %r" % (st, got, ref(i, ad)))
# chat requests choose adapters too (and cached prefixes are not shared across them)
msgs = [{"role": "user", "content": "Tell me a story"}]
res = {}
for ad in ["A", None, "A", "B"]:
    body = {"messages": msgs, "max_tokens": 16, "temperature": 0}
    if ad: body["adapter"] = ad
    st, r = post("/v1/chat/completions", body)
    check("chat %s" % ad, st == 200, str(r))
    if st == 200:
        t = r["choices"][0]["message"]["content"]
        if ad in res: check("chat %s repeats" % ad, res[ad] == t, "%r vs %r" % (res[ad], t))
        res[ad] = t
check("chat adapters differ", len(set(res.values())) == 3, str(res))
# unknown and malformed names
st, r = complete(0, "C")
check("unknown adapter is a 400", st == 400 and r["error"]["param"] == "adapter" and
      "'C'" in r["error"]["message"], str(r))
st, r = post("/v1/completions", {"prompt": "x", "adapter": 3})
check("non-string adapter is a 400", st == 400 and r["error"]["param"] == "adapter", str(r))
st, r = post("/v1/completions", {"prompt": "x", "max_tokens": 2, "adapter": None})
check("adapter null = the base model", st == 200, str(r))
finish()
EOF
  stop_server
fi

# a server without adapters refuses any "adapter"
start_server "$TMPD/s2.log" --parallel 1 -t 1
if [[ -n $PORT ]]; then
  code=$(curl -s --max-time 20 -o "$TMPD/body" -w '%{http_code}' -H 'Content-Type: application/json' \
    "http://127.0.0.1:$PORT/v1/completions" -d '{"prompt":"x","max_tokens":2,"adapter":"A"}')
  check "no adapters: 400" test "$code" = 400
  check "no adapters: names the field" grep -q '"param":"adapter"' "$TMPD/body"
  stop_server
fi

# start-up refusals
expect_status 2 "--lora without NAME=" "$SLM" serve -m "$M" --port 0 --lora "$TMPD/a.gguf"
stderr_has "NAME=PATH" "--lora without NAME="
expect_status 1 "--lora missing file" timeout 30 "$SLM" serve -m "$M" --port 0 --lora X="$TMPD/none.gguf"
stderr_has "none.gguf" "--lora missing file names it"
expect_status 1 "--lora name twice" timeout 30 "$SLM" serve -m "$M" --port 0 \
  --lora A="$TMPD/a.gguf" --lora A="$TMPD/b.gguf"
stderr_has "twice" "--lora name twice"
expect_status 1 "--lora bad name" timeout 30 "$SLM" serve -m "$M" --port 0 --lora 'a b=x.gguf'
stderr_has "NAME=PATH" "--lora bad name"
expect_status 1 "--lora with config adapters" timeout 30 "$SLM" serve -m "$M" --port 0 \
  --config "{\"adapters\":[\"$TMPD/b.gguf\"]}" --lora A="$TMPD/a.gguf"
stderr_has "adapters" "--lora with config adapters"
signed_model_setup "$M" k
expect_status 1 "unsigned adapter refused at start" timeout 30 "$SLM" serve -m "$TMPD/model.gguf" \
  --port 0 --config "{\"require_signature\":true,\"trust_dir\":\"$K/trust\"}" --lora A="$TMPD/a.gguf"
stderr_has "signature" "unsigned adapter refused at start"

finish
