# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vm_records
short_description: The VMs of a virtops inventory as plain records, sorted cluster, host, name
version_added: 0.1.0
description:
  - Turns the C(virt_*) variables of the given VM hosts into one flat dict each, the
    shape the reports and the mapping ledger write (CSV columns, JSON objects).
  - Sorted by cluster, host and name so that two exports compare line by line.
author:
  - virtops maintainers (@virtops)
options:
  _input:
    description: Inventory hostnames of VMs, normally C(groups['virt_vms']).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Every VM with its host, as records
  ansible.builtin.set_fact:
    mapping: "{{ groups['virt_vms'] | default([]) | virtops.unified.vm_records(hostvars) }}"
"""

RETURN = r"""
_value:
  description:
    - One dict per VM with C(name), C(inventory_name), C(uuid), C(platform), C(host),
      C(cluster), C(power_state), C(power_state_raw), C(heartbeat), C(restart_priority),
      C(stale) (last-known VM of a host that could not be read) and C(last_seen).
  type: list
  elements: dict
"""


def vm_records(names, hostvars):
    out = []
    for inv_name in names or []:
        hv = hostvars[inv_name]
        out.append({
            "name": hv.get("virt_name") or inv_name,
            "inventory_name": inv_name,
            "uuid": hv.get("virt_uuid"),
            "platform": hv.get("virt_platform"),
            "host": hv.get("virt_host"),
            "cluster": hv.get("virt_cluster"),
            "power_state": hv.get("virt_power_state"),
            "power_state_raw": hv.get("virt_power_state_raw"),
            "heartbeat": hv.get("virt_heartbeat"),
            "restart_priority": hv.get("virt_restart_priority") or "medium",
            "stale": bool(hv.get("virt_stale")),
            "last_seen": hv.get("virt_last_seen"),
        })
    out.sort(key=lambda r: (r["cluster"] or "", r["host"] or "", r["name"], r["uuid"] or ""))
    return out


class FilterModule:
    def filters(self):
        return {"vm_records": vm_records}
