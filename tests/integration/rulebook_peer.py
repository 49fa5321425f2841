"""The real ansible-rulebook (venv .build/eda-venv, Java 17) running one of the
shipped rulebooks against a test peer, and the audit log it leaves behind.

    with Rulebook(tmp_path, "restart_hung_vm.yml", inventory, variables, env) as rb:
        rb.wait_watching()          # the source has read its endpoint once (endpoints=N: each of N)
        ... inject a fault ...
        rb.wait_for(lambda: audit_actions(...), 120)
    rb.output                       # the whole log, after the with block
"""

import json
import os
import signal
import subprocess
import time

from helpers import ROOT

EDA_VENV = os.path.join(ROOT, ".build", "eda-venv")
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
SOURCE_DIR = os.path.join(ROOT, "extensions", "eda", "plugins", "event_source")
RULEBOOKS = os.path.join(ROOT, "extensions", "eda", "rulebooks")
WATCHING = "hypervisor_health: watching"  # the source's log line after its first read


def executable():
    """ansible-rulebook, or an AssertionError saying what is missing (a failure, not a skip)."""
    exe = os.path.join(EDA_VENV, "bin", "ansible-rulebook")
    assert os.access(exe, os.X_OK), "ansible-rulebook not installed in %s (scripts/bootstrap.sh test)" % EDA_VENV
    assert os.path.isdir(JAVA_HOME), "no Java 17 at %s (scripts/apt-test.txt)" % JAVA_HOME
    return exe


def audit_actions(path, vm_uuid, states=("restarted",)):
    """Audit records of power actions on this VM (any state when states is None)."""
    try:
        with open(path, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []
    # outcome lines only: each action also has an intent line written before it
    return [r for r in records if (r.get("target") or {}).get("uuid") == vm_uuid and r.get("phase") != "intent"
            and (states is None or r.get("state") in states)]


class Rulebook:
    """ansible-rulebook as a child process group; its log in tmp_path/rulebook.log."""

    def __init__(self, tmp_path, rulebook, inventory, variables, env=None, extra_args=(), unset=()):
        self.tmp = tmp_path
        self.log_path = tmp_path / "rulebook.log"
        self.audit = tmp_path / "audit.jsonl"
        vars_path = tmp_path / "rulebook-vars.json"
        vars_path.write_text(json.dumps(variables))
        self.argv = [executable(), "--rulebook", os.path.join(RULEBOOKS, rulebook), "-i", str(inventory),
                     "--vars", str(vars_path), "-S", SOURCE_DIR, "-v", *extra_args]
        self.env = dict(os.environ, JAVA_HOME=JAVA_HOME, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                        PATH=os.path.join(EDA_VENV, "bin") + os.pathsep + os.environ["PATH"],
                        VIRTOPS_AUDIT_LOG=str(self.audit), VIRTOPS_LOCK_DIR=str(tmp_path / "locks"),
                        ANSIBLE_NOCOLOR="1", **(env or {}))
        for key in unset:  # e.g. credentials the test's own process has, which the rulebook must not
            self.env.pop(key, None)
        self.proc = None
        self.output = ""

    def __enter__(self):
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                self.argv, cwd=str(self.tmp), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def __exit__(self, *exc):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.output = self.log_path.read_text()
        return False

    def text(self):
        return self.log_path.read_text()

    def alive(self):
        assert self.proc.poll() is None, "ansible-rulebook exited:\n" + self.text()[-4000:]

    def wait_for(self, predicate, timeout, what="the condition"):
        """Poll predicate() every 0.5 s while the rulebook runs; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            self.alive()
            value = predicate()
            if value:
                return value
            assert time.monotonic() < deadline, "%s: not within %ss\n%s" % (what, timeout, self.text()[-6000:])
            time.sleep(0.5)

    def wait_watching(self, timeout=90, endpoints=1):
        """Until the source has read each of its endpoints once (JVM start + first poll)."""
        return self.wait_for(lambda: self.count(WATCHING) >= endpoints, timeout,
                             "the source's first read of %d endpoint(s)" % endpoints)

    def count(self, text):
        return self.text().count(text)
