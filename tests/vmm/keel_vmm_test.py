"""End-to-end tests of keel-vmm on the real /dev/kvm: every test-guest scenario in both
kernel formats, the exit-status contract, and one clear error line for every bad input.

Usage: keel_vmm_test.py KEEL_VMM GUEST_ELF GUEST_BZIMAGE [unittest options]
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

VMM = ELF = BZIMAGE = None
TIMEOUT_S = 60


def run(*args, timeout=TIMEOUT_S, **kw):
    return subprocess.run([VMM, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, **kw)


def boot(scenario, *extra, kernel=None):
    r = run("--kernel", kernel or ELF, "--cmdline", "keeltest=" + scenario,
            "--boot-timeout-s", "30", *extra)
    return r.returncode, r.stdout.splitlines(), r.stderr


class ScenarioTest(unittest.TestCase):
    def assert_pass(self, scenario, *extra, kernel=None, status=0):
        code, lines, err = boot(scenario, *extra, kernel=kernel)
        name = scenario.split(",")[0].split(":")[0]
        self.assertIn("keeltest: PASS " + name, lines, "\n".join(lines) + err)
        self.assertEqual(code, status, err)
        return lines

    def test_hello_in_both_formats(self):
        self.assertTrue(self.assert_pass("hello")[0].startswith("keel-guest: booted pvh"))
        self.assertTrue(
            self.assert_pass("hello", kernel=BZIMAGE)[0].startswith("keel-guest: booted linux64"))

    def test_debug_exit_value_is_the_exit_status(self):
        self.assert_pass("exit:42", status=42)
        self.assert_pass("exit:0", status=0)
        self.assert_pass("exit:200", kernel=BZIMAGE, status=200)

    def test_failing_scenario_exits_1(self):
        code, lines, _ = boot("no-such-scenario")
        self.assertEqual(code, 1)
        self.assertTrue(any(l.startswith("keeltest: FAIL") for l in lines))

    def test_e820_with_ram_above_4g(self):
        lines = self.assert_pass("e820", "--memory-mib", "4096")
        entries = [l.split()[2:5] for l in lines if l.startswith("keeltest: e820 0x")]
        self.assertIn(["0x100000000", hex(4096 * 2**20 - 0xd0000000), "1"], entries)
        self.assertIn(["0x0", "0x9fc00", "1"], entries)

    def test_e820_from_boot_params(self):
        lines = self.assert_pass("e820", "--memory-mib", "64", kernel=BZIMAGE)
        self.assertIn("keeltest: e820 0x100000 0x3f00000 1", lines)

    def test_acpi_tables_describe_cpus_and_devices(self):
        lines = self.assert_pass("acpi", "--vcpus", "3")
        for cpu in range(3):
            self.assertIn("keeltest: acpi cpu apic_id=%d enabled" % cpu, lines)
        for device in ("COM1 hid PNP0501", "GED0 hid ACPI0013", "PWRB hid PNP0C0C"):
            self.assertIn("keeltest: acpi device " + device, lines)
        self.assertIn("keeltest: acpi fadt hw_reduced=1", lines)

    def test_smp_brings_up_every_vcpu(self):
        self.assert_pass("smp", "--vcpus", "1")
        lines = self.assert_pass("smp", "--vcpus", "4")
        self.assertIn("keeltest: smp 4/4 cpus online", lines)

    def test_interrupts_through_the_ioapic(self):
        uart = self.assert_pass("irq,src=uart")
        self.assertTrue(any("src=uart irq=4 gsi=4" in l and "fired" in l for l in uart))
        pit = self.assert_pass("irq,src=pit")
        self.assertTrue(any("src=pit irq=0 gsi=2" in l and "fired" in l for l in pit))

    def test_serial_log_file(self):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "console.log")
            code, lines, _ = boot("hello", "--serial-log", log)
            self.assertEqual(code, 0)
            self.assertEqual(lines, [])
            with open(log) as f:
                self.assertIn("keeltest: PASS hello\n", f.read())


class LifecycleTest(unittest.TestCase):
    def test_guest_poweroff_and_reset_exit_0(self):
        for scenario in ("poweroff", "reset"):
            code, lines, err = boot(scenario)
            self.assertEqual(code, 0, "\n".join(lines) + err)
            self.assertIn("keeltest: " + scenario, lines)
            self.assertFalse(any("FAIL" in l or "did not power off" in l for l in lines), lines)

    def test_sigterm_stops_an_idle_guest(self):
        p = subprocess.Popen([VMM, "--kernel", ELF, "--cmdline", "keeltest=idle"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            self.assertEqual(p.stdout.readline().split(",")[0], "keel-guest: booted pvh")
            self.assertEqual(p.stdout.readline(), "keeltest: idle\n")
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=TIMEOUT_S), 128 + signal.SIGTERM)
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
            p.stderr.close()

    def test_exit_file_holds_the_exit_status(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "exit")
            code, _, err = boot("exit:42", "--exit-file", path)
            self.assertEqual(code, 42, err)
            with open(path) as f:
                self.assertEqual(f.read(), "42\n")
            code, _, err = boot("poweroff", "--exit-file", path)
            self.assertEqual(code, 0, err)
            with open(path) as f:
                self.assertEqual(f.read(), "0\n")
            self.assertEqual(sorted(os.listdir(d)), ["exit"])  # no temporary left behind
            # A configuration error still reports its status there.
            r = run("--kernel", "/nonexistent/vmlinux", "--exit-file", path)
            self.assertEqual(r.returncode, 2, r.stderr)
            with open(path) as f:
                self.assertEqual(f.read(), "2\n")

    def test_control_mode_waits_for_launch_and_stops_on_sigterm(self):
        import socket
        import stat
        with tempfile.TemporaryDirectory() as d:
            sock_path = os.path.join(d, "control.sock")
            exit_path = os.path.join(d, "exit")
            ours, theirs = socket.socketpair()
            p = subprocess.Popen([VMM, "--control-fd", str(theirs.fileno()), "--control-socket",
                                  sock_path, "--vm-id", "t1", "--exit-file", exit_path],
                                 pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            theirs.close()
            try:
                # The listening socket appears (0600) while nothing boots.
                deadline = time.monotonic() + TIMEOUT_S
                while not os.path.exists(sock_path) and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.assertEqual(stat.S_IMODE(os.stat(sock_path).st_mode), 0o600)
                # Between bind and listen a connect is refused: retry.
                while True:
                    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        c.connect(sock_path)
                        break
                    except ConnectionRefusedError:
                        self.assertLess(time.monotonic(), deadline)
                        time.sleep(0.01)
                    finally:
                        c.close()
                self.assertIsNone(p.poll())
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(timeout=TIMEOUT_S), 128 + signal.SIGTERM)
                with open(exit_path) as f:
                    self.assertEqual(f.read(), "%d\n" % (128 + signal.SIGTERM))
                self.assertFalse(os.path.exists(sock_path))
                self.assertEqual(p.stdout.read(), "")  # no guest console on stdout
            finally:
                p.kill()
                p.wait()
                p.stdout.close()
                p.stderr.close()
                ours.close()

    def test_control_flags_are_checked(self):
        r = run("--control-socket", "/tmp/x.sock", "--kernel", ELF)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--control-socket needs --control-fd", r.stderr)
        r = run("--control-fd", "0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--control-fd", r.stderr)
        r = run("--control-fd", "57")  # not open
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not an inherited socket", r.stderr)

    def test_boot_timeout_stops_the_guest_and_prints_registers(self):
        code, lines, err = boot("idle", "--boot-timeout-s", "1")
        self.assertEqual(code, 3)
        self.assertIn("guest did not finish within --boot-timeout-s 1", err)
        self.assertIn("RIP=", err)


class BadInputTest(unittest.TestCase):
    """Each case exits 2 with exactly one line on stderr that names the problem."""

    def assert_bad(self, args, *needles):
        r = run(*args)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stdout, "")
        err = r.stderr.splitlines()
        self.assertEqual(len(err), 1, r.stderr)
        self.assertTrue(err[0].startswith("keel-vmm: error: "), err[0])
        for n in needles:
            self.assertIn(n, err[0])

    def test_missing_kernel_flag(self):
        self.assert_bad([], "--kernel PATH is required")

    def test_missing_or_unreadable_files(self):
        self.assert_bad(["--kernel", "/nonexistent/vmlinux"], "/nonexistent/vmlinux",
                        "No such file")
        self.assert_bad(["--kernel", "/tmp"], "not a regular file")
        self.assert_bad(["--kernel", ELF, "--initrd", "/nonexistent/initrd"], "--initrd")

    def test_not_a_kernel_image(self):
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"\x7fELF-not-really" + bytes(100))
            f.flush()
            self.assert_bad(["--kernel", f.name], f.name)
        self.assert_bad(["--kernel", "/etc/hostname"], "is not a PVH ELF", "or a bzImage")

    def test_memory_out_of_range(self):
        self.assert_bad(["--kernel", ELF, "--memory-mib", "8"], "below the 16 MiB minimum")
        self.assert_bad(["--kernel", ELF, "--memory-mib", str(1 << 30)], "larger than this host")
        self.assert_bad(["--kernel", ELF, "--memory-mib", "lots"], "whole number")

    def test_vcpus_out_of_range(self):
        self.assert_bad(["--kernel", ELF, "--vcpus", "0"], "--vcpus")
        self.assert_bad(["--kernel", ELF, "--vcpus", "100000"], "--vcpus")

    def test_unknown_flag_and_missing_value(self):
        self.assert_bad(["--kernel", ELF, "--frobnicate"], "--frobnicate")
        self.assert_bad(["--kernel", ELF, "--memory-mib"], "needs a value")

    def test_bad_device_specs(self):
        self.assert_bad(["--kernel", ELF, "--disk", "x.img,cache=fast"], "cache=fast")
        self.assert_bad(["--kernel", ELF, "--disk", "fd=77"], "fd=77")
        self.assert_bad(["--kernel", ELF, "--net", "tap=t0,mac=01:00:5e:00:00:01"], "--net")

    def test_no_access_to_kvm(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to drop to another user")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            VMM, "--kernel", ELF], capture_output=True, text=True,
                           timeout=TIMEOUT_S)
        if "no access to /dev/kvm" not in r.stderr and r.returncode == 0:
            self.skipTest("/dev/kvm is accessible to nobody on this host")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.splitlines(),
                         ["keel-vmm: error: no access to /dev/kvm: run as root or join the kvm group"])


if __name__ == "__main__":
    VMM, ELF, BZIMAGE = (os.path.abspath(p) for p in sys.argv[1:4])
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("skipped: /dev/kvm is missing or not accessible")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0], *sys.argv[4:]], verbosity=2)
