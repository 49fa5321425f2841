from ansible_collections.virtops.unified.plugins.filter.find_vm import find_vm

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
