"""The event source over a mixed estate with an Oracle VM Manager: one source (one activation)
reads a lab's inventory directory holding a vCenter and an Oracle VM Manager, each on its own
peer. A vCenter VM hangs and an Oracle VM VM crashes at once: vm_hung for the first, vm_down
for the second, whose cause is "unknown" (Oracle VM's model does not say why a VM went off),
nothing for the VMs left alone. An Oracle VM Server that dies is host_connection_lost. The
faults are injected and the truth read at the peers (scripts/lab), not through the collection."""

import asyncio
import json
import os
import sys
import time

import pytest
import yaml

from helpers import ROOT, lab, lab_env

sys.path.insert(0, os.path.join(ROOT, "extensions", "eda", "plugins", "event_source"))
import hypervisor_health as hh  # noqa: E402 pylint: disable=wrong-import-position

LAB = {"endpoints": [
    {"name": "vc1", "platform": "vmware", "clusters": [
        {"name": "prod", "hosts": [{"name": "esx01", "vms": [{"name": "web01"}, {"name": "web02"}]}]}]},
    {"name": "ovmm", "platform": "ovm", "username": "admin", "password": "eda 'pw'", "clusters": [
        {"name": "pool1", "hosts": [{"name": "ovs01", "vms": [{"name": "erp01"}, {"name": "erp02"}]},
                                    {"name": "ovs02", "vms": [{"name": "hr01"}]}]}]}]}


@pytest.fixture
def estate(tmp_path):
    (tmp_path / "lab.yml").write_text(yaml.safe_dump(LAB))
    labdir = str(tmp_path / "lab")
    lab("up", str(tmp_path / "lab.yml"), labdir)
    try:
        yield labdir
    finally:
        lab("down", labdir, check=False)


def machines(labdir):
    return {m["name"]: m for m in json.loads(lab("state", labdir).stdout)["machines"]}


def watch(labdir, faults, wanted, timeout=60):
    """Run the source over the lab's inventory; inject `faults` once every endpoint was read;
    return the events seen until `wanted(events)` holds."""
    args = {"inventory": os.path.join(labdir, "inventory"), "interval": 0.5, "failure_interval": 2,
            "min_uptime": 0, "connect_timeout": 10}

    async def scenario():
        queue = asyncio.Queue()
        task = asyncio.create_task(hh.main(queue, args))
        events = []
        try:
            await asyncio.sleep(3)  # the first polls only record the state
            for fault in faults:
                await asyncio.to_thread(lab, "fault", labdir, *fault)
            deadline = time.monotonic() + timeout
            while not wanted(events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("not seen in %ds: %s" % (timeout, [(e["type"], e.get("virt_name")) for e in events]))
                try:
                    events.append((await asyncio.wait_for(queue.get(), left))["virtops"])
                except asyncio.TimeoutError:
                    pass
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        return events

    with lab_env(labdir):
        return asyncio.run(scenario())


def test_one_source_watches_a_vcenter_and_an_oracle_vm_manager(estate):
    truth = machines(estate)
    hung, crashed = truth["web02"], truth["erp01"]

    def wanted(events):
        kinds = {(e["type"], e["virt_uuid"]) for e in events}
        return ("vm_hung", hung["uuid"]) in kinds and ("vm_down", crashed["uuid"]) in kinds

    events = watch(estate, [("vm-hang", "web02"), ("vm-crash", "erp01")], wanted)
    down = [e for e in events if e["type"] == "vm_down"]
    assert [(e["virt_platform"], e["virt_name"], e["virt_host"], e["cause"]) for e in down] == [
        ("ovm", "erp01", "ovs01", "unknown")]
    assert down[0]["virt_endpoint"]["platform"] == "ovm" and "password" not in json.dumps(down[0])
    assert down[0]["virt_inventory_source"] == "ovmm.ovm.yml"
    assert [e["virt_name"] for e in events if e["type"] == "vm_hung"] == ["web02"]
    acted_on = {e.get("virt_uuid") for e in events if e["type"] in ("vm_hung", "vm_down")}
    assert acted_on == {hung["uuid"], crashed["uuid"]}
    # the peers: the crash was a fault (no power request counted), the others untouched
    after = machines(estate)
    assert after["erp01"]["power"] == "stopped"
    assert (after["erp01"]["power_ons"], after["erp01"]["graceful_shutdowns"], after["erp01"]["hard_offs"]) == (0, 0, 0)
    assert all(after[n]["power"] == "running" for n in ("web01", "erp02", "hr01"))


def test_an_oracle_vm_server_that_dies_is_a_lost_host(estate):
    def wanted(events):
        return any(e["type"] == "host_connection_lost" and e.get("virt_name") == "ovs01" for e in events)

    events = watch(estate, [("host-down", "ovs01")], wanted)
    lost = [e for e in events if e["type"] == "host_connection_lost"]
    assert [(e["virt_platform"], e["virt_name"]) for e in lost] == [("ovm", "ovs01")], lost
