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
