#!/usr/bin/env bash
# Installs the Debian packages slm needs to build and test, when missing.
# Uses sudo when not root. Safe to run again: installs nothing when all is there.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libpcre2-dev libcjson-dev libsodium-dev libmicrohttpd-dev libcurl4-openssl-dev)
if [[ "${1:-}" == "--test" ]]; then
  # tests: sanitizer runtimes come with gcc; python3-numpy runs the
  # synthetic-model generator from ../shared/tools.
  # nodejs/npm: the server test drives it with the official openai npm client
  # (NodeSource's nodejs bundles npm and conflicts with Debian's npm package).
  # clang (with libFuzzer) builds and runs the fuzz targets (scripts/fuzz.sh).
  pkgs+=(clang clang-format libclang-rt-dev python3 python3-numpy nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "slm: installing Debian packages: ${missing[*]}" >&2
sudo_cmd=(env DEBIAN_FRONTEND=noninteractive)
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo env DEBIAN_FRONTEND=noninteractive) # sudo resets the environment
fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
