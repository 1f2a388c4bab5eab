#!/usr/bin/env python3
"""The host side of Keel's test-guest network scenarios: a network namespace with a bridge
and a tap for the VMM, an ICMP pinger, and a raw-frame sender. Used by qemu_net_test.py
and guest/tools/qemu_virtio_bench.py (and meant for the keel-vmm tests too).

Run inside a namespace (ip netns exec NS python3 net_host.py ...):
    net_host.py ping DST COUNT            ICMP echo requests; prints "replies N"
    net_host.py blast IFACE DST_MAC SIZE SECS [PPS]
                                          sends SIZE-byte frames (sendmmsg on an
                                          AF_PACKET socket); prints "sent N"
"""

import atexit
import ctypes
import ctypes.util
import os
import signal
import socket
import struct
import subprocess
import sys
import time


def inet_csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(dst, count, timeout_s=1.0):
    """Sends `count` echo requests, one at a time; returns how many got a correct reply."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(timeout_s)
    ident = os.getpid() & 0xFFFF
    payload = bytes(range(0x20, 0x20 + 56))
    replies = 0
    for seq in range(1, count + 1):
        head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        s.sendto(struct.pack("!BBHHH", 8, 0, inet_csum(head + payload), ident, seq) + payload,
                 (dst, 0))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(2048)
            except socket.timeout:
                break
            icmp = data[(data[0] & 0xF) * 4:]
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if (kind, rid, rseq) == (0, ident, seq) and inet_csum(icmp) == 0 and \
                    icmp[8:] == payload:
                replies += 1
                break
    return replies


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


def blast(iface, dst_mac, size, secs, pps=0, batch=64):
    """Sends identical frames (to dst_mac, EtherType IPv4, zero payload) out of `iface`
    for `secs` seconds, at most `pps` a second (0: as fast as it goes). Returns the count."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((iface, 0))
    frame = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("020000000001") + \
        b"\x08\x00" + bytes(size - 14)
    buf = ctypes.create_string_buffer(frame, len(frame))
    iov = _Iovec(ctypes.cast(buf, ctypes.c_void_p), len(frame))
    msgs = (_Mmsghdr * batch)()
    for m in msgs:
        m.hdr.iov = ctypes.pointer(iov)
        m.hdr.iovlen = 1
    sent = 0
    start = time.monotonic()
    while True:
        now = time.monotonic()
        if now - start >= secs:
            break
        if pps and sent > pps * (now - start):
            time.sleep(0.0005)
            continue
        r = libc.sendmmsg(s.fileno(), msgs, batch, 0)
        if r < 0:
            err = ctypes.get_errno()
            if err in (11, 105):  # EAGAIN, ENOBUFS: the tap's queue is full
                continue
            raise OSError(err, os.strerror(err))
        sent += r
    s.close()
    return sent


class NetNs:
    """A network namespace holding bridge br0 (address host_cidr) with tap0 enslaved; the
    VMM runs inside it (prefix()) and opens tap0. Removed on exit, even after a failure."""

    def __init__(self, name, host_cidr="10.91.0.1/24"):
        self.name = name
        self.host_cidr = host_cidr

    def ip(self, *args):
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def __enter__(self):
        self.close()  # a stale one from a run that was killed
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        atexit.register(self.close)
        try:
            # No IPv6 chatter (router solicitations, MLD) on the guest's link.
            subprocess.run(self.prefix() + ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                            "net.ipv6.conf.default.disable_ipv6=1"],
                           check=True, capture_output=True)
            self.ip("link", "add", "br0", "type", "bridge")
            self.ip("tuntap", "add", "dev", "tap0", "mode", "tap")
            self.ip("link", "set", "tap0", "master", "br0")
            self.ip("addr", "add", self.host_cidr, "dev", "br0")
            for dev in ("lo", "br0", "tap0"):
                self.ip("link", "set", dev, "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Kills whatever still runs in the namespace (a VMM holding the tap), then removes
        it with its bridge and tap. Idempotent."""
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __exit__(self, *exc):
        self.close()

    def stat(self, dev, counter):
        r = subprocess.run(self.prefix() + ["cat", "/sys/class/net/%s/statistics/%s" %
                                            (dev, counter)],
                           check=True, capture_output=True, text=True)
        return int(r.stdout)

    def run_host(self, *args, timeout=60):
        """Runs this file's command line inside the namespace; returns its last output word."""
        r = subprocess.run(self.prefix() + [sys.executable, os.path.abspath(__file__), *args],
                           check=True, capture_output=True, text=True, timeout=timeout)
        return int(r.stdout.split()[-1])


def main(argv):
    if len(argv) >= 4 and argv[1] == "ping":
        print("replies", ping(argv[2], int(argv[3])))
        return 0
    if len(argv) >= 6 and argv[1] == "blast":
        pps = int(argv[6]) if len(argv) > 6 else 0
        print("sent", blast(argv[2], argv[3], int(argv[4]), float(argv[5]), pps))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
