#!/usr/bin/env python
"""Smoke check of the vcsim test peer with pyVmomi (not collected by pytest).

Usage: smoke_pyvmomi.py [path/to/vcsim]   (default: build it with build.sh)
Needs pyvmomi (e.g. python3 -m venv /tmp/vcsimvenv && /tmp/vcsimvenv/bin/pip install pyvmomi).
Starts its own peer, checks, stops it; exits non-zero on the first failure.
"""
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = {"passed": 0, "failed": 0}


def check(cond, what):
    CHECKS["passed" if cond else "failed"] += 1
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        raise SystemExit(1)


def start(binary, *args):
    proc = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    return proc, info


def ctl(base, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def connect(url, user=None, pwd=None):
    u = urllib.parse.urlsplit(url)
    return SmartConnect(host=u.hostname, port=u.port,
                        user=user if user is not None else urllib.parse.unquote(u.username),
                        pwd=pwd if pwd is not None else urllib.parse.unquote(u.password),
                        disableSslCertValidation=True)


def bulk(si, vimtype, props):
    """One RetrievePropertiesEx over a ContainerView."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
                obj=view, skip=True,
                selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                    name="v", path="view", skip=False, type=vim.view.ContainerView)])],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vimtype, pathSet=props)])
        res = content.propertyCollector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        out = {}
        while res:
            for oc in res.objects:
                out[oc.obj] = {p.name: p.val for p in oc.propSet}
            res = content.propertyCollector.ContinueRetrievePropertiesEx(res.token) if res.token else None
        return out
    finally:
        view.Destroy()


def task_error(task):
    try:
        WaitForTask(task)
    except vmodl.MethodFault as e:
        return e
    return None


def tools_up(base, vm, timeout=10):
    """Wait until VMware Tools run in a VM's guest (they start some time after a power-on)."""
    deadline = time.monotonic() + timeout
    while ctl(base, "/vm/" + vm._moId)["toolsRunningStatus"] != "guestToolsRunning":
        if time.monotonic() > deadline:
            raise AssertionError("Tools of %s not running after %ss" % (vm._moId, timeout))
        time.sleep(0.05)


def events_of(si, vm):
    """vCenter's event history of a VM (QueryEvents: the latest events), oldest first, by type name."""
    spec = vim.event.EventFilterSpec(entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self"))
    return [type(e).__name__.rsplit(".", 1)[-1] for e in sorted(si.content.eventManager.QueryEvents(spec), key=lambda e: e.key)]


def ops_of(base, vm):
    """The calls the peer received for a VM: [(op, result)]."""
    return [(o["op"], o["result"]) for o in ctl(base, "/vm/%s/operations" % vm._moId)["operations"]]


def poll(task, timeout=10):
    """Wait for a task by polling task.info, as the collection's driver does."""
    deadline = time.monotonic() + timeout
    while True:
        info = task.info
        if info.state in ("success", "error"):
            return info
        if time.monotonic() > deadline:
            raise AssertionError("task %s still %s" % (task._moId, info.state))
        time.sleep(0.05)


# the collection's driver reads these (plugins/module_utils/vmware_driver.py)
VM_PROPS = ("name", "config.instanceUuid", "config.template", "runtime.powerState", "runtime.host",
            "runtime.connectionState", "guestHeartbeatStatus", "guest.toolsRunningStatus",
            "summary.config.numCpu", "summary.config.memorySizeMB")


def read_objects(si, objs, vimtype=vim.VirtualMachine, props=VM_PROPS):
    """RetrievePropertiesEx with one ObjectSpec per object and no traversal."""
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=o, skip=False) for o in objs],
                         propSet=[pc.PropertySpec(type=vimtype, pathSet=list(props))])
    res = si.content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions(maxObjects=1000))
    return {oc.obj: {p.name: p.val for p in oc.propSet} for oc in (res.objects if res else [])}


def placement_consistent(si, base):
    """SOAP runtime.host vs host.vm vs pool.vm vs control /state, for every VM and host."""
    vms = bulk(si, vim.VirtualMachine, ["name", "runtime.host", "resourcePool"])
    hosts = bulk(si, vim.HostSystem, ["name", "vm"])
    pools = bulk(si, vim.ResourcePool, ["vm"])
    problems = []
    for h, hp in hosts.items():
        want = sorted(v._moId for v, p in vms.items() if p["runtime.host"] == h)
        if sorted(v._moId for v in hp["vm"]) != want:
            problems.append("host %s lists %s, VMs on it %s" % (hp["name"], [v._moId for v in hp["vm"]], want))
    for rp, pp in pools.items():
        want = sorted(v._moId for v, p in vms.items() if p["resourcePool"] == rp)
        if sorted(v._moId for v in pp["vm"]) != want:
            problems.append("pool %s lists %s, VMs in it %s" % (rp._moId, [v._moId for v in pp["vm"]], want))
    state = ctl(base, "/state")
    hname = {h._moId: p["name"] for h, p in hosts.items()}
    for v in state["vms"]:
        soap_host = [p["runtime.host"]._moId for vm, p in vms.items() if vm._moId == v["moref"]]
        if soap_host != [v["hostMoref"]] or hname[v["hostMoref"]] != v["host"]:
            problems.append("/state says %s is on %s, SOAP %s" % (v["moref"], v["host"], soap_host))
    for h in state["hosts"]:
        want = sorted(v["name"] for v in state["vms"] if v["host"] == h["name"])
        if sorted(h["vms"]) != want:
            problems.append("/state host %s lists %s, VMs on it %s" % (h["name"], h["vms"], want))
    return problems


