"""The platform registry: every registered platform passes the same checks
(the integration contract test connects to each one's peer)."""

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import driver, interface, model, registry

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
