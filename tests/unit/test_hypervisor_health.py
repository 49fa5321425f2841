"""The hypervisor_health event source's state machine, fed scripted bulk reads
and a fake clock (the integration tests run it on the real peers)."""

import asyncio
import datetime
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from collections import Counter

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import model, registry, runbook

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "extensions", "eda", "plugins",
                                "event_source"))
import hypervisor_health as hh  # noqa: E402 pylint: disable=wrong-import-position

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
OTHER = "0f2bd2a4-7a10-4a5e-9c1b-1d0a6c3e2b11"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def vm(power="running", heartbeat="ok", raw=None, uuid=UUID, name="db01", domain_id=7):
    return model.Machine(kind=model.VM, platform="libvirt", name=name, uuid=uuid, host="kvm1",
                         power_state=power, power_state_raw=raw or power, heartbeat=heartbeat,
                         facts={"domain_id": domain_id if power == "running" else None})


SOURCES = {
    "libvirt": "plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: kvm1, uri: 'test:///default'}\n",
    "vmware": "plugin: virtops.unified.vmware\nhostname: vc1.example.com\nusername: u\npassword: p\n",
}


class Script:
    """A monitor whose one endpoint (of an inventory source of this platform) returns what the test sets."""

    def __init__(self, tmp_path, platform="libvirt", **cfg):
        inv = tmp_path / "inventory"
        inv.mkdir(exist_ok=True)
        (inv / ("lab.%s.yml" % platform)).write_text(SOURCES[platform])
        args = {"inventory": str(inv), "interval": 1, "failure_interval": 10,
                "min_uptime": 30, "audit_log": str(tmp_path / "audit.jsonl"),
                "lock_dir": str(tmp_path / "locks")}
        args.update(cfg)
        self.clock = Clock()
        self.monitor = hh.Monitor(hh.parse_args(args), clock=self.clock)
        self.platform = platform
        self.vms = [self.vm(), self.vm(uuid=OTHER, name="web01")]
        self.monitor.endpoints[0].read = lambda: model.Inventory(hosts=[], vms=list(self.vms))

    def vm(self, **kw):
        made = vm(**kw)
        if self.platform == "vmware":
            made.platform = "vmware"
            made.facts = {"boot_time": "2026-01-01T00:00:0%dZ" % kw.get("domain_id", 7)
                          if made.power_state == "running" else None}
        return made

    def set(self, **kw):
        self.vms[0] = self.vm(**kw)

    def poll(self, after=1.0):
        self.clock.now += after
        return [(e["virtops"]["type"], e["virtops"]["virt_name"]) for e in asyncio.run(self.monitor.poll())]

    def polls(self, seconds):
        out = []
        for _second in range(int(seconds)):
            out += self.poll()
        return out


def audit(tmp_path, state="restarted", uuid=UUID):
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    runbook.append_audit(str(tmp_path / "audit.jsonl"),
                         {"time": stamp, "state": state, "target": {"uuid": uuid}, "steps": [{"action": "x"}]})


def test_heartbeat_lost_for_failure_interval_is_hung_once_per_episode(tmp_path):
    s = Script(tmp_path)
    assert s.poll() == []
    s.set(heartbeat="lost")
    assert s.poll() == [("vm_heartbeat_lost", "db01")]
    assert s.polls(8) == []
    assert s.polls(2) == [("vm_hung", "db01")]
    assert s.polls(30) == []  # still lost: once per episode
    s.set()
    assert s.poll() == []


def test_never_hung_within_min_uptime_of_a_power_on(tmp_path):
    s = Script(tmp_path)
    s.poll()
    s.set(power="stopped", heartbeat="unknown")
    s.poll()
    s.set(heartbeat="lost")  # booting: no agent yet; seen powering on at the next poll
    events = s.polls(30)
    assert ("vm_hung", "db01") not in events
    assert s.polls(1) == [("vm_hung", "db01")]


def test_a_power_cycle_between_two_polls_counts_as_a_power_on(tmp_path):
    s = Script(tmp_path, failure_interval=2, min_uptime=20)
    s.poll()
    s.set(heartbeat="lost")
    assert ("vm_hung", "db01") in s.polls(3)
    s.set(heartbeat="lost", domain_id=8)  # restarted by the runbook; its agent not up yet
    events = s.polls(19)
    assert ("vm_hung", "db01") not in events  # min_uptime from the new boot
    s.set(domain_id=8)
    assert s.polls(5) == []


