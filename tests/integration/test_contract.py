"""Every registered platform, opened on its lab peer through the registry the way
the modules and the event source open it: the same checks for each
(tests/unit/test_registry.py checks the declarations). A platform registered
without a part in the lab (lab/<platform>_lab.py) fails the test."""

import os
import subprocess
import sys

import pytest
import yaml

from helpers import ROOT, env

from ansible_collections.virtops.unified.plugins.module_utils import model, registry

sys.path.insert(0, os.path.join(ROOT, "lab"))
import lab as labcore  # noqa: E402  pylint: disable=wrong-import-position

PASSWORD = "contract pw 'x'"


def test_every_registered_platform_is_in_the_lab():
    assert set(labcore.parts()) == set(registry.platforms())


@pytest.mark.parametrize("name", sorted(registry.platforms()))
def test_platform_opens_reads_and_keeps_secrets_out_of_its_endpoint(name, tmp_path):
    platform = registry.get(name)
    part = labcore.parts()[name]
    ep = {"name": "c1", "platform": name,
          "clusters": [{"name": "c", "hosts": [{"name": "h1", "vms": [{"name": "v1", "power": "running"}]},
                                               {"name": "h2", "vms": [{"name": "v2", "power": "stopped"}]}]}]}
    if any(o.secret for o in platform.options):
        ep.update(username="contract", password=PASSWORD)
    (tmp_path / "lab.yml").write_text(yaml.safe_dump({"endpoints": [ep]}))
    labdir = str(tmp_path / "d")
    subprocess.run([os.path.join(ROOT, "scripts", "lab"), "up", str(tmp_path / "lab.yml"), labdir],
                   cwd=ROOT, env=env(), check=True, capture_output=True, timeout=300)
    try:
        source = os.path.join(labdir, "inventory", "c1.%s.yml" % name)
        with open(source, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        assert config["plugin"] == part.plugin
        endpoints = platform.source_endpoints(config)
        assert endpoints and all(platform.endpoint_id(opts) for opts in endpoints)
        hosts, vms = [], []
        for opts in endpoints:
            with platform.open(opts, connect_timeout=10, environ={}) as drv:
                inv = drv.list_inventory()
                endpoint = drv.endpoint()
            assert endpoint["platform"] == name
            assert set(endpoint) - {"platform"} == set(platform.endpoint_keys())
            assert not any(PASSWORD in repr(v) for v in endpoint.values())
            for machine in inv.hosts + inv.vms:
                assert machine.platform == name and machine.endpoint == endpoint
                assert PASSWORD not in repr(machine.to_vars())
                if machine.kind == model.VM:
                    assert machine.uuid and machine.host
            hosts += [h.name for h in inv.hosts if h.kind == model.HYPERVISOR]
            vms += [(v.name, v.host, v.power_state) for v in inv.vms]
        # the same estate through every platform: what the lab file says
        assert sorted(hosts) == ["h1", "h2"]
        assert sorted(vms) == [("v1", "h1", model.RUNNING), ("v2", "h2", model.STOPPED)]
        declared = set(platform.capabilities)
        for capability, method in (("migrate", "migrate"), ("maintenance", "set_maintenance")):
            if capability in declared:
                assert callable(getattr(platform.driver, method, None)), (name, capability)
    finally:
        subprocess.run([os.path.join(ROOT, "scripts", "lab"), "down", labdir], cwd=ROOT, env=env(),
                       check=False, capture_output=True, timeout=60)
