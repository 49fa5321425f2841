#!/usr/bin/env python
# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A quick self-check of the Oracle VM Manager emulator: start it, log in, GET Vm,
run a stop job to completion, stop it. Exits non-zero on a failure.

    python tests/peers/ovm/smoke.py      (any Python 3.8+; `requests` is not needed)
"""

import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ESTATE = {"clusters": [{"name": "pool1", "hosts": [
    {"name": "ovs01", "vms": [{"name": "web01", "memory_mb": 512}, {"name": "db01", "power": "stopped"}]},
    {"name": "ovs02", "vms": []}]}]}


def main():
    tmp = tempfile.mkdtemp(prefix="ovm-smoke-")
    estate = os.path.join(tmp, "estate.json")
    with open(estate, "w", encoding="utf-8") as handle:
        json.dump(ESTATE, handle)
    argv = [sys.executable, os.path.join(HERE, "ovm_manager.py"), "--lab", estate, "--username", "admin",
            "--password", "smoke pw", "--certdir", os.path.join(tmp, "certs"), "--job-seconds", "0.1",
            "--stop-seconds", "0.2", "--exit-on-stdin-eof"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # pylint: disable=consider-using-with
    try:
        ready = json.loads(proc.stdout.readline())
        ctx = ssl.create_default_context(cafile=ready["ca"])
        auth = "Basic " + base64.b64encode(b"admin:smoke pw").decode()
        cookie = {}

        def call(method, path, basic=False):
            headers = {"Accept": "application/json", "Content-Type": "application/json"}
            if basic:
                headers["Authorization"] = auth
            if cookie:
                headers["Cookie"] = "JSESSIONID=" + cookie["JSESSIONID"]
            req = urllib.request.Request(ready["url"] + "/" + path, method=method, headers=headers,
                                         data=b"" if method == "PUT" else None)
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                set_cookie = resp.headers.get("Set-Cookie") or ""
                if set_cookie.startswith("JSESSIONID="):
                    cookie["JSESSIONID"] = set_cookie.split(";")[0].split("=", 1)[1]
                return json.load(resp)

        manager = call("GET", "Manager", basic=True)[0]
        assert manager["managerRunState"] == "RUNNING", manager
        assert cookie, "no JSESSIONID cookie after a Basic login"
        vms = {vm["name"]: vm for vm in call("GET", "Vm")}
        assert vms["web01"]["vmRunState"] == "RUNNING" and vms["db01"]["vmRunState"] == "STOPPED", vms
        job = call("PUT", "Vm/%s/stop" % vms["web01"]["id"]["value"])
        deadline = time.monotonic() + 10
        while not job["summaryDone"]:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
            job = call("GET", "Job/%s" % job["id"]["value"])
        assert job["jobRunState"] == "SUCCESS", job
        vm = call("GET", "Vm/%s" % vms["web01"]["id"]["value"])
        assert vm["vmRunState"] == "STOPPED", vm
        with urllib.request.urlopen(ready["control"] + "/state", timeout=5) as resp:
            state = json.load(resp)
        web = next(v for v in state["vms"] if v["name"] == "web01")
        assert web["gracefulShutdowns"] == 1 and state["requests"]["logins"] == 1, state
        print("ovm smoke: ok (%d requests)" % state["requests"]["total"])
        return 0
    except Exception as exc:  # pylint: disable=broad-except
        print("ovm smoke: FAILED: %r" % exc, file=sys.stderr)
        return 1
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        err = proc.stderr.read().decode(errors="replace")
        if proc.returncode not in (0, None):
            print(err[-3000:], file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
