# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.virtops.unified.plugins.module_utils import interface, registry
from ansible_collections.virtops.unified.plugins.module_utils.model import VirtError
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase

# the inventory variables a VM's connection is read from (see VirtActionBase.fill_from_host)
_HOST_KEYS = ("virt_kind", "virt_platform", "virt_endpoint", "virt_uuid", "virt_source", "virt_host")


class ActionModule(VirtActionBase):
    SPEC = interface.RECOVER_SPEC
    RULES = interface.RECOVER_RULES
    AUDITED = True
    AUDIT_STATE = "recovered"

    def fill_from_host(self, args, task_vars):
        # with `recoveries` the VMs are named there: the targeted host's own uuid is not one of them
        named = "name" in args or "uuid" in args
        args = super().fill_from_host(args, task_vars)
        if "recoveries" in args:
            if not named:
                args.pop("uuid", None)
            return args
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
        if not params.get("recoveries"):
            return interface.run_recover(params, check_mode=self._task.check_mode, progress=self.progress,
                                         intent=intent, trace=self.tracer)
        # Several VMs in one task: each through the connection its own inventory host gives (a
        # manager: the same one for all, one login), each with its own audit trail (run_each).
        recoveries = params["recoveries"]
        names = self.vm_hosts(task_vars, recoveries, on_key="failed_host")
        connections = [self._connection_of(params, task_vars, names.get(str(r.get("uuid") or r.get("name"))), r)
                       for r in recoveries]
        return self.run_each(lambda trail: interface.run_recover(params, check_mode=self._task.check_mode,
                                                                 progress=self.progress, trail=trail,
                                                                 connection=connections.__getitem__,
                                                                 trace=self.tracer),
                             params, task_vars, intent, recoveries, names=names)

    def _connection_of(self, params, task_vars, vm_host, recovery):
        """The connection options of one recovery: those its VM's inventory host gives (its
        platform's scope decides: a manager's, or the destination's endpoint), else the task's.
        Fills the recovery's failed_host from the VM's virt_host."""
        hostvars = task_vars.get("hostvars") or {}
        if not vm_host or vm_host not in hostvars:
            return params
        known = hostvars[vm_host]
        vm_vars = dict(task_vars, inventory_hostname=vm_host)
        for key in _HOST_KEYS:
            vm_vars[key] = known.get(key)
        if not vm_vars.get("virt_platform") or "platform" in self._task.args:
            return params  # not a virtops host, or the task says where to connect
        saved = self._host_endpoint, self._host_source
        try:
            args = self.fill_from_host({"destination_host": recovery["destination_host"]}, vm_vars)
            args = self.fill_credentials(args, vm_vars)
        finally:
            self._host_endpoint, self._host_source = saved
        if not recovery.get("failed_host") and args.get("failed_host"):
            recovery["failed_host"] = args["failed_host"]
        conn = {k: v for k, v in args.items() if k in interface.CONNECTION_SPEC}
        conn.setdefault("connect_timeout", params.get("connect_timeout"))
        validated = ArgumentSpecValidator(interface.CONNECTION_SPEC).validate(conn)
        if validated.error_messages:
            raise VirtError("%s: %s" % (vm_host, "; ".join(validated.error_messages)))
        self._secrets |= self.secret_values(conn, validated)
        return validated.validated_parameters
