# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: mapping_diff
short_description: What moved, appeared and disappeared between two exports of the VM mapping
version_added: 0.1.0
description:
  - Compares two lists of VM records (the shape of P(virtops.unified.vm_records#filter), as
    written to C(mapping.json) by the C(export_mapping) runbook). A VM is the same VM when its
    C(platform) and C(uuid) match (the uuid compared case-insensitively); names may repeat.
  - C(moved) lists the VMs whose host differs, C(appeared) those only in the current list,
    C(disappeared) those only in the previous one.
  - A record with C(stale=true) (a VM the inventory lists where it was last seen, because its
    host could not be read) is never counted as moved or appeared; it goes to C(stale).
  - With O(read_hosts), a VM of the previous list that is not found now is counted as
    disappeared only when its previous host was read this time. Otherwise its host was not read
    (unreachable, or missing from the inventory because its source failed), so it goes to C(stale)
    and is carried over into C(vms), marked stale, instead of being declared gone.
  - Current records of the same VM listed twice, once live and once stale (a VM restarted
    elsewhere while its old host is down), count once, as the live one.
author:
  - virtops maintainers (@virtops)
positional: current_vms
options:
  _input:
    description:
      - The previous VM records, or a whole previous export (a dict with C(vms) and
        C(exported_at)). An empty list compares with nothing.
    type: raw
    required: true
  current_vms:
    description: The current VM records.
    type: list
    elements: dict
    required: true
  read_hosts:
    description:
      - Inventory names of the hosts that were read for the current records (not unreachable).
      - Omitted, every host counts as read.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Compare the previous export with the inventory now
  ansible.builtin.set_fact:
    changes: >-
      {{ (lookup('ansible.builtin.file', 'exports/mapping.json') | from_json)
         | virtops.unified.mapping_diff(groups['virt_vms'] | virtops.unified.vm_records(hostvars)) }}

- name: Print the VMs that moved
  ansible.builtin.debug:
    msg: "{{ changes.moved | map(attribute='name') | list }}"
"""

RETURN = r"""
_value:
  description: The differences, each list sorted by platform, host, name and uuid.
  type: dict
  contains:
    moved:
      description: VMs on another host, each with C(uuid), C(name), C(platform), C(from), C(to),
        C(from_cluster), C(to_cluster).
      type: list
      elements: dict
    appeared:
      description: VMs not in the previous records, each with C(uuid), C(name), C(platform),
        C(host), C(cluster), C(power_state).
      type: list
      elements: dict
    disappeared:
      description: VMs of the previous records found nowhere now although their host was read,
        each with C(uuid), C(name), C(platform), C(host), C(cluster), C(power_state) as last exported.
      type: list
      elements: dict
    stale:
      description:
        - VMs whose position was not confirmed now, each with C(uuid), C(name), C(platform),
          C(host) (where last seen), C(cluster), C(last_seen), C(previous_host) and C(source)
          (C(inventory) when the inventory listed the VM as last seen, C(previous_export) when
          it is carried over from the previous records).
      type: list
      elements: dict
    vms:
      description:
        - The current records to write as the new mapping, each with C(stale) and C(last_seen),
          the current ones (a stale duplicate of a live VM left out) and the carried-over ones.
        - Sorted by cluster, host, name and uuid, like P(virtops.unified.vm_records#filter).
      type: list
      elements: dict
"""

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

UNKNOWN = "unknown"


def _records(value, what):
    """The list of records of `value` (a list, or an export dict with 'vms'), checked."""
    exported_at = None
    if isinstance(value, Mapping):
        if "vms" not in value:
            raise AnsibleFilterError("%s is not a VM mapping: a dict without 'vms'" % what)
        exported_at = value.get("exported_at")
        value = value["vms"]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise AnsibleFilterError("%s is not a VM mapping: expected a list of VM records, got %s"
                                 % (what, type(value).__name__))
    out = []
    for index, rec in enumerate(value):
        if not isinstance(rec, Mapping):
            raise AnsibleFilterError("%s is not a VM mapping: entry %d is a %s, not a record"
                                     % (what, index, type(rec).__name__))
        for field in ("platform", "uuid"):
            if not isinstance(rec.get(field), str) or not rec.get(field):
                raise AnsibleFilterError("%s is not a VM mapping: entry %d (%s) has no %s"
                                         % (what, index, rec.get("name", "unnamed"), field))
        out.append(dict(rec))
    return out, exported_at


def _key(rec):
    return (rec["platform"], rec["uuid"].lower())


def _order(rec):
    return (rec.get("platform") or "", rec.get("host") or rec.get("from") or "", rec.get("name") or "",
            rec.get("uuid") or "")


def _ledger_order(rec):
    return (rec.get("cluster") or "", rec.get("host") or "", rec.get("name") or "", rec.get("uuid") or "")


def _normal(rec):
    rec["stale"] = bool(rec.get("stale"))
    rec.setdefault("last_seen", None)
    return rec


def _pick(recs):
    """The record that stands for a VM listed more than once: live before stale, running first."""
    return sorted(recs, key=lambda r: (r["stale"], r.get("power_state") != "running"))[0]


def _group(records):
    groups = {}
    for rec in records:
        groups.setdefault(_key(rec), []).append(rec)
    return groups


def _brief(rec, *fields):
    out = {"uuid": rec["uuid"], "name": rec.get("name"), "platform": rec["platform"]}
    out.update((f, rec.get(f)) for f in fields)
    return out


def mapping_diff(previous_vms, current_vms, read_hosts=None):
    previous, previous_time = _records(previous_vms, "the previous mapping")
    current = [_normal(r) for r in _records(current_vms, "the current mapping")[0]]
    previous = [_normal(r) for r in previous]
    read = None if read_hosts is None else set(read_hosts)

    # a VM the inventory lists live somewhere and stale where it used to be is where it is live
    live_keys = {_key(r) for r in current if not r["stale"]}
    ledger = [r for r in current if not (r["stale"] and _key(r) in live_keys)]
    now = {k: _pick(v) for k, v in _group(ledger).items()}
    before = {k: _pick(v) for k, v in _group(previous).items()}

    moved, appeared, disappeared, stale = [], [], [], []
    for key, cur in now.items():
        old = before.get(key)
        if cur["stale"]:
            stale.append(dict(_brief(cur, "host", "cluster", "last_seen"), source="inventory",
                              previous_host=old.get("host") if old else None))
        elif old is None:
            appeared.append(_brief(cur, "host", "cluster", "power_state"))
        elif old.get("host") != cur.get("host"):
            moved.append(dict(_brief(cur), **{"from": old.get("host"), "to": cur.get("host"),
                                              "from_cluster": old.get("cluster"), "to_cluster": cur.get("cluster")}))
    for key, old in before.items():
        if key in now:
            continue
        if read is None or old.get("host") in read:
            disappeared.append(_brief(old, "host", "cluster", "power_state"))
            continue
        # its host was not read this time: no evidence that it is gone; keep it, marked
        carried = dict(old, stale=True, last_seen=old["last_seen"] if old["stale"] else previous_time)
        if not old["stale"]:
            carried.update(power_state=UNKNOWN, heartbeat=UNKNOWN,
                           power_state_raw="last seen %s" % old.get("power_state_raw"))
        ledger.append(carried)
        stale.append(dict(_brief(carried, "host", "cluster", "last_seen"), source="previous_export",
                          previous_host=old.get("host")))
    return {
        "moved": sorted(moved, key=_order),
        "appeared": sorted(appeared, key=_order),
        "disappeared": sorted(disappeared, key=_order),
        "stale": sorted(stale, key=_order),
        "vms": sorted(ledger, key=_ledger_order),
    }


class FilterModule:
    def filters(self):
        return {"mapping_diff": mapping_diff}