def standard_calls(si, base):
    """The vSphere calls pyVmomi clients make, with the peer's hooks in place
    (every VM has been the target of a hooked call by now)."""
    content = si.RetrieveContent()
    idx = content.searchIndex
    dc = content.rootFolder.childEntity[0]
    # a hooked call on every VM first, so that each VM has its hook object
    for v in ctl(base, "/state")["vms"]:
        if v["powerState"] != "poweredOn":  # the control API skips the maintenance-mode check
            ctl(base, "/vm/%s/power" % v["moref"], {"state": "poweredOn"})
        WaitForTask(vim.VirtualMachine(v["moref"], si._stub).ResetVM_Task())
    for v in ctl(base, "/state")["vms"]:
        tools_up(base, vim.VirtualMachine(v["moref"], si._stub))
    vms = {v["moref"]: v for v in ctl(base, "/state")["vms"]}

    # SearchIndex
    found = {m: idx.FindByUuid(None, v["instanceUuid"], True, True) for m, v in vms.items()}
    check(all(o is not None and o._moId == m for m, o in found.items()),
          "FindByUuid(None, instanceUuid, vmSearch=True, instanceUuid=True) finds each of %d VMs" % len(vms))
    found = {m: idx.FindByUuid(None, v["uuid"], True, False) for m, v in vms.items()}
    check(all(o is not None and o._moId == m for m, o in found.items()), "FindByUuid(instanceUuid=False): BIOS uuid")
    found = {m: idx.FindByUuid(uuid=v["uuid"], vmSearch=True) for m, v in vms.items()}
    check(all(o is not None and o._moId == m for m, o in found.items()), "FindByUuid without instanceUuid: BIOS uuid")
    one = next(iter(vms.values()))
    check(idx.FindByUuid(dc, one["instanceUuid"], True, True)._moId == one["moref"], "FindByUuid with datacenter=DC0")
    check(idx.FindByUuid(None, "00000000-0000-0000-0000-000000000000", True, True) is None, "FindByUuid of an unknown uuid: None")
    check(idx.FindByUuid(None, one["uuid"], True, True) is None, "FindByUuid: a BIOS uuid is not an instance uuid")
    all_found = idx.FindAllByUuid(None, one["instanceUuid"], True, True)
    check([o._moId for o in all_found] == [one["moref"]], "FindAllByUuid (instanceUuid)")
    check(list(idx.FindAllByUuid(None, "nope", True, False)) == [], "FindAllByUuid of an unknown uuid: []")
    hosts = bulk(si, vim.HostSystem, ["name", "hardware.systemInfo.uuid"])
    h0 = next(h for h, p in hosts.items() if p["name"] == "DC0_C0_H0")
    check(idx.FindByUuid(None, hosts[h0]["hardware.systemInfo.uuid"], False) == h0, "FindByUuid(vmSearch=False): host")
    plain = [v for v in vms.values() if "/" not in v["path"][len("/DC0/vm/"):]]
    check(plain and all(getattr(idx.FindByInventoryPath(v["path"]), "_moId", None) == v["moref"] for v in plain),
          "FindByInventoryPath of %d VMs (%s, ...)" % (len(plain), plain[0]["path"]))
    check(idx.FindByInventoryPath("/DC0/host/DC0_C0/DC0_C0_H0") == h0, "FindByInventoryPath of a host")
    check(idx.FindByInventoryPath("/DC0/vm/no such VM") is None, "FindByInventoryPath of nothing: None")
    vm0 = vim.VirtualMachine(one["moref"], si._stub)
    check(idx.FindByDatastorePath(dc, vm0.config.files.vmPathName) == vm0, "FindByDatastorePath")
    check(idx.FindByDnsName(None, "nosuch.example.com", True) is None and
          idx.FindByDnsName(None, "nosuch.example.com", False) is None, "FindByDnsName (VM and host): None")
    check(idx.FindByIp(None, "192.0.2.1", True) is None and idx.FindByIp(None, "192.0.2.1", False) is None,
          "FindByIp (VM and host): None")
    check(list(idx.FindAllByDnsName(None, "nosuch.example.com", True)) == [] and
          list(idx.FindAllByIp(None, "192.0.2.1", True)) == [], "FindAllByDnsName, FindAllByIp: []")
    check(idx.FindChild(dc, "vm") == dc.vmFolder, "FindChild")

    # PropertyCollector: one VM, no traversal (as the driver reads a VM after FindByUuid)
    got = read_objects(si, [vm0])
    p = got.get(vm0, {})
    check(list(got) == [vm0] and p.get("config.instanceUuid") == one["instanceUuid"] and p.get("name") == one["name"]
          and p.get("runtime.host")._moId == one["hostMoref"] and p.get("runtime.powerState") == "poweredOn"
          and p.get("guest.toolsRunningStatus") == "guestToolsRunning" and p.get("config.template") is False,
          "RetrievePropertiesEx of one VM (ObjectSpec, no traversal): %d props" % len(p))
    objs = [vim.VirtualMachine(m, si._stub) for m in vms]
    got = read_objects(si, objs, props=["name", "runtime.host"])
    check(sorted(o._moId for o in got) == sorted(vms) and
          all(got[o]["runtime.host"]._moId == vms[o._moId]["hostMoref"] for o in got), "RetrievePropertiesEx of all VMs by ObjectSpec")
    got = read_objects(si, [h0], vim.HostSystem, ["name", "vm", "runtime.connectionState"])
    check(got[h0]["name"] == "DC0_C0_H0", "RetrievePropertiesEx of one host")
    check(vm0.summary.config.instanceUuid == one["instanceUuid"] and vm0.runtime.host._moId == one["hostMoref"],
          "single-property reads (summary, runtime)")

    # ContainerView
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    check(sorted(v._moId for v in view.view) == sorted(vms), "CreateContainerView: %d VMs" % len(view.view))
    view.Destroy()
    try:
        view.view
        check(False, "a destroyed ContainerView is gone")
    except vmodl.fault.ManagedObjectNotFound:
        check(True, "ContainerView.Destroy: the view is gone (ManagedObjectNotFound)")
    everything = bulk(si, vim.ManagedEntity, ["name"])
    check(len(everything) > len(vms) + len(hosts) and
          all(type(o).__name__.startswith("vim.") for o in everything), "ContainerView of every ManagedEntity")

    # power tasks, polled through task.info
    vm = vim.VirtualMachine(next(m for m, v in vms.items() if v["name"] == "DC0_H0_VM1"), si._stub)
    booted = vm.runtime.bootTime
    task = vm.SuspendVM_Task()
    info = poll(task)
    check(info.state == "success" and info.entity == vm and vm.runtime.powerState == "suspended"
          and vm.guest.toolsRunningStatus == "guestToolsNotRunning", "SuspendVM_Task (task.info: success, entity)")
    check(vm.runtime.bootTime == booted and vm.summary.runtime.bootTime == booted, "suspended: runtime.bootTime kept")
    info = poll(vm.ResetVM_Task())
    check(info.state == "error" and isinstance(info.error, vim.fault.InvalidPowerState),
          "ResetVM_Task of a suspended VM: task.info.error %s" % type(info.error).__name__)
    info = poll(vm.PowerOnVM_Task())
    check(info.state == "success" and vm.runtime.powerState == "poweredOn", "PowerOnVM_Task resumes it")
    check(vm.runtime.bootTime == booted and vm.summary.runtime.bootTime == booted, "resumed: runtime.bootTime kept")
    info = poll(vm.PowerOnVM_Task())
    check(info.state == "error" and isinstance(info.error, vim.fault.InvalidPowerState), "PowerOnVM_Task when on: InvalidPowerState")
    info = poll(vm.ResetVM_Task())
    check(info.state == "success" and vm.runtime.powerState == "poweredOn" and vm.runtime.bootTime > booted and
          vm.guest.toolsRunningStatus == "guestToolsNotRunning", "ResetVM_Task of a powered-on VM: a new boot, Tools starting")
    tools_up(base, vm)
    booted = vm.runtime.bootTime
    vm.RebootGuest()
    check(vm.runtime.powerState == "poweredOn" and vm.runtime.bootTime == booted and vm.guestHeartbeatStatus == "gray",
          "RebootGuest: accepted, VM stays on (same bootTime), Tools restart")
    tools_up(base, vm)
    vm.ShutdownGuest()
    check(vm.runtime.powerState == "poweredOff", "ShutdownGuest: off")
    check(events_of(si, vm)[-3:] == ["VmGuestRebootEvent", "VmGuestShutdownEvent", "VmPoweredOffEvent"],
          "QueryEvents: the latest events, VmGuestRebootEvent, VmGuestShutdownEvent, VmPoweredOffEvent")
    check(ops_of(base, vm)[-3:] == [("ResetVM_Task", "success"), ("RebootGuest", "success"), ("ShutdownGuest", "success")],
          "/vm/{id}/operations: ResetVM_Task, RebootGuest, ShutdownGuest")
    try:
        vm.RebootGuest()
        check(False, "RebootGuest of a powered-off VM refused")
    except vim.fault.InvalidPowerState:
        check(True, "RebootGuest of a powered-off VM: InvalidPowerState")
    info = poll(vm.PowerOffVM_Task())
    check(info.state == "error" and isinstance(info.error, vim.fault.InvalidPowerState), "PowerOffVM_Task when off: InvalidPowerState")
    info = poll(vm.PowerOnVM_Task())
    check(info.state == "success" and vm.runtime.powerState == "poweredOn", "PowerOnVM_Task")

    # Rename_Task
    name = vm.name
    info = poll(vm.Rename_Task("smoke renamed"))
    check(info.state == "success" and vm.name == "smoke renamed" and ctl(base, "/vm/" + vm._moId)["name"] == "smoke renamed",
          "Rename_Task (SOAP and /state agree)")
    check(idx.FindByInventoryPath("/DC0/vm/smoke renamed") == vm, "FindByInventoryPath after a rename")
    sibling = next(v["name"] for v in vms.values() if v["path"] == "/DC0/vm/" + v["name"] and v["moref"] != vm._moId)
    info = poll(vm.Rename_Task(sibling))
    check(info.state == "error" and vm.name == "smoke renamed",
          "Rename_Task to a sibling's name fails (%s)" % type(info.error).__name__)
    poll(vm.Rename_Task(name))

    # RelocateVM_Task as the driver's migrate() issues it
    by_host = {p["name"]: h for h, p in hosts.items()}

    def migrate(vm, host_name, pool=True):
        target = by_host[host_name]
        spec = vim.vm.RelocateSpec(host=target, pool=target.parent.resourcePool) if pool else vim.vm.RelocateSpec(host=target)
        return poll(vm.RelocateVM_Task(spec))

    vm = vim.VirtualMachine(next(m for m, v in vms.items() if v["name"] == "DC0_C0_RP0_VM0"), si._stub)
    src = vm.runtime.host
    dst = next(n for n in ("DC0_C0_H0", "DC0_C0_H2") if by_host[n] != src)
    info = migrate(vm, dst)
    check(info.state == "success" and vm.runtime.host == by_host[dst] and vm.summary.runtime.host == by_host[dst],
          "RelocateVM_Task(host, pool) within a cluster: runtime.host is %s" % dst)
    check(vm in by_host[dst].vm and vm not in src.vm, "RelocateVM_Task: target host lists the VM, source host does not")
    check(ctl(base, "/vm/" + vm._moId)["host"] == dst, "RelocateVM_Task: /state agrees")
    info = migrate(vm, "DC0_C1_H0")
    check(info.state == "success" and vm.runtime.host.name == "DC0_C1_H0" and vm.resourcePool.owner.name == "DC0_C1"
          and vm in vm.resourcePool.vm, "RelocateVM_Task across clusters: host and pool")
    info = migrate(vm, "DC0_H0")
    check(info.state == "success" and vm.runtime.host.name == "DC0_H0" and vm.resourcePool == by_host["DC0_H0"].parent.resourcePool,
          "RelocateVM_Task to a standalone host")
    info = migrate(vm, "DC0_C0_H2", pool=False)
    check(info.state == "success" and vm.runtime.host.name == "DC0_C0_H2" and vm.resourcePool.owner.name == "DC0_C0",
          "RelocateVM_Task with only a host: the target cluster's root pool")
    vm.ShutdownGuest()
    WaitForTask(vm.PowerOnVM_Task())
    check(vm.runtime.powerState == "poweredOn", "guest/power calls still work after a relocation")
    check(ctl(base, "/vm/" + vm._moId)["filesLockedBy"] == "DC0_C0_H2", "the VM's files are held by the host it runs on")
    problems = placement_consistent(si, base)
    check(problems == [], "after RelocateVM_Task: every host's and pool's vm list matches runtime.host, "
                          "and /state agrees %s" % (problems or ""))

    before = (vm.runtime.host, vm.resourcePool)
    info = migrate(vm, "DC0_C0_H1")  # in maintenance mode since the start
    check(info.state == "error" and isinstance(info.error, vim.fault.InvalidHostState), "relocate to a host in maintenance mode: InvalidHostState")
    ctl(base, "/host/DC0_C1_H1/connection", {"state": "disconnected"})
    info = migrate(vm, "DC0_C1_H1")
    check(info.state == "error" and isinstance(info.error, vim.fault.InvalidHostConnectionState),
          "relocate to a disconnected host: InvalidHostConnectionState")
    ctl(base, "/host/DC0_C1_H1/connection", {"state": "connected"})
    info = poll(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=by_host["DC0_C0_H0"], pool=by_host["DC0_C1_H0"].parent.resourcePool)))
    check(info.state == "error" and isinstance(info.error, vmodl.fault.InvalidArgument),
          "relocate with a pool of another cluster: InvalidArgument")
    check((vm.runtime.host, vm.resourcePool) == before and placement_consistent(si, base) == [],
          "failed relocations change nothing")

    # and the search index still works with all the hooks in place
    state = ctl(base, "/state")
    check(all(getattr(idx.FindByUuid(None, v["instanceUuid"], True, True), "_moId", None) == v["moref"] for v in state["vms"]),
          "FindByUuid still finds every VM at the end")


