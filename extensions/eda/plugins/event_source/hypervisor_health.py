# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""hypervisor_health: an ansible-rulebook event source that watches hypervisors.

It watches every endpoint of an inventory (a vCenter, a libvirt hypervisor, ...,
of every platform the collection supports) in one activation. Each endpoint is
read in bulk (the collection's driver ``list_inventory()``: one pass per
endpoint per interval, in a thread of its own) and polled on its own clock: an
endpoint that does not answer delays no other. Each change gives one event. VM
monitoring follows vSphere HA's "VM monitoring": a VM whose guest heartbeat has
been lost for ``failure_interval`` seconds is reported hung, but never within
``min_uptime`` seconds after it was seen powering on.

Arguments
---------
inventory        the estate (required): the path of an inventory source file, or
                 of a directory of them, as given to ``ansible-inventory -i``
                 (absolute, or relative to ansible-rulebook's working directory).
                 In a directory (and its subdirectories, but group_vars and
                 host_vars), every ``*.yml`` / ``*.yaml`` file whose ``plugin:``
                 is ``virtops.unified.<platform>`` is read, for every platform
                 the collection registers; every other file is skipped, with a
                 log line. Each source's endpoints are its connection options
                 as the inventory plugin reads them (a vmware source: one
                 vCenter; a libvirt source: each entry of ``hypervisors``), then
                 the platform's environment fallbacks (VMWARE_USER,
                 VMWARE_PASSWORD, LIBVIRT_DEFAULT_URI, ...) and defaults. The
                 files are read with Ansible's loader: ``!vault`` values decrypt
                 with the vault password file of ANSIBLE_VAULT_PASSWORD_FILE (or
                 ansible.cfg's vault_password_file, or ANSIBLE_VAULT_IDENTITY_LIST
                 entries ``id@file``), so the Python that runs ansible-rulebook
                 needs ansible-core, as a decision environment has. A source's
                 own ``connect_timeout`` applies to its endpoints. An endpoint
                 declared by two sources is watched once. A source is named by
                 its file name (its path below the directory).
platform + connection options
                 instead of inventory, one endpoint given inline: ``platform``
                 (a registered platform) and that platform's connection options
                 (and its list key, as in its inventory source), e.g. platform:
                 vmware, hostname: vc1, username: ...; named ``arguments``.
interval         seconds between polls of an endpoint (15)
failure_interval seconds a heartbeat must stay lost before vm_hung (60)
min_uptime       seconds after a VM was seen powering on during which it is
                 never reported hung (240)
max_resets       at most this many vm_hung / vm_down events per VM within
                 reset_window (3); the next time the VM needs one,
                 vm_reset_limit_reached is emitted instead, once, and the
                 rulebooks stop acting on that VM. Restarts recorded in the
                 audit log count too, so a restarted source remembers them.
reset_window     seconds (86400)
audit_log        the virtops audit log read for virtops' own actions
                 (VIRTOPS_AUDIT_LOG, else ~/.ansible/virtops/audit.jsonl)
lock_dir         the runbooks' per-VM locks (VIRTOPS_LOCK_DIR, else
                 ~/.ansible/virtops/locks): a VM locked by a runbook is being
                 acted on, so its power changes are expected
vms              optional list of VM names (platform name or inventory name)
                 or uuids: only these VMs are reported on
repeat_after     seconds; re-emit vm_hung while the heartbeat stays lost
                 (0, the default: once per episode; a new episode starts when
                 the heartbeat comes back or the VM is seen powering on)
agent_ping       on platforms whose bulk read does not carry the guest
                 heartbeat (the driver's ``heartbeat_in_bulk`` is false:
                 libvirt, whose QEMU guest agent answers one domain at a time),
                 ask the guest agent of each running VM. A ping is one call per
                 running VM (libvirt: 2 s, then 5 s each when the agent is
                 silent; the pings of one poll run in parallel, and a VM whose
                 pings do not end within connect_timeout reads "unknown").
                 Default: true when ``vms`` is given (only those VMs are
                 pinged), false otherwise. true without ``vms`` pings every
                 running VM.
connect_timeout  seconds (30): the deadline of each endpoint's bulk read,
                 connect included (plus 1 s, so that the driver's own timeout,
                 which bounds each call, reports first in its own words).
                 Past it the endpoint is reported
                 unreachable and the read it is still in is left to end on its
                 own; no new read of that endpoint starts before it has.

