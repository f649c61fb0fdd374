#!/usr/bin/env bash
# Hybrid deployment (issue 10), loopback only. The fake cloud is another
# `slm serve` (a real OpenAI-compatible peer) over a different model, behind
# tests/tools/fault_proxy.py. For each fault (refuse, delay, 500, 429,
# garbage, truncated, cut_stream) a hybrid request completes with the local
# answer, the right degraded cause, within its deadline. "mode": "local"
# with a cloud section opens no connection (the proxy logs no request and
# strace sees no connect to its port). The egress policy blocks, redacts or
# allows each sensitive class as configured; the bodies the cloud received
# hold no redacted value; the audit log has one line per egress. The API
# key comes from the environment (or a file), reaches the cloud, and appears
# in no output; insecure_skip_verify warns on stderr. The server
# in hybrid mode carries route/reason/degraded in responses and the last
# streamed chunk, and counts them in /metrics.
source "$(dirname "$0")/lib.sh"
# loopback only: no proxy from the environment may take these requests elsewhere
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

M="$SHARED/models/stories260K.gguf"
[[ -f $M ]] || skip "no local model: $M is absent"
command -v python3 >/dev/null || skip "python3 not found"
PROXY="$SLM_SOURCE/tests/tools/fault_proxy.py"
[[ -f $PROXY ]] || skip "tests/tools/fault_proxy.py is absent"
CLOUD_M="$TMPD/cloud.gguf"
"$SLM_BUILD/tests/test_serve" --write-model "$CLOUD_M" >/dev/null 2>&1 || skip "tests/test_serve could not write the cloud model"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$TMPD"
}
trap cleanup EXIT

# jget FILE EXPR: a value from a JSON file (python expression over `j`)
jget() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1" "$2" 2>/dev/null; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
post() { curl -s -m 20 -H 'Content-Type: application/json' "http://127.0.0.1:$HPORT/v1/chat/completions" -d "$1"; }

start_server() { # start_server LOG args...: sets SPORT
  local log=$1; shift
  : >"$log" # here, not in the background child: see wait_listening
  "$SLM" serve --port 0 "$@" 2>"$log" &
  PIDS+=($!)
  local pid=$!
  SPORT=
  wait_listening "$log" "$pid" || return 1
  SPORT=$PORT
}

start_proxy() { # start_proxy FAULT [extra args]: sets PPORT, PPID_
  local fault=$1; shift
  rm -f "$TMPD/pport"
  python3 "$PROXY" --listen-port 0 --port-file "$TMPD/pport" --upstream "http://127.0.0.1:$CPORT" \
    --fault "$fault" --max-seconds 120 "$@" 2>>"$TMPD/proxy.log" &
  PPID_=$!
  PIDS+=($PPID_)
  for _ in $(seq 100); do
    [[ -s $TMPD/pport ]] && break
    sleep 0.05
  done
  PPORT=$(cat "$TMPD/pport" 2>/dev/null)
  [[ -n $PPORT ]]
}
stop_proxy() { kill -TERM "$PPID_" 2>/dev/null; wait "$PPID_" 2>/dev/null; }

# the fake cloud wants an API key: the hybrid client takes it from the environment
export SLM_TEST_CLOUD_KEY="sk-slm-test-$$-$RANDOM"
if ! start_server "$TMPD/cloud.log" -m "$CLOUD_M" --parallel 2 --api-key "$SLM_TEST_CLOUD_KEY"; then
  bad "the fake cloud did not start: $(head -c 400 "$TMPD/cloud.log")"
  finish
  exit 1
fi
CPORT=$SPORT

