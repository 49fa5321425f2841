"""VM names chosen by an attacker: shell syntax, quotes, Jinja, spreadsheet formulas.

Anyone who may name a VM chooses strings that reach the runbooks, the reports, the
event source and the rulebooks. None of it may ever be evaluated: not as a template
by Ansible (ansible-core 2.19 evaluates extra vars, never inventory values), not by a
shell, not by a spreadsheet. Every step below runs the real programs on one shared
world and checks the result independently of the collection (pyVmomi, the vCenter
simulator's control API, virsh, the audit log, the files written):

* the world: the vCenter simulator, its VMs renamed through the control API, and a
  libvirt test:/// lab of two fake hypervisors with hostile domain names, one of them
  on both hypervisors; one inventory directory merges them;
* ansible-inventory lists each name as it is, as untrusted data;
* playbooks/restart_vm.yml -e '{"target": <hostile name>}' power-cycles that VM
  (runtime.bootTime changes) and its audit line has the name verbatim; every other
  VM resolves by its name or inventory name (one check-mode run);
* host_failure_impact.yml (table, CSV, JSON, HTML) and export_mapping.yml write the
  names verbatim, HTML-escaped in HTML, with CSV formula cells neutralised;
* restart_hung_vm.yml (ansible-rulebook) and restart_hung_vm_awx.yml (ansible-rulebook
  against the AWX API emulation of test_awx.py, AWX's ALLOW_JINJA_IN_EXTRA_VARS at
  "always", the worst case) each restart one hostile-named VM whose heartbeat went red,
  once, the two rulebooks running side by side;
* restart_hung_vm.yml's rules, fed crafted events, act only on a plain uuid and host.

Evaluation would show: 7*191 gives 1337, `id` prints uid=..., and the touch commands
in the names create canary files. None of these may appear anywhere.
"""

import csv
import json
import os
import re
import time
import uuid as uuidlib
from html.parser import HTMLParser
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from markupsafe import escape as html_escape

from helpers import BIN, ROOT, _plain, adhoc, playbook, run, task_results, virsh
from rulebook_peer import Rulebook, audit_actions
from test_awx import INVENTORY_SOURCES, AwxApi, credential_type
# test_awx's fixtures: the collection as the execution environment installs it
from test_awx import ee_collections, ee_context  # noqa: F401 pylint: disable=unused-import
from vcsim_peer import PASSWORD, USERNAME

CANARY = "vo_canary"  # every touch in the names creates a file whose name starts so
# vSphere: the VM the CLI restarts, the one EDA restarts, the one AWX restarts, one for CSV
V_CLI = "本番DB \"prod's\" {{ 7*191 }}; $(id) `id` 100%"
# ansible-rulebook runs its playbooks in a directory it deletes: this canary is absolute
V_EDA = "eda {{ lookup('pipe','id') }}{{ lookup('pipe','touch /tmp/vo_canary_eda') }} it's"
V_AWX = "{% raw %}awx, vm {{ 7*191 }} $(touch vo_canary_awx)"
V_CSV = '=HYPERLINK("http://example.invalid/x","click")'
DUP = "dup, {{ 7*191 }} 50%"  # on both libvirt hypervisors
LAB = {
    "kvm01": ["$(touch vo_canary_sh) `touch vo_canary_bt`; x", "@SUM(1+1) -x +y", DUP, "plain01"],
    "kvm02": [DUP, "本番DB {% raw %}{{ x }}{% endraw %}", "-2+3 {{ lookup('pipe','touch vo_canary_pipe') }}"],
}
HOSTILE = [V_CLI, V_EDA, V_AWX, V_CSV] + sorted({n for names in LAB.values() for n in names})
# what 7*191 or `id` would print (1337 alone: not inside a number, a uuid or a hex id)
EXPANDED = re.compile(r"(?<![0-9A-Za-z.-])1337(?![0-9A-Za-z-])|\buid=[0-9]+\(")


def expanded(text):
    """The first sign of an evaluation in text, or None."""
    found = EXPANDED.search(text)
    if found is None:
        return None
    return "%s>>>%s<<<%s" % (text[max(0, found.start() - 150):found.start()], found.group(0),
                             text[found.end():found.end() + 80])


def shown(text, output):
    """text is in the play output as it is (the callback prints results as JSON: quotes escaped)."""
    return any(form in output for form in (text, json.dumps(text, ensure_ascii=False)[1:-1], json.dumps(text)[1:-1]))


