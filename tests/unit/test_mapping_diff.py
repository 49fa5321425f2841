import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.virtops.unified.plugins.filter.mapping_diff import mapping_diff

U1 = "494c0a5c-6a3b-50e4-8702-8a6618595686"
U2 = "0ebaa77f-13d6-524b-a1dc-20dde27652dd"
U3 = "75dc22b0-8891-5450-b73b-d5596f98e297"
U4 = "5021a3c4-77d2-4c1e-9c1d-0f8bb3c1a001"
T0 = "2026-01-01T00:00:00+00:00"


def vm(name, uuid, host, platform="libvirt", cluster="c1", power="running", **extra):
    rec = {"name": name, "inventory_name": name, "uuid": uuid, "platform": platform, "host": host,
           "cluster": cluster, "power_state": power, "power_state_raw": power, "heartbeat": "ok",
           "restart_priority": "medium"}
    rec.update(extra)
    return rec


def stale(rec, last_seen="2026-01-02T00:00:00+00:00"):
    return dict(rec, stale=True, last_seen=last_seen, power_state="unknown",
                power_state_raw="last seen running", heartbeat="unknown")


def test_nothing_changed():
    recs = [vm("a", U1, "kvm01"), vm("b", U2, "kvm02")]
    out = mapping_diff(recs, [dict(r) for r in recs])
    assert out["moved"] == out["appeared"] == out["disappeared"] == out["stale"] == []
    assert [r["uuid"] for r in out["vms"]] == [U1, U2]
    assert all(r["stale"] is False and r["last_seen"] is None for r in out["vms"])


def test_moved_appeared_disappeared():
    before = [vm("a", U1, "kvm01"), vm("b", U2, "kvm02"), vm("c", U3, "H0", platform="vmware", cluster="C0")]
    now = [vm("a", U1, "kvm02"), vm("c", U3, "H1", platform="vmware", cluster="C1"), vm("d", U4, "kvm01")]
    out = mapping_diff(before, now)
    assert out["moved"] == [
        {"uuid": U1, "name": "a", "platform": "libvirt", "from": "kvm01", "to": "kvm02",
         "from_cluster": "c1", "to_cluster": "c1"},
        {"uuid": U3, "name": "c", "platform": "vmware", "from": "H0", "to": "H1",
         "from_cluster": "C0", "to_cluster": "C1"},
    ]
    assert out["appeared"] == [{"uuid": U4, "name": "d", "platform": "libvirt", "host": "kvm01",
                                "cluster": "c1", "power_state": "running"}]
    assert out["disappeared"] == [{"uuid": U2, "name": "b", "platform": "libvirt", "host": "kvm02",
                                   "cluster": "c1", "power_state": "running"}]
    assert out["stale"] == []


def test_key_is_platform_and_uuid_not_name():
    # same uuid on two platforms: two VMs; a rename is not a move; a name reused is another VM
    before = [vm("a", U1, "h1", platform="libvirt"), vm("a", U1, "h1", platform="vmware"), vm("x", U2, "h1")]
    now = [vm("a", U1.upper(), "h1", platform="libvirt"), vm("renamed", U2, "h1"), vm("a", U3, "h2")]
    out = mapping_diff(before, now)
    assert out["moved"] == []
    assert [(r["platform"], r["uuid"]) for r in out["disappeared"]] == [("vmware", U1)]
    assert [(r["name"], r["uuid"]) for r in out["appeared"]] == [("a", U3)]


def test_a_whole_export_is_accepted_as_previous():
    out = mapping_diff({"exported_at": T0, "vms": [vm("a", U1, "kvm01")]}, [vm("a", U1, "kvm03")])
    assert [(m["from"], m["to"]) for m in out["moved"]] == [("kvm01", "kvm03")]
    first = mapping_diff([], [vm("a", U1, "kvm01")])
    assert [r["uuid"] for r in first["appeared"]] == [U1] and first["moved"] == first["disappeared"] == []


def test_stale_vm_on_a_dead_host_is_neither_moved_nor_gone():
    before = [vm("a", U1, "kvm01"), vm("b", U2, "kvm01")]
    # the inventory lists both where they were last seen, kvm01 being unreachable
    now = [stale(vm("a", U1, "kvm01")), stale(vm("b", U2, "kvm01"))]
    out = mapping_diff(before, now, read_hosts=["kvm02"])
    assert out["moved"] == out["appeared"] == out["disappeared"] == []
    assert [(s["uuid"], s["host"], s["previous_host"], s["source"]) for s in out["stale"]] == [
        (U1, "kvm01", "kvm01", "inventory"), (U2, "kvm01", "kvm01", "inventory")]
    assert all(r["stale"] for r in out["vms"])


