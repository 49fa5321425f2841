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
