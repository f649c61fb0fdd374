# Helpers for integration tests: assertions that count, and a closing
# "N passed, N failed" line. Source it; call finish at the end.
set -u
PASSED=0
FAILED=0
SLM=${SLM_BIN:?SLM_BIN not set (run through ctest)}
SHARED=${SLM_SHARED:-../shared}
TMPD=$(mktemp -d "${SLM_TMP:-/tmp}/it.XXXXXX")
trap 'rm -rf "$TMPD"' EXIT

ok() { PASSED=$((PASSED + 1)); }
bad() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }
check() { # check "description" command...
  local what=$1; shift
  if "$@"; then ok; else bad "$what"; fi
}
# expect_status CODE "description" command...: exit status must be CODE
expect_status() {
  local want=$1 what=$2; shift 2
  "$@" >"$TMPD/out" 2>"$TMPD/err"
  local got=$?
  if [[ $got -eq $want ]]; then ok; else bad "$what: exit $got, expected $want; stderr: $(head -c 400 "$TMPD/err")"; fi
}
# stderr_has TEXT "description": the last expect_status's stderr contains TEXT
stderr_has() {
  if grep -qF -- "$1" "$TMPD/err"; then ok; else bad "$2: stderr lacks '$1': $(head -c 400 "$TMPD/err")"; fi
}
stdout_has() {
  if grep -qF -- "$1" "$TMPD/out"; then ok; else bad "$2: stdout lacks '$1': $(head -c 400 "$TMPD/out")"; fi
}
finish() {
  echo "$PASSED passed, $FAILED failed"
  [[ $FAILED -eq 0 ]]
}
# wait_listening LOG PID: waits up to 30 s for `slm serve --port 0` (PID) to
# write its address to LOG; sets PORT (empty when it died or never said).
# A LOG that is reused must be emptied by the caller before the server starts:
# in `slm serve ... 2>LOG &` the truncation happens in the background child,
# so on a loaded machine this can read the previous server's port first.
wait_listening() {
  PORT=
  for _ in $(seq 300); do
    PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/v1.*|\1|p' "$1")
    [[ -n $PORT ]] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
skip() { echo "SKIP: $*"; exit 77; }
# run_py NAME SECS [ARG...]: runs the python program on stdin (at most SECS
# seconds) with argv $PORT ARG..., shows its output and folds its last
# "N passed, N failed" line into ours
run_py() {
  local name=$1 secs=$2
  shift 2
  timeout "$secs" python3 - "$PORT" "$@" >"$TMPD/$name.out" 2>&1
  add_driver_counts "$name" $? "$TMPD/$name.out"
}
# add_driver_counts NAME RC FILE: prints a driver's output FILE and adds its
# last "N passed, M failed" line to the counts; a missing line, or a nonzero
# exit RC with no failure counted, is a failure of NAME.
add_driver_counts() {
  local name=$1 rc=$2 file=$3 tp tf
  cat "$file"
  read -r tp _ tf _ < <(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$file" | tail -1)
  if [[ ${tp:-} =~ ^[0-9]+$ && ${tf:-} =~ ^[0-9]+$ ]]; then
    PASSED=$((PASSED + tp))
    FAILED=$((FAILED + tf))
    [[ $rc -eq 0 || $tf -gt 0 ]] || bad "$name: exit $rc"
  else
    bad "$name: no result line (exit $rc)"
  fi
}
# mk_lora_adapter OUT SEED ALPHA STDDEV "LAYER:STEM:RANK ..." [missing-alpha|bad-shape]:
# writes a random LoRA adapter for stories260K (dim 64, kv 32, ffn 172,
# 5 layers) in llama.cpp's GGUF LoRA layout (lora_a ne = [n_in, r], lora_b
# ne = [r, n_out]), weights drawn from N(0, STDDEV) with seed SEED, in the
# order of the targets. missing-alpha leaves out adapter.lora.alpha; bad-shape
# gives the first lora_a one column too many. Needs python3.
mk_lora_adapter() {
  python3 - "$@" <<'EOF'
import random, struct, sys
out, seed, alpha, sd = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
targets = [(int(l), stem, int(r)) for l, stem, r in (t.split(":") for t in sys.argv[5].split())]
fault = sys.argv[6] if len(sys.argv) > 6 else ""
rng = random.Random(seed)
dims = {"attn_q": (64, 64), "attn_k": (64, 32), "attn_v": (64, 32), "ffn_up": (64, 172),
        "ffn_down": (172, 64)}
def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b
kv = [("general.architecture", 8, s("llama")), ("general.type", 8, s("adapter")),
      ("adapter.type", 8, s("lora"))]
if fault != "missing-alpha":
    kv.append(("adapter.lora.alpha", 6, struct.pack("<f", alpha)))
tensors = []
for l, stem, r in targets:
    n_in, n_out = dims[stem]
    if fault == "bad-shape" and not tensors:
        n_in += 1
    tensors.append(("blk.%d.%s.weight.lora_a" % (l, stem), [n_in, r]))
    tensors.append(("blk.%d.%s.weight.lora_b" % (l, stem), [r, n_out]))
head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
for k, t, v in kv:
    head += s(k) + struct.pack("<I", t) + v
data, off = b"", 0
for name, ne in tensors:
    head += s(name) + struct.pack("<I", 2) + struct.pack("<QQ", *ne) + struct.pack("<IQ", 0, off)
    blob = struct.pack("<%df" % (ne[0] * ne[1]), *[rng.gauss(0, sd) for _ in range(ne[0] * ne[1])])
    blob += b"\0" * (-len(blob) % 32)
    data += blob
    off += len(blob)
head += b"\0" * (-len(head) % 32)
open(out, "wb").write(head + data)
EOF
}
# signed_model_setup MODEL NAME: a key pair K/NAME.{key,pub} (K=$TMPD/keys,
# set here), a trust dir K/trust that trusts it, and $TMPD/model.gguf, a copy
# of MODEL signed with that key.
signed_model_setup() {
  K="$TMPD/keys"
  mkdir -p "$K/trust"
  "$SLM" keygen --out "$K/$2" >/dev/null 2>&1
  cp "$K/$2.pub" "$K/trust/"
  cp "$1" "$TMPD/model.gguf"
  "$SLM" sign "$TMPD/model.gguf" --key "$K/$2.key" >/dev/null 2>&1
}
