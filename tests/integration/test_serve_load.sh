#!/usr/bin/env bash
# slm serve under load: 16 concurrent streaming clients against --parallel 4
# all finish with the right text or get a clean 429/503; the server's memory
# returns to its level after the load; a client that goes away frees its
# slot; deadlines; graceful shutdown with a stream in flight. Loopback only.
source "$(dirname "$0")/lib.sh"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  M="$TMPD/small.gguf"
  "$SLM_BUILD/tests/test_serve" --write-model "$M" >/dev/null 2>&1 || skip "no model: $SHARED/models/stories260K.gguf is absent and tests/test_serve could not write one"
fi
command -v python3 >/dev/null || skip "python3 not found"

# Sanitizer builds hold freed memory back (quarantine): the RSS check widens,
# and LeakSanitizer checks for leaks when the server exits instead.
if ldd "$SLM" 2>/dev/null | grep -q libasan; then export SLM_SANITIZED=1; fi

SERVER_PID=
trap 'if [[ -n $SERVER_PID ]]; then kill -KILL $SERVER_PID 2>/dev/null; fi; rm -rf "$TMPD"' EXIT

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


cat >"$TMPD/common.py" <<'EOF'
import http.client, json, sys, threading, time
port = int(sys.argv[1]); pid = int(sys.argv[2])
passed = failed = 0
lock = threading.Lock()
def truth(name, cond, detail=""):
    global passed, failed
    with lock:
        if cond: passed += 1
        else:
            failed += 1
            print("FAIL: %s %s" % (name, detail))
def request(method, path, body=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data
def health():
    return json.loads(request("GET", "/health")[2])
def rss_kib():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def metric(name):
    text = request("GET", "/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
def wait_idle(slots, limit=30):
    t0 = time.time()
    while time.time() - t0 < limit:
        h = health()
        if h["slots_idle"] == slots and h["queued"] == 0:
            return True
        time.sleep(0.05)
    return False
def sse_text(data, kind):
    """Joined text of an SSE body, whether it ended with [DONE], and error events."""
    text, done, errors = "", False, []
    for ev in data.decode().split("\n\n"):
        if not ev.startswith("data: "):
            continue
        payload = ev[6:]
        if payload == "[DONE]":
            done = True
            continue
        o = json.loads(payload)
        if "error" in o:
            errors.append(o["error"])
            continue
        for ch in o["choices"]:
            text += (ch.get("delta", {}).get("content") or "") if kind == "chat" else ch.get("text", "")
    return text, done, errors
EOF

# ---- 16 streaming clients against 4 slots --------------------------------------------
start_server "$TMPD/load.log" --parallel 4 --queue 8 --ctx 8192 --timeout 120 -q || { finish; exit 1; }
run_py load 600 "$SERVER_PID" <<EOF
$(cat "$TMPD/common.py")
PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben", "One day, a bird"]
N_CLIENTS = 16
ref = {}
for p in PROMPTS:
    st, _, data = request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": p}],
                          "max_tokens": 48, "temperature": 0})
    truth("reference for %r" % p, st == 200, data[:200])
    ref[p] = json.loads(data)["choices"][0]["message"]["content"]

def client(i, out):
    p = PROMPTS[i % len(PROMPTS)]
    try:
        st, hdr, data = request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": p}],
                                "max_tokens": 48, "temperature": 0, "stream": True})
        out[i] = (p, st, hdr, data)
    except Exception as e:
        out[i] = (p, None, {}, repr(e).encode())

def round_():
    out = [None] * N_CLIENTS
    th = [threading.Thread(target=client, args=(i, out)) for i in range(N_CLIENTS)]
    for t in th: t.start()
    for t in th: t.join()
    ok = refused = 0
    for p, st, hdr, data in out:
        if st == 200:
            text, done, errors = sse_text(data, "chat")
            good = done and not errors and text == ref[p]
            truth("stream for %r is complete and matches" % p, good, (text, ref[p], done, errors))
            ok += good
        elif st in (429, 503):
            err = json.loads(data)["error"]
            truth("refusal is clean", "Retry-After" in hdr and err["code"] in ("queue_full", "queue_timeout"),
                  (st, hdr, data[:200]))
            refused += 1
        else:
            truth("client got 200/429/503", False, (st, data[:200]))
    truth("every client answered", ok + refused == N_CLIENTS, (ok, refused))
    truth("at least the slots' worth of clients were served", ok >= 4, (ok, refused))
    return ok, refused

round_()                                     # warm-up: threads, arenas, caches
truth("idle after warm-up", wait_idle(4))
time.sleep(0.3)
before = rss_kib()
served = refused = 0
for _ in range(4):
    o, r = round_()
    served += o; refused += r
truth("idle after the load", wait_idle(4))
time.sleep(0.3)
after = rss_kib()
print("RSS before %d KiB, after %d KiB (%d served, %d refused over 4 rounds)" % (before, after, served, refused))
import os
tol = max(8192, before * 0.15)
if os.environ.get("SLM_SANITIZED"):
    tol = max(tol, before * 1.0)  # ASan keeps freed memory in quarantine; LSan checks leaks at exit
truth("memory returns to its level (within %d KiB)" % tol, after <= before + tol, (before, after))
h = health()
truth("health ok after the load", h["status"] == "ok" and h["slots_busy"] == 0, h)
truth("queue depth gauge back to 0", metric("slm_queue_depth") == 0)
truth("tokens were counted", (metric("slm_generated_tokens_total") or 0) > 0)

# a streaming client that goes away frees its slot and cancels its generation
gen0 = metric("slm_generated_tokens_total")
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
c.request("POST", "/v1/chat/completions", body=json.dumps({"messages": [{"role": "user", "content": "hi"}],
          "max_tokens": 8000, "temperature": 0, "stream": True, "ignore_eos": True}),
          headers={"Content-Type": "application/json"})
