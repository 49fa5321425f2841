#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_power
short_description: Start, stop, restart, reset or suspend a VM on any supported platform
version_added: 0.1.0
description:
  - One interface to the power of a virtual machine, whatever runs it.
  - The VM is found by O(uuid) (preferred) or O(name). A name that matches more than
    one VM is refused, listing the candidates with uuid and host; nothing is touched.
  - The module plans the steps from the VM's current state, then runs them, waiting
    for each to take effect. Check mode returns the same plan without running it.
    Asking for the state the VM is already in changes nothing.
  - O(state=stopped) asks the guest to shut down; if it has not stopped after
    O(shutdown_timeout) seconds the module fails, or with O(force=true) powers it off.
  - O(state=restarted) is a full power cycle (graceful stop, forced off if needed and
    allowed, start), so it also clears a hung guest. A VM that is off is started.
  - The VM is read before acting (RV(before)) and after (RV(after)) through the same
    connection, so a task logs in once where the platform has logins (vCenter).
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
    details: Returns the planned steps in RV(actions) with C(result=planned).
  diff_mode:
    support: full
options:
  state:
    description:
      - C(started) - running (a paused VM is resumed, a suspended one restored).
      - C(stopped) - graceful guest shutdown; see O(force).
      - C(poweredoff) - hard power off at once.
      - C(restarted) - graceful stop, forced off with O(force) after O(shutdown_timeout), then start.
      - C(reset) - hard reset without a power cycle.
      - C(suspended) - memory saved to disk and the host's resources released.
    type: str
    required: true
    choices: [started, stopped, poweredoff, restarted, reset, suspended]
  force:
    description:
      - Power the VM off when the graceful shutdown has not finished within O(shutdown_timeout).
      - Also allows stopping a paused or suspended VM, discarding its saved state.
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for a graceful shutdown before escalating or failing.
    type: int
    default: 120
  wait:
    description:
      - Wait until the VM has reached the final state. Intermediate steps are always waited on.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for each step other than the graceful shutdown.
    type: int
    default: 300
  wait_for_heartbeat:
    description:
      - After starting, also wait until the guest answers (QEMU guest agent ping on libvirt,
        the VMware Tools heartbeat on vSphere).
      - V(true) or V(false) (or another spelling of a boolean), or V(auto) - wait only if the
        guest's heartbeat was V(ok) before acting (the C(heartbeat) of RV(before) is then read from the
        guest where the platform reads it only on demand), since a guest that did not answer
        before will not answer after a restart either.
    type: raw
    default: false
  expected_host:
    description:
      - Inventory name of the host the VM must be running on. If it runs elsewhere the
        module refuses and changes nothing.
    type: str
seealso:
  - module: virtops.unified.vm_info
  - plugin: virtops.unified.libvirt
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Restart every VM of group web, escalating to power-off after 60 s
  hosts: web
  gather_facts: false
  tasks:
    - name: Power-cycle the VM through its hypervisor
      virtops.unified.vm_power:
        state: restarted
        force: true
        shutdown_timeout: 60

- name: Stop one domain on an explicit hypervisor
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Graceful shutdown, refused if the VM is not on kvm01
      virtops.unified.vm_power:
        platform: libvirt
        uri: test:///default
        hypervisor_name: kvm01
        name: test
        state: stopped
        expected_host: kvm01
        force: true

- name: Restart a VM, waiting for its guest only if it answered before
  hosts: db01
  gather_facts: false
  tasks:
    - name: Power-cycle, refused unless it runs where the inventory says
      virtops.unified.vm_power:
        state: restarted
        force: true
        expected_host: "{{ virt_host }}"
        wait_for_heartbeat: auto
      register: restarted

    - name: Show where it runs now and whether its guest answers
      ansible.builtin.debug:
        msg: "{{ restarted.after.power_state }} on {{ restarted.after.host }}, heartbeat {{ restarted.after.heartbeat }}"

- name: One endpoint outside the inventory for every virtops task of the play (module_defaults)
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
    - name: Restart web01 on that vCenter
      virtops.unified.vm_power:
        name: web01
        state: restarted
        force: true
        reason: INC-1234

