"""The AWX side: job templates, surveys, credential types, inventory sources and the
execution environment, each run or built the way AWX / Automation Controller does it.

No AWX runs here. What AWX does for a job, and what stands in for it:

* execution environment: ``ansible-builder create`` writes the build context of
  execution-environment.yml; the collection is installed from that context exactly as
  the image's galaxy stage does (``ansible-galaxy collection install -r requirements.yml``
  in ``_build``), and that installed copy is the one every job below runs.
* job: ``ansible_runner.run()`` on a private data dir laid out as AWX lays it out:
  ``project/`` (a copy of the checkout without .git, like AWX's project copy),
  ``inventory/`` (the awx/ inventory source of the vCenter peer, whose state persists, so every
  job's end state is read back with pyVmomi and the peer's control API; a libvirt test:/// lab
  for the checks that must change nothing), ``env/extravars`` (the job template's
  extra_vars, the survey answers validated and defaulted as AWX does at launch, and the
  ``awx_*`` / ``tower_*`` variables, written as AWX writes them for its setting
  ALLOW_JINJA_IN_EXTRA_VARS: ``template`` by default, every string ``!unsafe`` except the
  template's own extra_vars), ``env/envvars`` (AWX's job environment incl. the
  ANSIBLE_COLLECTIONS_PATH it computes, AWX_TASK_ENV, credential injections),
  ``env/settings`` and ``env/cmdline``. AWX runs this in a container at /runner; here
  the private data dir is used in place (no container engine), so injected file paths
  are host paths.
* credentials: custom credential types are validated and injected by a transcription
  of AWX's CredentialType.inject_credential (sandboxed Jinja, files in env/, 0600).
* inventory update: ``ansible-inventory --list --export -i project/<source_path>``
  run by ansible-runner from an ``args`` file, as AWX runs it.

Every job template of awx/job_templates.yml marked ``ready`` runs, nothing is skipped:
one that is not ready yet is left out by that flag, and the flag is checked against
playbooks/. Each runbook's end state is checked independently of the job's output:
pyVmomi and the vCenter peer's own record of the calls it received (a restart is a
guest shutdown and a power-on; an evacuated host has no VM left; a dead host's VMs run
elsewhere), and the report files against the peer's state.
"""

import copy
import getpass
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import ansible_runner
import pytest
import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from packaging.requirements import Requirement

from ansible_collections.virtops.unified.plugins.module_utils import registry
from helpers import BIN, ROOT, _plain, virsh

AWX_DIR = os.path.join(ROOT, "awx")
EE_FILE = os.path.join(ROOT, "execution-environment.yml")
EE_CONTEXT = os.path.join(ROOT, ".build", "ee-context")
AWX_USER = "jdoe"


# --- the definitions -------------------------------------------------------------------
class _Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """YAML as Ansible reads it: `!unsafe` strings stay plain strings."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)  # nosec - SafeLoader subclass


TEMPLATES = load(os.path.join(AWX_DIR, "job_templates.yml"))["virtops_awx_job_templates"]
CREDENTIAL_TYPES = load(os.path.join(AWX_DIR, "credential_types.yml"))["virtops_awx_credential_types"]
INVENTORY_SOURCES = load(os.path.join(AWX_DIR, "inventory_sources.yml"))["virtops_awx_inventory_sources"]
READY = [t for t in TEMPLATES if t["ready"]]


def runbook_of(template):
    return Path(template["playbook"]).stem


def credential_type(platform):
    return next(t for t in CREDENTIAL_TYPES if t["platform"] == platform)


# --- AWX's survey rules (awx/api/views JobTemplateSurveySpec, models/mixins SurveyJobTemplateMixin)
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "integer": int, "float": (float, int),
                "multiplechoice": str, "multiselect": (str, list)}
RESERVED_PREFIXES = ("awx_", "tower_", "ansible_")


def survey_spec_errors(spec):
    """What AWX's API answers when the survey is saved (empty: accepted)."""
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(spec.get(field), kind):
            errors.append("field %r missing or not %s" % (field, kind.__name__))
    if errors or not spec["spec"]:
        return errors or ["'spec' doesn't contain any items"]
    seen = set()
    for idx, item in enumerate(spec["spec"]):
        for field, kind in (("type", str), ("question_name", str), ("variable", str), ("required", bool)):
            if not isinstance(item.get(field), kind):
                errors.append("question %d: %r missing or not %s" % (idx, field, kind.__name__))
        if item.get("variable") in seen:
            errors.append("question %d: variable %r duplicated" % (idx, item["variable"]))
        seen.add(item.get("variable"))
        qtype = item.get("type")
        if qtype not in SURVEY_TYPES:
            errors.append("question %d: type %r not allowed" % (idx, qtype))
            continue
        if item.get("default", "") != "" and not isinstance(item["default"], SURVEY_TYPES[qtype]):
            errors.append("question %d: default %r is not %s" % (idx, item["default"], qtype))
        for key in ("min", "max"):
            if key in item and item[key] is not None and not isinstance(item[key], int):
                errors.append("question %d: %s is not an integer" % (idx, key))
        if qtype in ("multiplechoice", "multiselect"):
            if "choices" not in item:
                errors.append("question %d: %s without choices" % (idx, qtype))
            elif "default" in item:
                defaults = item["default"] if isinstance(item["default"], list) else item["default"].splitlines()
                if qtype == "multiplechoice" and len(defaults) > 1:
                    errors.append("question %d: more than one default" % idx)
                if any(d not in item["choices"] for d in defaults):
                    errors.append("question %d: default not among the choices" % idx)
    return errors


def _answer_errors(item, value):
    """AWX's _survey_element_validation for one answer."""
    var, qtype = item["variable"], item["type"]
    if qtype in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return ["Value %r for '%s' expected to be a string." % (value, var)]
        if item.get("min") not in ("", None) and len(value) < int(item["min"]):
            return ["'%s' value %s is too small (length is %d must be at least %s)." % (var, value, len(value), item["min"])]
        if item.get("max") not in ("", None) and len(value) > int(item["max"]):
            return ["'%s' value %s is too large (must be no more than %s)." % (var, value, item["max"])]
    elif qtype == "integer":
        # AWX's own test: a bool is not an integer answer
        if type(value) is not int:  # pylint: disable=unidiomatic-typecheck
            return ["Value %r for '%s' expected to be an integer." % (value, var)]
        if item.get("min") not in ("", None) and value < int(item["min"]):
            return ["'%s' value %s is too small (must be at least %s)." % (var, value, item["min"])]
        if item.get("max") not in ("", None) and value > int(item["max"]):
            return ["'%s' value %s is too large (must be no more than %s)." % (var, value, item["max"])]
    elif qtype == "multiplechoice" and value not in item["choices"]:
        return ["Value %s for '%s' expected to be one of %s." % (value, var, item["choices"])]
    return []


def launch_vars(template, answers):
    """Extra vars of a job launched with these survey answers, or AWX's refusal (ValueError).

    As AWX (models/mixins.py): SurveyJobTemplateMixin._accept_or_ignore_variables checks the
    launch's own data first, so a required question must be answered even when it has a
    default; only then does _update_unified_job_kwargs lay the template's extra_vars, the
    valid defaults and the answers over each other, in that order."""
    errors = []
    for item in template["survey_spec"]["spec"]:
        var = item["variable"]
        if var in answers:
            errors += _answer_errors(item, answers[var])
        elif item["required"]:
            errors.append("'%s' value missing" % var)
    if errors:
        raise ValueError("; ".join(errors))
    extra = dict(template.get("job_template", {}).get("extra_vars") or {})
    for item in template["survey_spec"]["spec"]:
        if item.get("default") is not None and not _answer_errors(item, item["default"]):
            extra[item["variable"]] = item["default"]
    extra.update({item["variable"]: answers[item["variable"]] for item in template["survey_spec"]["spec"]
                  if item["variable"] in answers})
    return extra


def awx_meta_vars(job_id, template):
    """What AWX adds to every job's extra vars (Job.awx_meta_vars)."""
    meta = {"job_id": job_id, "job_launch_type": "manual", "job_template_id": 7,
            "job_template_name": template["name"], "project_revision": "0" * 40, "project_scm_branch": "main",
            "user_id": 3, "user_name": AWX_USER, "user_email": "jdoe@example.com", "user_first_name": "Jane",
            "user_last_name": "Doe", "inventory_id": 2, "inventory_name": "virtops estate",
            "execution_node": "awx-task-0", "host": "https://awx.example.com"}
    out = {}
    for prefix in ("awx_", "tower_"):
        out.update({prefix + key: value for key, value in meta.items()})
    return out


