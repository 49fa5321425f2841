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
import os
import time
import uuid as uuidlib

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.virtops.unified.plugins.module_utils import interface, registry, runbook
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
            # only borrow the endpoint when the platform is borrowed too; an unknown
            # platform fails in the work, with the list of known ones
            platform = registry.platforms().get(args["platform"])
            if platform is not None:
                for key in platform.endpoint_keys():
                    if key in endpoint and key not in args:
                        args[key] = endpoint[key]
                self.fill_from_source(args, platform, task_vars.get("virt_source"))
        if not args.get("name") and not args.get("uuid") and host_vars.get("virt_kind") == "vm":
            args["uuid"] = host_vars.get("virt_uuid")
        return args

    def fill_from_source(self, args, platform, source):
        """The connection options the task does not give, from the inventory source the host
        came from, re-read through Ansible's loader (so !vault values decrypt): configure an
        endpoint once, there. The platform's environment fallbacks still come after these."""
        if not source or not os.path.isfile(source):
            return
        try:
            config = self._loader.load_from_file(source) or {}
        except Exception as exc:  # pylint: disable=broad-except
            display.warning("could not re-read the inventory source %s for its connection options: %s"
                            % (source, type(exc).__name__))
            return
        if not isinstance(config, dict):
            return
        for opt in platform.options:
            if opt.name in args or config.get(opt.name) is None:
                continue
            value = config[opt.name]
            args[opt.name] = str(value) if opt.type == "str" else value  # a vaulted value decrypts here

    def progress(self, message):
        """Shown while the task waits, so a person can follow long steps."""
        display.display("  %s" % message)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self.fill_from_host(dict(self._task.args), task_vars)
        validated = ArgumentSpecValidator(self.SPEC, **self.RULES).validate(args)
        if validated.error_messages:
            result.update(failed=True, msg="; ".join(validated.error_messages))
            return result
        params = validated.validated_parameters
        audit = None
        if self.AUDITED and not self._task.check_mode:
            audit = AuditTrail(self, task_vars, params)
        try:
            if audit:
                audit.check()  # fail closed: no record, no action
                result.update(self.work(params, task_vars, intent=audit.intent))
            else:
                result.update(self.work(params, task_vars))
        except VirtError as exc:
            result.update(interface.failure(exc))
        except BaseException as exc:  # Ctrl-C, a worker killed mid-action: leave a trace
            if audit and audit.intent_written:
                audit.outcome({"failed": True, "msg": "interrupted (%s)" % type(exc).__name__}, quiet=True)
            raise
        if audit and audit.intent_written:
            audit.outcome(result)
        if not self._task.diff:
            result.pop("diff", None)
        return result

    @staticmethod
    def via(task_vars):
        """How the run was started. AWX's job id is read from the job's environment
        (JOB_ID, which AWX's RunJob.build_env sets and a launcher cannot), never
        from awx_job_id, an extra var that a launch with prompted variables can override."""
        job = os.environ.get("JOB_ID")
        if job:
            return "awx job %s" % job
        claimed = task_vars.get("awx_job_id") or task_vars.get("tower_job_id")
        if claimed:
            return "cli (claims awx job %s)" % claimed
        eda = task_vars.get("ansible_eda") or {}
        if isinstance(eda, dict) and eda.get("rule"):
            return "eda %s/%s" % (eda.get("ruleset"), eda.get("rule"))
        return "cli"

    def work(self, params, task_vars, intent=None):
        """Do the task. Audited plugins get `intent(vm, steps)`, to call before the first action."""
        raise NotImplementedError

    @staticmethod
    def who(task_vars):
        """Who runs this, as a fact: the controller's OS user (under AWX, the
        execution environment's). The person AWX says launched a job is in AWX's
        own record of that job (see via()); its awx_user_name extra var is only
        what the job's variables claim, since AWX lays the launcher's extra vars
        over its own, so it is recorded apart as `claimed_user`."""
        return getpass.getuser()

    @staticmethod
    def claimed_user(task_vars):
        return str(task_vars.get("awx_user_name") or task_vars.get("tower_user_name") or "") or None


class AuditTrail:
    """The audit lines of one audited task: an intent line before the first
    power action, the outcome line after, both with the same id. If the intent
    cannot be written the action is not taken; a run that dies in between
    leaves its intent, which the restart limit counts and the event source
    reads as virtops at work."""

    def __init__(self, action, task_vars, params):
        self.action = action
        self.task_vars = task_vars
        self.params = params
        self.path = runbook.audit_log_path(action._templar.template(task_vars.get("virtops_audit_log")))
        self.id = uuidlib.uuid4().hex
        self.begun = time.monotonic()
        self.intent_written = False
        self.target = None
        self.before = None

    def check(self):
        runbook.check_audit_writable(self.path)

    def _base(self):
        params, task_vars, action = self.params, self.task_vars, self.action
        record = {
            "time": runbook.now_iso(),
            "id": self.id,
            "who": action.who(task_vars),
            "via": action.via(task_vars),
            "module": action._task.action,
            "state": params.get("state") or action.AUDIT_STATE,
            "reason": params.get("reason") or "",
        }
        if os.environ.get("JOB_ID"):
            record["awx_job_id"] = os.environ["JOB_ID"]
        claimed = action.claimed_user(task_vars)
        if claimed:
            record["claimed_user"] = claimed
        return record

    def intent(self, vm, steps):
        """Called by the work once the machine and the plan are known."""
        before = vm.summary()
        self.before = before
        self.target = {"name": before.get("name"), "uuid": before.get("uuid"), "platform": before.get("platform"),
                       "host": before.get("host"), "inventory_name": self.task_vars.get("inventory_hostname")}
        record = dict(self._base(), phase="intent", target=self.target, before=before.get("power_state"),
                      plan=[dict(step) for step in steps])
        runbook.append_audit(self.path, record)  # AuditError: the action is not taken
        self.intent_written = True

    def outcome(self, result, quiet=False):
        """The outcome line; a failure to write it fails the task (its intent stays)."""
        before = result.get("before") or self.before or {}
        after = result.get("after") or {}
        record = dict(self._base(), phase="outcome", target=self.target,
                      before=before.get("power_state"), after=after.get("power_state"),
                      host_after=after.get("host"), steps=result.get("actions", []),
                      result="failed: %s" % result.get("msg") if result.get("failed") else "ok",
                      elapsed=result.get("elapsed", round(time.monotonic() - self.begun, 2)))
        try:
            runbook.append_audit(self.path, record)
        except runbook.AuditError as exc:
            if quiet:
                return
            done = ", ".join("%s=%s" % (a.get("action"), a.get("result")) for a in result.get("actions", []))
            result.update(failed=True, msg="%s; the action was taken (%s) but its outcome is not on record: %s"
                          % (result.get("msg") or "done", done, exc))
        result["audit_log"] = self.path
