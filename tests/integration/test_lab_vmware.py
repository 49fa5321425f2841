"""The lab's VMware part (lab/vmware_lab.py) on the real vcsim peer.

The part's functions are called directly (scripts/lab is the lead's). What the
peer built is read back through pyVmomi, a path independent of the part and of
the control API, and must equal the estate; then the counters, the faults and
`down` are checked through the part's own `state`.
"""

import os
import socket
import ssl
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "lab"))

import vmware_lab  # noqa: E402 pylint: disable=wrong-import-position

from pyVim.connect import Disconnect, SmartConnect  # noqa: E402 pylint: disable=wrong-import-position
from pyVim.task import WaitForTask  # noqa: E402 pylint: disable=wrong-import-position
from pyVmomi import vim  # noqa: E402 pylint: disable=wrong-import-position

PART = vmware_lab.PART
QUOTED = 'db "primary" 01'
JAPANESE = "ウェブ01"
SLASHED = "ops/tool"  # vCenter: ops%2ftool
ESTATE = {
    "name": "vc1", "platform": "vmware", "credentials": "inline",
    "username": "lab-operator", "password": "Lab pw 7f3e",
    "clusters": [
        {"name": "prod", "hosts": [
            {"name": "esx01", "vms": [
                {"name": "web01", "folder": "team-a", "memory_mb": 2048, "cpus": 2},
                {"name": JAPANESE, "memory_mb": 512},
                {"name": QUOTED, "cpus": 4},
                {"name": "app", "folder": "team-a", "priority": 1},
                {"name": SLASHED},
                {"name": "hung01", "heartbeat": "lost"},
            ]},
            {"name": "esx02", "vms": [
                {"name": "app", "folder": "team-b"},
                {"name": "stopped01", "power": "stopped"},
                {"name": "notools", "heartbeat": "none", "uuid": "4211aaaa-1111-2222-3333-444455556666"},
            ]},
        ]},
        {"name": "dev", "hosts": [
            {"name": "esx03", "state": "maintenance", "vms": [
                {"name": "dev01", "power": "suspended", "folder": "team-a/dev"}]},
        ]},
    ],
    "hosts": [{"name": "esx-sa01", "vms": [{"name": "edge01", "graceful": False, "memory_mb": 256}]}],
}
POWER = {"running": "poweredOn", "stopped": "poweredOff", "suspended": "suspended"}


def expected_vms():
    """(cluster, host, folder, vSphere name) -> the estate's VM, defaults filled in."""
    out = {}
    for cluster, host in vmware_lab._hosts(ESTATE):  # pylint: disable=protected-access
        for vm in host.get("vms", []):
            folder = "/".join(vmware_lab.vsphere_name(p) for p in vm.get("folder", "").split("/") if p)
            key = (cluster["name"] if cluster else None, host["name"], folder, vmware_lab.vsphere_name(vm["name"]))
            out[key] = dict({"power": "running", "memory_mb": 1024, "cpus": 1}, **vm)
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    PART.check(ESTATE)
    rec = PART.up(ESTATE, str(tmp_path_factory.mktemp("vc1")))
    try:
        yield rec
    finally:
        PART.down(ESTATE, rec)


def connect(rec, timeout=10):
    return SmartConnect(host="127.0.0.1", port=rec["source"]["port"], user=rec["credentials"]["username"],
                        pwd=rec["credentials"]["password"], disableSslCertValidation=True,
                        httpConnectionTimeout=timeout)


@pytest.fixture(scope="module")
def si(lab):
    conn = connect(lab)
    yield conn
    try:
        Disconnect(conn)
    except Exception:  # pylint: disable=broad-except
        pass  # the endpoint may be down by then


def state(rec):
    return PART.state(ESTATE, rec)


def machine(rec, name, host=None):
    found = [m for m in state(rec)["machines"] if m["name"] == name and host in (None, m["host"])]
    assert len(found) == 1, (name, host, found)
    return found[0]


def stopped(rec, name):
    """The VM's state in the lab once it is stopped, else None."""
    m = machine(rec, name)
    return m if m["power"] == "stopped" else None


def host_state(rec, name):
    return {h["name"]: h for h in state(rec)["hosts"]}[name]["state"]


