# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import interface, registry
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase


class ActionModule(VirtActionBase):
    SPEC = interface.RECOVER_SPEC
    RULES = interface.RECOVER_RULES
    AUDITED = True
    AUDIT_STATE = "recovered"

    def fill_from_host(self, args, task_vars):
        args = super().fill_from_host(args, task_vars)
        # one endpoint per host (libvirt): the VM is started through the destination's endpoint
        dest = (task_vars.get("hostvars") or {}).get(args.get("destination_host")) or {}
        endpoint = self._templar.template(dest.get("virt_endpoint") or {})
        platform = registry.platforms().get(args.get("platform"))
        if platform is not None and platform.scope == registry.HOST and endpoint:
            args.update({key: endpoint[key] for key in platform.endpoint_keys() if key in endpoint})
        if "failed_host" not in args and task_vars.get("virt_host"):
            args["failed_host"] = self._templar.template(task_vars["virt_host"])
        return args

    def work(self, params, task_vars, intent=None):
        return interface.run_recover(params, check_mode=self._task.check_mode, progress=self.progress, intent=intent)
