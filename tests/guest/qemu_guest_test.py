#!/usr/bin/env python3
"""Boots every scenario of Keel's test guest under QEMU microvm with KVM and checks what
it prints and how it exits.

    qemu_guest_test.py path/to/keel-guest.elf [unittest options]

Exits 77 (meson's "skipped") when qemu-system-x86_64 or a usable /dev/kvm is missing.
QEMU's isa-debug-exit turns the guest's exit value v into status (v << 1) | 1.
"""

import os
import socket
import subprocess
import sys
import tempfile
import unittest

import qemu_env
from qemu_env import guest_status, result_lines

GUEST_ELF = None  # set from argv in main


def qemu_command(append, smp=1):
    return qemu_env.qemu_command(GUEST_ELF, append, smp)


def boot(append, smp=1):
    """Runs the guest to completion; returns (exit status, output lines)."""
    return qemu_env.boot(GUEST_ELF, append, smp)


class BasicScenarios(unittest.TestCase):
    def test_hello_prints_banner_and_passes(self):
        status, lines = boot("keeltest=hello")
        self.assertEqual(status, guest_status(0))
        self.assertEqual(lines, ["keel-guest: booted pvh, cmdline: keeltest=hello",
                                 "keeltest: PASS hello"])

    def test_scenario_is_found_among_other_tokens(self):
        cmdline = "console=ttyS0 keeltest=hello virtio_mmio.device=4K@0xd0000000:5"
        status, lines = boot(cmdline)
        self.assertEqual(status, guest_status(0))
        self.assertEqual(lines[0], "keel-guest: booted pvh, cmdline: " + cmdline)
        self.assertIn("keeltest: PASS hello", lines)

    def test_exit_colon_form_sets_exit_status(self):
        status, lines = boot("keeltest=exit:7")
        self.assertEqual(status, guest_status(7))
        self.assertEqual(result_lines(lines), ["keeltest: exit 7", "keeltest: PASS exit"])

    def test_exit_key_form_sets_exit_status(self):
        # (v << 1) | 1 must fit QEMU's 8-bit process exit status: v < 128 here.
        status, lines = boot("keeltest=exit,code=100")
        self.assertEqual(status, guest_status(100))
        self.assertIn("keeltest: PASS exit", lines)

    def test_exit_out_of_range_fails(self):
        status, lines = boot("keeltest=exit:256")
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1], r"^keeltest: FAIL exit: ")

    def test_unknown_scenario_fails(self):
        status, lines = boot("keeltest=no-such-test")
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1],
                         r"^keeltest: FAIL no-such-test: unknown scenario \(known: .*hello")

    def test_missing_scenario_fails(self):
        status, lines = boot("console=ttyS0")
        self.assertEqual(status, guest_status(1))
        self.assertEqual(result_lines(lines),
                         ["keeltest: FAIL none: no keeltest=NAME on the command line"])

    def test_service_calls_reach_cpl0(self):
        status, lines = boot("keeltest=svc")
        self.assertEqual(status, guest_status(0))
        self.assertRegex(result_lines(lines)[0],
                         r"^keeltest: svc efer=0x[0-9a-f]*5[0-9a-f]{2} kernel_gs_base=0x7eedc0ffee00$")
        self.assertEqual(result_lines(lines)[-1], "keeltest: PASS svc")

    def test_fault_is_reported_as_fail(self):
        status, lines = boot("keeltest=fault")
        self.assertEqual(status, guest_status(1))
        self.assertRegex(result_lines(lines)[-1],
                         r"^keeltest: FAIL fault: exception #PF \(vector 14\) .*"
                         r"cr2=0xffffffff00000000$")


