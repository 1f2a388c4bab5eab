#!/bin/sh
# Keel's whole test suite, as the README's quick start runs it (and .ci/run).
#
# Installs what is missing with apt, then builds Keel twice and runs every test in both:
#   build/      gcc 12, optimized with debug info
#   build-san/  clang 14 with AddressSanitizer + UndefinedBehaviorSanitizer, plus the libFuzzer
#               targets, which the `fuzz` suite runs briefly over their seed corpora
# Tests that need root, /dev/kvm or QEMU say why and are skipped without them.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh

jobs=$(nproc)
failed=0

# Runs one build's tests. On failure, ends with a digest of the failed assertions from meson's
# log, so that the last lines of a CI log say what broke even when the log is cut.
run_tests() {
  if meson test -C "$1" --print-errorlogs --num-processes "$jobs"; then
    return 0
  fi
  failed=1
  echo "==== $1: failed assertions (from $1/meson-logs/testlog.txt) ===="
  grep -n -A4 -E '^\[  FAILED  \]|: Failure$|^(Assertion|[A-Za-z]*)Error: |^FAIL: |^ERROR: ' \
    "$1/meson-logs/testlog.txt" | tail -n 120 || true
}

if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build -j "$jobs"
run_tests build

if [ ! -f build-san/build.ninja ]; then
  CC=clang CXX=clang++ meson setup build-san -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C build-san -j "$jobs"
run_tests build-san
exit "$failed"
