"""Event-Driven Ansible over a mixed estate: ONE ansible-rulebook activation of the shipped
restart_hung_vm.yml watches one inventory directory that holds a vCenter (the simulator; its
credentials written in its own source file, none in the environment) and a KVM host (libvirtd +
QEMU on this machine, a real guest), and restarts the hung VM on each.

The two faults come at once: the vCenter VM's guest heartbeat goes red (the peer's control API),
the QEMU guest's agent stops answering (SIGSTOP inside the guest). Proof at the peers, not from the
collection: the power calls the vCenter received for its VM and its runtime.bootTime (pyVmomi); the
domain's new domid and libvirt's own stop reason in its QEMU log. The VM that did not hang was
watched all along and never touched."""

import os
import time

import pytest

from libvirt_peer import (URI, agent_answers, define_and_start, domid, domstate, domuuid, remove,
                          silence_agent, start, stop_reasons, wait_agent)
from rulebook_peer import Rulebook, audit_actions
from vcsim_peer import PASSWORD, USERNAME

VIA = "eda Restart hung VMs through their hypervisor/Restart a hung VM"


@pytest.fixture
def guest(tmp_path):
    """One real QEMU guest on qemu:///system, its agent answering."""
    start()
    names = define_and_start({"victim": "acpi"}, tmp_path, prefix="vo-mix")
    try:
        wait_agent(names["victim"])
        yield names["victim"]
    finally:
        remove(names.values())


def test_one_activation_restarts_a_hung_vm_on_a_vcenter_and_on_a_kvm_host(vcsim, guest, tmp_path):
    sim = vcsim("-dc", "1", "-cluster", "0", "-host", "1", "-vm", "2")
    vms = {v["name"]: v for v in sim.state()["vms"]}
    vc_hung, vc_other = vms["DC0_H0_VM0"], vms["DC0_H0_VM1"]
    boots = {v["instanceUuid"]: sim.vm(v["instanceUuid"]).runtime.bootTime for v in (vc_hung, vc_other)}
    assert all(boots.values())
    kvm_uuid, kvm_id, kvm_reasons = domuuid(guest), domid(guest), stop_reasons(guest)

    # the estate: one directory, two platforms; the vCenter's credentials in its file only
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "sim.vmware.yml").write_text(
        "plugin: virtops.unified.vmware\nhostname: 127.0.0.1\nport: %d\nvalidate_certs: false\n"
        "username: %s\npassword: %s\n" % (sim.port, USERNAME, PASSWORD))
    os.chmod(inv / "sim.vmware.yml", 0o600)
    (inv / "lab.libvirt.yml").write_text("plugin: virtops.unified.libvirt\nhypervisors:\n"
                                         "  - {name: kvmlab, uri: '%s'}\n" % URI)
    variables = {"virtops_inventory": str(inv), "virtops_vms": [vc_hung["instanceUuid"], vc_other["instanceUuid"], guest],
                 "virtops_interval": 1, "virtops_failure_interval": 3, "virtops_min_uptime": 30}
    rb_dir = tmp_path / "rulebook"
    rb_dir.mkdir()
    timings = {}
    # the vcsim fixture puts the credentials in this process's environment: not in the rulebook's
    with Rulebook(rb_dir, "restart_hung_vm.yml", inv, variables,
                  unset=("VMWARE_USER", "VMWARE_PASSWORD", "VMWARE_HOST", "LIBVIRT_DEFAULT_URI")) as rb:
        rb.wait_watching(endpoints=2)
        # one source in one activation, watching both endpoints
        assert rb.count("hypervisor_health: 2 endpoint(s) of 2 source(s): libvirt kvmlab (lab.libvirt.yml), "
                        "vmware 127.0.0.1 (sim.vmware.yml)") == 1, rb.text()[-4000:]
        assert rb.count("hypervisor_health: watching vmware 127.0.0.1 (sim.vmware.yml): 1 host(s), 2 VM(s)") == 1
        assert rb.count("hypervisor_health: watching libvirt kvmlab (lab.libvirt.yml): 1 host(s), 1 VM(s)") == 1

        began = time.monotonic()
        sim.vm_do(vc_hung["name"], "heartbeat", status="red")
        silence_agent(guest)
        timings["KVM guest agent silent"] = time.monotonic() - began

        def vc_restarted():
            vm = sim.vm(vc_hung["instanceUuid"])
            return vm.runtime.powerState == "poweredOn" and vm.runtime.bootTime != boots[vc_hung["instanceUuid"]]

        def kvm_restarted():
            return domstate(guest) == "running" and domid(guest) != kvm_id and agent_answers(guest)

        done = set()

        def both():
            for what, check in (("vCenter VM", vc_restarted), ("KVM guest", kvm_restarted)):
                if what not in done and check():
                    done.add(what)
                    timings[what + " running again"] = time.monotonic() - began
            return len(done) == 2

        rb.wait_for(both, 240, "the hung VM on each platform running again")
        rb.wait_for(lambda: audit_actions(rb.audit, vc_hung["instanceUuid"]) and audit_actions(rb.audit, kvm_uuid),
                    60, "both restarts in the audit log")
        sent = rb.text()
        assert sent.count("hypervisor_health: sent vm_hung for DC0_H0_VM0") == 1, sent[-6000:]
        assert sent.count("hypervisor_health: sent vm_hung for %s" % guest) == 1, sent[-6000:]

    # each restart, once, by this activation, with a reason of fixed words
    for vm_uuid in (vc_hung["instanceUuid"], kvm_uuid):
        (record,) = audit_actions(rb.audit, vm_uuid)
        assert record["via"] == VIA and record["reason"] == "EDA restart_hung_vm: vm_hung (guest heartbeat lost)", record
    (kvm_record,) = audit_actions(rb.audit, kvm_uuid)
    assert [s["action"] for s in kvm_record["steps"]][:2] == ["shutdown", "start"], kvm_record["steps"]

    # at the vCenter: the power calls it received for the hung VM, ending in a power-on that
    # succeeded, and a new boot time; nothing for the other VM
    calls = [(o["op"], o["result"]) for o in sim.operations(vc_hung["instanceUuid"])]
    assert calls and calls[-1] == ("PowerOnVM_Task", "success"), calls
    assert any(op in ("ShutdownGuest", "PowerOffVM_Task", "ResetVM_Task") for op, _result in calls[:-1]), calls
    assert sim.events(vc_hung["instanceUuid"], ("VmPoweredOnEvent",)), sim.events(vc_hung["instanceUuid"])
    assert sim.operations(vc_other["instanceUuid"]) == []
    assert sim.vm(vc_other["instanceUuid"]).runtime.bootTime == boots[vc_other["instanceUuid"]]
    assert audit_actions(rb.audit, vc_other["instanceUuid"], states=None) == []

    # at the KVM host: a new domain id, and libvirt's own word for how the old run ended
    assert domstate(guest) == "running" and domid(guest) != kvm_id
    assert stop_reasons(guest)[len(kvm_reasons):] == ["shutdown"], stop_reasons(guest)

    assert PASSWORD not in rb.output and PASSWORD not in rb.audit.read_text()
    print("; ".join("%s after %.1f s" % item for item in sorted(timings.items())))
