"""Event-Driven Ansible: the shipped host_down rulebook run by the real
ansible-rulebook (venv .build/eda-venv, Java 17) against the vCenter simulator.
A host of a cluster dies (powered off: vCenter sees it not responding, and its
VMs stop and their files are free); the rulebook must write the impact report
and start that host's VMs on another live host of the cluster, once. The end
state is read back with pyVmomi, the report files, the audit log and the calls
the peer received. (A host that is only cut off keeps its VMs and their files:
recovery then refuses, see test_vcsim_fidelity.py.)"""

import glob
import json
import os
import time

from rulebook_peer import Rulebook, audit_actions
from vcsim_peer import PASSWORD, USERNAME

IMPACT_PLAY = "PLAY [Impact of a host failure]"
RECOVER_PLAY = "PLAY [Plan where each VM of the failed hosts starts]"


def where_running(peer, vm_uuid):
    """(host name, power state) of the VM, read with pyVmomi."""
    vm = peer.vm(vm_uuid)
    return vm.runtime.host.name, vm.runtime.powerState


def test_rulebook_reports_a_lost_host_once_and_starts_its_vms_on_a_live_host(
        vcsim, tmp_path):
    peer = vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "3", "-host", "0", "-vm", "4")
    state = peer.state()
    cluster_hosts = sorted(h["name"] for h in state["hosts"] if h["cluster"] == "DC0_C0")
    assert len(cluster_hosts) >= 2, state["hosts"]
    by_host = {}
    for vm in state["vms"]:
        by_host.setdefault(vm["host"], []).append(vm)
    # the host with the most VMs (vcsim places 4 VMs on 3 hosts as 1/2/1)
    failed = max(cluster_hosts, key=lambda h: (len(by_host.get(h, [])), h))
    victims = {v["instanceUuid"]: v["name"] for v in by_host[failed]}
    bystanders = {v["instanceUuid"]: v["name"] for v in state["vms"] if v["host"] != failed}
    assert len(victims) >= 2 and bystanders, state["vms"]
    for vm_uuid in victims:
        assert where_running(peer, vm_uuid) == (failed, "poweredOn")
    before = {u: (peer.vm(u).runtime.host.name, peer.vm(u).runtime.bootTime) for u in bystanders}
    live = set(cluster_hosts) - {failed}

    inv = peer.write_inventory(tmp_path / "sim.vmware.yml")
    variables = {"virtops_inventory": inv, "virtops_interval": 1, "virtops_report_dir": str(tmp_path / "reports")}
    env = {"VMWARE_USER": USERNAME, "VMWARE_PASSWORD": PASSWORD,
           "VIRTOPS_LAST_KNOWN_DIR": str(tmp_path / "last_known")}

    def recovered():
        now = {u: where_running(peer, u) for u in victims}
        return now if all(h in live and p == "poweredOn" for h, p in now.values()) else None

    with Rulebook(tmp_path, "host_down.yml", inv, variables, env) as rb:
        rb.wait_watching()
        peer.host_power(failed, "poweredOff")
        lost_at = time.monotonic()
        rb.wait_for(lambda: rb.count(IMPACT_PLAY), 120, "the impact playbook to start")
        started_in = time.monotonic() - lost_at
        placed = rb.wait_for(recovered, 180, "the VMs of %s running on a live host" % failed)
        recovered_in = time.monotonic() - lost_at
        rb.wait_for(lambda: rb.count("PLAY RECAP") >= 2, 60, "both playbooks to end")
        # the host flaps: back, then lost again within the throttle window. The source emits a
        # second host_connection_lost; the rulebook must not run either playbook again. Back,
        # the host brings its own (powered-off) copies of the recovered VMs into vCenter's
        # inventory again; they must not be taken for VMs to act on.
        peer.host_power(failed, "poweredOn")
        rb.wait_for(lambda: rb.count("VIRTOPS host_connection_back") == 1, 60, "the source seeing it back")
        peer.host_do(failed, "connection", state="disconnected")
        rb.wait_for(lambda: rb.count("hypervisor_health: sent host_connection_lost") == 2, 60, "the second loss")
        # a positive sign that the rulebook had the second loss: the back that follows it is
        # printed, and a ruleset runs its actions in order, so a run of the runbooks for the
        # second loss would have come first
        peer.host_do(failed, "connection", state="connected")
        rb.wait_for(lambda: rb.count("VIRTOPS host_connection_back") == 2, 120, "the second back")

    # the VMs of the failed host run on a live host of the cluster (pyVmomi, after the rulebook stopped)
    for vm_uuid, name in victims.items():
        host, power = where_running(peer, vm_uuid)
        assert host in live and power == "poweredOn", (name, host, power, placed)
    # the other VMs were not touched
    for vm_uuid, (host, boot) in before.items():
        vm = peer.vm(vm_uuid)
        assert (vm.runtime.host.name, vm.runtime.bootTime, vm.runtime.powerState) == (host, boot, "poweredOn"), \
            bystanders[vm_uuid]
        assert audit_actions(rb.audit, vm_uuid, states=None) == [], bystanders[vm_uuid]

    # one recovery record per VM of the failed host, naming the EDA reason
    for vm_uuid, name in victims.items():
        done = audit_actions(rb.audit, vm_uuid, states=None)
        assert [r["state"] for r in done] == ["recovered"], (name, done)
        assert done[0]["host_after"] in live and done[0]["target"]["host"] == failed, done[0]
        assert "EDA host_down" in json.dumps(done[0]), done[0]
        # what reached vCenter: one unregister, one register, one power-on, each a success
        calls = [(o["op"], o["result"]) for o in peer.operations(vm_uuid)]
        assert calls == [("UnregisterVM", "success"), ("RegisterVM_Task", "success"),
                         ("PowerOnVM_Task", "success")], (name, calls)
    # the failed host's own copies, back in vCenter's inventory: powered off, not acted on
    copies = [v for v in peer.state()["vms"] if v["host"] == failed]
    assert sorted(v["name"] for v in copies) == sorted(victims.values()), copies
    for copy in copies:
        assert copy["powerState"] == "poweredOff" and copy["instanceUuid"] not in victims, copy
        assert "/Discovered virtual machine/" in copy["path"] and peer.operations(copy["moref"]) == [], copy

    # the impact report, in virtops_report_dir (ansible-rulebook deletes the playbook's own working
    # directory), lists exactly those VMs
    reports = glob.glob(str(tmp_path / "reports" / ("impact-%s-*Z" % failed)))
    assert len(reports) == 1, (os.listdir(tmp_path), rb.output[-6000:])
    for name in ("impact.json", "impact.csv", "impact.html"):
        assert os.path.getsize(os.path.join(reports[0], name)) > 0, name
    with open(os.path.join(reports[0], "impact.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    assert [h["name"] for h in report["failed_hosts"]] == [failed], report["failed_hosts"]
    assert sorted(v["uuid"] for v in report["vms"]) == sorted(victims), report["vms"]
    assert sorted(v["name"] for v in report["vms"]) == sorted(victims.values()), report["vms"]
    assert {v["host"] for v in report["vms"]} == {failed}

    # one host failure (and its flap), one run of each playbook
    assert rb.output.count(IMPACT_PLAY) == 1, rb.output[-6000:]
    assert rb.output.count(RECOVER_PLAY) == 1, rb.output[-6000:]
    assert rb.output.count("PLAY RECAP") == 2, rb.output[-6000:]
    assert PASSWORD not in rb.output
    print("host disconnected -> impact playbook after %.1f s, %d VM(s) running elsewhere after %.1f s"
          % (started_in, len(victims), recovered_in))
