#!/usr/bin/env bash
# LoRA adapters as a user drives them (issue 8): slm run --lora, the config's
# "adapters", slm lora merge, refusals of malformed or unsigned adapters,
# Hugging Face PEFT adapters, merging under the signature policy.
source "$(dirname "$0")/lib.sh"

expect_status 0 "lora --help" "$SLM" lora --help
stdout_has "usage: slm lora merge" "lora --help"
expect_status 0 "lora merge --help" "$SLM" lora merge --help
stdout_has "--type" "lora merge --help"
expect_status 2 "lora without subcommand" "$SLM" lora
expect_status 2 "lora unknown subcommand" "$SLM" lora split a b c
stderr_has "split" "lora unknown subcommand"
expect_status 2 "lora merge missing files" "$SLM" lora merge a.gguf b.gguf
stderr_has "OUT.gguf" "lora merge missing files"
expect_status 2 "lora merge unknown option" "$SLM" lora merge a b c --bogus
stderr_has "--bogus" "lora merge unknown option"
expect_status 2 "lora merge bad scale" "$SLM" lora merge a b c --scale x
expect_status 0 "run --help" "$SLM" run --help
stdout_has "--lora FILE[:SCALE]" "run --help mentions --lora"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  echo "SKIP part: $M not found; the adapter checks did not run"
  finish
  exit $?
fi
command -v python3 >/dev/null || { echo "SKIP part: no python3 to write adapters"; finish; exit $?; }

# A random adapter for stories260K on four matrices (see lib.sh).
# mkadapter OUT SEED [missing-alpha|bad-shape]
mkadapter() {
  mk_lora_adapter "$1" "$2" 16 0.2 "0:attn_q:8 2:attn_v:4 1:ffn_up:8 4:ffn_down:16" "${3:-}"
}
A="$TMPD/a.gguf"
B="$TMPD/b.gguf"
mkadapter "$A" 1
mkadapter "$B" 2
RUN=(run -p "Once upon a time" -n 40 --temp 0 -q -t 2)

expect_status 0 "run base" "$SLM" "${RUN[@]}" -m "$M"
cp "$TMPD/out" "$TMPD/base.txt"
expect_status 0 "run --lora" "$SLM" "${RUN[@]}" -m "$M" --lora "$A"
cp "$TMPD/out" "$TMPD/a.txt"
check "the adapter changes the output" bash -c "! cmp -s '$TMPD/a.txt' '$TMPD/base.txt'"
expect_status 0 "run --lora :0" "$SLM" "${RUN[@]}" -m "$M" --lora "$A:0"
check "scale 0 gives the base model's output" cmp -s "$TMPD/out" "$TMPD/base.txt"
expect_status 0 "run --lora :1" "$SLM" "${RUN[@]}" -m "$M" --lora "$A:1.0"
check "scale 1 = default" cmp -s "$TMPD/out" "$TMPD/a.txt"
expect_status 0 "config adapters" "$SLM" "${RUN[@]}" -m "$M" --config "{\"adapters\":[\"$A\"]}"
check "config adapters = --lora" cmp -s "$TMPD/out" "$TMPD/a.txt"

# merge: the merged model generates what the adapter does
expect_status 0 "lora merge" "$SLM" lora merge "$M" "$A" "$TMPD/merged.gguf"
expect_status 0 "run merged" "$SLM" "${RUN[@]}" -m "$TMPD/merged.gguf"
check "merged model = base + adapter" cmp -s "$TMPD/out" "$TMPD/a.txt"
# two adapters at once = merging both
expect_status 0 "run two adapters" "$SLM" "${RUN[@]}" -m "$M" --lora "$A" --lora "$B:0.5"
cp "$TMPD/out" "$TMPD/ab.txt"
expect_status 0 "lora merge second" "$SLM" lora merge "$TMPD/merged.gguf" "$B" "$TMPD/merged2.gguf" --scale 0.5
expect_status 0 "run merged twice" "$SLM" "${RUN[@]}" -m "$TMPD/merged2.gguf"
check "two adapters = merged twice" cmp -s "$TMPD/out" "$TMPD/ab.txt"
expect_status 0 "lora merge --type f16" "$SLM" lora merge "$M" "$A" "$TMPD/m16.gguf" --type f16
expect_status 0 "info merged f16" "$SLM" info "$TMPD/m16.gguf"
stdout_has "f16 x 4" "only the 4 targeted matrices become f16"

