# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import interface, runbook
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase


class ActionModule(VirtActionBase):
    SPEC = interface.GUARD_SPEC
    RULES = interface.GUARD_RULES

    def fill_from_host(self, args, task_vars):
        # controller-side only: the VM's identity, no platform connection. The uuid is
        # what the lock and the count are keyed on, however the task names the VM.
        if not args.get("uuid") and task_vars.get("virt_kind") == "vm":
            host_name = self._templar.template(task_vars.get("virt_name"))
            if args.get("name") in (None, host_name, task_vars.get("inventory_hostname")):
                args["uuid"] = self._templar.template(task_vars.get("virt_uuid"))
                args.setdefault("name", host_name)
        if "audit_log" not in args and task_vars.get("virtops_audit_log"):
            args["audit_log"] = self._templar.template(task_vars["virtops_audit_log"])
        if "lock_dir" not in args and task_vars.get("virtops_lock_dir"):
            args["lock_dir"] = self._templar.template(task_vars["virtops_lock_dir"])
        return args

    def work(self, params, task_vars, intent=None):
        # the lock belongs to the play's process, not to this task's short-lived worker
        who = "%s via %s" % (self.who(task_vars), self.via(task_vars))
        if self.claimed_user(task_vars):
            who += " (claims %s)" % self.claimed_user(task_vars)
        return interface.run_guard(params, who, check_mode=self._task.check_mode, holder=runbook.play_holder())
