"""The libvirt test peer: libvirtd + QEMU on this machine (qemu:///system) and
its guests (tests/peers/libvirt). End states are read with virsh, not with the
collection's own code."""

import os
import subprocess
import sys
import time
import uuid

from helpers import ROOT, virsh

PEER = os.path.join(ROOT, "tests", "peers", "libvirt")
sys.path.insert(0, PEER)
# the peer's own helper, stdlib only
import guests  # noqa: E402  pylint: disable=wrong-import-position

URI = "qemu:///system"
PING = '{"execute":"guest-ping"}'


def start():
    """Start libvirtd and build the guest images; failure to start fails the run."""
    subprocess.run([os.path.join(PEER, "start.sh")], check=True, timeout=600)
    guests.build()
    return URI


def define_and_start(kinds, tmp_dir, prefix="vo"):
    """Define and start one domain per kind ("acpi", "hung"); return {key: name}.

    kinds: {key: kind}. The ACPI guests are waited for until their console
    says READY."""
    tag = uuid.uuid4().hex[:6]
    names = {key: "%s-%s-%s" % (prefix, key, tag) for key in kinds}
    try:
        for key, kind in kinds.items():
            path = os.path.join(str(tmp_dir), "%s.xml" % names[key])
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(guests.render(kind, names[key]))
            virsh(URI, "define", path)
            virsh(URI, "start", names[key])
        for key, kind in kinds.items():
            if kind == "acpi":
                assert guests.wait_console(names[key], timeout=60), "%s did not boot" % names[key]
    except BaseException:
        remove(names.values())
        raise
    return names


def remove(names):
    for name in names:
        virsh(URI, "destroy", name, check=False)
        virsh(URI, "undefine", name, "--managed-save", check=False)


def domstate(name):
    return virsh(URI, "domstate", name)


def domid(name):
    return virsh(URI, "domid", name)


def domuuid(name):
    return virsh(URI, "domuuid", name)


def agent_answers(name):
    return virsh(URI, "qemu-agent-command", name, PING, "--timeout", "2", check=False) == '{"return":{}}'


def wait_agent(name, timeout=60):
    """The guest is up when its agent answers."""
    deadline = time.monotonic() + timeout
    while not agent_answers(name):
        assert time.monotonic() < deadline, "%s: guest agent silent for %ds" % (name, timeout)
        time.sleep(0.5)


def silence_agent(name):
    """Make the guest's qemu-ga stop answering (SIGSTOP, run inside the guest
    through the agent itself, a second later so that the agent replies first)."""
    virsh(URI, "qemu-agent-command", name, "--timeout", "5",
          '{"execute":"guest-exec","arguments":{"path":"/bin/busybox",'
          '"arg":["sh","-c","sleep 1; killall -STOP qemu-ga"]}}')
    deadline = time.monotonic() + 15
    while agent_answers(name):
        assert time.monotonic() < deadline, "%s: guest agent still answers" % name
        time.sleep(0.5)


QEMU_LOG_DIR = "/var/log/libvirt/qemu"


def stop_reasons(name):
    """How libvirt says each run of this domain ended, oldest first: libvirtd writes
    'shutting down, reason=shutdown|destroyed|saved|...' to the domain's QEMU log on
    every stop. Independent of the collection: a driver that pulled the plug and
    said 'shutdown=ok' shows up here as 'destroyed'."""
    try:
        with open(os.path.join(QEMU_LOG_DIR, "%s.log" % name), encoding="utf-8", errors="replace") as fh:
            return [line.rsplit("reason=", 1)[1].strip() for line in fh if "shutting down, reason=" in line]
    except FileNotFoundError:
        return []