PROMPT="Once upon a time"
GEN='"temperature":0,"max_tokens":24'
DEADLINE=8000
hy_cfg() { # hy_cfg PORT [extra JSON members]
  echo "{\"mode\":\"hybrid\",$GEN,\"cloud\":{\"base_url\":\"http://127.0.0.1:$1/v1\",\"model\":\"big\",\"api_key_env\":\"SLM_TEST_CLOUD_KEY\",\"connect_timeout_ms\":1000,\"first_byte_timeout_ms\":1500,\"timeout_ms\":3000,\"retries\":1,\"backoff_ms\":50,\"breaker\":{\"failures\":50,\"open_ms\":1000}},\"router\":{\"deadline_ms\":$DEADLINE}${2:+,$2}}"
}

# the reference answers
"$SLM" run -m "$M" -q --json --config "{$GEN}" -p "$PROMPT" >"$TMPD/local.json" 2>"$TMPD/err"
LOCAL_TEXT=$(jget "$TMPD/local.json" 'j["text"]')
check "local reference answer" test -n "$LOCAL_TEXT"
check "local mode: route local" test "$(jget "$TMPD/local.json" 'j["route"]')" = local

start_proxy pass --log-bodies "$TMPD/bodies_pass.jsonl" || bad "proxy did not start"
"$SLM" run -m "$M" -q --json --route cloud --config "$(hy_cfg "$PPORT")" -p "$PROMPT" >"$TMPD/cloud.json" 2>"$TMPD/err"
CLOUD_TEXT=$(jget "$TMPD/cloud.json" 'j["text"]')
check "cloud answer: route cloud" test "$(jget "$TMPD/cloud.json" 'j["route"]')" = cloud
check "cloud answer: not degraded" test "$(jget "$TMPD/cloud.json" 'j["degraded"]')" = false
check "cloud answer: reason override" test "$(jget "$TMPD/cloud.json" 'j["reason"]')" = override
check "cloud answer is non-empty and differs from the local one" test -n "$CLOUD_TEXT" -a "$CLOUD_TEXT" != "$LOCAL_TEXT"
check "cloud usage counted" test "$(jget "$TMPD/cloud.json" 'j["usage"]["completion_tokens"] > 0')" = true
check "the proxy saw the request" test -s "$TMPD/bodies_pass.jsonl"
# route auto with no rule: local, no egress
n_before=$(wc -l <"$TMPD/bodies_pass.jsonl")
"$SLM" run -m "$M" -q --json --config "$(hy_cfg "$PPORT")" -p "$PROMPT" >"$TMPD/auto.json" 2>"$TMPD/err"
check "auto: local, reason default" test "$(jget "$TMPD/auto.json" 'j["route"]+"/"+j["reason"]')" = "local/default"
check "auto: same text as local" test "$(jget "$TMPD/auto.json" 'j["text"]')" = "$LOCAL_TEXT"
check "auto: nothing sent" test "$(wc -l <"$TMPD/bodies_pass.jsonl")" -eq "$n_before"
# a rule escalates
"$SLM" run -m "$M" -q --json --config "$(hy_cfg "$PPORT" '"router":{"deadline_ms":8000,"rules":[{"name":"dragons","keywords":["dragon"]}]}')" \
  -p "The dragon said" >"$TMPD/rule.json" 2>"$TMPD/err"