def test_an_unknown_heartbeat_neither_ends_nor_starts_an_episode(tmp_path):
    s = Script(tmp_path, failure_interval=5, min_uptime=0)
    s.poll()
    s.set(heartbeat="lost")
    assert s.polls(2) == [("vm_heartbeat_lost", "db01")]
    s.set(heartbeat="unknown")
    assert s.polls(5) == []  # no verdict while nobody answers either way
    s.set(heartbeat="lost")
    assert s.poll() == [("vm_hung", "db01")]  # lost for 8 s in all, no second vm_heartbeat_lost


def test_max_resets_then_one_limit_event_and_nothing_more(tmp_path):
    s = Script(tmp_path, failure_interval=2, min_uptime=0, max_resets=3)
    s.poll()
    hung = []
    for _episode in range(5):  # five episodes: lost, then back
        s.set(heartbeat="lost")
        hung += [e for e in s.polls(4) if e[0] != "vm_heartbeat_lost"]
        s.set()
        s.poll()
    assert hung == [("vm_hung", "db01")] * 3 + [("vm_reset_limit_reached", "db01")] * 2


def test_restarts_in_the_audit_log_count_towards_max_resets(tmp_path):
    s = Script(tmp_path, failure_interval=2, min_uptime=0, max_resets=2)
    audit(tmp_path)
    audit(tmp_path, uuid=OTHER)
    audit(tmp_path, state="stopped")  # not a restart
    s.poll()
    s.set(heartbeat="lost")
    assert ("vm_hung", "db01") in s.polls(4)
    s.set()
    s.poll()
    audit(tmp_path)  # the runbook did restart it: 2 in the window now
    s.set(heartbeat="lost")
    assert ("vm_reset_limit_reached", "db01") in s.polls(4)


@pytest.mark.parametrize("raw, expected", [
    ("shutoff:destroyed", [("vm_down", "db01")]),
    ("shutoff:crashed", [("vm_down", "db01")]),
    ("shutoff:shutdown", []),  # the guest (or virsh shutdown) meant it
    ("shutoff:saved", []),
])
def test_vm_down_after_two_polls_unless_someone_meant_it(tmp_path, raw, expected):
    s = Script(tmp_path)
    s.poll()
    s.set(power="stopped", heartbeat="unknown", raw=raw)
    assert s.poll() == [("vm_power_changed", "db01")]
    assert s.poll() == expected
    assert s.polls(5) == []


def test_vm_down_is_not_reported_while_a_runbook_holds_the_lock_or_after_an_audited_stop(tmp_path):
    s = Script(tmp_path)
    s.poll()
    token, _path, _taken = runbook.acquire_lock(str(tmp_path / "locks"), UUID, {"runbook": "restart_vm"})
    s.set(power="stopped", raw="shutoff:destroyed")
    assert s.polls(3) == [("vm_power_changed", "db01")]
    runbook.release_lock(str(tmp_path / "locks"), UUID, token)
    s.set()
    s.poll()
    s.set(power="stopped", raw="shutoff:destroyed")
    audit(tmp_path, state="poweredoff")
    assert s.polls(3) == [("vm_power_changed", "db01")]


def test_vm_down_on_vsphere_says_the_cause_is_unknown(tmp_path):
    s = Script(tmp_path, platform="vmware")
    s.poll()
    s.set(power="stopped", raw="poweredOff")
    s.poll()
    s.clock.now += 1
    events = asyncio.run(s.monitor.poll())
    assert [e["virtops"]["cause"] for e in events] == ["unknown"]
    assert events[0]["meta"]["hosts"] == "db01" and events[0]["virtops"]["resets_in_window"] == 0


@pytest.mark.parametrize("args, words", [
    ({"max_resets": 0}, "max_resets must be >= 1"),
    ({"reset_window": "a day"}, "reset_window must be a number"),
])
def test_bad_limits_fail_at_start(args, words):
    with pytest.raises(ValueError, match=words):
        hh.parse_args(dict({"platform": "libvirt", "uri": "test:///default"}, **args))


