# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt driver: KVM/QEMU, Xen and any other libvirt URI.

One URI is one hypervisor. The bulk read is a fixed handful of RPCs per
hypervisor whatever the number of domains: getAllDomainStats returns every
domain with its name, uuid and state in one reply; two filtered
listAllDomains calls mark managed-saved and transient domains.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

from ansible_collections.virtops.unified.plugins.module_utils import driver as base
from ansible_collections.virtops.unified.plugins.module_utils import model, registry

try:
    import libvirt

    # libvirt prints every error to stderr by default; ours carry them instead
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
except ImportError:  # reported by require_libvirt() where it matters
    libvirt = None

try:
    import libvirt_qemu
except ImportError:
    libvirt_qemu = None

PLATFORM = "libvirt"

# virDomainState -> (normalised, raw word). Reasons refine the raw word only.
_STATES = {
    0: (model.UNKNOWN, "nostate"),
    1: (model.RUNNING, "running"),
    2: (model.RUNNING, "blocked"),  # Xen: running, waiting on I/O
    3: (model.PAUSED, "paused"),
    4: (model.TRANSITIONING, "shutdown"),  # shutting down
    5: (model.STOPPED, "shutoff"),
    6: (model.CRASHED, "crashed"),
    7: (model.SUSPENDED, "pmsuspended"),  # guest-initiated S3
}
_PAUSED_REASONS = {1: "user", 2: "migration", 3: "save", 4: "dump", 5: "ioerror",
                   6: "watchdog", 7: "from_snapshot", 8: "shutdown", 9: "snapshot",
                   10: "crashed", 11: "starting_up", 12: "postcopy", 13: "postcopy_failed"}
_SHUTOFF_REASONS = {1: "shutdown", 2: "destroyed", 3: "crashed", 4: "migrated",
                    5: "saved", 6: "failed", 7: "from_snapshot", 8: "daemon"}

_AGENT_PING = '{"execute":"guest-ping"}'


def require_libvirt():
    if libvirt is None:
        raise model.Unsupported(
            "the Python library libvirt-python is not installed on the controller",
            hint="pip install libvirt-python (it needs the libvirt C library and headers)",
        )


def redact_uri(uri):
    """Drop any password from a URI's user part before it is shown anywhere."""
    return re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:********@", uri or "")


def _state(code, reason, managed_save):
    normal, raw = _STATES.get(code, (model.UNKNOWN, "state-%s" % code))
    if code == 5 and managed_save:
        # shut off with a managed-save image: memory is on disk, start resumes it
        return model.SUSPENDED, "shutoff:saved"
    reasons = _PAUSED_REASONS if code == 3 else _SHUTOFF_REASONS if code == 5 else {}
    if reason in reasons:
        raw = "%s:%s" % (raw, reasons[reason])
    return normal, raw


_LOOP = []
_LOOP_GUARD = threading.Lock()


def _event_loop():
    """libvirt's default event loop, once per process, run by a daemon thread (it sends
    the keepalive pings). Registered before the connections that use it are opened."""
    with _LOOP_GUARD:
        if _LOOP:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, daemon=True, name="libvirt-events").start()
        _LOOP.append(True)


