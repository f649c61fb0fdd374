#!/usr/bin/env bash
# Installs missing packages, then configures and builds slm into build/
# (or the directory given as $1; further arguments go to cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
