#!/usr/bin/env python3
"""VM density through keeld, beside QEMU microvm in the same run.

    python3 bench/density/density_bench.py --build build [--n 100,500,1000] [--qemu-n 100,500]

For each N: a fresh keeld (temporary state/run/image directories) and density_client create
N idle test guests (16 MiB, keeltest=idle) through the API, as many calls in flight as
--window allows. Reported: createVm calls answered per second and their p50/p99 latency, the
time until every guest has printed `keeltest: idle` on its console, host memory per VM
(MemAvailable before minus after, / N; and the VMMs' summed PSS / N), the part of a VMM's
memory that is not guest RAM the guest touched (PSS minus the Rss of the guest-RAM mapping),
keeld's RSS, and p50/p99 of getVm and listVms while all N run. Then the same N guests as
`qemu-system-x86_64 -M microvm` processes started as fast as one process can fork them:
start rate, time until all printed `keeltest: idle`, memory per VM. Everything is killed and
removed afterwards, also on Ctrl-C or an error. A size is skipped when the memory it would take
(from the previous size's figure) exceeds half of MemAvailable.

Needs root and /dev/kvm. The machine is shared; numbers move with what else runs.
"""

import argparse
import atexit
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MEM_MIB = 16
CMDLINE = "console=ttyS0 keeltest=idle"
READY = "keeltest: idle"
procs = []     # everything this run started, killed at exit
tmpdirs = []


def cleanup():
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                p.kill()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    procs.clear()
    for d in tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    tmpdirs.clear()


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable")


def settle_mem_available(seconds=3.0):
    """MemAvailable after a short settle, the median of a few samples (the host is shared)."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(mem_available_kib())
        time.sleep(0.25)
    samples.sort()
    return samples[len(samples) // 2]


def proc_kib(pid, name, field):
    """The KiB value of `field` ("VmRSS:", "Pss:") in /proc/PID/`name`; 0 if the process is
    gone."""
    try:
        with open("/proc/%d/%s" % (pid, name)) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    return proc_kib(pid, "status", "VmRSS:")


def pss_kib(pid):
    return proc_kib(pid, "smaps_rollup", "Pss:")


def guest_ram_rss_kib(pid, mem_mib):
    """Rss of the mapping that is the guest's RAM (the one mapping of exactly its size)."""
    want = mem_mib * 1024
    found = None
    size = rss = None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                if line.startswith("Size:"):
                    size = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
                    if size == want and found is None:
                        found = rss
    except OSError:
        return None
    return found


def wait_all_ready(logs, what, timeout=600):
    pending = set(logs)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        done = set()
        for path in pending:
            try:
                with open(path, "rb") as f:
                    if READY.encode() in f.read():
                        done.add(path)
            except OSError:
                pass
        pending -= done
        if pending:
            time.sleep(0.05)
    if pending:
        raise RuntimeError("%d of %d %s guests never printed %r" % (len(pending), len(logs), what,
                                                                    READY))