check "rule: route cloud, reason rule:dragons" test "$(jget "$TMPD/rule.json" 'j["route"]+"/"+j["reason"]')" = "cloud/rule:dragons"
# a wrong key (from a file): the cloud says 401, the local model answers
printf 'sk-wrong-key\n' >"$TMPD/wrong.key"
WRONG_CFG=$(hy_cfg "$PPORT" | sed 's|"api_key_env":"SLM_TEST_CLOUD_KEY"|"api_key_file":"'"$TMPD/wrong.key"'"|')
"$SLM" run -m "$M" -q --json --route cloud --config "$WRONG_CFG" -p "$PROMPT" >"$TMPD/wrong.json" 2>"$TMPD/wrong.err"
check "wrong key: degraded http_4xx" test "$(jget "$TMPD/wrong.json" 'j["degraded_cause"]')" = http_4xx
check "wrong key: the local answer" test "$(jget "$TMPD/wrong.json" 'j["text"]')" = "$LOCAL_TEXT"
# a named variable that is not set: refused up front, naming it
env -u SLM_TEST_CLOUD_KEY "$SLM" run -m "$M" -q --json --config "$(hy_cfg "$PPORT")" -p "$PROMPT" >"$TMPD/nokey.json" 2>"$TMPD/nokey.err"
check "unset key variable: exit 1" test $? -eq 1
check "unset key variable: named" grep -q 'SLM_TEST_CLOUD_KEY' "$TMPD/nokey.err"
# https:// to a plain-HTTP peer: the TLS handshake fails -> cause tls, no retry
"$SLM" run -m "$M" -q --json --route cloud --config "$(hy_cfg "$CPORT" | sed 's|http://127|https://127|')" -p "$PROMPT" >"$TMPD/tls.json" 2>"$TMPD/tls.err"
check "TLS failure: degraded tls" test "$(jget "$TMPD/tls.json" 'j["degraded_cause"]')" = tls
check "TLS failure: the local answer" test "$(jget "$TMPD/tls.json" 'j["text"]')" = "$LOCAL_TEXT"
# insecure_skip_verify is loud every time it is used
"$SLM" run -m "$M" -q --json --route cloud --config "$(hy_cfg "$PPORT" | sed 's|"model":"big"|"model":"big","insecure_skip_verify":true|')" -p "$PROMPT" >"$TMPD/insecure.json" 2>"$TMPD/insecure.err"
check "insecure_skip_verify: a warning on stderr" grep -q 'WARNING.*insecure_skip_verify' "$TMPD/insecure.err"
# --config echo: the effective config names the variable, never the key
check "the key is in no output" bash -c "! grep -rqF -- \"\$SLM_TEST_CLOUD_KEY\" '$TMPD'/*.json '$TMPD'/*.err '$TMPD/bodies_pass.jsonl'"
stop_proxy

# ---- faults ----
declare -A CAUSE=([refuse]=refused [delay]=timeout [http500]=http_5xx [http429]=http_429
                  [garbage]=malformed_response [truncated]=truncated_stream
                  [cut_stream]=truncated_stream)
# (slm run asks the cloud to stream: a truncated response is a truncated stream;
# the server's non-streamed requests below see truncated_response)
for fault in refuse delay http500 http429 garbage truncated cut_stream; do
  extra=()
  [[ $fault == delay ]] && extra=(--delay-ms 5000)
  if ! start_proxy "$fault" "${extra[@]}"; then
    bad "$fault: proxy did not start"
    continue
  fi
  t0=$(now_ms)
  "$SLM" run -m "$M" -q --json --route cloud --config "$(hy_cfg "$PPORT")" -p "$PROMPT" >"$TMPD/f.json" 2>"$TMPD/f.err"
  rc=$?
  t1=$(now_ms)
  stop_proxy
  el=$((t1 - t0))
  echo "fault $fault: $el ms, $(cat "$TMPD/f.json")"
  check "$fault: exit 0" test $rc -eq 0
  check "$fault: degraded" test "$(jget "$TMPD/f.json" 'j["degraded"]')" = true
  cause=$(jget "$TMPD/f.json" 'j["degraded_cause"]')
  check "$fault: cause '$cause' is ${CAUSE[$fault]}" bash -c "[[ '$cause' =~ ^(${CAUSE[$fault]})\$ ]]"
  check "$fault: within the deadline ($el ms < $DEADLINE ms)" test "$el" -lt "$DEADLINE"
  text=$(jget "$TMPD/f.json" 'j["text"]')
  check "$fault: answer not empty" test -n "$text"
  if [[ $fault == cut_stream ]]; then
    check "cut_stream: cloud_partial" test "$(jget "$TMPD/f.json" 'j["cloud_partial"]')" = true
    check "cut_stream: the answer starts with the cloud's text" test "${CLOUD_TEXT:0:3}" = "${text:0:3}"
  else
    check "$fault: the local answer" test "$text" = "$LOCAL_TEXT"
  fi
