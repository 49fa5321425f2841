"""playbooks/export_mapping.yml on a merged inventory: two libvirt test:/// hypervisors and vcsim.

The inventory is a directory holding a libvirt source (kvm01, kvm02: one test:///
node file each) and the vcsim peer's vmware source, read together. Every export is
checked against the platforms read independently of the collection: virsh for the
node files, pyVmomi and the peer's control API (/state) for vSphere. The world is
then changed behind the collection's back (vcsim relocates a VM; a node file loses a
domain and gains another) and changes.json must list exactly that.

The tests run in file order and share one world (module-scoped `world`); each test
states what it expects of the world before it.
"""

import csv
import json
import os
import shutil
import uuid as uuidlib
from xml.sax.saxutils import escape

import pytest

from helpers import playbook, virsh
from vcsim_peer import PASSWORD

PLAY = "playbooks/export_mapping.yml"
# -cluster 1 -cluster-host 2 -host 1 -vm 2: hosts DC0_C0_H0, DC0_C0_H1 and standalone DC0_H0;
# VMs DC0_C0_RP0_VM0..1 (in the cluster) and DC0_H0_VM0..1.
SIZE = ("-dc", "1", "-cluster", "1", "-cluster-host", "2", "-host", "1", "-vm", "2")
MOVER = "DC0_C0_RP0_VM0"
ODD = 'web, "blue" ✓'  # comma, quotes and non-ASCII: one CSV field all the same
_NORMAL_POWER = {"poweredOn": "running", "poweredOff": "stopped", "suspended": "suspended"}


# --- the world ---------------------------------------------------------------------
def domain(name, uuid=None, running=True):
    return {"name": name, "uuid": uuid or str(uuidlib.uuid4()), "running": running}


def write_node(path, domains):
    """A test:/// node file: one fake hypervisor with these domains."""
    xml = "".join(
        '<domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">'
        "<name>%s</name><uuid>%s</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
        "<test:runstate>%d</test:runstate></domain>" % (escape(d["name"]), d["uuid"], 1 if d["running"] else 5)
        for d in domains)
    path.write_text("<node>%s</node>" % xml, encoding="utf-8")
    return "test://%s" % path


def write_libvirt_source(path, uris, extra=""):
    lines = ["plugin: virtops.unified.libvirt", "hypervisors:"]
    for name, (uri, cluster) in uris.items():
        lines += ["  - name: %s" % name, "    uri: %s" % uri, "    cluster: %s" % cluster]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")


class World:
    def __init__(self, tmp, sim):
        self.tmp = tmp
        self.sim = sim
        self.inv = tmp / "inventory"
        self.inv.mkdir()
        self.domains = {
            "kvm01": [domain("db01"), domain("web01"), domain("batch01", running=False), domain(ODD)],
            # a name vcsim also has: the second source renames its VM, the uuids tell them apart
            "kvm02": [domain("app01"), domain("app02", running=False), domain("DC0_H0_VM0")],
        }
        self.nodes = {hv: tmp / ("%s.xml" % hv) for hv in self.domains}
        self.uris = {hv: write_node(self.nodes[hv], doms) for hv, doms in self.domains.items()}
        self.clusters = {"kvm01": "rack1", "kvm02": "rack2"}
        self.write_sources()
        sim.write_inventory(self.inv / "sim.vmware.yml")

    def write_sources(self, dead=(), extra=""):
        uris = {hv: ("qemu+tcp://127.0.0.1:1/system" if hv in dead else uri, self.clusters[hv])
                for hv, uri in self.uris.items()}
        write_libvirt_source(self.inv / "lab.libvirt.yml", uris, extra)

    def rewrite(self, hv, domains):
        self.domains[hv] = domains
        write_node(self.nodes[hv], domains)

    def export(self, export_dir, *extra, check=True):
        return playbook(self.inv, PLAY, "-e", "export_dir=%s" % export_dir, *extra, check=check)


@pytest.fixture(scope="module")
def world(vcsim, tmp_path_factory):
    return World(tmp_path_factory.mktemp("export"), vcsim(*SIZE))


