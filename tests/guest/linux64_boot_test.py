#!/usr/bin/env python3
"""Boots keel-guest.bzimage through the Linux x86 64-bit boot protocol on /dev/kvm,
with a minimal loader written here (no QEMU: QEMU only boots bzImages through real mode,
which this image does not have). Checks the guest's banner, scenario lines and exit value.

    linux64_boot_test.py path/to/keel-guest.bzimage [unittest options]

The loader follows Documentation/arch/x86/boot.rst ("64-bit Boot Protocol") and Keel's
memory map (vmm/layout.h): boot GDT at 0x500, boot_params at 0x7000, page tables at
0x9000 (identity map of 4 GiB, 2 MiB pages), command line at 0x20000, protected-mode part
at 0x100000, entry at 0x100200 with RSI = boot_params. Devices: COM1 output, LSR reads
"transmitter empty", and the debug-exit port 0xf4. Exits 77 when /dev/kvm is not usable.
"""

import ctypes
import fcntl
import mmap
import os
import struct
import sys
import time
import unittest

BZIMAGE = None
MEM_SIZE = 32 << 20

# <linux/kvm.h> ioctl numbers: _IO/_IOR/_IOW/_IOWR(0xAE, nr, size).
def _ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (0xAE << 8) | nr

KVM_CREATE_VM = _ioc(0, 0x01, 0)
KVM_GET_SUPPORTED_CPUID = _ioc(3, 0x05, 8)
KVM_GET_VCPU_MMAP_SIZE = _ioc(0, 0x04, 0)
KVM_CREATE_VCPU = _ioc(0, 0x41, 0)
KVM_SET_USER_MEMORY_REGION = _ioc(1, 0x46, 32)
KVM_RUN = _ioc(0, 0x80, 0)
KVM_SET_REGS = _ioc(1, 0x82, 144)
KVM_GET_SREGS = _ioc(2, 0x83, 312)
KVM_SET_SREGS = _ioc(1, 0x84, 312)
KVM_SET_CPUID2 = _ioc(1, 0x90, 8)

KVM_EXIT_IO, KVM_EXIT_HLT, KVM_EXIT_SHUTDOWN = 2, 5, 8
COM1, COM1_LSR, DEBUG_EXIT = 0x3F8, 0x3FD, 0xF4


def kvm_segment(base, limit, selector, type_, s, dpl, db, l, g):
    # struct kvm_segment: base u64, limit u32, selector u16, type, present, dpl, db, s, l,
    # g, avl, unusable, padding (u8 each).
    return struct.pack("<QIHBBBBBBBBBB", base, limit, selector, type_, 1, dpl, db, s, l, g,
                       0, 0, 0)


