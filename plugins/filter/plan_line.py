# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: plan_line
short_description: One line of text for an evacuation or recovery plan entry, with its outcome
version_added: 0.1.0
description:
  - Formats C(name -> destination  outcome) for an entry of M(virtops.unified.evacuation_plan#filter).
  - The outcome is the VM host's O(outcome_var) variable when O(hostvars) is given
    and it is set, else the entry's C(note), else C(planned).
author:
  - virtops maintainers (@virtops)
options:
  _input:
    description: A plan entry.
    type: dict
    required: true
  hostvars:
    description: The C(hostvars) magic variable, to show what happened to each VM.
    type: dict
  outcome_var:
    description: The host variable in which the runbook recorded what happened to the VM.
    type: str
    default: evacuate_host_outcome
"""

EXAMPLES = r"""
- name: Show a plan
  ansible.builtin.debug:
    msg: "{{ plan | map('virtops.unified.plan_line') | list }}"
"""

RETURN = r"""
_value:
  description: The line.
  type: str
"""


def plan_line(entry, hostvars=None, outcome_var="evacuate_host_outcome"):
    outcome = entry.get("note") or "planned"
    if hostvars is not None:
        outcome = hostvars[entry["inventory_name"]].get(outcome_var) or outcome
    fields = (entry.get("name"), entry.get("power_state") or "", entry.get("destination") or "(stays)", outcome)
    return "%-24s %-10s -> %-14s %s" % fields


class FilterModule:
    def filters(self):
        return {"plan_line": plan_line}
