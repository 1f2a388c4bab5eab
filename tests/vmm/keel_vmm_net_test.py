#!/usr/bin/env python3
"""keel-vmm's virtio-net end to end on the real /dev/kvm and a real tap.

Each test builds its own topology with unique names and removes it afterwards, even on
failure:

    namespace VM  (keel-vmm runs here)        namespace PEER
      br0 ── tap0 (the VM's NIC)
       └──── veth-a  <──────────────────────>  veth-b  10.93.N.1/24

The guest (10.93.N.2) runs keeltest=net-ping: it pings the peer namespace, then serves
echo requests while the peer namespace pings it.

Usage: keel_vmm_net_test.py KEEL_VMM GUEST_ELF [unittest options]
Exits 77 (meson's "skipped") when not root, without /dev/kvm, /dev/net/tun or iproute2.
"""

import atexit
import itertools
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guest"))
import net_host  # noqa: E402
from console_lines import ConsoleLines  # noqa: E402

VMM = ELF = None
TIMEOUT_S = 60
_serial = itertools.count(1)


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


class Topology:
    """Two namespaces joined through a bridge and a veth pair, plus the VM's tap."""

    def __init__(self):
        n = next(_serial)
        tag = "%d-%d" % (os.getpid() % 100000, n)
        self.vm_ns = "kvn-vm-" + tag
        self.peer_ns = "kvn-peer-" + tag
        self.subnet = 10 + n % 200
        self.peer_ip = "10.93.%d.1" % self.subnet
        self.guest_ip = "10.93.%d.2" % self.subnet

    def __enter__(self):
        atexit.register(self.close)
        try:
            for ns in (self.vm_ns, self.peer_ns):
                sh("ip", "netns", "add", ns)
                # No IPv6 chatter on the guest's link.
                sh("ip", "netns", "exec", ns, "sysctl", "-qw",
                   "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
            vm = ["ip", "-n", self.vm_ns]
            sh(*vm, "link", "add", "br0", "type", "bridge")
            for tap in ("tap0", "tap1"):
                sh(*vm, "tuntap", "add", "dev", tap, "mode", "tap")
                sh(*vm, "link", "set", tap, "master", "br0")
            sh(*vm, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b")
            sh(*vm, "link", "set", "veth-a", "master", "br0")
            sh(*vm, "link", "set", "veth-b", "netns", self.peer_ns)
            for dev in ("lo", "br0", "tap0", "tap1", "veth-a"):
                sh(*vm, "link", "set", dev, "up")
            peer = ["ip", "-n", self.peer_ns]
            sh(*peer, "addr", "add", self.peer_ip + "/24", "dev", "veth-b")
            for dev in ("lo", "veth-b"):
                sh(*peer, "link", "set", dev, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Kills what still runs in the namespaces, then deletes them (and with them the
        bridge, tap and veth pair). Idempotent."""
        for ns in (self.vm_ns, self.peer_ns):
            r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def in_vm_ns(self, cmd):
        return ["ip", "netns", "exec", self.vm_ns, *cmd]

    def ping_guest(self, count):
        r = subprocess.run(["ip", "netns", "exec", self.peer_ns, sys.executable,
                            net_host.__file__, "ping", self.guest_ip, str(count)],
                           check=True, capture_output=True, text=True, timeout=TIMEOUT_S)
        return int(r.stdout.split()[-1])


# Opens tap0 as fd 3 (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, as Keel's agent does) and execs
# the command line that follows with it inherited.
OPEN_TAP_AND_EXEC = """
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"tap0", 0x0002 | 0x1000 | 0x4000))
if fd != 3:
    os.dup2(fd, 3)
os.set_inheritable(3, True)
os.execv(sys.argv[1], sys.argv[1:])
"""


class Vmm(ConsoleLines):
    """keel-vmm in the VM namespace, its serial output read line by line."""

    def __init__(self, topo, scenario, net_spec="tap=tap0", open_tap_first=False):
        cmd = [VMM, "--kernel", ELF, "--cmdline", "keeltest=" + scenario, "--boot-timeout-s", "40"]
        for spec in net_spec.split(" "):
            cmd += ["--net", spec]
        if open_tap_first:
            cmd = [sys.executable, "-c", OPEN_TAP_AND_EXEC, *cmd]
        self.proc = subprocess.Popen(topo.in_vm_ns(cmd), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        super().__init__(self.proc.stdout, timeout=TIMEOUT_S)

    def finish(self):
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.drain()
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, err


class NetPingTest(unittest.TestCase):
    def ping_both_ways(self, extra="", net_spec="tap=tap0", open_tap_first=False):
        with Topology() as topo:
            scenario = "net-ping,ip=%s,peer=%s,count=3,serve_s=8%s" % (
                topo.guest_ip, topo.peer_ip, extra)
            vmm = Vmm(topo, scenario, net_spec, open_tap_first)
            try:
                replies = 0
                if vmm.wait_for("keeltest: net-ping serving") is not None:
                    replies = topo.ping_guest(3)
            finally:
                code, err = vmm.finish()
            out = "\n".join(vmm.lines) + "\n" + err
            self.assertIn("keeltest: net-ping 3/3 replies from " + topo.peer_ip,
                          " ".join(vmm.lines), out)
            self.assertEqual(replies, 3, out)
            answered = [l for l in vmm.lines if l.startswith("keeltest: net-ping answered")]
            self.assertTrue(answered and int(answered[0].split()[3]) >= 3, out)
            self.assertIn("keeltest: PASS net-ping", vmm.lines, out)
            self.assertEqual(code, 0, out)
            return vmm.lines

    def test_polling_guest_pings_and_is_pinged(self):
        lines = self.ping_both_ways()
        self.assertTrue(any("mrg_rxbuf=1" in l and "event_idx=1" in l for l in lines))

    def test_interrupt_driven_guest(self):
        lines = self.ping_both_ways(",irq=1")
        self.assertTrue(any(l.startswith("keeltest: net dev") and "irq=1" in l for l in lines))

    def test_without_event_idx_and_mergeable_buffers(self):
        lines = self.ping_both_ways(",irq=1,event_idx=0,mrg_rxbuf=0")
        self.assertTrue(any("mrg_rxbuf=0" in l and "event_idx=0" in l for l in lines))

    def test_inherited_tap_fd_and_chosen_mac(self):
        # The agent's way: the tap is opened by someone else and keel-vmm inherits the fd.
        lines = self.ping_both_ways(",irq=1", net_spec="fd=3,mac=02:4b:45:45:4c:07",
                                    open_tap_first=True)
        self.assertTrue(any(l.startswith("keeltest: net dev") and "mac=02:4b:45:45:4c:07" in l
                            for l in lines), lines)

    def test_second_nic(self):
        lines = self.ping_both_ways(",nic=1", net_spec="tap=tap0 tap=tap1,mtu=1400")
        devices = [l for l in lines if l.startswith("keeltest: virtio 0x") and "id=1 " in l]
        self.assertEqual(len(devices), 2, lines)
        self.assertTrue(any(l.startswith("keeltest: net dev 1 ") and "mtu=1400" in l
                            for l in lines), lines)

    def test_missing_tap_is_a_clear_error(self):
        with Topology() as topo:
            r = subprocess.run(topo.in_vm_ns([VMM, "--kernel", ELF, "--net", "tap=nosuchtap"]),
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("keel-vmm: error: --net tap=nosuchtap"), r.stderr)

    def test_tap_in_use_is_a_clear_error(self):
        with Topology() as topo:
            # The first VMM holds tap0 while a second one tries to open it.
            first = Vmm(topo, "idle")
            try:
                self.assertIsNotNone(first.wait_for("keel-guest: booted"), first.lines)
                r = subprocess.run(topo.in_vm_ns([VMM, "--kernel", ELF, "--net", "tap=tap0"]),
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=TIMEOUT_S)
            finally:
                first.proc.kill()
                first.finish()
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertIn("--net tap=tap0: tap tap0 is in use", r.stderr)

    def test_fd_that_is_not_a_tap_is_a_clear_error(self):
        with open(os.devnull) as f:
            fd = f.fileno()
            r = subprocess.run([VMM, "--kernel", ELF, "--net", "fd=%d" % fd],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=TIMEOUT_S, pass_fds=(fd,))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.splitlines()[0:1],
                         ["keel-vmm: error: --net fd=%d: not a tap device: " % fd +
                          r.stderr.split("not a tap device: ", 1)[-1].rstrip("\n")], r.stderr)


if __name__ == "__main__":
    VMM, ELF = (os.path.abspath(p) for p in sys.argv[1:3])
    if os.geteuid() != 0:
        print("skipped: needs root (network namespaces, taps)")
        sys.exit(77)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("skipped: /dev/kvm is missing or not accessible")
        sys.exit(77)
    if not os.path.exists("/dev/net/tun") or shutil.which("ip") is None:
        print("skipped: needs /dev/net/tun and iproute2")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0], *sys.argv[3:]], verbosity=2)
