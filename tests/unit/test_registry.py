"""The platform registry: every registered platform passes the same checks
(the integration contract test connects to each one's peer)."""

import dataclasses
import json
import os
import uuid as uuidlib

import pytest
from ansible.parsing.dataloader import DataLoader

from ansible_collections.virtops.unified.plugins.module_utils import driver, interface, model, registry
from ansible_collections.virtops.unified.plugins.plugin_utils.action import VirtActionBase

PLATFORMS = list(registry.platforms().values())
EXTRA = {registry.HEARTBEAT, registry.MIGRATE, registry.MAINTENANCE}
BY_CAPABILITY = {registry.MIGRATE: "migrate", registry.MAINTENANCE: "set_maintenance"}
BY_RECOVERY = {registry.REREGISTER: "recover", registry.START_STANDBY: "power"}


def test_platforms_are_found_without_being_named():
    assert len(PLATFORMS) >= 2
    for platform in PLATFORMS:
        assert registry.get(platform.name) is platform
    with pytest.raises(model.Unsupported, match="not supported; known: "):
        registry.get("nosuch")


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_declaration_is_complete_and_consistent(platform):
    assert platform.title and platform.scope in (registry.HOST, registry.MANAGER)
    assert platform.client.get("pip") and platform.client.get("import")
    assert issubclass(platform.driver, driver.Driver) and platform.driver.platform == platform.name
    assert platform.capabilities == platform.driver.capabilities
    assert platform.capabilities <= set(driver.ACTIONS) | EXTRA
    assert driver.START in platform.capabilities
    for capability, method in BY_CAPABILITY.items():
        assert (capability in platform.capabilities) == hasattr(platform.driver, method), (capability, method)
    if platform.recovery is not None:
        assert hasattr(platform.driver, BY_RECOVERY[platform.recovery])
    for name in ("list_inventory", "refresh", "power", "endpoint"):
        assert getattr(platform.driver, name) is not getattr(driver.Driver, name, None), name
    names = [o.name for o in platform.options]
    assert len(names) == len(set(names)) and any(o.required for o in platform.options)
    for opt in platform.options:
        assert opt.description and not (opt.secret and opt.endpoint)
        assert opt.name in interface.CONNECTION_SPEC
        assert interface.CONNECTION_SPEC[opt.name]["type"] == opt.type
        if opt.secret:
            assert interface.CONNECTION_SPEC[opt.name].get("no_log") is True


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_resolve_takes_task_then_environment_then_default(platform):
    required = [o for o in platform.options if o.required]
    with pytest.raises(model.VirtError, match="%s needs %s" % (platform.name, required[0].name)):
        platform.resolve({}, environ={})
    env = {}
    for opt in platform.options:
        if opt.env:
            env[opt.env[0]] = {"int": "4242", "bool": "false"}.get(opt.type, "from-env-%s" % opt.name)
    resolved = platform.resolve({}, environ=env)
    for opt in platform.options:
        if opt.env:
            assert resolved[opt.name] == {"int": 4242, "bool": False}.get(opt.type, "from-env-%s" % opt.name)
        else:
            assert resolved[opt.name] == opt.default
    given = {o.name: {"int": 1, "bool": True}.get(o.type, "given") for o in platform.options}
    assert platform.resolve(given, environ=env) == given


def test_shared_option_names_agree_on_their_type():
    for name, declared in registry.option_names().items():
        assert len({o.type for _p, o in declared}) == 1, name


# --- key files, credentials files ---------------------------------------------------------
@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_key_files_are_not_connection_options(platform):
    for opt in platform.key_files:
        assert opt.file and opt.secret and opt.env and opt.type == "str"
        assert opt.name not in interface.CONNECTION_SPEC  # never a module option, never passed to the driver
        assert platform.option(opt.name) is None
    assert not [o for o in platform.options if o.file]
    assert platform.credentials_env() == "VIRTOPS_CREDENTIALS_" + platform.name.upper()


def test_register_refuses_a_key_file_among_the_options_and_one_without_its_variable():
    base = PLATFORMS[0]
    key = registry.Option("k", "a key", env=("K_FILE",), secret=True, file=True)
    with pytest.raises(ValueError, match="declare it in key_files"):
        registry.register(dataclasses.replace(base, name="probe_k1", options=base.options + (key,)))
    with pytest.raises(ValueError, match="needs file=True, secret=True, type str and env"):
        registry.register(dataclasses.replace(base, name="probe_k2", key_files=(dataclasses.replace(key, env=()),)))
    assert "probe_k1" not in registry.platforms() and "probe_k2" not in registry.platforms()


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_convert_reads_text_as_the_option_type(platform):
    for opt in platform.options:
        text = {"int": "8443", "bool": "false"}.get(opt.type, "text")
        assert platform.convert(opt.name, text) == {"int": 8443, "bool": False}.get(opt.type, "text")
        assert platform.convert(opt.name, 7) == 7  # not text: as it is
    assert platform.convert("no_such_option", "x") == "x"


# --- the action plugins: where each connection option comes from ----------------------------
class _Templar:
    @staticmethod
    def template(value):
        return value


