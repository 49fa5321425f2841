# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab: a mixed estate from one file (the contract is docs/LAB.md).

    scripts/lab up   LAB.yml DIR     start and shape every peer; write DIR/; exit when all answer
    scripts/lab down DIR             stop every peer started by `up DIR` (by pid)
    scripts/lab state DIR            the truth as JSON, read from the peers themselves
    scripts/lab fault DIR FAULT NAME inject a fault; exit 2 with a reason where a peer cannot

Each platform brings its part as `lab/<platform>_lab.py`, a module with `PART`:
    name, plugin                          the platform and its inventory plugin
    check(ep)                             ValueError for what the platform cannot represent
    up(ep, workdir) -> rec                start and shape its peer; rec: pids, listen, control,
                                          source (inventory options), credentials (what the peer accepts)
    state(ep, rec) -> {machines, hosts}   read through the peer's own API, never the collection
    fault(ep, rec, fault, name) -> str    NotImplementedError(reason) where the peer cannot
    faults (optional)                     faults of its own beyond FAULTS ("endpoint-*" name an endpoint)
    down(ep, rec)                         stop its own processes, only those
This file knows no platform: it reads the lab file, writes the inventory sources
with the credentials as the lab file says (inline, env, vault), and merges states.
"""

import glob
import importlib
import json
import os
import secrets
import shlex
import signal
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))

import processes  # noqa: E402  pylint: disable=wrong-import-position

FAULTS = ("host-isolate", "host-down", "host-up", "vm-hang", "vm-unhang", "vm-crash", "vm-ignore-graceful",
          "endpoint-down", "endpoint-up", "endpoint-silent")
ENDPOINT_FAULTS = ("endpoint-down", "endpoint-up", "endpoint-silent")
HOST_FAULTS = ("host-isolate", "host-down", "host-up")
ENDPOINT_KEYS = {"name", "platform", "credentials", "username", "password", "driver", "clusters", "hosts"}
HOST_KEYS = {"name", "state", "vms", "kind", "of", "power", "graceful"}
VM_KEYS = {"name", "power", "heartbeat", "graceful", "memory_mb", "cpus", "priority", "folder", "uuid"}
CHOICES = {"state": ("connected", "maintenance", "disconnected", "not_responding"),
           "power": ("running", "stopped", "suspended"), "heartbeat": ("ok", "lost", "none"),
           "credentials": ("inline", "env", "vault")}


class LabError(Exception):
    """A lab file or a command the lab refuses: exit 1 with the message."""


def parts():
    """Every platform part of the lab, by platform name."""
    found = {}
    for path in sorted(glob.glob(os.path.join(HERE, "*_lab.py"))):
        module = importlib.import_module(os.path.basename(path)[:-3])
        found[module.PART.name] = module.PART
    return found


def part_of(ep):
    known = parts()
    if ep.get("platform") not in known:
        raise LabError("endpoint %s: platform %r is not in the lab; known: %s"
                       % (ep.get("name"), ep.get("platform"), ", ".join(known)))
    return known[ep["platform"]]


def _check_keys(where, item, allowed):
    if not isinstance(item, dict):
        raise LabError("%s: expected a mapping, got %r" % (where, item))
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise LabError("%s: unknown field %s (known: %s)" % (where, ", ".join(unknown), ", ".join(sorted(allowed))))
    for key, choices in CHOICES.items():
        if key in item and item[key] not in choices:
            raise LabError("%s: %s must be one of %s, not %r" % (where, key, " | ".join(choices), item[key]))
    if "name" in item and (not isinstance(item["name"], str) or not item["name"]):
        raise LabError("%s: name must be a non-empty string" % where)


def hosts_of(ep):
    """(cluster or None, host) for every host of an endpoint."""
    for cluster in ep.get("clusters") or []:
        for host in cluster.get("hosts") or []:
            yield cluster.get("name"), host
    for host in ep.get("hosts") or []:
        yield None, host


def load(path):
    """The lab file, checked: the schema here, what a platform can represent in its part."""
    try:
        with open(path, encoding="utf-8") as handle:
            lab = yaml.safe_load(handle)
    except OSError as exc:
        raise LabError("cannot read the lab file %s: %s" % (path, exc.strerror)) from None
    except yaml.YAMLError as exc:
        raise LabError("the lab file %s is not valid YAML: %s" % (path, exc)) from None
    if not isinstance(lab, dict) or not isinstance(lab.get("endpoints"), list) or not lab["endpoints"]:
        raise LabError("%s: expected `endpoints:`, a list of endpoints (see docs/LAB.md)" % path)
    seen = set()
    for index, ep in enumerate(lab["endpoints"]):
        where = "endpoints[%d]" % index
        _check_keys(where, ep, ENDPOINT_KEYS)
        name = ep.get("name")
        if not name or not all(c.isalnum() or c in "-_" for c in name) or not name.isascii():
            raise LabError("%s: name %r must be letters, digits, - and _ (it names the inventory source file)"
                           % (where, name))
        if name in seen:
            raise LabError("%s: endpoint name %s is used twice" % (where, name))
        seen.add(name)
        where = "endpoint %s" % name
        for cluster in ep.get("clusters") or []:
            _check_keys("%s cluster" % where, cluster, {"name", "hosts"})
        for cluster, host in hosts_of(ep):
            _check_keys("%s host %s" % (where, host.get("name") if isinstance(host, dict) else host), host, HOST_KEYS)
            for vm in host.get("vms") or []:
                _check_keys("%s VM %s" % (where, vm.get("name") if isinstance(vm, dict) else vm), vm, VM_KEYS)
        try:
            part_of(ep).check(ep)
        except ValueError as exc:
            raise LabError(str(exc)) from None
    return lab


# --- the lab directory ------------------------------------------------------
def _state_path(labdir):
    return os.path.join(labdir, "lab.json")


def read_lab(labdir):
    try:
        with open(_state_path(labdir), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise LabError("%s holds no lab: run `scripts/lab up LAB.yml %s` first" % (labdir, labdir)) from None


def _write_lab(labdir, record):
    path = _state_path(labdir)
    with open(path + ".new", "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1, ensure_ascii=False)
    os.chmod(path + ".new", 0o600)
    os.replace(path + ".new", path)


def _registry():
    from ansible_collections.virtops.unified.plugins.module_utils import registry  # pylint: disable=import-outside-toplevel
    return registry


def _vault_text(password_file, value):
    """`value` encrypted for the lab's vault password, as ansible-vault encrypt_string does."""
    from ansible.parsing.vault import VaultLib, VaultSecret  # pylint: disable=import-outside-toplevel
    with open(password_file, "rb") as handle:
        secret = VaultSecret(handle.read().strip())
    return VaultLib([("default", secret)]).encrypt(value).decode()


