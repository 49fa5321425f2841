# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired power state -> a plan of driver primitives -> execution.

The plan is computed once from the current state. Check mode returns it; a
real run executes the same steps. `changed` is "the plan is not empty", so
both modes report alike and asking for the current state changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import time

from ansible_collections.virtops.unified.plugins.module_utils import model
from ansible_collections.virtops.unified.plugins.module_utils.driver import (
    ACTIONS,
    POWEROFF,
    RESET,
    RESUME,
    SHUTDOWN,
    START,
    SUSPEND,
)

STATES = ("started", "stopped", "poweredoff", "restarted", "reset", "suspended")

# wait_for_heartbeat: a boolean, or this: wait only if the guest answered before acting
HEARTBEAT_AUTO = "auto"
_TRUE = ("true", "yes", "on", "1", "y", "t")
_FALSE = ("false", "no", "off", "0", "n", "f", "")

_OFF = (model.STOPPED,)
_RESTARTABLE_OFF = (model.STOPPED, model.CRASHED, model.SUSPENDED)

# Where each state lands, for the diff and for checking the end state.
_LANDS = {
    "started": model.RUNNING,
    "restarted": model.RUNNING,
    "reset": model.RUNNING,
    "stopped": model.STOPPED,
    "poweredoff": model.STOPPED,
    "suspended": model.SUSPENDED,
}


class Step(dict):
    """One primitive: action, the state it must reach, its time budget."""

    def __init__(self, action, expect, timeout, escalate=None, escalate_timeout=None):
        super().__init__(action=action, expect=expect, timeout=timeout)
        if escalate:
            # a graceful step that runs out of time hands over to this one
            self["escalate_to"] = escalate
            self["escalate_timeout"] = escalate_timeout


def _stop_steps(vm, state, force, shutdown_timeout, wait_timeout):
    """Steps that take a VM from its current state to powered off."""
    current = vm.power_state
    graceful = state in ("stopped", "restarted")
    if current == model.RUNNING and graceful:
        if force:
            return [Step(SHUTDOWN, model.STOPPED, shutdown_timeout, POWEROFF, wait_timeout)]
        return [Step(SHUTDOWN, model.STOPPED, shutdown_timeout)]
    if current in (model.RUNNING, model.CRASHED) or (current in (model.PAUSED, model.SUSPENDED) and (force or not graceful)):
        return [Step(POWEROFF, model.STOPPED, wait_timeout)]
    if current in (model.PAUSED, model.SUSPENDED):
        raise model.StateConflict(
            "%s is %s (%s): its guest cannot shut down gracefully"
            % (vm.name, current, vm.power_state_raw),
            hint="Use force: true (or state: poweredoff) to discard the guest's state, or start it first",
        )
    return []


def plan(vm, state, force=False, shutdown_timeout=120, wait_timeout=300, wait_for_heartbeat=False):
    """The list of steps that bring `vm` to `state`. Empty: nothing to do."""
    current = vm.power_state
    if current == model.UNKNOWN:
        raise model.StateConflict(
            "%s: the platform does not know its power state (%s) on host %s; nothing was done"
            % (vm.name, vm.power_state_raw, vm.host),
            hint="Its host is probably not connected to the platform: check the host first. If it is dead, "
                 "recover its VMs (recover_host_failure.yml); a host that is only cut off may still run the VM",
        )
    if current == model.TRANSITIONING:
        raise model.StateConflict(
            "%s is in transition (%s); refusing to plan a power action" % (vm.name, vm.power_state_raw),
            hint="Wait for the platform to settle, then retry",
        )
    if vm.facts.get("persistent") is False and state in ("stopped", "poweredoff", "restarted", "suspended"):
        raise model.StateConflict(
            "%s is a transient domain: powering it off would delete it from %s" % (vm.name, vm.host),
            hint="Define it persistently first, or use state: reset",
        )
    steps = []
    if state == "started":
        if current == model.PAUSED:
            steps = [Step(RESUME, model.RUNNING, wait_timeout)]
        elif current in _RESTARTABLE_OFF:
            steps = [Step(START, model.RUNNING, wait_timeout)]
    elif state in ("stopped", "poweredoff"):
        steps = _stop_steps(vm, state, force, shutdown_timeout, wait_timeout)
    elif state == "restarted":
        if current in _RESTARTABLE_OFF:
            steps = [Step(START, model.RUNNING, wait_timeout)]
        else:
            steps = _stop_steps(vm, state, force, shutdown_timeout, wait_timeout)
            steps.append(Step(START, model.RUNNING, wait_timeout))
    elif state == "reset":
        if current in _RESTARTABLE_OFF:
            steps = [Step(START, model.RUNNING, wait_timeout)]
        elif current == model.PAUSED:
            steps = [Step(RESET, model.PAUSED, wait_timeout), Step(RESUME, model.RUNNING, wait_timeout)]
        else:
            steps = [Step(RESET, model.RUNNING, wait_timeout)]
    elif state == "suspended":
        if current in (model.RUNNING, model.PAUSED):
            steps = [Step(SUSPEND, model.SUSPENDED, wait_timeout)]
        elif current in _OFF:
            raise model.StateConflict(
                "%s is powered off: there is nothing to suspend" % vm.name,
                hint="Start it first",
            )
    else:
        raise ValueError("unknown state %r" % state)
    if steps and wait_for_heartbeat and _LANDS[state] == model.RUNNING:
        steps.append(Step("heartbeat", model.HB_OK, wait_timeout))
    return steps


