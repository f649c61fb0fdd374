#!/usr/bin/env bash
# Cross-builds slm for 64-bit ARM Linux (Debian's gcc-aarch64-linux-gnu and
# multiarch arm64 libraries) and runs the unit tests under qemu-aarch64-static
# user-mode emulation, so that the neon kernel provider is run, not just
# compiled:
#  - the kernel test twice, on an emulated CPU with the dot-product extension
#    (QEMU_CPU=max: neon's sdot kernels) and on one without it
#    (QEMU_CPU=cortex-a57: neon's widening-multiply kernels), each time
#    checking every available provider (neon and ref) against the reference
#    and checking that the CPU feature was detected as expected;
#  - the other unit tests (and fuzz corpus replays) on QEMU_CPU=max, where the
#    runtime picks neon.
#
#   scripts/test-arm64.sh [--build-only] [--sanitize] [CTEST_REGEX]
#     --sanitize   ASan + UBSan build (in $SLM_ARM64_BUILD-asan); LeakSanitizer
#                  is off, as it cannot stop the world under qemu-user
#     CTEST_REGEX  which ctest tests to run after the kernel tests (default:
#                  every unit test and fuzz corpus replay, but the server's
#                  and test_quantize's, which take over 10 minutes each under
#                  emulation; test_kernels runs first, on both CPUs)
#   SLM_ARM64_BUILD  build directory (default build-arm64)
# Installs what is missing first (dpkg-query, then apt-get; sudo when not root).
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=0 sanitize=0
while [[ "${1:-}" == --* ]]; do
  case "$1" in
  --build-only) build_only=1 ;;
  --sanitize) sanitize=1 ;;
  *)
    echo "test-arm64: unknown option $1 (see the top of $0)" >&2
    exit 2
    ;;
  esac
  shift
done
regex="${1:-^(unit|fuzz)\.}"
exclude='^unit\.test_(kernels|serve|quantize)$'
dir="${SLM_ARM64_BUILD:-build-arm64}"
cmake_args=(-DCMAKE_BUILD_TYPE=Release)
if ((sanitize)); then
  dir="$dir-asan"
  cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DSLM_SANITIZE=ON)
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
triple=aarch64-linux-gnu
t_start=$(date +%s)

# ---- packages -----------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
pkgs=(cmake pkg-config make gcc-${triple} libc6-dev-arm64-cross qemu-user-static
  libpcre2-dev:arm64 libcjson-dev:arm64 libsodium-dev:arm64 libmicrohttpd-dev:arm64)
# Libraries the build asks for beyond the base set, when it does.
if grep -q "libcurl" CMakeLists.txt; then pkgs+=(libcurl4-openssl-dev:arm64); fi
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]} > 0)); then
  echo "test-arm64: installing Debian packages: ${missing[*]}" >&2
  as_root=(env DEBIAN_FRONTEND=noninteractive)
  if [[ $(id -u) -ne 0 ]]; then as_root=(sudo env DEBIAN_FRONTEND=noninteractive); fi
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${as_root[@]}" dpkg --add-architecture arm64
  fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64)

# ---- build ----------------------------------------------------------------------
jobs=$(nproc)
cmake -S . -B "$dir" -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-${triple}.cmake "${cmake_args[@]}" \
  >/dev/null
cmake --build "$dir" -j"$jobs"
t_built=$(date +%s)
echo "test-arm64: cross build took $((t_built - t_start)) s"
if ((build_only)); then exit 0; fi

# ---- the kernel test, with and without the dot-product extension ----------------
kernels="$dir/tests/test_kernels"
for cpu in max:yes cortex-a57:no; do
  name=${cpu%%:*} want=${cpu##*:}
  echo "== test_kernels on an emulated $name (sdot expected: $want)"
  t0=$(date +%s)
  out=$(QEMU_CPU=$name "$qemu" "$kernels" 2>&1) || {
    printf '%s\n' "$out"
    echo "test-arm64: test_kernels failed on $name" >&2
    exit 1
  }
  printf '%s\n' "$out" | grep -E "^(provider|neon|[0-9]+ types|[0-9]+ passed)" || true
  echo "($(($(date +%s) - t0)) s)"
  if ! printf '%s\n' "$out" | grep -q "^provider neon: tested"; then
    echo "test-arm64: the neon provider was not tested on $name" >&2
    exit 1
  fi
  if ! printf '%s\n' "$out" | grep -q "^neon: sdot $want"; then
    echo "test-arm64: expected 'neon: sdot $want' on $name" >&2
    exit 1
  fi
done

# ---- the other unit tests ------------------------------------------------------
echo "== unit tests under qemu-aarch64 (QEMU_CPU=max): $regex"
(cd "$dir" && QEMU_CPU=max ctest --output-on-failure -j"$jobs" -R "$regex" -E "$exclude")
echo "test-arm64: done in $(($(date +%s) - t_start)) s"
