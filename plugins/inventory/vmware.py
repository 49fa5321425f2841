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
  - A vCenter that cannot be read (down, silent for O(connect_timeout), certificate not trusted,
    or login refused) does not empty the inventory. It is listed as a host named after
    O(hostname) (C(<hostname>_<port>) for C(localhost), C(127.0.0.1) or C(::1), names Ansible
    keeps for the controller) with C(virt_kind=endpoint) in the group C(virt_endpoints),
    C(virt_connection_state=unreachable), C(virt_error) (what failed, for example
    C(login refused)), C(virt_error_type) and C(virt_unreachable_since), with a warning.
    With O(remember_vms), the ESXi hosts and VMs of its last successful read are listed as they were
    then, with C(virt_stale=true), C(virt_last_seen), C(virt_unreachable_endpoint) and
    C(virt_unreachable_since); their power state is C(unknown) and the hosts' connection state
    C(unreachable).
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
    description:
      - Seconds to wait for vCenter to answer, when connecting and on each call after.
      - A vCenter that accepts the connection and does not answer is listed as unreachable
        after about this long.
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

# Or the credentials in the file, the password vaulted (the runbooks and modules against
# its hosts read them from here too; other ways: README, "Credentials"):
#   ansible-vault encrypt_string --stdin-name password
# plugin: virtops.unified.vmware
# hostname: vcenter.example.com
# username: svc-virtops@vsphere.local
# password: !vault |
#   $ANSIBLE_VAULT;1.1;AES256
#   ...
"""

from ansible_collections.virtops.unified.plugins.plugin_utils.inventory import VirtInventoryBase


class InventoryModule(VirtInventoryBase):
    NAME = "virtops.unified.vmware"
    PLATFORM = "vmware"
    MANAGER_WORD = "vCenter"

    def fetch_records(self):
        return self.read_manager(include_templates=self.get_option("include_templates"))
