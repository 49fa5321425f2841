"""The libvirt inventory plugin through ansible-inventory, checked with virsh.

Several hypervisors and scale use libvirt's test:/// driver: each node file is
one fake hypervisor. virsh reads the same files independently.
"""

import uuid

import pytest

from helpers import inventory, virsh

PER_HOST = 400


def node_file(path, names, states=None):
    doms = []
    for i, name in enumerate(names):
        state = (states or {}).get(name, 1 if i % 4 else 5)
        doms.append(
            '<domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">'
            "<name>%s</name><uuid>%s</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
            "<test:runstate>%d</test:runstate></domain>" % (name, uuid.uuid4(), state))
    path.write_text("<node>%s</node>" % "".join(doms))
    return "test://%s" % path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lab")
    uris = {
        "kvm01": node_file(tmp_path / "kvm01.xml", ["vm-%03d" % i for i in range(PER_HOST)] + ["shared"]),
        "kvm02": node_file(tmp_path / "kvm02.xml", ["other-%03d" % i for i in range(PER_HOST)] + ["shared"]),
        "kvm03": node_file(tmp_path / "kvm03.xml", ["grüße db", "app 01"]),
    }
    cfg = tmp_path / "lab.libvirt.yml"
    lines = ["plugin: virtops.unified.libvirt", "hypervisors:"]
    for name, uri in uris.items():
        lines += ["  - name: %s" % name, "    uri: %s" % uri, "    cluster: %s" % ("c1" if name != "kvm03" else "c2")]
    lines += ["  - name: dead01", "    uri: qemu+tcp://127.0.0.1:1/system", "    cluster: c1",
              "keyed_groups:", "  - key: virt_power_state", "    prefix: power",
              "compose:", "  is_db: \"'db' in virt_name\""]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg, uris


@pytest.fixture(scope="module")
def listed(lab):
    """One ansible-inventory run shared by the read-only tests."""
    return inventory(lab[0])


def test_mapping_matches_virsh_on_every_hypervisor(lab, listed):
    cfg, uris = lab
    data, stderr = listed
    hostvars = data["_meta"]["hostvars"]
    for hv, uri in uris.items():
        listed = set(virsh(uri, "list", "--all", "--uuid").split())
        running = set(virsh(uri, "list", "--uuid").split())
        ours = {v["virt_uuid"]: v for v in hostvars.values() if v.get("virt_host") == hv}
        assert set(ours) == listed, hv
        assert {u for u, v in ours.items() if v["virt_power_state"] == "running"} == running
        group = data["virt_host_%s" % hv]["hosts"]
        assert {hostvars[h]["virt_uuid"] for h in group} == listed
    assert len(data["virt_vms"]["hosts"]) == 2 * (PER_HOST + 1) + 2


def test_graph_is_cluster_host_vms(listed):
    data = listed[0]
    assert set(data["virt_cluster_c1"]["children"]) == {"virt_host_kvm01", "virt_host_kvm02", "virt_host_dead01"}
    assert set(data["virt_cluster_c1"]["hosts"]) == {"kvm01", "kvm02", "dead01"}
    assert data["virt_cluster_c2"]["children"] == ["virt_host_kvm03"]


def test_repeated_names_stay_addressable_and_unicode_names_survive(listed):
    data = listed[0]
    hv = data["_meta"]["hostvars"]
    assert hv["shared_kvm01"]["virt_name"] == "shared" and hv["shared_kvm01"]["virt_host"] == "kvm01"
    assert hv["shared_kvm02"]["virt_host"] == "kvm02"
    assert "shared" not in hv
    assert hv["grüße db"]["virt_host"] == "kvm03" and hv["grüße db"]["is_db"] is True


def test_unreachable_hypervisor_stays_listed_with_a_warning(listed):
    data, stderr = listed
    dead = data["_meta"]["hostvars"]["dead01"]
    assert dead["virt_connection_state"] == "unreachable" and dead["virt_kind"] == "hypervisor"
    assert "127.0.0.1:1" in dead["virt_error"]
    assert "hypervisor dead01 is listed as unreachable" in stderr.replace("\n", " ")
    assert "dead01" in data["virt_hypervisors"]["hosts"]


def test_keyed_groups_and_power_groups(lab, listed):
    cfg, uris = lab
    data = listed[0]
    stopped = set(virsh(uris["kvm01"], "list", "--state-shutoff", "--name").split())
    in_group = {data["_meta"]["hostvars"][h]["virt_name"] for h in data["power_stopped"]["hosts"]
                if data["_meta"]["hostvars"][h]["virt_host"] == "kvm01"}
    assert in_group == stopped


def test_cache_serves_the_second_read(tmp_path):
    uri = node_file(tmp_path / "kvm03.xml", ["grüße db", "app 01"])
    cfg = tmp_path / "cached.libvirt.yml"
    cache_dir = tmp_path / "cache"
    cfg.write_text("plugin: virtops.unified.libvirt\nhypervisors: [{name: kvm03, uri: '%s'}]\n" % uri + "cache: true\ncache_plugin: ansible.builtin.jsonfile\n"
                   "cache_connection: %s\ncache_timeout: 600\n" % cache_dir)
    inventory(cfg)
    assert any(cache_dir.iterdir())
    # the platform changes: the cached inventory keeps the old view until --flush-cache
    (tmp_path / "kvm03.xml").write_text("<node></node>")
    second = inventory(cfg)[0]
    assert "grüße db" in second["_meta"]["hostvars"]
    flushed = inventory(cfg, "--flush-cache")[0]
    assert "grüße db" not in flushed["_meta"]["hostvars"]


def test_dead_hypervisor_keeps_its_last_known_vms_marked_stale(tmp_path):
    names = ["db01", "web01", "batch01"]
    uri = node_file(tmp_path / "kvm09.xml", names, states={"db01": 1, "web01": 1, "batch01": 5})
    cfg = tmp_path / "dies.libvirt.yml"
    cfg.write_text("plugin: virtops.unified.libvirt\nhypervisors: [{name: kvm09, uri: '%s', cluster: c9}]\n" % uri)
    alive, _stderr = inventory(cfg)
    seen = {alive["_meta"]["hostvars"][h]["virt_uuid"] for h in alive["virt_host_kvm09"]["hosts"]}
    assert seen == set(virsh(uri, "list", "--all", "--uuid").split())
    # the hypervisor dies: nothing answers at its URI any more
    cfg.write_text(cfg.read_text().replace(uri, "qemu+tcp://127.0.0.1:1/system"))
    dead, stderr = inventory(cfg)
    hv = dead["_meta"]["hostvars"]
    assert hv["kvm09"]["virt_connection_state"] == "unreachable"
    stale = {hv[h]["virt_uuid"]: hv[h] for h in dead["virt_host_kvm09"]["hosts"]}
    assert set(stale) == seen
    assert all(v["virt_stale"] and v["virt_power_state"] == "unknown" for v in stale.values())
    by_name = {v["virt_name"]: v["virt_power_state_raw"] for v in stale.values()}
    assert by_name["db01"] == by_name["web01"] == "last seen running"
    assert by_name["batch01"].startswith("last seen shutoff")
    assert "kvm09: listing its 3 VM(s) as last seen at" in stderr.replace("\n", " ")
