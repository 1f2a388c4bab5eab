"""End-to-end tests of keel-vmm's virtio-blk disks on the real /dev/kvm: the test guest's
blk-rw scenario writes its pattern through the device and the image is checked on the host
(tests/guest/blk_pattern.py); read-only disks, both cache modes, several disks, image
locking between VMMs, and durability of flushed writes when keel-vmm is killed.

Usage: keel_vmm_blk_test.py KEEL_VMM GUEST_ELF GUEST_BZIMAGE [unittest options]
"""

import hashlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guest"))
import blk_pattern  # noqa: E402

VMM = ELF = BZIMAGE = None
TIMEOUT_S = 120
MIB = 1 << 20


def boot(scenario, *extra, kernel=None):
    r = subprocess.run([VMM, "--kernel", kernel or ELF, "--cmdline", "keeltest=" + scenario,
                        "--boot-timeout-s", "90", *extra], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    return r.returncode, r.stdout.splitlines(), r.stderr


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Vmm:
    """A keel-vmm running in the background; killed and reaped on exit."""

    def __init__(self, *args):
        self.p = subprocess.Popen([VMM, *args], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self._buf = b""

    def wait_for_line(self, wanted, timeout=TIMEOUT_S):
        """Reads the guest console until the line `wanted`; returns False on EOF or timeout."""
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0, deadline - time.monotonic())):
                    continue
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    return False
                self._buf += chunk
                while b"\n" in self._buf:
                    line, self._buf = self._buf.split(b"\n", 1)
                    self.lines.append(line.decode(errors="replace"))
                    if self.lines[-1] == wanted:
                        return True
            return False
        finally:
            sel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.p.stdout.close()
        self.p.stderr.close()


class BlkTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keel-blk-test-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def image(self, name="disk.img", size=64 * MIB, pattern=False):
        path = os.path.join(self.dir, name)
        if pattern:
            blk_pattern.write_image(path, size)
        else:
            with open(path, "wb") as f:
                f.truncate(size)
        return path

    def assert_pattern(self, path, lines=()):
        discarded, zeroed = blk_pattern.special_ranges(lines)
        problems = blk_pattern.check_image(path, discarded, zeroed)
        self.assertEqual(problems, [], path)

    def assert_rw(self, scenario, *disk_args, kernel=None):
        code, lines, err = boot(scenario, *disk_args, kernel=kernel)
        self.assertIn("keeltest: PASS blk-rw", lines, "\n".join(lines) + err)
        self.assertEqual(code, 0, err)
        self.assertTrue(any(l.startswith("keeltest: blk-rw ") and "len_mismatches=0" in l
                            for l in lines), lines)
        return lines

    def test_pattern_reaches_the_image(self):
        img = self.image()
        lines = self.assert_rw("blk-rw", "--disk", img)
        self.assertIn("keeltest: blk flush ok", lines)
        self.assertIn("keeltest: blk discard 2048+2048 ok", lines)
        self.assertIn("keeltest: blk write-zeroes 4096+2048 ok", lines)
        self.assertIn("keeltest: blk past-end ioerr ok", lines)
        self.assertIn("keeltest: blk id keel-disk0", lines)
        self.assert_pattern(img, lines)

    def test_interrupt_driven_with_indirect_descriptors(self):
        img = self.image()
        lines = self.assert_rw("blk-rw,irq=1,indirect=1", "--disk", img)
        dev = next(l for l in lines if l.startswith("keeltest: blk dev 0"))
        self.assertIn("indirect=1", dev)
        self.assertIn("irq=1", dev)
        self.assert_pattern(img, lines)

    def test_bzimage_guest_without_event_idx(self):
        img = self.image()
        lines = self.assert_rw("blk-rw,event_idx=0,qd=4", "--disk", img, kernel=BZIMAGE)
        self.assert_pattern(img, lines)

    def test_both_cache_modes(self):
        for cache in ("none", "writeback"):
            with self.subTest(cache=cache):
                img = self.image("disk-%s.img" % cache)
                lines = self.assert_rw("blk-rw,indirect=1", "--disk", img + ",cache=" + cache)
                self.assert_pattern(img, lines)

    def test_two_disks_with_serials(self):
        first = self.image("first.img", 8 * MIB)
        second = self.image("second.img", 16 * MIB)
        before = sha256(first)
        lines = self.assert_rw("blk-rw,disk=1", "--disk", first + ",id=boot-vol",
                               "--disk", second + ",id=data-vol")
        self.assertIn("keeltest: blk id data-vol", lines)
        self.assertTrue(any(l.startswith("keeltest: blk dev 1 ") and "capacity=32768" in l
                            for l in lines), lines)
        self.assert_pattern(second, lines)
        self.assertEqual(sha256(first), before)
        lines = self.assert_rw("blk-rw,disk=0", "--disk", first + ",id=boot-vol",
                               "--disk", second + ",id=data-vol")
        self.assertIn("keeltest: blk id boot-vol", lines)
        self.assert_pattern(first, lines)

    def test_read_only_disk_refuses_writes(self):
        img = self.image(size=8 * MIB, pattern=True)
        before = sha256(img)
        lines = self.assert_rw("blk-rw,verify=1", "--disk", img + ",ro")
        self.assertIn("keeltest: blk read-only ok", lines)
        dev = next(l for l in lines if l.startswith("keeltest: blk dev 0"))
        self.assertIn("ro=1", dev)
        self.assertEqual(sha256(img), before)

    def test_second_vmm_on_a_writable_image_exits_2(self):
        img = self.image(size=8 * MIB)
        with Vmm("--kernel", ELF, "--cmdline", "keeltest=idle", "--disk", img) as first:
            self.assertTrue(first.wait_for_line("keeltest: idle"), first.lines)
            for spec in (img, img + ",ro"):
                with self.subTest(spec=spec):
                    r = subprocess.run([VMM, "--kernel", ELF, "--cmdline", "keeltest=hello",
                                        "--disk", spec], stdin=subprocess.DEVNULL,
                                       capture_output=True, text=True, timeout=TIMEOUT_S)
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertEqual(r.stdout, "")
                    err = r.stderr.splitlines()
                    self.assertEqual(len(err), 1, r.stderr)
                    self.assertTrue(err[0].startswith("keel-vmm: error: "), err[0])
                    self.assertIn(img, err[0])
                    self.assertIn("in use", err[0])

    def test_same_writable_image_twice_exits_2(self):
        img = self.image(size=8 * MIB)
        link = os.path.join(self.dir, "link.img")
        os.symlink(img, link)
        cases = (((img, img), "--disk %s is given twice; " % img),
                 ((img, img + ",ro"), "--disk %s is given twice; " % img),
                 ((img, link), "--disk %s and --disk %s are the same image; " % (img, link)))
        for disks, prefix in cases:
            with self.subTest(disks=disks):
                args = [a for d in disks for a in ("--disk", d)]
                r = subprocess.run([VMM, "--kernel", ELF, "--cmdline", "keeltest=hello", *args],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=TIMEOUT_S)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, "")
                err = r.stderr.splitlines()
                self.assertEqual(len(err), 1, r.stderr)
                self.assertTrue(err[0].startswith("keel-vmm: error: " + prefix), err[0])
                self.assertNotIn("another VM", err[0])
        # Read-only attachments share the image.
        pattern = self.image("pattern.img", size=8 * MIB, pattern=True)
        lines = self.assert_rw("blk-rw,verify=1,disk=1", "--disk", pattern + ",ro",
                               "--disk", pattern + ",ro")
        self.assertIn("keeltest: blk read-only ok", lines)

    def test_missing_image_exits_2_naming_it(self):
        missing = os.path.join(self.dir, "missing.img")
        r = subprocess.run([VMM, "--kernel", ELF, "--disk", missing], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 2, r.stderr)
        err = r.stderr.splitlines()
        self.assertEqual(len(err), 1, r.stderr)
        self.assertIn(missing, err[0])

    def test_guest_halted_after_flush_takes_no_interrupt_as_an_exception(self):
        # The guest calibrates its TSC with PIT channel 0 and then halts with interrupts
        # on; an unmasked, uninitialised 8259A used to deliver the PIT's IRQ0 as vector 0
        # (#DE) within one PIT period (55 ms) of the halt. Watch the halted guest for
        # 20 such periods: any line after the halting one is a failure.
        img = self.image(size=8 * MIB)
        with Vmm("--kernel", ELF, "--cmdline", "keeltest=blk-rw,halt_after_flush=1",
                 "--disk", img) as vmm:
            self.assertTrue(vmm.wait_for_line("keeltest: blk halting after flush"), vmm.lines)
            halted = len(vmm.lines)
            self.assertFalse(vmm.wait_for_line("(never printed)", timeout=1.1), vmm.lines)
            self.assertEqual(vmm.lines[halted:], [])
            self.assertEqual(vmm._buf, b"")
            self.assertIsNone(vmm.p.poll())

    def test_flushed_writes_survive_sigkill(self):
        for cache in ("none", "writeback"):
            with self.subTest(cache=cache):
                img = self.image("durable-%s.img" % cache, 32 * MIB)
                with Vmm("--kernel", ELF, "--cmdline", "keeltest=blk-rw,halt_after_flush=1",
                         "--disk", img + ",cache=" + cache) as vmm:
                    self.assertTrue(vmm.wait_for_line("keeltest: blk flush ok"), vmm.lines)
                    vmm.p.send_signal(signal.SIGKILL)
                    self.assertEqual(vmm.p.wait(timeout=TIMEOUT_S), -signal.SIGKILL)
                self.assert_pattern(img)


if __name__ == "__main__":
    VMM, ELF, BZIMAGE = (os.path.abspath(p) for p in sys.argv[1:4])
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("skipped: /dev/kvm is missing or not accessible")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0], *sys.argv[4:]], verbosity=2)
