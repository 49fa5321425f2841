# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""hypervisor_health: an ansible-rulebook event source that watches hypervisors.

It polls every endpoint in bulk (the collection's driver ``list_inventory()``:
one pass per endpoint per interval, in a worker thread) and emits one event per
change. VM monitoring follows vSphere HA's "VM monitoring": a VM whose guest
heartbeat has been lost for ``failure_interval`` seconds is reported hung, but
never within ``min_uptime`` seconds after it was seen powering on.

Arguments
---------
platform         libvirt | vmware (required)
uri              libvirt URI of one hypervisor (or LIBVIRT_DEFAULT_URI)
hypervisor_name  its inventory name (default: the hypervisor's host name)
hypervisors      libvirt, several: [{name, uri}, ...] (instead of uri)
hostname, username, password, port (443), validate_certs (true)
                 vmware; fallbacks VMWARE_HOST, VMWARE_USER, VMWARE_PASSWORD,
                 VMWARE_PORT, VMWARE_VALIDATE_CERTS
interval         seconds between polls (15)
failure_interval seconds a heartbeat must stay lost before vm_hung (60)
min_uptime       seconds after a VM was seen powering on during which it is
                 never reported hung (240)
max_resets       at most this many vm_hung / vm_down events per VM within
                 reset_window (3); the next time the VM needs one,
                 vm_reset_limit_reached is emitted instead, once, and the
                 rulebooks stop acting on that VM. Restarts recorded in the
                 audit log count too, so a restarted source remembers them.
reset_window     seconds (86400)
audit_log        the virtops audit log read for virtops' own actions
                 (VIRTOPS_AUDIT_LOG, else ~/.ansible/virtops/audit.jsonl)
lock_dir         the runbooks' per-VM locks (VIRTOPS_LOCK_DIR, else
                 ~/.ansible/virtops/locks): a VM locked by a runbook is being
                 acted on, so its power changes are expected
vms              optional list of VM names (platform name or inventory name)
                 or uuids: only these VMs are reported on
repeat_after     seconds; re-emit vm_hung while the heartbeat stays lost
                 (0, the default: once per episode; a new episode starts when
                 the heartbeat comes back or the VM is seen powering on)
agent_ping       libvirt only: ping the qemu guest agent of running VMs. The
                 bulk read does not ping agents; a ping is one RPC per running
                 VM (2 s, then 5 s each when the agent is silent: libvirt's
                 guest-sync wait; the pings of one poll run in parallel). Default: true
                 when ``vms`` is given (only those VMs are pinged), false
                 otherwise. true without ``vms`` pings every running VM.
connect_timeout  seconds (30)

Events
------
{"virtops": {"type": ..., "virt_name", "virt_uuid", "virt_host",
             "virt_platform", "virt_power_state", "virt_heartbeat", ...},
 "meta": {"hosts": "<inventory name>"}}

types: host_connection_lost, host_connection_back, vm_power_changed,
vm_heartbeat_lost, vm_hung, vm_down, vm_reset_limit_reached,
endpoint_unreachable, endpoint_back.

Platform text: virt_name, inventory_name, meta.hosts, virt_cluster, vms,
reason, error and previous_error hold what the platform says (a VM name is
whatever its owner typed, template syntax included); virt_host and
virt_uuid come from the platform too. Never put them into a string that
ansible-core templates (extra_vars of run_playbook / run_job_template): the
shipped rulebooks pass virt_uuid and virt_host only once the rule's
condition has checked them to be plain identifiers. type, cause,
virt_power_state, virt_power_state_raw, virt_heartbeat and
virt_connection_state are words of the drivers' own fixed vocabulary.

