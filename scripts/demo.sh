#!/bin/sh
# Keel's main job, as the README's quick start runs it: installs what is missing with apt,
# builds, starts keeld (the host agent) on temporary state, run and image directories, and
# through keelctl creates a network and a VM running Keel's test guest, shows it running and
# its console, stops it with the ACPI power button, and cleans everything up on exit (the VM,
# the network's bridge and tap, keeld, the directories), also after an error or Ctrl-C.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root: keeld creates a bridge and taps and opens /dev/kvm" >&2
  exit 1
fi
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build -j "$(nproc)" vmm/keel-vmm agent/keeld agent/keelctl guest/keel-guest.elf

tmp=$(mktemp -d /tmp/keel-demo.XXXXXX)
mkdir "$tmp/state" "$tmp/run" "$tmp/images"
cp build/guest/keel-guest.elf "$tmp/images/"
export KEEL_SOCKET="$tmp/run/keel.sock"
keeld_pid=""

keelctl() { build/agent/keelctl "$@"; }
run() {
  echo
  line="\$ keelctl"
  for a in "$@"; do
    case "$a" in
      *" "*) line="$line '$a'" ;;
      *) line="$line $a" ;;
    esac
  done
  echo "$line"
  keelctl "$@"
}

cleanup() {
  status=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$keeld_pid" ] && kill -0 "$keeld_pid" 2>/dev/null; then
    keelctl vm delete demo >/dev/null 2>&1
    keelctl net delete demo-net >/dev/null 2>&1
    kill "$keeld_pid"
    wait "$keeld_pid" 2>/dev/null
  fi
  if [ "$status" -ne 0 ] && [ -f "$tmp/keeld.log" ]; then
    echo "== keeld's log:" >&2
    tail -n 20 "$tmp/keeld.log" >&2
  fi
  rm -rf "$tmp"
  echo
  echo "== cleaned up (VM, network, keeld, $tmp)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== keeld --state-dir $tmp/state --run-dir $tmp/run --image-dir $tmp/images"
build/agent/keeld --state-dir "$tmp/state" --run-dir "$tmp/run" --image-dir "$tmp/images" \
  --socket "$KEEL_SOCKET" --vmm "$PWD/build/vmm/keel-vmm" >"$tmp/keeld.log" 2>&1 &
keeld_pid=$!
tries=0
until keelctl host >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -gt 100 ] || ! kill -0 "$keeld_pid" 2>/dev/null; then
    echo "demo: keeld did not come up" >&2
    exit 1
  fi
  sleep 0.1
done

vcpus=$(nproc)
[ "$vcpus" -gt 2 ] && vcpus=2
run host
run net create demo-net
run vm create demo --kernel keel-guest.elf --memory-mib 64 --vcpus "$vcpus" \
  --cmdline "console=ttyS0 keeltest=idle" --nic network=demo-net --label app=demo
tries=0
until keelctl vm console demo | grep -q "keeltest: idle"; do
  tries=$((tries + 1))
  [ "$tries" -gt 100 ] && break
  sleep 0.1
done
run vm list
run vm show demo
run vm console demo
run vm stop demo --timeout-s 30
run vm console demo
run vm delete demo
run net delete demo-net
echo
echo "== Keel ran a VM through keeld and keelctl"
