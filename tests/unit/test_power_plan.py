"""The planner and executor, through a scripted driver (a mock seam).

The real drivers are exercised in tests/integration and in
test_libvirt_driver.py (libvirt's test:/// driver)."""

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import model, power
from ansible_collections.virtops.unified.plugins.module_utils.driver import ACTIONS, Driver


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
    capabilities = frozenset(ACTIONS)
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


# --- wait_for_heartbeat: auto, and one read before and after (one connection) -----------------------
@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), ("auto", "auto"), ("AUTO", "auto"), ("true", True), ("yes", True),
    ("no", False), ("false", False), (None, False), ("1", True), ("off", False),
])
def test_heartbeat_mode_reads_booleans_and_auto(value, expected):
    assert power.heartbeat_mode(value) == expected


def test_heartbeat_mode_refuses_anything_else():
    with pytest.raises(model.VirtError, match="true, false or auto"):
        power.heartbeat_mode("sometimes")


class AgentDriver(ScriptedDriver):
    """Like libvirt: find() and refresh() leave the heartbeat unknown unless asked for it."""

    capabilities = frozenset(ACTIONS) | {"heartbeat"}

    def __init__(self, state, agent=model.HB_OK, **kw):
        super().__init__(state, **kw)
        self.agent = agent
        self.pings = 0

    def find(self, name=None, uuid=None):
        found = super().find(name=name, uuid=uuid)
        return self.refresh(found)

    def refresh(self, vm, heartbeat=False):
        read = super().refresh(vm)
        read.heartbeat = model.HB_UNKNOWN
        if heartbeat and read.power_state == model.RUNNING:
            self.pings += 1
            read.heartbeat = self.agent
        return read


@pytest.mark.parametrize("agent,waits", [(model.HB_OK, True), (model.HB_LOST, False), (model.HB_UNKNOWN, False)])
def test_auto_waits_for_the_heartbeat_only_if_the_guest_answered_before(agent, waits):
    drv = AgentDriver("running", agent=agent)
    result = run(drv, state="restarted", force=True, shutdown_timeout=1, wait_timeout=1, wait_for_heartbeat="auto")
    assert [a["action"] for a in result["actions"]] == ["shutdown", "start"] + (["heartbeat"] if waits else [])
    assert result["before"]["heartbeat"] == agent  # read before acting, once, and reported
    assert result["after"]["heartbeat"] == (model.HB_OK if waits else model.HB_UNKNOWN)  # read again when waited on
    assert drv.pings == (2 if waits else 1)


def test_auto_in_check_mode_plans_from_the_heartbeat_it_reads():
    drv = AgentDriver("running", agent=model.HB_OK)
    planned = power.apply(drv, {"name": "vm1", "state": "restarted", "wait_for_heartbeat": "auto"}, check_mode=True)
    assert [a["action"] for a in planned["actions"]] == ["shutdown", "start", "heartbeat"]
    assert planned["before"]["heartbeat"] == model.HB_OK and planned["after"] == planned["before"]
    assert drv.calls == []


def test_auto_on_a_vm_that_is_off_starts_it_without_waiting_for_its_guest():
    drv = AgentDriver("stopped")
    result = run(drv, state="restarted", wait_for_heartbeat="auto", wait_timeout=1)
    assert [a["action"] for a in result["actions"]] == ["start"] and drv.pings == 0


def test_nothing_to_do_reads_no_heartbeat():
    drv = AgentDriver("running")
    result = run(drv, state="started", wait_for_heartbeat="auto")
    assert result["changed"] is False and drv.pings == 0


def test_before_and_after_carry_what_a_runbook_reports():
    result = run(ScriptedDriver("running"), state="restarted", wait_timeout=1, shutdown_timeout=1)
    for key in ("host", "power_state", "power_state_raw", "heartbeat", "name", "uuid"):
        assert key in result["before"] and key in result["after"]
    assert result["after"]["power_state"] == "running"


def test_a_refusal_for_the_wrong_host_keeps_where_the_vm_is():
    drv = ScriptedDriver("running", host="kvm02")
    with pytest.raises(model.StateConflict) as err:
        run(drv, state="restarted", expected_host="kvm01")
    assert err.value.before["host"] == "kvm02"  # what the runbook's message names


