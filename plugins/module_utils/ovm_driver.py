# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Oracle VM 3.4 driver over Oracle VM Manager's Web Services REST API, with requests.

One Manager endpoint (`https://HOST:7002/ovm/core/wsapi/rest`): HTTP Basic on the
first call, the session cookie after (Oracle VM 3.4 Web Services API Developer's
Guide, 3.2 "How do I Authenticate?"). The first call reads the Manager: while its
`managerRunState` is not RUNNING the Manager accepts calls but runs no jobs (2.5
"Check the Oracle VM Manager Start Up State"), so nothing is asked of it then.

The bulk read is three calls, `GET ServerPool`, `GET Server`, `GET Vm`, joined
through the id objects `{type, value, uri, name}` each object carries: a pool is a
cluster, a server a hypervisor host, a Vm a VM. Every action is a Job, polled on
`GET Job/{id}` until `summaryDone`.

What Oracle VM 3.4 does not give: a guest heartbeat (the REST model has none; the
Guest Additions' ovmd passes messages, not health), a hard reset (`restart` is
the guest's own reboot), a VM boot time, a restart priority. So `vm_hung` cannot
be told on this platform; `vm_down` can.
"""

from __future__ import annotations

import time
import urllib.parse

from ansible_collections.virtops.unified.plugins.module_utils import driver as base
from ansible_collections.virtops.unified.plugins.module_utils import model, registry

try:
    import requests
except ImportError:  # reported by require_requests() where it matters
    requests = None

PLATFORM = "ovm"
BASE_PATH = "/ovm/core/wsapi/rest"
HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}

_VM_POWER = {"RUNNING": model.RUNNING, "STOPPED": model.STOPPED, "SUSPENDED": model.SUSPENDED,
             "STARTING": model.TRANSITIONING, "STOPPING": model.TRANSITIONING}
_SERVER_POWER = {"RUNNING": model.RUNNING, "STOPPED": model.STOPPED, "STARTING": model.TRANSITIONING,
                 "STOPPING": model.TRANSITIONING}
# serverRunState -> connection state. UNKNOWN: the Manager has lost the server (dead, or only
# cut off: it cannot tell which). STOPPED: the Manager knows it is off.
_SERVER_CONNECTION = {"RUNNING": model.CONNECTED, "UNKNOWN": model.NOT_RESPONDING, "STOPPED": model.DISCONNECTED,
                      "STARTING": model.DISCONNECTED, "STOPPING": model.DISCONNECTED}
_JOB_NOT_STARTED = ("NONE", "CREATED")
JOB_START_GRACE = 3.0  # seconds a job may sit not started before the Manager's state is checked


def require_requests():
    if requests is None:
        raise model.Unsupported("the Python library requests is not installed on the controller",
                                hint="pip install requests")


def _value(ref):
    """The id value of an id object (or None)."""
    return ref.get("value") if isinstance(ref, dict) else None


def _name(ref):
    return ref.get("name") if isinstance(ref, dict) else None


def vm_uuid(id_value):
    """A Vm id (32 hex digits) as the UUID it is: the Xen domain's uuid, which Oracle VM writes
    with dashes in the VM's vm.cfg and returns without them as the object's id."""
    text = (id_value or "").lower()
    if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
        return "%s-%s-%s-%s-%s" % (text[:8], text[8:12], text[12:16], text[16:20], text[20:])
    return id_value


def vm_id(uuid):
    """The Vm id of a uuid, dashed or not."""
    return (uuid or "").replace("-", "").lower()


def _job_error(job):
    error = job.get("error") or {}
    if isinstance(error, dict):
        return error.get("message") or error.get("type") or ""
    return str(error)


class OvmDriver(base.Driver):
    """One Oracle VM Manager."""

    platform = PLATFORM
    capabilities = frozenset({base.START, base.SHUTDOWN, base.POWEROFF, base.SUSPEND, base.RESUME,
                              registry.MIGRATE, registry.MAINTENANCE})
    job_poll = 0.2
    guest_agent = "the Oracle VM Guest Additions"

    def __init__(self, hostname=None, username=None, password=None, port=7002, validate_certs=True, ca_path=None,
                 connect_timeout=30):
        require_requests()
        if not hostname:
            raise model.VirtError("ovm needs a hostname (or OVM_HOST)")
        self.hostname = hostname
        self.port = port
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.label = "%s:%s" % (hostname, port)
        self.timeout = connect_timeout or 30
        self.base = "https://%s:%s%s" % (hostname if ":" not in hostname else "[%s]" % hostname, port, BASE_PATH)
        self.servers = {}  # server id -> Server object, from the last read
        self.pools = {}  # server pool id -> its name, from the last bulk read
        self.session = requests.Session()
        self.session.headers.update(HEADERS)
        # given with each request: a session's own verify loses to REQUESTS_CA_BUNDLE (requests #3829)
        self.verify = (ca_path or True) if validate_certs else False
        self._auth = (username or "", password or "")
        self._logged_in = False
        self.manager = self._check_manager()

    # --- the wire --------------------------------------------------------
    def _request(self, method, path, doing, params=None, body=None):
        """One call, within the deadline; the JSON answer. Basic auth until a session cookie is held."""
        url = "%s/%s" % (self.base, path)
        for attempt in (1, 2):
            began = time.monotonic()
            try:
                resp = self.session.request(method, url, params=params, json=body, verify=self.verify,
                                            auth=None if self._logged_in else self._auth,
                                            timeout=(self.timeout, self.timeout))
            except requests.exceptions.RequestException as exc:
                self._traced(method, path, params, type(exc).__name__, began)
                raise self._wire_error(exc, doing) from None
            self._traced(method, path, params, resp.status_code, began)
            if resp.status_code == 401:
                if self._logged_in and attempt == 1:  # the session expired: log in again, once
                    self._logged_in = False
                    continue
                raise model.AuthFailed("ovm %s: login refused for user %r" % (self.label, self._auth[0]),
                                       raw="HTTP 401")
            break
        self._logged_in = self._logged_in or bool(self.session.cookies)
        if resp.status_code == 404:
            raise model.NotFound("ovm %s: %s: not found" % (self.label, doing), raw=self._error_text(resp))
        if resp.status_code >= 400:
            raise model.VirtError("ovm %s: %s failed (HTTP %d)" % (self.label, doing, resp.status_code),
                                  raw=self._error_text(resp))
        try:
            return resp.json()
        except ValueError:
            raise model.VirtError("ovm %s: %s: the answer is not JSON" % (self.label, doing),
                                  raw=resp.text[:200]) from None

    def _traced(self, method, path, params, status, began):
        """One trace line per request: method, path (and query), status, milliseconds. The
        credentials ride in a header, never in the path: nothing secret is shown."""
        if self.trace:
            query = "?" + urllib.parse.urlencode(params) if params else ""
            self.trace("ovm %s: %s %s%s %s %d ms"
                       % (self.label, method, urllib.parse.unquote(path), query, status, base.elapsed_ms(began)))

    def _wire_error(self, exc, doing):
        """The typed error for a request that got no answer."""
        if isinstance(exc, requests.exceptions.SSLError):
            text = str(exc)
            found = text.find("certificate verify failed")
            return model.VirtError(
                "ovm %s: certificate not trusted" % self.label,
                raw=text[found:].split(" (_ssl", 1)[0] if found >= 0 else text[:300],
                hint="Give the Manager's CA certificate as ca_path, or set validate_certs: false for a lab")
        if isinstance(exc, requests.exceptions.Timeout):
            return model.Unreachable("ovm %s: no answer within %ss during %s" % (self.label, self.timeout, doing),
                                     raw="timed out")
        return model.Unreachable("ovm %s: cannot connect during %s" % (self.label, doing), raw=type(exc).__name__)

    @staticmethod
    def _error_text(resp):
        try:
            data = resp.json()
        except ValueError:
            return resp.text[:300]
        if isinstance(data, dict):
            return data.get("message") or data.get("errorMessage") or str(data)[:300]
        return str(data)[:300]

    @staticmethod
    def _path(*parts):
        return "/".join(urllib.parse.quote(str(p), safe="") for p in parts)

    def _check_manager(self):
        found = self._request("GET", "Manager", "read the Manager")
        manager = found[0] if isinstance(found, list) and found else found
        state = (manager or {}).get("managerRunState")
        if state != "RUNNING":
            raise model.StateConflict(
                "ovm %s: Oracle VM Manager is %s, not RUNNING: it runs no jobs until its start-up is over; "
                "nothing was asked of it" % (self.label, state or "in an unknown state"),
                hint="Wait until the Manager has started (managerRunState RUNNING), then retry")
        return manager

    def close(self):
        session, self.session = getattr(self, "session", None), None
        if session is not None:
            session.close()

    def where(self):
        return " on %s" % self.label

    def endpoint(self):
        return {"platform": PLATFORM, "hostname": self.hostname, "port": self.port,
                "validate_certs": self.validate_certs, "ca_path": self.ca_path}

    # --- reads -----------------------------------------------------------
    def _host_machine(self, server):
        raw = server.get("serverRunState") or "UNKNOWN"
        conn = _SERVER_CONNECTION.get(raw, model.NOT_RESPONDING)
        if conn == model.CONNECTED and server.get("maintenanceMode"):
            conn = model.MAINTENANCE
        return model.Machine(
            kind=model.HYPERVISOR, platform=PLATFORM, name=server.get("name"), uuid=_value(server.get("id")),
            cluster=self._pool(server.get("serverPoolId")), power_state=_SERVER_POWER.get(raw, model.UNKNOWN),
            power_state_raw=raw, connection_state=conn, endpoint=self.endpoint(),
            facts={"connection_state_raw": raw, "maintenance_mode": bool(server.get("maintenanceMode")),
                   "cpus": server.get("cpuCount"), "memory_mb": server.get("memory"),
                   "ovm_version": server.get("ovmVersion")})

    def _vm_machine(self, vm, server):
        raw = vm.get("vmRunState") or "UNKNOWN"
        power = _VM_POWER.get(raw, model.UNKNOWN)
        server_state = (server or {}).get("serverRunState")
        if server is not None and server_state != "RUNNING" and power != model.STOPPED:
            # the Manager only remembers what it last saw on a server it has lost: say so, keep the word
            power, raw = model.UNKNOWN, "%s:server %s" % (raw, server_state)
        return model.Machine(
            kind=model.VM, platform=PLATFORM, name=vm.get("name"), uuid=vm_uuid(_value(vm.get("id"))),
            host=_name(vm.get("serverId")), cluster=self._pool(vm.get("serverPoolId")),
            power_state=power, power_state_raw=raw, heartbeat=model.HB_UNKNOWN, endpoint=self.endpoint(),
            facts={"vcpus": vm.get("cpuCount"), "memory_mb": vm.get("memory"),
                   "domain_type": vm.get("vmDomainType"), "high_availability": vm.get("highAvailability")})

    def _pool(self, ref):
        """A pool's name: as the pool itself says (the bulk read), else as the id object has it
        (a single VM read between bulk reads)."""
        return self.pools.get(_value(ref)) or _name(ref)

    def list_inventory(self):
        self.pools = {_value(p.get("id")): p.get("name") for p in self._request("GET", "ServerPool", "read the server pools")}
        servers = self._request("GET", "Server", "read the servers")
        vms = self._request("GET", "Vm", "read the VMs")
        self.servers = {_value(s.get("id")): s for s in servers}
        hosts = [self._host_machine(s) for s in servers]
        machines = [self._vm_machine(vm, self.servers.get(_value(vm.get("serverId"))))
                    for vm in vms if vm.get("vmRunState") != "TEMPLATE"]
        return model.Inventory(hosts=hosts, vms=machines)

    def find(self, name=None, uuid=None):
        if uuid:
            try:
                vm = self._request("GET", self._path("Vm", vm_id(uuid)), "read VM %s" % uuid)
            except model.NotFound:
                raise model.NotFound("ovm %s: no VM with id %s" % (self.label, uuid)) from None
            return self._read_server_of(vm)
        return model.pick_one(self.list_inventory().vms, name=name, where=self.where())

    def _read_server_of(self, vm):
        server_id = _value(vm.get("serverId"))
        server = None
        if server_id:
            server = self._request("GET", self._path("Server", server_id), "read server %s" % _name(vm.get("serverId")))
            self.servers[server_id] = server
        return self._vm_machine(vm, server)

    def refresh(self, vm, heartbeat=False):
        try:
            found = self._request("GET", self._path("Vm", vm_id(vm.uuid)), "read VM %s" % vm.name)
        except model.NotFound:
            raise model.NotFound("ovm %s: VM %s (%s) is gone" % (self.label, vm.name, vm.uuid)) from None
        return self._read_server_of(found)

    # --- jobs ------------------------------------------------------------
    def _job(self, method, path, doing, params=None, body=None):
        job = self._request(method, path, doing, params=params, body=body)
        if not isinstance(job, dict) or not _value(job.get("id")):
            raise model.VirtError("ovm %s: %s: the Manager returned no job" % (self.label, doing), raw=str(job)[:200])
        return job

    def _wait_job(self, job, doing, timeout, abort_on_timeout=False, who=None):
        """Poll the job until summaryDone, within timeout seconds. Returns the job done, or
        None when it is still running at the deadline (abort_on_timeout: after aborting it,
        so that it does not act later). A progress line each note_every seconds
        ("web01: Oracle VM job 'Stop VM' RUNNING (15 s of 120 s)")."""
        job_id = _value(job.get("id"))
        start = time.monotonic()
        ticker = self.ticker(start)
        interval = self.job_poll
        checked = False
        while not job.get("summaryDone"):
            waited = time.monotonic() - start
            if not checked and waited >= JOB_START_GRACE and job.get("jobRunState") in _JOB_NOT_STARTED:
                checked = True
                self._refuse_unless_running(job_id, doing)
            if waited >= timeout:
                if abort_on_timeout:
                    if self.progress:
                        self.progress("%s: Oracle VM job '%s' still %s after %d s: aborting it"
                                      % (who or doing, job.get("name") or doing, job.get("jobRunState"), waited))
                    self._abort(job_id, doing)
                    return None
                raise model.Timeout("ovm %s: job %s (%s) still %s after %ds"
                                    % (self.label, doing, job_id, job.get("jobRunState"), timeout))
            time.sleep(max(0.05, min(interval, timeout - waited, ticker.due())))
            interval = min(interval * 1.5, self.max_poll_interval)
            ticker.tick(lambda seconds, seen=job: "%s: Oracle VM job '%s' %s (%d s of %d s)"
                        % (who or doing, seen.get("name") or doing, seen.get("jobRunState"), seconds, timeout))
            job = self._request("GET", self._path("Job", job_id), "read job %s" % job_id)
        if job.get("jobRunState") != "SUCCESS":
            raise self._job_failure(job, doing)
        return job

    def _refuse_unless_running(self, job_id, doing):
        """A job that does not start: the Manager may have restarted. Jobs asked during its
        start-up run once it is up, maybe long after the operator gave up: abort it."""
        found = self._request("GET", "Manager", "read the Manager")
        manager = found[0] if isinstance(found, list) and found else found
        state = (manager or {}).get("managerRunState")
        if state != "RUNNING":
            self._abort(job_id, doing)
            raise model.StateConflict("ovm %s: %s: Oracle VM Manager is %s and runs no jobs; the job was aborted "
                                      "so that it does not run later" % (self.label, doing, state),
                                      hint="Wait until the Manager has started, then retry")

    def _abort(self, job_id, doing):
        try:
            self._request("PUT", self._path("Job", job_id, "abort"), "abort job %s (%s)" % (job_id, doing))
        except model.VirtError:
            pass  # it may have finished meanwhile; the caller reads the VM's state next

    def _job_failure(self, job, doing):
        text = _job_error(job) or job.get("jobSummaryState") or job.get("jobRunState")
        lowered = text.lower()
        msg = "ovm %s: %s failed" % (self.label, doing)
        if "does not exist" in lowered or "not found" in lowered:
            return model.NotFound(msg, raw=text)
        if any(w in lowered for w in ("unreachable", "not running", "cannot reach", "could not contact")):
            exc = model.StateConflict(msg, raw=text, hint="Check the server in Oracle VM Manager; if it is dead, "
                                      "recover its VMs with recover_host_failure.yml")
            exc.server_lost = True
            return exc
        if any(w in lowered for w in ("locked", "maintenance", "state")):
            exc = model.StateConflict(msg, raw=text)
            exc.locked = "locked" in lowered
            return exc
        return model.VirtError(msg, raw=text)

    # --- actions ---------------------------------------------------------
    def power(self, vm, action, timeout=600):
        doing = "%s %s" % (action, vm.name)
        verb = {base.START: "resume" if vm.power_state_raw == "SUSPENDED" else "start", base.SHUTDOWN: "stop",
                base.POWEROFF: "kill", base.SUSPEND: "suspend", base.RESUME: "resume"}.get(action)
        if verb is None:
            raise model.Unsupported("ovm: %s is not an Oracle VM power operation (restart is the guest's own "
                                    "reboot, there is no hard reset)" % action,
                                    hint="Use state: restarted (stop, kill after shutdown_timeout, start)")
        job = self._job("PUT", self._path("Vm", vm_id(vm.uuid), verb), doing)
        if action == base.SHUTDOWN:
            # the guest may ignore it: at the step's deadline the stop job is aborted, so that
            # the planner's kill is not refused as a second job on a locked VM
            try:
                self._wait_job(job, doing, timeout, abort_on_timeout=True, who=vm.name)
            except model.Unreachable:
                raise
            except model.VirtError as exc:
                if getattr(exc, "server_lost", False) or getattr(exc, "locked", False) \
                        or isinstance(exc, model.NotFound):
                    raise
                # the guest did not stop and the Manager gave up on it: wait_for tells, then kill
            return
        self._wait_job(job, doing, timeout, who=vm.name)

    def _server_id(self, host_name):
        named = [sid for sid, s in self.servers.items() if s.get("name") == host_name]
        if not named:  # what it holds may be only the VM's own server (find by uuid, refresh)
            self.servers = {_value(s.get("id")): s for s in self._request("GET", "Server", "read the servers")}
            named = [sid for sid, s in self.servers.items() if s.get("name") == host_name]
        if not named:
            raise model.not_found("server", host_name, [s.get("name") for s in self.servers.values()], self.where())
        if len(named) > 1:
            raise model.Ambiguous("ovm %s: %d servers are named %s: %s"
                                  % (self.label, len(named), host_name, ", ".join(named)))
        return named[0]

    def migrate(self, vm, host_name, timeout=3600):
        """Live migration of a running VM (a stopped one is moved) to a server of its pool."""
        server_id = self._server_id(host_name)
        doing = "migrate %s to %s" % (vm.name, host_name)
        self._wait_job(self._job("PUT", self._path("Vm", vm_id(vm.uuid), "migrate"), doing,
                                 params={"serverId": server_id}),
                       doing, timeout, who=vm.name)

    def set_maintenance(self, host_name, on, timeout=3600):
        server_id = self._server_id(host_name)
        server = self._request("GET", self._path("Server", server_id), "read server %s" % host_name)
        if bool(server.get("maintenanceMode")) == bool(on):
            return False
        doing = "%s maintenance mode on %s" % ("enter" if on else "leave", host_name)
        self._wait_job(self._job("PUT", self._path("Server", server_id), doing,
                                 body=dict(server, maintenanceMode=bool(on))), doing, timeout, who=host_name)
        return True

    def recover(self, vm, host_name, timeout=600):
        """A VM of a dead server, moved to `host_name` of the same pool (shared repository),
        stopped, as read back: Oracle VM starts a VM on the server it is assigned to, so
        the stopped VM is moved there first (a cold migration), then started by the caller."""
        if vm.power_state != model.STOPPED:
            raise model.StateConflict(
                "ovm %s: %s is %s (%s) on %s: Oracle VM Manager does not know it is off, so it may still run "
                "there; nothing was done" % (self.label, vm.name, vm.power_state, vm.power_state_raw, vm.host),
                hint="If %s is only cut off from the Manager it still runs its VMs. Confirm it is powered off "
                     "(fence it): the Manager then shows its VMs stopped, and they can be started elsewhere" % vm.host)
        if vm.host != host_name:
            try:
                self.migrate(vm, host_name, timeout=timeout)
            except model.Timeout as exc:
                exc.changed = True  # the Manager took the move and may still carry it out
                raise
        return self.refresh(vm)


PLATFORM_SPEC = registry.register(registry.Platform(
    name=PLATFORM,
    title="Oracle VM 3.4 (Oracle VM Manager)",
    driver=OvmDriver,
    scope=registry.MANAGER,
    recovery=registry.REREGISTER,
    capabilities=OvmDriver.capabilities,
    id_options=("hostname",),
    client={"pip": "requests>=2.25", "import": "requests"},
    options=(
        registry.Option("hostname", "Oracle VM Manager host name.", env=("OVM_HOST",), endpoint=True, required=True),
        registry.Option("username", "Oracle VM Manager user name.", env=("OVM_USERNAME",), aliases=("user",)),
        registry.Option("password", "Oracle VM Manager password.", env=("OVM_PASSWORD",), secret=True,
                        aliases=("pass", "pwd")),
        registry.Option("port", "Oracle VM Manager Web Services (HTTPS) port.", type="int", default=7002,
                        env=("OVM_PORT",), endpoint=True),
        registry.Option("validate_certs", "Verify the Manager's certificate. Turn off only for labs.", type="bool",
                        default=True, env=("OVM_VALIDATE_CERTS",), endpoint=True),
        registry.Option("ca_path", "CA certificate (PEM file) to verify the Manager's certificate with, instead of "
                        "the system's trust store (Oracle VM Manager's own CA signs its certificate).",
                        env=("OVM_CA_PATH",), endpoint=True),
    ),
))
