#!/usr/bin/env python
"""Benchmark: virtops.unified.ovm against the Ansible floor, round trips counted at the peer.

The `ansible` package ships no Oracle VM 3.4 inventory plugin (ovirt.ovirt is for oVirt/OLVM,
another API), so the side-by-side is with the Ansible floor: a static YAML inventory with the
same host names, and with our driver's read alone (no Ansible).

For each size N the lab (`scripts/lab up`) starts one emulated Oracle VM Manager
(tests/peers/ovm) with 4 server pools x 5 servers and N VMs spread over them (one in ten
stopped). Then:

* a warm-up `ansible-inventory -i SOURCE --list` after the peer's request counters were zeroed:
  its output must list exactly the N VMs and 20 servers; the peer's counters (`GET /state`,
  `requests`) give the round trips of one inventory read, by call;
* R timed runs of each of: our source, the floor, the driver alone; median wall time, CPU
  time and peak RSS (ru_maxrss of that one child, from wait4; Linux: KiB).

Run through bench/run.sh ovm. Stdlib only (the driver needs requests).
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAB = os.path.join(ROOT, "scripts", "lab")
OURS, FLOOR, DRIVER = "virtops.unified.ovm", "ansible floor (static YAML)", "driver only"
POOLS, SERVERS_PER_POOL = 4, 5
DRIVER_PROBE = """
import json, os, sys, time, yaml
t0 = time.perf_counter()
sys.path[:0] = os.environ["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)
from ansible_collections.virtops.unified.plugins.module_utils.ovm_driver import OvmDriver
with open(sys.argv[1], encoding="utf-8") as f:
    src = yaml.safe_load(f)
t1 = time.perf_counter()
with OvmDriver(hostname=src["hostname"], port=src["port"], ca_path=src["ca_path"], username=src["username"],
               password=src["password"]) as drv:
    t2 = time.perf_counter()
    inv = drv.list_inventory()
    t3 = time.perf_counter()
records = [m.to_vars() for m in inv.hosts + inv.vms]
print(json.dumps({"import_s": t1 - t0, "login_s": t2 - t1, "list_inventory_s": t3 - t2,
                  "records": len(records)}))
"""


def log(msg):
    print("[bench] " + msg, flush=True)


def lab_file(path, n):
    pools = []
    index = 0
    servers = [(p, s) for p in range(POOLS) for s in range(SERVERS_PER_POOL)]
    per_server = {k: [] for k in servers}
    for i in range(n):
        per_server[servers[i % len(servers)]].append(
            {"name": "vm-%05d" % (i + 1), "power": "stopped" if i % 10 == 9 else "running", "memory_mb": 1024})
    for p in range(POOLS):
        hosts = []
        for s in range(SERVERS_PER_POOL):
            index += 1
            hosts.append({"name": "ovs%03d" % index, "vms": per_server[(p, s)]})
        pools.append({"name": "pool%d" % (p + 1), "hosts": hosts})
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"endpoints": [{"name": "b1", "platform": "ovm", "credentials": "inline",
                                  "username": "bench", "password": "bench pw", "clusters": pools}]}, handle)
    return ["vm-%05d" % (i + 1) for i in range(n)], ["ovs%03d" % (i + 1) for i in range(len(servers))]


def control(rec, method, path):
    req = urllib.request.Request(rec["control"] + path, method=method, data=b"{}" if method == "POST" else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def run_child(argv, env, capture=False):
    """(wall s, CPU s, peak RSS KiB, stdout): fork/exec and wait4 for the child's own rusage."""
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out if capture else subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                stderr=err, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError("%s failed (rc=%d): %s" % (" ".join(argv[:3]), proc.returncode, errors.strip()[-2000:]))
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_INVENTORY_CACHE="false")
    env.pop("ANSIBLE_INVENTORY_ENABLED", None)
    rows, calls, restarts = [], {}, []
    work = tempfile.mkdtemp(prefix="bench-ovm-")
    for n in sizes:
        labdir = os.path.join(work, "lab-%d" % n)
        vms, servers = lab_file(os.path.join(work, "lab-%d.json" % n), n)
        started = time.perf_counter()
        subprocess.run([LAB, "up", os.path.join(work, "lab-%d.json" % n), labdir], check=True,
                       stdout=subprocess.DEVNULL)
        log("N=%d: lab up in %.1f s" % (n, time.perf_counter() - started))
        try:
            with open(os.path.join(labdir, "lab.json"), encoding="utf-8") as handle:
                rec = json.load(handle)["endpoints"][0]["rec"]
            source = os.path.join(labdir, "inventory", "b1.ovm.yml")
            floor = os.path.join(work, "floor-%d.yml" % n)
            with open(floor, "w", encoding="utf-8") as handle:
                handle.write("all:\n  hosts:\n" + "".join("    %s:\n" % h for h in servers + vms))
            own_env = dict(env, VIRTOPS_LAST_KNOWN_DIR=os.path.join(work, "last_known"))
            # warm-up, counted at the peer
            control(rec, "POST", "/requests/reset")
            _wall, _cpu, _rss, out = run_child(["ansible-inventory", "-i", source, "--list"], own_env, capture=True)
            counted = control(rec, "GET", "/state")["requests"]
            listed = json.loads(out)
            names = set(listed["_meta"]["hostvars"])
            if names != set(vms) | set(servers):
                raise RuntimeError("N=%d: the inventory lists %d names, not the %d VMs and %d servers"
                                   % (n, len(names), len(vms), len(servers)))
            calls[n] = counted
            log("N=%d: one inventory read = %d requests at the peer (%s), %d login(s)"
                % (n, counted["total"], ", ".join("%s %d" % kv for kv in sorted(counted["by_call"].items())),
                   counted["logins"]))
            probe = [sys.executable, "-c", DRIVER_PROBE, source]
            for tool, argv in ((OURS, ["ansible-inventory", "-i", source, "--list"]),
                               (FLOOR, ["ansible-inventory", "-i", floor, "--list"]), (DRIVER, probe)):
                runs = [run_child(argv, own_env)[:3] for _run in range(args.repeats)]
                rows.append({"tool": tool, "vms": n, "wall_s": statistics.median(r[0] for r in runs),
                             "cpu_s": statistics.median(r[1] for r in runs),
                             "peak_rss_mib": round(max(r[2] for r in runs) / 1024, 1),
                             "runs": [{"wall_s": round(r[0], 3), "cpu_s": round(r[1], 3)} for r in runs]})
                log("N=%d %-28s wall %.2f s  cpu %.2f s  rss %.0f MiB" % (
                    n, tool, rows[-1]["wall_s"], rows[-1]["cpu_s"], rows[-1]["peak_rss_mib"]))
            if n == sizes[0]:
                restarts.extend(restart_runs(labdir, own_env, args.repeats))
        finally:
            subprocess.run([LAB, "down", labdir], check=False, stdout=subprocess.DEVNULL)
    report(rows, calls, args, restarts)


