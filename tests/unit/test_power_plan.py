"""The planner and executor, through a scripted driver (a mock seam).

The real drivers are exercised in tests/integration and in
test_libvirt_driver.py (libvirt's test:/// driver)."""

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import model, power
from ansible_collections.virtops.unified.plugins.module_utils.driver import Driver


def machine(state, raw=None, **facts):
    return model.Machine(kind=model.VM, platform="fake", name="vm1", uuid="u-1", host="h1",
                         power_state=state, power_state_raw=raw or state, facts=facts)


def actions(state, current, **kw):
    return [s["action"] for s in power.plan(machine(current), state, **kw)]


@pytest.mark.parametrize("state,current,expected", [
    ("started", "running", []),
    ("started", "stopped", ["start"]),
    ("started", "paused", ["resume"]),
    ("started", "suspended", ["start"]),
    ("stopped", "stopped", []),
    ("stopped", "running", ["shutdown"]),
    ("stopped", "crashed", ["poweroff"]),
    ("poweredoff", "running", ["poweroff"]),
    ("poweredoff", "suspended", ["poweroff"]),
    ("poweredoff", "stopped", []),
    ("restarted", "running", ["shutdown", "start"]),
    ("restarted", "stopped", ["start"]),
    ("reset", "running", ["reset"]),
    ("reset", "paused", ["reset", "resume"]),
    ("reset", "stopped", ["start"]),
    ("suspended", "running", ["suspend"]),
    ("suspended", "suspended", []),
])
def test_plan_table(state, current, expected):
    assert actions(state, current) == expected


def test_graceful_step_escalates_only_with_force():
    assert "escalate_to" not in power.plan(machine("running"), "stopped")[0]
    step = power.plan(machine("running"), "stopped", force=True, shutdown_timeout=7, wait_timeout=9)[0]
    assert step["timeout"] == 7 and step["escalate_to"] == "poweroff" and step["escalate_timeout"] == 9


@pytest.mark.parametrize("state,current", [
    ("stopped", "paused"), ("stopped", "suspended"), ("suspended", "stopped"),
    ("started", "unknown"), ("restarted", "transitioning"),
])
def test_conflicts_are_refused(state, current):
    with pytest.raises(model.StateConflict):
        power.plan(machine(current), state)


def test_transient_domain_is_never_powered_off():
    with pytest.raises(model.StateConflict, match="transient"):
        power.plan(machine("running", persistent=False), "restarted")
    assert actions("reset", "running") == ["reset"]


def test_heartbeat_wait_is_appended_after_start():
    assert actions("started", "stopped", wait_for_heartbeat=True) == ["start", "heartbeat"]
    assert actions("started", "running", wait_for_heartbeat=True) == []


class ScriptedDriver(Driver):
    """Applies primitives to an in-memory VM; `deaf` ignores shutdown."""

    platform = "fake"
    poll_interval = 0.01
    max_poll_interval = 0.01

    def __init__(self, state, deaf=False, host="h1", no_tools=False):
        self.vm = machine(state)
        self.vm.host = host
        self.deaf = deaf
        self.no_tools = no_tools
        self.calls = []

    def find(self, name=None, uuid=None):
        return model.pick_one([self.vm], name=name, uuid=uuid)

    def refresh(self, vm, heartbeat=False):
        fields = ("kind", "platform", "name", "uuid", "host", "power_state", "power_state_raw", "heartbeat")
        return model.Machine(**{k: getattr(self.vm, k) for k in fields})

    def power(self, vm, action, timeout=600):
        self.calls.append(action)
        if action == "shutdown" and self.no_tools:
            raise model.StateConflict("guest tools not running")
        target = {"start": "running", "poweroff": "stopped", "reset": "running", "resume": "running",
                  "suspend": "suspended", "shutdown": None if self.deaf else "stopped"}[action]
        if target:
            self.vm.power_state = self.vm.power_state_raw = target
            if target == "running":
                self.vm.heartbeat = model.HB_OK


def run(drv, **params):
    params.setdefault("name", "vm1")
    return power.apply(drv, params)


def test_deaf_guest_escalates_after_timeout_and_records_every_step():
    drv = ScriptedDriver("running", deaf=True)
    result = run(drv, state="restarted", force=True, shutdown_timeout=0.2, wait_timeout=2)
    assert drv.calls == ["shutdown", "poweroff", "start"]
    assert [(a["action"], a["result"]) for a in result["actions"]] == [
        ("shutdown", "timeout"), ("poweroff", "ok"), ("start", "ok")]
    assert result["actions"][0]["elapsed"] >= 0.2
    assert result["changed"] and result["after"]["power_state"] == "running"


def test_deaf_guest_without_force_times_out_and_does_nothing_more():
    drv = ScriptedDriver("running", deaf=True)
    with pytest.raises(model.Timeout) as err:
        run(drv, state="stopped", shutdown_timeout=0.1)
    assert drv.calls == ["shutdown"]
    assert err.value.actions[0]["result"] == "timeout"


def test_check_mode_plans_the_same_steps_and_calls_nothing():
    drv = ScriptedDriver("running", deaf=True)
    planned = power.apply(drv, {"name": "vm1", "state": "restarted", "force": True}, check_mode=True)
    assert drv.calls == []
    assert planned["changed"] is True
    assert [a["action"] for a in planned["actions"]] == ["shutdown", "start"]
    assert planned["actions"][0]["escalate_to"] == "poweroff"
    assert all(a["result"] == "planned" for a in planned["actions"])


def test_idempotent_when_already_in_state():
    drv = ScriptedDriver("stopped")
    result = run(drv, state="stopped")
    assert result["changed"] is False and result["actions"] == [] and drv.calls == []


def test_expected_host_mismatch_refuses_before_any_call():
    drv = ScriptedDriver("running", host="kvm02")
    with pytest.raises(model.StateConflict, match="runs on kvm02, not on the expected host kvm01"):
        run(drv, state="restarted", expected_host="kvm01")
    assert drv.calls == []


def test_diff_shows_state_change():
    result = run(ScriptedDriver("running"), state="stopped")
    assert result["diff"]["before"]["power_state"] == "running"
    assert result["diff"]["after"]["power_state"] == "stopped"


def test_refused_graceful_shutdown_escalates_at_once_with_force():
    drv = ScriptedDriver("running", no_tools=True)
    result = run(drv, state="restarted", force=True, shutdown_timeout=30, wait_timeout=2)
    assert drv.calls == ["shutdown", "poweroff", "start"]
    assert result["actions"][0]["result"] == "refused" and "tools" in result["actions"][0]["error"]
    assert result["actions"][0]["elapsed"] < 1


def test_refused_graceful_shutdown_without_force_is_an_error():
    drv = ScriptedDriver("running", no_tools=True)
    with pytest.raises(model.StateConflict):
        run(drv, state="stopped")
    assert drv.calls == ["shutdown"]