def wait_for(what, predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not %s after %ss" % (what, timeout))
        time.sleep(0.1)


def vm_by(si_, name, host):
    content = si_.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        found = [vm for vm in view.view if vm.name == name and vm.runtime.host.name == host]
    finally:
        view.Destroy()
    assert len(found) == 1, (name, host, found)
    return found[0]


def folder_of(vm, vm_folder):
    parts = []
    cur = vm.parent
    while cur != vm_folder:
        parts.insert(0, cur.name)
        cur = cur.parent
    return "/".join(parts)


def test_soap_view_equals_the_estate(lab, si):
    content = si.RetrieveContent()
    dcs = [e for e in content.rootFolder.childEntity if isinstance(e, vim.Datacenter)]
    assert len(dcs) == 1
    dc = dcs[0]
    seen = {}
    clusters, standalone = [], []
    for cr in dc.hostFolder.childEntity:
        cluster = cr.name if isinstance(cr, vim.ClusterComputeResource) else None
        (clusters if cluster else standalone).append(cr.name)
        for host in cr.host:
            assert host.parent == cr
            for vm in host.vm:
                assert vm.runtime.host == host
                assert vm.resourcePool == cr.resourcePool and vm in cr.resourcePool.vm
                key = (cluster, host.name, folder_of(vm, dc.vmFolder), vm.name)
                assert key not in seen, key
                seen[key] = vm
    assert sorted(clusters) == ["dev", "prod"] and standalone == ["esx-sa01"]
    want = expected_vms()
    assert set(seen) == set(want)
    for key, spec in want.items():
        vm = seen[key]
        assert vm.runtime.powerState == POWER[spec["power"]], key
        assert vm.config.hardware.memoryMB == spec["memory_mb"], key
        assert vm.config.hardware.numCPU == spec["cpus"], key
        assert vm.summary.config.memorySizeMB == spec["memory_mb"], key
    assert ("prod", "esx01", "", "ops%2ftool") in seen  # "/" escaped as vCenter does
    assert seen[("prod", "esx02", "", "notools")].config.uuid == "4211aaaa-1111-2222-3333-444455556666"
    assert seen[("prod", "esx02", "", "notools")].guest.toolsStatus == "toolsNotInstalled"
    assert seen[("prod", "esx01", "", "hung01")].guestHeartbeatStatus == "red"
    assert seen[("prod", "esx01", "", "hung01")].guest.toolsRunningStatus == "guestToolsRunning"
    assert seen[("prod", "esx01", "team-a", "web01")].guestHeartbeatStatus == "green"
    hosts = {h.name: h for cr in dc.hostFolder.childEntity for h in cr.host}
    assert hosts["esx03"].runtime.inMaintenanceMode is True
    prod = [cr for cr in dc.hostFolder.childEntity if cr.name == "prod"][0]
    das = {c.key: c.dasSettings.restartPriority for c in prod.configurationEx.dasVmConfig}
    assert das == {seen[("prod", "esx01", "team-a", "app")]: "highest"}


def test_state_is_the_estate(lab):
    got = state(lab)
    want = expected_vms()
    assert len(got["machines"]) == len(want)
    by = {(m["cluster"], m["host"], m["name"]): m for m in got["machines"] if m["name"] != "app"}
    for (cluster, host, _folder, name), spec in want.items():
        if name == "app":
            continue
        m = by[(cluster, host, name)]
        assert m["endpoint"] == "vc1" and m["kind"] == "vm"
        assert m["power"] == spec["power"], name
        assert (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"]) == (0, 0, 0), name
        assert m["uuid"], name
    assert by[("prod", "esx01", "web01")]["heartbeat"] == "ok"
    assert by[("prod", "esx01", "hung01")]["heartbeat"] == "lost"
    assert by[("prod", "esx02", "notools")]["heartbeat"] == "none"
    assert by[("prod", "esx02", "stopped01")]["heartbeat"] == "none"
    assert by[(None, "esx-sa01", "edge01")]["heartbeat"] == "ok"
    assert sorted((m["host"], m["cluster"]) for m in got["machines"] if m["name"] == "app") == [
        ("esx01", "prod"), ("esx02", "prod")]
    assert {h["name"]: (h["cluster"], h["state"]) for h in got["hosts"]} == {
        "esx01": ("prod", "connected"), "esx02": ("prod", "connected"), "esx03": ("dev", "maintenance"),
        "esx-sa01": (None, "connected")}


def test_counters_count_what_came_through_vcenter(lab, si):
    web = vm_by(si, "web01", "esx01")
    WaitForTask(web.PowerOffVM_Task())
    WaitForTask(web.PowerOnVM_Task())
    m = machine(lab, "web01")
    assert (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"]) == (1, 0, 1)
    assert m["power"] == "running" and m["heartbeat"] in ("starting", "ok")
    wait_for("web01 heartbeat ok", lambda: machine(lab, "web01")["heartbeat"] == "ok")

    vm_by(si, JAPANESE, "esx01").ShutdownGuest()
    m = wait_for("the Japanese VM off", lambda: stopped(lab, JAPANESE))
    assert (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"]) == (0, 1, 0)

    with pytest.raises(vim.fault.ToolsUnavailable):
        vm_by(si, "notools", "esx02").ShutdownGuest()
    m = machine(lab, "notools")
    assert m["power"] == "running" and (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"]) == (0, 0, 0)


def test_hang_ignores_a_graceful_shutdown(lab, si):
    assert "hangs" in PART.fault(ESTATE, lab, "vm-hang", QUOTED)
    assert machine(lab, QUOTED)["heartbeat"] == "lost"
    vm = vm_by(si, QUOTED, "esx01")
    assert vm.guestHeartbeatStatus == "red"
    vm.ShutdownGuest()  # accepted, and the hung guest does nothing
    time.sleep(0.3)
    m = machine(lab, QUOTED)
    assert m["power"] == "running" and (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"]) == (0, 0, 0)
    PART.fault(ESTATE, lab, "vm-unhang", QUOTED)
    assert machine(lab, QUOTED)["heartbeat"] == "ok"


def test_a_repeated_name_must_be_said_which(lab):
    with pytest.raises(ValueError) as err:
        PART.fault(ESTATE, lab, "vm-crash", "app")
    assert "esx01" in str(err.value) and "esx02" in str(err.value) and "moref" in str(err.value)
    assert "crashed" in PART.fault(ESTATE, lab, "vm-crash", "app@esx02")
    m = machine(lab, "app", "esx02")
    assert m["power"] == "stopped" and (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"]) == (0, 0, 0)
    assert machine(lab, "app", "esx01")["power"] == "running"
    # a name with "/" is found under either spelling
    assert "ops%2ftool" in PART.fault(ESTATE, lab, "vm-ignore-graceful", SLASHED)


def test_host_down_stops_its_vms_and_host_up_brings_it_back(lab, si):
    PART.fault(ESTATE, lab, "host-down", "esx02")
    assert host_state(lab, "esx02") == "down"
    on_host = [m for m in state(lab)["machines"] if m["host"] == "esx02"]
    assert on_host and all(m["power"] == "stopped" for m in on_host)
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    host = [h for h in view.view if h.name == "esx02"][0]
    view.Destroy()
    assert host.runtime.connectionState == "notResponding"  # vCenter does not see the VMs stop
    PART.fault(ESTATE, lab, "host-isolate", "esx01")
    assert host_state(lab, "esx01") == "not_responding"
    assert machine(lab, "web01")["power"] == "running"  # an isolated host runs on
    PART.fault(ESTATE, lab, "host-up", "esx01")
    PART.fault(ESTATE, lab, "host-up", "esx02")
    assert host_state(lab, "esx01") == "connected" and host_state(lab, "esx02") == "connected"
    assert host.runtime.connectionState == "connected"


def test_endpoint_down_up_and_silent(lab):
    port = lab["source"]["port"]
    PART.fault(ESTATE, lab, "endpoint-down", "vc1")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert state(lab)["machines"]  # the control API and the simulator go on
    PART.fault(ESTATE, lab, "endpoint-up", "vc1")
    conn = connect(lab)
    assert conn.RetrieveContent().about.apiType == "VirtualCenter"
    Disconnect(conn)

    PART.fault(ESTATE, lab, "endpoint-silent", "vc1")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
        with ctx.wrap_socket(raw) as tls:  # TCP and TLS complete ...
            tls.settimeout(1)
            tls.sendall(b"GET /sdk/vimServiceVersions.xml HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(socket.timeout):  # ... and nothing answers
                tls.recv(1)
    PART.fault(ESTATE, lab, "endpoint-up", "vc1")
    conn = connect(lab)
    assert conn.RetrieveContent().about.apiType == "VirtualCenter"
    Disconnect(conn)


@pytest.mark.parametrize("change, words", [
    ({"driver": "test"}, "driver"),
    ({"hosts": [{"name": "srv01", "kind": "baremetal"}]}, "kind baremetal"),
    ({"hosts": [{"name": "h", "vms": [{"name": "v", "priority": 1}]}]}, "priority"),
    ({"hosts": [{"name": "h", "vms": [{"name": "v", "heartbeat": "flaky"}]}]}, "heartbeat 'flaky'"),
    ({"hosts": [{"name": "h", "vms": [{"name": "v", "color": "red"}]}]}, "color"),
    ({"hosts": [{"name": "h", "vms": [{"name": "v"}, {"name": "v"}]}]}, "DuplicateName"),
    ({"hosts": [{"name": "h", "state": "maintenance", "vms": [{"name": "v"}]}]}, "maintenance"),
])
def test_check_names_what_vmware_cannot_represent(change, words):
    ep = dict({"name": "vc9", "platform": "vmware"}, **change)
    with pytest.raises(ValueError) as err:
        PART.check(ep)
    assert str(err.value).startswith("endpoint vc9: ") and words in str(err.value)


def test_the_peer_refuses_an_unknown_field_itself(tmp_path):
    ep = {"name": "vc9", "platform": "vmware", "hosts": [{"name": "h", "vms": [{"name": "v", "colour": "red"}]}]}
    with pytest.raises(RuntimeError) as err:
        PART.up(ep, str(tmp_path))  # check() skipped: the peer's own refusal
    assert 'unknown field "colour"' in str(err.value)


def test_down_stops_the_peer(lab):
    pid = lab["pids"][0]
    PART.down(ESTATE, lab)
    assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z"
    with pytest.raises(RuntimeError):
        state(lab)
