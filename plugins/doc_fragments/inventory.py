# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Options of plugin_utils/inventory.py, shared by every virtops inventory plugin.
    DOCUMENTATION = r"""
options:
  remember_vms:
    description:
      - Keep, on the controller, the VMs last seen on each host. When a host cannot be
        read at all (C(virt_connection_state=unreachable)), its last-known VMs are listed
        under it with C(virt_power_state=unknown), C(virt_stale=true) and
        C(virt_last_seen), so the impact of a dead host is known without a hand-kept ledger.
    type: bool
    default: true
  last_known_dir:
    description: Directory of the last-known files (one per inventory source).
    type: path
    default: ~/.ansible/virtops/last_known
    env:
      - name: VIRTOPS_LAST_KNOWN_DIR
"""
