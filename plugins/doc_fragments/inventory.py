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
      - Keep, on the controller, what each endpoint listed at its last read (the VMs of
        each libvirt hypervisor, the ESXi hosts and VMs of a vCenter). When an endpoint cannot be
        read at all (C(virt_connection_state=unreachable)), its last-known records are listed
        with C(virt_power_state=unknown), C(virt_stale=true), C(virt_last_seen) (the time of
        that read), C(virt_unreachable_endpoint) (the inventory name of the endpoint) and
        C(virt_unreachable_since); its hosts are C(unreachable). So the impact of a dead host
        is known without a hand-kept ledger.
      - The endpoint's own record gets C(virt_unreachable_since) (the first read that failed in
        a row) and C(virt_last_seen) (its last successful read, if any).
    type: bool
    default: true
  last_known_dir:
    description: Directory of the last-known files (one per inventory source).
    type: path
    default: ~/.ansible/virtops/last_known
    env:
      - name: VIRTOPS_LAST_KNOWN_DIR
"""
