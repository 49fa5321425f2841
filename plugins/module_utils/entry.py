# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AnsibleModule entry point every virtops module shares (kept apart from
the drivers, which never import AnsibleModule)."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtops.unified.plugins.module_utils import interface
from ansible_collections.virtops.unified.plugins.module_utils.model import VirtError


def run_module(spec, rules, work):
    """Validate the arguments, run `work(module)`, turn driver errors into failures."""
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **rules)
    try:
        result = work(module)
    except VirtError as exc:
        module.fail_json(**interface.failure(exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)