def test_a_held_back_repeat_is_logged_once_per_episode(tmp_path, caplog):
    """The positive sign the tests wait for instead of sleeping: the source says, once, that
    it saw the repeat and did not send it again."""
    caplog.set_level("INFO", logger="virtops.hypervisor_health")
    script = Script(tmp_path, min_uptime=0)
    script.poll()
    script.set(heartbeat="lost")
    assert ("vm_hung", "db01") in script.polls(12)
    script.polls(5)
    held = [r.getMessage() for r in caplog.records if "vm_hung already sent in this episode" in r.getMessage()]
    assert held == ["hypervisor_health: db01: heartbeat still lost; vm_hung already sent in this episode, not again"]
    script.set(power="stopped", raw="shutoff:destroyed")
    script.polls(4)
    script.polls(4)
    held = [r.getMessage() for r in caplog.records if "already reported in this episode" in r.getMessage()]
    assert held == ["hypervisor_health: db01: still shutoff:destroyed; already reported in this episode, not again"]


@pytest.mark.parametrize("platform, marker", [("libvirt", "domain id"), ("vmware", "boot time")])
def test_each_platforms_power_cycle_marker_restarts_min_uptime(tmp_path, platform, marker):
    """The driver says what changes at each start (libvirt: the domain id, vSphere: runtime.bootTime)."""
    s = Script(tmp_path, platform=platform, failure_interval=2, min_uptime=20)
    s.poll()
    s.set(heartbeat="lost", domain_id=8)  # a new start between two polls, heartbeat not back yet
    assert ("vm_hung", "db01") not in s.polls(19), marker
    assert ("vm_hung", "db01") in s.polls(3), marker


# --- the estate: an inventory directory -----------------------------------------------------------
def node_file(path, names):
    """A libvirt test:/// node: one fake hypervisor, these domains running (uuids derived from the names)."""
    doms = "".join(
        '<domain type="test"><name>%s</name><uuid>%s</uuid><memory>65536</memory>'
        "<os><type>hvm</type></os></domain>" % (name, uuidlib.uuid5(uuidlib.NAMESPACE_URL, str(path) + name))
        for name in names)
    path.write_text("<node>%s</node>" % doms)
    return "test://%s" % path


def test_an_inventory_directory_gives_every_endpoint_of_every_platform_and_skips_the_rest(tmp_path, caplog):
    caplog.set_level("INFO", logger="virtops.hypervisor_health")
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "site").mkdir()
    (inv / "prod.vmware.yml").write_text("plugin: virtops.unified.vmware\nhostname: vc1.example.com\n"
                                         "username: ops\npassword: pw-in-file\nport: 8443\n")
    (inv / "kvm.libvirt.yml").write_text(
        "plugin: virtops.unified.libvirt\nconnect_timeout: 7\nhypervisors:\n"
        "  - {name: kvm01, uri: 'qemu+ssh://root@kvm01/system', cluster: rack1}\n"
        "  - {name: kvm02, uri: 'qemu+tcp://admin:uri-pw@kvm02/system'}\n")
    (inv / "site" / "edge.libvirt.yaml").write_text(
        "plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: edge1, uri: 'qemu+ssh://edge1/system'}\n")
    (inv / "r-copy.libvirt.yml").write_text(  # the same hypervisor again: watched once
        "plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: kvm01, uri: 'qemu+ssh://root@kvm01/system'}\n")
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    (inv / "other.yml").write_text("plugin: community.vmware.vmware_vm_inventory\nhostname: vc9\n")
    (inv / "future.hyperv.yml").write_text("plugin: virtops.unified.hyperv\nhostname: hv1\n")
    (inv / "misnamed.yml").write_text("plugin: virtops.unified.vmware\nhostname: vc2\n")
    (inv / "static.ini").write_text("[web]\nweb01\n")
    (inv / "group_vars" / "all.yml").write_text("plugin: virtops.unified.vmware\nhostname: vc3\n")
    cfg = hh.parse_args({"inventory": str(inv), "connect_timeout": 11})
    monitor = hh.Monitor(cfg)
    got = [(ep.platform.name, ep.source, ep.id, ep.connect_timeout, ep.public()) for ep in monitor.endpoints]
    assert got == [
        ("libvirt", "kvm.libvirt.yml", "kvm01", 7,
         {"platform": "libvirt", "uri": "qemu+ssh://root@kvm01/system", "hypervisor_name": "kvm01"}),
        ("libvirt", "kvm.libvirt.yml", "kvm02", 7,
         {"platform": "libvirt", "uri": "qemu+tcp://admin:********@kvm02/system", "hypervisor_name": "kvm02"}),
        ("vmware", "prod.vmware.yml", "vc1.example.com", 11,
         {"platform": "vmware", "hostname": "vc1.example.com", "port": 8443, "validate_certs": True}),
        ("libvirt", os.path.join("site", "edge.libvirt.yaml"), "edge1", 11,
         {"platform": "libvirt", "uri": "qemu+ssh://edge1/system", "hypervisor_name": "edge1"}),
    ]
    # the connection itself has what the file says, password included
    assert monitor.endpoints[2].options["password"] == "pw-in-file" and monitor.endpoints[2].options["username"] == "ops"
    assert cfg["sources"] == ["kvm.libvirt.yml", "prod.vmware.yml", "r-copy.libvirt.yml",
                              os.path.join("site", "edge.libvirt.yaml")]
    log = caplog.text
    for name, why in (("hosts.yml", "not a virtops.unified inventory source (plugin: none)"),
                      ("other.yml", "not a virtops.unified inventory source (plugin: community.vmware"),
                      ("future.hyperv.yml", "virtops.unified.hyperv is not a platform of this collection"),
                      ("misnamed.yml", "the virtops.unified.vmware inventory plugin reads only files named "
                                       "*vmware.yml or *vmware.yaml"),
                      ("static.ini", "not a *.yml / *.yaml file")):
        assert "%s skipped: %s" % (name, why) in log, (name, log)
    assert "r-copy.libvirt.yml: an endpoint of libvirt is also in kvm.libvirt.yml: watched once" in log
    assert "all.yml" not in log  # group_vars is not a source, as for ansible-inventory
    assert "pw-in-file" not in log and "uri-pw" not in log