# Credentials: give them in one of these places, never as ad-hoc arguments
# (ansible ... -m virtops.unified.vm_power -a 'password=...'), which ansible-core itself echoes in its
# error output when an argument is wrong. First found wins (README, "Credentials"):
#   - the task or module_defaults (a vaulted variable, as below);
#   - the variable virtops_credentials, {endpoint id: options}, vaulted;
#   - the files AWX credentials of the virtops types write (VIRTOPS_CREDENTIALS_<PLATFORM>);
#   - the inventory source the host came from (inline, !vault, or its env: lookups);
#   - the environment of ansible-playbook: VMWARE_USER / VMWARE_PASSWORD,
#     OVM_USERNAME / OVM_PASSWORD, LIBVIRT_DEFAULT_URI.

- name: Credentials per endpoint from a vaulted variable, for VMs of the inventory
  hosts: virt_vms:&web
  gather_facts: false
  serial: 1
  vars_files:
    # group_vars/all/credentials.yml works the same. Its content, each value vaulted with
    # ansible-vault encrypt_string --name password:
    #   virtops_credentials:
    #     vcenter2.example.com: {username: svc-virtops@vsphere.local, password: !vault | ...}
    #     ovmm.example.com: {username: admin, password: !vault | ...}
    - credentials.vault.yml
  tasks:
    - name: Restart through the hypervisor, with the credentials of the VM's endpoint
      virtops.unified.vm_power:
        state: restarted
        force: true
"""

RETURN = r"""
before:
  description:
    - The VM as read before acting, also on failure once it was found (as in
      P(virtops.unified.vm_info#module)'s C(vms)).
    - C(heartbeat) is read from the guest when it matters (O(wait_for_heartbeat=auto), a graceful
      shutdown); otherwise, on libvirt, it may be C(unknown) (not asked).
  returned: always
  type: dict
  sample: {name: db01, uuid: 6695eb01-f6a4-8304-79aa-97f2502e193f, host: kvm01, cluster: null,
           power_state: running, power_state_raw: running, heartbeat: ok, platform: libvirt}
after:
  description:
    - The VM as read back through the platform after the last step (same as RV(before) in check
      mode or when nothing was to be done), with the same keys as RV(before).
    - C(heartbeat) is the one waited for when a C(heartbeat) step ran.
    - On a failure where a wait read the VM (a timeout), the state last seen.
  returned: success, and on failure when a wait read the VM
  type: dict
  sample: {name: db01, uuid: 6695eb01-f6a4-8304-79aa-97f2502e193f, host: kvm01, cluster: null,
           power_state: running, power_state_raw: running, heartbeat: ok, platform: libvirt}
actions:
  description:
    - Steps run (or, in check mode, planned), in order, with the time each began, how
      long it took and its result (C(ok), C(timeout), C(planned), C(not waited), C(refused) when the
      platform would not take it, C(failed)). A platform task or job that ran out of time is C(timeout).
    - A graceful shutdown that timed out is followed by the C(poweroff) it escalated to.
  returned: always
  type: list
  elements: dict
  sample: [{action: shutdown, started: "2026-11-26T09:00:00+00:00", elapsed: 60.1, result: timeout},
           {action: poweroff, started: "2026-11-26T09:01:00+00:00", elapsed: 0.4, result: ok},
           {action: start, started: "2026-11-26T09:01:01+00:00", elapsed: 0.7, result: ok}]
elapsed:
  description: Seconds the whole task took.
  returned: always
  type: float
changed:
  description:
    - Whether the VM's power was acted on. On failure too it is true when a power action took effect
      before it (a step C(ok), C(not waited) or C(timeout), for example a VM power-cycled whose guest
      heartbeat never came), false when nothing was done.
  returned: always
  type: bool
diff:
  description:
    - With C(--diff), RV(before) has C(power_state) and C(power_state_raw); RV(after) the same as read
      back (in check mode C(power_state_raw) says it was not read, when the state changes) and
      C(path), the way from one to the other, one arrow per step, for example
      C(running -(shutdown)-> stopped -(start)-> running); an escalation reads
      C(-(shutdown timeout, poweroff)->); in check mode it is the planned path and ends C((planned)).
      With O(wait_for_heartbeat), both carry C(heartbeat).
  returned: with --diff
  type: dict
error_type:
  description: On failure, the kind of error (NotFound, Ambiguous, Unreachable, AuthFailed, Timeout, StateConflict, ...).
  returned: failed
  type: str
"""

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.entry import run_module


def main():
    run_module(interface.POWER_SPEC, interface.POWER_RULES, lambda module: interface.run_power(module.params, check_mode=module.check_mode))


if __name__ == "__main__":
    main()
