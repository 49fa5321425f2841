#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_migrate
short_description: Live-migrate a VM to another host of its endpoint
version_added: 0.1.0
description:
  - Moves a VM to O(destination_host), a host of the same endpoint, and waits until the
    platform reports it there. A VM already on that host is left alone.
  - With O(moves), moves several VMs of one endpoint, one after the other in the order given,
    through one connection (one login to vCenter, not one per VM).
    It stops at the first VM that cannot move; RV(moves) says, for every VM, whether it was
    moved, failed, or not tried. Each VM has its own intent and outcome lines in the audit log.
  - Supported where the platform declares live migration (vSphere vMotion and Oracle VM, storage
    unchanged). Other platforms (libvirt) fail with a clear error and change nothing.
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
    description:
      - Inventory name of the host to move the VM to (the ESXi host name on vSphere).
      - Required with O(name) or O(uuid); with O(moves) each move names its own.
    type: str
  moves:
    description:
      - The VMs to move, in order, instead of O(name) or O(uuid) and O(destination_host).
      - With O(on_failure=stop), the task fails at the first VM that cannot move (it was not
        where O(expected_host) says, it is not found, the migration failed); the VMs after it
        are not tried. With O(on_failure=continue), the others are still moved and the task
        fails at the end, listing each VM that did not move.
    type: list
    elements: dict
    suboptions:
      uuid:
        description: The VM's uuid (the instance uuid on vSphere). One of O(moves[].uuid) or O(moves[].name).
        type: str
      name:
        description: The VM's name on the platform; a name that matches more than one VM is refused.
        type: str
      destination_host:
        description: The host to move this VM to.
        type: str
        required: true
      expected_host:
        description: Refuse unless this VM runs on this host; defaults to the task's O(expected_host).
        type: str
  expected_host:
    description: Refuse, changing nothing, unless the VM currently runs on this host.
    type: str
  on_failure:
    description:
      - With O(moves), what a VM that cannot move does to the ones after it.
      - V(stop) stops there; V(continue) goes on with the next VM (an evacuation moves all it can).
        An endpoint that cannot be reached, or an audit line that cannot be written, stops the
        moves either way.
    type: str
    choices: [stop, continue]
    default: stop
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

- name: Empty esx01 through one vCenter session, in this order
  hosts: esx01
  gather_facts: false
  tasks:
    - name: Move its VMs, stopping at the first that cannot move
      virtops.unified.vm_migrate:
        expected_host: esx01
        moves:
          - {uuid: 5029a3f0-6f4a-4f1e-9d52-1c2f0b0e6a11, destination_host: esx02}
          - {uuid: 50293c44-0d8e-4b8e-8a7b-3e9c5d4f2b22, destination_host: esx03}
      register: moved

    - name: Show where each went
      ansible.builtin.debug:
        msg: "{{ moved.moves | map(attribute='name') | zip(moved.moves | map(attribute='result')) }}"

- name: Move a VM on a vCenter outside the inventory (module_defaults)
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
    - name: Move web01 to esx02 with vMotion
      virtops.unified.vm_migrate:
        name: web01
        destination_host: esx02

# Credentials: give them in one of these places, never as ad-hoc arguments
# (ansible ... -m virtops.unified.vm_migrate -a 'password=...'), which ansible-core itself echoes in its
# error output when an argument is wrong. First found wins (README, "Credentials"):
#   - the task or module_defaults (a vaulted variable, as below);
#   - the variable virtops_credentials, {endpoint id: options}, vaulted;
#   - the files AWX credentials of the virtops types write (VIRTOPS_CREDENTIALS_<PLATFORM>);
#   - the inventory source the host came from (inline, !vault, or its env: lookups);
#   - the environment of ansible-playbook: VMWARE_USER / VMWARE_PASSWORD,
#     OVM_USERNAME / OVM_PASSWORD, LIBVIRT_DEFAULT_URI.

- name: Credentials per vCenter from a vaulted variable
  hosts: virt_host_esx01
  gather_facts: false
  serial: 1
  vars_files:
    # virtops_credentials:
    #   vcenter2.example.com: {username: svc-virtops@vsphere.local, password: !vault | ...}
    - credentials.vault.yml
  tasks:
    - name: Move it to esx02
      virtops.unified.vm_migrate:
        destination_host: esx02
        expected_host: esx01
"""

RETURN = r"""
before:
  description: The VM before the move.
  returned: without O(moves)
  type: dict
after:
  description: The VM as read after the move; C(after.host) is the new host.
  returned: without O(moves), on success
  type: dict
moves:
  description:
    - With O(moves), one entry per move asked for, in the same order, also when the task failed.
    - C(result) is C(moved), C(already there), C(would move) (check mode), C(failed) (with
      C(msg) and C(error_type)) or C(not tried) (with C(msg)).
    - C(before) and C(after) are the VM as read before and after its move, as in RV(before)
      and RV(after); C(elapsed) the seconds its move took.
  returned: with O(moves)
  type: list
  elements: dict
  sample: [{name: web01, uuid: 5029a3f0-6f4a-4f1e-9d52-1c2f0b0e6a11, destination_host: esx02, result: moved,
            before: {host: esx01, power_state: running}, after: {host: esx02, power_state: running}, elapsed: 9.2},
           {name: web02, uuid: 50293c44-0d8e-4b8e-8a7b-3e9c5d4f2b22, destination_host: esx03, result: failed,
            error_type: StateConflict, msg: "web02 (50293c44-...) runs on esx04, not on the expected host esx01; nothing was done",
            elapsed: 0.1},
           {name: null, uuid: 5029e0aa-2d1b-4c55-b0c1-7a7e6f2d9c33, destination_host: esx02, result: not tried,
            msg: "not tried, the moves stopped at web02"}]
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
