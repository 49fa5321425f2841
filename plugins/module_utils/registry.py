# -*- coding: utf-8 -*-
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform registry: each platform declares itself once, in its own
driver module (`*_driver.py` in this package), and everything else derives
from the declarations: the modules' connection options and their docs, what
the action plugins borrow from the inventory, how a driver is opened, and the
recovery, evacuation and placement logic (by capability, never by name).

A declaration says:
  * name and title;
  * its connection options (type, per-platform default, environment
    fallbacks, secret or not, non-secret endpoint data for `virt_endpoint`);
  * its capabilities: the power primitives of driver.ACTIONS its driver
    implements, plus "heartbeat", "migrate", "maintenance";
  * how the VMs of a failed host are recovered (`recovery`);
  * its scope: one host per endpoint (libvirt) or a manager of many (vCenter);
  * its client library (pip requirement and import name).

Nothing here imports Ansible, and no platform is named here.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field

from ansible_collections.virtops.unified.plugins.module_utils import model

# scope
HOST = "host"  # one endpoint is one hypervisor (libvirt, a standalone Hyper-V host)
MANAGER = "manager"  # one endpoint manages many hosts (vCenter, OVM Manager, an HMC)

# how the VMs of a failed host come back (recovery)
START_STANDBY = "start_standby"  # start the same VM where it is also defined (shared storage)
REREGISTER = "reregister"  # register the VM's files on a live host of the manager, then start it

# capabilities beyond the power primitives
HEARTBEAT = "heartbeat"
MIGRATE = "migrate"
MAINTENANCE = "maintenance"

_TYPES = {"str": str, "int": int, "bool": bool}

# VIRTOPS_CREDENTIALS_<PLATFORM>: the path of a credentials file (Platform.credentials_env)
CREDENTIALS_ENV = "VIRTOPS_CREDENTIALS_"


@dataclass(frozen=True)
class Option:
    """One connection option of a platform."""

    name: str
    description: str
    type: str = "str"
    default: object = None
    env: tuple = ()  # environment variables read when the option is not given, first wins
    secret: bool = False  # never shown, logged, cached or written to the inventory
    endpoint: bool = False  # non-secret endpoint data: in virt_endpoint, borrowed by the action plugins
    required: bool = False  # the driver cannot connect without it
    aliases: tuple = ()
    # key material (an SSH private key): the value is the path of a file holding it. An AWX
    # credential takes the key itself and writes that file for each job (scripts/generate.py)
    file: bool = False
    key_format: str | None = None  # what the key is, for AWX's input check: "ssh_private_key"


