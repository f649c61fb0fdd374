#!/usr/bin/env bash
# The official openai npm client pointed at slm serve: models, a chat
# completion, a streamed chat completion that concatenates to the same text
# at temperature 0, a completion, typed errors. The client is installed into
# the build tree (tests/js) with npm on first run; without node, npm or the
# registry the test is skipped, saying so. Loopback only.
source "$(dirname "$0")/lib.sh"

M="$SHARED/models/stories260K.gguf"
if [[ ! -f "$M" ]]; then
  M="$TMPD/small.gguf"
  "$SLM_BUILD/tests/test_serve" --write-model "$M" >/dev/null 2>&1 || skip "no model: $SHARED/models/stories260K.gguf is absent and tests/test_serve could not write one"
fi
command -v node >/dev/null || skip "node not found (scripts/deps.sh --test installs it)"
command -v npm >/dev/null || skip "npm not found (scripts/deps.sh --test installs it)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[[ $node_major -ge 18 ]] || skip "node $node_major is too old for the openai client (18+)"

JS_SRC="$SLM_SOURCE/tests/integration/js"
JS="$SLM_BUILD/tests/js"
mkdir -p "$JS"
if ! cmp -s "$JS_SRC/package.json" "$JS/package.json" || [[ ! -d "$JS/node_modules/openai" ]]; then
  cp "$JS_SRC/package.json" "$JS/package.json"
  if ! (cd "$JS" && timeout 300 npm install --no-audit --no-fund --loglevel=error >"$TMPD/npm.log" 2>&1); then
    rm -f "$JS/package.json"
    skip "npm install of the openai client failed (no registry?): $(tail -c 300 "$TMPD/npm.log")"
  fi
fi
cp "$JS_SRC/openai_test.mjs" "$JS/openai_test.mjs"

SERVER_PID=
trap 'if [[ -n $SERVER_PID ]]; then kill -KILL $SERVER_PID 2>/dev/null; fi; rm -rf "$TMPD"' EXIT
"$SLM" serve -m "$M" --port 0 --parallel 2 --api-key test-key-123 2>"$TMPD/server.log" &
SERVER_PID=$!
wait_listening "$TMPD/server.log" "$SERVER_PID"
if [[ -z $PORT ]]; then
  bad "server did not start: $(head -c 600 "$TMPD/server.log")"
  finish
  exit 1
fi

(cd "$JS" && timeout 120 node openai_test.mjs "http://127.0.0.1:$PORT/v1" test-key-123) >"$TMPD/node.out" 2>&1
add_driver_counts "openai client" $? "$TMPD/node.out"

kill -TERM $SERVER_PID
wait $SERVER_PID
check "exit 0 after SIGTERM" test $? -eq 0
SERVER_PID=
finish