# --- AWX's credential types (awx/main/fields.py, models/credential.py) -----------------
ENV_BLOCKLIST = {"VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID",
                 "INVENTORY_UPDATE_ID", "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES",
                 "CALLBACK_QUEUE", "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS",
                 "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"}
FIELD_KEYS = {"id", "label", "type", "format", "choices", "help_text", "multiline", "secret", "ask_at_runtime", "default"}
NAME = re.compile(r"^[a-zA-Z_]+[a-zA-Z0-9_]*$")


class _Namespace:  # the `tower` namespace of injector templates
    pass


def credential_type_errors(ctype):
    """What AWX answers when the credential type is saved (empty: accepted)."""
    errors = []
    if ctype.get("kind") not in ("cloud", "net"):
        errors.append("kind must be cloud or net for a custom type")
    inputs, injectors = ctype.get("inputs", {}), ctype.get("injectors", {})
    if set(inputs) - {"fields", "required"}:
        errors.append("unknown inputs keys %s" % (set(inputs) - {"fields", "required"}))
    ids = []
    for field in inputs.get("fields", []):
        ids.append(field.get("id"))
        if set(field) - FIELD_KEYS or not {"id", "label"} <= set(field):
            errors.append("field %r: keys %s" % (field.get("id"), sorted(field)))
        if not NAME.match(field.get("id", "")) or field.get("id") == "tower":
            errors.append("field id %r" % field.get("id"))
        kind = field.get("type", "string")
        if kind not in ("string", "boolean"):
            errors.append("field %s: type %s" % (field["id"], kind))
        wanted = {"string": str, "boolean": bool}.get(kind)
        if "default" in field and type(field["default"]) is not wanted:  # pylint: disable=unidiomatic-typecheck
            errors.append("field %s: default %r is not a %s" % (field["id"], field["default"], kind))
        if kind != "string" and set(field) & {"choices", "multiline", "format", "secret"}:
            errors.append("field %s: string-only keys on a %s" % (field["id"], kind))
        if field.get("format") not in (None, "ssh_private_key", "url"):
            errors.append("field %s: format %s" % (field["id"], field["format"]))
        if "choices" in field and field.get("default", field["choices"][0]) not in field["choices"]:
            errors.append("field %s: default not among the choices" % field["id"])
    if len(ids) != len(set(ids)):
        errors.append("field ids are not unique")
    if not set(inputs.get("required", [])) <= set(ids):
        errors.append("required names unknown fields")
    if set(injectors) - {"file", "env", "extra_vars"}:
        errors.append("unknown injector kinds %s" % (set(injectors) - {"file", "env", "extra_vars"}))
    files = list(injectors.get("file", {}))
    if any(not re.match(r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$", name) for name in files):
        errors.append("file injector names %s" % files)
    if "template" in files and len(files) > 1:
        errors.append("must use multi-file syntax when injecting multiple files")
    for var, value in injectors.get("env", {}).items():
        if not NAME.match(var) or var.startswith("ANSIBLE_") or var in ENV_BLOCKLIST:
            errors.append("env var %s is not allowed in credentials" % var)
        if not value.isascii():
            errors.append("env var %s: value is not ASCII" % var)
    # every template must render with each field set and StrictUndefined
    namespace = {fid: "EXAMPLE" for fid in ids}
    namespace["tower"] = tower = _Namespace()
    tower.filename = "EXAMPLE_FILENAME" if "template" in files else _Namespace()
    for name in files:
        if "." in name:
            setattr(tower.filename, name.split(".", 1)[1], "EXAMPLE_FILENAME")
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    for kind, mapping in injectors.items():
        for key, tmpl in mapping.items():
            try:
                env.from_string(tmpl).render(namespace)
            except (UndefinedError, TemplateSyntaxError, SecurityError) as exc:
                errors.append("%s %s: %s" % (kind, key, exc))
    return errors


def inject(ctype, inputs, private_data_dir):
    """AWX's CredentialType.inject_credential for a custom type: returns the env it adds."""
    namespace = {"tower": _Namespace()}
    for key, value in inputs.items():
        if isinstance(value, bool) or len(value):
            namespace[key] = value
    for field in ctype["inputs"]["fields"]:
        if field.get("type") == "boolean" and field["id"] not in inputs:
            namespace[field["id"]] = False
        if field.get("format") == "ssh_private_key" and field["id"] in namespace and not namespace[field["id"]].endswith("\n"):
            namespace[field["id"]] += "\n"
    sandbox = ImmutableSandboxedEnvironment()
    tower = namespace["tower"]
    for label, tmpl in ctype["injectors"].get("file", {}).items():
        handle, path = tempfile.mkstemp(dir=os.path.join(private_data_dir, "env"))
        with os.fdopen(handle, "w") as out:
            out.write(sandbox.from_string(tmpl).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = _Namespace()
            setattr(tower.filename, label.split(".", 1)[1], path)
    return {var: sandbox.from_string(tmpl).render(**namespace) for var, tmpl in ctype["injectors"].get("env", {}).items()}


# --- the execution environment -------------------------------------------------------
@pytest.fixture(scope="module")
def ee_context():
    """`ansible-builder create` of execution-environment.yml (writes a context, builds nothing)."""
    shutil.rmtree(EE_CONTEXT, ignore_errors=True)
    begun = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                           "--context", os.path.relpath(EE_CONTEXT, ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print("ansible-builder create: %.1f s" % (time.monotonic() - begun))
    return Path(EE_CONTEXT)


@pytest.fixture(scope="module")
def ee_collections(ee_context, tmp_path_factory):
    """The image's /usr/share/ansible/collections: the galaxy stage's command, run in _build."""
    target = tmp_path_factory.mktemp("ee") / "collections"
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-r", "requirements.yml",
                           "--collections-path", str(target)],
                          cwd=ee_context / "_build", capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (target / "ansible_collections" / "virtops" / "unified" / "MANIFEST.json").is_file()
    return target


def _containerfile(context):
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return (context / name).read_text()
    raise AssertionError("ansible-builder wrote no Containerfile in %s" % context)


def _bindep_lines(text):
    return {line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()}


def _req_names(text):
    return {Requirement(line.split("#", 1)[0]).name.lower()
            for line in text.splitlines() if line.split("#", 1)[0].strip()}


def test_execution_environment_context_holds_our_dependencies(ee_context, ee_collections):
    definition = load(EE_FILE)
    containerfile = _containerfile(ee_context)
    build = ee_context / "_build"
    assert 'EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"] in containerfile
    assert 'PYCMD="%s"' % definition["dependencies"]["python_interpreter"]["python_path"] in containerfile
    assert "ansible-core" in containerfile and "ansible-runner" in containerfile
    # python: requirements.txt, as is
    ours = _req_names(Path(ROOT, "requirements.txt").read_text())
    assert ours == _req_names("\n".join(p.client["pip"] for p in registry.platforms().values()))
    assert _req_names((build / "requirements.txt").read_text()) == ours
    # system: bindep.txt with the libvirt client library (and what building libvirt-python needs)
    bindep = _bindep_lines((build / "bindep.txt").read_text())
    assert _bindep_lines(Path(ROOT, "bindep.txt").read_text()) == bindep
    for line in ("libvirt-libs [platform:rpm]", "libvirt-devel [platform:rpm compile]", "gcc [compile]",
                 "pkgconf-pkg-config [platform:rpm compile]", "openssh-clients [platform:rpm]"):
        assert line in bindep
    # galaxy: this collection, installed in the galaxy stage from the copy in the context
    assert load(build / "requirements.yml") == load(os.path.join(AWX_DIR, "ee", "requirements.yml"))
    assert (build / "virtops_unified" / "galaxy.yml").is_file()
    assert re.search(r"ansible-galaxy collection install .*-r requirements.yml", containerfile)
    assert "COPY _build/configs/ssh_known_hosts /etc/ssh/ssh_known_hosts" in containerfile
    # the builder stage's own introspection over the collections of the image, as in the Containerfile
    out = ee_context / "introspected"
    proc = subprocess.run([os.path.join(BIN, "python"), str(build / "scripts" / "introspect.py"), "introspect",
                           str(ee_collections), "--user-pip=requirements.txt", "--user-bindep=bindep.txt",
                           "--write-pip=%s" % (out / "requirements.txt"), "--write-bindep=%s" % (out / "bindep.txt")],
                          cwd=build, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _req_names((out / "requirements.txt").read_text()) == ours
    assert "libvirt-libs [platform:rpm]  # from collection virtops.unified" in (out / "bindep.txt").read_text()


# what a collection build holds that the image does not need at run time
NOT_RUNTIME = {"MANIFEST.json", "FILES.json", "tests", "docs", "awx", "scripts", "demo", "changelogs",
               "execution-environment.yml", "requirements-run.txt", "requirements-test.txt", "requirements-eda.txt",
               "ansible.cfg",
               ".ansible-lint", ".ci", "CHANGELOG.rst"}


def test_execution_environment_installs_every_runtime_part_of_the_collection(ee_collections, tmp_path):
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    tarball = next(tmp_path.glob("virtops-unified-*.tar.gz"))
    with tarfile.open(tarball) as tar:
        built = {name.split("/", 1)[0] for name in tar.getnames()}
        built_files = {name for name in tar.getnames() if tar.getmember(name).isfile()}
    installed_root = ee_collections / "ansible_collections" / "virtops" / "unified"
    installed = {p.name for p in installed_root.iterdir()}
    # dot-directories are tools' state (ansible-lint's .ansible/, .pytest_cache/), never runtime content
    missing = {name for name in built - installed - NOT_RUNTIME if not name.startswith(".")}
    assert not missing, ("execution-environment.yml does not copy %s into the image's collection: add it to "
                         "additional_build_files, or to NOT_RUNTIME here" % sorted(missing))
    runtime_files = {f for f in built_files if f.split("/", 1)[0] in installed and f.split("/", 1)[0] not in NOT_RUNTIME}
    assert {f for f in runtime_files if not (installed_root / f).is_file()} == set()


# --- the definitions, statically --------------------------------------------------------
def test_job_templates_cover_the_runbooks_and_ready_means_present():
    names = [t["name"] for t in TEMPLATES]
    assert len(names) == len(set(names))
    playbooks = {"playbooks/%s" % p for p in os.listdir(os.path.join(ROOT, "playbooks")) if p.endswith(".yml")}
    declared = {t["playbook"] for t in TEMPLATES}
    assert playbooks <= declared, "runbooks without a job template in awx/job_templates.yml: %s" % sorted(playbooks - declared)
    for template in TEMPLATES:
        present = os.path.isfile(os.path.join(ROOT, template["playbook"]))
        assert present == template["ready"], (
            "%s: ready=%s but %s %s: set ready: %s in awx/job_templates.yml"
            % (template["name"], template["ready"], template["playbook"], "exists" if present else "does not exist", present))
    assert set(RUNBOOK_CHECKS) >= {runbook_of(t) for t in READY}, "every ready runbook needs a lab check here"


def _role_options():
    options = set()
    for spec in Path(ROOT, "roles").glob("*/meta/argument_specs.yml"):
        for entry in (load(spec).get("argument_specs") or {}).values():
            options |= set(entry.get("options") or {})
    return options


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["name"] for t in TEMPLATES])
def test_survey_is_valid_for_awx(template):
    assert survey_spec_errors(copy.deepcopy(template["survey_spec"])) == []
    variables = [q["variable"] for q in template["survey_spec"]["spec"]]
    assert not [v for v in variables if v.startswith(RESERVED_PREFIXES)]
    assert set(template.get("job_template", {})) <= {
        "ask_job_type_on_launch", "ask_diff_mode_on_launch", "ask_variables_on_launch", "allow_simultaneous",
        "timeout", "extra_vars"}
    if template["ready"]:
        # every question feeds the runbook: a variable of its playbook or an option of a role
        text = Path(ROOT, template["playbook"]).read_text()
        unused = [v for v in variables if not re.search(r"\b%s\b" % re.escape(v), text) and v not in _role_options()]
        assert not unused, "survey variables the runbook never reads: %s" % unused
    # AWX refuses a launch without the required answers (a default does not stand in for one),
    # and fills in the defaults of the others
    required = [q["variable"] for q in template["survey_spec"]["spec"] if q["required"]]
    if required:
        with pytest.raises(ValueError, match="'%s' value missing" % required[0]):
            launch_vars(template, {})
    # so a question with a default is not required: an API launch (EDA, awx.awx) may leave it out
    assert not [q["variable"] for q in template["survey_spec"]["spec"] if q["required"] and "default" in q]


@pytest.mark.parametrize("ctype", CREDENTIAL_TYPES, ids=[t["name"] for t in CREDENTIAL_TYPES])
def test_credential_type_is_valid_for_awx(ctype):
    assert credential_type_errors(ctype) == []


def test_inventory_sources_name_files_and_credentials_that_exist():
    for source in INVENTORY_SOURCES:
        path = Path(ROOT, source["source_path"])
        assert path.is_file(), source
        plugin = load(path)["plugin"]
        assert path.name.endswith("%s.yml" % plugin.rsplit(".", 1)[1])
        assert credential_type(source["credential"])
        settings = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"(?i)password|secret|keyfile|private", settings), "no secret in %s" % path


# --- the lab: two fake hypervisors of libvirt's test:/// driver ----------------------------
# name -> run state (1 running, 5 shut off). app02 is defined on both with one uuid (shared
# storage): running on kvm01, a standby on kvm02, which is where recovery starts it.
LAB = {"kvm01": {"web01": 1, "db01": 1, "app01": 5, "app02": 1}, "kvm02": {"web02": 1, "cache01": 1, "app02": 5}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("awx-lab")
    uris = {}
    ids = {name: str(uuid.uuid4()) for vms in LAB.values() for name in vms}
    for host, vms in LAB.items():
        doms = "".join(
            '<domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">'
            "<name>%s</name><uuid>%s</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
            "<test:runstate>%d</test:runstate></domain>" % (name, ids[name], state) for name, state in vms.items())
        (root / ("%s.xml" % host)).write_text("<node>%s</node>" % doms)
        uris[host] = "test://%s" % (root / ("%s.xml" % host))
    inventory = ["plugin: virtops.unified.libvirt", "hypervisors:"]
    inventory += ["  - {name: %s, uri: '%s', cluster: prod}" % (host, uri) for host, uri in uris.items()]
    return {"uris": uris, "inventory": "\n".join(inventory) + "\n",
            "uuids": {host: {name: virsh(uri, "domuuid", name) for name in LAB[host]} for host, uri in uris.items()}}


def _copy_project(dest):
    """AWX's project copy: the checkout without .git (and without what a fresh clone lacks)."""
    shutil.copytree(ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".build", ".pytest_cache", "__pycache__", ".ansible", "output"))


class _UnsafeDumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    """Every string (keys too) as an Ansible `!unsafe` scalar."""

    def represent_str(self, data):
        return self.represent_scalar("!unsafe", data)


_UnsafeDumper.add_representer(str, _UnsafeDumper.represent_str)


def awx_extravars_yaml(extravars, trusted, allow_jinja="template"):
    """env/extravars as AWX writes it (RunJob.build_extra_vars_file): with its setting
    ALLOW_JINJA_IN_EXTRA_VARS at "template" (the default) or "never", a top-level variable
    is marked !unsafe (never templated by Ansible) unless it is the job template's own
    extra var with the template's value; "always" writes every variable as is."""
    if allow_jinja == "always" or not extravars:
        return yaml.safe_dump(extravars)  # "{}" when empty: ansible-playbook needs a mapping
    trusted = trusted if allow_jinja == "template" else {}
    out = []
    for key, value in extravars.items():
        plain = key in trusted and trusted[key] == value
        out.append(yaml.dump({key: value}, Dumper=yaml.SafeDumper if plain else _UnsafeDumper))
    return "".join(out)


class AwxJob:
    """One private data dir laid out as AWX lays it out for a job, run by ansible-runner."""

    counter = 4700

    def __init__(self, root, ee_collections, template, answers, inventory=None, credentials=(), ssh_key=None,
                 job_type="run", inventory_file="lab.libvirt.yml", allow_jinja="template"):
        AwxJob.counter += 1
        self.job_type = job_type
        self.allow_jinja = allow_jinja  # AWX's ALLOW_JINJA_IN_EXTRA_VARS
        self.id = AwxJob.counter
        self.template = template
        self.pdd = root / ("job_%d" % self.id)
        self.state = root / "state"  # AWX_TASK_ENV: the persistent state directory
        for sub in ("inventory", "env", "artifacts"):
            (self.pdd / sub).mkdir(parents=True)
        _copy_project(self.pdd / "project")
        # several sources of one AWX inventory: {file name: text}
        for name, text in (inventory if isinstance(inventory, dict) else {inventory_file: inventory}).items():
            if text:
                (self.pdd / "inventory" / name).write_text(text)
        # RunJob.build_extra_vars_file: AWX's meta vars first, the launch's extra vars laid over them,
        # so a prompted launch can set awx_user_name: the audit records it as claimed only
        self.extravars = dict(awx_meta_vars(self.id, template), **launch_vars(template, answers)) if template else {}
        self.envvars = {
            # AWX's job environment (RunJob.build_env): ANSIBLE_COLLECTIONS_PATH as AWX computes it from the
            # project's ansible.cfg, with the image's collections (here: installed from the EE context)
            "ANSIBLE_COLLECTIONS_PATH": ":".join([str(self.pdd / "requirements_collections"), ".build/collections",
                                                  "~/.ansible/collections", str(ee_collections)]),
            "ANSIBLE_ROLES_PATH": ":".join([str(self.pdd / "requirements_roles"), "~/.ansible/roles"]),
            "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_FORCE_COLOR": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.pdd / "cp"), "JOB_ID": str(self.id), "INVENTORY_ID": "2",
            "PROJECT_REVISION": "0" * 40, "MAX_EVENT_RES": "700000", "AWX_HOST": "https://awx.example.com",
            "AWX_PRIVATE_DATA_DIR": str(self.pdd),
            "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
            # AWX_TASK_ENV (configure.yml, virtops_awx_state_dir)
            "VIRTOPS_AUDIT_LOG": str(self.state / "audit.jsonl"), "VIRTOPS_LOCK_DIR": str(self.state / "locks"),
            "VIRTOPS_LAST_KNOWN_DIR": str(self.state / "last_known"),
        }
        # AWX refuses two credentials of one type in a job (JobLaunchSerializer.validate, and
        # JobTemplateCredentialsList.is_valid_relation: Credential.unique_hash is the type)
        types = [ctype["name"] for ctype, _inputs in credentials]
        for name in types:
            if types.count(name) > 1:
                raise ValueError("Cannot assign multiple %s credentials." % name)
        for ctype, inputs in credentials:
            self.envvars.update(inject(ctype, inputs, str(self.pdd)))
        self.ssh_key = ssh_key
        self.runner = None

    def run(self, command=None):
        env = self.pdd / "env"
        trusted = dict((self.template or {}).get("job_template", {}).get("extra_vars") or {})
        (env / "extravars").write_text(awx_extravars_yaml(self.extravars, trusted, self.allow_jinja))
        (env / "envvars").write_text(yaml.safe_dump(self.envvars))
        (env / "settings").write_text(json.dumps({"job_timeout": 600, "suppress_ansible_output": True,
                                                  "suppress_output_file": True}))
        if self.ssh_key:  # a Machine credential: runner loads it into an ssh-agent for the run
            (env / "ssh_key").write_text(self.ssh_key)
        kwargs = {}
        if command:  # an inventory update: the whole command in `args`, as AWX writes it
            (self.pdd / "args").write_text(command)
        else:
            (env / "cmdline").write_text("--check -u root" if self.job_type == "check" else "-u root")
            kwargs["playbook"] = self.template["playbook"] if self.template else "probe.yml"
        begun = time.monotonic()
        with _job_environment():
            self.runner = ansible_runner.run(private_data_dir=str(self.pdd), ident=str(self.id), quiet=True, **kwargs)
        self.elapsed = time.monotonic() - begun  # pylint: disable=attribute-defined-outside-init
        self.events = list(self.runner.events)  # pylint: disable=attribute-defined-outside-init
        return self

    @property
    def status(self):
        return self.runner.status

    def started_tasks(self):
        return [e["event_data"].get("task") for e in self.events if e["event"] == "playbook_on_task_start"]

    def failures(self):
        return [e["event_data"] for e in self.events if e["event"] == "runner_on_failed"
                and not e["event_data"].get("ignore_errors")]

    def results(self, task):
        return [e["event_data"]["res"] for e in self.events
                if e["event"] in ("runner_on_ok", "runner_on_failed") and e["event_data"].get("task") == task]

    def stdout(self):
        return "\n".join(e.get("stdout", "") for e in self.events)

    def audit(self):
        path = self.state / "audit.jsonl"
        # outcome lines only: each action also has an intent line written before it
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [r for r in lines if r.get("phase") != "intent"]


