#!/usr/bin/env python3
"""End-to-end tests of keeld through keelctl --json: a real keeld on temporary state, run and
image directories, real keel-vmm processes on /dev/kvm running Keel's test guest.

    keeld_test.py KEELD KEELCTL KEEL_VMM GUEST_ELF NET_HOST_PY [unittest options]

keeld runs inside a network namespace this test creates, so its bridges, taps and every
address the tests ping stay inside it; deleting the namespace (always, also on failure)
removes them. Every process in the namespace is killed at the end.

Exits 77 (meson's "skipped") without root, /dev/kvm, /dev/net/tun or iproute2. The block and
network scenarios are skipped, with the reason, when the keel-vmm under test reports that it
has no virtio-blk / virtio-net yet.
"""

import concurrent.futures
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

KEELD = KEELCTL = VMM = GUEST = NET_HOST = None
WAIT_S = 60  # upper bound for anything to happen; never a timing assertion

NO_DEVICE_MARKERS = ("not available in this build", "not supported", "unsupported device")


class CtlError(Exception):
    def __init__(self, status, code, message):
        super().__init__("keelctl exit %d: %s %s" % (status, code, message))
        self.status, self.code, self.message = status, code, message


def wait_until(predicate, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting for " + what)
        time.sleep(0.05)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


class Agent:
    """keeld in its own network namespace and temporary directories, driven by keelctl."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="keeld-e2e-")
        self.state = os.path.join(self.root, "state")
        self.run = os.path.join(self.root, "run")
        self.images = os.path.join(self.root, "images")
        for d in (self.state, self.run, self.images):
            os.makedirs(d)
        shutil.copy(GUEST, os.path.join(self.images, "guest.elf"))
        self.socket = os.path.join(self.run, "keel.sock")
        self.ns = "keeldt%d" % os.getpid()
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(self.prefix() + ["ip", "link", "set", "lo", "up"], check=True)
        self.proc = None
        self.log = open(os.path.join(self.root, "keeld.log"), "a+")

    def prefix(self):
        return ["ip", "netns", "exec", self.ns]

    def start(self):
        self.proc = subprocess.Popen(
            self.prefix() + [KEELD, "--state-dir", self.state, "--run-dir", self.run,
                             "--image-dir", self.images, "--socket", self.socket,
                             "--vmm", VMM],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("keeld exited with %d:\n%s" % (self.proc.returncode,
                                                                    self.log_text()))
            r = subprocess.run([KEELCTL, "--socket", self.socket, "host"],
                               capture_output=True)
            return r.returncode == 0
        wait_until(up, "keeld to answer on " + self.socket)

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-4000:]

    def kill9(self):
        """SIGKILL of keeld (ip netns exec execs it, so the child is keeld itself)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def ctl(self, *args, timeout=WAIT_S):
        """keelctl --json ARGS: the parsed output, or CtlError with the typed error."""
        r = subprocess.run([KEELCTL, "--socket", self.socket, "--json", *args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            code = None
            try:
                code = json.loads(r.stdout)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                pass
            lines = r.stderr.strip().splitlines()
            if len(lines) != 1 or not lines[0].startswith("keelctl: "):
                raise AssertionError("keelctl must fail with one line, got: %r" % r.stderr)
            raise CtlError(r.returncode, code, lines[0])
        return json.loads(r.stdout) if r.stdout.strip() else None

    def vms(self):
        """name -> (id, spec): what a refused request must leave unchanged."""
        return {vm["name"]: (vm["id"], vm["spec"]) for vm in self.ctl("vm", "list")}

    def console(self, name):
        return self.ctl("vm", "console", name)["data"]

    def create_vm(self, name, scenario="idle", *extra, memory=16):
        return self.ctl("vm", "create", name, "--kernel", "guest.elf", "--memory-mib", str(memory),
                        "--cmdline", "console=ttyS0 keeltest=" + scenario, *extra)

    def wait_state(self, name, *states):
        return wait_until(lambda: (lambda vm: vm if vm["state"] in states else None)(
            self.ctl("vm", "show", name)), "%s to be %s" % (name, "/".join(states)))

    def cleanup(self):
        """Kills keeld and everything in its namespace, removes the namespace and the dirs."""
        try:
            if self.proc is not None:
                self.proc.kill()
                self.proc.wait()
            for _ in range(3):
                pids = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True,
                                      text=True).stdout.split()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.2)
        finally:
            subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)
            self.log.close()
            shutil.rmtree(self.root, ignore_errors=True)


