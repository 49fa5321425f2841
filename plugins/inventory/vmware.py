# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vmware
short_description: vSphere hosts, clusters and VMs with the host of each VM, in one bulk read
version_added: 0.1.0
description:
  - Reads one vCenter (or standalone ESXi) in a single PropertyCollector pass with paging, reading
    every ESXi host, cluster and VM with the host each VM runs on. No per-VM calls.
  - ESXi hosts become hosts with C(virt_kind=hypervisor) and C(virt_connection_state)
    (C(connected), C(maintenance), C(disconnected), C(not_responding)). Failed hosts stay
    in the inventory with their VMs, so the impact of a failure can be read off the graph.
  - Each VM becomes a host with the C(virt_*) variables of the virtops schema in
    C(virt_host_<esxi>), itself in C(virt_cluster_<cluster>) for clustered hosts.
  - A VM name that repeats (in other folders or clusters) becomes C(<name>_<esxi host>);
    C(virt_name) keeps the vSphere name.
  - The file name must end with C(vmware.yml) or C(vmware.yaml).
author:
  - virtops maintainers (@virtops)
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - virtops.unified.inventory
requirements:
  - pyvmomi
options:
  plugin:
    description: Marks this file as a source for this plugin.
    type: str
    required: true
    choices: [virtops.unified.vmware]
  hostname:
    description: vCenter or ESXi host name.
    type: str
    required: true
    env:
      - name: VMWARE_HOST
  username:
    description: vSphere user name.
    type: str
    required: true
    env:
      - name: VMWARE_USER
  password:
    description: vSphere password. Never written to the inventory or its cache.
    type: str
    required: true
    env:
      - name: VMWARE_PASSWORD
  port:
    description: HTTPS port.
    type: int
    default: 443
    env:
      - name: VMWARE_PORT
  validate_certs:
    description: Verify the vCenter certificate. Turn off only for labs.
    type: bool
    default: true
    env:
      - name: VMWARE_VALIDATE_CERTS
  include_templates:
    description: Also list VM templates as VM hosts.
    type: bool
    default: false
  connect_timeout:
    description: Seconds to wait for vCenter to answer.
    type: int
    default: 30
"""

EXAMPLES = r"""
# prod.vmware.yml - credentials from VMWARE_USER / VMWARE_PASSWORD
plugin: virtops.unified.vmware
hostname: vcenter.example.com
keyed_groups:
  - key: virt_connection_state
    prefix: esxi
    separator: "_"

# ansible-inventory -i prod.vmware.yml --graph virt_cluster_prod01
"""

from ansible.errors import AnsibleParserError

from ansible_collections.virtops.unified.plugins.module_utils.model import VirtError
from ansible_collections.virtops.unified.plugins.module_utils.vmware_driver import VmwareDriver
from ansible_collections.virtops.unified.plugins.plugin_utils.inventory import VirtInventoryBase


class InventoryModule(VirtInventoryBase):
    NAME = "virtops.unified.vmware"
    PLATFORM = "vmware"

    def fetch_records(self):
        try:
            with VmwareDriver(hostname=self.get_option("hostname"), username=self.get_option("username"),
                              password=self.get_option("password"), port=self.get_option("port"),
                              validate_certs=self.get_option("validate_certs"),
                              connect_timeout=self.get_option("connect_timeout"),
                              include_templates=self.get_option("include_templates")) as drv:
                inv = drv.list_inventory()
        except VirtError as exc:
            raise AnsibleParserError(str(exc)) from exc
        return inv.hosts + inv.vms, []
