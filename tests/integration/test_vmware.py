"""VMware: inventory, vm_power, vm_info, vm_migrate and restart_vm.yml on govmomi's simulator.

The peer (tests/peers/vcsim, see vcsim_peer.py) is started by the tests. Every
end state is read back independently of the collection: with pyVmomi over the
peer's SOAP endpoint, or with the peer's control API (/state), which reads the
simulator's registry without SOAP. Faults (host disconnected, not responding,
in maintenance; hung guests; no VMware Tools; heartbeat colours) are injected
through the control API.

Two simulators (each ~0.1 s to start): `sim` for the power, info, migrate,
fault and runbook tests, and `faulted` whose hosts are failed on purpose for
the inventory tests. Tests reset the VMs they use at their start, and put host
faults back in `finally`, so they do not depend on their order.
"""

import datetime
import json
import os
import re
import socket
import subprocess
import time
from collections import namedtuple

import pytest

from helpers import BIN, ROOT, adhoc, env, inventory, playbook
from vcsim_peer import PASSWORD, TOOLS_START_DELAY, ControlError

# -dc 1 -cluster 2 -cluster-host 3 -host 1 -vm 3: hosts DC0_C0_H0..2, DC0_C1_H0..2 and the
# standalone DC0_H0; VMs DC0_C0_RP0_VM0..2, DC0_C1_RP0_VM0..2, DC0_H0_VM0..2 (9), renamed below.
SIZE = ("-dc", "1", "-cluster", "2", "-cluster-host", "3", "-host", "1", "-vm", "3")
DUP = "web 01"  # the same name in two folders, on two hosts
UNICODE = "grüße db ✓"
NAMES = {
    "DC0_H0_VM1": DUP,  # standalone host DC0_H0, folder vm/
    "DC0_C1_RP0_VM1": {"name": DUP, "folder": "team b"},  # cluster DC0_C1, folder vm/team b
    "DC0_H0_VM2": UNICODE,
}
POWER = "virtops.unified.vm_power"
INFO = "virtops.unified.vm_info"
MIGRATE = "virtops.unified.vm_migrate"

_NORMAL_POWER = {"poweredOn": "running", "poweredOff": "stopped", "suspended": "suspended"}
_NORMAL_HB = {"green": "ok", "yellow": "degraded", "red": "lost", "gray": "unknown"}
_NORMAL_CONN = {"connected": "connected", "disconnected": "disconnected", "notResponding": "not_responding"}


# --- fixtures ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(vcsim):
    return vcsim(*SIZE, "-names", json.dumps(NAMES))


@pytest.fixture(scope="module")
def faulted(vcsim):
    """A peer with one failed host of each kind, each running VMs.

    DC0_C0_H0 disconnected, DC0_C0_H1 notResponding, DC0_C0_H2 in maintenance;
    the three DC0_C0 VMs are spread over them first (the simulator places them
    at random).
    """
    peer = vcsim(*SIZE, "-names", json.dumps(NAMES))
    for i in range(3):
        peer.vm_do("DC0_C0_RP0_VM%d" % i, "relocate", host="DC0_C0_H%d" % i)
    peer.host_do("DC0_C0_H0", "connection", state="disconnected")
    peer.host_do("DC0_C0_H1", "connection", state="notResponding")
    peer.host_do("DC0_C0_H2", "maintenance", on=True)
    return peer


@pytest.fixture(scope="module")
def listed(faulted):
    """One ansible-inventory --list of the faulted peer, shared by the read-only tests."""
    return inventory(faulted.inventory_path)


# --- helpers -----------------------------------------------------------------------
def uuid_of(peer, name):
    """instanceUuid of the one VM with this vSphere name (control API)."""
    hits = [v["instanceUuid"] for v in peer.state()["vms"] if v["name"] == name]
    assert len(hits) == 1, (name, hits)
    return hits[0]


def fresh(peer, uuid, power="poweredOn"):
    """Reset a VM's fault flags and power state behind the collection's back: a
    powered-on VM is a guest that is up, its Tools running (not one that has just
    been powered on, whose Tools start TOOLS_START_DELAY later)."""
    peer.vm_do(uuid, "ignore_shutdown", on=False)
    peer.vm_do(uuid, "shutdown_delay", seconds=0)
    peer.vm_do(uuid, "tools_delay", seconds=float(TOOLS_START_DELAY.rstrip("s")))
    if peer.vm_state(uuid)["powerState"] != power:
        peer.vm_do(uuid, "power", state=power)
    peer.vm_do(uuid, "tools", running=True)  # Tools up now (on a powered-on VM, heartbeat green)
    if power == "poweredOn":
        peer.vm_do(uuid, "heartbeat", status="green")
    return peer.wait_power(uuid, power)


def boot_time(peer, uuid):
    """summary.runtime.bootTime: changes on every power-on (microseconds)."""
    return peer.vm(uuid).summary.runtime.bootTime


def steps(out):
    """'shutdown=timeout, poweroff=ok, start=ok' from a vm_power result."""
    return ", ".join("%s=%s" % (a["action"], a["result"]) for a in out.get("actions", []))


