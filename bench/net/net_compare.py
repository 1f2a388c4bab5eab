#!/usr/bin/env python3
"""virtio-net throughput in one run: the host's raw tap rate (the limit), the test guest in
keel-vmm, and the test guest in QEMU microvm (virtio-net-device on the same kind of tap),
for 64- and 1514-byte frames, guest transmit (tx) and receive (rx).

    sudo python3 bench/net/net_compare.py --vmm build/vmm/keel-vmm \\
        --guest build/guest/keel-guest.elf --tap-bench build/bench/net/tap_bench [--secs 5]

Topology (made here, always removed): a network namespace with bridge br0 and tap0 on it.
tx: the guest (net-bench dir=tx) sends UDP frames to a MAC no bridge knows; raw: tap_bench
writes the same frames with writev. rx: tap_bench blasts frames out of tap0 (AF_PACKET
sendmmsg) and the guest (net-bench dir=rx) counts them; raw: tap_bench reads them with
readv. Rates count frames the guest (or raw reader/writer) handled, frame bytes only. The
raw writer sends the very frame the guest sends (valid UDP/IPv4, checksums filled in), so the
bridge and netfilter do the same work for both. A guest that polls keeps its vCPU thread busy,
so on receive three threads (frame source, VMM I/O thread, vCPU) share the CPUs where the raw
reader has two: rx rows also measure the raw reader beside one busy-looping thread ("raw, a
CPU busy"), the raw rate under the CPU budget a polling guest leaves.
Each case runs --rounds times, raw / keel-vmm / QEMU alternating, and the table shows each
one's median run. The test guest does not negotiate TSO, so there are no TSO-sized rows.
Needs root, /dev/kvm, qemu-system-x86_64. The machine is shared: run it when quiet and
read the load averages printed around it, or give everything the same priority over other
jobs with --nice -15 (a VMM's vCPU and I/O threads then get a CPU each instead of sharing
one). --dirs tx and --sizes 1514 narrow a run to one row.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "guest"))
import qemu_env  # noqa: E402
from net_host import NetNs  # noqa: E402

GUEST_MAC = "52:54:00:4b:54:01"
RESULT = re.compile(r"(?:keeltest: net-bench dir=\w+|\w+) size=(\d+) pps=(\d+) gbps=([\d.]+)")


def show(cmd):
    print("$ " + " ".join(a if " " not in a else "'%s'" % a for a in cmd), flush=True)


def parse(text):
    for line in text.splitlines():
        m = RESULT.search(line)
        if m and "ready" not in line:
            return int(m.group(2)), float(m.group(3))
    return None


class Runner:
    def __init__(self, args, ns):
        self.args = args
        self.ns = ns

    def keel_cmd(self, append):
        return self.ns.prefix() + [self.args.vmm, "--kernel", self.args.guest, "--memory-mib",
                                   "128", "--cmdline", append, "--net",
                                   "tap=tap0,mac=" + GUEST_MAC, "--boot-timeout-s",
                                   str(self.args.secs + 90)]

    def qemu_cmd(self, append):
        return self.ns.prefix() + qemu_env.qemu_command(
            self.args.guest, append, mem_mib=128, extra=qemu_env.MODERN_VIRTIO + [
                "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                "-device", "virtio-net-device,netdev=n0,mac=" + GUEST_MAC])

    def tap_bench(self, *args):
        return self.ns.prefix() + [self.args.tap_bench, *map(str, args)]

    def run(self, cmd):
        show(cmd)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=self.args.secs + 120)
        got = parse(r.stdout)
        for line in r.stdout.splitlines():
            if "net-bench detail" in line:
                print("  " + line.strip(), flush=True)
        if got is None:
            print("  no result:\n" + r.stdout[-2000:] + r.stderr[-2000:], flush=True)
        else:
            print("  pps=%d gbps=%.2f" % got, flush=True)
        return got

    def run_rx(self, cmd, size, ready_marker):
        """Starts the receiver `cmd`, blasts frames at it once it is ready, returns its
        result."""
        show(cmd)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        out = []
        ready = threading.Event()

        def read():
            for line in proc.stdout:
                out.append(line)
                if ready_marker in line:
                    ready.set()
            ready.set()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        ready.wait(60)
        blast = self.tap_bench("blast", "tap0", GUEST_MAC, size, self.args.secs + 2)
        show(blast)
        dropped = self.ns.stat("tap0", "tx_dropped")
        b = subprocess.run(blast, capture_output=True, text=True, timeout=self.args.secs + 60)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(5)
        got = parse("".join(out))
        print("  %s; tap0 tx_dropped +%d" % (b.stdout.strip(),
                                             self.ns.stat("tap0", "tx_dropped") - dropped))
        if got is None:
            print("  no result:\n" + "".join(out)[-2000:], flush=True)
        else:
            print("  pps=%d gbps=%.2f" % got, flush=True)
        return got


def median(values):
    """The median run by packet rate (None if any run failed to report)."""
    if not values or any(v is None for v in values):
        return None
    return sorted(values)[len(values) // 2]


def fmt(value, size):
    if value is None:
        return "—"
    pps, gbps = value
    if size <= 128:
        return "%.2f Mpps" % (pps / 1e6)
    return "%.2f Gbit/s (%.0f kpps)" % (gbps, pps / 1e3)


def ratio(a, b, size, pct):
    if a is None or b is None or b[0] == 0:
        return "—"
    r = a[0] / b[0]
    return "%.0f%%" % (100 * r) if pct else "%.2f×" % r


def raw_modes(r, args, sizes):
    modes = ("write", "write-pair", "write-uring")
    table = []
    for size in sizes:
        results = {m: [] for m in modes}
        for _ in range(args.rounds):
            for m in modes:
                results[m].append(r.run(r.tap_bench(m, "tap0", size, args.secs)))
        table.append((size, [median(results[m]) for m in modes]))
    print("load average after: %s" % open("/proc/loadavg").read().strip())
    print()
    print("raw tap transmit, median of %d alternating rounds of %d s each" % (args.rounds,
                                                                             args.secs))
    print("| frame | write | write-pair | write-uring |")
    print("|---|---|---|---|")
    for size, values in table:
        print("| %d B | %s |" % (size, " | ".join(fmt(v, size) for v in values)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--tap-bench", required=True)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--sizes", default="64,1514")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of each (alternating); the table shows the median")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--dirs", default="tx,rx", help="directions to run (tx, rx or both)")
    ap.add_argument("--nice", type=int, default=None,
                    help="run everything (raw, keel-vmm, QEMU) at this nice value, e.g. -15 on "
                    "a shared host so other jobs do not decide where the VMM threads run")
    ap.add_argument("--raw-modes", action="store_true",
                    help="instead: the host's raw transmit alone, three ways (tap_bench write, "
                    "write-pair: frames written by another CPU, write-uring: writev batched "
                    "through io_uring), to see what crossing CPUs and batching change")
    args = ap.parse_args()
    args.vmm, args.guest, args.tap_bench = map(os.path.abspath,
                                               (args.vmm, args.guest, args.tap_bench))
    if os.geteuid() != 0:
        sys.exit("net_compare.py needs root (network namespace, tap)")
    if args.nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        print("nice %d (children inherit it)" % os.getpriority(os.PRIO_PROCESS, 0), flush=True)
    have_qemu = not args.no_qemu and shutil.which(qemu_env.QEMU) is not None
    print("load average before: %s" % open("/proc/loadavg").read().strip(), flush=True)
    rows = []
    with NetNs("keelnetbench-%d" % os.getpid(), "10.0.0.1/24") as ns:
        r = Runner(args, ns)
        sizes = list(map(int, args.sizes.split(",")))
        if args.raw_modes:
            raw_modes(r, args, sizes)
            return
        for direction in [d for d in ("tx", "rx") if d in args.dirs.split(",")]:
            for size in sizes:
                bench = "keeltest=net-bench,dir=%s,size=%d,secs=%d" % (direction, size, args.secs)
                results = {"raw": [], "raw_busy": [], "keel": [], "qemu": []}
                # Rounds alternate raw, keel-vmm and QEMU so each sees the same mix of load.
                for _ in range(args.rounds):
                    if direction == "tx":
                        results["raw"].append(r.run(r.tap_bench("write", "tap0", size, args.secs)))
                        results["keel"].append(r.run(r.keel_cmd(bench)))
                        if have_qemu:
                            results["qemu"].append(r.run(r.qemu_cmd(bench)))
                    else:
                        results["raw"].append(r.run_rx(r.tap_bench("read", "tap0", args.secs),
                                                       size, "read ready"))
                        spinner = subprocess.Popen(["sh", "-c", "while :; do :; done"])
                        try:
                            print("(with a busy-looping thread beside it)", flush=True)
                            results["raw_busy"].append(
                                r.run_rx(r.tap_bench("read", "tap0", args.secs), size,
                                         "read ready"))
                        finally:
                            spinner.kill()
                            spinner.wait()
                        results["keel"].append(r.run_rx(r.keel_cmd(bench), size,
                                                        "net-bench rx ready"))
                        if have_qemu:
                            results["qemu"].append(r.run_rx(r.qemu_cmd(bench), size,
                                                            "net-bench rx ready"))
                rows.append((direction, size, median(results["raw"]),
                             median(results["raw_busy"]) if results["raw_busy"] else None,
                             median(results["keel"]), median(results["qemu"])))
    print("load average after: %s" % open("/proc/loadavg").read().strip())
    print()
    print("median of %d alternating rounds of %d s each" % (args.rounds, args.secs))
    print("| direction | frame | raw tap | raw, a CPU busy | keel-vmm | QEMU microvm | Keel % of raw "
          "| Keel % of raw, a CPU busy | Keel × QEMU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for direction, size, raw, raw_busy, keel, qemu in rows:
        busy = raw_busy is not None
        print("| %s | %d B | %s | %s | %s | %s | %s | %s | %s |" % (
            direction, size, fmt(raw, size), fmt(raw_busy, size) if busy else "—",
            fmt(keel, size), fmt(qemu, size), ratio(keel, raw, size, True),
            ratio(keel, raw_busy, size, True) if busy else "—", ratio(keel, qemu, size, False)))


if __name__ == "__main__":
    main()
