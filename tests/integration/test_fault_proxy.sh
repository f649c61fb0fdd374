#!/usr/bin/env bash
# tests/tools/fault_proxy.py (issue 10) on its own, loopback only: in front of
# a real `slm serve`, each --fault mode does what it says (pass forwards whole
# and streamed answers unchanged; refuse leaves nothing listening; delay
# delays; http500/http429/garbage answer so; truncated and cut_stream cut the
# transfer), --log-bodies records every body as one JSON line with the
# values intact, --log-connections records connections, --fault-count stops
# faulting after N requests, and --max-seconds bounds its life.
source "$(dirname "$0")/lib.sh"

M="$SHARED/models/stories260K.gguf"
[[ -f $M ]] || skip "no local model: $M is absent"
command -v python3 >/dev/null || skip "python3 not found"
command -v curl >/dev/null || skip "curl not found"
PROXY="$SLM_SOURCE/tests/tools/fault_proxy.py"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$TMPD"
}
trap cleanup EXIT

"$SLM" serve -m "$M" --port 0 -t 1 2>"$TMPD/serve.log" &
PIDS+=($!)
wait_listening "$TMPD/serve.log" "$!"
SPORT=$PORT
[[ -n $SPORT ]] || { bad "slm serve did not start: $(head -c 400 "$TMPD/serve.log")"; finish; exit; }

PPORT=
PPID_=
start_proxy() { # start_proxy FAULT [args]: sets PPORT, PPID_
  local fault=$1; shift
  rm -f "$TMPD/pport"
  python3 "$PROXY" --listen-port 0 --port-file "$TMPD/pport" --upstream "http://127.0.0.1:$SPORT" \
    --fault "$fault" --max-seconds 120 --quiet "$@" 2>>"$TMPD/proxy.log" &
  PPID_=$!
  PIDS+=($PPID_)
  PPORT=
  for _ in $(seq 200); do
    [[ -s $TMPD/pport ]] && PPORT=$(cat "$TMPD/pport") && return 0
    sleep 0.05
  done
  bad "proxy ($fault) did not write its port: $(tail -c 400 "$TMPD/proxy.log")"
  return 1
}
stop_proxy() { kill "$PPID_" 2>/dev/null; wait "$PPID_" 2>/dev/null; }

J='Content-Type: application/json'
BODY='{"messages":[{"role":"user","content":"Once upon a time, Zoë wrote to zoe@example.com"}],"max_tokens":24,"temperature":0}'
SBODY='{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0,"stream":true}'
# post PORT BODY OUTFILE [curl args]: prints "HTTP_CODE CURL_RC SECONDS"
post() {
  local port=$1 body=$2 out=$3; shift 3
  local code rc
  code=$(curl -sS -N -m 20 -o "$out" -w '%{http_code} %{time_total}' -H "$J" "$@" \
    "http://127.0.0.1:$port/v1/chat/completions" -d "$body" 2>"$out.err")
  rc=$?
  set -- $code
  echo "$1 $rc $2"
}
content_of_stream() { # concatenated delta contents of an SSE file
  python3 -c '
import json,sys
out=""
for line in open(sys.argv[1], encoding="utf-8"):
    line=line.strip()
    if line.startswith("data: ") and line != "data: [DONE]":
        for c in json.loads(line[6:]).get("choices", []):
            out += (c.get("delta") or {}).get("content") or ""
print(out)' "$1"
}

