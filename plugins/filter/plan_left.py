# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: plan_left
short_description: The entries of an evacuation or recovery plan that did not reach their goal
version_added: 0.1.0
description:
  - An entry reached its goal when the VM host's O(done_var) variable is true (the runbook's
    role sets it on success), or when its C(note) says the VM already runs elsewhere.
  - Every other entry is left over, with or without a destination, so that a runbook can exit
    non-zero unless it did all it was asked to.
author:
  - virtops maintainers (@virtops)
options:
  _input:
    description: A plan from P(virtops.unified.recovery_plan#filter) or P(virtops.unified.evacuation_plan#filter).
    type: list
    elements: dict
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  done_var:
    description: The host variable that says the VM reached its goal.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Fail unless every VM moved
  ansible.builtin.fail:
    msg: "not moved: {{ plan | virtops.unified.plan_left(hostvars, 'evacuate_host_moved') | map(attribute='name') | join(', ') }}"
  when: plan | virtops.unified.plan_left(hostvars, 'evacuate_host_moved') | length > 0
"""

RETURN = r"""
_value:
  description: The entries left over, in plan order.
  type: list
  elements: dict
"""


def plan_left(plan, hostvars, done_var):
    left = []
    for entry in plan or []:
        if str(entry.get("note") or "").startswith("already running"):
            continue
        name = entry.get("inventory_name")
        done = hostvars[name].get(done_var) if name in hostvars else None
        if done is not True:
            left.append(entry)
    return left


class FilterModule:
    def filters(self):
        return {"plan_left": plan_left}
