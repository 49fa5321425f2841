#!/usr/bin/env python
"""Benchmark: virtops.unified.vmware vs community.vmware.vmware_vm_inventory vs vmware.vmware.vms.

All three read the same vcsim peer (tests/peers/vcsim, govmomi 0.24 simulator) per size:
1 datacenter, 10 clusters x 10 hosts = 100 ESXi hosts, N VMs (N/10 per cluster). For each
source and N: median whole-process wall time, CPU time and peak RSS of
`ansible-inventory -i CFG --list > /dev/null`. Peak RSS is the ru_maxrss that wait4()
returns for that one ansible-inventory process (Linux: KiB).

Run through bench/run.sh vmware (it sets up the venv and ANSIBLE_COLLECTIONS_PATH).
Stdlib only; pyVmomi is needed by the plugins, not by this script.
"""

import argparse
import datetime
import json
import os
import pstats
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OURS, CV, CVX, VV = "virtops.unified", "community.vmware", "community.vmware-nocompat", "vmware.vmware"
FLOOR = "ansible floor (static YAML)"
DRIVER = "driver only"
# Our plugin's vSphere read without Ansible: the same VmwareDriver call as fetch_records() and the
# same to_vars() as parse(), in a bare Python process. Prints one JSON line with the inner times.
DRIVER_PROBE = """
import json, os, sys, time
t0 = time.perf_counter()
sys.path[:0] = sys.argv[3].split(os.pathsep)  # ANSIBLE_COLLECTIONS_PATH
from ansible_collections.virtops.unified.plugins.module_utils.vmware_driver import VmwareDriver
t1 = time.perf_counter()
with VmwareDriver(hostname=sys.argv[1], port=int(sys.argv[2]), username=os.environ["VMWARE_USER"],
                  password=os.environ["VMWARE_PASSWORD"], validate_certs=False) as drv:
    t2 = time.perf_counter()
    inv = drv.list_inventory()
    t3 = time.perf_counter()
records = [m.to_vars() for m in inv.hosts + inv.vms]
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "login_s": t2 - t1, "list_inventory_s": t3 - t2, "to_vars_s": t4 - t3,
                  "vms": sorted(r["virt_name"] for r in records if r["virt_kind"] == "vm"),
                  "esxi_hosts": sum(r["virt_kind"] == "hypervisor" for r in records)}))
"""
CLUSTERS, HOSTS_PER_CLUSTER = 10, 10
# tool -> (config file name, text); the plugins pick files by suffix: ours and community.vmware
# take *vmware.yml, vmware.vmware.vms takes *vms.yml / *vmware_vms.yml.
# Connection settings only; everything else is each plugin's default.
CONFIGS = {
    OURS: ("bench.vmware.yml",  # credentials from VMWARE_USER / VMWARE_PASSWORD
           "plugin: virtops.unified.vmware\nhostname: {host}\nport: {port}\nvalidate_certs: false\n"),
    CV: ("bench.vmware.yml",
         "plugin: community.vmware.vmware_vm_inventory\nhostname: {host}\nusername: {user}\n"
         "password: {password}\nport: {port}\nvalidate_certs: false\n"),
    # not a default configuration (informative row): without the flattened dotted variables
    # ('config.name', ...), which ansible-core 2.19 accepts only through its deprecation path
    CVX: ("bench.vmware.yml",
          "plugin: community.vmware.vmware_vm_inventory\nhostname: {host}\nusername: {user}\n"
          "password: {password}\nport: {port}\nvalidate_certs: false\nenable_backward_compatibility: false\n"),
    VV: ("bench.vmware_vms.yml",
         "plugin: vmware.vmware.vms\nhostname: {host}\nusername: {user}\n"
         "password: {password}\nport: {port}\nvalidate_certs: false\n"),
}
PLUGIN_NAMES = {OURS: "virtops.unified.vmware", CV: "community.vmware.vmware_vm_inventory",
                CVX: "community.vmware.vmware_vm_inventory, enable_backward_compatibility: false (not default)",
                VV: "vmware.vmware.vms", FLOOR: FLOOR,
                DRIVER: "our VmwareDriver.list_inventory + to_vars alone (no Ansible)"}
