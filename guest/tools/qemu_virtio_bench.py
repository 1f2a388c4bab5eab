#!/usr/bin/env python3
"""QEMU's peer numbers for Keel's virtio benchmarks: the test guest's blk-bench and
net-bench scenarios under QEMU microvm (modern virtio-mmio, KVM), run the same way the
keel-vmm benchmarks run them.

    qemu_virtio_bench.py path/to/keel-guest.elf [--secs 10] [--only blk|net] [--dir DIR]

blk: a 1 GiB raw image, fully written first (so writes do not pay for allocating extents),
     served with aio=io_uring and O_DIRECT; randread and randwrite, qd=32, bs=4096.
net: a tap on a bridge in a network namespace (created here, always removed); tx and rx
     at 64 and 1514 bytes. For rx the host sends with sendmmsg on an AF_PACKET socket bound
     to the tap as fast as it can (net_host.py blast), and the guest counts.
Prints each QEMU command line and the guest's result lines. Needs root for the network
part. Do not run it next to other heavy work: the numbers are only as quiet as the host.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "guest"))
import qemu_env  # noqa: E402
from net_host import NetNs  # noqa: E402

GIB = 1 << 30
GUEST_MAC = "52:54:00:4b:54:01"


def show(cmd):
    print("$ " + " ".join(a if " " not in a else "'%s'" % a for a in cmd), flush=True)


def results(output):
    for line in output.splitlines():
        if line.startswith("keeltest: ") and ("bench" in line or "FAIL" in line):
            print("  " + line, flush=True)


def prepare_image(path):
    chunk = bytes(1 << 20)
    with open(path, "wb") as f:
        for _ in range(GIB // len(chunk)):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def blk_command(elf, img, append, extra=()):
    """QEMU serving `img` to the guest as virtio-blk-device with aio=io_uring, O_DIRECT."""
    return qemu_env.qemu_command(
        elf, append, mem_mib=128,
        extra=qemu_env.MODERN_VIRTIO + [
            "-drive", "file=%s,if=none,id=d0,format=raw,aio=io_uring,cache.direct=on" % img,
            "-device", "virtio-blk-device,drive=d0", *extra])


def run_blk(elf, secs, workdir):
    img = os.path.join(workdir, "bench-1g.img")
    prepare_image(img)
    for rw in ("randread", "randwrite"):
        cmd = blk_command(elf, img, "keeltest=blk-bench,qd=32,bs=4096,secs=%d,rw=%s" % (secs, rw))
        show(cmd)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=secs + 60)
        results(r.stdout)


def net_cmd(ns, elf, append):
    return ns.prefix() + qemu_env.qemu_command(elf, append, mem_mib=128, extra=(
        qemu_env.MODERN_VIRTIO + [
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", "virtio-net-device,netdev=n0,mac=" + GUEST_MAC]))


def run_net(elf, secs):
    with NetNs("keelbench-%d" % os.getpid(), "10.0.0.1/24") as ns:
        for size in (64, 1514):
            cmd = net_cmd(ns, elf, "keeltest=net-bench,dir=tx,size=%d,secs=%d" % (size, secs))
            show(cmd)
            before = ns.stat("tap0", "rx_packets")
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=secs + 60)
            results(r.stdout)
            print("  host: tap0 rx_packets +%d" % (ns.stat("tap0", "rx_packets") - before))
        for size in (64, 1514):
            cmd = net_cmd(ns, elf, "keeltest=net-bench,dir=rx,size=%d,secs=%d" % (size, secs))
            show(cmd)
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    text=True)
            out = []
            ready = threading.Event()

            def read():
                for line in proc.stdout:
                    out.append(line)
                    if "net-bench rx ready" in line:
                        ready.set()
                ready.set()
            reader = threading.Thread(target=read)
            reader.start()
            ready.wait(60)
            blast = ns.prefix() + [sys.executable, os.path.join(
                os.path.dirname(qemu_env.__file__), "net_host.py"), "blast", "tap0", GUEST_MAC,
                str(size), str(secs + 2)]
            show(blast)
            dropped = ns.stat("tap0", "tx_dropped")
            b = subprocess.run(blast, capture_output=True, text=True, timeout=secs + 60)
            proc.wait(timeout=60)
            reader.join()
            results("".join(out))
            print("  host: %s, tap0 tx_dropped +%d" % (
                b.stdout.strip(), ns.stat("tap0", "tx_dropped") - dropped))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elf")
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--only", choices=("blk", "net"))
    ap.add_argument("--dir", help="where the 1 GiB image goes (default: a temporary "
                                  "directory under /tmp)")
    args = ap.parse_args()
    print("load average before: %s" % open("/proc/loadavg").read().strip())
    if args.only in (None, "blk"):
        with tempfile.TemporaryDirectory(prefix="keel-bench-", dir=args.dir) as d:
            run_blk(args.elf, args.secs, d)
    if args.only in (None, "net"):
        run_net(args.elf, args.secs)
    print("load average after: %s" % open("/proc/loadavg").read().strip())


if __name__ == "__main__":
    main()
