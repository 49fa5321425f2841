# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the vm_* and host_* modules do, shared by the modules and their action plugins.

The argument specs live here next to the code that reads them; the option
docs live in doc_fragments/connection.py and the modules' DOCUMENTATION.
Nothing here imports AnsibleModule.
"""

from __future__ import annotations

import time
import traceback
from contextlib import ExitStack

from ansible.module_utils.common.parameters import env_fallback
from ansible_collections.virtops.unified.plugins.module_utils import model, power, registry, runbook
from ansible_collections.virtops.unified.plugins.module_utils.driver import ACTIONS, START


def _connection_spec():
    """platform, connect_timeout, and every platform's connection options, each once.

    No defaults or environment fallbacks here: they differ per platform (a port,
    a host variable), so registry.Platform.resolve() applies them once the
    platform is known. The docs are generated from the same declarations."""
    spec = {
        "platform": {"type": "str", "choices": list(registry.platforms())},
        "connect_timeout": {"type": "int", "default": 30},
    }
    for name, declared in registry.option_names().items():
        spec[name] = {"type": declared[0][1].type}
        aliases = sorted({a for _platform, o in declared for a in o.aliases})
        if aliases:
            spec[name]["aliases"] = aliases
        if any(o.secret for _platform, o in declared):
            spec[name]["no_log"] = True
    return spec


CONNECTION_SPEC = _connection_spec()

TARGET_SPEC = {
    "name": {"type": "str"},
    "uuid": {"type": "str"},
}

POWER_SPEC = dict(
    CONNECTION_SPEC,
    **TARGET_SPEC,
    state={"type": "str", "required": True, "choices": list(power.STATES)},
    force={"type": "bool", "default": False},
    shutdown_timeout={"type": "int", "default": 120},
    wait={"type": "bool", "default": True},
    wait_timeout={"type": "int", "default": 300},
    # a boolean, or "auto" (power.heartbeat_mode reads it)
    wait_for_heartbeat={"type": "raw", "default": False},
    expected_host={"type": "str"},
    reason={"type": "str", "default": ""},
)
POWER_RULES = {
    "required_one_of": [("name", "uuid")],
    "mutually_exclusive": [("name", "uuid")],
}

MOVE_SPEC = dict(
    TARGET_SPEC,
    destination_host={"type": "str", "required": True},
    expected_host={"type": "str"},
)
MIGRATE_SPEC = dict(
    CONNECTION_SPEC,
    **TARGET_SPEC,
    destination_host={"type": "str"},
    moves={"type": "list", "elements": "dict", "options": MOVE_SPEC,
           "required_one_of": [("name", "uuid")], "mutually_exclusive": [("name", "uuid")]},
    expected_host={"type": "str"},
    on_failure={"type": "str", "default": "stop", "choices": ["stop", "continue"]},
    reason={"type": "str", "default": ""},
    wait_timeout={"type": "int", "default": 3600},
)
MIGRATE_RULES = {
    "required_one_of": [("name", "uuid", "moves")],
    "mutually_exclusive": [("name", "uuid", "moves"), ("moves", "destination_host")],
    "required_by": {"name": "destination_host", "uuid": "destination_host"},
}

GUARD_SPEC = dict(
    TARGET_SPEC,
    state={"type": "str", "default": "locked", "choices": ["locked", "unlocked"]},
    runbook={"type": "str", "default": "runbook"},
    token={"type": "str", "no_log": False},
    max_actions={"type": "int", "default": 3},
    window={"type": "int", "default": 86400},
    count_states={"type": "list", "elements": "str", "default": list(runbook.RESTART_STATES)},
    lock_dir={"type": "path", "default": runbook.DEFAULT_LOCK_DIR, "fallback": (env_fallback, ["VIRTOPS_LOCK_DIR"])},
    stale_after={"type": "int", "default": 3600},
    audit_log={"type": "path", "default": runbook.DEFAULT_AUDIT_LOG, "fallback": (env_fallback, ["VIRTOPS_AUDIT_LOG"])},
)
GUARD_RULES = {"required_if": [("state", "unlocked", ("token",))]}

RECOVERY_SPEC = dict(
    TARGET_SPEC,
    destination_host={"type": "str", "required": True},
    failed_host={"type": "str"},
)
RECOVER_SPEC = dict(
    CONNECTION_SPEC,
    **TARGET_SPEC,
    destination_host={"type": "str"},
    recoveries={"type": "list", "elements": "dict", "options": RECOVERY_SPEC,
                "required_one_of": [("name", "uuid")], "mutually_exclusive": [("name", "uuid")]},
    failed_host={"type": "str"},
    wait_timeout={"type": "int", "default": 600},
    wait_for_heartbeat={"type": "bool", "default": False},
    reason={"type": "str", "default": ""},
)
RECOVER_RULES = {
    "required_one_of": [("name", "uuid", "recoveries")],
    "mutually_exclusive": [("name", "uuid", "recoveries"), ("recoveries", "destination_host")],
    "required_by": {"name": "destination_host", "uuid": "destination_host"},
}

MAINTENANCE_SPEC = dict(
    CONNECTION_SPEC,
    name={"type": "str", "required": True},
    state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    wait_timeout={"type": "int", "default": 3600},
    reason={"type": "str", "default": ""},
)

INFO_SPEC = dict(CONNECTION_SPEC, **TARGET_SPEC, heartbeat={"type": "bool", "default": True})
INFO_RULES = {"mutually_exclusive": [("name", "uuid")]}


def connect(params, progress=None, trace=None):
    """Open the driver of params['platform'] with its connection options. `progress` and
    `trace` (callables taking one line, or None) become the driver's own (Driver.progress,
    Driver.trace): its inner waits report through the first, its API calls through the second."""
    if not params.get("platform"):
        raise model.VirtError("no platform: run the task against a host of a virtops inventory, or set platform",
                              hint="One of: %s" % ", ".join(registry.platforms()))
    platform = registry.get(params["platform"])
    # the driver's class holds them while it opens, so that the login's calls are traced too
    with platform.driver.listening(progress, trace):
        drv = platform.open(params, connect_timeout=params.get("connect_timeout", 30))
    drv.progress, drv.trace = progress, trace
    return drv


def run_power(params, check_mode=False, progress=None, intent=None, trace=None):
    power.heartbeat_mode(params.get("wait_for_heartbeat", False))  # a bad value costs no login
    with connect(params, progress, trace) as drv:
        return power.apply(drv, params, check_mode=check_mode, progress=progress, intent=intent)


def run_migrate(params, check_mode=False, progress=None, intent=None, trail=None, trace=None):
    """Move a running VM to another host of the same endpoint (vMotion), or with
    `moves` several, in order, through one connection (see _run_moves)."""
    if params.get("moves"):
        return _run_moves(params, check_mode=check_mode, progress=progress, trail=trail, trace=trace)
    begun = time.monotonic()
    with connect(params, progress, trace) as drv:
        _require_migrate(drv)
        result = _migrate_one(drv, params, check_mode, progress, intent, begun)
    result["elapsed"] = round(time.monotonic() - begun, 2)
    return result


def _require_migrate(drv):
    if registry.MIGRATE not in drv.capabilities:
        raise model.Unsupported("%s: live migration is not supported by virtops yet" % drv.platform)


def _migrate_one(drv, params, check_mode, progress, intent, begun):
    vm = drv.find(name=params.get("name"), uuid=params.get("uuid"))
    target = params["destination_host"]
    try:
        power.check_host(vm, params.get("expected_host"))
        result = {"changed": vm.host != target, "before": vm.summary(),
                  "diff": {"before": {"host": vm.host}, "after": {"host": target}}}
        if result["changed"] and not check_mode:
            if intent:
                intent(vm, [{"action": "migrate", "destination": target}])
            if progress:
                progress("%s: migrating from %s to %s" % (vm.name, vm.host, target))
            try:
                drv.migrate(vm, target, timeout=params.get("wait_timeout", 3600))
            except model.Timeout as exc:
                exc.changed = True  # the platform took the move and may still carry it out
                raise
            vm = drv.refresh(vm)
            if vm.host != target:
                exc = model.VirtError("%s: migration to %s reported success but the VM is on %s"
                                      % (vm.name, target, vm.host))
                exc.changed = True
                raise exc
    except model.VirtError as exc:
        power.keep_identity(exc, vm, begun)
        raise
    result["after"] = vm.summary()
    return result


def _move_label(move):
    return move.get("name") or move.get("uuid")


def _announcing(audit, announced):
    """`audit.intent`, noting in `announced` that it was written."""
    if audit is None:
        return None

    def intent(vm, steps):
        audit.intent(vm, steps)
        announced.append(True)
    return intent


def _run_moves(params, check_mode=False, progress=None, trail=None, trace=None):
    """Each of params['moves'] in order, through one connection, stopping at the first
    that fails (on_failure=continue: going on with the next; the endpoint lost or an
    audit line that cannot be written still stops them). Returns one RV(moves) entry per move asked for: moved, already there,
    would move (check mode), failed, or not tried. On failure the error carries them
    (`moves`), so the caller knows what was moved before it.

    `trail(move)`, when given, returns the audit trail of one VM: its `intent(vm, steps)`
    is called before that VM's move and, once it was, its `outcome(result)` after the
    move, success or failure. An outcome that cannot be written marks `result` failed
    (see AuditTrail.outcome), and the moves stop there."""
    begun = time.monotonic()
    moves = params["moves"]
    report = [{"name": m.get("name"), "uuid": m.get("uuid"), "destination_host": m["destination_host"],
               "result": "not tried"} for m in moves]
    moved = []  # "name (to host)" of each VM moved so far
    failed = []  # "name: why" of each VM that could not move, when going on past failures
    partial = []  # the VMs among them that the platform may still have moved (a move timed out)
    go_on = params.get("on_failure") == "continue"

    def stop(exc, index=None):
        """The error that ends the moves, saying what was moved before it."""
        label = (report[index]["name"] or report[index]["uuid"]) if index is not None else None
        untried = report[0 if index is None else index + 1:]
        for entry in untried:
            entry["msg"] = "not tried, the moves stopped %s" % (
                "at %s" % label if label else "before the first (%s)" % type(exc).__name__)
        if label and label not in exc.message:
            exc.message = "%s: %s" % (label, exc.message)
        told = "Moved before it: %s" % ", ".join(moved) if moved else "Nothing was moved"
        if untried:
            told += "; not tried: %s" % ", ".join(e["name"] or e["uuid"] for e in untried)
        exc.hint = "%s. %s" % (exc.hint.rstrip("."), told) if exc.hint else told
        exc.changed = bool(moved) or bool(getattr(exc, "changed", False))
        exc.moves = report
        exc.elapsed = round(time.monotonic() - begun, 2)
        return exc

    try:
        drv = connect(params, progress, trace)
    except model.VirtError as exc:
        raise stop(exc) from None
    with drv:
        try:
            _require_migrate(drv)
        except model.VirtError as exc:
            raise stop(exc) from None
        for index, move in enumerate(moves):
            entry = report[index]
            one = dict(params, name=move.get("name"), uuid=move.get("uuid"), destination_host=move["destination_host"],
                       expected_host=move.get("expected_host") or params.get("expected_host"))
            audit = trail(move) if trail else None
            announced = []  # the intent was written: an outcome is owed
            started = time.monotonic()
            try:
                result = _migrate_one(drv, one, check_mode, progress, _announcing(audit, announced), started)
            except model.VirtError as exc:
                entry.update(result="failed", msg=str(exc), error_type=type(exc).__name__,
                             elapsed=round(time.monotonic() - started, 2))
                if getattr(exc, "before", None):
                    entry.update(name=exc.before.get("name"), uuid=exc.before.get("uuid"), before=exc.before)
                if announced:
                    audit.outcome(failure(exc))
                if go_on and not isinstance(exc, model.Unreachable):
                    failed.append("%s: %s" % (entry["name"] or entry["uuid"], exc))
                    if getattr(exc, "changed", False):
                        partial.append(entry["name"] or entry["uuid"])
                    continue
                raise stop(exc, index) from None
            result.pop("diff", None)
            result["elapsed"] = round(time.monotonic() - started, 2)
            if announced:
                audit.outcome(result)
            entry.update(name=result["before"]["name"], uuid=result["before"]["uuid"], before=result["before"],
                         after=result["after"], elapsed=result["elapsed"],
                         result="already there" if not result["changed"] else "would move" if check_mode else "moved")
            if result.get("failed"):  # moved, but its outcome could not be written
                entry.update(result="failed", msg=result["msg"], error_type="AuditError")
                raise stop(model.VirtError(result["msg"]), index)
            if result["changed"] and not check_mode:
                moved.append("%s (to %s)" % (entry["name"], result["after"]["host"]))
    if failed:
        exc = model.VirtError("%d of %d VM(s) not moved: %s" % (len(failed), len(moves), " | ".join(failed)),
                              hint="Moved: %s" % (", ".join(moved) if moved else "nothing"))
        exc.moves = report
        exc.changed = bool(moved) or bool(partial)
        exc.elapsed = round(time.monotonic() - begun, 2)
        raise exc
    return {"changed": any(e["result"] in ("moved", "would move") for e in report), "moves": report,
            "elapsed": round(time.monotonic() - begun, 2),
            "diff": {"before": {e["name"] or e["uuid"]: (e.get("before") or {}).get("host") for e in report},
                     "after": {e["name"] or e["uuid"]: e["destination_host"] for e in report}}}


def run_guard(params, who, check_mode=False, holder=None):
    """Take (or give back) the per-machine runbook lock, after checking the rate limit.

    The lock and the count are keyed on the machine's uuid, however the runbook
    named it: without a uuid there is nothing safe to key on, so it refuses.
    `holder` is the process the lock belongs to (the play's, see runbook.play_holder)."""
    vm_uuid = params.get("uuid")
    if not vm_uuid:
        raise model.VirtError(
            "vm_guard needs the machine's uuid (the lock and the restart limit are keyed on it); nothing was done",
            hint="Run it against the VM's inventory host (its virt_uuid is used), or pass uuid")
    name = params.get("name") or vm_uuid
    if params["state"] == "unlocked":
        released = check_mode or runbook.release_lock(params["lock_dir"], vm_uuid, params["token"])
        return {"changed": bool(released), "locked": False}
    done = runbook.check_rate(params["audit_log"], vm_uuid, name,
                              params["count_states"], params["max_actions"], params["window"])
    result = {"changed": not check_mode, "recent_actions": len(done), "locked": not check_mode}
    if check_mode:
        held = runbook.live_lock(params["lock_dir"], vm_uuid, params["stale_after"])
        if held:
            raise model.StateConflict("another runbook holds %s: %s" % (name, runbook.describe_holder(held)),
                                      hint="Wait for it to finish")
        return result
    # a take-over must be on record before the lock is ours
    audit_path = runbook.check_audit_writable(params["audit_log"])
    owner = {"runbook": params["runbook"], "who": who, "vm": name}
    token, path, taken_over = runbook.acquire_lock(params["lock_dir"], vm_uuid, owner, params["stale_after"], who=holder)
    result.update(token=token, lock=path)
    if taken_over:
        note = ("took over the lock on %s (%s) held by %s: %s"
                % (name, vm_uuid, runbook.describe_holder(taken_over), taken_over.get("stale")))
        result["warnings"] = [note]
        try:
            runbook.append_audit(audit_path, {
                "time": runbook.now_iso(), "phase": "lock", "state": "lock_taken_over", "who": who,
                "target": {"name": name, "uuid": vm_uuid}, "steps": [], "result": note,
                "previous_holder": {k: taken_over.get(k) for k in ("runbook", "who", "time", "pid", "controller")}})
        except runbook.AuditError:
            runbook.release_lock(params["lock_dir"], vm_uuid, token)
            raise
    return result


def run_recover(params, check_mode=False, progress=None, intent=None, trail=None, connection=None, trace=None):
    """Start a VM of a failed host on `destination_host`, or with `recoveries` several,
    in the given (priority) order, one connection per endpoint (see _run_recoveries).

    By the platform's recovery style: START_STANDBY (one host per endpoint) - params
    name the destination's endpoint, where the same VM is defined (shared storage),
    and it is started there; REREGISTER (a manager) - the VM's files are registered
    on the destination host and it is powered on. A VM already running on a live
    host is left alone.
    """
    if params.get("recoveries"):
        return _run_recoveries(params, check_mode=check_mode, progress=progress, trail=trail, connection=connection,
                               trace=trace)
    begun = time.monotonic()
    with connect(params, progress, trace) as drv:
        result = _recover_one(drv, params, check_mode, progress, intent, begun)
    result["elapsed"] = round(time.monotonic() - begun, 2)
    return result


def _recover_one(drv, params, check_mode, progress, intent, begun):
    dest = params["destination_host"]
    vm = drv.find(name=params.get("name"), uuid=params.get("uuid"))
    result = {"before": vm.summary(), "changed": False, "actions": []}
    if vm.power_state == model.RUNNING and vm.host != params.get("failed_host"):
        result.update(after=vm.summary(), skipped_reason="already running on %s" % vm.host)
    elif check_mode:
        result.update(changed=True, after=vm.summary(),
                      actions=[{"action": "recover", "destination": dest, "result": "planned"}])
    else:
        steps = [power.Step(START, model.RUNNING, params["wait_timeout"])]
        if params.get("wait_for_heartbeat"):
            steps.append(power.Step("heartbeat", model.HB_OK, params["wait_timeout"]))
        found = vm
        registered = False  # the VM was moved to (registered on) the destination
        style = registry.get(drv.platform).recovery
        try:
            if style is None:
                raise model.Unsupported("%s: recovery of a failed host's VMs is not supported" % drv.platform)
            if style == registry.START_STANDBY and vm.host != dest:
                raise model.StateConflict("%s: connected to %s, not to the destination %s" % (vm.name, vm.host, dest))
            if intent:
                intent(vm, [{"action": "recover", "destination": dest}] + steps)
            if style == registry.REREGISTER:
                if progress:
                    progress("%s: registering on %s" % (vm.name, dest))
                vm = drv.recover(vm, dest, timeout=params["wait_timeout"])
                registered = True
            after, actions = power.execute(drv, vm, steps, progress=progress)
        except model.VirtError as exc:
            exc.changed = registered or bool(getattr(exc, "changed", False))
            power.keep_identity(exc, found, begun)
            raise
        result.update(changed=True, after=after.summary(), actions=actions)
    return result


def _endpoint_key(params):
    """What names one connection: the platform and every connection option's value."""
    return tuple(sorted((k, str(params.get(k))) for k in CONNECTION_SPEC if params.get(k) is not None))


def _run_recoveries(params, check_mode=False, progress=None, trail=None, connection=None, trace=None):
    """Each of params['recoveries'] in the order given (the restart priority), going on
    past a VM that fails: a recovery brings back all it can. One connection per endpoint,
    opened at its first use and kept to the end, so the order is the one asked for
    whatever endpoint each VM is started through. `connection(index)`, when given,
    returns the connection options of that recovery (a platform with one host per
    endpoint starts each VM through its destination's endpoint); else every VM goes
    through params' own. An endpoint that cannot be reached fails the VMs to recover
    through it, not the others; an outcome that cannot be written stops them all.

    Returns one RV(recoveries) entry per VM: recovered, already running, would recover
    (check mode), failed, or not tried; `failed` (with what was recovered) when a VM was
    not. `trail(recovery)` as in _run_moves."""
    begun = time.monotonic()
    asked = params["recoveries"]
    report = [{"name": r.get("name"), "uuid": r.get("uuid"), "destination_host": r["destination_host"],
               "result": "not tried"} for r in asked]
    drivers = {}  # endpoint key -> open driver, or the error that opening it raised
    failed, done = [], []
    with ExitStack() as stack:
        for index, recovery in enumerate(asked):
            entry = report[index]
            conn = connection(index) if connection else params
            one = dict(params, **{k: conn.get(k) for k in CONNECTION_SPEC})
            one.update(name=recovery.get("name"), uuid=recovery.get("uuid"),
                       destination_host=recovery["destination_host"],
                       failed_host=recovery.get("failed_host") or params.get("failed_host"))
            key = _endpoint_key(one)
            audit = trail(recovery) if trail else None
            announced = []
            started = time.monotonic()
            try:
                if key not in drivers:
                    try:
                        drivers[key] = stack.enter_context(connect(one, progress, trace))
                    except model.VirtError as exc:
                        drivers[key] = exc
                if isinstance(drivers[key], model.VirtError):
                    raise drivers[key]
                result = _recover_one(drivers[key], one, check_mode, progress, _announcing(audit, announced), started)
            except model.VirtError as exc:
                entry.update(result="failed", msg=str(exc), error_type=type(exc).__name__,
                             elapsed=round(time.monotonic() - started, 2))
                if getattr(exc, "before", None):
                    entry.update(name=exc.before.get("name"), uuid=exc.before.get("uuid"), before=exc.before)
                if getattr(exc, "actions", None):
                    entry["actions"] = exc.actions
                if getattr(exc, "changed", False):
                    entry["changed"] = True  # started (or registered) before it failed
                if announced:
                    audit.outcome(failure(exc))
                failed.append("%s: %s" % (entry["name"] or entry["uuid"], exc))
                continue
            result["elapsed"] = round(time.monotonic() - started, 2)
            if announced:
                audit.outcome(result)
            entry.update(name=result["before"]["name"], uuid=result["before"]["uuid"], before=result["before"],
                         after=result["after"], elapsed=result["elapsed"], actions=result["actions"],
                         result="already running" if not result["changed"]
                         else "would recover" if check_mode else "recovered")
            if result.get("skipped_reason"):
                entry["skipped_reason"] = result["skipped_reason"]
            if result.get("failed"):  # started, but its outcome could not be written: stop here
                entry.update(result="failed", msg=result["msg"], error_type="AuditError")
                for later in report[index + 1:]:
                    later["msg"] = "not tried, the recoveries stopped at %s" % (entry["name"] or entry["uuid"])
                return {"failed": True, "msg": result["msg"], "error_type": "AuditError", "recoveries": report,
                        "changed": True, "elapsed": round(time.monotonic() - begun, 2)}
            if result["changed"] and not check_mode:
                done.append("%s (on %s)" % (entry["name"], result["after"]["host"]))
    result = {"changed": any(e["result"] in ("recovered", "would recover") or e.get("changed") for e in report),
              "recoveries": report,
              "elapsed": round(time.monotonic() - begun, 2)}
    if failed:  # a failed result rather than an error: it carries what was recovered
        result.update(failed=True, msg="%d of %d VM(s) not recovered: %s. Recovered: %s" % (
            len(failed), len(asked), " | ".join(failed), ", ".join(done) if done else "nothing"))
    return result


def run_maintenance(params, check_mode=False, progress=None, trace=None):
    """Put a host in (present) or out of (absent) maintenance mode."""
    begun = time.monotonic()
    on = params["state"] == "present"
    with connect(params, progress, trace) as drv:
        if registry.MAINTENANCE not in drv.capabilities:
            raise model.Unsupported("%s: maintenance mode is not a %s notion" % (params["name"], drv.platform),
                                    hint="Stop or move the VMs and take the host out of service by hand")
        host = model.pick_one(drv.list_inventory().hosts, name=params["name"], where=drv.where(), what="host")
        changed = (host.connection_state == model.MAINTENANCE) != on
        if changed and not check_mode:
            if progress:
                progress("%s: %s maintenance mode" % (host.name, "entering" if on else "leaving"))
            try:
                drv.set_maintenance(host.name, on, timeout=params["wait_timeout"])
            except model.Timeout as exc:
                exc.changed = True  # the platform took it and may still carry it out
                raise
    return {"changed": changed, "host": host.name, "maintenance": on if (changed and not check_mode) else
            host.connection_state == model.MAINTENANCE, "elapsed": round(time.monotonic() - begun, 2)}


def run_info(params, trace=None):
    begun = time.monotonic()
    with connect(params, trace=trace) as drv:
        if params.get("name") or params.get("uuid"):
            vm = drv.find(name=params.get("name"), uuid=params.get("uuid"))
            if params.get("heartbeat") and vm.power_state == model.RUNNING:
                vm = drv.refresh(vm, heartbeat=True)
            vms, hosts = [vm], []
        else:
            inv = drv.list_inventory()
            vms, hosts = inv.vms, inv.hosts
    return {
        "changed": False,
        "vms": [vm.summary() for vm in vms],
        "hosts": [dict(h.summary(), connection_state=h.connection_state) for h in hosts],
        "elapsed": round(time.monotonic() - begun, 2),
    }


def took_effect(actions):
    """Whether any of these step records is a power action the platform took: its state
    was reached (ok), or it was asked and not awaited, or it ran out of time (the
    request was taken, the guest or the platform may still carry it out)."""
    return any(a.get("action") in ACTIONS and a.get("result") in ("ok", "timeout", "not waited")
               for a in actions or ())


def failure(exc):
    """A failed-task result from a driver error: message, type, steps done, and `changed`:
    true when a power action took effect before the failure (exc.changed, set by the run,
    else read from its actions), so that a VM power-cycled before a later step failed is
    not reported unchanged."""
    changed = getattr(exc, "changed", None)
    result = {
        "failed": True,
        "changed": bool(changed) if changed is not None else took_effect(getattr(exc, "actions", None)),
        "msg": str(exc),
        "error_type": type(exc).__name__,
    }
    if getattr(exc, "actions", None):
        result["actions"] = exc.actions
    if getattr(exc, "before", None):
        result["before"] = exc.before
    if getattr(exc, "after", None):
        result["after"] = exc.after
    if getattr(exc, "elapsed", None) is not None:
        result["elapsed"] = exc.elapsed
    if getattr(exc, "moves", None) is not None:
        result["moves"] = exc.moves
    if not isinstance(exc, model.VirtError):
        result["exception"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return result
