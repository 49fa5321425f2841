# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base of the vm_* action plugins: target from inventory, work on the controller.

A play that targets VM hosts of a virtops inventory needs no connection
settings: platform, endpoint and uuid come from the host's virt_* variables.
The work itself runs here, in the controller's Python, through the same
module_utils code as the module, so there is one implementation and no
connection to the VM is ever opened.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.model import VirtError

display = Display()


class VirtActionBase(ActionBase):
    """Subclasses set SPEC, RULES and implement work(params)."""

    SPEC = {}
    RULES = {}
    TRANSFERS_FILES = False
    _requires_connection = False  # never connect to the VM itself
    _supports_check_mode = True

    def fill_from_host(self, args, task_vars):
        """Default the platform, endpoint and uuid to the targeted host's virt_* vars."""
        host_vars = self._templar.template({
            key: task_vars.get(key) for key in ("virt_kind", "virt_platform", "virt_endpoint", "virt_uuid")
        })
        if not host_vars.get("virt_platform"):
            return args  # not a virtops host: the task must say everything
        endpoint = host_vars.get("virt_endpoint") or {}
        if "platform" not in args:
            args["platform"] = host_vars["virt_platform"]
            # only borrow the endpoint when the platform is borrowed too
            for key in interface.ENDPOINT_KEYS:
                if key in endpoint and key not in args:
                    args[key] = endpoint[key]
        if not args.get("name") and not args.get("uuid") and host_vars.get("virt_kind") == "vm":
            args["uuid"] = host_vars.get("virt_uuid")
        return args

    def progress(self, message):
        """Shown while the task waits, so a person can follow long steps."""
        display.display("  %s" % message)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.fill_from_host(dict(self._task.args), task_vars or {})
        validated = ArgumentSpecValidator(self.SPEC, **self.RULES).validate(args)
        if validated.error_messages:
            result.update(failed=True, msg="; ".join(validated.error_messages))
            return result
        try:
            result.update(self.work(validated.validated_parameters))
        except VirtError as exc:
            result.update(interface.failure(exc))
        if not self._task.diff:
            result.pop("diff", None)
        return result

    def work(self, params):
        raise NotImplementedError
