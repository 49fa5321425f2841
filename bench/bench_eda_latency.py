#!/usr/bin/env python
# two platforms, each with its faults, read-back, by-hand reference and report:
# pylint: disable=too-many-lines
"""Benchmark: event-driven recovery latency of extensions/eda/rulebooks/restart_hung_vm.yml.

The real ansible-rulebook (venv .build/eda-venv, Java 17) runs the shipped rulebook against two
platforms (--platforms, default both), and the bench measures the time from a fault to the VM running
again, against the floor: the worst case of the source's detection.

VMware, the vcsim peer (tests/peers/vcsim): 1 standalone host, a few VMs. Per run, one VM's guest
heartbeat turns red through the peer's control API (the fault, at t0); the run ends when pyVmomi, read
every 0.2 s and independently of the collection, sees that VM powered on with a new runtime.bootTime (a
new VmPoweredOnEvent of the VM is the cross-check). floor = failure_interval + interval: the source must
see the heartbeat lost for failure_interval and reads every interval. Several settings (interval,
failure_interval), several runs each, a fresh ansible-rulebook and audit log per setting, a different
VM per run.

libvirt, the real libvirtd + QEMU of this machine (qemu:///system, tests/integration/libvirt_peer.py):
tiny TCG busybox guests that run qemu-ga, a few victims and one bystander, all watched (virtops_vms).
One ansible-rulebook, two faults, each once per victim (the rulebook throttles one action per VM and
rule within 2 minutes; vm_hung and vm_down are different rules):
  hung  the guest agent stops answering (SIGSTOP inside the guest). End: the domain running with a new
        domid and its agent answering (the guest booted again). A ping of a silent agent takes 5 s on
        this libvirt (guest-sync wait; the first one 2 s, its own timeout), so every poll lasts about 5 s
        while a watched agent is silent.
  down  `virsh destroy`: the source reports vm_down when the domain was seen down at two polls.
        End: the domain running with a new domid (its agent answering is recorded too).
Read back with virsh, every 0.2 s; the bystander's domid must never change.

For reference, the same restart run by hand on each platform:
`ansible-playbook playbooks/restart_vm.yml -e target=UUID` (wall time, time to the power-on).

Run through bench/run.sh eda (it sets up the venv, ANSIBLE_COLLECTIONS_PATH and the simulator
binary). Needs pyVmomi (bench venv) for the VMware read-back, virsh and root for libvirt, and
ansible-rulebook with Java 17 (scripts/bootstrap.sh test); the rulebook is started as
tests/integration/rulebook_peer.py does.
"""

import argparse
import collections
import datetime
import json
import math
import os
import pathlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from pyVmomi import vim

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
# rulebook_peer imports helpers, which makes an (empty) session temp dir at import: removed in main()
import helpers  # noqa: E402 pylint: disable=wrong-import-position
import libvirt_peer as lp  # noqa: E402 pylint: disable=wrong-import-position
import rulebook_peer as rp  # noqa: E402 pylint: disable=wrong-import-position
from vcsim_peer import VcsimPeer  # noqa: E402 pylint: disable=wrong-import-position

PLATFORMS = ("vmware", "libvirt")
RULEBOOK = "restart_hung_vm.yml"
PLAYBOOK = os.path.join(ROOT, "playbooks", "restart_vm.yml")
POLL = 0.2  # read-back period, seconds
TARGET_S = 15.0  # overhead above the floor, median, for the short settings
SHORT_FLOOR_S = 15.0  # a setting is short when its floor is <= this
# libvirt 9, a guest-agent ping of a silent agent: the first one gives up after its own timeout (2 s, the
# source's), libvirt skipping guest-sync while it holds the agent in sync; every later one after the guest-sync
# wait (5 s) that libvirt does again once a command failed
FIRST_PING_S = 2.0
SILENT_PING_S = 5.0
LIBVIRT_PREFIX = "vo-bench"  # our domains on the shared libvirtd
HYPERVISOR = "kvmlab"  # the libvirt hypervisor's inventory name
# what libvirt_peer.silence_agent sends: qemu-ga stops itself a second after it answered
STOP_AGENT = ('{"execute":"guest-exec","arguments":{"path":"/bin/busybox",'
              '"arg":["sh","-c","sleep 1; killall -STOP qemu-ga"]}}')
STOP_DELAY_S = 1.0  # that `sleep 1`
# markers in the ansible-rulebook -vv log (Python logging lines start with "YYYY-mm-dd HH:MM:SS,mmm - ")
POSTED = "Posting data to ruleset"
LAUNCH = "ansible_rulebook.action.run_playbook - DEBUG - Calling Ansible runner"
RUNNER_RC = "ansible_rulebook.action.run_playbook - DEBUG - Ansible runner rc:"
ENGINE_READY = "Waiting for events, ruleset"
PLAYBOOK_OK = "0, status: successful"

# one fault as the rulebook's log shows it: the source's first event about it (sign, optional) and the
# event the rulebook acts on (event), for the VM with this uuid; audit0: its audit lines before the fault;
# clock: when it happened, (monotonic, epoch) seconds
Fault = collections.namedtuple("Fault", "kind uuid event sign audit0 clock")
# libvirt: fault kind -> (the event acted on, the source's first event about it)
LIBVIRT_EVENTS = {"hung": ("vm_hung", "vm_heartbeat_lost"), "down": ("vm_down", "vm_power_changed")}


def log(msg):
    print("[bench] " + msg, flush=True)


def loadavg():
    return " ".join("%.2f" % v for v in os.getloadavg())


# --- simulator ---------------------------------------------------------------
class Sim(VcsimPeer):
    """The vcsim peer (tests/integration/vcsim_peer.py) with 1 standalone host and n VMs,
    plus the reads this bench needs: VMs by instanceUuid, bootTime, power events."""

    def __init__(self, binary, n, workdir):
        super().__init__(workdir, "-dc", "1", "-cluster", "0", "-host", "1", "-vm", str(n))
        self.start(binary=binary)
        self.vms = {vm.config.instanceUuid: vm for vm in self.objects(vim.VirtualMachine)}
        self.events = self.si.RetrieveContent().eventManager

    def ordered(self):
        """The VMs' uuids by VM name."""
        return sorted(self.vms, key=lambda u: self.vms[u].name)

    def heartbeat(self, uuid, status):
        return self.vm_do(uuid, "heartbeat", status=status)

    def boot_time(self, uuid):
        """runtime.bootTime (epoch s; None while off): the peer sets it at every power-on, as vSphere does."""
        boot = self.vms[uuid].runtime.bootTime
        return None if boot is None else boot.timestamp()

    def vm_events(self, uuid):
        """Every event of this VM (pyVmomi QueryEvents). maxCount 1000: with the default page (10) the
        simulator walks its 1000-event ring from the oldest end, so a VM's new events are left out."""
        spec = vim.event.EventFilterSpec(maxCount=1000, entity=vim.event.EventFilterSpec.ByEntity(
            entity=self.vms[uuid], recursion="self"))
        return self.events.QueryEvents(spec)

    def power_events(self, uuid, after_key=-1):
        """[(key, type name, created epoch s)] of this VM's power events with key > after_key, oldest first."""
        out = [(e.key, type(e).__name__.rsplit(".", 1)[-1], e.createdTime.timestamp())
               for e in self.vm_events(uuid) if e.key > after_key]
        return sorted(o for o in out if o[1] in ("VmPoweredOnEvent", "VmPoweredOffEvent", "VmGuestShutdownEvent",
                                                 "VmResettingEvent", "VmGuestRebootEvent"))

    def last_event_key(self, uuid):
        return max([e.key for e in self.vm_events(uuid)] or [-1])


# --- libvirt guests ----------------------------------------------------------------
def stop_agent(name):
    """SIGSTOP the guest's qemu-ga, as libvirt_peer.silence_agent does, but without its wait until the agent
    is silent: that wait pings the agent, and a ping of a silent agent holds the domain's agent job for 5 s,
    which would hold up the source's own ping. The agent stops STOP_DELAY_S after this returns."""
    helpers.virsh(lp.URI, "qemu-agent-command", name, "--timeout", "5", STOP_AGENT)


