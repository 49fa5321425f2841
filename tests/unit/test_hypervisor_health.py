"""The hypervisor_health event source's state machine, fed scripted bulk reads
and a fake clock (the integration tests run it on the real peers)."""

import asyncio
import datetime
import os
import sys

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import model, runbook

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


class Script:
    """A monitor whose one endpoint returns what the test sets."""

    def __init__(self, tmp_path, **cfg):
        args = {"platform": "libvirt", "uri": "test:///default", "interval": 1, "failure_interval": 10,
                "min_uptime": 30, "audit_log": str(tmp_path / "audit.jsonl"),
                "lock_dir": str(tmp_path / "locks")}
        args.update(cfg)
        self.clock = Clock()
        self.monitor = hh.Monitor(hh.parse_args(args), clock=self.clock)
        self.vms = [vm(), vm(uuid=OTHER, name="web01")]
        self.monitor.endpoints[0].read = lambda: model.Inventory(hosts=[], vms=list(self.vms))

    def set(self, **kw):
        self.vms[0] = vm(**kw)

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
    s = Script(tmp_path)
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