@dataclass(frozen=True)
class Platform:
    """What a platform is, declared by its driver module."""

    name: str
    title: str
    driver: type  # a driver.Driver subclass, opened with open(options, connect_timeout)
    scope: str
    options: tuple
    capabilities: frozenset
    recovery: str | None = None
    client: dict = field(default_factory=dict)  # {"pip": "pyvmomi>=8.0", "import": "pyVmomi"}
    # the options that name an endpoint, first set wins: the key of credential maps
    id_options: tuple = ()
    # where an inventory source lists several endpoints (libvirt's `hypervisors`): that key,
    # and each entry's keys that map to connection options ({"name": "hypervisor_name"})
    source_list: str | None = None
    source_keys: dict = field(default_factory=dict)
    # key files the platform's client reads by path from the environment variable env[0] of
    # each (Options with file=True): not connection options, never passed to the driver
    key_files: tuple = ()

    def option(self, name):
        return next((o for o in self.options if o.name == name), None)

    def resolve(self, params, environ=None):
        """This platform's connection options from task parameters: the value given,
        else the first environment fallback set, else the platform's default."""
        environ = os.environ if environ is None else environ
        foreign = self._foreign_environment(params, environ)
        out = {}
        for opt in self.options:
            value = params.get(opt.name)
            if value is None and opt.secret and foreign:
                env = next((e for e in opt.env if environ.get(e) not in (None, "")), None)
                if env:  # never send one endpoint's secret to another
                    raise model.VirtError(
                        "%s: %s in the environment is for %s=%s, not for %s: it is not sent there; nothing was done"
                        % (self.name, env, foreign[1], foreign[2], foreign[0]),
                        hint="Give %s's credentials in its inventory source, in virtops_credentials (keyed by %s), "
                             "in a credentials file, or in the task" % (foreign[0], foreign[0]))
            if value is None:
                value = next((environ[e] for e in opt.env if environ.get(e) not in (None, "")), None)
                if value is not None:
                    value = _convert(opt, value)
            if value is None:
                value = opt.default
            out[opt.name] = value
        missing = [o.name for o in self.options if o.required and out.get(o.name) in (None, "")]
        if missing:
            envs = ["%s (or %s)" % (o.name, " / ".join(o.env)) if o.env else o.name
                    for o in self.options if o.name in missing]
            raise model.VirtError("%s needs %s" % (self.name, ", ".join(envs)),
                                  hint="Set it in the task, in module_defaults, or in the environment")
        return out

    def _foreign_environment(self, params, environ):
        """(endpoint asked for, variable, its value) when the environment names another
        endpoint than the parameters do (VMWARE_HOST=vc1 for a task on vc2): its secrets
        are that endpoint's. None otherwise."""
        for name in self.id_options:
            opt = self.option(name)
            given = params.get(name)
            if opt is None or given in (None, ""):
                continue
            env = next((e for e in opt.env if environ.get(e) not in (None, "")), None)
            if env and str(environ[env]) != str(given):
                return (str(given), env, environ[env])
        return None

    def open(self, params, connect_timeout=30, environ=None):
        """A connected driver for these task parameters."""
        return self.driver.open(self.resolve(params, environ), connect_timeout=connect_timeout)

    def source_endpoints(self, config):
        """The connection options of each endpoint an inventory source declares, as the
        source gives them (credentials included when the source holds them)."""
        config = config or {}
        shared = {o.name: config[o.name] for o in self.options if config.get(o.name) is not None}
        if not self.source_list:
            return [shared]
        found = []
        for entry in config.get(self.source_list) or []:
            if not isinstance(entry, dict):
                continue
            options = dict(shared)
            for key, value in entry.items():
                key = self.source_keys.get(key, key)
                if self.option(key) is not None and value is not None:
                    options[key] = value
            found.append(options)
        return found

    def endpoint_id(self, options):
        """The endpoint these options reach, as credential maps name it."""
        for name in self.id_options:
            value = (options or {}).get(name)
            if value not in (None, ""):
                return str(value)
        return None

    def endpoint_keys(self):
        return tuple(o.name for o in self.options if o.endpoint)

    def secret_keys(self):
        return tuple(o.name for o in self.options if o.secret)

    def credentials_env(self):
        """The environment variable naming this platform's credentials file: a map of
        endpoint id to connection options, as an AWX credential of this platform writes it."""
        return CREDENTIALS_ENV + self.name.upper()

    def convert(self, name, value):
        """A value of option `name` given as text (a credentials file, an environment
        variable) as the option's type; other values as they are."""
        opt = self.option(name)
        if opt is None or not isinstance(value, str):
            return value
        return _convert(opt, value)


def _convert(opt, text):
    """An environment value as the option's type."""
    if opt.type == "bool":
        lowered = str(text).strip().lower()
        if lowered in ("1", "true", "yes", "on", "y", "t"):
            return True
        if lowered in ("0", "false", "no", "off", "n", "f"):
            return False
        raise model.VirtError("%s: %r is not a boolean" % (opt.name, text))
    if opt.type == "int":
        try:
            return int(text)
        except ValueError:
            raise model.VirtError("%s: %r is not an integer" % (opt.name, text)) from None
    return text


_PLATFORMS = {}


def register(platform):
    """Called once by each driver module, at import."""
    for opt in platform.options:
        if opt.type not in _TYPES:
            raise ValueError("%s: option %s has unknown type %r" % (platform.name, opt.name, opt.type))
        if opt.secret and opt.endpoint:
            raise ValueError("%s: option %s cannot be secret and endpoint data" % (platform.name, opt.name))
        if opt.file:
            raise ValueError("%s: option %s is a key file: declare it in key_files" % (platform.name, opt.name))
    for opt in platform.key_files:
        if not (opt.file and opt.secret and opt.type == "str" and opt.env):
            raise ValueError("%s: key file %s needs file=True, secret=True, type str and env" % (platform.name, opt.name))
    _PLATFORMS[platform.name] = platform
    return platform


def _discover():
    """Import every driver module of this package: each registers its platform."""
    package = importlib.import_module(__name__.rsplit(".", 1)[0])
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.endswith("_driver"):
            importlib.import_module("%s.%s" % (package.__name__, info.name))


_DISCOVERED = []


def platforms():
    """Every registered platform, by name."""
    if not _DISCOVERED:  # once: a driver imported directly has registered only itself
        _discover()
        _DISCOVERED.append(True)
    return dict(sorted(_PLATFORMS.items()))


def get(name):
    found = platforms().get(name)
    if found is None:
        raise model.Unsupported("platform %r is not supported; known: %s" % (name, ", ".join(platforms())))
    return found


def option_names():
    """Every connection option of every platform, each once, in a stable order."""
    seen = {}
    for platform in platforms().values():
        for opt in platform.options:
            seen.setdefault(opt.name, []).append((platform, opt))
    return seen
