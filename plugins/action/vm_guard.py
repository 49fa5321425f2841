# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase


class ActionModule(VirtActionBase):
    SPEC = interface.GUARD_SPEC
    RULES = interface.GUARD_RULES

    def fill_from_host(self, args, task_vars):
        # controller-side only: the VM's identity, no platform connection
        if not args.get("name") and not args.get("uuid") and task_vars.get("virt_kind") == "vm":
            args["uuid"] = self._templar.template(task_vars.get("virt_uuid"))
            args.setdefault("name", self._templar.template(task_vars.get("virt_name")))
        if "audit_log" not in args and task_vars.get("virtops_audit_log"):
            args["audit_log"] = self._templar.template(task_vars["virtops_audit_log"])
        return args

    def work(self, params, task_vars):
        return interface.run_guard(params, self.who(task_vars), check_mode=self._task.check_mode)
