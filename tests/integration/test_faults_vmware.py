"""VMware faults that used to hang or hide: a vCenter that accepts connections
and never answers, a vCenter that cannot be read at all, and a vCenter or an
ESXi host that fails in the middle of a power action.

End states are read independently of the collection: the peer's control API
(/state, /freeze: the SOAP requests it holds), pyVmomi over the peer's SOAP
port, what a silent TCP server of the test's own saw, and the audit log.
Timing bounds are taken against a baseline of the same program against a
closed port, so they hold on a slow machine too.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from helpers import BIN, ROOT, SESSION_DIR, _plain, adhoc, env
from vcsim_peer import PASSWORD

sys.path.insert(0, os.path.join(ROOT, "extensions", "eda", "plugins", "event_source"))
import hypervisor_health as hh  # noqa: E402 pylint: disable=wrong-import-position,import-error

TIMEOUT = 2  # connect_timeout of every test here, seconds
MARGIN = 2.5  # allowed on top of it, beyond the program's own start-up
POWER = "virtops.unified.vm_power"
INFO = "virtops.unified.vm_info"


@pytest.fixture(scope="module")
def sim(vcsim):
    # hosts DC0_C0_H0..1 (cluster DC0_C0) and DC0_H0; VMs DC0_C0_RP0_VM0..1, DC0_H0_VM0..1
    return vcsim("-cluster", "1", "-cluster-host", "2", "-host", "1", "-vm", "2")


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte; records,
    for each connection, when it was accepted and when the client hung up."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = []  # [accepted, closed or None]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            entry = [time.monotonic(), None]
            with self.lock:
                self.connections.append(entry)
            threading.Thread(target=self._drain, args=(conn, entry), daemon=True).start()

    def _drain(self, conn, entry):
        with conn:
            try:
                while conn.recv(65536):  # the client's TLS hello, read and left unanswered
                    pass
            except OSError:
                pass
        entry[1] = time.monotonic()

    def seen(self):
        with self.lock:
            return [list(e) for e in self.connections]

    def close(self):
        self.sock.close()


@pytest.fixture
def silent(vcsim):  # pylint: disable=unused-argument
    """A silent server; `vcsim` sets VMWARE_USER / VMWARE_PASSWORD for the subprocesses."""
    server = SilentServer()
    yield server
    server.close()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(argv, environ=None):
    e = env()
    e.update(environ or {})
    begun = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=e, capture_output=True, text=True, timeout=120, check=False)
    return proc, time.monotonic() - begun


def inventory_file(path, port, extra=""):
    path.write_text("plugin: virtops.unified.vmware\nhostname: 127.0.0.1\nport: %d\nvalidate_certs: false\n"
                    "connect_timeout: %d\n%s" % (port, TIMEOUT, extra))
    return str(path)


def audit_outcomes(uuid):
    """The outcome lines of the audit log for one VM."""
    path = os.environ.get("VIRTOPS_AUDIT_LOG") or os.path.join(SESSION_DIR, "audit.jsonl")
    with open(path, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    return [r for r in records if (r.get("target") or {}).get("uuid") == uuid and r.get("phase", "outcome") == "outcome"]


def fresh(peer, uuid):
    """A VM that is up, its guest's Tools running (not one just powered on: see vcsim_peer)."""
    peer.vm_do(uuid, "ignore_shutdown", on=False)
    peer.vm_do(uuid, "shutdown_delay", seconds=0)
    peer.vm_do(uuid, "task_delay", seconds=0)
    if peer.vm_state(uuid)["powerState"] != "poweredOn":
        peer.vm_do(uuid, "power", state="poweredOn")
    peer.vm_do(uuid, "tools", running=True)
    return peer.wait_power(uuid, "poweredOn")


