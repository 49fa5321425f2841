# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where VMs can go: the hosts that may take a VM from a given host, least loaded first.

Shared by the evacuation and recovery plans (filters), which read the
inventory's hostvars: plain dicts here. What a platform can do comes from the
registry, never from its name.
"""

from __future__ import annotations

from ansible_collections.virtops.unified.plugins.module_utils import registry

PRIORITIES = {"high": 0, "medium": 1, "low": 2}


def peers(source, hostvars, hypervisors, exclude=()):
    """Connected hypervisors of the same platform and cluster as `source`, and, where one
    endpoint manages many hosts (a vCenter), of the same endpoint: a VM moves within
    its manager only."""
    src = hostvars[source]
    platform = registry.platforms().get(src.get("virt_platform"))
    same_endpoint = platform is not None and platform.scope == registry.MANAGER
    return [h for h in hypervisors if h != source and h not in exclude
            and hostvars[h].get("virt_platform") == src.get("virt_platform")
            and hostvars[h].get("virt_connection_state") == "connected"
            and hostvars[h].get("virt_cluster") == src.get("virt_cluster")
            and (not same_endpoint or _endpoint(hostvars[h]) == _endpoint(src))]


def _endpoint(host_vars):
    return dict(host_vars.get("virt_endpoint") or {})


def capable(host_vars, capability):
    """Whether the platform of this host (or VM) declares `capability`."""
    platform = registry.platforms().get(host_vars.get("virt_platform"))
    return platform is not None and capability in platform.capabilities


def recovery_style(host_vars):
    platform = registry.platforms().get(host_vars.get("virt_platform"))
    return platform.recovery if platform is not None else None


class Load:
    """VMs per host, counting the ones a plan has already sent there."""

    def __init__(self, hosts, hostvars, vms):
        self.count = {h: 0 for h in hosts}
        for vm in vms:
            if hostvars[vm].get("virt_host") in self.count:
                self.count[hostvars[vm]["virt_host"]] += 1

    def take(self, among=None):
        """The least loaded host (of `among`, default all); counts the VM on it."""
        choices = sorted(h for h in (among if among is not None else self.count) if h in self.count)
        if not choices:
            return None
        best = min(choices, key=lambda h: self.count[h])
        self.count[best] += 1
        return best


def by_priority(vm_names, hostvars):
    """VMs in restart order: virt_restart_priority high, medium (default), low; then name."""
    return sorted(vm_names, key=lambda v: (PRIORITIES.get(hostvars[v].get("virt_restart_priority") or "medium", 1),
                                           hostvars[v].get("virt_name") or v))
