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

import getpass

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.virtops.unified.plugins.module_utils import interface, runbook
from ansible_collections.virtops.unified.plugins.module_utils.model import VirtError

display = Display()


class VirtActionBase(ActionBase):
    """Subclasses set SPEC, RULES and implement work(params, task_vars)."""

    SPEC = {}
    RULES = {}
    AUDITED = False  # power actions append one JSON line each to virtops_audit_log
    AUDIT_STATE = None  # what the audit record calls the action when there is no `state`
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
        params = validated.validated_parameters
        try:
            result.update(self.work(params, task_vars or {}))
        except VirtError as exc:
            result.update(interface.failure(exc))
        if self.AUDITED and not self._task.check_mode and (result.get("changed") or result.get("actions")):
            self.audit(task_vars or {}, params, result)
        if not self._task.diff:
            result.pop("diff", None)
        return result

    def audit(self, task_vars, params, result):
        """One line per power action: who, what, why, before/after, steps, result."""
        before, after = result.get("before") or {}, result.get("after") or {}
        record = {
            "time": runbook.now_iso(),
            "who": self.who(task_vars),
            "via": self._via(task_vars),
            "module": self._task.action,
            "state": params.get("state") or self.AUDIT_STATE,
            "reason": params.get("reason") or "",
            "target": {"name": before.get("name") or params.get("name"), "uuid": before.get("uuid") or params.get("uuid"),
                       "platform": params.get("platform"), "host": before.get("host"),
                       "inventory_name": task_vars.get("inventory_hostname")},
            "before": before.get("power_state"), "after": after.get("power_state"),
            "host_after": after.get("host"),
            "steps": result.get("actions", []),
            "result": "failed: %s" % result.get("msg") if result.get("failed") else "ok",
            "elapsed": result.get("elapsed"),
        }
        path = runbook.audit_log_path(self._templar.template(task_vars.get("virtops_audit_log")))
        try:
            runbook.append_audit(path, record)
        except OSError as exc:
            # the action happened: say loudly that its record could not be kept
            result.setdefault("warnings", []).append("audit log %s not written: %s" % (path, exc))
        result["audit_log"] = path

    @staticmethod
    def _via(task_vars):
        job = task_vars.get("awx_job_id") or task_vars.get("tower_job_id")
        if job:
            return "awx job %s" % job
        eda = task_vars.get("ansible_eda") or {}
        if isinstance(eda, dict) and eda.get("rule"):
            return "eda %s/%s" % (eda.get("ruleset"), eda.get("rule"))
        return "cli"

    def work(self, params, task_vars):
        raise NotImplementedError

    @staticmethod
    def who(task_vars):
        """The person behind the run: the AWX user if AWX launched it."""
        return task_vars.get("awx_user_name") or task_vars.get("tower_user_name") or getpass.getuser()
