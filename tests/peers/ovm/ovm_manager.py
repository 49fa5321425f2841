#!/usr/bin/env python
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An emulator of the Oracle VM Manager 3.4 Web Services REST API (see README.md).

    python ovm_manager.py --lab ESTATE.json --listen 127.0.0.1:0 --control 127.0.0.1:0 \
        --username U --password P --certdir DIR [--job-seconds 0.5] [--stop-seconds 1] \
        [--stop-timeout 120] [--server-timeout 5] [--starting-seconds 0] [--exit-on-stdin-eof]

It keeps a model of server pools, servers, VMs and jobs and interprets every request
against it: jobs run in threads and take time, servers can stop answering or die,
guests can ignore graceful stops. Standard library only, plus `cryptography` for the
throw-away CA (the `openssl` command line is used where it is not importable).
Prints one JSON ready line on stdout once both listeners are up; logs go to stderr.
"""

import argparse
import base64
import errno
import hashlib
import json
import os
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE = "/ovm/core/wsapi/rest"
MODEL = "com.oracle.ovm.mgr.ws.model."
VERSION = "3.4.6.2105"
SERVER_OVM_VERSION = "3.4.6-2105"
VM_STATES = ("TEMPLATE", "STARTING", "RUNNING", "STOPPING", "STOPPED", "SUSPENDED")
EXC = "com.oracle.ovm.mgr.api.exception.FailedOperationException"
REALM = "default"  # WebLogic's default security realm name

_HTML_401 = ("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.0 Draft//EN\">\n<HTML>\n<HEAD>\n"
             "<TITLE>Error 401--Unauthorized</TITLE>\n</HEAD>\n<BODY bgcolor=\"white\">\n"
             "<H2>Error 401--Unauthorized</H2>\n</BODY>\n</HTML>\n")


def log(msg, *args):
    sys.stderr.write("ovm_manager: " + (msg % args if args else msg) + "\n")
    sys.stderr.flush()


def now_ms():
    return int(time.time() * 1000)


# --- certificates ---------------------------------------------------------------------
def make_certs(certdir):
    """A throw-away CA (ca.pem) and a server certificate for 127.0.0.1 / localhost."""
    os.makedirs(certdir, exist_ok=True)
    ca_pem, cert_pem, key_pem = (os.path.join(certdir, n) for n in ("ca.pem", "server.pem", "server-key.pem"))
    try:
        import datetime  # pylint: disable=import-outside-toplevel
        import ipaddress  # pylint: disable=import-outside-toplevel
        from cryptography import x509  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
        from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel
    except ImportError:
        _make_certs_openssl(certdir, ca_pem, cert_pem, key_pem)
        return ca_pem, cert_pem, key_pem
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    end = start + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OVM lab CA %s" % secrets.token_hex(4))])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(ca_pem, "wb") as handle:
        handle.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(cert_pem, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_pem, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(key_pem, 0o600)
    return ca_pem, cert_pem, key_pem


def _make_certs_openssl(certdir, ca_pem, cert_pem, key_pem):
    ca_key = os.path.join(certdir, "ca-key.pem")
    csr = os.path.join(certdir, "server.csr")
    ext = os.path.join(certdir, "server.ext")
    with open(ext, "w", encoding="ascii") as handle:
        handle.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                     "extendedKeyUsage=serverAuth\n")
    for argv in (["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", ca_key, "-out", ca_pem, "-days", "30",
                  "-subj", "/CN=OVM lab CA %s" % secrets.token_hex(4),
                  "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                 ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", key_pem, "-out", csr, "-subj", "/CN=localhost"],
                 ["openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
                  "-out", cert_pem, "-days", "30", "-extfile", ext]):
        subprocess.run(argv, check=True, capture_output=True)


# --- ids ----------------------------------------------------------------------------------
def _hex_id(code, seed):
    """A 32-hex-digit id as Oracle VM Manager makes them: 0004fb0000 + 2-digit type + 0000 + 16 hex."""
    return "0004fb0000%02x0000%s" % (code, hashlib.sha256(seed.encode()).hexdigest()[:16])


def _server_id(seed):
    """An Oracle VM Server is named by its hardware (SMBIOS) UUID, as colon-separated hex bytes."""
    return ":".join("%02x" % b for b in hashlib.sha256(("server:" + seed).encode()).digest()[:16])


class EstateError(ValueError):
    pass


class JobEnd(Exception):
    """Ends a running job: FAILURE with this message (or ABORTED)."""

    def __init__(self, message, aborted=False):
        super().__init__(message)
        self.message = message
        self.aborted = aborted


class ApiError(Exception):
    """A request the Manager refuses outright: an error response, no job."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- the model ------------------------------------------------------------------------------
class Pool:
    def __init__(self, name):
        self.id = _hex_id(2, "pool:" + name)
        self.name = name
        self.servers = []  # Server objects, in order
        self.vms = []


class Server:
    def __init__(self, name, pool):
        self.id = _server_id(name)
        self.name = name
        self.pool = pool
        self.maintenance = False
        self.answering = True
        self.power = "on"
        self.run_state = "RUNNING"  # what the Manager reports
        self.memory = 262144
        self.job = None  # the job holding this server's lock
        self.description = ""
        self.generation = 1
        self.death_timer = None


class Vm:
    def __init__(self, vid, name, server, pool, memory, cpus, graceful):
        self.id = vid
        self.name = name
        self.server = server
        self.pool = pool
        self.memory = memory
        self.cpus = cpus
        self.graceful = graceful
        self.state = "STOPPED"  # what the Manager reports
        self.actual = "stopped"  # what really runs
        self.counters = {"powerOns": 0, "gracefulShutdowns": 0, "hardOffs": 0, "reboots": 0}
        self.job = None
        self.fail_next = {}
        self.generation = 1


class Job:
    def __init__(self, jid, name, user, result):
        self.id = jid
        self.name = name
        self.user = user
        self.result = result  # an id object
        self.run_state = "CREATED"
        self.summary = "IN_PROGRESS"
        self.done = False
        self.error = None
        self.progress = None
        self.start = now_ms()
        self.end = None
        self.aborted_by = None
        self.abortable = True
        self.event = threading.Event()  # set when the job ends (by itself or by abort)
        self.generation = 1


