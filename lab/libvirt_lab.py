# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's libvirt part, with two drivers (`driver:` of the endpoint).

`driver: test` (the default): each hypervisor a file of libvirt's test driver.
libvirt's test driver (https://libvirt.org/drvtest.html) reads a node
description from the file of a `test:///PATH` URI each time a client connects,
so each lab host is one such file, and the state a client changes lives only as
long as its connection. What the lab shows is therefore the file: power
changes made through the collection are not kept, and the power counts are
null (not observed). Faults act on the files: a dead host is a file moved
aside (the URI no longer opens, as a host that does not answer), a crashed VM
is its run state set to shut off in the file.

`driver: qemu`: one host, this machine's real qemu:///system (the libvirtd of
tests/peers/libvirt, started by its start.sh), with real QEMU guests:

* Each VM is a domain `lab-<id>-<name>`, <id> six hex digits of a hash of the
  endpoint's directory in DIR (so stable for a DIR, and two labs run side by
  side). `graceful: false` is the peer's `hung` guest (SeaBIOS, no OS, ignores
  ACPI; no agent, or with `heartbeat: lost` an agent channel nobody answers),
  any other the `acpi` guest (busybox Linux: powers off on ACPI, runs qemu-ga;
  `heartbeat: none` = no agent channel, `lost` = started with the agent
  silenced). `power: stopped` is defined and not started, `suspended` a
  managed save. The domains are recorded in DIR/peers/<endpoint>/domains.json
  as they are defined: `down` (or a later `up` of the same DIR) destroys and
  undefines those, by name and uuid, and no other.
* The controller reaches the host through lab/unix_proxy.py, a detached
  process on DIR/peers/<endpoint>/libvirt.sock forwarding to libvirtd's
  socket: the source's URI is `qemu+unix:///system?socket=...`. Host faults
  switch it: forward (connected), silent (cut off: a network partition),
  refuse (dead).
* `state` reads qemu:///system directly (never the proxy, never the
  collection). The counts come from libvirt's own per-domain log
  /var/log/libvirt/qemu/<domain>.log, read from where it stood at the end of
  `up`: libvirt writes "starting up" at each start and "shutting down,
  reason=R" at each stop. power_ons = starts (a restore of a managed save, which
  libvirt starts with -incoming, and a start that failed are none),
  graceful_shutdowns = reason=shutdown, hard_offs = reason=destroyed; crashed,
  saved and the others count nowhere. A reboot or reset inside one QEMU process
  writes no line there and counts nowhere.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid as uuidlib
import xml.etree.ElementTree as ET

import processes  # lab/processes.py: the lab's own peer processes

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
ET.register_namespace("test", TEST_NS)
# virDomainState numbers, as <test:runstate> takes them
RUNSTATE = {"running": 1, "suspended": 3, "stopped": 5}
POWER = {1: "running", 2: "running", 3: "suspended", 4: "stopped", 5: "stopped", 6: "stopped", 7: "suspended"}
NODE = """<node>
  <cpu><mhz>2400</mhz><model>x86_64</model><active>16</active><total>16</total><nodes>1</nodes>
  <sockets>1</sockets><cores>8</cores><threads>2</threads></cpu>
  <memory>67108864</memory>
</node>"""
NO_GUEST = ("libvirt's test driver has no guest agent and no guest to hang or to ignore a shutdown; "
            "the QEMU guests of tests/peers/libvirt do that")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER = os.path.join(ROOT, "tests", "peers", "libvirt")
PROXY = os.path.join(HERE, "unix_proxy.py")
QEMU_URI = "qemu:///system"
UPSTREAM = "/var/run/libvirt/libvirt-sock"
QEMU_LOG_DIR = "/var/log/libvirt/qemu"
QEMU_RUN_DIR = "/run/libvirt/qemu"
GUEST_DIR = os.environ.get("VIRTOPS_GUEST_DIR", "/var/lib/libvirt/images/virtops-test")
LAB_NS = "https://github.com/virtops/unified/lab"
AGENT_CHANNEL = "org.qemu.guest_agent.0"
PING = '{"execute":"guest-ping"}'
READY_MARKER = "VIRTOPS-GUEST: READY"
BOOT_TIMEOUT = 120  # seconds for every started acpi guest to print READY (TCG, 2 cores)
AGENT_TIMEOUT = 30  # seconds for an agent to answer, or to fall silent
STOP_TIMEOUT = 30  # seconds for libvirt to see a killed QEMU gone
PROXY_TIMEOUT = 10  # seconds for the proxy to apply a mode
CONNECT_TIMEOUT = 5  # the inventory source's connect_timeout: how soon a cut-off host is unreachable
SUN_PATH_MAX = 107  # bytes of a unix socket path (sockaddr_un.sun_path, with its NUL)
NAME_BYTES_MAX = 229  # libvirt names files after the domain (<name>-serial.log): 255 bytes with the prefix
# memory_mb and cpus the guests take (the acpi guest's kernel needs ~128 MiB; TCG on 2 cores)
MEMORY_MB = {"acpi": (128, 128, 4096), "hung": (32, 16, 4096)}  # default, low, high
CPUS = (1, 1, 4)
NO_PROXY_MODE = {"forward": "connected", "silent": "not_responding", "refuse": "not_responding"}
_QEMU_POWER = {1: "running", 2: "running", 3: "suspended", 4: "running", 5: "stopped", 6: "stopped",
               7: "suspended"}
_REASONS = {5: {0: "unknown", 1: "shutdown", 2: "destroyed", 3: "crashed", 4: "migrated", 5: "saved", 6: "failed",
                7: "from_snapshot", 8: "daemon"},
            1: {1: "booted", 2: "migrated", 3: "restored", 4: "from_snapshot", 5: "unpaused",
                6: "migration_canceled", 7: "save_canceled", 8: "wakeup", 9: "crashed", 10: "postcopy"},
            3: {1: "user", 2: "migration", 3: "save", 4: "dump", 5: "ioerror", 6: "watchdog"}}