# --- vm_migrate with moves: one connection, in order, stop at the first failure ----------------------
class MigratingDriver(Driver):
    platform = "fake"
    capabilities = frozenset({"migrate"})

    def __init__(self, vms, refuse=()):
        self.vms = {uuid: machine("running") for uuid in vms}
        for uuid, vm in self.vms.items():
            vm.uuid, vm.name, vm.host = uuid, "vm-" + uuid, "h1"
        self.refuse = set(refuse)
        self.calls = []
        self.closed = 0

    def find(self, name=None, uuid=None):
        if uuid not in self.vms:
            raise model.NotFound("no VM with uuid %s" % uuid)
        return self.refresh(self.vms[uuid])

    def refresh(self, vm, heartbeat=False):
        src = self.vms[vm.uuid]
        return model.Machine(kind=src.kind, platform="fake", name=src.name, uuid=src.uuid, host=src.host,
                             power_state=src.power_state, power_state_raw=src.power_state_raw)

    def migrate(self, vm, host_name, timeout=3600):
        self.calls.append((vm.uuid, host_name))
        if vm.uuid in self.refuse:
            raise model.VirtError("vMotion of %s refused" % vm.name)
        self.vms[vm.uuid].host = host_name

    def close(self):
        self.closed += 1


class Trail:
    def __init__(self, log, move, fail_outcome=False):
        self.log, self.move, self.fail_outcome = log, move, fail_outcome

    def intent(self, vm, steps):
        self.log.append(("intent", vm.uuid, steps[0]["destination"]))

    def outcome(self, result):
        self.log.append(("outcome", self.move["uuid"], "failed" if result.get("failed") else "ok"))
        if self.fail_outcome:
            result.update(failed=True, msg="the outcome is not on record")


@pytest.fixture()
def migrating(monkeypatch):
    from ansible_collections.virtops.unified.plugins.module_utils import interface

    opened = []

    def connect(drv):
        def _connect(params, progress=None, trace=None):  # pylint: disable=unused-argument
            opened.append(params)
            if isinstance(drv, Exception):
                raise drv
            return drv
        monkeypatch.setattr(interface, "connect", _connect)
        return interface, opened
    return connect


def moves(*pairs):
    return [{"uuid": u, "name": None, "destination_host": d, "expected_host": None} for u, d in pairs]


def test_moves_go_in_order_through_one_connection_each_vm_on_record(migrating):
    drv = MigratingDriver(["a", "b", "c"])
    interface, opened = migrating(drv)
    log = []
    result = interface.run_migrate({"moves": moves(("a", "h2"), ("b", "h3"), ("c", "h1")), "expected_host": "h1"},
                                   trail=lambda move: Trail(log, move))
    assert len(opened) == 1 and drv.closed == 1
    assert drv.calls == [("a", "h2"), ("b", "h3")]  # c is already on h1
    assert [m["result"] for m in result["moves"]] == ["moved", "moved", "already there"]
    assert [m["after"]["host"] for m in result["moves"]] == ["h2", "h3", "h1"]
    assert result["changed"] is True
    assert log == [("intent", "a", "h2"), ("outcome", "a", "ok"), ("intent", "b", "h3"), ("outcome", "b", "ok")]


def test_moves_stop_at_the_first_failure_and_say_what_was_moved(migrating):
    drv = MigratingDriver(["a", "b", "c"], refuse={"b"})
    interface, _opened = migrating(drv)
    log = []
    with pytest.raises(model.VirtError) as err:
        interface.run_migrate({"moves": moves(("a", "h2"), ("b", "h2"), ("c", "h2"))},
                              trail=lambda move: Trail(log, move))
    assert drv.calls == [("a", "h2"), ("b", "h2")]
    report = err.value.moves
    assert [m["result"] for m in report] == ["moved", "failed", "not tried"]
    assert "refused" in report[1]["msg"] and report[2]["msg"] == "not tried, the moves stopped at vm-b"
    assert "Moved before it: vm-a (to h2); not tried: c" in str(err.value)
    assert log[-1] == ("outcome", "b", "failed")  # its intent was written: so is its outcome
    failed = interface.failure(err.value)
    assert failed["moves"] == report and failed["failed"] is True


def test_a_vm_refused_before_its_move_has_no_audit_lines(migrating):
    drv = MigratingDriver(["a", "b"])
    drv.vms["b"].host = "h9"  # not where the plan thinks
    interface, _opened = migrating(drv)
    log = []
    with pytest.raises(model.StateConflict):
        interface.run_migrate({"moves": moves(("a", "h2"), ("b", "h2")), "expected_host": "h1"},
                              trail=lambda move: Trail(log, move))
    assert [entry[:2] for entry in log] == [("intent", "a"), ("outcome", "a")]


