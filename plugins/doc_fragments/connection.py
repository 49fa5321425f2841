# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Paired with CONNECTION_SPEC in module_utils/interface.py.
    DOCUMENTATION = r"""
options:
  platform:
    description:
      - The platform that runs the machine.
      - Filled from the targeted inventory host's C(virt_platform) when the task
        runs against a host of a virtops inventory.
    type: str
    required: true
    choices: [libvirt, vmware]
  uri:
    description:
      - libvirt connection URI of the hypervisor, for example C(qemu:///system),
        C(qemu+ssh://root@kvm01/system), C(xen:///system) or C(test:///default).
      - Filled from the targeted host's C(virt_endpoint.uri).
      - A password in the URI is never shown in output.
      - If not set, the environment variable E(LIBVIRT_DEFAULT_URI) is used.
    type: str
  hypervisor_name:
    description:
      - Inventory name of the hypervisor behind O(uri), reported as the VM's host
        (and compared with the host a runbook expects).
      - Filled from the targeted host's C(virt_endpoint.hypervisor_name); defaults
        to the hypervisor's own hostname.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the connection to open before failing with a clear error.
    type: int
    default: 30
  hostname:
    description:
      - vCenter or ESXi host name (platform vmware).
      - Filled from the targeted host's C(virt_endpoint.hostname).
      - If not set, the environment variable E(VMWARE_HOST) is used.
    type: str
  username:
    description:
      - vSphere user name (platform vmware).
      - If not set, the environment variable E(VMWARE_USER) is used.
    type: str
    aliases: [user]
  password:
    description:
      - vSphere password (platform vmware). Never shown in output.
      - If not set, the environment variable E(VMWARE_PASSWORD) is used.
    type: str
    aliases: [pass, pwd]
  port:
    description:
      - vCenter or ESXi HTTPS port (platform vmware).
      - If not set, the environment variable E(VMWARE_PORT) is used.
    type: int
    default: 443
  validate_certs:
    description:
      - Verify the vCenter certificate (platform vmware). Turn off only for labs.
      - If not set, the environment variable E(VMWARE_VALIDATE_CERTS) is used.
    type: bool
    default: true
notes:
  - When the task targets a host of a virtops inventory, the action plugin fills
    O(platform) and the connection options (and, for a VM, its uuid) from that host's C(virt_*)
    variables and runs on the controller, so no connection settings are needed.
requirements:
  - libvirt-python (platform libvirt)
  - pyvmomi (platform vmware)
"""
