"""The vcsim test peer (tests/peers/vcsim) for the VMware integration tests.

`VcsimPeer` builds the simulator with build.sh, starts it on loopback ports
chosen by the kernel, parses its ready line, and offers:

* `control(method, path, body)` / `state()` - the peer's JSON control API
  (fault injection and a read path that does not go through SOAP);
  `freeze(seconds)` / `frozen()` make the SOAP service silent and report it;
  `soap(state)` takes the SOAP endpoint down, silent or up; `hang(vm)` hangs a
  guest; `counters(vm)` - the VM's power-ons, graceful shutdowns and hard offs;
  `operations(vm)` / `ops(vm)` - the power and registration calls the peer
  received for a VM, as it recorded them; `host_power(host, state)` powers a
  host off (dead: its VMs stop, its file locks go) or on;
* `si` - a pyVmomi connection of its own, for reads that do not use the
  collection's code; `events(uuid)` - vCenter's event history of a VM;
* `write_inventory()` - `<workdir>/sim.vmware.yml` for the
  virtops.unified.vmware inventory plugin. Credentials go to the Ansible
  subprocesses through VMWARE_USER / VMWARE_PASSWORD in os.environ and are
  never written to the file.

VMware Tools start TOOLS_START_DELAY after each power-on (heartbeat gray
meanwhile), as on vCenter, unless the test passes its own
`-tools-start-delay`; a VM's own delay is set with
`vm_do(vm, "tools_delay", seconds=...)`.

A peer that cannot be built or started fails the test (pytest.fail), it is
never skipped; without pytest (the benchmarks) it raises RuntimeError.
`vcsim` below is a module-scoped fixture factory:
`sim = vcsim("-cluster", "2", ...)`; every peer it started is stopped at the
end of the module.
"""

import json
import os
import selectors
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    import pytest
except ImportError:  # bench/ uses VcsimPeer without pytest
    pytest = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "tests", "peers", "vcsim", "build.sh")

# Time from a power-on until VMware Tools run (heartbeat green): short, to keep
# the suite fast, but long enough that nothing may count on an instant green.
TOOLS_START_DELAY = "1s"

USERNAME = "vcsim-operator"
# Distinctive, so a test can assert it appears nowhere in any output.
PASSWORD = "Vc-S3cret-pw-7f2d9"


def fail(message):
    """Fail the test (not a skip); outside pytest, raise."""
    if pytest is None:
        raise RuntimeError(message)
    pytest.fail(message, pytrace=False)


class ControlError(AssertionError):
    """The control API refused a request (status 4xx/5xx)."""

    def __init__(self, status, body, what):
        super().__init__("control API %s -> %s: %s" % (what, status, body))
        self.status = status
        self.body = body


