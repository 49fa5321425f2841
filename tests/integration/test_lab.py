"""scripts/lab as its users run it: a mixed estate from one file.

The lab file is the truth: the inventory the collection reads from DIR/inventory
must map every VM to the host and cluster the file says, whatever its name, and
`scripts/lab state` (read from the peers, not through the collection) must show
exactly the power cycle a restart did, and nothing else.
"""

import json
import os
import shutil

import pytest
import yaml

from helpers import SESSION_DIR, inventory, lab, lab_env, playbook

HOSTILE = ["ウェブ サーバー 01", "db \"primary\" it's", "web 01", "{{ 7*191 }}", "a;b $(id)"]
PASSWORD = "Lab pw with 'quotes' ${x}"


def vm(name, **kw):
    return dict({"name": name, "power": "running", "memory_mb": 1024, "cpus": 1}, **kw)


def estate():
    return {"endpoints": [
        {"name": "vc1", "platform": "vmware", "credentials": "vault", "username": "labuser", "password": PASSWORD,
         "clusters": [
             {"name": "本番 prod", "hosts": [
                 {"name": "esx01", "vms": [vm(HOSTILE[0]), vm(HOSTILE[1]), vm("web 01", folder="team a")]},
                 {"name": "esx02", "vms": [vm("web 01", folder="team b"), vm(HOSTILE[3], power="stopped")]}]}],
         "hosts": [{"name": "esx-solo", "vms": [vm(HOSTILE[4])]}]},
        {"name": "kvm", "platform": "libvirt", "driver": "test",
         "clusters": [{"name": "rack 1", "hosts": [
             {"name": "kvm01", "vms": [vm(HOSTILE[0]), vm("web 01", power="suspended")]},
             {"name": "kvm02", "vms": [vm("web 01")]}]}]},
    ]}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    labfile = base / "lab.yml"
    labfile.write_text(yaml.safe_dump(estate(), allow_unicode=True), encoding="utf-8")
    labdir = str(base / "dir")
    lab("up", str(labfile), labdir)
    yield labdir
    lab("down", labdir)


def test_the_inventory_maps_every_vm_as_the_lab_file_says(mixed):
    with lab_env(mixed):  # the vault password file
        hostvars = inventory(os.path.join(mixed, "inventory"))[0]["_meta"]["hostvars"]
    seen = sorted((v["virt_platform"], v["virt_name"], v["virt_host"], v.get("virt_cluster"), v["virt_power_state"])
                  for v in hostvars.values() if v.get("virt_kind") == "vm")
    # the lab's `suspended` is libvirt's virDomainSuspend, which the collection reports as paused
    power = {"vmware": {}, "libvirt": {"suspended": "paused"}}
    wanted = []
    for ep in estate()["endpoints"]:
        groups = [(c["name"], h) for c in ep.get("clusters", []) for h in c["hosts"]]
        groups += [(None, h) for h in ep.get("hosts", [])]
        for cluster, host in groups:
            for vm in host["vms"]:
                wanted.append((ep["platform"], vm["name"], host["name"], cluster, power[ep["platform"]].get(vm["power"], vm["power"])))
    assert seen == sorted(wanted)
    # the vaulted password is nowhere in what the inventory gives out
    assert PASSWORD not in json.dumps(hostvars, ensure_ascii=False)
    source = open(os.path.join(mixed, "inventory", "vc1.vmware.yml"), encoding="utf-8").read()
    assert "!vault" in source and PASSWORD not in source