def csv_text(value):
    """A cell as the reports write it: a leading ' before = + - @ tab CR (OWASP)."""
    value = "" if value is None else str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def node_file(path, names):
    """A test:/// node file: one fake hypervisor, every domain running."""
    doms = []
    for name in names:
        vm_uuid = str(uuidlib.uuid4())
        while "1337" in vm_uuid:  # would look like an expansion
            vm_uuid = str(uuidlib.uuid4())
        doms.append('<domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0"><name>%s</name>'
                    "<uuid>%s</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
                    "<test:runstate>1</test:runstate></domain>" % (escape(name), vm_uuid))
    path.write_text("<node>%s</node>" % "".join(doms), encoding="utf-8")
    return "test://%s" % path


class World:
    """The simulator with renamed VMs, the libvirt lab, the merged inventory directory."""

    def __init__(self, base, sim):
        self.base, self.sim = base, sim
        vms = {v["name"]: v for v in sim.state()["vms"]}
        self.vsphere = {}  # hostile name -> its /state record (instanceUuid, host, ...)
        for old, new in (("DC0_H0_VM0", V_CLI), ("DC0_H0_VM1", V_EDA), ("DC0_C0_RP0_VM0", V_AWX),
                         ("DC0_C0_RP0_VM1", V_CSV)):
            sim.vm_do(vms[old]["instanceUuid"], "rename", name=new)
            self.vsphere[new] = sim.vm_state(vms[old]["instanceUuid"])
        self.inv = base / "inventory"
        self.inv.mkdir()
        self.uris = {hv: node_file(base / ("%s.xml" % hv), names) for hv, names in LAB.items()}
        (self.inv / "lab.libvirt.yml").write_text(
            "plugin: virtops.unified.libvirt\nhypervisors:\n" + "".join(
                "  - {name: %s, uri: '%s', cluster: lab}\n" % (hv, uri) for hv, uri in self.uris.items()),
            encoding="utf-8")
        sim.write_inventory(self.inv / "sim.vmware.yml")
        self.outputs = []  # everything the programs printed, checked at the end

    def libvirt(self):
        """{(host, name): uuid}, read by virsh."""
        out = {}
        for hv, uri in self.uris.items():
            for vm_uuid in virsh(uri, "list", "--all", "--uuid").split():
                out[(hv, virsh(uri, "domname", vm_uuid))] = vm_uuid
        return out

    def names(self):
        """Every VM name of the world, as its platform reads it."""
        from pyVmomi import vim  # pylint: disable=import-outside-toplevel
        return sorted([vm.name for vm in self.sim.objects(vim.VirtualMachine)] + [n for _h, n in self.libvirt()])

    def playbook(self, play, *extra, check=True):
        proc = playbook(self.inv, play, *extra, check=check)
        self.outputs.append((play, proc.stdout + proc.stderr))
        return proc


@pytest.fixture(scope="module")
def world(vcsim, tmp_path_factory):
    sim = vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "2", "-host", "1", "-vm", "2")
    return World(tmp_path_factory.mktemp("hostile"), sim)


def audit_log():
    return Path(os.environ["VIRTOPS_AUDIT_LOG"])  # set by the vcsim fixture for this module


def e_json(**values):
    """One -e argument holding these variables as JSON (names with commas and quotes)."""
    return ["-e", json.dumps(values, ensure_ascii=False)]


# --- the inventory --------------------------------------------------------------------
def test_the_platforms_hold_the_names_as_given(world):
    assert world.names() == sorted(HOSTILE + [DUP]), world.names()
    uuids = [rec["instanceUuid"] for rec in world.vsphere.values()] + list(world.libvirt().values())
    assert not [u for u in uuids if "1337" in u]  # would look like an expansion


