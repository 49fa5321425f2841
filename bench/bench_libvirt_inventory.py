#!/usr/bin/env python
"""Benchmark: virtops.unified.libvirt vs community.libvirt.libvirt inventory plugins.

Both read the same libvirtd (qemu:///system) holding N defined domains
bench-00001..bench-N (a few running, the rest shut off). For each plugin and N:
median whole-process wall time of `ansible-inventory -i CFG --list`, and the
number of libvirt RPCs the process sent, counted from libvirt's client debug log
(one `RPC_CLIENT_MSG_TX_QUEUE` probe line per message sent to the daemon).

Run through bench/run.sh (it sets up the venv and ANSIBLE_COLLECTIONS_PATH).
Stdlib + libvirt-python only.
"""

import argparse
import collections
import datetime
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import libvirt

URI = "qemu:///system"
HERE = os.path.dirname(os.path.abspath(__file__))
NAME_RE = re.compile(r"^bench-\d{5}$")
DOMAIN_XML = """<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <devices><controller type='usb' model='none'/><memballoon model='none'/></devices>
</domain>"""
FLOOR = "ansible floor (static YAML)"
CONFIGS = {  # tool -> inventory config (each in its own dir, file named libvirt.yml)
    "community.libvirt": "plugin: community.libvirt.libvirt\nuri: %s\n" % URI,
    "virtops.unified": "plugin: virtops.unified.libvirt\nhypervisors:\n  - name: bench\n    uri: %s\n" % URI,
}
# One line per message the client queues for the daemon (virnetclient.c, PROBE in
# virNetClientSendInternal): "RPC_CLIENT_MSG_TX_QUEUE: client=.. len=.. prog=P vers=1 proc=N ..."
TX_RE = re.compile(r"RPC_CLIENT_MSG_TX_QUEUE: .* prog=(\d+) vers=\d+ proc=(\d+)")
# remote_protocol.x numbers (REMOTE_PROGRAM 0x20008086) of the procedures seen in these runs;
# checked by calling each API alone and reading the proc= it logs (see verify_rpc_counting)
PROC_NAMES = {1: "CONNECT_OPEN", 2: "CONNECT_CLOSE", 3: "CONNECT_GET_TYPE", 6: "NODE_GET_INFO",
              7: "CONNECT_GET_CAPABILITIES", 14: "DOMAIN_GET_XML_DESC", 16: "DOMAIN_GET_INFO",
              23: "DOMAIN_LOOKUP_BY_NAME", 24: "DOMAIN_LOOKUP_BY_UUID", 59: "CONNECT_GET_HOSTNAME",
              60: "CONNECT_SUPPORTS_FEATURE", 66: "AUTH_LIST", 273: "CONNECT_LIST_ALL_DOMAINS",
              344: "CONNECT_GET_ALL_DOMAIN_STATS", 353: "DOMAIN_INTERFACE_ADDRESSES", 418: "DOMAIN_GET_GUEST_INFO"}
# Known-call script for verify_rpc_counting: K rounds of 6 calls, each one RPC.
PROBE = """
import libvirt, sys
libvirt.registerErrorHandler(lambda *_: None, None)
c = libvirt.open(sys.argv[1]); d = c.lookupByName(sys.argv[2])
for _ in range(int(sys.argv[3])):
    c.getInfo(); c.lookupByUUIDString(d.UUIDString()); d.info(); d.XMLDesc()
    for f in (lambda: d.guestInfo(types=0),
              lambda: d.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)):
        try:
            f()
        except libvirt.libvirtError:  # no guest agent: still one RPC, answered with an error
            pass
del d  # else the connection outlives close() and CONNECT_CLOSE is never sent
c.close()
"""


def log(msg):
    print("[bench] " + msg, flush=True)


# --- domains -----------------------------------------------------------------
def bench_domains(conn):
    return [d for d in conn.listAllDomains() if NAME_RE.match(d.name())]


def define_up_to(conn, n):
    have = {d.name() for d in bench_domains(conn)}
    todo = ["bench-%05d" % i for i in range(1, n + 1) if "bench-%05d" % i not in have]
    t = time.perf_counter()
    for name in todo:
        conn.defineXML(DOMAIN_XML.format(name=name))
    log("defined %d domains (%d bench-* in total) in %.1f s" % (len(todo), n, time.perf_counter() - t))