class _job_environment:  # pylint: disable=invalid-name
    """The job sees the environment of an execution environment, not this test session's."""

    DROP = ("ANSIBLE_", "VIRTOPS_", "VMWARE_", "LIBVIRT_DEFAULT_URI", "SSH_AUTH_SOCK")

    def __enter__(self):
        self.saved = {k: v for k, v in os.environ.items() if k.startswith(self.DROP)}  # pylint: disable=attribute-defined-outside-init
        for key in self.saved:
            del os.environ[key]

    def __exit__(self, *exc):
        os.environ.update(self.saved)


# --- every ready job template, run as an AWX job -----------------------------------------
def _records(doc):
    """Every dict with a uuid and a host in a report (recursively)."""
    found = []
    if isinstance(doc, dict):
        if isinstance(doc.get("uuid"), str) and "host" in doc:
            found.append(doc)
        for value in doc.values():
            found += _records(value)
    elif isinstance(doc, list):
        for value in doc:
            found += _records(value)
    return found


# --- the job templates, run on the vCenter peer (persistent state, read back with pyVmomi) ----
@pytest.fixture(scope="module")
def vclab(vcsim):
    """A cluster of three ESXi hosts with VMs, and the AWX credential and inventory source that
    reach it: the jobs read and change real state, which the checks read back independently."""
    sim = vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "3", "-host", "0", "-vm", "6")
    source = next(s for s in INVENTORY_SOURCES if s["credential"] == "vmware")
    credential = (credential_type("vmware"), {"hostname": "127.0.0.1", "username": sim.username,
                                              "password": sim.password, "port": str(sim.port),
                                              "validate_certs": "false"})
    return {"sim": sim, "inventory": Path(ROOT, source["source_path"]).read_text(),
            "inventory_file": Path(source["source_path"]).name, "credentials": [credential]}


