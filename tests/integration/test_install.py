"""A user's install, outside the checkout, as the README's Installation section says.

Once per session: the tarball is built from the checkout; in a fresh directory
outside it (DIR) a fresh venv gets the documented pip line, the tarball is
installed with `ansible-galaxy collection install -p DIR/collections`, then the
collection's own requirements.txt from the installed copy. A small lab (one
vCenter, one Oracle VM Manager) gives the user's inventory directory, copied to
DIR/inventory. From DIR, with HOME in DIR, ANSIBLE_COLLECTIONS_PATH=DIR/collections
and an ansible.cfg of DIR (never the checkout's), the venv's ansible-inventory and
ansible-playbook run `virtops.unified.restart_vm` by its FQCN; the end state is
read at the peer with `scripts/lab state`: exactly one power cycle.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import BIN, ROOT, lab

# The documented pip line (README, Installation): ansible-core, then the collection's requirements.
ANSIBLE_CORE = "ansible-core>=2.19.3,<2.20"
VC_VM, OVM_VM = "web01", "db01"
ESTATE = {"endpoints": [
    {"name": "vc1", "platform": "vmware", "credentials": "inline", "username": "user1", "password": "Inst pw vc 3a",
     "clusters": [{"name": "prod", "hosts": [
         {"name": "esx01", "vms": [{"name": VC_VM}, {"name": "app01"}]}]}]},
    {"name": "ovmm", "platform": "ovm", "credentials": "inline", "username": "admin", "password": "Inst pw ovm 3b",
     "clusters": [{"name": "pool1", "hosts": [
         {"name": "ovs01", "vms": [{"name": OVM_VM, "memory_mb": 512}, {"name": "mail01", "memory_mb": 512}]}]}]},
]}


def sh(argv, cwd, env, timeout=600):
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "%s failed (%d):\n%s\n%s" % (
        " ".join(argv), proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
    return proc


def outside(path):
    real = os.path.realpath(path)
    return real != ROOT and not real.startswith(ROOT + os.sep)


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """DIR: venv, collections, inventory, ansible.cfg and HOME of a user, outside the checkout."""
    base = tmp_path_factory.mktemp("user")
    assert outside(base), base
    dist = base / "dist"
    dist.mkdir()
    sh([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist)], ROOT,
       dict(os.environ, ANSIBLE_NOCOLOR="1"))
    (tarball,) = glob.glob(str(dist / "virtops-unified-*.tar.gz"))

    home = base / "home"
    home.mkdir()
    cfg = base / "ansible.cfg"
    cfg.write_text("[defaults]\nhost_key_checking = false\n", encoding="utf-8")
    venv = base / "venv"
    python = shutil.which("python3") or sys._base_executable  # pylint: disable=protected-access
    # a fresh venv; pip keeps its cache of the machine (PIP_* and ~/.cache/pip of the real HOME)
    pip_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    sh([python, "-m", "venv", str(venv)], base, pip_env)
    vbin = str(venv / "bin")
    sh([os.path.join(vbin, "pip"), "install", "-q", ANSIBLE_CORE], base, pip_env)

    env = {"PATH": vbin + ":/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_COLLECTIONS_PATH": str(base / "collections"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PYTHONUNBUFFERED": "1"}
    sh([os.path.join(vbin, "ansible-galaxy"), "collection", "install", tarball, "-p", str(base / "collections")],
       base, env)
    installed = base / "collections" / "ansible_collections" / "virtops" / "unified"
    sh([os.path.join(vbin, "pip"), "install", "-q", "-r", str(installed / "requirements.txt")], base, pip_env)

    labfile = base / "lab.yml"
    labfile.write_text(yaml.safe_dump(ESTATE), encoding="utf-8")
    labdir = str(base / "lab")
    lab("up", str(labfile), labdir)
    try:
        shutil.copytree(os.path.join(labdir, "inventory"), base / "inventory")
        yield {"dir": base, "bin": vbin, "env": env, "installed": installed, "lab": labdir, "tarball": tarball}
    finally:
        lab("down", labdir)


def run(user, *argv):
    return sh([os.path.join(user["bin"], argv[0]), *argv[1:]], user["dir"], user["env"])


def machines(user):
    return {(m["endpoint"], m.get("lab_name", m["name"])): m
            for m in json.loads(lab("state", user["lab"]).stdout)["machines"]}


def test_the_collection_is_the_installed_copy_not_the_checkout(user):
    out = run(user, "ansible-galaxy", "collection", "list", "virtops.unified").stdout
    assert str(user["dir"] / "collections") in out and "0.2.0" in out, out
    assert ROOT not in out, out
    doc = json.loads(run(user, "ansible-doc", "-t", "module", "virtops.unified.vm_power", "--json").stdout)
    assert outside(doc["virtops.unified.vm_power"]["doc"]["filename"]), doc["virtops.unified.vm_power"]["doc"]


def test_inventory_graph_from_the_users_directory(user):
    out = run(user, "ansible-inventory", "-i", "inventory", "--graph").stdout
    for name in (VC_VM, "app01", OVM_VM, "mail01", "esx01", "ovs01"):
        assert name in out, out


@pytest.mark.parametrize("endpoint,vm", [("vc1", VC_VM), ("ovmm", OVM_VM)])
def test_restart_vm_by_fqcn_is_one_power_cycle(user, endpoint, vm):
    before = machines(user)
    run(user, "ansible-playbook", "-i", "inventory", "virtops.unified.restart_vm", "-e", "target=" + vm,
        "-e", "reason=install-test")
    after = machines(user)
    counts = ("power_ons", "graceful_shutdowns", "hard_offs")
    for key, was in before.items():
        moved = tuple(after[key][c] - was[c] for c in counts)
        assert moved == ((1, 1, 0) if key == (endpoint, vm) else (0, 0, 0)), (key, moved)
    assert after[(endpoint, vm)]["power"] == "running"
    # the runbook's defaults (audit log, locks) live in the user's HOME, nothing needs root
    audit = user["dir"] / "home" / ".ansible" / "virtops" / "audit.jsonl"
    assert "install-test" in audit.read_text(encoding="utf-8")


def test_install_from_git_needs_distlib_then_gives_the_tarballs_files(user):
    """`ansible-galaxy collection install git+URL,TAG` builds from galaxy.yml's manifest, which
    needs distlib (README); a repository of the checkout's files, tagged, stands for the project's."""
    repo = user["dir"] / "repo"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, name)):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), repo / name)
    git = ["git", "-c", "user.name=install-test", "-c", "user.email=install-test@localhost"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "release"], ["tag", "v0.2.0"]):
        subprocess.run(git + argv, cwd=repo, check=True, capture_output=True)
    source = "git+file://%s,v0.2.0" % repo
    target = user["dir"] / "git-collections"
    venv_python = os.path.join(user["bin"], "python")
    has_distlib = subprocess.run([venv_python, "-c", "import distlib"], capture_output=True, check=False)
    if has_distlib.returncode != 0:
        proc = subprocess.run([os.path.join(user["bin"], "ansible-galaxy"), "collection", "install", source,
                               "-p", str(target)], cwd=user["dir"], env=user["env"], capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode != 0 and "distlib" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        sh([venv_python, "-m", "pip", "install", "-q", "distlib"], user["dir"],
           {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")})
    run(user, "ansible-galaxy", "collection", "install", source, "-p", str(target))
    from_git = target / "ansible_collections" / "virtops" / "unified"

    def listing(top):
        return sorted(os.path.relpath(os.path.join(d, f), top) for d, _dirs, fs in os.walk(top) for f in fs
                      if f not in ("MANIFEST.json", "FILES.json") and "__pycache__" not in d)
    assert listing(from_git) == listing(user["installed"])
