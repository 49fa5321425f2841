"""The vCenter peer behaves like vCenter where the collection depends on it
(tests/peers/vcsim/README.md cites the source of each behaviour), and the
collection copes: a host cut off from vCenter keeps its VMs and their files, so
their recovery elsewhere fails safely until the host is really dead; Tools (and
the heartbeat) come up some time after a power-on; runtime.bootTime changes on
a power-on only; FindByUuid promises no order; a task may never finish; the
event history tells a guest shutdown from a hard power-off.

Everything is read independently of the collection: pyVmomi over the peer's
SOAP port (tasks, faults, events) and the peer's control API (what it received,
which host holds which files).
"""

import json
import time

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import vmware_driver
from helpers import adhoc, playbook
from vcsim_peer import PASSWORD, USERNAME

# one cluster DC0_C0 of three hosts; VMs DC0_C0_RP0_VM0..2
SIZE = ("-dc", "1", "-cluster", "1", "-cluster-host", "3", "-host", "0", "-vm", "3")
HOSTS = ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2")
LOCKED = "Failed to lock the file"


@pytest.fixture(scope="module")
def sim(vcsim):
    return vcsim(*SIZE)


# --- helpers -------------------------------------------------------------------------
def vm_named(sim, name):
    """The VM of that name (not a copy a host brought back, when there are two)."""
    found = [v for v in sim.state()["vms"] if v["name"] == name]
    if len(found) > 1:
        found = [v for v in found if "/Discovered virtual machine/" not in v["path"]]
    (vm,) = found
    return vm


def up_on(sim, name, host):
    """The VM, running on `host` with its Tools up; its peer settings back to normal."""
    vm = vm_named(sim, name)
    uuid = vm["instanceUuid"]
    for action, body in (("ignore_shutdown", {"on": False}), ("shutdown_delay", {"seconds": 0}),
                         ("task_delay", {"seconds": 0}), ("tools_delay", {"seconds": 1})):
        sim.vm_do(uuid, action, **body)
    if vm["host"] != host:
        sim.vm_do(uuid, "relocate", host=host)
    if vm["powerState"] != "poweredOn":
        sim.vm_do(uuid, "power", state="poweredOn")
    sim.vm_do(uuid, "tools", running=True)
    return sim.vm_state(uuid)


def alone_on(sim, host, keep):
    """Move every other VM off `host` (behind the collection's back), so that a failure of
    that host concerns the VM `keep` only."""
    for v in sim.state()["vms"]:
        if v["host"] == host and v["instanceUuid"] != keep:
            sim.vm_do(v["moref"], "relocate", host=next(h for h in HOSTS if h != host))


def wait_task(task, timeout=15):
    """task.info once the task has ended (polled as the collection's driver does)."""
    deadline = time.monotonic() + timeout
    while task.info.state not in ("success", "error"):
        if time.monotonic() > deadline:
            raise AssertionError("task %s still %s after %ss" % (task._moId, task.info.state, timeout))
        time.sleep(0.05)
    return task.info


def host_obj(sim, name):
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    (host,) = [h for h in sim.objects(vim.HostSystem) if h.name == name]
    return host


def register(sim, where, host_name):
    """What the collection's recovery does once the old VM is unregistered: the same .vmx,
    name and folder (`where`, read before), on a live host of the cluster
    (vmware_driver.VmwareDriver.recover)."""
    folder, path, name = where
    host = host_obj(sim, host_name)
    return folder.RegisterVM_Task(path=path, name=name, asTemplate=False, pool=host.parent.resourcePool, host=host)


def host_state(sim, name):
    (host,) = [h for h in sim.state()["hosts"] if h["name"] == name]
    return host


def restore(sim, host):
    """Put a failed host back (powered on and connected) whatever the test left."""
    if host_state(sim, host)["power"] == "poweredOff":
        sim.host_power(host, "poweredOn")
    elif host_state(sim, host)["connectionState"] != "connected":
        sim.host_do(host, "connection", state="connected")


