"""The lab's Oracle VM part (lab/ovm_lab.py) on its peer, tests/peers/ovm (an
emulator of the Oracle VM Manager 3.4 REST API).

The part's functions are called directly (scripts/lab needs the collection's ovm
platform, which the driver registers; the one test through scripts/lab skips
without it). What the peer holds is read back with plain `requests` against the
REST API, verified against the lab's CA, a path independent of the part and of the
control API; the counters and faults are checked through the part's own `state`.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "lab"))

import ovm_lab  # noqa: E402 pylint: disable=wrong-import-position

from helpers import lab as lab_cli  # noqa: E402 pylint: disable=wrong-import-position

PART = ovm_lab.PART
JAPANESE = "ウェブ 01"
HOSTILE = 'db "primary" {{ x }} $(id)'
ESTATE = {
    "name": "ovm1", "platform": "ovm", "credentials": "inline",
    "username": "ovm-operator", "password": "Lab pw 7f3e",
    "clusters": [
        {"name": "prod pool", "hosts": [
            {"name": "ovs01", "vms": [
                {"name": "web01", "memory_mb": 2048, "cpus": 2},
                {"name": JAPANESE, "memory_mb": 512},
                {"name": HOSTILE, "cpus": 4},
                {"name": "app"},
                {"name": "hung01", "graceful": False},
                {"name": "stopped01", "power": "stopped"},
            ]},
            {"name": "ovs02", "vms": [
                {"name": "app", "uuid": "4211aaaa-1111-2222-3333-444455556666"},
                {"name": "mig01"},
                {"name": "susp01", "power": "suspended"},
            ]},
            {"name": "ovs03", "vms": [{"name": "iso01"}]},
            {"name": "ovs04", "vms": [{"name": "dead01"}, {"name": "dead02", "power": "stopped"}]},
        ]},
        {"name": "dev", "hosts": [
            {"name": "ovs-dev01", "state": "maintenance", "vms": [{"name": "dev01", "power": "stopped"}]},
        ]},
    ],
    "hosts": [{"name": "spare01"}],
}
VM_STATE = {"running": "RUNNING", "stopped": "STOPPED", "suspended": "SUSPENDED"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    PART.check(ESTATE)
    rec = PART.up(ESTATE, str(tmp_path_factory.mktemp("ovm1")))
    try:
        yield rec
    finally:
        PART.down(ESTATE, rec)


class Api:
    """Plain requests against the peer, as any REST client would talk to a Manager."""

    def __init__(self, rec, username=None, password=None):
        self.base = "https://%s:%d/ovm/core/wsapi/rest" % (rec["source"]["hostname"], rec["source"]["port"])
        self.session = requests.Session()
        self.ca = rec["source"]["ca_path"]  # per request: REQUESTS_CA_BUNDLE would override Session.verify
        self.session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
        creds = rec["credentials"]
        self.auth = (username or creds["username"], password or creds["password"])
        self.logged_in = False

    def call(self, method, path, **kwargs):
        if not self.logged_in:
            kwargs.setdefault("auth", self.auth)
        kwargs.setdefault("verify", self.ca)
        resp = self.session.request(method, self.base + "/" + path, timeout=kwargs.pop("timeout", 10), **kwargs)
        if resp.status_code == 200:
            self.logged_in = True
        return resp

    def get(self, path):
        resp = self.call("GET", path)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        return resp.json()

    def put(self, path, **kwargs):
        resp = self.call("PUT", path, **kwargs)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        return resp.json()

    def wait(self, job, timeout=15):
        deadline = time.monotonic() + timeout
        while not job["summaryDone"]:
            assert time.monotonic() < deadline, "job not done after %ss: %s" % (timeout, job)
            time.sleep(0.1)
            job = self.get("Job/%s" % job["id"]["value"])
        return job

    def vm(self, name, server=None):
        found = [v for v in self.get("Vm") if v["name"] == name
                 and (server is None or (v["serverId"] or {}).get("name") == server)]
        assert len(found) == 1, (name, found)
        return found[0]

    def server(self, name):
        return next(s for s in self.get("Server") if s["name"] == name)


def q(value):
    return urllib.parse.quote(value, safe="")


@pytest.fixture(scope="module")
def api(lab):
    return Api(lab)


def machines(rec):
    return {(m["name"], m["host"]): m for m in PART.state(ESTATE, rec)["machines"]}


def counters(rec):
    return {key: (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"]) for key, m in machines(rec).items()}


def control(rec, path):
    return requests.get(rec["control"] + path, timeout=10).json()


# --- TLS, authentication ---------------------------------------------------------------
def test_tls_is_verified_against_the_lab_ca(lab):
    url = "https://127.0.0.1:%d/ovm/core/wsapi/rest/Manager" % lab["source"]["port"]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=True, timeout=10, auth=("x", "y"))
    resp = requests.get(url, verify=lab["ca"], timeout=10, auth=tuple(lab["credentials"].values()))
    assert resp.status_code == 200
    assert lab["source"] == {"hostname": "127.0.0.1", "port": lab["source"]["port"], "ca_path": lab["ca"]}
    manager = resp.json()[0]
    assert manager["id"]["type"] == "com.oracle.ovm.mgr.ws.model.Manager"
    assert manager["managerRunState"] == "RUNNING" and manager["managerVersion"].startswith("3.4.")


def test_bad_or_no_credentials_are_refused_and_change_nothing(lab):
    before = counters(lab)
    requests.post(lab["control"] + "/requests/reset", timeout=10)
    wrong = Api(lab, password="not the password")
    vm_id = control(lab, "/state")["vms"][0]["id"]
    for resp in (wrong.call("PUT", "Vm/%s/stop" % vm_id), wrong.call("GET", "Vm")):
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert "401" in resp.text and "Set-Cookie" not in resp.headers
    bare = requests.get(wrong.base + "/Vm", verify=lab["ca"], timeout=10)
    assert bare.status_code == 401
    counts = control(lab, "/state")["requests"]
    assert counts["unauthorized"] == 3 and counts["logins"] == 0
    assert counters(lab) == before


def test_basic_once_then_the_session_cookie(lab):
    api = Api(lab)
    requests.post(lab["control"] + "/requests/reset", timeout=10)
    first = api.call("GET", "Manager")
    assert first.status_code == 200
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("JSESSIONID=") and "Path=/ovm" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    for _attempt in range(3):
        resp = api.session.get(api.base + "/Vm", verify=api.ca, timeout=10)  # no Authorization header: the cookie only
        assert resp.status_code == 200 and "Authorization" not in resp.request.headers
    other = requests.get(api.base + "/Vm", verify=lab["ca"], cookies={"JSESSIONID": "forged"}, timeout=10)
    assert other.status_code == 401
    counts = control(lab, "/state")["requests"]
    assert counts["logins"] == 1 and counts["total"] == 5 and counts["unauthorized"] == 1
    xml = api.session.get(api.base + "/Vm", headers={"Accept": "application/xml"}, verify=api.ca, timeout=10)
    assert xml.status_code == 406


# --- the model ----------------------------------------------------------------------------
def test_pools_servers_and_vms_join_by_id_objects_to_the_lab_file(api):
    pools = {p["id"]["value"]: p for p in api.get("ServerPool")}
    servers = {s["id"]["value"]: s for s in api.get("Server")}
    vms = api.get("Vm")
    expected = sorted((c["name"] if c else None, h["name"], vm["name"], VM_STATE[vm.get("power", "running")],
                       vm.get("memory_mb", 1024), vm.get("cpus", 1))
                      for c, h in ovm_lab._hosts(ESTATE) for vm in h.get("vms") or [])  # pylint: disable=protected-access
    got = []
    for vm in vms:
        assert vm["id"]["type"] == "com.oracle.ovm.mgr.ws.model.Vm" and len(vm["id"]["value"]) == 32
        assert vm["id"]["uri"].endswith("/Vm/" + vm["id"]["value"])
        server = servers[vm["serverId"]["value"]]
        pool = pools[vm["serverPoolId"]["value"]]
        assert vm["serverId"]["name"] == server["name"] and pool["id"]["name"] == pool["name"]
        assert server["serverPoolId"]["value"] == pool["id"]["value"]
        assert vm["id"]["value"] in [v["value"] for v in server["vmIds"]]
        assert vm["id"]["value"] in [v["value"] for v in pool["vmIds"]]
        got.append((pool["name"], server["name"], vm["name"], vm["vmRunState"], vm["memory"], vm["cpuCount"]))
    assert sorted(got) == expected
    assert {vm["name"] for vm in vms} >= {JAPANESE, HOSTILE} and [vm["name"] for vm in vms].count("app") == 2
    assert api.vm("app", "ovs02")["id"]["value"] == "4211aaaa111122223333444455556666"
    spare = next(s for s in servers.values() if s["name"] == "spare01")
    assert spare["serverPoolId"] is None and spare["vmIds"] == []
    dev = next(s for s in servers.values() if s["name"] == "ovs-dev01")
    assert dev["maintenanceMode"] is True and dev["serverRunState"] == "RUNNING"
    for server in servers.values():
        assert len(server["id"]["value"].split(":")) == 16
        one = api.get("Server/%s" % q(server["id"]["value"]))
        assert one["id"] == server["id"]
    ids = api.get("Vm/id")
    assert sorted(i["value"] for i in ids) == sorted(v["id"]["value"] for v in vms)
    missing = api.call("GET", "Vm/0004fb00000600000000000000000000")
    assert missing.status_code == 404 and "does not exist" in missing.json()["message"]


# --- jobs ---------------------------------------------------------------------------------------
def test_a_stop_job_runs_to_success_and_counts_one_graceful_shutdown(lab, api):
    before = counters(lab)
    vm = api.vm("web01")
    job = api.put("Vm/%s/stop" % vm["id"]["value"])
    assert job["id"]["type"] == "com.oracle.ovm.mgr.ws.model.Job" and job["summaryDone"] is False
    assert job["resultId"]["value"] == vm["id"]["value"]
    job = api.wait(job)
    assert job["jobRunState"] == "SUCCESS" and job["jobSummaryState"] == "SUCCESS" and job["error"] is None
    assert api.get("Vm/%s" % vm["id"]["value"])["vmRunState"] == "STOPPED"
    after = counters(lab)
    key = ("web01", "ovs01")
    assert after[key] == (before[key][0], before[key][1] + 1, before[key][2])
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
    assert machines(lab)[key]["power"] == "stopped"
    job = api.wait(api.put("Vm/%s/start" % vm["id"]["value"]))
    assert job["jobRunState"] == "SUCCESS"
    assert counters(lab)[key] == (before[key][0] + 1, before[key][1] + 1, before[key][2])
    again = api.wait(api.put("Vm/%s/start" % vm["id"]["value"]))
    assert again["jobRunState"] == "FAILURE" and "already running" in again["error"]["message"]
    assert counters(lab)[key] == (before[key][0] + 1, before[key][1] + 1, before[key][2])


def test_an_ignored_stop_runs_until_aborted_and_kill_counts_a_hard_off(lab, api):
    key = ("hung01", "ovs01")
    before = counters(lab)[key]
    vm = api.vm("hung01")
    stop = api.put("Vm/%s/stop" % vm["id"]["value"])
    time.sleep(1.5)
    stop = api.get("Job/%s" % stop["id"]["value"])
    assert stop["jobRunState"] == "RUNNING" and not stop["summaryDone"]
    assert api.get("Vm/%s" % vm["id"]["value"])["vmRunState"] == "RUNNING"
    locked = api.wait(api.put("Vm/%s/restart" % vm["id"]["value"]))
    assert locked["jobRunState"] == "FAILURE" and "locked" in locked["error"]["message"]
    aborted = api.put("Job/%s/abort" % stop["id"]["value"])
    assert aborted["summaryDone"] and aborted["jobRunState"] == "FAILURE" and aborted["jobSummaryState"] == "ABORTED"
    assert "abort" in aborted["error"]["message"].lower()
    assert machines(lab)[key]["power"] == "running" and counters(lab)[key] == before
    # a second stop, then kill: kill ends the stop job and powers the VM off
    stop = api.put("Vm/%s/stop" % vm["id"]["value"])
    kill = api.wait(api.put("Vm/%s/kill" % vm["id"]["value"]))
    assert kill["jobRunState"] == "SUCCESS"
    stop = api.get("Job/%s" % stop["id"]["value"])
    assert stop["summaryDone"] and stop["jobRunState"] == "FAILURE"
    assert counters(lab)[key] == (before[0], before[1], before[2] + 1)
    assert api.get("Vm/%s" % vm["id"]["value"])["vmRunState"] == "STOPPED"


def test_jobs_wait_while_the_manager_is_starting(lab, api):
    vm = api.vm("stopped01")
    assert "STARTING" in PART.fault(ESTATE, lab, "endpoint-starting", "ovm1")
    try:
        assert api.get("Manager")[0]["managerRunState"] == "STARTING"
        job = api.put("Vm/%s/start" % vm["id"]["value"])
        time.sleep(1.5)
        job = api.get("Job/%s" % job["id"]["value"])
        assert job["jobRunState"] == "CREATED" and not job["done"] and not job["summaryDone"]
        assert api.get("Vm/%s" % vm["id"]["value"])["vmRunState"] == "STOPPED"
    finally:
        PART.fault(ESTATE, lab, "endpoint-up", "ovm1")
    assert api.get("Manager")[0]["managerRunState"] == "RUNNING"
    job = api.wait(job)
    assert job["jobRunState"] == "SUCCESS"
    assert machines(lab)[("stopped01", "ovs01")]["power_ons"] == 1


def test_a_running_vm_migrates_live_within_its_pool_only(lab, api):
    vm = api.vm("mig01")
    ovs01, dev = api.server("ovs01"), api.server("ovs-dev01")
    job = api.wait(api.put("Vm/%s/migrate" % vm["id"]["value"], params={"serverId": ovs01["id"]["value"]}))
    assert job["jobRunState"] == "SUCCESS", job
    moved = api.get("Vm/%s" % vm["id"]["value"])
    assert moved["serverId"]["value"] == ovs01["id"]["value"] and moved["vmRunState"] == "RUNNING"
    assert machines(lab)[("mig01", "ovs01")]["power_ons"] == 0
    other_pool = api.wait(api.put("Vm/%s/migrate" % vm["id"]["value"], params={"serverId": dev["id"]["value"]}))
    assert other_pool["jobRunState"] == "FAILURE" and "pool" in other_pool["error"]["message"]
    refused = api.call("PUT", "Vm/%s/migrate" % vm["id"]["value"])  # no serverId: no job at all
    assert refused.status_code == 400 and "jobRunState" not in refused.text


def test_a_dead_server_then_a_cold_migration_and_a_start_elsewhere(lab, api):
    before = counters(lab)
    PART.fault(ESTATE, lab, "host-down", "ovs04")
    assert api.server("ovs04")["serverRunState"] == "UNKNOWN"
    deadline = time.monotonic() + 10
    while api.server("ovs04")["serverRunState"] != "STOPPED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    dead = api.vm("dead01")
    assert dead["vmRunState"] == "STOPPED" and dead["serverId"]["name"] == "ovs04"
    assert machines(lab)[("dead01", "ovs04")]["power"] == "stopped" and counters(lab) == before
    assert {h["name"]: h["state"] for h in PART.state(ESTATE, lab)["hosts"]}["ovs04"] == "down"
    refused = api.wait(api.put("Vm/%s/start" % dead["id"]["value"]))
    assert refused["jobRunState"] == "FAILURE" and "ovs04" in refused["error"]["message"]
    ovs02 = api.server("ovs02")
    cold = api.wait(api.put("Vm/%s/migrate" % dead["id"]["value"], params={"serverId": ovs02["id"]["value"]}))
    assert cold["jobRunState"] == "SUCCESS", cold
    moved = api.get("Vm/%s" % dead["id"]["value"])
    assert moved["serverId"]["value"] == ovs02["id"]["value"] and moved["vmRunState"] == "STOPPED"
    assert api.wait(api.put("Vm/%s/start" % dead["id"]["value"]))["jobRunState"] == "SUCCESS"
    assert machines(lab)[("dead01", "ovs02")]["power"] == "running"
    assert machines(lab)[("dead01", "ovs02")]["power_ons"] == before[("dead01", "ovs04")][0] + 1
    PART.fault(ESTATE, lab, "host-up", "ovs04")
    assert api.server("ovs04")["serverRunState"] == "RUNNING"
    assert api.vm("dead02")["vmRunState"] == "STOPPED"


def test_an_isolated_server_fails_jobs_after_the_server_timeout(lab, api):
    PART.fault(ESTATE, lab, "host-isolate", "ovs03")
    try:
        assert api.server("ovs03")["serverRunState"] == "UNKNOWN"
        vm = api.vm("iso01")
        assert vm["vmRunState"] == "RUNNING"  # the Manager's last knowledge
        started = time.monotonic()
        job = api.wait(api.put("Vm/%s/stop" % vm["id"]["value"]), timeout=12)
        assert time.monotonic() - started < 5 + 3
        assert job["jobRunState"] == "FAILURE" and "ovs03" in job["error"]["message"]
        state = machines(lab)[("iso01", "ovs03")]
        assert state["power"] == "running" and state["graceful_shutdowns"] == 0
        assert {h["name"]: h["state"] for h in PART.state(ESTATE, lab)["hosts"]}["ovs03"] == "not_responding"
    finally:
        PART.fault(ESTATE, lab, "host-up", "ovs03")
    assert api.server("ovs03")["serverRunState"] == "RUNNING"


def test_maintenance_mode_moves_running_vms_and_refuses_starts(lab, api):
    server = api.server("ovs03")
    vm = api.vm("iso01")
    body = dict(server, maintenanceMode=True)
    job = api.wait(api.put("Server/%s" % q(server["id"]["value"]), data=json.dumps(body)))
    assert job["jobRunState"] == "SUCCESS", job
    assert api.server("ovs03")["maintenanceMode"] is True
    moved = api.get("Vm/%s" % vm["id"]["value"])
    assert moved["serverId"]["name"] != "ovs03" and moved["vmRunState"] == "RUNNING"
    bad = dict(api.server("ovs03"), memory=1)
    assert api.call("PUT", "Server/%s" % q(server["id"]["value"]), data=json.dumps(bad)).status_code == 400
    back = api.wait(api.put("Server/%s" % q(server["id"]["value"]),
                            data=json.dumps(dict(api.server("ovs03"), maintenanceMode=False))))
    assert back["jobRunState"] == "SUCCESS" and api.server("ovs03")["maintenanceMode"] is False


def test_endpoint_silent_and_down(lab, api):
    PART.fault(ESTATE, lab, "endpoint-silent", "ovm1")
    try:
        started = time.monotonic()
        with pytest.raises((requests.exceptions.Timeout, requests.exceptions.ConnectionError)):
            requests.get(api.base + "/Manager", verify=lab["ca"], auth=api.auth, timeout=2)
        assert time.monotonic() - started >= 1.9
        PART.fault(ESTATE, lab, "endpoint-down", "ovm1")
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(api.base + "/Manager", verify=lab["ca"], auth=api.auth, timeout=5)
        assert time.monotonic() - started < 2
    finally:
        PART.fault(ESTATE, lab, "endpoint-up", "ovm1")
    fresh = Api(lab)
    assert fresh.get("Manager")[0]["managerRunState"] == "RUNNING"


def test_request_counters(lab, api):
    requests.post(lab["control"] + "/requests/reset", timeout=10)
    vm = api.vm("web01")
    api.get("Vm")
    api.get("Vm/%s" % vm["id"]["value"])
    api.get("Server/id")
    by_call = control(lab, "/state")["requests"]["by_call"]
    assert by_call == {"GET Vm": 2, "GET Vm/{id}": 1, "GET Server/id": 1}


# --- the part ------------------------------------------------------------------------------
def test_state_and_fault_names(lab):
    state = PART.state(ESTATE, lab)
    hosts = {h["name"]: h for h in state["hosts"]}
    assert hosts["ovs-dev01"]["state"] == "maintenance" and hosts["spare01"]["cluster"] is None
    one = machines(lab)[(JAPANESE, "ovs01")]
    assert set(one) == {"endpoint", "kind", "name", "uuid", "vm_id", "host", "cluster", "power", "heartbeat",
                        "power_ons", "graceful_shutdowns", "hard_offs", "manager_state"}
    assert one["uuid"].replace("-", "") == one["vm_id"] and len(one["uuid"]) == 36
    assert one["heartbeat"] == "none" and one["cluster"] == "prod pool" and one["manager_state"] == "RUNNING"
    assert machines(lab)[("susp01", "ovs02")]["power"] == "suspended"
    with pytest.raises(ValueError, match="2 VMs are named 'app'"):
        PART.fault(ESTATE, lab, "vm-crash", "app")
    with pytest.raises(NotImplementedError, match="heartbeat"):
        PART.fault(ESTATE, lab, "vm-hang", "web01")
    assert "crashed" in PART.fault(ESTATE, lab, "vm-crash", "app@ovs02")
    assert machines(lab)[("app", "ovs02")]["power"] == "stopped"
    assert "crashed" in PART.fault(ESTATE, lab, "vm-crash", "4211aaaa-1111-2222-3333-444455556666")


@pytest.mark.parametrize("change, message", [
    ({"heartbeat": "ok"}, "heartbeat"),
    ({"folder": "team-a"}, "folder"),
    ({"priority": 1}, "priority"),
    ({"uuid": "not-a-uuid"}, "uuid"),
    ({"memory_mb": 1}, "memory_mb"),
    ({"cpus": 0}, "cpus"),
    ({"colour": "red"}, "colour"),
    ({"name": "bad\tname"}, "control character"),
])
def test_check_refuses_what_ovm_cannot_hold(change, message):
    ep = {"name": "e", "platform": "ovm", "clusters": [{"name": "p", "hosts": [
        {"name": "h1", "vms": [dict({"name": "vm1"}, **change)]}]}]}
    with pytest.raises(ValueError, match=message):
        PART.check(ep)


def test_check_refuses_bad_hosts_and_takes_repeated_vm_names():
    base = {"name": "e", "platform": "ovm"}
    with pytest.raises(ValueError, match="server pool"):
        PART.check(dict(base, hosts=[{"name": "h1", "vms": [{"name": "v"}]}]))
    with pytest.raises(ValueError, match="listed twice"):
        PART.check(dict(base, clusters=[{"name": "p", "hosts": [{"name": "h1"}, {"name": "h1"}]}]))
    with pytest.raises(ValueError, match="maintenance"):
        PART.check(dict(base, clusters=[{"name": "p", "hosts": [
            {"name": "h1", "state": "maintenance", "vms": [{"name": "v"}]}]}]))
    PART.check(dict(base, clusters=[{"name": "p", "hosts": [{"name": "h1", "vms": [{"name": "v"}, {"name": "v"}]}]}]))


def test_the_peer_refuses_an_estate_it_cannot_hold(tmp_path):
    estate = tmp_path / "estate.json"
    estate.write_text(json.dumps({"clusters": [{"name": "p", "hosts": [{"name": "h", "vms": [
        {"name": "v", "heartbeat": "ok"}]}]}]}))
    proc = subprocess.run([sys.executable, ovm_lab.PEER, "--lab", str(estate), "--username", "u", "--password", "p",
                           "--certdir", str(tmp_path / "c")], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1 and proc.stdout == "" and "heartbeat" in proc.stderr


def test_a_thousand_vms_list_fast(tmp_path):
    hosts = [{"name": "h%d" % i, "vms": [{"name": "vm%04d" % (i * 250 + j)} for j in range(250)]} for i in range(4)]
    ep = {"name": "big", "platform": "ovm", "clusters": [{"name": "p", "hosts": hosts}]}
    rec = PART.up(ep, str(tmp_path))
    try:
        api = Api(rec)
        api.get("Manager")
        best = 10.0
        for _attempt in range(3):
            started = time.monotonic()
            vms = api.get("Vm")
            best = min(best, time.monotonic() - started)
        assert len(vms) == 1000 and best < 0.25, best
    finally:
        PART.down(ep, rec)
    assert not os.path.exists("/proc/%d/cmdline" % rec["pids"][0]) or not PART._ours(rec["pids"][0], rec)  # pylint: disable=protected-access


def _registry_has_ovm():
    try:
        from ansible_collections.virtops.unified.plugins.module_utils import registry  # pylint: disable=import-outside-toplevel
        return "ovm" in registry.platforms()
    except Exception:  # pylint: disable=broad-except
        return False


@pytest.mark.skipif(not _registry_has_ovm(), reason="the collection's ovm platform (ovm_driver) is not registered yet")
def test_scripts_lab_up_state_fault_down():
    labdir = tempfile.mkdtemp(prefix="ovm-lab-")
    labfile = os.path.join(labdir, "lab.yml")
    with open(labfile, "w", encoding="utf-8") as handle:
        json.dump({"endpoints": [{"name": "o1", "platform": "ovm", "clusters": [{"name": "p", "hosts": [
            {"name": "s1", "vms": [{"name": JAPANESE}]}]}]}]}, handle, ensure_ascii=False)
    lab_cli("up", labfile, os.path.join(labdir, "d"))
    try:
        state = json.loads(lab_cli("state", os.path.join(labdir, "d")).stdout)
        assert [m["name"] for m in state["machines"]] == [JAPANESE]
        assert "crashed" in lab_cli("fault", os.path.join(labdir, "d"), "vm-crash", JAPANESE).stdout
        hang = lab_cli("fault", os.path.join(labdir, "d"), "vm-hang", JAPANESE, check=False)
        assert hang.returncode == 2
    finally:
        lab_cli("down", os.path.join(labdir, "d"))
