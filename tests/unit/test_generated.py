"""Files generated from the platform registry are up to date (scripts/generate.py), and the
AWX credential types among them say what the registry declares."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ansible_collections.virtops.unified.plugins.module_utils import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_files_match_the_registry():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "generate.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- awx/credential_types.yml: one AWX credential type per platform, from the registry --------

class _Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """YAML as Ansible reads it: `!unsafe` strings stay plain strings."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
PLATFORMS = list(registry.platforms().values())


def _types():
    with open(os.path.join(ROOT, "awx", "credential_types.yml"), encoding="utf-8") as handle:
        return {t["platform"]: t for t in yaml.load(handle, Loader=_Loader)["virtops_awx_credential_types"]}  # nosec


class _Tower:  # AWX's `tower` namespace of injector templates
    pass


def _render(ctype, inputs):
    """AWX's inject_credential for a custom type (awx/main/models/credential.py): only the
    inputs that are set are in the namespace; file injectors first, their paths in
    tower.filename.<name>; then the env injectors. Returns (files, env)."""
    namespace = {k: v for k, v in inputs.items() if v}
    tower = namespace["tower"] = _Tower()
    tower.filename = _Tower()
    sandbox = ImmutableSandboxedEnvironment()
    files = {}
    for label, tmpl in ctype["injectors"].get("file", {}).items():
        name = label.split(".", 1)[1]
        files[name] = sandbox.from_string(tmpl).render(**namespace)
        setattr(tower.filename, name, "/runner/env/tmp_%s" % name)
    env = {k: sandbox.from_string(t).render(**namespace) for k, t in ctype["injectors"].get("env", {}).items()}
    return files, env


def _sample(opt):
    return {"int": "8443", "bool": "false"}.get(opt.type, "x-%s" % opt.name)


def test_every_platform_has_its_credential_type_and_no_other():
    assert set(_types()) == {p.name for p in PLATFORMS}
    assert len({t["name"] for t in _types().values()}) == len(PLATFORMS)


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_credential_type_fields_are_the_platform_options(platform):
    ctype = _types()[platform.name]
    fields = {f["id"]: f for f in ctype["inputs"]["fields"]}
    assert list(fields) == [o.name for o in platform.options + platform.key_files]
    for opt in platform.options + platform.key_files:
        field = fields[opt.name]
        assert field["type"] == "string"  # AWX: string or boolean, and a boolean never set is False
        assert field.get("secret", False) == opt.secret
        assert field.get("multiline", False) == opt.file
        if opt.type == "bool":
            assert field["choices"] == ["true", "false"]
        if opt.default is not None:
            assert registry._convert(opt, field["default"]) == opt.default  # pylint: disable=protected-access
    assert set(ctype["inputs"]["required"]) <= set(platform.id_options)
    for kind, mapping in ctype["injectors"].items():  # AWX validates every template with each field set
        for key, tmpl in mapping.items():
            namespace = {fid: "EXAMPLE" for fid in fields}
            namespace["tower"] = _Tower()
            namespace["tower"].filename = _Tower()
            for label in ctype["injectors"].get("file", {}):
                setattr(namespace["tower"].filename, label.split(".", 1)[1], "EXAMPLE_FILENAME")
            ImmutableSandboxedEnvironment(undefined=StrictUndefined).from_string(tmpl).render(namespace)


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_credential_type_writes_the_credentials_file_keyed_by_endpoint_id(platform):
    ctype = _types()[platform.name]
    inputs = {o.name: _sample(o) for o in platform.options + platform.key_files}
    inputs[platform.options[0].name] = 'a "quoted" \\ välue'  # JSON escapes survive the template
    files, env = _render(ctype, inputs)
    written = json.loads(files["credentials"])
    endpoint_id = platform.endpoint_id(inputs)
    assert list(written) == [endpoint_id]
    entry = written[endpoint_id]
    assert entry.pop("platform") == platform.name
    assert entry == {o.name: inputs[o.name] for o in platform.options}
    for opt in platform.options:  # text from AWX, the option's type once the action plugin reads it
        assert isinstance(platform.convert(opt.name, entry[opt.name]), registry._TYPES[opt.type])  # pylint: disable=protected-access
    assert env[platform.credentials_env()] == "/runner/env/tmp_credentials"
    for opt in platform.options:  # the environment fallbacks, for inventory updates
        if opt.env:
            assert env[opt.env[0]] == inputs[opt.name]
    for opt in platform.key_files:
        assert files[opt.name] == inputs[opt.name] and env[opt.env[0]] == "/runner/env/tmp_%s" % opt.name
    # nothing set: an empty map, the fallbacks empty or their default, no key file named
    files, env = _render(ctype, {})
    assert json.loads(files["credentials"]) == {}
    for opt in platform.options:
        if opt.env:
            assert env[opt.env[0]] == ("" if opt.default is None else
                                       str(opt.default).lower() if opt.type == "bool" else str(opt.default))
    for opt in platform.key_files:
        assert env[opt.env[0]] == ""
