"""evacuate_host.yml and recover_host_failure.yml on a merged inventory:
the vCenter simulator plus a libvirt test:/// hypervisor. End states are read
with pyVmomi and the peer's control API, not with our code."""

import json
import os

import pytest

from helpers import SESSION_DIR, playbook

NODE = ('<node><domain type="test"><name>kvm-vm1</name><uuid>0e0f7a31-8c64-4b7e-9a55-6f1f0c9d1a01</uuid>'
        '<memory>65536</memory><os><type>hvm</type></os></domain></node>')


@pytest.fixture(scope="module")
def site(vcsim, tmp_path_factory):
    sim = vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "3", "-host", "1", "-vm", "3")
    inv = tmp_path_factory.mktemp("site")
    sim.write_inventory(inv / "prod.vmware.yml")
    (inv / "kvm1.xml").write_text(NODE)
    (inv / "lab.libvirt.yml").write_text("plugin: virtops.unified.libvirt\nhypervisors:\n"
                                         "  - {name: kvm1, uri: 'test://%s', cluster: DC0_C0}\n" % (inv / "kvm1.xml"))
    return sim, inv


def hosts_of(sim):
    return {v["name"]: (v["host"], v["powerState"]) for v in sim.state()["vms"]}


def host_with_vms(sim):
    counts = {}
    for vm in sim.state()["vms"]:
        if vm["cluster"] == "DC0_C0":
            counts[vm["host"]] = counts.get(vm["host"], 0) + 1
    return max(sorted(counts), key=counts.get)


def test_evacuate_moves_every_vm_then_enters_maintenance(site):
    sim, inv = site
    source = host_with_vms(sim)
    on_source = sorted(n for n, (h, _p) in hosts_of(sim).items() if h == source)
    dry = playbook(inv, "playbooks/evacuate_host.yml", "-e", "evacuate=%s" % source, "-e", "maintenance=true", "--check")
    assert "would move off %s" % source in dry.stdout
    assert sorted(n for n, (h, _p) in hosts_of(sim).items() if h == source) == on_source

    proc = playbook(inv, "playbooks/evacuate_host.yml", "-e", "evacuate=%s" % source, "-e", "maintenance=true")
    assert "%d of %d VM(s) moved off %s" % (len(on_source), len(on_source), source) in proc.stdout
    after = hosts_of(sim)
    cluster_hosts = {h["name"] for h in sim.state()["hosts"] if h["cluster"] == "DC0_C0"}
    for name in on_source:
        assert after[name][0] in cluster_hosts - {source}, (name, after[name])
        assert after[name][1] == "poweredOn"
    mine = [h for h in sim.state()["hosts"] if h["name"] == source][0]
    assert mine["inMaintenanceMode"] is True and not mine["vms"]
    with open(os.environ.get("VIRTOPS_AUDIT_LOG") or os.path.join(SESSION_DIR, "audit.jsonl"), encoding="utf-8") as fh:
        moved = [r for r in map(json.loads, fh) if r["state"] == "migrated" and r["target"]["host"] == source
                 and r["phase"] == "outcome"]
    assert sorted(r["target"]["name"] for r in moved) == on_source
    sim.host_do(source, "maintenance", on=False)


def test_evacuating_a_libvirt_hypervisor_reports_what_cannot_move(site):
    _sim, inv = site
    proc = playbook(inv, "playbooks/evacuate_host.yml", "-e", "evacuate=kvm1", "-e", "maintenance=true", check=False)
    assert "live migration is not supported by virtops yet" in proc.stdout
    assert "still on kvm1, not entering maintenance mode" in proc.stdout and proc.returncode != 0


def test_recover_starts_the_vms_of_a_dead_esxi_host_elsewhere(site):
    sim, inv = site
    source = host_with_vms(sim)
    victims = {v["instanceUuid"]: v["name"] for v in sim.state()["vms"] if v["host"] == source}
    sim.host_power(source, "poweredOff")  # dead: its VMs stop and their files are free
    try:
        proc = playbook(inv, "playbooks/recover_host_failure.yml")  # no failed_host: every host that is down
        for vm_uuid, name in victims.items():
            vm = sim.vm(vm_uuid)  # same identity, re-registered
            assert vm.runtime.host.name != source and vm.runtime.powerState == "poweredOn", name
            assert "%s" % name in proc.stdout
            assert sim.vm_state(vm_uuid)["filesLockedBy"] == vm.runtime.host.name
        again = playbook(inv, "playbooks/recover_host_failure.yml", "-e", "failed_host=%s" % source)
        assert "0 VM(s) on failed host(s) %s" % source in again.stdout
    finally:
        sim.host_power(source, "poweredOn")
    # back, the host brings its copies of them back too, powered off (see test_vcsim_fidelity.py)
    for vm_uuid, name in victims.items():
        assert sim.vm(vm_uuid).runtime.powerState == "poweredOn", name


def test_unknown_host_is_refused_and_nothing_changes(site):
    sim, inv = site
    before = hosts_of(sim)
    for play, arg in (("playbooks/evacuate_host.yml", "evacuate=esx99"),
                      ("playbooks/recover_host_failure.yml", "failed_host=esx99")):
        proc = playbook(inv, play, "-e", arg, check=False)
        assert proc.returncode != 0 and "esx99 is not a hypervisor of this inventory" in proc.stdout
    assert hosts_of(sim) == before


def test_restart_vm_on_the_merged_inventory(site):
    sim, inv = site
    vm = [v for v in sim.state()["vms"] if v["powerState"] == "poweredOn"][0]
    sim.wait_tools(vm["instanceUuid"])  # a guest that is up (one just recovered boots for a moment)
    boot_before = sim.vm(vm["instanceUuid"]).summary.runtime.bootTime
    proc = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=%s" % vm["instanceUuid"],
                    "-e", json.dumps({"reason": "merged inventory"}))
    assert "steps: shutdown=ok, start=ok" in proc.stdout
    after = sim.vm(vm["instanceUuid"])
    assert after.runtime.powerState == "poweredOn" and after.summary.runtime.bootTime != boot_before
    # the libvirt source of the same inventory stays addressable by name in the same run
    dry = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=kvm-vm1", "--check")
    assert "PLAN (check mode, nothing done): restart of kvm-vm1" in dry.stdout