def power(peer, name, via, state, *extra, **args):
    """vm_power ad hoc, either against the VM's inventory host (connection and uuid
    filled from inventory) or against localhost with every argument explicit."""
    if via == "inventory":
        pattern, task = name, dict(state=state, **args)
    else:
        pattern, task = "localhost", peer.explicit(name=name, state=state, **args)
    rc, res = adhoc(peer.inventory_path, pattern, POWER, task, *extra)
    return rc, res[pattern]


def ansible_raw(inv, pattern, module, args, *extra, callback="oneline", environ=None):
    """Like helpers.adhoc, but returns the whole process for checks on the raw output."""
    argv = [os.path.join(BIN, "ansible"), "-i", str(inv), pattern, "-m", module, "-a", json.dumps(args), *extra]
    e = env()
    e.update(environ or {})
    if callback:
        e["ANSIBLE_STDOUT_CALLBACK"] = callback
        e["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    return subprocess.run(argv, cwd=ROOT, env=e, capture_output=True, text=True, timeout=300, check=False)


def oneline_result(proc, host):
    for line in proc.stdout.splitlines():
        if line.startswith(host + " | ") and " => {" in line:
            return json.loads(line.split(" => ", 1)[1])
    raise AssertionError("no result for %s:\n%s\n%s" % (host, proc.stdout, proc.stderr))


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


VmView = namedtuple("VmView", "name host power connection heartbeat")
HostView = namedtuple("HostView", "cluster connection maintenance")


def vsphere_view(peer):
    """Independent pyVmomi read: {instanceUuid: VmView} and {host name: HostView}."""
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    vms = {}
    for vm in peer.objects(vim.VirtualMachine):
        vms[vm.config.instanceUuid] = VmView(vm.name, vm.runtime.host.name, vm.runtime.powerState,
                                             vm.runtime.connectionState, vm.guestHeartbeatStatus)
    hosts = {}
    for host in peer.objects(vim.HostSystem):
        parent = host.parent
        cluster = parent.name if isinstance(parent, vim.ClusterComputeResource) else None
        hosts[host.name] = HostView(cluster, host.runtime.connectionState, host.runtime.inMaintenanceMode)
    return vms, hosts


# --- 1. inventory ------------------------------------------------------------------
def test_inventory_vm_to_host_and_host_to_cluster_match_pyvmomi(faulted, listed):
    data = listed[0]
    hostvars = data["_meta"]["hostvars"]
    vms, hosts = vsphere_view(faulted)
    ours_vms = {v["virt_uuid"]: v for v in hostvars.values() if v["virt_kind"] == "vm"}
    assert {u: v["virt_host"] for u, v in ours_vms.items()} == {u: v.host for u, v in vms.items()}
    assert {u: v["virt_name"] for u, v in ours_vms.items()} == {u: v.name for u, v in vms.items()}
    ours_hosts = {v["virt_name"]: v for v in hostvars.values() if v["virt_kind"] == "hypervisor"}
    assert {h: v["virt_cluster"] for h, v in ours_hosts.items()} == {h: v.cluster for h, v in hosts.items()}
    assert len(data["virt_vms"]["hosts"]) == 9 and len(data["virt_hypervisors"]["hosts"]) == 7
    # /state (no SOAP) agrees as well
    assert {v["instanceUuid"]: v["host"] for v in faulted.state()["vms"]} == {u: v.host for u, v in vms.items()}
    # power as pyVmomi sees it; a VM on a host vCenter lost is unknown, with vCenter's words kept
    for uuid, vm in vms.items():
        ours = ours_vms[uuid]
        if vm.connection == "connected":
            assert (ours["virt_power_state"], ours["virt_power_state_raw"]) == (_NORMAL_POWER[vm.power], vm.power)
        else:
            assert ours["virt_power_state"] == "unknown"
            assert ours["virt_power_state_raw"] == "%s:%s" % (vm.power, vm.connection)


def test_inventory_groups_read_cluster_host_vms(faulted, listed):
    data = listed[0]
    hostvars = data["_meta"]["hostvars"]
    vms, hosts = vsphere_view(faulted)
    inv_name = {v["virt_uuid"]: h for h, v in hostvars.items() if v["virt_kind"] == "vm"}
    for cluster in ("DC0_C0", "DC0_C1"):
        members = {h for h, v in hosts.items() if v.cluster == cluster}
        assert set(data["virt_cluster_%s" % cluster]["children"]) == {"virt_host_%s" % h for h in members}
        assert set(data["virt_cluster_%s" % cluster]["hosts"]) == members
    for host in hosts:
        expected = {inv_name[u] for u, v in vms.items() if v.host == host}
        assert set(data.get("virt_host_%s" % host, {}).get("hosts", [])) == expected, host


def test_inventory_standalone_host_has_no_cluster(faulted, listed):
    data = listed[0]
    hosts = vsphere_view(faulted)[1]
    assert hosts["DC0_H0"].cluster is None
    assert data["_meta"]["hostvars"]["DC0_H0"]["virt_cluster"] is None
    for group, body in data.items():
        if group.startswith("virt_cluster_"):
            assert "virt_host_DC0_H0" not in body.get("children", []) and "DC0_H0" not in body.get("hosts", [])
    assert {UNICODE, "DC0_H0_VM0", "%s_DC0_H0" % DUP} == set(data["virt_host_DC0_H0"]["hosts"])


def test_inventory_failed_hosts_keep_their_state_and_their_vms(faulted, listed):
    data = listed[0]
    hostvars = data["_meta"]["hostvars"]
    hosts = vsphere_view(faulted)[1]
    assert hosts["DC0_C0_H0"][1:] == ("disconnected", False)
    assert hosts["DC0_C0_H1"][1:] == ("notResponding", False)
    assert hosts["DC0_C0_H2"][1:] == ("connected", True)
    expected = {"DC0_C0_H0": "disconnected", "DC0_C0_H1": "not_responding", "DC0_C0_H2": "maintenance",
                "DC0_C1_H0": "connected", "DC0_H0": "connected"}
    for host, state in expected.items():
        assert hostvars[host]["virt_connection_state"] == state, host
        assert host in data["virt_hypervisors"]["hosts"]
    for i in range(3):  # each failed host still lists the VM it runs
        assert data["virt_host_DC0_C0_H%d" % i]["hosts"] == ["DC0_C0_RP0_VM%d" % i]
        assert hostvars["DC0_C0_RP0_VM%d" % i]["virt_host"] == "DC0_C0_H%d" % i


def test_inventory_repeated_spaced_and_non_ascii_names_stay_addressable(sim):
    hostvars = inventory(sim.inventory_path)[0]["_meta"]["hostvars"]
    vms = vsphere_view(sim)[0]
    dups = {u: v for u, v in vms.items() if v.name == DUP}
    assert len(dups) == 2 and DUP not in hostvars
    for uuid, vm in dups.items():
        inv_name = "%s_%s" % (DUP, vm.host)
        assert hostvars[inv_name]["virt_uuid"] == uuid and hostvars[inv_name]["virt_name"] == DUP
    assert hostvars[UNICODE]["virt_name"] == UNICODE
    # each is a target of its own: vm_info through the action plugin reads the right VM
    targets = ["%s_%s" % (DUP, v.host) for v in dups.values()] + [UNICODE]
    rc, res = adhoc(sim.inventory_path, ",".join(targets), INFO, {})
    assert rc == 0, res
    for target in targets:
        got = res[target]["vms"][0]
        assert got["uuid"] == hostvars[target]["virt_uuid"]
        assert (vms[got["uuid"]].name, vms[got["uuid"]].host) == (got["name"], got["host"])


def test_inventory_same_name_twice_on_one_host_stays_addressable(vcsim):
    """Two VMs called 'dup' (folders a and b) on the same standalone host."""
    peer = vcsim("-cluster", "0", "-host", "1", "-vm", "2", "-names",
                 json.dumps({"DC0_H0_VM0": {"name": "dup", "folder": "a"},
                             "DC0_H0_VM1": {"name": "dup", "folder": "b"}}))
    vms = vsphere_view(peer)[0]
    assert sorted(v[:2] for v in vms.values()) == [("dup", "DC0_H0"), ("dup", "DC0_H0")]
    hostvars = inventory(peer.inventory_path)[0]["_meta"]["hostvars"]
    ours = {h: v["virt_uuid"] for h, v in hostvars.items() if v.get("virt_name") == "dup"}
    assert sorted(ours.values()) == sorted(vms), "both VMs must be listed, as distinct hosts: %s" % ours


def test_inventory_output_and_cache_never_hold_the_password(sim, tmp_path):
    cache_dir = tmp_path / "cache"
    inv = sim.write_inventory(tmp_path / "cached.vmware.yml",
                              "cache: true\ncache_plugin: ansible.builtin.jsonfile\n"
                              "cache_connection: %s\ncache_timeout: 600\n" % cache_dir)
    assert PASSWORD not in open(inv, encoding="utf-8").read()
    proc = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", inv, "--list", "-vvv"], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=120, check=True)
    assert "virt_vms" in proc.stdout
    assert PASSWORD not in proc.stdout and PASSWORD not in proc.stderr
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert files, "the inventory was not cached"
    for path in files:
        assert PASSWORD not in path.read_text(errors="replace"), path
    # the cache serves the second read: a rename behind our back shows only after --flush-cache
    uuid = uuid_of(sim, "DC0_C1_RP0_VM0")
    sim.vm_do(uuid, "rename", name="renamed vm")
    try:
        assert "DC0_C1_RP0_VM0" in inventory(inv)[0]["_meta"]["hostvars"]
        flushed = inventory(inv, "--flush-cache")[0]["_meta"]["hostvars"]
        assert flushed["renamed vm"]["virt_uuid"] == uuid and "DC0_C1_RP0_VM0" not in flushed
    finally:
        sim.vm_do(uuid, "rename", name="DC0_C1_RP0_VM0")


# --- 2. vm_power ---------------------------------------------------------------------
@pytest.mark.parametrize("via,name", [("inventory", "DC0_C0_RP0_VM0"), ("explicit", "DC0_C0_RP0_VM1")])
def test_vm_power_every_state_and_idempotence(sim, via, name):
    """Every state, through the inventory host or with explicit arguments. Each
    state asked for twice in a row must change nothing the second time (checked
    fully in one mode, once in the other, to keep the run short)."""
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    sim.vm_do(uuid, "shutdown_delay", seconds=1)  # a guest that takes a moment to stop
    vm = sim.vm(uuid)
    full = via == "inventory"

    def go(state, expect_steps, expect_power, **args):
        rc, out = power(sim, name, via, state, **args)
        assert rc == 0, out
        assert steps(out) == expect_steps, (state, out)
        assert out["changed"] is bool(expect_steps)
        assert vm.runtime.powerState == expect_power, state  # pyVmomi, read now
        assert out["after"]["power_state_raw"] == expect_power
        return out

    out = go("stopped", "shutdown=ok", "poweredOff")
    assert out["actions"][0]["elapsed"] >= 0.9, "ShutdownGuest was not waited for"
    assert vm.guest.toolsRunningStatus == "guestToolsNotRunning"
    go("stopped", "", "poweredOff")
    if full:
        go("poweredoff", "", "poweredOff")
    out = go("started", "start=ok, heartbeat=ok", "poweredOn", wait_for_heartbeat=True)
    assert vm.guestHeartbeatStatus == "green" and out["after"]["heartbeat"] == "ok"
    if full:
        go("started", "", "poweredOn")
    go("suspended", "suspend=ok", "suspended")
    if full:
        go("suspended", "", "suspended")
    go("started", "start=ok", "poweredOn")
    go("poweredoff", "poweroff=ok", "poweredOff")
    if full:
        go("poweredoff", "", "poweredOff")
    go("started", "start=ok", "poweredOn")
    booted = vm.summary.runtime.bootTime
    # a reset guest boots again: its Tools are up (and take a graceful shutdown) some time later
    go("reset", "reset=ok, heartbeat=ok", "poweredOn", wait_for_heartbeat=True, wait_timeout=30)
    assert vm.summary.runtime.bootTime > booted, "reset did not reboot the VM"
    booted = vm.summary.runtime.bootTime
    mark = history(sim, uuid)
    go("restarted", "shutdown=ok, start=ok", "poweredOn")
    assert vm.summary.runtime.bootTime > booted, "restarted did not power-cycle the VM"
    # a guest that honours the shutdown: vCenter saw the request and the guest's own power-off
    events, calls = since(sim, uuid, mark)
    assert events == ["VmGuestShutdownEvent", "VmPoweredOffEvent", "VmPoweredOnEvent"], events
    assert [c["op"] for c in calls] == ["ShutdownGuest", "PowerOnVM_Task"], calls
    assert sim.vm_state(uuid)["powerState"] == "poweredOn"


# What vCenter records of a power cycle (its event history, read with pyVmomi) and
# which calls reached it (the peer's own log): read independently of the collection.
POWER_EVENTS = ("VmGuestShutdownEvent", "VmPoweredOffEvent", "VmPoweredOnEvent", "VmResettingEvent",
                "VmSuspendedEvent")


def history(peer, uuid):
    """(power events, calls received) of a VM so far, to slice what a test adds."""
    return len(peer.events(uuid, POWER_EVENTS)), len(peer.operations(uuid))


def since(peer, uuid, mark):
    """The power events and the calls (name, time, result) that came after `mark`."""
    events = peer.events(uuid, POWER_EVENTS)[mark[0]:]
    calls = peer.operations(uuid)[mark[1]:]
    return events, calls


def at(call):
    """A logged call's time, in seconds since the epoch."""
    return datetime.datetime.strptime(call["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def test_restarted_with_force_escalates_on_a_hung_guest(sim):
    name = "DC0_C0_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    sim.vm_do(uuid, "ignore_shutdown", on=True)
    booted = boot_time(sim, uuid)
    mark = history(sim, uuid)
    begun = time.monotonic()
    rc, out = power(sim, name, "inventory", "restarted", force=True, shutdown_timeout=3)
    assert rc == 0, out
    assert steps(out) == "shutdown=timeout, poweroff=ok, start=ok"
    assert time.monotonic() - begun >= 3
    assert out["changed"] is True
    assert sim.vm(uuid).runtime.powerState == "poweredOn"
    assert boot_time(sim, uuid) > booted
    # vCenter: the shutdown request was logged, then the hard power-off shutdown_timeout later
    events, calls = since(sim, uuid, mark)
    assert events == ["VmGuestShutdownEvent", "VmPoweredOffEvent", "VmPoweredOnEvent"], events
    assert [(c["op"], c["result"]) for c in calls] == [
        ("ShutdownGuest", "success"), ("PowerOffVM_Task", "success"), ("PowerOnVM_Task", "success")], calls
    assert at(calls[1]) - at(calls[0]) >= 3, calls


def test_restarted_without_force_times_out_and_leaves_the_vm_on(sim):
    name = "DC0_C0_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    sim.vm_do(uuid, "ignore_shutdown", on=True)
    booted = boot_time(sim, uuid)
    mark = history(sim, uuid)
    rc, out = power(sim, name, "explicit", "restarted", shutdown_timeout=2)
    assert rc != 0 and out["error_type"] == "Timeout", out
    assert "timed out after 2s" in out["msg"] and steps(out) == "shutdown=timeout"
    vm = sim.vm(uuid)
    assert vm.runtime.powerState == "poweredOn" and vm.summary.runtime.bootTime == booted
    # the request reached vCenter and nothing else did: no power-off without force
    events, calls = since(sim, uuid, mark)
    assert events == ["VmGuestShutdownEvent"], events
    assert [c["op"] for c in calls] == ["ShutdownGuest"], calls


def test_no_tools_shutdown_is_refused_then_forced(sim):
    name = "DC0_C1_RP0_VM0"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    sim.vm_do(uuid, "tools", running=False)
    try:
        booted = boot_time(sim, uuid)
        rc, out = power(sim, name, "inventory", "restarted", force=True, shutdown_timeout=5)
        assert rc == 0, out
        assert steps(out) == "shutdown=refused, poweroff=ok, start=ok"
        assert "ToolsUnavailable" in out["actions"][0]["error"]
        assert sim.vm(uuid).runtime.powerState == "poweredOn" and boot_time(sim, uuid) > booted
        # no tools, no heartbeat: waiting for one times out after the start, naming what it waited for
        sim.vm_do(uuid, "power", state="poweredOff")
        rc, out = power(sim, name, "inventory", "started", wait_for_heartbeat=True, wait_timeout=2)
        assert rc != 0 and out["error_type"] == "Timeout" and "heartbeat" in out["msg"], out
        assert steps(out) == "start=ok, heartbeat=timeout"
        assert sim.vm(uuid).runtime.powerState == "poweredOn"
    finally:
        sim.vm_do(uuid, "tools", running=True)


def test_wait_for_heartbeat_waits_through_the_gray_of_a_booting_guest(sim):
    """After a power-on the heartbeat is gray until VMware Tools start in the guest
    (here 2 s): the wait goes through it, with the progress line of the start."""
    name = "DC0_C1_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    sim.vm_do(uuid, "tools_delay", seconds=2)
    try:
        args = {"state": "restarted", "wait_for_heartbeat": True, "shutdown_timeout": 10, "wait_timeout": 30}
        proc = ansible_raw(sim.inventory_path, name, POWER, args)
        out = oneline_result(proc, name)
        assert proc.returncode == 0 and steps(out) == "shutdown=ok, start=ok, heartbeat=ok", out
        beat = out["actions"][-1]
        assert beat["action"] == "heartbeat" and beat["elapsed"] >= 1.5, beat  # waited through the gray
        assert out["after"]["heartbeat"] == "ok" and sim.vm(uuid).guestHeartbeatStatus == "green"
        # the lines a person follows: each power step says what it waits for (a heartbeat
        # wait of more than 15 s adds "still waiting for guest heartbeat" lines, see driver.wait_for)
        assert re.search(r"^\s+%s: shutdown \(waiting up to 10s for stopped\)$" % name, proc.stdout, re.M), proc.stdout
        assert re.search(r"^\s+%s: start \(waiting up to 30s for running\)$" % name, proc.stdout, re.M), proc.stdout
    finally:
        fresh(sim, uuid)


def test_wait_for_heartbeat_of_a_guest_whose_tools_never_start_times_out_clearly(sim):
    name = "DC0_C1_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    sim.vm_do(uuid, "tools_delay", seconds="never")  # the guest hangs while booting
    try:
        begun = time.monotonic()
        rc, out = power(sim, name, "inventory", "restarted", wait_for_heartbeat=True, wait_timeout=2)
        assert rc != 0 and out["error_type"] == "Timeout", out
        assert steps(out) == "shutdown=ok, start=ok, heartbeat=timeout", out
        assert "timed out after 2s waiting for guest heartbeat" in out["msg"], out["msg"]
        assert "heartbeat unknown" in out["msg"] and "poweredOn" in out["msg"], out["msg"]
        assert time.monotonic() - begun < 30
        state = sim.vm_state(uuid)
        assert (state["powerState"], state["guestHeartbeatStatus"], state["toolsRunningStatus"]) == \
            ("poweredOn", "gray", "guestToolsNotRunning")
        # and such a guest cannot take a graceful shutdown: only force gets it down
        rc, out = power(sim, name, "inventory", "restarted", shutdown_timeout=5)
        assert rc != 0 and steps(out) == "shutdown=refused" and "ToolsUnavailable" in out["msg"], out
    finally:
        fresh(sim, uuid)


def test_check_mode_plans_and_changes_nothing(sim):
    name = "DC0_C1_RP0_VM0"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    booted = boot_time(sim, uuid)
    rc, out = power(sim, name, "inventory", "poweredoff", "--check")
    assert rc == 0 and out["changed"] is True and steps(out) == "poweroff=planned", out
    rc, out = power(sim, name, "explicit", "restarted", "--check")
    assert rc == 0 and out["changed"] is True and steps(out) == "shutdown=planned, start=planned", out
    rc, out = power(sim, name, "inventory", "started", "--check")
    assert rc == 0 and out["changed"] is False and steps(out) == "", out
    vm = sim.vm(uuid)
    assert vm.runtime.powerState == "poweredOn" and vm.summary.runtime.bootTime == booted
    sim.vm_do(uuid, "power", state="poweredOff")
    rc, out = power(sim, name, "inventory", "started", "--check")
    assert rc == 0 and out["changed"] is True and steps(out) == "start=planned", out
    assert vm.runtime.powerState == "poweredOff"
    sim.vm_do(uuid, "power", state="poweredOn")


def test_diff_shows_power_state_before_and_after(sim):
    name = "DC0_C1_RP0_VM0"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    proc = ansible_raw(sim.inventory_path, name, POWER, {"state": "poweredoff"}, "--diff", callback=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r'^-\s+"power_state": "running"', proc.stdout, re.M), proc.stdout
    assert re.search(r'^\+\s+"power_state": "stopped"', proc.stdout, re.M), proc.stdout
    assert "%s (%s)" % (name, uuid) in proc.stdout
    assert sim.vm(uuid).runtime.powerState == "poweredOff"
    sim.vm_do(uuid, "power", state="poweredOn")


def test_expected_host_mismatch_is_refused_and_nothing_changes(sim):
    name = "DC0_C1_RP0_VM0"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    booted = boot_time(sim, uuid)
    real_host = sim.vm(uuid).runtime.host.name
    rc, out = power(sim, name, "inventory", "poweredoff", expected_host="DC0_H0")
    assert rc != 0 and out["error_type"] == "StateConflict", out
    assert "runs on %s, not on the expected host DC0_H0" % real_host in out["msg"]
    vm = sim.vm(uuid)
    assert vm.runtime.powerState == "poweredOn" and vm.summary.runtime.bootTime == booted
    rc, out = power(sim, name, "inventory", "poweredoff", "--check", expected_host=real_host)
    assert rc == 0 and out["changed"] is True


# --- 3. faults and bad input ------------------------------------------------------------
def test_wrong_password_is_auth_failed_and_never_shown(sim, tmp_path):
    wrong = "Wr0ng-pw-%d" % os.getpid()
    proc = ansible_raw(sim.inventory_path, "localhost", POWER,
                       sim.explicit(name="DC0_H0_VM0", state="started", password=wrong), "-vvv")
    out = oneline_result(proc, "localhost")
    assert proc.returncode != 0 and out["error_type"] == "AuthFailed", out
    assert "127.0.0.1:%d" % sim.port in out["msg"] and "login refused" in out["msg"]
    for text in (proc.stdout, proc.stderr):
        assert wrong not in text and PASSWORD not in text
    # the same through the environment, for the action plugin and the inventory plugin
    proc = ansible_raw(sim.inventory_path, "localhost", INFO, sim.explicit(name="DC0_H0_VM0"), "-vvv",
                       environ={"VMWARE_PASSWORD": wrong})
    assert oneline_result(proc, "localhost")["error_type"] == "AuthFailed"
    assert wrong not in proc.stdout + proc.stderr
    e = env()
    e["VMWARE_PASSWORD"] = wrong
    inv = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", sim.inventory_path, "--list", "-vvv"],
                         cwd=ROOT, env=e, capture_output=True, text=True, timeout=120, check=False)
    text = inv.stdout + inv.stderr
    assert "login refused" in text and "127.0.0.1:%d" % sim.port in text
    assert wrong not in text and PASSWORD not in text


# 127.0.0.1 is what an operator uses with an SSH tunnel to vCenter; 127.1 is the same
# address under a name pyVmomi does not special-case.
@pytest.mark.parametrize("hostname", ["127.0.0.1", "127.1"])
def test_validate_certs_against_the_self_signed_simulator(sim, hostname):
    uuid = uuid_of(sim, "DC0_H0_VM0")
    fresh(sim, uuid, "poweredOff")
    try:
        rc, res = adhoc(sim.inventory_path, "localhost", POWER,
                        sim.explicit(name="DC0_H0_VM0", state="started", hostname=hostname, validate_certs=True))
        out = res["localhost"]
        assert rc != 0, "validate_certs: true accepted the simulator's self-signed certificate: %s" % out
        assert "certificate not trusted" in out["msg"] and "validate_certs" in out["msg"], out
        assert sim.vm(uuid).runtime.powerState == "poweredOff"
    finally:
        fresh(sim, uuid)


def test_endpoint_down_is_unreachable(sim):
    port = closed_port()
    rc, res = adhoc(sim.inventory_path, "localhost", POWER,
                    sim.explicit(name="DC0_H0_VM0", state="started", port=port))
    out = res["localhost"]
    assert rc != 0 and out["error_type"] == "Unreachable", out
    assert "127.0.0.1:%d" % port in out["msg"]


def test_unknown_name_lists_close_matches(sim):
    rc, res = adhoc(sim.inventory_path, "localhost", POWER, sim.explicit(name="grüsse db ✓", state="started"))
    out = res["localhost"]
    assert rc != 0 and out["error_type"] == "NotFound", out
    assert "grüsse db ✓" in out["msg"] and "close matches: %s" % UNICODE in out["msg"]


def test_ambiguous_name_is_refused_listing_both(sim):
    vms = vsphere_view(sim)[0]
    dups = {u: v for u, v in vms.items() if v.name == DUP}
    for uuid in dups:
        fresh(sim, uuid)
    rc, res = adhoc(sim.inventory_path, "localhost", POWER, sim.explicit(name=DUP, state="poweredoff"))
    out = res["localhost"]
    assert rc != 0 and out["error_type"] == "Ambiguous", out
    for uuid, vm in dups.items():
        assert "uuid=%s host=%s" % (uuid, vm.host) in out["msg"]
        assert sim.vm(uuid).runtime.powerState == "poweredOn"
    # the runbook refuses the same way, before anything is touched
    proc = playbook(sim.inventory_path, "playbooks/restart_vm.yml", "-e", json.dumps({"target": DUP}), check=False)
    assert proc.returncode != 0 and "matches 2 VMs" in proc.stdout, proc.stdout
    for uuid in dups:
        assert sim.vm_state(uuid)["powerState"] == "poweredOn"


def test_vcenter_task_error_is_surfaced_with_its_own_words(sim):
    """PowerOn of a VM whose host is in maintenance mode: vCenter fails the task."""
    name = "DC0_H0_VM0"  # on the standalone host DC0_H0
    uuid = uuid_of(sim, name)
    fresh(sim, uuid, "poweredOff")
    sim.host_do("DC0_H0", "maintenance", on=True)
    try:
        rc, out = power(sim, name, "inventory", "started")
        assert rc != 0 and out["error_type"] == "StateConflict", out
        assert "InvalidHostState" in out["msg"] and "start %s" % name in out["msg"]
        assert steps(out) == "start=refused"
        assert sim.vm(uuid).runtime.powerState == "poweredOff"
    finally:
        sim.host_do("DC0_H0", "maintenance", on=False)
        fresh(sim, uuid)


def test_vm_on_a_disconnected_host_is_refused_and_left_alone(sim):
    name = "DC0_C1_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    host = sim.vm_state(uuid)["host"]
    sim.host_do(host, "connection", state="disconnected")
    try:
        rc, out = power(sim, name, "explicit", "poweredoff")
        assert rc != 0 and out["error_type"] == "StateConflict", out
        assert "poweredOn:disconnected" in out["msg"]
        rc, res = adhoc(sim.inventory_path, "localhost", INFO, sim.explicit(name=name))
        got = res["localhost"]["vms"][0]
        assert (got["power_state"], got["power_state_raw"], got["host"]) == ("unknown", "poweredOn:disconnected", host)
        assert sim.vm(uuid).runtime.powerState == "poweredOn"
        assert sim.vm_state(uuid)["powerState"] == "poweredOn"
    finally:
        sim.host_do(host, "connection", state="connected")


# --- 4. vm_info ---------------------------------------------------------------------------
def test_vm_info_matches_pyvmomi_for_every_vm_and_host(sim):
    rc, res = adhoc(sim.inventory_path, "localhost", INFO, sim.explicit())
    assert rc == 0, res
    out = res["localhost"]
    vms, hosts = vsphere_view(sim)
    assert {v["uuid"] for v in out["vms"]} == set(vms)
    for got in out["vms"]:
        vm = vms[got["uuid"]]
        assert (got["name"], got["host"], got["power_state_raw"]) == (vm.name, vm.host, vm.power)
        assert got["power_state"] == _NORMAL_POWER[vm.power]
        assert got["heartbeat"] == (_NORMAL_HB[vm.heartbeat] if vm.power == "poweredOn" else "unknown")
    assert {h["name"]: h["cluster"] for h in out["hosts"]} == {h: v.cluster for h, v in hosts.items()}
    for got in out["hosts"]:
        host = hosts[got["name"]]
        expected = "maintenance" if host.maintenance and host.connection == "connected" else _NORMAL_CONN[host.connection]
        assert got["connection_state"] == expected
    # one VM at a time, each through its own inventory host (uuid from inventory)
    rc, res = adhoc(sim.inventory_path, "virt_vms", INFO, {})
    assert rc == 0 and len(res) == 9, res
    for target, result in res.items():
        got = result["vms"][0]
        vm = vms[got["uuid"]]
        assert (got["name"], got["host"], got["power_state_raw"]) == (vm.name, vm.host, vm.power), target


def test_heartbeat_colours_map_to_the_schema(sim):
    colours = {"DC0_C0_RP0_VM0": "green", "DC0_C0_RP0_VM1": "yellow", "DC0_C0_RP0_VM2": "red",
               "DC0_C1_RP0_VM0": "gray"}
    uuids = {name: uuid_of(sim, name) for name in colours}
    for name, colour in colours.items():
        fresh(sim, uuids[name])
        sim.vm_do(uuids[name], "heartbeat", status=colour)
    try:
        rc, res = adhoc(sim.inventory_path, ":".join(colours), INFO, {})
        assert rc == 0, res
        for name, colour in colours.items():
            assert sim.vm(uuids[name]).guestHeartbeatStatus == colour  # independent read
            assert res[name]["vms"][0]["heartbeat"] == _NORMAL_HB[colour], name
        data = inventory(sim.inventory_path)[0]
        for name, colour in colours.items():
            assert data["_meta"]["hostvars"][name]["virt_heartbeat"] == _NORMAL_HB[colour]
    finally:
        for uuid in uuids.values():
            sim.vm_do(uuid, "heartbeat", status="green")


# --- 5. vm_migrate --------------------------------------------------------------------------
def test_vm_migrate_moves_within_the_cluster_once(sim):
    name = "DC0_C1_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    source = sim.vm(uuid).runtime.host.name
    target = sorted({"DC0_C1_H0", "DC0_C1_H1", "DC0_C1_H2"} - {source})[0]

    rc, res = adhoc(sim.inventory_path, name, MIGRATE, {"destination_host": target}, "--check")
    assert rc == 0 and res[name]["changed"] is True, res
    assert sim.vm(uuid).runtime.host.name == source and sim.vm_state(uuid)["host"] == source

    rc, res = adhoc(sim.inventory_path, name, MIGRATE, {"destination_host": target, "expected_host": "DC0_H0"})
    assert rc != 0 and res[name]["error_type"] == "StateConflict", res
    assert sim.vm(uuid).runtime.host.name == source

    rc, res = adhoc(sim.inventory_path, name, MIGRATE, {"destination_host": "DC0_C1_H9"})
    assert rc != 0 and res[name]["error_type"] == "NotFound" and "DC0_C1_H0" in res[name]["msg"], res

    rc, res = adhoc(sim.inventory_path, name, MIGRATE, {"destination_host": target, "expected_host": source})
    out = res[name]
    assert rc == 0 and out["changed"] is True, out
    assert out["before"]["host"] == source and out["after"]["host"] == target
    vm = sim.vm(uuid)
    assert vm.runtime.host.name == target and sim.vm_state(uuid)["host"] == target
    assert vm.runtime.powerState == "poweredOn"

    rc, res = adhoc(sim.inventory_path, name, MIGRATE, {"destination_host": target})
    assert rc == 0 and res[name]["changed"] is False, res
    assert sim.vm(uuid).runtime.host.name == target


# --- 6. the runbook --------------------------------------------------------------------------
def runbook_steps(stdout):
    found = re.search(r'"steps: ([^"]*)"', stdout)
    assert found, stdout
    return found.group(1)


def test_restart_vm_runbook_escalates_on_a_hung_vmware_guest(sim):
    name = "DC0_C0_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    sim.vm_do(uuid, "ignore_shutdown", on=True)
    booted = boot_time(sim, uuid)
    mark = history(sim, uuid)
    proc = playbook(sim.inventory_path, "playbooks/restart_vm.yml", "-e", "target=%s" % name,
                    "-e", "restart_vm_shutdown_timeout=3")
    assert runbook_steps(proc.stdout) == "shutdown=timeout, poweroff=ok, start=ok, heartbeat=ok"
    vm = sim.vm(uuid)
    assert vm.runtime.powerState == "poweredOn" and vm.summary.runtime.bootTime > booted
    assert vm.guestHeartbeatStatus == "green"
    events, calls = since(sim, uuid, mark)
    assert events == ["VmGuestShutdownEvent", "VmPoweredOffEvent", "VmPoweredOnEvent"], events
    assert [c["op"] for c in calls] == ["ShutdownGuest", "PowerOffVM_Task", "PowerOnVM_Task"], calls
    assert at(calls[1]) - at(calls[0]) >= 3, calls  # the guest had its shutdown_timeout


def test_restart_vm_runbook_is_graceful_by_non_ascii_name(sim):
    uuid = uuid_of(sim, UNICODE)
    fresh(sim, uuid)
    sim.vm_do(uuid, "shutdown_delay", seconds=1)  # the guest takes a moment to shut down
    booted = boot_time(sim, uuid)
    mark = history(sim, uuid)
    proc = playbook(sim.inventory_path, "playbooks/restart_vm.yml", "-e", json.dumps({"target": UNICODE}),
                    "-e", "restart_vm_shutdown_timeout=10")
    assert runbook_steps(proc.stdout) == "shutdown=ok, start=ok, heartbeat=ok"
    vm = sim.vm(uuid)
    assert vm.runtime.powerState == "poweredOn" and vm.summary.runtime.bootTime > booted
    # the guest shut itself down (vCenter logs the request, then the power-off); no hard power-off
    events, calls = since(sim, uuid, mark)
    assert events == ["VmGuestShutdownEvent", "VmPoweredOffEvent", "VmPoweredOnEvent"], events
    assert [c["op"] for c in calls] == ["ShutdownGuest", "PowerOnVM_Task"], calls
    assert all(c["result"] == "success" for c in calls), calls


def test_control_errors_are_raised(sim):
    """The fixture's own contract: a refused control call is an error, not a silent no-op."""
    with pytest.raises(ControlError) as err:
        sim.vm_do(DUP, "heartbeat", status="green")  # ambiguous name
    assert err.value.status == 409
