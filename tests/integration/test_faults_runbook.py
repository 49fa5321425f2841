"""The runbooks' guarantees under concurrency, interruption and bad input, on
the vCenter simulator peer (docs/FAULTS.md lists each case).

End states are read independently of the collection: power events from
vCenter's event history and runtime.bootTime through a pyVmomi connection of
the test's own, the peer's control API, and the audit log's lines.
"""

import getpass
import json
import os
import signal
import subprocess
import time

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import runbook
from helpers import BIN, ROOT, adhoc, env, playbook

RESTART = "playbooks/restart_vm.yml"


@pytest.fixture(scope="module")
def sim(vcsim):
    return vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "2", "-host", "1", "-vm", "4")


# --- independent reads -----------------------------------------------------------
def uuid_of(sim, name):
    hits = [v["instanceUuid"] for v in sim.state()["vms"] if v["name"] == name]
    assert len(hits) == 1, (name, hits)
    return hits[0]


def fresh(sim, uuid, delay=0):
    """A VM that is up, its guest's Tools running (not one just powered on: see vcsim_peer)."""
    sim.vm_do(uuid, "ignore_shutdown", on=False)
    sim.vm_do(uuid, "shutdown_delay", seconds=delay)
    if sim.vm_state(uuid)["powerState"] != "poweredOn":
        sim.vm_do(uuid, "power", state="poweredOn")
    sim.vm_do(uuid, "tools", running=True)
    sim.vm_do(uuid, "heartbeat", status="green")
    sim.wait_power(uuid, "poweredOn")


def power_events(sim, uuid):
    """vCenter's event history of this VM: the names of its power events, oldest first."""
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    vm = sim.vm(uuid)
    spec = vim.event.EventFilterSpec(entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self"))
    events = sim.si.RetrieveContent().eventManager.QueryEvents(spec)
    names = [type(e).__name__.rsplit(".", 1)[-1] for e in sorted(events, key=lambda e: e.key)]
    return [n for n in names if n in ("VmPoweredOnEvent", "VmPoweredOffEvent", "VmGuestShutdownEvent",
                                      "VmResettingEvent", "VmSuspendedEvent")]


def boot_time(sim, uuid):
    return sim.vm(uuid).summary.runtime.bootTime


def audit_lines(uuid):
    try:
        with open(env()["VIRTOPS_AUDIT_LOG"], encoding="utf-8") as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
    return [r for r in lines if (r.get("target") or {}).get("uuid") == uuid]


def lock_dir():
    return env()["VIRTOPS_LOCK_DIR"]


def start_playbook(inv, play, *extra):
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", str(inv), os.path.join(ROOT, play), *extra]
    return subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.1)


# --- 1. the lock excludes ---------------------------------------------------------
def test_two_concurrent_restarts_give_one_power_cycle_and_the_second_names_the_holder(sim):
    name = "DC0_C0_RP0_VM0"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid, delay=5)  # a guest that takes 5 s to shut down
    events0, boot0 = power_events(sim, uuid), boot_time(sim, uuid)
    calls0 = len(sim.operations(uuid))
    first = start_playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name)
    try:
        lock = runbook.lock_path(lock_dir(), uuid)
        wait_until(lambda: os.path.exists(lock), 30, "the first run's lock")
        # the first run's task that took the lock has ended: the lock must still exclude
        time.sleep(1)
        second = playbook(sim.inventory_path, RESTART, "-e", "target=%s" % uuid, check=False)
        assert second.returncode != 0
        assert "another runbook holds %s: restart_vm by %s via cli" % (name, getpass.getuser()) in second.stdout
        assert "pid %d on" % first.pid in second.stdout  # the holder is the first run's play process
        out, _err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out[-3000:]
    assert power_events(sim, uuid)[len(events0):] == ["VmGuestShutdownEvent", "VmPoweredOffEvent", "VmPoweredOnEvent"]
    assert sim.ops(uuid, calls0) == ["ShutdownGuest", "PowerOnVM_Task"]  # what reached vCenter, once
    assert boot_time(sim, uuid) > boot0
    done = [r for r in audit_lines(uuid) if r.get("phase") == "outcome" and r["state"] == "restarted"]
    assert len(done) == 1 and done[0]["result"] == "ok"
    assert not os.path.exists(lock)  # given back by its holder
    sim.vm_do(uuid, "shutdown_delay", seconds=0)


def test_a_vm_named_two_ways_is_one_machine_for_the_restart_limit(sim):
    name = "DC0_C0_RP0_VM1"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    limit = ("-e", "restart_vm_max_restarts=%d" % (1 + len([r for r in audit_lines(uuid) if r.get("steps")])))
    playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name, *limit)
    events = power_events(sim, uuid)
    again = playbook(sim.inventory_path, RESTART, "-e", "target=%s" % uuid.upper(), *limit, check=False)
    assert again.returncode != 0 and "was already restarted/reset" in again.stdout
    assert power_events(sim, uuid) == events  # refused: no power event