done

# ---- "mode": "local" with a cloud section: no connection is attempted ----
start_proxy pass --log-bodies "$TMPD/bodies_local.jsonl" --log-connections "$TMPD/conns_local.jsonl" || bad "proxy did not start"
LOCAL_CFG="{\"mode\":\"local\",$GEN,\"cloud\":{\"base_url\":\"http://127.0.0.1:$PPORT/v1\"},\"router\":{\"rules\":[{\"name\":\"all\",\"regex\":\".\"}]}}"
run_local_mode() {
  "$SLM" run -m "$M" -q --json --route cloud --config "$LOCAL_CFG" -p "$PROMPT" >"$TMPD/lm.json" 2>"$TMPD/lm.err"
}
if command -v strace >/dev/null && strace -f -qq -e trace=connect -o "$TMPD/strace.log" true 2>/dev/null; then
  # (LeakSanitizer cannot run under ptrace: leaks are checked in the run below)
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -qq -e trace=connect,socket -o "$TMPD/strace.log" \
    "$SLM" run -m "$M" -q --json --route cloud --config "$LOCAL_CFG" -p "$PROMPT" >"$TMPD/lm.json" 2>"$TMPD/lm.err"
  check "local mode under strace: exit 0 and an answer" test -n "$(jget "$TMPD/lm.json" 'j["text"]')"
  check "local mode: strace sees no connect to the cloud's port" bash -c "! grep -q 'sin_port=htons($PPORT)' '$TMPD/strace.log'"
  check "local mode: strace sees no inet socket" bash -c "! grep -Eq 'socket\\(AF_INET6?,' '$TMPD/strace.log'"
else
  echo "note: strace unavailable; relying on the proxy's log"
fi
run_local_mode
check "local mode: route local, reason mode_local" test "$(jget "$TMPD/lm.json" 'j["route"]+"/"+j["reason"]')" = "local/mode_local"
check "local mode: the local answer" test "$(jget "$TMPD/lm.json" 'j["text"]')" = "$LOCAL_TEXT"
sleep 0.2
check "local mode: the proxy received nothing" test ! -s "$TMPD/bodies_local.jsonl"
check "local mode: the proxy accepted no connection" test ! -s "$TMPD/conns_local.jsonl"
stop_proxy

