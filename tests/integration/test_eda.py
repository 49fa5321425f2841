"""Event-Driven Ansible: the hypervisor_health event source against the vCenter
simulator (its `main` run with an asyncio.Queue), and the restart_hung_vm
rulebook run by the real ansible-rulebook (venv .build/eda-venv, Java 17).
Outcomes are read with pyVmomi / the peer's control API and the audit log."""

import asyncio
import json
import os
import shutil
import sys
import time

import pytest

from helpers import ROOT
from rulebook_peer import SOURCE_DIR, Rulebook, audit_actions
from vcsim_peer import PASSWORD, USERNAME, VcsimPeer

COLLECTIONS = os.path.join(ROOT, ".build", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
sys.path.insert(0, SOURCE_DIR)
import hypervisor_health as hh  # noqa: E402 pylint: disable=wrong-import-position


def src_args(sim, **extra):
    """The source watching the peer's inventory source (sim.vmware.yml; the credentials come from
    VMWARE_USER / VMWARE_PASSWORD, which the vcsim fixture sets)."""
    out = {"inventory": sim.inventory_path, "interval": 0.5, "failure_interval": 2, "min_uptime": 0}
    out.update(extra)
    return out


class Running:
    """The source's main() as a task; collect() reads its events."""

    def __init__(self, args):
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(hh.main(self.queue, args))
        self.events = []

    async def collect(self, seconds, until=None):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.task.done():
                self.task.result()  # raises what main raised
                raise AssertionError("the source stopped")
            try:
                ev = await asyncio.wait_for(self.queue.get(), 0.2)
            except asyncio.TimeoutError:
                continue
            ev["_at"] = time.monotonic()
            self.events.append(ev)
            if until and until(ev):
                return ev
        return None

    async def stop(self):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


def of(events, kind):
    return [e for e in events if e["virtops"]["type"] == kind]


@pytest.fixture(scope="module")
def sim(vcsim):
    return vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "2", "-host", "1", "-vm", "2")


def test_heartbeat_red_gives_vm_hung_for_that_vm_only(sim):
    victim = [v for v in sim.state()["vms"] if v["name"] == "DC0_H0_VM0"][0]

    async def scenario():
        run = Running(src_args(sim))
        await run.collect(1.5)  # first polls: the initial state gives no event
        assert run.events == []
        sim.vm_do(victim["name"], "heartbeat", status="red")
        lost_at = time.monotonic()
        hung = await run.collect(15, until=lambda e: e["virtops"]["type"] == "vm_hung")
        await run.collect(3)  # nothing more: once per episode
        sim.vm_do(victim["name"], "heartbeat", status="green")
        await run.collect(1.5)
        await run.stop()
        return run.events, hung, lost_at

    events, hung, lost_at = asyncio.run(scenario())
    assert hung is not None, events
    assert [e["virtops"]["type"] for e in events] == ["vm_heartbeat_lost", "vm_hung"], events
    ev = hung["virtops"]
    assert ev["virt_uuid"] == victim["instanceUuid"] and ev["virt_name"] == "DC0_H0_VM0"
    assert ev["virt_host"] == "DC0_H0" and ev["virt_platform"] == "vmware" and ev["virt_heartbeat"] == "lost"
    assert ev["virt_endpoint_id"] == "127.0.0.1" and ev["virt_inventory_source"] == "sim.vmware.yml"
    assert ev["virt_endpoint"] == {"platform": "vmware", "hostname": "127.0.0.1", "port": sim.port,
                                   "validate_certs": False}
    assert ev["virt_power_state"] == "running" and "heartbeat lost" in ev["reason"]
    assert hung["meta"]["hosts"] == "DC0_H0_VM0"
    assert hung["_at"] - lost_at >= 2.0  # failure_interval
    assert PASSWORD not in json.dumps(events)


