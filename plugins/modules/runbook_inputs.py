#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: runbook_inputs
short_description: Read a runbook's inputs from the extra vars only, as data
version_added: 0.1.0
description:
  - The inputs that choose which machines a runbook acts on (and why) must come from the
    person or the job that runs it, through C(-e), an AWX survey or an Event-Driven Ansible
    rule, never from inventory data. This reads each of O(names) from the run's extra vars
    and refuses when a name is set anywhere else (C(group_vars), C(host_vars), inventory
    variables, play variables) without being set as an extra var, saying so.
  - The values are returned in RV(inputs) as plain data, never as templates, so a value that
    carries platform text (a VM name in an EDA event) is not evaluated by Jinja later on.
  - Runs on the controller as an action plugin; it talks to no platform.
author:
  - virtops maintainers (@virtops)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  names:
    description: The extra vars the runbook reads.
    type: list
    elements: str
    required: true
  defaults:
    description: Values for names that are not given.
    type: dict
    default: {}
seealso:
  - module: virtops.unified.vm_guard
"""

EXAMPLES = r"""
- name: Read the target and the reason (extra vars only)
  virtops.unified.runbook_inputs:
    names: [target, reason]
    defaults:
      reason: ""
  register: inputs

- name: Use them
  ansible.builtin.debug:
    msg: "restarting {{ inputs.inputs.target }} because {{ inputs.inputs.reason }}"
"""

RETURN = r"""
inputs:
  description: Each name of O(names) with its extra var value, or its O(defaults) value, or null.
  returned: always
  type: dict
  sample: {target: db01, reason: "hung, INC-1234"}
given:
  description: The names that were given as extra vars.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"names": {"type": "list", "elements": "str", "required": True},
                                          "defaults": {"type": "dict", "default": {}}},
                           supports_check_mode=True)
    module.fail_json(msg="virtops.unified.runbook_inputs runs as an action plugin on the controller; "
                         "it cannot run as a module on a remote host")


if __name__ == "__main__":
    main()
