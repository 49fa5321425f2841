"""scripts/lab with a `driver: qemu` libvirt endpoint: real guests on this machine's qemu:///system.

One host, two guests (the peer's acpi guest, which shuts down on request, and its hung
guest, which ignores ACPI). The controller reaches the host through the lab's proxy, so
the lab can cut it off (host-isolate: the guests go on) or kill it (host-down: the guests
die). `state` reads libvirt directly; every end state is also read back with virsh and
libvirt's own per-domain log, not with the collection.
"""

import json
import os
import time

import pytest
import yaml

from helpers import inventory, lab, lab_env, playbook, virsh
from libvirt_peer import URI, stop_reasons

HOST = "kvm-lab"
CLUSTER = "rack q"
ACPI = "ウェブ 01"
HUNG = 'stuck "it\'s"'
CONNECT_TIMEOUT = 5  # what the part writes into the inventory source


def estate():
    return {"endpoints": [{"name": "kvmq", "platform": "libvirt", "driver": "qemu", "clusters": [
        {"name": CLUSTER, "hosts": [{"name": HOST, "vms": [
            {"name": ACPI, "power": "running"},
            {"name": HUNG, "power": "running", "graceful": False}]}]}]}]}


@pytest.fixture(scope="module")
def qlab(tmp_path_factory):
    base = tmp_path_factory.mktemp("qlab")
    labfile = base / "lab.yml"
    labfile.write_text(yaml.safe_dump(estate(), allow_unicode=True), encoding="utf-8")
    labdir = str(base / "dir")
    begun = time.monotonic()
    try:
        lab("up", str(labfile), labdir)
        print("lab up: %.1f s" % (time.monotonic() - begun))
        yield labdir
    finally:
        if os.path.exists(os.path.join(labdir, "lab.json")):
            lab("down", labdir, check=False)


def state(labdir):
    out = json.loads(lab("state", labdir).stdout)
    return {m["lab_name"]: m for m in out["machines"]}, {h["name"]: h for h in out["hosts"]}


def counts(machine):
    return machine["power_ons"], machine["graceful_shutdowns"], machine["hard_offs"]


def read_inventory(labdir):
    with lab_env(labdir):
        hostvars, stderr = inventory(os.path.join(labdir, "inventory"))
    hostvars = hostvars["_meta"]["hostvars"]
    hosts = {v["virt_name"]: v for v in hostvars.values() if v.get("virt_kind") == "hypervisor"}
    vms = {v["virt_uuid"]: v for v in hostvars.values() if v.get("virt_kind") == "vm"}
    return hosts, vms, stderr


def domstate_reason(domain):
    return virsh(URI, "domstate", "--reason", domain)


def test_up_defines_both_guests_on_the_one_host(qlab):
    machines, hosts = state(qlab)
    assert hosts[HOST]["state"] == "connected"
    rec = json.load(open(os.path.join(qlab, "lab.json"), encoding="utf-8"))["endpoints"][0]["rec"]
    for name in (ACPI, HUNG):
        m = machines[name]
        assert m["name"] == "lab-%s-%s" % (rec["labid"], name)  # the lab's prefix, the name untouched
        assert m["power"] == "running" and counts(m) == (0, 0, 0), m
        assert domstate_reason(m["name"]) == "running (booted)"
    assert machines[ACPI]["heartbeat"] == "ok" and machines[HUNG]["heartbeat"] == "none"
    source = yaml.safe_load(open(os.path.join(qlab, "inventory", "kvmq.libvirt.yml"), encoding="utf-8"))
    assert source["hypervisors"][0]["uri"].startswith("qemu+unix:///system?socket=")
    hv, vms, _stderr = read_inventory(qlab)
    assert hv[HOST]["virt_connection_state"] == "connected" and hv[HOST].get("virt_cluster") == CLUSTER
    for name in (ACPI, HUNG):
        vm = vms[machines[name]["uuid"]]
        assert (vm["virt_name"], vm["virt_host"], vm["virt_power_state"]) == (machines[name]["name"], HOST, "running")


