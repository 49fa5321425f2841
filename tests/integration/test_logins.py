"""One login per endpoint per run (issue 11): restart_vm.yml and evacuate_host.yml
against the vCenter simulator peer, their logins counted at the peer.

The count does not come from the collection: vCenter posts a UserLoginSessionEvent
for every login (govmomi's simulator too, in Context.SetSession) and a
UserLogoutSessionEvent for every logout, and the test reads that event history
through a pyVmomi session of its own, which it leaves out of the count. End
states are read with the same session; the plan the runbook followed is read from
its own output.

The inventory plugin logs in once per run too, to read vCenter. To count the
runbook's own logins, each run uses an inventory cache that the test fills just
before (ansible-inventory --list, one login before the count starts);
test_the_inventory_read_is_the_only_other_login counts a run without the cache.
"""

import json
import os
import re
import time

import pytest

from helpers import BIN, run, playbook

SOURCE = "DC0_C0_H0"


@pytest.fixture(scope="module")
def sim(vcsim):
    return vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "3", "-host", "0", "-vm", "6")


@pytest.fixture()
def cached(sim, tmp_path):
    """An inventory source with a jsonfile cache; returns a function that fills the cache now."""
    path = sim.write_inventory(tmp_path / "cached.vmware.yml",
                               extra="cache: true\ncache_plugin: ansible.builtin.jsonfile\n"
                                     "cache_connection: %s\ncache_timeout: 3600\n" % (tmp_path / "cache"))

    def refresh():
        run([os.path.join(BIN, "ansible-inventory"), "-i", path, "--list", "--flush-cache"])
        return path
    return refresh


# --- independent reads (the test's own pyVmomi session) ------------------------------
def session_events(sim):
    """vCenter's login and logout events, oldest first: (key, type, sessionId)."""
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    spec = vim.event.EventFilterSpec(eventTypeId=["UserLoginSessionEvent", "UserLogoutSessionEvent"])
    events = sim.si.RetrieveContent().eventManager.QueryEvents(spec)
    return sorted((e.key, type(e).__name__.rsplit(".", 1)[-1], e.sessionId) for e in events)


def mark(sim):
    """The key of the newest login or logout event: count from here."""
    events = session_events(sim)
    return events[-1][0] if events else 0


def logins_since(sim, marker):
    """(sessions logged in since the marker, those of them logged out), the test's own left out."""
    own = sim.si.content.sessionManager.currentSession.key
    events = [e for e in session_events(sim) if e[0] > marker and e[2] != own]
    return ([s for _k, kind, s in events if kind == "UserLoginSessionEvent"],
            {s for _k, kind, s in events if kind == "UserLogoutSessionEvent"})


def vm_named(sim, name):
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    hits = [v for v in sim.objects(vim.VirtualMachine) if v.name == name]
    assert len(hits) == 1, (name, hits)
    return hits[0]


def host_named(sim, name):
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    return [h for h in sim.objects(vim.HostSystem) if h.name == name][0]


def relocate(sim, vm, host_name):
    """Move a VM with the test's own session (setup, not under test)."""
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    host = host_named(sim, host_name)
    task = vm.RelocateVM_Task(vim.vm.RelocateSpec(host=host, pool=host.parent.resourcePool))
    deadline = time.monotonic() + 30
    while task.info.state not in ("success", "error"):
        assert time.monotonic() < deadline, "relocate %s did not finish" % vm.name
        time.sleep(0.1)
    assert task.info.state == "success", task.info.error
    assert vm.runtime.host.name == host_name


def gather(sim, names, host_name):
    for name in names:
        vm = vm_named(sim, name)
        if vm.runtime.powerState != "poweredOn":
            sim.vm_do(vm.config.instanceUuid, "power", state="poweredOn")
        if vm.runtime.host.name != host_name:
            relocate(sim, vm, host_name)


def on_host(sim, host_name):
    return sorted(h for h in (v.name for v in host_named(sim, host_name).vm))


