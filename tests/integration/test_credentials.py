"""An endpoint is configured once: the runbooks and modules against its hosts then work
with nothing more (no VMWARE_* in the environment), and the password appears in no
output (-vvv included), cache or audit line.

Where a connection option comes from, first found: the task's arguments / module_defaults,
the variable virtops_credentials (vaulted), the credentials files of VIRTOPS_CREDENTIALS_*
(as an AWX credential of the generated type writes them), the inventory source the host
came from (inline or vaulted), the environment. The vCenter peer accepts one password
only, so a run that works used the right level and one refused used the wrong one."""

import json
import os
import subprocess

import pytest

from helpers import BIN, ROOT, env
from vcsim_peer import PASSWORD, USERNAME

VAULT_PASS = "lab-vault-pass-31"


@pytest.fixture(scope="module")
def sim(vcsim):
    return vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "2", "-host", "0", "-vm", "2")


def no_vmware_env(tmp_path, **extra):
    out = {k: v for k, v in env().items() if not k.startswith("VMWARE_")}
    out.update(VIRTOPS_AUDIT_LOG=str(tmp_path / "audit.jsonl"), VIRTOPS_LOCK_DIR=str(tmp_path / "locks"),
               VIRTOPS_LAST_KNOWN_DIR=str(tmp_path / "last_known"), **extra)
    return out


def run(argv, environ):
    return subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600, check=False)


def vaulted(tmp_path, secret):
    pw_file = tmp_path / "vault-pass"
    pw_file.write_text(VAULT_PASS)
    proc = run([os.path.join(BIN, "ansible-vault"), "encrypt_string", "--vault-password-file", str(pw_file),
                secret, "--name", "password"], env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, pw_file


@pytest.mark.parametrize("how", ["inline", "vault"])
def test_credentials_only_in_the_inventory_source_drive_the_runbooks(sim, tmp_path, how):
    source = tmp_path / "prod.vmware.yml"
    extra = {}
    if how == "inline":
        secret = "password: %s\n" % json.dumps(PASSWORD)
    else:
        secret, pw_file = vaulted(tmp_path, PASSWORD)
        extra["ANSIBLE_VAULT_PASSWORD_FILE"] = str(pw_file)
    source.write_text("plugin: virtops.unified.vmware\nhostname: 127.0.0.1\nport: %d\nvalidate_certs: false\n"
                      "username: %s\n%s" % (sim.port, USERNAME, secret))
    environ = no_vmware_env(tmp_path, **extra)
    vm = next(v for v in sim.state()["vms"] if v["powerState"] == "poweredOn")
    booted = sim.vm(vm["instanceUuid"]).runtime.bootTime
    outputs = []
    for play, args in (("restart_vm.yml", ["-e", "target=%s" % vm["name"]]),
                       ("host_failure_impact.yml", ["-e", "failed_host=%s" % vm["host"],
                                                    "-e", "report_dir=%s" % (tmp_path / "report")]),
                       ("evacuate_host.yml", ["-e", "evacuate=%s" % vm["host"]]),
                       ("recover_host_failure.yml", ["--check"])):
        proc = run([os.path.join(BIN, "ansible-playbook"), "-i", str(source),
                    os.path.join(ROOT, "playbooks", play), *args], environ)
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, (play, proc.stdout[-3000:], proc.stderr[-2000:])
        assert "login refused" not in proc.stdout
    # independent end state: the restart really happened, the evacuation really moved the VM
    assert sim.vm(vm["instanceUuid"]).runtime.bootTime > booted
    assert sim.vm(vm["instanceUuid"]).runtime.host.name != vm["host"]
    # the password is nowhere: output, audit log, last-known store, report
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name not in ("prod.vmware.yml",)]
    for text in outputs + [p.read_text(errors="replace") for p in leftovers]:
        assert PASSWORD not in text
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert any(r.get("state") == "restarted" and r.get("result") == "ok" for r in audit)
    assert any(r.get("state") == "migrated" and r.get("result") == "ok" for r in audit)


# --- the levels above the inventory source: virtops_credentials and credentials files -----
# The jobs below run on an inventory exported from the source once (as AWX runs its jobs on
# the hosts an inventory update stored), so the source can hold no credentials, or wrong
# ones, while the tasks run. Each host's virt_source still names the source file.
WRONG = {level: "wrong-%s-pw-4c1e" % level for level in ("args", "map", "file", "source", "env")}