def test_a_restart_is_one_graceful_power_cycle_and_nothing_else(qlab):
    before, _hosts = state(qlab)
    target = before[ACPI]
    stops = len(stop_reasons(target["name"]))
    with lab_env(qlab):
        playbook(os.path.join(qlab, "inventory"), "playbooks/restart_vm.yml", "-e",
                 json.dumps({"target": target["uuid"], "reason": "lab qemu test"}))
    after, _hosts = state(qlab)
    delta = {name: tuple(a - b for a, b in zip(counts(after[name]), counts(before[name]))) for name in before}
    assert delta == {ACPI: (1, 1, 0), HUNG: (0, 0, 0)}
    # libvirt's own word, read apart from the lab: the guest shut itself down once, on request
    assert stop_reasons(target["name"])[stops:] == ["shutdown"]
    assert after[ACPI]["stops"][-1:] == ["shutdown"]
    assert domstate_reason(target["name"]) == "running (booted)"
    assert after[ACPI]["power"] == "running" and after[HUNG]["power"] == "running"


def test_host_isolate_cuts_the_controller_off_while_the_guests_run(qlab):
    lab("fault", qlab, "host-isolate", HOST)
    begun = time.monotonic()
    hv, vms, stderr = read_inventory(qlab)
    took = time.monotonic() - begun
    assert hv[HOST]["virt_connection_state"] == "unreachable", hv
    assert "no answer within %ds" % CONNECT_TIMEOUT in stderr
    assert took < CONNECT_TIMEOUT + 10, took
    assert all(vm["virt_power_state"] == "unknown" for vm in vms.values())  # last known, stale
    machines, hosts = state(qlab)  # read directly: the host still runs them
    assert hosts[HOST]["state"] == "not_responding"
    for name in (ACPI, HUNG):
        assert machines[name]["power"] == "running"
        assert domstate_reason(machines[name]["name"]) == "running (booted)"
    assert machines[ACPI]["heartbeat"] == "ok"


def test_host_up_connects_it_again(qlab):
    lab("fault", qlab, "host-up", HOST)
    machines, hosts = state(qlab)
    assert hosts[HOST]["state"] == "connected"
    hv, vms, _stderr = read_inventory(qlab)
    assert hv[HOST]["virt_connection_state"] == "connected"
    assert all(vms[machines[n]["uuid"]]["virt_power_state"] == "running" for n in (ACPI, HUNG))


def test_a_host_cut_off_in_the_middle_of_a_connection_fails_within_the_deadline(qlab):
    """connect_timeout bounds the calls on an open connection too (libvirt's keepalive),
    not only its opening: a runbook on a host that is cut off mid-way does not hang."""
    import glob  # pylint: disable=import-outside-toplevel
    from ansible_collections.virtops.unified.plugins.module_utils import model, registry  # pylint: disable=import-outside-toplevel
    source = yaml.safe_load(open(glob.glob(os.path.join(qlab, "inventory", "*.libvirt.yml"))[0], encoding="utf-8"))
    platform = registry.get("libvirt")
    options = platform.source_endpoints(source)[0]
    with platform.open(options, connect_timeout=CONNECT_TIMEOUT, environ={}) as drv:
        assert drv.list_inventory().vms  # the connection is open and answers
        lab("fault", qlab, "host-isolate", HOST)
        try:
            begun = time.monotonic()
            with pytest.raises(model.Unreachable) as err:
                drv.list_inventory()
            took = time.monotonic() - begun
        finally:
            lab("fault", qlab, "host-up", HOST)
    assert took < CONNECT_TIMEOUT + 5, took
    assert "no answer" in str(err.value), str(err.value)


def test_vm_hang_silences_the_agent_and_vm_unhang_brings_it_back(qlab):
    lab("fault", qlab, "vm-hang", ACPI)
    machines, _hosts = state(qlab)
    assert (machines[ACPI]["power"], machines[ACPI]["heartbeat"]) == ("running", "lost")
    lab("fault", qlab, "vm-unhang", ACPI)
    machines, _hosts = state(qlab)
    assert machines[ACPI]["heartbeat"] == "ok"
    proc = lab("fault", qlab, "vm-unhang", HUNG, check=False)  # no OS: nothing to un-hang
    assert proc.returncode == 2 and "hung guest" in proc.stderr


def test_vm_ignore_graceful_makes_the_guest_ignore_acpi(qlab):
    machines, _hosts = state(qlab)
    domain = machines[ACPI]["name"]
    lab("fault", qlab, "vm-ignore-graceful", ACPI)
    # ACPI: libvirt returns at once, and the guest stays up. (The agent's shutdown is ignored too,
    # but libvirt then waits 60 s for a SHUTDOWN event inside virDomainShutdown: not done here.)
    virsh(URI, "shutdown", "--mode", "acpi", domain)
    time.sleep(4)
    assert domstate_reason(domain) == "running (booted)"
    after, _hosts = state(qlab)
    assert counts(after[ACPI]) == counts(machines[ACPI]) and after[ACPI]["heartbeat"] == "ok"


