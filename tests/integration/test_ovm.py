"""Oracle VM 3.4 end to end: the lab's Oracle VM Manager emulator (tests/peers/ovm,
lab/ovm_lab.py) through `scripts/lab`, driven by the real ansible-inventory,
ansible and ansible-playbook of the checkout's venv.

End states are read back through `scripts/lab state` (the peer's own truth:
what really runs, the power counters) and the peer's control API (the REST
requests it received, per call), never through our modules.
"""

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest
import yaml

from helpers import BIN, ROOT, env, inventory, lab, playbook, running_lab

PASSWORD = "Ovm pw 'q' ${x} 7f3e"
USER = "lab-admin"
JP = "ウェブ サーバー 01"
QUOTED = 'db "primary" it\'s'
TEMPLATE = "{{ 7*191 }}"
SHELL = "a;b $(id)"
REPEATED = "app"
STUCK = "stuck01"  # graceful: false
POWER = "virtops.unified.vm_power"
TIMEOUT = 3  # connect_timeout where a test sets it
MARGIN = 4  # on top of a baseline run of the same program


def vm(name, **kw):
    return dict({"name": name, "power": "running", "memory_mb": 512, "cpus": 1}, **kw)


ESTATE = {"endpoints": [{
    "name": "o1", "platform": "ovm", "credentials": "inline", "username": USER, "password": PASSWORD,
    "clusters": [{"name": "pool1", "hosts": [
        {"name": "ovs01", "state": "connected", "vms": [
            vm("web01"), vm(JP), vm(QUOTED), vm(REPEATED), vm(STUCK, graceful=False), vm(TEMPLATE, power="stopped")]},
        {"name": "ovs02", "state": "connected", "vms": [
            vm(REPEATED), vm(SHELL), vm("spare01", power="stopped")]},
    ]}],
}]}


def lab_vms(estate):
    """(name, host, cluster, power) of every VM of the lab file."""
    return sorted((v["name"], h["name"], c["name"], v.get("power", "running"))
                  for ep in estate["endpoints"] for c in ep["clusters"] for h in c["hosts"] for v in h.get("vms", []))


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("ovm"), ESTATE) as labdir:
        yield labdir


# --- independent reads ------------------------------------------------------------------
def norm(uuid):
    return str(uuid or "").replace("-", "").lower()


def state(labdir):
    return json.loads(lab("state", labdir).stdout)


def vms(labdir):
    """{uuid: machine} from scripts/lab state."""
    return {norm(m["uuid"]): m for m in state(labdir)["machines"] if m["kind"] == "vm"}


def hosts(labdir):
    return {h["name"]: h["state"] for h in state(labdir)["hosts"]}


def one(labdir, name, host=None):
    found = [m for m in vms(labdir).values() if m["name"] == name and host in (None, m["host"])]
    assert len(found) == 1, (name, host, found)
    return found[0]