def _vms_by_host(sim):
    out = {}
    for vm in sim.state()["vms"]:
        out.setdefault(vm["host"], []).append(vm)
    return out


def _busiest_host(sim):
    by_host = _vms_by_host(sim)
    return max(sorted(by_host), key=lambda h: len(by_host[h]))


def _claims(job, record):
    # facts from the job's environment (JOB_ID) and the OS; the AWX user only as its variables claim it
    assert record["via"] == "awx job %d" % job.id and record["awx_job_id"] == str(job.id)
    assert record["who"] == getpass.getuser() and record["claimed_user"] == AWX_USER


def _answers_restart_vm(sim, _tmp):
    vm = next(v for v in sim.state()["vms"] if v["powerState"] == "poweredOn")
    sim.wait_tools(vm["instanceUuid"])
    return {"target": vm["name"], "reason": "INC-4711 %s hangs" % vm["name"]}, {
        "uuid": vm["instanceUuid"], "boot": sim.vm(vm["instanceUuid"]).runtime.bootTime,
        "ops": len(sim.operations(vm["instanceUuid"]))}


def _check_restart_vm(job, answers, sim, before):
    (record,) = job.audit()  # one power action, through this job
    _claims(job, record)
    assert record["reason"] == answers["reason"] and record["target"]["uuid"] == before["uuid"]
    assert record["state"] == "restarted" and record["result"] == "ok"
    vm = sim.vm(before["uuid"])  # pyVmomi: power-cycled, running again
    assert vm.runtime.powerState == "poweredOn" and vm.runtime.bootTime > before["boot"]
    # the peer's own record: a graceful shutdown, then a power-on; never a hard off
    assert sim.ops(before["uuid"], before["ops"]) == ["ShutdownGuest", "PowerOnVM_Task"]