def remove_copies(sim, name):
    """Unregister the powered-off copies of a VM a host brought back (the next test starts clean)."""
    for v in sim.state()["vms"]:
        if v["name"] == name and v["powerState"] != "poweredOn":
            sim.vm(v["instanceUuid"]).UnregisterVM()


# --- 1. a VM's files belong to the host that runs it --------------------------------------
def test_a_vm_registered_elsewhere_while_its_host_is_cut_off_powers_on_only_once_that_host_is_dead(sim):
    name, old, new_host = "DC0_C0_RP0_VM0", "DC0_C0_H0", "DC0_C0_H1"
    vm = up_on(sim, name, old)
    uuid = vm["instanceUuid"]
    alone_on(sim, old, uuid)
    try:
        sim.host_do(old, "connection", state="notResponding")  # cut off from vCenter, still running
        obj = sim.vm(uuid)
        vmx = obj.config.files.vmPathName
        where = (obj.parent, vmx, obj.name)
        obj.UnregisterVM()  # vCenter allows it: the host is not connected
        old_host = host_state(sim, old)
        assert old_host["power"] == "poweredOn" and vmx in old_host["locks"], old_host
        assert old_host["unregisteredVms"] == ["%s (%s)" % (name, vmx)], old_host

        info = wait_task(register(sim, where, new_host))
        assert info.state == "success", info.error
        copy = info.result
        assert copy.config.instanceUuid == uuid and copy.runtime.host.name == new_host

        # the host that still runs the VM holds its files: vCenter's power-on fails, nothing runs twice
        info = wait_task(copy.PowerOnVM_Task())
        fault = info.error
        assert info.state == "error" and type(fault).__name__ == "vim.fault.GenericVmConfigFault", fault
        assert LOCKED in fault.msg and "Cannot open the disk" in fault.msg, fault.msg
        assert [m.key for m in fault.faultMessage] == ["msg.disk.noBackEnd", "msg.fileio.lock"], fault.faultMessage
        assert copy.runtime.powerState == "poweredOff"
        state = sim.vm_state(uuid)
        assert (state["powerState"], state["filesLockedBy"]) == ("poweredOff", old), state
        assert [(o["op"], o["result"], o.get("fault")) for o in sim.operations(uuid)][-3:] == [
            ("UnregisterVM", "success", None), ("RegisterVM_Task", "success", None),
            ("PowerOnVM_Task", "error", "GenericVmConfigFault")]

        # the host really dies: its VMs stop and its hold on their files ends; now it starts
        sim.host_power(old, "poweredOff")
        dead = host_state(sim, old)
        assert (dead["power"], dead["connectionState"], dead["locks"]) == ("poweredOff", "notResponding", [])
        assert host_obj(sim, old).runtime.powerState == "unknown"  # what vCenter can know of it
        info = wait_task(copy.PowerOnVM_Task())
        assert info.state == "success" and copy.runtime.powerState == "poweredOn", info.error
        assert sim.vm_state(uuid)["filesLockedBy"] == new_host

        # the host comes back: vCenter takes its own copy of the VM into its inventory again,
        # powered off, in "Discovered virtual machine", with a new instanceUuid (the running
        # copy keeps its own); it cannot start while the other copy runs
        sim.host_power(old, "poweredOn")
        (back,) = [v for v in sim.state()["vms"] if v["name"] == name and v["host"] == old]
        assert back["path"] == "/DC0/vm/Discovered virtual machine/%s" % name, back
        assert back["powerState"] == "poweredOff" and back["instanceUuid"] != uuid and back["uuid"] == state["uuid"]
        assert sim.events(back["instanceUuid"], ("VmDiscoveredEvent", "VmInstanceUuidConflictEvent")) == \
            ["VmDiscoveredEvent", "VmInstanceUuidConflictEvent"]
        info = wait_task(sim.vm(back["instanceUuid"]).PowerOnVM_Task())
        assert info.state == "error" and LOCKED in info.error.msg
        assert sim.vm(uuid).runtime.powerState == "poweredOn" and sim.vm(uuid).runtime.host.name == new_host
    finally:
        restore(sim, old)
        remove_copies(sim, name)