# refusals
before=$(sha256sum "$M" | cut -d' ' -f1)
expect_status 1 "merge onto the base" "$SLM" lora merge "$M" "$A" "$M"
stderr_has "differ" "merge onto the base"
check "base untouched" test "$(sha256sum "$M" | cut -d' ' -f1)" = "$before"
expect_status 1 "merge unknown type" "$SLM" lora merge "$M" "$A" "$TMPD/x.gguf" --type q9_z
stderr_has "q9_z" "merge unknown type"
check "no output on failure" test ! -e "$TMPD/x.gguf"
expect_status 1 "missing adapter" "$SLM" "${RUN[@]}" -m "$M" --lora "$TMPD/none.gguf"
stderr_has "none.gguf" "missing adapter"
mkadapter "$TMPD/noalpha.gguf" 3 missing-alpha
expect_status 1 "adapter without alpha" "$SLM" "${RUN[@]}" -m "$M" --lora "$TMPD/noalpha.gguf"
stderr_has "adapter.lora.alpha" "adapter without alpha"
stderr_has "noalpha.gguf" "adapter without alpha names the file"
mkadapter "$TMPD/shape.gguf" 3 bad-shape
expect_status 1 "adapter with a wrong shape" "$SLM" "${RUN[@]}" -m "$M" --lora "$TMPD/shape.gguf"
stderr_has "blk.0.attn_q.weight" "wrong shape names the tensor"
head -c 500 "$A" >"$TMPD/trunc.gguf"
expect_status 1 "truncated adapter" "$SLM" "${RUN[@]}" -m "$M" --lora "$TMPD/trunc.gguf"
stderr_has "trunc.gguf" "truncated adapter"
expect_status 1 "a model is not an adapter" "$SLM" "${RUN[@]}" -m "$M" --lora "$M"
stderr_has "not a LoRA adapter" "a model is not an adapter"
expect_status 2 "too many --lora" "$SLM" "${RUN[@]}" -m "$M" --lora a --lora a --lora a \
  --lora a --lora a --lora a --lora a --lora a --lora a
expect_status 2 "--lora without a value" "$SLM" run -p x --lora

# signatures: with require_signature an adapter needs its own valid .sig
signed_model_setup "$M" alice
TRUST="\"require_signature\":true,\"trust_dir\":\"$K/trust\""
expect_status 1 "unsigned adapter refused" "$SLM" "${RUN[@]}" -m "$TMPD/model.gguf" \
  --config "{$TRUST}" --lora "$A"
stderr_has "a.gguf" "unsigned adapter refused names it"
stderr_has "signature" "unsigned adapter refused says why"
"$SLM" sign "$A" --key "$K/alice.key" >/dev/null 2>&1
expect_status 0 "signed adapter accepted" "$SLM" "${RUN[@]}" -m "$TMPD/model.gguf" \
  --config "{$TRUST}" --lora "$A"
check "signed adapter output" cmp -s "$TMPD/out" "$TMPD/a.txt"
printf 'x' >>"$A"
expect_status 1 "tampered adapter refused" "$SLM" "${RUN[@]}" -m "$TMPD/model.gguf" \
  --config "{$TRUST}" --lora "$A"
stderr_has "mismatch" "tampered adapter refused"