def _answers_impact(sim, tmp):
    host = _busiest_host(sim)
    return {"failed_host": host, "report_dir": str(tmp / "report_dir")}, {
        "vms": {(v["instanceUuid"], host) for v in _vms_by_host(sim)[host]}}


def _check_host_failure_impact(job, answers, sim, before):
    report = Path(answers["report_dir"])
    assert {p.name for p in report.iterdir()} >= {"impact.csv", "impact.json", "impact.html"}
    listed = {(r["uuid"], r["host"]) for r in _records(json.loads((report / "impact.json").read_text()))}
    assert listed == before["vms"]  # the control API's VMs of that host, no more, no less
    assert job.audit() == []  # reads only


def _answers_export(sim, tmp):
    return {"export_dir": str(tmp / "export_dir")}, {
        "mapping": {(v["instanceUuid"], v["host"]) for v in sim.state()["vms"]}}


def _check_export_mapping(job, answers, sim, before):
    export = Path(answers["export_dir"])
    listed = {(r["uuid"], r["host"]) for r in _records(json.loads((export / "mapping.json").read_text()))}
    assert listed == before["mapping"]  # every VM with the host the control API says
    assert len((export / "mapping.csv").read_text().strip().splitlines()) == 1 + len(before["mapping"])
    assert job.audit() == []


def _answers_evacuate(sim, _tmp):
    host = _busiest_host(sim)
    return {"evacuate": host, "reason": "CHG-12 firmware %s" % host}, {
        "host": host, "vms": {v["instanceUuid"]: v["name"] for v in _vms_by_host(sim)[host]}}


def _check_evacuate_host(job, answers, sim, before):
    assert before["vms"]
    for vm_uuid, name in before["vms"].items():  # pyVmomi: every VM is off the host, still running
        vm = sim.vm(vm_uuid)
        assert vm.runtime.host.name != before["host"], name
        assert vm.runtime.powerState == "poweredOn", name
    moved = [r for r in job.audit() if r["state"] == "migrated"]
    assert sorted(r["target"]["uuid"] for r in moved) == sorted(before["vms"])
    assert all(r["result"] == "ok" for r in moved)
    _claims(job, moved[0])


def _answers_recover(sim, _tmp):
    host = _busiest_host(sim)
    victims = {v["instanceUuid"]: v["name"] for v in _vms_by_host(sim)[host] if v["powerState"] == "poweredOn"}
    sim.host_power(host, "poweredOff")  # the host dies: its VMs stop and their files are free
    return {"failed_host": host, "reason": "INC-4713 %s down" % host}, {"host": host, "vms": victims}


def _check_recover_host_failure(job, answers, sim, before):
    assert before["vms"]
    try:
        for vm_uuid, name in before["vms"].items():  # pyVmomi: running again, on a live host
            vm = sim.vm(vm_uuid)
            assert vm.runtime.host.name != before["host"] and vm.runtime.powerState == "poweredOn", name
        done = [r for r in job.audit() if r["state"] == "recovered"]
        assert sorted(r["target"]["uuid"] for r in done) == sorted(before["vms"])
        assert all(r["result"] == "ok" and r["reason"] == answers["reason"] for r in done)
        _claims(job, done[0])
    finally:
        sim.host_power(before["host"], "poweredOn")


# runbook -> (answers and the state before, read from the peer; task names the job must start;
# independent end-state check)
RUNBOOK_CHECKS = {
    "restart_vm": (_answers_restart_vm, ["Restart through the hypervisor (graceful, then forced after the timeout)",
                                         "Check that the VM runs again (as read back through the hypervisor)"],
                   _check_restart_vm),
    "host_failure_impact": (_answers_impact, [], _check_host_failure_impact),
    "export_mapping": (_answers_export, [], _check_export_mapping),
    "evacuate_host": (_answers_evacuate, ["Live-migrate"], _check_evacuate_host),
    "recover_host_failure": (_answers_recover, ["Recover"], _check_recover_host_failure),
}


def _task_names(tasks):
    for task in tasks or []:
        if "block" in task:  # a block starts no task itself; its rescue/always run on failure only
            yield from _task_names(task["block"])
        else:
            yield task["name"]


def _localhost_task_names(playbook):
    """Tasks of the playbook's own plays on the controller (hosts localhost, or localhost:all
    with run_once blocks), in order: every one starts (maybe to be skipped)."""
    names = []
    for play in load(os.path.join(ROOT, playbook)):
        if play.get("hosts") in ("localhost", "localhost:all"):
            names += [name for key in ("pre_tasks", "tasks", "post_tasks") for name in _task_names(play.get(key))]
    return names


@pytest.mark.parametrize("template", READY, ids=[runbook_of(t) for t in READY])
def test_job_template_runs_as_an_awx_job(template, vclab, ee_collections, tmp_path):
    make_answers, tasks, check = RUNBOOK_CHECKS[runbook_of(template)]
    sim = vclab["sim"]
    answers, before = make_answers(sim, tmp_path)
    job = AwxJob(tmp_path, ee_collections, template, answers, inventory=vclab["inventory"],
                 inventory_file=vclab["inventory_file"], credentials=vclab["credentials"]).run()
    print("%s: %s in %.1f s" % (template["name"], job.status, job.elapsed))
    assert job.status == "successful", (job.failures(), job.stdout()[-4000:])
    missing = [t for t in _localhost_task_names(template["playbook"]) + tasks if t not in job.started_tasks()]
    assert not missing, "tasks that did not run: %s" % missing
    check(job, answers, sim, before)
    assert sim.password not in job.stdout()


def test_a_job_that_cannot_reach_its_goal_fails(lab, ee_collections, tmp_path):
    """On the libvirt lab, libvirt cannot live-migrate through virtops: the evacuation plans every
    VM with no destination and the job fails at its goal task (red in AWX), touching nothing."""
    template = next(t for t in READY if runbook_of(t) == "evacuate_host")
    job = AwxJob(tmp_path, ee_collections, template, {"evacuate": "kvm01", "reason": "CHG-12 firmware"},
                 inventory=lab["inventory"]).run()
    goal = "Fail unless every VM moved (the job did not reach its goal; no maintenance mode)"
    assert job.status == "failed" and [f["task"] for f in job.failures()] == [goal], job.stdout()[-4000:]
    assert job.audit() == []
    assert set(virsh(lab["uris"]["kvm01"], "list", "--all", "--name").split()) == set(LAB["kvm01"])


def test_unknown_target_fails_the_job_and_names_it(lab, ee_collections, tmp_path):
    template = next(t for t in READY if runbook_of(t) == "restart_vm")
    job = AwxJob(tmp_path, ee_collections, template, {"target": "no-such-vm-42", "reason": "INC-4712 test"},
                 inventory=lab["inventory"]).run()
    assert job.status == "failed"
    (failure,) = job.failures()
    assert "no-such-vm-42" in failure["res"]["msg"]
    assert failure["task"] == "Stop if a target is unknown, ambiguous or not safe to start (nothing is touched)"
    assert job.audit() == []  # nothing was touched


def test_check_job_type_plans_and_touches_nothing(lab, ee_collections, tmp_path):
    """Job type "check" (ask_job_type_on_launch): AWX adds --check; the runbook prints its plan."""
    template = next(t for t in READY if runbook_of(t) == "restart_vm")
    assert template["job_template"]["ask_job_type_on_launch"]
    job = AwxJob(tmp_path, ee_collections, template, {"target": "db01", "reason": "INC-4714 plan"},
                 inventory=lab["inventory"], job_type="check").run()
    assert job.status == "successful", (job.failures(), job.stdout()[-3000:])
    (report,) = job.results("Report")
    assert report["msg"][0].startswith("PLAN (check mode, nothing done): restart of db01 (%s)" % lab["uuids"]["kvm01"]["db01"])
    assert job.audit() == []