def _action(spec=None):
    action = object.__new__(VirtActionBase)  # only what the filling reads: templar, loader, SPEC
    action._templar = _Templar()  # pylint: disable=protected-access
    action._loader = DataLoader()  # pylint: disable=protected-access
    action.SPEC = spec or interface.POWER_SPEC
    action._host_endpoint = action._host_source = None  # pylint: disable=protected-access
    return action


def _clean_env(monkeypatch):
    names = {e for p in PLATFORMS for o in p.options + p.key_files for e in o.env}
    for name in list(os.environ):
        if name in names or name.startswith(registry.CREDENTIALS_ENV):
            monkeypatch.delenv(name)


def _fill(task_args, task_vars):
    action = _action()
    return action.fill_credentials(action.fill_from_host(dict(task_args), task_vars), task_vars)


def _source(platform, tmp_path, entry):
    """An inventory source of this platform declaring one endpoint, `entry` (option names)."""
    if platform.source_list:
        back = {v: k for k, v in platform.source_keys.items()}
        config = {platform.source_list: [{back.get(k, k): v for k, v in entry.items()}]}
    else:
        config = dict(entry)
    path = tmp_path / ("src-%s.yml" % uuidlib.uuid4().hex[:6])
    path.write_text(json.dumps(dict(config, plugin="virtops.unified.%s" % platform.name)))
    return str(path)


LEVELS = ["args", "map", "file", "source", "endpoint", "env"]


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_an_option_comes_first_found_from_args_map_files_source_endpoint_environment(platform, tmp_path, monkeypatch):
    ident = platform.id_options[0]
    checked = [o for o in platform.options if o.type == "str" and o.name != ident]
    assert checked
    for opt in checked:
        # (an id option in the task's arguments names the endpoint itself: the test below)
        levels = [lv for lv in LEVELS if (lv != "endpoint" or opt.endpoint) and (lv != "env" or opt.env)
                  and (lv != "args" or opt.name not in platform.id_options)]
        for top, level in enumerate(levels):
            _clean_env(monkeypatch)
            present = set(levels[top:])
            value = {lv: "v-%s-%s" % (opt.name, lv) for lv in levels}
            task_args = {opt.name: value["args"]} if "args" in present else {}
            endpoint = {ident: "ep1", "platform": platform.name}
            if "endpoint" in present:
                endpoint[opt.name] = value["endpoint"]
            task_vars = {"virt_platform": platform.name, "virt_kind": "vm", "virt_uuid": "u-1",
                         "virt_endpoint": endpoint,
                         "virt_source": _source(platform, tmp_path, {ident: "ep1", opt.name: value["source"]}
                                                if "source" in present else {ident: "ep1"})}
            if "map" in present:
                task_vars["virtops_credentials"] = {"ep1": {opt.name: value["map"]}, "ep2": {opt.name: "other"}}
            if "file" in present:
                path = tmp_path / "cred.json"
                path.write_text(json.dumps({"ep1": {"platform": platform.name, opt.name: value["file"]}}))
                monkeypatch.setenv(platform.credentials_env(), str(path))
            if "env" in present:
                monkeypatch.setenv(opt.env[0], value["env"])
            args = _fill(task_args, task_vars)
            assert args[ident] == "ep1" and args["platform"] == platform.name and args["uuid"] == "u-1"
            resolved = platform.resolve(args)
            assert resolved[opt.name] == value[level], (opt.name, level, resolved)


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_a_credentials_file_gives_text_that_becomes_the_option_type(platform, tmp_path, monkeypatch):
    _clean_env(monkeypatch)
    ident = platform.id_options[0]
    entry = {o.name: {"int": "8443", "bool": "false"}.get(o.type, "t-%s" % o.name) for o in platform.options}
    entry[ident] = "ep1"
    path = tmp_path / "cred.json"
    path.write_text(json.dumps({"ep1": dict(entry, platform=platform.name)}))
    monkeypatch.setenv(platform.credentials_env(), str(path))
    args = _fill({"platform": platform.name, ident: "ep1"}, {})
    for opt in platform.options:
        assert args[opt.name] == {"int": 8443, "bool": False}.get(opt.type, entry[opt.name]), opt.name
    path.write_text(json.dumps({"ep1": {o.name: "not-a-number" for o in platform.options if o.type == "int"}}))
    if any(o.type == "int" for o in platform.options):
        with pytest.raises(model.VirtError, match="is not of type int"):
            _fill({"platform": platform.name, ident: "ep1"}, {})


