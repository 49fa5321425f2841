# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase


class ActionModule(VirtActionBase):
    SPEC = interface.POWER_SPEC
    RULES = interface.POWER_RULES
    AUDITED = True

    def work(self, params, task_vars, intent=None):
        return interface.run_power(params, check_mode=self._task.check_mode, progress=self.progress, intent=intent,
                                   trace=self.tracer)
