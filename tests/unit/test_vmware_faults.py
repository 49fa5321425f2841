"""VMware fault mapping with pyVmomi's own fault objects, the connect deadline,
and the last-known records of unreadable endpoints (libvirt hypervisors and a
vCenter), without a peer."""

import json
import socket
import threading
import time

import pytest
from pyVmomi import vim, vmodl

from ansible_collections.virtops.unified.plugins.module_utils import model, vmware_driver
from ansible_collections.virtops.unified.plugins.module_utils.vmware_driver import VmwareDriver
from ansible_collections.virtops.unified.plugins.plugin_utils.inventory import ENDPOINT, VirtInventoryBase, unreachable_host


def driver(**host_names):
    """A driver that never connected: enough for the fault mapping."""
    drv = VmwareDriver.__new__(VmwareDriver)
    drv.label = "vc01:443"
    drv.host_names = dict(host_names)
    return drv


# --- fault mapping ---------------------------------------------------------------
def test_host_connection_state_is_not_shadowed_by_invalid_state():
    assert issubclass(vim.fault.InvalidHostConnectionState, vim.fault.InvalidState)  # why the order matters
    fault = vim.fault.InvalidHostConnectionState(host=vim.HostSystem("host-12"),
                                                 msg="The operation is not allowed in the current connection state of the host.")
    err = driver(**{"host-12": "esx01"})._fault(fault, "poweroff db01")
    assert isinstance(err, model.StateConflict)
    text = str(err)
    assert "vmware vc01:443: poweroff db01 failed (InvalidHostConnectionState)" in text
    assert "current connection state of the host" in text  # vSphere's own words kept
    assert "host esx01 is not connected to vCenter" in text
    assert "recover_host_failure.yml -e failed_host=esx01" in text


def test_host_named_from_the_vm_when_the_fault_does_not_say():
    err = driver()._fault(vmodl.fault.HostNotReachable(), "start db01", host="esx02")
    assert isinstance(err, model.StateConflict)
    assert "esx02 is not connected to vCenter" in str(err) and "failed_host=esx02" in str(err)
    err = driver()._fault(vim.fault.InvalidHostConnectionState(), "start db01")
    assert "The VM's host is not connected to vCenter" in str(err) and "recover_host_failure.yml" in str(err)


@pytest.mark.parametrize("fault", [vim.fault.InvalidState(), vim.fault.InvalidPowerState(),
                                   vim.fault.InvalidHostState(), vim.fault.ToolsUnavailable()])
def test_other_state_faults_are_conflicts_without_the_host_hint(fault):
    err = driver(**{"host-12": "esx01"})._fault(fault, "start db01", host="esx01")
    assert isinstance(err, model.StateConflict) and "not connected to vCenter" not in str(err)


def test_auth_and_missing_objects_keep_their_types():
    assert isinstance(driver()._fault(vim.fault.NoPermission(), "x"), model.AuthFailed)
    assert isinstance(driver()._fault(vmodl.fault.ManagedObjectNotFound(), "x"), model.NotFound)


# --- the connect deadline ----------------------------------------------------------
def test_default_socket_timeout_is_shared_by_concurrent_connects_and_restored():
    assert socket.getdefaulttimeout() is None
    inside = threading.Event()
    leave = threading.Event()

    def other():
        with vmware_driver._socket_default_timeout(7):  # pylint: disable=protected-access
            inside.set()
            leave.wait(5)

    worker = threading.Thread(target=other)
    worker.start()
    inside.wait(5)
    with vmware_driver._socket_default_timeout(3):  # pylint: disable=protected-access
        assert socket.getdefaulttimeout() == 7  # the longer one: nobody is cut short
    assert socket.getdefaulttimeout() == 7  # the other connect is still under way
    leave.set()
    worker.join(5)
    assert socket.getdefaulttimeout() is None


def test_silent_endpoint_is_unreachable_within_the_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    try:
        begun = time.monotonic()
        with pytest.raises(model.Unreachable) as err:
            VmwareDriver(hostname="127.0.0.1", port=port, username="u", password="p", validate_certs=False,
                         connect_timeout=1)
        assert time.monotonic() - begun < 2.5
        assert "127.0.0.1:%d: no answer within 1s during connect" % port in str(err.value)
        assert socket.getdefaulttimeout() is None
    finally:
        server.close()


# --- last-known records ---------------------------------------------------------------
class Plugin(VirtInventoryBase):
    PLATFORM = "test"

    def __init__(self, store, manager=None):
        super().__init__()
        self.options = {"last_known_dir": str(store)}
        self.manager = manager

    def get_option(self, option, hostvars=None):
        return self.options[option]

    def endpoint_of(self, rec):
        return self.manager or super().endpoint_of(rec)


def host(name, state="connected", kind=model.HYPERVISOR):
    return model.Machine(kind=kind, platform="test", name=name, uuid="u-" + name, cluster="c1",
                         power_state=model.RUNNING, power_state_raw="poweredOn", connection_state=state,
                         facts={"connection_state_raw": state}).to_vars()


def vm(name, on):
    return model.Machine(kind=model.VM, platform="test", name=name, uuid="u-" + name, host=on,
                         power_state=model.RUNNING, power_state_raw="poweredOn", heartbeat=model.HB_OK).to_vars()


