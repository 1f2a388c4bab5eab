#!/usr/bin/env python3
"""Keel's test guest on QEMU microvm's virtio-net (modern virtio-mmio) through a tap on a
bridge in a network namespace this test creates and always removes: net-ping both ways
(polling and interrupt-driven), net-bench briefly in both directions.

    qemu_net_test.py path/to/keel-guest.elf [unittest options]

Exits 77 (meson's "skipped") without qemu-system-x86_64, /dev/kvm, root, /dev/net/tun or
iproute2.
"""

import os
import re
import shutil
import subprocess
import sys
import unittest

import qemu_env
from console_lines import ConsoleLines
from net_host import NetNs
from qemu_env import MODERN_VIRTIO, guest_status, result_lines

GUEST_ELF = None  # set from argv in main
GUEST_MAC = "52:54:00:4b:54:01"
HOST_IP = "10.91.0.1"
GUEST_IP = "10.91.0.2"
NIC = ["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
       "-device", "virtio-net-device,netdev=n0,mac=" + GUEST_MAC]


class Guest(ConsoleLines):
    """QEMU running the guest inside the namespace, its output read line by line."""

    def __init__(self, ns, append):
        cmd = ns.prefix() + qemu_env.qemu_command(GUEST_ELF, append, mem_mib=64,
                                                  extra=MODERN_VIRTIO + NIC)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     text=True)
        super().__init__(self.proc.stdout, timeout=30)

    def finish(self, timeout=60):
        """Waits for the guest to exit; returns (status, all output lines)."""
        status = self.proc.wait(timeout=timeout)
        self.drain()
        return status, self.lines

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


class NetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ns = NetNs("keeltest-%d" % os.getpid(), HOST_IP + "/24").__enter__()
        cls.addClassCleanup(cls.ns.close)

    def guest(self, append):
        g = Guest(self.ns, append)
        self.addCleanup(g.kill)
        return g


class NetPing(NetTest):
    def ping_both_ways(self, extra=""):
        g = self.guest("keeltest=net-ping,ip=%s,peer=%s,count=3,serve_s=3%s" %
                       (GUEST_IP, HOST_IP, extra))
        self.assertIsNotNone(g.wait_for("keeltest: net-ping serving"), g.lines)
        replies = self.ns.run_host("ping", GUEST_IP, "3")
        status, lines = g.finish()
        self.assertEqual(status, guest_status(0), lines)
        self.assertEqual(replies, 3)
        results = result_lines(lines)
        for seq in (1, 2, 3):
            self.assertIn("keeltest: net-ping reply from %s seq=%d" % (HOST_IP, seq), results)
        answered = next(l for l in results if l.startswith("keeltest: net-ping answered "))
        self.assertGreaterEqual(int(answered.split()[3]), 3)
        self.assertEqual(results[-1], "keeltest: PASS net-ping")
        return lines

    def test_polling(self):
        lines = self.ping_both_ways()
        dev = next(l for l in lines if l.startswith("keeltest: net dev 0 "))
        self.assertIn(" mac=%s " % GUEST_MAC, dev)
        self.assertIn(" link=up ", dev)

    def test_interrupt_driven(self):
        lines = self.ping_both_ways(",irq=1")
        irqs = re.search(r"irqs=(\d+)", next(l for l in lines if "net-ping dropped" in l))
        self.assertGreater(int(irqs.group(1)), 0)

    def test_without_event_idx_and_mergeable_buffers(self):
        lines = self.ping_both_ways(",irq=1,event_idx=0,mrg_rxbuf=0")
        dev = next(l for l in lines if l.startswith("keeltest: net dev 0 "))
        self.assertIn(" mrg_rxbuf=0 ", dev)
        self.assertIn(" event_idx=0 ", dev)

    def test_silent_peer_fails(self):
        g = self.guest("keeltest=net-ping,ip=%s,peer=10.91.0.77,count=1,serve_s=0" % GUEST_IP)
        status, lines = g.finish()
        self.assertEqual(status, guest_status(1))
        self.assertEqual(result_lines(lines)[-1],
                         "keeltest: FAIL net-ping: no ARP reply from the peer within 5 s")

    def test_peer_outside_the_subnet_fails(self):
        g = self.guest("keeltest=net-ping,ip=%s,peer=10.92.0.1" % GUEST_IP)
        status, lines = g.finish()
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1], r"peer must be another address in ip's subnet")


class NetBench(NetTest):
    LINE = r"^keeltest: net-bench dir=%s size=%d pps=\d+ gbps=\d+\.\d\d packets=(\d+)$"

    def tx(self, size, extra=""):
        before = self.ns.stat("tap0", "rx_packets")
        g = self.guest("keeltest=net-bench,dir=tx,size=%d,secs=1%s" % (size, extra))
        status, lines = g.finish()
        self.assertEqual(status, guest_status(0), lines)
        m = re.match(self.LINE % ("tx", size), result_lines(lines)[-3])
        self.assertIsNotNone(m, lines)
        self.assertGreater(int(m.group(1)), 0)
        self.assertGreaterEqual(self.ns.stat("tap0", "rx_packets") - before, int(m.group(1)))

    def test_tx_frames_reach_the_tap(self):
        self.tx(64)

    def test_tx_with_checksum_offload(self):
        self.tx(1514, ",offload=1")

    def test_rx_counts_frames_from_the_tap(self):
        g = self.guest("keeltest=net-bench,dir=rx,size=1514,secs=1")
        self.assertIsNotNone(g.wait_for("keeltest: net-bench rx ready"), g.lines)
        sent = self.ns.run_host("blast", "tap0", GUEST_MAC, "1514", "2", "20000")
        status, lines = g.finish()
        self.assertEqual(status, guest_status(0), lines)
        m = re.match(self.LINE % ("rx", 1514), result_lines(lines)[-3])
        self.assertIsNotNone(m, lines)
        self.assertGreater(int(m.group(1)), 0)
        self.assertLessEqual(int(m.group(1)), sent)


def net_skip_reason():
    if os.geteuid() != 0:
        return "needs root for network namespaces and taps"
    if shutil.which("ip") is None or not os.path.exists("/dev/net/tun"):
        return "needs iproute2 and /dev/net/tun"
    return None


def set_elf(path):
    global GUEST_ELF
    GUEST_ELF = path


if __name__ == "__main__":
    sys.exit(qemu_env.main(__doc__, set_elf, net_skip_reason))