def test_a_host_that_was_only_cut_off_brings_back_the_vm_it_kept_running(sim):
    """vCenter forgot the VM (UnregisterVM while the host was not responding); the host
    kept running it. When the host answers again, the VM is back, still running, with
    its identity and its boot time."""
    name, host = "DC0_C0_RP0_VM1", "DC0_C0_H2"
    vm = up_on(sim, name, host)
    uuid = vm["instanceUuid"]
    alone_on(sim, host, uuid)
    try:
        booted = sim.vm(uuid).runtime.bootTime
        sim.host_do(host, "connection", state="notResponding")
        sim.vm(uuid).UnregisterVM()
        assert all(v["instanceUuid"] != uuid for v in sim.state()["vms"])
        sim.host_do(host, "connection", state="connected")
        back = sim.vm(uuid)  # the same instanceUuid: nobody else has it
        assert (back.name, back.runtime.host.name, back.runtime.powerState) == (name, host, "poweredOn")
        assert back.runtime.bootTime == booted and back.guestHeartbeatStatus == "green"
        assert back.parent.name == "Discovered virtual machine"
        assert sim.vm_state(uuid)["filesLockedBy"] == host
    finally:
        restore(sim, host)


def test_recover_host_failure_refuses_while_the_old_host_is_only_cut_off(sim, tmp_path):
    """The runbook on a host that is not responding but still runs its VMs: the VM is
    registered on a live host, its power-on fails with vCenter's file-lock fault, and
    the run reports NOT RECOVERED and exits non-zero. No split brain: the one copy that
    runs is the old host's. Once the host is really dead, the VM starts where it was
    registered."""
    name, old = "DC0_C0_RP0_VM2", "DC0_C0_H1"
    vm = up_on(sim, name, old)
    uuid = vm["instanceUuid"]
    alone_on(sim, old, uuid)
    inv = sim.write_inventory(tmp_path / "sim.vmware.yml")
    try:
        sim.host_do(old, "connection", state="notResponding")
        proc = playbook(inv, "playbooks/recover_host_failure.yml", "-e", "failed_host=%s" % old, check=False)
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert "NOT RECOVERED" in proc.stdout and LOCKED in proc.stdout, proc.stdout[-3000:]
        assert "1 of 1 VM(s) of %s NOT recovered: %s" % (old, name) in " ".join(proc.stdout.split())
        # and says what it means: the old host still runs it, fence it before starting this copy
        assert "another host still holds the VM's files" in proc.stdout and "fence it" in proc.stdout
        state = sim.vm_state(uuid)  # registered on a live host, powered off; the old host runs it
        assert state["host"] != old and state["powerState"] == "poweredOff", state
        assert state["filesLockedBy"] == old and host_state(sim, old)["unregisteredVms"], state
        calls = [(o["op"], o["result"]) for o in sim.operations(uuid)]
        assert calls[-3:] == [("UnregisterVM", "success"), ("RegisterVM_Task", "success"), ("PowerOnVM_Task", "error")]
        # the operator makes sure the old host is dead (here: it is powered off), then starts it
        sim.host_power(old, "poweredOff")
        rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power",
                        {"platform": "vmware", "hostname": "127.0.0.1", "port": sim.port, "validate_certs": False,
                         "uuid": uuid, "state": "started"})
        assert rc == 0 and res["localhost"]["after"]["power_state"] == "running", res
        assert sim.vm(uuid).runtime.powerState == "poweredOn" and sim.vm_state(uuid)["filesLockedBy"] == state["host"]
    finally:
        restore(sim, old)
        remove_copies(sim, name)


