"""Oracle VM inventory under faults and at two sizes, on the lab's emulated Manager: the number of
calls of one read does not grow with the estate (counted at the peer), a Manager that is starting
up or gone is listed unreachable with its last-known servers and VMs (virt_stale), and comes back."""

import json
import os
import time
import urllib.request

import pytest
import yaml

from helpers import inventory, lab, playbook

from ansible_collections.virtops.unified.plugins.module_utils import model
from ansible_collections.virtops.unified.plugins.module_utils.ovm_driver import OvmDriver

PASSWORD = "faults 'ovm' pw"


def estate(vms_per_server):
    return {"endpoints": [{"name": "o1", "platform": "ovm", "username": "admin", "password": PASSWORD, "clusters": [
        {"name": "pool1", "hosts": [
            {"name": "ovs%02d" % s, "vms": [{"name": "vm-%02d-%03d" % (s, i), "power": "running" if i % 4 else "stopped"}
                                            for i in range(vms_per_server)]} for s in (1, 2)]}]}]}


@pytest.fixture
def make_lab(tmp_path):
    made = []

    def make(vms_per_server, name="lab"):
        (tmp_path / (name + ".yml")).write_text(yaml.safe_dump(estate(vms_per_server)))
        labdir = str(tmp_path / name)
        lab("up", str(tmp_path / (name + ".yml")), labdir)
        made.append(labdir)
        with open(os.path.join(labdir, "lab.json"), encoding="utf-8") as handle:
            rec = json.load(handle)["endpoints"][0]["rec"]
        return labdir, rec
    yield make
    for labdir in made:
        lab("down", labdir, check=False)


