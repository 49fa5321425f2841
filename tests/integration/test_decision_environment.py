"""The decision environment (decision-environment.yml) for EDA controller: `ansible-builder
create` writes its build context offline, and that context holds ansible-rulebook and Java,
the collection with its event source and rulebooks, and the platform clients that
ansible-builder's introspection finds in the collection, as in the execution environment.
Nothing is built: that needs podman or docker (`ansible-builder build`)."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from ansible_collections.virtops.unified.plugins.module_utils import registry
from helpers import BIN, ROOT

DE_FILE = os.path.join(ROOT, "decision-environment.yml")
EE_FILE = os.path.join(ROOT, "execution-environment.yml")


def _load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _req_names(text):
    return {Requirement(line.split("#", 1)[0]).name.lower()
            for line in text.splitlines() if line.split("#", 1)[0].strip()}


def _bindep_lines(text):
    return {line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()}


def _create(definition, context):
    begun = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", definition, "--context", str(context)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print("ansible-builder create -f %s: %.1f s" % (os.path.basename(definition), time.monotonic() - begun))
    return Path(context)


def _containerfile(context):
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return (context / name).read_text()
    raise AssertionError("ansible-builder wrote no Containerfile in %s" % context)


@pytest.fixture(scope="module")
def de_context(tmp_path_factory):
    return _create(DE_FILE, tmp_path_factory.mktemp("de") / "context")


@pytest.fixture(scope="module")
def de_introspected(de_context, tmp_path_factory):
    """The builder stage, run here: the galaxy stage's collection install from the context,
    then introspect.py over those collections with the definition's own python and system
    lists. Returns (requirements.txt, bindep.txt) as the image's final stage installs them."""
    build = de_context / "_build"
    collections = tmp_path_factory.mktemp("de-collections")
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-r", "requirements.yml",
                           "--collections-path", str(collections)],
                          cwd=build, capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    installed = collections / "ansible_collections" / "virtops" / "unified"
    assert (installed / "MANIFEST.json").is_file()
    for rulebook in Path(ROOT, "extensions", "eda", "rulebooks").glob("*.yml"):
        assert (installed / "extensions" / "eda" / "rulebooks" / rulebook.name).is_file()
    assert (installed / "extensions" / "eda" / "plugins" / "event_source" / "hypervisor_health.py").is_file()
    out = tmp_path_factory.mktemp("de-introspected")
    proc = subprocess.run([os.path.join(BIN, "python"), str(build / "scripts" / "introspect.py"), "introspect",
                           str(collections), "--user-pip=requirements.txt", "--user-bindep=bindep.txt",
                           "--write-pip=%s" % (out / "requirements.txt"), "--write-bindep=%s" % (out / "bindep.txt")],
                          cwd=build, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return (out / "requirements.txt").read_text(), (out / "bindep.txt").read_text()


def test_decision_environment_has_no_type_key_and_runs_ansible_rulebook(de_context):
    definition = _load(DE_FILE)
    assert definition["version"] == 3
    # ansible-builder 3's schema has no `type` (it would refuse the file); a DE is an EE with ansible-rulebook
    assert "type" not in definition
    containerfile = _containerfile(de_context)
    assert 'EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"] in containerfile
    assert 'PYCMD="%s"' % definition["dependencies"]["python_interpreter"]["python_path"] in containerfile
    assert "ansible-core" in containerfile and "ansible-runner" in containerfile
    assert "RUN ansible-rulebook --version" in containerfile
    assert "COPY _build/configs/ssh_known_hosts /etc/ssh/ssh_known_hosts" in containerfile
    build = de_context / "_build"
    assert "ansible-rulebook" in _req_names((build / "requirements.txt").read_text())
    assert any(line.startswith("java-17-openjdk") for line in _bindep_lines((build / "bindep.txt").read_text()))


def test_decision_environment_holds_the_collection_as_the_execution_environment_does(de_context):
    de, ee = _load(DE_FILE), _load(EE_FILE)
    assert de["dependencies"]["galaxy"] == ee["dependencies"]["galaxy"]
    assert de["additional_build_files"] == ee["additional_build_files"], \
        "decision-environment.yml must copy what execution-environment.yml copies of the collection"
    build = de_context / "_build"
    assert _load(build / "requirements.yml") == _load(os.path.join(ROOT, ee["dependencies"]["galaxy"]))
    copy = build / "virtops_unified"
    for entry in de["additional_build_files"]:
        src, dest = Path(ROOT, entry["src"]), build / entry["dest"]
        if src.is_file():
            assert (dest / src.name).is_file(), src
            continue
        for path in src.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert (dest / path.relative_to(src)).is_file(), path
    for rulebook in Path(ROOT, "extensions", "eda", "rulebooks").glob("*.yml"):
        assert (copy / "extensions" / "eda" / "rulebooks" / rulebook.name).read_text() == rulebook.read_text()
    assert (copy / "requirements.txt").read_text() == Path(ROOT, "requirements.txt").read_text()
    assert (copy / "bindep.txt").read_text() == Path(ROOT, "bindep.txt").read_text()


def test_decision_environment_installs_the_platform_clients_and_rulebook(de_introspected):
    requirements, bindep = de_introspected
    names = _req_names(requirements)
    clients = _req_names("\n".join(p.client["pip"] for p in registry.platforms().values() if p.client.get("pip")))
    assert clients and clients <= names, "platform clients missing from the DE: %s" % sorted(clients - names)
    assert "ansible-rulebook" in names
    lines = _bindep_lines(bindep)
    assert any(line.startswith("java-17-openjdk") for line in lines)
    for platform in registry.platforms().values():
        for line in platform.client.get("bindep") or ():
            assert line in lines, line
