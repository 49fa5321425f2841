"""The libvirt driver on libvirt's own test:/// driver (real libvirt, in-process)."""

import os

import libvirt
import pytest

from ansible_collections.virtops.unified.plugins.module_utils import model, power
from ansible_collections.virtops.unified.plugins.module_utils.libvirt_driver import LibvirtDriver, redact_uri

LAB = os.path.join(os.path.dirname(__file__), "files")
KVM01 = "test://" + os.path.abspath(os.path.join(LAB, "kvm01.xml"))


@pytest.fixture
def drv():
    with LibvirtDriver(uri=KVM01, hypervisor_name="kvm01", cluster="prod") as d:
        yield d


def virsh_state(drv, name):
    """Independent read through the same connection's raw libvirt handle."""
    return drv.conn.lookupByName(name).state()[0]


def test_bulk_read_matches_libvirt_listing(drv):
    inv = drv.list_inventory()
    raw = {d.name(): d.UUIDString() for d in drv.conn.listAllDomains(0)}
    assert {v.name: v.uuid for v in inv.vms} == raw
    assert [h.name for h in inv.hosts] == ["kvm01"] and inv.hosts[0].connection_state == "connected"
    states = {v.name: v.power_state for v in inv.vms}
    assert states == {"web01": "running", "web02": "running", "db01": "running", "batch01": "stopped"}
    assert all(v.host == "kvm01" and v.cluster == "prod" for v in inv.vms)


def test_find_by_name_uuid_and_unknown(drv):
    by_name = drv.find(name="db01")
    assert drv.find(uuid=by_name.uuid).name == "db01"
    with pytest.raises(model.NotFound, match="close matches: db01"):
        drv.find(name="db001")


def test_power_cycle_reaches_states(drv):
    vm = drv.find(name="web02")
    result = power.apply(drv, {"uuid": vm.uuid, "state": "stopped"})
    assert result["changed"] and virsh_state(drv, "web02") == libvirt.VIR_DOMAIN_SHUTOFF
    again = power.apply(drv, {"uuid": vm.uuid, "state": "stopped"})
    assert again["changed"] is False
    power.apply(drv, {"uuid": vm.uuid, "state": "started"})
    assert virsh_state(drv, "web02") == libvirt.VIR_DOMAIN_RUNNING


def test_suspend_is_a_managed_save_and_start_restores_it(drv):
    power.apply(drv, {"name": "web01", "state": "suspended"})
    dom = drv.conn.lookupByName("web01")
    assert dom.hasManagedSaveImage(0) and dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    vm = drv.find(name="web01")
    assert (vm.power_state, vm.power_state_raw) == ("suspended", "shutoff:saved")
    assert drv.list_inventory().vms[[v.name for v in drv.list_inventory().vms].index("web01")].power_state == "suspended"
    power.apply(drv, {"name": "web01", "state": "started"})
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and not dom.hasManagedSaveImage(0)


def test_paused_domain_is_distinct_and_resumes(drv):
    drv.conn.lookupByName("db01").suspend()
    vm = drv.find(name="db01")
    assert vm.power_state == "paused" and vm.power_state_raw.startswith("paused")
    power.apply(drv, {"name": "db01", "state": "started"})
    assert virsh_state(drv, "db01") == libvirt.VIR_DOMAIN_RUNNING


def test_unreachable_uri_is_a_clear_error():
    with pytest.raises(model.Unreachable) as err:
        LibvirtDriver(uri="qemu+tcp://127.0.0.1:1/system")
    assert "qemu+tcp://127.0.0.1:1/system" in str(err.value) and "Connection refused" in str(err.value)


def test_redact_uri_hides_password():
    assert redact_uri("qemu+tcp://admin:s3cret@kvm01/system") == "qemu+tcp://admin:********@kvm01/system"
    assert redact_uri("qemu+ssh://root@kvm01/system") == "qemu+ssh://root@kvm01/system"