_STATE_WORD = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
               6: "crashed", 7: "pmsuspended"}
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Run in the acpi guest through its agent (guest-exec). The hang: a second later (so that the
# agent replies first) qemu-ga is stopped, and stays stopped until a key arrives on the guest's
# keyboard, which `vm-unhang` sends with virDomainSendKey (no agent needed for that).
GUEST_HANG = r"""sleep 1
kbd=
for e in /sys/class/input/event*; do
  case "$(cat $e/device/name 2>/dev/null)" in *[Kk]eyboard*) kbd=/dev/input/${e##*/};; esac
done
kill -STOP $(cat /run/qemu-ga.pid)
echo "VIRTOPS-GUEST: agent hung (lab: vm-hang)" >/dev/console
until [ "$(dd if=$kbd bs=24 count=1 2>/dev/null | wc -c)" = 24 ]; do sleep 1; done
kill -CONT $(cat /run/qemu-ga.pid)
echo "VIRTOPS-GUEST: agent answers again (lab: vm-unhang)" >/dev/console
"""
# Graceful requests ignored until the next boot: the agent's guest-shutdown (shutdown and
# reboot) runs /sbin/shutdown, which now does nothing; the init's power-button watcher (the
# subshells of /init and the dd reading the "Power Button" device) is killed.
GUEST_IGNORE_GRACEFUL = r"""cat > /sbin/shutdown.lab <<'EOS'
#!/bin/sh
echo "VIRTOPS-GUEST: shutdown $* ignored (lab: vm-ignore-graceful)" >/dev/console
EOS
chmod 755 /sbin/shutdown.lab && mv /sbin/shutdown.lab /sbin/shutdown
pb=
for e in /sys/class/input/event*; do
  [ "$(cat $e/device/name 2>/dev/null)" = "Power Button" ] && pb=/dev/input/${e##*/}
done
for p in /proc/[0-9]*; do
  [ "${p#/proc/}" = 1 ] && continue
  [ "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" = "/bin/busybox sh /init " ] && kill -9 ${p#/proc/}
done
for p in /proc/[0-9]*; do
  for f in $p/fd/*; do [ "$(readlink $f)" = "$pb" ] && kill -9 ${p#/proc/}; done
done 2>/dev/null
echo "VIRTOPS-GUEST: graceful requests are ignored until the next boot (lab: vm-ignore-graceful)" >/dev/console
"""
KEY_LEFTSHIFT = 42  # linux keycode: presses nothing in the guest but wakes the hang's reader


def _hosts(ep):
    for cluster in ep.get("clusters") or []:
        for host in cluster.get("hosts") or []:
            yield cluster.get("name"), host
    for host in ep.get("hosts") or []:
        yield None, host


class LibvirtLab:
    name = "libvirt"
    plugin = "virtops.unified.libvirt"

    def check(self, ep):
        where = "endpoint %s" % ep["name"]
        driver = ep.get("driver", "test")
        if driver == "qemu":
            QEMU.check(ep)
            return
        if driver != "test":
            raise ValueError("%s: driver %r: the libvirt lab has the drivers test (libvirt's test:/// files) and "
                             "qemu (real guests on this machine's qemu:///system)" % (where, driver))
        for key in ("username", "password"):
            if key in ep:
                raise ValueError("%s: %s: libvirt's test:/// driver takes no credentials" % (where, key))
        names = set()
        for _cluster, host in _hosts(ep):
            if host["name"] in names:
                raise ValueError("%s: host %s is listed twice" % (where, host["name"]))
            names.add(host["name"])
            for key in ("kind", "of", "power", "graceful"):
                if key in host:
                    raise ValueError("%s host %s: %s is not a libvirt host field" % (where, host["name"], key))
            if host.get("state", "connected") != "connected":
                raise ValueError("%s host %s: state %s: a libvirt host is its own endpoint, connected or not "
                                 "answering (the fault host-down)" % (where, host["name"], host["state"]))
            vms = set()
            for vm in host.get("vms") or []:
                if vm["name"] in vms:
                    raise ValueError("%s host %s: libvirt domain names are unique per host: %s is there twice"
                                     % (where, host["name"], vm["name"]))
                vms.add(vm["name"])
                for key, why in (("folder", "libvirt has no folders"),
                                 ("priority", "libvirt keeps no restart priority (compose virt_restart_priority)"),
                                 ("heartbeat", NO_GUEST), ("graceful", NO_GUEST)):
                    if key in vm and not (key == "heartbeat" and vm[key] == "none"):
                        raise ValueError("%s VM %s: %s: %s" % (where, vm["name"], key, why))

    # --- up ------------------------------------------------------------------
    @staticmethod
    def _uuid(ep, host, vm):
        if vm.get("uuid"):
            return vm["uuid"]
        return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "virtops-lab:%s/%s/%s" % (ep["name"], host["name"], vm["name"])))

    def _node(self, ep, host):
        node = ET.fromstring(NODE)
        for vm in host.get("vms") or []:
            dom = ET.SubElement(node, "domain", {"type": "test"})
            ET.SubElement(dom, "name").text = vm["name"]
            ET.SubElement(dom, "uuid").text = self._uuid(ep, host, vm)
            ET.SubElement(dom, "memory", {"unit": "MiB"}).text = str(vm.get("memory_mb", 1024))
            ET.SubElement(dom, "vcpu").text = str(vm.get("cpus", 1))
            ET.SubElement(ET.SubElement(dom, "os"), "type").text = "hvm"
            ET.SubElement(dom, "{%s}runstate" % TEST_NS).text = str(RUNSTATE[vm.get("power", "running")])
        return ET.ElementTree(node)

    def up(self, ep, workdir):
        if ep.get("driver", "test") == "qemu":
            return QEMU.up(ep, workdir)
        hypervisors, files = [], {}
        for index, (cluster, host) in enumerate(_hosts(ep)):
            path = os.path.join(workdir, "host%d.xml" % index)  # host names are any UTF-8: not in paths
            for old in (path, path + ".down"):
                if os.path.exists(old):
                    os.unlink(old)
            self._node(ep, host).write(path, encoding="utf-8", xml_declaration=True)
            files[host["name"]] = path
            entry = {"name": host["name"], "uri": "test://" + path}
            if cluster:
                entry["cluster"] = cluster
            hypervisors.append(entry)
        return {"pids": [], "listen": None, "files": files, "source": {"hypervisors": hypervisors}, "credentials": {}}

    def down(self, ep, rec):
        """driver test: nothing runs; the files stay for a look afterwards."""
        if ep.get("driver", "test") == "qemu":
            return QEMU.down(ep, rec)

    # --- state ----------------------------------------------------------------
    def state(self, ep, rec):
        if ep.get("driver", "test") == "qemu":
            return QEMU.state(ep, rec)
        import libvirt  # pylint: disable=import-outside-toplevel
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        machines, hosts = [], []
        for cluster, host in _hosts(ep):
            path = rec["files"][host["name"]]
            alive = os.path.exists(path)
            hosts.append({"endpoint": ep["name"], "name": host["name"], "cluster": cluster,
                          "state": "connected" if alive else "down"})
            if not alive:
                continue
            conn = libvirt.openReadOnly("test://" + path)
            order = {vm["name"]: index for index, vm in enumerate(host.get("vms") or [])}
            try:
                # in the lab file's order: libvirt lists them in its hash order, which changes per process
                for dom in sorted(conn.listAllDomains(), key=lambda d: (order.get(d.name(), len(order)), d.name())):
                    machines.append({
                        "endpoint": ep["name"], "kind": "vm", "name": dom.name(), "uuid": dom.UUIDString(),
                        "host": host["name"], "cluster": cluster, "power": POWER.get(dom.state()[0], "unknown"),
                        "heartbeat": "none", "power_ons": None, "graceful_shutdowns": None, "hard_offs": None})
            finally:
                conn.close()
        return {"machines": machines, "hosts": hosts}

    # --- faults ----------------------------------------------------------------
    def fault(self, ep, rec, fault, name):
        if ep.get("driver", "test") == "qemu":
            return QEMU.fault(ep, rec, fault, name)
        files = rec["files"]
        if fault in ("host-down", "host-up", "endpoint-down", "endpoint-up"):
            targets = list(files) if fault.startswith("endpoint") else [name]
            for host in targets:
                if host not in files:
                    raise ValueError("endpoint %s has no host %r" % (ep["name"], host))
                path = files[host]
                if fault.endswith("-down") and os.path.exists(path):
                    os.rename(path, path + ".down")
                elif fault.endswith("-up") and os.path.exists(path + ".down"):
                    os.rename(path + ".down", path)
            return "%s: %s %s" % (ep["name"], ", ".join(targets),
                                  "no longer answers" if fault.endswith("-down") else "answers again")
        if fault == "host-isolate":
            raise NotImplementedError("a libvirt host is its own endpoint, with no manager to lose it: cut off "
                                      "and dead look the same from the controller; use host-down")
        if fault == "endpoint-silent":
            raise NotImplementedError("a test:/// file cannot accept a connection and stay silent")
        if fault == "vm-crash":
            return self._crash(ep, rec, name)
        raise NotImplementedError("%s: %s" % (fault, NO_GUEST))

    def _crash(self, ep, rec, name):
        wanted, _at, on_host = name.partition("@")
        hits = []
        for _cluster, host in _hosts(ep):
            if on_host and host["name"] != on_host:
                continue
            path = rec["files"][host["name"]]
            if not os.path.exists(path):
                continue
            tree = ET.parse(path)
            for dom in tree.getroot().findall("domain"):
                if dom.findtext("name") == wanted:
                    hits.append((host["name"], path, tree, dom))
        if not hits:
            raise ValueError("endpoint %s: no VM %r on a host that answers" % (ep["name"], name))
        if len(hits) > 1:
            raise ValueError("endpoint %s: %r is on %s: say which, as %s"
                             % (ep["name"], wanted, ", ".join(h[0] for h in hits),
                                " or ".join("%s@%s" % (wanted, h[0]) for h in hits)))
        host, path, tree, dom = hits[0]
        dom.find("{%s}runstate" % TEST_NS).text = str(RUNSTATE["stopped"])
        tree.write(path + ".new", encoding="utf-8", xml_declaration=True)
        os.replace(path + ".new", path)
        return "%s: %s on %s is off (crashed)" % (ep["name"], wanted, host)