def test_stale_on_another_host_than_before_is_not_a_move():
    out = mapping_diff([vm("a", U1, "kvm02")], [stale(vm("a", U1, "kvm01"))])
    assert out["moved"] == [] and out["stale"][0]["previous_host"] == "kvm02"


def test_stale_and_new_is_not_appeared():
    out = mapping_diff([], [stale(vm("a", U1, "kvm01"))])
    assert out["appeared"] == [] and out["stale"][0]["previous_host"] is None


def test_unread_host_without_last_known_vms_carries_them_over():
    before = {"exported_at": T0, "vms": [vm("a", U1, "kvm01"), vm("b", U2, "kvm02"), vm("c", U3, "esx1")]}
    # kvm01 unreachable and no last-known VMs; esx1 missing (its vCenter was not read); kvm02 read
    out = mapping_diff(before, [], read_hosts=["kvm02"])
    assert [r["uuid"] for r in out["disappeared"]] == [U2]
    assert [(s["uuid"], s["host"], s["source"], s["last_seen"]) for s in out["stale"]] == [
        (U3, "esx1", "previous_export", T0), (U1, "kvm01", "previous_export", T0)]
    carried = {r["uuid"]: r for r in out["vms"]}
    assert set(carried) == {U1, U3}
    assert carried[U1]["stale"] is True and carried[U1]["power_state"] == "unknown"
    assert carried[U1]["power_state_raw"] == "last seen running" and carried[U1]["last_seen"] == T0
    # carried again on the next export: the first last_seen is kept
    again = mapping_diff({"exported_at": "2026-02-01T00:00:00+00:00", "vms": out["vms"]}, [], read_hosts=[])
    assert {r["uuid"]: r["last_seen"] for r in again["vms"]} == {U1: T0, U3: T0}
    assert again["vms"][0]["power_state_raw"] == "last seen running"


def test_without_read_hosts_every_host_counts_as_read():
    out = mapping_diff([vm("a", U1, "kvm01")], [])
    assert [r["uuid"] for r in out["disappeared"]] == [U1] and out["vms"] == []


def test_stale_before_and_found_elsewhere_now_is_a_move():
    before = [stale(vm("a", U1, "kvm01"))]
    out = mapping_diff(before, [vm("a", U1, "kvm02")], read_hosts=["kvm02"])
    assert [(m["from"], m["to"]) for m in out["moved"]] == [("kvm01", "kvm02")]
    gone = mapping_diff(before, [], read_hosts=["kvm01"])
    assert [r["uuid"] for r in gone["disappeared"]] == [U1]


def test_live_copy_wins_over_the_stale_one_of_a_dead_host():
    # restarted on kvm02 while kvm01 is down: the inventory lists it twice
    before = [vm("a", U1, "kvm01"), vm("b", U2, "kvm01")]
    now = [stale(vm("a_kvm01", U1, "kvm01")), vm("a_kvm02", U1, "kvm02"), stale(vm("b", U2, "kvm01"))]
    out = mapping_diff(before, now, read_hosts=["kvm02"])
    assert [(m["uuid"], m["from"], m["to"]) for m in out["moved"]] == [(U1, "kvm01", "kvm02")]
    assert [s["uuid"] for s in out["stale"]] == [U2]
    assert sorted((r["uuid"], r["host"], r["stale"]) for r in out["vms"]) == [(U2, "kvm01", True), (U1, "kvm02", False)]


def test_output_is_sorted_and_vms_like_vm_records():
    now = [vm("z", U1, "h2", cluster="b"), vm("y", U2, "h1", cluster="b"), vm("x", U3, "h9", cluster=None)]
    out = mapping_diff([], now)
    assert [r["name"] for r in out["vms"]] == ["x", "y", "z"]
    assert [r["name"] for r in out["appeared"]] == ["y", "z", "x"]  # platform, host, name


@pytest.mark.parametrize("previous, words", [
    ("not json", "expected a list of VM records, got str"),
    ({"exported_at": T0}, "a dict without 'vms'"),
    ({"vms": {"a": 1}}, "expected a list"),
    ([["a"]], "entry 0 is a list"),
    ([{"name": "a", "platform": "libvirt"}], "entry 0 (a) has no uuid"),
    ([{"uuid": U1, "platform": ""}], "has no platform"),
])
def test_bad_previous_is_refused(previous, words):
    with pytest.raises(AnsibleFilterError) as err:
        mapping_diff(previous, [])
    assert "the previous mapping is not a VM mapping" in str(err.value) and words in str(err.value)


def test_bad_current_is_refused():
    with pytest.raises(AnsibleFilterError, match="the current mapping"):
        mapping_diff([], [{"name": "a"}])
