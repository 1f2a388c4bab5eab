#!/bin/sh
# Installs, from Debian 12's own archive, every package Keel needs to build, test and
# benchmark. Packages already present are left alone; nothing is downloaded from elsewhere.
set -eu

PACKAGES="
  g++ clang lld libclang-rt-14-dev libfuzzer-14-dev pkg-config meson ninja-build python3
  libabsl-dev libcapnp-dev capnproto libnl-3-dev libnl-route-3-dev liburing-dev
  libsqlite3-dev libseccomp-dev libgtest-dev libgmock-dev libbenchmark-dev
  qemu-system-x86 acpica-tools iproute2 procps
"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "keel: missing packages:$missing; run this as root (or: sudo apt-get install$missing)" >&2
    exit 1
  fi
  echo "keel: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
