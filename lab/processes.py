# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The peer processes a lab starts: recognised by their command line (a pid may have
been reused since `up`), stopped by pid, never anything else."""

import os
import signal
import time

_CHILDREN = {}  # the processes this process started, by pid: polled, so that they are reaped


def adopt(proc):
    """Keep a subprocess.Popen this process started, so that gone() reaps it."""
    _CHILDREN[proc.pid] = proc
    return proc


def argv_of(pid):
    """The process's command line, [] when there is none."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def gone(pid):
    """The process has ended (a zombie not yet reaped has too)."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return False
        _CHILDREN.pop(pid, None)
        return True
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def stop(pids, term_wait=10, kill_wait=5):
    """SIGTERM, then SIGKILL what is left; the pids still running after both (normally none)."""
    pids = list(pids)
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, kill_wait)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if not gone(pid)]
            if pids:
                time.sleep(0.05)
        if not pids:
            break
    return pids


def tail(path, chars=3000):
    """The end of a peer's log or output file ("" when there is none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-chars:].strip()
    except OSError:
        return ""
