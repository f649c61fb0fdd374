#!/usr/bin/env bash
# The example program builds and runs against a model the tests make.
source "$(dirname "$0")/lib.sh"
EX="$SLM_BUILD/example_generate"
check "example built" test -x "$EX"
M="$SHARED/models/stories260K.gguf"
if [[ -f "$M" ]]; then
  expect_status 0 "example runs" "$EX" "$M" "Once upon a time" 20
  stdout_has "20 generated" "example reports"
else
  echo "SKIP part: $M not found"
fi
expect_status 1 "example bad model" "$EX" /nonexistent.gguf hi
stderr_has "/nonexistent.gguf" "example error message"
finish
