# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's Oracle VM part: one Oracle VM Manager 3.4 emulator per endpoint.

The peer is tests/peers/ovm/ovm_manager.py (the Manager's Web Services REST API,
see its README). `up` writes the endpoint's clusters (server pools) and hosts (Oracle
VM Servers) as its estate and starts it detached, with this interpreter, so that it
outlives `scripts/lab up`. The peer serves HTTPS with a throw-away CA of its own, in
the endpoint's directory: the inventory source verifies the peer against it
(`ca_path`), never with certificate checks off. Everything else goes through the
peer's JSON control API, never through REST or the collection:

* `state` reads `GET /state`. A VM's `power` is what really runs (the Manager may
  still report RUNNING for a VM of a server it cannot reach: `manager_state`), `uuid`
  its Vm id written as the UUID it is (the Xen domain's uuid, dashed as in the VM's
  vm.cfg; the collection's `virt_uuid`), `vm_id` the id as the API spells it; the counters count what came through the REST API since `up`.
  `heartbeat` is always `none`: Oracle VM 3.4's REST model has no guest heartbeat.
* A host is `connected`, `maintenance`, `not_responding` (the Manager cannot reach
  it; it still runs its VMs) or `down` (powered off).
* A VM is named by its name, `name@host` where the name repeats, or its Vm id;
  several matches are a ValueError listing them. Names repeat freely in Oracle VM.
* `endpoint-starting NAME` (this part's own fault) puts the Manager in
  managerRunState STARTING, in which it takes requests and runs no job;
  `endpoint-up` makes it RUNNING again.
"""

import json
import os
import re
import sys
import urllib.parse

import processes  # lab/processes.py: the lab's own peer processes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER = os.path.join(ROOT, "tests", "peers", "ovm", "ovm_manager.py")

DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "lab-S3cret pw"
READY_TIMEOUT = 60

ENDPOINT_KEYS = ("name", "platform", "credentials", "username", "password", "clusters", "hosts")
HOST_KEYS = ("name", "state", "vms")
VM_KEYS = ("name", "power", "heartbeat", "graceful", "memory_mb", "cpus", "uuid")
CHOICES = {"state": ("connected", "maintenance", "disconnected", "not_responding"),
           "power": ("running", "stopped", "suspended"), "heartbeat": ("none",)}
UUID_RE = re.compile(r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")
NO_HEARTBEAT = ("Oracle VM 3.4's REST model has no guest heartbeat: a Vm has vmRunState only, and Oracle VM Guest "
                "Additions (ovmd) carry key/value messages, not a health status")


def _hosts(ep):
    for cluster in ep.get("clusters") or []:
        for host in cluster.get("hosts") or []:
            yield cluster, host
    for host in ep.get("hosts") or []:
        yield None, host


def xen_uuid(vm_id):
    """A Vm id (32 hex digits) as the dashed UUID Oracle VM writes in the VM's vm.cfg."""
    if len(vm_id) != 32:
        return vm_id
    return "-".join((vm_id[:8], vm_id[8:12], vm_id[12:16], vm_id[16:20], vm_id[20:]))


class OvmLab(processes.ControlledPeer):
    peer = "ovm"
    name = "ovm"
    plugin = "virtops.unified.ovm"
    faults = ("endpoint-starting",)

    # --- check -----------------------------------------------------------------
    def check(self, ep):
        where = "endpoint %s" % ep.get("name")

        def bad(what, why):
            raise ValueError("%s: %s: %s" % (where, what, why))

        for key in sorted(ep):
            if key not in ENDPOINT_KEYS:
                bad(key, "not a field of an ovm endpoint (known: %s)" % ", ".join(ENDPOINT_KEYS))
        for key in ("username", "password"):
            if key in ep and (not isinstance(ep[key], str) or not ep[key]):
                bad(key, "must be a non-empty string")
        pools = set()
        for cluster in ep.get("clusters") or []:
            if not isinstance(cluster, dict):
                bad("clusters", "each server pool is a mapping, not %r" % (cluster,))
            self._check_name(where, "server pool", cluster)
            for key in sorted(cluster):
                if key not in ("name", "hosts"):
                    bad("cluster %s: %s" % (cluster["name"], key), "unknown cluster field (known: name, hosts)")
            if cluster["name"] in pools:
                bad("cluster %s" % cluster["name"], "listed twice")
            pools.add(cluster["name"])
        hosts = set()
        for cluster, host in _hosts(ep):
            if not isinstance(host, dict):
                bad("hosts", "each host is a mapping, not %r" % (host,))
            self._check_name(where, "host", host)
            what = "host %s" % host["name"]
            for key in sorted(host):
                if key not in HOST_KEYS:
                    bad("%s: %s" % (what, key), "not a field of an ovm host (known: %s)" % ", ".join(HOST_KEYS))
            if host.get("state", "connected") not in CHOICES["state"]:
                bad("%s: state %r" % (what, host["state"]), "must be one of %s" % " | ".join(CHOICES["state"]))
            if host["name"] in hosts:
                bad(what, "listed twice (an Oracle VM Server is in the Manager once)")
            hosts.add(host["name"])
            if cluster is None and host.get("vms"):
                bad("%s: vms" % what, "an Oracle VM Server runs VMs only as a member of a server pool: put the "
                    "host in a cluster")
            for vm in host.get("vms") or []:
                if not isinstance(vm, dict):
                    bad("%s: vms" % what, "each VM is a mapping, not %r" % (vm,))
                self._check_vm(where, host, vm)

    @staticmethod
    def _check_name(where, kind, item):
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("%s: %s name: must be a non-empty string, not %r" % (where, kind, name))
        if any(ord(c) < 0x20 or ord(c) == 0x7f for c in name):
            raise ValueError("%s: %s name %r: holds a control character" % (where, kind, name))

    def _check_vm(self, where, host, vm):
        self._check_name(where, "VM", vm)
        what = "VM %s on host %s" % (vm["name"], host["name"])

        def bad(field, why):
            raise ValueError("%s: %s: %s: %s" % (where, what, field, why))

        for key in sorted(vm):
            if key == "folder":
                bad("folder", "Oracle VM has no VM folders (a VM is in a server pool, on a server)")
            if key == "priority":
                bad("priority", "Oracle VM 3.4 keeps no restart priority (HA is a yes/no per VM)")
            if key not in VM_KEYS:
                bad(key, "not a field of an ovm VM (known: %s)" % ", ".join(VM_KEYS))
        if vm.get("heartbeat", "none") != "none":
            bad("heartbeat %s" % vm["heartbeat"], NO_HEARTBEAT + "; use heartbeat: none")
        if vm.get("power", "running") not in CHOICES["power"]:
            bad("power %r" % vm["power"], "must be one of %s" % " | ".join(CHOICES["power"]))
        if "graceful" in vm and not isinstance(vm["graceful"], bool):
            bad("graceful", "must be true or false, not %r" % (vm["graceful"],))
        for key, low, high in (("memory_mb", 16, 4 * 1024 * 1024), ("cpus", 1, 128)):
            value = vm.get(key)
            if key in vm and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
                bad(key, "must be an integer from %d to %d, not %r" % (low, high, value))
        if "uuid" in vm and (not isinstance(vm["uuid"], str) or not UUID_RE.match(vm["uuid"])):
            bad("uuid %r" % (vm["uuid"],), "not a UUID (8-4-4-4-12 hex digits) or 32 hex digits")
        if host.get("state") == "maintenance" and vm.get("power", "running") == "running":
            bad("power running", "its host is in maintenance mode, which runs no VM (power: stopped or suspended)")

    # --- up / down ------------------------------------------------------------------
    def up(self, ep, workdir):
        workdir = os.path.abspath(workdir)
        os.makedirs(workdir, exist_ok=True)
        username = ep.get("username", DEFAULT_USERNAME)
        password = ep.get("password", DEFAULT_PASSWORD)
        estate = os.path.join(workdir, "estate.json")
        with open(estate, "w", encoding="utf-8") as handle:
            json.dump({key: ep[key] for key in ("clusters", "hosts") if key in ep}, handle, ensure_ascii=False,
                      indent=1)
        certdir = os.path.join(workdir, "certs")
        argv = [sys.executable, PEER, "--lab", estate, "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
                "--username", username, "--password", password, "--certdir", certdir, "--stop-timeout", "120"]
        pid, ready, log_path = processes.start_ready(argv, workdir, "ovm", READY_TIMEOUT, "ovm.out", "ovm.log")
        rec = {"pids": [pid], "estate": estate, "log": log_path}
        try:
            port, control, ca_path = urllib.parse.urlsplit(ready["url"]).port, ready["control"], ready["ca"]
        except (ValueError, KeyError, TypeError) as exc:
            self.down(ep, rec)
            raise RuntimeError("the ovm peer's ready line %r: %s" % (ready, exc)) from None
        rec.update({"listen": "127.0.0.1:%d" % port, "control": control, "ca": ca_path,
                    "source": {"hostname": "127.0.0.1", "port": port, "ca_path": ca_path},
                    "credentials": {"username": username, "password": password}})
        return rec

    @staticmethod
    def _ours(pid, rec):
        argv = processes.argv_of(pid)
        if len(argv) < 2 or os.path.abspath(argv[1]) != PEER:
            return False
        return not rec.get("estate") or rec["estate"] in argv

    # --- state ------------------------------------------------------------------------------
    @staticmethod
    def _host_state(server):
        if server.get("power") == "off":
            return "down"
        if not server.get("answering"):
            return "not_responding"
        return "maintenance" if server.get("maintenanceMode") else "connected"

    def state(self, ep, rec):
        raw = self._call(ep, rec, "GET", "/state")
        machines = [{
            "endpoint": ep["name"], "kind": "vm", "name": vm["name"], "uuid": xen_uuid(vm["id"]), "vm_id": vm["id"],
            "host": vm.get("server"),
            "cluster": vm.get("pool"), "power": vm.get("actual"), "heartbeat": "none",
            "power_ons": vm.get("powerOns", 0), "graceful_shutdowns": vm.get("gracefulShutdowns", 0),
            "hard_offs": vm.get("hardOffs", 0), "manager_state": vm.get("runState")} for vm in raw.get("vms") or []]
        hosts = [{"endpoint": ep["name"], "name": s["name"], "cluster": s.get("pool"), "state": self._host_state(s)}
                 for s in raw.get("servers") or []]
        return {"machines": machines, "hosts": hosts}

    # --- faults -------------------------------------------------------------------------------
    def _find_host(self, ep, rec, name):
        servers = self._call(ep, rec, "GET", "/state")["servers"]
        found = [s for s in servers if name in (s["name"], s["id"])]
        if not found:
            names = ", ".join(s["name"] for s in servers)
            raise ValueError("endpoint %s: no host %r (hosts: %s)" % (ep["name"], name, names))
        return found[0]

    def _find_vm(self, ep, rec, name):
        vms = self._call(ep, rec, "GET", "/state")["vms"]
        found = [vm for vm in vms if vm["name"] == name]
        if not found and "@" in name:
            vm_name, host = name.rsplit("@", 1)
            found = [vm for vm in vms if vm["name"] == vm_name and vm.get("server") == host]
        if not found:
            wanted = name.replace("-", "").lower()
            found = [vm for vm in vms if vm["id"] == wanted]
        if not found:
            raise ValueError("endpoint %s: no VM %r" % (ep["name"], name))
        if len(found) > 1:
            raise ValueError("endpoint %s: %d VMs are named %r: %s; name one as NAME@HOST (where that is one) or "
                             "by its Vm id" % (ep["name"], len(found), name, "; ".join(
                                 "%s@%s (id %s)" % (vm["name"], vm.get("server"), vm["id"]) for vm in found)))
        return found[0]

    def fault(self, ep, rec, fault, name):
        label = ep["name"]
        try:
            if fault in ("endpoint-down", "endpoint-up", "endpoint-silent"):
                state = fault.split("-", 1)[1]
                self._call(ep, rec, "POST", "/rest", {"state": state})
                if state == "up":
                    self._call(ep, rec, "POST", "/manager", {"runState": "RUNNING"})
                return {"down": "%s: the Manager's REST port %s is closed (connections refused); its servers and "
                                "VMs go on" % (label, rec.get("listen")),
                        "up": "%s: the Manager answers on %s again, managerRunState RUNNING" % (label, rec.get("listen")),
                        "silent": "%s: the Manager on %s accepts connections and answers nothing (not even TLS) "
                                  "until endpoint-up" % (label, rec.get("listen"))}[state]
            if fault == "endpoint-starting":
                self._call(ep, rec, "POST", "/manager", {"runState": "STARTING"})
                return ("%s: the Manager reports managerRunState STARTING: it takes requests and creates jobs, and "
                        "runs none until endpoint-up" % label)
            if fault in ("host-isolate", "host-down", "host-up"):
                host = self._find_host(ep, rec, name)
                path = self._path("server", host["id"])
                if fault == "host-isolate":
                    self._call(ep, rec, "POST", path + "/connection", {"state": "silent"})
                    return ("%s: server %s isolated: the Manager cannot reach it (serverRunState UNKNOWN); it still "
                            "runs its VMs" % (label, host["name"]))
                if fault == "host-down":
                    self._call(ep, rec, "POST", path + "/power", {"state": "off"})
                    return ("%s: server %s powered off: its VMs stopped; the Manager sees it UNKNOWN, then STOPPED "
                            "with its VMs STOPPED once the pool declares it dead" % (label, host["name"]))
                self._call(ep, rec, "POST", path + "/connection", {"state": "answering"})
                self._call(ep, rec, "POST", path + "/power", {"state": "on"})
                return "%s: server %s is up and answers the Manager (its VMs stay as they are)" % (label, host["name"])
            if fault in ("vm-hang", "vm-unhang"):
                raise NotImplementedError(NO_HEARTBEAT + ", so a hung guest cannot be shown")
            vm = self._find_vm(ep, rec, name)
            path = self._path("vm", vm["id"])
            what = "%s: VM %s (%s on %s)" % (label, vm["name"], vm["id"], vm.get("server"))
            if fault == "vm-crash":
                self._call(ep, rec, "POST", path + "/crash", {})
                return "%s crashed: stopped, by no request through the Manager" % what
            if fault == "vm-ignore-graceful":
                self._call(ep, rec, "POST", path + "/ignore_stop", {"on": True})
                return "%s ignores graceful stop and restart requests from now on" % what
        except processes.PeerError as exc:
            raise ValueError(str(exc)) from None
        raise NotImplementedError("the ovm lab has no fault %r" % fault)


PART = OvmLab()
