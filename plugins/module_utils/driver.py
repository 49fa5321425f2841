# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The driver contract every platform implements.

A driver reads its platform in bulk and acts on one machine at a time. It
knows nothing of Ansible: it raises the typed errors of `model` and returns
`Machine` objects.
"""

from __future__ import annotations

import contextlib
import threading
import time

from ansible_collections.virtops.unified.plugins.module_utils import model

# Power primitives a driver may implement. The planner in `power` composes them.
START = "start"
SHUTDOWN = "shutdown"  # graceful: ask the guest OS to stop
POWEROFF = "poweroff"  # hard: pull the plug (or discard a saved state)
RESET = "reset"  # hard reset without power cycle
SUSPEND = "suspend"  # save memory to disk, release the host
RESUME = "resume"  # un-pause
ACTIONS = (START, SHUTDOWN, POWEROFF, RESET, SUSPEND, RESUME)

#: seconds between two progress lines of a wait (at least one line each NOTE_EVERY seconds)
NOTE_EVERY = 15.0


class Ticker:
    """Progress lines of one wait: `tick(describe)` calls `progress(describe(elapsed))` once
    each `every` seconds from `started` (a time.monotonic()). `due()` is the seconds until the
    next line, for the waiter to sleep no longer than that."""

    def __init__(self, progress, every=NOTE_EVERY, started=None):
        self.progress = progress
        self.every = every
        self.started = time.monotonic() if started is None else started
        self.next = self.started + every

    def tick(self, describe):
        if not self.progress:
            return
        now = time.monotonic()
        if now >= self.next:
            self.progress(describe(now - self.started))
            while self.next <= now:
                self.next += self.every

    def due(self):
        """Seconds until the next progress line (a long one when nobody listens)."""
        if not self.progress:
            return 3600.0
        return max(0.0, self.next - time.monotonic())


# (progress, trace) for the drivers opened in this thread now (Driver.listening)
_LISTENING = threading.local()


def elapsed_ms(started):
    """Milliseconds since `started` (a time.monotonic()), for trace lines."""
    return int(round((time.monotonic() - started) * 1000))


class Driver:
    """Base class: one platform endpoint (a vCenter, a libvirt URI, ...)."""

    platform = None
    #: primitives from ACTIONS plus optional "heartbeat", "migrate"
    capabilities = frozenset()
    poll_interval = 0.5
    max_poll_interval = 2.0

    # --- what a watcher (the EDA event source) needs to know -----------------
    #: the VM fact that changes each time the VM starts, so that a power cycle
    #: between two reads shows (None: the platform has none)
    boot_fact = None
    #: list_inventory() reads each running VM's guest heartbeat; when false, a
    #: watcher asks each VM with probe_heartbeat() (one call per VM)
    heartbeat_in_bulk = True
    #: stop_cause() words that mean someone stopped the VM on purpose
    planned_stop_causes = frozenset()
    #: what answers for the guest inside the VM, for hints about a guest that does not answer
    guest_agent = "its guest agent"

    # --- what the caller hears while it waits (set after open(), e.g. by interface.connect) -----
    #: progress(line): a person-readable line at least every `note_every` seconds of each wait
    #: inside power(), migrate(), set_maintenance(), recover() and wait_for(); None: silent
    progress = None
    #: trace(line): one line per platform API call (what, status, milliseconds); never a secret
    trace = None
    note_every = NOTE_EVERY

    def __new__(cls, *args, **kwargs):  # pylint: disable=unused-argument
        self = super().__new__(cls)
        # set before __init__ runs, so that the login's own calls are traced
        self.progress, self.trace = getattr(_LISTENING, "value", None) or (None, None)
        return self

    @classmethod
    @contextlib.contextmanager
    def listening(cls, progress=None, trace=None):
        """The drivers this thread opens meanwhile report to `progress` and `trace` from
        their first call on (the login's)."""
        saved = getattr(_LISTENING, "value", None)
        _LISTENING.value = (progress, trace)
        try:
            yield
        finally:
            _LISTENING.value = saved

    def ticker(self, started=None):
        """A Ticker of this driver's progress, for one wait."""
        return Ticker(self.progress, self.note_every, started)

    @classmethod
    def open(cls, options, connect_timeout=30):
        """Connect with the platform's resolved connection options (registry.Platform.resolve)."""
        return cls(connect_timeout=connect_timeout, **options)

    @classmethod
    def open_watch(cls, options, connect_timeout=30, probe_heartbeats=False):
        """A connection that only reads: list_inventory(), and probe_heartbeat() when
        probe_heartbeats is true. Default: open()."""
        return cls.open(options, connect_timeout=connect_timeout)

    @classmethod
    def safe_endpoint(cls, values):
        """The endpoint options (registry Option.endpoint) as they may be shown: a driver
        whose endpoint values can hold a secret (a password in a URI) masks it here."""
        return dict(values)

    @classmethod
    def boot_id(cls, vm):
        """What changes each time this VM starts (`boot_fact`), or None."""
        return vm.facts.get(cls.boot_fact) if cls.boot_fact else None

    @classmethod
    def stop_cause(cls, vm):
        """Why a VM is stopped or crashed, as a word of the driver's own vocabulary;
        "unknown" when the platform does not say."""
        return "crashed" if vm.power_state == model.CRASHED else "unknown"

    def probe_heartbeat(self, vm):
        """The guest heartbeat of one running VM, asked now. Default: as the bulk read had it."""
        return vm.heartbeat

    def close(self):
        """Release the connection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- reads -----------------------------------------------------------
    def list_inventory(self):
        """Hosts and VMs of the endpoint in bulk, as a `model.Inventory`."""
        raise NotImplementedError

    def find(self, name=None, uuid=None):
        """The one VM with this uuid (preferred) or name, current state."""
        return model.pick_one(self.list_inventory().vms, name=name, uuid=uuid, where=self.where())

    def refresh(self, vm, heartbeat=False):
        """The same VM, read again. Raises NotFound if it went away."""
        raise NotImplementedError

    def where(self):
        """' on <endpoint>' for messages."""
        return ""

    # --- actions ---------------------------------------------------------
    def power(self, vm, action, timeout=600):
        """Issue one primitive from ACTIONS. Where the platform runs it as a task (vSphere),
        wait for the task within `timeout` seconds (the step's budget); the power state
        itself is awaited by wait_for()."""
        raise NotImplementedError

    def wait_for(self, vm, predicate, timeout, what, progress=None, heartbeat=False, started=None):
        """Poll `refresh` until `predicate(machine)` holds, for `timeout` seconds from
        `started` (a time.monotonic(); default: now), so that a step's budget counts the
        time its request took.

        Returns the last machine read; raises model.Timeout naming what was
        awaited and the state last seen.
        """
        start = time.monotonic() if started is None else started
        interval = self.poll_interval
        ticker = Ticker(progress or self.progress, self.note_every, start)
        current = self.refresh(vm, heartbeat=heartbeat)
        while not predicate(current):
            now = time.monotonic()
            if now - start >= timeout:
                exc = model.Timeout(
                    "%s %s: timed out after %ds waiting for %s (last state %s/%s, heartbeat %s)"
                    % (self.platform, vm.name, timeout, what, current.power_state,
                       current.power_state_raw, current.heartbeat)
                )
                exc.machine = current  # the state last seen: the failure's `after`
                raise exc
            time.sleep(max(0.05, min(interval, timeout - (now - start), ticker.due())))
            interval = min(interval * 1.5, self.max_poll_interval)
            last = current  # said before the next read, which may be slow (a guest agent's ping)
            ticker.tick(lambda waited, seen=last: "%s: still waiting for %s (%d s of %d s, state %s, heartbeat %s)"
                        % (vm.name, what, waited, timeout, seen.power_state_raw, seen.heartbeat))
            current = self.refresh(vm, heartbeat=heartbeat)
        return current
