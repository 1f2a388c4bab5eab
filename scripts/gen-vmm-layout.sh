#!/bin/sh
# Regenerates vmm/hot-symbols.txt: the functions keel-vmm runs when it boots a guest, serves its
# devices and idles, in the order the linker is to lay them out first in keel-vmm's text.
#
# Why: the kernel maps file-backed text in 64 KiB fault-around windows, so every window that holds
# one function keel-vmm runs counts whole in each VMM's RSS. Packing the few hundred KiB that runs
# into a few windows keeps a VMM's own footprint small (bench/boot measures it).
#
# How: runs a gcc build's keel-vmm under valgrind's callgrind over the test guest's hello, idle
# and blk-rw scenarios and collects every function that executed (mangled names). Needs valgrind
# (apt install valgrind); the build links with the list through lld's --symbol-ordering-file.
#
# usage: scripts/gen-vmm-layout.sh [BUILD_DIR]   (default: build)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
vmm=$build/vmm/keel-vmm
elf=$build/guest/keel-guest.elf
[ -x "$vmm" ] && [ -f "$elf" ] || { echo "build keel-vmm and the test guest in $build first" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt install valgrind)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
truncate -s 64M "$tmp/disk.img"

profile() {  # name, then keel-vmm arguments
  name=$1; shift
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$tmp/$name.out" \
    "$vmm" --kernel "$elf" --memory-mib 128 "$@" >"$tmp/$name.log" 2>&1 || true
}
profile hello --cmdline keeltest=hello
profile blk --disk "$tmp/disk.img" --cmdline "keeltest=blk-rw,verify=1"
# idle never ends by itself: SIGTERM after the guest has settled (keel-vmm stops cleanly).
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$tmp/idle.out" \
  "$vmm" --kernel "$elf" --memory-mib 128 --cmdline keeltest=idle >"$tmp/idle.log" 2>&1 &
pid=$!
i=0
while ! grep -q "keeltest: idle" "$tmp/idle.log" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
sleep 1
kill -TERM $pid
wait $pid || true

for n in hello blk idle; do
  grep -q "keeltest:" "$tmp/$n.log" || { echo "the $n run failed:" >&2; cat "$tmp/$n.log" >&2; exit 1; }
done

# callgrind names a function the first time it appears as "fn=(id) name" (or cfn=, for callees).
# What booting and idling run comes first, then what only the disk path adds; unnamed code is
# dropped, and so are recursion-depth suffixes ('2).
names() {
  sed -n -E 's/^c?fn=\([0-9]+\) (.*)$/\1/p' "$@" | sed "s/'[0-9]*$//" | grep -v -E '^\(|^0x' |
    LC_ALL=C sort -u
}
names "$tmp/hello.out" "$tmp/idle.out" > "$tmp/boot.txt"
names "$tmp/blk.out" | LC_ALL=C comm -23 - "$tmp/boot.txt" > "$tmp/disk.txt"
# glibc picks string functions by CPU at startup (IFUNC), and valgrind's CPU is not the host's:
# for each one that ran, keep every variant (evex, avx512, avx2, ...) together with it.
nm --defined-only "$vmm" | awk '$2 ~ /^[tT]$/ {print $3}' | LC_ALL=C sort -u > "$tmp/all.txt"
sed -n -E 's/^(__(mem|str|stp|rawmem|wmem|wcs)[a-z]*)_(sse2|ssse3|sse4_?[12]?|avx|avx2|evex|erms).*$/\1_/p' \
  "$tmp/boot.txt" | LC_ALL=C sort -u > "$tmp/ifunc-bases.txt"
grep -F -f "$tmp/ifunc-bases.txt" "$tmp/all.txt" | grep -v -x -F -f "$tmp/boot.txt" > "$tmp/ifunc.txt" || true
cat "$tmp/boot.txt" "$tmp/ifunc.txt" "$tmp/disk.txt" | awk '!seen[$0]++' > vmm/hot-symbols.txt
echo "vmm/hot-symbols.txt: $(wc -l < vmm/hot-symbols.txt) functions"