def by_name(base, name):
    """The /state entry of the VM with that name."""
    found = [v for v in ctl(base, "/state")["vms"] if v["name"] == name]
    if len(found) != 1:
        check(False, "one VM named %s in /state, not %d" % (name, len(found)))
    return found[0]


def gone(base, moref):
    """True when the control API no longer knows the VM."""
    try:
        ctl(base, "/vm/" + moref)
    except urllib.error.HTTPError as e:
        return e.code == 404 and all(v["moref"] != moref for v in ctl(base, "/state")["vms"])
    return False


def host_failure_recovery(si, base):
    """The collection's recovery of the VMs of a failed host: UnregisterVM, then
    datacenter.vmFolder.RegisterVM_Task(path, name, asTemplate=False, pool, host)
    on a live host, then PowerOnVM_Task on the new VM."""
    content = si.RetrieveContent()
    idx = content.searchIndex
    dc = content.rootFolder.childEntity[0]
    hosts = {p["name"]: h for h, p in bulk(si, vim.HostSystem, ["name"]).items()}
    c0_pool = hosts["DC0_C0_H0"].parent.resourcePool
    c1_pool = hosts["DC0_C1_H0"].parent.resourcePool

    # VM A, powered on, on DC0_C0_H2; its identity no longer derivable from its path
    a = by_name(base, "DC0_C0_RP0_VM0")
    ctl(base, "/vm/%s/relocate" % a["moref"], {"host": "DC0_C0_H2"})
    if a["powerState"] != "poweredOn":
        ctl(base, "/vm/%s/power" % a["moref"], {"state": "poweredOn"})
    vm = vim.VirtualMachine(a["moref"], si._stub)
    uuid, iuuid = "4200aaaa-0000-4000-8000-00000000a001", "5000aaaa-0000-4000-8000-00000000a001"
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(uuid=uuid, instanceUuid=iuuid)))
    path, name, old_pool = vm.config.files.vmPathName, vm.name, vm.resourcePool

    # a powered-on VM on a connected host cannot be unregistered (the simulator's rule, kept)
    live = next(v for v in ctl(base, "/state")["vms"] if v["powerState"] == "poweredOn" and v["connectionState"] == "connected"
                and v["name"] not in ("DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1", "DC0_H0_VM0", "DC0_H0_VM1"))
    try:
        vim.VirtualMachine(live["moref"], si._stub).UnregisterVM()
        check(False, "UnregisterVM of a powered-on VM on a connected host refused")
    except vim.fault.InvalidPowerState:
        check(not gone(base, live["moref"]), "UnregisterVM of a powered-on VM on a connected host: InvalidPowerState, VM kept")

    ctl(base, "/host/DC0_C0_H2/connection", {"state": "disconnected"})
    check(vm.runtime.connectionState == "disconnected" and vm.runtime.powerState == "poweredOn",
          "VM on the failed host: disconnected, last known power state poweredOn")
    vm.UnregisterVM()
    check(gone(base, a["moref"]), "UnregisterVM of that VM succeeds; /state and /vm/{moref} no longer know it")
    try:
        vm.name
        check(False, "the unregistered VM is gone from the inventory")
    except vmodl.fault.ManagedObjectNotFound:
        check(True, "the unregistered VM is gone from the inventory (ManagedObjectNotFound)")
    check(vm not in hosts["DC0_C0_H2"].vm and vm not in old_pool.vm and idx.FindByUuid(None, iuuid, True, True) is None,
          "...from the old host's and pool's vm lists, and from FindByUuid")
    check(placement_consistent(si, base) == [], "host/pool vm lists consistent after UnregisterVM")

    def register(path, pool, host=None, name=None, folder=None):
        return poll((folder or dc.vmFolder).RegisterVM_Task(path=path, name=name, asTemplate=False, pool=pool, host=host))

    count = len(ctl(base, "/state")["vms"])
    info = register(path, c0_pool, hosts["DC0_C0_H2"], name)
    check(info.state == "error" and isinstance(info.error, vim.fault.InvalidHostConnectionState)
          and len(ctl(base, "/state")["vms"]) == count,
          "RegisterVM_Task onto the disconnected host: InvalidHostConnectionState, nothing registered")
    info = register(path, c0_pool, hosts["DC0_C1_H0"], name)
    check(info.state == "error" and isinstance(info.error, vmodl.fault.InvalidArgument),
          "RegisterVM_Task with a host outside the pool's cluster: InvalidArgument")
    info = register(vim.VirtualMachine(live["moref"], si._stub).config.files.vmPathName, c0_pool, hosts["DC0_C0_H0"], "another name")
    check(info.state == "error" and isinstance(info.error, vim.fault.AlreadyExists),
          "RegisterVM_Task of a path that is still registered: AlreadyExists")
    sibling = by_name(base, "DC0_H0_VM1")  # in the datacenter's vm folder
    info = register(path, c0_pool, hosts["DC0_C0_H0"], sibling["name"])
    check(info.state == "error" and isinstance(info.error, vim.fault.DuplicateName) and info.error.object._moId == sibling["moref"],
          "RegisterVM_Task with the name of a VM in the same folder: DuplicateName")
    info = register(path, c0_pool, hosts["DC0_C0_H0"], name, folder=dc.hostFolder)
    check(info.state == "error" and isinstance(info.error, vmodl.fault.NotSupported), "RegisterVM_Task on a host folder: NotSupported")
    check(len(ctl(base, "/state")["vms"]) == count and placement_consistent(si, base) == [], "failed registrations change nothing")

    # the recovery itself
    info = register(path, c0_pool, hosts["DC0_C0_H0"], name)
    new = info.result
    check(info.state == "success" and isinstance(new, vim.VirtualMachine) and new._moId != a["moref"],
          "RegisterVM_Task onto DC0_C0_H0: task result is the new VM (%s, was %s)" % (getattr(new, "_moId", None), a["moref"]))
    got = read_objects(si, [new], props=VM_PROPS + ("config.uuid", "config.files.vmPathName", "resourcePool"))[new]
    check(got["name"] == name and got["runtime.host"] == hosts["DC0_C0_H0"] and got["resourcePool"] == c0_pool
          and got["runtime.powerState"] == "poweredOff" and got["runtime.connectionState"] == "connected"
          and got["config.files.vmPathName"] == path, "new VM: same name and path, on the requested host and pool, powered off")
    check(got["config.instanceUuid"] == iuuid and got["config.uuid"] == uuid and new.summary.config.instanceUuid == iuuid,
          "new VM keeps the old config.instanceUuid and config.uuid")
    check(got["guest.toolsRunningStatus"] == "guestToolsNotRunning" and got["guestHeartbeatStatus"] == "gray",
          "new VM: tools not running, heartbeat gray while off")
    state = ctl(base, "/vm/" + iuuid)
    check(state["moref"] == new._moId and state["host"] == "DC0_C0_H0" and state["powerState"] == "poweredOff"
          and state["instanceUuid"] == iuuid and state["uuid"] == uuid, "/state finds the new VM by the old instanceUuid")
    check(idx.FindByUuid(None, iuuid, True, True) == new and idx.FindByUuid(dc, iuuid, True, True) == new
          and list(idx.FindAllByUuid(None, iuuid, True, True)) == [new], "FindByUuid(instanceUuid=True) finds the new VM")
    check(new in hosts["DC0_C0_H0"].vm and new in c0_pool.vm and placement_consistent(si, base) == [],
          "new VM in the target host's and pool's vm lists, all lists consistent")
    info = register(path, c0_pool, hosts["DC0_C0_H0"], name)
    check(info.state == "error" and isinstance(info.error, vim.fault.AlreadyExists), "registering it again: AlreadyExists")

    # the disconnected host still runs A and holds its files
    info = poll(new.PowerOnVM_Task())
    check(info.state == "error" and isinstance(info.error, vim.fault.GenericVmConfigFault) and "Failed to lock the file" in info.error.msg
          and [m.key for m in info.error.faultMessage] == ["msg.disk.noBackEnd", "msg.fileio.lock"]
          and new.runtime.powerState == "poweredOff" and ctl(base, "/vm/" + new._moId)["filesLockedBy"] == "DC0_C0_H2",
          "PowerOnVM_Task while the old host still runs it: GenericVmConfigFault, Failed to lock the file (%s)"
          % getattr(info.error, "msg", info.error))
    h2 = ctl(base, "/host/DC0_C0_H2/power", {"state": "poweredOff"})
    check(h2["power"] == "poweredOff" and h2["connectionState"] == "notResponding" and h2["locks"] == []
          and hosts["DC0_C0_H2"].runtime.powerState == "unknown", "host powered off: not responding, power unknown, no locks")
    info = poll(new.PowerOnVM_Task())
    check(info.state == "success" and new.runtime.powerState == "poweredOn" and new.guest.toolsRunningStatus == "guestToolsNotRunning"
          and new.guestHeartbeatStatus == "gray", "PowerOnVM_Task once the old host is dead: on, Tools starting, heartbeat gray")
    tools_up(base, new)
    check(new.guestHeartbeatStatus == "green", "then Tools running, heartbeat green")
    check(ctl(base, "/vm/" + new._moId)["powerState"] == "poweredOn", "/state agrees")
    check(ops_of(base, new) == [("UnregisterVM", "success"), ("RegisterVM_Task", "success"), ("PowerOnVM_Task", "error"),
                                ("PowerOnVM_Task", "success")], "/vm/{id}/operations across the re-registration")
    new.ShutdownGuest()
    check(new.runtime.powerState == "poweredOff", "ShutdownGuest on the new VM")
    WaitForTask(new.PowerOnVM_Task())
    ctl(base, "/vm/%s/heartbeat" % new._moId, {"status": "red"})
    check(new.guestHeartbeatStatus == "red", "control heartbeat on the new VM")
    ctl(base, "/vm/%s/heartbeat" % new._moId, {"status": "green"})

    # VM B on a host that is not responding; registered without host and name:
    # the name comes back from the "vmx", the host is picked in the pool's cluster,
    # and its peer settings (ignore_shutdown) travel with it
    b = by_name(base, "DC0_C0_RP0_VM1")
    ctl(base, "/vm/%s/relocate" % b["moref"], {"host": "DC0_C1_H2"})
    ctl(base, "/vm/%s/ignore_shutdown" % b["moref"], {"on": True})
    bvm = vim.VirtualMachine(b["moref"], si._stub)
    bpath = bvm.config.files.vmPathName
    ctl(base, "/host/DC0_C1_H2/connection", {"state": "notResponding"})
    bvm.UnregisterVM()
    check(gone(base, b["moref"]), "UnregisterVM of a VM on a notResponding host")
    info = register(bpath, c1_pool)
    nb = info.result
    bstate = ctl(base, "/vm/" + b["instanceUuid"]) if info.state == "success" else {}
    check(info.state == "success" and nb.name == "DC0_C0_RP0_VM1" and nb.runtime.host.parent == hosts["DC0_C1_H0"].parent
          and nb.runtime.host != hosts["DC0_C1_H2"] and bstate.get("moref") == nb._moId and bstate.get("ignoreShutdown") is True,
          "RegisterVM_Task without host and name: old name, a live host of the cluster (%s), settings kept"
          % getattr(getattr(info.result, "runtime", None), "host", None))

    # a powered-off VM on a connected host unregisters as in the simulator
    c = by_name(base, "DC0_H0_VM0")
    cvm = vim.VirtualMachine(c["moref"], si._stub)
    if cvm.runtime.powerState != "poweredOff":
        WaitForTask(cvm.PowerOffVM_Task())
    cpath, cpool = cvm.config.files.vmPathName, cvm.resourcePool
    cvm.UnregisterVM()
    info = register(cpath, cpool, hosts["DC0_H0"], "DC0_H0_VM0")
    check(gone(base, c["moref"]) and info.state == "success" and info.result.config.instanceUuid == c["instanceUuid"]
          and info.result.runtime.host == hosts["DC0_H0"], "powered-off VM on a standalone host: unregister, register back")

    # The hosts come back: each brings its own copy of the VM vCenter removed meanwhile.
    # DC0_C0_H2 was powered off: its copy of A is off. DC0_C1_H2 was only cut off: its copy
    # of B never stopped, and holds B's files, so the registered copy cannot start.
    try:
        ctl(base, "/host/DC0_C0_H2/connection", {"state": "connected"})
        check(False, "a powered-off host cannot connect")
    except urllib.error.HTTPError as e:
        check(e.code == 409, "a powered-off host cannot connect (409)")
    ctl(base, "/host/DC0_C0_H2/power", {"state": "poweredOn"})
    ctl(base, "/host/DC0_C1_H2/connection", {"state": "connected"})
    state = ctl(base, "/state")["vms"]
    names = [v["name"] for v in state]
    check(len(names) == 8 and names.count("DC0_C0_RP0_VM0") == 2 and names.count("DC0_C0_RP0_VM1") == 2
          and names.count("DC0_H0_VM0") == 1 and placement_consistent(si, base) == [],
          "reconnected hosts bring back the VMs they kept; lists consistent")
    a_back = next(v for v in state if v["name"] == "DC0_C0_RP0_VM0" and v["moref"] != new._moId)
    b_back = next(v for v in state if v["name"] == "DC0_C0_RP0_VM1" and v["moref"] != nb._moId)
    check(a_back["host"] == "DC0_C0_H2" and a_back["powerState"] == "poweredOff" and a_back["instanceUuid"] != iuuid
          and a_back["uuid"] == uuid and a_back["path"] == "/DC0/vm/Discovered virtual machine/DC0_C0_RP0_VM0",
          "A's copy on the dead host: back powered off, in 'Discovered virtual machine', with a new instanceUuid")
    check(b_back["host"] == "DC0_C1_H2" and b_back["powerState"] == "poweredOn" and b_back["filesLockedBy"] == "DC0_C1_H2"
          and b_back["instanceUuid"] != b["instanceUuid"], "B's copy on the cut-off host: back running, holding its files")
    info = poll(nb.PowerOnVM_Task())
    check(info.state == "error" and "Failed to lock the file" in info.error.msg, "the registered copy of B cannot start")
    bvm = vim.VirtualMachine(b_back["moref"], si._stub)
    check(events_of(si, bvm)[-2:] == ["VmDiscoveredEvent", "VmInstanceUuidConflictEvent"],
          "VmDiscoveredEvent and VmInstanceUuidConflictEvent for a copy whose instanceUuid was taken")
    seen = {idx.FindByUuid(None, b["uuid"], True, False)._moId for _draw in range(30)}
    check(seen == {nb._moId, b_back["moref"]}, "FindByUuid of a BIOS uuid two VMs share: either, at random (%s)" % sorted(seen))
    WaitForTask(bvm.PowerOffVM_Task())
    info = poll(nb.PowerOnVM_Task())
    check(info.state == "success", "once the copy is off, the registered one starts")


