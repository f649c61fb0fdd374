#!/usr/bin/env bash
# slm serve against malformed and hostile requests: each gets the right
# status (and an OpenAI-shaped error body where the server answers), slow
# clients are cut off, and the server stays healthy. Loopback only.
source "$(dirname "$0")/lib.sh"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  M="$TMPD/small.gguf"
  "$SLM_BUILD/tests/test_serve" --write-model "$M" >/dev/null 2>&1 || skip "no model: $SHARED/models/stories260K.gguf is absent and tests/test_serve could not write one"
fi
command -v python3 >/dev/null || skip "python3 not found"

SERVER_PID=
trap 'if [[ -n $SERVER_PID ]]; then kill -KILL $SERVER_PID 2>/dev/null; fi; rm -rf "$TMPD"' EXIT

# --help tells the truth about the flags; bad flags are usage errors
expect_status 0 "serve --help" "$SLM" serve --help
stdout_has "usage: slm serve" "serve --help"
stdout_has "--api-key" "serve --help"
expect_status 2 "serve bad port" "$SLM" serve -m "$M" --port 70000
expect_status 2 "serve unknown option" "$SLM" serve -m "$M" --bogus
expect_status 1 "serve missing model" "$SLM" serve -m /nonexistent.gguf --port 0
stderr_has "/nonexistent.gguf" "serve missing model"

"$SLM" serve -m "$M" --port 0 --parallel 2 --queue 2 --ctx 256 --max-body 262144 \
  --max-tokens-cap 64 \
  --idle-timeout 2 --read-timeout 3 --api-key sesame 2>"$TMPD/server.log" &
SERVER_PID=$!
wait_listening "$TMPD/server.log" "$SERVER_PID"
if [[ -z $PORT ]]; then
  bad "server did not start: $(head -c 600 "$TMPD/server.log")"
  finish
  exit 1
fi

expect_status 1 "second server on a port in use" "$SLM" serve -m "$M" --port "$PORT"
stderr_has "cannot listen" "port in use"

python3 - "$PORT" >"$TMPD/table.out" 2>&1 <<'EOF'
import json, socket, sys, time

port = int(sys.argv[1])
KEY = "Authorization: Bearer sesame\r\n"
passed = failed = 0