def test_the_platforms_environment_fallbacks_fill_what_a_source_leaves_out(tmp_path, monkeypatch):
    monkeypatch.setenv("VMWARE_USER", "env-user")
    monkeypatch.setenv("VMWARE_PASSWORD", "env-pw")
    monkeypatch.setenv("VMWARE_VALIDATE_CERTS", "false")
    (tmp_path / "vc.vmware.yml").write_text("plugin: virtops.unified.vmware\nhostname: vc1\n")
    (ep,) = hh.parse_args({"inventory": str(tmp_path / "vc.vmware.yml")})["endpoints"]
    assert ep["options"] == {"hostname": "vc1", "username": "env-user", "password": "env-pw", "port": 443,
                             "validate_certs": False}


def test_inventory_names_follow_the_inventory_plugins_across_sources(tmp_path):
    """The same names ansible-inventory gives: a VM name repeated in a source, or taken by a source
    read before, becomes <name>_<host> (real libvirt test:/// hypervisors, real ansible-inventory)."""
    inv = tmp_path / "inventory"
    inv.mkdir()
    n1 = node_file(tmp_path / "n1.xml", ["db", "web"])
    n2 = node_file(tmp_path / "n2.xml", ["db", "app"])
    n3 = node_file(tmp_path / "n3.xml", ["app"])
    (inv / "a.libvirt.yml").write_text("plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: h1, uri: '%s'}\n" % n1)
    (inv / "b.libvirt.yml").write_text("plugin: virtops.unified.libvirt\nhypervisors:\n"
                                       "  - {name: h2, uri: '%s'}\n  - {name: h3, uri: '%s'}\n" % (n2, n3))
    monitor = hh.Monitor(hh.parse_args({"inventory": str(inv)}))
    try:
        assert asyncio.run(monitor.poll()) == []
    finally:
        monitor.close()
    ours = {vm.uuid: monitor._name(ep, vm) for ep in monitor.endpoints for vm in ep.seen_vms}  # pylint: disable=protected-access
    env = dict(os.environ, ANSIBLE_INVENTORY_CACHE="false")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", str(inv),
                           "--list"], capture_output=True, text=True, env=env, check=True)
    hostvars = json.loads(proc.stdout)["_meta"]["hostvars"]

    def plain(value):  # ansible-core 2.19 marks platform values {"__ansible_unsafe": value}
        return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value

    theirs = {plain(hv["virt_uuid"]): name for name, hv in hostvars.items() if plain(hv["virt_kind"]) == "vm"}
    assert ours == theirs
    assert sorted(ours.values()) == ["app_h2", "app_h3", "db", "db_h2", "web"]


def vault_text(secret, password):
    from ansible.parsing.vault import VaultLib, VaultSecret  # pylint: disable=import-outside-toplevel
    cipher = VaultLib([("default", VaultSecret(password.encode()))]).encrypt(secret).decode()
    return "!vault |\n" + "".join("  %s\n" % line for line in cipher.splitlines())


def vault_file(text, password):
    from ansible.parsing.vault import VaultLib, VaultSecret  # pylint: disable=import-outside-toplevel
    return VaultLib([("default", VaultSecret(password.encode()))]).encrypt(text).decode()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


