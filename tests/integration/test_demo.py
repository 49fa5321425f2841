"""scripts/demo.sh tells its story in under 100 lines, in plain text when piped or with
NO_COLOR, and exits 0 only when every step did what the story says (the lab: a vCenter
simulator, an Oracle VM Manager emulator and libvirt's test:/// driver; no libvirtd)."""

import os
import re
import subprocess
import time

from helpers import ROOT


def _run_demo(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "VIRTOPS_"))}
    env.update(extra)
    begun = time.monotonic()
    proc = subprocess.run([os.path.join(ROOT, "scripts", "demo.sh")], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False)
    print("scripts/demo.sh: %.1f s, %d lines" % (time.monotonic() - begun, len(proc.stdout.splitlines())))
    return proc


def _block(lines, title):
    """The output of the step whose title starts with `title`, up to the next step."""
    start = next(i for i, line in enumerate(lines) if line.startswith("==> " + title))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("==> ")), len(lines))
    return "\n".join(lines[start:end])


def test_demo_tells_its_story_quietly_in_plain_text():
    proc = _run_demo(NO_COLOR="1")
    out = proc.stdout
    assert proc.returncode == 0, out[-5000:]
    lines = out.splitlines()
    assert len(lines) < 100, "%d lines:\n%s" % (len(lines), out)
    assert "\x1b[" not in out, "escape codes in piped NO_COLOR output"
    for noise in ("TASK [", "PLAY [", "skipping:", "Validating arguments", "ok: [", "included:"):
        assert noise not in out, noise

    graph = _block(lines, "Where does each VM run")
    for host, vms in (("kvm02", ("db02",)), ("ovs01", ("erp01", "erp02")), ("ovs02", ("hr01",)),
                      ("esx01", ("web01_esx01", "db01", "app01")), ("esx02", ("web02",))):
        line = next(line for line in graph.splitlines() if line.rstrip().split(":")[0].endswith("@virt_host_" + host))
        assert all(vm in line for vm in vms), line
    for cluster in ("rack1", "pool1", "prod"):
        assert "@virt_cluster_%s:" % cluster in graph

    esx01 = _block(lines, "esx01 dies")
    assert "esx01: not_responding, vmware, cluster prod, 3 VM(s)" in esx01
    assert all(re.search(r"^  %s +unknown .* esx01 +prod +vmware" % vm, esx01, re.M) for vm in ("app01", "db01", "web01"))
    assert "impact.html" in esx01
    ovs01 = _block(lines, "ovs01 dies")
    assert "ovs01: not_responding, ovm, cluster pool1, 2 VM(s)" in ovs01
    assert all(re.search(r"^  %s +unknown .* ovs01 +pool1 +ovm" % vm, ovs01, re.M) for vm in ("erp01", "erp02"))

    plan = _block(lines, "web02 hangs")
    assert "PLAN (check mode, nothing done): restart of web02" in plan and "steps: shutdown=planned, start=planned" in plan
    for title, vm, platform, steps in (("Restart web02", "web02", "vmware", "shutdown=timeout, poweroff=ok, start=ok"),
                                       ("hr01 on Oracle VM", "hr01", "ovm", "shutdown=timeout, poweroff=ok, start=ok"),
                                       ("db02 on KVM", "db02", "libvirt", "shutdown=ok, start=ok")):
        block = _block(lines, title)
        assert re.search(r"DONE: restart of %s \(.*\) on \S+ \[%s\]" % (vm, platform), block), block
        assert "steps: " + steps in block, block
        assert "after: running" in block, block

    seen = _block(lines, "What the peers themselves saw")
    for vm in ("web02", "hr01"):
        assert re.search(r"%s +on \S+ +running +power_ons=1 graceful_shutdowns=0 hard_offs=1" % vm, seen), seen

    refused = _block(lines, "A name that matches two VMs")
    assert "name 'web01' matches 2 VMs" in refused
    assert "web01 [libvirt]" in refused and "web01 [vmware]" in refused
    assert "failed=1" in refused  # the recap of a failed run is kept

    audit = _block(lines, "Every power action")
    assert re.search(r"^  intent +vm_power restarted of db02 \[libvirt\]", audit, re.M), audit
    assert re.search(r"^  outcome +vm_power restarted of db02 \[libvirt\] .*: ok in ", audit, re.M), audit
    assert lines[-1].startswith("Demo done.")
