# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: recovery_plan
short_description: Where and in which order to restart the VMs of failed hosts
version_added: 0.1.0
description:
  - For every VM the inventory places on one of the failed hosts, in restart order
    (C(virt_restart_priority) C(high), C(medium) - the default - then C(low)), picks where
    to start it.
  - B(libvirt) - a connected hypervisor on which the same domain (same uuid) is defined;
    if it already runs on one, the VM is skipped.
  - B(vSphere) - the least loaded connected host of the same cluster and vCenter.
  - A VM gets no destination, with a C(note) saying why, when nothing qualifies.
author:
  - virtops maintainers (@virtops)
options:
  _input:
    description: Inventory names of the failed hosts.
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  vms:
    description: VM inventory names, normally C(groups['virt_vms']).
    type: list
    elements: str
    required: true
  hypervisors:
    description: Hypervisor inventory names, normally C(groups['virt_hypervisors']).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the recovery of kvm01's VMs
  ansible.builtin.set_fact:
    plan: "{{ ['kvm01'] | virtops.unified.recovery_plan(hostvars, groups['virt_vms'], groups['virt_hypervisors']) }}"
"""

RETURN = r"""
_value:
  description:
    - One dict per VM, in restart order, C(inventory_name), C(name), C(uuid), C(priority),
      C(power_state), C(destination) (or null) and C(note).
  type: list
  elements: dict
"""

from ansible_collections.virtops.unified.plugins.module_utils import placement, registry


def recovery_plan(failed, hostvars, vms, hypervisors):
    failed = list(failed or [])
    on_failed = [v for v in vms if hostvars[v].get("virt_host") in failed]
    loads = {}
    plan = []
    for vm in placement.by_priority(on_failed, hostvars):
        hv = hostvars[vm]
        entry = {"inventory_name": vm, "name": hv.get("virt_name"), "uuid": hv.get("virt_uuid"),
                 "priority": hv.get("virt_restart_priority") or "medium",
                 "power_state": hv.get("virt_power_state"), "destination": None, "note": ""}
        live = placement.peers(hv["virt_host"], hostvars, hypervisors, exclude=failed)
        style = placement.recovery_style(hv)
        if style is None:
            entry["note"] = "%s: recovery is not supported by virtops yet" % hv.get("virt_platform")
        elif style == registry.START_STANDBY:
            # standby definitions: the same VM listed on a live host
            copies = [v for v in vms if v != vm and hostvars[v].get("virt_uuid") == hv.get("virt_uuid")
                      and hostvars[v].get("virt_host") not in failed]
            running = [hostvars[c]["virt_host"] for c in copies if hostvars[c].get("virt_power_state") == "running"]
            defined = [hostvars[c]["virt_host"] for c in copies]
            if running:
                entry["note"] = "already running on %s" % running[0]
            elif not defined:
                entry["note"] = "not defined on any live hypervisor"
            else:
                load = loads.setdefault(hv["virt_host"], placement.Load(defined, hostvars, vms))
                entry["destination"] = load.take(defined)
        else:
            load = loads.setdefault(hv["virt_host"], placement.Load(live, hostvars, vms))
            target = load.take()
            if target is None:
                entry["note"] = "no connected host left in cluster %s" % (hv.get("virt_cluster") or "-")
            else:
                entry["destination"] = hostvars[target].get("virt_name") or target
        plan.append(entry)
    return plan


class FilterModule:
    def filters(self):
        return {"recovery_plan": recovery_plan}