def memory_figures(pids, n, mem_before_kib):
    mem_after = settle_mem_available()
    pss = [pss_kib(p) for p in pids]
    rss = [rss_kib(p) for p in pids]
    sample = pids[:: max(1, len(pids) // 50)]
    overhead = []
    touched = []
    for p in sample:
        g = guest_ram_rss_kib(p, MEM_MIB)
        if g is not None:
            touched.append(g)
            overhead.append(pss_kib(p) - g)
    med = lambda v: sorted(v)[len(v) // 2] if v else 0
    return {
        "mem_available_delta_mib_per_vm": (mem_before_kib - mem_after) / 1024 / n,
        "pss_mib_per_vm": sum(pss) / 1024 / n,
        "rss_mib_per_vm": sum(rss) / 1024 / n,
        "guest_touched_mib": med(touched) / 1024,
        "vmm_overhead_mib": med(overhead) / 1024,
    }


def run_keel(args, n):
    root = tempfile.mkdtemp(prefix="keel-density-")
    tmpdirs.append(root)
    dirs = {k: os.path.join(root, k) for k in ("state", "run", "images")}
    for d in dirs.values():
        os.makedirs(d)
    shutil.copy(args.guest, os.path.join(dirs["images"], "guest.elf"))
    sock = os.path.join(dirs["run"], "keel.sock")
    log = open(os.path.join(root, "keeld.log"), "w")

    def raise_limits():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    keeld = subprocess.Popen(
        [args.keeld, "--state-dir", dirs["state"], "--run-dir", dirs["run"], "--image-dir",
         dirs["images"], "--socket", sock, "--vmm", args.vmm,
         "--cpu-overcommit", str(max(4, n)), "--memory-overcommit", "4"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=raise_limits)
    procs.append(keeld)
    ctl = lambda *a: subprocess.run([args.keelctl, "--socket", sock, "--json", *a],
                                    capture_output=True, text=True)
    deadline = time.monotonic() + 60
    while ctl("host").returncode != 0:
        if keeld.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("keeld did not start: " + open(log.name).read()[-2000:])
        time.sleep(0.1)

    mem_before = settle_mem_available()
    t0 = time.monotonic()
    created = subprocess.run([args.client, sock, "create", "d", str(n), "guest.elf",
                              str(MEM_MIB), CMDLINE, str(args.window)],
                             capture_output=True, text=True)
    create = json.loads(created.stdout.splitlines()[-1])
    if create["refused"]:
        raise RuntimeError("keeld refused creates: " + create["first_error"])
    listed = json.loads(ctl("vm", "list").stdout)
    pids = [vm["pid"] for vm in listed if vm["pid"] > 0]
    logs = glob.glob(os.path.join(dirs["run"], "vms", "*", "console.log"))
    if len(logs) != n:
        logs = [os.path.join(dirs["run"], "vms", vm["id"], "console.log") for vm in listed]
    wait_all_ready(logs, "Keel")
    all_ready_s = time.monotonic() - t0
    mem = memory_figures(pids, n, mem_before)
    lat = subprocess.run([args.client, sock, "latency", "d", str(n), str(args.calls)],
                         capture_output=True, text=True)
    lat = {j["op"]: j for j in map(json.loads, lat.stdout.splitlines())}
    result = {
        "n": n, "running": len(pids),
        "create_per_s": create["per_s"], "create_p50_ms": create["p50_ms"],
        "create_p99_ms": create["p99_ms"], "all_ready_s": all_ready_s,
        "ready_per_s": n / all_ready_s,
        "keeld_rss_mib": rss_kib(keeld.pid) / 1024,
        "get_p50_ms": lat["getVm"]["p50_ms"], "get_p99_ms": lat["getVm"]["p99_ms"],
        "list_p50_ms": lat["listVms"]["p50_ms"], "list_p99_ms": lat["listVms"]["p99_ms"],
        **mem,
    }
    deleted = subprocess.run([args.client, sock, "delete", "d", str(n), str(args.window)],
                             capture_output=True, text=True)
    result["delete_per_s"] = json.loads(deleted.stdout.splitlines()[-1])["per_s"]
    keeld.terminate()
    keeld.wait(timeout=60)
    for pid in pids:  # whatever a failed delete left behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log.close()
    return result


def run_qemu(args, n):
    root = tempfile.mkdtemp(prefix="qemu-density-")
    tmpdirs.append(root)
    mem_before = settle_mem_available()
    started = []
    t0 = time.monotonic()
    for i in range(n):
        serial = os.path.join(root, "q%d.log" % i)
        p = subprocess.Popen(
            [args.qemu, "-M", "microvm", "-enable-kvm", "-cpu", "host,-arch-capabilities",
             "-m", str(MEM_MIB), "-nodefaults", "-no-user-config", "-nographic",
             "-serial", "file:" + serial, "-kernel", args.guest, "-append", CMDLINE],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        procs.append(p)
        started.append((p, serial))
    spawn_s = time.monotonic() - t0
    wait_all_ready([s for _, s in started], "QEMU")
    all_ready_s = time.monotonic() - t0
    pids = [p.pid for p, _ in started]
    mem = memory_figures(pids, n, mem_before)
    for p, _ in started:
        p.kill()
    for p, _ in started:
        p.wait()
    return {"n": n, "spawn_per_s": n / spawn_s, "all_ready_s": all_ready_s,
            "ready_per_s": n / all_ready_s, **mem}


def fits(n, per_vm_mib):
    return n * per_vm_mib < mem_available_kib() / 1024 / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--n", default="100,500,1000")
    ap.add_argument("--qemu-n", default="100,500")
    ap.add_argument("--window", type=int, default=64, help="createVm calls in flight")
    ap.add_argument("--calls", type=int, default=300, help="getVm and listVms calls each")
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64"))
    args = ap.parse_args()
    b = args.build
    args.keeld = os.path.abspath(os.path.join(b, "agent", "keeld"))
    args.keelctl = os.path.abspath(os.path.join(b, "agent", "keelctl"))
    args.vmm = os.path.abspath(os.path.join(b, "vmm", "keel-vmm"))
    args.guest = os.path.abspath(os.path.join(b, "guest", "keel-guest.elf"))
    args.client = os.path.abspath(os.path.join(b, "bench", "density", "density_client"))
    if os.geteuid() != 0 or not os.access("/dev/kvm", os.W_OK):
        sys.exit("density_bench: needs root and /dev/kvm")
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    keel, qemu = [], []
    per_vm = 20.0  # MiB, until measured
    for n in map(int, args.n.split(",")):
        if not fits(n, per_vm):
            print("keel N=%d skipped: not enough memory" % n, file=sys.stderr)
            continue
        r = run_keel(args, n)
        per_vm = max(r["mem_available_delta_mib_per_vm"], r["pss_mib_per_vm"], 1.0)
        keel.append(r)
        print(json.dumps({"keel": r}), flush=True)
        cleanup()
    per_vm = 40.0
    if args.qemu:
        for n in map(int, args.qemu_n.split(",")):
            if not fits(n, per_vm):
                print("qemu N=%d skipped: not enough memory" % n, file=sys.stderr)
                continue
            r = run_qemu(args, n)
            per_vm = max(r["mem_available_delta_mib_per_vm"], r["pss_mib_per_vm"], 1.0)
            qemu.append(r)
            print(json.dumps({"qemu": r}), flush=True)
            cleanup()

    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    print()
    print("| VMM | N | created/s (API) | all printing/s | create p50/p99 ms | MemAvailable Δ/VM MiB "
          "| PSS/VM MiB | VMM beyond touched guest RAM MiB | guest touched MiB | keeld RSS MiB "
          "| getVm p50/p99 ms | listVms p50/p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in keel:
        print("| keel | %d | %.0f | %.0f | %.1f / %.1f | %.2f | %.2f | %.2f | %.2f | %.1f "
              "| %.2f / %.2f | %.2f / %.2f |" % (
                  r["n"], r["create_per_s"], r["ready_per_s"], r["create_p50_ms"],
                  r["create_p99_ms"], r["mem_available_delta_mib_per_vm"], r["pss_mib_per_vm"],
                  r["vmm_overhead_mib"], r["guest_touched_mib"], r["keeld_rss_mib"],
                  r["get_p50_ms"], r["get_p99_ms"], r["list_p50_ms"], r["list_p99_ms"]))
    for r in qemu:
        print("| qemu microvm | %d | %.0f (spawned) | %.0f | - | %.2f | %.2f | %.2f | %.2f | - | - "
              "| - |" % (r["n"], r["spawn_per_s"], r["ready_per_s"],
                         r["mem_available_delta_mib_per_vm"], r["pss_mib_per_vm"],
                         r["vmm_overhead_mib"], r["guest_touched_mib"]))


if __name__ == "__main__":
    main()