# --- 2. Tools start some time after a power-on ------------------------------------------------
def test_tools_and_heartbeat_come_up_after_the_tools_delay_or_never(sim):
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    vm = up_on(sim, "DC0_C0_RP0_VM0", "DC0_C0_H2")
    uuid = vm["instanceUuid"]
    obj = sim.vm(uuid)
    assert wait_task(obj.PowerOffVM_Task()).state == "success"
    sim.vm_do(uuid, "tools_delay", seconds=1.5)
    powered = time.monotonic()
    assert wait_task(obj.PowerOnVM_Task()).state == "success"
    # booting: Tools not running, heartbeat gray, and no graceful shutdown yet
    assert (obj.guest.toolsRunningStatus, obj.guestHeartbeatStatus) == ("guestToolsNotRunning", "gray")
    assert sim.vm_state(uuid)["toolsStarting"] is True
    with pytest.raises(vim.fault.ToolsUnavailable):
        obj.ShutdownGuest()
    sim.wait_tools(uuid)
    assert time.monotonic() - powered >= 1.4
    assert obj.guest.toolsRunningStatus == "guestToolsRunning" and obj.guestHeartbeatStatus == "green"
    # a guest reboot: the VM stays on (same boot time), its Tools go down and come back
    booted = obj.runtime.bootTime
    obj.RebootGuest()
    assert obj.guestHeartbeatStatus == "gray" and obj.runtime.bootTime == booted
    sim.wait_tools(uuid)
    # a guest whose Tools never start: gray for good
    sim.vm_do(uuid, "tools_delay", seconds=-1)
    assert wait_task(obj.ResetVM_Task()).state == "success"
    time.sleep(1.5)
    assert obj.guestHeartbeatStatus == "gray" and sim.vm_state(uuid)["toolsDelaySeconds"] == -1
    # the existing controls still apply at once: /tools, /heartbeat
    sim.vm_do(uuid, "tools", running=True)
    assert obj.guestHeartbeatStatus == "green"
    sim.vm_do(uuid, "heartbeat", status="red")
    assert obj.guestHeartbeatStatus == "red"
    sim.vm_do(uuid, "heartbeat", status="green")


# --- 3. runtime.bootTime --------------------------------------------------------------------
def test_boot_time_changes_on_power_on_only_not_on_suspend_or_resume(sim):
    vm = up_on(sim, "DC0_C0_RP0_VM1", "DC0_C0_H0")
    obj = sim.vm(vm["instanceUuid"])
    booted = obj.runtime.bootTime
    assert booted is not None and obj.summary.runtime.bootTime == booted
    assert wait_task(obj.SuspendVM_Task()).state == "success"
    assert obj.runtime.bootTime == booted and obj.summary.runtime.bootTime == booted
    assert wait_task(obj.PowerOnVM_Task()).state == "success"  # resume
    assert obj.runtime.powerState == "poweredOn" and obj.runtime.bootTime == booted
    assert wait_task(obj.PowerOffVM_Task()).state == "success"
    assert obj.runtime.bootTime is None and obj.summary.runtime.bootTime is None  # cleared while off
    assert wait_task(obj.PowerOnVM_Task()).state == "success"
    assert obj.runtime.bootTime > booted and obj.summary.runtime.bootTime == obj.runtime.bootTime


