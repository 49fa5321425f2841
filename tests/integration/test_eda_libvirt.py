"""Event-Driven Ansible on libvirt: the shipped restart_hung_vm.yml rulebook run
by the real ansible-rulebook, watching two real QEMU guests on libvirtd.

Faults, in turn, on one guest: its qemu guest agent stops answering (SIGSTOP
inside the guest), then its domain is destroyed, then destroyed again with
max_resets (2) used up. The other guest is watched too and must never be
touched. End states are read with virsh; actions with the audit log."""

import json
import time

import pytest

from helpers import virsh
from libvirt_peer import (URI, agent_answers, define_and_start, domid, domstate, domuuid, remove,
                          silence_agent, start, wait_agent)
from rulebook_peer import Rulebook, audit_actions


@pytest.fixture
def guests_pair(tmp_path):
    start()
    names = define_and_start({"victim": "acpi", "bystander": "acpi"}, tmp_path, prefix="vo-eda")
    try:
        for name in names.values():
            wait_agent(name)
        yield names
    finally:
        remove(names.values())


def running_again(name, old_id):
    """The domain runs with a new domid (it was power-cycled) and its agent answers."""
    return domstate(name) == "running" and domid(name) != old_id and agent_answers(name)


def test_rulebook_brings_back_a_silent_guest_and_a_destroyed_domain_then_stops(guests_pair, tmp_path):
    victim, bystander = guests_pair["victim"], guests_pair["bystander"]
    victim_uuid, bystander_uuid = domuuid(victim), domuuid(bystander)
    bystander_id = domid(bystander)
    inv = tmp_path / "lab.libvirt.yml"
    inv.write_text("plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: kvmlab, uri: '%s'}\n" % URI)
    variables = {"virtops_inventory": str(inv), "virtops_vms": [victim, bystander],
                 "virtops_interval": 1, "virtops_failure_interval": 3, "virtops_min_uptime": 30,
                 "virtops_max_resets": 2}
    timings = {}
    with Rulebook(tmp_path, "restart_hung_vm.yml", inv, variables) as rb:
        rb.wait_watching()

        # 1. the guest agent stops answering: hung after failure_interval -> restart_vm
        old = domid(victim)
        silence_agent(victim)
        began = time.monotonic()
        rb.wait_for(lambda: running_again(victim, old), 180, "the silent guest running again")
        timings["agent silent -> running, agent answers"] = time.monotonic() - began
        assert len(audit_actions(rb.audit, victim_uuid)) == 1, rb.text()[-6000:]

        # 2. the domain is destroyed: vm_down (cause destroyed) -> restart_vm starts it
        old = domid(victim)
        virsh(URI, "destroy", victim)
        began = time.monotonic()
        rb.wait_for(lambda: running_again(victim, old), 180, "the destroyed domain running again")
        timings["destroyed -> running, agent answers"] = time.monotonic() - began
        rb.wait_for(lambda: len(audit_actions(rb.audit, victim_uuid)) == 2, 30, "the second audit line")

        # 3. destroyed again: max_resets (2) used up -> the rulebook says so and does nothing
        virsh(URI, "destroy", victim)
        rb.wait_for(lambda: rb.count("VIRTOPS vm_reset_limit_reached"), 60, "the max_resets message")
        # the source's own word that it saw the domain still down at a later poll and held back
        rb.wait_for(lambda: rb.count("%s: still shutoff:destroyed; already reported in this episode" % victim), 30,
                    "the source holding back the repeat")
        assert domstate(victim) == "shut off"

    done = audit_actions(rb.audit, victim_uuid)
    assert len(done) == 2, rb.output[-6000:]
    assert all("EDA restart_hung_vm" in json.dumps(rec) for rec in done)
    assert "guest heartbeat lost" in json.dumps(done[0]) and "shutoff:destroyed" in json.dumps(done[1])
    # graceful first: the guest still honours ACPI with a silent agent
    assert [s["action"] for s in done[0]["steps"]][:2] == ["shutdown", "start"], done[0]["steps"]
    assert [s["action"] for s in done[1]["steps"]] == ["start"], done[1]["steps"]
    assert "needs a person" in rb.output and "max_resets 2" in rb.output
    # the bystander was watched all along and never touched
    assert audit_actions(rb.audit, bystander_uuid, states=None) == []
    assert domstate(bystander) == "running" and domid(bystander) == bystander_id
    print("; ".join("%s %.1f s" % item for item in timings.items()))
