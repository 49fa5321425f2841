"""What a person running a power task sees, end to end on the lab's Oracle VM and vSphere
peers, through the real ansible-playbook: progress lines during a long wait, `changed`
and a hint that fit a partial run, the power path in --diff, and with -vvv one line per
API call with its time, never the password."""

import json
import re

import pytest

from helpers import lab, playbook, running_lab, task_results

OVM_PASSWORD = "Ovm feedback pw 'q' 7f3e"
VMW_PASSWORD = "Vmw feedback pw 9c1d"
POWER_PLAY = """
- hosts: "{{ target }}"
  gather_facts: false
  tasks:
    - name: Power
      virtops.unified.vm_power: "{{ power }}"
"""


def vm(name, **kw):
    return dict({"name": name, "power": "running", "memory_mb": 512, "cpus": 1}, **kw)


OVM_LAB = {"endpoints": [{
    "name": "o1", "platform": "ovm", "credentials": "inline", "username": "lab-admin", "password": OVM_PASSWORD,
    "clusters": [{"name": "pool1", "hosts": [
        {"name": "ovs01", "state": "connected", "vms": [vm("web01"), vm("slow01")]},
        {"name": "ovs02", "state": "connected", "vms": []}]}],
}]}
VMW_LAB = {"endpoints": [{
    "name": "vc1", "platform": "vmware", "credentials": "inline", "username": "labuser", "password": VMW_PASSWORD,
    "clusters": [{"name": "prod", "hosts": [
        {"name": "esx01", "state": "connected", "vms": [vm("notools01", heartbeat="none")]}]}],
}]}


@pytest.fixture(scope="module")
def ovm(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("feedback-ovm"), OVM_LAB) as labdir:
        yield labdir


@pytest.fixture(scope="module")
def vmw(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("feedback-vmw"), VMW_LAB) as labdir:
        yield labdir


def power(labdir, target, args, *extra, check=False):
    play = "%s/power.yml" % labdir
    with open(play, "w", encoding="utf-8") as fh:
        fh.write(POWER_PLAY)
    return playbook("%s/inventory" % labdir, play, "-e", json.dumps({"target": target, "power": args}), *extra,
                    check=check, timeout=300)


def restart(labdir, target, *extra):
    return playbook("%s/inventory" % labdir, "playbooks/restart_vm.yml", "-e",
                    json.dumps({"target": target, "reason": "feedback test"}), *extra, timeout=300)


def test_a_shutdown_the_guest_ignores_says_so_every_15_s_and_fails_changed_with_the_force_hint(ovm):
    lab("fault", ovm, "vm-ignore-graceful", "slow01")
    proc = power(ovm, "slow01", {"state": "stopped", "shutdown_timeout": 20}, "-v")
    out = proc.stdout
    assert proc.returncode == 2, out + proc.stderr
    begun = out.index("slow01: shutdown (waiting up to 20s for stopped)")
    waiting = out.index("slow01: Oracle VM job 'Stop VM: slow01' RUNNING (15 s of 20 s)")
    assert begun < waiting < out.index("still RUNNING after 20 s: aborting it"), out
    result = task_results(out, "Power")[0]
    assert result["changed"] is True, result  # the stop was asked: the guest may still act on it
    assert [(a["action"], a["result"]) for a in result["actions"]] == [("shutdown", "timeout")]
    assert "use force: true to escalate to a hard power-off" in result["msg"]
    assert result["after"]["power_state"] == "running"


def test_vvv_shows_each_call_with_its_time_and_never_the_password(ovm):
    proc = restart(ovm, "web01", "-vvv")
    both = proc.stdout + proc.stderr
    assert re.search(r"^  ovm 127\.0\.0\.1:\d+: PUT Vm/[0-9a-f]{32}/stop 200 \d+ ms$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^  ovm 127\.0\.0\.1:\d+: PUT Vm/[0-9a-f]{32}/start 200 \d+ ms$", proc.stdout, re.M)
    assert re.search(r"^  ovm 127\.0\.0\.1:\d+: GET Job/\d+ 200 \d+ ms$", proc.stdout, re.M)
    assert OVM_PASSWORD not in both
    plain = restart(ovm, "web01")
    assert not re.search(r"ovm 127\.0\.0\.1:\d+: (GET|PUT) ", plain.stdout + plain.stderr), plain.stdout
    assert "web01: shutdown (waiting up to" in plain.stdout  # the progress lines are there without -v


def test_diff_shows_the_power_path_planned_and_as_it_ran(ovm):
    planned = power(ovm, "web01", {"state": "restarted"}, "--check", "--diff", check=True).stdout
    assert '+    "path": "running -(shutdown)-> stopped -(start)-> running (planned)",' in planned, planned
    ran = power(ovm, "web01", {"state": "restarted"}, "--diff", check=True).stdout
    assert '+    "path": "running -(shutdown)-> stopped -(start)-> running",' in ran, ran
    assert '     "power_state_raw": "RUNNING"' in ran  # before and after: it does not disappear
    stop = power(ovm, "web01", {"state": "stopped"}, "--diff", check=True).stdout
    assert '-    "power_state_raw": "RUNNING"' in stop and '+    "power_state_raw": "STOPPED"' in stop, stop
    power(ovm, "web01", {"state": "started"}, check=True)


def test_a_heartbeat_that_never_comes_says_power_cycled_and_what_to_check_not_force(vmw):
    proc = power(vmw, "notools01", {"state": "restarted", "force": True, "wait_timeout": 17,
                                    "wait_for_heartbeat": True}, "-v")
    out = proc.stdout
    assert proc.returncode == 2, out + proc.stderr
    assert "notools01: waiting up to 17s for the guest heartbeat" in out
    assert "notools01: still waiting for guest heartbeat (15 s of 17 s, state poweredOn, heartbeat unknown)" in out, out
    result = task_results(out, "Power")[0]
    assert result["changed"] is True
    assert [a["action"] for a in result["actions"]] == ["shutdown", "poweroff", "start", "heartbeat"]
    assert "force" not in result["msg"]
    assert "notools01 was power-cycled and runs" in result["msg"] and "VMware Tools" in result["msg"]
    assert VMW_PASSWORD not in out + proc.stderr