VAULTED = "Vaulted-pw-3e1c9a"  # distinctive: searched for in everything the source says
URI_PW = "Uri-pw-77b2d0"
VAULT_PW = "vault-pass-5d81"


def test_a_vaulted_password_decrypts_and_no_secret_reaches_the_logs_or_the_events(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # every logger: the drivers' libraries too
    (tmp_path / "vault-pass").write_text(VAULT_PW + "\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(tmp_path / "vault-pass"))
    inv = tmp_path / "inventory"
    inv.mkdir()
    # nothing listens on these ports: each endpoint is unreachable, its error is reported
    (inv / "vc.vmware.yml").write_text(
        "plugin: virtops.unified.vmware\nhostname: 127.0.0.1\nport: %d\nvalidate_certs: false\n"
        "username: operator\npassword: %s" % (free_port(), vault_text(VAULTED, VAULT_PW)))
    # a source vaulted as a whole, a password in its URI
    (inv / "kvm.libvirt.yml").write_text(vault_file(
        "plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: kvm9, uri: 'qemu+tcp://admin:%s@127.0.0.1:%d/system'}\n"
        % (URI_PW, free_port()), VAULT_PW))
    cfg = hh.parse_args({"inventory": str(inv), "interval": 0.2, "connect_timeout": 5})
    (vc,) = [ep for ep in cfg["endpoints"] if ep["platform"].name == "vmware"]
    assert vc["options"]["password"] == VAULTED and vc["options"]["password"].__class__ is str  # decrypted, plain
    (kvm,) = [ep for ep in cfg["endpoints"] if ep["platform"].name == "libvirt"]
    assert URI_PW in kvm["options"]["uri"]

    async def scenario():
        queue = asyncio.Queue()
        task = asyncio.create_task(hh.main(queue, {"inventory": str(inv), "interval": 0.2, "connect_timeout": 5}))
        events = []
        try:
            while len(events) < 2:
                events.append(await asyncio.wait_for(queue.get(), 30))
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        return events

    events = asyncio.run(scenario())
    assert sorted((e["virtops"]["type"], e["virtops"]["virt_endpoint_id"], e["virtops"]["virt_inventory_source"])
                  for e in events) == [("endpoint_unreachable", "127.0.0.1", "vc.vmware.yml"),
                                       ("endpoint_unreachable", "kvm9", "kvm.libvirt.yml")], events
    said = json.dumps(events) + repr(events) + caplog.text + "".join(
        str(r.args) + str(r.exc_info) for r in caplog.records)
    assert "endpoint kvm9 (kvm.libvirt.yml) unreachable" in caplog.text
    for secret in (VAULTED, URI_PW, VAULT_PW):
        assert secret not in said, secret
    assert "admin:********@127.0.0.1" in json.dumps(events)


def test_a_vaulted_value_without_its_password_stops_the_source_at_start(tmp_path, monkeypatch):
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.setenv("ANSIBLE_VAULT_IDENTITY_LIST", "")
    source = tmp_path / "vc.vmware.yml"
    source.write_text("plugin: virtops.unified.vmware\nhostname: vc1\npassword: %s"
                      % vault_text(VAULTED, "another-vault-password"))
    with pytest.raises(ValueError) as err:
        hh.parse_args({"inventory": str(source)})
    assert "vc.vmware.yml: password cannot be read" in str(err.value) and VAULTED not in str(err.value)


@pytest.mark.parametrize("args, words", [
    ({}, "inventory is required"),
    ({"inventory": "/nonexistent/inventory"}, "inventory /nonexistent/inventory does not exist"),
    ({"inventory": "INV", "hostname": "vc1"}, "give inventory (the estate) or platform with its connection "
                                              "options, not both (hostname)"),
    ({"inventory": "INV", "interval": "soon"}, "interval must be a number"),
    ({"inventory": "INV", "failure_intervall": 5}, "unknown argument(s) failure_intervall"),
    ({"inventory": "EMPTY"}, "no endpoint to watch in"),
    ({"inventory": "BROKEN"}, "inventory source broken.vmware.yml cannot be read"),
    ({"platform": "hyperv"}, "platform must be one of %s" % ", ".join(registry.platforms())),
    ({"platform": "vmware", "hostname": "h", "uri": "qemu:///system"}, "uri: not an option of platform vmware"),
    ({"platform": "libvirt", "uri": "test:///default", "hostname": "vc"}, "hostname: not an option of platform libvirt"),
    ({"platform": "libvirt", "hypervisors": [{"name": "kvm1"}]}, "each hypervisors entry needs uri"),
])
def test_misconfigured_arguments_fail_at_start(tmp_path, monkeypatch, args, words):
    for key in ("VMWARE_HOST", "LIBVIRT_DEFAULT_URI"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "lab.libvirt.yml").write_text(SOURCES["libvirt"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "hosts.yml").write_text("all: {}\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "broken.vmware.yml").write_text("plugin: virtops.unified.vmware\npassword: 'x\n  - [")
    places = {"INV": str(tmp_path / "lab.libvirt.yml"), "EMPTY": str(tmp_path / "empty"),
              "BROKEN": str(tmp_path / "broken")}
    args = {k: places.get(v, v) if isinstance(v, str) else v for k, v in args.items()}
    with pytest.raises(ValueError) as err:
        asyncio.run(hh.main(asyncio.Queue(), args))
    assert words in str(err.value)


def test_explicit_platform_arguments_are_one_inline_source(monkeypatch):
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    cfg = hh.parse_args({"platform": "libvirt", "hypervisor_name": "kvm1"})
    assert [(ep["source"], ep["options"]) for ep in cfg["endpoints"]] == [
        ("arguments", {"uri": "test:///default", "hypervisor_name": "kvm1"})]
    two = [{"name": "a", "uri": "test:///default"}, {"name": "b", "uri": "test:///default"}]
    cfg = hh.parse_args({"platform": "libvirt", "hypervisors": two})
    assert [ep["options"]["hypervisor_name"] for ep in cfg["endpoints"]] == ["a", "b"]


def test_an_endpoint_that_does_not_answer_delays_no_other(tmp_path, monkeypatch):
    """Each endpoint on its own clock: while one endpoint's read hangs (past connect_timeout: reported
    unreachable once, and no second read piles up on it), the other's changes are sent at once."""
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "a.libvirt.yml").write_text(SOURCES["libvirt"])
    (inv / "b.vmware.yml").write_text(SOURCES["vmware"])
    release = threading.Event()
    reads = Counter()
    vms = {"libvirt": [vm()], "vmware": [vm(uuid=OTHER, name="web01")]}
    vms["vmware"][0].platform = "vmware"

    def read(self):
        reads[self.platform.name] += 1
        if self.platform.name == "vmware" and reads["vmware"] > 1:
            release.wait(30)  # the vCenter stops answering after its first read
        return model.Inventory(hosts=[], vms=list(vms[self.platform.name]))

    monkeypatch.setattr(hh.Endpoint, "read", read)

    async def scenario():
        queue = asyncio.Queue()
        task = asyncio.create_task(hh.main(queue, {"inventory": str(inv), "interval": 0.2, "connect_timeout": 2,
                                                   "failure_interval": 0, "min_uptime": 0}))
        got = []

        async def until(kind, within):
            deadline = time.monotonic() + within
            while True:
                event = await asyncio.wait_for(queue.get(), max(0.01, deadline - time.monotonic()))
                got.append((time.monotonic(), event["virtops"]["type"], event["virtops"]["virt_endpoint_id"]))
                if event["virtops"]["type"] == kind:
                    return time.monotonic()

        try:
            await asyncio.sleep(0.5)  # both endpoints read once: the baseline
            stuck_at = time.monotonic()
            vms["libvirt"][0] = vm(heartbeat="lost")
            lost_at = await until("vm_hung", 5)
            unreachable_at = await until("endpoint_unreachable", 10)
            await asyncio.sleep(1)
            stuck_reads = reads["vmware"]
            release.set()
            back_at = await until("endpoint_back", 10)
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        return got, stuck_at, lost_at, unreachable_at, stuck_reads, back_at

    got, stuck_at, lost_at, unreachable_at, stuck_reads, back_at = asyncio.run(scenario())
    assert [(kind, ep) for _at, kind, ep in got] == [
        ("vm_heartbeat_lost", "kvm1"), ("vm_hung", "kvm1"), ("endpoint_unreachable", "vc1.example.com"),
        ("endpoint_back", "vc1.example.com")], got
    assert lost_at - stuck_at < 1.0  # not held up by the silent vCenter
    assert 2.0 <= unreachable_at - stuck_at < 4.5  # connect_timeout (+ the driver's grace)
    assert stuck_reads == 2  # the hung read was not started again while it hung
    assert back_at > unreachable_at