# --- 4. FindByUuid promises no order ----------------------------------------------------------
def test_find_by_uuid_answers_any_match_and_the_driver_searches_by_instance_uuid(sim):
    """Two VMs with the same BIOS uuid (a clone, a copy): FindByUuid answers one of them,
    not always the same; FindAllByUuid lists both. The collection's driver finds VMs by
    instanceUuid, unique per vCenter, so it gets the right one every time."""
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    a, b = vm_named(sim, "DC0_C0_RP0_VM0"), vm_named(sim, "DC0_C0_RP0_VM1")
    obj_b = sim.vm(b["instanceUuid"])
    assert wait_task(obj_b.ReconfigVM_Task(vim.vm.ConfigSpec(uuid=a["uuid"]))).state == "success"
    try:
        index = sim.si.RetrieveContent().searchIndex
        twins = {v["moref"] for v in sim.state()["vms"] if v["uuid"] == a["uuid"]}
        assert {a["moref"], b["moref"]} <= twins
        seen = {index.FindByUuid(None, a["uuid"], True, False)._moId for _draw in range(40)}
        assert seen == twins, seen  # 40 draws: each of them, but for odds of about 2**-39
        orders = {tuple(v._moId for v in index.FindAllByUuid(None, a["uuid"], True, False)) for _draw in range(40)}
        assert {frozenset(o) for o in orders} == {frozenset(twins)} and len(orders) > 1, orders
        driver = vmware_driver.VmwareDriver(hostname="127.0.0.1", port=sim.port, username=USERNAME,
                                            password=PASSWORD, validate_certs=False, connect_timeout=10)
        try:
            for _round in range(10):
                assert driver.find(uuid=a["instanceUuid"]).facts["moid"] == a["moref"]
                assert driver.find(uuid=b["instanceUuid"]).facts["moid"] == b["moref"]
        finally:
            driver.close()
    finally:
        wait_task(obj_b.ReconfigVM_Task(vim.vm.ConfigSpec(uuid=b["uuid"])))


# --- 5. a task that never finishes -------------------------------------------------------------
def test_a_power_task_can_stay_running_for_ever(sim):
    vm = up_on(sim, "DC0_C0_RP0_VM2", "DC0_C0_H0")
    uuid = vm["instanceUuid"]
    obj = sim.vm(uuid)
    sim.vm_do(uuid, "task_delay", seconds="never")
    try:
        task = obj.PowerOffVM_Task()
        time.sleep(1.5)
        assert task.info.state == "running" and obj.runtime.powerState == "poweredOn"
        state = sim.vm_state(uuid)
        assert (state["runningTask"], state["taskDelaySeconds"]) == ("PowerOffVM_Task", -1), state
        assert sim.operations(uuid)[-1]["op"] == "PowerOffVM_Task" and sim.operations(uuid)[-1]["result"] == "running"
    finally:
        sim.vm_do(uuid, "task_delay", seconds=0)


# --- 6. vCenter's event history and the calls it received ---------------------------------------
def test_event_history_tells_a_guest_shutdown_from_a_hard_power_off(sim):
    events = ("VmGuestShutdownEvent", "VmPoweredOffEvent", "VmPoweredOnEvent")
    vm = up_on(sim, "DC0_C0_RP0_VM1", "DC0_C0_H0")
    uuid = vm["instanceUuid"]
    obj = sim.vm(uuid)
    mark, calls = len(sim.events(uuid, events)), len(sim.operations(uuid))
    obj.ShutdownGuest()  # the guest honours it
    sim.wait_power(uuid, "poweredOff")
    assert wait_task(obj.PowerOnVM_Task()).state == "success"
    sim.vm_do(uuid, "tools", running=True)
    assert wait_task(obj.PowerOffVM_Task()).state == "success"  # hard
    assert wait_task(obj.PowerOnVM_Task()).state == "success"
    sim.vm_do(uuid, "tools", running=True)
    sim.vm_do(uuid, "ignore_shutdown", on=True)
    obj.ShutdownGuest()  # a hung guest: the request is logged, nothing else happens
    time.sleep(0.5)
    assert obj.runtime.powerState == "poweredOn"
    assert sim.events(uuid, events)[mark:] == [
        "VmGuestShutdownEvent", "VmPoweredOffEvent", "VmPoweredOnEvent",  # guest shutdown, power-on
        "VmPoweredOffEvent", "VmPoweredOnEvent",  # hard power-off: no guest event
        "VmGuestShutdownEvent"]  # the request the hung guest ignored
    assert sim.ops(uuid, calls) == ["ShutdownGuest", "PowerOnVM_Task", "PowerOffVM_Task", "PowerOnVM_Task",
                                    "ShutdownGuest"]
    ops = sim.operations(uuid)[calls:]
    assert all(o["result"] == "success" and o["time"] <= o["finished"] for o in ops), json.dumps(ops, indent=1)
    sim.vm_do(uuid, "ignore_shutdown", on=False)