def start_some(conn, count):
    """Start bench-00001..count (SeaBIOS, no boot device: ~1-2% CPU each once settled)."""
    doms = [conn.lookupByName("bench-%05d" % i) for i in range(1, count + 1)]
    for d in doms:
        if not d.isActive():
            d.create()
    # SeaBIOS burns CPU for a few seconds after start; wait until they are quiet
    prev = sum(d.info()[4] for d in doms)
    for _attempt in range(30):
        time.sleep(2)
        cur = sum(d.info()[4] for d in doms)
        if (cur - prev) / 2e9 < 0.02 * count + 0.05:  # < ~2% of a CPU each
            break
        prev = cur
    log("%d domains running, using %.0f%% of a CPU together" % (count, 100 * (cur - prev) / 2e9))


def cleanup(conn):
    doms = bench_domains(conn)
    for d in doms:
        try:
            if d.isActive():
                d.destroy()
            d.undefine()
        except libvirt.libvirtError as exc:
            log("cleanup %s: %s" % (d.name(), exc))
    if doms:
        log("undefined %d bench-* domains" % len(doms))


# --- one ansible-inventory run -----------------------------------------------
def run_inventory(cfg, env, rpc_log=None):
    """Return (wall s, CPU s of the process, stdout or None). With rpc_log: libvirt client debug log on."""
    env = dict(env)
    if rpc_log:
        if os.path.exists(rpc_log):
            os.unlink(rpc_log)
        env["LIBVIRT_LOG_FILTERS"] = "1:rpc.netclient"
        env["LIBVIRT_LOG_OUTPUTS"] = "1:file:" + rpc_log
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(["ansible-inventory", "-i", cfg, "--list"], env=env, cwd=os.path.dirname(cfg),
                          stdout=subprocess.PIPE if rpc_log else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime
    if proc.returncode != 0:
        raise RuntimeError("ansible-inventory -i %s failed (rc=%d):\n%s" % (cfg, proc.returncode, proc.stderr.strip()))
    return wall, cpu, proc.stdout


def count_rpcs(path):
    procs = collections.Counter()
    if not os.path.exists(path):  # libvirt never loaded: no RPC
        return 0, {}
    with open(path, errors="replace") as fh:
        for line in fh:
            m = TX_RE.search(line)
            if m:
                prog, num = int(m.group(1)), int(m.group(2))
                name = PROC_NAMES.get(num, "proc_%d" % num) if prog == 0x20008086 else "prog%d_proc%d" % (prog, num)
                procs[name] += 1
    return sum(procs.values()), dict(procs.most_common())


def verify_rpc_counting(env, rpc_log, domain, k=5):
    """The counter must see exactly the calls a known script makes: 6 per round, plus a fixed
    handshake (AUTH_LIST, CONNECT_OPEN, 2x CONNECT_SUPPORTS_FEATURE), lookupByName and CONNECT_CLOSE."""
    counts = {}
    for rounds in (0, k):
        env2 = dict(env, LIBVIRT_LOG_FILTERS="1:rpc.netclient", LIBVIRT_LOG_OUTPUTS="1:file:" + rpc_log)
        if os.path.exists(rpc_log):
            os.unlink(rpc_log)
        subprocess.run([sys.executable, "-c", PROBE, URI, domain, str(rounds)], env=env2, check=True)
        counts[rounds] = count_rpcs(rpc_log)
    (base, base_procs), (total, procs) = counts[0], counts[k]
    expect = {"AUTH_LIST": 1, "CONNECT_OPEN": 1, "CONNECT_SUPPORTS_FEATURE": 2, "DOMAIN_LOOKUP_BY_NAME": 1,
              "CONNECT_CLOSE": 1}
    per_round = ["NODE_GET_INFO", "DOMAIN_LOOKUP_BY_UUID", "DOMAIN_GET_INFO", "DOMAIN_GET_XML_DESC",
                 "DOMAIN_GET_GUEST_INFO", "DOMAIN_INTERFACE_ADDRESSES"]
    ok = base_procs == expect and procs == dict(expect, **{p: k for p in per_round})
    log("RPC counter check: %d RPCs for 0 rounds, %d for %d rounds of 6 calls -> %s" % (
        base, total, k, "OK" if ok else "MISMATCH %s / %s" % (base_procs, procs)))
    if not ok:
        raise RuntimeError("RPC counting does not match a known-call script")


def vm_names(listing):
    """bench-* host names in an `ansible-inventory --list` output (group members and hostvars)."""
    data = json.loads(listing)
    names = set(data.get("_meta", {}).get("hostvars", {}))
    for group in data.values():
        names.update(group.get("hosts", []))
    return {h for h in names if NAME_RE.match(h)}


# --- main ----------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,2000", help="comma-separated domain counts (default 200,2000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per tool and size (median taken)")
    ap.add_argument("--running", type=int, default=10, help="bench domains to start (default 10)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"), help="output directory")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if not shutil.which("ansible-inventory"):
        sys.exit("ansible-inventory not on PATH (use bench/run.sh)")

    # so that finally: cleans up, also when started in the background (SIGINT ignored there)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="bench-libvirt-inv-")
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true",
               ANSIBLE_DEPRECATION_WARNINGS="false", ANSIBLE_NOCOLOR="1")
    cfgs = {}
    for tool, text in CONFIGS.items():
        os.makedirs(os.path.join(workdir, tool))
        cfgs[tool] = os.path.join(workdir, tool, "libvirt.yml")
        with open(cfgs[tool], "w") as fh:
            fh.write(text)
    rpc_log = os.path.join(workdir, "libvirt-client.log")

    conn = libvirt.open(URI)
    daemon = "libvirtd %s, %s %s" % (version(conn.getLibVersion()), conn.getType(), version(conn.getVersion()))
    rows, errors = [], {}
    try:
        cleanup(conn)  # leftovers of an interrupted run
        for n in sizes:
            define_up_to(conn, n)
            if n == sizes[0]:
                start_some(conn, min(args.running, n))
                verify_rpc_counting(env, rpc_log, "bench-00001")
            others = len(conn.listAllDomains()) - n
            log("N=%d: %d other domains on this libvirtd are listed too" % (n, others))
            # Ansible's own floor: a static YAML inventory of the same N host names, no vars, no libvirt
            floor = os.path.join(workdir, "floor-%d" % n, "hosts.yml")
            os.makedirs(os.path.dirname(floor))
            with open(floor, "w") as fh:
                fh.write("all:\n  hosts:\n" + "".join("    bench-%05d:\n" % i for i in range(1, n + 1)))
            srcs = dict(cfgs, **{FLOOR: floor})
            res = {}
            for tool, cfg in srcs.items():  # warm-up, with the RPC log on and the output checked
                try:
                    wall, _cpu, out = run_inventory(cfg, env, rpc_log)
                except RuntimeError as exc:
                    errors["%s N=%d" % (tool, n)] = str(exc)
                    log("ERROR " + str(exc))
                    continue
                rpcs, per_proc = count_rpcs(rpc_log)
                names = vm_names(out)
                res[tool] = {"size": n, "tool": tool, "other_domains": others, "rpcs": rpcs,
                             "rpcs_by_procedure": per_proc, "vms": len(names), "walls": [], "cpus": [],
                             "warmup_wall_with_log": round(wall, 3)}
                log("N=%d %s warm-up: %.2f s (with RPC log), %d RPCs, %d bench VMs" % (n, tool, wall, rpcs, len(names)))
                if names != {"bench-%05d" % i for i in range(1, n + 1)}:
                    errors["names %s N=%d" % (tool, n)] = "%d bench VMs listed, expected bench-00001..%d" % (len(names), n)
                    log("ERROR " + errors["names %s N=%d" % (tool, n)])
            for i in range(args.repeats):  # interleaved, so drift hits all alike
                for tool in res:
                    wall, cpu, _out = run_inventory(srcs[tool], env)
                    res[tool]["walls"].append(wall)
                    res[tool]["cpus"].append(cpu)
                log("N=%d run %d/%d: %s" % (n, i + 1, args.repeats, ", ".join(
                    "%s %.2f s" % (t, r["walls"][-1]) for t, r in res.items())))
            for r in res.values():
                r["median_wall_s"] = round(statistics.median(r["walls"]), 3)
                r["median_cpu_s"] = round(statistics.median(r["cpus"]), 3)
                r["walls"] = [round(w, 3) for w in r["walls"]]
                r["cpus"] = [round(c, 3) for c in r["cpus"]]
                rows.append(r)
    except KeyboardInterrupt:
        log("interrupted")
        raise
    finally:  # also on Ctrl-C, SIGTERM and errors
        log("cleaning up ...")
        cleanup(conn)
        conn.close()
        shutil.rmtree(workdir, ignore_errors=True)

    report(rows, errors, args, daemon)
    return 1 if errors else 0