class _Vaulted(str):
    """A string written as a !vault scalar."""


def _vault_representer(dumper, data):
    return dumper.represent_scalar("!vault", str(data), style="|")


yaml.SafeDumper.add_representer(_Vaulted, _vault_representer)


def write_source(labdir, ep, part, rec, env_lines, env_owner):
    """DIR/inventory/<endpoint>.<platform>.yml, credentials as the lab file says."""
    platform = _registry().get(part.name)
    source = {"plugin": part.plugin}
    source.update(rec.get("source") or {})
    mode = ep.get("credentials", "inline")
    for key, value in (rec.get("credentials") or {}).items():
        option = platform.option(key)
        if option is None:
            raise LabError("endpoint %s: the peer's credential %s is no option of %s" % (ep["name"], key, part.name))
        if mode == "inline":
            source[key] = value
        elif mode == "vault" and option.secret:
            source[key] = _Vaulted(_vault_text(os.path.join(labdir, "vault-password"), value))
        elif mode == "vault":
            source[key] = value
        else:  # env: the platform's own environment variables, which hold one endpoint's
            if not option.env:
                raise LabError("endpoint %s: %s has no environment variable; use credentials: inline or vault"
                               % (ep["name"], key))
            owner = env_owner.setdefault(option.env[0], ep["name"])
            if owner != ep["name"]:
                raise LabError("endpoints %s and %s both take %s from the environment, which holds one value: "
                               "give one of them credentials: inline or vault" % (owner, ep["name"], option.env[0]))
            env_lines.append("export %s=%s" % (option.env[0], shlex.quote(str(value))))
    path = os.path.join(labdir, "inventory", "%s.%s.yml" % (ep["name"], part.name))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# written by scripts/lab up for endpoint %s (%s)\n" % (ep["name"], part.name))
        yaml.safe_dump(source, handle, allow_unicode=True, sort_keys=False)
    os.chmod(path, 0o600)
    return path