def audit_lines():
    with open(os.environ["VIRTOPS_AUDIT_LOG"], encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plan_of(stdout):
    """{VM: destination} as the runbook showed its plan (plan_line: name, state, -> destination)."""
    plan = {}
    for name, dest in re.findall(r'"(DC0_\S+)\s+\S*\s+-> (\S+)\s+planned"', stdout):
        plan[name] = dest
    return plan


def steps(stdout):
    found = re.findall(r"steps: ([a-z=, ]+)", stdout)
    return found[-1].strip() if found else None


# --- restart_vm --------------------------------------------------------------------
def test_restart_vm_logs_in_once(sim, cached):
    name = "DC0_C0_RP0_VM0"
    vm = vm_named(sim, name)
    sim.wait_tools(vm.config.instanceUuid)
    boot = vm.summary.runtime.bootTime
    inv = cached()
    marker = mark(sim)
    proc = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=%s" % name)
    logins, logouts = logins_since(sim, marker)
    assert len(logins) == 1, (logins, proc.stdout[-3000:])
    assert set(logins) <= logouts  # and it logged out
    # the guarantees of the three reads it replaces: the heartbeat answered before, so it was waited for
    assert steps(proc.stdout) == "shutdown=ok, start=ok, heartbeat=ok", proc.stdout[-3000:]
    assert "before: running (poweredOn), heartbeat ok" in proc.stdout
    assert re.search(r"after: running, heartbeat ok, on %s, in [0-9.]+ s" % vm.runtime.host.name, proc.stdout)
    vm = vm_named(sim, name)
    assert vm.runtime.powerState == "poweredOn" and vm.summary.runtime.bootTime > boot
    assert vm.guestHeartbeatStatus == "green"

    # check mode: the plan, one login, nothing done
    marker = mark(sim)
    dry = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=%s" % name, "--check")
    assert len(logins_since(sim, marker)[0]) == 1
    assert "PLAN (check mode, nothing done): restart of %s" % name in dry.stdout
    assert steps(dry.stdout) == "shutdown=planned, start=planned, heartbeat=planned"
    assert vm_named(sim, name).summary.runtime.bootTime == vm.summary.runtime.bootTime


def test_restart_vm_refuses_a_vm_that_moved_with_the_same_one_login(sim, cached):
    name = "DC0_C0_RP0_VM1"
    vm = vm_named(sim, name)
    sim.wait_tools(vm.config.instanceUuid)
    inv = cached()  # the inventory says where it is now...
    listed = vm.runtime.host.name
    elsewhere = [h for h in ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2") if h != listed][0]
    relocate(sim, vm, elsewhere)  # ...and then it moves
    boot = vm.summary.runtime.bootTime
    marker = mark(sim)
    proc = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=%s" % name, check=False)
    assert proc.returncode != 0
    assert len(logins_since(sim, marker)[0]) == 1
    assert ("now runs on %s, not on %s as the inventory says: nothing was done. Refresh the inventory, "
            "or re-run with -e restart_vm_follow=true" % (elsewhere, listed)) in proc.stdout, proc.stdout[-3000:]
    assert vm_named(sim, name).summary.runtime.bootTime == boot

    marker = mark(sim)
    proc = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=%s" % name, "-e", "restart_vm_follow=true")
    assert len(logins_since(sim, marker)[0]) == 1
    assert "DONE: restart of %s" % name in proc.stdout and "on %s [vmware]" % elsewhere in proc.stdout
    vm = vm_named(sim, name)
    assert vm.runtime.host.name == elsewhere and vm.summary.runtime.bootTime > boot


def test_the_inventory_read_is_the_only_other_login(sim):
    name = "DC0_C0_RP0_VM2"
    sim.wait_tools(vm_named(sim, name).config.instanceUuid)
    marker = mark(sim)
    playbook(sim.inventory_path, "playbooks/restart_vm.yml", "-e", "target=%s" % name)  # no cache
    logins, logouts = logins_since(sim, marker)
    assert len(logins) == 2 and set(logins) <= logouts, logins  # the inventory plugin's, the runbook's


# --- evacuate_host ---------------------------------------------------------------------
def test_evacuating_three_vms_logs_in_once_and_follows_the_plan(sim, cached):
    names = ["DC0_C0_RP0_VM3", "DC0_C0_RP0_VM4", "DC0_C0_RP0_VM5"]
    gather(sim, names, SOURCE)
    moving = on_host(sim, SOURCE)
    assert len(moving) >= 3, moving
    inv = cached()
    marker = mark(sim)
    audit_before = len(audit_lines()) if os.path.exists(os.environ["VIRTOPS_AUDIT_LOG"]) else 0
    proc = playbook(inv, "playbooks/evacuate_host.yml", "-e", "evacuate=%s" % SOURCE)
    logins, logouts = logins_since(sim, marker)
    assert len(logins) == 1, (logins, proc.stdout[-3000:])
    assert set(logins) <= logouts
    plan = plan_of(proc.stdout)
    assert sorted(plan) == moving, (plan, proc.stdout[-3000:])
    assert "%d of %d VM(s) moved off %s" % (len(moving), len(moving), SOURCE) in proc.stdout
    for name, dest in plan.items():
        vm = vm_named(sim, name)
        assert vm.runtime.host.name == dest and vm.runtime.powerState == "poweredOn", (name, dest)
    assert on_host(sim, SOURCE) == []
    # each VM on record on its own: an intent and an outcome with one id, in plan order
    lines = [r for r in audit_lines()[audit_before:] if r["state"] == "migrated"]
    intents = [r for r in lines if r["phase"] == "intent"]
    outcomes = {r["id"]: r for r in lines if r["phase"] == "outcome"}
    assert [r["target"]["name"] for r in intents] == list(plan)
    for r in intents:
        done = outcomes[r["id"]]
        assert done["result"] == "ok" and done["target"]["host"] == SOURCE
        assert done["host_after"] == plan[r["target"]["name"]]
        assert r["target"]["inventory_name"] == r["target"]["name"]


def test_an_evacuation_moves_all_it_can_past_a_vm_that_cannot_move_and_says_which(sim, cached):
    names = ["DC0_C0_RP0_VM3", "DC0_C0_RP0_VM4", "DC0_C0_RP0_VM5"]
    gather(sim, names, SOURCE)
    moving = on_host(sim, SOURCE)
    inv = cached()
    second = moving[1]  # the plan goes in name order: the second VM moves away behind the runbook's back
    relocate(sim, vm_named(sim, second), "DC0_C0_H2")
    marker = mark(sim)
    proc = playbook(inv, "playbooks/evacuate_host.yml", "-e", "evacuate=%s" % SOURCE, check=False)
    assert proc.returncode != 0  # the goal (an empty host) was not reached
    assert len(logins_since(sim, marker)[0]) == 1
    plan = {m.group(1): m.group(2) for m in re.finditer(r'"(DC0_\S+)\s+\S*\s+-> (\S+)\s+planned"', proc.stdout)}
    assert list(plan) == moving
    for vm in [moving[0]] + moving[2:]:
        assert vm_named(sim, vm).runtime.host.name == plan[vm]  # moved, also after the refused one
    assert vm_named(sim, second).runtime.host.name == "DC0_C0_H2"  # refused, left where it is
    out = proc.stdout
    for vm in [moving[0]] + moving[2:]:
        assert re.search(r"%s\s+\S+\s+-> \S+\s+moved to %s" % (vm, plan[vm]), out), out[-3000:]
    assert re.search(r"%s\s+\S+\s+-> \S+\s+NOT MOVED: .*runs on DC0_C0_H2, not on the expected host %s"
                     % (second, SOURCE), out), out[-3000:]
    assert "1 of %d VM(s) not moved" % len(moving) in out


# --- recover_host_failure -------------------------------------------------------------------
def test_recovering_three_vms_of_a_dead_host_logs_in_once_and_follows_the_plan(sim, cached):
    names = ["DC0_C0_RP0_VM3", "DC0_C0_RP0_VM4", "DC0_C0_RP0_VM5"]
    gather(sim, names, SOURCE)
    victims = on_host(sim, SOURCE)
    assert len(victims) >= 3, victims
    uuids = {name: vm_named(sim, name).config.instanceUuid for name in victims}
    audit_before = len(audit_lines()) if os.path.exists(os.environ["VIRTOPS_AUDIT_LOG"]) else 0
    sim.host_power(SOURCE, "poweredOff")  # dead: its VMs stop and their files are free
    try:
        inv = cached()  # the inventory sees the host not responding
        marker = mark(sim)
        dry = playbook(inv, "playbooks/recover_host_failure.yml", "-e", "failed_host=%s" % SOURCE, "--check")
        assert len(logins_since(sim, marker)[0]) == 1, dry.stdout[-3000:]
        assert sorted(plan_of(dry.stdout)) == victims, dry.stdout[-3000:]
        assert all(vm_named(sim, n).runtime.host.name == SOURCE for n in victims)  # nothing done

        marker = mark(sim)
        proc = playbook(inv, "playbooks/recover_host_failure.yml", "-e", "failed_host=%s" % SOURCE)
        logins, logouts = logins_since(sim, marker)
        assert len(logins) == 1, (logins, proc.stdout[-3000:])
        assert set(logins) <= logouts
        plan = plan_of(proc.stdout)
        assert sorted(plan) == victims, (plan, proc.stdout[-3000:])
        for name, dest in plan.items():
            vm = sim.vm(uuids[name])  # same identity, re-registered on the planned host
            assert vm.runtime.host.name == dest and vm.runtime.powerState == "poweredOn", (name, dest)
            assert re.search(r"%s\s+\S+\s+-> %s\s+running on %s after" % (name, dest, dest), proc.stdout), name
        # each VM on record on its own: an intent and an outcome with one id, in plan (priority) order
        lines = [r for r in audit_lines()[audit_before:] if r["state"] == "recovered"]
        intents = [r for r in lines if r["phase"] == "intent"]
        outcomes = {r["id"]: r for r in lines if r["phase"] == "outcome"}
        assert [r["target"]["name"] for r in intents] == list(plan)
        for r in intents:
            done = outcomes[r["id"]]
            assert done["result"] == "ok" and done["host_after"] == plan[r["target"]["name"]]
            assert r["target"]["inventory_name"] == r["target"]["name"]
    finally:
        sim.host_power(SOURCE, "poweredOn")
