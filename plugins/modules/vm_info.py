#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_info
short_description: Read where a VM runs and its power and guest state, on any supported platform
version_added: 0.1.0
description:
  - Reads one VM by O(uuid) or O(name), or every VM and host of the endpoint when
    neither is given (one bulk read).
  - A name that matches more than one VM is refused, listing the candidates.
  - Runs on the controller. Against a host of a virtops inventory no connection
    options are needed.
author:
  - virtops maintainers (@virtops)
extends_documentation_fragment:
  - virtops.unified.connection
  - virtops.unified.target
  - virtops.unified.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
options:
  heartbeat:
    description: Ask the guest for a heartbeat (QEMU guest agent ping) when reading one VM.
    type: bool
    default: true
seealso:
  - module: virtops.unified.vm_power
"""

EXAMPLES = r"""
- name: Where does each targeted VM run right now?
  hosts: virt_vms
  gather_facts: false
  tasks:
    - name: Read the VM through its hypervisor
      virtops.unified.vm_info:
      register: live

    - name: Show it
      ansible.builtin.debug:
        msg: "{{ live.vms[0].name }} runs on {{ live.vms[0].host }}: {{ live.vms[0].power_state }}"

- name: Every domain of one hypervisor
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Bulk read
      virtops.unified.vm_info:
        platform: libvirt
        uri: test:///default
      register: all_domains

- name: Every VM of one Oracle VM Manager, the connection set once (module_defaults)
  hosts: localhost
  gather_facts: false
  vars_files:
    - ovm.vault.yml              # vault_ovm_password: !vault | ... (ansible-vault encrypt_string)
  module_defaults:
    group/virtops.unified.vm:    # vm_power, vm_info, vm_migrate, vm_recover, host_maintenance
      platform: ovm
      hostname: ovmm.example.com
      ca_path: /etc/pki/ovm/ovmm-ca.pem
      username: admin
      password: "{{ vault_ovm_password }}"
  tasks:
    - name: Bulk read
      virtops.unified.vm_info:
      register: pool

# Credentials: give them in one of these places, never as ad-hoc arguments
# (ansible ... -m virtops.unified.vm_info -a 'password=...'), which ansible-core itself echoes in its
# error output when an argument is wrong. First found wins (README, "Credentials"):
#   - the task or module_defaults (a vaulted variable, as below);
#   - the variable virtops_credentials, {endpoint id: options}, vaulted;
#   - the files AWX credentials of the virtops types write (VIRTOPS_CREDENTIALS_<PLATFORM>);
#   - the inventory source the host came from (inline, !vault, or its env: lookups);
#   - the environment of ansible-playbook: VMWARE_USER / VMWARE_PASSWORD,
#     OVM_USERNAME / OVM_PASSWORD, LIBVIRT_DEFAULT_URI.

- name: Credentials from the environment of ansible-playbook, or the inventory source
  # VMWARE_USER=svc-virtops@vsphere.local VMWARE_PASSWORD="$(pass vcenter)" ansible-playbook ...
  # or, with none set, from the inventory source the host came from (prod.vmware.yml:
  # username and password inline, as !vault values, or as its env: lookups)
  hosts: virt_vms
  gather_facts: false
  tasks:
    - name: Read the VM through its endpoint
      virtops.unified.vm_info:
"""

RETURN = r"""
vms:
  description: The VMs read, one dict each.
  returned: always
  type: list
  elements: dict
  sample: [{name: db01, uuid: 6695eb01-f6a4-8304-79aa-97f2502e193f, host: kvm01, cluster: null,
            platform: libvirt, power_state: running, power_state_raw: running, heartbeat: ok,
            persistent: true, vcpus: 2, memory_mb: 2048}]
hosts:
  description: The hypervisors of the endpoint, when no VM was named.
  returned: always
  type: list
  elements: dict
elapsed:
  description: Seconds the read took.
  returned: always
  type: float
"""

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.entry import run_module


def main():
    run_module(interface.INFO_SPEC, interface.INFO_RULES, lambda module: interface.run_info(module.params))


if __name__ == "__main__":
    main()
