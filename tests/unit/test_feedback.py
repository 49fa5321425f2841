"""What a person sees while a power task runs and after it: progress lines at least
every 15 s of every wait, `changed` after a partial run, hints that fit the step that
ran out of time, the power path in --diff, and the -vvv trace of each API call.

The waits run on a clock the test controls (the module's `time` replaced), so that
minutes of waiting take no time."""

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import driver as base
from ansible_collections.virtops.unified.plugins.module_utils import interface, model, ovm_driver, power, registry
from ansible_collections.virtops.unified.plugins.module_utils import vmware_driver
from ansible_collections.virtops.unified.plugins.module_utils.driver import ACTIONS, Driver


class Clock:
    """time.monotonic() and time.sleep() of a world where sleeping costs nothing."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture()
def clock(monkeypatch):
    fake = Clock()
    for module in (base, power, ovm_driver, vmware_driver):
        monkeypatch.setattr(module, "time", fake)
    return fake


def machine(state, heartbeat=model.HB_UNKNOWN, raw=None):
    return model.Machine(kind=model.VM, platform="fake", name="web01", uuid="u-1", host="h1",
                         power_state=state, power_state_raw=raw or state, heartbeat=heartbeat)


class FakeDriver(Driver):
    """An in-memory VM; `deaf`: its guest ignores shutdown; `silent`: its guest never reports
    a heartbeat; `slow`: seconds each power request takes (on the test's clock)."""

    capabilities = frozenset(ACTIONS) | {"heartbeat"}
    poll_interval = 0.5
    max_poll_interval = 2.0

    def __init__(self, state, platform="vmware", deaf=False, silent=False, slow=0.0, clock=None):
        self.platform = platform
        self.guest_agent = registry.get(platform).driver.guest_agent  # as that platform's driver says it
        self.vm = machine(state, model.HB_OK if state == model.RUNNING else model.HB_UNKNOWN)
        self.deaf, self.silent, self.slow, self.clock = deaf, silent, slow, clock
        self.calls = []

    def find(self, name=None, uuid=None):
        return model.pick_one([self.vm], name=name, uuid=uuid)

    def refresh(self, vm, heartbeat=False):
        if self.clock is not None:
            self.clock.now += 0.05  # a read takes a little time
        return model.Machine(kind=model.VM, platform=self.platform, name=self.vm.name, uuid=self.vm.uuid,
                             host=self.vm.host, power_state=self.vm.power_state,
                             power_state_raw=self.vm.power_state_raw, heartbeat=self.vm.heartbeat)

    def power(self, vm, action, timeout=600):
        self.calls.append(action)
        if self.clock is not None:
            self.clock.now += self.slow
        target = {"start": "running", "poweroff": "stopped", "reset": "running", "resume": "running",
                  "suspend": "suspended", "shutdown": None if self.deaf else "stopped"}[action]
        if target:
            self.vm.power_state = self.vm.power_state_raw = target
            self.vm.heartbeat = model.HB_UNKNOWN if target != "running" or self.silent else model.HB_OK


def apply(drv, lines=None, **params):
    params.setdefault("name", "web01")
    return power.apply(drv, params, progress=lines.append if lines is not None else None)


def gaps(stamps):
    return [b - a for a, b in zip(stamps, stamps[1:])]


# --- 1. a progress line at least every 15 s of each wait -------------------------------------------
def test_a_heartbeat_wait_says_so_at_least_every_15_s(clock):
    drv = FakeDriver("running", silent=True, clock=clock)
    lines, stamps = [], []

    def progress(line):
        lines.append(line)
        stamps.append(clock.now)
    with pytest.raises(model.Timeout):
        power.apply(drv, {"name": "web01", "state": "restarted", "force": True, "wait_timeout": 100,
                          "wait_for_heartbeat": True}, progress=progress)
    waiting = [(s, line) for s, line in zip(stamps, lines) if "still waiting for guest heartbeat" in line]
    assert len(waiting) == 6, lines  # 15, 30, ... 90 s of 100
    begun = [s for s, line in zip(stamps, lines) if "waiting up to 100s for the guest heartbeat" in line][0]
    assert all(gap <= 15.0 + 1e-6 for gap in gaps([begun] + [s for s, _line in waiting])), stamps
    assert "(15 s of 100 s, state running, heartbeat unknown)" in waiting[0][1]


def test_a_wait_shorter_than_15_s_prints_only_its_announcement(clock):
    drv = FakeDriver("running", deaf=True, clock=clock)
    lines = []
    with pytest.raises(model.Timeout):
        apply(drv, lines, state="stopped", shutdown_timeout=10)
    assert lines == ["web01: shutdown (waiting up to 10s for stopped)"]


def test_wait_for_uses_the_drivers_own_progress_when_given_none(clock):
    drv = FakeDriver("stopped", clock=clock)
    lines = []
    drv.progress = lines.append
    with pytest.raises(model.Timeout):
        drv.wait_for(drv.vm, lambda m: False, 31, "something")
    assert [line.split(" (")[1].split(",")[0] for line in lines] == ["15 s of 31 s", "30 s of 31 s"]


def test_the_note_interval_is_the_drivers_own(clock):
    drv = FakeDriver("stopped", clock=clock)
    drv.note_every = 5
    lines = []
    with pytest.raises(model.Timeout):
        drv.wait_for(drv.vm, lambda m: False, 21, "something", progress=lines.append)
    assert len(lines) == 4


class Job:
    """The Job objects of a fake Oracle VM Manager: RUNNING for `seconds`, then done."""

    def __init__(self, clock, seconds, name="Stop VM"):
        self.clock, self.ends, self.name = clock, clock.now + seconds, name

    def read(self):
        done = self.clock.now >= self.ends
        return {"id": {"value": "j1"}, "name": self.name, "summaryDone": done,
                "jobRunState": "SUCCESS" if done else "RUNNING"}


def bare_ovm(lines, traced=None):
    drv = ovm_driver.OvmDriver.__new__(ovm_driver.OvmDriver)
    drv.label = "ovm.example.com:7002"
    drv.progress = lines.append
    drv.trace = traced.append if traced is not None else None
    return drv


def test_an_oracle_vm_job_says_so_at_least_every_15_s(clock):
    job = Job(clock, 50)
    lines, requests = [], []
    drv = bare_ovm(lines)

    def request(method, path, doing, params=None, body=None):
        requests.append((method, path))
        return job.read()
    drv._request = request  # pylint: disable=protected-access
    drv._wait_job(job.read(), "shutdown web01", 120, who="web01")  # pylint: disable=protected-access
    assert lines == ["web01: Oracle VM job 'Stop VM' RUNNING (15 s of 120 s)",
                     "web01: Oracle VM job 'Stop VM' RUNNING (30 s of 120 s)",
                     "web01: Oracle VM job 'Stop VM' RUNNING (45 s of 120 s)"]


def test_an_oracle_vm_job_aborted_at_the_deadline_says_so(clock):
    job = Job(clock, 500)
    lines, aborted = [], []
    drv = bare_ovm(lines)
    drv._request = lambda method, path, doing, params=None, body=None: job.read()  # pylint: disable=protected-access
    drv._abort = lambda job_id, doing: aborted.append(job_id)  # pylint: disable=protected-access
    assert drv._wait_job(job.read(), "shutdown web01", 20, abort_on_timeout=True, who="web01") is None  # pylint: disable=protected-access
    assert aborted == ["j1"]
    assert lines[0] == "web01: Oracle VM job 'Stop VM' RUNNING (15 s of 20 s)"
    assert "still RUNNING after 20 s: aborting it" in lines[-1]


class Task:
    """A vSphere task that runs for `seconds` on the test's clock."""

    def __init__(self, clock, seconds):
        self.clock, self.ends = clock, clock.now + seconds

    @property
    def info(self):
        state = vmware_driver.vim.TaskInfo.State
        return type("Info", (), {"state": state.success if self.clock.now >= self.ends else state.running,
                                 "result": "done", "error": None, "descriptionId": "VirtualMachine.powerOn"})()


def bare_vmware(lines, traced=None):
    drv = vmware_driver.VmwareDriver.__new__(vmware_driver.VmwareDriver)
    drv.label = "vc.example.com:443"
    drv.progress = lines.append
    drv.trace = traced.append if traced is not None else None
    drv.lost = False
    return drv


def test_a_vsphere_task_says_so_at_least_every_15_s(clock):
    lines = []
    drv = bare_vmware(lines)
    assert drv._wait_task(Task(clock, 40), "start web01", 300, who="web01", method="PowerOnVM_Task") == "done"  # pylint: disable=protected-access
    assert lines == ["web01: vSphere task PowerOnVM_Task still running (15 s of 300 s)",
                     "web01: vSphere task PowerOnVM_Task still running (30 s of 300 s)"]


def test_a_vsphere_task_past_its_deadline_is_a_timeout_without_force_in_its_hint(clock):
    drv = bare_vmware([])
    with pytest.raises(model.Timeout) as err:
        drv._wait_task(Task(clock, 400), "start web01", 30, who="web01", method="PowerOnVM_Task")  # pylint: disable=protected-access
    assert "force" not in str(err.value)


# --- 2. changed after a partial run -----------------------------------------------------------------
def failed(drv, **params):
    with pytest.raises(model.VirtError) as err:
        apply(drv, **params)
    return interface.failure(err.value)


def test_a_heartbeat_timeout_after_a_power_cycle_is_changed(clock):
    out = failed(FakeDriver("running", silent=True, clock=clock), state="restarted", wait_timeout=20,
                 wait_for_heartbeat=True)
    assert out["changed"] is True and out["failed"] is True
    assert [(a["action"], a["result"]) for a in out["actions"]] == [
        ("shutdown", "ok"), ("start", "ok"), ("heartbeat", "timeout")]
    assert out["after"]["power_state"] == "running"  # the state last seen: it was power-cycled


def test_a_graceful_shutdown_that_ran_out_of_time_is_changed(clock):
    out = failed(FakeDriver("running", deaf=True, clock=clock), state="stopped", shutdown_timeout=10)
    assert out["changed"] is True  # the request was taken: the guest may still act on it
    assert [(a["action"], a["result"]) for a in out["actions"]] == [("shutdown", "timeout")]


def test_a_start_that_fails_at_once_after_the_stop_is_changed(clock):
    drv = FakeDriver("running", clock=clock)
    real = drv.power

    def power_fails_to_start(vm, action, timeout=600):
        if action == "start":
            raise model.VirtError("no host has room")
        return real(vm, action, timeout)
    drv.power = power_fails_to_start
    out = failed(drv, state="restarted")
    assert out["changed"] is True and out["actions"][-1]["result"] == "failed"


def test_a_refusal_before_any_action_is_not_changed():
    drv = FakeDriver("running")
    out = failed(drv, state="restarted", expected_host="elsewhere")
    assert out["changed"] is False and drv.calls == []


def test_a_refused_shutdown_without_force_is_not_changed(clock):
    drv = FakeDriver("running", clock=clock)

    def no_tools(vm, action, timeout=600):
        raise model.StateConflict("VMware Tools is not running")
    drv.power = no_tools
    out = failed(drv, state="stopped")
    assert out["changed"] is False and out["actions"][0]["result"] == "refused"


def test_changed_is_read_from_the_actions_when_the_error_does_not_say():
    exc = model.VirtError("gone")
    exc.actions = [{"action": "poweroff", "result": "ok"}, {"action": "start", "result": "failed"}]
    assert interface.failure(exc)["changed"] is True
    exc.actions = [{"action": "shutdown", "result": "refused"}]
    assert interface.failure(exc)["changed"] is False
    assert interface.failure(model.NotFound("no such VM"))["changed"] is False


class MovingDriver(FakeDriver):
    """migrate() times out: the platform took the move and is still at it."""

    capabilities = FakeDriver.capabilities | {"migrate"}

    def migrate(self, vm, host_name, timeout=3600):
        raise model.Timeout("vmware vc: task migrate web01 to h2 still running after %ds" % timeout)


def test_a_migration_that_ran_out_of_time_is_changed_and_its_hint_is_not_force(monkeypatch):
    monkeypatch.setattr(interface, "connect", lambda params, progress=None, trace=None: MovingDriver("running"))
    with pytest.raises(model.Timeout) as err:
        interface.run_migrate({"platform": "vmware", "name": "web01", "destination_host": "h2"})
    out = interface.failure(err.value)
    assert out["changed"] is True and "force" not in out["msg"]


# --- 3. hints that fit the step -----------------------------------------------------------------------
def test_a_heartbeat_timeout_says_power_cycled_and_what_to_check_never_force(clock):
    out = failed(FakeDriver("running", silent=True, clock=clock), state="restarted", wait_timeout=20,
                 wait_for_heartbeat=True)
    msg = out["msg"]
    assert "force" not in msg
    assert "web01 was power-cycled and runs (as `after` says: running, heartbeat unknown)" in msg, msg
    assert "has not reported a heartbeat within wait_timeout (20s)" in msg
    assert "guest OS" in msg and "VMware Tools" in msg


def test_a_heartbeat_timeout_after_a_start_says_started_and_names_the_platforms_agent(clock):
    out = failed(FakeDriver("stopped", platform="libvirt", silent=True, clock=clock), state="started",
                 wait_timeout=20, wait_for_heartbeat=True)
    assert "web01 was started and runs" in out["msg"] and "QEMU guest agent" in out["msg"]


def test_a_shutdown_timeout_without_force_says_use_force(clock):
    out = failed(FakeDriver("running", deaf=True, clock=clock), state="stopped", shutdown_timeout=10)
    assert "use force: true to escalate to a hard power-off" in out["msg"]
    assert "shutdown_timeout (10s)" in out["msg"]


def test_a_start_timeout_says_to_check_the_platform_not_force(clock):
    drv = FakeDriver("stopped", clock=clock)
    drv.power = lambda vm, action, timeout=600: None  # the platform takes the start and never runs the VM
    out = failed(drv, state="started", wait_timeout=30)
    assert "force" not in out["msg"]
    assert "did not report web01 running within wait_timeout (30s)" in out["msg"]
    assert out["changed"] is True


def test_the_default_timeout_hint_does_not_offer_force():
    assert "force" not in model.Timeout("x").hint


# --- 4. --diff shows the power path -----------------------------------------------------------------
def test_check_mode_diff_shows_the_planned_path():
    vm = machine("running", raw="poweredOn")
    steps = power.plan(vm, "restarted", force=True)
    out = power.diff(vm, "restarted", steps)
    assert out["before"] == {"power_state": "running", "power_state_raw": "poweredOn"}
    assert out["after"] == {"power_state": "running", "power_state_raw": "poweredOn",
                            "path": "running -(shutdown, else poweroff)-> stopped -(start)-> running (planned)"}
    stop = power.diff(vm, "stopped", power.plan(vm, "stopped"))
    assert stop["after"]["power_state_raw"] == "(not read: check mode)"
    assert stop["after"]["path"] == "running -(shutdown)-> stopped (planned)"


def test_a_runs_diff_shows_the_path_as_it_ran_and_the_state_read_back(clock):
    drv = FakeDriver("running", deaf=True, clock=clock)
    out = apply(drv, state="restarted", force=True, shutdown_timeout=5, wait_for_heartbeat=True)
    after = out["diff"]["after"]
    assert after["path"] == ("running -(shutdown timeout, poweroff)-> stopped -(start)-> running, heartbeat ok")
    assert after["power_state_raw"] == "running" and after["heartbeat"] == "ok"
    assert out["diff"]["before"]["heartbeat"] == "ok"


def test_nothing_to_do_shows_no_path():
    out = apply(FakeDriver("running"), state="started")
    assert out["diff"]["before"] == out["diff"]["after"]


def test_check_mode_diff_through_apply():
    drv = FakeDriver("running")
    out = power.apply(drv, {"name": "web01", "state": "restarted"}, check_mode=True)
    assert out["diff"]["after"]["path"].endswith("(planned)") and drv.calls == []


# --- 5. -vvv: each API call, its time, never a secret -----------------------------------------------
class Response:
    def __init__(self, status, data):
        self.status_code, self._data, self.text = status, data, str(data)

    def json(self):
        return self._data


class Session:
    def __init__(self, clock):
        self.clock, self.cookies, self.seen = clock, {}, []

    def request(self, method, url, **kw):
        self.seen.append((method, url, kw))
        self.clock.now += 0.012
        return Response(200, {"id": {"value": "j1"}})


def test_each_oracle_vm_request_is_traced_with_its_status_and_time_and_no_secret(clock):
    traced = []
    drv = bare_ovm([], traced)
    drv.base, drv.timeout, drv.verify, drv._logged_in = "https://ovm/rest", 5, True, False  # pylint: disable=protected-access
    drv._auth = ("admin", "pw-never-shown")  # pylint: disable=protected-access
    drv.session = Session(clock)
    drv._request("PUT", drv._path("Vm", "0004fb00", "stop"), "shutdown web01")  # pylint: disable=protected-access
    drv._request("PUT", drv._path("Vm", "0004fb00", "migrate"), "migrate", params={"serverId": "a4:fa"})  # pylint: disable=protected-access
    assert traced == ["ovm ovm.example.com:7002: PUT Vm/0004fb00/stop 200 12 ms",
                      "ovm ovm.example.com:7002: PUT Vm/0004fb00/migrate?serverId=a4%3Afa 200 12 ms"]
    assert "pw-never-shown" not in " ".join(traced)


def test_each_vsphere_call_is_traced_with_its_name_and_time(clock):
    traced = []
    drv = bare_vmware([], traced)

    def slow():
        clock.now += 0.003
        return "ok"
    assert drv._call("start web01", slow, _api="PowerOnVM_Task") == "ok"  # pylint: disable=protected-access
    drv._call("start web01", getattr, type("T", (), {"_moId": "task-7", "info": 1})(), "info")  # pylint: disable=protected-access
    assert traced == ["vmware vc.example.com:443: PowerOnVM_Task (start web01) ok 3 ms",
                      "vmware vc.example.com:443: read info of task-7 (start web01) ok 0 ms"]


def test_a_driver_opened_while_listening_traces_its_login():
    heard = []

    class Login(FakeDriver):
        def __init__(self):
            super().__init__("running")
            self.trace("login")
    with Driver.listening(progress=None, trace=heard.append):
        drv = Login()
    assert heard == ["login"] and drv.trace == heard.append  # pylint: disable=comparison-with-callable
    assert FakeDriver("running").trace is None  # outside: silent


def test_the_action_masks_secrets_in_trace_and_progress_lines(monkeypatch):
    from ansible_collections.virtops.unified.plugins.plugin_utils import action  # pylint: disable=import-outside-toplevel

    shown = []
    monkeypatch.setattr(action.display, "vvv", lambda msg, host=None: shown.append(("vvv", msg)))
    monkeypatch.setattr(action.display, "display", lambda msg, *a, **kw: shown.append(("display", msg)))
    plugin = action.VirtActionBase.__new__(action.VirtActionBase)
    plugin._secrets = {"s3cret"}  # pylint: disable=protected-access
    plugin.trace("ovm h: GET Vm?pw=s3cret 200 1 ms")
    plugin.progress("web01: s3cret")
    assert shown == [("vvv", "  ovm h: GET Vm?pw=******** 200 1 ms"), ("display", "  web01: ********")]
    monkeypatch.setattr(action.display, "verbosity", 2)
    assert plugin.tracer is None
    monkeypatch.setattr(action.display, "verbosity", 3)
    assert plugin.tracer is not None