class LibvirtDriver(base.Driver):
    """One libvirt connection (one hypervisor)."""

    platform = PLATFORM
    capabilities = frozenset(base.ACTIONS) | {registry.HEARTBEAT}
    boot_fact = "domain_id"  # a new domain id at each start
    guest_agent = "the QEMU guest agent"
    heartbeat_in_bulk = False  # the guest agent is pinged one domain at a time
    # shutoff reasons that are not a fault: the guest, a save, a migration or a snapshot meant it
    planned_stop_causes = frozenset({"shutdown", "saved", "migrated", "from_snapshot"})

    @classmethod
    def open_watch(cls, options, connect_timeout=30, probe_heartbeats=False):
        options = dict(options)
        if not options.get("hypervisor_name") and options.get("uri"):
            # named as the inventory plugin names it: the URI's host, else the hypervisor's own hostname
            options["hypervisor_name"] = urlsplit(options["uri"]).hostname or None
        # a read-only connection unless the guest agents are pinged (qemuAgentCommand needs read-write)
        return cls(connect_timeout=connect_timeout, readonly=not probe_heartbeats, **options)

    @classmethod
    def safe_endpoint(cls, values):
        out = dict(values)
        if out.get("uri"):
            out["uri"] = redact_uri(out["uri"])
        return out

    @classmethod
    def stop_cause(cls, vm):
        """libvirt's shutoff reason (shutoff:destroyed -> destroyed)."""
        raw = vm.power_state_raw or ""
        if ":" in raw:
            return raw.split(":", 1)[1]
        return super().stop_cause(vm)

    def probe_heartbeat(self, vm):
        return self.heartbeat(vm.handle)

    def __init__(self, uri=None, hypervisor_name=None, cluster=None, connect_timeout=30, readonly=False):
        require_libvirt()
        self.uri = uri or ""
        self.safe_uri = redact_uri(self.uri)
        self.cluster = cluster
        self.connect_timeout = connect_timeout
        self.conn = self._open(readonly)
        self.name = hypervisor_name or self._call(self.conn.getHostname)

    # --- connection ------------------------------------------------------
    def _connect_uri(self):
        """The URI to open: an ssh URI without keyfile= takes $VIRTOPS_LIBVIRT_SSH_KEYFILE
        (AWX writes the credential's key to a new path per job; libvirt hands ssh
        no environment, so the path must ride in the URI). Never shown or stored."""
        keyfile = os.environ.get("VIRTOPS_LIBVIRT_SSH_KEYFILE")
        if not keyfile or "+ssh" not in self.uri.split("://", 1)[0] or "keyfile=" in self.uri:
            return self.uri or None
        return "%s%skeyfile=%s" % (self.uri, "&" if "?" in self.uri else "?", quote(keyfile, safe="/"))

    def _keepalive(self, conn):
        """A deadline for every call on this connection, not only its opening: libvirt's
        keepalive closes a connection whose daemon has not answered `count` pings sent
        every `interval` seconds (virConnectSetKeepAlive,
        https://libvirt.org/html/libvirt-libvirt-host.html#virConnectSetKeepAlive), and the call under way then fails instead of waiting for a
        cut-off host to come back. The pings need an event loop: one per process, in a
        daemon thread. Local drivers (test:///) have no keepalive: nothing to do."""
        _event_loop()
        interval = max(1, int(self.connect_timeout) // 5)
        count = max(1, int(self.connect_timeout) // interval - 1)
        try:
            conn.setKeepAlive(interval, count)
        except libvirt.libvirtError:
            pass

    def _open(self, readonly):
        """Open with a time limit: an unreachable ssh host can hang for minutes.

        libvirt's open cannot be interrupted, so it runs in a daemon thread; if it
        answers after we gave up, that thread closes the late connection itself
        (the event source retries every poll: nothing may pile up)."""
        _event_loop()  # before the connection opens, so that it uses the loop (keepalive)
        box = {"abandoned": False}
        guard = threading.Lock()
        uri = self._connect_uri()

        def target():
            try:
                conn = (libvirt.openReadOnly if readonly else libvirt.open)(uri)
            except libvirt.libvirtError as exc:
                box["error"] = exc
                return
            with guard:
                late = box["abandoned"]
                if not late:
                    box["conn"] = conn
            if late:
                try:
                    conn.close()
                except libvirt.libvirtError:
                    pass

        worker = threading.Thread(target=target, daemon=True, name="libvirt-open %s" % self.safe_uri)
        worker.start()
        worker.join(self.connect_timeout)
        with guard:
            if "conn" not in box and "error" not in box:
                box["abandoned"] = True
                raise model.Unreachable("libvirt %s: no answer within %ds" % (self.safe_uri, self.connect_timeout))
        if "error" in box:
            raise self._error(box["error"], "cannot connect")
        self._keepalive(box["conn"])
        return box["conn"]

    def close(self):
        conn, self.conn = getattr(self, "conn", None), None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def where(self):
        return " on %s (%s)" % (getattr(self, "name", None) or "?", self.safe_uri)

    def _error(self, exc, doing):
        """Map a libvirtError to a typed error, keeping libvirt's own words."""
        code = exc.get_error_code()
        raw = redact_uri(exc.get_error_message() or str(exc))
        msg = "libvirt %s: %s" % (self.safe_uri, doing)
        if code in (libvirt.VIR_ERR_NO_DOMAIN,):
            return model.NotFound(msg, raw=raw)
        if code in (libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_CANCELLED,
                    getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", -1), libvirt.VIR_ERR_ACCESS_DENIED):
            return model.AuthFailed(msg, raw=raw)
        if code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_RPC,
                    libvirt.VIR_ERR_INTERNAL_ERROR) and doing == "cannot connect":
            return model.Unreachable(msg, raw=raw)
        if code in (libvirt.VIR_ERR_OPERATION_INVALID,):
            return model.StateConflict(msg, raw=raw)
        if code in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
            return model.Unsupported(msg, raw=raw)
        if code in (libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE):
            return model.Timeout(msg, raw=raw)
        if "keepalive" in raw:  # the daemon stopped answering on an open connection
            return model.Unreachable("%s: no answer within %ds (keepalive)" % (msg, self.connect_timeout), raw=raw,
                                     hint="Check the hypervisor and the network to it")
        if code in (libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_SYSTEM_ERROR):
            return model.Unreachable(msg + " (connection lost)", raw=raw)
        return model.VirtError(msg, raw=raw)

    def _call(self, func, *args, doing=None):
        """One libvirt call, its error mapped to a typed one; traced with its time."""
        began, outcome = time.monotonic(), "ok"
        try:
            return func(*args)
        except libvirt.libvirtError as exc:
            outcome = "error %s" % exc.get_error_code()
            raise self._error(exc, doing or getattr(func, "__name__", "call")) from exc
        finally:
            if self.trace:
                name = getattr(func, "__name__", "call")
                self._traced("%s (%s)" % (name, doing) if doing else name, outcome, began)

    def _traced(self, what, outcome, began):
        if self.trace:
            self.trace("libvirt %s: %s %s %d ms" % (self.safe_uri, what, outcome, base.elapsed_ms(began)))

    def endpoint(self):
        return {"platform": PLATFORM, "uri": self.safe_uri, "hypervisor_name": self.name}

    # --- reads -----------------------------------------------------------
    def host_machine(self):
        caps = ET.fromstring(self._call(self.conn.getCapabilities))
        info = self._call(self.conn.getInfo)
        host_uuid = caps.findtext("host/uuid") or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "libvirt:" + self.name))
        return model.Machine(
            kind=model.HYPERVISOR, platform=PLATFORM, name=self.name, uuid=host_uuid,
            cluster=self.cluster, power_state=model.RUNNING, power_state_raw="connected",
            connection_state=model.CONNECTED, endpoint=self.endpoint(),
            facts={"hypervisor_type": self._call(self.conn.getType).lower(),
                   "cpus": info[2], "memory_mb": info[1]},
        )

    def _vm(self, dom, state_code, reason, managed_save, persistent, stats=None):
        power, raw = _state(state_code, reason, managed_save)
        facts = {"persistent": persistent, "domain_id": dom.ID() if state_code in (1, 2, 3, 4, 7) else None}
        if stats:
            if "vcpu.current" in stats:
                facts["vcpus"] = stats["vcpu.current"]
            if "balloon.maximum" in stats:
                facts["memory_mb"] = stats["balloon.maximum"] // 1024
        return model.Machine(
            kind=model.VM, platform=PLATFORM, name=dom.name(), uuid=dom.UUIDString(),
            host=self.name, cluster=self.cluster, power_state=power, power_state_raw=raw,
            endpoint=self.endpoint(), facts=facts, handle=dom,
        )

    def list_vms(self):
        flags = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON
        # NOWAIT: a domain busy with a job (often the hung one) is reported with what
        # can be read at once instead of blocking the whole read behind that job
        nowait = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
        try:
            records = self.conn.getAllDomainStats(flags, nowait)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                raise self._error(exc, "getAllDomainStats") from exc
            # drivers without VCPU/BALLOON stats or NOWAIT (e.g. test:///) still give STATE
            records = self._call(self.conn.getAllDomainStats, libvirt.VIR_DOMAIN_STATS_STATE, 0)
        saved = {d.UUIDString() for d in self._call(
            self.conn.listAllDomains, libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)}
        transient = {d.UUIDString() for d in self._call(
            self.conn.listAllDomains, libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)}
        vms = []
        for dom, stats in records:
            uid = dom.UUIDString()
            vms.append(self._vm(dom, stats.get("state.state", 0), stats.get("state.reason", 0),
                                uid in saved, uid not in transient, stats))
        return vms

    def list_inventory(self):
        return model.Inventory(hosts=[self.host_machine()], vms=self.list_vms())

    def find(self, name=None, uuid=None):
        """Look the domain up directly (one RPC) rather than listing all."""
        try:
            if uuid:
                dom = self.conn.lookupByUUIDString(uuid)
            else:
                dom = self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_INVALID_ARG):
                raise self._error(exc, "lookup") from exc
            # not found: list once so the message can offer close matches
            return model.pick_one(self.list_vms(), name=name, uuid=uuid, where=self.where())
        # no agent ping here: a silent agent costs 5 s (libvirt's guest-sync
        # wait); callers that need the heartbeat ask refresh(heartbeat=True)
        return self._read(dom)

    def _read(self, dom, heartbeat=False):
        code, reason = self._call(dom.state, 0, doing="read state of %s" % dom.name())
        managed = code == 5 and bool(self._call(dom.hasManagedSaveImage, 0))
        vm = self._vm(dom, code, reason, managed, bool(self._call(dom.isPersistent)))
        if heartbeat and vm.power_state == model.RUNNING:
            vm.heartbeat = self.heartbeat(dom)
        return vm

    def refresh(self, vm, heartbeat=False):
        dom = vm.handle
        if dom is None:
            dom = self._call(self.conn.lookupByUUIDString, vm.uuid, doing="look up %s" % vm.name)
        try:
            return self._read(dom, heartbeat)
        except model.NotFound:
            raise model.NotFound("libvirt %s: domain %s (%s) is gone" % (self.safe_uri, vm.name, vm.uuid))

    def heartbeat(self, dom):
        """QEMU guest agent ping: ok, lost (agent silent) or unknown (no agent).

        A silent agent costs 2 s at the first ping, then 5 s per ping: libvirt's
        guest-sync before each later ping waits its own 5 s (libvirt 9)."""
        if libvirt_qemu is None:
            return model.HB_UNKNOWN
        began, outcome = time.monotonic(), "ok"
        try:
            libvirt_qemu.qemuAgentCommand(dom, _AGENT_PING, 2, 0)
            return model.HB_OK
        except libvirt.libvirtError as exc:
            outcome = "error %s" % exc.get_error_code()
            if exc.get_error_code() in (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_ERR_OPERATION_TIMEOUT):
                return model.HB_LOST
            return model.HB_UNKNOWN  # no agent configured, or a driver without agents
        finally:
            self._traced("qemuAgentCommand guest-ping", outcome, began)

    # --- actions ---------------------------------------------------------
    def _within(self, func, timeout, doing):
        """func() with a deadline. A guest agent that takes a shutdown request and whose
        guest then stays up keeps virDomainShutdown waiting 60 s (libvirt's agent wait,
        measured on the lab's QEMU guests), whatever the caller's budget: past the budget
        the request is left in flight (the guest may still go down) and the caller's wait
        decides, escalating when it is planned."""
        box = {}

        def target():
            try:
                func()
                box["done"] = True
            except libvirt.libvirtError as exc:
                box["error"] = exc

        worker = threading.Thread(target=target, daemon=True, name="libvirt %s" % doing)
        began = time.monotonic()
        ticker = self.ticker(began)
        worker.start()
        deadline = began + max(1, timeout)
        while worker.is_alive() and time.monotonic() < deadline:
            worker.join(max(0.05, min(deadline - time.monotonic(), ticker.due())))
            ticker.tick(lambda waited: "%s: libvirt still carrying out %s (%d s of %d s)"
                        % (doing.split(" ", 1)[-1], getattr(func, "__name__", "the request"), waited, timeout))
        self._traced("%s (%s)" % (getattr(func, "__name__", "call"), doing),
                     "error" if "error" in box else "ok" if box.get("done") else "left in flight", began)
        if "error" in box:
            raise self._error(box["error"], doing)

    def power(self, vm, action, timeout=600):
        # libvirt's calls return when the request is taken: nothing to wait for here
        dom = vm.handle or self._call(self.conn.lookupByUUIDString, vm.uuid)
        doing = "%s %s" % (action, vm.name)
        if action == base.START:
            if vm.power_state_raw == "pmsuspended":
                self._call(dom.pMWakeup, 0, doing=doing)
            else:
                self._call(dom.create, doing=doing)  # restores a managed save if present
        elif action == base.SHUTDOWN:
            if vm.heartbeat == model.HB_LOST:
                # libvirt tries the guest agent first and waits on a silent one
                self._call(dom.shutdownFlags, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN, doing=doing + " (ACPI)")
            else:
                self._within(dom.shutdown, timeout, doing)
        elif action == base.POWEROFF:
            if self._call(dom.isActive):
                self._call(dom.destroy, doing=doing)
            elif self._call(dom.hasManagedSaveImage, 0):
                self._call(dom.managedSaveRemove, 0, doing=doing)
        elif action == base.RESET:
            self._call(dom.reset, 0, doing=doing)
        elif action == base.SUSPEND:
            self._call(dom.managedSave, 0, doing=doing)
        elif action == base.RESUME:
            self._call(dom.resume, doing=doing)
        else:
            raise model.Unsupported("libvirt: unknown action %r" % action)


