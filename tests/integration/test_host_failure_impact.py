"""playbooks/host_failure_impact.yml on a merged inventory of real peers.

One inventory directory holds two sources: libvirt's test:/// driver (three node
files = three fake hypervisors) and the vCenter simulator (vcsim_peer.py). The
runbook is run with a libvirt hypervisor, with an ESXi host, and with no host
after an ESXi host was disconnected through the control API and a libvirt
hypervisor died (its last-known VMs come back stale). What it reports is
checked against independent reads: virsh on the same node files, pyVmomi and
the simulator's control API (/state). The HTML page is opened in headless
Chromium: its DOM must hold the SVG with the failed host's VMs, and its
screenshot must show the red of the failed host.
"""

import csv
import json
import os
import re
import shutil
import struct
import subprocess
import time
import uuid
import zlib
from html.parser import HTMLParser
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import pytest

from helpers import BIN, ROOT, env, inventory, playbook, task_results, virsh

PLAY = "playbooks/host_failure_impact.yml"
CHROMIUM = "/usr/bin/chromium"
SHOTS = os.path.join(ROOT, "tests", "output", "host_failure_impact")  # git-ignored, kept for people to look at
# -dc 1 -cluster 2 -cluster-host 3 -host 1 -vm 3: ESXi hosts DC0_C0_H0..2, DC0_C1_H0..2, DC0_H0; 9 VMs
SIZE = ("-dc", "1", "-cluster", "2", "-cluster-host", "3", "-host", "1", "-vm", "3")
ESX_NAMES = {"DC0_C0_RP0_VM0": "grüße <vm> & ✓", "DC0_C0_RP0_VM1": "web 01"}
LIBVIRT = {  # hypervisor: (cluster, VM names); "web 01" repeats across hypervisors and platforms
    "kvm01": ("prod", ["web 01", "db <main> & co", "grüße db ✓", 'a "quoted" name', "batch01"]),
    "kvm02": ("prod", ["web 01", "cache01"]),
    "kvm03": ("dev", ["lab1", "lab2", "ghost db"]),
}
ESX_FAILED = "DC0_C0_H1"
DEAD_URI = "qemu+tcp://127.0.0.1:1/system"
_POWER = {"poweredOn": "running", "poweredOff": "stopped", "suspended": "suspended"}


# --- peers and inventory -----------------------------------------------------------
def node_file(path, names):
    """A test:/// node file: one fake hypervisor; names XML-escaped; every third VM shut off."""
    doms = "".join(
        '<domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0"><name>%s</name><uuid>%s</uuid>'
        "<memory unit='MiB'>64</memory><os><type>hvm</type></os><test:runstate>%d</test:runstate></domain>"
        % (escape(name), uuid.uuid4(), 5 if i % 3 == 2 else 1) for i, name in enumerate(names))
    path.write_text("<node>%s</node>" % doms, encoding="utf-8")
    return "test://%s" % path