class Follower:
    """`keelctl --json events --follow` in the background, its events collected."""

    def __init__(self, agent):
        self.proc = subprocess.Popen([KEELCTL, "--socket", agent.socket, "--json", "events",
                                      "--follow"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(json.loads(line))
        self._queue.put(None)

    def wait_for(self, vm_name, event_type, timeout=WAIT_S):
        for e in self.events:
            if e["vmName"] == vm_name and e["type"] == event_type:
                return e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                e = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if e is None:
                raise AssertionError("events --follow ended: " + self.proc.stderr.read())
            self.events.append(e)
            if e["vmName"] == vm_name and e["type"] == event_type:
                return e
        raise AssertionError("no %s event for %s; got %r" % (event_type, vm_name, self.events))

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


class KeeldTest(unittest.TestCase):
    def setUp(self):
        self.agent = Agent()
        self.addCleanup(self.agent.cleanup)
        self.agent.start()

    def create_or_skip(self, device, name, scenario, *extra, memory=32):
        try:
            return self.agent.create_vm(name, scenario, *extra, memory=memory)
        except CtlError as e:
            if any(m in e.message for m in NO_DEVICE_MARKERS):
                self.skipTest("the keel-vmm under test has no %s yet: %s" % (device, e.message))
            raise

    def skip_if_no_device(self, name, device):
        vm = self.agent.ctl("vm", "show", name)
        text = vm["lastError"] + self.agent.console(name) + self.agent.log_text()
        if any(m in text for m in NO_DEVICE_MARKERS):
            self.skipTest("the keel-vmm under test has no %s yet: %s" % (device, vm["lastError"]))

    def test_lifecycle_of_several_vms(self):
        a = self.agent
        created = [a.create_vm("vm-%d" % i) for i in range(3)]
        self.assertEqual(len({vm["id"] for vm in created}), 3)
        for vm in created:
            self.assertIn(vm["state"], ("starting", "running"))
            self.assertEqual(vm["spec"]["memoryMib"], 16)
        for i in range(3):
            running = a.wait_state("vm-%d" % i, "running")
            self.assertTrue(pid_alive(running["pid"]))
        wait_until(lambda: "keeltest: idle" in a.console("vm-0"), "the guest to print")
        self.assertEqual(sorted(a.vms()), ["vm-0", "vm-1", "vm-2"])
        self.assertEqual([vm["name"] for vm in a.ctl("vm", "list", "--name-contains", "-1")],
                         ["vm-1"])

        paused = a.ctl("vm", "pause", "vm-1")
        self.assertEqual(paused["state"], "paused")
        self.assertEqual([vm["name"] for vm in a.ctl("vm", "list", "--state", "paused")],
                         ["vm-1"])
        self.assertEqual(a.ctl("vm", "resume", "vm-1")["state"], "running")

        # Graceful stop: the guest's ACPI power-button path powers it off (exit status 0).
        stopped = a.ctl("vm", "stop", "vm-0", "--timeout-s", "30")
        self.assertEqual(stopped["state"], "stopped")
        self.assertEqual(stopped["lastExitStatus"], 0)
        self.assertIn("keeltest: idle power button", a.console("vm-0"))
        started = a.ctl("vm", "start", "vm-0")
        self.assertIn(started["state"], ("starting", "running"))
        a.wait_state("vm-0", "running")

        hard = a.ctl("vm", "stop", "vm-2", "--hard")
        self.assertEqual(hard["state"], "stopped")
        old_pid = a.ctl("vm", "show", "vm-1")["pid"]
        rebooted = a.ctl("vm", "reboot", "vm-1")
        self.assertIn(rebooted["state"], ("starting", "running"))
        self.assertNotEqual(a.wait_state("vm-1", "running")["pid"], old_pid)

        stats = a.ctl("vm", "stats", "vm-0")
        self.assertEqual(stats["memoryMib"], 16)
        self.assertGreater(stats["vmmRssBytes"], 0)

        for i in range(3):
            pid = a.ctl("vm", "show", "vm-%d" % i)["pid"]
            self.assertEqual(a.ctl("vm", "delete", "vm-%d" % i)["state"], "deleted")
            if pid:
                wait_until(lambda: not pid_alive(pid), "the VMM of vm-%d to exit" % i)
        self.assertEqual(a.vms(), {})

    def test_graceful_stop_of_a_guest_ignoring_the_power_button_ends_in_a_hard_stop(self):
        a = self.agent
        a.create_vm("deaf", "idle,button=ignore")
        a.wait_state("deaf", "running")
        wait_until(lambda: "ignoring the power button" in a.console("deaf"),
                   "the guest to print")
        pid = a.ctl("vm", "show", "deaf")["pid"]
        follower = Follower(a)
        self.addCleanup(follower.close)
        t0 = time.monotonic()
        stopped = a.ctl("vm", "stop", "deaf", "--timeout-s", "1")
        waited = time.monotonic() - t0
        self.assertEqual(stopped["state"], "stopped")
        self.assertEqual(stopped["pid"], 0)
        # The guest had its second: the stop is the agent's hard stop after the timeout, not
        # a power-off (the guest never printed the power-button line).
        self.assertGreaterEqual(waited, 1.0)
        self.assertNotIn("idle power button", a.console("deaf"))
        wait_until(lambda: not pid_alive(pid), "the VMM to exit")
        follower.wait_for("deaf", "stopped")
        # It can be started again and stopped the same way.
        a.ctl("vm", "start", "deaf")
        a.wait_state("deaf", "running")
        self.assertEqual(a.ctl("vm", "stop", "deaf", "--timeout-s", "1")["state"], "stopped")

    def test_short_guest_stops_with_its_exit_status(self):
        a = self.agent
        a.create_vm("hello", "hello")
        vm = a.wait_state("hello", "stopped")
        self.assertEqual(vm["lastExitStatus"], 0)
        self.assertEqual(vm["pid"], 0)
        # Everything the guest printed before it exited, even when it exits at once.
        self.assertIn("keeltest: PASS hello", a.console("hello"))
        a.create_vm("exit7", "exit:7")
        self.assertEqual(a.wait_state("exit7", "stopped", "crashed")["lastExitStatus"], 7)

    def test_create_is_idempotent_on_request_id(self):
        a = self.agent
        first = a.create_vm("idem", "idle", "--request-id", "req-1")
        again = a.create_vm("idem", "idle", "--request-id", "req-1")
        self.assertEqual(first["id"], again["id"])
        self.assertEqual(again["requestId"], "req-1")
        self.assertEqual(list(a.vms()), ["idem"])
        with self.assertRaises(CtlError) as e:
            a.create_vm("idem", "idle", "--request-id", "req-1", memory=32)
        self.assertEqual(e.exception.code, "alreadyExists")

    def test_capacity_refusal_changes_nothing(self):
        a = self.agent
        cap = a.ctl("host")["capacity"]
        with self.assertRaises(CtlError) as e:
            a.create_vm("huge", "idle", "--no-start",
                        memory=cap["memoryMibTotal"] - cap["memoryMibAllocated"] + 1)
        self.assertEqual(e.exception.code, "capacityExhausted")
        self.assertEqual(e.exception.status, 1)
        # Defined VMs hold their vCPUs: fill what is left, then one more is refused.
        free = cap["vcpusTotal"] - cap["vcpusAllocated"]
        for i in range(free):
            a.create_vm("fill-%d" % i, "idle", "--no-start")
        before = a.vms()
        self.assertEqual(len(before), free)
        with self.assertRaises(CtlError) as e:
            a.create_vm("one-more", "idle", "--no-start")
        self.assertEqual(e.exception.code, "capacityExhausted")
        self.assertEqual(a.vms(), before)
        self.assertEqual(a.ctl("host")["capacity"]["vcpusAllocated"], cap["vcpusTotal"])

    def test_bad_specs_are_typed_errors_and_change_nothing(self):
        a = self.agent
        a.create_vm("taken")
        before = a.vms()
        outside = os.path.join(a.root, "outside.elf")
        shutil.copy(GUEST, outside)
        cases = [
            (["zero", "--kernel", "guest.elf", "--memory-mib", "0"], "invalidArgument"),
            (["Bad_Name", "--kernel", "guest.elf"], "invalidArgument"),
            (["nonet", "--kernel", "guest.elf", "--nic", "network=nosuch"], "notFound"),
            (["novol", "--kernel", "guest.elf", "--disk", "volume=nosuch"], "notFound"),
            (["noimage", "--kernel", "missing.elf"], "notFound"),
            (["escape", "--kernel", "../outside.elf"], "permissionDenied"),
            (["absolute", "--kernel", outside], "permissionDenied"),
            (["taken", "--kernel", "guest.elf"], "alreadyExists"),
        ]
        for args, code in cases:
            with self.subTest(args=args):
                with self.assertRaises(CtlError) as e:
                    a.ctl("vm", "create", *args)
                self.assertEqual(e.exception.code, code, e.exception.message)
                self.assertEqual(e.exception.status, 1)
        with self.assertRaises(CtlError) as e:
            a.ctl("vm", "show", "nosuch")
        self.assertEqual(e.exception.code, "notFound")
        self.assertEqual(a.vms(), before)
        self.assertEqual(a.ctl("net", "list"), [])
        self.assertEqual(a.ctl("volume", "list"), [])

    def test_vms_survive_sigkill_of_keeld(self):
        a = self.agent
        for i in range(3):
            a.create_vm("keep-%d" % i)
        pids = {n: a.wait_state(n, "running")["pid"] for n in ("keep-0", "keep-1", "keep-2")}
        a.kill9()
        for pid in pids.values():
            self.assertTrue(pid_alive(pid))
        a.start()
        vms = {vm["name"]: vm for vm in a.ctl("vm", "list")}
        self.assertEqual(sorted(vms), sorted(pids))
        for name, pid in pids.items():
            self.assertEqual(vms[name]["state"], "running")
            self.assertEqual(vms[name]["pid"], pid)
        # The reattached VMMs still obey: a graceful stop reaches the guest.
        self.assertEqual(a.ctl("vm", "stop", "keep-0")["state"], "stopped")
        wait_until(lambda: not pid_alive(pids["keep-0"]), "keep-0's VMM to exit")

    def test_concurrent_creates_are_durable_once_acknowledged(self):
        # Concurrent createVm calls share store commits; each is acknowledged only after the
        # commit that holds it, so a SIGKILL of keeld right after the last answer loses none.
        # Half the guests exit at once, which must not fail their createVm either.
        a = self.agent
        cap = a.ctl("host")["capacity"]
        names = ["burst-%d" % i for i in range(min(16, cap["vcpusTotal"]))]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
            created = list(pool.map(
                lambda n: a.create_vm(n, "hello" if n.endswith(("1", "3", "5", "7", "9"))
                                      else "idle"), names))
        a.kill9()
        a.start()
        vms = {vm["name"]: vm for vm in a.ctl("vm", "list")}
        self.assertEqual(sorted(vms), sorted(names))
        for vm in created:
            self.assertEqual(vms[vm["name"]]["id"], vm["id"])
            self.assertIn(vms[vm["name"]]["state"], ("running", "stopped"))
        for n in names:
            if not n.endswith(("1", "3", "5", "7", "9")):
                self.assertEqual(vms[n]["state"], "running")

    def test_sigkill_of_a_vmm_is_a_crash(self):
        a = self.agent
        follower = Follower(a)
        self.addCleanup(follower.close)
        a.create_vm("victim")
        pid = a.wait_state("victim", "running")["pid"]
        os.kill(pid, signal.SIGKILL)
        event = follower.wait_for("victim", "crashed")
        self.assertEqual(event["state"], "crashed")
        vm = a.wait_state("victim", "crashed")
        self.assertEqual(vm["pid"], 0)
        self.assertEqual(vm["lastExitStatus"], 128 + signal.SIGKILL)
        self.assertNotEqual(vm["lastError"], "")
        # The history can be read back without --follow.
        replay = subprocess.run([KEELCTL, "--socket", a.socket, "--json", "events",
                                 "--after-seq", str(event["seq"] - 1)],
                                capture_output=True, text=True, timeout=WAIT_S)
        self.assertEqual(json.loads(replay.stdout.splitlines()[0])["seq"], event["seq"])

    def test_two_event_watchers_see_the_same_events(self):
        a = self.agent
        watchers = [Follower(a), Follower(a)]
        for w in watchers:
            self.addCleanup(w.close)
        # Both are subscribed once an event made after they started reaches them.
        a.ctl("net", "list")
        a.create_vm("watched")
        a.wait_state("watched", "running")
        a.ctl("vm", "delete", "watched")
        seqs = []
        for w in watchers:
            seqs.append([w.wait_for("watched", t)["seq"] for t in ("created", "started",
                                                                    "deleted")])
        self.assertEqual(seqs[0], seqs[1])
        self.assertEqual(seqs[0], sorted(seqs[0]))

    def test_volumes_and_networks(self):
        a = self.agent
        vol = a.ctl("volume", "create", "data", "--size", "8M")
        self.assertEqual(vol["sizeBytes"], 8 << 20)
        self.assertEqual(vol["state"], "ready")
        src = os.path.join(a.images, "seed.raw")
        with open(src, "wb") as f:
            f.write(b"keel" * 1024)
            f.truncate(1 << 20)
        imported = a.ctl("volume", "import", "seed", "--from", "seed.raw")
        self.assertEqual(imported["sizeBytes"], 1 << 20)
        self.assertEqual(sorted(v["name"] for v in a.ctl("volume", "list")), ["data", "seed"])
        net = a.ctl("net", "create", "lan", "--address", "10.93.0.1/24")
        self.assertEqual(net["bridge"], "kbr-lan")
        a.create_vm("user", "idle", "--disk", "volume=data", "--nic", "network=lan", "--no-start")
        with self.assertRaises(CtlError) as e:
            a.ctl("volume", "delete", "data")
        self.assertEqual(e.exception.code, "failedPrecondition")
        with self.assertRaises(CtlError) as e:
            a.ctl("net", "delete", "lan")
        self.assertEqual(e.exception.code, "failedPrecondition")
        a.ctl("vm", "delete", "user")
        self.assertEqual(a.ctl("volume", "delete", "data"), {"ok": True})
        self.assertEqual(a.ctl("net", "delete", "lan"), {"ok": True})
        self.assertEqual([v["name"] for v in a.ctl("volume", "list")], ["seed"])

    def test_blk_rw_through_the_agent(self):
        a = self.agent
        a.ctl("volume", "create", "blk", "--size", "16M")
        self.create_or_skip("virtio-blk", "blk", "blk-rw", "--disk", "volume=blk,serial=keel-blk")
        vm = a.wait_state("blk", "stopped", "crashed")
        self.skip_if_no_device("blk", "virtio-blk")
        console = a.console("blk")
        self.assertIn("keeltest: PASS blk-rw", console, vm["lastError"])
        self.assertIn("keeltest: blk id keel-blk", console)
        self.assertEqual(vm["lastExitStatus"], 0)

    def test_net_ping_through_the_agent(self):
        a = self.agent
        a.ctl("net", "create", "pnet", "--address", "10.94.0.1/24")
        self.create_or_skip("virtio-net", "pinger",
                            "net-ping,ip=10.94.0.2,peer=10.94.0.1,mask=24,count=3,serve_s=20",
                            "--nic", "network=pnet")
        vm = a.wait_state("pinger", "running", "stopped", "crashed")
        if vm["state"] != "running":
            self.skip_if_no_device("pinger", "virtio-net")
        self.assertEqual(vm["nics"][0]["network"], "pnet")
        line = wait_until(lambda: next((l for l in a.console("pinger").splitlines()
                                        if l.startswith("keeltest: net-ping serving")
                                        or l.startswith("keeltest: FAIL")), None),
                          "the guest's pings", timeout=WAIT_S)
        self.skip_if_no_device("pinger", "virtio-net")
        self.assertTrue(line.startswith("keeltest: net-ping serving"), a.console("pinger"))
        self.assertIn("keeltest: net-ping 3/3 replies from 10.94.0.1", a.console("pinger"))
        r = subprocess.run(a.prefix() + [sys.executable, NET_HOST, "ping", "10.94.0.2", "3"],
                           capture_output=True, text=True, timeout=WAIT_S)
        self.assertIn("replies 3", r.stdout, r.stderr)
        a.ctl("vm", "delete", "pinger")
        a.ctl("net", "delete", "pnet")


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (keeld creates bridges and taps)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "needs /dev/kvm"
    if shutil.which("ip") is None or not os.path.exists("/dev/net/tun"):
        return "needs iproute2 and /dev/net/tun"
    return None


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    KEELD, KEELCTL, VMM, GUEST, NET_HOST = (os.path.abspath(p) for p in sys.argv[1:6])
    reason = skip_reason()
    if reason:
        print("SKIP: " + reason)
        sys.exit(77)
    unittest.main(argv=sys.argv[:1] + sys.argv[6:], verbosity=2)
