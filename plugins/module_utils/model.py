# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One vocabulary for every platform: machines, states and typed errors.

Drivers return these objects; inventory plugins and modules only translate
them for Ansible. Nothing here imports Ansible.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

# Machine kinds
HYPERVISOR = "hypervisor"
VM = "vm"
BAREMETAL = "baremetal"
ENDPOINT = "endpoint"  # a manager that is not itself a host (a vCenter), listed when it cannot be read

# Normalised power states (the platform's own word is kept in power_state_raw)
RUNNING = "running"
STOPPED = "stopped"
SUSPENDED = "suspended"
PAUSED = "paused"
TRANSITIONING = "transitioning"
CRASHED = "crashed"
UNKNOWN = "unknown"
POWER_STATES = (RUNNING, STOPPED, SUSPENDED, PAUSED, TRANSITIONING, CRASHED, UNKNOWN)

# Host connection states
CONNECTED = "connected"
MAINTENANCE = "maintenance"
DISCONNECTED = "disconnected"
NOT_RESPONDING = "not_responding"
UNREACHABLE = "unreachable"
CONNECTION_STATES = (CONNECTED, MAINTENANCE, DISCONNECTED, NOT_RESPONDING, UNREACHABLE)

# Guest heartbeat
HB_OK = "ok"
HB_DEGRADED = "degraded"
HB_LOST = "lost"
HB_UNKNOWN = "unknown"
HEARTBEATS = (HB_OK, HB_DEGRADED, HB_LOST, HB_UNKNOWN)


@dataclass
class Machine:
    """A hypervisor, VM or bare-metal server as one platform reports it."""

    kind: str
    platform: str
    name: str
    uuid: str
    host: str | None = None  # inventory name of the physical host (VMs)
    cluster: str | None = None
    power_state: str = UNKNOWN
    power_state_raw: str | None = None
    heartbeat: str = HB_UNKNOWN
    connection_state: str | None = None  # hosts only
    endpoint: dict = field(default_factory=dict)  # non-secret connection data
    facts: dict = field(default_factory=dict)  # platform extras (vcpus, memory_mb, ...)
    handle: object = field(default=None, repr=False, compare=False)  # driver-private

    def to_vars(self):
        """The `virt_*` host variables of the inventory schema."""
        out = {
            "virt_kind": self.kind,
            "virt_platform": self.platform,
            "virt_name": self.name,
            "virt_uuid": self.uuid,
            "virt_cluster": self.cluster,
            "virt_power_state": self.power_state,
            "virt_power_state_raw": self.power_state_raw,
            "virt_endpoint": dict(self.endpoint),
        }
        if self.kind == VM:
            out["virt_host"] = self.host
            out["virt_heartbeat"] = self.heartbeat
        else:
            out["virt_connection_state"] = self.connection_state
        for key, value in self.facts.items():
            out["virt_" + key] = value
        return out

    def summary(self):
        """What a module returns as `before` / `after`."""
        out = {
            "name": self.name,
            "uuid": self.uuid,
            "platform": self.platform,
            "host": self.host,
            "cluster": self.cluster,
            "power_state": self.power_state,
            "power_state_raw": self.power_state_raw,
            "heartbeat": self.heartbeat,
        }
        out.update(self.facts)
        return out


@dataclass
class Inventory:
    """The result of one bulk read of a platform endpoint."""

    hosts: list = field(default_factory=list)
    vms: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


class VirtError(Exception):
    """Base of every driver error. `hint` tells the operator what to do."""

    hint = ""

    def __init__(self, message, hint=None, raw=None):
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        self.raw = raw  # the platform's own error text, kept verbatim

    def __str__(self):
        text = self.message
        if self.raw and self.raw not in text:
            text += " (platform said: %s)" % self.raw
        if self.hint:
            text += ". " + self.hint
        return text


class NotFound(VirtError):
    hint = "Check the name or uuid, or refresh the inventory if the VM was moved or deleted"


class Ambiguous(VirtError):
    hint = "Use the uuid to pick one"


class Unreachable(VirtError):
    hint = "Check that the endpoint is up and reachable from the controller"


class AuthFailed(VirtError):
    hint = "Check the credentials"


class Timeout(VirtError):
    # vm_power replaces it with one that fits the step (power.timeout_hint): only a graceful
    # shutdown is helped by force
    hint = "The platform may still be at work: check the machine there before retrying, or raise the timeout"


class Unsupported(VirtError):
    pass


class StateConflict(VirtError):
    pass


def not_found(what, wanted, known, where=""):
    """A NotFound that lists the closest known names."""
    close = difflib.get_close_matches(wanted, sorted(set(known)), n=5, cutoff=0.5)
    msg = "%s %r not found%s" % (what, wanted, where)
    if close:
        msg += "; close matches: %s" % ", ".join(close)
    return NotFound(msg)


def _listing(machines):
    return "; ".join("%s%s uuid=%s host=%s power=%s"
                     % (m.name, " [%s]" % m.platform if m.platform else "", m.uuid, m.host, m.power_state)
                     for m in machines)


def pick_one(candidates, name=None, uuid=None, where="", what="VM", expected_host=None):
    """Select the single machine matching uuid (preferred) or name.

    Identity is (endpoint, uuid, host): copies that share a uuid (libvirt
    standby definitions on other hypervisors) are distinct machines. A uuid
    that matches several picks the one on `expected_host`, else the single
    running one; none or several running is refused with the list. Names match
    exactly first, then case-insensitively; a name matching several machines
    is refused with the list. Nothing is ever acted on by guess.
    """
    candidates = list(candidates)
    if uuid:
        wanted = uuid.lower()
        hits = [m for m in candidates if m.uuid and m.uuid.lower() == wanted]
        if not hits:
            raise not_found(what + " with uuid", uuid, [m.uuid for m in candidates if m.uuid], where)
    else:
        hits = [m for m in candidates if m.name == name]
        if not hits:
            hits = [m for m in candidates if m.name.lower() == name.lower()]
        if not hits:
            raise not_found(what, name, [m.name for m in candidates], where)
    if expected_host:
        on_host = [m for m in hits if m.host == expected_host]
        if not on_host:
            raise StateConflict("%s %r is not on the expected host %s%s: %s"
                                % (what, uuid or name, expected_host, where, _listing(hits)),
                                hint="It was probably moved: refresh the inventory and retry")
        hits = on_host
    if len(hits) == 1:
        return hits[0]
    if uuid:
        running = [m for m in hits if m.power_state == RUNNING]
        if len(running) == 1:
            return running[0]
        raise Ambiguous("uuid %s matches %d copies%s and %s: %s"
                        % (uuid, len(hits), where, "none runs" if not running else "%d run" % len(running),
                           _listing(hits)),
                        hint="Say which copy with expected_host (its host); a copy that did not run is never started")
    raise Ambiguous("name %r matches %d %ss%s: %s" % (name, len(hits), what, where, _listing(hits)))


def other_running_copy(machine, candidates):
    """Another machine with the same uuid that runs on another host, or None:
    starting `machine` then would run one VM twice (a second QEMU on its disk)."""
    if not machine.uuid:
        return None
    for other in candidates:
        if other is not machine and other.uuid and other.uuid.lower() == machine.uuid.lower() \
                and other.host != machine.host and other.power_state == RUNNING:
            return other
    return None
