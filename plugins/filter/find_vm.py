# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: find_vm
short_description: Resolve a VM name or uuid to exactly one inventory host
version_added: 0.1.0
description:
  - Looks the target up among the VM hosts of a virtops inventory, by inventory
    hostname, by C(virt_uuid), then by C(virt_name) (exact, then case-insensitive).
  - An inventory hostname that is also the C(virt_name) of another VM (two sources
    with one name, where the source read first gets the plain hostname) is looked up
    as a name, so it is refused as ambiguous unless O(expected_host) picks one.
  - Returns C(host), the inventory hostname of the one match, or C(error), a message
    that names the closest matches when nothing matches or lists each VM (uuid and
    host) when a name matches several, so a runbook can stop cleanly and never acts
    on a guess.
  - Copies that share a uuid are distinct machines (identity is endpoint, uuid and
    host). A uuid that matches several picks the one on O(expected_host), else the
    single running one; none or several running is an error listing them.
  - Also an error, so that nothing is started by mistake, when the VM is not running
    and another copy with its uuid runs on another host; when its host is
    disconnected, not responding or unreachable; and when it is only known from the
    last read of a host that could not be read (C(virt_stale)).
author:
  - virtops maintainers (@virtops)
options:
  _input:
    description: VM name, inventory hostname or uuid.
    type: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  candidates:
    description: Inventory hostnames to search, normally C(groups['virt_vms']).
    type: list
    elements: str
    required: true
  expected_host:
    description:
      - The host the VM must be on. Picks one of several copies that share a uuid
        (libvirt standby definitions); a VM elsewhere is refused.
    type: str
"""

EXAMPLES = r"""
- name: Resolve the runbook's target
  ansible.builtin.set_fact:
    found: "{{ target | virtops.unified.find_vm(hostvars, groups['virt_vms'] | default([])) }}"

- name: Stop if it is unknown or ambiguous
  ansible.builtin.fail:
    msg: "{{ found.error }}"
  when: found.error is not none
"""

RETURN = r"""
_value:
  description: C(host) (inventory hostname or null) and C(error) (message or null).
  type: dict
"""

import re

from ansible_collections.virtops.unified.plugins.module_utils import model

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def _machines(hostvars, candidates):
    machines = []
    for inv_name in candidates:
        hv = hostvars[inv_name]
        machine = model.Machine(kind=model.VM, platform=hv.get("virt_platform"), name=str(hv.get("virt_name") or inv_name),
                                uuid=hv.get("virt_uuid"), host=hv.get("virt_host"),
                                power_state=hv.get("virt_power_state") or model.UNKNOWN)
        machine.inventory_name = inv_name
        machine.stale = hv.get("virt_stale")
        machine.last_seen = hv.get("virt_last_seen")
        machine.unreachable = (hv.get("virt_unreachable_endpoint"), hv.get("virt_unreachable_since"))
        machines.append(machine)
    return machines


def find_vm(target, hostvars, candidates, expected_host=None):
    target = str(target or "").strip()
    if not target:
        return {"host": None, "error": "no target given: pass -e target=NAME_OR_UUID"}
    candidates = list(candidates or [])
    machines = _machines(hostvars, candidates)
    by_inventory = {m.inventory_name: m for m in machines}
    # an inventory name that is also another VM's name on its platform (two sources, one
    # name: the first source read got the plain inventory name) is as ambiguous as the name
    shared = target in by_inventory and any(m.name == target and m.inventory_name != target for m in machines)
    try:
        if target in by_inventory and not shared:
            found = by_inventory[target]
            if expected_host and found.host != expected_host:
                raise model.StateConflict("%s is on %s in the inventory, not on the expected host %s"
                                          % (target, found.host, expected_host))
        elif _UUID.match(target):
            found = model.pick_one(machines, uuid=target, where=" in the inventory", expected_host=expected_host)
        else:
            found = model.pick_one(machines, name=target, where=" in the inventory", expected_host=expected_host)
        if found.stale:
            endpoint, since = found.unreachable
            raise model.Unreachable(
                "%s (%s): endpoint %s unreachable since %s; the VM was last seen on %s at %s; nothing was done"
                % (found.name, found.uuid, endpoint or found.host, since or "the last read", found.host,
                   found.last_seen),
                hint="Its state is unknown: check the endpoint; if its host is dead, recover_host_failure.yml")
        host_state = (hostvars[found.host].get("virt_connection_state") if found.host in hostvars else None)
        if host_state in (model.DISCONNECTED, model.NOT_RESPONDING, model.UNREACHABLE):
            raise model.StateConflict(
                "%s (%s): its host %s is %s, so its state cannot be known; nothing was done"
                % (found.name, found.uuid, found.host, host_state),
                hint="Check the host first. If it is dead, recover its VMs (recover_host_failure.yml); "
                     "a host that is only cut off may still run the VM")
        if found.power_state != model.RUNNING:
            other = model.other_running_copy(found, machines)
            if other is not None:
                raise model.StateConflict(
                    "%s on %s is a copy of uuid %s, which runs on %s (%s): starting it would run the VM twice"
                    % (found.inventory_name, found.host, found.uuid, other.host, other.inventory_name),
                    hint="Target the copy that runs (%s)" % other.inventory_name)
    except model.NotFound as exc:
        return {"host": None, "error": str(exc) + _unread(hostvars)}
    except model.VirtError as exc:
        return {"host": None, "error": str(exc)}
    return {"host": found.inventory_name, "error": None}


def _unread(hostvars):
    """For a VM not found: the endpoints the inventory could not read (the VM may be there)."""
    unread = []
    for name in hostvars:
        hv = hostvars[name]
        if hv.get("virt_kind") not in (None, model.VM) and hv.get("virt_connection_state") == model.UNREACHABLE \
                and hv.get("virt_error") and not hv.get("virt_stale"):
            unread.append("%s (%s): %s" % (name, hv.get("virt_platform"), hv.get("virt_error")))
    if not unread:
        return ""
    return ". It may be on an endpoint the inventory could not read: %s" % "; ".join(sorted(unread))


def find_vms(targets, hostvars, candidates, expected_host=None):
    """Resolve a runbook's target input: a list of names, or one string.

    A string that names one VM as a whole is that VM (names may hold commas);
    otherwise it is split on commas. Each result carries `wanted`."""
    if isinstance(targets, (list, tuple)):
        wanted = [str(t).strip() for t in targets]
    else:
        text = str(targets or "").strip()
        names = set(candidates or []) | {str(hostvars[c].get("virt_name")) for c in candidates or []}
        wanted = [text] if text in names or "," not in text else [t.strip() for t in text.split(",")]
    wanted = [t for t in wanted if t]
    return [dict(find_vm(t, hostvars, candidates, expected_host), wanted=t) for t in wanted]


class FilterModule:
    def filters(self):
        return {"find_vm": find_vm, "find_vms": find_vms}