def build():
    """The peer binary's path; fails the test when it cannot be built."""
    try:
        proc = subprocess.run([BUILD], capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        fail("vcsim peer: build.sh could not run: %s" % exc)
    path = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not os.access(path, os.X_OK):
        fail("vcsim peer: build.sh failed (%d):\n%s" % (proc.returncode, proc.stderr[-4000:]))
    return path


class VcsimPeer:
    """One running simulator."""

    def __init__(self, workdir, *flags, username=USERNAME, password=PASSWORD):
        self.workdir = str(workdir)
        self.flags = list(flags)
        self.username = username
        self.password = password
        self.proc = None
        self.url = self.control_url = None
        self.port = None
        self._si = None
        self.log_path = os.path.join(self.workdir, "vcsim.log")
        self.inventory_path = os.path.join(self.workdir, "sim.vmware.yml")

    # --- lifecycle -------------------------------------------------------
    def start(self, timeout=120, binary=None):
        binary = binary or build()
        argv = [binary, "-listen", "127.0.0.1:0", "-control", "127.0.0.1:0",
                "-username", self.username, "-password", self.password,
                "-exit-on-stdin-eof", "-tools-start-delay", TOOLS_START_DELAY, *self.flags]
        log = open(self.log_path, "w")  # pylint: disable=consider-using-with
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         text=True)
        except OSError as exc:
            fail("vcsim peer: cannot start %s: %s" % (binary, exc))
        finally:
            log.close()
        line = self._ready_line(timeout)
        try:
            info = json.loads(line)
            self.url, self.control_url = info["url"], info["control"]
        except (ValueError, KeyError):
            self.stop()
            fail("vcsim peer: no ready line (got %r); log:\n%s" % (line, self.log_tail()))
        self.port = urllib.parse.urlsplit(self.url).port
        return self

    def _ready_line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                self.stop()
                fail("vcsim peer: not ready after %ds; log:\n%s" % (timeout, self.log_tail()))
        finally:
            sel.close()
        return self.proc.stdout.readline()

    def stop(self):
        if self._si is not None:
            try:
                from pyVim.connect import Disconnect  # pylint: disable=import-outside-toplevel
                Disconnect(self._si)
            except Exception:  # pylint: disable=broad-except
                pass
            self._si = None
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()  # -exit-on-stdin-eof
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc = None

    def log_tail(self, chars=4000):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-chars:]
        except OSError:
            return ""

    # --- control API -----------------------------------------------------
    @staticmethod
    def path(*segments):
        """'/vm/web%2001/heartbeat' from ('vm', 'web 01', 'heartbeat')."""
        return "/" + "/".join(urllib.parse.quote(str(s), safe="") for s in segments)

    def control(self, method, path, body=None):
        """One control API call; returns its JSON answer, raises ControlError on 4xx/5xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.control_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            raise ControlError(exc.code, exc.read().decode(errors="replace"), "%s %s" % (method, path)) from None

    def state(self):
        return self.control("GET", "/state")

    def vm_state(self, vm):
        """The control API's view of one VM (by moref, instanceUuid or unique name)."""
        return self.control("GET", self.path("vm", vm))

    def vm_do(self, vm, action, **body):
        return self.control("POST", self.path("vm", vm, action), body)

    def host_do(self, host, action, **body):
        return self.control("POST", self.path("host", host, action), body)

    def host_power(self, host, state):
        """Power a host off ("poweredOff": it stops answering vCenter, its VMs stop and
        its hold on their files ends) or on ("poweredOn": it boots and connects again)."""
        return self.host_do(host, "power", state=state)

    def operations(self, vm=None):
        """The power and registration calls the peer received over SOAP, oldest first:
        all, or those of one VM (moref, instanceUuid or unique name; a VM keeps its
        history across re-registration by instanceUuid)."""
        if vm is None:
            return self.control("GET", "/operations")["operations"]
        return self.control("GET", self.path("vm", vm, "operations"))["operations"]

    def ops(self, vm, since=0):
        """The names of the calls received for a VM after the first `since` of them."""
        return [o["op"] for o in self.operations(vm)][since:]

    def wait_vm(self, vm, what, predicate, timeout=15):
        """Poll the control API until predicate(state of the VM) holds; returns that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.vm_state(vm)
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError("%s: not %s after %ss (last %s)" % (vm, what, timeout, state))
            time.sleep(0.1)

    def wait_tools(self, vm, timeout=15):
        """Wait until VMware Tools run in the VM's guest (heartbeat green)."""
        return self.wait_vm(vm, "running with Tools", lambda s: s["powerState"] == "poweredOn"
                            and s["toolsRunningStatus"] == "guestToolsRunning"
                            and s["guestHeartbeatStatus"] == "green", timeout)

    def freeze(self, seconds):
        """A silent vCenter for `seconds` (0 thaws): the SOAP port accepts and never answers."""
        return self.control("POST", "/freeze", {"seconds": seconds})

    def frozen(self):
        """{"frozen", "secondsLeft", "blocked"}: blocked counts the SOAP requests held now."""
        return self.control("GET", "/freeze")

    def soap(self, state=None):
        """The SOAP endpoint: its {"state", "listen"}, after setting it when `state` is given:
        "down" (the port refuses connections), "silent" (a freeze with no end) or "up"."""
        if state is None:
            return self.control("GET", "/soap")
        return self.control("POST", "/soap", {"state": state})

    def hang(self, vm, on=True):
        """The VM's guest hangs (heartbeat red, guest shutdown/reboot ignored) until it
        powers off, or answers again with on=False."""
        return self.vm_do(vm, "hang", on=on)

    def counters(self, vm):
        """(powerOns, gracefulShutdowns, hardOffs): what the peer saw done to the VM over SOAP."""
        s = self.vm_state(vm)
        return s["powerOns"], s["gracefulShutdowns"], s["hardOffs"]

    # --- pyVmomi, independent of the collection ------------------------------
    @property
    def si(self):
        if self._si is None:
            from pyVim.connect import SmartConnect  # pylint: disable=import-outside-toplevel
            self._si = SmartConnect(host="127.0.0.1", port=self.port, user=self.username, pwd=self.password,
                                    disableSslCertValidation=True)
        return self._si

    def objects(self, vimtype):
        """Every managed object of a type (vim.VirtualMachine, vim.HostSystem, ...)."""
        content = self.si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
        try:
            return list(view.view)
        finally:
            view.Destroy()

    def vm(self, instance_uuid):
        """The pyVmomi VirtualMachine with this instanceUuid (found without FindByUuid)."""
        from pyVmomi import vim  # pylint: disable=import-outside-toplevel
        for obj in self.objects(vim.VirtualMachine):
            if obj.config.instanceUuid == instance_uuid:
                return obj
        raise AssertionError("pyVmomi: no VM with instanceUuid %s" % instance_uuid)

    def events(self, instance_uuid, names=None):
        """vCenter's event history of a VM (EventManager.QueryEvents), oldest first, as
        type names ("VmPoweredOffEvent"); only those in `names` when given."""
        from pyVmomi import vim  # pylint: disable=import-outside-toplevel
        vm = self.vm(instance_uuid)
        spec = vim.event.EventFilterSpec(entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self"))
        events = self.si.RetrieveContent().eventManager.QueryEvents(spec)
        out = [type(e).__name__.rsplit(".", 1)[-1] for e in sorted(events, key=lambda e: e.key)]
        return [n for n in out if names is None or n in names]

    def wait_power(self, instance_uuid, power_state, timeout=15):
        """Wait (pyVmomi reads) until the VM reports this runtime.powerState."""
        vm = self.vm(instance_uuid)
        deadline = time.monotonic() + timeout
        while vm.runtime.powerState != power_state:
            if time.monotonic() > deadline:
                raise AssertionError("%s is %s, not %s after %ds"
                                     % (vm.name, vm.runtime.powerState, power_state, timeout))
            time.sleep(0.1)
        return vm

    # --- Ansible side ----------------------------------------------------------
    def write_inventory(self, path=None, extra=""):
        """The inventory source for this peer; no credentials in it."""
        path = str(path or self.inventory_path)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("plugin: virtops.unified.vmware\nhostname: 127.0.0.1\nport: %d\nvalidate_certs: false\n%s"
                     % (self.port, extra))
        return path

    def explicit(self, **args):
        """vm_power / vm_info arguments naming the endpoint explicitly (no inventory vars)."""
        out = {"platform": "vmware", "hostname": "127.0.0.1", "port": self.port, "validate_certs": False}
        out.update(args)
        return out


def vcsim(tmp_path_factory):
    """Factory: vcsim(*flags) -> a started VcsimPeer with its inventory file written.

    Sets VMWARE_USER / VMWARE_PASSWORD for the Ansible subprocesses (the
    helpers copy os.environ), and VIRTOPS_AUDIT_LOG to a file of this run (so the
    runbooks' restart limits do not count earlier runs against the simulator's
    fixed UUIDs); restores them when the module is done.
    """
    saved = {k: os.environ.get(k) for k in ("VMWARE_USER", "VMWARE_PASSWORD", "VIRTOPS_AUDIT_LOG")}
    os.environ["VMWARE_USER"] = USERNAME
    os.environ["VMWARE_PASSWORD"] = PASSWORD
    os.environ["VIRTOPS_AUDIT_LOG"] = str(tmp_path_factory.mktemp("audit") / "audit.jsonl")
    peers = []

    def start(*flags):
        peer = VcsimPeer(tmp_path_factory.mktemp("vcsim"), *flags)
        peers.append(peer)
        peer.start()
        peer.write_inventory()
        return peer

    try:
        yield start
    finally:
        for peer in peers:
            peer.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if pytest is not None:
    vcsim = pytest.fixture(scope="module")(vcsim)