# cProfile buckets for our plugin: (label, file suffix, function name), cumulative time
PROFILE_BUCKETS = [
    ("whole ansible-inventory run (InventoryCLI.run)", "ansible/cli/inventory.py", "run"),
    ("our parse() (plugin total)", "plugin_utils/inventory.py", "parse"),
    ("  fetch_records (login, read vSphere, build records, logout)", "plugins/inventory/vmware.py", "fetch_records"),
    ("    SmartConnect (login)", "pyVim/connect.py", "SmartConnect"),
    ("    pyVmomi SOAP calls (SoapStubAdapter.InvokeMethod)", "pyVmomi/SoapAdapter.py", "InvokeMethod"),
    ("      of which response deserialisation (SoapResponseDeserializer.Deserialize)",
     "pyVmomi/SoapAdapter.py", "Deserialize"),
    ("    VmwareDriver._retrieve (SOAP + propSet -> dict)", "module_utils/vmware_driver.py", "_retrieve"),
    ("    VmwareDriver._vm_machine (records)", "module_utils/vmware_driver.py", "_vm_machine"),
    ("  Machine.to_vars", "module_utils/model.py", "to_vars"),
    ("  populate (add_host/set_variable/groups)", "plugin_utils/inventory.py", "populate"),
    ("--list output: json_inventory (get_vars per host)", "ansible/cli/inventory.py", "json_inventory"),
    ("--list output: dump (JSON encoding)", "ansible/cli/inventory.py", "dump"),
]


def log(msg):
    print("[bench] " + msg, flush=True)


# --- simulator ---------------------------------------------------------------
def build_vcsim():
    out = subprocess.run([os.path.join(ROOT, "tests/peers/vcsim/build.sh")], stdout=subprocess.PIPE, text=True,
                         check=True).stdout.strip().splitlines()
    return out[-1]