# ---- the egress policy ----
start_proxy pass --log-bodies "$TMPD/bodies_policy.jsonl" || bad "proxy did not start"
AUDIT="$TMPD/audit.jsonl"
POL='"policy":{"email":"redact","phone":"block","card":"allow","iban":"block","patterns":[{"name":"employee_id","regex":"EMP-[0-9]{6}","action":"redact"}]},"audit_log":"'$AUDIT'"'
policy_run() { # policy_run NAME PROMPT
  "$SLM" run -m "$M" -q --json --route cloud --config "$(hy_cfg "$PPORT" "$POL")" -p "$2" >"$TMPD/p_$1.json" 2>"$TMPD/p_$1.err"
}
policy_run email "Mail alice.smith@example.com today"
check "email (redact): sent to the cloud" test "$(jget "$TMPD/p_email.json" 'j["route"]+"/"+str(j["degraded"])')" = "cloud/False"
policy_run phone "Call me at +1 415 555 0134 now"
check "phone (block): stays local" test "$(jget "$TMPD/p_phone.json" 'j["route"]')" = local
check "phone (block): reason policy_block:phone" bash -c "[[ '$(jget "$TMPD/p_phone.json" 'j["reason"]')' == policy_block:*phone* ]]"
check "phone (block): the local answer" test -n "$(jget "$TMPD/p_phone.json" 'j["text"]')"
policy_run card "My card is 4111 1111 1111 1111 ok"
check "card (allow): sent to the cloud" test "$(jget "$TMPD/p_card.json" 'j["route"]+"/"+str(j["degraded"])')" = "cloud/False"
policy_run iban "Pay to DE89370400440532013000 please"
check "iban (block): stays local" bash -c "[[ '$(jget "$TMPD/p_iban.json" 'j["reason"]')' == policy_block:*iban* ]]"
policy_run emp "Employee EMP-123456 asked"
check "custom pattern (redact): sent" test "$(jget "$TMPD/p_emp.json" 'j["route"]')" = cloud
stop_proxy
B="$TMPD/bodies_policy.jsonl"
check "the cloud received 3 bodies (email, card, employee id)" test "$(wc -l <"$B")" -eq 3
check "no e-mail address left the device" bash -c "! grep -q 'alice.smith@example.com' '$B'"
check "a placeholder went instead" grep -q 'EMAIL_1' "$B"
check "no employee id left the device" bash -c "! grep -q 'EMP-123456' '$B'"
check "the allowed card number was sent" grep -q '4111 1111 1111 1111' "$B"
check "no phone number left the device" bash -c "! grep -q '555 0134' '$B'"
check "no IBAN left the device" bash -c "! grep -q 'DE89370400440532013000' '$B'"
check "audit: one line per egress" test "$(wc -l <"$AUDIT" 2>/dev/null || echo 0)" -eq 3
check "audit: no raw values" bash -c "! grep -Eq 'alice.smith|EMP-123456|4111' '$AUDIT'"
check "audit: classes and action recorded" grep -q '"action":"redact"' "$AUDIT"
check "audit: bytes sent recorded" python3 -c 'import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]; sys.exit(0 if all(e["bytes_sent"]>0 and e["route"]=="cloud" for e in l) else 1)' "$AUDIT"
check "audit file mode 0600" test "$(stat -c %a "$AUDIT" 2>/dev/null)" = 600
# an audit log that cannot be written: nothing leaves the device, the local answer comes back
start_proxy pass --log-bodies "$TMPD/bodies_noaudit.jsonl" || bad "proxy did not start"
POL_BAD='"policy":{"email":"redact"},"audit_log":"'$TMPD/no/such/dir/audit.jsonl'"'
"$SLM" run -m "$M" -q --json --route cloud --config "$(hy_cfg "$PPORT" "$POL_BAD")" -p "Hello there" >"$TMPD/p_noaudit.json" 2>"$TMPD/p_noaudit.err"
check "unwritable audit log: degraded, cause audit_log" test "$(jget "$TMPD/p_noaudit.json" 'str(j["degraded"])+"/"+str(j["degraded_cause"])')" = "True/audit_log"
check "unwritable audit log: the local answer" test -n "$(jget "$TMPD/p_noaudit.json" 'j["text"]')"
stop_proxy
check "unwritable audit log: nothing was sent" test ! -s "$TMPD/bodies_noaudit.jsonl"

