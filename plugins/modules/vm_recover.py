#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_recover
short_description: Start a VM of a failed host on another host
version_added: 0.1.0
description:
  - For a VM whose host has failed, starts it on O(destination_host) and waits until it runs.
  - B(libvirt) - the domain must be defined on the destination hypervisor (shared storage,
    standby definition); it is started there. The action plugin connects to the
    destination's endpoint taken from its inventory variables.
  - B(vSphere) - the VM is removed from the failed host's inventory and registered from its
    C(.vmx) on the destination host (same datastore), then powered on.
  - A VM that already runs on a live host is left alone (RV(skipped_reason)).
  - With O(recoveries), several VMs are started one after the other, in the order given (the
    restart priority), through one connection per endpoint (vSphere - one vCenter login for all;
    libvirt - one per destination hypervisor), each with its own audit intent and outcome.
    A VM that cannot be recovered does not stop the others; the task fails if one was not
    recovered, and RV(recoveries) says what happened to each.
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
    support: none
options:
  destination_host:
    description:
      - Inventory name of the host to start the VM on.
      - Required with O(name) or O(uuid); not with O(recoveries).
    type: str
  failed_host:
    description: The failed host; filled from the targeted host's C(virt_host).
    type: str
  recoveries:
    description:
      - Several VMs to recover, in this order, instead of O(name) or O(uuid). Each VM's connection
        comes from its own inventory host (found by its uuid in the group C(virt_vms)).
    type: list
    elements: dict
    suboptions:
      name:
        description: The VM's name; or O(recoveries[].uuid).
        type: str
      uuid:
        description: The VM's uuid; or O(recoveries[].name).
        type: str
      destination_host:
        description: Inventory name of the host to start it on.
        type: str
        required: true
      failed_host:
        description: Its failed host; filled from its inventory host's C(virt_host).
        type: str
  wait_timeout:
    description: Seconds to wait for the VM to run.
    type: int
    default: 600
  wait_for_heartbeat:
    description: Also wait for the guest heartbeat.
    type: bool
    default: false
seealso:
  - module: virtops.unified.vm_power
"""

EXAMPLES = r"""
- name: Start db01 on the standby hypervisor kvm02
  hosts: db01_kvm01
  gather_facts: false
  tasks:
    - name: Recover
      virtops.unified.vm_recover:
        destination_host: kvm02
        reason: kvm01 lost power

- name: Start three VMs of a dead ESXi host, high priority first, through one vCenter session
  hosts: web01
  gather_facts: false
  tasks:
    - name: Recover
      virtops.unified.vm_recover:
        recoveries:
          - {uuid: 5003a1b2-0000-0000-0000-000000000001, destination_host: esx02}
          - {uuid: 5003a1b2-0000-0000-0000-000000000002, destination_host: esx03}
          - {uuid: 5003a1b2-0000-0000-0000-000000000003, destination_host: esx02}
        reason: esx01 lost power

- name: Start a VM of a dead hypervisor on a standby one, the connection set once (module_defaults)
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/virtops.unified.vm:    # vm_power, vm_info, vm_migrate, vm_recover, host_maintenance
      platform: libvirt
      uri: qemu+ssh://root@kvm02/system   # SSH keys, no password in the URI
      hypervisor_name: kvm02
  tasks:
    - name: Recover db01 on kvm02
      virtops.unified.vm_recover:
        name: db01
        destination_host: kvm02
        reason: kvm01 lost power

# Credentials: give them in one of these places, never as ad-hoc arguments
# (ansible ... -m virtops.unified.vm_recover -a 'password=...'), which ansible-core itself echoes in its
# error output when an argument is wrong. First found wins (README, "Credentials"):
#   - the task or module_defaults (a vaulted variable, as below);
#   - the variable virtops_credentials, {endpoint id: options}, vaulted;
#   - the files AWX credentials of the virtops types write (VIRTOPS_CREDENTIALS_<PLATFORM>);
#   - the inventory source the host came from (inline, !vault, or its env: lookups);
#   - the environment of ansible-playbook: VMWARE_USER / VMWARE_PASSWORD,
#     OVM_USERNAME / OVM_PASSWORD, LIBVIRT_DEFAULT_URI.

- name: Credentials per vCenter from a vaulted variable
  hosts: web01
  gather_facts: false
  vars_files:
    # virtops_credentials:
    #   vcenter.example.com: {username: svc-virtops@vsphere.local, password: !vault | ...}
    - credentials.vault.yml
  tasks:
    - name: Recover on esx02
      virtops.unified.vm_recover:
        destination_host: esx02
        reason: esx01 lost power
"""

RETURN = r"""
before:
  description: The VM before.
  returned: always
  type: dict
after:
  description: The VM as read after it was started.
  returned: always
  type: dict
actions:
  description: Steps run, with their times and results.
  returned: always
  type: list
  elements: dict
recoveries:
  description:
    - With O(recoveries), one entry per VM, in the order given - C(name), C(uuid),
      C(destination_host), C(result) (C(recovered), C(already running), C(would recover),
      C(failed), C(not tried)), C(before), C(after), C(actions), C(elapsed), C(msg) on failure,
      C(skipped_reason) when it already runs.
  returned: with recoveries
  type: list
  elements: dict
skipped_reason:
  description: Why nothing was done.
  returned: when the VM already runs on a live host
  type: str
elapsed:
  description: Seconds the task took.
  returned: always
  type: float
"""

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.entry import run_module


def main():
    run_module(interface.RECOVER_SPEC, interface.RECOVER_RULES, lambda module: interface.run_recover(module.params, check_mode=module.check_mode))


if __name__ == "__main__":
    main()
