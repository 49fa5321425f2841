import datetime
import json
import os

import pytest

from ansible_collections.virtops.unified.plugins.module_utils import model, runbook

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def record(state="restarted", ago=0, uuid=UUID, steps=True):
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=ago)
    return {"time": when.isoformat(timespec="seconds"), "state": state, "target": {"uuid": uuid},
            "steps": [{"action": "start"}] if steps else []}


def test_audit_lines_append_and_read_back(tmp_path):
    log = tmp_path / "sub" / "audit.jsonl"
    runbook.append_audit(str(log), record())
    runbook.append_audit(str(log), record(state="stopped"))
    lines = log.read_text().splitlines()
    assert [json.loads(line)["state"] for line in lines] == ["restarted", "stopped"]
    assert oct(os.stat(log).st_mode & 0o777) == "0o640"


def test_rate_limit_counts_only_this_vm_in_the_window_and_real_actions(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    for rec in (record(ago=10), record(ago=20), record(ago=90000), record(uuid="other"),
                record(state="stopped"), record(steps=False)):
        runbook.append_audit(log, rec)
    assert len(runbook.check_rate(log, UUID, "db01", ["restarted", "reset"], 3, 86400)) == 2
    runbook.append_audit(log, record(state="reset"))
    with pytest.raises(model.StateConflict, match="already restarted/reset 3 time"):
        runbook.check_rate(log, UUID, "db01", ["restarted", "reset"], 3, 86400)


def test_lock_is_exclusive_and_released_by_its_token_only(tmp_path):
    locks = str(tmp_path / "locks")
    token, path, taken = runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "ann"})
    assert taken is None and os.path.exists(path)
    with pytest.raises(model.StateConflict, match="another runbook holds .* restart_vm by ann"):
        runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "bob"})
    assert runbook.release_lock(locks, UUID, "not-the-token") is False and os.path.exists(path)
    assert runbook.release_lock(locks, UUID, token) is True and not os.path.exists(path)


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    locks = str(tmp_path / "locks")
    token, path, _taken = runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "ann"})
    held = json.loads(open(path).read())
    held["pid"] = 2 ** 22 + 12345  # no such process
    open(path, "w").write(json.dumps(held))
    new_token, _path, taken = runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "bob"})
    assert taken["who"] == "ann" and new_token != token


def test_ids_that_differ_only_in_punctuation_have_their_own_locks(tmp_path):
    locks = str(tmp_path / "locks")
    assert runbook.lock_path(locks, "web.01") != runbook.lock_path(locks, "web01")
    assert runbook.lock_path(locks, UUID) == runbook.lock_path(locks, UUID.upper())  # one machine
    runbook.acquire_lock(locks, "web.01", {"runbook": "r", "who": "ann"})
    runbook.acquire_lock(locks, "web01", {"runbook": "r", "who": "bob"})  # not refused


def test_the_lock_belongs_to_the_given_holder_and_excludes_while_it_runs(tmp_path):
    locks = str(tmp_path / "locks")
    me = runbook.holder()  # this test process: alive
    _token, path, _taken = runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "ann"}, who=me)
    held = json.loads(open(path).read())
    assert held["pid"] == os.getpid() and held["pid_start"] == me["pid_start"] and held["boot_id"]
    with pytest.raises(model.StateConflict, match="pid %d" % os.getpid()):
        runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "bob"})
    assert runbook.live_lock(locks, UUID)["who"] == "ann"


def test_a_reused_pid_does_not_keep_a_dead_holder_alive(tmp_path):
    locks = str(tmp_path / "locks")
    # our own pid, but started at another time: the holder it names is gone
    who = dict(runbook.holder(), pid_start=1)
    runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "ann"}, who=who)
    assert runbook.live_lock(locks, UUID) is None
    _token, _path, taken = runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "bob"})
    assert taken["who"] == "ann" and "is gone" in taken["stale"]


def test_a_lock_of_another_controller_is_only_stale_by_age(tmp_path):
    locks = str(tmp_path / "locks")
    who = dict(runbook.holder(), controller="elsewhere", pid=2 ** 22 + 1)
    runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "ann"}, who=who)
    with pytest.raises(model.StateConflict, match="on elsewhere"):
        runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "bob"})
    _token, _path, taken = runbook.acquire_lock(locks, UUID, {"runbook": "restart_vm", "who": "bob"}, stale_after=-1)
    assert "old" in taken["stale"]


def test_an_empty_or_unreadable_lock_file_is_held_until_it_is_old(tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    path = runbook.lock_path(str(locks), UUID)
    open(path, "w").close()  # a lock being written by an older virtops, or a torn write
    with pytest.raises(model.StateConflict, match="unreadable lock .empty."):
        runbook.acquire_lock(str(locks), UUID, {"runbook": "restart_vm", "who": "bob"})
    old = os.stat(path).st_mtime - 7200
    os.utime(path, (old, old))
    _token, _path, taken = runbook.acquire_lock(str(locks), UUID, {"runbook": "restart_vm", "who": "bob"})
    assert "empty" in taken["stale"]


def test_only_one_of_many_racing_takers_gets_a_stale_lock(tmp_path):
    """Processes that all see the same stale lock: the guard lets exactly one take it."""
    import multiprocessing  # pylint: disable=import-outside-toplevel
    locks = str(tmp_path / "locks")
    runbook.acquire_lock(locks, UUID, {"runbook": "r", "who": "dead"}, who=dict(runbook.holder(), pid_start=1))
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_take, args=(locks, results)) for _i in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    got = [results.get(timeout=5) for _proc in procs]
    assert got.count("taken") == 1 and got.count("refused") == 5, got


def _take(locks, results):
    try:
        # each holder is the test process itself (alive), so a lock once taken excludes the rest
        runbook.acquire_lock(locks, UUID, {"runbook": "r", "who": "racer"}, who=runbook.holder(os.getppid()))
        results.put("taken")
    except model.StateConflict:
        results.put("refused")


def test_release_only_by_the_holder_and_under_the_guard(tmp_path):
    locks = str(tmp_path / "locks")
    token, path, _taken = runbook.acquire_lock(locks, UUID, {"runbook": "r", "who": "ann"})
    assert runbook.release_lock(locks, UUID, "forged") is False and os.path.exists(path)
    assert runbook.release_lock(locks, UUID, token) is True and not os.path.exists(path)
    assert runbook.release_lock(locks, UUID, token) is False  # twice: nothing to do


def test_intent_without_outcome_counts_and_unwritable_logs_fail_closed(tmp_path):
    log = str(tmp_path / "audit.jsonl")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    runbook.append_audit(log, {"time": now, "id": "a", "phase": "intent", "state": "restarted", "target": {"uuid": UUID}})
    runbook.append_audit(log, {"time": now, "id": "a", "phase": "outcome", "state": "restarted",
                               "target": {"uuid": UUID}, "steps": [{"action": "start"}]})
    runbook.append_audit(log, {"time": now, "id": "b", "phase": "intent", "state": "restarted", "target": {"uuid": UUID}})
    done = runbook.recent_actions(log, UUID, ["restarted"], 60)
    assert [r["id"] for r in done] == ["a", "b"] and done[1]["result"].startswith("interrupted")
    with pytest.raises(runbook.AuditError, match="audit log /proc/nope/audit.jsonl cannot be written"):
        runbook.check_audit_writable("/proc/nope/audit.jsonl")
    with pytest.raises(runbook.AuditError):
        runbook.append_audit("/proc/nope/audit.jsonl", {})