# ---- the server in hybrid mode ----
start_proxy pass --log-bodies "$TMPD/bodies_srv.jsonl" || bad "proxy did not start"
GOOD_PORT=$PPORT
GOOD_PID=$PPID_
if start_server "$TMPD/hsrv.log" -m "$M" --config "$(hy_cfg "$GOOD_PORT")"; then
  HPORT=$SPORT
  SERVER_HPID=${PIDS[-1]}
  post '{"messages":[{"role":"user","content":"Hi"}],"route":"cloud"}' >"$TMPD/s1.json"
  check "server: route cloud" test "$(jget "$TMPD/s1.json" 'j["route"]+"/"+j["reason"]+"/"+str(j["degraded"])')" = "cloud/override/False"
  check "server: cloud text" test -n "$(jget "$TMPD/s1.json" 'j["choices"][0]["message"]["content"]')"
  post '{"messages":[{"role":"user","content":"Hi"}]}' >"$TMPD/s2.json"
  check "server: auto is local/default" test "$(jget "$TMPD/s2.json" 'j["route"]+"/"+j["reason"]')" = "local/default"
  post '{"messages":[{"role":"user","content":"Hi"}],"logprobs":true,"top_logprobs":2,"max_tokens":6}' >"$TMPD/s2l.json"
  check "server: a local answer keeps its log-probabilities" test "$(jget "$TMPD/s2l.json" 'len(j["choices"][0]["logprobs"]["content"])')" = 6
  post '{"messages":[{"role":"user","content":"Hi"}],"route":"sideways"}' >"$TMPD/s3.json"
  check "server: a bad route is a 400 naming it" test "$(jget "$TMPD/s3.json" 'j["error"]["param"]')" = route
  post '{"messages":[{"role":"user","content":"Hi"}],"route":"cloud","stream":true}' >"$TMPD/s4.txt"
  last=$(grep '^data: {' "$TMPD/s4.txt" | tail -1 | cut -c7-)
  echo "$last" >"$TMPD/s4.json"
  check "server stream: the last chunk carries route cloud" test "$(jget "$TMPD/s4.json" 'j["route"]+"/"+str(j["degraded"])')" = "cloud/False"
  check "server stream: [DONE]" grep -q '^data: \[DONE\]' "$TMPD/s4.txt"
  # the cloud goes away: degraded, local answer
  kill -TERM "$GOOD_PID" 2>/dev/null; wait "$GOOD_PID" 2>/dev/null
  t0=$(now_ms)
  post '{"messages":[{"role":"user","content":"Hi"}],"route":"cloud"}' >"$TMPD/s5.json"
  t1=$(now_ms)
  check "server: cloud gone -> degraded refused" test "$(jget "$TMPD/s5.json" 'j["degraded"] and j["degraded_cause"]')" = refused
  check "server: cloud gone -> local text" test -n "$(jget "$TMPD/s5.json" 'j["choices"][0]["message"]["content"]')"
  check "server: within the deadline" test $((t1 - t0)) -lt $DEADLINE
  post '{"messages":[{"role":"user","content":"Hi"}],"route":"cloud","stream":true}' >"$TMPD/s6.txt"
  grep '^data: {' "$TMPD/s6.txt" | tail -1 | cut -c7- >"$TMPD/s6.json"
  check "server stream: the last chunk says degraded refused" test "$(jget "$TMPD/s6.json" 'j["degraded_cause"]')" = refused
  curl -s -m 10 "http://127.0.0.1:$HPORT/metrics" >"$TMPD/metrics.txt"
  kill -TERM "$SERVER_HPID" 2>/dev/null; wait "$SERVER_HPID" 2>/dev/null
  check "hybrid server: exit 0 after SIGTERM" test $? -eq 0
  check "metrics: cloud override counted" grep -Eq '^slm_hybrid_requests_total\{route="cloud",reason="override"\} [4-9]' "$TMPD/metrics.txt"
  check "metrics: local default counted" grep -Eq '^slm_hybrid_requests_total\{route="local",reason="default"\} 2$' "$TMPD/metrics.txt"
  check "metrics: degradations counted" grep -Eq '^slm_hybrid_degraded_total\{cause="refused"\} 2$' "$TMPD/metrics.txt"
else
  bad "hybrid server did not start: $(head -c 400 "$TMPD/hsrv.log")"
fi

# ---- the server behind each fault: non-streamed and streamed requests ----
declare -A SCAUSE=([http500]=http_5xx [garbage]=malformed_response [truncated]=truncated_response
                   [cut_stream]=truncated_stream)
