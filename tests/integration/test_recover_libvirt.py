"""recover_host_failure.yml on libvirt: a hypervisor dies, its VM starts on the
standby hypervisor where the same domain is defined (real libvirtd + QEMU).

The "failed" hypervisor is a test:/// node file holding a domain with the
same uuid as a domain defined (shut off) on qemu:///system, the standby. Once
the inventory has seen it, its URI is pointed at nothing: the plugin lists
its last-known VMs, marked stale, and the runbook starts them on the standby.
virsh reads the end state.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

from helpers import ROOT, SESSION_DIR, inventory, playbook, virsh

sys.path.insert(0, os.path.join(ROOT, "tests", "peers", "libvirt"))
import guests  # noqa: E402

URI = "qemu:///system"


@pytest.fixture
def standby(tmp_path):
    subprocess.run([os.path.join(ROOT, "tests", "peers", "libvirt", "start.sh")], check=True, timeout=600)
    name, dom_uuid = "vo-rec-%s" % uuid.uuid4().hex[:6], str(uuid.uuid4())
    xml = tmp_path / "dom.xml"
    xml.write_text(guests.render("hung", name, uuid=dom_uuid))
    virsh(URI, "define", str(xml))
    try:
        yield name, dom_uuid
    finally:
        virsh(URI, "destroy", name, check=False)
        virsh(URI, "undefine", name, check=False)


def test_vm_of_a_dead_hypervisor_starts_on_the_standby(standby, tmp_path):
    name, dom_uuid = standby
    node = tmp_path / "kvmdead.xml"
    node.write_text('<node><domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">'
                    "<name>%s</name><uuid>%s</uuid><memory>65536</memory><os><type>hvm</type></os>"
                    "<test:runstate>1</test:runstate></domain></node>" % (name, dom_uuid))
    cfg = tmp_path / "site.libvirt.yml"
    body = ("plugin: virtops.unified.libvirt\nhypervisors:\n"
            "  - {name: kvmdead, uri: 'test://%s', cluster: c1}\n"
            "  - {name: kvmstandby, uri: '%s', cluster: c1}\n"
            "compose:\n  virt_restart_priority: \"'high'\"\n")
    cfg.write_text(body % (node, URI))
    inventory(cfg)  # seen alive once: its VMs are remembered
    cfg.write_text(body % ("/nonexistent/kvmdead.xml", URI))
    data, _stderr = inventory(cfg)
    hv = data["_meta"]["hostvars"]
    assert hv["kvmdead"]["virt_connection_state"] == "unreachable"
    stale = [h for h in data["virt_host_kvmdead"]["hosts"] if hv[h]["virt_uuid"] == dom_uuid]
    assert stale and hv[stale[0]]["virt_stale"] is True
    assert virsh(URI, "domstate", name) == "shut off"

    dry = playbook(cfg, "playbooks/recover_host_failure.yml", "-e", "failed_host=kvmdead", "--check")
    assert "-> kvmstandby" in dry.stdout and virsh(URI, "domstate", name) == "shut off"

    proc = playbook(cfg, "playbooks/recover_host_failure.yml", "-e", "failed_host=kvmdead",
                    "-e", json.dumps({"reason": "kvmdead lost power"}))
    assert "running on kvmstandby" in proc.stdout, proc.stdout[-3000:]
    assert virsh(URI, "domstate", name) == "running"
    log = os.environ.get("VIRTOPS_AUDIT_LOG") or os.path.join(SESSION_DIR, "audit.jsonl")
    with open(log, encoding="utf-8") as handle:
        mine = [r for r in map(json.loads, handle) if r["target"]["uuid"] == dom_uuid]
    # the intent, written before the start, then the outcome with the same id
    assert [(r["phase"], r["state"], r["reason"]) for r in mine] == [
        ("intent", "recovered", "kvmdead lost power"), ("outcome", "recovered", "kvmdead lost power")]
    assert mine[0]["id"] == mine[1]["id"] and mine[1]["result"] == "ok" and mine[0]["before"] == "stopped"
    mine = mine[1:]
    assert [s["action"] for s in mine[0]["steps"]] == ["start"]

    again = playbook(cfg, "playbooks/recover_host_failure.yml", "-e", "failed_host=kvmdead")
    assert "already running on kvmstandby" in again.stdout
