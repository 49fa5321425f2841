# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The audit trail of the modules that act (plugin_utils/action.py, AuditTrail).
    DOCUMENTATION = r"""
options:
  reason:
    description:
      - Why this is done (an incident number, an alert). Written to the audit log.
    type: str
    default: ""
notes:
  - Every run that acts writes two JSON lines to the audit log on the controller, named by the
    variable C(virtops_audit_log), else by E(VIRTOPS_AUDIT_LOG), by default
    C(~/.ansible/virtops/audit.jsonl) - an intent line (who, via, target, reason, state before,
    plan) before the first action, and an outcome line (state after, each step with its time,
    result) with the same C(id) after it. Check mode writes nothing.
  - Fail closed - if the audit log cannot be written, nothing is done and the task says which
    path and why. A run that is interrupted leaves its intent line, which the restart limit of
    M(virtops.unified.vm_guard) counts.
  - C(who) is the controller's OS user, C(via) how the run was started (C(awx job N) from AWX's
    own job environment, C(eda ruleset/rule), C(cli)). A user name that only the job's variables
    give (C(awx_user_name)) is kept as C(claimed_user).
  - Long waits (a guest shutdown, a platform task or job, the guest heartbeat) print a progress
    line at least every 15 seconds. With C(-vvv), each call to the platform's API is shown with
    its result and its time in milliseconds; secret values are masked.
  - On failure, C(changed) is true when an action took effect before it (a VM power-cycled, moved
    or registered), false when nothing was done.
"""
