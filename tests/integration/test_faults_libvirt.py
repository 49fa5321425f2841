"""Faults on libvirt (real libvirtd + QEMU): copies that share a uuid, and a
domain busy in a job that must not block the bulk read. virsh reads the end
state; docs/FAULTS.md lists each case.

The "standby" hypervisor is a test:/// node file holding a shut-off copy of a
domain that runs on qemu:///system, as a standby definition on shared storage
would be: same name, same uuid.
"""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from helpers import ROOT, inventory, playbook, virsh

sys.path.insert(0, os.path.join(ROOT, "tests", "peers", "libvirt"))
import guests  # noqa: E402  pylint: disable=wrong-import-position

URI = "qemu:///system"
RESTART = "playbooks/restart_vm.yml"


@pytest.fixture
def copies(tmp_path):
    """A hung guest (KVM, no OS) running on qemu:///system as kvmlive, and its
    shut-off copy on the test:/// hypervisor kvmstandby."""
    subprocess.run([os.path.join(ROOT, "tests", "peers", "libvirt", "start.sh")], check=True, timeout=600)
    name, dom_uuid = "vo-copy-%s" % uuid.uuid4().hex[:6], str(uuid.uuid4())
    xml = tmp_path / "dom.xml"
    xml.write_text(guests.render("hung", name, uuid=dom_uuid))
    virsh(URI, "define", str(xml))
    virsh(URI, "start", name)
    node = tmp_path / "kvmstandby.xml"
    node.write_text('<node><domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">'
                    "<name>%s</name><uuid>%s</uuid><memory>65536</memory><os><type>hvm</type></os>"
                    "<test:runstate>5</test:runstate></domain></node>" % (name, dom_uuid))
    cfg = tmp_path / "site.libvirt.yml"
    cfg.write_text("plugin: virtops.unified.libvirt\nhypervisors:\n"
                   "  - {name: kvmlive, uri: '%s', cluster: c1}\n"
                   "  - {name: kvmstandby, uri: 'test://%s', cluster: c1}\n" % (URI, node))
    try:
        yield name, dom_uuid, cfg
    finally:
        virsh(URI, "destroy", name, check=False)
        virsh(URI, "undefine", name, check=False)


def domid(name):
    return virsh(URI, "domid", name)


def test_a_uuid_shared_by_two_copies_acts_on_the_one_that_runs(copies):
    name, dom_uuid, cfg = copies
    data, _stderr = inventory(cfg)
    hv = data["_meta"]["hostvars"]
    mine = sorted(h for h in hv if hv[h].get("virt_uuid") == dom_uuid)
    assert mine == ["%s_kvmlive" % name, "%s_kvmstandby" % name]
    before = domid(name)
    proc = playbook(cfg, RESTART, "-e", "target=%s" % dom_uuid, "-e", "restart_vm_shutdown_timeout=1")
    assert "DONE: restart of %s" % name in proc.stdout and "on kvmlive" in proc.stdout
    assert virsh(URI, "domstate", name) == "running" and domid(name) != before


def test_a_uuid_whose_copies_are_all_off_is_refused_unless_expected_host_names_one(copies):
    name, dom_uuid, cfg = copies
    virsh(URI, "destroy", name)
    proc = playbook(cfg, RESTART, "-e", "target=%s" % dom_uuid, check=False)
    assert proc.returncode != 0
    assert "uuid %s matches 2 copies in the inventory and none runs" % dom_uuid in proc.stdout
    assert "host=kvmlive" in proc.stdout and "host=kvmstandby" in proc.stdout and "expected_host" in proc.stdout
    assert virsh(URI, "domstate", name) == "shut off"  # nothing was started
    playbook(cfg, RESTART, "-e", "target=%s" % dom_uuid, "-e", "expected_host=kvmlive")
    assert virsh(URI, "domstate", name) == "running"


def test_the_copy_that_did_not_run_is_never_started_while_the_other_runs(copies):
    name, _dom_uuid, cfg = copies
    before = domid(name)
    proc = playbook(cfg, RESTART, "-e", "target=%s_kvmstandby" % name, check=False)
    assert proc.returncode != 0
    assert "starting it would run the VM twice" in proc.stdout and "%s_kvmlive" % name in proc.stdout
    # and by uuid with the standby named as the expected host
    proc = playbook(cfg, RESTART, "-e", json.dumps({"target": _dom_uuid, "expected_host": "kvmstandby"}), check=False)
    assert proc.returncode != 0 and "would run the VM twice" in proc.stdout
    assert domid(name) == before


def test_a_domain_busy_in_a_job_does_not_block_the_bulk_read(tmp_path):
    """QEMU frozen (SIGSTOP) with a monitor command in flight holds the domain's
    job: without VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT getAllDomainStats
    waits 30 s for it (libvirt's job wait time), with it the read is immediate."""
    subprocess.run([os.path.join(ROOT, "tests", "peers", "libvirt", "start.sh")], check=True, timeout=600)
    name = "vo-busy-%s" % uuid.uuid4().hex[:6]
    xml = tmp_path / "dom.xml"
    xml.write_text(guests.render("hung", name))
    virsh(URI, "define", str(xml))
    virsh(URI, "start", name)
    pid = int(subprocess.run(["pgrep", "-f", "guest=%s," % name], capture_output=True, text=True,
                             check=True).stdout.split()[0])
    os.kill(pid, 19)  # SIGSTOP
    monitor = subprocess.Popen(["virsh", "-c", URI, "qemu-monitor-command", name, '{"execute":"query-status"}'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)  # the monitor command holds the job now
        cfg = tmp_path / "busy.libvirt.yml"
        cfg.write_text("plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: kvmbusy, uri: '%s'}\n" % URI)
        begun = time.monotonic()
        data, _stderr = inventory(cfg)
        took = time.monotonic() - begun
        hv = data["_meta"]["hostvars"]
        assert hv[name]["virt_power_state"] == "running" and hv[name]["virt_host"] == "kvmbusy"
        assert took < 15, "the bulk read waited %.1f s on the busy domain" % took
    finally:
        os.kill(pid, 18)  # SIGCONT
        monitor.kill()
        monitor.wait()
        virsh(URI, "destroy", name, check=False)
        virsh(URI, "undefine", name, check=False)
