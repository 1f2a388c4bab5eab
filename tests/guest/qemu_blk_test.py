#!/usr/bin/env python3
"""Keel's test guest driving QEMU microvm's virtio-mmio block devices (modern, version 2):
device discovery, blk-rw (with the image checked on the host against the pattern in
blk_pattern.py), read-only disks, interrupts and indirect descriptors, blk-bench briefly.

    qemu_blk_test.py path/to/keel-guest.elf [unittest options]

Exits 77 (meson's "skipped") when qemu-system-x86_64 or a usable /dev/kvm is missing.
Every image lives in a temporary directory that is removed afterwards.
"""

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import unittest

import blk_pattern
import qemu_env
from qemu_env import MODERN_VIRTIO, guest_status, result_lines

GUEST_ELF = None  # set from argv in main
MIB = 1 << 20


def drive(path, index, readonly=False, serial=None, extra=""):
    opts = "file=%s,if=none,id=d%d,format=raw%s%s" % (path, index,
                                                      ",readonly=on" if readonly else "", extra)
    dev = "virtio-blk-device,drive=d%d%s" % (index, ",serial=" + serial if serial else "")
    return ["-drive", opts, "-device", dev]


def boot(append, extra=(), machine="microvm", mem_mib=64):
    return qemu_env.boot(GUEST_ELF, append, mem_mib=mem_mib, extra=extra, machine=machine)


def summary(lines):
    """The blk-rw summary line's numbers."""
    line = next(l for l in lines if l.startswith("keeltest: blk-rw "))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class BlockTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="keel-guest-blk-")
        self.addCleanup(self.tmp.cleanup)

    def image(self, name, size, pattern=False):
        path = os.path.join(self.tmp.name, name)
        if pattern:
            blk_pattern.write_image(path, size)
        else:
            with open(path, "wb") as f:
                f.truncate(size)
        return path


class BlkRw(BlockTest):
    def test_pattern_written_flushed_and_checked_on_the_host(self):
        img = self.image("disk.img", 16 * MIB)
        status, lines = boot("keeltest=blk-rw",
                             MODERN_VIRTIO + drive(img, 0, serial="keel-test-0"))
        self.assertEqual(status, guest_status(0), lines)
        results = result_lines(lines)
        self.assertIn("keeltest: blk id keel-test-0", results)
        self.assertIn("keeltest: blk flush ok", results)
        self.assertIn("keeltest: blk discard 2048+2048 ok", results)
        self.assertIn("keeltest: blk write-zeroes 4096+2048 ok", results)
        self.assertIn("keeltest: blk past-end ioerr ok", results)
        counts = summary(results)
        self.assertEqual((counts["sectors_written"], counts["sectors_read"]), (32768, 32768))
        self.assertEqual(results[-1], "keeltest: PASS blk-rw")
        discarded, zeroed = blk_pattern.special_ranges(results)
        self.assertEqual(blk_pattern.check_image(img, discarded, zeroed), [])

    def test_interrupts_and_indirect_descriptors(self):
        img = self.image("disk.img", 8 * MIB)
        status, lines = boot("keeltest=blk-rw,irq=1,indirect=1", MODERN_VIRTIO + drive(img, 0))
        self.assertEqual(status, guest_status(0), lines)
        dev = next(l for l in lines if l.startswith("keeltest: blk dev 0 "))
        self.assertIn(" indirect=1 ", dev)
        self.assertIn(" irq=1 ", dev)
        self.assertRegex("\n".join(lines), r"keeltest: virtio 0x[0-9a-f]+ irq gsi=\d+ ")
        self.assertGreater(summary(lines)["irqs"], 0)
        discarded, zeroed = blk_pattern.special_ranges(lines)
        self.assertEqual(blk_pattern.check_image(img, discarded, zeroed), [])

    def test_without_event_idx_in_interrupt_mode(self):
        img = self.image("disk.img", 8 * MIB)
        status, lines = boot("keeltest=blk-rw,irq=1,event_idx=0", MODERN_VIRTIO + drive(img, 0))
        self.assertEqual(status, guest_status(0), lines)
        self.assertIn(" event_idx=0 ", next(l for l in lines if l.startswith("keeltest: blk dev")))
        self.assertGreater(summary(lines)["irqs"], 0)

    def test_second_disk_leaves_the_first_alone(self):
        first = self.image("a.img", 8 * MIB)
        second = self.image("b.img", 8 * MIB)
        before = sha256(first)
        status, lines = boot("keeltest=blk-rw,disk=1",
                             MODERN_VIRTIO + drive(first, 0) + drive(second, 1))
        self.assertEqual(status, guest_status(0), lines)
        self.assertEqual(sha256(first), before)
        discarded, zeroed = blk_pattern.special_ranges(lines)
        self.assertEqual(blk_pattern.check_image(second, discarded, zeroed), [])

    def test_read_only_disk_verifies_a_prepared_image(self):
        img = self.image("ro.img", 8 * MIB, pattern=True)
        before = sha256(img)
        status, lines = boot("keeltest=blk-rw,verify=1",
                             MODERN_VIRTIO + drive(img, 0, readonly=True))
        self.assertEqual(status, guest_status(0), lines)
        self.assertIn("keeltest: blk read-only ok", lines)
        counts = summary(lines)
        self.assertEqual((counts["sectors_written"], counts["sectors_read"]), (0, 16384))
        self.assertEqual(sha256(img), before)

    def test_read_only_disk_reports_a_corrupted_sector(self):
        img = self.image("ro.img", 8 * MIB, pattern=True)
        with open(img, "r+b") as f:
            f.seek(1234 * 512 + 100)
            f.write(b"\xAA")
        status, lines = boot("keeltest=blk-rw,verify=1",
                             MODERN_VIRTIO + drive(img, 0, readonly=True))
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1],
                         r"^keeltest: FAIL blk-rw: sector 1234 byte 100 reads 0xaa")

    def test_host_checker_finds_the_same_corruption(self):
        img = self.image("x.img", 4 * MIB, pattern=True)
        self.assertEqual(blk_pattern.check_image(img), [])
        with open(img, "r+b") as f:
            f.seek(77 * 512)
            f.write(b"\0")
        self.assertRegex(blk_pattern.check_image(img)[0], r"^sector 77 is not the pattern")

    def test_no_block_device_fails(self):
        status, lines = boot("keeltest=blk-rw")
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1], r"^keeltest: FAIL blk-rw: .*no virtio device")