def test_survey_answers_awx_would_refuse_never_reach_a_job():
    template = next(t for t in READY if runbook_of(t) == "restart_vm")
    with pytest.raises(ValueError, match="'reason' value missing"):
        launch_vars(template, {"target": "db01"})
    with pytest.raises(ValueError, match="restart_vm_force"):
        launch_vars(template, {"target": "db01", "reason": "INC-1", "restart_vm_force": "maybe"})
    with pytest.raises(ValueError, match="restart_vm_shutdown_timeout"):
        launch_vars(template, {"target": "db01", "reason": "INC-1", "restart_vm_shutdown_timeout": "60"})
    assert launch_vars(template, {"target": "db01", "reason": "INC-1"}) == {
        "target": "db01", "reason": "INC-1", "restart_vm_shutdown_timeout": 120, "restart_vm_force": "true"}
    # a required question is refused unanswered even when it has a default (AWX fills defaults later)
    strict = copy.deepcopy(template)
    for item in strict["survey_spec"]["spec"]:
        if item["variable"] == "restart_vm_shutdown_timeout":
            item["required"] = True
    with pytest.raises(ValueError, match="'restart_vm_shutdown_timeout' value missing"):
        launch_vars(strict, {"target": "db01", "reason": "INC-1"})


# --- credentials: what AWX injects reaches the plugins ------------------------------------
def test_vmware_credential_drives_the_inventory_source(vcsim, ee_collections, tmp_path):
    sim = vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "2", "-vm", "2")
    source = next(s for s in INVENTORY_SOURCES if s["credential"] == "vmware")
    job = AwxJob(tmp_path, ee_collections, None, {}, credentials=[(credential_type("vmware"), {
        "hostname": "127.0.0.1", "username": sim.username, "password": sim.password, "port": str(sim.port),
        "validate_certs": "false"})])
    assert job.envvars["VMWARE_PORT"] == str(sim.port) and job.envvars["VMWARE_VALIDATE_CERTS"] == "false"
    output = job.pdd / "artifacts" / str(job.id) / "output.json"
    job.envvars.update(VIRTOPS_LAST_KNOWN_DIR=str(tmp_path / "last_known"))
    job.run(command="ansible-inventory --list --export -i %s --output %s --playbook-dir %s" % (
        job.pdd / "project" / source["source_path"], output, (job.pdd / "project" / source["source_path"]).parent))
    assert job.status == "successful", job.stdout()[-3000:]
    data = _plain(json.loads(output.read_text()))
    hostvars = data["_meta"]["hostvars"]
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel
    assert {h["virt_name"] for h in hostvars.values() if h.get("virt_kind") == "vm"} == {
        vm.name for vm in sim.objects(vim.VirtualMachine) if not vm.config.template}
    assert {h["virt_name"] for h in hostvars.values() if h.get("virt_kind") == "hypervisor"} == {
        h.name for h in sim.objects(vim.HostSystem)}
    assert sim.password not in output.read_text() and sim.password not in job.stdout()


FAKE_SSH = """#!/bin/sh
# stands in for ssh: libvirt runs it with a scrubbed environment; record what it got
{ echo "ARGS $*"; echo "AGENT $(ssh-add -L 2>&1)"; } > %s
exit 1
"""


@pytest.fixture()
def ssh_key(tmp_path):
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtops-awx-test", "-f", str(path)], check=True)
    return path.read_text().rstrip("\n"), (tmp_path / "id_ed25519.pub").read_text().split()[1]


def _probe(job, task):
    (job.pdd / "project" / "probe.yml").write_text(yaml.safe_dump([{
        "name": "Probe", "hosts": "localhost", "gather_facts": False,
        "tasks": [dict(task, name="Probe libvirt", ignore_errors=True)]}]))
    return job.run()


def test_libvirt_credential_key_file_reaches_ssh(ee_collections, tmp_path, ssh_key):
    """The libvirt type writes the key to its own file and names it in VIRTOPS_LIBVIRT_SSH_KEYFILE;
    the driver adds keyfile=<it> to the ssh URI (from the credential's uri, here through
    LIBVIRT_DEFAULT_URI and the credentials file), and libvirt hands it to ssh."""
    private, _public = ssh_key
    record, fake = tmp_path / "ssh-record", tmp_path / "fake-ssh"
    fake.write_text(FAKE_SSH % record)
    fake.chmod(0o755)
    uri = "qemu+ssh://root@kvm01.invalid/system?command=%s&no_tty=1" % fake
    job = AwxJob(tmp_path, ee_collections, None, {}, credentials=[(credential_type("libvirt"), {
        "ssh_private_key": private, "uri": uri})])
    keyfile = job.envvars["VIRTOPS_LIBVIRT_SSH_KEYFILE"]
    assert job.envvars["LIBVIRT_DEFAULT_URI"] == uri
    assert Path(keyfile).read_text() == private + "\n" and stat.S_IMODE(os.stat(keyfile).st_mode) == 0o600
    written = json.loads(Path(job.envvars["VIRTOPS_CREDENTIALS_LIBVIRT"]).read_text())
    assert written == {uri: {"platform": "libvirt", "uri": uri, "hypervisor_name": None}}
    _probe(job, {"virtops.unified.vm_info": {"platform": "libvirt", "name": "db01", "connect_timeout": 10}})
    args = record.read_text().splitlines()[0]
    assert " -i %s " % keyfile in args and "kvm01.invalid" in args  # libvirt handed the key to ssh
    assert private not in job.stdout()


def test_machine_credential_key_reaches_libvirt_ssh_through_the_agent(ee_collections, tmp_path, ssh_key):
    private, public = ssh_key
    record, fake = tmp_path / "ssh-record", tmp_path / "fake-ssh"
    fake.write_text(FAKE_SSH % record)
    fake.chmod(0o755)
    job = AwxJob(tmp_path, ee_collections, None, {}, ssh_key=private + "\n")
    uri = "qemu+ssh://root@kvm01.invalid/system?command=%s&no_tty=1" % fake
    _probe(job, {"virtops.unified.vm_info": {"platform": "libvirt", "name": "db01", "connect_timeout": 10, "uri": uri}})
    agent = record.read_text().splitlines()[1]
    assert public in agent, agent  # ssh, run by libvirt, sees runner's ssh-agent holding the key


