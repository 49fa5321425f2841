# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VMware vSphere driver (vCenter or a standalone ESXi) over pyVmomi.

The bulk read is one PropertyCollector pass over a ContainerView of hosts,
clusters and VMs, with paging: each VM's host comes in the same pass as its
runtime.host reference, so the host -> VM mapping costs no per-VM call.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time

from ansible_collections.virtops.unified.plugins.module_utils import driver as base
from ansible_collections.virtops.unified.plugins.module_utils import model, registry

try:
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim, vmodl
except ImportError:  # reported by require_pyvmomi() where it matters
    vim = vmodl = SmartConnect = Disconnect = None

PLATFORM = "vmware"

VM_PROPS = ["name", "config.instanceUuid", "config.template", "runtime.powerState", "runtime.host",
            "runtime.connectionState", "guestHeartbeatStatus", "guest.toolsRunningStatus",
            "summary.config.numCpu", "summary.config.memorySizeMB", "runtime.bootTime"]
HOST_PROPS = ["name", "parent", "runtime.connectionState", "runtime.inMaintenanceMode",
              "runtime.powerState", "hardware.systemInfo.uuid", "summary.hardware.numCpuCores",
              "summary.hardware.memorySize"]
CLUSTER_PROPS = ["name"]
PAGE = 1000  # objects per RetrievePropertiesEx page
_VM_POWER = {"poweredOn": model.RUNNING, "poweredOff": model.STOPPED, "suspended": model.SUSPENDED}
_HOST_POWER = {"poweredOn": model.RUNNING, "poweredOff": model.STOPPED, "standBy": model.SUSPENDED}
_HEARTBEAT = {"green": model.HB_OK, "yellow": model.HB_DEGRADED, "red": model.HB_LOST, "gray": model.HB_UNKNOWN}
_HOST_CONNECTION = {"connected": model.CONNECTED, "disconnected": model.DISCONNECTED,
                    "notResponding": model.NOT_RESPONDING}


def _iso(stamp):
    return stamp.isoformat() if stamp is not None else None


def _plain(value):
    """pyVmomi enums and longs are str/int subclasses Ansible cannot store: unwrap."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return value


def require_pyvmomi():
    if vim is None:
        raise model.Unsupported(
            "the Python library pyVmomi is not installed on the controller", hint="pip install pyvmomi")


# pyVmomi's SmartConnect first asks the server for its API versions (GET
# /sdk/vimServiceVersions.xml) on an http.client connection it opens without a
# timeout: httpConnectionTimeout only reaches the connections made after it, so a
# vCenter that accepts TCP and never answers blocks that probe for ever. The one
# setting that reaches the probe's socket is the process-wide default timeout
# (new sockets take it when they are created). It is set for the connect only,
# and restored after; the connects of several threads (the event source reads
# its endpoints in parallel) share it through a count under a lock instead of
# waiting for each other, and it holds the longest timeout asked for, so no
# connect is cut shorter than its own timeout.
_DEFAULT_TIMEOUT_LOCK = threading.Lock()
_connect_timeouts = []  # timeouts of the connects under way in this process
_saved_default = [None]  # the process's own default, put back by the last one out


@contextlib.contextmanager
def _socket_default_timeout(seconds):
    with _DEFAULT_TIMEOUT_LOCK:
        if not _connect_timeouts:
            _saved_default[0] = socket.getdefaulttimeout()
        _connect_timeouts.append(seconds)
        socket.setdefaulttimeout(max(_connect_timeouts))
    try:
        yield
    finally:
        with _DEFAULT_TIMEOUT_LOCK:
            _connect_timeouts.remove(seconds)
            socket.setdefaulttimeout(max(_connect_timeouts) if _connect_timeouts else _saved_default[0])


# What a dead or silent connection raises (socket.timeout is an OSError).
_CONNECTION_ERRORS = (OSError, http.client.HTTPException)


def _fault_name(exc):
    return type(exc).__name__.rsplit(".", 1)[-1]


def _file_locked(exc):
    """vSphere's fault for a VM whose files another host has locked (GenericVmConfigFault with
    the file-lock message, 'Failed to lock the file'), or the datastore's FileLocked."""
    if isinstance(exc, vim.fault.FileLocked):
        return True
    if isinstance(exc, vim.fault.GenericVmConfigFault):
        keys = [getattr(m, "id", "") or "" for m in getattr(exc, "faultMessage", None) or []]
        return "msg.fileio.lock" in keys or "lock" in (getattr(exc, "reason", "") or exc.msg or "").lower()
    return False


