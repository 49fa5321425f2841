"""Render the libvirt test-peer domain templates (stdlib only).

    from guests import render
    xml = render("acpi", "virtops-t1")          # or "hung", or a template path

CLI: python3 guests.py acpi|hung|PATH NAME [UUID]  -> XML on stdout.
"""
import os
import subprocess
import sys
import time
import uuid as _uuid
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
OUTDIR = os.environ.get("VIRTOPS_GUEST_DIR", "/var/lib/libvirt/images/virtops-test")
KERNEL = os.path.join(OUTDIR, "vmlinuz")
INITRD = os.path.join(OUTDIR, "initrd.gz")
READY_MARKER = "VIRTOPS-GUEST: READY"  # printed on ttyS0 by the ACPI guest


def console_log_path(name):
    """Where the serial console of domain `name` is logged (by virtlogd)."""
    return "/var/log/libvirt/qemu/%s-serial.log" % name


def render(template, name, uuid=None, kernel=KERNEL, initrd=INITRD,
           console_log=None, domain_type=None):
    """Return domain XML. template: "acpi", "hung" or a path to a .xml.in.

    domain_type defaults to "kvm" when /dev/kvm exists, else "qemu" (TCG,
    much slower boot)."""
    if template in ("acpi", "hung"):
        template = os.path.join(HERE, "domain-%s.xml.in" % template)
    with open(template) as f:
        xml = f.read()
    values = {
        "NAME": name,
        "UUID": uuid or str(_uuid.uuid4()),
        "KERNEL": kernel,
        "INITRD": initrd,
        "CONSOLE_LOG": console_log or console_log_path(name),
        "TYPE": domain_type or ("kvm" if os.path.exists("/dev/kvm") else "qemu"),
    }
    for key, val in values.items():
        xml = xml.replace("@%s@" % key, escape(val, {"'": "&apos;"}))
    return xml


def build(outdir=OUTDIR):
    """Build kernel+initrd if missing/stale (build_guests.sh is idempotent)."""
    subprocess.run([os.path.join(HERE, "build_guests.sh"), outdir], check=True)


def wait_console(name, text=READY_MARKER, timeout=30.0, console_log=None):
    """Wait until `text` appears in the domain's serial log; True if it did."""
    path = console_log or console_log_path(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if text in f.read():
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    sys.stdout.write(render(sys.argv[1], sys.argv[2], *sys.argv[3:]))