def version(v):
    return "%d.%d.%d" % (v // 1000000, v // 1000 % 1000, v % 1000)


def report(rows, errors, args, daemon):
    by = {(r["size"], r["tool"]): r for r in rows}
    lines = ["| size | tool | median wall s | above floor s | client CPU s | RPCs | wall ratio (theirs/ours) "
             "| RPC ratio (theirs/ours) |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    checks = []
    for n in sorted({r["size"] for r in rows}):
        ours, theirs, floor = (by.get((n, t)) for t in ("virtops.unified", "community.libvirt", FLOOR))
        for tool, r in (("virtops.unified", ours), ("community.libvirt", theirs), (FLOOR, floor)):
            if not r:
                continue
            above = "%.2f" % (r["median_wall_s"] - floor["median_wall_s"]) if floor and r is not floor else ""
            wr = rr = ""
            if r is theirs and ours:
                wr = "%.2fx" % (r["median_wall_s"] / ours["median_wall_s"])
                rr = "%.0fx" % (r["rpcs"] / ours["rpcs"])
            lines.append("| %d | %s | %.2f | %s | %.2f | %d | %s | %s |" % (
                n, tool, r["median_wall_s"], above, r["median_cpu_s"], r["rpcs"], wr, rr))
        if ours and theirs and n >= 2000:
            ratio = theirs["median_wall_s"] / ours["median_wall_s"]
            checks.append("%s: ours %.2fx faster at N=%d (target >= 4x)" % ("PASS" if ratio >= 4 else "FAIL", ratio, n))
            if floor:
                checks.append("INFO: N=%d: Ansible alone needs %.2f s to list N bare hosts, so at most %.2fx is "
                              "reachable; time above that floor: theirs %.2f s / ours %.2f s = %.1fx" % (
                                  n, floor["median_wall_s"], theirs["median_wall_s"] / floor["median_wall_s"],
                                  theirs["median_wall_s"] - floor["median_wall_s"],
                                  ours["median_wall_s"] - floor["median_wall_s"],
                                  (theirs["median_wall_s"] - floor["median_wall_s"]) /
                                  max(ours["median_wall_s"] - floor["median_wall_s"], 1e-3)))
    ours_rpcs = {r["size"]: r["rpcs"] for r in rows if r["tool"] == "virtops.unified"}
    if len(ours_rpcs) > 1:
        same = len(set(ours_rpcs.values())) == 1
        checks.append("%s: ours makes a constant number of RPCs per hypervisor: %s" % (
            "PASS" if same else "FAIL", ", ".join("N=%d: %d" % kv for kv in sorted(ours_rpcs.items()))))
    table = "\n".join(lines)
    print("\n" + table + "\n")
    for c in checks + ["ERROR %s: %s" % kv for kv in errors.items()]:
        print(c)

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "uri": URI, "cpus": os.cpu_count(), "repeats": args.repeats, "running_domains": args.running,
        "libvirt_client": version(libvirt.getVersion()), "daemon": daemon, "ansible": tool_versions(),
        "rpc_count": "RPC_CLIENT_MSG_TX_QUEUE lines in the libvirt client log of a separate (warm-up) run",
    }
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "libvirt_inventory.json"), "w") as fh:
        json.dump({"meta": meta, "results": rows, "checks": checks, "errors": errors}, fh, indent=2)
    with open(os.path.join(args.results, "libvirt_inventory.md"), "w") as fh:
        fh.write("# libvirt inventory: virtops.unified vs community.libvirt\n\n%s\n\n%s\n\n```json\n%s\n```\n" % (
            table, "\n".join("- " + c for c in checks + ["ERROR %s: %s" % kv for kv in errors.items()]),
            json.dumps(meta, indent=2)))
    log("results written to %s" % args.results)


def tool_versions():
    out = subprocess.run(["ansible-galaxy", "collection", "list", "community.libvirt", "--format", "json"],
                         capture_output=True, text=True, check=False).stdout
    coll = {name: info.get("version") for paths in json.loads(out or "{}").values() for name, info in paths.items()}
    core = subprocess.run(["ansible", "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    return {"ansible_core": core, **coll}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
