"""vm_power, vm_info and restart_vm.yml on a real libvirtd + QEMU/KVM.

Two guests: one with no OS (ignores ACPI shutdown: the "hung VM") and a
kernel + busybox guest that powers off on ACPI and runs the QEMU guest agent.
Every end state is read back with virsh, not with our own code.
"""

import json
import re
import time

import pytest

from helpers import adhoc, playbook, virsh
from libvirt_peer import URI, define_and_start, domid, domstate, guests, remove, start, stop_reasons, wait_agent


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    start()
    names = {}
    try:
        names = define_and_start({"hung": "hung", "acpi": "acpi"}, tmp_path_factory.mktemp("doms"))
        inv = tmp_path_factory.mktemp("inv") / "qemu.libvirt.yml"
        inv.write_text("plugin: virtops.unified.libvirt\nhypervisors:\n"
                       "  - {name: kvmlab, uri: '%s', cluster: lab}\n" % URI)
        yield names, inv
    finally:
        remove(names.values())


def ensure_running(name):
    if domstate(name) != "running":
        virsh(URI, "start", name)


def explicit(name, **args):
    """Module args naming the platform and endpoint explicitly (no inventory)."""
    return dict(platform="libvirt", uri=URI, hypervisor_name="kvmlab", name=name, **args)


def steps(stdout):
    found = re.search(r'"steps: ([^"]*)"', stdout)
    assert found, stdout
    return found.group(1)


def test_restart_vm_escalates_on_a_guest_that_ignores_acpi(lab):
    names, inv = lab
    name = names["hung"]
    ensure_running(name)
    before, stops = domid(name), len(stop_reasons(name))
    begun = time.monotonic()
    proc = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=%s" % name,
                    "-e", "restart_vm_shutdown_timeout=4", "-e", json.dumps({"reason": "integration test"}))
    took = time.monotonic() - begun
    assert steps(proc.stdout) == "shutdown=timeout, poweroff=ok, start=ok"
    assert stop_reasons(name)[stops:] == ["destroyed"]  # libvirt's word: the plug was pulled, once
    assert domstate(name) == "running"
    assert domid(name) != before, "the domain was not power-cycled"
    assert took >= 4
    assert "reason: integration test" in proc.stdout


def test_restart_vm_is_graceful_on_a_guest_that_honours_acpi(lab):
    names, inv = lab
    name = names["acpi"]
    ensure_running(name)
    wait_agent(name)
    before, stops = domid(name), len(stop_reasons(name))
    proc = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=%s" % name,
                    "-e", "restart_vm_shutdown_timeout=60")
    assert stop_reasons(name)[stops:] == ["shutdown"]  # libvirt's word: the guest shut itself down
    done = steps(proc.stdout)
    assert done.startswith("shutdown=ok, start=ok"), done
    assert "poweroff" not in done
    assert domstate(name) == "running" and domid(name) != before
    # the guest agent answered before, so the runbook waited for it again
    assert done.endswith("heartbeat=ok"), done
    assert virsh(URI, "qemu-agent-command", name, '{"execute":"guest-ping"}') == '{"return":{}}'


def test_check_mode_prints_the_plan_and_changes_nothing(lab):
    names, inv = lab
    name = names["hung"]
    ensure_running(name)
    before = domid(name)
    proc = playbook(inv, "playbooks/restart_vm.yml", "-e", "target=%s" % name, "--check")
    assert "PLAN (check mode, nothing done)" in proc.stdout
    assert steps(proc.stdout) == "shutdown=planned, start=planned"
    assert domid(name) == before and domstate(name) == "running"


def test_vm_power_states_idempotence_and_diff(lab):
    names, inv = lab
    name = names["acpi"]
    ensure_running(name)
    wait_agent(name)
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(name, state="stopped", shutdown_timeout=60), "--diff")
    out = res["localhost"]
    assert rc == 0 and out["changed"] and [a["action"] for a in out["actions"]] == ["shutdown"]
    assert virsh(URI, "domstate", name, "--reason") == "shut off (shutdown)"
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(name, state="stopped"))
    assert rc == 0 and res["localhost"]["changed"] is False and res["localhost"]["actions"] == []

    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(name, state="started", wait_for_heartbeat=True))
    assert rc == 0 and res["localhost"]["after"]["heartbeat"] == "ok"
    assert domstate(name) == "running"

    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(name, state="suspended"))
    assert rc == 0 and res["localhost"]["after"]["power_state"] == "suspended"
    assert domstate(name) == "shut off"
    assert re.search(r"Managed save:\s+yes", virsh(URI, "dominfo", name))

    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(name, state="started"))
    assert rc == 0 and domstate(name) == "running"
    assert re.search(r"Managed save:\s+no", virsh(URI, "dominfo", name))