def down(name, kind=model.HYPERVISOR):
    return unreachable_host("test", name, {"platform": "test"}, model.Unreachable("no answer"), kind=kind).to_vars()


def read(plugin, machines):
    records = {"machines": machines, "warnings": []}
    plugin._remember("/inv/src.test.yml", records)  # pylint: disable=protected-access
    return {m["virt_name"]: m for m in records["machines"]}, records["warnings"]


def test_hypervisor_endpoints_keep_their_vms_as_before(tmp_path):
    plugin = Plugin(tmp_path)
    read(plugin, [host("kvm1"), vm("a", "kvm1"), vm("b", "kvm1"), host("kvm2"), vm("c", "kvm2")])
    out, warnings = read(plugin, [down("kvm1"), host("kvm2"), vm("c", "kvm2")])
    assert set(out) == {"kvm1", "kvm2", "a", "b", "c"}
    for name in ("a", "b"):
        assert out[name]["virt_stale"] is True and out[name]["virt_power_state"] == "unknown"
        assert out[name]["virt_heartbeat"] == "unknown" and out[name]["virt_power_state_raw"] == "last seen poweredOn"
        assert out[name]["virt_host"] == "kvm1" and out[name]["virt_unreachable_endpoint"] == "kvm1"
    assert "virt_stale" not in out["c"] and "virt_stale" not in out["kvm1"]
    assert out["kvm1"]["virt_connection_state"] == "unreachable" and out["kvm1"]["virt_uuid"] == "u-kvm1"
    assert out["kvm1"]["virt_last_seen"] == out["a"]["virt_last_seen"]
    assert out["kvm1"]["virt_unreachable_since"] == out["a"]["virt_unreachable_since"]
    assert len(warnings) == 1 and warnings[0].startswith("kvm1: listing its 2 VM(s) as last seen at ")


def test_store_of_the_previous_format_is_read(tmp_path):
    plugin = Plugin(tmp_path)
    read(plugin, [host("kvm1")])  # creates the store file
    (store,) = tmp_path.iterdir()
    store.write_text(json.dumps({"kvm1": {"time": "2026-01-02T00:00:00+00:00", "vms": [vm("a", "kvm1")]}}))
    out, warnings = read(plugin, [down("kvm1")])
    assert out["a"]["virt_stale"] is True and out["a"]["virt_last_seen"] == "2026-01-02T00:00:00+00:00"
    assert warnings == ["kvm1: listing its 1 VM(s) as last seen at 2026-01-02T00:00:00+00:00"]


def test_manager_endpoint_keeps_its_hosts_and_vms(tmp_path):
    plugin = Plugin(tmp_path, manager="vc01")
    read(plugin, [host("esx1"), host("esx2", "notResponding"), vm("a", "esx1"), vm("b", "esx2")])
    out, warnings = read(plugin, [down("vc01", ENDPOINT)])
    assert out["vc01"]["virt_kind"] == ENDPOINT and out["vc01"]["virt_connection_state"] == "unreachable"
    since = out["vc01"]["virt_unreachable_since"]
    for name in ("esx1", "esx2", "a", "b"):
        rec = out[name]
        assert rec["virt_stale"] is True and rec["virt_unreachable_endpoint"] == "vc01"
        assert rec["virt_last_seen"] == out["vc01"]["virt_last_seen"] and rec["virt_unreachable_since"] == since
    assert out["esx2"]["virt_connection_state"] == "unreachable"
    assert out["esx2"]["virt_connection_state_raw"] == "last seen notResponding"
    assert warnings == ["vc01: listing its 2 host(s) and 2 VM(s) as last seen at %s" % out["vc01"]["virt_last_seen"]]
    # still down at the next read: the same outage; read again: nothing stale, the outage is over
    again, _warnings = read(plugin, [down("vc01", ENDPOINT)])
    assert again["vc01"]["virt_unreachable_since"] == since
    live, warnings = read(plugin, [host("esx1"), vm("a", "esx1")])
    assert set(live) == {"esx1", "a"} and warnings == []
    fresh, _warnings = read(plugin, [down("vc01", ENDPOINT)])
    assert set(fresh) == {"vc01", "esx1", "a"}


def test_endpoint_never_read_is_listed_alone(tmp_path):
    out, warnings = read(Plugin(tmp_path, manager="vc01"), [down("vc01", ENDPOINT)])
    assert set(out) == {"vc01"} and warnings == []
    assert out["vc01"]["virt_unreachable_since"] and "virt_last_seen" not in out["vc01"]


def test_standalone_esxi_named_like_its_endpoint_stays_a_hypervisor(tmp_path):
    plugin = Plugin(tmp_path, manager="esx9")
    read(plugin, [host("esx9"), vm("a", "esx9")])
    out, _warnings = read(plugin, [down("esx9", ENDPOINT)])
    assert set(out) == {"esx9", "a"}
    assert out["esx9"]["virt_kind"] == model.HYPERVISOR and out["esx9"]["virt_connection_state"] == "unreachable"
    assert out["esx9"]["virt_uuid"] == "u-esx9" and out["a"]["virt_stale"] is True
