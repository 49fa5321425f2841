# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vm_line
short_description: One aligned line of text about a VM, for reports in play output
version_added: 0.1.0
description:
  - Formats the C(virt_*) variables of a VM host as C(name  power  host  cluster  platform  uuid).
author:
  - virtops maintainers (@virtops)
options:
  _input:
    description: The host variables of a VM (for example C(hostvars[name])).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Print every VM
  ansible.builtin.debug:
    msg: "{{ groups['virt_vms'] | map('extract', hostvars) | map('virtops.unified.vm_line') | list }}"
"""

RETURN = r"""
_value:
  description: The line.
  type: str
"""


def vm_line(hostvars):
    return "%-24s %-12s %-12s %-10s %-8s %s" % (
        hostvars.get("virt_name"), hostvars.get("virt_power_state"), hostvars.get("virt_host"),
        hostvars.get("virt_cluster") or "-", hostvars.get("virt_platform"), hostvars.get("virt_uuid"),
    )


class FilterModule:
    def filters(self):
        return {"vm_line": vm_line}