class Vcsim:
    """One simulator process: 100 hosts in 10 clusters, n VMs. Stops when stdin closes."""

    def __init__(self, binary, n, workdir):
        if n % CLUSTERS:
            raise ValueError("size %d is not a multiple of %d (VMs per cluster)" % (n, CLUSTERS))
        self.n = n
        self.flags = ["-dc", "1", "-cluster", str(CLUSTERS), "-cluster-host", str(HOSTS_PER_CLUSTER),
                      "-host", "0", "-vm", str(n // CLUSTERS)]
        self.stderr = open(os.path.join(workdir, "vcsim-%d.log" % n), "w")
        t = time.perf_counter()
        self.proc = subprocess.Popen([binary, "-listen", "127.0.0.1:0", "-control", "127.0.0.1:0"] + self.flags
                                     + ["-exit-on-stdin-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, start_new_session=True)
        line = b""
        deadline = time.monotonic() + 120 + n * 0.02
        while not line.endswith(b"\n"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vcsim %s did not get ready (rc=%s), see %s" % (
                    " ".join(self.flags), self.proc.poll(), self.stderr.name))
            if select.select([self.proc.stdout], [], [], 1)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk and self.proc.poll() is not None:
                    continue
                line += chunk
        self.startup = time.perf_counter() - t
        ready = json.loads(line.decode())
        url = urllib.parse.urlsplit(ready["url"])
        self.host, self.port = url.hostname, url.port
        self.user, self.password = urllib.parse.unquote(url.username), urllib.parse.unquote(url.password)
        self.control = ready["control"]

    def state(self):
        with urllib.request.urlopen(self.control + "/state", timeout=120) as resp:
            return json.load(resp)

    def rss_mib(self):
        """(VmRSS, VmHWM) of the simulator in MiB."""
        out = {}
        with open("/proc/%d/status" % self.proc.pid) as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
        return round(out.get("VmRSS", 0), 1), round(out.get("VmHWM", 0), 1)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # -exit-on-stdin-eof
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.stderr.close()


# --- one ansible-inventory run -----------------------------------------------
class TimedOut(Exception):
    pass


# Measures one command from a small process. ru_maxrss of a child also holds the peak RSS of the
# process it was forked from (Linux keeps the old mm's high-water mark across exec), so a child of
# this benchmark process (which holds the simulator's 10,000-VM state) would report at least this
# process's own peak: a bare `true` reads 310 MiB after a 300 MiB parent. Forking from this
# 6 MiB stub keeps the figure the command's own.
MEASURE_STUB = r"""
import json, os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_pid, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
with open(sys.argv[1], "w") as fh:
    json.dump({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
               "rc": os.waitstatus_to_exitcode(status)}, fh)
"""


def run_inventory(argv, cwd, env, capture=None, timeout=None):
    """Run argv (`ansible-inventory -i CFG --list`); return (wall s, CPU s, peak RSS KiB).

    stdout goes to the file `capture` (or /dev/null). MEASURE_STUB forks and execs argv, and
    wait4() gives that one process's rusage: ru_maxrss is its peak RSS (KiB on Linux), including
    any child it waited for. Wall time runs from the fork to the end of wait4().
    """
    out = open(capture, "w") if capture else open(os.devnull, "w")
    err = tempfile.TemporaryFile(mode="w+")
    fd, meas = tempfile.mkstemp(prefix="bench-measure-", suffix=".json")
    os.close(fd)
    killed = []
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", MEASURE_STUB, meas] + argv, env=env, cwd=cwd,
                                stdout=out, stderr=err, start_new_session=True)

        def kill():  # the stub and the measured command share the new session's process group
            killed.append(True)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            proc.wait()
        except BaseException:
            kill()
            proc.wait()
            raise
        finally:
            if timer:
                timer.cancel()
        if killed:
            raise TimedOut("killed after %d s" % timeout)
        with open(meas) as fh:
            text = fh.read()
        if proc.returncode != 0 or not text:
            err.seek(0)
            raise RuntimeError("measuring %s failed (rc=%d):\n%s" % (
                " ".join(os.path.basename(a) for a in argv), proc.returncode, err.read().strip()))
        res = json.loads(text)
        if res["rc"] != 0:
            err.seek(0)
            raise RuntimeError("%s failed (rc=%d):\n%s" % (
                " ".join(os.path.basename(a) for a in argv), res["rc"], err.read().strip()))
        return res["wall"], res["cpu"], res["maxrss_kib"]
    finally:
        out.close()
        err.close()
        os.unlink(meas)


def plain(value):
    """ansible-core 2.19 --list marks strings as {"__ansible_unsafe": "..."}: unwrap."""
    if isinstance(value, dict) and set(value) == {"__ansible_unsafe"}:
        return value["__ansible_unsafe"]
    return value


def listed(path):
    """(set of vSphere VM names, number of ESXi host entries, number of inventory hosts) of a --list output."""
    with open(path) as fh:
        data = json.load(fh)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    hosts = set(hostvars)
    for group in data.values():
        hosts.update(group.get("hosts", []))
    vms, esxi = set(), 0
    for name in hosts:
        hv = hostvars.get(name, {})
        kind = plain(hv.get("virt_kind"))
        if kind == "hypervisor":
            esxi += 1
        elif kind == "vm":
            vms.add(plain(hv.get("virt_name")))
        elif "config" in hv and isinstance(hv["config"], dict) and "name" in hv["config"]:
            vms.add(plain(hv["config"]["name"]))  # community.vmware / vmware.vmware: config.name
        elif "name" in hv:
            vms.add(plain(hv["name"]))
        else:
            vms.add(name)  # floor: the host name is the VM name
    return vms, esxi, len(hosts)


# --- profile -----------------------------------------------------------------
def profile_ours(inv_args, cwd, env, workdir, n):
    """ansible-inventory INV_ARGS under cProfile: cumulative time of a few known functions, top self time."""
    prof = os.path.join(workdir, "ours-%d.prof" % n)
    argv = [sys.executable, "-m", "cProfile", "-o", prof, shutil.which("ansible-inventory")] + inv_args
    wall, _cpu, _rss = run_inventory(argv, cwd, env)
    stats = pstats.Stats(prof)
    entries = stats.stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    buckets = []
    for label, suffix, func in PROFILE_BUCKETS:
        hits = [v for (f, _l, fn), v in entries.items() if f.endswith(suffix) and fn == func]
        best = max(hits, key=lambda v: v[3]) if hits else None
        buckets.append({"what": label, "calls": best[1] if best else None,
                        "cumulative_s": round(best[3], 2) if best else None})
    top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    top_self = [{"function": "%s:%d(%s)" % (short_path(f), line, fn), "calls": v[1], "self_s": round(v[2], 2),
                 "cumulative_s": round(v[3], 2)} for (f, line, fn), v in top]
    return {"size": n, "wall_under_cprofile_s": round(wall, 2), "buckets": buckets, "top_self_time": top_self}


def short_path(path):
    for marker in ("site-packages/", "ansible_collections/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# --- main ----------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated VM counts, multiples of 10 "
                    "(default 1000,10000); always 100 ESXi hosts")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per tool and size (median taken)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a run is killed (default 600)")
    ap.add_argument("--slow", type=float, default=120,
                    help="a tool whose warm-up took longer than this many seconds gets one timed run (default 120)")
    ap.add_argument("--tools", default=",".join([OURS, CV, VV, CVX]), help="subset of: %s" % ", ".join(CONFIGS))
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run of ours at the largest size")
    ap.add_argument("--no-driver", action="store_true", help="skip the 'driver only' rows (our read without Ansible)")
    ap.add_argument("--report-only", action="store_true",
                    help="only render the table again from RESULTS/vmware_inventory.json")
    ap.add_argument("--vcsim", help="simulator binary (default: build it with tests/peers/vcsim/build.sh)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"), help="output directory")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(tools) - set(CONFIGS)
    if unknown:
        sys.exit("unknown tools: %s" % ", ".join(sorted(unknown)))
    if not shutil.which("ansible-inventory"):
        sys.exit("ansible-inventory not on PATH (use bench/run.sh vmware)")
    if args.report_only:
        with open(os.path.join(args.results, "vmware_inventory.json")) as fh:
            saved = json.load(fh)
        report(saved["results"], saved["errors"], saved["profile"], saved["meta"], saved.get("tools", tools),
               args.results)
        return 1 if saved["errors"] else 0
    binary = args.vcsim or build_vcsim()
    meta = run_meta(args)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="bench-vmware-inv-")
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true",
               ANSIBLE_DEPRECATION_WARNINGS="false", ANSIBLE_NOCOLOR="1")
    cmd = [shutil.which("ansible-inventory")]
    rows, errors, sims, profile = [], {}, [], None
    try:
        for n in sizes:
            log("N=%d: starting vcsim (%d hosts, %d VMs) ..." % (n, CLUSTERS * HOSTS_PER_CLUSTER, n))
            sim = Vcsim(binary, n, workdir)
            sims.append(sim)
            truth = sim.state()
            truth_vms = {vm["name"] for vm in truth["vms"]}
            log("N=%d: vcsim ready in %.1f s on port %d: %d hosts, %d VMs (control API /state)" % (
                n, sim.startup, sim.port, len(truth["hosts"]), len(truth_vms)))
            env_n = dict(env, VMWARE_USER=sim.user, VMWARE_PASSWORD=sim.password)
            srcs = {}  # tool -> (argv, cwd)
            for tool in tools:
                fname, text = CONFIGS[tool]
                path = os.path.join(workdir, "%s-%d" % (tool, n), fname)
                os.makedirs(os.path.dirname(path))
                with open(path, "w") as fh:
                    fh.write(text.format(host=sim.host, port=sim.port, user=sim.user, password=sim.password))
                srcs[tool] = (cmd + ["-i", path, "--list"], os.path.dirname(path))
            # Ansible's own floor: a static YAML inventory of the same N VM names, no vars, no vSphere
            floor = os.path.join(workdir, "floor-%d" % n, "hosts.yml")
            os.makedirs(os.path.dirname(floor))
            with open(floor, "w") as fh:
                fh.write("all:\n  hosts:\n" + "".join("    %s:\n" % name for name in sorted(truth_vms)))
            srcs[FLOOR] = (cmd + ["-i", floor, "--list"], os.path.dirname(floor))
            if OURS in tools and not args.no_driver:
                colls = os.environ.get("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".build/collections"))
                srcs[DRIVER] = ([sys.executable, "-c", DRIVER_PROBE, sim.host, str(sim.port), colls], workdir)
            res = {}
            for tool, (argv, cwd) in srcs.items():  # warm-up, output kept for the sanity check
                out = os.path.join(workdir, "out-%s-%d.json" % (tool.split()[0], n))
                try:
                    wall, cpu, rss = run_inventory(argv, cwd, env_n, capture=out, timeout=args.timeout)
                except TimedOut:
                    res[tool] = {"size": n, "tool": tool, "timed_out": True, "timeout_s": args.timeout,
                                 "walls": [], "cpus": [], "rss_kib": []}
                    log("N=%d %s warm-up: timed out after %d s, no timed runs" % (n, tool, args.timeout))
                    continue
                except RuntimeError as exc:
                    errors["%s N=%d" % (tool, n)] = str(exc)
                    log("ERROR " + str(exc))
                    continue
                if tool == DRIVER:
                    with open(out) as fh:
                        probe = json.load(fh)
                    vms, esxi, inv_hosts = set(probe["vms"]), probe["esxi_hosts"], None
                else:
                    vms, esxi, inv_hosts = listed(out)
                os.unlink(out)
                res[tool] = {"size": n, "tool": tool, "vms": len(vms), "esxi_hosts": esxi,
                             "inventory_hosts": inv_hosts, "walls": [], "cpus": [], "rss_kib": [],
                             "warmup_wall_s": round(wall, 3), "warmup_cpu_s": round(cpu, 3),
                             "warmup_rss_mib": round(rss / 1024, 1)}
                log("N=%d %s warm-up: %.2f s, %.0f MiB, %d VMs, %d ESXi hosts, %s inventory hosts" % (
                    n, tool, wall, rss / 1024, len(vms), esxi, inv_hosts))
                if vms != truth_vms:
                    errors["VMs %s N=%d" % (tool, n)] = "%d VMs listed, %d missing, %d unexpected (simulator: %d)" % (
                        len(vms), len(truth_vms - vms), len(vms - truth_vms), len(truth_vms))
                    log("ERROR " + errors["VMs %s N=%d" % (tool, n)])
                if tool in (OURS, DRIVER) and esxi != len(truth["hosts"]):
                    errors["hosts %s N=%d" % (tool, n)] = "%d ESXi hosts listed, simulator has %d" % (
                        esxi, len(truth["hosts"]))
                    log("ERROR " + errors["hosts %s N=%d" % (tool, n)])
            timed = [t for t, r in res.items() if not r.get("timed_out")]
            for i in range(args.repeats):  # interleaved, so drift hits all alike
                for tool in list(timed):
                    if i >= 1 and res[tool]["warmup_wall_s"] > args.slow:
                        continue  # one timed run is enough for a tool this slow
                    argv, cwd = srcs[tool]
                    out = os.path.join(workdir, "probe.json") if tool == DRIVER else None
                    try:
                        wall, cpu, rss = run_inventory(argv, cwd, env_n, capture=out, timeout=args.timeout)
                    except TimedOut:
                        res[tool].update(timed_out=True, timeout_s=args.timeout)
                        timed.remove(tool)
                        log("N=%d %s: run %d timed out after %d s, no more runs" % (n, tool, i + 1, args.timeout))
                        continue
                    res[tool]["walls"].append(wall)
                    res[tool]["cpus"].append(cpu)
                    res[tool]["rss_kib"].append(rss)
                    if out:
                        with open(out) as fh:
                            inner = json.load(fh)
                        for key in ("import_s", "login_s", "list_inventory_s", "to_vars_s"):
                            res[tool].setdefault(key, []).append(round(inner[key], 3))
                log("N=%d run %d/%d: %s" % (n, i + 1, args.repeats, ", ".join(
                    "%s %.2f s %.0f MiB" % (t, res[t]["walls"][-1], res[t]["rss_kib"][-1] / 1024)
                    for t in timed if len(res[t]["walls"]) == i + 1)))
            for r in res.values():
                if r["walls"] and not r.get("timed_out"):
                    r["median_wall_s"] = round(statistics.median(r["walls"]), 3)
                    r["median_cpu_s"] = round(statistics.median(r["cpus"]), 3)
                    r["median_rss_mib"] = round(statistics.median(r["rss_kib"]) / 1024, 1)
                    r["max_rss_mib"] = round(max(r["rss_kib"]) / 1024, 1)
                r["walls"] = [round(w, 3) for w in r["walls"]]
                r["cpus"] = [round(c, 3) for c in r["cpus"]]
                rows.append(r)
            if n == sizes[-1] and OURS in srcs and not args.no_profile:
                log("N=%d: cProfile run of ours ..." % n)
                try:
                    profile = profile_ours(srcs[OURS][0][1:], srcs[OURS][1], env_n, workdir, n)
                except (RuntimeError, TimedOut) as exc:
                    errors["profile N=%d" % n] = str(exc)
            rss_now, rss_peak = sim.rss_mib()
            rows.append({"size": n, "tool": "vcsim", "startup_s": round(sim.startup, 1), "rss_mib": rss_now,
                         "peak_rss_mib": rss_peak, "flags": " ".join(sim.flags)})
            sim.stop()
            sims.remove(sim)
    except KeyboardInterrupt:
        log("interrupted")
        raise
    finally:  # also on Ctrl-C, SIGTERM and errors
        for sim in sims:
            sim.stop()
        if sims:
            log("stopped %d simulator(s)" % len(sims))
        shutil.rmtree(workdir, ignore_errors=True)

    report(rows, errors, profile, meta, tools, args.results)
    return 1 if errors else 0


def fmt_wall(r):
    if "median_wall_s" in r:
        return "%.2f" % r["median_wall_s"]
    if r.get("timed_out") and "warmup_wall_s" in r:  # the warm-up finished, a timed run did not
        return ">%d (timed out; warm-up run: %.0f)" % (r["timeout_s"], r["warmup_wall_s"])
    if r.get("timed_out"):
        return ">%d (timed out)" % r["timeout_s"]
    return "error"


def report(rows, errors, profile, meta, tools, results_dir):
    by = {(r["size"], r["tool"]): r for r in rows}
    lines = ["| size (VMs) | tool | median wall s | above floor s | CPU s | peak RSS MiB | runs | VMs listed "
             "| inventory hosts | wall ratio (theirs/ours) | RSS ratio (theirs/ours) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    checks = []
    sizes = sorted({r["size"] for r in rows})
    for n in sizes:
        ours, floor = by.get((n, OURS)), by.get((n, FLOOR))
        for tool in tools + [FLOOR, DRIVER]:
            r = by.get((n, tool))
            if not r:
                if tool != DRIVER:
                    lines.append("| %d | %s | error | | | | | | | | |" % (n, PLUGIN_NAMES[tool]))
                continue
            ok = "median_wall_s" in r
            above = "%.2f" % (r["median_wall_s"] - floor["median_wall_s"]) \
                if ok and floor and "median_wall_s" in floor and tool not in (FLOOR, DRIVER) else ""
            wr = rr = ""
            cpu = "%.2f" % r["median_cpu_s"] if ok else ""
            rss = "%.0f" % r["median_rss_mib"] if ok else ""
            if tool not in (OURS, FLOOR, DRIVER) and ours and "median_wall_s" in ours:
                if ok:
                    wr = "%.1fx" % (r["median_wall_s"] / ours["median_wall_s"])
                    rr = "%.2fx" % (r["median_rss_mib"] / ours["median_rss_mib"])
                elif r.get("timed_out"):
                    wr = ">%.0fx" % (max(r["timeout_s"], r.get("warmup_wall_s", 0)) / ours["median_wall_s"])
            if not ok and "warmup_wall_s" in r:  # only the warm-up finished: show what it measured
                cpu = "%.2f (warm-up)" % r["warmup_cpu_s"] if "warmup_cpu_s" in r else ""
                rss = "%.0f (warm-up)" % r["warmup_rss_mib"]
                if ours and "median_rss_mib" in ours:
                    rr = "%.2fx (warm-up)" % (r["warmup_rss_mib"] / ours["median_rss_mib"])
            lines.append("| %d | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s |" % (
                n, PLUGIN_NAMES[tool], fmt_wall(r), above, cpu, rss, len(r["walls"]),
                r.get("vms", ""), "" if r.get("inventory_hosts") is None else r["inventory_hosts"], wr, rr))
        sim = by.get((n, "vcsim"))
        if sim:
            checks.append("INFO: N=%d: vcsim `%s`: ready in %.1f s, peak RSS %.0f MiB (VmHWM, not in the table)" % (
                n, sim["flags"], sim["startup_s"], sim["peak_rss_mib"]))
        # sanity: every tool that ran lists the same VMs as the simulator's own registry
        counts = {t: by[(n, t)]["vms"] for t in tools + [FLOOR, DRIVER] if (n, t) in by and "vms" in by[(n, t)]}
        same = len(set(counts.values())) == 1 and not any(
            k.startswith(("VMs ", "hosts ")) and k.endswith("N=%d" % n) for k in errors)
        unchecked = [PLUGIN_NAMES[t] for t in tools if (n, t) not in by or "vms" not in by[(n, t)]]
        checks.append("%s: N=%d: every tool lists the same VMs as the simulator: %s%s" % (
            "PASS" if same else "FAIL", n, ", ".join("%s %d" % (PLUGIN_NAMES[t].split(",")[0].split(" (")[0]
                                                                if t != CVX else "community.vmware (no compat)", c)
                                                     for t, c in counts.items()),
            " (not checked, no output: %s)" % ", ".join(unchecked) if unchecked else ""))
        drv = by.get((n, DRIVER))
        if ours and drv and "median_wall_s" in ours and "median_wall_s" in drv:
            checks.append("INFO: N=%d: our vSphere read alone (no Ansible, same VmwareDriver call + to_vars): %.2f s "
                          "wall, %.0f MiB; inside it list_inventory %.2f s, login %.2f s, to_vars %.2f s (medians). "
                          "Ours in ansible-inventory: %.2f s, so about %.2f s of it is Ansible's own work" % (
                              n, drv["median_wall_s"], drv["median_rss_mib"],
                              statistics.median(drv["list_inventory_s"]), statistics.median(drv["login_s"]),
                              statistics.median(drv["to_vars_s"]), ours["median_wall_s"],
                              ours["median_wall_s"] - drv["median_wall_s"]))
    cv, ours, floor = by.get((1000, CV)), by.get((1000, OURS)), by.get((1000, FLOOR))
    if ours and cv and "median_wall_s" in ours:
        if "median_wall_s" in cv:
            ratio = cv["median_wall_s"] / ours["median_wall_s"]
            checks.append("%s: ours %.1fx faster than community.vmware.vmware_vm_inventory at 1,000 VMs "
                          "(target >= 20x)" % ("PASS" if ratio >= 20 else "FAIL", ratio))
            if floor and "median_wall_s" in floor:
                checks.append("INFO: N=1000: Ansible alone needs %.2f s to list the 1,000 bare VM names (floor), so "
                              "at most %.1fx is reachable against community.vmware; above the floor: theirs %.2f s / "
                              "ours %.2f s = %.1fx" % (
                                  floor["median_wall_s"], cv["median_wall_s"] / floor["median_wall_s"],
                                  cv["median_wall_s"] - floor["median_wall_s"],
                                  ours["median_wall_s"] - floor["median_wall_s"],
                                  (cv["median_wall_s"] - floor["median_wall_s"]) /
                                  max(ours["median_wall_s"] - floor["median_wall_s"], 1e-3)))
        elif cv.get("timed_out"):
            checks.append("PASS: community.vmware.vmware_vm_inventory timed out (>%d s) at 1,000 VMs; ours %.2f s"
                          % (cv["timeout_s"], ours["median_wall_s"]))
    else:
        checks.append("SKIP: 20x check needs ours and community.vmware at 1,000 VMs")
    ours, floor = by.get((10000, OURS)), by.get((10000, FLOOR))
    if ours and "median_wall_s" in ours:
        mb = ours["max_rss_mib"] * 1.048576  # MiB -> MB (10^6 bytes)
        checks.append("%s: ours at 10,000 VMs: median wall %.2f s (target < 10 s)" % (
            "PASS" if ours["median_wall_s"] < 10 else "FAIL", ours["median_wall_s"]))
        if floor and "median_wall_s" in floor:
            checks.append("INFO: N=10000: Ansible alone needs %.2f s (median; runs %s) to list the 10,000 bare VM "
                          "names (floor)" % (floor["median_wall_s"], ", ".join("%.1f" % w for w in floor["walls"])))
        checks.append("%s: ours at 10,000 VMs: peak RSS %.0f MiB = %.0f MB, highest of %d runs (target < 400 MB)" % (
            "PASS" if mb < 400 else "FAIL", ours["max_rss_mib"], mb, len(ours["rss_kib"])))
    else:
        checks.append("SKIP: 10,000-VM targets need ours at 10,000 VMs")

    table = "\n".join(lines)
    print("\n" + table + "\n")
    for c in checks + ["ERROR %s: %s" % kv for kv in errors.items()]:
        print(c)
    prof_md = ""
    if profile:
        prof_md = "\n\ncProfile of ours at %d VMs (%.2f s wall under the profiler):\n\n" % (
            profile["size"], profile["wall_under_cprofile_s"])
        prof_md += "| where | calls | cumulative s |\n|---|---:|---:|\n" + "".join(
            "| %s | %s | %s |\n" % (b["what"].replace("  ", "&nbsp;&nbsp;"), b["calls"], b["cumulative_s"])
            for b in profile["buckets"])
        prof_md += "\nTop self time:\n\n| function | calls | self s | cumulative s |\n|---|---:|---:|---:|\n" + "".join(
            "| `%s` | %d | %.2f | %.2f |\n" % (e["function"], e["calls"], e["self_s"], e["cumulative_s"])
            for e in profile["top_self_time"])
        print(prof_md)

    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "vmware_inventory.json"), "w") as fh:
        json.dump({"meta": meta, "tools": tools, "results": rows, "checks": checks, "errors": errors,
                   "profile": profile}, fh, indent=2)
    with open(os.path.join(results_dir, "vmware_inventory.md"), "w") as fh:
        fh.write("# VMware inventory: virtops.unified vs community.vmware vs vmware.vmware\n\n%s\n\n%s%s\n\n"
                 "```json\n%s\n```\n" % (
                     table, "\n".join("- " + c for c in checks + ["ERROR %s: %s" % kv for kv in errors.items()]),
                     prof_md, json.dumps(meta, indent=2)))
    log("results written to %s" % results_dir)


