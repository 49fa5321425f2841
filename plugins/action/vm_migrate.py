# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase


class ActionModule(VirtActionBase):
    SPEC = interface.MIGRATE_SPEC
    RULES = interface.MIGRATE_RULES
    AUDITED = True
    AUDIT_STATE = "migrated"

    def fill_from_host(self, args, task_vars):
        # with `moves` the VMs are named there: the targeted host's own uuid is not one of them
        named = "name" in args or "uuid" in args
        args = super().fill_from_host(args, task_vars)
        if "moves" in args and not named:
            args.pop("uuid", None)
        return args

    def work(self, params, task_vars, intent=None):
        if not params.get("moves"):
            return interface.run_migrate(params, check_mode=self._task.check_mode, progress=self.progress,
                                         intent=intent, trace=self.tracer)
        # several VMs in one task: one audit trail per VM (VirtActionBase.run_each)
        return self.run_each(lambda trail: interface.run_migrate(params, check_mode=self._task.check_mode,
                                                                 progress=self.progress, trail=trail,
                                                                 trace=self.tracer),
                             params, task_vars, intent, params["moves"])