# --- driver: qemu ------------------------------------------------------------------
ET.register_namespace("lab", LAB_NS)


def _libvirt():
    import libvirt  # pylint: disable=import-outside-toplevel
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def _open(ep):
    """qemu:///system itself, read-write (the agent commands need it), never the proxy."""
    libvirt = _libvirt()
    try:
        return libvirt.open(QEMU_URI)
    except libvirt.libvirtError as exc:
        raise ValueError("endpoint %s: %s does not answer (%s): is libvirtd up? tests/peers/libvirt/start.sh starts "
                         "it" % (ep["name"], QEMU_URI, exc.get_error_message())) from None


def _run(argv, what, timeout):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError("%s: %s" % (what, exc)) from None
    if proc.returncode != 0:
        raise RuntimeError("%s (exit %d): %s" % (what, proc.returncode, (proc.stderr or proc.stdout).strip()[-2000:]))


def _wait(test, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        if test():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


class QemuLab:
    """driver: qemu: one host, this machine's qemu:///system, reached through a proxy the lab can cut."""

    # --- check ------------------------------------------------------------------------
    def check(self, ep):
        where = "endpoint %s (libvirt, driver qemu)" % ep["name"]
        for key in ("username", "password"):
            if key in ep:
                raise ValueError("%s: %s: libvirtd's unix socket takes no credentials (it trusts local root)"
                                 % (where, key))
        hosts = list(_hosts(ep))
        if len(hosts) != 1:
            raise ValueError("%s: hosts: driver qemu is this machine's qemu:///system, one host per endpoint, "
                             "and %d are given; give each its own endpoint, or use driver test for several"
                             % (where, len(hosts)))
        _cluster, host = hosts[0]
        for key in ("kind", "of", "power", "graceful"):
            if key in host:
                raise ValueError("%s host %s: %s is not a libvirt host field" % (where, host["name"], key))
        if host.get("state", "connected") not in ("connected", "not_responding"):
            raise ValueError("%s host %s: state %s: a libvirt host has no manager to be in maintenance or "
                             "disconnected from; connected, or not_responding (cut off from up on, as after "
                             "host-isolate)" % (where, host["name"], host["state"]))
        names, uuids = set(), set()
        for vm in host.get("vms") or []:
            self._check_vm(where, vm, names, uuids)

    @staticmethod
    def _check_vm(where, vm, names, uuids):
        name = vm["name"]
        what = "%s VM %r" % (where, name)

        def bad(field, why):
            raise ValueError("%s: %s: %s" % (what, field, why))

        if "/" in name:
            bad("name", "a libvirt domain name cannot hold '/'")
        if any(ord(c) < 0x20 or ord(c) == 0x7f for c in name):
            bad("name", "holds a control character, which a libvirt domain name (XML, and file names) cannot")
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            bad("name", "is not valid UTF-8")
        if size > NAME_BYTES_MAX:
            bad("name", "%d bytes of UTF-8: libvirt names files after the domain (lab-ID-NAME-serial.log), so "
                "at most %d" % (size, NAME_BYTES_MAX))
        if name in names:
            bad("name", "libvirt domain names are unique per host: it is there twice")
        names.add(name)
        for key, why in (("folder", "libvirt has no folders"),
                         ("priority", "libvirt keeps no restart priority (compose virt_restart_priority)")):
            if key in vm:
                bad(key, why)
        if "graceful" in vm and not isinstance(vm["graceful"], bool):
            bad("graceful", "must be true or false, not %r" % (vm["graceful"],))
        guest = "hung" if vm.get("graceful") is False else "acpi"
        if guest == "hung" and vm.get("heartbeat") == "ok":
            bad("heartbeat ok", "graceful: false is the hung guest (SeaBIOS, no OS), which runs no guest agent: "
                "heartbeat none, or lost (an agent channel that nothing answers)")
        if vm.get("heartbeat") == "lost" and vm.get("power", "running") == "stopped":
            bad("heartbeat lost", "needs a running or suspended guest (power is stopped): a hang is a state of "
                "a running guest")
        _default, low, high = MEMORY_MB[guest]
        for key, (low, high) in (("memory_mb", (low, high)), ("cpus", CPUS[1:])):
            value = vm.get(key)
            if key in vm and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
                bad(key, "must be an integer from %d to %d for the %s guest (real QEMU on this machine), not %r"
                    % (low, high, guest, value))
        if "uuid" in vm:
            if not isinstance(vm["uuid"], str) or not UUID_RE.match(vm["uuid"]):
                bad("uuid", "%r is not a UUID (8-4-4-4-12 hex digits)" % (vm["uuid"],))
            if vm["uuid"].lower() in uuids:
                bad("uuid", "%s is given twice" % vm["uuid"])
            uuids.add(vm["uuid"].lower())

    # --- the plan, the domain XML ------------------------------------------------------
    @staticmethod
    def labid(workdir):
        """Six hex digits, stable for the endpoint's directory in DIR."""
        return hashlib.sha256(os.path.abspath(workdir).encode("utf-8", "surrogateescape")).hexdigest()[:6]

    def _plan(self, ep, workdir):
        labid = self.labid(workdir)
        _cluster, host = next(_hosts(ep))
        plan = []
        for vm in host.get("vms") or []:
            guest = "hung" if vm.get("graceful") is False else "acpi"
            heartbeat = vm.get("heartbeat", "ok" if guest == "acpi" else "none")
            domain = "lab-%s-%s" % (labid, vm["name"])
            stable = uuidlib.uuid5(uuidlib.NAMESPACE_URL, "virtops-lab-qemu:%s/%s" % (workdir, vm["name"]))
            plan.append({
                "name": vm["name"], "domain": domain, "guest": guest, "heartbeat": heartbeat,
                "agent": heartbeat != "none", "power": vm.get("power", "running"),
                "uuid": (vm.get("uuid") or str(stable)).lower(),
                "memory_mb": vm.get("memory_mb", MEMORY_MB[guest][0]), "cpus": vm.get("cpus", CPUS[0]),
                "console": os.path.join(QEMU_LOG_DIR, "%s-serial.log" % domain),
                "log": os.path.join(QEMU_LOG_DIR, "%s.log" % domain)})
        return plan

    @staticmethod
    def _xml(ep, workdir, d):
        """The peer's guests (tests/peers/libvirt/domain-*.xml.in), with the lab's memory, cpus and agent."""
        dtype = os.environ.get("VIRTOPS_DOMAIN_TYPE") or (
            "kvm" if d["guest"] == "hung" and os.path.exists("/dev/kvm") else "qemu")  # see the peer's README
        dom = ET.Element("domain", {"type": dtype})
        ET.SubElement(dom, "name").text = d["domain"]
        ET.SubElement(dom, "uuid").text = d["uuid"]
        ET.SubElement(dom, "title").text = "virtops lab %s: %s" % (ep["name"], d["name"])
        ET.SubElement(ET.SubElement(dom, "metadata"), "{%s}vm" % LAB_NS,
                      {"dir": workdir, "endpoint": ep["name"], "name": d["name"], "guest": d["guest"]})
        ET.SubElement(dom, "memory", {"unit": "MiB"}).text = str(d["memory_mb"])
        ET.SubElement(dom, "vcpu").text = str(d["cpus"])
        os_el = ET.SubElement(dom, "os")
        ET.SubElement(os_el, "type", {"arch": "x86_64", "machine": "pc"}).text = "hvm"
        if d["guest"] == "acpi":
            ET.SubElement(os_el, "kernel").text = os.path.join(GUEST_DIR, "vmlinux")
            ET.SubElement(os_el, "initrd").text = os.path.join(GUEST_DIR, "initrd.gz")
            ET.SubElement(os_el, "cmdline").text = "console=ttyS0 loglevel=4"
        else:
            ET.SubElement(os_el, "boot", {"dev": "hd"})
            ET.SubElement(os_el, "bios", {"useserial": "yes"})
        ET.SubElement(ET.SubElement(dom, "features"), "acpi")
        for key, value in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
            ET.SubElement(dom, key).text = value
        devices = ET.SubElement(dom, "devices")
        serial = ET.SubElement(devices, "serial", {"type": "file"})
        ET.SubElement(serial, "source", {"path": d["console"], "append": "off"})
        ET.SubElement(serial, "target", {"port": "0"})
        if d["agent"]:
            channel = ET.SubElement(devices, "channel", {"type": "unix"})
            ET.SubElement(channel, "target", {"type": "virtio", "name": AGENT_CHANNEL})
        ET.SubElement(devices, "controller", {"type": "usb", "model": "none"})
        ET.SubElement(devices, "memballoon", {"model": "none"})
        return ET.tostring(dom, encoding="unicode")

    # --- the record of defined domains, kept in the endpoint's directory ------------------
    @staticmethod
    def _domains_file(workdir):
        return os.path.join(workdir, "domains.json")

    def _save_domains(self, workdir, domains):
        path = self._domains_file(workdir)
        with open(path + ".new", "w", encoding="utf-8") as handle:
            json.dump(domains, handle, ensure_ascii=False, indent=1)
        os.replace(path + ".new", path)

    def _remove_domains(self, conn, workdir, domains):
        """Destroy and undefine the domains of this record that are still there by name and uuid; keep the rest."""
        libvirt = _libvirt()
        kept = []
        for d in domains:
            try:
                dom = conn.lookupByUUIDString(d["uuid"])
            except libvirt.libvirtError:
                continue
            if dom.name() != d["domain"] or not d["domain"].startswith("lab-%s-" % self.labid(workdir)):
                continue  # that uuid is another domain now: not ours
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            except libvirt.libvirtError as exc:
                print("lab: %s: %s" % (d["domain"], exc), file=sys.stderr)
                kept.append(d)
        self._save_domains(workdir, kept)
        return kept

    # --- the proxy ----------------------------------------------------------------------
    @staticmethod
    def _ours(pid, rec):
        argv = processes.argv_of(pid)
        return any(os.path.basename(a) == "unix_proxy.py" for a in argv[:3]) and rec.get("socket") in argv

    def _start_proxy(self, workdir, sock, mode):
        control = os.path.join(workdir, "proxy.mode")
        with open(control, "w", encoding="ascii") as handle:
            handle.write(mode + "\n")
        if os.path.exists(control + ".applied"):
            os.unlink(control + ".applied")
        log_path = os.path.join(workdir, "proxy.log")
        with open(log_path, "ab") as log:
            # detached: its own session, no pipe to us, so it outlives `scripts/lab up`
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, PROXY, "--listen", sock, "--upstream", UPSTREAM, "--control", control],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=workdir, start_new_session=True,
                close_fds=True)
        processes.adopt(proc)
        applied = "%s %d" % (mode, proc.pid)
        if not _wait(lambda: processes.tail(control + ".applied") == applied or proc.poll() is not None, PROXY_TIMEOUT, 0.05) \
                or proc.poll() is not None:
            raise RuntimeError("the lab's proxy to libvirtd did not start (%s): %s" % (
                "exit %s" % proc.returncode if proc.poll() is not None else "no answer", processes.tail(log_path)))
        return proc.pid

    def _mode(self, rec):
        """The mode the proxy applied, None if it is not running."""
        pids = rec.get("pids") or []
        if not pids or not self._ours(pids[0], rec) or processes.gone(pids[0]):
            return None
        text = processes.tail(rec["control"] + ".applied").split()
        return text[0] if len(text) == 2 and text[1] == str(pids[0]) else None

    def _switch(self, ep, rec, mode):
        pids = rec.get("pids") or []
        if not pids or not self._ours(pids[0], rec) or processes.gone(pids[0]):
            raise RuntimeError("endpoint %s: the lab's proxy to libvirtd is not running (is the lab up? "
                               "scripts/lab down DIR, then up)" % ep["name"])
        control = rec["control"]
        with open(control + ".new", "w", encoding="ascii") as handle:
            handle.write(mode + "\n")
        os.replace(control + ".new", control)
        os.kill(pids[0], signal.SIGHUP)
        if not _wait(lambda: processes.tail(control + ".applied") == "%s %d" % (mode, pids[0]), PROXY_TIMEOUT, 0.05):
            raise RuntimeError("endpoint %s: the proxy did not switch to %s within %ds: %s"
                               % (ep["name"], mode, PROXY_TIMEOUT, processes.tail(os.path.join(rec["workdir"], "proxy.log"))))

    @staticmethod
    def _host_file(rec):
        return os.path.join(rec["workdir"], "host.json")

    def _dead(self, rec):
        try:
            with open(self._host_file(rec), encoding="utf-8") as handle:
                return bool(json.load(handle).get("dead"))
        except (OSError, ValueError):
            return False

    def _set_dead(self, rec, dead):
        with open(self._host_file(rec) + ".new", "w", encoding="utf-8") as handle:
            json.dump({"dead": dead}, handle)
        os.replace(self._host_file(rec) + ".new", self._host_file(rec))

    # --- the guests ------------------------------------------------------------------------
    @staticmethod
    def _ping(dom):
        libvirt = _libvirt()
        import libvirt_qemu  # pylint: disable=import-outside-toplevel
        try:
            libvirt_qemu.qemuAgentCommand(dom, PING, 2, 0)
            return True
        except libvirt.libvirtError:
            return False

    @staticmethod
    def _guest_exec(dom, script, wait=False):
        """Run a shell script in the acpi guest through its agent; with wait, its exit code."""
        import libvirt_qemu  # pylint: disable=import-outside-toplevel
        out = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-exec", "arguments": {
            "path": "/bin/busybox", "arg": ["sh", "-c", script]}}), 10, 0)
        pid = json.loads(out)["return"]["pid"]
        if not wait:
            return None
        status = {}

        def exited():
            status.update(json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(
                {"execute": "guest-exec-status", "arguments": {"pid": pid}}), 10, 0))["return"])
            return status.get("exited")

        if not _wait(exited, 15):
            raise RuntimeError("the guest's script did not end within 15 s")
        return status.get("exitcode")

    def _hang(self, dom, d):
        self._guest_exec(dom, GUEST_HANG)
        if not _wait(lambda: not self._ping(dom), AGENT_TIMEOUT, 0.3):
            raise RuntimeError("%s: the guest agent still answers %ds after the hang" % (d["domain"], AGENT_TIMEOUT))

    @staticmethod
    def _qemu_pid(d):
        """The pid of the domain's QEMU: libvirt's pid file, checked against the command line's -uuid."""
        def runs_it(pid):
            argv = processes.argv_of(pid)
            return any(argv[i] == "-uuid" and argv[i + 1].lower() == d["uuid"] for i in range(len(argv) - 1))

        try:
            with open(os.path.join(QEMU_RUN_DIR, "%s.pid" % d["domain"]), encoding="ascii") as handle:
                pid = int(handle.read().strip())
            if runs_it(pid):
                return pid
        except (OSError, ValueError):
            pass
        for entry in os.listdir("/proc"):
            if entry.isdigit() and runs_it(int(entry)):
                return int(entry)
        return None

    def _kill(self, conn, ds):
        """SIGKILL the QEMU of each running domain (a power loss: libvirt records reason crashed)."""
        libvirt = _libvirt()
        killed = []
        for d in ds:
            try:
                dom = conn.lookupByUUIDString(d["uuid"])
            except libvirt.libvirtError:
                continue
            if not dom.isActive():
                continue
            pid = self._qemu_pid(d)
            if pid is None:
                raise RuntimeError("%s runs, but no QEMU process with -uuid %s was found" % (d["domain"], d["uuid"]))
            os.kill(pid, signal.SIGKILL)
            killed.append((d, dom))
        for d, dom in killed:
            if not _wait(lambda dom=dom: not dom.isActive(), STOP_TIMEOUT):
                raise RuntimeError("%s: libvirt still sees it running %ds after its QEMU was killed"
                                   % (d["domain"], STOP_TIMEOUT))
        return [d for d, _dom in killed]

    # --- up / down --------------------------------------------------------------------------
    def up(self, ep, workdir):
        workdir = os.path.abspath(workdir)
        sock = os.path.join(workdir, "libvirt.sock")
        if len(os.fsencode(sock)) > SUN_PATH_MAX:
            raise ValueError("endpoint %s: the proxy's socket %s is longer than a unix socket path may be (%d "
                             "bytes): use a shorter DIR" % (ep["name"], sock, SUN_PATH_MAX))
        _run([os.path.join(PEER, "start.sh")], "tests/peers/libvirt/start.sh (libvirtd on qemu:///system)", 600)
        plan = self._plan(ep, workdir)
        if any(d["guest"] == "acpi" for d in plan):
            _run([os.path.join(PEER, "build_guests.sh"), GUEST_DIR], "tests/peers/libvirt/build_guests.sh", 900)
        libvirt = _libvirt()
        cluster, host = next(_hosts(ep))
        rec = {"pids": [], "listen": sock, "socket": sock, "control": os.path.join(workdir, "proxy.mode"),
               "workdir": workdir, "labid": self.labid(workdir), "host": host["name"], "cluster": cluster,
               "domains": []}
        conn = _open(ep)
        try:
            try:
                with open(self._domains_file(workdir), encoding="utf-8") as handle:
                    left = json.load(handle)
            except (OSError, ValueError):
                left = []
            if self._remove_domains(conn, workdir, left):
                raise RuntimeError("domains of an earlier lab in this DIR are still defined and could not be "
                                   "removed: see %s" % self._domains_file(workdir))
            self._set_dead(rec, False)
            mode = "silent" if host.get("state") == "not_responding" else "forward"
            rec["pids"] = [self._start_proxy(workdir, sock, mode)]
            doms = {}
            for d in plan:
                try:
                    doms[d["domain"]] = conn.defineXML(self._xml(ep, workdir, d))
                except libvirt.libvirtError as exc:
                    raise RuntimeError("VM %s: libvirt refused the domain %s: %s"
                                       % (d["name"], d["domain"], exc.get_error_message())) from None
                rec["domains"].append({key: d[key] for key in ("name", "domain", "uuid", "guest", "agent", "log")})
                self._save_domains(workdir, rec["domains"])
            self._shape(conn, plan, doms)
            for entry in rec["domains"]:  # the counts start here
                try:
                    entry["log_offset"] = os.path.getsize(entry["log"])
                except OSError:
                    entry["log_offset"] = 0
            self._save_domains(workdir, rec["domains"])
        except BaseException:
            self.down(ep, rec)
            raise
        finally:
            conn.close()
        entry = {"name": host["name"], "uri": "qemu+unix:///system?socket=" + urllib.parse.quote(sock, safe="/")}
        if cluster:
            entry["cluster"] = cluster
        rec["source"] = {"hypervisors": [entry], "connect_timeout": CONNECT_TIMEOUT}
        rec["credentials"] = {}
        return rec

    def _shape(self, conn, plan, doms):
        """Start what runs, boot the acpi guests to READY, then hang or save as the lab file says."""
        libvirt = _libvirt()
        started = [d for d in plan if d["power"] != "stopped"]
        for d in started:
            if d["guest"] == "acpi" and os.path.exists(d["console"]):
                os.unlink(d["console"])  # libvirt truncates it at start; no stale READY before that
            try:
                doms[d["domain"]].create()
            except libvirt.libvirtError as exc:
                raise RuntimeError("VM %s: %s does not start: %s" % (d["name"], d["domain"],
                                                                     exc.get_error_message())) from None
        booting = [d for d in started if d["guest"] == "acpi"]

        def ready():
            for d in list(booting):
                if READY_MARKER in processes.tail(d["console"], 100000):
                    booting.remove(d)
                elif not doms[d["domain"]].isActive():
                    raise RuntimeError("VM %s: %s stopped while booting: %s" % (d["name"], d["domain"],
                                                                                processes.tail(d["log"], 600)))
            return not booting

        if not _wait(ready, BOOT_TIMEOUT):
            raise RuntimeError("VM(s) %s did not boot within %ds (no %r on the console)"
                               % (", ".join(d["domain"] for d in booting), BOOT_TIMEOUT, READY_MARKER))
        for d in started:
            dom = doms[d["domain"]]
            if d["guest"] == "acpi" and d["agent"]:
                if not _wait(lambda dom=dom: self._ping(dom), AGENT_TIMEOUT, 0.3):
                    raise RuntimeError("VM %s: the guest agent of %s does not answer" % (d["name"], d["domain"]))
                if d["heartbeat"] == "lost":
                    self._hang(dom, d)
        for d in started:
            if d["power"] == "suspended":
                doms[d["domain"]].managedSave(0)

    def down(self, ep, rec):
        pids = processes.stop([pid for pid in rec.get("pids") or [] if self._ours(pid, rec)])
        sock = rec.get("socket")
        if sock and os.path.exists(sock) and not pids:
            os.unlink(sock)  # the proxy's, left if it was killed
        if rec.get("domains"):
            conn = _open(ep)
            try:
                self._remove_domains(conn, rec["workdir"], rec["domains"])
            finally:
                conn.close()

    # --- state ------------------------------------------------------------------------------
    @staticmethod
    def counts(d):
        """What libvirt's log of the domain says happened since `up`."""
        data = b""
        try:
            with open(d["log"], "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                offset = d.get("log_offset", 0)
                handle.seek(offset if size >= offset else 0)  # smaller: rotated since
                data = handle.read()
        except OSError:
            pass
        starts, stops, last = 0, [], None
        for line in data.decode("utf-8", "replace").splitlines():
            if ": starting up libvirt" in line:
                starts, last = starts + 1, "start"
            elif line.startswith("-incoming") and last == "start":
                starts, last = starts - 1, "restore"  # a managed save (or migration) resumed: not a power-on
            elif ": shutting down, reason=" in line:
                reason = line.rsplit("reason=", 1)[1].strip()
                if reason == "failed" and last == "start":
                    starts -= 1
                stops.append(reason)
                last = None
        return {"power_ons": starts, "graceful_shutdowns": stops.count("shutdown"),
                "hard_offs": stops.count("destroyed"), "stops": stops}

    def _heartbeat(self, dom, d, power):
        if power != "running" or not d["agent"]:
            return "none"
        if self._ping(dom):
            return "ok"
        if d["guest"] == "acpi" and "state='disconnected'" in dom.XMLDesc(0).replace('"', "'"):
            return "starting"  # its qemu-ga has not opened the port yet (booting)
        return "lost"

    def state(self, ep, rec):
        libvirt = _libvirt()
        mode = self._mode(rec)
        host_state = "down" if self._dead(rec) else NO_PROXY_MODE.get(mode, "not_responding")
        hosts = [{"endpoint": ep["name"], "name": rec["host"], "cluster": rec["cluster"], "state": host_state,
                  "link": mode or "gone"}]
        machines = []
        conn = _open(ep)
        try:
            for d in rec.get("domains") or []:
                machine = {"endpoint": ep["name"], "kind": "vm", "name": d["domain"], "lab_name": d["name"],
                           "uuid": d["uuid"], "host": rec["host"], "cluster": rec["cluster"]}
                try:
                    dom = conn.lookupByUUIDString(d["uuid"])
                    code, reason = dom.state()
                    managed = code == 5 and bool(dom.hasManagedSaveImage(0))
                except libvirt.libvirtError:
                    machine.update(power="gone", heartbeat="none", libvirt_state=None)
                else:
                    power = "suspended" if managed else _QEMU_POWER.get(code, "unknown")
                    machine.update(power=power, heartbeat=self._heartbeat(dom, d, power),
                                   libvirt_state="%s:%s" % (_STATE_WORD.get(code, code),
                                                            _REASONS.get(code, {}).get(reason, reason)))
                machine.update(self.counts(d))
                machines.append(machine)
        finally:
            conn.close()
        return {"machines": machines, "hosts": hosts}

    # --- faults -------------------------------------------------------------------------------
    def _find(self, ep, rec, name):
        wanted, _at, on_host = name.rpartition("@") if "@" in name else (name, "", "")
        if on_host and on_host != rec["host"]:
            wanted = name  # not a NAME@HOST of this endpoint: the whole is the name
        hits = [d for d in rec.get("domains") or []
                if wanted in (d["name"], d["domain"]) or wanted.lower() == d["uuid"]]
        if not hits:
            raise ValueError("endpoint %s: no VM %r (VMs: %s)" % (ep["name"], name, ", ".join(
                d["name"] for d in rec.get("domains") or [])))
        return hits[0]

    def fault(self, ep, rec, fault, name):
        label, host = ep["name"], rec["host"]
        libvirt = _libvirt()
        if fault.startswith("host-") and name != host:
            raise ValueError("endpoint %s has one host, %s, not %r" % (label, host, name))
        dead = self._dead(rec)
        where = "%s: host %s" % (label, host)
        if fault in ("host-isolate", "endpoint-silent"):
            if dead:
                raise ValueError("%s is down: host-up first" % where)
            self._switch(ep, rec, "silent")
            return ("%s cut off: its libvirtd accepts connections and answers nothing (a network partition; open "
                    "connections freeze); it still runs its VMs" % where)
        if fault == "endpoint-down":
            if dead:
                raise ValueError("%s is down: host-up first" % where)
            self._switch(ep, rec, "refuse")
            return "%s: its libvirtd refuses connections; the host still runs its VMs" % where
        conn = _open(ep)
        try:
            if fault == "host-down":
                self._switch(ep, rec, "refuse")
                self._set_dead(rec, True)
                killed = self._kill(conn, rec.get("domains") or [])
                return ("%s powered off: connections refused; its running VMs were killed (%s: libvirt says "
                        "crashed)" % (where, ", ".join(d["domain"] for d in killed) or "none was running"))
            if fault in ("host-up", "endpoint-up"):
                self._set_dead(rec, False)
                self._switch(ep, rec, "forward")
                started = []
                if dead:  # a host that boots starts only its autostart domains
                    for d in rec.get("domains") or []:
                        try:
                            dom = conn.lookupByUUIDString(d["uuid"])
                            if dom.autostart() and not dom.isActive():
                                dom.create()
                                started.append(d["domain"])
                        except libvirt.libvirtError:
                            pass
                return "%s %s; %s" % (where, "booted and connected" if dead else "connected again",
                                      ("autostarted " + ", ".join(started)) if started else
                                      "its VMs are as they were" if not dead else
                                      "its VMs stay off (none is marked autostart)")
            if dead:
                raise ValueError("%s is down: its VMs are off; host-up first" % where)
            d = self._find(ep, rec, name)
            try:
                dom = conn.lookupByUUIDString(d["uuid"])
            except libvirt.libvirtError:
                raise ValueError("endpoint %s: the domain %s is gone" % (label, d["domain"])) from None
            what = "%s: VM %s (%s)" % (label, d["name"], d["domain"])
            running = dom.state()[0] in (1, 2)
            if fault == "vm-crash":
                if not running:
                    raise ValueError("%s is not running" % what)
                self._kill(conn, [d])
                return "%s crashed: its QEMU was killed (libvirt says shut off, crashed)" % what
            if d["guest"] == "hung":
                if fault == "vm-hang":
                    return "%s answers nothing already (the hung guest: no OS)" % what
                if fault == "vm-ignore-graceful":
                    return "%s ignores graceful shutdown already (the hung guest: no OS)" % what
                raise NotImplementedError("%s is the hung guest (graceful: false, no OS): nothing in it ever "
                                          "answers, so there is nothing to un-hang" % what)
            if not d["agent"]:
                raise NotImplementedError("%s runs no guest agent (heartbeat: none), the lab's only way into the "
                                          "guest: no %s" % (what, fault))
            if not running:
                raise ValueError("%s is not running" % what)
            if fault == "vm-hang":
                if not self._ping(dom):
                    return "%s: its guest agent is silent already" % what
                self._hang(dom, d)
                return ("%s hangs: its guest agent answers nothing (heartbeat lost); the guest still powers off on "
                        "ACPI (add vm-ignore-graceful first for a guest that ignores that too)" % what)
            if fault == "vm-unhang":  # no ping first: a silent agent costs libvirt's 5 s guest-sync wait
                dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, [KEY_LEFTSHIFT], 1, 0)
                if not _wait(lambda: self._ping(dom), AGENT_TIMEOUT, 0.3):
                    raise RuntimeError("%s: the guest agent is still silent %ds after vm-unhang"
                                       % (what, AGENT_TIMEOUT))
                return "%s: its guest agent answers again" % what
            if fault == "vm-ignore-graceful":
                if not self._ping(dom):
                    raise ValueError("%s: its guest agent does not answer, and the lab goes in through it: "
                                     "vm-unhang first" % what)
                code = self._guest_exec(dom, GUEST_IGNORE_GRACEFUL, wait=True)
                if code != 0:
                    raise RuntimeError("%s: the guest's script exited %s" % (what, code))
                return ("%s ignores graceful shutdown and reboot (ACPI and agent) until its next boot; only a "
                        "hard off stops it" % what)
        finally:
            conn.close()
        raise NotImplementedError("the libvirt lab (driver qemu) has no fault %r" % fault)


QEMU = QemuLab()


PART = LibvirtLab()
