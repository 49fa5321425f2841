import pytest

from ansible_collections.virtops.unified.plugins.module_utils import model


def vm(name, uuid, host="h1"):
    return model.Machine(kind=model.VM, platform="libvirt", name=name, uuid=uuid, host=host)


FLEET = [
    vm("web01", "11111111-1111-1111-1111-111111111111", "kvm01"),
    vm("web01", "22222222-2222-2222-2222-222222222222", "kvm02"),
    vm("db01", "33333333-3333-3333-3333-333333333333"),
    vm("Mixed", "44444444-4444-4444-4444-444444444444"),
]


def test_uuid_wins_and_is_case_insensitive():
    assert model.pick_one(FLEET, uuid="22222222-2222-2222-2222-222222222222".upper()).host == "kvm02"


def test_exact_then_case_insensitive_name():
    assert model.pick_one(FLEET, name="db01").uuid.startswith("3333")
    assert model.pick_one(FLEET, name="mixed").name == "Mixed"


def test_ambiguous_name_lists_every_candidate_with_uuid_and_host():
    with pytest.raises(model.Ambiguous) as err:
        model.pick_one(FLEET, name="web01")
    text = str(err.value)
    assert "matches 2 VMs" in text
    assert "11111111-1111-1111-1111-111111111111" in text and "host=kvm01" in text
    assert "22222222-2222-2222-2222-222222222222" in text and "host=kvm02" in text


def test_unknown_name_offers_close_matches_once():
    with pytest.raises(model.NotFound) as err:
        model.pick_one(FLEET, name="web1", where=" on kvm01")
    assert "'web1' not found on kvm01" in str(err.value)
    assert str(err.value).count("web01") == 1


def test_error_keeps_platform_words_and_hint():
    err = model.Unreachable("libvirt x: cannot connect", raw="Connection refused")
    assert "Connection refused" in str(err) and "reachable" in str(err)


def test_to_vars_schema_for_vm_and_host():
    v = vm("a", "u").to_vars()
    assert {"virt_kind", "virt_platform", "virt_name", "virt_uuid", "virt_host", "virt_cluster",
            "virt_power_state", "virt_power_state_raw", "virt_heartbeat", "virt_endpoint"} <= set(v)
    h = model.Machine(kind=model.HYPERVISOR, platform="libvirt", name="kvm01", uuid="x",
                      connection_state=model.CONNECTED).to_vars()
    assert h["virt_connection_state"] == "connected" and "virt_host" not in h
