#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_maintenance
short_description: Put a hypervisor in or out of maintenance mode
version_added: 0.1.0
description:
  - Enters (O(state=present)) or leaves (O(state=absent)) maintenance mode on a host and
    waits until the platform reports it. vSphere refuses to enter while VMs run on the
    host, so move them first (the C(evacuate_host) runbook does).
  - Supported on vSphere. Other platforms fail with a clear error and change nothing.
  - Runs on the controller. Against a hypervisor host of a virtops inventory no
    connection options are needed; O(name) is filled from C(virt_name).
author:
  - virtops maintainers (@virtops)
extends_documentation_fragment:
  - virtops.unified.connection
  - virtops.unified.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  name:
    description: Name of the host on its platform (the ESXi host name).
    type: str
    required: true
  state:
    description: C(present) to enter maintenance mode, C(absent) to leave it.
    type: str
    default: present
    choices: [present, absent]
  wait_timeout:
    description: Seconds to wait for the platform to finish.
    type: int
    default: 3600
  reason:
    description: Why; shown with the result.
    type: str
    default: ""
seealso:
  - module: virtops.unified.vm_migrate
"""

EXAMPLES = r"""
- name: Maintenance on esx01 once it is empty
  hosts: esx01
  gather_facts: false
  tasks:
    - name: Enter maintenance mode
      virtops.unified.host_maintenance:
        state: present

- name: Maintenance of a host of a vCenter outside the inventory (module_defaults)
  hosts: localhost
  gather_facts: false
  vars_files:
    - vcenter.vault.yml          # vault_vcenter_password: !vault | ... (ansible-vault encrypt_string)
  module_defaults:
    group/virtops.unified.vm:    # vm_power, vm_info, vm_migrate, vm_recover, host_maintenance
      platform: vmware
      hostname: vcenter.example.com
      username: svc-virtops@vsphere.local
      password: "{{ vault_vcenter_password }}"
  tasks:
    - name: Leave maintenance mode
      virtops.unified.host_maintenance:
        name: esx01
        state: absent

# Credentials: give them in one of these places, never as ad-hoc arguments
# (ansible ... -m virtops.unified.host_maintenance -a 'password=...'), which ansible-core itself echoes in its
# error output when an argument is wrong. First found wins (README, "Credentials"):
#   - the task or module_defaults (a vaulted variable, as below);
#   - the variable virtops_credentials, {endpoint id: options}, vaulted;
#   - the files AWX credentials of the virtops types write (VIRTOPS_CREDENTIALS_<PLATFORM>);
#   - the inventory source the host came from (inline, !vault, or its env: lookups);
#   - the environment of ansible-playbook: VMWARE_USER / VMWARE_PASSWORD,
#     OVM_USERNAME / OVM_PASSWORD, LIBVIRT_DEFAULT_URI.

- name: Credentials per vCenter from a vaulted variable
  hosts: esx01
  gather_facts: false
  vars_files:
    # virtops_credentials:
    #   vcenter.example.com: {username: svc-virtops@vsphere.local, password: !vault | ...}
    - credentials.vault.yml
  tasks:
    - name: Enter maintenance mode
      virtops.unified.host_maintenance:
        state: present
"""

RETURN = r"""
host:
  description: The host acted on.
  returned: always
  type: str
maintenance:
  description: Whether the host is in maintenance mode afterwards.
  returned: always
  type: bool
elapsed:
  description: Seconds the task took.
  returned: always
  type: float
"""

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.entry import run_module


def main():
    run_module(interface.MAINTENANCE_SPEC, {}, lambda module: interface.run_maintenance(module.params, check_mode=module.check_mode))


if __name__ == "__main__":
    main()
