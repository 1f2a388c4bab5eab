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

if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build -j "$jobs"
meson test -C build --print-errorlogs --num-processes "$jobs"

if [ ! -f build-san/build.ninja ]; then
  CC=clang CXX=clang++ meson setup build-san -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C build-san -j "$jobs"
meson test -C build-san --print-errorlogs --num-processes "$jobs"