for fault in http500 garbage truncated cut_stream; do
  start_proxy "$fault" || { bad "$fault: proxy did not start"; continue; }
  if ! start_server "$TMPD/fsrv.log" -m "$M" --config "$(hy_cfg "$PPORT")"; then
    bad "$fault: hybrid server did not start"
    stop_proxy
    continue
  fi
  FPID=${PIDS[-1]}
  HPORT=$SPORT
  stream=false
  [[ $fault == cut_stream ]] && stream=true
  t0=$(now_ms)
  curl -s -m 20 -H 'Content-Type: application/json' "http://127.0.0.1:$HPORT/v1/chat/completions" \
    -d '{"messages":[{"role":"user","content":"Hi"}],"route":"cloud","stream":'$stream'}' >"$TMPD/sf.txt"
  t1=$(now_ms)
  if [[ $stream == true ]]; then
    grep '^data: {' "$TMPD/sf.txt" | tail -1 | cut -c7- >"$TMPD/sf.json"
    check "server $fault (stream): final chunk degraded, partial" test "$(jget "$TMPD/sf.json" 'j["degraded_cause"]+"/"+str(j["cloud_partial"])')" = "${SCAUSE[$fault]}/True"
    # the cloud's partial text, then the local continuation, as content
    # events. How many is timing: the server sends what has been generated
    # since its last write, so on a loaded machine the partial text and a
    # fast local continuation can arrive as one event (seen in CI with two
    # and then with one). So: at least one, with text. (That the answer
    # begins with the cloud's partial text is checked on `slm run` above;
    # the test cloud model's text starts with invalid UTF-8, which JSON
    # escaping and SSE framing do not let this shell compare reliably.)
    check "server $fault (stream): content events" test "$(grep -c '"content":"[^"]' "$TMPD/sf.txt")" -ge 1
  else
    check "server $fault: degraded ${SCAUSE[$fault]}" test "$(jget "$TMPD/sf.txt" 'j["degraded_cause"]')" = "${SCAUSE[$fault]}"
    check "server $fault: local text" test -n "$(jget "$TMPD/sf.txt" 'j["choices"][0]["message"]["content"]')"
  fi
  check "server $fault: within the deadline" test $((t1 - t0)) -lt $DEADLINE
  kill -TERM "$FPID" 2>/dev/null; wait "$FPID" 2>/dev/null
  stop_proxy
done

# ---- the server's own decisions: low confidence, a prompt the local context cannot hold ----
start_proxy pass --log-bodies "$TMPD/bodies_dec.jsonl" || bad "proxy did not start"
DEC='"router":{"deadline_ms":8000,"confidence":{"tokens":4,"min_mean_logprob":-0.000001}}'
if start_server "$TMPD/dsrv.log" -m "$M" --ctx 64 --config "$(hy_cfg "$PPORT" "$DEC")"; then
  DPID=${PIDS[-1]}
  HPORT=$SPORT
  post '{"messages":[{"role":"user","content":"Hi"}]}' >"$TMPD/d1.json"
  check "server: low confidence escalates" test "$(jget "$TMPD/d1.json" 'j["route"]+"/"+j["reason"]+"/"+str(j["degraded"])')" = "cloud/low_confidence/False"
  long=$(printf 'the cat sat on the mat and %.0s' $(seq 30))
  post '{"messages":[{"role":"user","content":"'"$long"'"}],"max_tokens":8}' >"$TMPD/d2.json"
  check "server: a prompt longer than the context goes to the cloud" test "$(jget "$TMPD/d2.json" 'j["route"]+"/"+j["reason"]')" = "cloud/context_overflow"
  check "server: ... and is answered" test -n "$(jget "$TMPD/d2.json" 'j["choices"][0]["message"]["content"]')"
  post '{"messages":[{"role":"user","content":"'"$long"'"}],"max_tokens":8,"route":"local"}' >"$TMPD/d3.json"
  check "server: the same prompt kept local is answered (context shifted), not refused" test -n "$(jget "$TMPD/d3.json" 'j["choices"][0]["message"]["content"]')"
  kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null
else
  bad "decision server did not start: $(head -c 400 "$TMPD/dsrv.log")"
fi
stop_proxy

finish