def up(labfile, labdir):
    lab = load(labfile)
    labdir = os.path.abspath(labdir)
    if os.path.exists(_state_path(labdir)):
        old = read_lab(labdir)
        live = [pid for ep in old["endpoints"] for pid in ep["rec"].get("pids", []) if not processes.gone(pid)]
        if live:
            raise LabError("a lab is already up in %s (pids %s): `scripts/lab down %s` first"
                           % (labdir, ", ".join(map(str, live)), labdir))
    os.makedirs(os.path.join(labdir, "inventory"), exist_ok=True)
    for stale in glob.glob(os.path.join(labdir, "inventory", "*.yml")):
        os.unlink(stale)
    if any(ep.get("credentials") == "vault" for ep in lab["endpoints"]):
        with open(os.path.join(labdir, "vault-password"), "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
        os.chmod(os.path.join(labdir, "vault-password"), 0o600)
    record = {"lab": os.path.abspath(labfile), "dir": labdir, "endpoints": []}
    env_lines = ["export VIRTOPS_AUDIT_LOG=%s" % shlex.quote(os.path.join(labdir, "audit.jsonl")),
                 "export VIRTOPS_LOCK_DIR=%s" % shlex.quote(os.path.join(labdir, "locks"))]
    if os.path.exists(os.path.join(labdir, "vault-password")):
        env_lines.append("export ANSIBLE_VAULT_PASSWORD_FILE=%s" % shlex.quote(os.path.join(labdir, "vault-password")))
    env_owner = {}
    try:
        for ep in lab["endpoints"]:
            part = part_of(ep)
            workdir = os.path.join(labdir, "peers", ep["name"])
            os.makedirs(workdir, exist_ok=True)
            print("lab: starting %s (%s)" % (ep["name"], part.name), file=sys.stderr, flush=True)
            rec = part.up(ep, workdir)
            record["endpoints"].append({"name": ep["name"], "platform": part.name, "spec": ep, "rec": rec})
            _write_lab(labdir, record)  # what is started is on record at once, for `down`
            write_source(labdir, ep, part, rec, env_lines, env_owner)
    except Exception as exc:  # a peer that cannot start: stop what this run started
        _down(record)
        if isinstance(exc, LabError):
            raise
        raise LabError("endpoint %s did not start: %s" % (ep["name"], exc)) from exc
    with open(os.path.join(labdir, "lab.env"), "w", encoding="utf-8") as handle:
        handle.write("# source this file: the environment the lab's inventory needs\n")
        handle.write("\n".join(env_lines) + "\n")
    os.chmod(os.path.join(labdir, "lab.env"), 0o600)
    for ep in record["endpoints"]:
        rec = ep["rec"]
        print("lab: %-10s %-8s %s%s" % (ep["name"], ep["platform"], rec.get("listen") or "files",
                                        "  control %s" % rec["control"] if rec.get("control") else ""))
    print("lab: up. ansible-inventory -i %s --graph ; source %s"
          % (os.path.join(labdir, "inventory"), os.path.join(labdir, "lab.env")))


def _down(record):
    for ep in reversed(record["endpoints"]):
        try:
            part_of(ep["spec"]).down(ep["spec"], ep["rec"])
        except Exception as exc:  # pylint: disable=broad-except
            print("lab: stopping %s: %s" % (ep["name"], exc), file=sys.stderr)
        ep["rec"]["pids"] = []


def down(labdir):
    record = read_lab(labdir)
    _down(record)
    _write_lab(labdir, record)
    print("lab: down (%s)" % ", ".join(ep["name"] for ep in record["endpoints"]))


def state(labdir):
    record = read_lab(labdir)
    out = {"machines": [], "hosts": []}
    for ep in record["endpoints"]:
        found = part_of(ep["spec"]).state(ep["spec"], ep["rec"])
        out["machines"].extend(found.get("machines", []))
        out["hosts"].extend(found.get("hosts", []))
    return out


def locate(record, fault, name):
    """The endpoint a fault's NAME is in: `endpoint/name`, else the one endpoint having it."""
    endpoints = {ep["name"]: ep for ep in record["endpoints"]}
    if fault in ENDPOINT_FAULTS or fault.startswith("endpoint-"):
        if name not in endpoints:
            raise LabError("no endpoint %r in this lab; endpoints: %s" % (name, ", ".join(endpoints)))
        return endpoints[name], name
    head, _slash, tail = name.partition("/")
    if tail and head in endpoints:
        return endpoints[head], tail
    host_fault = fault in HOST_FAULTS
    having = []
    for ep in record["endpoints"]:
        for _cluster, host in hosts_of(ep["spec"]):
            names = [host["name"]] if host_fault else [vm["name"] for vm in host.get("vms") or []]
            if name in names or (not host_fault and "@" in name and name.rsplit("@", 1)[0] in names):
                having.append(ep)
                break
    if not having:
        raise LabError("no %s named %r in this lab" % ("host" if host_fault else "VM", name))
    if len(having) > 1:
        raise LabError("%r is in %s: say which, as %s" % (name, " and ".join(e["name"] for e in having),
                                                          " or ".join("%s/%s" % (e["name"], name) for e in having)))
    return having[0], name


def _own_faults():
    """Faults a platform's part offers beyond the common ones (a Manager that is starting up)."""
    return tuple(sorted({f for part in parts().values() for f in getattr(part, "faults", ())} - set(FAULTS)))


def fault(labdir, fault_name, name):
    known = FAULTS + _own_faults()
    if fault_name not in known:
        raise LabError("unknown fault %r; faults: %s" % (fault_name, ", ".join(known)))
    record = read_lab(labdir)
    ep, name = locate(record, fault_name, name)
    return part_of(ep["spec"]).fault(ep["spec"], ep["rec"], fault_name, name)


USAGE = __doc__.split("\n\n")[1]


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "up":
            up(argv[1], argv[2])
        elif len(argv) == 2 and argv[0] == "down":
            down(argv[1])
        elif len(argv) == 2 and argv[0] == "state":
            print(json.dumps(state(argv[1]), indent=1, ensure_ascii=False))
        elif len(argv) == 4 and argv[0] == "fault":
            print("lab: %s" % fault(argv[1], argv[2], argv[3]))
        else:
            print("usage:\n" + USAGE, file=sys.stderr)
            return 64
    except LabError as exc:
        print("lab: %s" % exc, file=sys.stderr)
        return 1
    except NotImplementedError as exc:
        print("lab: cannot: %s" % exc, file=sys.stderr)
        return 2
    except ValueError as exc:
        print("lab: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main(sys.argv[1:]))
