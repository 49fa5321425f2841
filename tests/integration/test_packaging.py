"""The built tarball carries the collection and nothing else.

`ansible-galaxy collection build` runs on a copy of the checkout (its tracked and
not-ignored files) into which the things a user leaves in a checkout are planted:
an inventory with a password, an impact report, build and test output. The
tarball's members are listed with tarfile: none of the decoys, nothing outside
galaxy.yml's allowlist (its `manifest:` directives), every runtime file of the
checkout, and no member that holds the planted password.
"""

import os
import re
import shutil
import subprocess
import tarfile

import pytest
import yaml

from helpers import BIN, ROOT

SECRET = "Pl4nted prod pw 9c1e"
DECOYS = {
    "inventory/prod.vmware.yml": "plugin: virtops.unified.vmware\nhostname: vc.prod\nusername: ops\n"
                                 "password: \"%s\"\n" % SECRET,
    "impact-20260101T000000/impact.csv": "vm,host\nweb01,esx01\n",
    ".build/x": SECRET,
    "tests/output/x": SECRET,
    "reports/x": SECRET,
    "demo/out/x": SECRET,
    "virtops-unified-0.1.0.tar.gz": SECRET,
    "bench/results/x.json": SECRET,
    ".ansible/collections/x": SECRET,
    "plugins/modules/__pycache__/vm_power.cpython-311.pyc": SECRET,
    "playbooks/.restart_vm.yml.swp": SECRET,
}
# What a collection user needs, and only that (see galaxy.yml's manifest).
ALLOWED = [
    r"MANIFEST\.json", r"FILES\.json",
    r"README\.md", r"CHANGELOG\.rst", r"requirements\.txt", r"bindep\.txt", r"LICENSE", r"COPYING",
    r"meta(/[^/]+\.yml)?",
    r"plugins(/.+)?", r"roles(/.+)?", r"playbooks(/.+)?", r"extensions(/.+)?", r"docs(/[^/]+\.md)?",
    r"changelogs(/changelog\.yaml|/config\.yaml)?",
    r"awx(/[^/]+\.(yml|md)|/inventory(/[^/]+\.yml)?)?",
]
# The runtime parts: every tracked file under these is in the tarball.
RUNTIME = ("plugins/", "roles/", "playbooks/", "extensions/", "meta/")
REQUIRED = ["README.md", "requirements.txt", "bindep.txt", "CHANGELOG.rst", "meta/runtime.yml",
            "plugins/modules/vm_power.py", "plugins/inventory/vmware.py", "roles/restart_vm/tasks/main.yml",
            "playbooks/restart_vm.yml", "changelogs/changelog.yaml"]


def checkout_files():
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return sorted(f for f in out.split("\0") if f and os.path.isfile(os.path.join(ROOT, f)))


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    base = tmp_path_factory.mktemp("packaging")
    tree, dist = base / "unified", base / "dist"
    for name in checkout_files():  # as rsync --files-from would copy them
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), tree / name, follow_symlinks=False)
    for path, text in DECOYS.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text, encoding="utf-8")
    dist.mkdir()
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist)],
                          cwd=tree, capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(base / "none.cfg"), ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = sorted(dist.glob("virtops-unified-*.tar.gz"))
    assert len(built) == 1, built
    with tarfile.open(built[0]) as tar:
        members = {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}
    return members


def test_no_decoy_is_packed(tarball):
    for decoy in DECOYS:
        top = decoy.split("/")[0]
        assert decoy not in tarball
        if top not in ("plugins", "playbooks"):
            assert not any(n == top or n.startswith(top + "/") for n in tarball), (top, sorted(tarball))
    for top in ("inventory", "tests", "lab", "bench", "scripts", "demo", "reports", ".build", ".venv", ".ci",
                "galaxy.yml", "ansible.cfg", "execution-environment.yml", "requirements-test.txt"):
        assert not any(n == top or n.startswith(top + "/") for n in tarball), top


def test_nothing_outside_the_allowlist(tarball):
    allowed = re.compile("|".join("(?:%s)" % a for a in ALLOWED))
    outside = sorted(n for n in tarball if not allowed.fullmatch(n))
    assert not outside, "packed, but not in the allowlist: %s" % outside
    odd = sorted(n for n in tarball if re.search(r"(^|/)(\.|__pycache__)|\.pyc$|\.swp$|\.tar\.gz$", n))
    assert not odd, odd


def test_no_member_holds_the_planted_secret(tarball):
    leaking = [n for n, data in tarball.items() if data is not None and SECRET.encode() in data]
    assert not leaking, leaking


def test_the_collection_is_packed_whole(tarball):
    for name in REQUIRED:
        assert name in tarball, name
    missing = [f for f in checkout_files() if f.startswith(RUNTIME) and f not in tarball]
    assert not missing, "runtime files that galaxy.yml's manifest leaves out: %s" % missing
    for name in REQUIRED:
        with open(os.path.join(ROOT, name), "rb") as f:
            assert tarball[name] == f.read(), name


@pytest.mark.parametrize("definition", ["execution-environment.yml", "decision-environment.yml"])
def test_an_image_that_installs_the_collection_from_source_has_distlib(definition):
    """galaxy.yml's manifest needs distlib wherever ansible-galaxy builds the collection from
    source: an image's galaxy stage installing the copy in its context (type: dir) too."""
    path = os.path.join(ROOT, definition)
    if not os.path.isfile(path):
        pytest.skip("no %s" % definition)
    with open(path, encoding="utf-8") as f:
        image = yaml.safe_load(f)
    with open(os.path.join(ROOT, image["dependencies"]["galaxy"]), encoding="utf-8") as f:
        wanted = yaml.safe_load(f)["collections"]
    if not any(isinstance(c, dict) and c.get("type") in ("dir", "git") for c in wanted):
        pytest.skip("%s installs no collection from source" % definition)
    steps = (image.get("additional_build_steps") or {}).get("prepend_galaxy") or []
    steps = [steps] if isinstance(steps, str) else steps
    assert any("pip install" in s and "distlib" in s for s in steps), (
        "%s: add to additional_build_steps: prepend_galaxy: - RUN $PYCMD -m pip install --no-cache-dir distlib"
        % definition)
