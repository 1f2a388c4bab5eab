#!/usr/bin/env python3
"""Keel's virtio-blk next to the host's limit and QEMU, in one run, on one 1 GiB image.

For 4 KiB random reads and writes at QD32 (O_DIRECT everywhere):
  raw    the host's own io_uring loop (blk_bench's "raw liburing" rows): the limit;
  keel   the test guest's blk-bench (polling) in keel-vmm, --disk IMG,cache=none;
  qemu   the same guest in QEMU microvm, virtio-blk-device, aio=io_uring, cache.direct=on
         (the command of guest/tools/qemu_virtio_bench.py).
Prints IOPS, MB/s and CPU time per I/O: of the whole VMM process (its vCPU thread spins in
the polling guest, so this is mostly guest time) and of its threads other than vCPUs (the
I/O thread and io_uring workers: what serving the disk costs the host). Then Keel as % of
raw and as a multiple of QEMU.

The three are interleaved (raw, keel, qemu for reads, then for writes) and the whole
sequence repeated --rounds times, so slow drifts of a shared host hit all three alike; every
round is printed, and the summary takes each row's median round (by IOPS).

    blk_compare.py --vmm build/vmm/keel-vmm --guest build/guest/keel-guest.elf \\
        --blk-bench build/bench/blk/blk_bench [--secs 10] [--rounds 3] [--dir /tmp]

The image lives in a temporary directory that is always removed. The machine this runs on
may be shared: run it when it is quiet and say what the load average was (printed).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "guest", "tools"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "guest"))
import qemu_virtio_bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
RWS = ("randread", "randwrite")


def thread_cpu(pid):
    """{tid: (comm, seconds of user + system time)} of every thread of `pid` right now."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def run_monitored(cmd, is_vcpu, timeout):
    """Runs cmd; returns (status, stdout, process CPU s, non-vCPU threads' CPU s)."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(p.stdout.read()))
    reader.start()
    last = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sample = thread_cpu(p.pid)
        if not sample:
            break
        last.update(sample)  # threads that exit keep their last sample
        try:
            with open("/proc/%d/stat" % p.pid) as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break
        except OSError:
            break
        time.sleep(0.05)
    else:
        p.kill()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    vmm = sum(cpu for tid, (comm, cpu) in last.items() if not is_vcpu(p.pid, tid, comm))
    return p.returncode, chunks[0] if chunks else "", ru.ru_utime + ru.ru_stime, vmm


def guest_result(output):
    m = re.search(r"^keeltest: blk-bench rw=\S+ qd=\d+ bs=\d+ iops=(\d+) mbps=([\d.]+) "
                  r"ios=(\d+)", output, re.M)
    if not m:
        sys.exit("no blk-bench result in:\n" + output[-3000:])
    return int(m.group(1)), float(m.group(2)), int(m.group(3))


def run_raw(blk_bench, img, secs, rw):
    row = "raw-read" if rw == "randread" else "raw-write"
    cmd = [blk_bench, "--file=" + img, "--rows=" + row, "--seconds=%d" % secs, "--qd=32",
           "--bs=4096"]
    print("$ " + " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"^raw liburing %s\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)" % rw, out, re.M)
    if not m:
        sys.exit("no raw %s row in:\n%s" % (rw, out))
    cpu = float(m.group(3))
    return (float(m.group(1)), float(m.group(2)), cpu, cpu)


def run_guest(name, cmd, secs, is_vcpu):
    print("$ " + " ".join(cmd), flush=True)
    status, out, cpu, vmm_cpu = run_monitored(cmd, is_vcpu, secs + 120)
    iops, mbps, ios = guest_result(out)
    if status not in (0, 1):  # QEMU's isa-debug-exit turns the guest's 0 into 1
        sys.exit("%s exited %d:\n%s" % (name, status, out[-3000:]))
    return (iops, mbps, cpu * 1e6 / ios, vmm_cpu * 1e6 / ios)


def keel_is_vcpu(pid, tid, comm):
    # keel-vmm's main thread is its I/O thread; io_uring's workers are iou-*; the rest vCPUs.
    return tid != pid and not comm.startswith("iou-")


def qemu_is_vcpu(pid, tid, comm):
    return comm.startswith("CPU ") and comm.endswith("/KVM")


def median_round(rounds):
    return sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]


def print_table(results):
    print("| workload | IOPS | MB/s | CPU µs/IO, process | CPU µs/IO, non-vCPU threads "
          "| Keel % of raw | Keel × QEMU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rw in RWS:
        raw, keel, qemu = (results[k][rw] for k in ("raw", "keel", "qemu"))
        for name, r in (("host raw io_uring", raw), ("keel-vmm", keel), ("QEMU", qemu)):
            extra = " | | |"
            if name == "keel-vmm":
                extra = " | %.0f%% | %.2f× |" % (100 * keel[0] / raw[0], keel[0] / qemu[0])
            print("| %s %s | %.0f | %.1f | %.2f | %.2f%s" % (name, rw, r[0], r[1], r[2], r[3],
                                                              extra))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--blk-bench", required=True)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the image goes (default: /tmp)")
    args = ap.parse_args()
    print("load average before: %s" % open("/proc/loadavg").read().strip(), flush=True)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="keel-blk-compare-", dir=args.dir) as d:
        img = os.path.join(d, "bench-1g.img")
        qemu_virtio_bench.prepare_image(img)
        for i in range(args.rounds):
            results = {"raw": {}, "keel": {}, "qemu": {}}
            for rw in RWS:
                append = "keeltest=blk-bench,qd=32,bs=4096,secs=%d,rw=%s" % (args.secs, rw)
                results["raw"][rw] = run_raw(args.blk_bench, img, args.secs, rw)
                results["keel"][rw] = run_guest("keel-vmm", [
                    args.vmm, "--kernel", args.guest, "--memory-mib", "128", "--cmdline",
                    append, "--disk", img + ",cache=none"], args.secs, keel_is_vcpu)
                results["qemu"][rw] = run_guest("qemu", qemu_virtio_bench.blk_command(
                    args.guest, img, append, extra=["-name", "bench,debug-threads=on"]),
                    args.secs, qemu_is_vcpu)
            print("\nround %d (load average %s)" % (
                i + 1, open("/proc/loadavg").read().split()[0]))
            print_table(results)
            print(flush=True)
            rounds.append(results)
    print("load average after: %s" % open("/proc/loadavg").read().strip())
    print("\nmedian of %d rounds (each row its median round by IOPS)" % len(rounds))
    print_table({k: {rw: median_round([r[k][rw] for r in rounds]) for rw in RWS}
                 for k in ("raw", "keel", "qemu")})


if __name__ == "__main__":
    main()