# --- EDA: restart_hung_vm_awx.yml through AWX's REST API ---------------------------------
class AwxApi:
    """AWX's REST API (api/v2) as ansible-rulebook's run_job_template uses it: config,
    unified_job_templates by name, job_templates/<id>/launch/ and jobs/?id__in=. A launch
    is checked as AWX checks it (survey answers, required ones answered even if they have a
    default; fields that are not prompted on launch, and extra vars outside the survey of a
    template that does not prompt for variables, are dropped and listed in ignored_fields)
    and runs the template as an AwxJob, the way AWX's dispatcher hands it to ansible-runner."""

    TOKEN = "eda-test-token-5d1c"
    ORGANIZATION = "Default"

    def __init__(self, root, ee_collections, inventory_file, inventory, credentials, allow_jinja="template"):
        self.job_args = dict(root=root, ee_collections=ee_collections, inventory_file=inventory_file,
                             inventory=inventory, credentials=credentials, allow_jinja=allow_jinja)
        self.templates = dict(enumerate(TEMPLATES, start=11))
        self.jobs = {}  # id -> {"job": AwxJob, "status": ..., "template": ...}
        self.launches = []  # what each launch asked for, and what AWX answered
        self.unauthorized = 0
        self.server = None

    def __enter__(self):
        import http.server  # pylint: disable=import-outside-toplevel
        import threading  # pylint: disable=import-outside-toplevel
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass

            def do_GET(self):  # pylint: disable=invalid-name
                api.serve(self, "GET")

            def do_POST(self):  # pylint: disable=invalid-name
                api.serve(self, "POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        for entry in self.jobs.values():
            entry["thread"].join(300)

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.server.server_address[1]

    def serve(self, request, method):
        from urllib.parse import parse_qs, urlparse  # pylint: disable=import-outside-toplevel
        if request.headers.get("Authorization") != "Bearer " + self.TOKEN:
            self.unauthorized += 1
            return self.reply(request, 401, {"detail": "Authentication credentials were not provided."})
        parsed = urlparse(request.path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        path = parsed.path
        if method == "GET" and path == "/api/v2/config/":
            return self.reply(request, 200, {"version": "24.6.1"})
        if method == "GET" and path == "/api/v2/unified_job_templates/":
            found = [self.template_record(number, t) for number, t in self.templates.items()
                     if t["name"] == query.get("name")]
            return self.reply(request, 200, {"count": len(found), "next": None, "previous": None, "results": found})
        if method == "GET" and path == "/api/v2/jobs/":
            wanted = {int(i) for i in query.get("id__in", "").split(",") if i}
            found = [self.job_record(i) for i in sorted(wanted) if i in self.jobs]
            return self.reply(request, 200, {"count": len(found), "next": None, "previous": None, "results": found})
        match = re.fullmatch(r"/api/v2/job_templates/(\d+)/launch/", path)
        if method == "POST" and match and int(match.group(1)) in self.templates:
            body = json.loads(request.rfile.read(int(request.headers.get("Content-Length") or 0)) or b"{}")
            return self.launch(request, int(match.group(1)), body)
        return self.reply(request, 404, {"detail": "Not found."})

    @staticmethod
    def reply(request, status, doc):
        data = json.dumps(doc).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def template_record(self, number, template):
        jt = template.get("job_template", {})
        return {"id": number, "type": "job_template", "name": template["name"],
                "summary_fields": {"organization": {"id": 1, "name": self.ORGANIZATION}},
                "related": {"launch": "/api/v2/job_templates/%d/launch/" % number},
                "ask_limit_on_launch": bool(jt.get("ask_limit_on_launch")),
                "ask_labels_on_launch": bool(jt.get("ask_labels_on_launch")),
                "ask_inventory_on_launch": bool(jt.get("ask_inventory_on_launch")),
                "ask_variables_on_launch": bool(jt.get("ask_variables_on_launch")),
                "survey_enabled": bool(template.get("survey_spec"))}

    def launch(self, request, number, body):
        template = self.templates[number]
        jt = template.get("job_template", {})
        answers = body.get("extra_vars") or {}
        if isinstance(answers, str):
            answers = yaml.safe_load(answers) or {}
        prompted = {"extra_vars"} | {field for field in ("limit", "inventory", "labels", "job_type", "diff_mode")
                                     if jt.get("ask_%s_on_launch" % field)}
        ignored = {k: v for k, v in body.items() if k not in prompted}
        survey = {q["variable"] for q in template["survey_spec"]["spec"]}
        outside = sorted(set(answers) - survey)
        if outside and not jt.get("ask_variables_on_launch"):
            # AWX's _accept_or_ignore_variables rejects them, and a manual launch through the API
            # (JobLaunchSerializer with _exclude_errors=('prompts',)) does not fail on that: the job
            # runs without them and the answer lists them in ignored_fields
            ignored["extra_vars"] = {k: answers[k] for k in outside}
            answers = {k: v for k, v in answers.items() if k in survey}
            outside = []
        record = {"template": template["name"], "body": body, "ignored_fields": ignored}
        self.launches.append(record)
        try:
            launch_vars(template, answers)
        except ValueError as exc:
            record["status"] = 400
            return self.reply(request, 400, {"variables_needed_to_start": [str(exc)]})
        import threading  # pylint: disable=import-outside-toplevel
        job = AwxJob(self.job_args["root"], self.job_args["ee_collections"], template, answers,
                     inventory=self.job_args["inventory"], credentials=self.job_args["credentials"],
                     inventory_file=self.job_args["inventory_file"], allow_jinja=self.job_args["allow_jinja"])
        job.extravars.update({k: answers[k] for k in outside})  # prompted: AWX passes them on
        entry = {"job": job, "status": "pending", "template": template["name"],
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}

        def run():
            entry["status"] = "running"
            try:
                job.run()
                entry["status"] = job.status if job.status in ("successful", "failed") else "error"
            except Exception:  # pylint: disable=broad-except
                entry["status"] = "error"

        entry["thread"] = threading.Thread(target=run, daemon=True)
        self.jobs[job.id] = entry
        entry["thread"].start()
        record["status"] = 201
        return self.reply(request, 201, {"job": job.id, "id": job.id, "type": "job", "status": "pending",
                                         "url": "/api/v2/jobs/%d/" % job.id, "ignored_fields": ignored})

    def job_record(self, job_id):
        entry = self.jobs[job_id]
        return {"id": job_id, "type": "job", "url": "/api/v2/jobs/%d/" % job_id, "name": entry["template"],
                "status": entry["status"], "failed": entry["status"] in ("failed", "error"),
                "created": entry["created"], "artifacts": {}}


def test_a_launch_with_extra_vars_outside_the_survey_runs_without_them(lab, ee_collections, tmp_path):
    """AWX: on a template that does not prompt for variables, variables outside its survey
    are dropped and listed in ignored_fields, and the job runs (they are not a 400); so a
    launcher cannot set awx_user_name, and it never reaches the audit log."""
    import urllib.request  # pylint: disable=import-outside-toplevel
    with AwxApi(tmp_path / "awx", ee_collections, "lab.libvirt.yml", lab["inventory"], []) as api:
        number = next(n for n, t in api.templates.items() if t["name"] == "virtops: restart a hung VM")
        body = {"extra_vars": {"target": "db01", "reason": "INC-7", "awx_user_name": "mallory", "evil": "1"},
                "limit": "web01"}
        req = urllib.request.Request(api.url + "api/v2/job_templates/%d/launch/" % number, method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + AwxApi.TOKEN,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, answer = resp.status, json.load(resp)
        entry = api.jobs[answer["job"]]
        entry["thread"].join(300)
    assert status == 201
    assert answer["ignored_fields"] == {"extra_vars": {"awx_user_name": "mallory", "evil": "1"}, "limit": "web01"}
    job = entry["job"]
    assert "evil" not in job.extravars and job.extravars["awx_user_name"] == AWX_USER
    assert entry["status"] == "successful", job.stdout()[-3000:]
    (record,) = [r for r in job.audit() if r["target"]["name"] == "db01"]
    assert record["claimed_user"] == AWX_USER and record["via"] == "awx job %d" % job.id


def test_eda_rulebook_restarts_a_hung_vm_as_an_awx_job(vcsim, ee_collections, tmp_path):
    from rulebook_peer import Rulebook  # pylint: disable=import-outside-toplevel
    sim = vcsim("-dc", "1", "-cluster", "0", "-host", "1", "-vm", "2")
    vms = {v["name"]: v for v in sim.state()["vms"]}
    hung, other = vms["DC0_H0_VM0"], vms["DC0_H0_VM1"]
    boots = {v["instanceUuid"]: sim.vm(v["instanceUuid"]).runtime.bootTime for v in (hung, other)}
    source = next(s for s in INVENTORY_SOURCES if s["credential"] == "vmware")
    credential = (credential_type("vmware"), {"hostname": "127.0.0.1", "username": sim.username,
                                              "password": sim.password, "port": str(sim.port),
                                              "validate_certs": "false"})
    inventory = Path(ROOT, source["source_path"]).read_text()
    with AwxApi(tmp_path / "awx", ee_collections, Path(source["source_path"]).name, inventory, [credential]) as api:
        rb_dir = tmp_path / "rulebook"
        rb_dir.mkdir()
        # the activation watches the estate through an inventory source of its own (no credentials
        # in it: VMWARE_USER / VMWARE_PASSWORD below, as an EDA credential would inject them)
        variables = {"virtops_inventory": sim.write_inventory(rb_dir / "estate.vmware.yml"),
                     "virtops_interval": 1, "virtops_failure_interval": 2, "virtops_min_uptime": 0}
        (rb_dir / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")  # the jobs use AWX's inventory
        with Rulebook(rb_dir, "restart_hung_vm_awx.yml", rb_dir / "hosts.yml", variables,
                      {"VMWARE_USER": sim.username, "VMWARE_PASSWORD": sim.password},
                      extra_args=["--controller-url", api.url, "--controller-token", AwxApi.TOKEN]) as rb:
            rb.wait_watching()
            sim.vm_do(hung["name"], "heartbeat", status="red")
            rb.wait_for(lambda: [e for e in api.jobs.values() if e["status"] in ("successful", "failed", "error")],
                        240, "a finished AWX job")
            # the same VM hangs again at once: the source sends vm_hung again (a new episode), and
            # the rule's throttle (once within 2 minutes per VM) must hold it back. The source's own
            # word that it saw the repeat at a later poll is the sign that the rule had the event.
            sim.vm_do(hung["name"], "heartbeat", status="red")
            sent = "hypervisor_health: sent vm_hung for"
            rb.wait_for(lambda: rb.count(sent) == 2, 60, "the second vm_hung")
            held = "%s: heartbeat still lost; vm_hung already sent" % hung["name"]
            rb.wait_for(lambda: held in rb.text()[rb.text().rindex(sent):], 60,
                        "the source holding back the repeat, a poll after the second vm_hung")
    assert api.unauthorized == 0
    assert [launch["status"] for launch in api.launches] == [201], api.launches
    (entry,) = list(api.jobs.values())
    job = entry["job"]
    assert entry["template"] == "virtops: restart a hung VM (EDA)" and entry["status"] == "successful", job.stdout()[-3000:]
    # survey variables only: no event (include_events: false), identifiers and fixed words
    (launch,) = api.launches
    assert launch["body"]["extra_vars"] == {
        "target": hung["instanceUuid"], "expected_host": hung["host"],
        "reason": "EDA restart_hung_vm: vm_hung (guest heartbeat lost)",
        "restart_vm_shutdown_timeout": 120, "restart_vm_force": "true"}, launch
    assert "ansible_eda" not in job.extravars
    (record,) = job.audit()  # one power action, by the job, on the hung VM
    assert record["target"]["uuid"] == hung["instanceUuid"] and record["state"] == "restarted"
    assert record["via"] == "awx job %d" % job.id and record["reason"] == launch["body"]["extra_vars"]["reason"]
    now = {u: sim.vm(u).runtime for u in boots}
    assert now[hung["instanceUuid"]].powerState == "poweredOn" and now[hung["instanceUuid"]].bootTime != boots[hung["instanceUuid"]]
    assert now[other["instanceUuid"]].bootTime == boots[other["instanceUuid"]]
    assert "Job Launched, url: /api/v2/jobs/%d/" % job.id in rb.output, rb.output[-3000:]
    assert sim.password not in rb.output and sim.password not in job.stdout()


# --- a job over a mixed estate: one credential of each generated type --------------------------
def _launch(api, name, extra_vars):
    """POST job_templates/<id>/launch/ as a client of AWX's API does; the finished job's entry."""
    import urllib.request  # pylint: disable=import-outside-toplevel
    number = next(n for n, t in api.templates.items() if t["name"] == name)
    req = urllib.request.Request(api.url + "api/v2/job_templates/%d/launch/" % number, method="POST",
                                 data=json.dumps({"extra_vars": extra_vars}).encode(),
                                 headers={"Authorization": "Bearer " + AwxApi.TOKEN, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201
        answer = json.load(resp)
    entry = api.jobs[answer["job"]]
    entry["thread"].join(600)
    return entry


def test_a_job_over_a_mixed_estate_takes_one_credential_of_each_type(vcsim, ee_collections, tmp_path):
    """One AWX inventory with two sources, a vCenter (the peer) and a KVM host (libvirtd +
    QEMU), and jobs launched through the API with two credentials, one of each generated
    type. AWX injects each as it does (credentials file + environment); the jobs reach both
    platforms: an impact review over a host of each, then a restart of a VM on each. The end
    state is read from the peers: pyVmomi and the vCenter peer's record, virsh and libvirt's
    QEMU log."""
    import libvirt_peer  # pylint: disable=import-outside-toplevel
    sim = vcsim("-dc", "1", "-cluster", "1", "-cluster-host", "2", "-host", "0", "-vm", "2")
    libvirt_peer.start()
    names = libvirt_peer.define_and_start({"hung": "hung"}, tmp_path, prefix="vo-awx")
    try:
        kvm_vm = names["hung"]
        source = next(s for s in INVENTORY_SOURCES if s["credential"] == "vmware")
        inventories = {Path(source["source_path"]).name: Path(ROOT, source["source_path"]).read_text(),
                       "kvm.libvirt.yml": "plugin: virtops.unified.libvirt\nhypervisors:\n"
                                          "  - {name: kvmlab, uri: '%s', cluster: lab}\n" % libvirt_peer.URI}
        vmware = (credential_type("vmware"), {"hostname": "127.0.0.1", "username": sim.username,
                                              "password": sim.password, "port": str(sim.port),
                                              "validate_certs": "false"})
        libvirt = (credential_type("libvirt"), {"hypervisor_name": "kvmlab", "uri": libvirt_peer.URI})
        with pytest.raises(ValueError, match="Cannot assign multiple virtops vmware credentials"):
            AwxJob(tmp_path / "refused", ee_collections, None, {}, credentials=[vmware, vmware])
        vc_vm = next(v for v in sim.state()["vms"] if v["powerState"] == "poweredOn")
        sim.wait_tools(vc_vm["instanceUuid"])
        with AwxApi(tmp_path / "awx", ee_collections, None, inventories, [vmware, libvirt]) as api:
            # the impact of losing a host of each platform, in one job
            kvm_uuids = set(virsh(libvirt_peer.URI, "list", "--all", "--uuid").split())
            impact = _launch(api, "virtops: host failure impact", {
                "failed_host": "%s,kvmlab" % vc_vm["host"], "report_dir": str(tmp_path / "report")})
            # a restart on each platform, each its own job (the survey takes one target)
            boot, ops = sim.vm(vc_vm["instanceUuid"]).runtime.bootTime, len(sim.operations(vc_vm["instanceUuid"]))
            vc_restart = _launch(api, "virtops: restart a hung VM", {"target": vc_vm["name"], "reason": "INC-51 vc"})
            dom_id, stops = libvirt_peer.domid(kvm_vm), len(libvirt_peer.stop_reasons(kvm_vm))
            kvm_restart = _launch(api, "virtops: restart a hung VM", {
                "target": kvm_vm, "reason": "INC-52 kvm", "restart_vm_shutdown_timeout": 3})
        for entry in (impact, vc_restart, kvm_restart):
            assert entry["status"] == "successful", (entry["template"], entry["job"].failures(),
                                                     entry["job"].stdout()[-4000:])
        # what AWX injected: one credentials file per type, keyed by the endpoint id, 0600
        job = impact["job"]
        for ctype, inputs in (vmware, libvirt):
            path = Path(job.envvars["VIRTOPS_CREDENTIALS_%s" % ctype["platform"].upper()])
            assert path.parent == job.pdd / "env" and stat.S_IMODE(path.stat().st_mode) == 0o600
            written = json.loads(path.read_text())
            endpoint_id = registry.get(ctype["platform"]).endpoint_id(inputs)
            assert list(written) == [endpoint_id]
            assert {k: v for k, v in written[endpoint_id].items() if v is not None} == dict(inputs, platform=ctype["platform"])
        # the impact report: every VM of both failed hosts, as the peers list them
        listed = {(r["uuid"], r["host"]) for r in _records(json.loads((tmp_path / "report" / "impact.json").read_text()))}
        vc_listed = {(v["instanceUuid"], vc_vm["host"]) for v in _vms_by_host(sim)[vc_vm["host"]]}
        assert {r for r in listed if r[1] != "kvmlab"} == vc_listed
        kvm_listed = {r for r in listed if r[1] == "kvmlab"}
        assert (libvirt_peer.domuuid(kvm_vm), "kvmlab") in kvm_listed
        # (other tests may define domains on the same libvirtd meanwhile: those listed before or after)
        kvm_uuids |= set(virsh(libvirt_peer.URI, "list", "--all", "--uuid").split())
        assert kvm_listed <= {(u, "kvmlab") for u in kvm_uuids}
        # the vCenter VM: a graceful shutdown and a power-on, by that job, booted again
        assert sim.ops(vc_vm["instanceUuid"], ops) == ["ShutdownGuest", "PowerOnVM_Task"]
        assert sim.vm(vc_vm["instanceUuid"]).runtime.bootTime > boot
        # the KVM guest ignores ACPI: libvirt's QEMU log says it was destroyed once, and it runs again
        assert libvirt_peer.stop_reasons(kvm_vm)[stops:] == ["destroyed"]
        assert libvirt_peer.domstate(kvm_vm) == "running" and libvirt_peer.domid(kvm_vm) != dom_id
        for entry, uuid_ in ((vc_restart, vc_vm["instanceUuid"]), (kvm_restart, libvirt_peer.domuuid(kvm_vm))):
            (record,) = [r for r in entry["job"].audit() if r["via"] == "awx job %d" % entry["job"].id]
            assert record["target"]["uuid"] == uuid_ and record["state"] == "restarted" and record["result"] == "ok"
            assert sim.password not in entry["job"].stdout()
        assert sim.password not in (job.state / "audit.jsonl").read_text()
    finally:
        libvirt_peer.remove(names.values())
