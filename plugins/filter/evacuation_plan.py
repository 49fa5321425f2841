# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: evacuation_plan
short_description: Where each VM of a host should go before the host's maintenance
version_added: 0.1.0
description:
  - For every VM the inventory places on the host, picks a destination among the other
    hypervisors of the same platform and cluster (the same endpoint for hosts without a
    cluster) that are C(connected), the least loaded first, counting the VMs already
    planned onto each.
  - A VM gets no destination, with a C(note) saying why, when its platform cannot live-migrate
    through virtops or when no host qualifies.
author:
  - virtops maintainers (@virtops)
options:
  _input:
    description: Inventory name of the host to empty.
    type: str
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
- name: Plan the evacuation of esx01
  ansible.builtin.set_fact:
    plan: "{{ 'esx01' | virtops.unified.evacuation_plan(hostvars, groups['virt_vms'], groups['virt_hypervisors']) }}"
"""

RETURN = r"""
_value:
  description: One dict per VM, C(inventory_name), C(name), C(uuid), C(destination) (or null), C(note).
  type: list
  elements: dict
"""

from ansible_collections.virtops.unified.plugins.module_utils import placement, registry


def evacuation_plan(host, hostvars, vms, hypervisors):
    source = hostvars[host]
    load = placement.Load(placement.peers(host, hostvars, hypervisors), hostvars, vms)
    plan = []
    for vm in sorted(v for v in vms if hostvars[v].get("virt_host") == host):
        hv = hostvars[vm]
        entry = {"inventory_name": vm, "name": hv.get("virt_name"), "uuid": hv.get("virt_uuid"),
                 "power_state": hv.get("virt_power_state"), "destination": None, "note": ""}
        if not placement.capable(hv, registry.MIGRATE):
            entry["note"] = "%s: live migration is not supported by virtops yet" % hv.get("virt_platform")
        else:
            target = load.take()
            if target is None:
                entry["note"] = "no other connected host in cluster %s" % (source.get("virt_cluster") or "-")
            else:
                entry["destination"] = hostvars[target].get("virt_name") or target
        plan.append(entry)
    return plan


class FilterModule:
    def filters(self):
        return {"evacuation_plan": evacuation_plan}
