#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_guard
short_description: Runbook guard for one VM - a per-VM lock and a limit on repeated restarts
version_added: 0.1.0
description:
  - With O(state=locked), refuses when the VM was already restarted O(max_actions) times
    within O(window) seconds (counted from the audit log that M(virtops.unified.vm_power)
    writes), or when another runbook holds the VM's lock; otherwise takes the lock and
    returns its RV(token).
  - With O(state=unlocked), gives the lock back (only if O(token) still owns it).
  - The lock belongs to the process that runs the play (C(ansible-playbook), also under
    ansible-runner, AWX and ansible-rulebook), not to the task, so it holds until the
    runbook gives it back or that process ends. It records that process's pid and start
    time, the controller's host name and boot id.
  - A lock is taken over, with a warning and a C(lock_taken_over) line in the audit log,
    only when its holder is provably gone (that process no longer runs on this
    controller, or the controller rebooted) or the lock is older than O(stale_after)
    seconds. Take-over and release are serialised by a POSIX record lock, so two runs
    never both take a stale lock. A lock file that cannot be read is taken over only
    by age.
  - Lock and count are keyed on the machine's uuid, so a VM named in two ways (inventory
    name, platform name) is one machine. Without a uuid the module refuses.
  - Runs on the controller only; it talks to no platform. Against a VM host of a virtops
    inventory O(uuid) and O(name) are filled from C(virt_uuid) and C(virt_name),
    O(audit_log) from the variable C(virtops_audit_log) and O(lock_dir) from
    C(virtops_lock_dir).
  - Locks live on the controller's file system, so they serialise the runbooks of one
    controller, or of several controllers that share O(lock_dir) (NFS with working
    POSIX locks).
  - It refuses when the audit log cannot be written, since a take-over must be on record.
author:
  - virtops maintainers (@virtops)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Checks the limit and an existing lock; takes no lock.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  name:
    description: Name of the VM, for messages.
    type: str
  uuid:
    description:
      - Stable id of the VM; the lock and the count are keyed on it. Required, unless the
        task runs against the VM's inventory host (then C(virt_uuid) is used).
    type: str
  state:
    description: Take (C(locked)) or give back (C(unlocked)) the lock.
    type: str
    default: locked
    choices: [locked, unlocked]
  token:
    description: The RV(token) returned when the lock was taken; required to unlock.
    type: str
  runbook:
    description: Name of the runbook taking the lock, shown to anyone refused by it.
    type: str
    default: runbook
  max_actions:
    description: How many O(count_states) actions on this VM are allowed within O(window).
    type: int
    default: 3
  window:
    description: The sliding window, in seconds (default 24 hours, as vSphere HA VM monitoring).
    type: int
    default: 86400
  count_states:
    description: The M(virtops.unified.vm_power) states that count against O(max_actions).
    type: list
    elements: str
    default: [restarted, reset]
  lock_dir:
    description:
      - Directory of the lock files on the controller. Filled from the variable C(virtops_lock_dir).
      - If not set, the environment variable E(VIRTOPS_LOCK_DIR) is used.
    type: path
    default: ~/.ansible/virtops/locks
  stale_after:
    description: Seconds after which a lock is considered abandoned even if its holder still runs.
    type: int
    default: 3600
  audit_log:
    description:
      - The audit log to count past actions in. Filled from the variable C(virtops_audit_log).
      - If not set, the environment variable E(VIRTOPS_AUDIT_LOG) is used.
    type: path
    default: ~/.ansible/virtops/audit.jsonl
seealso:
  - module: virtops.unified.vm_power
"""

EXAMPLES = r"""
- name: Restart a VM, one runbook at a time, at most 3 times a day
  hosts: db01
  gather_facts: false
  tasks:
    - name: Take the VM's lock
      virtops.unified.vm_guard:
        runbook: restart_vm
      register: guard

    - name: Restart it, and always give the lock back
      block:
        - name: Power-cycle
          virtops.unified.vm_power:
            state: restarted
            force: true
      always:
        - name: Release the lock
          virtops.unified.vm_guard:
            state: unlocked
            token: "{{ guard.token }}"
          when: guard.token is defined
"""

RETURN = r"""
token:
  description: Owner token of the lock taken.
  returned: state=locked, not in check mode
  type: str
lock:
  description: Path of the lock file.
  returned: state=locked, not in check mode
  type: str
recent_actions:
  description: How many counted actions on this VM are in the window.
  returned: state=locked
  type: int
locked:
  description: Whether this task holds the lock now.
  returned: always
  type: bool
"""

import getpass

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.entry import run_module


def main():
    run_module(interface.GUARD_SPEC, interface.GUARD_RULES,
               lambda module: interface.run_guard(module.params, getpass.getuser(), check_mode=module.check_mode))


if __name__ == "__main__":
    main()