def control(rec, method, path):
    req = urllib.request.Request(rec["control"] + path, method=method, data=b"{}" if method == "POST" else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def vms_of(listing):
    hostvars = listing["_meta"]["hostvars"]
    return {h: v for h, v in hostvars.items() if v.get("virt_kind") == "vm"}


def test_one_read_costs_the_same_calls_for_10_and_for_400_vms(make_lab, tmp_path):
    counted = {}
    for per_server in (5, 200):
        labdir, rec = make_lab(per_server, "lab%d" % per_server)
        control(rec, "POST", "/requests/reset")
        listing, _err = inventory(os.path.join(labdir, "inventory"))
        assert len(vms_of(listing)) == 2 * per_server
        counted[per_server] = control(rec, "GET", "/state")["requests"]
    assert counted[5]["by_call"] == counted[200]["by_call"] == {
        "GET Manager": 1, "GET ServerPool": 1, "GET Server": 1, "GET Vm": 1}
    assert counted[5]["logins"] == counted[200]["logins"] == 1  # Basic once, the session cookie after


def test_a_manager_that_goes_away_keeps_its_last_known_servers_and_vms_stale(make_lab):
    labdir, _rec = make_lab(3)
    source = os.path.join(labdir, "inventory")
    first, _err = inventory(source)
    live = vms_of(first)
    assert len(live) == 6 and not any(v.get("virt_stale") for v in live.values())
    lab("fault", labdir, "endpoint-down", "o1")
    second, err = inventory(source)
    hostvars = second["_meta"]["hostvars"]
    endpoint = [h for h, v in hostvars.items() if v["virt_kind"] == "endpoint"]
    assert len(endpoint) == 1 and hostvars[endpoint[0]]["virt_connection_state"] == "unreachable"
    assert "Oracle VM Manager" in err and "is listed as unreachable" in err.replace("\n", " ")
    stale = vms_of(second)
    assert set(stale) == set(live)
    assert all(v["virt_stale"] and v["virt_power_state"] == "unknown" for v in stale.values())
    servers = {h: v for h, v in hostvars.items() if v["virt_kind"] == "hypervisor"}
    assert set(servers) == {"ovs01", "ovs02"} and all(v["virt_connection_state"] == "unreachable"
                                                      for v in servers.values())
    assert PASSWORD not in json.dumps(second)
    lab("fault", labdir, "endpoint-up", "o1")
    third, _err = inventory(source)
    assert not any(v.get("virt_stale") for v in vms_of(third).values())


def test_a_manager_starting_up_is_listed_unreachable_saying_so(make_lab):
    labdir, rec = make_lab(2)
    source = os.path.join(labdir, "inventory")
    inventory(source)
    lab("fault", labdir, "endpoint-starting", "o1")
    control(rec, "POST", "/requests/reset")
    listing, err = inventory(source)
    hostvars = listing["_meta"]["hostvars"]
    (endpoint,) = [v for v in hostvars.values() if v["virt_kind"] == "endpoint"]
    assert "STARTING, not RUNNING" in endpoint["virt_error"], endpoint
    assert "STARTING" in err
    # it was not read half-way: only the Manager was asked
    assert control(rec, "GET", "/state")["requests"]["by_call"] == {"GET Manager": 1}
    assert all(v["virt_stale"] for v in vms_of(listing).values())
    lab("fault", labdir, "endpoint-up", "o1")


def test_a_job_asked_while_the_manager_restarts_is_aborted_and_never_runs_later(make_lab):
    """The Manager goes into start-up between the login and the action: the job it creates does not
    start, the driver sees the Manager is not RUNNING, aborts the job and says so. Once the Manager
    is up again, the VM is still as it was: the job did not run behind the operator's back."""
    labdir, rec = make_lab(2)
    with open(os.path.join(labdir, "inventory", "o1.ovm.yml"), encoding="utf-8") as handle:
        source = yaml.safe_load(handle)
    options = {k: source[k] for k in ("hostname", "port", "ca_path", "username", "password")}
    stopped = "vm-01-000"  # i % 4 == 0: stopped
    with OvmDriver(connect_timeout=10, **options) as drv:
        vm = drv.find(name=stopped)
        assert vm.power_state == model.STOPPED
        lab("fault", labdir, "endpoint-starting", "o1")
        started = time.monotonic()
        with pytest.raises(model.StateConflict, match="STARTING and runs no jobs; the job was aborted"):
            drv.power(vm, "start", timeout=30)
        assert time.monotonic() - started < 10
    lab("fault", labdir, "endpoint-up", "o1")
    time.sleep(2)  # several job lengths of the peer: an aborted job that ran anyway would show now
    truth = {m["name"]: m for m in json.loads(lab("state", labdir).stdout)["machines"]}
    assert truth[stopped]["power"] == "stopped" and truth[stopped]["power_ons"] == 0
    assert control(rec, "GET", "/state")["requests"]["by_call"].get("PUT Job/{id}/abort") == 1


def test_export_mapping_is_the_ledger_of_the_manager_and_a_live_migration_is_one_move(make_lab, tmp_path):
    labdir, _rec = make_lab(2)
    out = tmp_path / "export"
    source = os.path.join(labdir, "inventory")
    playbook(source, "playbooks/export_mapping.yml", "-e", "export_dir=%s" % out)
    first = json.loads((out / "mapping.json").read_text())
    truth = {m["uuid"]: m for m in json.loads(lab("state", labdir).stdout)["machines"]}
    rows = {r["uuid"]: r for r in first["vms"]} if isinstance(first, dict) else {r["uuid"]: r for r in first}
    assert {u: (r["name"], r["host"]) for u, r in rows.items()} == {u: (m["name"], m["host"]) for u, m in truth.items()}
    # one running VM live-migrates in the Manager (outside any runbook) between two exports
    running = next(m for m in truth.values() if m["power"] == "running" and m["host"] == "ovs01")
    with open(os.path.join(labdir, "inventory", "o1.ovm.yml"), encoding="utf-8") as handle:
        options = {k: v for k, v in yaml.safe_load(handle).items() if k != "plugin"}
    with OvmDriver(connect_timeout=10, **options) as drv:
        drv.migrate(drv.find(uuid=running["uuid"]), "ovs02", timeout=30)
    playbook(source, "playbooks/export_mapping.yml", "-e", "export_dir=%s" % out)
    changes = json.loads((out / "changes.json").read_text())
    moved = changes.get("moved") or []
    assert [(c.get("uuid"), c.get("from"), c.get("to")) for c in moved] == [(running["uuid"], "ovs01", "ovs02")], changes