def test_an_outcome_that_cannot_be_written_stops_the_moves(migrating):
    drv = MigratingDriver(["a", "b"])
    interface, _opened = migrating(drv)
    with pytest.raises(model.VirtError, match="not on record") as err:
        interface.run_migrate({"moves": moves(("a", "h2"), ("b", "h2"))},
                              trail=lambda move: Trail([], move, fail_outcome=True))
    assert drv.calls == [("a", "h2")]
    assert [m["result"] for m in err.value.moves] == ["failed", "not tried"]


def test_moves_in_check_mode_move_nothing(migrating):
    drv = MigratingDriver(["a", "b"])
    interface, _opened = migrating(drv)
    result = interface.run_migrate({"moves": moves(("a", "h2"), ("b", "h1"))}, check_mode=True)
    assert drv.calls == [] and [m["result"] for m in result["moves"]] == ["would move", "already there"]


def test_no_connection_no_move_tried(migrating):
    interface, _opened = migrating(model.Unreachable("vcenter down"))
    with pytest.raises(model.Unreachable) as err:
        interface.run_migrate({"moves": moves(("a", "h2"), ("b", "h2"))})
    assert [m["result"] for m in err.value.moves] == ["not tried", "not tried"]
    assert "Nothing was moved; not tried: a, b" in str(err.value)


def test_migrate_spec_takes_moves_or_one_vm():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.virtops.unified.plugins.module_utils import interface

    def errors(args):
        return ArgumentSpecValidator(interface.MIGRATE_SPEC, **interface.MIGRATE_RULES).validate(args).error_messages

    assert errors({"uuid": "a", "destination_host": "h2"}) == []
    assert errors({"moves": [{"uuid": "a", "destination_host": "h2"}]}) == []
    assert errors({"uuid": "a"})  # no destination
    assert errors({"moves": [{"uuid": "a", "destination_host": "h2"}], "uuid": "b"})
    assert errors({"moves": [{"uuid": "a", "destination_host": "h2"}], "destination_host": "h2"})
    assert errors({"moves": [{"destination_host": "h2"}]})  # which VM?
    assert errors({"moves": [{"uuid": "a", "destination": "h2"}]})  # a typo is not ignored


# --- vm_recover with recoveries: in order, one connection per endpoint, past a VM that fails ---------
class RecoveringDriver(MigratingDriver):
    """A manager (REREGISTER, as vSphere): the VMs of the dead host h1, stopped."""

    platform = "vmware"
    poll_interval = 0.01
    max_poll_interval = 0.01

    def __init__(self, vms, refuse=()):
        super().__init__(vms, refuse)
        for vm in self.vms.values():
            vm.power_state = vm.power_state_raw = "stopped"

    def recover(self, vm, host_name, timeout=600):
        self.calls.append((vm.uuid, host_name))
        if vm.uuid in self.refuse:
            raise model.VirtError("PowerOnVM_Task of %s: InvalidHostState" % vm.name)
        self.vms[vm.uuid].host = host_name
        return self.refresh(vm)

    def power(self, vm, action, timeout=600):
        self.vms[vm.uuid].power_state = self.vms[vm.uuid].power_state_raw = "running"


def recoveries(*pairs):
    return [{"uuid": u, "name": None, "destination_host": d, "failed_host": "h1"} for u, d in pairs]


def recover_params(pairs, **kw):
    return dict({"recoveries": recoveries(*pairs), "wait_timeout": 5, "wait_for_heartbeat": False,
                 "platform": "vmware", "hostname": "vc1"}, **kw)


def test_recoveries_go_in_order_through_one_connection_past_a_vm_that_fails(migrating):
    drv = RecoveringDriver(["a", "b", "c"], refuse={"b"})
    interface, opened = migrating(drv)
    log = []
    result = interface.run_recover(recover_params([("a", "h2"), ("b", "h3"), ("c", "h2")]),
                                   trail=lambda r: Trail(log, r))
    assert len(opened) == 1 and drv.closed == 1  # one login for the three
    assert drv.calls == [("a", "h2"), ("b", "h3"), ("c", "h2")]  # b failed: c was still recovered
    report = result["recoveries"]
    assert [r["result"] for r in report] == ["recovered", "failed", "recovered"]
    assert [r["after"]["host"] for r in (report[0], report[2])] == ["h2", "h2"]
    assert "InvalidHostState" in report[1]["msg"]
    assert result["failed"] is True and "1 of 3 VM(s) not recovered" in result["msg"]
    assert "Recovered: vm-a (on h2), vm-c (on h2)" in result["msg"]
    # each VM on record on its own, the failed one too
    assert log == [("intent", "a", "h2"), ("outcome", "a", "ok"), ("intent", "b", "h3"), ("outcome", "b", "failed"),
                   ("intent", "c", "h2"), ("outcome", "c", "ok")]