def delays_and_freeze(si, base, url):
    """task_delay (a power task under way while vCenter loses the host) and
    /freeze (a silent SOAP service: held calls, dropped when the client gives up)."""
    vm = [v for v, p in bulk(si, vim.VirtualMachine, ["name"]).items() if p["name"] == "DC0_H0_VM0"][0]
    ref = "/vm/" + vm._moId
    if vm.runtime.powerState != "poweredOn":
        WaitForTask(vm.PowerOnVM_Task())
    ctl(base, ref + "/task_delay", {"seconds": 0.5})
    begun = time.monotonic()
    task = vm.PowerOffVM_Task()
    check(time.monotonic() - begun < 0.4 and task.info.state == "running" and
          ctl(base, ref)["runningTask"] == "PowerOffVM_Task", "task_delay: the task comes back running")
    info = poll(task)
    check(info.state == "success" and vm.runtime.powerState == "poweredOff" and time.monotonic() - begun >= 0.5
          and ctl(base, ref)["runningTask"] == "", "task_delay: it succeeds after the delay")
    for state, fault in (("notResponding", vmodl.fault.HostNotReachable), ("disconnected", vmodl.fault.HostNotConnected)):
        task = vm.PowerOnVM_Task()
        ctl(base, "/host/DC0_H0/connection", {"state": state})
        info = poll(task)
        ctl(base, "/host/DC0_H0/connection", {"state": "connected"})
        check(info.state == "error" and isinstance(info.error, fault) and vm.runtime.powerState == "poweredOff",
              "task_delay: host %s during the task: %s, the VM stays off" % (state, fault.__name__))
    ctl(base, ref + "/task_delay", {"seconds": "never"})
    task = vm.PowerOnVM_Task()
    time.sleep(0.5)
    check(task.info.state == "running" and ctl(base, ref)["runningTask"] == "PowerOnVM_Task"
          and ctl(base, ref)["taskDelaySeconds"] == -1 and ops_of(base, vm)[-1] == ("PowerOnVM_Task", "running"),
          "task_delay never: the task stays running")
    ctl(base, ref + "/task_delay", {"seconds": 0})
    check(ctl(base, ref)["taskDelaySeconds"] == 0, "task_delay 0: tasks finish at once again")

    check(ctl(base, "/freeze") == {"frozen": False, "secondsLeft": 0, "blocked": 0}, "freeze: not frozen at start")
    ctl(base, "/freeze", {"seconds": 1})
    begun = time.monotonic()
    name = vm.name
    check(name == "DC0_H0_VM0" and time.monotonic() - begun >= 0.9, "freeze: a call waits for the thaw")
    u = urllib.parse.urlsplit(url)
    impatient = SmartConnect(host=u.hostname, port=u.port, user=urllib.parse.unquote(u.username),
                             pwd=urllib.parse.unquote(u.password), disableSslCertValidation=True,
                             httpConnectionTimeout=0.5)
    mine = impatient.content.searchIndex.FindByUuid(None, vm.config.instanceUuid, True, True)
    ctl(base, "/freeze", {"seconds": 30})
    try:
        mine.Rename_Task("renamed while frozen")
        check(False, "freeze: a client with a 0.5 s timeout times out")
    except OSError:
        check(True, "freeze: a client with a 0.5 s timeout times out")
    time.sleep(0.2)
    check(ctl(base, "/freeze")["blocked"] == 0, "freeze: the call its client gave up is dropped")
    check(ctl(base, "/vm/DC0_H0_VM0")["name"] == "DC0_H0_VM0", "freeze: the control API still answers")
    ctl(base, "/freeze", {"seconds": 0})
    check(vm.name == "DC0_H0_VM0", "freeze 0: thawed, and the dropped rename never ran")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else subprocess.check_output(
        [os.path.join(HERE, "build.sh")], text=True).strip().splitlines()[-1]
    proc, info = start(binary, "-cluster", "2", "-tools-start-delay", "0.3s", "-exit-on-stdin-eof")
    base = info["control"]
    try:
        check(info["url"].startswith("https://user:pass@127.0.0.1:") and info["url"].endswith("/sdk"), "JSON line " + json.dumps(info))
        si = connect(info["url"])
        check(si.content.about.apiType == "VirtualCenter", "SmartConnect: " + si.content.about.fullName)

        hosts = bulk(si, vim.HostSystem, ["name", "runtime.connectionState"])
        vms = bulk(si, vim.VirtualMachine, ["name", "runtime.host", "runtime.powerState", "config.instanceUuid",
                                            "guest.toolsRunningStatus", "guestHeartbeatStatus"])
        check(len(hosts) == 7 and len(vms) == 6, "bulk read: %d hosts, %d VMs" % (len(hosts), len(vms)))
        check(all(isinstance(p["runtime.host"], vim.HostSystem) for p in vms.values()), "every VM has runtime.host")
        check(all(p.get("config.instanceUuid") for p in vms.values()), "every VM has config.instanceUuid")
        check(all(p["guestHeartbeatStatus"] == "green" and p["guest.toolsRunningStatus"] == "guestToolsRunning"
                  for p in vms.values()), "tools running + heartbeat green on powered-on VMs")
        by_name = {p["name"]: vm for vm, p in vms.items()}
        state = ctl(base, "/state")
        check({v["name"]: v["host"] for v in state["vms"]} ==
              {p["name"]: hosts[p["runtime.host"]]["name"] for p in vms.values()}, "control /state agrees with SOAP on VM->host")

        vm = by_name["DC0_C0_RP0_VM0"]
        check(vm.guestHeartbeatStatus == "green", "single-property read of guestHeartbeatStatus")
        check(vm.snapshot is None, "single-property read of an unset property (vm.snapshot) is None")

        WaitForTask(vm.PowerOffVM_Task())
        check(vm.runtime.powerState == "poweredOff", "PowerOff")
        check(vm.guest.toolsRunningStatus == "guestToolsNotRunning" and vm.guestHeartbeatStatus == "gray",
              "tools stop with the VM")
        e = task_error(vm.PowerOffVM_Task())
        check(isinstance(e, vim.fault.InvalidPowerState), "PowerOff of a powered-off VM: task fails %s" % type(e).__name__)
        e = task_error(vm.SuspendVM_Task())
        check(isinstance(e, vim.fault.InvalidPowerState), "Suspend of a powered-off VM: task fails %s" % type(e).__name__)
        try:
            vm.ShutdownGuest()
            check(False, "ShutdownGuest on powered-off VM refused")
        except vim.fault.InvalidPowerState:
            check(True, "ShutdownGuest on powered-off VM: InvalidPowerState")
        WaitForTask(vm.PowerOnVM_Task())
        check(vm.runtime.powerState == "poweredOn" and vm.guest.toolsRunningStatus == "guestToolsNotRunning"
              and vm.guestHeartbeatStatus == "gray" and ctl(base, "/vm/" + vm._moId)["toolsStarting"],
              "PowerOn: Tools not running yet, heartbeat gray")
        try:
            vm.ShutdownGuest()
            check(False, "ShutdownGuest before Tools start refused")
        except vim.fault.ToolsUnavailable:
            check(True, "ShutdownGuest before Tools start: ToolsUnavailable")
        tools_up(base, vm)
        check(vm.guest.toolsRunningStatus == "guestToolsRunning" and vm.guestHeartbeatStatus == "green",
              "Tools running 0.3 s later (-tools-start-delay), heartbeat green")

        vm.ShutdownGuest()
        check(vm.runtime.powerState == "poweredOff", "ShutdownGuest on a normal VM powers it off")
        expected = ["VmStoppingEvent", "VmPoweredOffEvent",  # the hard power-off above
                    "VmStartingEvent", "VmPoweredOnEvent",
                    "VmGuestShutdownEvent", "VmPoweredOffEvent"]  # the guest shutdown
        check(events_of(si, vm)[-6:] == expected,
              "events: a hard power-off has no guest event; a guest shutdown has VmGuestShutdownEvent, then VmPoweredOffEvent")

        hung = by_name["DC0_C0_RP0_VM1"]
        ctl(base, "/vm/DC0_C0_RP0_VM1/ignore_shutdown", {"on": True})
        hung.ShutdownGuest()
        hung.RebootGuest()
        time.sleep(1.5)
        check(hung.runtime.powerState == "poweredOn", "ShutdownGuest on an ignore_shutdown VM: accepted, stays on")
        WaitForTask(hung.PowerOffVM_Task())
        check(hung.runtime.powerState == "poweredOff", "hung VM still powers off hard")
        WaitForTask(hung.PowerOnVM_Task())

        other = by_name["DC0_H0_VM0"]
        ctl(base, "/vm/DC0_H0_VM0/tools", {"running": False})
        try:
            other.ShutdownGuest()
            check(False, "ShutdownGuest with tools not running refused")
        except vim.fault.ToolsUnavailable:
            check(True, "ShutdownGuest with tools not running: ToolsUnavailable")
        ctl(base, "/vm/DC0_H0_VM0/tools", {"running": True})
        ctl(base, "/vm/DC0_H0_VM0/shutdown_delay", {"seconds": 1})
        other.ShutdownGuest()
        check(other.runtime.powerState == "poweredOn" and other.guest.guestState == "shuttingDown", "delayed shutdown: still on")
        time.sleep(1.6)
        check(other.runtime.powerState == "poweredOff", "delayed shutdown: off after the delay")

        ctl(base, "/vm/DC0_H0_VM1/heartbeat", {"status": "red"})
        check(by_name["DC0_H0_VM1"].guestHeartbeatStatus == "red", "heartbeat set to red")

        try:
            connect(info["url"], pwd="wrong")
            check(False, "wrong password refused")
        except vim.fault.InvalidLogin:
            check(True, "wrong password: vim.fault.InvalidLogin")

        host = [h for h, p in hosts.items() if p["name"] == "DC0_C0_H0"][0]
        ctl(base, "/host/DC0_C0_H0/connection", {"state": "disconnected"})
        check(host.runtime.connectionState == "disconnected", "host disconnected (single-property read)")
        check(bulk(si, vim.HostSystem, ["name", "runtime.connectionState"])[host]["runtime.connectionState"] == "disconnected",
              "host disconnected (bulk read)")
        on_host = list(host.vm)
        if on_host:
            v = on_host[0]
            check(v.runtime.connectionState == "disconnected", "VM of a disconnected host is disconnected")
            e = task_error(v.PowerOffVM_Task() if v.runtime.powerState == "poweredOn" else v.PowerOnVM_Task())
            check(isinstance(e, vim.fault.InvalidHostConnectionState), "power op on a disconnected host's VM fails: %s" % type(e).__name__)
        ctl(base, "/host/DC0_C0_H0/connection", {"state": "connected"})
        ctl(base, "/host/DC0_C0_H1/maintenance", {"on": True})
        check(hosts and [h for h, p in hosts.items() if p["name"] == "DC0_C0_H1"][0].runtime.inMaintenanceMode, "maintenance mode")

        # names: spaces, non-ASCII, the same name in two folders
        odd = "web 01 – prod/ünïcødé"
        ctl(base, "/vm/DC0_C1_RP0_VM0/rename", {"name": odd})
        v = by_name["DC0_C1_RP0_VM0"]
        check(v.name == odd, "rename to %r" % odd)
        check(ctl(base, "/vm/" + urllib.parse.quote(odd, safe=""))["moref"] == v._moId, "control look-up by odd name")
        ctl(base, "/vm/DC0_C1_RP0_VM1/move", {"folder": "team b"})
        ctl(base, "/vm/DC0_C1_RP0_VM1/rename", {"name": odd})
        twins = [p for p in bulk(si, vim.VirtualMachine, ["name"]).values() if p["name"] == odd]
        check(len(twins) == 2, "same name in two folders")
        try:
            ctl(base, "/vm/DC0_C0_RP0_VM0/rename", {"name": "DC0_C0_RP0_VM1"})
            check(False, "duplicate name in one folder refused")
        except urllib.error.HTTPError as e:
            check(e.code == 409, "duplicate name in one folder refused (409)")

        # migration behind our back
        target = "DC0_C1_H2"
        ctl(base, "/vm/DC0_C0_RP0_VM1/relocate", {"host": target})
        check(hung.runtime.host.name == target, "relocate: runtime.host is now " + target)
        check(hung.resourcePool.owner.name == "DC0_C1", "relocate across clusters moves the resource pool")
        check(hung in hung.runtime.host.vm, "relocate: target host lists the VM")
        check(placement_consistent(si, base) == [], "control relocate: host/pool vm lists consistent")

        standard_calls(si, base)
        host_failure_recovery(si, base)
        delays_and_freeze(si, base, info["url"])

        Disconnect(si)
    finally:
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
    print("%d passed, %d failed" % (CHECKS["passed"], CHECKS["failed"]))


if __name__ == "__main__":
    main()