def test_min_uptime_holds_back_a_vm_just_powered_on(sim):
    name = "DC0_H0_VM1"

    async def scenario():
        run = Running(src_args(sim, failure_interval=1, min_uptime=5))
        await run.collect(1.5)
        sim.vm_do(name, "power", state="poweredOff")
        await run.collect(1.5)
        sim.vm_do(name, "power", state="poweredOn")
        on_at = time.monotonic()
        await run.collect(1.5)
        sim.vm_do(name, "heartbeat", status="red")
        hung = await run.collect(15, until=lambda e: e["virtops"]["type"] == "vm_hung")
        sim.vm_do(name, "heartbeat", status="green")
        await run.stop()
        return run.events, hung, on_at

    events, hung, on_at = asyncio.run(scenario())
    power = [(e["virtops"]["previous_power_state"], e["virtops"]["virt_power_state"])
             for e in of(events, "vm_power_changed")]
    assert power == [("running", "stopped"), ("stopped", "running")], events
    assert hung is not None and hung["virtops"]["virt_name"] == name
    assert hung["_at"] - on_at >= 5.0  # min_uptime after the power-on was seen
    # the guest booted with its heartbeat gray until its Tools started (the peer's
    # tools delay): no heartbeat event came of that, only of the red set afterwards
    assert [e["virtops"]["type"] for e in events if e["virtops"]["type"] in ("vm_heartbeat_lost", "vm_hung")] == \
        ["vm_heartbeat_lost", "vm_hung"], events


def test_a_guest_whose_tools_never_start_is_not_taken_for_hung(sim):
    """Powered on, its heartbeat stays gray (no Tools, no answer either way): as vSphere
    HA's VM monitoring, no vm_hung however long it lasts, and no vm_heartbeat_lost."""
    name = "DC0_H0_VM1"

    async def scenario():
        run = Running(src_args(sim, failure_interval=1, min_uptime=1))
        await run.collect(1)
        sim.vm_do(name, "power", state="poweredOff")
        sim.vm_do(name, "tools_delay", seconds="never")
        await run.collect(1)
        sim.vm_do(name, "power", state="poweredOn")
        await run.collect(3)  # failure_interval + min_uptime, and half as much again
        await run.stop()
        return run.events

    try:
        events = asyncio.run(scenario())
        assert sim.vm_state(name)["guestHeartbeatStatus"] == "gray"
    finally:
        sim.vm_do(name, "tools_delay", seconds=1)
        sim.vm_do(name, "tools", running=True)
    assert [e["virtops"]["type"] for e in events if e["virtops"]["type"] != "vm_down"] == \
        ["vm_power_changed", "vm_power_changed"], events  # off, on: nothing of the heartbeat


def test_host_disconnect_gives_host_connection_lost_then_back(sim):
    host = "DC0_C0_H0"
    on_host = sorted(v["name"] for v in sim.state()["vms"] if v["host"] == host)

    async def scenario():
        run = Running(src_args(sim))
        await run.collect(1.5)
        sim.host_do(host, "connection", state="disconnected")
        lost = await run.collect(10, until=lambda e: e["virtops"]["type"] == "host_connection_lost")
        await run.collect(1.5)
        sim.host_do(host, "connection", state="connected")
        back = await run.collect(10, until=lambda e: e["virtops"]["type"] == "host_connection_back")
        await run.stop()
        return run.events, lost, back

    events, lost, back = asyncio.run(scenario())
    assert lost is not None and back is not None, events
    assert lost["virtops"]["virt_name"] == host and lost["meta"]["hosts"] == host
    assert lost["virtops"]["virt_connection_state"] == "disconnected"
    assert lost["virtops"]["vms"] == on_host
    # the VMs of the host read 'unknown' meanwhile: the host event says it, no VM noise
    assert of(events, "vm_power_changed") == [], events
    assert [e["virtops"]["type"] for e in events] == ["host_connection_lost", "host_connection_back"]


