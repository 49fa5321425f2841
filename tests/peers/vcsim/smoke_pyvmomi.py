#!/usr/bin/env python3
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


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else subprocess.check_output(
        [os.path.join(HERE, "build.sh")], text=True).strip().splitlines()[-1]
    proc, info = start(binary, "-cluster", "2", "-exit-on-stdin-eof")
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
        check(vm.runtime.powerState == "poweredOn" and vm.guest.toolsRunningStatus == "guestToolsRunning", "PowerOn (tools running again)")

        vm.ShutdownGuest()
        check(vm.runtime.powerState == "poweredOff", "ShutdownGuest on a normal VM powers it off")

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
