#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_migrate
short_description: Live-migrate a VM to another host (vMotion)
version_added: 0.1.0
description:
  - Moves a VM to O(destination_host), a host of the same endpoint, and waits until the
    platform reports it there. A VM already on that host is left alone.
  - Supported on vSphere (vMotion, storage unchanged). Other platforms fail with a clear
    error and change nothing.
  - Runs on the controller. Against a host of a virtops inventory no connection
    options are needed.
author:
  - virtops maintainers (@virtops)
extends_documentation_fragment:
  - virtops.unified.connection
  - virtops.unified.target
  - virtops.unified.audited
  - virtops.unified.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  destination_host:
    description: Inventory name of the host to move the VM to (the ESXi host name on vSphere).
    type: str
    required: true
  expected_host:
    description: Refuse, changing nothing, unless the VM currently runs on this host.
    type: str
  wait_timeout:
    description: Seconds to wait for the migration to finish.
    type: int
    default: 3600
seealso:
  - module: virtops.unified.vm_power
"""

EXAMPLES = r"""
- name: Move a VM off esx01 before maintenance
  hosts: virt_host_esx01
  gather_facts: false
  serial: 1
  tasks:
    - name: Move it to esx02 with vMotion
      virtops.unified.vm_migrate:
        destination_host: esx02
        expected_host: esx01
"""

RETURN = r"""
before:
  description: The VM before the move.
  returned: always
  type: dict
after:
  description: The VM as read after the move; C(after.host) is the new host.
  returned: always
  type: dict
elapsed:
  description: Seconds the task took.
  returned: always
  type: float
"""

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.entry import run_module


def main():
    run_module(interface.MIGRATE_SPEC, interface.MIGRATE_RULES, lambda module: interface.run_migrate(module.params, check_mode=module.check_mode))


if __name__ == "__main__":
    main()
