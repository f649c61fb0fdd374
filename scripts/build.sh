#!/usr/bin/env bash
# Installs missing packages, then configures and builds slm into build/
# (or the directory given as $1; further arguments go to cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
# the CLI and the libraries; scripts/test.sh builds the tests too
cmake --build "$dir" -j"$(nproc)" --target slm_cli slm slm_shared
