# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The peer processes a lab starts: started detached and awaited on their ready line,
recognised by their command line (a pid may have been reused since `up`), stopped by
pid, never anything else; and the JSON control API the peers share."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

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


def start_ready(argv, workdir, what, ready_timeout, out_name="peer.out", log_name="peer.log"):
    """Start a peer detached (its own session, no pipe to us, so that it outlives `scripts/lab
    up`) and wait for the first line it prints, a JSON object telling where it listens.
    Returns (pid, the ready line as a dict, its log's path); a peer that exits or is not ready
    in time is stopped and a RuntimeError says why, with the end of its log."""
    out_path, log_path = os.path.join(workdir, out_name), os.path.join(workdir, log_name)
    with open(out_path, "wb") as out, open(log_path, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,  # pylint: disable=consider-using-with
                                cwd=workdir, start_new_session=True, close_fds=True)
    adopt(proc)
    deadline = time.monotonic() + ready_timeout
    while True:
        with open(out_path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        if "\n" in text:
            line = text.split("\n", 1)[0]
            break
        if proc.poll() is not None:
            gone(proc.pid)  # reaped
            raise RuntimeError("the %s peer exited (status %s): %s" % (what, proc.returncode, tail(log_path)))
        if time.monotonic() > deadline:
            stop([proc.pid])
            raise RuntimeError("the %s peer was not ready after %ds: %s" % (what, ready_timeout, tail(log_path)))
        time.sleep(0.05)
    try:
        ready = json.loads(line)
        if not isinstance(ready, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        stop([proc.pid])
        raise RuntimeError("the %s peer's ready line %r: %s" % (what, line, exc)) from None
    return proc.pid, ready, log_path


class PeerError(RuntimeError):
    """A peer's control API refused a request."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def control(label, what, base, method, path, body=None, timeout=30):
    """One call to a peer's JSON control API at `base` (for endpoint `label`): the answer,
    PeerError when the peer refuses it, RuntimeError when it does not answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            text = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            pass
        raise PeerError(exc.code, "endpoint %s: the %s peer refused %s %s: %s"
                        % (label, what, method, urllib.parse.unquote(path), text)) from None
    except OSError as exc:
        raise RuntimeError("endpoint %s: the %s peer's control API %s does not answer (%s): is the lab up?"
                           % (label, what, base, exc)) from None


def control_path(*segments):
    """A control API path from segments, each quoted (names hold any character)."""
    return "/" + "/".join(urllib.parse.quote(str(s), safe="") for s in segments)


class ControlledPeer:
    """Base of a lab part whose peer is one process per endpoint with a JSON control API
    (rec["control"]): `down` stops only the processes `_ours` recognises, `_call` and `_path`
    talk to the control API. A part sets `peer` (its name in messages) and `_ours`."""

    peer = "peer"
    stop_wait = 10  # seconds from SIGTERM to SIGKILL

    def _ours(self, pid, rec):
        raise NotImplementedError

    def down(self, ep, rec):
        stop([pid for pid in rec.get("pids") or [] if self._ours(pid, rec)], term_wait=self.stop_wait)

    def _call(self, ep, rec, method, path, body=None, timeout=30):
        return control(ep["name"], self.peer, rec["control"], method, path, body, timeout)

    _path = staticmethod(control_path)