def silence_timed(name, pings):
    """Silence the guest's agent (stop_agent) and time `pings` guest-agent pings (virsh, --timeout 2, as the
    source pings): [seconds]. None may be answered, as libvirt_peer.silence_agent checks."""
    stop_agent(name)
    time.sleep(STOP_DELAY_S + 0.5)
    took = []
    for _ping in range(pings):
        began = time.monotonic()
        answered = lp.agent_answers(name)
        took.append(time.monotonic() - began)
        assert not answered, "%s: guest agent still answers" % name
    return took


def other_domains():
    """Domains on the shared libvirtd that are not this bench's."""
    names = helpers.virsh(lp.URI, "list", "--all", "--name", check=False).split()
    return [n for n in names if not n.startswith(LIBVIRT_PREFIX + "-")]


def write_libvirt_inventory(path):
    path.write_text("plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: %s, uri: '%s'}\n"
                    % (HYPERVISOR, lp.URI))
    return str(path)


def define_guests(n_victims, workdir):
    """n_victims + 1 ACPI guests (the last one is the bystander), booted and with their agents answering:
    [{key, name, uuid, domid}]."""
    kinds = {"v%d" % (i + 1): "acpi" for i in range(n_victims)}
    kinds["by"] = "acpi"
    names = lp.define_and_start(kinds, workdir, prefix=LIBVIRT_PREFIX)
    vms = [{"key": key, "name": names[key]} for key in kinds]
    try:
        for vm in vms:
            lp.wait_agent(vm["name"])
            vm.update(uuid=lp.domuuid(vm["name"]), domid=lp.domid(vm["name"]))
    except BaseException:
        lp.remove(names.values())
        raise
    return vms


# --- the end points ---------------------------------------------------------------
class VmwareRestart:  # pylint: disable=too-few-public-methods
    """The VMware end point: poweredOn with a new runtime.bootTime ('running', 'boot_time' its value). A new
    VmPoweredOnEvent of the VM is the cross-check, read once the run is over (cross_check)."""
    also = ()

    def __init__(self, sim, uuid):
        self.sim, self.uuid = sim, uuid
        self.key0 = sim.last_event_key(uuid)
        self.boot0 = sim.boot_time(uuid)

    def __call__(self, marks, elapsed, wall0):
        if "end" in marks or self.sim.vms[self.uuid].runtime.powerState != "poweredOn":
            return
        boot = self.sim.boot_time(self.uuid)
        if boot is not None and boot != self.boot0:
            marks["end"] = marks["running"] = elapsed
            marks["boot_time"] = boot - wall0

    def cross_check(self, marks, wall0):
        events = self.sim.power_events(self.uuid, self.key0)
        marks["events"] = [e[1] for e in events]
        on = [e for e in events if e[1] == "VmPoweredOnEvent"]
        if on:
            marks["power_on_event"] = on[0][2] - wall0


class LibvirtRestart:  # pylint: disable=too-few-public-methods
    """The libvirt end point: the domain running with a new domid ('running'), then its guest agent
    answering ('agent'). The run's 'end' is 'agent' for a hung guest, 'running' for a destroyed one.
    The agent is pinged only once the domain has a new domid: its old boot may be silent."""
    also = ("agent",)

    def __init__(self, name, end="agent"):
        self.name, self.end = name, end
        self.id0 = lp.domid(name)

    def __call__(self, marks, elapsed, wall0=None):
        del wall0  # the same call as VmwareRestart's
        if "running" not in marks:
            domid = lp.domid(self.name)
            if domid not in ("-", "", self.id0) and lp.domstate(self.name) == "running":
                marks["running"], marks["domid"] = elapsed, domid
        elif "agent" not in marks and lp.agent_answers(self.name):
            marks["agent"] = elapsed
        if self.end in marks:
            marks["end"] = marks[self.end]


# --- the rulebook's log ----------------------------------------------------------
class Tail:  # pylint: disable=too-few-public-methods
    """Complete new lines of a growing file."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.rest = ""

    def lines(self):
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                fh.seek(self.pos)
                chunk = fh.read()
                self.pos = fh.tell()
        except FileNotFoundError:
            return []
        text = self.rest + chunk
        out = text.split("\n")
        self.rest = out.pop()
        return out


def stamp(line):
    """Epoch seconds of a Python logging line ('2026-11-26 11:53:38,175 - ...', local time), or None."""
    try:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def posted(line, kind, uuid):
    """The -vv line of the source's event of this kind about this VM reaching the rules engine."""
    return POSTED in line and "'%s'" % kind in line and uuid in line


def read_log(tail, fault, marks, elapsed):
    """Marks from the new -vv log lines, seconds after the fault: 'sign' and 'detected' (the source's events
    posted to the rules engine), 'launch' (ansible-runner called), 'first_play' (first 'PLAY [' seen: no
    timestamp on playbook output), 'playbook_end' (runner rc) and 'playbook_status'."""
    wall0 = fault.clock[1]
    for line in tail.lines():
        if "detected" not in marks:
            if fault.sign and "sign" not in marks and posted(line, fault.sign, fault.uuid):
                marks["sign"] = stamp(line) - wall0
            if posted(line, fault.event, fault.uuid):
                marks["detected"] = stamp(line) - wall0
        elif "launch" not in marks:
            if LAUNCH in line:
                marks["launch"] = stamp(line) - wall0
        else:
            if "first_play" not in marks and line.startswith("PLAY ["):
                marks["first_play"] = elapsed
            note_task(marks, line, elapsed)
            if "playbook_end" not in marks and RUNNER_RC in line:
                marks["playbook_end"] = stamp(line) - wall0
                marks["playbook_status"] = line.split(RUNNER_RC, 1)[1].strip()


def note_task(marks, line, elapsed):
    """marks['tasks']: [[task name (no role prefix), when its 'TASK [' line was seen]] of the playbook."""
    if line.startswith("TASK ["):
        name = line[len("TASK ["):].rsplit("]", 1)[0].split(" : ", 1)[-1]
        marks.setdefault("tasks", []).append([name, round(elapsed, 3)])


def task_seconds(run, prefix):
    """How long the playbook's first task named prefix... took: the next task's start − its start (both as
    seen every POLL s), or None."""
    tasks = run.get("tasks", [])
    for i, (name, began) in enumerate(tasks[:-1]):
        if name.startswith(prefix):
            return tasks[i + 1][1] - began
    return None


def audit_steps(rb, fault):
    """The actions of the first audit line this fault added, e.g. ['shutdown', 'start']."""
    new = rp.audit_actions(rb.audit, fault.uuid)[fault.audit0:]
    return [step.get("action") for step in new[0].get("steps", [])] if new else None


def follow_fault(rb, tail, fault, probe, timeout):
    """Every POLL s from the fault until the end point (probe), the audit line and the runner's rc are all
    seen: the marks, in seconds after the fault. Raises on timeout."""
    t0, wall0 = fault.clock
    marks = {}
    deadline = t0 + timeout
    while True:
        tick = time.monotonic()
        rb.alive()
        read_log(tail, fault, marks, tick - t0)
        probe(marks, tick - t0, wall0)
        if "audit" not in marks and len(rp.audit_actions(rb.audit, fault.uuid)) > fault.audit0:
            marks["audit"] = tick - t0
        if all(k in marks for k in ("end", "audit", "playbook_end") + probe.also):
            break
        if tick > deadline:
            raise RuntimeError("%s: not done within %d s of the fault; have %s" % (
                fault.kind, timeout, sorted(marks)))
        time.sleep(max(0.0, POLL - (time.monotonic() - tick)))
    marks = {k: round(v, 3) if isinstance(v, float) else v for k, v in marks.items()}
    marks.update(uuid=fault.uuid, steps=audit_steps(rb, fault),
                 at=datetime.datetime.fromtimestamp(wall0, datetime.timezone.utc).isoformat(timespec="seconds"))
    return marks