def test_state_reads_the_peers_and_matches_the_file(mixed):
    state = json.loads(lab("state", mixed).stdout)
    names = sorted((m["endpoint"], m["name"], m["host"]) for m in state["machines"])
    assert ("vc1", HOSTILE[3], "esx02") in names and ("kvm", "web 01", "kvm02") in names
    assert len(names) == 9
    hosts = {(h["endpoint"], h["name"]): h["state"] for h in state["hosts"]}
    assert hosts[("vc1", "esx-solo")] == "connected" and hosts[("kvm", "kvm01")] == "connected"
    for m in state["machines"]:
        if m["endpoint"] == "vc1":
            assert (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"]) == (0, 0, 0), m


def test_one_restart_is_exactly_one_power_cycle_at_the_peer(mixed):
    before = {(m["endpoint"], m["uuid"]): m for m in json.loads(lab("state", mixed).stdout)["machines"]}
    target = next(m for m in before.values() if m["endpoint"] == "vc1" and m["name"] == HOSTILE[0])
    with lab_env(mixed) as values:
        playbook(os.path.join(mixed, "inventory"), "playbooks/restart_vm.yml", "-e",
                 json.dumps({"target": target["uuid"], "reason": "lab test"}))
    after = {(m["endpoint"], m["uuid"]): m for m in json.loads(lab("state", mixed).stdout)["machines"]}
    moved = {key: (after[key]["power_ons"] - m["power_ons"], after[key]["graceful_shutdowns"] - m["graceful_shutdowns"],
                   after[key]["hard_offs"] - m["hard_offs"])
             for key, m in before.items() if m["power_ons"] is not None}
    assert moved.pop(("vc1", target["uuid"])) == (1, 1, 0)  # graceful first, honoured: no hard off
    assert set(moved.values()) == {(0, 0, 0)}  # nothing else was touched
    assert after[("vc1", target["uuid"])]["power"] == "running"
    audit = open(values["VIRTOPS_AUDIT_LOG"], encoding="utf-8").read()
    assert PASSWORD not in audit


def test_a_name_on_two_platforms_is_refused_and_nothing_is_touched(mixed):
    # one source got the plain inventory name, the other a suffixed one: the name is still ambiguous
    before = json.loads(lab("state", mixed).stdout)["machines"]
    with lab_env(mixed):
        proc = playbook(os.path.join(mixed, "inventory"), "playbooks/restart_vm.yml", "-e",
                        json.dumps({"target": HOSTILE[0]}), check=False)
    assert proc.returncode != 0
    assert "matches 2 VMs" in proc.stdout and "[vmware]" in proc.stdout and "[libvirt]" in proc.stdout
    assert json.loads(lab("state", mixed).stdout)["machines"] == before


def test_a_fault_a_peer_cannot_do_exits_2_with_the_reason(mixed):
    proc = lab("fault", mixed, "host-isolate", "kvm01", check=False)
    assert proc.returncode == 2 and "cut off" in proc.stderr
    proc = lab("fault", mixed, "vm-crash", "web 01", check=False)  # in both endpoints
    assert proc.returncode == 1 and "vc1/web 01" in proc.stderr and "kvm/web 01" in proc.stderr


def test_a_field_a_platform_cannot_represent_is_refused_at_up(tmp_path):
    bad = {"endpoints": [{"name": "kvm", "platform": "libvirt",
                          "hosts": [{"name": "kvm01", "vms": [{"name": "x", "folder": "team"}]}]}]}
    (tmp_path / "lab.yml").write_text(yaml.safe_dump(bad))
    proc = lab("up", str(tmp_path / "lab.yml"), str(tmp_path / "d"), check=False)
    assert proc.returncode == 1 and "folder" in proc.stderr and "libvirt" in proc.stderr
    assert not os.path.exists(tmp_path / "d" / "inventory")


def test_down_stops_only_what_up_started(tmp_path):
    small = {"endpoints": [{"name": "vc9", "platform": "vmware",
                            "hosts": [{"name": "esx9", "vms": [{"name": "only", "power": "running"}]}]}]}
    (tmp_path / "lab.yml").write_text(yaml.safe_dump(small))
    labdir = str(tmp_path / "d")
    lab("up", str(tmp_path / "lab.yml"), labdir)
    pids = json.load(open(os.path.join(labdir, "lab.json")))["endpoints"][0]["rec"]["pids"]
    assert pids and all(os.path.exists("/proc/%d" % p) for p in pids)
    again = lab("up", str(tmp_path / "lab.yml"), labdir, check=False)
    assert again.returncode == 1 and "already up" in again.stderr
    lab("down", labdir)
    assert not any(os.path.exists("/proc/%d" % p) and "zombie" not in open("/proc/%d/status" % p).read().lower()
                   for p in pids)
    shutil.rmtree(labdir, ignore_errors=True)
    assert SESSION_DIR  # the session's audit log stays apart from the lab's
