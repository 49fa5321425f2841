# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's VMware part: one vCenter simulator per endpoint, shaped to it.

The peer is tests/peers/vcsim (govmomi's simulator with vCenter's own
behaviours, see its README). `up` builds it, writes the endpoint's clusters
and hosts as its `-lab` estate (the peer builds them the vSphere way:
CreateClusterEx, AddHost_Task, CreateVM_Task, PowerOnVM_Task) and starts it
detached, so it outlives `scripts/lab up`. Everything else goes through the
peer's JSON control API, never through SOAP or the collection:

* `state` reads `GET /state`. A VM's `power` is what its host runs (the
  peer's `powerStateOnHost` where vCenter cannot see it, e.g. after
  host-down), `uuid` its `config.instanceUuid` (the collection's
  `virt_uuid`), and the counters are the peer's: `power_ons`,
  `graceful_shutdowns`, `hard_offs` count what came through vCenter's API
  since `up` (faults are not requests and count nowhere).
  `heartbeat`: `ok` (green), `lost` (red: a hung guest), `degraded`
  (yellow, which no lab fault makes), `starting` (the VM is on and its Tools
  are still to start, heartbeat gray), `none` (no heartbeat: Tools not
  installed or not running, or the VM is not running).
* Names are vSphere's: a `/`, `\\` or `%` in a lab name shows escaped
  (`%2f`, `%5c`, `%25`), as vCenter stores and returns it. A fault's NAME may
  be spelled either way.
* A VM is named by its name, or `name@host` where the name repeats (or by
  its moref `vm-42`, instanceUuid or BIOS uuid); several matches are a
  ValueError listing them.