class Manager:
    def __init__(self, args, estate):
        self.args = args
        self.lock = threading.RLock()
        self.id = _hex_id(1, "manager:" + args.username)
        self.uuid = self.id
        self.run_state = "STARTING" if args.starting_seconds > 0 else "RUNNING"
        self.started = time.monotonic()
        self.running_event = threading.Event()
        if self.run_state == "RUNNING":
            self.running_event.set()
        else:
            timer = threading.Timer(args.starting_seconds, self.set_run_state, ("RUNNING",))
            timer.daemon = True
            timer.start()
        self.pools, self.servers, self.vms, self.jobs = {}, {}, {}, {}
        self._pool_list, self._server_list, self._vm_list = [], [], []
        self._job_seq = now_ms()
        self.base_url = None  # https://host:port/ovm/core/wsapi/rest, set once listening
        self.sessions = set()
        self.requests = {"total": 0, "logins": 0, "unauthorized": 0, "by_call": {}}
        self.rest = "up"
        self.repository = _hex_id(3, "repository:" + args.username)
        self._load(estate)

    # --- estate ---
    def _load(self, estate):
        if not isinstance(estate, dict):
            raise EstateError("the estate is not a JSON object")
        for key in estate:
            if key not in ("clusters", "hosts"):
                raise EstateError("estate field %r: unknown (known: clusters, hosts)" % key)
        seen_vm_ids = set()
        entries = [(c, h) for c in estate.get("clusters") or [] for h in (c.get("hosts") or [])]
        for cluster in estate.get("clusters") or []:
            if not isinstance(cluster, dict) or not isinstance(cluster.get("name"), str) or not cluster["name"]:
                raise EstateError("clusters[].name: each server pool needs a non-empty name")
            if any(p.name == cluster["name"] for p in self._pool_list):
                raise EstateError("clusters[].name %r: listed twice" % cluster["name"])
            pool = Pool(cluster["name"])
            self.pools[pool.id] = pool
            self._pool_list.append(pool)
        entries += [(None, h) for h in estate.get("hosts") or []]
        for cluster, host in entries:
            if not isinstance(host, dict) or not isinstance(host.get("name"), str) or not host["name"]:
                raise EstateError("hosts[].name: each server needs a non-empty name")
            if cluster is None and host.get("vms"):
                raise EstateError("host %s: vms: an Oracle VM Server runs VMs only as a member of a server pool"
                                  % host["name"])
            if any(s.name == host["name"] for s in self._server_list):
                raise EstateError("host %s: name: listed twice" % host["name"])
            pool = next((p for p in self._pool_list if cluster and p.name == cluster["name"]), None)
            server = Server(host["name"], pool)
            state = host.get("state", "connected")
            if state == "maintenance":
                server.maintenance = True
            elif state == "not_responding":
                server.answering, server.run_state = False, "UNKNOWN"
            elif state == "disconnected":
                server.answering, server.power, server.run_state = False, "off", "STOPPED"
            elif state != "connected":
                raise EstateError("host %s: state %r: one of connected, maintenance, not_responding, disconnected"
                                  % (host["name"], state))
            self.servers[server.id] = server
            self._server_list.append(server)
            if pool:
                pool.servers.append(server)
            running_mb = 0
            for index, spec in enumerate(host.get("vms") or []):
                vm = self._load_vm(spec, server, pool, index, seen_vm_ids)
                if vm.actual != "stopped":
                    running_mb += vm.memory
            while server.memory < running_mb * 1.25:
                server.memory *= 2

    def _load_vm(self, spec, server, pool, index, seen):
        where = "host %s: VM %r" % (server.name, spec.get("name") if isinstance(spec, dict) else spec)
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise EstateError("%s: name: must be a non-empty string" % where)
        for key in spec:
            if key not in ("name", "power", "graceful", "memory_mb", "cpus", "uuid", "heartbeat"):
                raise EstateError("%s: %s: not a field the Oracle VM peer holds" % (where, key))
        if spec.get("heartbeat", "none") != "none":
            raise EstateError("%s: heartbeat: Oracle VM 3.4's REST model has no guest heartbeat" % where)
        vid = spec.get("uuid")
        if vid:
            vid = str(vid).replace("-", "").lower()
            if len(vid) != 32 or any(c not in "0123456789abcdef" for c in vid):
                raise EstateError("%s: uuid %r: not a UUID or 32 hex digits" % (where, spec["uuid"]))
        else:
            vid = _hex_id(6, "vm:%s:%s:%d:%s" % (pool.name if pool else "", server.name, index, spec["name"]))
        if vid in seen:
            raise EstateError("%s: uuid: the id %s is used twice" % (where, vid))
        seen.add(vid)
        memory, cpus = spec.get("memory_mb", 1024), spec.get("cpus", 1)
        for key, value, low, high in (("memory_mb", memory, 16, 4 * 1024 * 1024), ("cpus", cpus, 1, 128)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise EstateError("%s: %s: an integer from %d to %d, not %r" % (where, key, low, high, value))
        graceful = spec.get("graceful", True)
        if not isinstance(graceful, bool):
            raise EstateError("%s: graceful: true or false, not %r" % (where, graceful))
        vm = Vm(vid, spec["name"], server, pool, memory, cpus, graceful)
        power = spec.get("power", "running")
        if power not in ("running", "stopped", "suspended"):
            raise EstateError("%s: power %r: one of running, stopped, suspended" % (where, power))
        if power == "running" and server.maintenance:
            raise EstateError("%s: power running: its server is in maintenance mode, which runs no VMs" % where)
        if server.power == "off":
            power = "stopped"  # a server that is down runs nothing
        vm.actual = power
        vm.state = {"running": "RUNNING", "stopped": "STOPPED", "suspended": "SUSPENDED"}[power]
        self.vms[vid] = vm
        self._vm_list.append(vm)
        if pool:
            pool.vms.append(vm)
        return vm

    # --- run state ---
    def set_run_state(self, state):
        with self.lock:
            self.run_state = state
            if state == "RUNNING":
                self.running_event.set()
            else:
                self.running_event.clear()
        log("managerRunState %s", state)

    # --- id objects and serialisation ---
    def ref(self, kind, oid, name):
        return {"type": MODEL + kind, "value": oid, "uri": "%s/%s/%s" % (self.base_url, kind, urllib.parse.quote(oid, safe=":")),
                "name": name}

    def vm_ref(self, vm):
        return self.ref("Vm", vm.id, vm.name)

    def server_ref(self, server):
        return self.ref("Server", server.id, server.name) if server else None

    def pool_ref(self, pool):
        return self.ref("ServerPool", pool.id, pool.name) if pool else None

    def job_ref(self, job):
        return self.ref("Job", job.id, job.name)

    def manager_json(self):
        return {"id": self.ref("Manager", self.id, "OVM Manager"), "name": "OVM Manager", "description": "",
                "locked": False, "readOnly": False, "generation": 1, "userData": [], "resourceGroupIds": [],
                "managerUuid": self.uuid, "managerVersion": VERSION, "managerRunState": self.run_state,
                "managerTime": now_ms(), "serverPoolIds": [self.pool_ref(p) for p in self._pool_list]}

    def pool_json(self, pool):
        return {"id": self.pool_ref(pool), "name": pool.name, "description": "", "locked": False,
                "readOnly": False, "generation": 1, "userData": [], "resourceGroupIds": [],
                "serverIds": [self.server_ref(s) for s in pool.servers],
                "vmIds": [self.vm_ref(v) for v in pool.vms], "clusterId": None, "virtualIp": None,
                "keymapName": "en-us", "vmStartPolicy": "BEST_SERVER", "serverPoolPolicyIds": [],
                "secureVmMigrate": True, "antiAffinityGroupIds": [], "zoneId": None}

    def server_json(self, server, vms_by_server=None):
        if vms_by_server is None:
            vms = [v for v in self._vm_list if v.server is server]
        else:
            vms = vms_by_server.get(server.id, [])
        return {"id": self.server_ref(server), "name": server.name, "description": server.description,
                "locked": server.job is not None, "readOnly": False, "generation": server.generation,
                "userData": [], "resourceGroupIds": [], "hostname": server.name,
                "ipAddress": None, "serverRunState": server.run_state, "maintenanceMode": server.maintenance,
                "serverPoolId": self.pool_ref(server.pool), "vmIds": [self.vm_ref(v) for v in vms],
                "manufacturer": "Oracle Corporation", "productName": "ORACLE SERVER X7-2",
                "biosVendor": "American Megatrends Inc.", "biosVersion": "41060600", "biosReleaseDate": "05/22/2018",
                "serialNumber": server.id.replace(":", "")[:10].upper(), "ovmVersion": SERVER_OVM_VERSION,
                "hypervisorName": "Xen", "hypervisorType": "XEN", "memory": server.memory,
                "usableMemory": server.memory - 4096, "cpuCount": 32, "threadsPerCore": 2, "coresPerSocket": 8,
                "totalProcessorCores": 16, "populatedProcessorSockets": 2, "processorSpeed": 2100.0,
                "cpuArchitectureType": "X86_64", "serverRoles": ["VIRTUAL_MACHINE", "UTILITY"],
                "haltOnError": False, "clusterId": None, "agentLogin": "oracle", "takeOwnership": True}

    def vm_json(self, vm):
        domain = "XEN_HVM_PV_DRIVERS"
        return {"id": self.vm_ref(vm), "name": vm.name, "description": "", "locked": vm.job is not None,
                "readOnly": False, "generation": vm.generation, "userData": [], "resourceGroupIds": [],
                "vmRunState": vm.state, "serverId": self.server_ref(vm.server), "serverPoolId": self.pool_ref(vm.pool),
                "vmDomainType": domain, "memory": vm.memory, "memoryLimit": vm.memory, "cpuCount": vm.cpus,
                "cpuCountLimit": vm.cpus, "cpuPriority": 50, "cpuUtilizationCap": 100, "highAvailability": False,
                "osType": "Oracle Linux 7", "vmStartPolicy": "USE_POOL_POLICY", "restartActionOnCrash": "RESTART",
                "repositoryId": self.ref("Repository", self.repository, "repo01"), "hugePagesEnabled": False,
                "keymapName": "en-us", "bootOrder": ["DISK"], "networkInstallPath": None, "vmMouseType": "OS_DEFAULT",
                "vmConfigFileAbsolutePath": "/OVS/Repositories/%s/VirtualMachines/%s/vm.cfg" % (self.repository, vm.id),
                "vmConfigFileMountedPath": "/OVS/Repositories/%s/VirtualMachines/%s/vm.cfg" % (self.repository, vm.id),
                "origin": None, "pinnedCpus": None, "vmDiskMappingIds": [], "virtualNicIds": [],
                "affinityGroupIds": [], "architecture": "X86_64", "guestDriverVersion": None,
                "vmApiVersion": None, "currentCpuCount": vm.cpus if vm.state == "RUNNING" else None,
                "currentMemory": vm.memory if vm.state == "RUNNING" else None}

    def job_json(self, job):
        return {"id": self.job_ref(job), "name": job.name, "description": job.name, "locked": False,
                "readOnly": False, "generation": job.generation, "userData": [], "resourceGroupIds": [],
                "resultId": job.result, "jobRunState": job.run_state, "jobSummaryState": job.summary,
                "done": job.done, "summaryDone": job.done, "jobGroup": False,
                "error": job.error, "progressMessage": job.progress, "latestSummaryProgressMessage": job.progress,
                "extraInfo": None, "parentJobId": None, "childJobIds": [], "user": job.user,
                "abortedByUser": job.aborted_by, "startTime": job.start, "endTime": job.end,
                "abortable": job.abortable and not job.done}

    def list_json(self, kind):
        if kind == "Vm":
            return [self.vm_json(v) for v in self._vm_list]
        if kind == "Server":
            by_server = {}
            for vm in self._vm_list:
                if vm.server is not None:
                    by_server.setdefault(vm.server.id, []).append(vm)
            return [self.server_json(s, by_server) for s in self._server_list]
        if kind == "ServerPool":
            return [self.pool_json(p) for p in self._pool_list]
        if kind == "Manager":
            return [self.manager_json()]
        if kind == "Job":
            return [self.job_json(j) for j in self.jobs.values()]
        raise KeyError(kind)

    def id_list(self, kind):
        if kind == "Vm":
            return [self.vm_ref(v) for v in self._vm_list]
        if kind == "Server":
            return [self.server_ref(s) for s in self._server_list]
        if kind == "ServerPool":
            return [self.pool_ref(p) for p in self._pool_list]
        if kind == "Manager":
            return [self.ref("Manager", self.id, "OVM Manager")]
        if kind == "Job":
            return [self.job_ref(j) for j in self.jobs.values()]
        raise KeyError(kind)

    def one_json(self, kind, oid):
        table = {"Vm": (self.vms, self.vm_json), "Server": (self.servers, self.server_json),
                 "ServerPool": (self.pools, self.pool_json), "Job": (self.jobs, self.job_json)}
        if kind == "Manager":
            if oid != self.id:
                raise self.missing(kind, oid)
            return self.manager_json()
        objects, render = table[kind]
        if oid not in objects:
            raise self.missing(kind, oid)
        return render(objects[oid])

    @staticmethod
    def missing(kind, oid):
        # guess: the error code and text of a lookup of an id that does not exist
        return ApiError(404, "OVMAPI_2005E", "OVMAPI_2005E %s with id: %s which does not exist." % (kind, oid))

    # --- jobs ---
    def new_job(self, name, result):
        with self.lock:
            self._job_seq = max(self._job_seq + 1, now_ms())
            job = Job(str(self._job_seq), name, self.args.username, result)
            self.jobs[job.id] = job
            return job

    def finish(self, job, error=None, aborted=False, by=None):
        """End a job (under the lock); False when it had already ended."""
        with self.lock:
            if job.done:
                return False
            job.done = True
            job.end = now_ms()
            job.generation += 1
            if aborted:
                job.run_state, job.summary, job.aborted_by = "FAILURE", "ABORTED", by
                job.error = {"type": EXC, "message": error or "OVMAPI_1007E Job aborted by user: %s" % by}
            elif error:
                job.run_state, job.summary = "FAILURE", "FAILURE"
                job.error = {"type": EXC, "message": error}
            else:
                job.run_state, job.summary = "SUCCESS", "SUCCESS"
                job.progress = "Completed"
            for obj in list(self._vm_list_of_job(job)) + [s for s in self._server_list if s.job is job]:
                obj.job = None
            job.event.set()
            log("job %s %s: %s%s", job.id, job.name, job.summary, (" (%s)" % job.error["message"]) if job.error else "")
            return True

    def _vm_list_of_job(self, job):
        held = getattr(job, "held", ())
        return [v for v in held if v.job is job]

    def wait(self, job, seconds):
        """Sleep inside a job; raises JobEnd when the job was ended meanwhile (aborted, killed)."""
        if job.event.wait(max(0.0, seconds)):
            raise JobEnd("ended", aborted=True)

    def submit(self, name, result, body, holds=(), server_holds=(), lock_exempt=False):
        """Create a job; run `body(job)` in a thread once the Manager is RUNNING."""
        with self.lock:
            job = self.new_job(name, result)
            job.held = list(holds)
            if not lock_exempt:
                for obj in list(holds) + list(server_holds):
                    if obj.job is not None and not obj.job.done:
                        kind = "Vm" if isinstance(obj, Vm) else "Server"
                        # guess: the text of OVM's object-lock refusal
                        self.finish(job, "OVMAPI_2010E Object %s: %s (%s) is locked by job: %s (%s). "
                                    "Try again once that job is done." % (kind, obj.name, obj.id, obj.job.name,
                                                                          obj.job.id))
                        return job
            for obj in list(holds) + list(server_holds):
                obj.job = job
        threading.Thread(target=self._run, args=(job, body), daemon=True, name="job-%s" % job.id).start()
        return job

    def _run(self, job, body):
        while not self.running_event.wait(0.1):
            if job.done:
                return
        with self.lock:
            if job.done:
                return
            job.run_state = "RUNNING"
            job.start = now_ms()
            job.generation += 1
        try:
            body(job)
        except JobEnd as end:
            if not end.aborted:
                self.finish(job, end.message)
            return
        except Exception as exc:  # pylint: disable=broad-except
            log("job %s crashed: %r", job.id, exc)
            self.finish(job, "OVMAPI_9999E internal error: %s" % exc)
            return
        self.finish(job)

    def abort(self, job, by):
        return self.finish(job, aborted=True, by=by)

    # --- checks used inside jobs ---
    def reach(self, job, server, command):
        """The Manager sends `command` to `server`: an unreachable one fails after --server-timeout."""
        if server is None:
            return
        if server.run_state == "STOPPED":
            raise JobEnd("OVMAPI_4010E Attempt to send command: %s to server: %s failed. OVMAPI_4004E Server "
                         "%s is not running (serverRunState STOPPED)." % (command, server.name, server.name))
        if server.answering:
            return
        self.wait(job, self.args.server_timeout)
        with self.lock:
            if server.answering:
                return
        raise JobEnd("OVMAPI_4010E Attempt to send command: %s to server: %s failed. OVMAPI_4004E Sync command "
                     "failed on server: %s. Command: %s, Server error: server unreachable: no answer within %gs"
                     % (command, server.name, server.name, command, self.args.server_timeout))

    def check_fail_next(self, job, vm, action):
        with self.lock:
            message = vm.fail_next.pop(action, None)
        if message:
            self.wait(job, self.args.job_seconds)
            raise JobEnd(message)

    @staticmethod
    def usable(server):
        return server.power == "on" and server.answering and server.run_state == "RUNNING" and not server.maintenance

    def free_memory(self, server):
        used = sum(v.memory for v in self._vm_list if v.server is server and v.actual != "stopped")
        return server.memory - 4096 - used

    def best_server(self, pool, exclude=(), need=0):
        candidates = [s for s in (pool.servers if pool else []) if self.usable(s) and s not in exclude
                      and self.free_memory(s) >= need]
        return max(candidates, key=self.free_memory) if candidates else None

    # --- VM actions ---
    def vm_action(self, vm, action, params):
        label = {"start": "Start", "stop": "Stop", "kill": "Kill", "restart": "Restart", "suspend": "Suspend",
                 "resume": "Resume", "migrate": "Migrate"}[action]
        name = "%s VM: %s" % (label, vm.name)
        if action == "migrate":
            target_id = params.get("serverId")
            if not target_id:
                raise ApiError(400, "OVMAPI_2006E", "OVMAPI_2006E migrate: the serverId query parameter is required")
            target = self.servers.get(target_id)
            if target is None:
                raise self.missing("Server", target_id)
            name = "Migrate VM: %s to Server: %s" % (vm.name, target.name)
            return self.submit(name, self.vm_ref(vm), lambda job: self._migrate(job, vm, target), holds=[vm])
        if action == "kill":
            with self.lock:
                previous = vm.job
                if previous is not None and not previous.done:
                    self.finish(previous, "OVMAPI_1007E Job aborted: the virtual machine %s was killed by %s"
                                % (vm.name, self.args.username), aborted=True, by=self.args.username)
            return self.submit(name, self.vm_ref(vm), lambda job: self._kill(job, vm), holds=[vm])
        body = {"start": self._start, "stop": self._stop, "restart": self._restart, "suspend": self._suspend,
                "resume": self._resume}[action]
        return self.submit(name, self.vm_ref(vm), lambda job: body(job, vm), holds=[vm])

    def _start(self, job, vm):
        with self.lock:
            if vm.state == "RUNNING":
                raise JobEnd("OVMAPI_5001E Virtual machine: %s is already running." % vm.name)
            if vm.state == "SUSPENDED":
                raise JobEnd("OVMAPI_5002E Virtual machine: %s is suspended: resume it instead of starting it."
                             % vm.name)
            server = vm.server
            if server is None:
                server = self.best_server(vm.pool, need=vm.memory)
                if server is None:
                    raise JobEnd("OVMAPI_4024E No server in server pool: %s can start virtual machine: %s (no "
                                 "running server out of maintenance mode with %d MB free)"
                                 % (vm.pool.name if vm.pool else None, vm.name, vm.memory))
            elif server.maintenance:
                raise JobEnd("OVMAPI_4025E Server: %s is in maintenance mode: it starts no virtual machine."
                             % server.name)
            elif server.run_state in ("STOPPED", "STOPPING", "STARTING"):
                raise JobEnd("OVMAPI_4004E Server: %s is not running (serverRunState %s): cannot start virtual "
                             "machine: %s there. Migrate it to a running server of the pool first."
                             % (server.name, server.run_state, vm.name))
        self.reach(job, server, "start_vm")
        self.check_fail_next(job, vm, "start")
        with self.lock:
            if server.power == "off":
                raise JobEnd("OVMAPI_4004E Server: %s is not running." % server.name)
            if self.free_memory(server) < vm.memory and vm.actual == "stopped":
                raise JobEnd("OVMAPI_4026E Server: %s does not have enough free memory (%d MB) to start virtual "
                             "machine: %s (%d MB)." % (server.name, self.free_memory(server), vm.name, vm.memory))
            vm.server = server
            vm.state = "STARTING"
            vm.generation += 1
        self.wait(job, self.args.job_seconds)
        with self.lock:
            if job.done:
                return
            if vm.actual == "stopped":
                vm.counters["powerOns"] += 1
            vm.actual, vm.state = "running", "RUNNING"
            vm.generation += 1

    def _stop(self, job, vm):
        with self.lock:
            if vm.state in ("STOPPED", "TEMPLATE"):
                raise JobEnd("OVMAPI_5003E Virtual machine: %s is not running (vmRunState %s)." % (vm.name, vm.state))
            if vm.state == "SUSPENDED":
                raise JobEnd("OVMAPI_5004E Virtual machine: %s is suspended: resume it before a graceful stop, "
                             "or kill it." % vm.name)
            server = vm.server
        self.reach(job, server, "stop_vm")
        self.check_fail_next(job, vm, "stop")
        with self.lock:
            graceful = vm.graceful
            if graceful:
                vm.state = "STOPPING"
                vm.generation += 1
        if graceful:
            self.wait(job, self.args.stop_seconds)
            with self.lock:
                if job.done:
                    return
                if vm.actual != "stopped":
                    vm.counters["gracefulShutdowns"] += 1
                vm.actual, vm.state = "stopped", "STOPPED"
                vm.generation += 1
            return
        self._wait_for_guest(job, vm, "stop_vm")

    def _wait_for_guest(self, job, vm, command):
        """A guest that ignores the request: the job waits --stop-timeout, then fails."""
        deadline = time.monotonic() + self.args.stop_timeout
        while time.monotonic() < deadline:
            self.wait(job, min(0.1, max(0.0, deadline - time.monotonic())))
            with self.lock:
                if vm.actual == "stopped":  # it went down another way (a crash): nothing to do
                    vm.state = "STOPPED"
                    return
                if vm.graceful and command == "stop_vm":  # it listens again: it shuts down now
                    break
        else:
            raise JobEnd("OVMAPI_4010E Attempt to send command: %s to server: %s failed. OVMAPI_4004E Sync command "
                         "failed on server: %s. Command: %s, Server error: the virtual machine %s did not stop "
                         "within %g seconds" % (command, vm.server.name, vm.server.name, command, vm.name,
                                                self.args.stop_timeout))
        with self.lock:
            vm.state = "STOPPING"
        self.wait(job, self.args.stop_seconds)
        with self.lock:
            if vm.actual != "stopped":
                vm.counters["gracefulShutdowns"] += 1
            vm.actual, vm.state = "stopped", "STOPPED"

    def _kill(self, job, vm):
        with self.lock:
            server = vm.server
            if vm.state in ("STOPPED", "TEMPLATE") and vm.actual == "stopped":
                return  # guess: a kill of a stopped VM succeeds and changes nothing
        self.reach(job, server, "destroy_vm")
        self.check_fail_next(job, vm, "kill")
        self.wait(job, self.args.job_seconds)
        with self.lock:
            if job.done:
                return
            if vm.actual != "stopped":
                vm.counters["hardOffs"] += 1
            vm.actual, vm.state = "stopped", "STOPPED"
            vm.generation += 1

    def _restart(self, job, vm):
        with self.lock:
            if vm.state != "RUNNING":
                raise JobEnd("OVMAPI_5003E Virtual machine: %s is not running (vmRunState %s)." % (vm.name, vm.state))
            server = vm.server
        self.reach(job, server, "reboot_vm")
        self.check_fail_next(job, vm, "restart")
        with self.lock:
            graceful = vm.graceful
        if not graceful:
            deadline = time.monotonic() + self.args.stop_timeout
            while time.monotonic() < deadline:
                self.wait(job, min(0.1, max(0.0, deadline - time.monotonic())))
                with self.lock:
                    if vm.actual == "stopped":
                        raise JobEnd("OVMAPI_5003E Virtual machine: %s stopped during its restart." % vm.name)
            raise JobEnd("OVMAPI_4010E Attempt to send command: reboot_vm to server: %s failed. OVMAPI_4004E Sync "
                         "command failed on server: %s. Command: reboot_vm, Server error: the virtual machine %s "
                         "did not restart within %g seconds" % (server.name, server.name, vm.name,
                                                                self.args.stop_timeout))
        self.wait(job, self.args.stop_seconds + self.args.job_seconds)
        with self.lock:
            if vm.actual == "running":
                vm.counters["reboots"] += 1

    def _suspend(self, job, vm):
        with self.lock:
            if vm.state != "RUNNING":
                raise JobEnd("OVMAPI_5003E Virtual machine: %s is not running (vmRunState %s): it cannot be "
                             "suspended." % (vm.name, vm.state))
            server = vm.server
        self.reach(job, server, "pause_vm")
        self.check_fail_next(job, vm, "suspend")
        self.wait(job, self.args.job_seconds)
        with self.lock:
            if vm.actual == "running":
                vm.actual, vm.state = "suspended", "SUSPENDED"
                vm.generation += 1

    def _resume(self, job, vm):
        with self.lock:
            if vm.state != "SUSPENDED":
                raise JobEnd("OVMAPI_5005E Virtual machine: %s is not suspended (vmRunState %s)." % (vm.name, vm.state))
            server = vm.server
            if server.maintenance:
                raise JobEnd("OVMAPI_4025E Server: %s is in maintenance mode." % server.name)
        self.reach(job, server, "unpause_vm")
        self.check_fail_next(job, vm, "resume")
        self.wait(job, self.args.job_seconds)
        with self.lock:
            if vm.actual == "suspended":
                vm.actual, vm.state = "running", "RUNNING"
                vm.generation += 1

    def _check_target(self, vm, target):
        if vm.pool is None or target.pool is not vm.pool:
            raise JobEnd("OVMAPI_4030E Server: %s is not in server pool: %s of virtual machine: %s; a virtual "
                         "machine migrates only within its server pool."
                         % (target.name, vm.pool.name if vm.pool else None, vm.name))
        if target is vm.server:
            raise JobEnd("OVMAPI_4031E Virtual machine: %s is already on server: %s." % (vm.name, target.name))
        if target.maintenance:
            raise JobEnd("OVMAPI_4025E Server: %s is in maintenance mode: it receives no virtual machine."
                         % target.name)
        if target.run_state != "RUNNING" and target.answering:
            raise JobEnd("OVMAPI_4004E Server: %s is not running (serverRunState %s)."
                         % (target.name, target.run_state))

    def _migrate(self, job, vm, target):
        with self.lock:
            self._check_target(vm, target)
            state, source = vm.state, vm.server
            if state == "SUSPENDED":
                raise JobEnd("OVMAPI_5006E Virtual machine: %s is suspended: resume it or stop it before migrating."
                             % vm.name)
            if state not in ("RUNNING", "STOPPED"):
                raise JobEnd("OVMAPI_5006E Virtual machine: %s is %s: it cannot migrate now." % (vm.name, state))
        if state == "RUNNING":
            self.reach(job, source, "migrate_vm")  # the live migration is driven by the source server
        self.reach(job, target, "migrate_vm" if state == "RUNNING" else "configure_vm")
        self.check_fail_next(job, vm, "migrate")
        with self.lock:
            if state == "RUNNING" and self.free_memory(target) < vm.memory:
                raise JobEnd("OVMAPI_4026E Server: %s does not have enough free memory (%d MB) for virtual "
                             "machine: %s (%d MB)." % (target.name, self.free_memory(target), vm.name, vm.memory))
        self.wait(job, self.args.job_seconds)
        with self.lock:
            if target.power == "off" or not target.answering:
                raise JobEnd("OVMAPI_4004E Server: %s stopped answering during the migration." % target.name)
            vm.server = target
            vm.generation += 1

    # --- servers ---
    def edit_server(self, server, body):
        if not isinstance(body, dict):
            raise ApiError(400, "OVMAPI_2006E", "OVMAPI_2006E the request body must be a Server object")
        current = self.server_json(server)
        ignored = ("generation", "serverRunState", "vmIds", "locked", "id")  # guess: state the client cannot set
        for key, value in body.items():
            if key in ("maintenanceMode", "name", "description") or key in ignored:
                continue
            if key not in current:
                raise ApiError(400, "OVMAPI_2006E", "OVMAPI_2006E Server has no attribute %r" % key)
            if value != current[key]:
                raise ApiError(400, "OVMAPI_2006E", "OVMAPI_2006E Server attribute %s cannot be changed here "
                               "(only name, description and maintenanceMode)" % key)
        if "id" in body and isinstance(body["id"], dict) and body["id"].get("value") not in (None, server.id):
            raise ApiError(400, "OVMAPI_2006E", "OVMAPI_2006E the body's id does not match the URI")
        maint = body.get("maintenanceMode", server.maintenance)
        if not isinstance(maint, bool):
            raise ApiError(400, "OVMAPI_2006E", "OVMAPI_2006E maintenanceMode must be true or false")
        name = body.get("name", server.name)
        description = body.get("description", server.description)
        if not isinstance(name, str) or not name or not isinstance(description, (str, type(None))):
            raise ApiError(400, "OVMAPI_2006E", "OVMAPI_2006E name must be a non-empty string")
        label = "Edit Server: %s" % server.name
        if maint != server.maintenance:
            label = "%s Server: %s %s maintenance mode" % ("Put" if maint else "Take", server.name,
                                                           "into" if maint else "out of")
        return self.submit(label, self.server_ref(server),
                           lambda job: self._edit_server(job, server, maint, name, description or ""),
                           server_holds=[server])

    def _edit_server(self, job, server, maint, name, description):
        moves = []
        if maint != server.maintenance and server.run_state != "STOPPED":
            self.reach(job, server, "maintenance_mode")
        if maint and not server.maintenance:
            with self.lock:
                load = {}
                for vm in [v for v in self._vm_list if v.server is server and v.state in ("RUNNING", "STARTING")]:
                    if vm.job is not None and not vm.job.done:
                        raise JobEnd("OVMAPI_2010E Object Vm: %s (%s) is locked by job: %s (%s)."
                                     % (vm.name, vm.id, vm.job.name, vm.job.id))
                    candidates = [s for s in server.pool.servers if s is not server and self.usable(s)
                                  and self.free_memory(s) - load.get(s.id, 0) >= vm.memory] if server.pool else []
                    if not candidates:
                        raise JobEnd("OVMAPI_4027E Server: %s cannot enter maintenance mode: no other running "
                                     "server of its pool can take virtual machine: %s (%d MB)"
                                     % (server.name, vm.name, vm.memory))
                    best = max(candidates, key=lambda s: self.free_memory(s) - load.get(s.id, 0))
                    load[best.id] = load.get(best.id, 0) + vm.memory
                    moves.append((vm, best))
                for vm, _best in moves:
                    vm.job = job
                    job.held.append(vm)
        for vm, best in moves:
            self.wait(job, self.args.job_seconds)
            with self.lock:
                vm.server = best
                vm.job = None
                vm.generation += 1
        self.wait(job, self.args.job_seconds)
        with self.lock:
            server.maintenance = maint
            server.name, server.description = name, description
            server.generation += 1

    def set_connection(self, server, answering):
        with self.lock:
            server.answering = answering
            if server.power == "on":
                server.run_state = "RUNNING" if answering else "UNKNOWN"
                if answering:  # the Manager rediscovers the server: what it runs now
                    for vm in self._vm_list:
                        if vm.server is server and (vm.job is None or vm.job.done):
                            vm.state = {"running": "RUNNING", "stopped": "STOPPED", "suspended": "SUSPENDED"}[vm.actual]
            server.generation += 1

    def set_power(self, server, power):
        with self.lock:
            if power == "off":
                server.power, server.answering, server.run_state = "off", False, "UNKNOWN"
                for vm in self._vm_list:
                    if vm.server is server:
                        vm.actual = "stopped"  # a power loss: no counter moves
                if server.death_timer:
                    server.death_timer.cancel()
                # guess: the pool's cluster heartbeat declares the server dead after --server-timeout
                server.death_timer = threading.Timer(self.args.server_timeout, self._declare_dead, (server,))
                server.death_timer.daemon = True
                server.death_timer.start()
            else:
                if server.death_timer:
                    server.death_timer.cancel()
                    server.death_timer = None
                server.power, server.answering, server.run_state = "on", True, "RUNNING"
                for vm in self._vm_list:
                    if vm.server is server and (vm.job is None or vm.job.done):
                        vm.state = {"running": "RUNNING", "stopped": "STOPPED", "suspended": "SUSPENDED"}[vm.actual]
            server.generation += 1

    def _declare_dead(self, server):
        with self.lock:
            if server.power != "off":
                return
            server.run_state = "STOPPED"
            for vm in self._vm_list:
                if vm.server is server:
                    vm.state = "STOPPED"
                    vm.generation += 1
            server.generation += 1
        log("server %s declared dead: STOPPED, its VMs STOPPED", server.name)

    def crash(self, vm):
        with self.lock:
            vm.actual = "stopped"
            server = vm.server

        def seen():
            with self.lock:
                if server is None or server.answering:
                    vm.state = "STOPPED"
                    vm.generation += 1
        timer = threading.Timer(self.args.job_seconds, seen)
        timer.daemon = True
        timer.start()

    # --- control state ---
    def state(self):
        with self.lock:
            return {
                "manager": {"runState": self.run_state, "id": self.id, "version": VERSION},
                "rest": self.rest,
                "pools": [{"id": p.id, "name": p.name} for p in self._pool_list],
                "servers": [{"id": s.id, "name": s.name, "pool": s.pool.name if s.pool else None,
                             "runState": s.run_state, "maintenanceMode": s.maintenance, "answering": s.answering,
                             "power": s.power, "memory": s.memory} for s in self._server_list],
                "vms": [{"id": v.id, "name": v.name, "server": v.server.name if v.server else None,
                         "serverId": v.server.id if v.server else None, "pool": v.pool.name if v.pool else None,
                         "runState": v.state, "actual": v.actual, "graceful": v.graceful,
                         "job": v.job.id if v.job is not None and not v.job.done else None,
                         **v.counters} for v in self._vm_list],
                "requests": json.loads(json.dumps(self.requests)),
            }

    def count(self, call, login=False, unauthorized=False):
        with self.lock:
            self.requests["total"] += 1
            self.requests["by_call"][call] = self.requests["by_call"].get(call, 0) + 1
            if login:
                self.requests["logins"] += 1
            if unauthorized:
                self.requests["unauthorized"] += 1


# --- the REST endpoint -----------------------------------------------------------------
def call_pattern(method, parts):
    if not parts:
        return "%s /" % method
    pattern = [parts[0]]
    if len(parts) >= 2:
        pattern.append("id" if parts[1] == "id" and len(parts) == 2 else "{id}")
    pattern.extend(parts[2:3])
    if len(parts) > 3:
        pattern.append("...")
    return "%s %s" % (method, "/".join(pattern))


class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "WebLogic Server 12.1.3"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection is closed after this
    mgr = None  # set on the class by serve()

    def log_message(self, fmt, *args):  # noqa: D401 - quiet: the counters tell what came
        pass

    def _send(self, status, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type + ("; charset=utf-8" if "json" in content_type or "html" in
                                                         content_type else ""))
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err, headers=()):
        self._send(err.status, {"errorCode": err.code, "message": err.message}, headers=headers)

    def _gate(self):
        """The REST state: `down` closes the connection, `silent` holds it unanswered."""
        mgr = self.mgr
        if mgr.rest == "up":
            return True
        while mgr.rest == "silent":
            time.sleep(0.1)
        self.close_connection = True
        return False

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def _auth(self):
        """(ok, by_basic, new_session)"""
        mgr = self.mgr
        header = self.headers.get("Authorization")
        cookies = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            if "=" in part:
                key, value = part.strip().split("=", 1)
                cookies[key] = value
        session = cookies.get("JSESSIONID")
        if header:
            scheme, _sp, token = header.partition(" ")
            if scheme.lower() != "basic":
                return False, False, None
            try:
                user, _c, password = base64.b64decode(token.strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False, False, None
            if not (secrets.compare_digest(user.encode(), mgr.args.username.encode())
                    and secrets.compare_digest(password.encode(), mgr.args.password.encode())):
                return False, False, None
            with mgr.lock:
                if session in mgr.sessions:
                    return True, True, None
                new = secrets.token_urlsafe(40)
                mgr.sessions.add(new)
            return True, True, new
        with mgr.lock:
            return session in mgr.sessions, False, None

    def _handle(self, method):
        if not self._gate():
            return
        mgr = self.mgr
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        if url.path != BASE and not url.path.startswith(BASE + "/"):
            mgr.count("%s (outside the REST base)" % method)
            self._send(404, b"<html><body><h2>Error 404--Not Found</h2></body></html>", "text/html")
            return
        parts = [urllib.parse.unquote(p) for p in url.path[len(BASE):].split("/") if p]
        call = call_pattern(method, parts)
        ok, by_basic, new_session = self._auth()
        if not ok:
            mgr.count(call, unauthorized=True)
            self._send(401, _HTML_401.encode(), "text/html",
                       headers=[("WWW-Authenticate", 'Basic realm="%s"' % REALM)])
            return
        mgr.count(call, login=by_basic)
        headers = []
        if new_session:
            headers.append(("Set-Cookie", "JSESSIONID=%s; Path=/ovm; Secure; HttpOnly" % new_session))
        accept = (self.headers.get("Accept") or "").lower()
        if accept and "xml" in accept and "json" not in accept and "*/*" not in accept:
            self._send(406, {"errorCode": "OVMAPI_406", "message": "this emulator answers JSON only"}, headers=headers)
            return
        params = dict(urllib.parse.parse_qsl(url.query))
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            self._error(ApiError(400, "OVMAPI_2006E", "OVMAPI_2006E the request body is not JSON"), headers)
            return
        try:
            status, result = self._route(method, parts, params, body)
        except ApiError as err:
            self._error(err, headers)
            return
        self._send(status, result, headers=headers)

    def _route(self, method, parts, params, body):
        mgr = self.mgr
        kinds = ("Manager", "ServerPool", "Server", "Vm", "Job")
        if not parts or parts[0] not in kinds:
            raise ApiError(404, "OVMAPI_2005E", "OVMAPI_2005E no resource %s in this emulator" % "/".join(parts))
        kind = parts[0]
        with mgr.lock:
            if method == "GET":
                if len(parts) == 1:
                    return 200, mgr.list_json(kind)
                if len(parts) == 2 and parts[1] == "id":
                    return 200, mgr.id_list(kind)
                if len(parts) == 2:
                    return 200, mgr.one_json(kind, parts[1])
            if method == "PUT" and len(parts) == 3 and kind == "Vm":
                vm = mgr.vms.get(parts[1])
                if vm is None:
                    raise mgr.missing("Vm", parts[1])
                if parts[2] not in ("start", "stop", "kill", "restart", "suspend", "resume", "migrate"):
                    raise ApiError(404, "OVMAPI_2005E", "OVMAPI_2005E no action %s on Vm" % parts[2])
                job = mgr.vm_action(vm, parts[2], params)
                return 200, mgr.job_json(job)
            if method == "PUT" and len(parts) == 3 and kind == "Job" and parts[2] == "abort":
                job = mgr.jobs.get(parts[1])
                if job is None:
                    raise mgr.missing("Job", parts[1])
                mgr.abort(job, mgr.args.username)  # guess: aborting an ended job returns it unchanged
                return 200, mgr.job_json(job)
            if method == "PUT" and len(parts) == 2 and kind == "Server":
                server = mgr.servers.get(parts[1])
                if server is None:
                    raise mgr.missing("Server", parts[1])
                job = mgr.edit_server(server, body)
                return 200, mgr.job_json(job)
        raise ApiError(405 if len(parts) <= 3 else 404, "OVMAPI_2005E",
                       "OVMAPI_2005E %s %s is not supported by this emulator" % (method, "/".join(parts)))


class TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, context, mgr):
        self.context = context
        self.mgr = mgr
        self.open_sockets = set()
        super().__init__(address, RestHandler)

    def finish_request(self, request, client_address):
        """In the request's own thread: the TLS handshake (so a client that never
        handshakes holds only its own thread), then HTTP."""
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        tls.settimeout(RestHandler.timeout)
        self.open_sockets.add(tls)
        try:
            RestHandler(tls, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.open_sockets.discard(tls)
            try:
                tls.close()
            except OSError:
                pass

    def shutdown_request(self, request):
        try:
            request.close()
        except OSError:
            pass


class Endpoint:
    """The REST port: up (HTTPS), down (closed: refused), silent (accepts, never answers)."""

    def __init__(self, mgr, host, port, context):
        self.mgr, self.host, self.port, self.context = mgr, host, port, context
        self.httpd = None
        self.silent_sock = None
        self.held = []
        self.lock = threading.Lock()
        self._up()

    def _up(self):
        # the silent listener's accept thread may still hold the port for one select() round
        # (0.2 s) after it was closed: bind again until it lets go
        deadline = time.monotonic() + 5
        while True:
            try:
                self.httpd = TlsServer((self.host, self.port), self.context, self.mgr)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def _down(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            for sock in list(self.httpd.open_sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.httpd = None
        if self.silent_sock:
            self.silent_sock.close()
            self.silent_sock = None
        for conn in self.held:
            try:
                conn.close()
            except OSError:
                pass
        self.held = []

    def _silent(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.silent_sock = sock

        def accept():
            while self.silent_sock is sock:
                try:
                    ready, _w, _x = select.select([sock], [], [], 0.2)
                    if ready:
                        conn, _addr = sock.accept()
                        self.held.append(conn)  # held open, never read, never answered
                except (OSError, ValueError):
                    return
        threading.Thread(target=accept, daemon=True).start()

    def set(self, state):
        with self.lock:
            if state == self.mgr.rest:
                return
            previous = self.mgr.rest
            self.mgr.rest = state  # connections held open by handlers see it at once
            if state == "silent" and previous == "up":
                # open keep-alive connections freeze too: their handlers wait in _gate
                if self.httpd:
                    self.httpd.shutdown()
                    self.httpd.server_close()
                    self.httpd = None
                self._silent()
            else:
                self._down()
                if state == "silent":
                    self._silent()
                elif state == "up":
                    self._up()
        log("REST endpoint %s", state)


# --- the control API -----------------------------------------------------------------------
class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mgr = None
    endpoint = None

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if urllib.parse.urlsplit(self.path).path == "/state":
            self._send(200, self.mgr.state())
        else:
            self._send(404, {"error": "no %s" % self.path})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": "the body is not JSON"})
            return
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.split("/") if p]
        try:
            self._send(200, self._post(parts, body if isinstance(body, dict) else {}))
        except LookupError as exc:
            self._send(404, {"error": str(exc)})
        except ValueError as exc:
            self._send(400, {"error": str(exc)})

    def _post(self, parts, body):
        mgr = self.mgr
        if parts == ["requests", "reset"]:
            with mgr.lock:
                mgr.requests = {"total": 0, "logins": 0, "unauthorized": 0, "by_call": {}}
            return {"ok": True}
        if parts == ["manager"]:
            state = body.get("runState")
            if state not in ("STARTING", "RUNNING"):
                raise ValueError("runState: STARTING or RUNNING")
            mgr.set_run_state(state)
            return {"runState": state}
        if parts == ["rest"]:
            state = body.get("state")
            if state not in ("up", "down", "silent"):
                raise ValueError("state: up, down or silent")
            self.endpoint.set(state)
            return {"rest": state}
        if len(parts) == 3 and parts[0] == "server":
            server = mgr.servers.get(parts[1]) or next((s for s in mgr.servers.values() if s.name == parts[1]), None)
            if server is None:
                raise LookupError("no server %r" % parts[1])
            state = body.get("state")
            if parts[2] == "connection" and state in ("answering", "silent"):
                mgr.set_connection(server, state == "answering")
                return {"server": server.name, "answering": server.answering}
            if parts[2] == "power" and state in ("on", "off"):
                mgr.set_power(server, state)
                return {"server": server.name, "power": server.power}
            raise ValueError("POST /server/ID/connection {state: answering|silent} or /power {state: on|off}")
        if len(parts) == 3 and parts[0] == "vm":
            vm = mgr.vms.get(parts[1])
            if vm is None:
                raise LookupError("no VM with id %r" % parts[1])
            if parts[2] == "ignore_stop":
                with mgr.lock:
                    vm.graceful = not bool(body.get("on", True))
                return {"vm": vm.id, "graceful": vm.graceful}
            if parts[2] == "crash":
                mgr.crash(vm)
                return {"vm": vm.id, "actual": vm.actual}
            if parts[2] == "fail_next":
                action = body.get("action")
                if action not in ("start", "stop", "kill", "restart", "suspend", "resume", "migrate"):
                    raise ValueError("action: start, stop, kill, restart, suspend, resume or migrate")
                with mgr.lock:
                    vm.fail_next[action] = str(body.get("message") or "OVMAPI_9999E %s failed (injected)" % action)
                return {"vm": vm.id, "fail_next": vm.fail_next}
        raise LookupError("no control %s" % "/".join(parts))


# --- main -------------------------------------------------------------------------------------
def _addr(text):
    host, _c, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--lab", required=True, help="the estate (JSON: clusters, hosts)")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--control", default="127.0.0.1:0")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--certdir", required=True)
    parser.add_argument("--job-seconds", type=float, default=0.5)
    parser.add_argument("--stop-seconds", type=float, default=1.0)
    parser.add_argument("--stop-timeout", type=float, default=120.0)
    parser.add_argument("--server-timeout", type=float, default=5.0)
    parser.add_argument("--starting-seconds", type=float, default=0.0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)
    try:
        with open(args.lab, encoding="utf-8") as handle:
            estate = json.load(handle)
        mgr = Manager(args, estate)
    except (OSError, ValueError) as exc:
        log("cannot hold the estate %s: %s", args.lab, exc)
        return 1
    ca_pem, cert_pem, key_pem = make_certs(args.certdir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_pem, key_pem)
    host, port = _addr(args.listen)
    endpoint = Endpoint(mgr, host, port, context)
    mgr.base_url = "https://%s:%d%s" % (host, endpoint.port, BASE)
    RestHandler.mgr = mgr
    ControlHandler.mgr, ControlHandler.endpoint = mgr, endpoint
    chost, cport = _addr(args.control)
    control = ThreadingHTTPServer((chost, cport), ControlHandler)
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_a: stop.set())
    if args.exit_on_stdin_eof:
        def watch():
            while sys.stdin.buffer.read(4096):
                pass
            stop.set()
        threading.Thread(target=watch, daemon=True).start()
    sys.stdout.write(json.dumps({"url": mgr.base_url, "control": "http://%s:%d" % (chost, control.server_address[1]),
                                 "ca": ca_pem}) + "\n")
    sys.stdout.flush()
    log("Oracle VM Manager %s emulator on %s (control %s:%d): %d pools, %d servers, %d VMs", VERSION, mgr.base_url,
        chost, control.server_address[1], len(mgr.pools), len(mgr.servers), len(mgr.vms))
    stop.wait()
    log("stopping")
    control.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