def test_inventory_lists_every_name_verbatim_as_untrusted_data(world):
    proc = run([os.path.join(BIN, "ansible-inventory"), "-i", str(world.inv), "--list"])
    world.outputs.append(("ansible-inventory --list", proc.stdout + proc.stderr))
    hostvars = json.loads(proc.stdout)["_meta"]["hostvars"]
    vms = {host: hv for host, hv in hostvars.items() if hv.get("virt_kind") == {"__ansible_unsafe": "vm"}}
    # ansible-core marks what an inventory plugin sets as never to be templated
    assert all(set(hv["virt_name"]) == {"__ansible_unsafe"} for hv in vms.values()), vms
    names = sorted(hv["virt_name"]["__ansible_unsafe"] for hv in vms.values())
    assert names == world.names()
    # a unique name is the inventory name; the repeated one becomes <name>_<host> for both
    assert set(vms) == (set(HOSTILE) - {DUP}) | {"%s_kvm01" % DUP, "%s_kvm02" % DUP}
    graph = run([os.path.join(BIN, "ansible-inventory"), "-i", str(world.inv), "--graph", "virt_vms"]).stdout
    world.outputs.append(("ansible-inventory --graph", graph))
    for host in vms:
        assert "|--%s\n" % host in graph, host
    by_uuid = {_plain(hv["virt_uuid"]): hv for hv in vms.values()}
    for (host, name), vm_uuid in world.libvirt().items():  # virsh: the same name on the same host
        assert _plain(by_uuid[vm_uuid]["virt_name"]) == name and _plain(by_uuid[vm_uuid]["virt_host"]) == host
    for name, rec in world.vsphere.items():  # the simulator: the same
        assert _plain(by_uuid[rec["instanceUuid"]]["virt_name"]) == name