def wait_watching(rb, out, spawned, label):
    """Wait for the source's first read; ansible-rulebook's start-up times (spawned: its (monotonic, epoch)
    start) into out."""
    t_spawn, wall_spawn = spawned
    rb.wait_for(lambda: rp.WATCHING in rb.text(), 180, "the source's first read")
    out["rulebook_start_s"] = round(time.monotonic() - t_spawn, 2)
    ready = [stamp(line) for line in rb.text().splitlines() if ENGINE_READY in line]
    if ready and ready[0]:
        out["rules_engine_ready_s"] = round(ready[0] - wall_spawn, 2)
    log("%s: ansible-rulebook watching %.1f s after start" % (label, out["rulebook_start_s"]))


def new_rulebook(tmp, inventory, variables, env):
    """ansible-rulebook as the integration tests start it, with -vv: its debug lines give the times of the
    source's events, the launch and the runner rc."""
    rb = rp.Rulebook(tmp, RULEBOOK, inventory, variables, dict(env, PYTHONUNBUFFERED="1"))
    rb.argv[rb.argv.index("-v")] = "-vv"
    return rb


def _audit(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


def audit_tally(rb, names):
    """Restarts in the rulebook's audit log per watched VM ({uuid: name}), and actions on any other VM."""
    return ({name: len(rp.audit_actions(rb.audit, uuid)) for uuid, name in names.items()},
            [(r.get("target") or {}).get("name") for r in _audit(rb.audit)
             if (r.get("target") or {}).get("uuid") not in names])


# --- VMware ----------------------------------------------------------------------
def vmware_fault(sim, rb, tail, uuid, timeout):
    """Heartbeat red on one VM; the marks (seconds after the fault) until it runs again. Raises on timeout."""
    fault = Fault("hung", uuid, "vm_hung", None, len(rp.audit_actions(rb.audit, uuid)), None)
    probe = VmwareRestart(sim, uuid)
    tail.lines()  # skip what came before the fault
    sim.heartbeat(uuid, "red")
    fault = fault._replace(clock=(time.monotonic(), time.time()))
    marks = follow_fault(rb, tail, fault, probe, timeout)
    probe.cross_check(marks, fault.clock[1])
    marks.update({k: round(marks[k], 3) for k in ("boot_time", "power_on_event") if k in marks},
                 vm=sim.vms[uuid].name)
    return marks


def vmware_rulebook(sim, tmp, interval, fint):
    inv = sim.write_inventory(str(tmp / "sim.vmware.yml"))
    variables = {"virtops_inventory": inv, "virtops_interval": interval, "virtops_failure_interval": fint,
                 "virtops_min_uptime": 0, "virtops_max_resets": 100}
    return new_rulebook(tmp, inv, variables, {"VMWARE_USER": sim.username, "VMWARE_PASSWORD": sim.password})


def run_vmware_faults(sim, rb, out, victims, rng):
    """One fault per victim in turn, after a random phase against the source's polls."""
    interval, floor = out["interval"], out["floor_s"]
    tail = Tail(str(rb.log_path))
    for i, uuid in enumerate(victims):
        time.sleep(rng.uniform(0, interval))
        marks = vmware_fault(sim, rb, tail, uuid, floor + 180)
        out["runs"].append(marks)
        log("  run %d/%d %s: vm_hung %.2f, launch %.2f, running %.2f s after the fault (floor %g), "
            "playbook %.2f s, audit line at %.2f" % (
                i + 1, len(victims), marks["vm"], marks["detected"], marks["launch"], marks["end"], floor,
                marks["playbook_end"] - marks["launch"], marks["audit"]))
        sim.heartbeat(uuid, "green")  # the restart turned it green already; make sure
        # the source reads the VM back before the next fault; after the last one, a moment for a stray
        # second action to show up in the counts
        time.sleep(interval + 0.5 if i + 1 < len(victims) else 2)


def run_setting(sim, workdir, setting, rng, err):
    """One ansible-rulebook for this (interval, failure_interval): one fault on each of the first `repeats`
    VMs."""
    interval, fint = setting["interval"], setting["failure_interval"]
    victims = sim.ordered()[:setting["repeats"]]
    label = "vmware interval %g, failure_interval %g" % (interval, fint)
    tmp = pathlib.Path(workdir) / ("rb-%g-%g" % (interval, fint))
    tmp.mkdir()
    rb = vmware_rulebook(sim, tmp, interval, fint)
    out = dict(setting, floor_s=interval + fint, runs=[])
    spawned = (time.monotonic(), time.time())
    with rb:
        try:
            wait_watching(rb, out, spawned, label)
            run_vmware_faults(sim, rb, out, victims, rng)
        except (AssertionError, RuntimeError) as exc:
            err[label] = str(exc)[-3000:]
            log("ERROR " + str(exc)[-3000:])
    # each fault: exactly one restart in this setting's audit log, and one playbook run
    out["audit_restarts"], out["audit_other_actions"] = audit_tally(rb, {u: sim.vms[u].name for u in victims})
    out["playbook_runs"] = rb.output.count("PLAY [Resolve the target")
    out["reset_limit_messages"] = rb.output.count("VIRTOPS vm_reset_limit_reached")
    summarise(out)
    return out


def by_hand_env(tmp, **extra):
    """The environment ansible-rulebook gives its playbooks, with this work directory's audit log and locks."""
    return dict(os.environ, JAVA_HOME=rp.JAVA_HOME, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                PATH=os.path.join(rp.EDA_VENV, "bin") + os.pathsep + os.environ["PATH"],
                VIRTOPS_AUDIT_LOG=os.path.join(tmp, "audit.jsonl"), VIRTOPS_LOCK_DIR=os.path.join(tmp, "locks"),
                ANSIBLE_NOCOLOR="1", PYTHONUNBUFFERED="1", **extra)


def start_playbook(tmp, inv, uuid, env):
    """`ansible-playbook -i INV playbooks/restart_vm.yml -e target=UUID`, the one ansible-rulebook's runner
    uses (.build/eda-venv), its output in tmp/by-hand-UUID.log: (Popen, log path)."""
    exe = os.path.join(rp.EDA_VENV, "bin", "ansible-playbook")
    path = os.path.join(tmp, "by-hand-%s.log" % uuid)
    with open(path, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [exe, "-i", inv, PLAYBOOK, "-e", "target=%s" % uuid, "-e", "reason=bench by hand"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    return proc, path


def vmware_by_hand_run(sim, tmp, inv, env, uuid):
    """One by-hand restart of a VM whose heartbeat is red: {wall, power_on (new runtime.bootTime), events
    (new VmPoweredOnEvents)}, seconds after the playbook's start; RuntimeError when it did not restart."""
    key0, boot0 = sim.last_event_key(uuid), sim.boot_time(uuid)
    sim.heartbeat(uuid, "red")
    time.sleep(0.5)
    t, wall0 = time.monotonic(), time.time()
    proc, path = start_playbook(tmp, inv, uuid, env)
    proc.wait(600)
    wall = time.monotonic() - t
    boot = sim.boot_time(uuid)
    on = [e for e in sim.power_events(uuid, key0) if e[1] == "VmPoweredOnEvent"]
    sim.heartbeat(uuid, "green")
    if proc.returncode != 0 or boot in (None, boot0):
        with open(path, encoding="utf-8", errors="replace") as fh:
            tail = fh.read()[-3000:]
            raise RuntimeError("rc=%s, runtime.bootTime %s -> %s:\n%s" % (proc.returncode, boot0, boot, tail))
    return {"wall": round(wall, 3), "power_on": round(boot - wall0, 3), "events": len(on)}


def by_hand_vmware(sim, workdir, victims, err):
    """ansible-playbook playbooks/restart_vm.yml -e target=UUID on a VM whose heartbeat is red: wall times and
    the new runtime.bootTime's time after the playbook's start."""
    tmp = os.path.join(workdir, "by-hand-vmware")
    os.mkdir(tmp)
    inv = sim.write_inventory(os.path.join(tmp, "sim.vmware.yml"))
    env = by_hand_env(tmp, VMWARE_USER=sim.username, VMWARE_PASSWORD=sim.password)
    runs = []
    for uuid in victims:
        try:
            runs.append(vmware_by_hand_run(sim, tmp, inv, env, uuid))
        except RuntimeError as exc:
            err["vmware by hand %s" % sim.vms[uuid].name] = str(exc)
            log("ERROR vmware by hand %s: %s" % (sim.vms[uuid].name, exc))
            continue
        log("vmware by hand %s: ansible-playbook %.2f s, new runtime.bootTime %.2f s after its start "
            "(VmPoweredOnEvent: %d)" % (sim.vms[uuid].name, runs[-1]["wall"], runs[-1]["power_on"],
                                        runs[-1]["events"]))
    return {"walls": [r["wall"] for r in runs], "median_s": median([r["wall"] for r in runs]),
            "power_on_s": [r["power_on"] for r in runs], "median_power_on_s": median([r["power_on"] for r in runs]),
            "power_on_events": [r["events"] for r in runs],
            "command": "ansible-playbook -i sim.vmware.yml playbooks/restart_vm.yml -e target=UUID"}


def run_vmware(args, workdir, err):
    """The vcsim part: by hand, then each setting with its own ansible-rulebook."""
    rng = random.Random(args.seed)
    out = {"loadavg_start": loadavg(), "settings": [], "by_hand": None}
    n_vms = max(s["repeats"] for s in args.settings) + 1  # the last VM is a bystander, never faulted
    sim = None
    try:
        sim = Sim(args.vcsim, n_vms, workdir)
        uuids = sim.ordered()
        victims, bystander = uuids[:-1], uuids[-1]
        by0 = sim.last_event_key(bystander)
        log("vcsim `%s` on port %d: %s" % (" ".join(sim.flags), sim.port, ", ".join(sim.vms[u].name for u in uuids)))
        if args.by_hand:
            out["by_hand"] = by_hand_vmware(sim, workdir, victims[:args.by_hand], err)
        for setting in args.settings:
            out["settings"].append(run_setting(sim, workdir, setting, rng, err))
        out["bystander"] = {"vm": sim.vms[bystander].name, "power_events": len(sim.power_events(bystander, by0))}
    except (AssertionError, RuntimeError, OSError) as exc:
        err["vmware setup"] = str(exc)[-3000:]
        log("ERROR vmware: " + str(exc)[-3000:])
    finally:
        if sim:
            sim.stop()
    out["loadavg_end"] = loadavg()
    return out


# --- libvirt ---------------------------------------------------------------------
def inject_libvirt_fault(kind, name):
    """The fault: its (monotonic, epoch) time and how long the virsh command took. 'hung' stops the guest
    agent (STOP_DELAY_S after the command returned), 'down' destroys the domain (off when `virsh destroy`
    returned; a poll of the source that reads the domain meanwhile waits for it)."""
    began = time.monotonic()
    if kind == "hung":
        stop_agent(name)
        delay = STOP_DELAY_S
    else:
        helpers.virsh(lp.URI, "destroy", name)
        delay = 0.0
    return (time.monotonic() + delay, time.time() + delay), round(time.monotonic() - began, 3)


def libvirt_fault(rb, tail, kind, vm, timeout):
    """One fault on one guest; the marks (seconds after the fault) until it runs again. Raises on timeout."""
    event, sign = LIBVIRT_EVENTS[kind]
    fault = Fault(kind, vm["uuid"], event, sign, len(rp.audit_actions(rb.audit, vm["uuid"])), None)
    probe = LibvirtRestart(vm["name"], end="agent" if kind == "hung" else "running")
    tail.lines()  # skip what came before the fault
    clock, call_s = inject_libvirt_fault(kind, vm["name"])
    marks = follow_fault(rb, tail, fault._replace(clock=clock), probe, timeout)
    marks.update(vm=vm["name"], fault_call_s=call_s)
    return marks


def libvirt_floors(interval, fint):
    """The worst case of detection per fault. hung: the next poll starts within interval; its ping gives up
    FIRST_PING_S later and only then is the heartbeat lost (lost_since is that poll's end); from there each
    poll lasts max(interval, SILENT_PING_S), and vm_hung comes at the first with lost_for >= failure_interval.
    down: seen down at the next poll (within interval), vm_down at the poll after (down >= 0.9 x interval)."""
    period = max(interval, SILENT_PING_S)
    return {"hung": interval + FIRST_PING_S + math.ceil(fint / period) * period, "down": 2 * interval}


def libvirt_rulebook(tmp, vms, interval, fint):
    inv = write_libvirt_inventory(tmp / "lab.libvirt.yml")
    variables = {"virtops_inventory": inv, "virtops_vms": [vm["name"] for vm in vms],
                 "virtops_interval": interval, "virtops_failure_interval": fint, "virtops_min_uptime": 0,
                 "virtops_max_resets": 100}
    return new_rulebook(tmp, inv, variables, {})


def run_libvirt_faults(rb, out, victims, rng):
    """Each fault kind on each victim in turn, after a random phase against the source's polls."""
    tail = Tail(str(rb.log_path))
    interval = out["interval"]
    for kind, group in out["faults"].items():
        for i, vm in enumerate(victims):
            time.sleep(rng.uniform(0, interval))
            marks = libvirt_fault(rb, tail, kind, vm, group["floor_s"] + 180)
            group["runs"].append(marks)
            log("  %s %d/%d %s: %s %.2f, %s %.2f, launch %.2f, running %.2f, agent %.2f s after the fault "
                "(floor %g), playbook %.2f s, steps %s" % (
                    kind, i + 1, len(victims), vm["name"], group["sign"], marks.get("sign", float("nan")),
                    group["event"], marks["detected"], marks["launch"], marks["running"], marks["agent"],
                    group["floor_s"], marks["playbook_end"] - marks["launch"], marks["steps"]))
            time.sleep(interval + 0.5)  # the source reads the guest back, answering, before the next fault
    time.sleep(2)  # a moment for a stray second action to show up in the counts


def libvirt_session(workdir, vms, setting, rng, err):
    """One ansible-rulebook watching every guest; the faults on the victims (all but the last guest)."""
    interval, fint = setting["interval"], setting["failure_interval"]
    victims = vms[:setting["repeats"]]
    tmp = pathlib.Path(workdir) / "rb-libvirt"
    tmp.mkdir()
    rb = libvirt_rulebook(tmp, vms, interval, fint)
    floors = libvirt_floors(interval, fint)
    out = dict(setting, faults={kind: {"event": event, "sign": sign, "floor_s": floors[kind], "runs": []}
                                for kind, (event, sign) in LIBVIRT_EVENTS.items()})
    spawned = (time.monotonic(), time.time())
    with rb:
        try:
            wait_watching(rb, out, spawned, "libvirt interval %g, failure_interval %g" % (interval, fint))
            run_libvirt_faults(rb, out, victims, rng)
        except (AssertionError, RuntimeError) as exc:
            err["libvirt interval %g failure_interval %g" % (interval, fint)] = str(exc)[-3000:]
            log("ERROR " + str(exc)[-3000:])
    out["audit_restarts"], out["audit_other_actions"] = audit_tally(rb, {vm["uuid"]: vm["name"] for vm in victims})
    out["playbook_runs"] = rb.output.count("PLAY [Resolve the target")
    out["reset_limit_messages"] = rb.output.count("VIRTOPS vm_reset_limit_reached")
    for group in out["faults"].values():
        summarise(group)
    return out


def follow_by_hand(proc, tail, probe, t0, timeout):
    """Until the playbook has ended ('wall') and the guest runs again ('running') with its agent answering
    ('agent'): seconds after the playbook's start; its tasks from its log (tail) as they appear."""
    marks = {}
    while "wall" not in marks or "agent" not in marks:
        probe(marks, time.monotonic() - t0)
        if "wall" in marks:
            time.sleep(POLL)
        else:
            try:
                proc.wait(POLL)
                marks["wall"] = time.monotonic() - t0
            except subprocess.TimeoutExpired:
                pass
            for line in tail.lines():
                note_task(marks, line, time.monotonic() - t0)
        if time.monotonic() > t0 + timeout:
            raise RuntimeError("by hand: not done within %d s; have %s" % (timeout, sorted(marks)))
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in marks.items() if k not in ("end", "domid")}


def libvirt_by_hand_run(tmp, inv, env, vm, pings):
    """One by-hand restart of a guest whose agent is silent: {wall, running, agent, tasks}, seconds after the
    playbook's start, and the first `pings` silent pings (the first one also makes libvirt re-sync the agent
    before its next command, as the source's pings do); RuntimeError when the playbook failed."""
    pings = silence_timed(vm["name"], pings)
    probe = LibvirtRestart(vm["name"])
    t0 = time.monotonic()
    proc, path = start_playbook(tmp, inv, vm["uuid"], env)
    marks = follow_by_hand(proc, Tail(path), probe, t0, 300)
    if proc.returncode != 0:
        with open(path, encoding="utf-8", errors="replace") as fh:
            raise RuntimeError("rc=%s, marks %s:\n%s" % (proc.returncode, marks, fh.read()[-3000:]))
    return dict(marks, vm=vm["name"], first_ping_s=round(pings[0], 3),
                silent_ping_s=round(pings[1], 3) if len(pings) > 1 else None)


def by_hand_libvirt(workdir, victims, err):
    """ansible-playbook playbooks/restart_vm.yml -e target=UUID on a guest whose agent is silent (no rulebook
    running): wall time, and the new domid's and the answering agent's time after the playbook's start. Also
    times the first ping of each silent agent, and the second one (5 s) on the first guest only."""
    tmp = os.path.join(workdir, "by-hand-libvirt")
    os.mkdir(tmp)
    inv = write_libvirt_inventory(pathlib.Path(tmp) / "lab.libvirt.yml")
    env = by_hand_env(tmp)
    runs = []
    for vm in victims:
        try:
            run = libvirt_by_hand_run(tmp, inv, env, vm, 1 if runs else 2)
        except RuntimeError as exc:
            err["libvirt by hand %s" % vm["name"]] = str(exc)
            log("ERROR libvirt by hand %s: %s" % (vm["name"], exc))
            continue
        runs.append(run)
        log("libvirt by hand %s: silent ping%s %s s; ansible-playbook %.2f s, running (new domid) %.2f s, agent "
            "answers %.2f s after its start" % (
                vm["name"], "s" if run["silent_ping_s"] else "",
                ", ".join("%.2f" % p for p in (run["first_ping_s"], run["silent_ping_s"]) if p),
                run["wall"], run["running"], run["agent"]))
    return {"runs": runs, "median_s": median([r["wall"] for r in runs]),
            "median_running_s": median([r["running"] for r in runs]),
            "median_agent_s": median([r["agent"] for r in runs]),
            "median_first_ping_s": median([r["first_ping_s"] for r in runs]),
            "median_silent_ping_s": median([r["silent_ping_s"] for r in runs if r["silent_ping_s"]]),
            "command": "ansible-playbook -i lab.libvirt.yml playbooks/restart_vm.yml -e target=UUID"}


def run_libvirt(args, workdir, err):
    """The libvirt part: guests (victims + a bystander), by hand, then one ansible-rulebook and the faults."""
    rng = random.Random(args.seed)
    setting = args.libvirt_setting
    out = {"loadavg_start": loadavg(), "by_hand": None, "session": None}
    vms = []
    try:
        lp.start()
        out["other_domains"] = len(other_domains())
        began = time.monotonic()
        vms = define_guests(max(setting["repeats"], args.by_hand), workdir)
        out["guests_ready_s"] = round(time.monotonic() - began, 1)
        out["guests"] = [vm["name"] for vm in vms]
        log("libvirt: %d guests booted, agents answering, in %.1f s: %s (bystander %s); %d other domains on %s" % (
            len(vms), out["guests_ready_s"], ", ".join(out["guests"][:-1]), out["guests"][-1],
            out["other_domains"], lp.URI))
        if args.by_hand:
            out["by_hand"] = by_hand_libvirt(workdir, vms[:args.by_hand], err)
        bystander = vms[-1]
        out["session"] = libvirt_session(workdir, vms[:setting["repeats"]] + [bystander], setting, rng, err)
        out["bystander"] = {"vm": bystander["name"], "domid_before": bystander["domid"],
                            "domid_after": lp.domid(bystander["name"]), "state": lp.domstate(bystander["name"]),
                            "audit_actions": len(rp.audit_actions(
                                pathlib.Path(workdir) / "rb-libvirt" / "audit.jsonl", bystander["uuid"],
                                states=None))}
    except (AssertionError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        err["libvirt setup"] = str(exc)[-3000:]
        log("ERROR libvirt: " + str(exc)[-3000:])
    finally:
        lp.remove(vm["name"] for vm in vms)
    out["loadavg_end"] = loadavg()
    return out


# --- figures ---------------------------------------------------------------------
def median(values):
    return round(statistics.median(values), 2) if values else None


def _span(run, start, end):
    """run[end] - run[start] (start None: from the fault), or None when either is missing."""
    if end not in run or (start is not None and start not in run):
        return None
    return run[end] - (run[start] if start else 0.0)


# median name -> (from mark, to mark); None: the fault
PARTS = {"fault_to_end": (None, "end"), "sign": (None, "sign"), "detection": (None, "detected"),
         "sign_to_detection": ("sign", "detected"), "after_detection": ("detected", "end"),
         "dispatch": ("detected", "launch"), "action": ("launch", "end"), "playbook_startup": ("launch", "first_play"),
         "playbook_total": ("launch", "playbook_end"), "running": (None, "running"), "agent": (None, "agent"),
         "audit": (None, "audit")}


def summarise(group):
    """Medians of each part over the runs, the spread of fault→end and its overhead above the floor."""
    runs = group["runs"]
    if not runs:
        return
    med = {}
    for name, (start, end) in PARTS.items():
        value = median([v for v in (_span(r, start, end) for r in runs) if v is not None])
        if value is not None:
            med[name] = value
    walls = [r["end"] for r in runs]
    group.update(median=med, min_s=round(min(walls), 2), max_s=round(max(walls), 2),
                 above_floor_s=round(med["fault_to_end"] - group["floor_s"], 2))


def _cell(med, key):
    return "%.2f" % med[key] if key in med else ""


VMWARE_HEAD = ("| interval s | failure_interval s | floor s | runs | fault→running median s | min s | max s "
               "| above floor s | detection s | vm_hung→running s | dispatch s | action s "
               "| of which playbook start-up s | playbook total s | audit line s |\n"
               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
LIBVIRT_HEAD = ("| fault | end point | floor s | runs | fault→end median s | min s | max s | above floor s "
                "| first event s | first event→detection s | detection s | event→end s | dispatch s | action s "
                "| of which playbook start-up s | playbook total s | running (new domid) s | agent answers s "
                "| audit line s |\n"
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
LIBVIRT_FAULTS = {"hung": ("agent silent (SIGSTOP qemu-ga)", "new domid + agent answers"),
                  "down": ("`virsh destroy`", "new domid, running")}


def vmware_table(settings):
    lines = [VMWARE_HEAD]
    for s in settings:
        m = s.get("median", {})
        if not s["runs"]:
            lines.append("| %g | %g | %g | 0 | error | | | | | | | | | | |" % (
                s["interval"], s["failure_interval"], s["floor_s"]))
            continue
        lines.append("| %g | %g | %g | %d | %.2f | %.2f | %.2f | %+.2f | %s |" % (
            s["interval"], s["failure_interval"], s["floor_s"], len(s["runs"]), m["fault_to_end"], s["min_s"],
            s["max_s"], s["above_floor_s"], " | ".join(_cell(m, k) for k in (
                "detection", "after_detection", "dispatch", "action", "playbook_startup", "playbook_total",
                "audit"))))
    return "\n".join(lines)


def libvirt_table(session):
    lines = [LIBVIRT_HEAD]
    for kind, g in session["faults"].items():
        fault, end = LIBVIRT_FAULTS[kind]
        if not g["runs"]:
            lines.append("| %s | %s | %g | 0 | error |%s" % (fault, end, g["floor_s"], " |" * 14))
            continue
        m = g["median"]
        lines.append("| %s → %s | %s | %g | %d | %.2f | %.2f | %.2f | %+.2f | %s |" % (
            fault, g["event"], end, g["floor_s"], len(g["runs"]), m["fault_to_end"], g["min_s"], g["max_s"],
            g["above_floor_s"], " | ".join(_cell(m, k) for k in (
                "sign", "sign_to_detection", "detection", "after_detection", "dispatch", "action",
                "playbook_startup", "playbook_total", "running", "agent", "audit"))))
    return "\n".join(lines)


# --- checks ----------------------------------------------------------------------
def target_check(name, group):
    """PASS/FAIL on the overhead above the floor where the floor is short and there are several runs."""
    runs, med = group["runs"], group["median"]
    if group["floor_s"] <= SHORT_FLOOR_S and len(runs) > 1:
        return "%s: %s: overhead above the floor %.2f s (median of %d runs; fault→end %.2f s, floor %g s; target " \
               "<= %g s)" % ("PASS" if group["above_floor_s"] <= TARGET_S else "FAIL", name, group["above_floor_s"],
                             len(runs), med["fault_to_end"], group["floor_s"], TARGET_S)
    return "INFO: %s: overhead above the floor %.2f s (%d run%s; fault→end %.2f s, floor %g s); no target for " \
           "this setting" % (name, group["above_floor_s"], len(runs), "" if len(runs) == 1 else "s",
                             med["fault_to_end"], group["floor_s"])


def detection_check(name, group, event, earliest, why):
    """The acted-on event never before `earliest` after the fault; how close its latest came to the floor."""
    early = [r["vm"] for r in group["runs"] if r["detected"] < earliest]
    late = max(r["detected"] for r in group["runs"]) - group["floor_s"]
    return "%s: %s: %s reached the rules engine no earlier than %s (%.2f s) after the fault%s; latest %.2f s " \
           "%s the floor" % ("FAIL" if early else "PASS", name, event, why, earliest,
                             " (too early: %s)" % ", ".join(early) if early else "", abs(late),
                             "after" if late > 0 else "before")


def start_info(name, s):
    return "INFO: %s: ansible-rulebook (JVM, Drools, source) started to the source's first read in %.1f s (rules " \
           "engine ready at %.1f s)" % (name, s["rulebook_start_s"], s.get("rules_engine_ready_s", float("nan")))


def vmware_checks(vm):
    settings, manual = vm["settings"], vm["by_hand"]
    checks = ["INFO: VMware: load average %s before, %s after" % (vm["loadavg_start"], vm["loadavg_end"])]
    for s in settings:
        name = "VMware interval %g, failure_interval %g" % (s["interval"], s["failure_interval"])
        if "rulebook_start_s" in s:
            checks.append(start_info(name, s))
        if not s["runs"]:
            continue
        checks.append(target_check(name, s))
        checks.append(detection_check(name, s, "vm_hung", s["failure_interval"], "failure_interval"))
        once = all(v == 1 for v in s["audit_restarts"].values()) and not s["audit_other_actions"] \
            and s["playbook_runs"] == len(s["runs"]) and all(r["playbook_status"] == PLAYBOOK_OK for r in s["runs"])
        checks.append("%s: %s: each fault gave exactly one successful restart of that VM (audit log: %s; "
                      "playbook runs %d; other VMs acted on: %s)" % (
                          "PASS" if once else "FAIL", name,
                          ", ".join("%s %d" % kv for kv in s["audit_restarts"].items()), s["playbook_runs"],
                          ", ".join(map(str, s["audit_other_actions"])) or "none"))
    checks.extend(vmware_boot_checks(settings))
    if "bystander" in vm:
        checks.append("%s: VMware: the bystander VM %s was never powered off or on (%d power events)" % (
            "PASS" if vm["bystander"]["power_events"] == 0 else "FAIL", vm["bystander"]["vm"],
            vm["bystander"]["power_events"]))
    if manual and manual["median_s"]:
        checks.extend(vmware_by_hand_checks(settings, manual))
    return checks


def vmware_boot_checks(settings):
    """The end point is a new runtime.bootTime; each restart also has a new VmPoweredOnEvent (cross-check)."""
    runs = [r for s in settings for r in s["runs"]]
    if not runs:
        return []
    with_event = [r for r in runs if "power_on_event" in r]
    gaps = [abs(r["power_on_event"] - r["boot_time"]) for r in with_event]
    seen = [r["running"] - r["boot_time"] for r in runs]
    return ["%s: VMware: every restart was read back as poweredOn with a new runtime.bootTime (%d runs; the "
            "poll saw it %.2f to %.2f s after the bootTime), and each also has a new VmPoweredOnEvent of the VM "
            "(cross-check: %d of %d, at most %.2f s from its bootTime)" % (
                "PASS" if len(with_event) == len(runs) else "FAIL", len(runs), min(seen), max(seen),
                len(with_event), len(runs), max(gaps) if gaps else float("nan"))]


def vmware_by_hand_checks(settings, manual):
    checks = ["INFO: VMware by hand, `%s` on a VM with its heartbeat red: %.2f s median wall (runs %s); the VM's "
              "new runtime.bootTime came %.2f s after ansible-playbook started (median; VmPoweredOnEvent in %d of "
              "%d runs; the rulebook's launch → running is the 'action' column)" % (
                  manual["command"], manual["median_s"], ", ".join("%.2f" % w for w in manual["walls"]),
                  manual["median_power_on_s"], sum(1 for e in manual["power_on_events"] if e),
                  len(manual["power_on_events"]))]
    for s in settings:
        if not s["runs"]:
            continue
        m = s["median"]
        checks.append("INFO: VMware interval %g, failure_interval %g: overhead above the floor / by-hand playbook "
                      "wall = %+.2f / %.2f = %+.2fx%s. After detection the automation took %.2f s (vm_hung → "
                      "running) against %.2f s by hand (ansible-playbook start → new bootTime): %.2fx; its own "
                      "playbook run took %.2f s (launch → runner rc) against %.2f s by hand" % (
                          s["interval"], s["failure_interval"], s["above_floor_s"], manual["median_s"],
                          s["above_floor_s"] / manual["median_s"],
                          " (negative: vm_hung came before the worst case, failure_interval + interval)"
                          if s["above_floor_s"] < 0 else "",
                          m["after_detection"], manual["median_power_on_s"],
                          m["after_detection"] / manual["median_power_on_s"], m["playbook_total"],
                          manual["median_s"]))
    return checks


def libvirt_checks(lv):
    s = lv.get("session")
    checks = ["INFO: libvirt: %d TCG busybox guests (128 MiB, qemu-ga) booted, agents answering, in %.1f s; %d "
              "other domains on the shared %s at start; load average %s before, %s after" % (
                  len(lv.get("guests", [])), lv.get("guests_ready_s", float("nan")), lv.get("other_domains", -1),
                  lp.URI, lv["loadavg_start"], lv["loadavg_end"])]
    if not s:
        return checks
    name = "libvirt interval %g, failure_interval %g" % (s["interval"], s["failure_interval"])
    if "rulebook_start_s" in s:
        checks.append(start_info(name, s))
    hung, down = s["faults"]["hung"], s["faults"]["down"]
    if hung["runs"]:
        checks.append(target_check(name + ", agent silent", hung))
        checks.append(detection_check(name + ", agent silent", hung, "vm_hung", s["failure_interval"],
                                      "failure_interval"))
        checks.append(silent_poll_info(s, hung, lv.get("by_hand")))
    if down["runs"]:
        checks.append(target_check(name + ", destroyed", down))
        checks.append(detection_check(name + ", destroyed", down, "vm_down", 0.9 * s["interval"],
                                      "0.9 × interval (down at two polls)"))
    checks.append(libvirt_restarts_check(name, s))
    if "bystander" in lv:
        b = lv["bystander"]
        ok = b["domid_after"] == b["domid_before"] and b["state"] == "running" and not b["audit_actions"]
        checks.append("%s: libvirt: the bystander guest %s, watched all along, was never touched (domid %s → %s, "
                      "%s, %d audit lines)" % ("PASS" if ok else "FAIL", b["vm"], b["domid_before"],
                                               b["domid_after"], b["state"], b["audit_actions"]))
    if lv.get("by_hand") and lv["by_hand"]["runs"]:
        checks.append(libvirt_by_hand_info(s, lv["by_hand"]))
        if hung["runs"]:
            checks.append(agent_tasks_info(hung, lv["by_hand"]))
    return checks


def silent_poll_info(s, hung, manual):
    ran = manual and manual["runs"]
    return "INFO: libvirt: guest-agent pings of a silent agent (virsh qemu-agent-command guest-ping --timeout 2, " \
           "as the source pings; by hand, no rulebook running) took %s: the first gives up at its own 2 s " \
           "timeout, every later one waits for the guest-sync that libvirt sends again after a failure (5 s). So " \
           "the heartbeat counts as lost at the end of the first poll after the fault (vm_heartbeat_lost %.2f s " \
           "after the fault, median), later polls last about %g s instead of interval %g s while the agent is " \
           "silent, and vm_hung came %.2f s after vm_heartbeat_lost (median; failure_interval %g s in whole " \
           "polls). Floor for a silent agent: interval + %g s + failure_interval in whole polls of max(interval, " \
           "%g s) = %g s; its best case, a fault just before a poll, %g s" % (
               "%s s for the first (median of %d) and %s s for the second" % (
                   manual["median_first_ping_s"], len(manual["runs"]), manual["median_silent_ping_s"])
               if ran else "not measured (no by-hand runs)",
               hung["median"].get("sign", float("nan")), SILENT_PING_S, s["interval"],
               hung["median"].get("sign_to_detection", float("nan")), s["failure_interval"], FIRST_PING_S,
               SILENT_PING_S, hung["floor_s"], hung["floor_s"] - s["interval"])


# the runbook's tasks that talk to a silent guest agent on libvirt: (name prefix, what it does)
AGENT_TASKS = (("Record the VM's state before acting", "vm_info, pings the agent"),
               ("Restart through the hypervisor", "libvirt's default shutdown tries the guest agent before ACPI"))


def agent_tasks_info(hung, manual):
    """The runbook's agent-bound tasks on a silent guest: in the rulebook's runs against by hand."""
    parts = []
    for prefix, what in AGENT_TASKS:
        auto = median([v for v in (task_seconds(r, prefix) for r in hung["runs"]) if v is not None])
        hand = median([v for v in (task_seconds(r, prefix) for r in manual["runs"]) if v is not None])
        parts.append("'%s' (%s) %s s against %s s" % (prefix, what, auto, hand))
    return "INFO: libvirt, silent agent: the runbook's tasks that reach the agent (next task's start − its " \
           "start, seen every %.1f s), in the rulebook's runs against by hand (medians): %s" % (POLL, "; ".join(parts))


def libvirt_restarts_check(name, s):
    """Each fault: one successful restart of its guest (2 per victim), the steps it should take, nothing else."""
    runs = [r for g in s["faults"].values() for r in g["runs"]]
    steps_ok = all((r["steps"] or [])[:2] == ["shutdown", "start"] for r in s["faults"]["hung"]["runs"]) \
        and all(r["steps"] == ["start"] for r in s["faults"]["down"]["runs"])
    want = {kind: len(g["runs"]) for kind, g in s["faults"].items()}
    per_vm = sum(1 for g in s["faults"].values() if g["runs"])
    ok = steps_ok and not s["audit_other_actions"] and s["playbook_runs"] == len(runs) \
        and all(v == per_vm for v in s["audit_restarts"].values()) \
        and all(r["playbook_status"] == PLAYBOOK_OK for r in runs)
    return "%s: %s: each fault gave exactly one successful restart of that guest (%d silent agents, %d destroyed; " \
           "audit log: %s; playbook runs %d; steps: silent agent %s, destroyed %s; other VMs acted on: %s)" % (
               "PASS" if ok else "FAIL", name, want["hung"], want["down"],
               ", ".join("%s %d" % kv for kv in s["audit_restarts"].items()), s["playbook_runs"],
               sorted({"+".join(r["steps"] or []) for r in s["faults"]["hung"]["runs"]}),
               sorted({"+".join(r["steps"] or []) for r in s["faults"]["down"]["runs"]}),
               ", ".join(map(str, s["audit_other_actions"])) or "none")


def libvirt_by_hand_info(s, manual):
    runs = manual["runs"]
    text = "INFO: libvirt by hand, `%s` on a guest with its agent silent: %.2f s median wall (runs %s); the " \
           "domain ran with a new domid %.2f s and its agent answered %.2f s after ansible-playbook started " \
           "(medians)" % (manual["command"], manual["median_s"], ", ".join("%.2f" % r["wall"] for r in runs),
                          manual["median_running_s"], manual["median_agent_s"])
    hung = s["faults"]["hung"]
    if hung["runs"]:
        m = hung["median"]
        text += ". The rulebook, after vm_hung: %.2f s to the new domid (by hand %.2f s from the playbook's " \
                "start: %.2fx), %.2f s to the agent answering (by hand %.2f s: %.2fx); its playbook run %.2f s " \
                "(launch → runner rc) against %.2f s by hand" % (
                    m["running"] - m["detection"], manual["median_running_s"],
                    (m["running"] - m["detection"]) / manual["median_running_s"],
                    m["after_detection"], manual["median_agent_s"], m["after_detection"] / manual["median_agent_s"],
                    m["playbook_total"], manual["median_s"])
    return text


# --- report ----------------------------------------------------------------------
def report(results, meta, err, results_dir):
    load = (meta["cpus"], meta["loadavg_start"], meta["loadavg_end"])
    sections, checks = [], ["INFO: %d CPUs, load average %s at start and %s at the end (another session may run "
                            "its tests on this machine meanwhile)" % load]
    if "vmware" in results:
        vm = results["vmware"]
        sections.append("## VMware (vcsim)\n\nFault: the VM's guest heartbeat turns red (control API). End: "
                        "powered on with a new `runtime.bootTime` (pyVmomi). floor = failure_interval + interval.\n\n"
                        + vmware_table(vm["settings"]))
        checks += vmware_checks(vm)
    if "libvirt" in results:
        lv = results["libvirt"]
        if lv.get("session"):
            s = lv["session"]
            sections.append("## libvirt (QEMU, %s)\n\ninterval %g s, failure_interval %g s, one ansible-rulebook "
                            "watching %d TCG guests (one a bystander), each fault once per victim. Silent agent: "
                            "t0 = 1 s after the guest-exec that SIGSTOPs qemu-ga returned (the guest's `sleep 1`); "
                            "destroyed: t0 = when `virsh destroy` returned. floor: silent agent = interval + 2 s "
                            "(the first silent ping) + failure_interval in whole polls of max(interval, 5 s silent "
                            "ping); destroyed = 2 × interval. First event: vm_heartbeat_lost (silent agent) or "
                            "vm_power_changed (destroyed). Read back with virsh every %.1f s.\n\n%s"
                            % (lp.URI, s["interval"], s["failure_interval"], len(lv["guests"]), POLL,
                               libvirt_table(s)))
        checks += libvirt_checks(lv)
    checks.append("INFO: whole benchmark %.0f s" % meta["bench_wall_s"])
    checks += ["ERROR %s: %s" % kv for kv in err.items()]
    text = "\n\n".join(sections)
    print("\n" + text + "\n")
    print("\n".join(checks))
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "eda_latency.json"), "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "checks": checks, "errors": err, **results}, fh, indent=2)
    with open(os.path.join(results_dir, "eda_latency.md"), "w", encoding="utf-8") as fh:
        fh.write("# EDA recovery latency: restart_hung_vm.yml through ansible-rulebook\n\n"
                 "Seconds after the fault. The floor is the worst case of the source's detection. Target: overhead "
                 "above the floor (fault→end median − floor) <= %g s where the floor is <= %g s.\n\n"
                 "%s\n\n## Checks\n\n%s\n\n```json\n%s\n```\n" % (
                     TARGET_S, SHORT_FLOOR_S, text, "\n".join("- " + c for c in checks), json.dumps(meta, indent=2)))
    log("results written to %s" % results_dir)


# --- main ----------------------------------------------------------------------
def parse_settings(text):
    """'1:5:5,5:10:3' -> [{interval, failure_interval, repeats}]."""
    out = []
    for item in text.split(","):
        parts = [float(p) for p in item.split(":")]
        if len(parts) != 3 or parts[0] <= 0 or parts[1] < 0 or parts[2] < 1:
            raise argparse.ArgumentTypeError("setting %r is not INTERVAL:FAILURE_INTERVAL:RUNS" % item)
        out.append({"interval": parts[0], "failure_interval": parts[1], "repeats": int(parts[2])})
    return out


def parse_setting(text):
    out = parse_settings(text)
    if len(out) != 1:
        raise argparse.ArgumentTypeError("one INTERVAL:FAILURE_INTERVAL:RUNS, not %r" % text)
    return out[0]


def parse_platforms(text):
    out = [p.strip() for p in text.split(",") if p.strip()]
    if not out or any(p not in PLATFORMS for p in out):
        raise argparse.ArgumentTypeError("platforms are a list of %s, not %r" % (", ".join(PLATFORMS), text))
    return [p for p in PLATFORMS if p in out]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--platforms", type=parse_platforms, default=list(PLATFORMS),
                    help="vmware, libvirt or both (default vmware,libvirt)")
    ap.add_argument("--vcsim", default=os.path.join(ROOT, ".build", "vcsim", "vcsim"), help="simulator binary")
    ap.add_argument("--settings", type=parse_settings, default=parse_settings("1:5:5,5:10:3,15:60:1"),
                    help="VMware: INTERVAL:FAILURE_INTERVAL:RUNS,... (default 1:5:5,5:10:3,15:60:1; 15:60 are the "
                         "rulebook's defaults)")
    ap.add_argument("--libvirt-setting", type=parse_setting, default=parse_setting("1:5:3"),
                    help="libvirt: INTERVAL:FAILURE_INTERVAL:RUNS, RUNS of each fault, one victim guest each "
                         "(default 1:5:3)")
    ap.add_argument("--by-hand", type=int, default=3,
                    help="runs of the by-hand reference on each platform (0: none; default 3)")
    ap.add_argument("--seed", type=int, default=1, help="seed for the random fault phase (default 1)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"), help="output directory")
    return ap.parse_args()


def _terminate(signum, frame):
    del signum, frame
    raise KeyboardInterrupt


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)  # the finally blocks remove the guests and stop the simulator
    started = time.monotonic()
    meta = run_meta(args)
    log("%d CPUs, load average %s at start; platforms %s"
        % (meta["cpus"], meta["loadavg_start"], ", ".join(args.platforms)))
    workdir = tempfile.mkdtemp(prefix="bench-eda-")
    results, err = {}, {}
    runners = {"vmware": run_vmware, "libvirt": run_libvirt}
    try:
        rp.executable()  # AssertionError: what is missing
        for platform in args.platforms:
            results[platform] = runners[platform](args, workdir, err)
    except AssertionError as exc:
        err["setup"] = str(exc)
        log("ERROR " + str(exc))
    except KeyboardInterrupt:
        log("interrupted")
        raise
    finally:  # also on Ctrl-C, SIGTERM and errors (each part cleans up after itself)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(helpers.SESSION_DIR, ignore_errors=True)
    meta["loadavg_end"] = loadavg()
    meta["bench_wall_s"] = round(time.monotonic() - started, 1)
    report(results, meta, err, args.results)
    return 1 if err else 0


DEFINITIONS = {
    "fault_to_end": "t0 until the end point, read every %.1f s: VMware, pyVmomi sees runtime.powerState poweredOn "
                    "with a new runtime.bootTime; libvirt, silent agent: virsh sees the domain running with a new "
                    "domid and then its agent answering a guest-ping; libvirt, destroyed: running with a new domid"
                    % POLL,
    "first_event": "libvirt: t0 until the source's first event about the fault (vm_heartbeat_lost / "
                   "vm_power_changed) is posted to the rules engine (-vv log timestamp)",
    "detection": "t0 until ansible-rulebook posts the event acted on (vm_hung / vm_down) to the rules engine "
                 "(-vv log timestamp)",
    "after_detection": "that event posted until the end point (dispatch + action)",
    "dispatch": "the event posted until run_playbook calls ansible-runner (-vv log timestamps)",
    "action": "ansible-runner called until the end point",
    "playbook_startup": "ansible-runner called until its first 'PLAY [' line is seen in the log (read every %.1f s; "
                        "no timestamp on playbook output)" % POLL,
    "playbook_total": "ansible-runner called until 'Ansible runner rc' (-vv log timestamps)",
    "running_agent": "libvirt: t0 until virsh sees the domain running with a new domid / its agent answering",
    "audit": "t0 until the restart's audit line is seen in VIRTOPS_AUDIT_LOG (read every %.1f s)" % POLL,
    "rulebook_start": "ansible-rulebook spawned until its log shows the source's first read ('%s')" % rp.WATCHING,
}


def run_meta(args):
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "loadavg_start": loadavg(), "seed": args.seed, "platforms": args.platforms,
        "vmware_settings": args.settings, "libvirt_setting": args.libvirt_setting, "by_hand_runs": args.by_hand,
        "versions": tool_versions(args.platforms),
        "vmware_fault": "POST /vm/UUID/heartbeat {status: red} on the vcsim control API (t0 = just after it "
                        "answered); a different VM per run, a fresh ansible-rulebook and audit log per setting; "
                        "min_uptime 0, max_resets 100; each fault after a random delay in [0, interval) against "
                        "the source's polls",
        "libvirt_faults": "one ansible-rulebook watching the victims and a bystander (virtops_vms), min_uptime 0, "
                          "max_resets 100; each fault once per victim after a random delay in [0, interval): "
                          "silent agent = guest-exec 'sleep 1; killall -STOP qemu-ga' (t0 = 1 s after the command "
                          "returned), destroyed = virsh destroy (t0 = when it returned)",
        "definitions": DEFINITIONS,
    }


def tool_versions(platforms):
    env = dict(os.environ, JAVA_HOME=rp.JAVA_HOME)
    out = {}
    text = subprocess.run([os.path.join(rp.EDA_VENV, "bin", "ansible-rulebook"), "--version"], capture_output=True,
                          text=True, env=env, check=False).stdout
    for line in text.splitlines():
        if line.startswith("ansible-rulebook"):
            out["ansible-rulebook"] = line.split("[", 1)[-1].rstrip("]")
        elif " = " in line and "version" in line.lower():
            key, value = line.split(" = ", 1)
            out[key.strip()] = value.strip()
    if "vmware" in platforms:
        dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "golang-github-vmware-govmomi-dev"],
                              capture_output=True, text=True, check=False).stdout
        out["govmomi (vcsim)"] = dpkg or "unknown"
    if "libvirt" in platforms:
        text = subprocess.run(["virsh", "-c", lp.URI, "version"], capture_output=True, text=True, timeout=60,
                              check=False).stdout
        for line in text.splitlines():
            if line.startswith(("Using library:", "Running hypervisor:")):
                key, value = line.split(":", 1)
                out[key.strip()] = value.strip()
    return out


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
