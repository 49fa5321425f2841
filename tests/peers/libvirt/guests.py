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
# Uncompressed ELF (PVH boot): ~2x faster under TCG than the bzImage "vmlinuz".
KERNEL = os.path.join(OUTDIR, "vmlinux")
INITRD = os.path.join(OUTDIR, "initrd.gz")
READY_MARKER = "VIRTOPS-GUEST: READY"  # printed on ttyS0 by the ACPI guest


def console_log_path(name):
    """Where the serial console of domain `name` is logged (by virtlogd)."""
    return "/var/log/libvirt/qemu/%s-serial.log" % name


def render(template, name, uuid=None, kernel=KERNEL, initrd=INITRD,
           console_log=None, domain_type=None):
    """Return domain XML. template: "acpi", "hung" or a path to a .xml.in.

    domain_type: "kvm" or "qemu" (TCG). Default: $VIRTOPS_DOMAIN_TYPE, else
    TCG for "acpi" (this host's nested KVM cannot boot Linux, see README),
    KVM for "hung" when /dev/kvm exists."""
    kind = template
    if template in ("acpi", "hung"):
        template = os.path.join(HERE, "domain-%s.xml.in" % template)
    if not domain_type:
        domain_type = os.environ.get("VIRTOPS_DOMAIN_TYPE") or (
            "kvm" if kind == "hung" and os.path.exists("/dev/kvm") else "qemu")
    with open(template) as f:
        xml = f.read()
    values = {
        "NAME": name,
        "UUID": uuid or str(_uuid.uuid4()),
        "KERNEL": kernel,
        "INITRD": initrd,
        "CONSOLE_LOG": console_log or console_log_path(name),
        "TYPE": domain_type,
    }
    for key, val in values.items():
        xml = xml.replace("@%s@" % key, escape(val, {"'": "&apos;"}))
    return xml


def build(outdir=OUTDIR):
    """Build kernel+initrd if missing/stale (build_guests.sh is idempotent)."""
    subprocess.run([os.path.join(HERE, "build_guests.sh"), outdir], check=True)


def console_count(name, text=READY_MARKER, console_log=None):
    """How often `text` occurs in the serial log (reboots append, a fresh
    start truncates it)."""
    try:
        with open(console_log or console_log_path(name), errors="replace") as f:
            return f.read().count(text)
    except OSError:
        return 0


def wait_console(name, text=READY_MARKER, timeout=60.0, min_count=1,
                 console_log=None):
    """Wait until `text` occurs >= min_count times in the serial log (use
    console_count()+1 after a reboot/reset). True if it did in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if console_count(name, text, console_log) >= min_count:
            return True
        time.sleep(0.1)
    return False


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    sys.stdout.write(render(sys.argv[1], sys.argv[2], *sys.argv[3:]))