def wait_until(what, predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within %ss: %s" % (timeout, what))
        time.sleep(0.05)


# --- 1. a vCenter that accepts and never answers ---------------------------------------
def test_silent_vcenter_inventory_returns_within_the_timeout(silent, tmp_path):
    """ansible-inventory used to hang for ever (pyVmomi's version probe has no timeout)."""
    baseline, base_time = timed([os.path.join(BIN, "ansible-inventory"), "-i",
                                 inventory_file(tmp_path / "down.vmware.yml", closed_port()), "--list"])
    assert baseline.returncode == 0, baseline.stderr
    inv = inventory_file(tmp_path / "silent.vmware.yml", silent.port)
    proc, took = timed([os.path.join(BIN, "ansible-inventory"), "-i", inv, "--list"])
    assert proc.returncode == 0, proc.stderr
    assert took - base_time < TIMEOUT + MARGIN, (took, base_time)
    label = "127.0.0.1:%d" % silent.port
    text = " ".join(proc.stderr.split())
    # a loopback vCenter (an SSH tunnel) is named with its port: "127.0.0.1" would be Ansible's localhost
    name = "127.0.0.1_%d" % silent.port
    assert "vCenter %s is listed as unreachable" % name in text and label in text
    assert "no answer within %ds" % TIMEOUT in text
    endpoint = _plain(json.loads(proc.stdout))["_meta"]["hostvars"][name]
    assert endpoint["virt_connection_state"] == "unreachable" and endpoint["virt_error_type"] == "Unreachable"
    # the server's side: the client came, waited about connect_timeout, then hung up
    seen = silent.seen()
    assert seen, "the inventory plugin never reached the silent server"
    for accepted, closed in seen:
        assert closed is not None, "a connection was left open"
        assert TIMEOUT - 0.3 <= closed - accepted < TIMEOUT + MARGIN, closed - accepted


def test_silent_vcenter_module_fails_within_the_timeout_naming_it(silent):
    args = {"platform": "vmware", "hostname": "127.0.0.1", "validate_certs": False, "connect_timeout": TIMEOUT}
    begun = time.monotonic()
    rc, res = adhoc("localhost,", "localhost", INFO, dict(args, port=closed_port()))
    base_time = time.monotonic() - begun
    assert rc != 0 and res["localhost"]["error_type"] == "Unreachable", res
    begun = time.monotonic()
    rc, res = adhoc("localhost,", "localhost", INFO, dict(args, port=silent.port))
    took = time.monotonic() - begun
    out = res["localhost"]
    assert rc != 0 and out["error_type"] == "Unreachable", out
    assert "127.0.0.1:%d" % silent.port in out["msg"] and "no answer within %ds" % TIMEOUT in out["msg"], out
    assert took - base_time < TIMEOUT + MARGIN, (took, base_time)
    (accepted, closed), = silent.seen()
    assert closed is not None and TIMEOUT - 0.3 <= closed - accepted < TIMEOUT + MARGIN


def test_event_source_reports_a_frozen_vcenter_unreachable_and_back(sim):
    """The event source's poll of a vCenter that goes silent on an open session."""
    cfg = hh.parse_args({"platform": "vmware", "hostname": "127.0.0.1", "port": sim.port, "username": sim.username,
                         "password": sim.password, "validate_certs": False, "connect_timeout": TIMEOUT, "interval": 1})
    monitor = hh.Monitor(cfg)
    try:
        assert asyncio.run(monitor.poll()) == []  # first poll: the baseline, no events
        sim.freeze(60)
        try:
            begun = time.monotonic()
            events = asyncio.run(monitor.poll())
            took = time.monotonic() - begun
            assert [e["virtops"]["type"] for e in events] == ["endpoint_unreachable"], events
            assert "127.0.0.1:%d" % sim.port in events[0]["virtops"]["reason"]
            assert events[0]["virtops"]["error_type"] == "Unreachable"
            assert TIMEOUT - 0.3 <= took < TIMEOUT + MARGIN, took
            # the peer's side: the request it held was given up by the client and dropped
            wait_until("the peer holds no request", lambda: sim.frozen()["blocked"] == 0, 5)
            assert sim.frozen()["frozen"] is True
        finally:
            sim.freeze(0)
        events = asyncio.run(monitor.poll())
        assert [e["virtops"]["type"] for e in events] == ["endpoint_back"], events
    finally:
        monitor.close()


# --- 2. a vCenter that cannot be read keeps its last-known hosts and VMs ----------------------
def test_unreadable_vcenter_lists_its_last_known_hosts_and_vms_stale(sim, tmp_path):
    known_dir = tmp_path / "last_known"
    inv = inventory_file(tmp_path / "prod.vmware.yml", sim.port, "last_known_dir: %s\n" % known_dir)
    argv = [os.path.join(BIN, "ansible-inventory"), "-i", inv, "--list"]
    before = sim.state()  # the truth at the first read, from the control API
    first, _took = timed(argv)
    assert first.returncode == 0, first.stderr
    live = _plain(json.loads(first.stdout))["_meta"]["hostvars"]
    name = "127.0.0.1_%d" % sim.port  # the vCenter's record (with the port: 127.0.0.1 is Ansible's localhost)
    assert name not in live and not any(v.get("virt_stale") for v in live.values())

    def check_stale(proc, error_type, words):
        assert proc.returncode == 0, proc.stderr
        data = _plain(json.loads(proc.stdout))
        hostvars = data["_meta"]["hostvars"]
        text = " ".join(proc.stderr.split())
        assert "vCenter %s is listed as unreachable" % name in text and words in text, text
        endpoint = hostvars[name]
        assert (endpoint["virt_kind"], endpoint["virt_platform"], endpoint["virt_connection_state"]) == \
            ("endpoint", "vmware", "unreachable")
        assert endpoint["virt_error_type"] == error_type and words in endpoint["virt_error"]
        assert data["virt_endpoints"]["hosts"] == [name]
        assert name not in data["virt_hypervisors"]["hosts"]
        last_seen = endpoint["virt_last_seen"]
        since = endpoint["virt_unreachable_since"]
        assert last_seen and since >= last_seen
        vms = {v["virt_uuid"]: v for v in hostvars.values() if v["virt_kind"] == "vm"}
        assert {u: v["virt_host"] for u, v in vms.items()} == {v["instanceUuid"]: v["host"] for v in before["vms"]}
        for vm in vms.values():
            assert vm["virt_stale"] is True and vm["virt_last_seen"] == last_seen, vm
            assert vm["virt_power_state"] == "unknown" and vm["virt_power_state_raw"].startswith("last seen ")
            assert (vm["virt_unreachable_endpoint"], vm["virt_unreachable_since"]) == (name, since)
        hosts = {h: v for h, v in hostvars.items() if v["virt_kind"] == "hypervisor"}
        assert set(hosts) == {h["name"] for h in before["hosts"]}
        for host in hosts.values():
            assert host["virt_stale"] is True and host["virt_connection_state"] == "unreachable"
            assert host["virt_last_seen"] == last_seen
        for host in before["hosts"]:  # the graph still reads host -> VMs
            assert sorted(data.get("virt_host_%s" % host["name"], {}).get("hosts", [])) == \
                sorted(v["name"] for v in before["vms"] if v["host"] == host["name"])
        assert "%s: listing its %d host(s) and %d VM(s) as last seen at %s" % (
            name, len(before["hosts"]), len(before["vms"]), last_seen) in text
        return since

    # vCenter stops answering (accepts, then silence): not an empty inventory, and no hang
    target = before["vms"][0]
    sim.freeze(60)
    try:
        frozen, took = timed(argv)
        # a runbook aimed at one of its VMs says why it cannot act, not "not found"
        restart = timed([os.path.join(BIN, "ansible-playbook"), "-i", inv, os.path.join(ROOT, "playbooks/restart_vm.yml"),
                         "-e", json.dumps({"target": target["name"]})])[0]
    finally:
        sim.freeze(0)
    since = check_stale(frozen, "Unreachable", "no answer within %ds" % TIMEOUT)
    assert took < 30, took
    assert restart.returncode != 0
    assert "endpoint %s unreachable since %s" % (name, since) in restart.stdout, restart.stdout[-2000:]
    assert "nothing was done" in restart.stdout and "not found" not in restart.stdout
    assert sim.vm_state(target["instanceUuid"])["powerState"] == target["powerState"]
    # a refused login (a password changed under us): listed the same way, and says so
    refused, _took = timed(argv, {"VMWARE_PASSWORD": "Wr0ng-%d" % os.getpid()})
    assert check_stale(refused, "AuthFailed", "login refused") == since  # the same outage
    # and when vCenter answers again, everything is live again
    back, _took = timed(argv)
    hostvars = _plain(json.loads(back.stdout))["_meta"]["hostvars"]
    assert name not in hostvars and not any(v.get("virt_stale") for v in hostvars.values())
    assert {v["virt_uuid"] for v in hostvars.values() if v["virt_kind"] == "vm"} == \
        {v["instanceUuid"] for v in sim.state()["vms"]}
    # no password anywhere: output, warnings, last-known files
    for proc in (first, frozen, refused, back):
        assert PASSWORD not in proc.stdout + proc.stderr
    files = [p for p in known_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert PASSWORD not in path.read_text(errors="replace"), path


# --- 3. failures in the middle of a power action ----------------------------------------------
def start_power(peer, name, **args):
    """vm_power on the VM's inventory host, in the background; returns (process, started)."""
    argv = [os.path.join(BIN, "ansible"), "-i", peer.inventory_path, name, "-m", POWER, "-a", json.dumps(args)]
    e = env()
    e.update(ANSIBLE_STDOUT_CALLBACK="oneline", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    proc = subprocess.Popen(argv, cwd=ROOT, env=e, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stderr=subprocess.PIPE, text=True)
    return proc, time.monotonic()


def power_result(proc, name):
    stdout, stderr = proc.communicate(timeout=120)
    for line in stdout.splitlines():
        if line.startswith(name + " | ") and " => {" in line:
            return proc.returncode, json.loads(line.split(" => ", 1)[1])
    raise AssertionError("no result for %s:\n%s\n%s" % (name, stdout, stderr))


def uuid_of(peer, name):
    (uuid,) = [v["instanceUuid"] for v in peer.state()["vms"] if v["name"] == name]
    return uuid


def check_audit(uuid, name, host, before, elapsed_at_least):
    """The outcome line of the failed run names the VM, its host, its state before, and how long it ran."""
    lines = audit_outcomes(uuid)
    assert lines, "no audit line for %s" % uuid
    line = lines[-1]
    assert line["result"].startswith("failed"), line
    assert line["target"]["name"] == name, line
    assert line["target"]["host"] == host, line
    assert line["before"] == before, line
    assert isinstance(line["elapsed"], (int, float)) and line["elapsed"] >= elapsed_at_least, line


def test_vcenter_frozen_mid_restart_fails_in_bounded_time(sim):
    """The guest shut down; then vCenter went silent: the run stops with an error naming it."""
    name = "DC0_C0_RP0_VM0"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    host = sim.vm_state(uuid)["host"]
    sim.vm_do(uuid, "shutdown_delay", seconds=2)  # the guest takes 2 s to stop: the run polls meanwhile
    try:
        proc, started = start_power(sim, name, state="restarted", force=True, shutdown_timeout=30,
                                    connect_timeout=TIMEOUT)
        wait_until("the guest shutting down", lambda: sim.vm_state(uuid)["guestState"] == "shuttingDown", 30)
        sim.freeze(60)
        frozen_at = time.monotonic()
        rc, out = power_result(proc, name)
        took = time.monotonic() - frozen_at
        assert rc != 0 and out["error_type"] == "Unreachable", out
        assert "127.0.0.1:%d" % sim.port in out["msg"] and "no answer within %ds" % TIMEOUT in out["msg"], out
        assert took < TIMEOUT + MARGIN, took
        assert [a["action"] for a in out.get("actions", [])] == ["shutdown"], out
        # the peer's side: the run's request was given up, not left waiting; the guest did stop
        # (hosts go on while vCenter is silent), and nothing started it again
        wait_until("the peer holds no request", lambda: sim.frozen()["blocked"] == 0, 5)
        wait_until("the guest off", lambda: sim.vm_state(uuid)["powerState"] == "poweredOff", 10)
        sim.freeze(0)
        time.sleep(0.5)
        assert sim.vm(uuid).runtime.powerState == "poweredOff"  # pyVmomi, after the thaw
        check_audit(uuid, name, host, "running", TIMEOUT)
        assert time.monotonic() - started < 30
    finally:
        sim.freeze(0)
        fresh(sim, uuid)


def test_host_not_responding_mid_power_on_fails_with_the_host_named(sim):
    """The guest shut down; vCenter then lost the VM's host while the power-on task ran."""
    name = "DC0_C0_RP0_VM1"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    host = sim.vm_state(uuid)["host"]
    sim.vm_do(uuid, "shutdown_delay", seconds=0.5)
    sim.vm_do(uuid, "task_delay", seconds=2)  # power tasks run 2 s
    try:
        proc, started = start_power(sim, name, state="restarted", force=True, shutdown_timeout=30,
                                    connect_timeout=TIMEOUT)
        wait_until("the power-on task running", lambda: sim.vm_state(uuid)["runningTask"] == "PowerOnVM_Task", 30)
        sim.host_do(host, "connection", state="notResponding")
        rc, out = power_result(proc, name)
        assert rc != 0 and out["error_type"] == "StateConflict", out
        assert "HostNotReachable" in out["msg"] and "start %s" % name in out["msg"], out
        assert "%s is not connected to vCenter" % host in out["msg"], out
        assert "recover_host_failure.yml -e failed_host=%s" % host in out["msg"], out
        assert [a["action"] for a in out["actions"]] == ["shutdown", "start"], out
        assert out["actions"][0]["result"] == "ok"
        # independent reads: the VM stayed off, on its lost host
        vm = sim.vm_state(uuid)
        assert (vm["powerState"], vm["connectionState"], vm["host"], vm["runningTask"]) == \
            ("poweredOff", "disconnected", host, "")
        assert [h["connectionState"] for h in sim.state()["hosts"] if h["name"] == host] == ["notResponding"]
        assert sim.vm(uuid).runtime.powerState == "poweredOff"
        check_audit(uuid, name, host, "running", 2)
        assert time.monotonic() - started < 30
    finally:
        sim.host_do(host, "connection", state="connected")
        fresh(sim, uuid)


def test_a_power_task_that_never_finishes_fails_within_wait_timeout(sim):
    """vCenter can leave a task running (a host agent that hangs): vm_power must give
    up within its wait_timeout, say so, and not act again."""
    name = "DC0_H0_VM1"
    uuid = uuid_of(sim, name)
    fresh(sim, uuid)
    sim.vm_do(uuid, "task_delay", seconds=-1)  # power tasks never finish
    try:
        proc, started = start_power(sim, name, state="poweredoff", wait_timeout=1, connect_timeout=TIMEOUT)
        try:
            rc, out = power_result_within(proc, name, 1 + 4)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert rc is not None, "vm_power still waited 4s after its wait_timeout of 1s"
        assert rc != 0 and out["error_type"] == "Timeout", out
        assert time.monotonic() - started < 1 + 4
        # the peer's side: one power-off, still running there, the VM as it was
        assert [o["op"] for o in sim.operations(uuid)][-1:] == ["PowerOffVM_Task"]
        assert sim.vm_state(uuid)["runningTask"] == "PowerOffVM_Task"
    finally:
        sim.vm_do(uuid, "task_delay", seconds=0)


def power_result_within(proc, name, seconds):
    """power_result, or (None, {}) when the run has not ended within `seconds`."""
    try:
        stdout, _stderr = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None, {}
    for line in stdout.splitlines():
        if line.startswith(name + " | ") and " => {" in line:
            return proc.returncode, json.loads(line.split(" => ", 1)[1])
    return proc.returncode, {}
