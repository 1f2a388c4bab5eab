"""Booting Keel's test guest under QEMU microvm with KVM, for the tests in this folder
(and tools that reuse them).

QEMU's isa-debug-exit turns the guest's exit value v into process status (v << 1) | 1; a
clean QEMU shutdown (ACPI soft-off) is status 0.
"""

import os
import shutil
import signal
import subprocess
import sys
import unittest

QEMU = "qemu-system-x86_64"
RUN_TIMEOUT_S = 60
# Modern (version 2) virtio-mmio transports: QEMU defaults to legacy ones.
MODERN_VIRTIO = ["-global", "virtio-mmio.force-legacy=false"]


def qemu_command(elf, append, smp=1, mem_mib=32, extra=(), machine="microvm"):
    return [QEMU, "-M", machine, "-enable-kvm", "-cpu", "host,-arch-capabilities",
            "-smp", str(smp), "-m", str(mem_mib), "-nodefaults", "-no-user-config",
            "-nographic", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            *extra, "-kernel", elf, "-append", append]


def boot(elf, append, smp=1, mem_mib=32, extra=(), machine="microvm", timeout=RUN_TIMEOUT_S,
         prefix=()):
    """Runs the guest to completion; returns (exit status, output lines). `prefix` goes in
    front of the QEMU command (e.g. ["ip", "netns", "exec", ns])."""
    r = subprocess.run([*prefix, *qemu_command(elf, append, smp, mem_mib, extra, machine)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout.splitlines()


def guest_status(value):
    """The exit status QEMU's isa-debug-exit gives for the guest's exit value."""
    return ((value << 1) | 1) & 0xFF


def result_lines(lines):
    return [l for l in lines if l.startswith("keeltest: ")]


def skip_reason():
    """Why QEMU tests cannot run here, or None."""
    if shutil.which(QEMU) is None:
        return "%s is not installed" % QEMU
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is missing or not accessible"
    return None


def main(doc, set_elf, extra_skip=None):
    """The entry point of a test file run as `x_test.py path/to/keel-guest.elf [unittest
    options]`: hands the path to set_elf, exits 77 (meson's "skipped") when QEMU/KVM (or
    what extra_skip() names) is missing, else runs the file's tests."""
    if len(sys.argv) < 2:
        sys.stderr.write(doc)
        return 2
    set_elf(sys.argv.pop(1))
    # meson stops a test that runs too long with SIGTERM: exit normally then, so cleanups
    # (temporary directories, network namespaces) still run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    reason = skip_reason() or (extra_skip() if extra_skip else None)
    if reason:
        print("SKIP: " + reason)
        return 77
    result = unittest.main(module="__main__", exit=False, verbosity=2).result
    return 0 if result.wasSuccessful() else 1