vm_down: a VM that was running is still not running one poll later, no
virtops runbook or module did it (no lock held, nothing in the audit log since
it was last seen running), and no one shut it down on purpose as far as the
platform tells: ``cause`` is libvirt's reason (destroyed, crashed, failed,
daemon; a guest shutdown, save or migration is never vm_down) or ``unknown``
on vSphere, which does not say why a VM went off. Stop a watched VM on
purpose through virtops.unified.vm_power or a guest shutdown: a
``virsh destroy`` looks exactly like a fault.
The first poll only records state (no event for the initial state), except that
an endpoint unreachable at the first poll is reported, and a heartbeat already
lost at the first poll starts its failure clock then.

Example
-------
- name: watch vCenter
  hosts: all
  sources:
    - virtops.unified.hypervisor_health:
        platform: vmware
        hostname: vcenter.example.com
        interval: 15
"""

from __future__ import annotations

import ast
import asyncio
import datetime
import logging
import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

DOCUMENTATION = __doc__

LOG = logging.getLogger("virtops.hypervisor_health")

PLATFORMS = ("libvirt", "vmware")
KNOWN_ARGS = {"platform", "uri", "hypervisor_name", "hypervisors", "hostname", "username", "password",
              "port", "validate_certs", "interval", "failure_interval", "min_uptime", "vms",
              "repeat_after", "agent_ping", "connect_timeout", "max_resets", "reset_window",
              "audit_log", "lock_dir"}
LOST_STATES = ("disconnected", "not_responding", "unreachable")
UP_STATES = ("connected", "maintenance")
# libvirt shutoff reasons that are not a fault: someone meant it
PLANNED_CAUSES = ("shutdown", "saved", "migrated", "from_snapshot")
_WORD = re.compile(r"[a-z_]{1,32}")


def _import_collection():
    """The collection's module_utils; ANSIBLE_COLLECTIONS_PATH is honoured
    when the collection is not already importable (ansible-rulebook does not
    put collections on sys.path for source plugins)."""
    try:
        from ansible_collections.virtops.unified.plugins.module_utils import model  # noqa: F401
    except ImportError:
        paths = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS") or ""
        paths = [p for p in paths.split(os.pathsep) if p]
        # this file inside an installed collection: <path>/ansible_collections/virtops/unified/extensions/...
        here = os.path.abspath(__file__) if "__file__" in globals() else ""
        if "%sansible_collections%s" % (os.sep, os.sep) in here:
            paths.append(here.rsplit("%sansible_collections%s" % (os.sep, os.sep), 1)[0])
        paths += [os.path.expanduser("~/.ansible/collections"), "/usr/share/ansible/collections"]
        for path in paths:
            path = os.path.expanduser(path)
            if os.path.isdir(os.path.join(path, "ansible_collections", "virtops", "unified")) and path not in sys.path:
                sys.path.append(path)
        # a namespace package imported before the path was added stays stale
        for mod in [m for m in sys.modules if m == "ansible_collections" or m.startswith("ansible_collections.")]:
            if sys.modules[mod] is None:
                del sys.modules[mod]
        try:
            from ansible_collections.virtops.unified.plugins.module_utils import model  # noqa: F401,F811
        except ImportError as exc:
            raise ValueError(
                "hypervisor_health: cannot import the virtops.unified collection (%s); install it, "
                "or set ANSIBLE_COLLECTIONS_PATH (or PYTHONPATH) to the directory that holds "
                "ansible_collections/virtops/unified" % exc) from None
    from ansible_collections.virtops.unified.plugins.module_utils import model
    return model


def _bool(value, what):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y"):
        return True
    if text in ("0", "false", "no", "off", "n"):
        return False
    raise ValueError("hypervisor_health: %s must be a boolean, got %r" % (what, value))


def _number(args, key, default, minimum=0):
    value = args.get(key, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError("hypervisor_health: %s must be a number of seconds, got %r" % (key, value)) from None
    if value < minimum:
        raise ValueError("hypervisor_health: %s must be >= %s, got %s" % (key, minimum, value))
    return value


def parse_args(args):
    """Validate the arguments; return the configuration. Raises ValueError."""
    # a rulebook that templates every argument passes '' (or []) for the unused ones
    args = {k: v for k, v in dict(args or {}).items() if not (v is None or v == "" or v == [])}
    unknown = sorted(set(args) - KNOWN_ARGS)
    if unknown:
        raise ValueError("hypervisor_health: unknown argument(s) %s; known: %s"
                         % (", ".join(unknown), ", ".join(sorted(KNOWN_ARGS))))
    platform = args.get("platform")
    if platform not in PLATFORMS:
        raise ValueError("hypervisor_health: platform must be one of %s, got %r" % (", ".join(PLATFORMS), platform))
    cfg = {
        "platform": platform,
        "interval": _number(args, "interval", 15, minimum=0.1),
        "failure_interval": _number(args, "failure_interval", 60),
        "min_uptime": _number(args, "min_uptime", 240),
        "repeat_after": _number(args, "repeat_after", 0),
        "connect_timeout": int(_number(args, "connect_timeout", 30, minimum=1)),
        "max_resets": int(_number(args, "max_resets", 3, minimum=1)),
        "reset_window": _number(args, "reset_window", 86400, minimum=1),
        "audit_log": args.get("audit_log"),
        "lock_dir": args.get("lock_dir"),
    }
    vms = args.get("vms")
    if vms is not None:
        if isinstance(vms, str) and vms.strip().startswith("["):
            try:  # a templated list can arrive as its Python/JSON text
                vms = ast.literal_eval(vms.strip())
            except (ValueError, SyntaxError):
                raise ValueError("hypervisor_health: vms must be a list of VM names or uuids, got %r" % (vms,)) from None
        elif isinstance(vms, str):
            vms = [v.strip() for v in vms.split(",") if v.strip()]
        if not isinstance(vms, list) or not all(isinstance(v, str) and v for v in vms):
            raise ValueError("hypervisor_health: vms must be a list of VM names or uuids, got %r" % (vms,))
    cfg["vms"] = set(vms) if vms else None
    endpoints = []
    if platform == "libvirt":
        for key in ("hostname", "username", "password"):
            if args.get(key):
                raise ValueError("hypervisor_health: %s is a vmware argument; libvirt takes uri or hypervisors" % key)
        if args.get("hypervisors") is not None:
            if args.get("uri"):
                raise ValueError("hypervisor_health: give either uri or hypervisors, not both")
            hvs = args["hypervisors"]
            if not isinstance(hvs, list) or not hvs:
                raise ValueError("hypervisor_health: hypervisors must be a non-empty list of {name, uri}")
            for item in hvs:
                if not isinstance(item, dict) or not item.get("uri") or not item.get("name"):
                    raise ValueError("hypervisor_health: each hypervisors entry needs name and uri, got %r" % (item,))
                endpoints.append({"uri": item["uri"], "hypervisor_name": item["name"]})
        else:
            uri = args.get("uri") or os.environ.get("LIBVIRT_DEFAULT_URI")
            if not uri:
                raise ValueError("hypervisor_health: libvirt needs uri (or LIBVIRT_DEFAULT_URI) or hypervisors")
            endpoints.append({"uri": uri, "hypervisor_name": args.get("hypervisor_name")})
        agent = args.get("agent_ping")
        cfg["agent_ping"] = (cfg["vms"] is not None) if agent is None else _bool(agent, "agent_ping")
    else:
        for key in ("uri", "hypervisors", "hypervisor_name", "agent_ping"):
            if args.get(key) is not None:
                raise ValueError("hypervisor_health: %s is a libvirt argument; vmware takes hostname/username/..." % key)
        hostname = args.get("hostname") or os.environ.get("VMWARE_HOST")
        if not hostname:
            raise ValueError("hypervisor_health: vmware needs hostname (or VMWARE_HOST)")
        port = args.get("port") or os.environ.get("VMWARE_PORT") or 443
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise ValueError("hypervisor_health: port must be an integer, got %r" % (port,)) from None
        validate = args.get("validate_certs")
        if validate is None:
            validate = os.environ.get("VMWARE_VALIDATE_CERTS", True)
        endpoints.append({"hostname": hostname, "port": port,
                          "username": args.get("username") or os.environ.get("VMWARE_USER"),
                          "password": args.get("password") or os.environ.get("VMWARE_PASSWORD"),
                          "validate_certs": _bool(validate, "validate_certs")})
        cfg["agent_ping"] = False
    cfg["endpoints"] = endpoints
    return cfg


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def endpoint_label(platform, ep):
    if platform == "vmware":
        return "%s:%s" % (ep["hostname"], ep["port"])
    from ansible_collections.virtops.unified.plugins.module_utils.libvirt_driver import redact_uri
    return ep.get("hypervisor_name") or redact_uri(ep["uri"])


class Endpoint:
    """One platform endpoint: its driver connection and its last state."""

    def __init__(self, platform, params, connect_timeout, agent_ping, scope, lock_dir=None):
        self.platform = platform
        self.params = params
        self.connect_timeout = connect_timeout
        self.agent_ping = agent_ping
        self.scope = scope
        self.lock_dir = lock_dir
        self.label = endpoint_label(platform, params)
        self.driver = None
        self.reachable = None  # None: not polled yet
        self.error = None
        self.hosts = {}  # host name -> connection state
        self.vms = {}  # uuid -> VmState

    def public(self):
        """Non-secret connection data for events."""
        out = {"platform": self.platform}
        if self.platform == "vmware":
            out.update(hostname=self.params["hostname"], port=self.params["port"])
        else:
            from ansible_collections.virtops.unified.plugins.module_utils.libvirt_driver import redact_uri
            out.update(uri=redact_uri(self.params["uri"]), hypervisor_name=self.params.get("hypervisor_name"))
        return out

    def connect(self):
        if self.platform == "vmware":
            from ansible_collections.virtops.unified.plugins.module_utils.vmware_driver import VmwareDriver
            p = self.params
            return VmwareDriver(hostname=p["hostname"], username=p["username"], password=p["password"],
                                port=p["port"], validate_certs=p["validate_certs"],
                                connect_timeout=self.connect_timeout)
        from ansible_collections.virtops.unified.plugins.module_utils.libvirt_driver import LibvirtDriver
        return LibvirtDriver(uri=self.params["uri"], hypervisor_name=self.params.get("hypervisor_name"),
                             connect_timeout=self.connect_timeout, readonly=not self.agent_ping)

    def close(self):
        drv, self.driver = self.driver, None
        if drv is not None:
            try:
                drv.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def read(self):
        """Blocking: one bulk read (plus agent pings where asked). Runs in a thread."""
        if self.driver is None:
            self.driver = self.connect()
        try:
            inv = self.driver.list_inventory()
            if self.platform == "libvirt" and self.agent_ping:
                from ansible_collections.virtops.unified.plugins.module_utils import model
                from ansible_collections.virtops.unified.plugins.module_utils import runbook
                locks = runbook.lock_dir_path(self.lock_dir)
                # not a VM a runbook is working on: libvirt runs one agent command per domain
                # at a time, so our pings would queue the runbook's (its heartbeat stays unknown)
                pinged = [vm for vm in inv.vms if vm.power_state == model.RUNNING and in_scope(vm, vm.name, self.scope)
                          and not runbook.live_lock(locks, vm.uuid)]
                if pinged:  # in parallel: a silent agent takes 5 s to give up
                    with ThreadPoolExecutor(max_workers=min(16, len(pinged))) as pool:
                        beats = list(pool.map(lambda vm: self.driver.heartbeat(vm.handle), pinged))
                    for vm, beat in zip(pinged, beats):
                        vm.heartbeat = beat
            return inv
        except Exception:
            self.close()  # reconnect next time
            raise


def in_scope(vm, inventory_name, scope):
    return scope is None or bool({vm.name, vm.uuid, inventory_name} & scope)


def boot_id(vm):
    """What changes each time a VM starts: libvirt's domain id, vSphere's boot time."""
    return vm.facts.get("domain_id") or vm.facts.get("boot_time")


class VmState:
    __slots__ = ("name", "host", "power", "heartbeat", "lost_since", "powered_on_at", "hung_at",
                 "running_at_wall", "down_since", "down_done", "boot", "hung_noted", "down_noted")

    def __init__(self, vm, now, first):
        self.name = vm.name
        self.host = vm.host
        self.power = vm.power_state
        self.heartbeat = vm.heartbeat
        self.lost_since = now if vm.heartbeat == "lost" else None
        # a VM running at the first poll was not seen powering on: no grace
        self.powered_on_at = None if first or vm.power_state != "running" else now
        self.hung_at = None
        self.hung_noted = self.down_noted = False  # a held-back repeat was logged (once per episode)
        self.running_at_wall = time.time() if vm.power_state == "running" else None
        self.down_since = None  # when it was first seen down after running
        self.down_done = False  # this down episode was reported (or found planned)
        self.boot = boot_id(vm)


class Monitor:
    """The state machine: feed it bulk reads, get events back."""

    def __init__(self, cfg, clock=time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self.endpoints = [Endpoint(cfg["platform"], ep, cfg["connect_timeout"], cfg["agent_ping"], cfg["vms"],
                                   cfg["lock_dir"])
                          for ep in cfg["endpoints"]]
        self.names = {}  # uuid -> inventory name
        self.acted = {}  # uuid -> clock times of vm_hung / vm_down events (max_resets)

    def close(self):
        for ep in self.endpoints:
            ep.close()

    async def poll(self):
        """One poll of every endpoint, concurrently; returns the events."""
        results = await asyncio.gather(*(asyncio.to_thread(ep.read) for ep in self.endpoints),
                                       return_exceptions=True)
        now = self.clock()
        inventories = [r for r in results if not isinstance(r, BaseException)]
        self._name_vms([vm for inv in inventories for vm in inv.vms])
        events = []
        for ep, result in zip(self.endpoints, results):
            if isinstance(result, BaseException):
                events.extend(self._unreachable(ep, result))
            else:
                events.extend(self._reachable(ep))
                events.extend(self._diff(ep, result, now))
        return events

    # --- naming ----------------------------------------------------------
    def _name_vms(self, vms):
        """Inventory names as the inventory plugins make them: a repeated name becomes <name>_<host>."""
        counts = Counter(vm.name for vm in vms)
        per_host = Counter((vm.name, vm.host) for vm in vms)
        for vm in vms:
            name = vm.name
            if counts[vm.name] > 1:
                name = "%s_%s" % (vm.name, vm.host)
                if per_host[(vm.name, vm.host)] > 1:
                    name = "%s_%s" % (name, (vm.uuid or "")[:8])
            self.names[vm.uuid] = name

    # --- events ----------------------------------------------------------
    @staticmethod
    def _event(kind, hosts, **fields):
        body = {"type": kind, "time": _now_iso(), "source": "virtops.unified.hypervisor_health"}
        body.update(fields)
        return {"virtops": body, "meta": {"hosts": hosts}}

    def _vm_event(self, kind, ep, vm, reason, **extra):
        return self._event(
            kind, self.names.get(vm.uuid, vm.name),
            virt_kind="vm", virt_name=vm.name, virt_uuid=vm.uuid, virt_host=vm.host, virt_cluster=vm.cluster,
            virt_platform=vm.platform, virt_power_state=vm.power_state, virt_power_state_raw=vm.power_state_raw,
            virt_heartbeat=vm.heartbeat, virt_endpoint=ep.public(),
            inventory_name=self.names.get(vm.uuid, vm.name), reason=reason, **extra)

    def _unreachable(self, ep, exc):
        ep.error = "%s: %s" % (type(exc).__name__, exc)
        was = ep.reachable
        ep.reachable = False
        if was is False:
            return []
        LOG.warning("endpoint %s unreachable: %s", ep.label, ep.error)
        host = ep.params.get("hypervisor_name") if ep.platform == "libvirt" else None
        return [self._event("endpoint_unreachable", host or ep.label, virt_platform=ep.platform,
                            virt_endpoint=ep.public(), virt_host=host, endpoint=ep.label,
                            error=ep.error, error_type=type(exc).__name__,
                            reason="%s endpoint %s unreachable: %s" % (ep.platform, ep.label, ep.error))]

    def _reachable(self, ep):
        was = ep.reachable
        ep.reachable = True
        if was is not False:
            return []
        LOG.warning("endpoint %s is back", ep.label)
        host = ep.params.get("hypervisor_name") if ep.platform == "libvirt" else None
        error, ep.error = ep.error, None
        return [self._event("endpoint_back", host or ep.label, virt_platform=ep.platform, virt_endpoint=ep.public(),
                            virt_host=host, endpoint=ep.label, previous_error=error,
                            reason="%s endpoint %s answers again" % (ep.platform, ep.label))]

    def _diff(self, ep, inv, now):
        cfg = self.cfg
        first = not ep.hosts and not ep.vms
        if first:
            LOG.info("hypervisor_health: watching %s: %d host(s), %d VM(s) in scope, every %ss",
                     ep.label, len(inv.hosts), sum(1 for vm in inv.vms if in_scope(
                         vm, self.names.get(vm.uuid, vm.name), cfg["vms"])), cfg["interval"])
        events = []
        # hosts
        host_state = {}
        vms_by_host = {}
        for vm in inv.vms:
            vms_by_host.setdefault(vm.host, []).append(self.names.get(vm.uuid, vm.name))
        for host in inv.hosts:
            state = host.connection_state
            host_state[host.name] = state
            before = ep.hosts.get(host.name)
            if first or before is None or before == state:
                continue
            kind = None
            if state in LOST_STATES and before in UP_STATES:
                kind = "host_connection_lost"
            elif state in UP_STATES and before in LOST_STATES:
                kind = "host_connection_back"
            if kind:
                events.append(self._event(
                    kind, host.name, virt_kind="hypervisor", virt_name=host.name, virt_uuid=host.uuid,
                    virt_host=host.name, virt_cluster=host.cluster, virt_platform=host.platform,
                    virt_connection_state=state, previous_connection_state=before,
                    virt_connection_state_raw=host.facts.get("connection_state_raw"),
                    virt_endpoint=ep.public(), vms=sorted(vms_by_host.get(host.name, [])),
                    reason="host %s is %s (was %s)" % (host.name, state, before)))
        ep.hosts = host_state
        down = {h for h, s in host_state.items() if s not in UP_STATES}

        # VMs
        seen = {}
        for vm in inv.vms:
            if not in_scope(vm, self.names.get(vm.uuid, vm.name), cfg["vms"]):
                continue
            old = ep.vms.get(vm.uuid)
            if old is None:
                seen[vm.uuid] = VmState(vm, now, first)
                continue
            st = old
            seen[vm.uuid] = st
            events.extend(self._power(ep, vm, st, now, down))
            events.extend(self._heartbeat(ep, vm, st, now))
            events.extend(self._down(ep, vm, st, now))
        ep.vms = seen
        return events

    def _power(self, ep, vm, st, now, down_hosts):
        """vm_power_changed; a power-on (seen, or a power cycle between two polls) restarts min_uptime."""
        events = []
        if vm.power_state != st.power:
            # a VM on a host that lost its connection reads 'unknown': the host event says it
            if not (vm.host in down_hosts or st.host in down_hosts) or "unknown" not in (vm.power_state, st.power):
                events.append(self._vm_event(
                    "vm_power_changed", ep, vm, "power %s -> %s" % (st.power, vm.power_state),
                    previous_power_state=st.power))
            powered_on = vm.power_state == "running" and st.power != "unknown"
        else:
            powered_on = vm.power_state == "running" and st.boot is not None and boot_id(vm) not in (None, st.boot)
            if powered_on:
                LOG.info("%s was power-cycled between two polls (boot %s -> %s)", vm.name, st.boot, boot_id(vm))
        if powered_on:
            st.powered_on_at = now
            st.lost_since = None
            st.hung_at = None
        st.boot = boot_id(vm)
        st.power = vm.power_state
        st.host, st.name = vm.host, vm.name
        return events

    def _heartbeat(self, ep, vm, st, now):
        """vm_heartbeat_lost, then vm_hung after failure_interval (never within min_uptime).
        "unknown" on a running VM (no answer either way) neither starts nor ends an episode."""
        cfg = self.cfg
        events = []
        silent = vm.heartbeat == "unknown" and vm.power_state == "running"
        if vm.heartbeat == "lost" and vm.power_state == "running":
            if st.lost_since is None:
                st.lost_since = now
                st.hung_at = None
                if st.heartbeat != "lost":
                    events.append(self._vm_event("vm_heartbeat_lost", ep, vm, "guest heartbeat lost",
                                                 previous_heartbeat=st.heartbeat))
            lost_for = now - st.lost_since
            up_for = None if st.powered_on_at is None else now - st.powered_on_at
            due = st.hung_at is None or (cfg["repeat_after"] > 0 and now - st.hung_at >= cfg["repeat_after"])
            if not due and not st.hung_noted:
                # said once per episode: the positive sign that a repeat was seen and held back
                st.hung_noted = True
                LOG.info("hypervisor_health: %s: heartbeat still lost; vm_hung already sent in this episode, "
                         "not again", vm.name)
            if due and lost_for >= cfg["failure_interval"] and (up_for is None or up_for >= cfg["min_uptime"]):
                st.hung_at = now
                st.hung_noted = False
                events.append(self._act(
                    "vm_hung", ep, vm, now,
                    "guest heartbeat lost for %ds (failure_interval %ds) on %s; detected by "
                    "virtops.unified.hypervisor_health" % (lost_for, cfg["failure_interval"], vm.host),
                    heartbeat_lost_for=round(lost_for, 1), failure_interval=cfg["failure_interval"],
                    seen_up_for=None if up_for is None else round(up_for, 1)))
        elif not silent:  # heartbeat ok, or not running: the episode ends
            st.lost_since = None
            st.hung_at = None
        if not silent:
            st.heartbeat = vm.heartbeat
        return events

    def _down(self, ep, vm, st, now):
        """vm_down: running before, down at two polls in a row, and not virtops' doing."""
        if vm.power_state == "running":
            st.running_at_wall, st.down_since, st.down_done, st.down_noted = time.time(), None, False, False
            return []
        if st.down_done and not st.down_noted and vm.power_state in ("stopped", "crashed"):
            st.down_noted = True  # once: the positive sign that the repeat was seen and held back
            LOG.info("hypervisor_health: %s: still %s; already reported in this episode, not again",
                     vm.name, vm.power_state_raw)
        if st.running_at_wall is None or vm.power_state not in ("stopped", "crashed") or st.down_done:
            return []
        if st.down_since is None:
            st.down_since = now  # wait one poll: a runbook's power cycle or audit line may be under way
            return []
        if now - st.down_since < self.cfg["interval"] * 0.9:
            return []
        st.down_done = True
        cause = vm.power_state_raw.split(":", 1)[1] if ":" in vm.power_state_raw else (
            "crashed" if vm.power_state == "crashed" else "unknown")
        if not _WORD.fullmatch(cause):  # a fixed word, never platform text (rulebooks quote it)
            cause = "unknown"
        by_virtops = self._virtops_acted(vm.uuid, st.running_at_wall)
        if cause in PLANNED_CAUSES or by_virtops:
            LOG.info("%s is %s: %s, not a fault", vm.name, vm.power_state_raw,
                     by_virtops or "a planned %s" % cause)
            return []
        return [self._act("vm_down", ep, vm, now,
                          "%s was running and is now %s (%s) on %s, and no virtops action did it; detected by "
                          "virtops.unified.hypervisor_health" % (vm.name, vm.power_state, vm.power_state_raw, vm.host),
                          cause=cause, down_for=round(now - st.down_since, 1))]

    def _virtops_acted(self, vm_uuid, since_wall):
        """Why virtops is behind this VM's power change, or None: a runbook holds
        its lock, or the audit log has an action on it since it last ran."""
        from ansible_collections.virtops.unified.plugins.module_utils import runbook
        # an interrupted run's lock is stale (its play process is gone): it explains nothing
        held = runbook.live_lock(runbook.lock_dir_path(self.cfg["lock_dir"]), vm_uuid)
        if held:
            return "a runbook holds its lock: %s" % runbook.describe_holder(held)
        # intent lines are written before an action, outcome lines after, stamped to the second
        window = time.time() - since_wall + 1
        done = runbook.recent_actions(runbook.audit_log_path(self.cfg["audit_log"]), vm_uuid, None, window)
        if done:
            return "virtops did %s at %s" % (done[-1].get("state"), done[-1].get("time"))
        return None

    def _act(self, kind, ep, vm, now, reason, **extra):
        """An event the rulebooks act on, within max_resets per reset_window;
        past the limit, vm_reset_limit_reached (once per episode) instead."""
        from ansible_collections.virtops.unified.plugins.module_utils import runbook
        cfg = self.cfg
        times = [t for t in self.acted.get(vm.uuid, []) if now - t < cfg["reset_window"]]
        audited = runbook.recent_actions(runbook.audit_log_path(cfg["audit_log"]), vm.uuid,
                                         runbook.RESTART_STATES, cfg["reset_window"])
        count = max(len(times), len(audited))
        limits = dict(resets_in_window=count, max_resets=cfg["max_resets"], reset_window=cfg["reset_window"])
        if count >= cfg["max_resets"]:
            self.acted[vm.uuid] = times
            LOG.warning("%s: %s, but max_resets reached", vm.name, reason)
            return self._vm_event(
                "vm_reset_limit_reached", ep, vm,
                "%s needs a person: %s, but it was already acted on %d time(s) within %ds (max_resets %d); "
                "automation stops here" % (vm.name, reason, count, cfg["reset_window"], cfg["max_resets"]),
                blocked_event=kind, **dict(limits, **extra))
        self.acted[vm.uuid] = times + [now]
        return self._vm_event(kind, ep, vm, reason, **dict(limits, **extra))


async def main(queue: asyncio.Queue, args: dict):
    """ansible-rulebook entry point."""
    cfg = parse_args(args)
    _import_collection()
    monitor = Monitor(cfg)
    try:
        while True:
            started = time.monotonic()
            try:
                events = await monitor.poll()
            except Exception:  # pylint: disable=broad-except
                LOG.exception("hypervisor_health: poll failed; retrying next interval")
                events = []
            for event in events:
                # a line per event: what the source sent, for the person (and the tests) reading the log
                LOG.info("hypervisor_health: sent %s for %s", event["virtops"]["type"], event["meta"]["hosts"])
                await queue.put(event)
            await asyncio.sleep(max(0.0, cfg["interval"] - (time.monotonic() - started)))
    finally:
        monitor.close()


if __name__ == "__main__":
    # Mock runner: python hypervisor_health.py '{"platform": "vmware", "hostname": ...}'
    import json

    class MockQueue:
        async def put(self, event):
            print(json.dumps(event), flush=True)

    logging.basicConfig(level=logging.INFO)
    default_args = {"platform": "libvirt", "uri": "test:///default", "interval": 5}
    mock_args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else default_args
    asyncio.run(main(MockQueue(), mock_args))
