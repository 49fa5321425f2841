# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runbook safety on the controller: the audit log, per-VM locks, rate limits.

The audit log is JSON lines, one per power action, appended with a single
O_APPEND write so concurrent runbooks never interleave a line. The same log
is what the rate limit counts, so there is one record of what was done.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import socket
import time
import uuid as uuidlib

from ansible_collections.virtops.unified.plugins.module_utils import model

DEFAULT_AUDIT_LOG = "~/.ansible/virtops/audit.jsonl"
DEFAULT_LOCK_DIR = "~/.ansible/virtops/locks"


# what vm_guard and the restart runbook count as a restart of a VM
RESTART_STATES = ("restarted", "reset")


def audit_log_path(configured=None):
    """The audit log: the variable virtops_audit_log, else $VIRTOPS_AUDIT_LOG, else the default."""
    return configured or os.environ.get("VIRTOPS_AUDIT_LOG") or DEFAULT_AUDIT_LOG


def lock_dir_path(configured=None):
    """The lock directory: as given, else $VIRTOPS_LOCK_DIR, else the default."""
    return configured or os.environ.get("VIRTOPS_LOCK_DIR") or DEFAULT_LOCK_DIR


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _parse_time(text):
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


class AuditError(model.VirtError):
    """The audit log cannot be written: no power action is taken without its record."""

    hint = "Make the audit log writable, or point virtops_audit_log / VIRTOPS_AUDIT_LOG at a file that is"


def append_audit(path, record):
    """Append one record; create the directory (0700) and file (0640) if needed.

    Raises AuditError naming the path and why; one O_APPEND write per line."""
    path = os.path.expanduser(path)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, "short write")
        finally:
            os.close(fd)
    except OSError as exc:
        raise AuditError("audit log %s cannot be written: %s" % (path, exc.strerror or exc)) from None


def check_audit_writable(path):
    """Fail before acting when the audit log could not take a line (opens it, writes nothing)."""
    path = os.path.expanduser(path)
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))
    except OSError as exc:
        raise AuditError("audit log %s cannot be written: %s; nothing was done" % (path, exc.strerror or exc)) from None
    return path


def read_audit(path, since=None):
    """Records of the log (newer than `since`, epoch seconds); bad lines skipped."""
    path = os.path.expanduser(path)
    out = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                stamp = _parse_time(record.get("time"))
                if since is None or (stamp is not None and stamp >= since):
                    out.append(record)
    except FileNotFoundError:
        pass
    return out


def _same_machine(record, vm_uuid):
    return str((record.get("target") or {}).get("uuid") or "").lower() == str(vm_uuid or "").lower()


def recent_actions(path, vm_uuid, states, window):
    """Power actions on this machine within `window` seconds that did, or may
    have done, something (states None: any state).

    An action is its outcome line with steps, or an intent line whose outcome
    never came (an interrupted run: it may have acted, so it counts)."""
    since = time.time() - window
    records = [r for r in read_audit(path, since) if _same_machine(r, vm_uuid)]
    ended = {r.get("id") for r in records if r.get("phase") != "intent" and r.get("id")}
    out = []
    for rec in records:
        if states is not None and rec.get("state") not in states:
            continue
        if rec.get("phase") == "intent":
            if rec.get("id") not in ended:
                out.append(dict(rec, result="interrupted: no outcome recorded"))
        elif rec.get("steps"):
            out.append(rec)
    return out


def check_rate(path, vm_uuid, name, states, limit, window):
    done = recent_actions(path, vm_uuid, states, window)
    if limit is not None and len(done) >= limit:
        last = done[-1].get("time")
        raise model.StateConflict(
            "%s (%s) was already %s %d time(s) within the last %s (limit %d, last at %s); refusing"
            % (name, vm_uuid, "/".join(states), len(done), _span(window), limit, last),
            hint="A VM that keeps failing needs a person: look at it, or raise the limit on purpose",
        )
    return done