@pytest.mark.parametrize("platform", PLATFORMS, ids=[p.name for p in PLATFORMS])
def test_a_task_that_names_its_endpoint_gets_that_endpoint_s_credentials_only(platform, tmp_path, monkeypatch):
    _clean_env(monkeypatch)
    ident = platform.id_options[0]
    opt = next(o for o in platform.options if o.type == "str" and o.name != ident)
    task_vars = {"virt_platform": platform.name, "virt_kind": "vm", "virt_uuid": "u-1",
                 "virt_endpoint": {ident: "ep1", opt.name: "host-ep1"},
                 "virtops_credentials": {"ep1": {opt.name: "for-ep1"}, "ep2": {opt.name: "for-ep2"}},
                 "virt_source": _source(platform, tmp_path, {ident: "ep1", opt.name: "src-ep1"})}
    args = _fill({ident: "ep2"}, task_vars)
    assert args[ident] == "ep2" and args[opt.name] == "for-ep2"
    del task_vars["virtops_credentials"]["ep2"]
    args = _fill({ident: "ep2"}, task_vars)
    assert opt.name not in args  # neither the host's endpoint nor its source speak for ep2
    # another platform's endpoint of the same id is not this one
    task_vars["virtops_credentials"]["ep2"] = {"platform": "other", opt.name: "theirs"}
    assert opt.name not in _fill({ident: "ep2"}, task_vars)


def test_a_map_may_name_an_endpoint_by_any_of_its_id_options(tmp_path, monkeypatch):
    """libvirt: the endpoint id is hypervisor_name, else uri; a map may be keyed by either,
    and a map keyed by the hypervisor gives it its URI (one the inventory shows redacted)."""
    _clean_env(monkeypatch)
    platform = registry.get("libvirt")
    assert platform.id_options == ("hypervisor_name", "uri")
    endpoint = {"uri": "qemu+ssh://root:********@kvm01/system", "hypervisor_name": "kvm01"}
    task_vars = {"virt_platform": "libvirt", "virt_kind": "vm", "virt_uuid": "u-1", "virt_endpoint": endpoint,
                 "virtops_credentials": {"kvm01": {"uri": "qemu+ssh://root:pw@kvm01/system"}}}
    assert _fill({}, task_vars)["uri"] == "qemu+ssh://root:pw@kvm01/system"
    args = _fill({"uri": "qemu+ssh://kvm02/system"}, dict(task_vars, virtops_credentials={
        "qemu+ssh://kvm02/system": {"hypervisor_name": "kvm02"}}))
    assert args["hypervisor_name"] == "kvm02"


def test_bad_credentials_maps_fail_with_where_they_are(tmp_path, monkeypatch):
    _clean_env(monkeypatch)
    platform = PLATFORMS[0]
    ident = platform.id_options[0]
    with pytest.raises(model.VirtError, match="virtops_credentials is not a mapping"):
        _fill({"platform": platform.name, ident: "ep1"}, {"virtops_credentials": ["ep1"]})
    with pytest.raises(model.VirtError, match="the entry for ep1 is not a mapping"):
        _fill({"platform": platform.name, ident: "ep1"}, {"virtops_credentials": {"ep1": "secret"}})
    monkeypatch.setenv(platform.credentials_env(), str(tmp_path / "missing.json"))
    with pytest.raises(model.VirtError, match="credentials file of %s .* cannot be read" % platform.credentials_env()):
        _fill({"platform": platform.name, ident: "ep1"}, {})


@pytest.mark.parametrize("platform", [p for p in PLATFORMS if p.secret_keys()], ids=lambda p: p.name)
def test_secret_values_from_any_level_are_scrubbed_from_the_result(platform, monkeypatch):
    _clean_env(monkeypatch)
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # pylint: disable=import-outside-toplevel
    secret = platform.secret_keys()[0]
    opt = platform.option(secret)
    action = _action()
    args = action.fill_credentials({"platform": platform.name, platform.id_options[0]: "ep1"},
                                   {"virtops_credentials": {"ep1": {secret: "from-the-map-5e1"}}})
    if opt.env:
        monkeypatch.setenv(opt.env[0], "from-the-env-9a2")
    validated = ArgumentSpecValidator(action.SPEC).validate(dict(args, name="vm1", state="started"))
    action._secrets = action.secret_values(args, validated)  # pylint: disable=protected-access
    result = action.scrub({"msg": "login with from-the-map-5e1 refused", "nested": [{"e": "from-the-env-9a2"}]})
    assert "from-the-map-5e1" not in json.dumps(result) and ("from-the-env-9a2" not in json.dumps(result))


def test_one_endpoints_secret_from_the_environment_is_never_sent_to_another():
    vmware = registry.get("vmware")
    environ = {"VMWARE_HOST": "vc1.example.com", "VMWARE_USER": "svc", "VMWARE_PASSWORD": "vc1-secret"}
    # the endpoint the environment names: its secret applies
    assert vmware.resolve({"hostname": "vc1.example.com"}, environ)["password"] == "vc1-secret"
    # no endpoint named in the environment: the fallback applies as documented
    assert vmware.resolve({"hostname": "vc2.example.com"}, {"VMWARE_PASSWORD": "p"})["password"] == "p"
    # another endpoint: refused, naming both, and the secret is not in the message
    with pytest.raises(model.VirtError) as err:
        vmware.resolve({"hostname": "vc2.example.com"}, environ)
    assert "VMWARE_HOST=vc1.example.com" in str(err.value) and "vc2.example.com" in str(err.value)
    assert "vc1-secret" not in str(err.value) + str(err.value.hint)
    # given for vc2 itself: fine
    assert vmware.resolve({"hostname": "vc2.example.com", "password": "x"}, environ)["password"] == "x"