class PlatformScenarios(unittest.TestCase):
    def test_e820_lists_ram_at_zero(self):
        status, lines = boot("keeltest=e820")
        self.assertEqual(status, guest_status(0))
        self.assertIn("keeltest: e820 0x0 0x9fc00 1", lines)
        self.assertIn("keeltest: PASS e820", lines)

    def test_acpi_tables_validate(self):
        status, lines = boot("keeltest=acpi")
        self.assertEqual(status, guest_status(0))
        for sig in ("XSDT", "FACP", "APIC", "DSDT"):
            self.assertTrue(any(l.startswith("keeltest: acpi table %s " % sig) for l in lines),
                            sig)
        self.assertIn("keeltest: acpi cpu apic_id=0 enabled", lines)
        self.assertIn("keeltest: acpi ioapic id=0 addr=0xfec00000 gsi_base=0", lines)
        self.assertIn("keeltest: acpi device COM1 hid PNP0501", lines)
        self.assertIn("keeltest: acpi resources COM1 mem=0x0+0x0 irq=4 edge high", lines)
        self.assertIn("keeltest: acpi device GED_ hid ACPI0013", lines)
        self.assertIn("keeltest: acpi s5 slp_typ=5", lines)
        self.assertRegex("\n".join(lines),
                         r"keeltest: acpi fadt sleep_control space=0 width=8 addr=0x[0-9a-f]+")
        self.assertIn("keeltest: PASS acpi", lines)

    def test_smp_with_one_cpu(self):
        status, lines = boot("keeltest=smp", smp=1)
        self.assertEqual(status, guest_status(0))
        self.assertIn("keeltest: smp 1/1 cpus online", lines)
        self.assertIn("keeltest: PASS smp", lines)

    def test_smp_with_four_cpus(self):
        status, lines = boot("keeltest=smp", smp=4)
        self.assertEqual(status, guest_status(0))
        online = sorted(l for l in lines if l.endswith(" online") and "smp cpu" in l)
        self.assertEqual(online, ["keeltest: smp cpu %d apic_id=%d online" % (i, i)
                                  for i in range(4)])
        self.assertIn("keeltest: smp 4/4 cpus online", lines)
        self.assertIn("keeltest: PASS smp", lines)

    def test_irq_from_uart(self):
        status, lines = boot("keeltest=irq")
        self.assertEqual(status, guest_status(0))
        self.assertIn("keeltest: irq src=uart irq=4 gsi=4 ioapic=0 pin=4 vector=0x34 fired",
                      lines)
        self.assertIn("keeltest: PASS irq", lines)

    def test_irq_from_pit(self):
        # QEMU microvm routes the PIT to IOAPIC pin 2 but its MADT has no IRQ0 override,
        # so the GSI is given explicitly here.
        status, lines = boot("keeltest=irq,src=pit,gsi=2")
        self.assertEqual(status, guest_status(0))
        self.assertIn("keeltest: irq src=pit irq=0 gsi=2 ioapic=0 pin=2 vector=0x32 fired",
                      lines)
        self.assertIn("keeltest: PASS irq", lines)

    def test_idle_halts_until_killed(self):
        with self.assertRaises(subprocess.TimeoutExpired) as cm:
            subprocess.run(qemu_command("keeltest=idle"), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=2)
        output = cm.exception.stdout or b""
        if isinstance(output, bytes):
            output = output.decode()
        self.assertEqual(result_lines(output.splitlines()), ["keeltest: idle"])


class PowerButton(unittest.TestCase):
    def test_idle_powers_off_on_the_power_button(self):
        with tempfile.TemporaryDirectory(prefix="keel-guest-mon-") as tmp:
            mon = os.path.join(tmp, "monitor.sock")
            cmd = qemu_env.qemu_command(GUEST_ELF, "keeltest=idle", extra=[
                "-monitor", "unix:%s,server,nowait" % mon])
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    text=True)
            try:
                self.assertEqual(proc.stdout.readline().split(",")[0],
                                 "keel-guest: booted pvh")
                self.assertEqual(proc.stdout.readline(), "keeltest: idle\n")
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(mon)
                    s.sendall(b"system_powerdown\n")
                    status = proc.wait(timeout=20)
                output = proc.stdout.read()
            finally:
                proc.kill()
                proc.wait()
                proc.stdout.close()
        self.assertEqual(status, 0)  # a clean QEMU shutdown, not isa-debug-exit
        self.assertEqual(result_lines(output.splitlines()), ["keeltest: idle power button"])


def set_elf(path):
    global GUEST_ELF
    GUEST_ELF = path


if __name__ == "__main__":
    sys.exit(qemu_env.main(__doc__, set_elf))