def test_a_guest_whose_agent_takes_the_shutdown_and_stays_up_is_forced_off_within_the_timeout(qlab):
    """The guest (still ignoring graceful requests, from the test above) has an agent that
    answers: libvirt's virDomainShutdown then waits 60 s; the restart keeps its own budget."""
    before, _hosts = state(qlab)
    target = before[ACPI]
    stops = len(stop_reasons(target["name"]))
    begun = time.monotonic()
    with lab_env(qlab):
        proc = playbook(os.path.join(qlab, "inventory"), "playbooks/restart_vm.yml", "-e",
                        json.dumps({"target": target["uuid"], "reason": "ignores graceful",
                                    "restart_vm_shutdown_timeout": 5}))
    took = time.monotonic() - begun
    assert "shutdown=timeout, poweroff=ok, start=ok" in proc.stdout, proc.stdout[-2000:]
    assert took < 45, took  # 60 s and more before the fix
    after, _hosts = state(qlab)
    assert tuple(a - b for a, b in zip(counts(after[ACPI]), counts(before[ACPI]))) == (1, 0, 1)
    assert stop_reasons(target["name"])[stops:] == ["destroyed"]  # forced off, at libvirt's word
    assert after[ACPI]["power"] == "running"


def test_vm_crash_kills_one_guest_and_counts_nowhere(qlab):
    before, _hosts = state(qlab)
    lab("fault", qlab, "vm-crash", ACPI)
    machines, _hosts = state(qlab)
    assert machines[ACPI]["power"] == "stopped" and machines[ACPI]["libvirt_state"] == "shutoff:crashed"
    assert domstate_reason(machines[ACPI]["name"]) == "shut off (crashed)"
    assert counts(machines[ACPI]) == counts(before[ACPI]) and machines[HUNG]["power"] == "running"
    virsh(URI, "start", machines[ACPI]["name"])  # back on, past the lab, for host-down to kill


def test_host_down_kills_its_guests_as_a_power_loss(qlab):
    before, _hosts = state(qlab)
    lab("fault", qlab, "host-down", HOST)
    machines, hosts = state(qlab)
    assert hosts[HOST]["state"] == "down"
    for name in (ACPI, HUNG):
        m = machines[name]
        assert m["power"] == "stopped" and m["libvirt_state"] == "shutoff:crashed", m
        assert domstate_reason(m["name"]) == "shut off (crashed)"
        assert stop_reasons(m["name"])[-1] == "crashed"
        assert counts(m) == counts(before[name])  # a fault is no request: it counts nowhere
    begun = time.monotonic()
    hv, _vms, _stderr = read_inventory(qlab)
    assert hv[HOST]["virt_connection_state"] == "unreachable"
    assert time.monotonic() - begun < CONNECT_TIMEOUT + 10  # refused, not waited for


def test_down_removes_its_domains_and_its_proxy(qlab):
    rec = json.load(open(os.path.join(qlab, "lab.json"), encoding="utf-8"))["endpoints"][0]["rec"]
    domains = [d["domain"] for d in rec["domains"]]
    pids = rec["pids"]
    assert len(domains) == 2 and len(pids) == 1
    lab("down", qlab)
    listed = virsh(URI, "list", "--all", "--name").splitlines()
    assert not set(domains) & set(listed)

    def alive(pid):
        try:
            with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    assert not any(alive(p) for p in pids)
    assert not os.path.exists(rec["socket"])


@pytest.mark.parametrize("change, words", [
    (lambda ep: ep["clusters"][0]["hosts"].append({"name": "kvm2"}), ["hosts", "one host per endpoint"]),
    (lambda ep: ep["clusters"][0]["hosts"][0]["vms"].append({"name": "a/b"}), ["name", "'/'"]),
    (lambda ep: ep["clusters"][0]["hosts"][0]["vms"][1].update(heartbeat="ok"), ["heartbeat ok", "hung guest"]),
    (lambda ep: ep["clusters"][0]["hosts"][0]["vms"][0].update(memory_mb=64), ["memory_mb", "128"]),
], ids=["two hosts", "slash in a name", "hung guest with an agent", "too little memory"])
def test_what_the_qemu_driver_cannot_take_is_refused_at_up(tmp_path, change, words):
    bad = estate()
    change(bad["endpoints"][0])
    (tmp_path / "lab.yml").write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
    proc = lab("up", str(tmp_path / "lab.yml"), str(tmp_path / "d"), check=False)
    assert proc.returncode == 1, proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr
    assert not os.path.exists(tmp_path / "d" / "inventory")
