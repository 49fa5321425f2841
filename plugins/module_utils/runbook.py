# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runbook safety on the controller: the audit log, per-VM locks, rate limits.

The audit log is JSON lines, one per power action, appended with a single
O_APPEND write so concurrent runbooks never interleave a line. The same log
is what the rate limit counts, so there is one record of what was done.
"""

from __future__ import annotations

import datetime
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


def append_audit(path, record):
    """Append one record; create the directory (0700) and file (0640) if needed."""
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


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
                stamp = _parse_time(record.get("time"))
                if since is None or (stamp is not None and stamp >= since):
                    out.append(record)
    except FileNotFoundError:
        pass
    return out


def recent_actions(path, vm_uuid, states, window):
    """Power actions on this VM within `window` seconds that did something
    (states None: any state)."""
    since = time.time() - window
    return [r for r in read_audit(path, since)
            if (r.get("target") or {}).get("uuid") == vm_uuid
            and (states is None or r.get("state") in states) and r.get("steps")]


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


def lock_path(lock_dir, vm_uuid):
    safe = "".join(c for c in vm_uuid if c.isalnum() or c in "-_") or "unknown"
    return os.path.join(os.path.expanduser(lock_dir), safe + ".lock")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(lock_dir, vm_uuid, owner, stale_after=3600):
    """Take the per-VM lock; return its token. Refuse while another run holds it.

    A lock whose holder died on this controller, or older than `stale_after`
    seconds, is taken over (and said so in `taken_over`).
    """
    path = lock_path(lock_dir, vm_uuid)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    token = uuidlib.uuid4().hex
    content = dict(owner, token=token, time=now_iso(), pid=os.getpid(), controller=socket.gethostname())
    taken_over = None
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            held = read_lock(path)
            age = time.time() - (_parse_time(held.get("time")) or 0)
            dead = held.get("controller") == socket.gethostname() and not _pid_alive(int(held.get("pid") or 0))
            if not (dead or age > stale_after):
                raise model.StateConflict(
                    "another runbook holds %s: %s by %s since %s (pid %s on %s)"
                    % (vm_uuid, held.get("runbook"), held.get("who"), held.get("time"),
                       held.get("pid"), held.get("controller")),
                    hint="Wait for it to finish; remove %s only if you are sure it is dead" % path)
            taken_over = held
            os.unlink(path)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle)
        return token, path, taken_over
    raise model.StateConflict("could not take the lock %s" % path)


def read_lock(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def release_lock(lock_dir, vm_uuid, token):
    """Remove the lock if `token` still owns it; return whether it did."""
    path = lock_path(lock_dir, vm_uuid)
    if read_lock(path).get("token") != token:
        return False
    os.unlink(path)
    return True