class Vm:
    """One VM, one vCPU, MEM_SIZE of RAM from 0, entered in long mode at `rip`."""

    def __init__(self):
        self.kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        self.vm = fcntl.ioctl(self.kvm, KVM_CREATE_VM, 0)
        self.mem = mmap.mmap(-1, MEM_SIZE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        region = struct.pack("<IIQQQ", 0, 0, 0, MEM_SIZE, addr)  # slot, flags, gpa, size, hva
        fcntl.ioctl(self.vm, KVM_SET_USER_MEMORY_REGION, region)
        self.vcpu = fcntl.ioctl(self.vm, KVM_CREATE_VCPU, 0)
        run_size = fcntl.ioctl(self.kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
        self.run = mmap.mmap(self.vcpu, run_size)
        self._set_cpuid()

    def close(self):
        self.run.close()
        for fd in (self.vcpu, self.vm, self.kvm):
            os.close(fd)

    def _set_cpuid(self):
        # KVM refuses EFER.LME unless the vCPU's CPUID says long mode: pass through what
        # KVM supports. struct kvm_cpuid2: nent u32, padding u32, entries of 40 bytes.
        nent = 128
        buf = bytearray(struct.pack("<II", nent, 0) + bytes(40 * nent))
        fcntl.ioctl(self.kvm, KVM_GET_SUPPORTED_CPUID, buf, True)
        fcntl.ioctl(self.vcpu, KVM_SET_CPUID2, buf)

    def write(self, gpa, data):
        self.mem[gpa:gpa + len(data)] = data

    def enter_long_mode(self, rip, rsi, rsp):
        sregs = bytearray(312)
        fcntl.ioctl(self.vcpu, KVM_GET_SREGS, sregs, True)
        code = kvm_segment(0, 0xFFFFFFFF, 0x10, 11, 1, 0, 0, 1, 1)
        data = kvm_segment(0, 0xFFFFFFFF, 0x18, 3, 1, 0, 1, 0, 1)
        tss = kvm_segment(0, 0xFFFF, 0, 11, 0, 0, 0, 0, 0)
        # cs, ds, es, fs, gs, ss, tr, ldt (24 bytes each); then gdt, idt (16 bytes each).
        sregs[0:24 * 7] = code + data * 5 + tss
        sregs[192:208] = struct.pack("<QH6x", 0x500, 4 * 8 - 1)   # gdt
        sregs[208:224] = struct.pack("<QH6x", 0x520, 0)           # idt: empty
        cr0, cr3, cr4, efer = 0x80000011, 0x9000, 0x20, 0x500     # PG|ET|PE; PAE; LME|LMA
        struct.pack_into("<QQQQ", sregs, 224, cr0, 0, cr3, cr4)
        struct.pack_into("<Q", sregs, 224 + 5 * 8, efer)
        fcntl.ioctl(self.vcpu, KVM_SET_SREGS, sregs)
        regs = [0] * 18  # rax rbx rcx rdx rsi rdi rsp rbp r8-r15 rip rflags
        regs[4], regs[6], regs[16], regs[17] = rsi, rsp, rip, 0x2
        fcntl.ioctl(self.vcpu, KVM_SET_REGS, struct.pack("<18Q", *regs))

    def run_until_exit(self, timeout_s=10):
        """Returns (exit value or None if the guest halted/shut down, console output)."""
        out = bytearray()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fcntl.ioctl(self.vcpu, KVM_RUN, 0)
            reason, = struct.unpack_from("<I", self.run, 8)
            if reason in (KVM_EXIT_HLT, KVM_EXIT_SHUTDOWN):
                return None, out.decode(errors="replace")
            if reason != KVM_EXIT_IO:
                raise RuntimeError("unexpected KVM exit reason %d" % reason)
            direction, size, port, count, offset = struct.unpack_from("<BBHIQ", self.run, 32)
            payload = self.run[offset:offset + size * count]
            if direction == 1 and port == COM1:
                out += payload
            elif direction == 1 and port == DEBUG_EXIT:
                return struct.unpack("<I", payload[:4])[0], out.decode(errors="replace")
            elif direction == 0:
                value = 0x60 if port == COM1_LSR else 0xFF  # LSR: THR and line empty
                self.run[offset:offset + size * count] = bytes([value]) * (size * count)
        raise TimeoutError("guest did not exit within %d s" % timeout_s)


def load_linux64(vm, image, cmdline):
    """The loader's side of the 64-bit boot protocol, Keel's layout."""
    setup_sects = image[0x1F1] or 4
    pm = image[(setup_sects + 1) * 512:]
    vm.write(0x100000, pm)
    # GDT at 0x500: null, null, 0x10 flat 64-bit code, 0x18 flat data.
    vm.write(0x500, struct.pack("<4Q", 0, 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF))
    # Identity map of 4 GiB: PML4 0x9000 -> PDPT 0xA000 -> 4 PDs at 0xB000 (2 MiB pages).
    vm.write(0x9000, struct.pack("<Q", 0xA000 | 3))
    vm.write(0xA000, struct.pack("<4Q", *[(0xB000 + 0x1000 * i) | 3 for i in range(4)]))
    vm.write(0xB000, struct.pack("<2048Q", *[(i << 21) | 0x83 for i in range(2048)]))
    vm.write(0x20000, cmdline.encode() + b"\0")
    # boot_params at 0x7000: the image's setup header, then what the loader fills in.
    bp = bytearray(4096)
    header_end = 0x202 + image[0x201]
    bp[0x1F1:header_end] = image[0x1F1:header_end]
    bp[0x210] = 0xFF                                         # type_of_loader: undefined
    struct.pack_into("<I", bp, 0x228, 0x20000)               # cmd_line_ptr
    e820 = [(0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0x100000, MEM_SIZE - 0x100000, 1)]
    bp[0x1E8] = len(e820)
    for i, (addr, size, kind) in enumerate(e820):
        struct.pack_into("<QQI", bp, 0x2D0 + 20 * i, addr, size, kind)
    vm.write(0x7000, bytes(bp))
    vm.enter_long_mode(rip=0x100000 + 0x200, rsi=0x7000, rsp=0x8FF0)


def boot(cmdline):
    with open(BZIMAGE, "rb") as f:
        image = f.read()
    vm = Vm()
    try:
        load_linux64(vm, image, cmdline)
        value, output = vm.run_until_exit()
    finally:
        vm.close()
    return value, output.splitlines()


class Linux64Boot(unittest.TestCase):
    def test_hello(self):
        value, lines = boot("console=ttyS0 keeltest=hello")
        self.assertEqual(value, 0)
        self.assertEqual(lines, ["keel-guest: booted linux64, cmdline: console=ttyS0 keeltest=hello",
                                 "keeltest: PASS hello"])

    def test_exit_value_is_passed_unchanged(self):
        value, lines = boot("keeltest=exit:200")
        self.assertEqual(value, 200)
        self.assertIn("keeltest: PASS exit", lines)

    def test_e820_comes_from_boot_params(self):
        value, lines = boot("keeltest=e820")
        self.assertEqual(value, 0)
        self.assertEqual([l for l in lines if l.startswith("keeltest: e820 0x")],
                         ["keeltest: e820 0x0 0x9fc00 1", "keeltest: e820 0x9fc00 0x400 2",
                          "keeltest: e820 0x100000 0x1f00000 1"])
        self.assertIn("keeltest: PASS e820", lines)

    def test_service_calls_reach_cpl0(self):
        value, lines = boot("keeltest=svc")
        self.assertEqual(value, 0)
        self.assertIn("keeltest: PASS svc", lines)

    def test_long_banner_arrives_whole(self):
        # A long command line: the banner crosses many 16-byte FIFO bursts.
        cmdline = "keeltest=hello " + " ".join("opt%d=%s" % (i, "x" * 40) for i in range(40))
        value, lines = boot(cmdline)
        self.assertEqual(value, 0)
        self.assertEqual(lines[0], "keel-guest: booted linux64, cmdline: " + cmdline)


def main():
    global BZIMAGE
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    BZIMAGE = sys.argv.pop(1)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: /dev/kvm is missing or not accessible")
        return 77
    result = unittest.main(exit=False, verbosity=2).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