# --- the restart runbook --------------------------------------------------------------
def test_restart_vm_by_a_hostile_name_power_cycles_that_vm(world):
    vm_uuid = world.vsphere[V_CLI]["instanceUuid"]
    others = {rec["instanceUuid"]: world.sim.vm(rec["instanceUuid"]).runtime.bootTime
              for name, rec in world.vsphere.items() if name != V_CLI}
    boot = world.sim.vm(vm_uuid).runtime.bootTime
    reason = "INC-7 {{ 7*191 }} $(id) `touch vo_canary_reason`"
    proc = world.playbook("playbooks/restart_vm.yml", *e_json(target=V_CLI, reason=reason), check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    now = world.sim.wait_power(vm_uuid, "poweredOn")
    assert now.runtime.bootTime != boot, "not power-cycled"
    assert {u: world.sim.vm(u).runtime.bootTime for u in others} == others  # no other VM touched
    (record,) = audit_actions(audit_log(), vm_uuid)
    assert record["target"]["name"] == V_CLI and record["target"]["inventory_name"] == V_CLI
    assert record["reason"] == reason and record["result"] == "ok"
    assert shown("DONE: restart of %s (%s)" % (V_CLI, vm_uuid), proc.stdout), proc.stdout[-3000:]


def test_every_vm_resolves_by_its_name_and_a_repeated_name_is_refused(world):
    # every name at once (a JSON list: names hold commas), in check mode: the plan names each
    vms = {rec["inventory_name"]: rec for rec in inventory_vms(world)}
    targets = sorted(set(HOSTILE) - {DUP}) + ["%s_kvm01" % DUP, "%s_kvm02" % DUP]
    assert set(targets) == set(vms)
    proc = world.playbook("playbooks/restart_vm.yml", "--check",
                          *e_json(target=targets, max_targets=len(targets)), check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    for target in targets:
        assert shown("PLAN (check mode, nothing done): restart of %s (%s)" % (
            vms[target]["virt_name"], vms[target]["virt_uuid"]), proc.stdout), target
    # the name on two hypervisors: refused, both copies listed with their host, nothing done
    refused = world.playbook("playbooks/restart_vm.yml", "--check", *e_json(target=DUP), check=False)
    assert refused.returncode != 0
    copies = {h: u for (h, n), u in world.libvirt().items() if n == DUP}
    assert shown(DUP, refused.stdout) and all(u in refused.stdout and h in refused.stdout for h, u in copies.items())
    # and every VM answers vm_info through its own inventory variables
    rc, results = adhoc(world.inv, "virt_vms", "virtops.unified.vm_info", {})
    world.outputs.append(("vm_info", json.dumps(results, ensure_ascii=False)))
    assert rc == 0, results
    assert {host: res["vms"][0]["name"] for host, res in results.items()} == {
        host: rec["virt_name"] for host, rec in vms.items()}


def inventory_vms(world):
    """[{inventory_name, virt_name, virt_uuid, virt_host, ...}] of every VM, from ansible-inventory."""
    proc = run([os.path.join(BIN, "ansible-inventory"), "-i", str(world.inv), "--list"])
    out = []
    for host, hostvars in _plain(json.loads(proc.stdout))["_meta"]["hostvars"].items():
        if hostvars.get("virt_kind") == "vm":
            out.append(dict(hostvars, inventory_name=host))
    return out


# --- the reports ----------------------------------------------------------------------
class _Text(HTMLParser):
    """Every text node and attribute value of a page, character references resolved."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []

    def handle_starttag(self, tag, attrs):
        self.parts += [v for _k, v in attrs if v]

    def handle_data(self, data):
        self.parts.append(data)


def _html_strings(html):
    reader = _Text()
    reader.feed(html)
    return reader.parts


def test_impact_report_writes_the_names_verbatim(world):
    report = world.base / "impact"
    failed = ["kvm01", "kvm02", world.vsphere[V_CLI]["host"]]  # DC0_H0: V_CLI and V_EDA
    proc = world.playbook("playbooks/host_failure_impact.yml", "-v", "-e", "failed_host=%s" % ",".join(failed),
                          "-e", "report_dir=%s" % report)
    expected = sorted([n for (h, n) in world.libvirt()] + [n for n, r in world.vsphere.items() if r["host"] in failed])
    data = json.loads((report / "impact.json").read_text(encoding="utf-8"))
    assert sorted(v["name"] for v in data["vms"]) == expected
    for name in expected:  # written as UTF-8, not as JSON \uXXXX escapes
        assert json.dumps(name, ensure_ascii=False) in (report / "impact.json").read_text(encoding="utf-8")
    with open(report / "impact.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_uuid = {v["uuid"]: v for v in data["vms"]}
    assert sorted(r["uuid"] for r in rows) == sorted(by_uuid)
    for row in rows:
        vm = by_uuid[row["uuid"]]
        assert row["name"] == csv_text(vm["name"]) and row["inventory_name"] == csv_text(vm["inventory_name"])
    assert sorted(r["name"] for r in rows if r["name"].startswith("'")) == sorted(
        "'" + n for n in expected if n[:1] in "=+-@")  # the formula-like names, and only they
    html = (report / "impact.html").read_text(encoding="utf-8")
    strings = _html_strings(html)
    for name in expected:
        assert str(html_escape(name)) in html, name  # escaped in the markup ...
        assert any(name in s for s in strings), name  # ... and the page shows it as it is
    table = task_results(proc.stdout, "Show the VMs that go down")[0]["msg"]
    for name in expected:
        assert any(name in line for line in table), name
    assert sorted(p.name for p in report.iterdir()) == ["impact.csv", "impact.html", "impact.json"]


def test_export_mapping_writes_the_names_verbatim(world):
    export = world.base / "export"
    world.playbook("playbooks/export_mapping.yml", "-e", "export_dir=%s" % export)
    raw = (export / "mapping.json").read_text(encoding="utf-8")
    doc = json.loads(raw)
    assert sorted(v["name"] for v in doc["vms"]) == world.names()
    for name in world.names():
        assert json.dumps(name, ensure_ascii=False) in raw, name
    with open(export / "mapping.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["uuid"], r["name"], r["inventory_name"], r["host"]) for r in rows] == [
        (v["uuid"], csv_text(v["name"]), csv_text(v["inventory_name"]), v["host"]) for v in doc["vms"]]
    assert sorted(p.name for p in export.iterdir()) == ["changes.json", "mapping.csv", "mapping.json"]


# --- EDA: the rulebooks, run by the real ansible-rulebook ------------------------------
def test_rulebooks_restart_hostile_named_vms_once_through_a_playbook_and_an_awx_job(  # noqa: F811
        world, ee_collections):  # pylint: disable=redefined-outer-name
    sim = world.sim
    eda, awx = world.vsphere[V_EDA], world.vsphere[V_AWX]
    boots = {rec["instanceUuid"]: sim.vm(rec["instanceUuid"]).runtime.bootTime for rec in world.vsphere.values()}
    # both rulebooks watch the whole world, the vCenter and the libvirt lab, each acting on its own VM
    common = {"virtops_inventory": str(world.inv), "virtops_interval": 1, "virtops_failure_interval": 2,
              "virtops_min_uptime": 0}
    creds = {"VMWARE_USER": USERNAME, "VMWARE_PASSWORD": PASSWORD}
    rb_dir, awx_dir = world.base / "rulebook", world.base / "rulebook-awx"
    rb_dir.mkdir()
    awx_dir.mkdir()
    source = next(s for s in INVENTORY_SOURCES if s["credential"] == "vmware")
    credential = (credential_type("vmware"), {"hostname": "127.0.0.1", "username": USERNAME, "password": PASSWORD,
                                              "port": str(sim.port), "validate_certs": "false"})
    (awx_dir / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")  # the job uses AWX's inventory
    began = time.monotonic()
    with AwxApi(world.base / "awx", ee_collections, Path(source["source_path"]).name,
                Path(ROOT, source["source_path"]).read_text(), [credential], allow_jinja="always") as api, \
            Rulebook(rb_dir, "restart_hung_vm.yml", world.inv,
                     dict(common, virtops_vms=[eda["instanceUuid"]], virtops_max_resets=1), creds) as rb, \
            Rulebook(awx_dir, "restart_hung_vm_awx.yml", awx_dir / "hosts.yml",
                     dict(common, virtops_vms=[awx["instanceUuid"]]), creds,
                     extra_args=["--controller-url", api.url, "--controller-token", AwxApi.TOKEN]) as rb_awx:
        rb.wait_watching(endpoints=3)  # the vCenter and the lab's two hypervisors
        rb_awx.wait_watching(endpoints=3)
        sim.vm_do(eda["instanceUuid"], "heartbeat", status="red")
        sim.vm_do(awx["instanceUuid"], "heartbeat", status="red")
        rb.wait_for(lambda: audit_actions(rb.audit, eda["instanceUuid"]), 120, "the EDA restart in the audit log")
        rb_awx.wait_for(lambda: [e for e in api.jobs.values() if e["status"] in ("successful", "failed", "error")],
                        240, "a finished AWX job")
        # the same fault again on the EDA VM: max_resets (1) reached, the rulebook prints the name, acts no more
        sim.vm_do(eda["instanceUuid"], "heartbeat", status="red")
        rb.wait_for(lambda: rb.count("VIRTOPS vm_reset_limit_reached"), 60, "the max_resets message")
        # the source's own word, a poll later, that it saw the fault go on and sent nothing more
        limit_at = rb.text().index("VIRTOPS vm_reset_limit_reached")
        rb.wait_for(lambda: "heartbeat still lost; vm_hung already sent" in rb.text()[limit_at:], 30,
                    "the source holding back the repeat")
    elapsed = time.monotonic() - began
    world.outputs += [("restart_hung_vm.yml", rb.output), ("restart_hung_vm_awx.yml", rb_awx.output)]

    # restart_hung_vm.yml: one restart of that VM, by uuid, with a reason of fixed words
    (record,) = audit_actions(rb.audit, eda["instanceUuid"])
    assert record["target"]["name"] == V_EDA and record["reason"] == "EDA restart_hung_vm: vm_hung (guest heartbeat lost)"
    assert record["via"] == "eda Restart hung VMs through their hypervisor/Restart a hung VM", record["via"]
    assert sim.vm(eda["instanceUuid"]).runtime.bootTime != boots[eda["instanceUuid"]]
    assert "VIRTOPS vm_reset_limit_reached: %s needs a person" % V_EDA in rb.output  # printed as it is

    # restart_hung_vm_awx.yml: one launch with identifiers only, one job, one restart
    assert [launch["status"] for launch in api.launches] == [201], api.launches
    assert api.launches[0]["body"]["extra_vars"] == {
        "target": awx["instanceUuid"], "expected_host": awx["host"],
        "reason": "EDA restart_hung_vm: vm_hung (guest heartbeat lost)",
        "restart_vm_shutdown_timeout": 120, "restart_vm_force": "true"}
    (entry,) = list(api.jobs.values())
    job = entry["job"]
    world.outputs.append(("AWX job", job.stdout()))
    assert entry["status"] == "successful", job.stdout()[-4000:]
    assert "ansible_eda" not in job.extravars
    (record,) = job.audit()
    assert record["target"]["name"] == V_AWX and record["target"]["uuid"] == awx["instanceUuid"]
    assert record["via"] == "awx job %d" % job.id and record["state"] == "restarted"
    assert sim.vm(awx["instanceUuid"]).runtime.bootTime != boots[awx["instanceUuid"]]

    # nothing else was touched (the CLI test restarted V_CLI before)
    for name, rec in world.vsphere.items():
        if name not in (V_EDA, V_AWX, V_CLI):
            assert sim.vm(rec["instanceUuid"]).runtime.bootTime == boots[rec["instanceUuid"]], name
    assert PASSWORD not in rb.output + rb_awx.output + job.stdout()
    print("two rulebooks, one restart each: %.1f s" % elapsed)


FAKE_SOURCE = """
import asyncio, json

async def main(queue, args):
    with open(args["path"], encoding="utf-8") as fh:
        for event in json.load(fh):
            await queue.put(event)
    await asyncio.sleep(3600)
"""


def test_rules_act_only_on_identifiers(world, tmp_path):
    """restart_hung_vm.yml's rules, fed crafted events by a stand-in source: an event whose
    uuid, host or cause is not a plain identifier is reported and never acted on; a proper
    one runs the runbook with the uuid (a uuid the inventory does not have: it stops there)."""
    import yaml  # pylint: disable=import-outside-toplevel
    good = "00000000-0000-4000-8000-00000000c0de"
    vm = {"virt_uuid": good, "virt_host": "DC0_H0", "virt_name": V_EDA, "reason": "%s: {{ 7*191 }}" % V_EDA}
    events = [dict(vm, type="vm_hung", virt_uuid="{{ 7*191 }}"),
              dict(vm, type="vm_hung", virt_uuid=good + "\n"),
              dict(vm, type="vm_hung", virt_host="DC0 H0 {{ 7*191 }}"),
              dict(vm, type="vm_hung", virt_host=None),
              {k: v for k, v in dict(vm, type="vm_hung").items() if k != "virt_uuid"},
              dict(vm, type="vm_down", cause="x{{ 7*191 }}", virt_power_state_raw="shutoff:destroyed"),
              dict(vm, type="vm_down", cause="destroyed", virt_power_state_raw="shutoff:{{ 7*191 }}"),
              dict(vm, type="vm_hung")]
    (tmp_path / "events.json").write_text(json.dumps([{"virtops": e} for e in events]))
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "crafted_events.py").write_text(FAKE_SOURCE)
    with open(os.path.join(ROOT, "extensions", "eda", "rulebooks", "restart_hung_vm.yml"), encoding="utf-8") as fh:
        rulebook = yaml.safe_load(fh)
    rulebook[0]["sources"] = [{"name": "crafted", "crafted_events": {"path": str(tmp_path / "events.json")}}]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rulebook, allow_unicode=True))
    with Rulebook(tmp_path, str(tmp_path / "rules.yml"), world.inv, {}, extra_args=["-S", str(sources)]) as rb:
        rb.wait_for(lambda: rb.count("not acted on") >= len(events) - 1 and rb.count("PLAY RECAP")
                    and rb.count("run_playbook - ERROR"), 120, "every crafted event handled")
    world.outputs.append(("crafted events", rb.output))
    assert rb.output.count("not acted on") == len(events) - 1, rb.output[-4000:]
    # the one proper event ran the runbook once (a failed run's output is logged again with the error)
    assert rb.output.count("run_playbook - ERROR") == 1, rb.output[-4000:]
    assert "VM with uuid '%s' not found in the inventory" % good in rb.output, rb.output[-4000:]


# --- nothing was evaluated, anywhere ---------------------------------------------------
def test_nothing_was_evaluated_anywhere(world):
    assert world.outputs, "run the whole module"
    for what, text in world.outputs:
        assert expanded(text) is None, "%s shows an evaluation:\n%s" % (what, expanded(text))
    # what was written: reports, audit logs, job artifacts (not the AWX job's copy of this checkout)
    for top in (world.base, audit_log().parent):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != "project"]
            for name in filenames + dirnames:
                assert "1337" not in name and not name.startswith(CANARY), os.path.join(dirpath, name)
            for name in filenames:
                path = Path(dirpath, name)
                if path.suffix not in (".py", ".xml") and path.stat().st_size < 20_000_000:
                    assert expanded(path.read_text(encoding="utf-8", errors="replace")) is None, path
    # the shell syntax and pipe lookups in the names created no file where they would have run
    for top, depth in ((ROOT, 2), ("/tmp", 1), (os.path.expanduser("~"), 1), (str(world.base), 6)):
        for dirpath, dirnames, filenames in os.walk(top):
            if dirpath.count(os.sep) - top.rstrip(os.sep).count(os.sep) >= depth:
                dirnames[:] = []
            assert not [f for f in filenames + dirnames if f.startswith(CANARY)], dirpath
    # and every machine is still there under its name
    assert world.names() == sorted(HOSTILE + [DUP])