# Hugging Face PEFT: the same adapter as GGUF (llama.cpp layout) and as PEFT
# (HF layout: q/k lora_B rows in HF order, which llama.cpp's converter
# permutes per head: GGUF row 2i+a = HF row a*hd/2+i); both give one output.
# mkpeft GGUF_OUT PEFT_DIR SEED
mkpeft() {
  python3 - "$@" <<'EOF2'
import json, os, random, struct, sys
gout, pdir, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
r, alpha = 8, 16.0
# stem, HF module, n_in, n_out, heads (for the q/k permutation)
mods = [("attn_q", "self_attn.q_proj", 64, 64, 8), ("attn_k", "self_attn.k_proj", 64, 32, 4),
        ("attn_v", "self_attn.v_proj", 64, 32, 0), ("ffn_up", "mlp.up_proj", 64, 172, 0),
        ("ffn_down", "mlp.down_proj", 172, 64, 0)]
def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b
kv = [("general.architecture", 8, s("llama")), ("general.type", 8, s("adapter")),
      ("adapter.type", 8, s("lora")), ("adapter.lora.alpha", 6, struct.pack("<f", alpha))]
gt, st = [], []
for layer in (0, 3):
    for stem, hf, n_in, n_out, heads in mods:
        A = [[rng.gauss(0, 0.2) for _ in range(n_in)] for _ in range(r)]
        B = [[rng.gauss(0, 0.2) for _ in range(r)] for _ in range(n_out)]  # GGUF row order
        gt.append(("blk.%d.%s.weight.lora_a" % (layer, stem), [n_in, r], sum(A, [])))
        gt.append(("blk.%d.%s.weight.lora_b" % (layer, stem), [r, n_out], sum(B, [])))
        Bhf = B
        if heads:
            hd = n_out // heads
            Bhf = [None] * n_out
            for h in range(heads):
                for i in range(hd // 2):
                    for a in range(2):
                        Bhf[h * hd + a * hd // 2 + i] = B[h * hd + 2 * i + a]
        pre = "base_model.model.model.layers.%d.%s" % (layer, hf)
        st.append((pre + ".lora_A.weight", [r, n_in], sum(A, [])))
        st.append((pre + ".lora_B.weight", [n_out, r], sum(Bhf, [])))
head = b"GGUF" + struct.pack("<IQQ", 3, len(gt), len(kv))
for k, t, v in kv:
    head += s(k) + struct.pack("<I", t) + v
data, off = b"", 0
for name, ne, vals in gt:
    head += s(name) + struct.pack("<I", 2) + struct.pack("<QQ", *ne) + struct.pack("<IQ", 0, off)
    blob = struct.pack("<%df" % len(vals), *vals)
    blob += b"\0" * (-len(blob) % 32)
    data += blob
    off += len(blob)
head += b"\0" * (-len(head) % 32)
open(gout, "wb").write(head + data)
os.makedirs(pdir, exist_ok=True)
hdr, data, off = {"__metadata__": {"format": "pt"}}, b"", 0
for name, shape, vals in st:
    blob = struct.pack("<%df" % len(vals), *vals)
    hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(blob)]}
    data += blob
    off += len(blob)
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(os.path.join(pdir, "adapter_model.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + data)
cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "bias": "none",
       "target_modules": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]}
open(os.path.join(pdir, "adapter_config.json"), "w").write(json.dumps(cfg))
EOF2
}
P="$TMPD/peft"
mkpeft "$TMPD/peft.gguf" "$P" 5
expect_status 0 "run GGUF twin of PEFT" "$SLM" "${RUN[@]}" -m "$M" --lora "$TMPD/peft.gguf"
cp "$TMPD/out" "$TMPD/pg.txt"
check "the adapter changes the output" bash -c "! cmp -s '$TMPD/pg.txt' '$TMPD/base.txt'"
expect_status 0 "run --lora PEFT dir" "$SLM" "${RUN[@]}" -m "$M" --lora "$P"
check "PEFT = its GGUF twin" cmp -s "$TMPD/out" "$TMPD/pg.txt"
expect_status 0 "run --lora PEFT safetensors" "$SLM" "${RUN[@]}" -m "$M" \
  --lora "$P/adapter_model.safetensors:1"