def test_recoveries_open_one_connection_per_endpoint_keeping_the_order(migrating):
    """A platform with one host per endpoint (libvirt) starts each VM through its destination's:
    one connection each, opened at its first use and kept, the order the one asked for."""
    drv = RecoveringDriver(["a", "b", "c"])
    interface, opened = migrating(drv)
    endpoints = ["kvm2", "kvm3", "kvm2"]
    result = interface.run_recover(recover_params([("a", "h2"), ("b", "h3"), ("c", "h2")]),
                                   connection=lambda i: {"platform": "vmware", "hostname": endpoints[i]})
    assert [p["hostname"] for p in opened] == ["kvm2", "kvm3"]
    assert drv.calls == [("a", "h2"), ("b", "h3"), ("c", "h2")]
    assert [r["result"] for r in result["recoveries"]] == ["recovered"] * 3 and "failed" not in result


def test_an_endpoint_that_cannot_be_reached_fails_only_its_vms(migrating, monkeypatch):
    drv = RecoveringDriver(["a", "b"])
    interface, opened = migrating(drv)

    def connect(params, progress=None, trace=None):  # pylint: disable=unused-argument
        opened.append(params)
        if params["hostname"] == "down":
            raise model.Unreachable("kvm3 does not answer")
        return drv
    monkeypatch.setattr(interface, "connect", connect)
    endpoints = ["down", "kvm2", "down"]
    result = interface.run_recover(recover_params([("a", "h3"), ("b", "h2"), ("a", "h3")]),
                                   connection=lambda i: {"platform": "vmware", "hostname": endpoints[i]})
    assert [p["hostname"] for p in opened] == ["down", "kvm2"]  # not tried twice
    assert [r["result"] for r in result["recoveries"]] == ["failed", "recovered", "failed"]
    assert result["failed"] is True and "does not answer" in result["recoveries"][0]["msg"]


def test_a_vm_already_running_elsewhere_is_left_alone_and_check_mode_starts_nothing(migrating):
    drv = RecoveringDriver(["a", "b"])
    drv.vms["a"].host, drv.vms["a"].power_state = "h3", "running"
    interface, _opened = migrating(drv)
    log = []
    result = interface.run_recover(recover_params([("a", "h2"), ("b", "h2")]), check_mode=True,
                                   trail=lambda r: Trail(log, r))
    assert drv.calls == [] and log == []
    assert [r["result"] for r in result["recoveries"]] == ["already running", "would recover"]
    assert result["recoveries"][0]["skipped_reason"] == "already running on h3"


def test_an_outcome_that_cannot_be_written_stops_the_recoveries(migrating):
    drv = RecoveringDriver(["a", "b"])
    interface, _opened = migrating(drv)
    result = interface.run_recover(recover_params([("a", "h2"), ("b", "h2")]),
                                   trail=lambda r: Trail([], r, fail_outcome=True))
    assert drv.calls == [("a", "h2")] and result["failed"] is True
    assert [r["result"] for r in result["recoveries"]] == ["failed", "not tried"]


def test_recover_spec_takes_recoveries_or_one_vm():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.virtops.unified.plugins.module_utils import interface

    def errors(args):
        return ArgumentSpecValidator(interface.RECOVER_SPEC, **interface.RECOVER_RULES).validate(args).error_messages

    assert errors({"uuid": "a", "destination_host": "h2"}) == []
    assert errors({"recoveries": [{"uuid": "a", "destination_host": "h2"}]}) == []
    assert errors({"uuid": "a"})  # no destination
    assert errors({"recoveries": [{"uuid": "a", "destination_host": "h2"}], "uuid": "b"})
    assert errors({"recoveries": [{"uuid": "a", "destination_host": "h2"}], "destination_host": "h2"})
    assert errors({"recoveries": [{"destination_host": "h2"}]})  # which VM?
    assert errors({"recoveries": [{"uuid": "a", "destination": "h2"}]})  # a typo is not ignored


def test_a_plan_that_needs_a_primitive_the_platform_lacks_is_refused_before_anything_is_recorded():
    class NoReset(ScriptedDriver):
        capabilities = frozenset(ACTIONS) - {"reset"}

    drv = NoReset(model.RUNNING)
    recorded = []
    with pytest.raises(model.Unsupported, match="state reset needs reset, which fake does not offer; nothing was done"):
        power.apply(drv, {"name": "vm1", "state": "reset"}, intent=lambda vm, steps: recorded.append(steps))
    assert recorded == [] and drv.calls == []
    with pytest.raises(model.Unsupported, match="Use state: restarted"):
        power.apply(drv, {"name": "vm1", "state": "reset"}, check_mode=True)
