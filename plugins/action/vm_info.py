# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase


class ActionModule(VirtActionBase):
    SPEC = interface.INFO_SPEC
    RULES = interface.INFO_RULES

    def work(self, params, task_vars):
        return interface.run_info(params, trace=self.tracer)