def raw(data, timeout=15.0, pause_after=None, drip=None):
    """Sends bytes, returns (status or None, body bytes, seconds until the server closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.time()
    try:
        if drip:
            for i in range(0, len(data), drip[0]):
                s.sendall(data[i:i + drip[0]])
                time.sleep(drip[1])
        else:
            s.sendall(data)
    except OSError:
        pass
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    took = time.time() - t0
    s.close()
    if not buf.startswith(b"HTTP/1."):
        return None, buf, took
    status = int(buf.split(b" ", 2)[1])
    body = buf.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in buf else b""
    return status, body, took

def post(path, body, ctype="application/json", key=True, extra=""):
    if isinstance(body, str):
        body = body.encode()
    head = "POST %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % path
    if ctype is not None:
        head += "Content-Type: %s\r\n" % ctype
    if key:
        head += KEY
    head += extra + "Content-Length: %d\r\n\r\n" % len(body)
    return raw(head.encode() + body)

def get(path, method="GET", key=True):
    return raw(("%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n"
                % (method, path, KEY if key else "")).encode())

def truth(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: %s %s" % (name, detail))

def check(name, got, want, body=b"", code=None):
    global passed, failed
    ok = got == want if not isinstance(want, tuple) else got in want
    shaped = True
    if ok and got is not None and got >= 400 and want != (None,) and code != "any":
        try:
            err = json.loads(body)["error"]
            shaped = isinstance(err["message"], str) and isinstance(err["type"], str) and "code" in err
            if code:
                shaped = shaped and err["code"] == code
        except Exception:
            shaped = False
    if ok and shaped:
        passed += 1
    else:
        failed += 1
        print("FAIL: %s: status %s (want %s), body %r" % (name, got, want, body[:300]))

chat = "/v1/chat/completions"
comp = "/v1/completions"
msg = '"messages":[{"role":"user","content":"hi"}]'

cases = [
    ("truncated JSON", post(chat, '{"messages":[{"role":"user","cont'), 400, "invalid_json"),
    ("empty body", post(chat, ""), 400, "invalid_json"),
    ("body is an array", post(chat, "[1,2,3]"), 400, "invalid_json"),
    ("trailing garbage", post(chat, "{%s} extra" % msg), 400, "invalid_json"),
    ("deep nesting", post(chat, "[" * 30000 + "]" * 30000), 400, "invalid_json"),
    ("deep nesting inside a field", post(chat, '{%s,"x":%s}' % (msg, "[" * 5000 + "]" * 5000)), 400, "invalid_json"),
    ("huge number", post(chat, '{%s,"max_tokens":1e999}' % msg), 400, "invalid_value"),
    ("huge integer literal", post(chat, '{%s,"temperature":%s}' % (msg, "9" * 400)), 400, "invalid_value"),
    ("negative max_tokens", post(chat, '{%s,"max_tokens":-5}' % msg), 400, "invalid_value"),
    ("invalid UTF-8", post(comp, b'{"prompt":"\xff\xfe bad"}'), 400, "invalid_utf8"),
    ("overlong UTF-8", post(comp, b'{"prompt":"\xc0\xaf"}'), 400, "invalid_utf8"),
    ("lone surrogate escape", post(comp, '{"prompt":"\\ud800"}'), 400, "invalid_json"),
    ("NUL byte in body", post(comp, b'{"prompt":"a"}\x00'), 400, "invalid_json"),
    ("wrong content type", post(chat, '{%s}' % msg, ctype="text/plain"), 415, "unsupported_media_type"),
    ("form content type", post(chat, "a=b", ctype="application/x-www-form-urlencoded"), 415, "unsupported_media_type"),
    ("no content type", post(chat, '{%s}' % msg, ctype=None), 415, "unsupported_media_type"),
    ("messages missing", post(chat, '{"model":"x"}'), 400, "missing_required_parameter"),
    ("messages wrong type", post(chat, '{"messages":{"role":"user"}}'), 400, "invalid_type"),
    ("role missing", post(chat, '{"messages":[{"content":"x"}]}'), 400, "missing_required_parameter"),
    ("temperature wrong type", post(chat, '{%s,"temperature":"hot"}' % msg), 400, "invalid_type"),
    ("stream wrong type", post(chat, '{%s,"stream":"yes"}' % msg), 400, "invalid_type"),
    ("n = 2", post(chat, '{%s,"n":2}' % msg), 400, "unsupported_parameter"),
    ("logprobs wrong type", post(chat, '{%s,"logprobs":1}' % msg), 400, "invalid_type"),
    ("top_logprobs without logprobs", post(chat, '{%s,"top_logprobs":2}' % msg), 400, "invalid_value"),
    ("top_logprobs over 20", post(chat, '{%s,"logprobs":true,"top_logprobs":21}' % msg), 400, "invalid_value"),
    ("completions logprobs over 5", post(comp, '{"prompt":"hi","logprobs":6}'), 400, "invalid_value"),
    ("presence_penalty out of range", post(chat, '{%s,"presence_penalty":2.5}' % msg), 400, "invalid_value"),
    ("frequency_penalty wrong type", post(chat, '{%s,"frequency_penalty":"lots"}' % msg), 400, "invalid_type"),
    ("max_tokens over --max-tokens-cap", post(comp, '{"prompt":"hi","max_tokens":65}'), 400, "invalid_value"),
    ("too many messages", post(chat, '{"messages":[%s]}' % ",".join(['{"role":"user","content":""}'] * 4097)), 400, "invalid_value"),
    ("bad json_schema response_format", post(chat, '{%s,"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"string","format":"email"}}}}' % msg), 400, "invalid_value"),
    ("prompt missing", post(comp, '{"max_tokens":3}'), 400, "missing_required_parameter"),
    ("prompt token out of vocabulary", post(comp, '{"prompt":[1,99999999]}'), 400, "invalid_value"),
    ("context overflow", post(comp, json.dumps({"prompt": "a b c d e f " * 400})), 400, "context_length_exceeded"),
    ("max_tokens past the context", post(comp, '{"prompt":"hi","max_tokens":100000}'), 400, "context_length_exceeded"),
    ("oversized body", post(comp, '{"prompt":"%s"}' % ("x" * 300000)), 413, "request_too_large"),
    ("lying Content-Length", raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                                 + KEY.encode() + b"Content-Length: 1000000000000\r\n\r\n{"), 413, "request_too_large"),
    ("oversized chunked body", raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                                   b"Content-Type: application/json\r\n" + KEY.encode()
                                   + b"Transfer-Encoding: chunked\r\n\r\n"
                                   + b"".join(b"8000\r\n" + b"x" * 0x8000 + b"\r\n" for _ in range(10))
                                   + b"0\r\n\r\n"), 413, "request_too_large"),
    ("wrong method on chat", get(chat), 405, "method_not_allowed"),
    ("wrong method on models", get("/v1/models", method="DELETE"), 405, "method_not_allowed"),
    ("PUT on completions", raw(("PUT %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%sContent-Length: 2\r\n\r\n{}" % (comp, KEY)).encode()), 405, "method_not_allowed"),
    ("unknown route", get("/v1/audio/speech"), 404, "not_found"),
    ("unknown route at the root", get("/index.html"), 404, "not_found"),
    ("unknown model", get("/v1/models/gpt-17"), 404, "model_not_found"),
    ("no API key", post(chat, '{%s}' % msg, key=False), 401, "invalid_api_key"),
    ("wrong API key", post(chat, '{%s}' % msg, key=False, extra="Authorization: Bearer sesamf\r\n"), 401, "invalid_api_key"),
    ("API key prefix", post(chat, '{%s}' % msg, key=False, extra="Authorization: Bearer sesam\r\n"), 401, "invalid_api_key"),
    ("models without key", get("/v1/models", key=False), 401, "invalid_api_key"),
]
for name, (status, body, _), want, code in cases:
    check(name, status, want, body, code)

# MHD answers these itself (no JSON body): a 4xx, or the connection closed
st, body, _ = raw(b"HELLO\r\n\r\n")
check("garbage request line", st, (400, None), body, "any")
st, body, _ = raw(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n")
check("huge header", st, (400, 413, 431, None), body, "any")
st, body, _ = raw(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: " + b"a" * 80000 + b"\r\n\r\n")
check("headers over the 64 KiB limit: 431", st, 431, body, "any")
st, body, _ = raw(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
check("headers under the limit", st, 200, body, "any")

# slow clients: a stalled body, stalled headers, a drip-fed body are cut off
st, body, took = raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     + KEY.encode() + b"Content-Length: 100\r\n\r\n{\"prompt\":", timeout=20)
check("stalled body is closed (no response)", st, (None,), body)
truth("stalled body closed within the idle timeout", took < 10, took)
st, body, took = raw(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n", timeout=20)
truth("stalled headers closed within the idle timeout", st is None and took < 10, (st, took))
data = (b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + KEY.encode()
        + b"Content-Length: 40\r\n\r\n" + b'{"prompt":"' + b"a" * 27 + b'"}')
st, body, took = raw(data, timeout=30, drip=(1, 1.0))
truth("drip-fed body is cut off by the read timeout", st is None and took < 15, (st, took))

# still healthy, and a real request still works
st, body, _ = get("/health")
check("health after the table", st, 200, body, "any")
st, body, _ = post(comp, '{"prompt":"SECRET_PROMPT_MARKER Once upon a time","max_tokens":5,"temperature":0}')
check("completion after the table", st, 200, body, "any")

# log-probabilities and penalties, not streamed and streamed
def sse(body):
    out = []
    for line in body.decode().split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out

def well_formed_chat_lp(entries, n_top):
    for e in entries:
        if not (isinstance(e["token"], str) and e["logprob"] <= 0 and isinstance(e["bytes"], list)
                and all(isinstance(b, int) and 0 <= b < 256 for b in e["bytes"])
                and len(e["top_logprobs"]) == n_top):
            return False
        tops = e["top_logprobs"]
        if sum(math.exp(t["logprob"]) for t in tops) > 1 + 1e-4:
            return False
        if any(tops[i]["logprob"] < tops[i + 1]["logprob"] for i in range(len(tops) - 1)):
            return False
    return True

import math
req = '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":6,"temperature":0,"logprobs":true,"top_logprobs":2}'
st, body, _ = post(chat, req)
check("chat with logprobs", st, 200, body, "any")
try:
    o = json.loads(body)
    content = o["choices"][0]["logprobs"]["content"]
    truth("chat logprobs: one entry per completion token", len(content) == o["usage"]["completion_tokens"], (len(content), o["usage"]))
    truth("chat logprobs well formed", well_formed_chat_lp(content, 2), content[:2])
    truth("greedy token is the most likely one", all(abs(e["logprob"] - e["top_logprobs"][0]["logprob"]) < 1e-5 for e in content), content[:2])
    truth("tokens concatenate to the text", "".join(e["token"] for e in content) == o["choices"][0]["message"]["content"] or o["choices"][0]["finish_reason"] == "stop", content)
    nonstream = content
except Exception as ex:
    truth("chat logprobs parse", False, repr(ex))
    nonstream = None
st, body, _ = post(chat, req[:-1] + ',"stream":true}')
check("streamed chat with logprobs", st, 200, body, "any")
try:
    chunks = sse(body)
    got = []
    for c in chunks:
        if c["choices"] and c["choices"][0].get("logprobs"):
            got += c["choices"][0]["logprobs"]["content"]
    truth("streamed logprobs well formed", well_formed_chat_lp(got, 2), got[:2])
    truth("streamed logprobs match the non-streamed ones", nonstream is not None and [e["token"] for e in got] == [e["token"] for e in nonstream]
          and all(abs(a["logprob"] - b["logprob"]) < 1e-4 for a, b in zip(got, nonstream)), (got, nonstream))
except Exception as ex:
    truth("streamed chat logprobs parse", False, repr(ex))
st, body, _ = post(comp, '{"prompt":"Once upon","max_tokens":5,"temperature":0,"logprobs":3,"echo":true}')
check("completion with logprobs", st, 200, body, "any")
try:
    o = json.loads(body)
    lp = o["choices"][0]["logprobs"]
    n = len(lp["tokens"])
    truth("completion logprobs arrays agree", n == o["usage"]["completion_tokens"] and len(lp["token_logprobs"]) == n
          and len(lp["top_logprobs"]) == n and len(lp["text_offset"]) == n, lp)
    truth("completion text_offset starts after the echoed prompt", n == 0 or lp["text_offset"][0] == len("Once upon"), lp["text_offset"])
    truth("completion top_logprobs hold 3", all(len(t) <= 3 and len(t) >= 1 for t in lp["top_logprobs"]), lp["top_logprobs"])
except Exception as ex:
    truth("completion logprobs parse", False, repr(ex))
st, body, _ = post(comp, '{"prompt":"Once upon","max_tokens":5,"temperature":0,"logprobs":0,"stream":true}')
try:
    toks = []
    for c in sse(body):
        if c["choices"] and c["choices"][0].get("logprobs"):
            toks += c["choices"][0]["logprobs"]["tokens"]
    truth("streamed completion logprobs", st == 200 and len(toks) >= 1, (st, toks))
except Exception as ex:
    truth("streamed completion logprobs parse", False, repr(ex))
st, body, _ = post(comp, '{"prompt":"Once upon a time","max_tokens":8,"temperature":0}')
st2, body2, _ = post(comp, '{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"frequency_penalty":-2,"presence_penalty":-2}')
st3, body3, _ = post(comp, '{"prompt":"Once upon a time","max_tokens":8,"temperature":0}')
truth("penalties accepted", st == 200 and st2 == 200 and st3 == 200, (st, st2, st3, body2[:200]))
try:
    truth("penalties change greedy output", json.loads(body)["choices"][0]["text"] != json.loads(body2)["choices"][0]["text"],
          (body[:200], body2[:200]))
    truth("penalties do not stick to the slot", json.loads(body)["choices"][0]["text"] == json.loads(body3)["choices"][0]["text"],
          (body[:200], body3[:200]))
except Exception as ex:
    truth("penalties parse", False, repr(ex))

st, body, _ = get("/metrics")
text = body.decode()
truth("metrics count 401s", 'slm_requests_total{endpoint="/v1/chat/completions",status="401"} 3' in text)
truth("metrics count errors", 'slm_errors_total{type="invalid_request_error"}' in text)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
EOF
rc=$?
cat "$TMPD/table.out"
if [[ $rc -eq 0 ]]; then ok; else bad "malformed-request table (see above)"; fi
# the python table's own counts join ours
read -r tp _ tf _ < <(tail -1 "$TMPD/table.out")
[[ $tp =~ ^[0-9]+$ ]] && PASSED=$((PASSED + tp))

check "server still running" kill -0 $SERVER_PID
check "no prompt text in the server's log" bash -c "! grep -q SECRET_PROMPT_MARKER '$TMPD/server.log'"
check "log has request lines" grep -q "POST /v1/completions 200" "$TMPD/server.log"

# graceful stop: SIGTERM, exit 0
kill -TERM $SERVER_PID
wait $SERVER_PID
check "exit 0 after SIGTERM" test $? -eq 0
SERVER_PID=
check "shutdown is logged" grep -q "stopped" "$TMPD/server.log"
finish