@pytest.fixture(scope="module")
def exported(sim, tmp_path_factory):
    """(static inventory, source path): the source read once with working credentials, exported."""
    root = tmp_path_factory.mktemp("exported")
    source = root / "prod.vmware.yml"
    source.write_text("plugin: virtops.unified.vmware\nhostname: 127.0.0.1\nport: %d\nvalidate_certs: false\n"
                      % sim.port)
    environ = no_vmware_env(root, VMWARE_USER=USERNAME, VMWARE_PASSWORD=PASSWORD)
    proc = run([os.path.join(BIN, "ansible-inventory"), "-i", str(source), "--list", "--export", "-y",
                "--output", str(root / "hosts.yml")], environ)
    assert proc.returncode == 0, proc.stderr
    text = (root / "hosts.yml").read_text()
    assert str(source) in text and PASSWORD not in text
    return root / "hosts.yml", source


def write_source(source, sim, password=None):
    """The inventory source the hosts came from, with this password (or none)."""
    text = "plugin: virtops.unified.vmware\nhostname: 127.0.0.1\nport: %d\nvalidate_certs: false\n" % sim.port
    if password:
        text += "username: %s\npassword: %s\n" % (USERNAME, json.dumps(password))
    source.write_text(text)


def awx_credentials_file(path, inputs):
    """The credentials file as AWX writes it for a credential of the generated vmware type:
    its file injector rendered in AWX's sandbox with the inputs that are set (0600)."""
    import yaml  # pylint: disable=import-outside-toplevel
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # pylint: disable=import-outside-toplevel

    class Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
        pass

    Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    with open(os.path.join(ROOT, "awx", "credential_types.yml"), encoding="utf-8") as handle:
        types = yaml.load(handle, Loader=Loader)["virtops_awx_credential_types"]  # nosec - SafeLoader
    ctype = next(t for t in types if t["platform"] == "vmware")
    namespace = {k: v for k, v in inputs.items() if v}
    path.write_text(ImmutableSandboxedEnvironment().from_string(ctype["injectors"]["file"]["template.credentials"])
                    .render(**namespace))
    path.chmod(0o600)
    assert set(ctype["injectors"]["env"]) >= {"VIRTOPS_CREDENTIALS_VMWARE"}
    return path


def vaulted_map(path, pw_file, password):
    """virtops_credentials in a vars file, the password encrypted with ansible-vault encrypt_string."""
    proc = run([os.path.join(BIN, "ansible-vault"), "encrypt_string", "--vault-password-file", str(pw_file),
                password, "--name", "password"], env())
    assert proc.returncode == 0, proc.stderr
    block = "".join("    %s\n" % line for line in proc.stdout.splitlines())
    path.write_text('virtops_credentials:\n  "127.0.0.1":\n    username: %s\n%s' % (USERNAME, block))
    assert password not in path.read_text()
    return path


def _poweron_vm(sim):
    return next(v for v in sim.state()["vms"] if v["powerState"] == "poweredOn")


@pytest.mark.parametrize("level", ["virtops_credentials (vaulted)", "VIRTOPS_CREDENTIALS_VMWARE file"])
def test_credentials_above_the_source_drive_restart_vm(sim, exported, tmp_path, level):
    """The password only in the vaulted variable map, or only in an AWX-style credentials
    file: restart_vm.yml restarts the VM (the peer accepts no other password), run with -vvv,
    and the password is in no output, audit line or file."""
    hosts, source = exported
    write_source(source, sim)  # no credentials in the source
    pw_file = tmp_path / "vault-pass"
    pw_file.write_text(VAULT_PASS)
    extra, argv = {}, []
    if level.startswith("virtops_credentials"):
        argv = ["-e", "@%s" % vaulted_map(tmp_path / "creds.yml", pw_file, PASSWORD),
                "--vault-password-file", str(pw_file)]
    else:
        extra["VIRTOPS_CREDENTIALS_VMWARE"] = str(awx_credentials_file(tmp_path / "tmpcred", {
            "hostname": "127.0.0.1", "username": USERNAME, "password": PASSWORD, "port": str(sim.port),
            "validate_certs": "false"}))
    environ = no_vmware_env(tmp_path, **extra)
    vm = _poweron_vm(sim)
    sim.wait_tools(vm["instanceUuid"])
    booted, ops = sim.vm(vm["instanceUuid"]).runtime.bootTime, len(sim.operations(vm["instanceUuid"]))
    proc = run([os.path.join(BIN, "ansible-playbook"), "-vvv", "-i", str(hosts),
                os.path.join(ROOT, "playbooks", "restart_vm.yml"), "-e", "target=%s" % vm["name"],
                "-e", "reason=credentials-%s" % level.split()[0], *argv], environ)
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-2000:])
    # the peer's own record and pyVmomi: a graceful shutdown and a power-on, booted again
    assert sim.ops(vm["instanceUuid"], ops) == ["ShutdownGuest", "PowerOnVM_Task"]
    assert sim.vm(vm["instanceUuid"]).runtime.bootTime > booted
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["result"] for r in audit if r["phase"] == "outcome"] == ["ok"]
    # the password is nowhere but in the credentials file: the -vvv output, the audit log, any file
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.name != "tmpcred"]
    for text in [proc.stdout, proc.stderr] + written:
        assert PASSWORD not in text