check "PEFT by its .safetensors path" cmp -s "$TMPD/out" "$TMPD/pg.txt"
expect_status 0 "lora merge PEFT" "$SLM" lora merge "$M" "$P" "$TMPD/pm.gguf"
expect_status 0 "run merged PEFT" "$SLM" "${RUN[@]}" -m "$TMPD/pm.gguf"
check "merged PEFT = base + PEFT" cmp -s "$TMPD/out" "$TMPD/pg.txt"
cp -r "$P" "$TMPD/peft-bias"
printf '{"r":8,"lora_alpha":16,"bias":"lora_only"}' >"$TMPD/peft-bias/adapter_config.json"
expect_status 1 "PEFT bias refused" "$SLM" "${RUN[@]}" -m "$M" --lora "$TMPD/peft-bias"
stderr_has '"bias" is "lora_only"' "PEFT bias refused says why"
head -c 300 "$P/adapter_model.safetensors" >"$TMPD/peft-bias/adapter_model.safetensors"
printf '{"r":8,"lora_alpha":16}' >"$TMPD/peft-bias/adapter_config.json"
expect_status 1 "PEFT truncated refused" "$SLM" "${RUN[@]}" -m "$M" --lora "$TMPD/peft-bias"
stderr_has "adapter_model.safetensors" "PEFT truncated names the file"

# slm bench --lora: decode speed with and without the adapter, in one run
expect_status 0 "bench --lora" "$SLM" bench -m "$M" -t 1 -p 8 -n 8 -r 1 --lora "$P:0.5" --json
check "bench reports the adapter's decode rate and cost" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["adapter_decode_tps"] > 0 and d["decode_tps"] > 0, d
assert abs(d["adapter_cost_pct"] - 100 * (1 - d["adapter_decode_tps"] / d["decode_tps"])) < 0.01, d
assert d["adapter_scale"] == 0.5, d
' "$TMPD/out"
expect_status 0 "bench --lora text" "$SLM" bench -m "$M" -t 1 -p 8 -n 8 -r 1 --lora "$TMPD/peft.gguf"
stdout_has "with adapter" "bench --lora text"
expect_status 1 "bench --lora missing" "$SLM" bench -m "$M" -t 1 -p 8 -n 8 -r 1 --lora "$TMPD/nope.gguf"
stderr_has "nope.gguf" "bench --lora missing names it"
expect_status 0 "bench --help" "$SLM" bench --help
stdout_has "adapter_cost_pct" "bench --help documents --lora"

# merge under the signature policy: base and adapter verified first
expect_status 2 "merge --require-signature without trust dir" "$SLM" lora merge \
  "$TMPD/model.gguf" "$P" "$TMPD/sm.gguf" --require-signature
stderr_has "trust dir" "merge --require-signature without trust dir"
expect_status 1 "merge unsigned PEFT refused" "$SLM" lora merge "$TMPD/model.gguf" "$P" \
  "$TMPD/sm.gguf" --trust-dir "$K/trust"
stderr_has "signature" "merge unsigned PEFT refused"
check "no output after a refused merge" test ! -e "$TMPD/sm.gguf"
"$SLM" sign "$P/adapter_model.safetensors" --key "$K/alice.key" >/dev/null 2>&1
expect_status 1 "merge PEFT without config signature" "$SLM" lora merge "$TMPD/model.gguf" "$P" \
  "$TMPD/sm.gguf" --trust-dir "$K/trust"
stderr_has "adapter_config.json" "merge PEFT without config signature names it"
"$SLM" sign "$P/adapter_config.json" --key "$K/alice.key" >/dev/null 2>&1
expect_status 0 "merge signed PEFT" "$SLM" lora merge "$TMPD/model.gguf" "$P" "$TMPD/sm.gguf" \
  --trust-dir "$K/trust"
stderr_has "verified" "merge signed PEFT"
expect_status 1 "merge unsigned base refused (config)" "$SLM" lora merge "$M" "$P" \
  "$TMPD/sm2.gguf" --config "{$TRUST}"
stderr_has "stories260K.gguf" "merge unsigned base names it"
expect_status 0 "merge signed via config" "$SLM" lora merge "$TMPD/model.gguf" "$P" \
  "$TMPD/sm2.gguf" --config "{$TRUST}"
expect_status 0 "run signed PEFT" "$SLM" "${RUN[@]}" -m "$TMPD/model.gguf" --config "{$TRUST}" \
  --lora "$P"
check "signed PEFT output" cmp -s "$TMPD/out" "$TMPD/pg.txt"

finish