Events
------
{"virtops": {"type": ..., "virt_name", "virt_uuid", "virt_host",
             "virt_platform", "virt_power_state", "virt_heartbeat",
             "virt_endpoint": {"platform", <the platform's endpoint options>},
             "virt_endpoint_id", "virt_inventory_source", ...},
 "meta": {"hosts": "<inventory name>"}}

types: host_connection_lost, host_connection_back, vm_power_changed,
vm_heartbeat_lost, vm_hung, vm_down, vm_reset_limit_reached,
endpoint_unreachable, endpoint_back.

virt_endpoint_id names the endpoint as the registry does (a vCenter's host
name, a libvirt hypervisor's name or URI); virt_inventory_source is the name
of the source that declared it. No secret is ever in an event or a log line:
only the options a platform declares as endpoint data are shown, a password in
a URI masked.

Platform text: virt_name, inventory_name, meta.hosts, virt_cluster, vms,
reason, error and previous_error hold what the platform says (a VM name is
whatever its owner typed, template syntax included); virt_host, virt_uuid,
virt_endpoint, virt_endpoint_id and virt_inventory_source come from the
platform or the inventory too. Never put them into a string that ansible-core
templates (extra_vars of run_playbook / run_job_template): the shipped
rulebooks pass virt_uuid and virt_host only once the rule's condition has
checked them to be plain identifiers. type, cause, virt_power_state,
virt_power_state_raw, virt_heartbeat and virt_connection_state are words of
the drivers' own fixed vocabulary.

vm_down: a VM that was running is still not running one poll later, no
virtops runbook or module did it (no lock held, nothing in the audit log since
it was last seen running), and no one shut it down on purpose as far as the
platform tells: ``cause`` is the driver's word for why (libvirt: destroyed,
crashed, failed, daemon; a guest shutdown, save or migration is never
vm_down) or ``unknown`` where the platform does not say (vSphere). Stop a
watched VM on purpose through virtops.unified.vm_power or a guest shutdown: a
``virsh destroy`` looks exactly like a fault.
The first poll of an endpoint only records state (no event for the initial
state), except that an endpoint unreachable at its first poll is reported, and
a heartbeat already lost at the first poll starts its failure clock then.

Example
-------
- name: watch the estate
  hosts: all
  sources:
    - virtops.unified.hypervisor_health:
        inventory: /etc/virtops/inventory    # prod.vmware.yml, kvm.libvirt.yml, ...
        interval: 15
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import datetime
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

DOCUMENTATION = __doc__

LOG = logging.getLogger("virtops.hypervisor_health")

TUNING = {"interval", "failure_interval", "min_uptime", "vms", "repeat_after", "agent_ping", "connect_timeout",
          "max_resets", "reset_window", "audit_log", "lock_dir"}
COLLECTION = "virtops.unified"
INLINE_SOURCE = "arguments"  # the name of the source given as platform + options
LOST_STATES = ("disconnected", "not_responding", "unreachable")
UP_STATES = ("connected", "maintenance")
_WORD = re.compile(r"[a-z_]{1,32}")
GRACE = 1.0  # seconds past connect_timeout before a bulk read is given up on
# what ansible-inventory skips in a directory of sources
_SKIP_DIRS = ("group_vars", "host_vars")


def _import_collection():
    """The collection's module_utils (model, registry); ANSIBLE_COLLECTIONS_PATH is
    honoured when the collection is not already importable (ansible-rulebook does not
    put collections on sys.path for source plugins)."""
    try:
        from ansible_collections.virtops.unified.plugins.module_utils import registry  # noqa: F401
    except ImportError:
        paths = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS") or ""
        paths = [p for p in paths.split(os.pathsep) if p]
        # this file inside an installed collection: <path>/ansible_collections/virtops/unified/extensions/...
        here = os.path.abspath(__file__) if "__file__" in globals() else ""
        if "%sansible_collections%s" % (os.sep, os.sep) in here:
            paths.append(here.rsplit("%sansible_collections%s" % (os.sep, os.sep), 1)[0])
        paths += [os.path.expanduser("~/.ansible/collections"), "/usr/share/ansible/collections"]
        for path in paths:
            path = os.path.expanduser(path)
            if os.path.isdir(os.path.join(path, "ansible_collections", "virtops", "unified")) and path not in sys.path:
                sys.path.append(path)
        # a namespace package imported before the path was added stays stale
        for mod in [m for m in sys.modules if m == "ansible_collections" or m.startswith("ansible_collections.")]:
            if sys.modules[mod] is None:
                del sys.modules[mod]
        try:
            from ansible_collections.virtops.unified.plugins.module_utils import registry  # noqa: F401,F811
        except ImportError as exc:
            raise ValueError(
                "hypervisor_health: cannot import the virtops.unified collection (%s); install it, "
                "or set ANSIBLE_COLLECTIONS_PATH (or PYTHONPATH) to the directory that holds "
                "ansible_collections/virtops/unified" % exc) from None
    from ansible_collections.virtops.unified.plugins.module_utils import model, registry
    return model, registry


def _bool(value, what):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y", "t"):
        return True
    if text in ("0", "false", "no", "off", "n", "f"):
        return False
    raise ValueError("hypervisor_health: %s must be a boolean, got %r" % (what, value))


def _number(args, key, default, minimum=0):
    value = args.get(key, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError("hypervisor_health: %s must be a number of seconds, got %r" % (key, value)) from None
    if value < minimum:
        raise ValueError("hypervisor_health: %s must be >= %s, got %s" % (key, minimum, value))
    return value


# --- the estate: inventory sources -> endpoints -----------------------------------
class Source:
    """One inventory source: its name, platform (a registry.Platform) and options as read."""

    def __init__(self, name, platform, config, path=None):
        self.name = name
        self.platform = platform
        self.config = config
        self.path = path


def _vault_loader():
    """Ansible's DataLoader, with the vault secrets ansible-core itself would use:
    the password file of ANSIBLE_VAULT_PASSWORD_FILE / ansible.cfg, and the files of
    the vault identity list (id@file). Nothing prompts."""
    try:
        from ansible import constants as C
        from ansible.parsing.dataloader import DataLoader
        from ansible.parsing.vault import VaultSecretsContext, get_file_vault_secret
    except ImportError as exc:
        raise ValueError(
            "hypervisor_health: reading inventory sources needs ansible-core in the Python that runs "
            "ansible-rulebook (a decision environment has it; pip install ansible-core): %s" % exc) from None
    loader = DataLoader()
    setting = C.config.get_config_value  # read now: the environment, then ansible.cfg
    default_id = setting("DEFAULT_VAULT_IDENTITY")
    wanted = []
    for slug in setting("DEFAULT_VAULT_IDENTITY_LIST") or []:
        vault_id, _sep, path = str(slug).rpartition("@")
        if path and not path.startswith("prompt"):
            wanted.append((vault_id or default_id, path))
    if setting("DEFAULT_VAULT_PASSWORD_FILE"):
        wanted.append((default_id, setting("DEFAULT_VAULT_PASSWORD_FILE")))
    secrets = []
    for vault_id, path in wanted:
        path = os.path.expanduser(str(path))
        try:
            secret = get_file_vault_secret(filename=path, vault_id=vault_id, loader=loader)
            secret.load()
        except Exception as exc:  # pylint: disable=broad-except
            raise ValueError("hypervisor_health: cannot read the vault password file %s: %s"
                             % (path, type(exc).__name__)) from None
        secrets.append((vault_id, secret))
    if secrets:
        loader.set_vault_secrets(secrets)  # a file vaulted as a whole
        # values tagged !vault decrypt through ansible-core's process-wide vault context
        context = VaultSecretsContext.current(optional=True)
        if context is None:
            VaultSecretsContext.initialize(VaultSecretsContext(list(secrets)))
        else:
            context.secrets.extend(s for s in secrets if s not in context.secrets)
    return loader


def _source_files(path):
    """The YAML files of an inventory path, in the order ansible-inventory reads them."""
    if os.path.isfile(path):
        return [path]
    found = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if entry.startswith("."):
            continue
        if os.path.isdir(full):
            if entry not in _SKIP_DIRS:
                found.extend(_source_files(full))
        else:
            found.append(full)
    return found


def read_inventory(path, platforms):
    """The virtops sources of an inventory file or directory (a list of Source)."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.exists(path):
        raise ValueError("hypervisor_health: inventory %s does not exist" % path)
    loader = _vault_loader()
    base = path if os.path.isdir(path) else os.path.dirname(path)
    prefix = COLLECTION + "."
    sources = []
    for file_path in _source_files(path):
        name = os.path.relpath(file_path, base)
        if not file_path.endswith((".yml", ".yaml")):
            LOG.info("hypervisor_health: %s skipped: not a *.yml / *.yaml file", name)
            continue
        try:
            config = loader.load_from_file(file_path)
        except Exception as exc:  # pylint: disable=broad-except
            # the loader's message quotes the file: it could show a secret written in it
            raise ValueError("hypervisor_health: inventory source %s cannot be read (%s); "
                             "ansible-inventory -i %s --list says why" % (name, type(exc).__name__, file_path)) from None
        plugin = config.get("plugin") if isinstance(config, dict) else None
        plugin = str(plugin) if plugin is not None else None
        if not plugin or not plugin.startswith(prefix):
            LOG.info("hypervisor_health: %s skipped: not a %s inventory source (plugin: %s)", name, COLLECTION,
                     plugin or "none")
            continue
        platform = platforms.get(plugin[len(prefix):])
        if platform is None:
            LOG.warning("hypervisor_health: %s skipped: %s is not a platform of this collection (known: %s)",
                        name, plugin, ", ".join(sorted(platforms)))
            continue
        endings = tuple("%s.%s" % (platform.name, ext) for ext in ("yml", "yaml"))
        if not file_path.endswith(endings):
            LOG.warning("hypervisor_health: %s skipped: the %s inventory plugin reads only files named *%s, "
                        "so ansible-inventory does not list it either", name, plugin, " or *".join(endings))
            continue
        sources.append(Source(name, platform, dict(config), file_path))
    return sources


def _option_value(opt, value, where):
    """An option's value as read from a source (a !vault value decrypts here) or the arguments."""
    try:
        if opt.type == "bool":
            return _bool(value if isinstance(value, bool) else "%s" % (value,), opt.name)
        if opt.type == "int":
            return int(value if isinstance(value, int) and not isinstance(value, bool) else "%s" % (value,))
        return "%s" % (value,)  # a plain str, not Ansible's tagged one
    except ValueError as exc:
        raise ValueError("hypervisor_health: %s: %s: %s" % (where, opt.name, exc)) from None
    except Exception as exc:  # pylint: disable=broad-except
        # a vaulted value without (the right) vault password
        raise ValueError("hypervisor_health: %s: %s cannot be read (%s); a !vault value needs its password file "
                         "in ANSIBLE_VAULT_PASSWORD_FILE" % (where, opt.name, type(exc).__name__)) from None


def _endpoints_of(source, connect_timeout, model):
    """(options, connect_timeout) of each endpoint of a source; options resolved
    (environment fallbacks, defaults), secrets included: never shown."""
    platform, config = source.platform, source.config
    if platform.source_list and platform.source_list not in config and source.path is None:
        declared = [{o.name: config[o.name] for o in platform.options if config.get(o.name) is not None}]
    else:
        declared = platform.source_endpoints(config)
    timeout = config.get("connect_timeout") if source.path is not None else None
    timeout = connect_timeout if timeout in (None, "") else int(_number({"connect_timeout": timeout},
                                                                        "connect_timeout", 30, 1))
    out = []
    for given in declared:
        options = {}
        for key, value in given.items():
            opt = platform.option(key)
            if opt is not None and value is not None:
                options[key] = _option_value(opt, value, source.name)
        try:
            options = platform.resolve(options)
        except model.VirtError as exc:
            raise ValueError("hypervisor_health: %s: %s" % (source.name, exc)) from None
        out.append((options, timeout))
    return out


def _inline_source(args, platforms, names):
    """platform + its connection options given as arguments: one source."""
    platform = platforms.get(args["platform"])
    if platform is None:
        raise ValueError("hypervisor_health: platform must be one of %s, got %r"
                         % (", ".join(sorted(platforms)), args["platform"]))
    mine = {o.name for o in platform.options} | ({platform.source_list} if platform.source_list else set())
    foreign = sorted(k for k in args if k in names and k not in mine)
    if foreign:
        raise ValueError("hypervisor_health: %s: not an option of platform %s (its options: %s)"
                         % (", ".join(foreign), platform.name, ", ".join(sorted(mine))))
    config = {k: v for k, v in args.items() if k in mine}
    listed = config.get(platform.source_list) if platform.source_list else None
    if listed is not None:
        if not isinstance(listed, list) or not listed or not all(isinstance(e, dict) for e in listed):
            raise ValueError("hypervisor_health: %s must be a non-empty list of mappings" % platform.source_list)
        required = [o.name for o in platform.options if o.required]
        for entry in listed:
            keys = {platform.source_keys.get(k, k) for k in entry if entry[k] not in (None, "")}
            if any(r not in keys for r in required):
                raise ValueError("hypervisor_health: each %s entry needs %s, got %r"
                                 % (platform.source_list, " and ".join(required), entry))
    return Source(INLINE_SOURCE, platform, config)


def parse_args(args):
    """Validate the arguments and read the estate; return the configuration. Raises ValueError."""
    model, registry = _import_collection()
    # a rulebook that templates every argument passes '' (or []) for the unused ones
    args = {k: v for k, v in dict(args or {}).items() if not (v is None or v == "" or v == [])}
    platforms = registry.platforms()
    names = set(registry.option_names()) | {p.source_list for p in platforms.values() if p.source_list}
    known = TUNING | {"inventory", "platform"} | names
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError("hypervisor_health: unknown argument(s) %s; known: %s"
                         % (", ".join(unknown), ", ".join(sorted(TUNING | {"inventory", "platform"}))))
    cfg = {
        "interval": _number(args, "interval", 15, minimum=0.1),
        "failure_interval": _number(args, "failure_interval", 60),
        "min_uptime": _number(args, "min_uptime", 240),
        "repeat_after": _number(args, "repeat_after", 0),
        "connect_timeout": int(_number(args, "connect_timeout", 30, minimum=1)),
        "max_resets": int(_number(args, "max_resets", 3, minimum=1)),
        "reset_window": _number(args, "reset_window", 86400, minimum=1),
        "audit_log": args.get("audit_log"),
        "lock_dir": args.get("lock_dir"),
    }
    vms = args.get("vms")
    if vms is not None:
        if isinstance(vms, str) and vms.strip().startswith("["):
            try:  # a templated list can arrive as its Python/JSON text
                vms = ast.literal_eval(vms.strip())
            except (ValueError, SyntaxError):
                raise ValueError("hypervisor_health: vms must be a list of VM names or uuids, got %r" % (vms,)) from None
        elif isinstance(vms, str):
            vms = [v.strip() for v in vms.split(",") if v.strip()]
        if not isinstance(vms, list) or not all(isinstance(v, str) and v for v in vms):
            raise ValueError("hypervisor_health: vms must be a list of VM names or uuids, got %r" % (vms,))
    cfg["vms"] = set(vms) if vms else None
    agent = args.get("agent_ping")
    cfg["agent_ping"] = (cfg["vms"] is not None) if agent is None else _bool(agent, "agent_ping")

    given = sorted(k for k in args if k in names)
    if args.get("inventory") is not None:
        if args.get("platform") is not None or given:
            raise ValueError("hypervisor_health: give inventory (the estate) or platform with its connection "
                             "options, not both (%s)" % ", ".join(["platform"] * ("platform" in args) + given))
        sources = read_inventory(args["inventory"], platforms)
    elif args.get("platform") is not None:
        sources = [_inline_source(args, platforms, names)]
    else:
        raise ValueError("hypervisor_health: inventory is required: the path of an inventory source, or of a "
                         "directory of them (%s)" % ", ".join("*.%s.yml" % p for p in sorted(platforms)))
    endpoints, seen = [], {}
    for source in sources:
        found = _endpoints_of(source, cfg["connect_timeout"], model)
        if not found:
            LOG.warning("hypervisor_health: %s declares no endpoint", source.name)
        for options, timeout in found:
            platform = source.platform
            key = (platform.name,) + tuple(repr(options.get(k)) for k in platform.endpoint_keys())
            if key in seen:
                LOG.warning("hypervisor_health: %s: an endpoint of %s is also in %s: watched once",
                            source.name, platform.name, seen[key])
                continue
            seen[key] = source.name
            endpoints.append({"source": source.name, "platform": platform, "options": options,
                              "connect_timeout": timeout})
    if not endpoints:
        raise ValueError("hypervisor_health: no endpoint to watch in %s (a virtops.unified.<platform> inventory "
                         "source lists them)" % (args.get("inventory") or INLINE_SOURCE))
    cfg["endpoints"] = endpoints
    cfg["sources"] = [s.name for s in sources]
    return cfg


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _in_thread(func, *args):
    """Run func in a daemon thread of its own; a concurrent Future of its result. A
    read that never returns holds only its own thread, and never the process's exit."""
    future = concurrent.futures.Future()

    def run():
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(func(*args))
        except BaseException as exc:  # pylint: disable=broad-except
            future.set_exception(exc)

    threading.Thread(target=run, name="hypervisor_health", daemon=True).start()
    return future


async def _done_within(future, timeout):
    """Wait (without blocking the loop) until the concurrent future is done; False if not within timeout."""
    if future.done():
        return True
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def wake(_future):
        try:
            loop.call_soon_threadsafe(done.set)
        except RuntimeError:  # that loop is gone (a poll given up long ago)
            pass

    future.add_done_callback(wake)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        return future.done()
    return True


class Endpoint:
    """One platform endpoint of the estate: its driver connection and its last state."""

    def __init__(self, spec, agent_ping, scope, lock_dir=None):
        from ansible_collections.virtops.unified.plugins.module_utils import registry
        self.platform = spec["platform"]  # registry.Platform
        self.one_host = self.platform.scope == registry.HOST  # the endpoint is one hypervisor
        self.driver_class = self.platform.driver
        self.source = spec["source"]
        self.options = spec["options"]  # resolved, secrets included: never shown, never logged
        self.connect_timeout = spec["connect_timeout"]
        # ping the guests only where the bulk read does not carry their heartbeat
        self.agent_ping = bool(agent_ping) and not self.driver_class.heartbeat_in_bulk
        self.scope = scope
        self.lock_dir = lock_dir
        self.shown = self.driver_class.safe_endpoint(
            {k: self.options.get(k) for k in self.platform.endpoint_keys()})
        self.id = self.platform.endpoint_id(self.shown) or self.platform.name
        self.label = "%s (%s)" % (self.id, self.source)
        self.driver = None
        self.reachable = None  # None: not polled yet
        self.error = None
        self.pending = None  # a bulk read past its deadline, still under way (a concurrent Future)
        self.probing = None  # guest pings past their deadline, still under way
        self.hosts = {}  # host name -> connection state
        self.vms = {}  # uuid -> VmState
        self.seen_hosts = []  # of the last read: for naming
        self.seen_vms = []
        self.host_name = None  # one-host endpoints: the host's name, as last read

    def public(self):
        """Non-secret endpoint data for events: the options the platform declares as endpoint data."""
        return dict(self.shown, platform=self.platform.name)

    def host(self):
        """The hypervisor an endpoint is, for one-host platforms (None for a manager of many)."""
        return (self.host_name or self.id) if self.one_host else None

    def connect(self):
        return self.driver_class.open_watch(self.options, connect_timeout=self.connect_timeout,
                                            probe_heartbeats=self.agent_ping)

    def close(self):
        drv, self.driver = self.driver, None
        if drv is not None:
            try:
                drv.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def read(self):
        """Blocking: one bulk read. Runs in a thread of its own."""
        if self.driver is None:
            self.driver = self.connect()
        try:
            return self.driver.list_inventory()
        except Exception:
            self.close()  # reconnect next time
            raise

    def pinged(self, inv):
        """The running VMs in scope whose guest is asked for its heartbeat."""
        from ansible_collections.virtops.unified.plugins.module_utils import model
        from ansible_collections.virtops.unified.plugins.module_utils import runbook
        if not self.agent_ping:
            return []
        locks = runbook.lock_dir_path(self.lock_dir)
        # not a VM a runbook is working on: a guest agent may run one command at a time,
        # so our pings would queue the runbook's (its heartbeat stays unknown)
        return [vm for vm in inv.vms if vm.power_state == model.RUNNING and in_scope(vm, vm.name, self.scope)
                and not runbook.live_lock(locks, vm.uuid)]

    def probe(self, vms):
        """Blocking: each VM's guest heartbeat, asked now, in parallel ({uuid: heartbeat})."""
        driver = self.driver
        with ThreadPoolExecutor(max_workers=min(16, len(vms))) as pool:
            beats = list(pool.map(driver.probe_heartbeat, vms))
        return {vm.uuid: beat for vm, beat in zip(vms, beats)}


def in_scope(vm, inventory_name, scope):
    return scope is None or bool({vm.name, vm.uuid, inventory_name} & scope)


class VmState:
    __slots__ = ("name", "host", "power", "heartbeat", "lost_since", "powered_on_at", "hung_at",
                 "running_at_wall", "down_since", "down_done", "boot", "hung_noted", "down_noted")

    def __init__(self, vm, now, first, boot):
        self.name = vm.name
        self.host = vm.host
        self.power = vm.power_state
        self.heartbeat = vm.heartbeat
        self.lost_since = now if vm.heartbeat == "lost" else None
        # a VM running at the first poll was not seen powering on: no grace
        self.powered_on_at = None if first or vm.power_state != "running" else now
        self.hung_at = None
        self.hung_noted = self.down_noted = False  # a held-back repeat was logged (once per episode)
        self.running_at_wall = time.time() if vm.power_state == "running" else None
        self.down_since = None  # when it was first seen down after running
        self.down_done = False  # this down episode was reported (or found planned)
        self.boot = boot  # what changes at each start (the driver's boot_id)


class Monitor:
    """The state machine: feed it bulk reads, get events back."""

    def __init__(self, cfg, clock=time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self.endpoints = [Endpoint(spec, cfg["agent_ping"], cfg["vms"], cfg["lock_dir"]) for spec in cfg["endpoints"]]
        self.names = {}  # (endpoint, uuid) -> inventory name
        self.acted = {}  # uuid -> clock times of vm_hung / vm_down events (max_resets)

    def close(self):
        for ep in self.endpoints:
            ep.close()

    async def poll(self):
        """One poll of every endpoint, concurrently, each within its deadline; returns the events."""
        results = await asyncio.gather(*(self.poll_endpoint(ep) for ep in self.endpoints))
        return [event for events in results for event in events]

    async def poll_endpoint(self, ep):
        """One poll of one endpoint: its bulk read within connect_timeout, then the events."""
        from ansible_collections.virtops.unified.plugins.module_utils import model
        if ep.pending is not None:
            if not ep.pending.done():  # the read given up on at an earlier poll still has no answer
                return self._unreachable(ep, model.Unreachable(
                    "%s %s: no answer for more than %ss" % (ep.platform.name, ep.label, ep.connect_timeout)))
            ep.pending = None
            ep.close()  # its answer is old: read afresh, on a new connection
        future = _in_thread(ep.read)
        # the driver's own timeouts (connect_timeout each call) report first, in its words
        if not await _done_within(future, ep.connect_timeout + GRACE):
            ep.pending = future
            return self._unreachable(ep, model.Unreachable(
                "%s %s: no answer within %ss" % (ep.platform.name, ep.label, ep.connect_timeout)))
        try:
            inv = future.result()
        except Exception as exc:  # pylint: disable=broad-except
            return self._unreachable(ep, exc)
        await self._probe(ep, inv)
        now = self.clock()
        ep.seen_hosts, ep.seen_vms = list(inv.hosts), list(inv.vms)
        if len(inv.hosts) == 1:
            ep.host_name = inv.hosts[0].name
        self._name_vms()
        return self._reachable(ep) + self._diff(ep, inv, now)

    async def _probe(self, ep, inv):
        """Ask the guests of the VMs in scope for their heartbeat, where the bulk read has none.
        Pings that do not end within connect_timeout leave those VMs "unknown" (no verdict)."""
        if ep.probing is not None:
            if not ep.probing.done():
                return  # the last pings still wait on silent agents: none more on top
            ep.probing = None
        vms = ep.pinged(inv)
        if not vms:
            return
        future = _in_thread(ep.probe, vms)
        if not await _done_within(future, ep.connect_timeout):
            ep.probing = future
            LOG.warning("hypervisor_health: %s: the guest pings took more than %ss", ep.label, ep.connect_timeout)
            return
        try:
            beats = future.result()
        except Exception as exc:  # pylint: disable=broad-except
            LOG.warning("hypervisor_health: %s: guest pings failed: %s", ep.label, exc)
            return
        for vm in inv.vms:
            if vm.uuid in beats:
                vm.heartbeat = beats[vm.uuid]

    # --- naming ----------------------------------------------------------
    def _name_vms(self):
        """Inventory names as the inventory plugins make them, source after source in the
        order ansible-inventory reads them: a name repeated in a source, or taken by an
        earlier source, becomes <name>_<host> (then <name>_<host>_<uuid[:8]>)."""
        taken = {}  # inventory name -> uuid, of the sources before
        by_source = {}
        for ep in self.endpoints:
            by_source.setdefault(ep.source, []).append(ep)
        for eps in by_source.values():
            vms = [(ep, vm) for ep in eps for vm in ep.seen_vms]
            counts = Counter(vm.name for _ep, vm in vms)
            per_host = Counter((vm.name, vm.host) for _ep, vm in vms)
            mine = {}
            for ep, vm in vms:
                name = vm.name
                if counts[name] > 1 or taken.get(name) not in (None, vm.uuid):
                    name = "%s_%s" % (vm.name, vm.host)
                    if per_host[(vm.name, vm.host)] > 1 or taken.get(name) not in (None, vm.uuid):
                        name = "%s_%s" % (name, (vm.uuid or "")[:8])
                self.names[(id(ep), vm.uuid)] = name
                mine[name] = vm.uuid
            for ep in eps:
                for host in ep.seen_hosts:
                    taken.setdefault(host.name, host.uuid)
            for name, vm_uuid in mine.items():
                taken.setdefault(name, vm_uuid)

    def _name(self, ep, vm):
        return self.names.get((id(ep), vm.uuid), vm.name)

    # --- events ----------------------------------------------------------
    @staticmethod
    def _event(kind, hosts, ep, **fields):
        body = {"type": kind, "time": _now_iso(), "source": "virtops.unified.hypervisor_health"}
        body.update(fields)
        body.update(virt_endpoint=ep.public(), virt_endpoint_id=ep.id, virt_inventory_source=ep.source)
        return {"virtops": body, "meta": {"hosts": hosts}}

    def _vm_event(self, kind, ep, vm, reason, **extra):
        return self._event(
            kind, self._name(ep, vm), ep,
            virt_kind="vm", virt_name=vm.name, virt_uuid=vm.uuid, virt_host=vm.host, virt_cluster=vm.cluster,
            virt_platform=vm.platform, virt_power_state=vm.power_state, virt_power_state_raw=vm.power_state_raw,
            virt_heartbeat=vm.heartbeat, inventory_name=self._name(ep, vm), reason=reason, **extra)

    def _unreachable(self, ep, exc):
        ep.error = "%s: %s" % (type(exc).__name__, exc)
        was = ep.reachable
        ep.reachable = False
        if was is False:
            return []
        LOG.warning("endpoint %s unreachable: %s", ep.label, ep.error)
        host = ep.host()
        return [self._event("endpoint_unreachable", host or ep.label, ep, virt_platform=ep.platform.name,
                            virt_host=host, endpoint=ep.label, error=ep.error, error_type=type(exc).__name__,
                            reason="%s endpoint %s unreachable: %s" % (ep.platform.name, ep.label, ep.error))]

    def _reachable(self, ep):
        was = ep.reachable
        ep.reachable = True
        if was is not False:
            return []
        LOG.warning("endpoint %s is back", ep.label)
        host = ep.host()
        error, ep.error = ep.error, None
        return [self._event("endpoint_back", host or ep.label, ep, virt_platform=ep.platform.name,
                            virt_host=host, endpoint=ep.label, previous_error=error,
                            reason="%s endpoint %s answers again" % (ep.platform.name, ep.label))]

    def _diff(self, ep, inv, now):
        cfg = self.cfg
        first = not ep.hosts and not ep.vms
        if first:
            LOG.info("hypervisor_health: watching %s %s: %d host(s), %d VM(s) in scope, every %ss",
                     ep.platform.name, ep.label, len(inv.hosts),
                     sum(1 for vm in inv.vms if in_scope(vm, self._name(ep, vm), cfg["vms"])), cfg["interval"])
        events = []
        # hosts
        host_state = {}
        vms_by_host = {}
        for vm in inv.vms:
            vms_by_host.setdefault(vm.host, []).append(self._name(ep, vm))
        for host in inv.hosts:
            state = host.connection_state
            host_state[host.name] = state
            before = ep.hosts.get(host.name)
            if first or before is None or before == state:
                continue
            kind = None
            if state in LOST_STATES and before in UP_STATES:
                kind = "host_connection_lost"
            elif state in UP_STATES and before in LOST_STATES:
                kind = "host_connection_back"
            if kind:
                events.append(self._event(
                    kind, host.name, ep, virt_kind="hypervisor", virt_name=host.name, virt_uuid=host.uuid,
                    virt_host=host.name, virt_cluster=host.cluster, virt_platform=host.platform,
                    virt_connection_state=state, previous_connection_state=before,
                    virt_connection_state_raw=host.facts.get("connection_state_raw"),
                    vms=sorted(vms_by_host.get(host.name, [])),
                    reason="host %s is %s (was %s)" % (host.name, state, before)))
        ep.hosts = host_state
        down = {h for h, s in host_state.items() if s not in UP_STATES}

        # VMs
        seen = {}
        for vm in inv.vms:
            if not in_scope(vm, self._name(ep, vm), cfg["vms"]):
                continue
            old = ep.vms.get(vm.uuid)
            if old is None:
                seen[vm.uuid] = VmState(vm, now, first, ep.driver_class.boot_id(vm))
                continue
            st = old
            seen[vm.uuid] = st
            events.extend(self._power(ep, vm, st, now, down))
            events.extend(self._heartbeat(ep, vm, st, now))
            events.extend(self._down(ep, vm, st, now))
        ep.vms = seen
        return events

    def _power(self, ep, vm, st, now, down_hosts):
        """vm_power_changed; a power-on (seen, or a power cycle between two polls) restarts min_uptime."""
        events = []
        boot = ep.driver_class.boot_id(vm)
        if vm.power_state != st.power:
            # a VM on a host that lost its connection reads 'unknown': the host event says it
            if not (vm.host in down_hosts or st.host in down_hosts) or "unknown" not in (vm.power_state, st.power):
                events.append(self._vm_event(
                    "vm_power_changed", ep, vm, "power %s -> %s" % (st.power, vm.power_state),
                    previous_power_state=st.power))
            powered_on = vm.power_state == "running" and st.power != "unknown"
        else:
            powered_on = vm.power_state == "running" and st.boot is not None and boot not in (None, st.boot)
            if powered_on:
                LOG.info("%s was power-cycled between two polls (boot %s -> %s)", vm.name, st.boot, boot)
        if powered_on:
            st.powered_on_at = now
            st.lost_since = None
            st.hung_at = None
        st.boot = boot
        st.power = vm.power_state
        st.host, st.name = vm.host, vm.name
        return events

    def _heartbeat(self, ep, vm, st, now):
        """vm_heartbeat_lost, then vm_hung after failure_interval (never within min_uptime).
        "unknown" on a running VM (no answer either way) neither starts nor ends an episode."""
        cfg = self.cfg
        events = []
        silent = vm.heartbeat == "unknown" and vm.power_state == "running"
        if vm.heartbeat == "lost" and vm.power_state == "running":
            if st.lost_since is None:
                st.lost_since = now
                st.hung_at = None
                if st.heartbeat != "lost":
                    events.append(self._vm_event("vm_heartbeat_lost", ep, vm, "guest heartbeat lost",
                                                 previous_heartbeat=st.heartbeat))
            lost_for = now - st.lost_since
            up_for = None if st.powered_on_at is None else now - st.powered_on_at
            due = st.hung_at is None or (cfg["repeat_after"] > 0 and now - st.hung_at >= cfg["repeat_after"])
            if not due and not st.hung_noted:
                # said once per episode: the positive sign that a repeat was seen and held back
                st.hung_noted = True
                LOG.info("hypervisor_health: %s: heartbeat still lost; vm_hung already sent in this episode, "
                         "not again", vm.name)
            if due and lost_for >= cfg["failure_interval"] and (up_for is None or up_for >= cfg["min_uptime"]):
                st.hung_at = now
                st.hung_noted = False
                events.append(self._act(
                    "vm_hung", ep, vm, now,
                    "guest heartbeat lost for %ds (failure_interval %ds) on %s; detected by "
                    "virtops.unified.hypervisor_health" % (lost_for, cfg["failure_interval"], vm.host),
                    heartbeat_lost_for=round(lost_for, 1), failure_interval=cfg["failure_interval"],
                    seen_up_for=None if up_for is None else round(up_for, 1)))
        elif not silent:  # heartbeat ok, or not running: the episode ends
            st.lost_since = None
            st.hung_at = None
        if not silent:
            st.heartbeat = vm.heartbeat
        return events

    def _down(self, ep, vm, st, now):
        """vm_down: running before, down at two polls in a row, and not virtops' doing."""
        if vm.power_state == "running":
            st.running_at_wall, st.down_since, st.down_done, st.down_noted = time.time(), None, False, False
            return []
        if st.down_done and not st.down_noted and vm.power_state in ("stopped", "crashed"):
            st.down_noted = True  # once: the positive sign that the repeat was seen and held back
            LOG.info("hypervisor_health: %s: still %s; already reported in this episode, not again",
                     vm.name, vm.power_state_raw)
        if st.running_at_wall is None or vm.power_state not in ("stopped", "crashed") or st.down_done:
            return []
        if st.down_since is None:
            st.down_since = now  # wait one poll: a runbook's power cycle or audit line may be under way
            return []
        if now - st.down_since < self.cfg["interval"] * 0.9:
            return []
        st.down_done = True
        cause = ep.driver_class.stop_cause(vm)
        if not isinstance(cause, str) or not _WORD.fullmatch(cause):  # a fixed word, never platform text
            cause = "unknown"
        by_virtops = self._virtops_acted(vm.uuid, st.running_at_wall)
        if cause in ep.driver_class.planned_stop_causes or by_virtops:
            LOG.info("%s is %s: %s, not a fault", vm.name, vm.power_state_raw,
                     by_virtops or "a planned %s" % cause)
            return []
        return [self._act("vm_down", ep, vm, now,
                          "%s was running and is now %s (%s) on %s, and no virtops action did it; detected by "
                          "virtops.unified.hypervisor_health" % (vm.name, vm.power_state, vm.power_state_raw, vm.host),
                          cause=cause, down_for=round(now - st.down_since, 1))]

    def _virtops_acted(self, vm_uuid, since_wall):
        """Why virtops is behind this VM's power change, or None: a runbook holds
        its lock, or the audit log has an action on it since it last ran."""
        from ansible_collections.virtops.unified.plugins.module_utils import runbook
        # an interrupted run's lock is stale (its play process is gone): it explains nothing
        held = runbook.live_lock(runbook.lock_dir_path(self.cfg["lock_dir"]), vm_uuid)
        if held:
            return "a runbook holds its lock: %s" % runbook.describe_holder(held)
        # intent lines are written before an action, outcome lines after, stamped to the second
        window = time.time() - since_wall + 1
        done = runbook.recent_actions(runbook.audit_log_path(self.cfg["audit_log"]), vm_uuid, None, window)
        if done:
            return "virtops did %s at %s" % (done[-1].get("state"), done[-1].get("time"))
        return None

    def _act(self, kind, ep, vm, now, reason, **extra):
        """An event the rulebooks act on, within max_resets per reset_window;
        past the limit, vm_reset_limit_reached (once per episode) instead."""
        from ansible_collections.virtops.unified.plugins.module_utils import runbook
        cfg = self.cfg
        times = [t for t in self.acted.get(vm.uuid, []) if now - t < cfg["reset_window"]]
        audited = runbook.recent_actions(runbook.audit_log_path(cfg["audit_log"]), vm.uuid,
                                         runbook.RESTART_STATES, cfg["reset_window"])
        count = max(len(times), len(audited))
        limits = dict(resets_in_window=count, max_resets=cfg["max_resets"], reset_window=cfg["reset_window"])
        if count >= cfg["max_resets"]:
            self.acted[vm.uuid] = times
            LOG.warning("%s: %s, but max_resets reached", vm.name, reason)
            return self._vm_event(
                "vm_reset_limit_reached", ep, vm,
                "%s needs a person: %s, but it was already acted on %d time(s) within %ds (max_resets %d); "
                "automation stops here" % (vm.name, reason, count, cfg["reset_window"], cfg["max_resets"]),
                blocked_event=kind, **dict(limits, **extra))
        self.acted[vm.uuid] = times + [now]
        return self._vm_event(kind, ep, vm, reason, **dict(limits, **extra))


async def main(queue: asyncio.Queue, args: dict):
    """ansible-rulebook entry point: each endpoint on its own clock."""
    cfg = parse_args(args)
    monitor = Monitor(cfg)
    LOG.info("hypervisor_health: %d endpoint(s) of %d source(s): %s", len(monitor.endpoints), len(cfg["sources"]),
             ", ".join("%s %s" % (ep.platform.name, ep.label) for ep in monitor.endpoints))

    async def watch(ep):
        while True:
            started = time.monotonic()
            try:
                events = await monitor.poll_endpoint(ep)
            except Exception:  # pylint: disable=broad-except
                LOG.exception("hypervisor_health: poll of %s failed; retrying next interval", ep.label)
                events = []
            for event in events:
                # a line per event: what the source sent, for the person (and the tests) reading the log
                LOG.info("hypervisor_health: sent %s for %s", event["virtops"]["type"], event["meta"]["hosts"])
                await queue.put(event)
            await asyncio.sleep(max(0.0, cfg["interval"] - (time.monotonic() - started)))

    try:
        await asyncio.gather(*(watch(ep) for ep in monitor.endpoints))
    finally:
        monitor.close()


if __name__ == "__main__":
    # Mock runner: python hypervisor_health.py INVENTORY
    #          or: python hypervisor_health.py '{"inventory": "INVENTORY", "interval": 5}'
    import json

    class MockQueue:
        async def put(self, event):
            print(json.dumps(event), flush=True)

    if len(sys.argv) != 2:
        sys.exit("usage: %s INVENTORY | JSON-ARGUMENTS" % sys.argv[0])
    logging.basicConfig(level=logging.INFO)
    mock_args = json.loads(sys.argv[1]) if sys.argv[1].lstrip().startswith("{") else {"inventory": sys.argv[1]}
    asyncio.run(main(MockQueue(), mock_args))