def restart_runs(labdir, env, repeats):
    """playbooks/restart_vm.yml on one VM: wall time of the whole ansible-playbook, and the part of it
    spent in the power steps (the Manager's jobs and the state polls, from the audit outcome line)."""
    audit = os.path.join(labdir, "bench-audit.jsonl")
    env = dict(env, VIRTOPS_AUDIT_LOG=audit, VIRTOPS_LOCK_DIR=os.path.join(labdir, "locks"))
    runs = []
    for i in range(repeats):
        target = "vm-%05d" % (i + 1)
        wall = run_child(["ansible-playbook", "-i", os.path.join(labdir, "inventory"),
                          os.path.join(ROOT, "playbooks", "restart_vm.yml"), "-e", "target=" + target,
                          "-e", "reason=bench"], env)[0]
        with open(audit, encoding="utf-8") as handle:
            outcome = [json.loads(line) for line in handle if '"outcome"' in line][-1]
        steps = sum(step["elapsed"] for step in outcome["steps"])
        runs.append({"target": target, "wall_s": round(wall, 2), "power_steps_s": round(steps, 2),
                     "above_s": round(wall - steps, 2), "steps": [s["action"] for s in outcome["steps"]]})
        log("restart_vm.yml %s: %.2f s, of which power steps %.2f s (%s)" % (
            target, wall, steps, ", ".join(runs[-1]["steps"])))
    return runs


def report(rows, calls, args, restarts):
    os.makedirs(args.results, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(args.results, "ovm_inventory.json"), "w", encoding="utf-8") as handle:
        json.dump({"when": stamp, "repeats": args.repeats, "rows": rows,
                   "requests_per_read": {str(k): v for k, v in calls.items()}, "restart_vm": restarts},
                  handle, indent=1)
    lines = ["# Oracle VM inventory: virtops.unified.ovm and the Ansible floor (%s, %d runs, median)" % (
        stamp, args.repeats), "",
        "| VMs | source | wall s | CPU s | peak RSS MiB | x floor (wall) |", "|---|---|---|---|---|---|"]
    for row in rows:
        floor = next(r for r in rows if r["vms"] == row["vms"] and r["tool"] == FLOOR)
        lines.append("| %d | %s | %.2f | %.2f | %.0f | %.2f |" % (
            row["vms"], row["tool"], row["wall_s"], row["cpu_s"], row["peak_rss_mib"], row["wall_s"] / floor["wall_s"]))
    lines += ["", "Requests at the emulated Manager for one `ansible-inventory --list`:", "",
              "| VMs | total | logins (Basic) | by call |", "|---|---|---|---|"]
    for n, counted in sorted(calls.items()):
        lines.append("| %d | %d | %d | %s |" % (n, counted["total"], counted["logins"], ", ".join(
            "`%s` %d" % kv for kv in sorted(counted["by_call"].items()))))
    if restarts:
        lines += ["", "`playbooks/restart_vm.yml -e target=VM` on one running VM (a graceful guest; the peer's stop takes",
                  "1 s and each job 0.5 s), whole `ansible-playbook` process:", "",
                  "| run | wall s | power steps s (jobs + polls) | above the platform's waits s |", "|---|---|---|---|"]
        for i, run in enumerate(restarts, 1):
            lines.append("| %d | %.2f | %.2f | %.2f |" % (i, run["wall_s"], run["power_steps_s"], run["above_s"]))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.results, "ovm_inventory.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