# --- 4. fail closed ------------------------------------------------------------------
def test_an_unwritable_audit_log_stops_the_restart_before_anything_happens(sim):
    name = "DC0_C0_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    events, boot = power_events(sim, uuid), boot_time(sim, uuid)
    proc = playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name,
                    "-e", "virtops_audit_log=/proc/virtops/audit.jsonl", check=False)
    assert proc.returncode != 0
    assert "audit log /proc/virtops/audit.jsonl cannot be written" in proc.stdout
    # vm_power on its own refuses too: no record, no action
    rc, res = adhoc(sim.inventory_path, name, "virtops.unified.vm_power", {"state": "restarted"},
                    "-e", "virtops_audit_log=/proc/virtops/audit.jsonl")
    assert rc != 0 and "cannot be written" in res[name]["msg"] and "nothing was done" in res[name]["msg"]
    assert power_events(sim, uuid) == events and boot_time(sim, uuid) == boot


def test_an_unusable_lock_directory_is_a_clear_error_and_nothing_happens(sim):
    name = "DC0_C0_RP0_VM2"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    events = power_events(sim, uuid)
    proc = playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name, "-e", "virtops_lock_dir=/proc/virtops-locks",
                    check=False)
    assert proc.returncode != 0
    assert "the lock directory /proc/virtops-locks cannot be used: No such file or directory" in proc.stdout
    assert "VIRTOPS_LOCK_DIR" in proc.stdout and "Errno" not in proc.stdout
    assert power_events(sim, uuid) == events


# --- 6. an interrupted run leaves a trace ----------------------------------------------
def test_ctrl_c_mid_restart_leaves_its_intent_and_a_stale_lock_that_is_taken_over_on_record(sim):
    name = "DC0_H0_VM0"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid, delay=8)
    run = start_playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name, "-e", json.dumps({"reason": "hung"}))
    try:
        wait_until(lambda: any(r.get("phase") == "intent" for r in audit_lines(uuid)), 30, "the intent line")
        time.sleep(0.5)  # the guest shutdown has been asked for
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    intent = [r for r in audit_lines(uuid) if r.get("phase") == "intent"][-1]
    assert intent["target"]["name"] == name and intent["target"]["host"] == "DC0_H0"
    assert intent["before"] == "running" and intent["reason"] == "hung"
    assert [s["action"] for s in intent["plan"]][:1] == ["shutdown"]
    assert not [r for r in audit_lines(uuid) if r.get("id") == intent["id"] and r.get("result") == "ok"]
    # the interrupted run counts as an action until proven otherwise
    assert any(r.get("id") == intent["id"] for r in runbook.recent_actions(env()["VIRTOPS_AUDIT_LOG"], uuid, None, 600))
    # its lock is left behind but recognisably stale: the play's process is gone
    lock = runbook.lock_path(lock_dir(), uuid)
    assert os.path.exists(lock) and runbook.live_lock(lock_dir(), uuid) is None
    sim.wait_power(uuid, "poweredOff", timeout=30)  # the shutdown that was sent still happens
    sim.vm_do(uuid, "shutdown_delay", seconds=0)
    again = playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name)
    warned = again.stdout + again.stderr  # warnings go to stderr
    assert "took over the lock on %s" % name in warned and "is gone" in warned
    assert "restarts in the window before this one: 1" in again.stdout
    taken = [r for r in audit_lines(uuid) if r.get("state") == "lock_taken_over"]
    assert len(taken) == 1 and taken[0]["previous_holder"]["pid"] == run.pid
    assert sim.vm(uuid).runtime.powerState == "poweredOn"


# --- 9. exit codes tell the truth -------------------------------------------------------
def test_a_limit_that_excludes_the_target_fails_and_one_that_includes_it_runs(sim):
    name, other = "DC0_C0_RP0_VM3", "DC0_C0_RP0_VM1"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    events = power_events(sim, uuid)
    proc = playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name, "--limit", other, check=False)
    assert proc.returncode != 0 and "--limit %s excludes %s: nothing was done" % (other, name) in proc.stdout
    assert power_events(sim, uuid) == events
    boot = boot_time(sim, uuid)
    playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name, "--limit", name)
    assert boot_time(sim, uuid) > boot


# --- 10. inputs that choose machines come from the person or the job ------------------------
@pytest.mark.parametrize("play,var", [(RESTART, "target"), (RESTART, "reason"),
                                      ("playbooks/recover_host_failure.yml", "failed_host"),
                                      ("playbooks/evacuate_host.yml", "evacuate")])
def test_runbook_inputs_in_group_vars_are_refused(sim, tmp_path, play, var):
    name = "DC0_C0_RP0_VM1"
    uuid = uuid_of(sim, name)
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    sim.write_inventory(inv / "sim.vmware.yml")
    (inv / "group_vars" / "all.yml").write_text("%s: %s\n" % (var, name if var != "failed_host" else "DC0_C0_H0"))
    events = power_events(sim, uuid)
    extra = ["-e", "target=%s" % name] if var == "reason" else []
    proc = playbook(inv, play, "--check", *extra, check=False)
    assert proc.returncode != 0
    assert "%s set in the inventory, group/host vars or the play, not as an extra var" % var in proc.stdout
    assert "Nothing was done" in proc.stdout
    assert power_events(sim, uuid) == events