def _vm_info(hosts, vm, environ, *argv, module_defaults=None, tmp_path=None):
    """vm_info on the VM's inventory host, -vvv; the play's module_defaults are level 1."""
    play = tmp_path / "probe.yml"
    play.write_text(json.dumps([{"name": "Probe", "hosts": vm, "gather_facts": False,
                                 "module_defaults": {"virtops.unified.vm_info": module_defaults or {}},
                                 "tasks": [{"name": "Read the VM", "virtops.unified.vm_info": {}}]}]))
    return run([os.path.join(BIN, "ansible-playbook"), "-vvv", "-i", str(hosts), str(play), *argv], environ)


# level that holds the right password -> (the levels below it, all wrong, are not used)
PRECEDENCE = [
    ("args", ["map", "file", "source", "env"]),
    ("map", ["file", "source", "env"]),
    ("file", ["source", "env"]),
    ("source", ["env"]),
    ("env", []),
]


def _levels(sim, tmp_path, source, passwords):
    """Set each level's password ({level: password}); returns (environ, argv, module_defaults)."""
    pw_file = tmp_path / "vault-pass"
    pw_file.write_text(VAULT_PASS)
    extra, argv, defaults = {"VMWARE_USER": USERNAME}, ["--vault-password-file", str(pw_file)], None
    if "args" in passwords:
        defaults = {"password": passwords["args"]}
    if "map" in passwords:
        argv += ["-e", "@%s" % vaulted_map(tmp_path / "creds.yml", pw_file, passwords["map"])]
    if "file" in passwords:
        extra["VIRTOPS_CREDENTIALS_VMWARE"] = str(awx_credentials_file(tmp_path / "tmpcred", {
            "hostname": "127.0.0.1", "username": USERNAME, "password": passwords["file"], "port": str(sim.port),
            "validate_certs": "false"}))
    write_source(source, sim, passwords.get("source"))
    if "env" in passwords:
        extra["VMWARE_PASSWORD"] = passwords["env"]
    return no_vmware_env(tmp_path, **extra), argv, defaults


@pytest.mark.parametrize("right, below", PRECEDENCE, ids=[p[0] for p in PRECEDENCE])
def test_a_higher_level_wins_and_a_wrong_password_below_it_is_not_used(sim, exported, tmp_path, right, below):
    """Task args / module_defaults, then virtops_credentials, then the credentials files, then
    the inventory source, then the environment: the right password at one level and a wrong
    one at every level below; the peer refuses any login but the right one."""
    hosts, source = exported
    vm = _poweron_vm(sim)["name"]
    passwords = dict({level: WRONG[level] for level in below}, **{right: PASSWORD})
    environ, argv, defaults = _levels(sim, tmp_path, source, passwords)
    proc = _vm_info(hosts, vm, environ, *argv, module_defaults=defaults, tmp_path=tmp_path)
    assert proc.returncode == 0, (right, proc.stdout[-3000:], proc.stderr[-2000:])
    assert "login refused" not in proc.stdout
    for secret in passwords.values():
        assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize("wrong, right", [("args", "map"), ("map", "file"), ("file", "source"), ("source", "env")])
def test_a_wrong_password_at_a_higher_level_is_the_one_used(sim, exported, tmp_path, wrong, right):
    """The other half: the higher level is taken even when it is wrong (the peer refuses it),
    and the wrong password is masked in the failure too."""
    hosts, source = exported
    vm = _poweron_vm(sim)["name"]
    environ, argv, defaults = _levels(sim, tmp_path, source, {wrong: WRONG[wrong], right: PASSWORD})
    proc = _vm_info(hosts, vm, environ, *argv, module_defaults=defaults, tmp_path=tmp_path)
    assert proc.returncode != 0 and "login refused" in proc.stdout, (wrong, proc.stdout[-3000:])
    assert WRONG[wrong] not in proc.stdout + proc.stderr and PASSWORD not in proc.stdout + proc.stderr
