"""Who the audit log says ran an action: facts from sources the launcher cannot
set (the OS user, AWX's JOB_ID in the job's environment), and what the job's
variables only claim (awx_user_name, awx_job_id), recorded apart as claimed.
The peer is libvirt's test:/// driver; the subject is our own audit line."""

import getpass
import json

from helpers import env, playbook

NODE = ('<node><domain type="test"><name>who-vm</name><uuid>1b0c7a31-8c64-4b7e-9a55-6f1f0c9d1a77</uuid>'
        '<memory>65536</memory><os><type>hvm</type></os></domain></node>')


def last_outcome():
    with open(env()["VIRTOPS_AUDIT_LOG"], encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh if line.strip()]
    return [r for r in lines if r.get("phase") == "outcome" and r["target"]["name"] == "who-vm"][-1]


def test_a_forged_awx_user_is_recorded_as_claimed_not_as_who(tmp_path):
    (tmp_path / "node.xml").write_text(NODE)
    inv = tmp_path / "who.libvirt.yml"
    inv.write_text("plugin: virtops.unified.libvirt\nhypervisors:\n  - {name: kvmwho, uri: 'test://%s'}\n"
                   % (tmp_path / "node.xml"))
    playbook(inv, "playbooks/restart_vm.yml", "-e", "target=who-vm",
             "-e", json.dumps({"awx_user_name": "mallory", "awx_job_id": 4242}))
    record = last_outcome()
    assert record["who"] == getpass.getuser() and record["claimed_user"] == "mallory"
    assert record["via"] == "cli (claims awx job 4242)" and "awx_job_id" not in record