def libvirt_source(path, uris):
    lines = ["plugin: virtops.unified.libvirt", "hypervisors:"]
    for name, uri in uris.items():
        lines.append("  - {name: %s, uri: '%s', cluster: %s}" % (name, uri, LIBVIRT[name][0]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def estate(vcsim, tmp_path_factory):
    """The simulator (VMs placed on purpose) and the libvirt node files."""
    base = tmp_path_factory.mktemp("estate")
    sim = vcsim(*SIZE, "-names", json.dumps(ESX_NAMES))
    # the simulator places VMs at random: put two of DC0_C0's on the host that will fail, one elsewhere
    by_moref = {v["moref"]: v for v in sim.state()["vms"]}
    c0 = sorted((v for v in by_moref.values() if v["cluster"] == "DC0_C0"), key=lambda v: v["moref"])
    for vm, host in zip(c0, [ESX_FAILED, ESX_FAILED, "DC0_C0_H2"]):
        sim.vm_do(vm["instanceUuid"], "relocate", host=host)
    uris = {hv: node_file(base / ("%s.xml" % hv), names) for hv, (_c, names) in LIBVIRT.items()}
    return sim, uris, base


def merged_inventory(estate, name):
    """A directory with a libvirt and a vmware source: `-i dir/` merges them."""
    sim, uris, base = estate
    inv = base / name
    inv.mkdir()
    libvirt_source(inv / "lab.libvirt.yml", uris)
    sim.write_inventory(inv / "sim.vmware.yml")
    return inv


@pytest.fixture(scope="module")
def live_inventory(estate):
    return merged_inventory(estate, "live")


# --- independent reads -------------------------------------------------------------
def virsh_vms(uri):
    """{uuid: running?} for one fake hypervisor, read by virsh."""
    every = set(virsh(uri, "list", "--all", "--uuid").split())
    running = set(virsh(uri, "list", "--uuid").split())
    return {u: u in running for u in every}


def vsphere_vms(sim, host):
    """{instanceUuid: (name, power)} of the VMs on one ESXi host: pyVmomi, checked against /state."""
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    soap = {vm.config.instanceUuid: (vm.name, vm.runtime.powerState)
            for vm in sim.objects(vim.VirtualMachine) if vm.runtime.host.name == host}
    control = {v["instanceUuid"] for v in sim.state()["vms"] if v["host"] == host}
    assert set(soap) == control, "pyVmomi and /state disagree on %s" % host
    return soap


# --- running the runbook and reading its output ---------------------------------------
def run_impact(inv, report_dir, *extra, check=True):
    start = time.monotonic()
    proc = playbook(inv, PLAY, "-e", "report_dir=%s" % report_dir, *extra, check=check)
    return proc, time.monotonic() - start


def read_report(report_dir):
    with open(os.path.join(report_dir, "impact.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    with open(os.path.join(report_dir, "impact.csv"), encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(os.path.join(report_dir, "impact.html"), encoding="utf-8") as fh:
        html = fh.read()
    return data, rows, html


def printed_table(stdout):
    """The lines of the table the play prints."""
    results = task_results(stdout, "Show the VMs that go down")
    assert len(results) == 1, stdout[-3000:]
    return results[0]["msg"]


def check_report(report_dir, stdout, failed, expected):
    """impact.json, impact.csv and the printed table list exactly the expected VMs.

    expected: {uuid: {"host": ..., "power": ... or None, "stale": bool}}
    """
    data, rows, html = read_report(report_dir)
    assert [h["name"] for h in data["failed_hosts"]] == failed
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["generated"])
    by_uuid = {v["uuid"]: v for v in data["vms"]}
    assert len(by_uuid) == len(data["vms"]), "a VM is listed twice"
    assert set(by_uuid) == set(expected)
    for uuid, want in expected.items():
        got = by_uuid[uuid]
        assert got["host"] == want["host"], got
        assert got["stale"] is want["stale"], got
        if want["power"]:
            assert got["power_state"] == want["power"], got
        assert got["platform"] in ("libvirt", "vmware") and got["name"] and got["cluster"], got
    assert data["counts"]["vms"] == len(expected)
    assert data["counts"]["stale"] == sum(1 for w in expected.values() if w["stale"])
    # the CSV carries the same records
    assert {r["uuid"]: (r["name"], r["host"], r["power_state"], r["stale"]) for r in rows} == {
        v["uuid"]: (v["name"], v["host"], v["power_state"], "true" if v["stale"] else "false") for v in data["vms"]}
    # the printed table: a header, then one line per VM
    lines = printed_table(stdout)
    header = [i for i, line in enumerate(lines) if line.startswith("VM ") and "UUID" in line]
    assert header, lines
    body = lines[header[0] + 1:]
    assert sorted(re.search(r"[0-9a-f-]{36}", line).group(0) for line in body) == sorted(expected)
    return data, rows, html


# --- the page in Chromium ------------------------------------------------------------
def chromium(*args, user_dir):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("%s is missing (apt-get install chromium)" % CHROMIUM, pytrace=False)
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=%s" % user_dir, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG, with stdlib zlib."""
    with open(path, "rb") as fh:
        blob = fh.read()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, head = 8, b"", None
    while pos < len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        chunk = blob[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _comp, _filt, interlace = head
    assert depth == 8 and color in (2, 6) and interlace == 0, head
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            if ftype == 1:
                line[i] = (line[i] + left) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + up) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif ftype == 4:
                corner = prev[i - bpp] if i >= bpp else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


class SvgReader(HTMLParser):
    """From a DOM dump: the failed host cards and the VM boxes of the picture, with their titles."""

    def __init__(self):
        super().__init__()
        self.in_svg = 0
        self.failed_hosts = []
        self.vms = {}  # uuid -> {"host", "stale", "title"}
        self.dimmed_hosts = []
        self._vm = None
        self._in_title = False
        self.texts = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg" and "map" in (attrs.get("class") or "").split():
            self.in_svg += 1
        if not self.in_svg:
            return
        classes = (attrs.get("class") or "").split()
        if tag == "g" and classes[:2] == ["host", "failed"]:
            self.failed_hosts.append(attrs["data-host"])
        elif tag == "g" and classes[:2] == ["host", "ok"]:
            self.dimmed_hosts.append(attrs["data-host"])
        elif tag == "g" and "vm" in classes:
            self._vm = attrs["data-uuid"]
            self.vms[self._vm] = {"host": attrs["data-host"], "stale": "stale" in classes, "title": ""}
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "svg" and self.in_svg:
            self.in_svg -= 1
        elif tag == "title":
            self._in_title = False
        elif tag == "g" and self._vm and not self._in_title:
            self._vm = None

    def handle_data(self, data):
        if not self.in_svg:
            return
        if self._in_title and self._vm:
            self.vms[self._vm]["title"] += data
        else:
            self.texts.append(data)


def screenshot(page, tmp_path, keep_as):
    """Chromium's screenshot of the page (1400x1000): a real picture, not one colour, showing
    the failed-host red. Kept under tests/output/ for people to look at."""
    shot = tmp_path / keep_as
    proc = chromium("--screenshot=%s" % shot, "--window-size=1400,1000", page, user_dir=tmp_path / "chromium-shot")
    assert shot.is_file() and shot.stat().st_size > 20000, proc.stderr[-2000:]
    width, height, bpp, rows = png_pixels(shot)
    assert (width, height) == (1400, 1000)
    pixels = [row[i:i + 3] for row in rows[::2] for i in range(0, len(row), bpp * 2)]
    red = sum(1 for p in pixels if abs(p[0] - 0xC6) < 12 and abs(p[1] - 0x28) < 12 and abs(p[2] - 0x28) < 12)
    assert len(set(pixels)) > 50, "the screenshot is (nearly) one colour"
    assert red > 500, "no failed-host red in the screenshot (%d pixels)" % red
    os.makedirs(SHOTS, exist_ok=True)
    kept = os.path.join(SHOTS, keep_as)
    shutil.copy(shot, kept)
    return kept


# --- tests ---------------------------------------------------------------------------
def test_libvirt_host_failure_lists_exactly_what_virsh_sees_and_the_page_shows_it(estate, live_inventory, tmp_path):
    _sim, uris, _base = estate
    out = tmp_path / "report"
    proc, took = run_impact(live_inventory, out, "-e", "failed_host=kvm01")
    truth = virsh_vms(uris["kvm01"])
    expected = {u: {"host": "kvm01", "power": "running" if on else "stopped", "stale": False} for u, on in truth.items()}
    data, _rows, html = check_report(out, proc.stdout, ["kvm01"], expected)
    names = {v["name"] for v in data["vms"]}
    assert names == set(virsh(uris["kvm01"], "list", "--all", "--name").split("\n"))
    assert data["failed_hosts"][0]["connection_state"] == "connected" and data["selection"] == "given"

    # one self-contained page: no script, no external resource; every name escaped
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(|\bsrc=|\bhref=", html, re.I)
    assert "db <main> & co" not in html and "db &lt;main&gt; &amp; co" in html
    assert "a &#34;quoted&#34; name" in html and "grüße db ✓" in html
    picture = html[html.index('<svg class="map"'):html.index("</svg>", html.index('<svg class="map"')) + 6]
    ElementTree.fromstring(picture)  # the picture is well-formed XML: nothing unescaped broke it

    # the DOM as Chromium built it: the picture holds the failed host and each of its VMs
    page = "file://%s" % (out / "impact.html")
    dom = chromium("--dump-dom", page, user_dir=tmp_path / "chromium-dom")
    assert dom.returncode == 0 and "<svg" in dom.stdout, dom.stderr[-2000:]
    svg = SvgReader()
    svg.feed(dom.stdout)
    assert svg.failed_hosts == ["kvm01"]
    assert "kvm02" in svg.dimmed_hosts and ESX_FAILED in svg.dimmed_hosts
    assert set(svg.vms) == set(truth)
    by_uuid = {v["uuid"]: v for v in data["vms"]}
    for uuid, box in svg.vms.items():
        assert box["host"] == "kvm01" and box["title"].startswith(by_uuid[uuid]["name"] + " - "), box
    assert "FAILED" in svg.texts

    # the picture as a person sees it: a real image with the red of the failed host
    kept = screenshot(page, tmp_path, "libvirt-kvm01.png")
    print("kvm01: playbook %.1fs, screenshot %s" % (took, kept))


def test_esxi_host_failure_lists_exactly_what_pyvmomi_sees(estate, live_inventory, tmp_path):
    sim, _uris, _base = estate
    out = tmp_path / "report"
    proc, took = run_impact(live_inventory, out, "-e", "failed_host=%s" % ESX_FAILED)
    truth = vsphere_vms(sim, ESX_FAILED)
    assert len(truth) == 2
    expected = {u: {"host": ESX_FAILED, "power": _POWER[p], "stale": False} for u, (_n, p) in truth.items()}
    data, _rows, _html = check_report(out, proc.stdout, [ESX_FAILED], expected)
    assert {v["name"] for v in data["vms"]} == {n for n, _p in truth.values()}
    assert {v["cluster"] for v in data["vms"]} == {"DC0_C0"} and {v["platform"] for v in data["vms"]} == {"vmware"}
    print("%s: playbook %.1fs" % (ESX_FAILED, took))


def test_without_failed_host_every_hypervisor_not_connected_stale_vms_included(estate, tmp_path):
    sim, uris, _base = estate
    inv = merged_inventory(estate, "dying")
    inventory(inv)  # read once while kvm03 answers: the plugin remembers its VMs
    libvirt_source(inv / "lab.libvirt.yml", dict(uris, kvm03=DEAD_URI))  # kvm03 dies
    sim.host_do(ESX_FAILED, "connection", state="disconnected")
    try:
        out = tmp_path / "report"
        proc, took = run_impact(inv, out)
        truth_esx = vsphere_vms(sim, ESX_FAILED)
        assert next(h for h in sim.state()["hosts"] if h["name"] == ESX_FAILED)["connectionState"] == "disconnected"
    finally:
        sim.host_do(ESX_FAILED, "connection", state="connected")
    truth_kvm03 = virsh_vms(uris["kvm03"])  # what kvm03 held when it was last read
    expected = {u: {"host": ESX_FAILED, "power": "unknown", "stale": False} for u in truth_esx}
    expected.update({u: {"host": "kvm03", "power": "unknown", "stale": True} for u in truth_kvm03})
    data, rows, html = check_report(out, proc.stdout, ["kvm03", ESX_FAILED], expected)
    assert data["selection"] == "not connected"
    states = {h["name"]: h["connection_state"] for h in data["failed_hosts"]}
    assert states == {"kvm03": "unreachable", ESX_FAILED: "disconnected"}
    stale = [v for v in data["vms"] if v["stale"]]
    assert stale and all(v["last_seen"] and v["power_state_raw"].startswith("last seen") for v in stale)
    assert "stale" in data["stale_note"]
    assert all(r["last_seen"] for r in rows if r["stale"] == "true")
    assert "Stale VMs." in html and 'class="vm stale"' in html
    kept = screenshot("file://%s" % (out / "impact.html"), tmp_path, "auto-stale.png")
    lines = printed_table(proc.stdout)
    assert any("kvm03: unreachable" in line and "3 stale" in line for line in lines), lines
    assert sum(1 for line in lines if "STALE" in line) == len(truth_kvm03)
    print("auto selection: playbook %.1fs, screenshot %s" % (took, kept))


def test_unknown_failed_host_is_refused_naming_it_and_nothing_is_written(live_inventory, tmp_path):
    out = tmp_path / "report"
    before = [n for n in os.listdir(ROOT) if n.startswith("impact-")]
    proc, _took = run_impact(live_inventory, out, "-e", "failed_host=kvm01,kvm99,cache01", check=False)
    assert proc.returncode != 0
    msg = proc.stdout + proc.stderr
    assert "Unknown failed_host: 'kvm99' (not in the inventory), 'cache01' (a VM on kvm02, not a hypervisor)" in msg
    assert "Nothing was written" in msg
    known = re.search(r"Known hypervisors: ([^\"]*)", msg).group(1)
    for host in ("kvm01 (connected)", "kvm03 (connected)", "DC0_H0 (connected)", "%s (connected)" % ESX_FAILED):
        assert host in known
    assert not out.exists() and [n for n in os.listdir(ROOT) if n.startswith("impact-")] == before


def test_report_dir_that_cannot_be_written_fails_clearly(live_inventory, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc, _took = run_impact(live_inventory, blocker / "report", "-e", "failed_host=kvm02", check=False)
    assert proc.returncode != 0
    assert "Cannot write the impact report to %s (report_dir)" % (blocker / "report") in proc.stdout
    assert "Not a directory" in proc.stdout


def test_check_mode_prints_and_writes_nothing_default_dir_in_the_working_directory(estate, live_inventory, tmp_path):
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", str(live_inventory), os.path.join(ROOT, PLAY),
            "-e", "failed_host=kvm02", "--check"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    uuids = [m.group(0) for m in (re.search(r"[0-9a-f-]{36}", line) for line in printed_table(proc.stdout)) if m]
    assert sorted(uuids) == sorted(virsh_vms(estate[1]["kvm02"]))
    would = re.search(r"Check mode: nothing written \(would write impact.csv, impact.json, impact.html to ([^)]*)\)",
                      proc.stdout)
    assert would and re.fullmatch(re.escape(os.path.realpath(tmp_path)) + r"/impact-\d{8}T\d{6}Z", would.group(1))
    assert os.listdir(tmp_path) == []