def run_meta(args):
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "repeats": args.repeats, "timeout_s": args.timeout,
        "versions": tool_versions(),
        "peak_rss": "ru_maxrss from os.wait4() on the ansible-inventory process (KiB on Linux), per run, forked "
                    "from a 6 MiB stub so that this benchmark's own memory does not count; the table shows the "
                    "median of the timed runs",
        "cpu": "ru_utime + ru_stime from the same wait4() (ansible-inventory only, not the simulator)",
        "wall": "from fork to the end of wait4(), measured in the stub",
        "floor": "static YAML inventory with the simulator's N VM names, no variables",
        "slow_tools": "a tool whose warm-up took more than %d s gets 1 timed run instead of %d" % (
            args.slow, args.repeats),
    }


def tool_versions():
    out = {}
    for coll in ("community.vmware", "vmware.vmware"):
        text = subprocess.run(["ansible-galaxy", "collection", "list", coll, "--format", "json"],
                              capture_output=True, text=True, check=False).stdout
        try:
            out.update({name: info.get("version") for paths in json.loads(text or "{}").values()
                        for name, info in paths.items()})
        except ValueError:
            pass
    out["ansible_core"] = subprocess.run(["ansible", "--version"], capture_output=True, text=True,
                                         check=False).stdout.split("\n")[0]
    pip = subprocess.run([sys.executable, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                         check=False).stdout
    try:
        out.update({p["name"]: p["version"] for p in json.loads(pip or "[]")
                    if p["name"].lower() in ("pyvmomi", "requests", "ansible")})
    except ValueError:
        pass
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "golang-github-vmware-govmomi-dev"],
                          capture_output=True, text=True, check=False).stdout
    out["govmomi (vcsim)"] = dpkg or "unknown"
    return out


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
