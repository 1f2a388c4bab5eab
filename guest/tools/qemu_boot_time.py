#!/usr/bin/env python3
"""Measures how fast QEMU microvm boots Keel's test guest: wall time from spawning QEMU to
the first byte on the guest's UART, and to QEMU's exit. A baseline for keel-vmm.

    qemu_boot_time.py path/to/keel-guest.elf [--runs 20] [--append keeltest=hello]

Prints the median, minimum and maximum of each over the runs. Needs qemu-system-x86_64
and /dev/kvm.
"""

import argparse
import os
import statistics
import subprocess
import time


def one_run(elf, append):
    cmd = ["qemu-system-x86_64", "-M", "microvm", "-enable-kvm", "-cpu",
           "host,-arch-capabilities", "-m", "32", "-nodefaults", "-no-user-config",
           "-nographic", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
           "-kernel", elf, "-append", append]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    first = os.read(proc.stdout.fileno(), 1)
    first_byte = time.monotonic() - start
    while os.read(proc.stdout.fileno(), 4096):
        pass
    proc.wait()
    exited = time.monotonic() - start
    if not first:
        raise RuntimeError("the guest printed nothing")
    return first_byte, exited


def summary(name, values_s):
    ms = sorted(v * 1000 for v in values_s)
    return "%-16s median %7.2f ms   min %7.2f ms   max %7.2f ms" % (
        name, statistics.median(ms), ms[0], ms[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elf")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--append", default="keeltest=hello")
    args = ap.parse_args()
    runs = [one_run(args.elf, args.append) for _ in range(args.runs)]
    print("QEMU microvm, %d runs, -append '%s'" % (args.runs, args.append))
    print(summary("first UART byte", [r[0] for r in runs]))
    print(summary("exit", [r[1] for r in runs]))


if __name__ == "__main__":
    main()