r = c.getresponse()
first = r.read1(200) if hasattr(r, "read1") else r.read(50)
truth("stream started", r.status == 200 and first.startswith(b"data: "), first[:100])
time.sleep(0.2)
h = health()
truth("its slot is busy", h["slots_busy"] == 1, h)
c.sock.shutdown(2); c.close()
t0 = time.time()
freed = wait_idle(4, limit=5)
truth("slot freed soon after the client left", freed and time.time() - t0 < 3, time.time() - t0)
truth("cancellation counted", metric("slm_cancelled_total") == 1, metric("slm_cancelled_total"))
truth("generation stopped early", metric("slm_generated_tokens_total") - gen0 < 8000)

# the same for a client waiting on a non-streamed answer
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
c.request("POST", "/v1/completions", body=json.dumps({"prompt": "Once", "max_tokens": 8000,
          "temperature": 0, "ignore_eos": True}), headers={"Content-Type": "application/json"})
time.sleep(0.5)
c.sock.shutdown(2); c.close()
truth("non-streamed: slot freed after the client left", wait_idle(4, limit=5))
truth("non-streamed: cancellation counted", metric("slm_cancelled_total") == 2, metric("slm_cancelled_total"))
print("%d passed, %d failed" % (passed, failed))
EOF
check "load server still running" kill -0 $SERVER_PID
kill -TERM $SERVER_PID
wait $SERVER_PID
check "exit 0 after SIGTERM" test $? -eq 0
SERVER_PID=

# ---- a full queue, deadlines: one slot, a queue of one, a 1 s deadline ----------------------------------------------
start_server "$TMPD/deadline.log" --parallel 1 --queue 1 --ctx 8192 --timeout 1 --threads 1 -q || { finish; exit 1; }
run_py deadline 600 "$SERVER_PID" <<EOF
$(cat "$TMPD/common.py")
out = {}
def long_one():
    out["a"] = request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 8000, "ignore_eos": True})
t = threading.Thread(target=long_one); t.start()
t0 = time.time()
while time.time() - t0 < 5 and health()["slots_busy"] == 0:
    time.sleep(0.02)
time.sleep(0.3)
# queued behind it: served once the first is cut off at its deadline (it
# cannot wait past its own, which comes later), or refused cleanly
def queued_one():
    t0 = time.time()
    out["b"] = request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 5})
    out["b_took"] = time.time() - t0
tb = threading.Thread(target=queued_one); tb.start()
t0 = time.time()
while time.time() - t0 < 5:
    h = health()
    if h["queued"] == 1:
        break
    time.sleep(0.02)
truth("one running, one queued", h["slots_busy"] == 1 and h["queued"] == 1, h)
st, hdr, data = request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 5})
truth("queue full: 429 with Retry-After", st == 429 and hdr.get("Retry-After") == "1"
      and json.loads(data)["error"]["code"] == "queue_full", (st, hdr, data[:200]))
tb.join()
st, hdr, data = out["b"]
truth("queued request answered within its deadline plus slack", out["b_took"] < 5, out["b_took"])
truth("queued request: 200, 503 with Retry-After, or 504 past its deadline",
      st == 200 or (st == 503 and "Retry-After" in hdr) or
      (st == 504 and json.loads(data)["error"]["code"] == "deadline_exceeded"), (st, data[:200]))
t.join()
st, hdr, data = out["a"]
truth("running past its deadline: 504", st == 504 and json.loads(data)["error"]["code"] == "deadline_exceeded",
      (st, data[:200]))
truth("slot free again", wait_idle(1, limit=5))
st, _, data = request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 5})
truth("a short request still fits", st == 200, data[:200])
print("%d passed, %d failed" % (passed, failed))
EOF
kill -TERM $SERVER_PID
wait $SERVER_PID
check "exit 0 after SIGTERM (deadline server)" test $? -eq 0
SERVER_PID=

# ---- graceful shutdown with a stream in flight -------------------------------------------
start_server "$TMPD/stop.log" --parallel 1 --ctx 8192 --shutdown-timeout 1 --threads 1 -q || { finish; exit 1; }
python3 - "$PORT" >"$TMPD/stream.out" 2>&1 <<'EOF' &
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
c.request("POST", "/v1/completions", body=json.dumps({"prompt": "Once", "max_tokens": 8000,
          "ignore_eos": True, "stream": True}), headers={"Content-Type": "application/json"})
r = c.getresponse()
sys.stdout.write(r.read().decode())
EOF
CLIENT_PID=$!
# wait until the stream is generating
python3 - "$PORT" <<'EOF'
import http.client, json, sys, time
t0 = time.time()
while time.time() - t0 < 20:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
    c.request("GET", "/health")
    if json.loads(c.getresponse().read())["slots_busy"] == 1:
        break
    time.sleep(0.05)
EOF
sleep 0.2
t0=$(date +%s.%N)
kill -TERM $SERVER_PID
wait $SERVER_PID
rc=$?
t1=$(date +%s.%N)
SERVER_PID=
check "exit 0 after SIGTERM with a stream in flight" test $rc -eq 0
check "stopped within the shutdown timeout plus slack" python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 5 else 1)"
wait $CLIENT_PID
check "the stream ended cleanly with [DONE]" grep -q "data: \[DONE\]" "$TMPD/stream.out"
check "the stream says why it stopped" grep -q "shutting_down" "$TMPD/stream.out"
check "no new connections after shutdown" bash -c "! python3 -c \"import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=2)\" 2>/dev/null"
finish
