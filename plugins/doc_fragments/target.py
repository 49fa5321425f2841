# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The VM a vm_* module acts on: TARGET_SPEC in module_utils/interface.py.
    DOCUMENTATION = r"""
options:
  name:
    description:
      - Name of the VM on its platform. Mutually exclusive with O(uuid).
      - A name that matches more than one VM is refused, listing each with its uuid and host;
        nothing is touched.
    type: str
  uuid:
    description:
      - Stable id of the VM (VMware instanceUuid, libvirt domain UUID, ...).
      - Filled from the targeted host's C(virt_uuid) when the task runs against a VM of a
        virtops inventory and neither O(name) nor O(uuid) is given.
    type: str
"""
