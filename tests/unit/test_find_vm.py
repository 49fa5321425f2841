from ansible_collections.virtops.unified.plugins.filter.find_vm import find_vm, find_vms

HOSTVARS = {
    "web01_kvm01": {"virt_name": "web01", "virt_uuid": "494c0a5c-6a3b-50e4-8702-8a6618595686", "virt_host": "kvm01"},
    "web01_kvm03": {"virt_name": "web01", "virt_uuid": "0ebaa77f-13d6-524b-a1dc-20dde27652dd", "virt_host": "kvm03"},
    "db01": {"virt_name": "db01", "virt_uuid": "75dc22b0-8891-5450-b73b-d5596f98e297", "virt_host": "kvm01"},
}
NAMES = list(HOSTVARS)


def test_inventory_name_uuid_and_platform_name():
    assert find_vm("web01_kvm03", HOSTVARS, NAMES)["host"] == "web01_kvm03"
    assert find_vm("0EBAA77F-13D6-524B-A1DC-20DDE27652DD", HOSTVARS, NAMES)["host"] == "web01_kvm03"
    assert find_vm("db01", HOSTVARS, NAMES) == {"host": "db01", "error": None}


def test_ambiguous_and_unknown_are_errors_not_guesses():
    amb = find_vm("web01", HOSTVARS, NAMES)
    assert amb["host"] is None and "matches 2 VMs" in amb["error"]
    unknown = find_vm("db1", HOSTVARS, NAMES)
    assert unknown["host"] is None and "close matches: db01" in unknown["error"]
    assert find_vm("", HOSTVARS, NAMES)["error"].startswith("no target")


SHARED = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def copies(live_power="running", standby_power="stopped", **extra):
    hv = {
        "app_kvm01": {"virt_name": "app", "virt_uuid": SHARED, "virt_host": "kvm01", "virt_power_state": live_power},
        "app_kvm02": {"virt_name": "app", "virt_uuid": SHARED, "virt_host": "kvm02", "virt_power_state": standby_power},
        "kvm01": {"virt_connection_state": "connected"}, "kvm02": {"virt_connection_state": "connected"},
    }
    for name, values in extra.items():
        hv[name].update(values)
    return hv


VMS = ["app_kvm01", "app_kvm02"]


def test_a_shared_uuid_picks_the_single_running_copy():
    assert find_vm(SHARED, copies(), VMS)["host"] == "app_kvm01"
    assert find_vm(SHARED, copies("stopped", "running"), VMS)["host"] == "app_kvm02"


def test_a_shared_uuid_with_none_or_both_running_is_refused_unless_expected_host_names_one():
    for live, standby, word in (("stopped", "stopped", "none runs"), ("running", "running", "2 run")):
        out = find_vm(SHARED, copies(live, standby), VMS)
        assert out["host"] is None and word in out["error"] and "expected_host" in out["error"]
        assert "host=kvm01" in out["error"] and "host=kvm02" in out["error"]
    assert find_vm(SHARED, copies("stopped", "stopped"), VMS, "kvm02")["host"] == "app_kvm02"


def test_a_copy_is_never_started_while_another_runs():
    out = find_vm("app_kvm02", copies(), VMS)
    assert out["host"] is None and "would run the VM twice" in out["error"] and "app_kvm01" in out["error"]
    out = find_vm(SHARED, copies(), VMS, "kvm02")
    assert out["host"] is None and "would run the VM twice" in out["error"]


def test_a_vm_of_a_dead_or_unread_host_is_refused_with_what_to_do():
    hv = copies(kvm01={"virt_connection_state": "not_responding"})
    out = find_vm("app_kvm01", hv, VMS)
    assert "its host kvm01 is not_responding" in out["error"] and "recover_host_failure.yml" in out["error"]
    hv = copies(app_kvm01={"virt_stale": True, "virt_last_seen": "2026-12-01T08:00:00+00:00", "virt_power_state": "unknown"})
    out = find_vm("app_kvm01", hv, VMS)
    assert "endpoint kvm01 unreachable since the last read" in out["error"]
    assert "last seen on kvm01 at 2026-12-01T08:00:00+00:00" in out["error"]
    hv["app_kvm01"].update(virt_unreachable_endpoint="vc01", virt_unreachable_since="2026-12-01T08:05:00+00:00")
    assert "endpoint vc01 unreachable since 2026-12-01T08:05:00+00:00" in find_vm("app_kvm01", hv, VMS)["error"]


def test_find_vms_keeps_a_name_with_a_comma_whole_and_splits_lists_otherwise():
    hv = {"web,01": {"virt_name": "web,01", "virt_uuid": "494c0a5c-6a3b-50e4-8702-8a6618595686", "virt_host": "k"},
          "db01": {"virt_name": "db01", "virt_uuid": "75dc22b0-8891-5450-b73b-d5596f98e297", "virt_host": "k"}}
    names = list(hv)
    assert [r["host"] for r in find_vms("web,01", hv, names)] == ["web,01"]
    assert [r["wanted"] for r in find_vms("db01, web", hv, names)] == ["db01", "web"]
    assert [r["host"] for r in find_vms(["web,01", "db01"], hv, names)] == ["web,01", "db01"]
    assert find_vms("", hv, names) == []


def test_an_inventory_name_that_is_another_vms_platform_name_is_ambiguous():
    # two sources, one name: the libvirt source read first got the plain inventory name
    hv = {
        "web01": {"virt_name": "web01", "virt_uuid": "202e098e-c866-5fd0-8360-b8103f60e5cb", "virt_host": "kvm01",
                  "virt_platform": "libvirt", "virt_power_state": "running"},
        "web01_esx01": {"virt_name": "web01", "virt_uuid": "f4942855-2531-58e4-8160-6d10cde6d97a",
                        "virt_host": "esx01", "virt_platform": "vmware", "virt_power_state": "running"},
    }
    refused = find_vm("web01", hv, list(hv))
    assert refused["host"] is None and "matches 2 VMs" in refused["error"]
    assert "kvm01" in refused["error"] and "esx01" in refused["error"]
    assert find_vm("web01_esx01", hv, list(hv))["host"] == "web01_esx01"
    assert find_vm("web01", hv, list(hv), expected_host="kvm01")["host"] == "web01"
    assert find_vm("202e098e-c866-5fd0-8360-b8103f60e5cb", hv, list(hv))["host"] == "web01"


def test_a_vm_not_found_names_the_endpoints_that_could_not_be_read():
    hostvars = dict(HOSTVARS, ovmm={"virt_kind": "endpoint", "virt_platform": "ovm", "virt_connection_state": "unreachable",
                                    "virt_error": "ovm ovmm:7002: Oracle VM Manager is STARTING, not RUNNING"},
                    kvm09={"virt_kind": "hypervisor", "virt_connection_state": "unreachable", "virt_error": "old",
                           "virt_stale": True})
    missing = find_vm("erp01", hostvars, NAMES)
    assert missing["host"] is None and "'erp01' not found" in missing["error"]
    assert missing["error"].endswith("could not read: ovmm (ovm): ovm ovmm:7002: Oracle VM Manager is STARTING, not RUNNING")
    assert "kvm09" not in missing["error"]  # a last-known record is listed as such, not as unread
    assert "could not read" not in find_vm("db1", HOSTVARS, NAMES)["error"]