PLATFORM_SPEC = registry.register(registry.Platform(
    name=PLATFORM,
    title="KVM/QEMU, Xen and other libvirt hypervisors",
    driver=LibvirtDriver,
    scope=registry.HOST,
    recovery=registry.START_STANDBY,
    capabilities=LibvirtDriver.capabilities,
    id_options=("hypervisor_name", "uri"),
    source_list="hypervisors",
    source_keys={"name": "hypervisor_name"},
    client={"pip": "libvirt-python>=9.0.0", "import": "libvirt",
            # libvirt-python is built from source against the libvirt client library: headers, a
            # compiler and pkg-config only while building, the library at run time; qemu+ssh:// and
            # xen+ssh:// URIs run the ssh client
            "bindep": ("libvirt-libs [platform:rpm]", "libvirt-devel [platform:rpm compile]",
                       "libvirt0 [platform:dpkg]", "libvirt-dev [platform:dpkg compile]", "gcc [compile]",
                       "pkgconf-pkg-config [platform:rpm compile]", "pkg-config [platform:dpkg compile]",
                       "openssh-clients [platform:rpm]", "openssh-client [platform:dpkg]")},
    options=(
        registry.Option("uri", "libvirt connection URI of the hypervisor, for example C(qemu:///system), "
                        "C(qemu+ssh://root@kvm01/system), C(xen:///system) or C(test:///default). "
                        "A password in the URI is never shown in output.",
                        env=("LIBVIRT_DEFAULT_URI",), endpoint=True, required=True),
        registry.Option("hypervisor_name", "Inventory name of the hypervisor behind O(uri), reported as the VM's "
                        "host (and compared with the host a runbook expects); defaults to the hypervisor's own "
                        "hostname.", endpoint=True),
    ),
    key_files=(
        registry.Option("ssh_private_key", "SSH private key for C(qemu+ssh://) and C(xen+ssh://) URIs, unencrypted, "
                        "whose public key is in the authorized_keys of the hypervisors' libvirt user. libvirt starts "
                        "ssh with a scrubbed environment, so the key file's path rides in the URI: the driver adds "
                        "C(keyfile=<path>) to an ssh URI that has none.",
                        env=("VIRTOPS_LIBVIRT_SSH_KEYFILE",), secret=True, file=True, key_format="ssh_private_key"),
    ),
))