# ---- pass: whole and streamed answers as the server gives them; bodies logged
start_proxy pass --log-bodies "$TMPD/bodies.jsonl" --log-connections "$TMPD/conns.jsonl"
read -r code rc _ < <(post "$SPORT" "$BODY" "$TMPD/direct.json")
check "direct request works" test "$code" = 200
read -r code rc _ < <(post "$PPORT" "$BODY" "$TMPD/pass.json")
check "pass: 200 (got $code, curl $rc)" test "$code" = 200 -a "$rc" = 0
same_answer() { # the same JSON but for id, created and usage (prompt-cache counts differ)
  python3 -c '
import json,sys
a,b=(json.load(open(f, encoding="utf-8")) for f in sys.argv[1:3])
for j in (a,b):
    for k in ("id","created","usage"): j.pop(k, None)
sys.exit(0 if a == b else 1)' "$1" "$2" || { diff "$1" "$2" >&2; return 1; }
}
check "pass: whole answer unchanged" same_answer "$TMPD/direct.json" "$TMPD/pass.json"
read -r code rc _ < <(post "$SPORT" "$SBODY" "$TMPD/direct.sse")
read -r code rc _ < <(post "$PPORT" "$SBODY" "$TMPD/pass.sse")
check "pass stream: 200, clean end (got $code, curl $rc)" test "$code" = 200 -a "$rc" = 0
check "pass stream: ends with [DONE]" grep -q '^data: \[DONE\]' "$TMPD/pass.sse"
check "pass stream: same text as direct" test "$(content_of_stream "$TMPD/direct.sse")" = "$(content_of_stream "$TMPD/pass.sse")"
check "pass stream: text not empty" test -n "$(content_of_stream "$TMPD/pass.sse")"
read -r code rc _ < <(post "$PPORT" "$BODY" "$TMPD/chunked.json" -H 'Transfer-Encoding: chunked')
check "pass: a chunked request body is forwarded (got $code)" test "$code" = 200
check "log-bodies: one line per request" test "$(wc -l <"$TMPD/bodies.jsonl")" -eq 3
check "log-bodies: each line is JSON with the value intact" python3 -c '
import json,sys
ls=[json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert all(isinstance(l, dict) for l in ls)
assert "zoe@example.com" in ls[0]["messages"][0]["content"] and "Zoë" in ls[0]["messages"][0]["content"]
' "$TMPD/bodies.jsonl"
check "log-bodies: raw UTF-8 (a substring search finds values)" grep -q 'Zoë wrote to zoe@example.com' "$TMPD/bodies.jsonl"
check "log-connections: connections recorded" test "$(wc -l <"$TMPD/conns.jsonl")" -ge 3
PAR=()
for i in 1 2 3 4 5 6; do
  post "$PPORT" "$SBODY" "$TMPD/par$i.sse" >"$TMPD/par$i.code" &
  PAR+=($!)
done
wait "${PAR[@]}"
npar=0
for i in 1 2 3 4 5 6; do grep -q '^200 0 ' "$TMPD/par$i.code" 2>/dev/null && grep -q '\[DONE\]' "$TMPD/par$i.sse" && npar=$((npar + 1)); done
check "pass: 6 concurrent streams all complete ($npar)" test "$npar" -eq 6
stop_proxy

# ---- refuse: nothing listens on the written port
start_proxy refuse
read -r code rc _ < <(post "$PPORT" "$BODY" "$TMPD/refuse.json")
check "refuse: connection refused (curl $rc)" test "$rc" = 7
stop_proxy

# ---- delay
start_proxy delay --delay-ms 1200
read -r code rc sec < <(post "$PPORT" "$BODY" "$TMPD/delay.json")
check "delay: answered 200 after the delay ($code, ${sec}s)" python3 -c "import sys; sys.exit(0 if '$code' == '200' and float('$sec') >= 1.15 else 1)"
read -r code rc sec < <(post "$PPORT" "$BODY" "$TMPD/delay2.json" -m 0.3)
check "delay: a client timeout sees no byte (curl $rc)" test "$rc" = 28
stop_proxy

# ---- http500 / http429 / garbage
start_proxy http500
read -r code rc _ < <(post "$PPORT" "$BODY" "$TMPD/500.json")
check "http500: status 500 ($code)" test "$code" = 500
stop_proxy
start_proxy http429
read -r code rc _ < <(post "$PPORT" "$BODY" "$TMPD/429.json" -D "$TMPD/429.h")
check "http429: status 429 ($code)" test "$code" = 429
check "http429: Retry-After" grep -qi '^Retry-After: 1' "$TMPD/429.h"
stop_proxy
start_proxy garbage
read -r code rc _ < <(post "$PPORT" "$BODY" "$TMPD/garbage.json")
check "garbage: status 200 ($code)" test "$code" = 200
check "garbage: the body is not JSON" bash -c "! python3 -c 'import json,sys; json.load(open(sys.argv[1], \"rb\"))' '$TMPD/garbage.json' 2>/dev/null"
stop_proxy

# ---- truncated: whole and streamed
start_proxy truncated
read -r code rc _ < <(post "$PPORT" "$BODY" "$TMPD/trunc.json")
check "truncated: curl sees a partial transfer (curl $rc)" test "$rc" = 18
check "truncated: about half the body arrived" test "$(wc -c <"$TMPD/trunc.json")" -gt 10 -a "$(wc -c <"$TMPD/trunc.json")" -lt "$(wc -c <"$TMPD/direct.json")"
read -r code rc _ < <(post "$PPORT" "$SBODY" "$TMPD/trunc.sse")
check "truncated stream: cut (curl $rc), no [DONE]" test "$rc" = 18 -a "$(grep -c 'DONE' "$TMPD/trunc.sse")" = 0
stop_proxy

# ---- cut_stream: two events, then the connection closes; --fault-count
start_proxy cut_stream --fault-count 1
read -r code rc _ < <(post "$PPORT" "$SBODY" "$TMPD/cut.sse")
check "cut_stream: cut (curl $rc)" test "$rc" = 18
check "cut_stream: exactly 2 events arrived" test "$(grep -c '^data: ' "$TMPD/cut.sse")" -eq 2
check "cut_stream: no [DONE]" test "$(grep -c 'DONE' "$TMPD/cut.sse")" -eq 0
read -r code rc _ < <(post "$PPORT" "$SBODY" "$TMPD/cut2.sse")
check "fault-count 1: the second request passes (curl $rc)" test "$rc" = 0
check "fault-count 1: ... to [DONE]" grep -q '^data: \[DONE\]' "$TMPD/cut2.sse"
stop_proxy

# ---- bounded lifetime; bad arguments
rm -f "$TMPD/pport"
t0=$(date +%s%N)
timeout 20 python3 "$PROXY" --port-file "$TMPD/pport" --upstream "http://127.0.0.1:$SPORT" --fault pass \
  --max-seconds 1 --quiet 2>/dev/null
rc=$?
t1=$(date +%s%N)
check "max-seconds: exits 0 by itself (rc $rc)" test "$rc" = 0
check "max-seconds: after about 1 s" test $(((t1 - t0) / 1000000)) -lt 10000
expect_status 2 "an unknown fault is refused" python3 "$PROXY" --port-file "$TMPD/x" --fault nope
stderr_has "invalid choice" "unknown fault"
expect_status 2 "pass without --upstream is refused" python3 "$PROXY" --port-file "$TMPD/x" --fault pass
stderr_has "--upstream is required" "missing upstream"
finish
