"""Every registered platform, opened on its peer through the registry the way the
modules open it: the same checks for each (tests/unit/test_registry.py checks the
declarations). A platform registered without a peer here fails the test."""

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import model, registry


def _libvirt(_vcsim):
    return {"uri": "test:///default"}, {}


def _vmware(vcsim):
    sim = vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "1", "-host", "0", "-vm", "1")
    return ({"hostname": "127.0.0.1", "port": sim.port, "validate_certs": False},
            {"VMWARE_USER": sim.username, "VMWARE_PASSWORD": sim.password})


PEERS = {"libvirt": _libvirt, "vmware": _vmware}  # data: how to reach each platform's test peer


def test_every_registered_platform_has_a_peer_here():
    assert set(PEERS) == set(registry.platforms())


@pytest.mark.parametrize("name", sorted(PEERS))
def test_platform_opens_reads_and_keeps_secrets_out_of_its_endpoint(name, vcsim):
    platform = registry.get(name)
    params, environ = PEERS[name](vcsim)
    with platform.open(params, connect_timeout=10, environ=environ) as drv:
        inv = drv.list_inventory()
        endpoint = drv.endpoint()
    assert inv.hosts and inv.vms
    assert endpoint["platform"] == name
    assert set(endpoint) - {"platform"} == set(platform.endpoint_keys())
    secrets = {str(v) for k, v in environ.items() if "PASS" in k} | {
        str(params[k]) for k in platform.secret_keys() if params.get(k)}
    for machine in inv.hosts + inv.vms:
        assert machine.platform == name and machine.endpoint == endpoint
        text = repr(machine.to_vars())
        assert not any(secret in text for secret in secrets)
        if machine.kind == model.VM:
            assert machine.uuid and machine.host
