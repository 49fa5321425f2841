# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base of every virtops inventory plugin.

parse(): read config -> cache key -> records from cache or from the platform
(fetch_records, the only platform-specific part) -> cache -> populate.
Records are plain dicts of virt_* vars so they cache as JSON.

Groups (same for every platform):
  virt_hypervisors, virt_vms, virt_baremetal, virt_endpoints, virt_platform_<p>,
  virt_cluster_<c> -> children virt_host_<h> -> the VMs on host <h>;
  virt_clusters -> every virt_cluster_<c>; virt_connection_<state> -> the
  virt_host_<h> of every host in that state (the failed ones stand out).

Last-known records (remember_vms): each endpoint read (a libvirt hypervisor, a
vCenter) keeps what it listed; an endpoint that cannot be read is listed as
unreachable, with its last-known hosts and VMs marked virt_stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

from ansible import constants as C
from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display

from ansible_collections.virtops.unified.plugins.module_utils import model, registry, runbook

display = Display()

# A management endpoint that is not itself a hypervisor (a vCenter) is listed
# only when it cannot be read, in its own group, so it is not taken for a failed host.
ENDPOINT = model.ENDPOINT
KIND_GROUPS = {model.HYPERVISOR: "virt_hypervisors", model.VM: "virt_vms", model.BAREMETAL: "virt_baremetal",
               ENDPOINT: "virt_endpoints"}


def unreachable_host(platform, name, endpoint, error, cluster=None, kind=model.HYPERVISOR):
    """A host record for an endpoint that could not be read: it stays listed."""
    return model.Machine(
        kind=kind, platform=platform, name=name, uuid=None, cluster=cluster,
        power_state=model.UNKNOWN, power_state_raw="unreachable",
        connection_state=model.UNREACHABLE, endpoint=endpoint,
        facts={"error": str(error), "error_type": type(error).__name__},
    )


def _stale(rec, last, endpoint, since):
    """A record as last seen, for an endpoint that cannot be read now."""
    out = dict(rec, virt_power_state=model.UNKNOWN, virt_power_state_raw="last seen %s" % rec.get("virt_power_state_raw"),
               virt_stale=True, virt_last_seen=last, virt_unreachable_endpoint=endpoint, virt_unreachable_since=since)
    if rec["virt_kind"] == model.VM:
        out["virt_heartbeat"] = model.HB_UNKNOWN
    else:  # a host behind the endpoint: nothing is known of it now
        out["virt_connection_state"] = model.UNREACHABLE
        if "virt_connection_state_raw" in rec:
            out["virt_connection_state_raw"] = "last seen %s" % rec["virt_connection_state_raw"]
    return out