def counts(m):
    return (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"])


def moved(before, after):
    """{uuid: (power_ons, graceful, hard) since before}."""
    return {u: tuple(a - b for a, b in zip(counts(after[u]), counts(m))) for u, m in before.items()}


def untouched_except(before, after, *uuids):
    deltas = moved(before, after)
    for uuid in uuids:
        deltas.pop(norm(uuid))
    assert set(deltas.values()) <= {(0, 0, 0)}, {after[u]["name"]: d for u, d in deltas.items() if d != (0, 0, 0)}
    for uuid, m in before.items():
        if uuid not in [norm(u) for u in uuids]:
            assert (after[uuid]["power"], after[uuid]["host"]) == (m["power"], m["host"]), after[uuid]


def rec(labdir):
    with open(os.path.join(labdir, "lab.json"), encoding="utf-8") as fh:
        return json.load(fh)["endpoints"][0]["rec"]


def control(labdir, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(rec(labdir)["control"] + path, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def requests_seen(labdir):
    return control(labdir, "/state")["requests"]


def reset_requests(labdir):
    control(labdir, "/requests/reset", {})


def puts(labdir):
    return {k: v for k, v in requests_seen(labdir)["by_call"].items() if not k.startswith("GET ")}


def peer_jobs(labdir):
    """{vm id: running job id} of the peer: a VM a job still holds."""
    return {v["id"]: v["job"] for v in control(labdir, "/state")["vms"] if v["job"]}


def audit(labdir):
    path = os.path.join(labdir, "audit.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def audit_of(labdir, uuid, since=0):
    return [r for r in audit(labdir)[since:] if norm((r.get("target") or {}).get("uuid")) == norm(uuid)]


def inv(labdir):
    return os.path.join(labdir, "inventory")


def source(labdir):
    with open(os.path.join(labdir, "inventory", "o1.ovm.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def hostvars(path):
    return inventory(path)[0]["_meta"]["hostvars"]


def inventory_name(labdir, name, host):
    found = [h for h, v in hostvars(inv(labdir)).items()
             if v.get("virt_kind") == "vm" and v["virt_name"] == name and v["virt_host"] == host]
    assert len(found) == 1, found
    return found[0]


def wait_until(what, predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within %ss: %s" % (timeout, what))
        time.sleep(0.2)


def run(argv, timeout=300):
    begun = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout, check=False)
    return proc, time.monotonic() - begun


def adhoc(inv_path, pattern, module, args, *extra, timeout=300):
    """(rc, {host: result}, seconds, proc) of one module run ad hoc (oneline callback)."""
    argv = [os.path.join(BIN, "ansible"), "-i", str(inv_path), pattern, "-m", module, "-a", json.dumps(args), *extra]
    e = env()
    e.update(ANSIBLE_STDOUT_CALLBACK="oneline", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    begun = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout, check=False)
    took = time.monotonic() - begun
    results = {}
    for line in proc.stdout.splitlines():
        if " => {" in line:
            results[line.split(" | ", 1)[0]] = json.loads(line.split(" => ", 1)[1])
    assert results, "no result from ansible %s:\n%s\n%s" % (module, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.returncode, results, took, proc


def direct(labdir, **args):
    """vm_power's arguments for a run on localhost that names the Manager itself."""
    src = source(labdir)
    out = {"platform": "ovm", "hostname": "127.0.0.1", "port": src["port"], "ca_path": src["ca_path"],
           "username": USER, "password": PASSWORD, "connect_timeout": TIMEOUT}
    out.update(args)
    return {k: v for k, v in out.items() if v is not None}


def label(labdir):
    return "127.0.0.1:%d" % source(labdir)["port"]


def copy_source(labdir, tmp_path, **changes):
    """A copy of the lab's inventory source, with `changes` (None: the key removed)."""
    src = dict(source(labdir))
    for key, value in changes.items():
        if value is None:
            src.pop(key, None)
        else:
            src[key] = value
    d = tmp_path / ("inv-%d" % len(list(tmp_path.iterdir())))
    d.mkdir()
    (d / "o1.ovm.yml").write_text(yaml.safe_dump(src, allow_unicode=True), encoding="utf-8")
    return str(d / "o1.ovm.yml")


def restart(inv_path, target, *extra, check=False):
    return playbook(inv_path, "playbooks/restart_vm.yml", "-e", json.dumps({"target": target, "reason": "t"}),
                    *extra, check=check)


# --- 1. inventory -----------------------------------------------------------------------------
def test_inventory_maps_every_vm_as_the_lab_file_says(estate):
    proc_data, stderr = inventory(inv(estate))
    hv = proc_data["_meta"]["hostvars"]
    seen = sorted((v["virt_name"], v["virt_host"], v.get("virt_cluster"), v["virt_power_state"])
                  for v in hv.values() if v.get("virt_kind") == "vm")
    assert seen == lab_vms(ESTATE)
    # the repeated name: <name>_<server>, each with its own Oracle VM id
    assert hv["%s_ovs01" % REPEATED]["virt_host"] == "ovs01" and hv["%s_ovs02" % REPEATED]["virt_host"] == "ovs02"
    assert REPEATED not in hv
    truth = vms(estate)
    for v in hv.values():
        if v.get("virt_kind") == "vm":
            m = truth[norm(v["virt_uuid"])]
            assert (m["name"], m["host"]) == (v["virt_name"], v["virt_host"]), v
            assert v["virt_platform"] == "ovm" and v["virt_heartbeat"] == "unknown"
    assert {h: (hv[h]["virt_cluster"], hv[h]["virt_connection_state"]) for h in ("ovs01", "ovs02")} == {
        "ovs01": ("pool1", "connected"), "ovs02": ("pool1", "connected")}
    assert sorted(proc_data["virt_host_ovs02"]["hosts"]) == sorted(
        h for h, v in hv.items() if v.get("virt_kind") == "vm" and v["virt_host"] == "ovs02")
    text = json.dumps(proc_data, ensure_ascii=False) + stderr
    assert PASSWORD not in text
    # the template is data: never evaluated
    assert "1337" not in text and any(v["virt_name"] == TEMPLATE for v in hv.values())


def test_inventory_round_trips_are_fixed_whatever_the_number_of_vms(tmp_path):
    many = {"endpoints": [{"name": "o1", "platform": "ovm", "credentials": "inline", "username": USER,
                           "password": PASSWORD, "clusters": [{"name": "big", "hosts": [
                               {"name": "ovs%02d" % h, "vms": [vm("vm-%d-%02d" % (h, i), memory_mb=64)
                                                               for i in range(30)]} for h in (1, 2)]}]}]}
    with running_lab(tmp_path, many) as labdir:
        reset_requests(labdir)
        data, stderr = inventory(inv(labdir))
        assert len([v for v in data["_meta"]["hostvars"].values() if v.get("virt_kind") == "vm"]) == 60
        seen = requests_seen(labdir)
        assert seen["by_call"] == {"GET Manager": 1, "GET ServerPool": 1, "GET Server": 1, "GET Vm": 1}, seen
        assert seen["logins"] == 1 and seen["unauthorized"] == 0, seen
        assert PASSWORD not in json.dumps(data) + stderr


# --- 7 (read-only, first). host failure impact ------------------------------------------------
def test_host_failure_impact_lists_exactly_the_vms_of_ovs01(estate, tmp_path):
    before = vms(estate)
    report = tmp_path / "impact"
    playbook(inv(estate), "playbooks/host_failure_impact.yml", "-e", "failed_host=ovs01", "-e",
             "report_dir=%s" % report)
    with open(report / "impact.json", encoding="utf-8") as fh:
        data = json.load(fh)
    assert [h["name"] for h in data["failed_hosts"]] == ["ovs01"]
    listed = sorted((v["name"], v["host"]) for v in data["vms"])
    assert listed == sorted((n, h) for n, h, _c, _p in lab_vms(ESTATE) if h == "ovs01")
    assert {norm(v["uuid"]) for v in data["vms"]} == {u for u, m in before.items() if m["host"] == "ovs01"}
    assert all(v["platform"] == "ovm" and v["cluster"] == "pool1" for v in data["vms"])
    assert vms(estate) == before  # a report only reads


# --- 2. vm_power: check, apply, again ---------------------------------------------------------
def test_vm_power_stopped_check_apply_again(estate):
    web = one(estate, "web01")
    before = vms(estate)
    reset_requests(estate)
    rc, res, _t, _p = adhoc(inv(estate), "web01", POWER, {"state": "stopped"}, "--check")
    out = res["web01"]
    assert rc == 0 and out["changed"] is True, out
    assert [(a["action"], a["result"]) for a in out["actions"]] == [("shutdown", "planned")]
    assert puts(estate) == {} and vms(estate) == before  # nothing moved at the peer

    rc, res, _t, _p = adhoc(inv(estate), "web01", POWER, {"state": "stopped"})
    out = res["web01"]
    assert rc == 0 and out["changed"] is True and out["after"]["power_state"] == "stopped", out
    after = vms(estate)
    assert after[norm(web["uuid"])]["power"] == "stopped"
    assert moved(before, after)[norm(web["uuid"])] == (0, 1, 0)
    untouched_except(before, after, web["uuid"])

    reset_requests(estate)
    rc, res, _t, _p = adhoc(inv(estate), "web01", POWER, {"state": "stopped"})
    assert rc == 0 and res["web01"]["changed"] is False, res
    assert puts(estate) == {} and vms(estate) == after


def test_vm_power_started_check_apply_again_with_diff(estate):
    web = one(estate, "web01")
    assert web["power"] == "stopped"
    before = vms(estate)
    reset_requests(estate)
    rc, res, _t, _p = adhoc(inv(estate), "web01", POWER, {"state": "started"}, "--check", "--diff", "-vvv")
    out = res["web01"]
    assert rc == 0 and out["changed"] is True, out
    assert out["diff"]["before"] != out["diff"]["after"], out["diff"]
    assert "stopped" in json.dumps(out["diff"]["before"]) and "running" in json.dumps(out["diff"]["after"]), out
    assert puts(estate) == {} and vms(estate) == before

    rc, res, _t, _p = adhoc(inv(estate), "web01", POWER, {"state": "started"}, "--diff", "-vvv")
    out = res["web01"]
    assert rc == 0 and out["changed"] is True and out["after"]["power_state"] == "running", out
    assert "diff" in out
    after = vms(estate)
    assert after[norm(web["uuid"])]["power"] == "running"
    assert moved(before, after)[norm(web["uuid"])] == (1, 0, 0)
    untouched_except(before, after, web["uuid"])

    reset_requests(estate)
    rc, res, _t, _p = adhoc(inv(estate), "web01", POWER, {"state": "started"})
    assert rc == 0 and res["web01"]["changed"] is False
    assert puts(estate) == {} and vms(estate) == after


# --- 3. restart_vm.yml --------------------------------------------------------------------------
def test_restart_of_a_graceful_vm_is_one_graceful_power_cycle(estate):
    target = one(estate, JP)
    before = vms(estate)
    lines = len(audit(estate))
    proc = restart(inv(estate), JP, check=True)
    after = vms(estate)
    assert moved(before, after)[norm(target["uuid"])] == (1, 1, 0), proc.stdout[-2000:]
    assert after[norm(target["uuid"])]["power"] == "running"
    untouched_except(before, after, target["uuid"])
    phases = [r["phase"] for r in audit_of(estate, target["uuid"], lines)]
    assert phases == ["intent", "outcome"], audit(estate)[lines:]
    outcome = audit_of(estate, target["uuid"], lines)[-1]
    assert outcome["result"] == "ok" and outcome["reason"] == "t" and outcome["target"]["name"] == JP
    assert PASSWORD not in json.dumps(audit(estate), ensure_ascii=False)


def test_restart_of_a_stopped_vm_named_as_a_template_starts_it_and_evaluates_nothing(estate):
    target = one(estate, TEMPLATE)
    before = vms(estate)
    proc = restart(inv(estate), TEMPLATE, check=True)
    after = vms(estate)
    assert moved(before, after)[norm(target["uuid"])] == (1, 0, 0)
    untouched_except(before, after, target["uuid"])
    assert "1337" not in proc.stdout


def test_restart_of_a_vm_ignoring_graceful_shutdown_escalates_after_the_timeout(estate):
    target = one(estate, STUCK)
    before = vms(estate)
    lines = len(audit(estate))
    begun = time.monotonic()
    proc = restart(inv(estate), STUCK, "-e", "restart_vm_shutdown_timeout=5", check=True)
    took = time.monotonic() - begun
    after = vms(estate)
    assert moved(before, after)[norm(target["uuid"])] == (1, 0, 1), proc.stdout[-2000:]
    assert after[norm(target["uuid"])]["power"] == "running"
    untouched_except(before, after, target["uuid"])
    assert took < 45, took  # the peer's own stop job would fail only after 120 s
    assert peer_jobs(estate) == {}  # the aborted stop job does not linger
    trail = audit_of(estate, target["uuid"], lines)
    assert [r["phase"] for r in trail] == ["intent", "outcome"]
    assert [(s["action"], s["result"]) for s in trail[-1]["steps"]] == [
        ("shutdown", "timeout"), ("poweroff", "ok"), ("start", "ok")], trail[-1]


# --- 4. faults: a clear message, nothing touched, the audit right ----------------------------
def refused_restart(labdir, inv_path, target, *words):
    """restart_vm.yml refused before acting: rc != 0, the words in its output, no PUT, no audit line."""
    before = vms(labdir)
    lines = len(audit(labdir))
    reset_requests(labdir)
    proc = restart(inv_path, target)
    assert proc.returncode != 0, proc.stdout[-2000:]
    for word in words:
        assert word in proc.stdout, (word, proc.stdout[-3000:])
    assert puts(labdir) == {}
    assert vms(labdir) == before
    assert audit(labdir)[lines:] == []  # refused before acting: no intent line
    return proc


def refused_power(labdir, error_type, *words, **args):
    before = vms(labdir)
    lines = len(audit(labdir))
    reset_requests(labdir)
    rc, res, took, _p = adhoc("localhost,", "localhost", POWER, direct(labdir, **args))
    out = res["localhost"]
    assert rc != 0 and out["error_type"] == error_type, out
    for word in words:
        assert word in out["msg"], (word, out["msg"])
    assert PASSWORD not in json.dumps(out)
    assert puts(labdir) == {}
    assert vms(labdir) == before
    assert [r for r in audit(labdir)[lines:] if r.get("phase") == "intent"] == []
    return out, took


def test_wrong_password_is_refused_naming_the_manager(estate, tmp_path):
    good = copy_source(estate, tmp_path)
    hostvars(good)  # a good read first: its VMs are then known, stale, when the login fails
    bad = copy_source(estate, tmp_path, password="Wr0ng pw")
    os.replace(bad, good)
    data, stderr = inventory(good)
    text = " ".join(stderr.split())
    name = "127.0.0.1_%d" % source(estate)["port"]
    assert "Oracle VM Manager %s is listed as unreachable" % name in text and "login refused" in text, text
    assert data["_meta"]["hostvars"][name]["virt_error_type"] == "AuthFailed"
    assert "Wr0ng" not in json.dumps(data) + stderr
    assert requests_seen(estate)["unauthorized"] >= 1
    refused_restart(estate, good, "web01", "unreachable since", "nothing was done")
    out, _t = refused_power(estate, "AuthFailed", label(estate), "login refused for user %r" % USER,
                            name="web01", state="restarted", password="Wr0ng pw")
    assert "Wr0ng" not in json.dumps(out)


def test_vm_not_found_names_the_vm_and_touches_nothing(estate):
    refused_restart(estate, inv(estate), "no-such-vm", "'no-such-vm' not found")
    refused_power(estate, "NotFound", "'no-such-vm' not found", label(estate), name="no-such-vm", state="restarted")


def test_ambiguous_name_lists_both_vms_with_their_uuids(estate):
    both = [m for m in vms(estate).values() if m["name"] == REPEATED]
    assert sorted(m["host"] for m in both) == ["ovs01", "ovs02"]
    proc = refused_restart(estate, inv(estate), REPEATED, "matches 2")
    out, _t = refused_power(estate, "Ambiguous", "matches 2", name=REPEATED, state="restarted")
    for m in both:
        assert norm(m["uuid"]) in norm(proc.stdout) and norm(m["uuid"]) in norm(out["msg"]), m
        assert m["host"] in out["msg"]


def test_tls_not_trusted_without_the_managers_ca(estate, tmp_path):
    path = copy_source(estate, tmp_path, ca_path=None)
    reset_requests(estate)
    data, stderr = inventory(path)
    text = " ".join(stderr.split())
    assert "certificate not trusted" in text and label(estate) in text, text
    assert requests_seen(estate)["total"] == 0  # nothing went over an untrusted connection
    out, _t = refused_power(estate, "VirtError", label(estate), "certificate not trusted",
                            name="web01", state="restarted", ca_path=None)
    assert requests_seen(estate)["total"] == 0
    assert "ca_path" in json.dumps(out)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_endpoint_down_is_refused_naming_the_manager(estate, tmp_path):
    path = copy_source(estate, tmp_path)
    hostvars(path)  # known before it goes down
    lab("fault", estate, "endpoint-down", "o1")
    try:
        data, stderr = inventory(path)
        name = "127.0.0.1_%d" % source(estate)["port"]
        assert "Oracle VM Manager %s is listed as unreachable" % name in " ".join(stderr.split())
        assert data["_meta"]["hostvars"][name]["virt_error_type"] == "Unreachable"
        before = vms(estate)
        proc = restart(path, "web01")
        assert proc.returncode != 0 and "unreachable since" in proc.stdout and "nothing was done" in proc.stdout
        rc, res, _t, _p = adhoc("localhost,", "localhost", POWER, direct(estate, name="web01", state="restarted"))
        out = res["localhost"]
        assert rc != 0 and out["error_type"] == "Unreachable", out
        assert label(estate) in out["msg"] and "cannot connect" in out["msg"], out
        assert vms(estate) == before
    finally:
        lab("fault", estate, "endpoint-up", "o1")


SMALL = {"endpoints": [{"name": "o1", "platform": "ovm", "credentials": "inline", "username": USER,
                        "password": PASSWORD, "clusters": [{"name": "pool1", "hosts": [
                            {"name": "ovs01", "vms": [vm("web01")]}, {"name": "ovs02", "vms": [vm("b1")]}]}]}]}


@pytest.fixture
def small(tmp_path_factory):
    """A lab of its own, for a fault the main one must not carry on."""
    with running_lab(tmp_path_factory.mktemp("ovm-small"), SMALL) as labdir:
        yield labdir


def test_endpoint_silent_fails_within_connect_timeout(small, tmp_path):
    estate = small
    path = copy_source(estate, tmp_path, connect_timeout=TIMEOUT)
    closed = copy_source(estate, tmp_path, connect_timeout=TIMEOUT, port=closed_port())
    argv = [os.path.join(BIN, "ansible-inventory"), "-i", closed, "--list"]
    _p, baseline = run(argv)
    lab("fault", estate, "endpoint-silent", "o1")
    try:
        proc, took = run([os.path.join(BIN, "ansible-inventory"), "-i", path, "--list"])
        assert proc.returncode == 0, proc.stderr
        text = " ".join(proc.stderr.split())
        assert "no answer within %ss" % TIMEOUT in text and label(estate) in text, text
        assert took < baseline + TIMEOUT + MARGIN, (took, baseline)
        before = vms(estate)
        _rc, _res, base_power, _p = adhoc("localhost,", "localhost", POWER,
                                          direct(estate, name="web01", state="restarted", port=closed_port()))
        rc, res, took, _p = adhoc("localhost,", "localhost", POWER, direct(estate, name="web01", state="restarted"))
        out = res["localhost"]
        assert rc != 0 and out["error_type"] == "Unreachable", out
        assert label(estate) in out["msg"] and "no answer within %ss" % TIMEOUT in out["msg"], out
        assert took < base_power + TIMEOUT + MARGIN, (took, base_power)
        assert vms(estate) == before
    finally:
        back = lab("fault", estate, "endpoint-up", "o1", check=False)
    assert back.returncode == 0, "the peer did not come back from endpoint-silent: %s" % back.stderr[-1500:]
    assert hostvars(inv(estate))["web01"]["virt_power_state"] == "running"  # and it answers again


def test_manager_starting_is_refused_and_nothing_is_asked_of_it(estate, tmp_path):
    path = copy_source(estate, tmp_path)
    hostvars(path)
    lab("fault", estate, "endpoint-starting", "o1")
    try:
        reset_requests(estate)
        data, stderr = inventory(path)
        text = " ".join(stderr.split())
        assert "STARTING" in text and "listed as unreachable" in text, text
        refused_restart(estate, path, "web01", "nothing was done")
        out, _t = refused_power(estate, "StateConflict", "Oracle VM Manager is STARTING", label(estate),
                                name="web01", state="restarted")
        assert "nothing was asked of it" in out["msg"]
        assert puts(estate) == {}
    finally:
        lab("fault", estate, "endpoint-up", "o1")
    assert hostvars(inv(estate))["web01"]["virt_power_state"] == "running"


def test_host_cut_off_its_vms_are_unknown_and_nothing_is_sent(estate):
    target = one(estate, SHELL)
    host = target["host"]
    lab("fault", estate, "host-isolate", host)
    try:
        hv = hostvars(inv(estate))
        assert hv[host]["virt_connection_state"] == "not_responding"
        name = inventory_name(estate, SHELL, host)
        assert hv[name]["virt_power_state"] == "unknown", hv[name]
        refused_restart(estate, inv(estate), SHELL, "nothing was done", host)
        out, _t = refused_power(estate, "StateConflict", SHELL, "nothing was done", name=SHELL, state="restarted")
        assert one(estate, SHELL)["power"] == "running"  # it runs on, cut off
    finally:
        lab("fault", estate, "host-up", host)
    assert hosts(estate)[host] == "connected"


def test_host_cut_off_during_a_restart_fails_naming_the_vm_and_leaves_it_running(estate):
    """The stop job runs on a guest that ignores it; the server is cut off meanwhile:
    the forced off cannot reach it. The run fails, saying so; the VM runs on."""
    target = one(estate, QUOTED)
    host = target["host"]
    lab("fault", estate, "vm-ignore-graceful", QUOTED)
    before = vms(estate)
    lines = len(audit(estate))
    args = direct(estate, uuid=target["uuid"], state="restarted", force=True, shutdown_timeout=4)
    argv = [os.path.join(BIN, "ansible"), "-i", "localhost,", "localhost", "-m", POWER, "-a", json.dumps(args)]
    e = env()
    e.update(ANSIBLE_STDOUT_CALLBACK="oneline", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    proc = subprocess.Popen(argv, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until("the stop job running", lambda: norm(target["uuid"]) in peer_jobs(estate), 30)
        lab("fault", estate, "host-isolate", host)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        lab("fault", estate, "host-up", host)
    results = [json.loads(line.split(" => ", 1)[1]) for line in stdout.splitlines() if " => {" in line]
    assert proc.returncode != 0 and results, (stdout, stderr)
    out = results[0]
    # the kill could not reach the server: said so, naming the VM, its server, what to do
    assert out["error_type"] == "StateConflict", out
    assert "poweroff %s failed" % QUOTED in out["msg"] and host in out["msg"], out
    assert "recover_host_failure.yml" in out["msg"], out
    assert [(a["action"], a["result"]) for a in out["actions"]] == [("shutdown", "timeout"), ("poweroff", "refused")]
    after = vms(estate)
    assert after[norm(target["uuid"])]["power"] == "running"
    assert moved(before, after)[norm(target["uuid"])] == (0, 0, 0)
    untouched_except(before, after, target["uuid"])
    trail = audit_of(estate, target["uuid"], lines)
    assert [r["phase"] for r in trail] == ["intent", "outcome"] and trail[-1]["result"].startswith("failed"), trail


# --- 5. migration and maintenance ------------------------------------------------------------
def test_vm_migrate_moves_a_running_vm_live_to_the_other_server(estate):
    target = one(estate, "web01")
    assert (target["host"], target["power"]) == ("ovs01", "running")
    before = vms(estate)
    rc, res, _t, proc = adhoc(inv(estate), "web01", "virtops.unified.vm_migrate", {"destination_host": "ovs02"},
                              "--check")
    assert rc == 0 and res["web01"]["changed"] is True, res
    assert vms(estate) == before
    rc, res, _t, proc = adhoc(inv(estate), "web01", "virtops.unified.vm_migrate", {"destination_host": "ovs02"})
    out = res["web01"]
    assert rc == 0 and out["after"]["host"] == "ovs02", (out, proc.stderr[-2000:])
    after = vms(estate)
    assert (after[norm(target["uuid"])]["host"], after[norm(target["uuid"])]["power"]) == ("ovs02", "running")
    assert moved(before, after)[norm(target["uuid"])] == (0, 0, 0)  # live: no power cycle


def test_evacuate_into_maintenance_then_out_of_it(estate):
    before = vms(estate)
    running_on_2 = {u for u, m in before.items() if m["host"] == "ovs02" and m["power"] == "running"}
    proc = playbook(inv(estate), "playbooks/evacuate_host.yml", "-e", "evacuate=ovs02", "-e", "maintenance=true",
                    check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert hosts(estate)["ovs02"] == "maintenance"
    after = vms(estate)
    for uuid in running_on_2:
        assert (after[uuid]["host"], after[uuid]["power"]) == ("ovs01", "running"), after[uuid]
    assert set(moved(before, after).values()) == {(0, 0, 0)}  # moved live, nothing power-cycled
    rc, res, _t, proc = adhoc(inv(estate), "ovs02", "virtops.unified.host_maintenance",
                              {"name": "ovs02", "state": "absent"})
    assert rc == 0 and res["ovs02"]["changed"] is True, res
    assert hosts(estate)["ovs02"] == "connected"
    rc, res, _t, proc = adhoc(inv(estate), "ovs02", "virtops.unified.host_maintenance",
                              {"name": "ovs02", "state": "absent"})
    assert rc == 0 and res["ovs02"]["changed"] is False, res


# --- 6. recover_host_failure.yml, and a host down before the action --------------------------
RECOVERY = {"endpoints": [{
    "name": "o1", "platform": "ovm", "credentials": "inline", "username": USER, "password": PASSWORD,
    "clusters": [{"name": "pool1", "hosts": [
        {"name": "ovs01", "vms": [vm("r1"), vm(JP), vm(SHELL)]},
        {"name": "ovs02", "vms": [vm("other01"), vm("other02", power="stopped")]},
    ]}],
}]}


@pytest.fixture(scope="module")
def recovery(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("ovm-recovery"), RECOVERY) as labdir:
        yield labdir


def test_host_down_then_recover_host_failure_starts_its_vms_on_the_other_server(recovery):
    lab("fault", recovery, "host-down", "ovs01")
    wait_until("the Manager declares ovs01 dead (its VMs STOPPED)",
               lambda: all(m["manager_state"] == "STOPPED" for m in vms(recovery).values() if m["host"] == "ovs01"))
    assert hosts(recovery)["ovs01"] == "down"
    on_1 = {u for u, m in vms(recovery).items() if m["host"] == "ovs01"}
    assert len(on_1) == 3
    hv = hostvars(inv(recovery))
    assert hv["ovs01"]["virt_connection_state"] == "disconnected"

    # a host down before the action: a restart of one of its VMs is refused; nothing starts anywhere
    refused_restart(recovery, inv(recovery), "r1", "ovs01", "nothing was done")
    # asked directly, bypassing the runbook's check: it fails clearly, nothing starts
    before = vms(recovery)
    rc, res, _t, _p = adhoc("localhost,", "localhost", POWER, direct(recovery, name="r1", state="started"))
    out = res["localhost"]
    assert rc != 0 and "r1" in out["msg"] and "ovs01" in json.dumps(out), out
    assert vms(recovery) == before

    # check mode: the plan, nothing moves
    reset_requests(recovery)
    proc = playbook(inv(recovery), "playbooks/recover_host_failure.yml", "-e", "failed_host=ovs01", "--check",
                    check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "3 VM(s) on failed host(s) ovs01" in proc.stdout, proc.stdout[-3000:]
    assert puts(recovery) == {} and vms(recovery) == before

    lines = len(audit(recovery))
    proc = playbook(inv(recovery), "playbooks/recover_host_failure.yml", "-e", "failed_host=ovs01", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = vms(recovery)
    for uuid in on_1:
        assert (after[uuid]["host"], after[uuid]["power"]) == ("ovs02", "running"), (after[uuid], proc.stdout[-3000:])
    deltas = moved(before, after)
    assert {u: d for u, d in deltas.items() if u in on_1} == {u: (1, 0, 0) for u in on_1}
    assert {d for u, d in deltas.items() if u not in on_1} == {(0, 0, 0)}
    recovered = [r for r in audit(recovery)[lines:] if r.get("phase") == "outcome" and norm(r["target"]["uuid"]) in on_1]
    assert len(recovered) == 3 and all(r["result"] == "ok" for r in recovered), recovered
