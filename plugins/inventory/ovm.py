# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: ovm
short_description: Oracle VM server pools, servers and VMs with the server of each VM, in four calls
version_added: 0.2.0
description:
  - Reads one Oracle VM Manager 3.4 through its Web Services REST API in a fixed number of calls
    (C(GET Manager), then C(GET ServerPool), C(GET Server), C(GET Vm)), whatever the number of VMs,
    joined through the id objects each object carries.
  - Before anything else the Manager's C(managerRunState) is read. While it is not C(RUNNING) (the
    Manager is starting up, rediscovering its servers) the Manager is listed as unreachable, with
    that reason, rather than read half-way.
  - Oracle VM Servers become hosts with C(virt_kind=hypervisor) in C(virt_cluster_<server pool>), with
    C(virt_connection_state) from C(serverRunState) and C(maintenanceMode) (C(connected),
    C(maintenance), C(not_responding) for C(UNKNOWN) (the Manager has lost the server),
    C(disconnected) for C(STOPPED), C(STARTING), C(STOPPING)); the raw word is in
    C(virt_connection_state_raw).
  - Each VM becomes a host with the C(virt_*) variables of the virtops schema in C(virt_host_<server>).
    C(virt_uuid) is its Oracle VM id. C(virt_power_state_raw) keeps C(vmRunState); a VM on a server
    the Manager has lost is C(unknown) (for example C(RUNNING:server UNKNOWN)). Templates are left out.
  - Oracle VM has no guest heartbeat in its model, so C(virt_heartbeat) is C(unknown).
  - A VM name that repeats becomes C(<name>_<server>); C(virt_name) keeps the Oracle VM name.
  - A Manager that cannot be read (down, silent for O(connect_timeout), certificate not trusted,
    login refused, still starting) does not empty the inventory. It is listed as a host named after
    O(hostname) (C(<hostname>_<port>) for a loopback name) with C(virt_kind=endpoint) in
    C(virt_endpoints), C(virt_connection_state=unreachable), C(virt_error) and C(virt_error_type),
    with a warning. With O(remember_vms), its servers and VMs of the last successful read are
    listed as they were then, with C(virt_stale=true).
  - The file name must end with C(ovm.yml) or C(ovm.yaml).
author:
  - virtops maintainers (@virtops)
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - virtops.unified.inventory
requirements:
  - requests
options:
  plugin:
    description: Marks this file as a source for this plugin.
    type: str
    required: true
    choices: [virtops.unified.ovm]
  hostname:
    description: Oracle VM Manager host name.
    type: str
    required: true
    env:
      - name: OVM_HOST
  username:
    description: Oracle VM Manager user name.
    type: str
    required: true
    env:
      - name: OVM_USERNAME
  password:
    description: Oracle VM Manager password. Never written to the inventory or its cache.
    type: str
    required: true
    env:
      - name: OVM_PASSWORD
  port:
    description: Web Services (HTTPS) port.
    type: int
    default: 7002
    env:
      - name: OVM_PORT
  validate_certs:
    description: Verify the Manager's certificate. Turn off only for labs.
    type: bool
    default: true
    env:
      - name: OVM_VALIDATE_CERTS
  ca_path:
    description:
      - CA certificate (a PEM file) that signs the Manager's certificate, instead of the
        controller's trust store. Oracle VM Manager's certificate is signed by its own CA.
    type: path
    env:
      - name: OVM_CA_PATH
  connect_timeout:
    description:
      - Seconds to wait for the Manager to answer, when connecting and on each call after.
    type: int
    default: 30
"""

EXAMPLES = r"""
# pool1.ovm.yml - credentials from OVM_USERNAME / OVM_PASSWORD
plugin: virtops.unified.ovm
hostname: ovmm.example.com
ca_path: /etc/pki/ovm/ca.pem

# ansible-inventory -i pool1.ovm.yml --graph virt_clusters

# Or the credentials in the file, the password vaulted (the runbooks and modules against
# its hosts read them from here too; other ways: README, "Credentials"):
#   ansible-vault encrypt_string --stdin-name password
# plugin: virtops.unified.ovm
# hostname: ovmm.example.com
# ca_path: /etc/pki/ovm/ca.pem
# username: admin
# password: !vault |
#   $ANSIBLE_VAULT;1.1;AES256
#   ...
"""

from ansible_collections.virtops.unified.plugins.plugin_utils.inventory import VirtInventoryBase


class InventoryModule(VirtInventoryBase):
    NAME = "virtops.unified.ovm"
    PLATFORM = "ovm"
    MANAGER_WORD = "Oracle VM Manager"

    def fetch_records(self):
        return self.read_manager()
