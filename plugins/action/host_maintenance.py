# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase


class ActionModule(VirtActionBase):
    SPEC = interface.MAINTENANCE_SPEC
    RULES = {}

    def fill_from_host(self, args, task_vars):
        args = super().fill_from_host(args, task_vars)
        if not args.get("name") and task_vars.get("virt_kind") == "hypervisor":
            args["name"] = self._templar.template(task_vars.get("virt_name"))
        return args

    def work(self, params, task_vars):
        return interface.run_maintenance(params, check_mode=self._task.check_mode, progress=self.progress,
                                         trace=self.tracer)
