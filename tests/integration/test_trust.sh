#!/usr/bin/env bash
# Signatures as a user drives them: keygen, sign, verify, and a model refused
# at load (require_signature) when anything about it is wrong.
source "$(dirname "$0")/lib.sh"

for c in keygen sign verify; do
  expect_status 0 "$c --help" "$SLM" $c --help
  stdout_has "usage: slm $c" "$c --help"
done
expect_status 2 "keygen without --out" "$SLM" keygen
expect_status 2 "sign without --key" "$SLM" sign x.gguf
stderr_has "--key" "sign without --key"
expect_status 2 "verify without a key" "$SLM" verify x.gguf
stderr_has "--pub" "verify without a key"
expect_status 2 "verify with both" "$SLM" verify x.gguf --pub a.pub --trust d
expect_status 2 "verify unknown option" "$SLM" verify x.gguf --bogus
stderr_has "--bogus" "verify unknown option"

K=$TMPD/keys
mkdir -p "$K" "$TMPD/trust"
expect_status 0 "keygen" "$SLM" keygen --out "$K/alice"
stdout_has "key id " "keygen prints the key id"
check "secret key mode 0600" test "$(stat -c %a "$K/alice.key")" = 600
check "public key exists" test -s "$K/alice.pub"
cp "$K/alice.key" "$TMPD/alice.key.before"
expect_status 1 "keygen refuses to overwrite" "$SLM" keygen --out "$K/alice"
stderr_has "already exists" "keygen refuses to overwrite"
check "secret key unchanged" cmp -s "$K/alice.key" "$TMPD/alice.key.before"
expect_status 0 "second keygen" "$SLM" keygen --out "$K/mallory"
cp "$K/alice.pub" "$TMPD/trust/"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  echo "SKIP part: $M not found; the model checks did not run"
  finish
  exit $?
fi
F=$TMPD/model.gguf
cp "$M" "$F"
TRUST="{\"require_signature\":true,\"trust_dir\":\"$TMPD/trust\"}"
load() { "$SLM" run -m "$1" -p "Once" -n 3 --temp 0 --config "$TRUST"; }

expect_status 1 "missing signature at load" load "$F"
stderr_has "missing signature" "missing signature at load"
expect_status 0 "sign" "$SLM" sign "$F" --key "$K/alice.key" --comment "release 1"
check "signature file written" test -s "$F.sig"
expect_status 0 "verify --pub" "$SLM" verify "$F" --pub "$K/alice.pub"
stdout_has "release 1" "verify prints the comment"
expect_status 0 "verify --trust" "$SLM" verify "$F" --trust "$TMPD/trust"
SLM_LOG=info "$SLM" run -m "$F" -p "Once" -n 3 --temp 0 --config "$TRUST" >"$TMPD/out" 2>"$TMPD/err"
check "signed model loads" test $? -eq 0
stderr_has "verified in" "verification cost logged"
expect_status 1 "verify with another key" "$SLM" verify "$F" --pub "$K/mallory.pub"
stderr_has "unknown key" "verify with another key"
# a secret key others can read is refused
chmod 644 "$K/mallory.key"
expect_status 1 "sign with an open secret key" "$SLM" sign "$F" --key "$K/mallory.key"
stderr_has "too open" "sign with an open secret key"
chmod 600 "$K/mallory.key"

# one byte changed: header, middle, last byte
size=$(stat -c %s "$F")
for pos in 0 4 100 $((size / 2)) $((size - 1)); do
  cp "$M" "$F"
  printf '\x5a' | dd of="$F" bs=1 seek="$pos" conv=notrunc status=none
  cmp -s "$M" "$F" || { expect_status 1 "byte $pos modified" load "$F"; stderr_has "hash mismatch" "byte $pos modified"; }
done
# truncated
head -c $((size - 1)) "$M" >"$F"
expect_status 1 "truncated" load "$F"
stderr_has "size mismatch" "truncated"
expect_status 1 "verify truncated" "$SLM" verify "$F" --trust "$TMPD/trust"
stderr_has "size mismatch" "verify truncated"
cp "$M" "$F"
# signed by an untrusted key
cp "$F.sig" "$TMPD/good.sig"
expect_status 0 "mallory signs" "$SLM" sign "$F" --key "$K/mallory.key"
expect_status 1 "untrusted key" load "$F"
stderr_has "unknown key" "untrusted key"
# a valid signature of another file
cp "$M" "$TMPD/other.gguf"
printf '\x00' | dd of="$TMPD/other.gguf" bs=1 seek=$((size / 3)) conv=notrunc status=none
"$SLM" sign "$TMPD/other.gguf" --key "$K/alice.key" >/dev/null 2>&1
cp "$TMPD/other.gguf.sig" "$F.sig"
expect_status 1 "swapped signature" load "$F"
stderr_has "hash mismatch" "swapped signature"
# altered signature file
sed 's/^created: \(.\)/created: 9/' "$TMPD/good.sig" >"$F.sig"
expect_status 1 "altered header" load "$F"
stderr_has "bad signature" "altered header"
printf 'not a signature\n' >"$F.sig"
expect_status 1 "malformed signature" load "$F"
stderr_has "malformed signature file" "malformed signature"
cp "$TMPD/good.sig" "$F.sig"
expect_status 0 "good signature again" load "$F"
# the config key needs a trust dir
expect_status 1 "no trust_dir" "$SLM" run -m "$F" -p "Once" -n 1 --config '{"require_signature":true}'
stderr_has "trust_dir" "no trust_dir"
expect_status 1 "bad config type" "$SLM" run -m "$F" -p "Once" -n 1 --config '{"require_signature":"yes"}'
stderr_has "require_signature" "bad config type"
finish