def _span(seconds):
    if seconds % 3600 == 0:
        return "%dh" % (seconds // 3600)
    if seconds % 60 == 0:
        return "%dmin" % (seconds // 60)
    return "%ds" % seconds


# --- who holds a lock ------------------------------------------------------
# A task's worker process exits as soon as the task returns, so the holder of a
# runbook's lock is the process that runs the play (ansible-playbook, under
# ansible-runner, AWX or ansible-rulebook alike): the worker's parent. Its start
# time tells a live holder from a new process that got the same pid.


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _start_ticks(pid):
    """Start time of a process in clock ticks since boot (Linux), or None."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except (OSError, ValueError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 of proc(5)
    except (IndexError, ValueError):
        return None


def holder(pid=None):
    """The identity of a lock holder: a process on this controller that outlives the task."""
    pid = pid or os.getpid()
    return {"pid": pid, "pid_start": _start_ticks(pid), "boot_id": _boot_id(), "controller": socket.gethostname()}


def play_holder():
    """The process that runs the play, seen from a task's worker process."""
    return holder(os.getppid())


def _holder_gone(held):
    """True only when the lock's holder provably no longer runs (on this controller)."""
    if held.get("controller") != socket.gethostname():
        return False  # another controller's process: we cannot see it
    if held.get("boot_id") and held["boot_id"] != _boot_id():
        return True  # this controller rebooted since
    try:
        pid = int(held.get("pid") or 0)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    start = held.get("pid_start")
    return start is not None and _start_ticks(pid) not in (None, start)  # the pid was reused


# --- locks -----------------------------------------------------------------
class LockError(model.StateConflict):
    """The lock directory cannot be used."""


def lock_path(lock_dir, vm_uuid):
    """One lock file per machine id: a readable prefix and a hash of the exact id,
    so ids that only differ in punctuation (web.01, web01) never share a lock."""
    key = str(vm_uuid or "").strip().lower()
    safe = "".join(c for c in key if c.isalnum() or c in "-_")[:64] or "id"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(os.path.expanduser(lock_dir), "%s-%s.lock" % (safe, digest))


@contextlib.contextmanager
def _guard(path):
    """Serialise the read-decide-act steps on one lock (take-over, release) across
    processes and, through POSIX record locks, across controllers sharing the
    directory over NFS. The guard file is never removed, so it is always one file."""
    fd = os.open(path + ".guard", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the record lock


def _lock_dir(lock_dir):
    path = os.path.expanduser(lock_dir)
    try:  # a directory we may not write to fails at the lock file, with its own message
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise LockError("the lock directory %s cannot be used: %s; nothing was done" % (path, exc.strerror or exc),
                        hint="Make it writable by this user, or set virtops_lock_dir / VIRTOPS_LOCK_DIR "
                             "to a directory that is") from None
    return path


def read_lock(path):
    """The lock's content; {} if there is none; {"unreadable": ...} if it cannot be parsed."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        return {"unreadable": exc.strerror or str(exc)}
    try:
        held = json.loads(text)
    except ValueError:
        return {"unreadable": "empty" if not text.strip() else "not JSON"}
    return held if isinstance(held, dict) else {"unreadable": "not a JSON object"}


def _lock_age(path, held):
    stamp = _parse_time(held.get("time"))
    if stamp is None:
        try:
            stamp = os.stat(path).st_mtime
        except OSError:
            return 0
    return time.time() - stamp


def stale_reason(path, held, stale_after):
    """Why a held lock may be taken over, or None while its holder may still run."""
    if not held:
        return None
    if held.get("unreadable"):
        # it may be a lock being written right now (older virtops): only age frees it
        age = _lock_age(path, held)
        return "its file is %s and %ds old" % (held["unreadable"], age) if age > stale_after else None
    if _holder_gone(held):
        return "its holder (pid %s on %s) is gone" % (held.get("pid"), held.get("controller"))
    age = _lock_age(path, held)
    if age > stale_after:
        return "it is %ds old (stale_after %ds)" % (age, stale_after)
    return None


def describe_holder(held):
    if held.get("unreadable"):
        return "an unreadable lock (%s)" % held["unreadable"]
    return "%s by %s since %s (pid %s on %s)" % (held.get("runbook"), held.get("who"), held.get("time"),
                                                 held.get("pid"), held.get("controller"))


def live_lock(lock_dir, vm_uuid, stale_after=3600):
    """The holder of this machine's lock if it may still be running, else None
    (no lock, or a stale one: an interrupted run's lock does not count)."""
    path = lock_path(lock_dir, vm_uuid)
    held = read_lock(path)
    if not held or stale_reason(path, held, stale_after):
        return None
    return held


def acquire_lock(lock_dir, vm_uuid, owner, stale_after=3600, who=None):
    """Take the per-machine lock; return (token, path, taken_over).

    The lock file appears whole or not at all (written aside, then hard-linked
    into place, which fails if it exists). A lock is taken over only when
    stale_reason() says so, under the guard, and `taken_over` says whose it was.
    `who` is the holder identity (holder()/play_holder()); default this process.
    """
    path = lock_path(_lock_dir(lock_dir), vm_uuid)
    token = uuidlib.uuid4().hex
    content = dict(owner, token=token, time=now_iso(), uuid=vm_uuid, **(who or holder()))
    aside = "%s.%s.tmp" % (path, token)
    try:
        with open(aside, "w", encoding="utf-8") as handle:
            json.dump(content, handle)
            handle.flush()
            os.fsync(handle.fileno())
        with _guard(path):
            try:
                os.link(aside, path)
                return token, path, None
            except FileExistsError:
                pass
            held = read_lock(path)
            why = stale_reason(path, held, stale_after)
            if not why:
                raise model.StateConflict(
                    "another runbook holds %s: %s; nothing was done" % (owner.get("vm") or vm_uuid, describe_holder(held)),
                    hint="Wait for it to finish; remove %s only if you are sure that run is dead" % path)
            os.replace(aside, path)  # take-over: atomic, under the guard
            return token, path, dict(held, stale=why)
    except OSError as exc:
        raise LockError("the lock %s cannot be taken: %s; nothing was done" % (path, exc.strerror or exc),
                        hint="Check the lock directory (virtops_lock_dir / VIRTOPS_LOCK_DIR)") from None
    finally:
        if os.path.exists(aside):
            os.unlink(aside)


def release_lock(lock_dir, vm_uuid, token):
    """Remove the lock if `token` still owns it; return whether it did."""
    path = lock_path(lock_dir, vm_uuid)
    if not os.path.exists(path):
        return False
    with _guard(path):
        if read_lock(path).get("token") != token:
            return False
        os.unlink(path)
        return True
