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
  - Returns C(host), the inventory hostname of the one match, or C(error), a message
    that names the closest matches when nothing matches or lists each VM (uuid and
    host) when a name matches several, so a runbook can stop cleanly and never acts
    on a guess.
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


def find_vm(target, hostvars, candidates):
    target = str(target or "").strip()
    if not target:
        return {"host": None, "error": "no target given: pass -e target=NAME_OR_UUID"}
    candidates = list(candidates or [])
    if target in candidates:
        return {"host": target, "error": None}
    machines = []
    for inv_name in candidates:
        hv = hostvars[inv_name]
        machine = model.Machine(kind=model.VM, platform=hv.get("virt_platform"), name=hv.get("virt_name") or inv_name,
                                uuid=hv.get("virt_uuid"), host=hv.get("virt_host"))
        machine.inventory_name = inv_name
        machines.append(machine)
    try:
        if _UUID.match(target):
            found = model.pick_one(machines, uuid=target, where=" in the inventory")
        else:
            found = model.pick_one(machines, name=target, where=" in the inventory")
    except model.VirtError as exc:
        return {"host": None, "error": str(exc)}
    return {"host": found.inventory_name, "error": None}


class FilterModule:
    def filters(self):
        return {"find_vm": find_vm}
