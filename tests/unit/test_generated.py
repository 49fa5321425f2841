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


# --- docs: README's credentials table, the modules' docs and examples ------------------------

def _readme_block():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import generate  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    begin, end = text.index(generate.CREDENTIALS_BEGIN), text.index(generate.CREDENTIALS_END)
    return text, text[begin:end]


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_readme_credentials_table_lists_every_environment_variable_of_the_platform(platform):
    text, block = _readme_block()
    row = next((line for line in block.splitlines() if line.startswith("| `%s` |" % platform.name)), None)
    assert row, "README.md: no row for platform %s in the credentials table" % platform.name
    for opt in platform.options + platform.key_files:
        for env in opt.env:
            assert "`%s` (%s" % (env, opt.name) in row, env
    assert "`%s`" % platform.credentials_env() in row
    for name in platform.id_options:
        assert "`%s`" % name in row
    credentials = text[text.index("## Credentials"):]
    assert "ansible-vault encrypt_string" in credentials and "module_defaults" in credentials
    assert text.index("## Credentials") < text.index(block) < text.index("## The model")


def _doc(path, name):
    import ast  # pylint: disable=import-outside-toplevel
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return node.value.value
    for node in tree.body:  # a doc fragment: class ModuleDocFragment: DOCUMENTATION = ...
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.Assign) and getattr(item.targets[0], "id", None) == name:
                    return item.value.value
    return None


MODULES_DIR = os.path.join(ROOT, "plugins", "modules")


def _fragments(module_file):
    return yaml.safe_load(_doc(os.path.join(MODULES_DIR, module_file), "DOCUMENTATION")).get("extends_documentation_fragment") or []


CONNECTED = sorted(f[:-3] for f in os.listdir(MODULES_DIR)
                   if f.endswith(".py") and "virtops.unified.connection" in _fragments(f))


def test_platform_is_not_documented_as_required():
    """The action plugin fills platform from the targeted host: the docs must not mark it `=`."""
    fragment = yaml.safe_load(_doc(os.path.join(ROOT, "plugins", "doc_fragments", "connection.py"), "DOCUMENTATION"))
    assert not fragment["options"]["platform"].get("required")
    for module in CONNECTED:
        own = yaml.safe_load(_doc(os.path.join(MODULES_DIR, module + ".py"), "DOCUMENTATION"))
        assert "platform" not in (own.get("options") or {}), "%s redefines platform" % module


def test_secret_options_say_not_to_give_them_ad_hoc():
    fragment = yaml.safe_load(_doc(os.path.join(ROOT, "plugins", "doc_fragments", "connection.py"), "DOCUMENTATION"))
    for name, declared in registry.option_names().items():
        if any(o.secret for _p, o in declared):
            text = " ".join(fragment["options"][name]["description"])
            assert "-a %s=" % name in text and "echoes" in text, name


def test_action_group_lists_the_connected_modules():
    with open(os.path.join(ROOT, "meta", "runtime.yml"), encoding="utf-8") as handle:
        group = yaml.safe_load(handle)["action_groups"]["vm"]
    assert sorted(g.split(".")[-1] for g in group) == CONNECTED


def _tasks(plays):
    for play in plays:
        for key in ("tasks", "pre_tasks", "post_tasks", "block", "always", "rescue"):
            for task in play.get(key) or []:
                yield task
                yield from _tasks([task])


@pytest.mark.parametrize("module", CONNECTED)
def test_examples_show_module_defaults_and_credentials_never_inline(module):
    examples = _doc(os.path.join(MODULES_DIR, module + ".py"), "EXAMPLES")
    plays = yaml.safe_load(examples)
    with_defaults = [p for p in plays if "group/virtops.unified.vm" in (p.get("module_defaults") or {})]
    assert with_defaults, "%s: no example with module_defaults of group/virtops.unified.vm" % module
    assert "virtops_credentials" in examples and "VMWARE_PASSWORD" in examples
    for play in plays:
        for options in [play.get("module_defaults", {}).get("group/virtops.unified.vm") or {}] + [
                t.get("virtops.unified." + module) or {} for t in _tasks([play])]:
            if "password" in options:
                assert str(options["password"]).startswith("{{"), "%s: a password in clear in an example" % module