def test_endpoint_that_goes_away_is_reported_once_and_the_source_keeps_running(vcsim, tmp_path):
    peer = vcsim("-dc", "1", "-cluster", "0", "-host", "1", "-vm", "1")
    port = peer.port

    async def scenario():
        run = Running(src_args(peer, interval=0.3))
        await run.collect(1.5)
        await asyncio.to_thread(peer.stop)
        gone = await run.collect(15, until=lambda e: e["virtops"]["type"] == "endpoint_unreachable")
        await run.collect(3)  # several more failed polls: still one event, still running
        assert not run.task.done()
        again = VcsimPeer(tmp_path, "-dc", "1", "-cluster", "0", "-host", "1", "-vm", "1",
                          "-listen", "127.0.0.1:%d" % port)
        await asyncio.to_thread(again.start)
        try:
            back = await run.collect(20, until=lambda e: e["virtops"]["type"] == "endpoint_back")
        finally:
            await run.stop()
            again.stop()
        return run.events, gone, back

    events, gone, back = asyncio.run(scenario())
    assert gone is not None, events
    assert gone["virtops"]["error_type"] == "Unreachable"
    assert len(of(events, "endpoint_unreachable")) == 1
    assert back is not None, events
    assert [e["virtops"]["type"] for e in events] == ["endpoint_unreachable", "endpoint_back"], events


# --- the real ansible-rulebook --------------------------------------------------

def test_rulebook_restarts_a_hung_vm_once_and_stops_at_max_resets(vcsim, tmp_path):
    peer = vcsim("-dc", "1", "-cluster", "0", "-host", "1", "-vm", "2")
    vms = {v["name"]: v for v in peer.state()["vms"]}
    hung, other = vms["DC0_H0_VM0"], vms["DC0_H0_VM1"]
    other_boot = peer.vm(other["instanceUuid"]).runtime.bootTime
    hung_boot = peer.vm(hung["instanceUuid"]).runtime.bootTime
    assert other_boot and hung_boot  # the peer sets it, as vCenter does
    inv = peer.write_inventory(tmp_path / "sim.vmware.yml")
    variables = {"virtops_inventory": inv, "virtops_interval": 1, "virtops_failure_interval": 2,
                 "virtops_min_uptime": 0, "virtops_max_resets": 1}
    with Rulebook(tmp_path, "restart_hung_vm.yml", inv, variables,
                  {"VMWARE_USER": USERNAME, "VMWARE_PASSWORD": PASSWORD}) as rb:
        rb.wait_watching()
        peer.vm_do(hung["name"], "heartbeat", status="red")
        lost_at = time.monotonic()
        rb.wait_for(lambda: audit_actions(rb.audit, hung["instanceUuid"]), 120, "a restart in the audit log")
        restarted_in = time.monotonic() - lost_at
        first_boot = peer.vm(hung["instanceUuid"]).runtime.bootTime
        assert first_boot != hung_boot, "the hung VM was not power-cycled"
        # the same fault again: max_resets (1) is reached, the rulebook says so and does nothing
        peer.vm_do(hung["name"], "heartbeat", status="red")
        rb.wait_for(lambda: rb.count("VIRTOPS vm_reset_limit_reached"), 60, "the max_resets message")
        # the source's own word, a poll later, that it saw the fault go on and sent nothing more
        limit_at = rb.text().index("VIRTOPS vm_reset_limit_reached")
        rb.wait_for(lambda: "%s: heartbeat still lost; vm_hung already sent" % hung["name"] in rb.text()[limit_at:],
                    30, "the source holding back the repeat")
    done = audit_actions(rb.audit, hung["instanceUuid"])
    assert len(done) == 1, rb.output[-6000:]
    assert "EDA restart_hung_vm" in json.dumps(done[0])
    assert "needs a person" in rb.output and "max_resets 1" in rb.output
    assert audit_actions(rb.audit, other["instanceUuid"], states=None) == []
    now_hung, now_other = peer.vm(hung["instanceUuid"]), peer.vm(other["instanceUuid"])
    assert now_hung.runtime.powerState == "poweredOn" and now_hung.runtime.bootTime == first_boot
    assert now_other.runtime.powerState == "poweredOn" and now_other.runtime.bootTime == other_boot
    assert PASSWORD not in rb.output
    print("heartbeat red -> restart recorded in %.1f s" % restarted_in)
    shutil.copy(rb.log_path, os.path.join(ROOT, ".build", "eda-last-rulebook.log"))
