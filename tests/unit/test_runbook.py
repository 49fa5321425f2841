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
