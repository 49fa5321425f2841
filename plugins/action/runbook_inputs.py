# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runbook inputs from the extra vars only, returned as data.

Extra vars are trusted as templates by ansible-core: a value that reached
them from a platform (an EDA event carrying a VM name) would be evaluated the
first time a play read it. The values are re-read here from the command
line's extra vars (-e, -e @file: what AWX, ansible-runner and ansible-rulebook
pass) and returned as plain JSON data, which ansible-core never templates.
"""

from __future__ import annotations

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.vars import load_extra_vars

SPEC = {"names": {"type": "list", "elements": "str", "required": True},
        "defaults": {"type": "dict", "default": {}}}


def _plain(value):
    """A copy with no trust marks: plain JSON types only."""
    return json.loads(json.dumps(value, default=str))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        validated = ArgumentSpecValidator(SPEC).validate(dict(self._task.args))
        if validated.error_messages:
            return dict(result, failed=True, msg="; ".join(validated.error_messages))
        names, defaults = validated.validated_parameters["names"], validated.validated_parameters["defaults"]
        extra = load_extra_vars(self._loader)
        elsewhere = [n for n in names if n not in extra and n in task_vars]
        if elsewhere:
            return dict(result, failed=True, msg=(
                "%s set in the inventory, group/host vars or the play, not as an extra var: this runbook "
                "takes the machines to act on, and why, only from -e, an AWX survey or an EDA rule. "
                "Nothing was done. Remove %s from the inventory and pass it with -e."
                % (", ".join(elsewhere), "it" if len(elsewhere) == 1 else "them")))
        inputs = {n: _plain(extra[n]) if n in extra else _plain(defaults.get(n)) for n in names}
        return dict(result, changed=False, inputs=inputs, given=[n for n in names if n in extra])
