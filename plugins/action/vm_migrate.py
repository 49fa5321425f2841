# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.model import VirtError
from ansible_collections.virtops.unified.plugins.plugin_utils.action import AuditTrail, VirtActionBase


class _VmTrail(AuditTrail):
    """The audit trail of one VM of a `moves` task; knows whether its outcome is written."""

    closed = False

    def outcome(self, result, quiet=False):
        self.closed = True
        # masked like the task's own result before it is written (VirtActionBase.scrub, where there is one)
        scrub = getattr(self.action, "scrub", None)
        written = scrub(dict(result)) if scrub else result
        super().outcome(written, quiet=quiet)
        if written is not result:  # what outcome() says back: audit_log, or the failure to write
            result.update({k: written[k] for k in ("failed", "msg", "audit_log") if k in written})


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
                                         intent=intent)
        # Several VMs in one task: one audit trail (intent, then outcome, one id) per VM rather than
        # the task's own, which stays unused. Each VM's lines name its own inventory host.
        trails = []
        names = self._inventory_names(task_vars, params["moves"]) if intent is not None else {}

        def trail(move):
            vm_vars = dict(task_vars, inventory_hostname=names.get(move.get("uuid")) or names.get(move.get("name")))
            trails.append(_VmTrail(self, vm_vars, params))
            return trails[-1]

        try:
            result = interface.run_migrate(params, check_mode=self._task.check_mode, progress=self.progress,
                                           trail=trail if intent is not None else None)
        except BaseException as exc:
            # Ctrl-C, a worker killed mid-move (VirtError outcomes are written by run_migrate itself)
            last = trails[-1] if trails else None
            if last is not None and last.intent_written and not last.closed and not isinstance(exc, VirtError):
                last.outcome({"failed": True, "msg": "interrupted (%s)" % type(exc).__name__}, quiet=True)
            raise
        if trails:
            result["audit_log"] = trails[-1].path
        return result

    def _inventory_names(self, task_vars, moves):
        """uuid or name of each VM moved -> its inventory host, for the audit lines."""
        wanted = {m.get("uuid") or m.get("name") for m in moves}
        hostvars = task_vars.get("hostvars") or {}
        names = {}
        for host in (task_vars.get("groups") or {}).get("virt_vms", []):
            if len(names) == len(wanted):
                break
            try:
                known = hostvars[host]
            except KeyError:
                continue
            for key in ("virt_uuid", "virt_name"):
                value = known.get(key)
                if value in wanted and str(value) not in names:
                    names[str(value)] = host
                    break
        return names
