# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base of every virtops inventory plugin.

parse(): read config -> cache key -> records from cache or from the platform
(fetch_records, the only platform-specific part) -> cache -> populate.
Records are plain dicts of virt_* vars so they cache as JSON.

Groups (same for every platform):
  virt_hypervisors, virt_vms, virt_baremetal, virt_platform_<p>,
  virt_cluster_<c> -> children virt_host_<h> -> the VMs on host <h>.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display

from ansible_collections.virtops.unified.plugins.module_utils import model, runbook

display = Display()

KIND_GROUPS = {model.HYPERVISOR: "virt_hypervisors", model.VM: "virt_vms", model.BAREMETAL: "virt_baremetal"}


def unreachable_host(platform, name, endpoint, error, cluster=None):
    """A host record for an endpoint that could not be read: it stays listed."""
    return model.Machine(
        kind=model.HYPERVISOR, platform=platform, name=name, uuid=None, cluster=cluster,
        power_state=model.UNKNOWN, power_state_raw="unreachable",
        connection_state=model.UNREACHABLE, endpoint=endpoint,
        facts={"error": str(error)},
    )


class VirtInventoryBase(BaseInventoryPlugin, Constructable, Cacheable):
    """Subclasses set NAME and PLATFORM and implement fetch_records()."""

    NAME = None
    PLATFORM = None

    def verify_file(self, path):
        suffixes = tuple("%s.%s" % (self.PLATFORM, ext) for ext in ("yml", "yaml"))
        return super().verify_file(path) and path.endswith(suffixes)

    def fetch_records(self):
        """Read the platform; return (list of Machine, list of warnings)."""
        raise NotImplementedError

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        records = None
        if use_cache:
            try:
                records = self._cache[key]
            except KeyError:
                pass
        if records is None:
            machines, warnings = self.fetch_records()
            records = {"machines": [m.to_vars() for m in machines], "warnings": warnings}
            if self.get_option("remember_vms"):
                self._remember(path, records)
            if self.get_option("cache"):
                self._cache[key] = records
        for warning in records["warnings"]:
            display.warning(warning)
        self.populate(records["machines"])

    # --- last known VMs of each host -----------------------------------------
    def _remember(self, path, records):
        """Save the VMs of each host read now; list the last-known VMs of hosts
        that could not be read, marked stale. Written atomically."""
        store = os.path.join(os.path.expanduser(self.get_option("last_known_dir")),
                             "%s-%s.json" % (self.PLATFORM, hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]))
        try:
            with open(store, encoding="utf-8") as handle:
                known = json.load(handle)
        except (OSError, ValueError):
            known = {}
        machines = records["machines"]
        now = runbook.now_iso()
        unreachable = [m["virt_name"] for m in machines
                       if m["virt_kind"] != model.VM and m.get("virt_connection_state") == model.UNREACHABLE]
        for host in [m["virt_name"] for m in machines if m["virt_kind"] != model.VM and m["virt_name"] not in unreachable]:
            known[host] = {"time": now, "vms": [m for m in machines if m.get("virt_host") == host]}
        for host in unreachable:
            last = known.get(host)
            if not last:
                continue
            for vm in last["vms"]:
                machines.append(dict(vm, virt_power_state=model.UNKNOWN, virt_heartbeat=model.HB_UNKNOWN,
                                     virt_power_state_raw="last seen %s" % vm.get("virt_power_state_raw"),
                                     virt_stale=True, virt_last_seen=last["time"]))
            records["warnings"].append("%s: listing its %d VM(s) as last seen at %s" % (host, len(last["vms"]), last["time"]))
        try:
            os.makedirs(os.path.dirname(store), mode=0o700, exist_ok=True)
            with open(store + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(known, handle)
            os.replace(store + ".tmp", store)
        except OSError as exc:
            records["warnings"].append("could not keep the last-known VMs in %s: %s" % (store, exc))

    # --- population ------------------------------------------------------
    def _group(self, name, parent=None):
        group = self.inventory.add_group(self._sanitize_group_name(name))
        if parent:
            self.inventory.add_child(parent, group)
        return group

    def _inventory_names(self, records):
        """Inventory hostnames: the platform name, made unique where it repeats.

        A VM name seen twice (in this source, or already in the inventory from
        another source with another uuid) becomes '<name>_<host>'; if that still
        repeats (same name twice on one host), '<name>_<host>_<uuid[:8]>'. Every
        VM stays addressable; virt_name keeps the platform name.
        """
        vms = [r for r in records if r["virt_kind"] == model.VM]
        counts = Counter(r["virt_name"] for r in vms)
        per_host = Counter((r["virt_name"], r.get("virt_host")) for r in vms)
        names = []
        for rec in records:
            name = rec["virt_name"]
            if rec["virt_kind"] == model.VM:
                known = self.inventory.get_host(name)
                clash_elsewhere = known is not None and known.vars.get("virt_uuid") not in (None, rec["virt_uuid"])
                if counts[name] > 1 or clash_elsewhere:
                    name = "%s_%s" % (name, rec.get("virt_host"))
                    known = self.inventory.get_host(name)
                    if per_host[(rec["virt_name"], rec.get("virt_host"))] > 1 or (
                            known is not None and known.vars.get("virt_uuid") not in (None, rec["virt_uuid"])):
                        name = "%s_%s" % (name, (rec.get("virt_uuid") or "")[:8])
            names.append(name)
        return names

    def populate(self, records):
        strict = self.get_option("strict")
        compose, groups, keyed = (self.get_option(o) for o in ("compose", "groups", "keyed_groups"))
        names = self._inventory_names(records)
        for rec, name in zip(records, names):
            self.inventory.add_host(name)
            for var, value in rec.items():
                self.inventory.set_variable(name, var, value)
            self.inventory.add_child(self._group(KIND_GROUPS[rec["virt_kind"]]), name)
            self.inventory.add_child(self._group("virt_platform_%s" % rec["virt_platform"]), name)
            if compose or groups or keyed:  # get_vars() costs, at thousands of hosts
                host_vars = self.inventory.get_host(name).get_vars()
                self._set_composite_vars(compose, host_vars, name, strict=strict)
                self._add_host_to_composed_groups(groups, host_vars, name, strict=strict)
                self._add_host_to_keyed_groups(keyed, host_vars, name, strict=strict)
        # cluster -> host -> VMs, so that --graph reads as the impact of a host failure
        for rec, name in zip(records, names):
            if rec["virt_kind"] == model.VM and rec.get("virt_host"):
                self.inventory.add_child(self._group("virt_host_%s" % rec["virt_host"]), name)
            elif rec["virt_kind"] != model.VM:
                host_group = self._group("virt_host_%s" % rec["virt_name"])
                if rec.get("virt_cluster"):
                    cluster = self._group("virt_cluster_%s" % rec["virt_cluster"])
                    self.inventory.add_child(cluster, host_group)
                    self.inventory.add_child(cluster, name)
