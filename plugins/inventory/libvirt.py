# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt
short_description: KVM/QEMU and Xen hypervisors and their domains, through libvirt
version_added: 0.1.0
description:
  - Reads every listed hypervisor in bulk (a fixed handful of libvirt calls per
    hypervisor, whatever the number of domains; hypervisors are read in parallel) and
    builds the physical host -> VM mapping.
  - Each hypervisor becomes a host with C(virt_kind=hypervisor); each domain becomes a
    host with the C(virt_*) variables of the virtops schema and is placed in the group
    C(virt_host_<hypervisor>), so C(ansible-inventory --graph) reads as
    cluster -> hypervisor -> VMs.
  - A hypervisor that cannot be reached stays in the inventory with
    C(virt_connection_state=unreachable) and a warning; the others are still listed.
  - A domain name that repeats on several hypervisors becomes C(<name>_<hypervisor>)
    for each; C(virt_name) keeps the platform name.
  - The file name must end with C(libvirt.yml) or C(libvirt.yaml).
author:
  - virtops maintainers (@virtops)
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - virtops.unified.inventory
requirements:
  - libvirt-python
options:
  plugin:
    description: Marks this file as a source for this plugin.
    type: str
    required: true
    choices: [virtops.unified.libvirt]
  hypervisors:
    description: The hypervisors to read, one libvirt URI each.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Inventory name of the hypervisor. Defaults to the host part of O(hypervisors[].uri),
            or the hypervisor's hostname for a local URI.
        type: str
      uri:
        description:
          - libvirt URI, for example C(qemu+ssh://root@kvm01/system), C(qemu:///system),
            C(xen:///system) or C(test:///path/to/node.xml).
        type: str
        required: true
      cluster:
        description: Cluster the hypervisor belongs to (C(virt_cluster)); libvirt has no such notion.
        type: str
  connect_timeout:
    description: Seconds to wait for each hypervisor's connection before calling it unreachable.
    type: int
    default: 30
"""

EXAMPLES = r"""
# kvm.libvirt.yml
plugin: virtops.unified.libvirt
hypervisors:
  - name: kvm01
    uri: qemu+ssh://root@kvm01/system
    cluster: rack1
  - name: kvm02
    uri: qemu:///system
    cluster: rack1
keyed_groups:
  - key: virt_power_state
    prefix: power
compose:
  # recover_host_failure.yml starts high first, then medium (the default), then low
  virt_restart_priority: "'high' if virt_name.startswith('db') else 'medium'"

# ansible-inventory -i kvm.libvirt.yml --graph virt_cluster_rack1
"""

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ansible.errors import AnsibleParserError

from ansible_collections.virtops.unified.plugins.module_utils import libvirt_driver
from ansible_collections.virtops.unified.plugins.module_utils.model import VirtError
from ansible_collections.virtops.unified.plugins.plugin_utils.inventory import VirtInventoryBase, unreachable_host


class InventoryModule(VirtInventoryBase):
    NAME = "virtops.unified.libvirt"
    PLATFORM = "libvirt"

    def _read_one(self, spec):
        uri = spec["uri"]
        name = spec.get("name") or urlsplit(uri).hostname or None
        try:
            with libvirt_driver.LibvirtDriver(uri=uri, hypervisor_name=name, cluster=spec.get("cluster"),
                                              connect_timeout=self.get_option("connect_timeout"),
                                              readonly=True) as drv:
                inv = drv.list_inventory()
                return inv.hosts + inv.vms, None
        except VirtError as exc:
            name = name or libvirt_driver.redact_uri(uri)
            endpoint = {"platform": self.PLATFORM, "uri": libvirt_driver.redact_uri(uri), "hypervisor_name": name}
            warning = "hypervisor %s is listed as unreachable: %s" % (name, exc)
            return [unreachable_host(self.PLATFORM, name, endpoint, exc, spec.get("cluster"))], warning

    def fetch_records(self):
        try:
            libvirt_driver.require_libvirt()
        except VirtError as exc:
            raise AnsibleParserError(str(exc)) from exc
        specs = self.get_option("hypervisors")
        for spec in specs:
            if not spec.get("uri"):
                raise AnsibleParserError("every entry of hypervisors needs a uri: %r" % spec)
        with ThreadPoolExecutor(max_workers=min(16, len(specs) or 1)) as pool:
            results = list(pool.map(self._read_one, specs))
        machines = [m for found, _warning in results for m in found]
        return machines, [warning for _found, warning in results if warning]