class Discovery(BlockTest):
    def test_command_line_tokens_take_precedence_over_the_dsdt(self):
        img = self.image("disk.img", 4 * MIB)
        # QEMU microvm puts the first -device on its last transport: 0xfeb02e00, GSI 47.
        status, lines = boot("keeltest=blk-rw virtio_mmio.device=512@0xfeb02e00:47",
                             MODERN_VIRTIO + drive(img, 0))
        self.assertEqual(status, guest_status(0), lines)
        self.assertIn("keeltest: virtio 0xfeb02e00 gsi=47 id=2 version=2 from cmdline", lines)

    def test_qemu_appends_tokens_without_acpi(self):
        img = self.image("disk.img", 4 * MIB)
        status, lines = boot("keeltest=blk-rw,irq=1", MODERN_VIRTIO + drive(img, 0),
                             machine="microvm,acpi=off")
        self.assertEqual(status, guest_status(0), lines)
        self.assertRegex(lines[0], r"virtio_mmio\.device=512@0x[0-9a-f]+:\d+")
        self.assertRegex("\n".join(lines), r"keeltest: virtio 0x[0-9a-f]+ gsi=\d+ id=2 "
                                           r"version=2 from cmdline")

    def test_dsdt_when_the_command_line_says_nothing(self):
        img = self.image("disk.img", 4 * MIB)
        status, lines = boot("keeltest=blk-rw", MODERN_VIRTIO + drive(img, 0))
        self.assertEqual(status, guest_status(0), lines)
        self.assertIn("keeltest: virtio 0xfeb02e00 gsi=47 id=2 version=2 from dsdt", lines)

    def test_malformed_token_fails(self):
        status, lines = boot("keeltest=blk-rw virtio_mmio.device=4K@nowhere")
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1], r"not <size>@<base>:<irq>")

    def test_legacy_device_is_refused(self):
        img = self.image("disk.img", 4 * MIB)
        status, lines = boot("keeltest=blk-rw", drive(img, 0))  # QEMU's default: legacy
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1],
                         r"^keeltest: FAIL blk-rw: virtio-mmio device at 0x[0-9a-f]+ is legacy "
                         r"\(version 1\)")


class BlkBench(BlockTest):
    LINE = (r"^keeltest: blk-bench rw=%s qd=%d bs=%d iops=\d+ mbps=\d+\.\d ios=\d+ secs=1$")

    def bench(self, spec, extra=""):
        img = self.image("bench.img", 32 * MIB)
        return boot("keeltest=blk-bench," + spec,
                    MODERN_VIRTIO + drive(img, 0, extra=extra))

    def test_randread(self):
        status, lines = self.bench("qd=8,bs=4096,secs=1,rw=randread")
        self.assertEqual(status, guest_status(0), lines)
        self.assertRegex(result_lines(lines)[-3], self.LINE % ("randread", 8, 4096))

    def test_sequential_write(self):
        status, lines = self.bench("qd=4,bs=65536,secs=1,rw=write")
        self.assertEqual(status, guest_status(0), lines)
        self.assertRegex(result_lines(lines)[-3], self.LINE % ("write", 4, 65536))

    def test_qd_256_uses_indirect_descriptors(self):
        status, lines = self.bench("qd=256,bs=4096,secs=1,rw=randread")
        self.assertEqual(status, guest_status(0), lines)
        self.assertRegex(result_lines(lines)[-2], r"indirect=1")

    def test_qd_256_without_indirect_takes_a_larger_queue(self):
        status, lines = self.bench("qd=256,bs=4096,secs=1,rw=randread,indirect=0")
        self.assertEqual(status, guest_status(0), lines)
        self.assertRegex(result_lines(lines)[-2], r"queue=1024 indirect=0")

    def test_qd_256_without_indirect_does_not_fit_256(self):
        status, lines = self.bench("qd=256,bs=4096,secs=1,rw=randread,indirect=0,queue=256")
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1], r"qd=256 needs 768 descriptors but the queue "
                                                  r"has 256")

    def test_bad_parameters_fail(self):
        status, lines = self.bench("qd=8,bs=1000,secs=1,rw=randread")
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1], r"bs must be a multiple of 512")


def set_elf(path):
    global GUEST_ELF
    GUEST_ELF = path


if __name__ == "__main__":
    sys.exit(qemu_env.main(__doc__, set_elf))