def heartbeat_mode(value):
    """wait_for_heartbeat as given (a boolean, its usual spellings, or "auto") -> True, False or HEARTBEAT_AUTO."""
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text == HEARTBEAT_AUTO:
        return HEARTBEAT_AUTO
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise model.VirtError("wait_for_heartbeat must be true, false or auto, not %r; nothing was done" % (value,))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def diff(vm, state, steps=(), after=None, actions=None):
    """The --diff view: the power state before, and after with the path between them.

    Without `after` (check mode, or nothing to do) the path is the planned one; with it
    (a run), the path is the steps as they ran (`actions`), the state as read back."""
    before = {"power_state": vm.power_state, "power_state_raw": vm.power_state_raw}
    if after is None:
        lands = _LANDS[state] if steps else vm.power_state
        out = {"power_state": lands,
               "power_state_raw": vm.power_state_raw if lands == vm.power_state else "(not read: check mode)"}
    else:
        out = {"power_state": after.power_state, "power_state_raw": after.power_state_raw}
    if steps:
        out["path"] = power_path(vm, steps, actions if after is not None else None)
    if any(s["action"] == "heartbeat" for s in steps):
        before["heartbeat"] = vm.heartbeat
        out["heartbeat"] = after.heartbeat if after is not None else "%s (planned)" % model.HB_OK
    return {
        "before": before,
        "after": out,
        "before_header": "%s (%s)" % (vm.name, vm.uuid),
        "after_header": "%s (%s)" % (vm.name, vm.uuid),
    }


def power_path(vm, steps, actions=None):
    """The way from the state before to the state after, one arrow per step:
    "running -(shutdown)-> stopped -(start)-> running". With `actions` (the records of a
    run) each arrow says what ran (an escalation: "shutdown timeout, poweroff"); without,
    it is the plan ("shutdown, else poweroff") and ends "(planned)"."""
    parts = [vm.power_state]
    records = iter(actions) if actions is not None else None
    for step in steps:
        if step["action"] == "heartbeat":
            if records is None:
                parts.append("then the guest heartbeat")
            else:
                parts.append("heartbeat %s" % next(records, {}).get("result", "not run"))
            continue
        if records is None:
            label = step["action"] + (", else %s" % step["escalate_to"] if step.get("escalate_to") else "")
            reached = step["expect"]
        else:
            record = next(records, {})
            label = step["action"]
            if record.get("result") in ("timeout", "refused") and step.get("escalate_to"):
                label += " %s, %s" % (record["result"], step["escalate_to"])
                record = next(records, {})
            result = record.get("result", "not run")
            reached = step["expect"] if result == "ok" else "%s (%s)" % (step["expect"], result)
        parts.append("-(%s)-> %s" % (label, reached))
    text = " ".join(parts).replace(" then", ", then").replace(" heartbeat", ", heartbeat")
    return text + (" (planned)" if records is None else "")


def check_host(vm, expected_host):
    """Refuse to act when the VM is not where the caller thinks it is."""
    if expected_host and vm.host != expected_host:
        raise model.StateConflict(
            "%s (%s) runs on %s, not on the expected host %s; nothing was done"
            % (vm.name, vm.uuid, vm.host, expected_host),
            hint="It was probably migrated: refresh the inventory and retry",
        )