def _fault_text(exc):
    return getattr(exc, "msg", None) or getattr(exc, "faultMessage", None) or _fault_name(exc)


class VmwareDriver(base.Driver):
    """One vCenter (or ESXi) endpoint."""

    platform = PLATFORM
    capabilities = frozenset({base.START, base.SHUTDOWN, base.POWEROFF, base.RESET, base.SUSPEND,
                              registry.HEARTBEAT, registry.MIGRATE, registry.MAINTENANCE})
    boot_fact = "boot_time"  # runtime.bootTime, set at each power-on
    guest_agent = "VMware Tools"

    def __init__(self, hostname=None, username=None, password=None, port=443, validate_certs=True,
                 connect_timeout=30, include_templates=False):
        require_pyvmomi()
        if not hostname:
            raise model.VirtError("vmware needs a hostname (or VMWARE_HOST)")
        self.hostname = hostname
        self.port = port
        self.validate_certs = validate_certs
        self.include_templates = include_templates
        self.label = "%s:%s" % (hostname, port)
        self.host_names = {}  # host moId -> name
        self.host_objs = {}  # name -> vim.HostSystem
        self.clusters = {}  # compute resource moId -> cluster name
        self.host_clusters = {}  # host name -> cluster name
        self.timeout = connect_timeout
        self.lost = False  # the connection failed: close() does not wait on a logout
        self.si = self._connect(username, password, connect_timeout)
        self.content = self._call("read the service content", self.si.RetrieveContent, _api="RetrieveContent")

    # --- connection ------------------------------------------------------
    def _connect(self, username, password, timeout):
        # httpConnectionTimeout bounds every call after the version probe; the
        # default socket timeout bounds the probe (see _socket_default_timeout)
        bounded = _socket_default_timeout(timeout) if timeout else contextlib.nullcontext()
        began, outcome = time.monotonic(), "ok"
        try:
            # an explicit context: pyVmomi skips verification for localhost without one
            context = ssl.create_default_context() if self.validate_certs else None
            with bounded:
                return SmartConnect(host=self.hostname, port=self.port, user=username or "", pwd=password or "",
                                    sslContext=context, disableSslCertValidation=not self.validate_certs,
                                    httpConnectionTimeout=timeout or None, connectionPoolTimeout=-1)
        except vim.fault.InvalidLogin as exc:
            outcome = "InvalidLogin"
            raise model.AuthFailed("vmware %s: login refused for user %r" % (self.label, username),
                                   raw=_fault_text(exc)) from None
        except ssl.SSLCertVerificationError as exc:
            raise model.VirtError(
                "vmware %s: certificate not trusted (%s)" % (self.label, getattr(exc, "verify_message", None) or exc),
                hint="Install the vCenter CA on the controller, or set validate_certs: false for a lab") from None
        except _CONNECTION_ERRORS as exc:
            raise self._lost_error("connect", exc) from None
        except vmodl.MethodFault as exc:
            raise model.VirtError("vmware %s: login failed" % self.label, raw=_fault_text(exc)) from None
        except Exception as exc:  # pylint: disable=broad-except
            outcome = type(exc).__name__
            if exc.__class__ is not Exception:
                raise
            # SmartConnect's own words for an answer that is not a vSphere API's
            raise model.Unreachable("vmware %s: no vSphere API there" % self.label, raw=str(exc)) from None
        finally:
            self._traced("SmartConnect (log in)", outcome, began)

    def _lost_error(self, doing, exc):
        """The Unreachable error for a connection that failed or went silent."""
        self.lost = True
        if isinstance(exc, socket.timeout):
            return model.Unreachable("vmware %s: no answer within %ss during %s" % (self.label, self.timeout, doing),
                                     raw=str(exc) or "timed out")
        if doing == "connect":
            return model.Unreachable("vmware %s: cannot connect" % self.label, raw=str(exc) or type(exc).__name__)
        return model.Unreachable("vmware %s: connection lost during %s" % (self.label, doing),
                                 raw=str(exc) or type(exc).__name__)

    def close(self):
        si, self.si = getattr(self, "si", None), None
        if si is None:
            return
        try:
            if self.lost:  # a logout would wait on the same silent server
                si._stub.DropConnections()  # pylint: disable=protected-access
            else:
                Disconnect(si)
        except Exception:  # pylint: disable=broad-except
            pass  # logging out of a dead session must not mask the real outcome

    def where(self):
        return " on %s" % self.label

    def endpoint(self):
        return {"platform": PLATFORM, "hostname": self.hostname, "port": self.port,
                "validate_certs": self.validate_certs}

    def _fault(self, exc, doing, host=None):
        """Map a vSphere fault to a typed error, keeping vSphere's own words.
        `host`: the VM's host as last read, for faults that do not name it."""
        name, raw = _fault_name(exc), _fault_text(exc)
        msg = "vmware %s: %s failed (%s)" % (self.label, doing, name)
        # InvalidHostConnectionState is an InvalidState: it must be matched first
        if isinstance(exc, (vim.fault.InvalidHostConnectionState, vmodl.fault.HostCommunication)):
            return model.StateConflict(msg, raw=raw, hint=self._host_hint(getattr(exc, "host", None), host))
        if isinstance(exc, (vim.fault.InvalidPowerState, vim.fault.ToolsUnavailable, vim.fault.InvalidState,
                            vim.fault.TaskInProgress)):
            return model.StateConflict(msg, raw=raw)
        if _file_locked(exc):
            # ESXi's lock on the VM's files: another host still runs it (a host that vCenter lost
            # but that is not dead: a network partition), so starting this copy would run it twice
            return model.StateConflict(
                msg + ": another host still holds the VM's files", raw=raw,
                hint="Its old host is probably only cut off from vCenter, not dead, and still runs the VM. "
                     "Confirm that host is powered off (fence it), then start this VM; nothing else was started")
        if isinstance(exc, (vim.fault.NotAuthenticated, vim.fault.NoPermission)):
            return model.AuthFailed(msg, raw=raw)
        if isinstance(exc, vmodl.fault.ManagedObjectNotFound):
            return model.NotFound(msg, raw=raw)
        if isinstance(exc, vmodl.fault.NotSupported):
            return model.Unsupported(msg, raw=raw)
        return model.VirtError(msg, raw=raw)

    def _host_hint(self, host_ref, host=None):
        """What to do when vCenter cannot reach the VM's host (a fault names it by reference)."""
        name = self.host_names.get(getattr(host_ref, "_moId", None)) or host
        which = "The VM's host %s" % name if name else "The VM's host"
        then = "recover_host_failure.yml -e failed_host=%s" % name if name else "recover_host_failure.yml"
        return ("%s is not connected to vCenter (disconnected or not responding): check that host; "
                "if it is dead, start its VMs on another host with %s" % (which, then))

    def _call(self, doing, func, *args, _api=None, **kwargs):
        """One pyVmomi call (`_api`: its vSphere name; a getattr is a property read),
        faults mapped to typed errors; traced with its time."""
        began, outcome = time.monotonic(), "ok"
        try:
            return func(*args, **kwargs)
        except vmodl.MethodFault as exc:
            outcome = _fault_name(exc)
            raise self._fault(exc, doing) from None
        except _CONNECTION_ERRORS as exc:
            outcome = type(exc).__name__
            raise self._lost_error(doing, exc) from None
        finally:
            if self.trace:
                if _api is None and func is getattr and len(args) == 2:
                    _api = "read %s of %s" % (args[1], getattr(args[0], "_moId", type(args[0]).__name__))
                self._traced("%s (%s)" % (_api or getattr(func, "__name__", "call"), doing), outcome, began)

    def _traced(self, what, outcome, began):
        if self.trace:
            self.trace("vmware %s: %s %s %d ms" % (self.label, what, outcome, base.elapsed_ms(began)))

    # --- bulk read -------------------------------------------------------
    def _retrieve(self, objects=None, vms=True, hosts=True, doing="read inventory"):
        """One PropertyCollector pass with paging; objects=None: the whole inventory."""
        pc = vmodl.query.PropertyCollector
        specs, types = [], []
        if vms:
            specs.append(pc.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PROPS))
            types.append(vim.VirtualMachine)
        if hosts:
            specs += [pc.PropertySpec(type=vim.HostSystem, pathSet=HOST_PROPS),
                      pc.PropertySpec(type=vim.ClusterComputeResource, pathSet=CLUSTER_PROPS)]
            types += [vim.HostSystem, vim.ClusterComputeResource]
        view = None
        if objects is None:
            view = self._call("create view", self.content.viewManager.CreateContainerView,
                              self.content.rootFolder, types, True, _api="CreateContainerView")
            traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
            object_specs = [pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])]
        else:
            object_specs = [pc.ObjectSpec(obj=obj, skip=False) for obj in objects]
        collector = self.content.propertyCollector
        out = []
        try:
            page = self._call(doing, collector.RetrievePropertiesEx,
                              [pc.FilterSpec(objectSet=object_specs, propSet=specs)],
                              pc.RetrieveOptions(maxObjects=PAGE), _api="RetrievePropertiesEx")
            while page:
                out.extend(page.objects)
                if not page.token:
                    break
                page = self._call(doing, collector.ContinueRetrievePropertiesEx, page.token,
                                  _api="ContinueRetrievePropertiesEx")
        finally:
            if view is not None and not self.lost:
                try:
                    view.Destroy()
                except (vmodl.MethodFault,) + _CONNECTION_ERRORS:
                    pass  # the session's views go with it; the read's own error matters
        return [(obj.obj, {p.name: _plain(p.val) for p in obj.propSet}) for obj in out]

    def _index_hosts(self, records):
        """Clusters and hosts of a pass; remembers names for the VMs' host refs."""
        for obj, props in records:
            if isinstance(obj, vim.ClusterComputeResource):
                self.clusters[obj._moId] = props.get("name")
        hosts = [self._host_machine(obj, props) for obj, props in records if isinstance(obj, vim.HostSystem)]
        self.host_clusters = {h.name: h.cluster for h in hosts}
        return hosts

    def _ensure_hosts(self):
        if not self.host_names:
            self._index_hosts(self._retrieve(vms=False))

    def _host_machine(self, obj, props):
        name = props.get("name")
        self.host_names[obj._moId] = name
        self.host_objs[name] = obj
        raw_conn = props.get("runtime.connectionState", "unknown")
        conn = _HOST_CONNECTION.get(raw_conn, model.UNREACHABLE)
        if conn == model.CONNECTED and props.get("runtime.inMaintenanceMode"):
            conn = model.MAINTENANCE
        raw_power = props.get("runtime.powerState", "unknown")
        parent = props.get("parent")
        memory = props.get("summary.hardware.memorySize")
        return model.Machine(
            kind=model.HYPERVISOR, platform=PLATFORM, name=name,
            uuid=props.get("hardware.systemInfo.uuid") or obj._moId,
            cluster=self.clusters.get(parent._moId) if parent is not None else None,
            power_state=_HOST_POWER.get(raw_power, model.UNKNOWN), power_state_raw=raw_power,
            connection_state=conn, endpoint=self.endpoint(),
            facts={"moid": obj._moId, "connection_state_raw": raw_conn,
                   "cpus": props.get("summary.hardware.numCpuCores"),
                   "memory_mb": memory // (1024 * 1024) if memory else None},
        )

    def _vm_machine(self, obj, props):
        raw = props.get("runtime.powerState", "unknown")
        power = _VM_POWER.get(raw, model.UNKNOWN)
        vm_conn = props.get("runtime.connectionState", "connected")
        if vm_conn != "connected":
            # vCenter only remembers the last state it saw: say so, keep the word
            power, raw = model.UNKNOWN, "%s:%s" % (raw, vm_conn)
        host_ref = props.get("runtime.host")
        host = None
        if host_ref is not None:
            if host_ref._moId not in self.host_names:  # a host added since the last pass
                self._index_hosts(self._retrieve(vms=False))
            host = self.host_names.get(host_ref._moId)
        heartbeat = _HEARTBEAT.get(props.get("guestHeartbeatStatus"), model.HB_UNKNOWN)
        return model.Machine(
            kind=model.VM, platform=PLATFORM, name=props.get("name"),
            uuid=props.get("config.instanceUuid") or obj._moId, host=host,
            cluster=self.host_clusters.get(host), power_state=power, power_state_raw=raw,
            heartbeat=heartbeat if power == model.RUNNING else model.HB_UNKNOWN,
            endpoint=self.endpoint(), handle=obj,
            facts={"moid": obj._moId, "tools": props.get("guest.toolsRunningStatus"),
                   "vcpus": props.get("summary.config.numCpu"),
                   "memory_mb": props.get("summary.config.memorySizeMB"),
                   "boot_time": _iso(props.get("runtime.bootTime")) if power == model.RUNNING else None},
        )

    def list_inventory(self):
        records = self._retrieve()
        hosts = self._index_hosts(records)
        vms = [self._vm_machine(obj, props) for obj, props in records
               if isinstance(obj, vim.VirtualMachine)
               and (self.include_templates or not props.get("config.template"))]
        return model.Inventory(hosts=hosts, vms=vms)

    def find(self, name=None, uuid=None):
        if uuid:
            obj = self._call("find by uuid", self.content.searchIndex.FindByUuid,
                             None, uuid, vmSearch=True, instanceUuid=True, _api="FindByUuid")
            if obj is None:
                raise model.NotFound("vmware %s: no VM with instance uuid %s" % (self.label, uuid))
            self._ensure_hosts()
            return self._read_vm(obj)
        return model.pick_one(self.list_inventory().vms, name=name, where=self.where())

    def _read_vm(self, obj, name=None):
        records = self._retrieve([obj], hosts=False, doing="read VM %s" % (name or obj._moId))
        if not records:
            raise model.NotFound("vmware %s: VM %s is gone" % (self.label, obj._moId))
        return self._vm_machine(*records[0])

    def refresh(self, vm, heartbeat=False):
        return self._read_vm(vm.handle, vm.name)

    # --- actions ---------------------------------------------------------
    def _wait_task(self, task, doing, timeout=600, host=None, who=None, method=None):
        """Poll the task until it succeeds (its result) or fails (a typed error), within
        timeout seconds; a progress line each note_every seconds ("web01: vSphere task
        PowerOnVM_Task still running (30 s of 300 s)")."""
        started = time.monotonic()
        deadline = started + timeout
        ticker = self.ticker(started)
        interval = 0.2
        while True:
            info = self._call(doing, getattr, task, "info")
            if info.state == vim.TaskInfo.State.success:
                return info.result
            if info.state == vim.TaskInfo.State.error:
                raise self._fault(info.error, doing, host) if isinstance(info.error, vmodl.MethodFault) \
                    else model.VirtError("vmware %s: %s failed" % (self.label, doing), raw=str(info.error))
            now = time.monotonic()
            if now > deadline:
                raise model.Timeout("vmware %s: task %s still %s after %ds" % (self.label, doing, info.state, timeout))
            time.sleep(max(0.05, min(interval, ticker.due(), deadline - now)))
            interval = min(interval * 1.5, 1.0)
            ticker.tick(lambda waited, state=info.state: "%s: vSphere task %s still %s (%d s of %d s)"
                        % (who or doing, method or getattr(info, "descriptionId", None) or doing, state, waited,
                           timeout))

    def power(self, vm, action, timeout=600):
        obj = vm.handle
        doing = "%s %s" % (action, vm.name)
        if action == base.SHUTDOWN:
            self._call(doing, obj.ShutdownGuest, _api="ShutdownGuest")  # no task: the guest acts on its own time
            return
        method = {base.START: "PowerOnVM_Task", base.POWEROFF: "PowerOffVM_Task",
                  base.RESET: "ResetVM_Task", base.SUSPEND: "SuspendVM_Task"}.get(action)
        if method is None:
            raise model.Unsupported("vmware: %s is not a vSphere power operation" % action)
        self._wait_task(self._call(doing, getattr(obj, method), _api=method), doing, timeout=timeout, host=vm.host,
                        who=vm.name, method=method)

    def migrate(self, vm, host_name, timeout=3600):
        """vMotion to the named host (RelocateVM with only a host in the spec)."""
        self._ensure_hosts()
        target = self.host_objs.get(host_name)
        if target is None:
            raise model.not_found("host", host_name, self.host_objs, self.where())
        doing = "migrate %s to %s" % (vm.name, host_name)
        compute = self._call(doing, getattr, target, "parent")
        spec = vim.vm.RelocateSpec(host=target, pool=self._call(doing, getattr, compute, "resourcePool"))
        self._wait_task(self._call(doing, vm.handle.RelocateVM_Task, spec, _api="RelocateVM_Task"), doing, timeout,
                        who=vm.name, method="RelocateVM_Task")

    def set_maintenance(self, host_name, on, timeout=3600):
        """Enter or leave maintenance mode; vCenter refuses while VMs run there."""
        self._ensure_hosts()
        target = self.host_objs.get(host_name)
        if target is None:
            raise model.not_found("host", host_name, self.host_objs, self.where())
        in_mm = self._call("read host state", getattr, target, "runtime").inMaintenanceMode
        if bool(in_mm) == bool(on):
            return False
        doing = "%s maintenance mode on %s" % ("enter" if on else "exit", host_name)
        method = "EnterMaintenanceMode_Task" if on else "ExitMaintenanceMode_Task"
        if on:
            task = self._call(doing, target.EnterMaintenanceMode_Task, timeout=0, evacuatePoweredOffVms=False, _api=method)
        else:
            task = self._call(doing, target.ExitMaintenanceMode_Task, timeout=0, _api=method)
        self._wait_task(task, doing, timeout, who=host_name, method=method)
        return True

    def recover(self, vm, host_name, timeout=600):
        """Register a VM of a failed host on `host_name` (same .vmx on shared
        storage) and return it, powered off, as read back from vCenter."""
        self._ensure_hosts()
        target = self.host_objs.get(host_name)
        if target is None:
            raise model.not_found("host", host_name, self.host_objs, self.where())
        doing = "recover %s on %s" % (vm.name, host_name)
        config = self._call(doing, getattr, vm.handle, "config")
        folder = self._call(doing, getattr, vm.handle, "parent")
        pool = self._call(doing, getattr, self._call(doing, getattr, target, "parent"), "resourcePool")
        self._call(doing + " (unregister)", vm.handle.UnregisterVM, _api="UnregisterVM")
        try:
            task = self._call(doing + " (register)", folder.RegisterVM_Task, path=config.files.vmPathName,
                              name=vm.name, asTemplate=False, pool=pool, host=target, _api="RegisterVM_Task")
            return self._read_vm(self._wait_task(task, doing, timeout, who=vm.name, method="RegisterVM_Task"))
        except model.VirtError as exc:
            exc.changed = True  # unregistered from its failed host already
            raise


PLATFORM_SPEC = registry.register(registry.Platform(
    name=PLATFORM,
    title="VMware vSphere (vCenter or ESXi)",
    driver=VmwareDriver,
    scope=registry.MANAGER,
    recovery=registry.REREGISTER,
    capabilities=VmwareDriver.capabilities,
    id_options=("hostname",),
    client={"pip": "pyvmomi>=8.0", "import": "pyVmomi"},
    options=(
        registry.Option("hostname", "vCenter or ESXi host name.", env=("VMWARE_HOST",), endpoint=True, required=True),
        registry.Option("username", "vSphere user name.", env=("VMWARE_USER",), aliases=("user",)),
        registry.Option("password", "vSphere password.", env=("VMWARE_PASSWORD",), secret=True, aliases=("pass", "pwd")),
        registry.Option("port", "vCenter or ESXi HTTPS port.", type="int", default=443, env=("VMWARE_PORT",),
                        endpoint=True),
        registry.Option("validate_certs", "Verify the vCenter certificate. Turn off only for labs.", type="bool",
                        default=True, env=("VMWARE_VALIDATE_CERTS",), endpoint=True),
    ),
))
