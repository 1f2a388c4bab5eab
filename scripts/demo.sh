#!/bin/sh
# Keel's main job on an embedded default, as the README's quick start runs it: installs what
# is missing with apt, builds, and boots the project's test guest in keel-vmm on /dev/kvm,
# showing its console (ACPI tables, every vCPU brought up, an interrupt through the IOAPIC).
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build -j "$(nproc)" vmm/keel-vmm guest/keel-guest.elf

vcpus=$(nproc)
[ "$vcpus" -gt 4 ] && vcpus=4
for scenario in acpi smp irq; do
  echo "== keel-vmm --vcpus $vcpus --memory-mib 128: keeltest=$scenario"
  build/vmm/keel-vmm --kernel build/guest/keel-guest.elf --vcpus "$vcpus" --memory-mib 128 \
    --cmdline "console=ttyS0 keeltest=$scenario" --boot-timeout-s 30
done
echo "== every scenario passed"