def execute(driver, vm, steps, wait=True, progress=None):
    """Run planned steps; return (last machine read, actions done).

    Every step is waited on within its budget, except the last when
    `wait` is false. A graceful shutdown that times out escalates to its
    `escalate_to` primitive if planned, otherwise raises model.Timeout.
    On error the exception carries the actions done so far (`actions`), whether a power
    action took effect (`changed`), the machine as last read where a wait read it
    (`after`), and for a timeout a hint that fits the step that ran out of time.
    """
    actions = []
    effects = []  # the power requests the platform took, in order
    current = vm
    try:
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            current = _run_step(driver, current, step, wait or not last, progress, actions, effects)
    except model.VirtError as exc:
        exc.actions = actions
        exc.changed = bool(effects) or bool(getattr(exc, "changed", False))
        seen = getattr(exc, "machine", None)
        if seen is not None:
            exc.after = seen.summary()
        raise
    return current, actions


def _what_was_done(effects):
    """How a run that got as far as the heartbeat changed the VM, in a word."""
    if START in effects and any(a in effects for a in (SHUTDOWN, POWEROFF, RESET)):
        return "power-cycled"
    if RESET in effects:
        return "reset"
    if RESUME in effects:
        return "resumed"
    return "started"


def timeout_hint(driver, vm, step, effects, exc):
    """What to do about a step that ran out of time, for that step: only a graceful
    shutdown is helped by force."""
    action, seconds = step["action"], step["timeout"]
    agent = driver.guest_agent
    seen = getattr(exc, "machine", None)
    state = ("the power state is as `after` says (%s, heartbeat %s)" % (seen.power_state_raw, seen.heartbeat)
             if seen is not None else "check its power state on the platform")
    if action == "heartbeat":
        if seen is None:
            runs = "runs"
        else:
            runs = "%s (as `after` says: %s, heartbeat %s)" % (
                "runs" if seen.power_state == model.RUNNING else "is %s now" % seen.power_state,
                seen.power_state_raw, seen.heartbeat)
        return ("%s was %s and %s, but its guest has not reported a heartbeat within wait_timeout (%ds): check the "
                "guest OS on its console (a boot stuck on a disk check or a prompt, a kernel panic) and that %s "
                "runs in it. Nothing more was done" % (vm.name, _what_was_done(effects), runs, seconds, agent))
    if action == SHUTDOWN:
        return ("The guest did not shut down within shutdown_timeout (%ds) and nothing else was done: use force: true "
                "to escalate to a hard power-off, raise shutdown_timeout, or check that the guest OS takes "
                "shutdown requests (%s, ACPI); %s" % (seconds, agent, state))
    if action == START:
        return ("The platform did not report %s running within wait_timeout (%ds) after the start was asked: check "
                "the VM and its host on the platform (the task or job, the host's events and free resources); "
                "raise wait_timeout if the host is only slow; %s" % (vm.name, seconds, state))
    return ("The platform did not finish the %s of %s within %ds: check the VM and its host on the platform before "
            "retrying, or raise wait_timeout if it is only slow; %s" % (action, vm.name, seconds, state))


def _run_step(driver, vm, step, wait, progress, actions, effects):
    action = step["action"]
    started = time.monotonic()
    record = {"action": action, "started": _now()}
    actions.append(record)

    def done(result, exc=None):
        record.update(result=result, elapsed=round(time.monotonic() - started, 2))
        if exc is not None:
            record["error"] = str(exc)

    def reached(machine):
        if action == "heartbeat":
            return machine.heartbeat == model.HB_OK
        return machine.power_state == step["expect"]

    if action == "heartbeat":
        what = "guest heartbeat"
        if progress:
            progress("%s: waiting up to %ds for the guest heartbeat" % (vm.name, step["timeout"]))
    else:
        what = "power state %s" % step["expect"]
        if progress:
            progress("%s: %s (waiting up to %ds for %s)" % (vm.name, action, step["timeout"], step["expect"]))
        try:
            driver.power(vm, action, timeout=step["timeout"])
        except (model.StateConflict, model.Unsupported) as exc:
            # e.g. no guest tools to take the shutdown: a hung guest often has none
            done("refused", exc)
            if not step.get("escalate_to"):
                raise
            return _escalate(driver, vm, step, wait, progress, actions, effects)
        except model.Timeout as exc:
            # the platform took the request and is still at it (a vSphere task, an Oracle VM job)
            effects.append(action)
            done("timeout", exc)
            exc.hint = timeout_hint(driver, vm, step, effects, exc)
            raise
        except model.VirtError as exc:
            done("failed", exc)
            raise
        effects.append(action)
    try:
        if wait:  # one budget per step: the request's own time counts (a slow task, a slow agent)
            vm = driver.wait_for(vm, reached, step["timeout"], what, progress, heartbeat=action == "heartbeat",
                                 started=started)
        else:
            vm = driver.refresh(vm)
    except model.Timeout as exc:
        done("timeout")
        if not step.get("escalate_to"):
            exc.hint = timeout_hint(driver, vm, step, effects, exc)
            raise
        return _escalate(driver, vm, step, wait, progress, actions, effects)
    except model.VirtError as exc:
        done("failed", exc)  # the step began and then failed (a host cut off mid-task, an endpoint gone)
        raise
    done("ok" if reached(vm) else "not waited")
    return vm


