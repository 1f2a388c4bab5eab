#!/usr/bin/env python3
"""Boot benchmark: keel-vmm beside QEMU microvm on the same test guest ELF and memory size.

For each VMM, alternating runs (so both see the same machine load), it measures:
  - wall time from process start to the guest's first UART byte, and to process exit
    (`keeltest=hello`), median and p90 of N runs;
  - the VMM's own memory overhead: peak RSS (VmHWM) minus the guest RAM pages resident,
    with the guest idle (`keeltest=idle`), median of a few runs. Also the anonymous memory
    outside guest RAM (heap, stacks, data): what each additional VM really costs, because the
    executable's pages in the peak RSS are the page cache's, shared by every VMM of the host.

Usage: boot_bench.py --vmm build/vmm/keel-vmm --guest build/guest/keel-guest.elf [--runs 20]
"""

import argparse
import os
import select
import shutil
import statistics
import subprocess
import sys
import time

QEMU = "qemu-system-x86_64"


def keel_cmd(vmm, elf, mem, scenario):
    return [vmm, "--kernel", elf, "--memory-mib", str(mem), "--cmdline", "keeltest=" + scenario]


def qemu_cmd(vmm, elf, mem, scenario):
    return [QEMU, "-M", "microvm", "-enable-kvm", "-cpu", "host,-arch-capabilities",
            "-m", str(mem), "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", elf,
            "-append", "keeltest=" + scenario]


def time_boot(cmd, expect_status):
    """Returns (ms to first stdout byte, ms to exit)."""
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    first = None
    out = b""
    while True:
        chunk = os.read(p.stdout.fileno(), 4096)
        if first is None and chunk:
            first = time.perf_counter_ns()
        if not chunk:
            break
        out += chunk
    status = p.wait()
    t_exit = time.perf_counter_ns()
    p.stdout.close()
    if status != expect_status or b"PASS hello" not in out:
        raise RuntimeError("%s failed (status %d): %r" % (cmd[0], status, out[-200:]))
    return (first - t0) / 1e6, (t_exit - t0) / 1e6


def guest_ram_kib(pid, mem_mib, exe):
    """Resident and private KiB of the mapping(s) that hold guest RAM, and of everything else;
    and the resident KiB of each mapping of the executable `exe`, by permissions ("r-xp" is
    its text)."""
    ram_rss = other_private = 0
    exe_rss = {}
    size = rss = private = 0
    is_ram = False
    mapping = None

    def flush():
        nonlocal ram_rss, other_private
        if is_ram:
            ram_rss += rss
        else:
            other_private += private
        if mapping is not None:
            exe_rss[mapping] = exe_rss.get(mapping, 0) + rss

    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts[0].split("-")) == 2 and ":" not in parts[0]:
                flush()
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                size_kib = (hi - lo) // 1024
                is_ram = size_kib >= mem_mib * 1024 and len(parts) < 6  # anonymous, big
                mapping = parts[1] if len(parts) >= 6 and parts[5] == exe else None
                rss = private = 0
            elif parts[0] == "Rss:":
                rss = int(parts[1])
            elif parts[0] == "Anonymous:":
                private += int(parts[1])
    flush()
    return ram_rss, other_private, exe_rss


def memory_overhead(cmd, mem_mib):
    """(peak RSS - guest RAM resident, private non-RAM) in KiB, guest idle."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        buf = b""
        deadline = time.monotonic() + 30
        while b"keeltest: idle" not in buf:
            r, _, _ = select.select([p.stdout], [], [], max(0, deadline - time.monotonic()))
            if not r:
                raise RuntimeError("%s: guest did not reach idle" % cmd[0])
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("%s exited early" % cmd[0])
            buf += chunk
        time.sleep(0.3)
        with open("/proc/%d/status" % p.pid) as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        exe = os.path.realpath("/proc/%d/exe" % p.pid)
        ram_rss, other_private, exe_rss = guest_ram_kib(p.pid, mem_mib, exe)
        return hwm - ram_rss, other_private, hwm, ram_rss, exe_rss
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--memory-mib", type=int, default=128)
    args = ap.parse_args()
    have_qemu = shutil.which(QEMU) is not None
    peers = [("keel-vmm", keel_cmd, 0)] + ([("qemu microvm", qemu_cmd, 1)] if have_qemu else [])

    times = {name: ([], []) for name, _, _ in peers}
    for _ in range(args.runs):
        for name, make, status in peers:
            first, done = time_boot(make(args.vmm, args.guest, args.memory_mib, "hello"), status)
            times[name][0].append(first)
            times[name][1].append(done)
    mem = {}
    for name, make, _ in peers:
        samples = [memory_overhead(make(args.vmm, args.guest, args.memory_mib, "idle"),
                                   args.memory_mib) for _ in range(5)]
        mem[name] = tuple(statistics.median(s[i] for s in samples) for i in range(4))
        if name == "keel-vmm":
            perms = sorted({k for s in samples for k in s[4]})
            exe_rss = {k: statistics.median(s[4].get(k, 0) for s in samples) for k in perms}

    print("boot: test guest %s, %d MiB, %d runs each, alternating; load average %s" %
          (os.path.basename(args.guest), args.memory_mib, args.runs,
           " ".join(open("/proc/loadavg").read().split()[:3])))
    print("| VMM | first UART byte, median (p90) | exit, median (p90) | "
          "overhead: peak RSS - guest RAM | anonymous non-RAM |")
    print("|---|---|---|---|---|")
    for name, _, _ in peers:
        first, done = times[name]
        over, priv, _, _ = mem[name]
        print("| %s | %.1f ms (%.1f) | %.1f ms (%.1f) | %.2f MiB | %.2f MiB |" %
              (name, statistics.median(first), pct(first, 0.9), statistics.median(done),
               pct(done, 0.9), over / 1024, priv / 1024))
    print("keel-vmm executable resident, by mapping (median KiB): " +
          ", ".join("%s %d" % (k, v) for k, v in exe_rss.items()) + " (r-xp: text)")
    if have_qemu:
        k, q = statistics.median(times["keel-vmm"][0]), statistics.median(times["qemu microvm"][0])
        print("keel-vmm reaches the first byte in %.1f%% of QEMU's time (target <= 20%%); "
              "its overhead is %.2f MiB (target <= 2 MiB)" %
              (100 * k / q, mem["keel-vmm"][0] / 1024))
    return 0


if __name__ == "__main__":
    sys.exit(main())
