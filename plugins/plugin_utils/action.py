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
from ansible.module_utils.common.parameters import remove_values
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
        """Default the platform and uuid to the targeted host's virt_* vars, and keep the
        host's endpoint (virt_endpoint) and inventory source (virt_source) for
        fill_credentials(), which runs after this (and after a subclass's own filling)."""
        host_vars = self._templar.template({
            key: task_vars.get(key) for key in ("virt_kind", "virt_platform", "virt_endpoint", "virt_uuid")
        })
        if not host_vars.get("virt_platform"):
            return args  # not a virtops host: the task must say everything
        if "platform" not in args:
            args["platform"] = host_vars["virt_platform"]
            # only borrow the endpoint when the platform is borrowed too; an unknown
            # platform fails in the work, with the list of known ones
            self._host_endpoint = dict(host_vars.get("virt_endpoint") or {})
            self._host_source = self._templar.template(task_vars.get("virt_source"))
        if not args.get("name") and not args.get("uuid") and host_vars.get("virt_kind") == "vm":
            args["uuid"] = host_vars.get("virt_uuid")
        return args

    # --- connection options: where each one comes from ------------------------------
    # 1. the task's arguments and module_defaults (self._task.args);
    # 2. the variable virtops_credentials: {endpoint id: {option: value}} (vault it);
    # 3. the credentials files named by VIRTOPS_CREDENTIALS_* (an AWX credential of each
    #    platform writes one; the task's own platform's file is read first);
    # 4. the inventory source the host came from (re-read, so !vault and env work), then the
    #    host's virt_endpoint, as the inventory recorded it;
    # 5. the platform's environment fallbacks and defaults (registry.Platform.resolve).
    # The endpoint id (registry.Platform.endpoint_id: vCenter host name, libvirt hypervisor
    # name else URI) is taken from the task's arguments, else from the host's virt_endpoint,
    # else from the environment; the option it came from is never changed by 2.-4.
    CREDENTIALS_VAR = "virtops_credentials"

    def fill_credentials(self, args, task_vars):
        """Fill the connection options the task does not give, level by level (above)."""
        platform = registry.platforms().get(args.get("platform"))
        if platform is None or not any(opt.name in self.SPEC for opt in platform.options):
            return args
        host_endpoint = getattr(self, "_host_endpoint", None) or {}
        id_name, ids, origin = self._endpoint_of(platform, args, host_endpoint)
        if origin is host_endpoint and id_name not in args:
            args[id_name] = host_endpoint[id_name]  # the host's endpoint is the one to reach
        endpoint_id = ids[0] if ids else None
        layers = []
        if ids:
            layers.append(self._from_variable(platform, ids, task_vars))
            layers += self._from_files(platform, ids)
        layers.append(self.fill_from_source(platform, getattr(self, "_host_source", None), ids))
        if host_endpoint and platform.endpoint_id(host_endpoint) == endpoint_id:
            layers.append(("the host's virt_endpoint", host_endpoint))
        for opt in platform.options:
            if opt.name in args:
                continue
            for where, options in layers:
                value = options.get(opt.name)
                if value is None:
                    continue
                if not isinstance(value, (bool, int, float)):
                    value = str(value)  # text, or a vaulted value, which decrypts here
                try:
                    value = platform.convert(opt.name, value)  # "443" from AWX is a port
                except VirtError:
                    raise VirtError("%s: option %s of %s is not of type %s" % (where, opt.name, endpoint_id, opt.type)) from None
                args[opt.name] = value
                break
        return args

    @staticmethod
    def _endpoint_of(platform, args, host_endpoint):
        """(option, ids, where): the endpoint the task reaches, named by the task's endpoint
        options when it gives one, else by the host's virt_endpoint, else by the environment
        fallbacks. ids: its endpoint id first (registry.Platform.endpoint_id), then the values
        of its other id options (a libvirt URI), under which a map may list it too."""
        for where in (args, host_endpoint):  # first the task's, never a mix of both
            named = [n for n in platform.id_options if where.get(n) not in (None, "")]
            if named:
                ids = []
                for name in named:
                    if str(where[name]) not in ids:
                        ids.append(str(where[name]))
                return named[0], ids, where
        for name in platform.id_options:
            opt = platform.option(name)
            value = next((os.environ[e] for e in (opt.env if opt else ()) if os.environ.get(e)), None)
            if value:
                return name, [value], None
        return None, [], None

    def _entry(self, platform, where, entries, ids):
        """The options of one endpoint in a credentials map (under its first id found), checked."""
        if not isinstance(entries, dict):
            raise VirtError("%s is not a mapping of endpoint ids to connection options" % where,
                            hint='For example {"vcenter.example.com": {"username": ..., "password": ...}}')
        endpoint_id = next((i for i in ids if entries.get(i) is not None), None)
        if endpoint_id is None:
            return {}
        entry = entries[endpoint_id]
        if not isinstance(entry, dict):
            raise VirtError("%s: the entry for %s is not a mapping of connection options" % (where, endpoint_id))
        if entry.get("platform") not in (None, platform.name):
            return {}  # another platform's endpoint of the same name
        unknown = sorted(str(k) for k in entry if k != "platform" and platform.option(str(k)) is None)
        if unknown:
            display.warning("%s: %s takes no option %s (%s options: %s)" % (
                where, endpoint_id, ", ".join(unknown), platform.name, ", ".join(o.name for o in platform.options)))
        return entry

    def _from_variable(self, platform, ids, task_vars):
        entries = self._templar.template(task_vars.get(self.CREDENTIALS_VAR))
        if entries is None:
            return (self.CREDENTIALS_VAR, {})
        return (self.CREDENTIALS_VAR, self._entry(platform, self.CREDENTIALS_VAR, entries, ids))

    def _from_files(self, platform, ids):
        """One layer per VIRTOPS_CREDENTIALS_* file: the platform's own first, then the others."""
        own = platform.credentials_env()
        names = sorted((n for n in os.environ if n.startswith(registry.CREDENTIALS_ENV) and os.environ[n]),
                       key=lambda n: (n != own, n))
        layers = []
        for name in names:
            path = os.environ[name]
            where = "the credentials file of %s" % name
            try:
                entries = self._loader.load_from_file(path)
            except Exception as exc:  # pylint: disable=broad-except
                raise VirtError("%s (%s) cannot be read: %s" % (where, path, type(exc).__name__),
                                hint="An AWX credential writes it for each job; outside AWX, point %s at a "
                                     "YAML or JSON file (it may be vaulted) or unset it" % name) from None
            layers.append((where, self._entry(platform, where, entries or {}, ids)))
        return layers

    def fill_from_source(self, platform, source, ids):
        """The connection options of this endpoint in the inventory source the host came
        from, re-read through Ansible's loader (so !vault values decrypt): configure an
        endpoint once, there. A source that lists several endpoints (libvirt's hypervisors)
        gives the entry of this endpoint; one that does not name its endpoint (its host
        name from the environment) gives its options to the endpoint the host is on."""
        where = "the inventory source %s" % source
        if not source or not os.path.isfile(source):
            return (where, {})
        try:
            config = self._loader.load_from_file(source) or {}
        except Exception as exc:  # pylint: disable=broad-except
            display.warning("could not re-read the inventory source %s for its connection options: %s"
                            % (source, type(exc).__name__))
            return (where, {})
        if not isinstance(config, dict):
            return (where, {})
        entries = platform.source_endpoints(config)
        named = [e for e in entries if any(str(e.get(n)) in ids for n in platform.id_options if e.get(n) is not None)]
        unnamed = [e for e in entries if platform.endpoint_id(e) is None]
        return (where, (named or unnamed or [{}])[0])

    def mask(self, message):
        """The line with every secret value of this task masked."""
        for secret in sorted(getattr(self, "_secrets", ()), key=len, reverse=True):
            message = message.replace(secret, "********")
        return message

    def progress(self, message):
        """Shown while the task waits, so a person can follow long steps."""
        display.display("  %s" % self.mask(message))

    def trace(self, message):
        """One platform API call (what, status, milliseconds), shown with -vvv."""
        display.vvv("  %s" % self.mask(message))

    @property
    def tracer(self):
        """`trace` when the run shows -vvv lines, else None (the drivers then time nothing)."""
        return self.trace if display.verbosity >= 3 else None

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        self._host_endpoint = self._host_source = None
        self._secrets = set()
        try:
            args = self.fill_from_host(dict(self._task.args), task_vars)
            args = self.fill_credentials(args, task_vars)
        except VirtError as exc:
            result.update(interface.failure(exc))
            return result
        validated = ArgumentSpecValidator(self.SPEC, **self.RULES).validate(args)
        # whatever the level a secret came from, it is masked in the result, the audit log and
        # the progress lines: Ansible masks no_log values of the task's own arguments only
        self._secrets = self.secret_values(args, validated)
        if validated.error_messages:
            result.update(failed=True, msg="; ".join(validated.error_messages))
            return self.scrub(result)
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
        result = self.scrub(result)
        if audit and audit.intent_written:
            audit.outcome(result)
        if not self._task.diff:
            result.pop("diff", None)
        return result

    def secret_values(self, args, validated):
        """The secret connection values of this task, wherever they came from: the no_log
        values of the validated arguments (the task's, the credentials maps' and files',
        the inventory source's) and the platform's environment fallbacks of secret options."""
        values = set(getattr(validated, "_no_log_values", ()) or ())
        platform = registry.platforms().get(args.get("platform"))
        for opt in platform.options if platform else ():
            if opt.secret:
                values.add(args.get(opt.name))
                values.update(os.environ.get(e) for e in opt.env)
        return {str(v) for v in values if v not in (None, "") and str(v)}

    def scrub(self, result):
        """The result with every secret value masked, as AnsibleModule masks no_log values."""
        if not self._secrets:
            return result
        return remove_values(result, self._secrets)

    def run_each(self, run, params, task_vars, intent, items, on_key=None, names=None):
        """A task that acts on several VMs (`items`, each naming its VM by uuid or name):
        `run(trail)` gets `trail(item)`, which hands out that VM's own audit trail (intent,
        then outcome, one id; its lines name the VM's inventory host), or None in check mode.
        The task's own trail stays unused. An interruption (Ctrl-C, a killed worker) writes
        the open trail's "interrupted" outcome; a VirtError's outcome the run writes itself.
        `names`: vm_hosts() of the items, when the caller has it already."""
        trails = []
        if names is None:
            names = self.vm_hosts(task_vars, items, on_key) if intent is not None else {}

        def trail(item):
            host = names.get(str(item.get("uuid") or item.get("name")))
            trails.append(VmTrail(self, dict(task_vars, inventory_hostname=host), params))
            return trails[-1]

        try:
            result = run(trail if intent is not None else None)
        except BaseException as exc:
            last = trails[-1] if trails else None
            if last is not None and last.intent_written and not last.closed and not isinstance(exc, VirtError):
                last.outcome({"failed": True, "msg": "interrupted (%s)" % type(exc).__name__}, quiet=True)
            raise
        if trails:
            result["audit_log"] = trails[-1].path
        return result

    @staticmethod
    def vm_hosts(task_vars, items, on_key=None):
        """Each item's VM -> its inventory host, keyed by the item's uuid (else name). A uuid
        may name a copy on each host (libvirt standby definitions): the copy on the host the
        item's `on_key` names (a recovery's failed_host) is the one."""
        hostvars = task_vars.get("hostvars") or {}
        found = {}
        for host in (task_vars.get("groups") or {}).get("virt_vms", []):
            try:
                known = hostvars[host]
            except KeyError:
                continue
            for key in ("virt_uuid", "virt_name"):
                found.setdefault(str(known.get(key)), []).append((host, known.get("virt_host")))
        names = {}
        for item in items:
            key = str(item.get("uuid") or item.get("name"))
            hosts = found.get(key) or []
            on = item.get(on_key) if on_key else None
            mine = [h for h, at in hosts if on and at == on]
            if mine or hosts:
                names[key] = (mine or [h for h, _at in hosts])[0]
        return names

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


class VmTrail(AuditTrail):
    """The audit trail of one VM of a task that acts on several (VirtActionBase.run_each);
    knows whether its outcome is written, and masks secrets as the task's own result is."""

    closed = False

    def outcome(self, result, quiet=False):
        self.closed = True
        written = self.action.scrub(dict(result))
        super().outcome(written, quiet=quiet)
        # what outcome() says back: audit_log, or the failure to write
        result.update({k: written[k] for k in ("failed", "msg", "audit_log") if k in written})