"""

import json
import os
import re
import subprocess
import urllib.parse

import processes  # lab/processes.py: the lab's own peer processes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "tests", "peers", "vcsim", "build.sh")
OUTDIR = os.path.join(ROOT, ".build", "vcsim")

DEFAULT_USERNAME = "labuser"
DEFAULT_PASSWORD = "lab-S3cret pw"
READY_TIMEOUT = 60  # seconds until the peer's ready line

ENDPOINT_KEYS = ("name", "platform", "credentials", "username", "password", "clusters", "hosts")
HOST_KEYS = ("name", "state", "vms")
VM_KEYS = ("name", "power", "heartbeat", "graceful", "memory_mb", "cpus", "folder", "uuid", "priority")
CHOICES = {"state": ("connected", "maintenance", "disconnected", "not_responding"),
           "power": ("running", "stopped", "suspended"), "heartbeat": ("ok", "lost", "none")}
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# vSphere HA restart priority (ClusterDasVmSettings.restartPriority) of the lab's 1 (first) .. 5
RESTART_PRIORITY = {1: "highest", 2: "high", 3: "medium", 4: "low", 5: "lowest"}
_HOST_STATE = {"connected": "connected", "disconnected": "disconnected", "notResponding": "not_responding"}
_POWER = {"poweredOn": "running", "poweredOff": "stopped", "suspended": "suspended"}
_HEARTBEAT = {"green": "ok", "red": "lost", "yellow": "degraded"}

# the peers this process started, by pid (kept so that they are reaped, not left zombies)


def vsphere_name(name):
    """A name as vCenter stores it: `%`, `/` and `\\` escaped as %25, %2f, %5c."""
    return name.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def _hosts(ep):
    for cluster in ep.get("clusters") or []:
        for host in cluster.get("hosts") or []:
            yield cluster, host
    for host in ep.get("hosts") or []:
        yield None, host


class VmwareLab(processes.ControlledPeer):
    peer = "vcsim"
    name = "vmware"
    plugin = "virtops.unified.vmware"

    # --- check -----------------------------------------------------------------
    def check(self, ep):
        where = "endpoint %s" % ep.get("name")

        def bad(what, why):
            raise ValueError("%s: %s: %s" % (where, what, why))

        for key in sorted(ep):
            if key == "driver":
                bad("driver", "a libvirt field; a vmware endpoint is a vCenter (the vcsim peer)")
            if key not in ENDPOINT_KEYS:
                bad(key, "unknown vmware endpoint field (known: %s)" % ", ".join(ENDPOINT_KEYS))
        for key in ("username", "password"):
            if key in ep and (not isinstance(ep[key], str) or not ep[key]):
                bad(key, "must be a non-empty string")
        hosts, vm_names, cluster_names = {}, {}, set()
        for cluster in ep.get("clusters") or []:
            if not isinstance(cluster, dict):
                bad("clusters", "each cluster is a mapping, not %r" % (cluster,))
            self._check_name(where, "cluster", cluster)
            for key in sorted(cluster):
                if key not in ("name", "hosts"):
                    bad("cluster %s: %s" % (cluster["name"], key), "unknown cluster field (known: name, hosts)")
            if vsphere_name(cluster["name"]) in cluster_names:
                bad("cluster %s" % cluster["name"], "listed twice (vCenter: DuplicateName)")
            cluster_names.add(vsphere_name(cluster["name"]))
        for cluster, host in _hosts(ep):
            if not isinstance(host, dict):
                bad("hosts", "each host is a mapping, not %r" % (host,))
            self._check_name(where, "host", host)
            what = "host %s" % host["name"]
            if "kind" in host:
                bad("%s: kind %s" % (what, host["kind"]),
                    "a vCenter host is an ESXi hypervisor; bare metal belongs to a redfish endpoint")
            for key in sorted(host):
                if key not in HOST_KEYS:
                    bad("%s: %s" % (what, key), "not a field of a vmware host (known: %s)" % ", ".join(HOST_KEYS))
            self._check_choice(where, what, host, "state")
            if vsphere_name(host["name"]) in hosts:
                bad(what, "listed twice (vCenter holds a host once)")
            hosts[vsphere_name(host["name"])] = host
            for vm in host.get("vms") or []:
                if not isinstance(vm, dict):
                    bad("%s: vms" % what, "each VM is a mapping, not %r" % (vm,))
                self._check_vm(where, host, cluster, vm, vm_names)

    @staticmethod
    def _check_name(where, kind, item):
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("%s: %s name: must be a non-empty string, not %r" % (where, kind, name))
        if any(ord(c) < 0x20 or ord(c) == 0x7f for c in name):
            raise ValueError("%s: %s name %r: holds a control character, which vSphere names cannot"
                             % (where, kind, name))

    @staticmethod
    def _check_choice(where, what, item, key):
        if key in item and item[key] not in CHOICES[key]:
            raise ValueError("%s: %s: %s %r: must be one of %s" % (where, what, key, item[key], " | ".join(CHOICES[key])))

    def _check_vm(self, where, host, cluster, vm, vm_names):
        self._check_name(where, "VM", vm)
        what = "VM %s" % vm["name"]

        def bad(field, why):
            raise ValueError("%s: %s: %s: %s" % (where, what, field, why))

        for key in sorted(vm):
            if key not in VM_KEYS:
                bad(key, "not a field of a vmware VM (known: %s)" % ", ".join(VM_KEYS))
        for key in ("power", "heartbeat"):
            self._check_choice(where, what, vm, key)
        if vm.get("heartbeat") == "lost" and vm.get("power") == "stopped":
            bad("heartbeat lost", "needs a running or suspended guest (power is stopped): a hang is a state of "
                "a running guest")
        if "graceful" in vm and not isinstance(vm["graceful"], bool):
            bad("graceful", "must be true or false, not %r" % (vm["graceful"],))
        for key, low, high in (("memory_mb", 4, 24 * 1024 * 1024), ("cpus", 1, 768), ("priority", 1, 5)):
            value = vm.get(key)
            if key in vm and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
                bad(key, "must be an integer from %d to %d, not %r" % (low, high, value))
        if "priority" in vm and cluster is None:
            bad("priority", "a standalone host has no vSphere HA, so no restart priority (put the host in a cluster)")
        for key in ("folder", "uuid"):
            if key in vm and not isinstance(vm[key], str):
                bad(key, "must be a string, not %r" % (vm[key],))
        if vm.get("uuid") and not UUID_RE.match(vm["uuid"]):
            bad("uuid %s" % vm["uuid"], "not a UUID (8-4-4-4-12 hex digits)")
        if host.get("state") == "maintenance" and vm.get("power", "running") == "running":
            bad("power running", "its host %s is in maintenance mode, which vSphere enters only once no VM runs "
                "on the host (power: stopped or suspended)" % host["name"])
        folder = "/".join(vsphere_name(p) for p in (vm.get("folder") or "").split("/") if p)
        key = (folder, vsphere_name(vm["name"]))
        if key in vm_names:
            bad("name", "already used in folder %r by the VM on host %s (vCenter: DuplicateName); give one of "
                "them another folder" % (vm.get("folder") or "", vm_names[key]))
        vm_names[key] = host["name"]

    # --- up / down ------------------------------------------------------------------
    @staticmethod
    def _build():
        try:
            proc = subprocess.run([BUILD, OUTDIR], capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError("cannot build the vcsim peer (%s): %s" % (BUILD, exc)) from None
        lines = proc.stdout.strip().splitlines()
        path = lines[-1] if lines else ""
        if proc.returncode != 0 or not os.access(path, os.X_OK):
            raise RuntimeError("the vcsim peer did not build (build.sh exit %d): %s"
                               % (proc.returncode, proc.stderr.strip()[-3000:]))
        return path

    def up(self, ep, workdir):
        binary = self._build()
        workdir = os.path.abspath(workdir)
        os.makedirs(workdir, exist_ok=True)
        username = ep.get("username", DEFAULT_USERNAME)
        password = ep.get("password", DEFAULT_PASSWORD)
        estate = os.path.join(workdir, "estate.json")
        with open(estate, "w", encoding="utf-8") as handle:
            json.dump({key: ep[key] for key in ("clusters", "hosts") if key in ep}, handle, ensure_ascii=False,
                      indent=1)
        argv = [binary, "-lab", estate, "-listen", "127.0.0.1:0", "-control", "127.0.0.1:0",
                "-username", username, "-password", password]
        pid, ready, log_path = processes.start_ready(argv, workdir, "vcsim", READY_TIMEOUT, "vcsim.out", "vcsim.log")
        rec = {"pids": [pid], "estate": estate, "log": log_path}
        try:
            port, control = urllib.parse.urlsplit(ready["url"]).port, ready["control"]
        except (ValueError, KeyError, TypeError) as exc:
            self.down(ep, rec)
            raise RuntimeError("the vcsim peer's ready line %r: %s" % (ready, exc)) from None
        rec.update({"listen": "127.0.0.1:%d" % port, "control": control,
                    "source": {"hostname": "127.0.0.1", "port": port, "validate_certs": False},
                    "credentials": {"username": username, "password": password}})
        return rec

    @staticmethod
    def _ours(pid, rec):
        """The process is the peer `up` started (a pid may have been reused since)."""
        argv = processes.argv_of(pid)
        if not argv or os.path.basename(argv[0]) != "vcsim":
            return False
        return not rec.get("estate") or rec["estate"] in argv

    # --- state ------------------------------------------------------------------------------
    @staticmethod
    def _heartbeat(vm, power):
        if power != "running":
            return "none"
        status = vm.get("guestHeartbeatStatus")
        if status in _HEARTBEAT:
            return _HEARTBEAT[status]
        return "starting" if vm.get("toolsStarting") else "none"

    @staticmethod
    def _host_state(host):
        if host.get("power") == "poweredOff":
            return "down"
        state = _HOST_STATE.get(host.get("connectionState"), host.get("connectionState"))
        if state == "connected" and host.get("inMaintenanceMode"):
            return "maintenance"
        return state

    def state(self, ep, rec):
        raw = self._call(ep, rec, "GET", "/state")
        machines = []
        for vm in raw.get("vms") or []:
            power = _POWER.get(vm.get("powerStateOnHost") or vm.get("powerState"), vm.get("powerState"))
            machines.append({
                "endpoint": ep["name"], "kind": "vm", "name": vm["name"], "uuid": vm.get("instanceUuid"),
                "host": vm.get("host") or None, "cluster": vm.get("cluster"), "power": power,
                "heartbeat": self._heartbeat(vm, power), "power_ons": vm.get("powerOns", 0),
                "graceful_shutdowns": vm.get("gracefulShutdowns", 0), "hard_offs": vm.get("hardOffs", 0)})
        hosts = [{"endpoint": ep["name"], "name": h["name"], "cluster": h.get("cluster"),
                  "state": self._host_state(h)} for h in raw.get("hosts") or []]
        return {"machines": machines, "hosts": hosts}

    # --- faults -------------------------------------------------------------------------------
    def _find_host(self, ep, rec, name):
        hosts = self._call(ep, rec, "GET", "/state")["hosts"]
        found = [h for h in hosts if name in (h["name"], h["moref"]) or vsphere_name(name) == h["name"]]
        if not found:
            names = ", ".join(h["name"] for h in hosts)
            raise ValueError("endpoint %s: no host %r (hosts: %s)" % (ep["name"], name, names))
        return found[0]

    def _find_vm(self, ep, rec, name):
        vms = self._call(ep, rec, "GET", "/state")["vms"]

        def named(vm, wanted):
            return vm["name"] in (wanted, vsphere_name(wanted))

        found = [vm for vm in vms if named(vm, name)]
        if not found and "@" in name:
            vm_name, host = name.rsplit("@", 1)
            found = [vm for vm in vms if named(vm, vm_name) and vm.get("host") in (host, vsphere_name(host))]
        if not found:
            low = name.lower()
            found = [vm for vm in vms if name == vm["moref"] or low in ((vm.get("instanceUuid") or "").lower(),
                                                                        (vm.get("uuid") or "").lower())]
        if not found:
            raise ValueError("endpoint %s: no VM %r" % (ep["name"], name))
        if len(found) > 1:
            raise ValueError("endpoint %s: %d VMs are named %r: %s; name one as NAME@HOST (where that is one), "
                             "or as %s/MOREF" % (ep["name"], len(found), name, "; ".join(
                                 "%s@%s (moref %s, %s)" % (vm["name"], vm.get("host"), vm["moref"], vm["path"])
                                 for vm in found), ep["name"]))
        return found[0]

    def fault(self, ep, rec, fault, name):
        label = ep["name"]
        try:
            if fault in ("endpoint-down", "endpoint-up", "endpoint-silent"):
                state = fault.split("-", 1)[1]
                self._call(ep, rec, "POST", "/soap", {"state": state})
                return {"down": "%s: vCenter's SOAP port %s is closed (connections refused); its hosts and VMs "
                                "go on" % (label, rec.get("listen")),
                        "up": "%s: vCenter answers on %s again" % (label, rec.get("listen")),
                        "silent": "%s: vCenter on %s accepts connections and answers nothing until "
                                  "endpoint-up" % (label, rec.get("listen"))}[state]
            if fault in ("host-isolate", "host-down", "host-up"):
                host = self._find_host(ep, rec, name)
                path = self._path("host", host["moref"])
                if fault == "host-isolate":
                    self._call(ep, rec, "POST", path + "/connection", {"state": "notResponding"})
                    return ("%s: host %s isolated: vCenter sees it not responding; it still runs its VMs and holds "
                            "their files" % (label, host["name"]))
                if fault == "host-down":
                    self._call(ep, rec, "POST", path + "/power", {"state": "poweredOff"})
                    return ("%s: host %s powered off: its VMs stopped and their file locks are released; vCenter "
                            "sees it not responding" % (label, host["name"]))
                self._call(ep, rec, "POST", path + "/power", {"state": "poweredOn"})
                return "%s: host %s powered on and connected to vCenter" % (label, host["name"])
            vm = self._find_vm(ep, rec, name)
            path = self._path("vm", vm["moref"])
            what = "%s: VM %s (%s on %s)" % (label, vm["name"], vm["moref"], vm.get("host"))
            if fault == "vm-hang":
                self._call(ep, rec, "POST", path + "/hang", {"on": True})
                return "%s hangs: heartbeat red, guest shutdown and reboot ignored, until it powers off" % what
            if fault == "vm-unhang":
                self._call(ep, rec, "POST", path + "/hang", {"on": False})
                return "%s answers again (heartbeat green once its Tools run)" % what
            if fault == "vm-crash":
                self._call(ep, rec, "POST", path + "/power", {"state": "poweredOff"})
                return "%s crashed: powered off, by no request through vCenter" % what
            if fault == "vm-ignore-graceful":
                self._call(ep, rec, "POST", path + "/ignore_shutdown", {"on": True})
                return "%s ignores graceful shutdown and reboot requests from now on" % what
        except processes.PeerError as exc:
            raise ValueError(str(exc)) from None
        raise NotImplementedError("the vmware lab has no fault %r" % fault)


PART = VmwareLab()
