"""An endpoint is configured once, in its inventory source: the runbooks and modules
against its hosts then work with nothing more (no VMWARE_* in the environment), the
password inline or vaulted, and it appears in no output, cache or audit line."""

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