def _escalate(driver, vm, step, wait, progress, actions, effects):
    """The graceful step failed or ran out of time: run its planned hard step."""
    if progress:
        progress("%s: no graceful %s, escalating to %s" % (vm.name, step["action"], step["escalate_to"]))
    return _run_step(driver, vm, Step(step["escalate_to"], step["expect"], step["escalate_timeout"]),
                     wait, progress, actions, effects)


def apply(driver, params, check_mode=False, progress=None, intent=None):
    """The whole of vm_power: find, guard, plan, execute. Returns a result dict.

    `params` holds the module options (name/uuid, state, force, timeouts,
    wait_for_heartbeat, expected_host). The machine is read once before acting
    (RV before) and once after (RV after, from the last wait), so one
    connection serves the whole task. `intent(vm, steps)` is called once the
    plan is known and before the first power action (the audit log's intent
    line); if it raises, nothing is done. Errors propagate as model.VirtError
    carrying `before` (the VM as found) and `elapsed`, so a failed run keeps
    its identity.
    """
    begun = time.monotonic()
    mode = heartbeat_mode(params.get("wait_for_heartbeat", False))
    vm = driver.find(name=params.get("name"), uuid=params.get("uuid"))
    try:
        check_host(vm, params.get("expected_host"))
        state = params["state"]
        options = {"force": params.get("force", False), "shutdown_timeout": params.get("shutdown_timeout", 120),
                   "wait_timeout": params.get("wait_timeout", 300)}
        steps = plan(vm, state, **options)
        # the guest heartbeat before acting, where a driver reads it only when asked (libvirt's agent
        # ping): `auto` plans on it, and a graceful shutdown needs it (a silent guest agent would take
        # the shutdown and sit on it, up to 60 s on libvirt; knowing it is silent, the driver uses ACPI)
        if (steps and vm.power_state == model.RUNNING and vm.heartbeat == model.HB_UNKNOWN
                and "heartbeat" in driver.capabilities
                and (mode == HEARTBEAT_AUTO or (not check_mode and steps[0]["action"] == SHUTDOWN))):
            vm = driver.refresh(vm, heartbeat=True)
            check_host(vm, params.get("expected_host"))
        wait_for_heartbeat = vm.heartbeat == model.HB_OK if mode == HEARTBEAT_AUTO else mode
        steps = plan(vm, state, wait_for_heartbeat=wait_for_heartbeat, **options)
        _require(driver, vm, state, steps)
        result = {"changed": bool(steps), "before": vm.summary(), "diff": diff(vm, state, steps)}
        if check_mode or not steps:
            result["after"] = vm.summary()
            result["actions"] = [dict(s, result="planned") for s in steps] if check_mode else []
        else:
            if intent:
                intent(vm, steps)
            found = dataclasses.replace(vm)  # as found: a driver may update its machine in place
            after, actions = execute(driver, vm, steps, wait=params.get("wait", True), progress=progress)
            result["after"] = after.summary()
            result["actions"] = actions
            result["diff"] = diff(found, state, steps, after, actions)
    except model.VirtError as exc:
        keep_identity(exc, vm, begun)
        raise
    result["elapsed"] = round(time.monotonic() - begun, 2)
    return result


def _require(driver, vm, state, steps):
    """Refuse, before anything is recorded or done, a plan that needs a primitive the platform lacks."""
    missing = sorted({a for s in steps for a in (s["action"], s.get("escalate_to"))
                      if a in ACTIONS and a not in driver.capabilities})
    if missing:
        raise model.Unsupported(
            "%s: state %s needs %s, which %s does not offer; nothing was done"
            % (vm.name, state, " and ".join(missing), driver.platform),
            hint="Use state: restarted (a graceful stop, forced off after shutdown_timeout, then a start)"
            if RESET in missing else None)


def keep_identity(exc, vm, begun):
    """Attach the machine as found and the time spent to an error, for its audit line."""
    if getattr(exc, "before", None) is None:
        exc.before = vm.summary()
    exc.elapsed = round(time.monotonic() - begun, 2)
    return exc