# --- reading the results and the platforms -----------------------------------------
def read_export(export_dir):
    with open(os.path.join(export_dir, "mapping.json"), encoding="utf-8") as fh:
        doc = json.load(fh)
    with open(os.path.join(export_dir, "changes.json"), encoding="utf-8") as fh:
        changes = json.load(fh)
    with open(os.path.join(export_dir, "mapping.csv"), encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return doc, changes, rows


def cell(value):
    """A JSON value as mapping.csv writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def assert_csv_matches_json(doc, rows):
    header, body = rows[0], rows[1:]
    assert header[-1] == "exported_at"
    assert set(header[:-1]) == set(doc["vms"][0]), "CSV columns are the JSON record keys"
    assert len(body) == len(doc["vms"])
    for row, vm in zip(body, doc["vms"]):  # same rows, same order
        assert row[-1] == doc["exported_at"]
        assert dict(zip(header[:-1], row[:-1])) == {k: cell(vm[k]) for k in header[:-1]}


def libvirt_view(world):
    """{uuid: (host, running)} from virsh, per node file."""
    out = {}
    for hv, uri in world.uris.items():
        running = set(virsh(uri, "list", "--uuid").split())
        for uuid in virsh(uri, "list", "--all", "--uuid").split():
            out[uuid] = (hv, uuid in running)
    return out


def vsphere_view(peer):
    """{instanceUuid: (name, host, power, cluster)} from pyVmomi, and {uuid: host} from /state."""
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    vms = {}
    for vm in peer.objects(vim.VirtualMachine):
        parent = vm.runtime.host.parent
        cluster = parent.name if isinstance(parent, vim.ClusterComputeResource) else None
        vms[vm.config.instanceUuid] = (vm.name, vm.runtime.host.name, vm.runtime.powerState, cluster)
    state = {v["instanceUuid"]: v["host"] for v in peer.state()["vms"]}
    return vms, state


def assert_mapping_matches_platforms(world, doc):
    by_platform = {}
    for vm in doc["vms"]:
        by_platform.setdefault(vm["platform"], {})[vm["uuid"]] = vm
    assert set(by_platform) == {"libvirt", "vmware"}
    # libvirt: every domain of every node file, on its hypervisor, running as virsh says
    virsh_seen = libvirt_view(world)
    ours = by_platform["libvirt"]
    assert {u: (v["host"], v["power_state"] == "running") for u, v in ours.items()} == virsh_seen
    names = {d["uuid"]: d["name"] for doms in world.domains.values() for d in doms}
    assert {u: v["name"] for u, v in ours.items()} == names
    assert all(v["cluster"] == world.clusters[v["host"]] for v in ours.values())
    # vSphere: pyVmomi and the control API agree with each other and with the export
    vms, state = vsphere_view(world.sim)
    ours = by_platform["vmware"]
    assert {u: v[1] for u, v in vms.items()} == state
    assert {u: (v["name"], v["host"], v["power_state"], v["cluster"]) for u, v in ours.items()} == {
        u: (name, host, _NORMAL_POWER[power], cluster) for u, (name, host, power, cluster) in vms.items()}
    assert not any(vm["stale"] for vm in doc["vms"])
    # sorted cluster, host, name: two exports compare line by line
    keys = [(v["cluster"] or "", v["host"] or "", v["name"], v["uuid"]) for v in doc["vms"]]
    assert keys == sorted(keys)


# --- tests -------------------------------------------------------------------------
def test_first_export_matches_every_platform(world):
    out = world.tmp / "first"
    proc = world.export(out)
    doc, changes, rows = read_export(out)
    assert_mapping_matches_platforms(world, doc)
    assert len(doc["vms"]) == 7 + 4
    assert changes["previous"] is None and changes["exported_at"] == doc["exported_at"]
    assert changes["moved"] == changes["appeared"] == changes["disappeared"] == changes["stale"] == []
    assert_csv_matches_json(doc, rows)
    assert [r[3] for r in rows].count(ODD) == 1
    assert "EXPORTED: 11 VM(s)" in proc.stdout and "first export" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr + (out / "mapping.json").read_text()


def test_second_export_lists_exactly_what_changed(world):
    first = world.tmp / "first"
    kept = world.tmp / "kept-mapping.json"
    shutil.copy(first / "mapping.json", kept)
    before = {v["uuid"]: v for v in json.loads(kept.read_text())["vms"]}

    # vSphere moves a VM behind our back (as DRS would)
    mover = world.sim.vm_state(MOVER)
    src = mover["host"]
    dst = next(h for h in ("DC0_C0_H0", "DC0_C0_H1") if h != src)
    world.sim.vm_do(MOVER, "relocate", host=dst)
    assert vsphere_view(world.sim)[0][mover["instanceUuid"]][1] == dst  # pyVmomi sees it moved
    # kvm02 loses app02 and gains app03
    gone = next(d for d in world.domains["kvm02"] if d["name"] == "app02")
    new = domain("app03")
    world.rewrite("kvm02", [d for d in world.domains["kvm02"] if d is not gone] + [new])
    assert gone["uuid"] not in virsh(world.uris["kvm02"], "list", "--all", "--uuid")

    second = world.tmp / "second"
    proc = world.export(second, "-e", "previous=%s" % kept)
    doc, changes, rows = read_export(second)
    assert_mapping_matches_platforms(world, doc)
    assert_csv_matches_json(doc, rows)
    assert changes["previous"] == {"path": str(kept), "exported_at": json.loads(kept.read_text())["exported_at"]}
    assert changes["moved"] == [{"uuid": mover["instanceUuid"], "name": MOVER, "platform": "vmware",
                                 "from": src, "to": dst, "from_cluster": "DC0_C0", "to_cluster": "DC0_C0"}]
    assert changes["disappeared"] == [{"uuid": gone["uuid"], "name": "app02", "platform": "libvirt",
                                       "host": "kvm02", "cluster": "rack2", "power_state": "stopped"}]
    assert changes["appeared"] == [{"uuid": new["uuid"], "name": "app03", "platform": "libvirt",
                                    "host": "kvm02", "cluster": "rack2", "power_state": "running"}]
    assert changes["stale"] == []
    assert before[mover["instanceUuid"]]["host"] == src
    summary = proc.stdout
    assert "1 moved, 1 appeared, 1 disappeared, 0 stale" in summary
    assert "moved: %s (%s) [vmware] %s -> %s" % (MOVER, mover["instanceUuid"], src, dst) in summary
    assert "appeared: app03 (%s) [libvirt] on kvm02" % new["uuid"] in summary
    assert "disappeared: app02 (%s) [libvirt] was on kvm02" % gone["uuid"] in summary


def test_by_default_the_mapping_already_in_the_directory_is_the_previous(world):
    """Into `first` again, without previous: compared with first/mapping.json, then replaced."""
    first = world.tmp / "first"
    old = json.loads((first / "mapping.json").read_text())
    world.export(first)
    doc, changes, rows = read_export(first)
    assert changes["previous"]["path"] == str(first / "mapping.json")
    assert changes["previous"]["exported_at"] == old["exported_at"]
    assert [(m["name"], m["to"]) for m in changes["moved"]] == [(MOVER, world.sim.vm_state(MOVER)["host"])]
    assert [a["name"] for a in changes["appeared"]] == ["app03"]
    assert [d["name"] for d in changes["disappeared"]] == ["app02"]
    assert_mapping_matches_platforms(world, doc)
    assert_csv_matches_json(doc, rows)
    # and once more: nothing changed since
    world.export(first)
    _doc, changes, _rows = read_export(first)
    assert changes["moved"] == changes["appeared"] == changes["disappeared"] == changes["stale"] == []


def test_check_mode_prints_the_changes_and_writes_nothing(world):
    kept = world.tmp / "kept-mapping.json"  # the first export, before the changes
    target = world.tmp / "not-created"
    proc = world.export(target, "-e", "previous=%s" % kept, "--check")
    assert not target.exists()
    assert "PLAN (check mode, nothing written)" in proc.stdout
    assert "1 moved, 1 appeared, 1 disappeared, 0 stale" in proc.stdout
    first = world.tmp / "first"
    snapshot = {p.name: p.read_bytes() for p in first.iterdir()}
    proc = world.export(first, "--check")
    assert {p.name: p.read_bytes() for p in first.iterdir()} == snapshot
    assert "0 moved, 0 appeared, 0 disappeared, 0 stale" in proc.stdout


def test_bad_input_fails_clearly_and_writes_nothing(world, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    csv_file = world.tmp / "first" / "mapping.csv"
    not_mapping = tmp_path / "other.json"
    not_mapping.write_text(json.dumps({"hosts": ["kvm01"]}))
    out = tmp_path / "out"
    cases = [
        ((), "No export directory: pass -e export_dir=DIR"),
        (("-e", "export_dir=%s" % a_file), "export_dir %s is not a directory" % a_file),
        (("-e", "export_dir=%s/sub" % a_file), "could not write the export into export_dir %s/sub" % a_file),
        (("-e", "export_dir=%s" % out, "-e", "previous=%s" % (tmp_path / "missing.json")),
         "previous %s does not exist" % (tmp_path / "missing.json")),
        (("-e", "export_dir=%s" % out, "-e", "previous=%s" % csv_file),
         "previous %s is not a mapping export" % csv_file),
        (("-e", "export_dir=%s" % out, "-e", "previous=%s" % not_mapping),
         "previous %s is not a mapping export (the mapping.json this runbook writes): the previous mapping "
         "is not a VM mapping: a dict without 'vms'" % not_mapping),
    ]
    for args, words in cases:
        proc = playbook(world.inv, PLAY, *args, check=False)
        assert proc.returncode != 0, args
        assert words in " ".join(proc.stdout.split()), (args, proc.stdout[-2000:])
    assert not out.exists()
    # a default previous that is not a mapping is refused too, before it is overwritten
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "mapping.json").write_text("[1, 2")
    proc = world.export(broken, check=False)
    assert proc.returncode != 0 and "previous %s/mapping.json is not a mapping export" % broken in proc.stdout
    assert "move it away, or pass -e previous=PATH" in " ".join(proc.stdout.split())
    assert sorted(p.name for p in broken.iterdir()) == ["mapping.json"]
    assert (broken / "mapping.json").read_text() == "[1, 2"


def test_dead_hypervisor_vms_are_stale_not_moved_nor_gone(world):
    """kvm01 dies; meanwhile web01 is restarted on kvm02 (same uuid). The inventory lists
    kvm01's VMs where it last saw them, marked stale: web01 moved, the others are stale."""
    base = world.tmp / "first"  # its mapping.json is the world as it is now
    previous = json.loads((base / "mapping.json").read_text())
    on_kvm01 = {v["uuid"]: v for v in previous["vms"] if v["host"] == "kvm01"}
    assert len(on_kvm01) == 4
    web01 = next(d for d in world.domains["kvm01"] if d["name"] == "web01")
    world.rewrite("kvm02", world.domains["kvm02"] + [dict(web01)])
    world.write_sources(dead=("kvm01",))
    try:
        out = world.tmp / "dead"
        proc = world.export(out, "-e", "previous=%s" % (base / "mapping.json"))
        doc, changes, rows = read_export(out)
        assert_csv_matches_json(doc, rows)
        assert changes["moved"] == [{"uuid": web01["uuid"], "name": "web01", "platform": "libvirt",
                                     "from": "kvm01", "to": "kvm02", "from_cluster": "rack1", "to_cluster": "rack2"}]
        assert changes["appeared"] == [] and changes["disappeared"] == []
        stale = {s["uuid"]: s for s in changes["stale"]}
        assert set(stale) == set(on_kvm01) - {web01["uuid"]}
        assert all(s["host"] == s["previous_host"] == "kvm01" and s["source"] == "inventory" and s["last_seen"]
                   for s in stale.values())
        rows_by_uuid = {}
        for vm in doc["vms"]:
            rows_by_uuid.setdefault(vm["uuid"], []).append(vm)
        assert [(v["host"], v["stale"]) for v in rows_by_uuid[web01["uuid"]]] == [("kvm02", False)]
        for uuid in stale:
            (vm,) = rows_by_uuid[uuid]
            assert vm["stale"] is True and vm["host"] == "kvm01" and vm["power_state"] == "unknown"
        assert "stale: db01 (%s) [libvirt] host kvm01 not read" % next(
            u for u, v in on_kvm01.items() if v["name"] == "db01") in proc.stdout

        # without the inventory's last-known VMs, kvm01's VMs are carried over from the previous export
        world.write_sources(dead=("kvm01",), extra="remember_vms: false\n")
        out = world.tmp / "dead-forgotten"
        world.export(out, "-e", "previous=%s" % (base / "mapping.json"))
        doc, changes, rows = read_export(out)
        assert_csv_matches_json(doc, rows)
        assert [m["uuid"] for m in changes["moved"]] == [web01["uuid"]]
        assert changes["appeared"] == [] and changes["disappeared"] == []
        assert {s["uuid"]: (s["source"], s["last_seen"]) for s in changes["stale"]} == {
            u: ("previous_export", previous["exported_at"]) for u in stale}
        carried = [v for v in doc["vms"] if v["stale"]]
        assert {v["uuid"] for v in carried} == set(stale) and all(v["host"] == "kvm01" for v in carried)
    finally:
        world.write_sources()
