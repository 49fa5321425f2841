"""Run the real Ansible programs from the checkout's venv, virsh and scripts/lab."""

import contextlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
SESSION_DIR = tempfile.mkdtemp(prefix="virtops-test-")


def env():
    out = dict(os.environ)
    out.update(ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PYTHONUNBUFFERED="1")
    out.pop("LIBVIRT_DEFAULT_URI", None)
    # runbook state of this test session only: repeated CI runs must not hit the restart limit
    out.setdefault("VIRTOPS_AUDIT_LOG", os.path.join(SESSION_DIR, "audit.jsonl"))
    out.setdefault("VIRTOPS_LOCK_DIR", os.path.join(SESSION_DIR, "locks"))
    out.setdefault("VIRTOPS_LAST_KNOWN_DIR", os.path.join(SESSION_DIR, "last_known"))
    return out


def run(argv, check=True, timeout=600):
    proc = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (argv[0], proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
    return proc


def _plain(obj):
    """ansible-core 2.19 writes values that came from a platform (not trusted
    as templates) as {"__ansible_unsafe": value}; compare the values."""
    if isinstance(obj, dict):
        if set(obj) == {"__ansible_unsafe"}:
            return obj["__ansible_unsafe"]
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def inventory(path, *extra):
    proc = run([os.path.join(BIN, "ansible-inventory"), "-i", str(path), "--list", *extra])
    return _plain(json.loads(proc.stdout)), proc.stderr


def playbook(inv, play, *extra, check=True, timeout=600):
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", str(inv), os.path.join(ROOT, play), *extra]
    return run(argv, check=check, timeout=timeout)


def task_results(stdout, task_name):
    """JSON results printed by -v for a task, in order (one per host)."""
    results = []
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("TASK [") and task_name in line:
            for follow in lines[i + 1:]:
                if follow.startswith("TASK [") or follow.startswith("PLAY "):
                    break
                if "=> {" in follow:
                    start = lines.index(follow)
                    text = follow.split("=> ", 1)[1]
                    j = start + 1
                    while True:
                        try:
                            results.append(json.loads(text))
                            break
                        except json.JSONDecodeError:
                            text += "\n" + lines[j]
                            j += 1
    return results


def virsh(uri, *args, check=True):
    proc = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("virsh %s failed: %s" % (" ".join(args), proc.stderr))
    return proc.stdout.strip()


def adhoc(inv, pattern, module, args, *extra):
    """Run one module ad hoc; return (rc, {host: result}) from the oneline callback."""
    argv = [os.path.join(BIN, "ansible"), "-i", str(inv), pattern, "-m", module, *extra]
    if args:  # "-a {}" would be taken as a raw parameter
        argv += ["-a", json.dumps(args)]
    e = env()
    e["ANSIBLE_STDOUT_CALLBACK"] = "oneline"
    e["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    proc = subprocess.run(argv, cwd=ROOT, env=e, capture_output=True, text=True, timeout=600, check=False)
    results = {}
    for line in proc.stdout.splitlines():
        if " => {" in line:
            host = line.split(" | ", 1)[0]
            results[host] = json.loads(line.split(" => ", 1)[1])
    if not results:
        raise AssertionError("no result from ansible %s:\n%s\n%s" % (module, proc.stdout, proc.stderr))
    return proc.returncode, results


def lab(*args, check=True):
    """scripts/lab, as a user runs it."""
    proc = subprocess.run([os.path.join(ROOT, "scripts", "lab"), *args], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=300, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("scripts/lab %s failed (%d):\n%s\n%s"
                             % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc


@contextlib.contextmanager
def lab_env(labdir):
    """The lab's DIR/lab.env in os.environ (env() copies it), as a shell would source it."""
    out = subprocess.run(["bash", "-c", "source %s/lab.env && env -0" % labdir], capture_output=True, check=True)
    values = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    from ansible_collections.virtops.unified.plugins.module_utils import registry  # pylint: disable=import-outside-toplevel
    platform_env = {e for p in registry.platforms().values() for o in p.options + p.key_files for e in o.env}
    values = {k: v for k, v in values.items() if k.startswith(("VIRTOPS_", "ANSIBLE_VAULT")) or k in platform_env}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def running_lab(base, estate):
    """A lab of `estate` (a lab file, as a dict) in directory `base`: up, with its lab.env in
    os.environ while it runs, then down. Yields the lab directory."""
    import yaml  # pylint: disable=import-outside-toplevel

    labfile = os.path.join(str(base), "lab.yml")
    with open(labfile, "w", encoding="utf-8") as handle:
        yaml.safe_dump(estate, handle, allow_unicode=True)
    labdir = os.path.join(str(base), "dir")
    lab("up", labfile, labdir)
    try:
        with lab_env(labdir):
            yield labdir
    finally:
        lab("down", labdir, check=False)