def test_reset_reboots_without_power_cycle(lab):
    names, inv = lab
    name = names["acpi"]
    ensure_running(name)
    wait_agent(name)
    before = domid(name)
    boots = guests.console_count(name)
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(name, state="reset"))
    assert rc == 0 and res["localhost"]["changed"]
    assert guests.wait_console(name, timeout=60, min_count=boots + 1), "guest did not boot again after reset"
    assert domid(name) == before and domstate(name) == "running"


def test_poweredoff_is_immediate_on_the_hung_guest(lab):
    names, inv = lab
    name = names["hung"]
    ensure_running(name)
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(name, state="poweredoff"))
    assert rc == 0 and [a["action"] for a in res["localhost"]["actions"]] == ["poweroff"]
    assert virsh(URI, "domstate", name, "--reason") == "shut off (destroyed)"
    virsh(URI, "start", name)


def test_stopped_without_force_times_out_and_leaves_the_guest_running(lab):
    names, inv = lab
    name = names["hung"]
    ensure_running(name)
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(name, state="stopped", shutdown_timeout=2))
    out = res["localhost"]
    assert rc != 0 and out["error_type"] == "Timeout" and "timed out after 2s" in out["msg"]
    assert out["actions"][0]["result"] == "timeout"
    assert domstate(name) == "running"
    # what was done (a shutdown request that went unanswered) is still in the audit log
    with open(out["audit_log"], encoding="utf-8") as handle:
        last = [json.loads(line) for line in handle][-1]
    assert last["target"]["name"] == name and last["result"].startswith("failed: ")
    assert [(s["action"], s["result"]) for s in last["steps"]] == [("shutdown", "timeout")]


def test_action_plugin_fills_the_target_from_inventory(lab):
    names, inv = lab
    rc, res = adhoc(inv, names["hung"], "virtops.unified.vm_info", {})
    vm = res[names["hung"]]["vms"][0]
    assert rc == 0 and vm["host"] == "kvmlab" and vm["name"] == names["hung"]
    assert vm["uuid"] == virsh(URI, "domuuid", names["hung"])
    assert vm["power_state"] == {"running": "running", "shut off": "stopped"}[domstate(names["hung"])]


def test_expected_host_mismatch_is_refused_and_nothing_changes(lab):
    names, inv = lab
    name = names["hung"]
    ensure_running(name)
    before = domid(name)
    rc, res = adhoc(inv, name, "virtops.unified.vm_power", {"state": "poweredoff", "expected_host": "kvm99"})
    out = res[name]
    assert rc != 0 and "runs on kvmlab, not on the expected host kvm99" in out["msg"]
    assert domid(name) == before


def test_unknown_vm_names_close_matches(lab):
    names, inv = lab
    typo = names["acpi"][:-1]
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", explicit(typo, state="started"))
    out = res["localhost"]
    assert rc != 0 and out["error_type"] == "NotFound"
    assert typo in out["msg"] and names["acpi"] in out["msg"]


def test_unreachable_endpoint_and_bad_arguments(lab):
    inv = lab[1]
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power",
                    dict(platform="libvirt", uri="qemu+tcp://127.0.0.1:1/system", name="x", state="started"))
    out = res["localhost"]
    assert rc != 0 and out["error_type"] == "Unreachable" and "qemu+tcp://127.0.0.1:1/system" in out["msg"]
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power",
                    dict(platform="libvirt", uri=URI, name="x", uuid="y", state="started"))
    assert rc != 0 and "mutually exclusive" in res["localhost"]["msg"]
    rc, res = adhoc(inv, "localhost", "virtops.unified.vm_power", dict(platform="libvirt", uri=URI, name="x", state="sideways"))
    assert rc != 0 and "state" in res["localhost"]["msg"]