# --- 11. names with commas, quoted reasons, host state, hints -----------------------------------
def test_a_name_with_a_comma_is_addressable_and_a_quoted_reason_is_kept_whole(sim):
    uuid = uuid_of(sim, "DC0_H0_VM2")
    name = "web,01 (prod)"
    sim.vm_do(uuid, "rename", name=name)
    try:
        fresh(sim, uuid)
        boot = boot_time(sim, uuid)
        proc = playbook(sim.inventory_path, RESTART, "-e", json.dumps({"target": name}),
                        "-e", 'reason="hung, INC-1234"')
        assert "DONE: restart of %s" % name in proc.stdout
        assert boot_time(sim, uuid) > boot
        last = [r for r in audit_lines(uuid) if r.get("phase") == "outcome"][-1]
        assert last["target"]["name"] == name and last["reason"] == "hung, INC-1234"
        # split on commas only when the whole string is not a VM: two names, one of them unknown
        two = playbook(sim.inventory_path, RESTART, "-e", "target=DC0_H0_VM1,nosuchvm", "-e", "max_targets=2",
                       "--check", check=False)
        assert two.returncode != 0 and "'nosuchvm' not found" in two.stdout
    finally:
        sim.vm_do(uuid, "rename", name="DC0_H0_VM2")


def test_a_vm_on_a_not_responding_host_is_refused_before_acting_with_the_right_hint(sim):
    name = "DC0_C0_RP0_VM1"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    host = sim.vm_state(uuid)["host"]
    events = power_events(sim, uuid)
    sim.host_do(host, "connection", state="notResponding")
    try:
        proc = playbook(sim.inventory_path, RESTART, "-e", "target=%s" % name, check=False)
        assert proc.returncode != 0
        assert "its host %s is not_responding, so its state cannot be known; nothing was done" % host in proc.stdout
        assert "recover_host_failure.yml" in proc.stdout
        # the module on its own, bypassing the runbook: the platform's unknown state, the same advice
        rc, res = adhoc(sim.inventory_path, name, "virtops.unified.vm_power", {"state": "restarted"})
        assert rc != 0 and "does not know its power state" in res[name]["msg"]
        assert "settle" not in res[name]["msg"] and "recover_host_failure.yml" in res[name]["msg"]
    finally:
        sim.host_do(host, "connection", state="connected")
    assert power_events(sim, uuid) == events


# --- 9. (last: the VM it fails to recover may be left unregistered) -----------------------
def test_recovery_that_does_not_recover_a_vm_exits_non_zero(sim, tmp_path):
    """The inventory (cached) plans a recovery to a host that has since entered
    maintenance mode: vCenter refuses the power-on, the role records NOT RECOVERED,
    and the run must not end green. The failed host is really dead (powered off),
    so that maintenance mode is the only obstacle (a host only cut off would
    still hold the VM's files: see test_vcsim_fidelity.py)."""
    inv = tmp_path / "cached.vmware.yml"
    sim.write_inventory(inv, extra="cache: true\ncache_plugin: ansible.builtin.jsonfile\n"
                                   "cache_connection: %s\ncache_timeout: 3600\n" % (tmp_path / "cache"))
    dead = "DC0_C0_H0"
    on_dead = [v for v in sim.state()["vms"] if v["host"] == dead]
    assert on_dead, "the cluster host has VMs"
    vm = on_dead[0]
    fresh(sim, vm["instanceUuid"])
    sim.host_power(dead, "poweredOff")
    try:
        playbook(inv, "playbooks/host_failure_impact.yml", "--check")  # reads and caches the inventory
        sim.host_do("DC0_C0_H1", "maintenance", on=True)  # after the read: the plan does not know
        proc = playbook(inv, "playbooks/recover_host_failure.yml", "-e", "failed_host=%s" % dead, check=False)
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert "NOT recovered" in proc.stdout and vm["name"] in proc.stdout
        assert "rescued=1" in proc.stdout or "NOT RECOVERED" in proc.stdout
        assert "InvalidHostState" in proc.stdout, proc.stdout[-3000:]
        # vCenter's side: registered on the host in maintenance mode, its power-on refused
        calls = [(o["op"], o["result"], o.get("fault")) for o in sim.operations(vm["instanceUuid"])]
        assert calls[-3:] == [("UnregisterVM", "success", None), ("RegisterVM_Task", "success", None),
                              ("PowerOnVM_Task", "error", "InvalidHostState")], calls
    finally:
        sim.host_do("DC0_C0_H1", "maintenance", on=False)
        sim.host_power(dead, "poweredOn")