def _counted(records):
    """'3 VM(s)' or '2 host(s) and 3 VM(s)'."""
    vms = sum(1 for r in records if r["virt_kind"] == model.VM)
    hosts = len(records) - vms
    return ("%d host(s) and %d VM(s)" % (hosts, vms)) if hosts else "%d VM(s)" % vms


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

    # --- one manager (registry scope MANAGER: a vCenter, an Oracle VM Manager) ---------
    #: what the manager is called in messages ("vCenter")
    MANAGER_WORD = "manager"

    def endpoint_name(self):
        """Inventory name of a manager's own record: its host name, with the port for a
        loopback name (an SSH tunnel), which Ansible would otherwise take for the
        controller: plays on localhost would get this record instead."""
        hostname = self.get_option("hostname")
        if hostname in C.LOCALHOST:
            return "%s_%s" % (hostname, self.get_option("port"))
        return hostname

    def read_manager(self, **extra):
        """fetch_records() of a platform whose endpoint is one manager: its driver opened
        with the source's connection options (the registry's) and `extra` driver arguments.
        A manager that cannot be read (down, silent, certificate not trusted, login
        refused) does not fail the source: failing it would only warn and leave an
        inventory without these VMs, which a runbook would read as "nothing runs there".
        It is listed as an unreachable endpoint record, with its last-known hosts and
        VMs (remember_vms); the warning says what failed."""
        platform = registry.get(self.PLATFORM)
        options = {o.name: self.get_option(o.name) for o in platform.options}
        try:
            drv = platform.driver.open(dict(options, **extra), connect_timeout=self.get_option("connect_timeout"))
        except model.Unsupported as exc:  # the controller's problem (a missing library), not the manager's
            raise AnsibleParserError(str(exc)) from exc
        except model.VirtError as exc:
            return self._unreachable_manager(platform, options, exc)
        try:
            with drv:
                inv = drv.list_inventory()
        except model.VirtError as exc:
            return self._unreachable_manager(platform, options, exc)
        return inv.hosts + inv.vms, []

    def _unreachable_manager(self, platform, options, exc):
        endpoint = dict({k: options.get(k) for k in platform.endpoint_keys()}, platform=self.PLATFORM)
        name = self.endpoint_name()
        warning = "%s %s is listed as unreachable: %s" % (self.MANAGER_WORD, name, exc)
        return [unreachable_host(self.PLATFORM, name, endpoint, exc, kind=ENDPOINT)], [warning]

    def endpoint_of(self, rec):
        """Name of the endpoint a record was read from: the unit that is read
        (and fails) as a whole. Default: a host is its own endpoint and a VM
        belongs to its host (libvirt); a manager's hosts and VMs (registry scope
        MANAGER) are read, and go stale, as a whole with it."""
        platform = registry.platforms().get(self.PLATFORM)
        if platform is not None and platform.scope == registry.MANAGER:
            return self.endpoint_name()
        return rec["virt_name"] if rec["virt_kind"] != model.VM else rec.get("virt_host")

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
        self.source = os.path.abspath(path)
        self.populate(records["machines"])

    # --- last known records of each endpoint ---------------------------------
    def _remember(self, path, records):
        """Save what each endpoint read now listed; for each endpoint that could
        not be read, list its last-known records, marked stale. Written atomically.

        An endpoint could not be read when its own record (a non-VM record
        named after the endpoint) is unreachable. The store holds, per endpoint,
        the time of its last read ("time"), what it listed then ("records") and
        since when it has been unreachable ("unreachable_since", until it is read
        again)."""
        store = os.path.join(os.path.expanduser(self.get_option("last_known_dir")),
                             "%s-%s.json" % (self.PLATFORM, hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]))
        try:
            with open(store, encoding="utf-8") as handle:
                known = json.load(handle)
        except (OSError, ValueError):
            known = {}
        machines = records["machines"]
        now = runbook.now_iso()
        units = {}
        for rec in machines:
            units.setdefault(self.endpoint_of(rec), []).append(rec)
        units.pop(None, None)  # a VM without a host: no endpoint to keep it under
        for endpoint, recs in units.items():
            own = [r for r in recs if r["virt_kind"] != model.VM and r["virt_name"] == endpoint]
            if not any(r.get("virt_connection_state") == model.UNREACHABLE for r in own):
                known[endpoint] = {"time": now, "records": recs}
                continue
            last = known.setdefault(endpoint, {})
            since = last.setdefault("unreachable_since", now)
            kept = last.get("records", last.get("vms", []))  # "vms": the store before hosts were kept
            # the endpoint's own last-known record (a libvirt hypervisor, a standalone ESXi
            # host) is not listed twice: the live one, unreachable, takes what it told of itself
            twins = [r for r in kept if r["virt_kind"] != model.VM and r["virt_name"] == endpoint]
            kept = [r for r in kept if r not in twins]
            for rec in own:
                rec["virt_unreachable_since"] = since
                if last.get("time"):
                    rec["virt_last_seen"] = last["time"]
                for twin in twins:
                    rec["virt_kind"] = twin["virt_kind"]
                    for key in ("virt_uuid", "virt_cluster"):
                        rec[key] = rec.get(key) or twin.get(key)
            if not last.get("time"):
                continue  # never read: nothing to list
            machines.extend(_stale(r, last["time"], endpoint, since) for r in kept)
            records["warnings"].append("%s: listing its %s as last seen at %s" % (endpoint, _counted(kept), last["time"]))
        try:
            os.makedirs(os.path.dirname(store), mode=0o700, exist_ok=True)
            with open(store + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(known, handle)
            os.replace(store + ".tmp", store)
        except OSError as exc:
            records["warnings"].append("could not keep the last-known records in %s: %s" % (store, exc))

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
            # where the endpoint is configured: the modules read its credentials there (never copied here)
            self.inventory.set_variable(name, "virt_source", getattr(self, "source", None))
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
            elif rec["virt_kind"] not in (model.VM, ENDPOINT):
                host_group = self._group("virt_host_%s" % rec["virt_name"])
                if rec.get("virt_cluster"):
                    cluster = self._group("virt_cluster_%s" % rec["virt_cluster"])
                    self.inventory.add_child(cluster, host_group)
                    self.inventory.add_child(cluster, name)
                    self.inventory.add_child(self._group("virt_clusters"), cluster)
                # by connection state, so that --graph virt_connection_not_responding (or
                # _disconnected, _unreachable) lists the failed hosts with the VMs they take down
                state = rec.get("virt_connection_state")
                if state:
                    by_state = self._group("virt_connection_%s" % state)
                    self.inventory.add_child(by_state, host_group)
