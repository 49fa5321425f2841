#!/usr/bin/env bash
# Set up and run the main job on the embedded lab (demo/lab.yml): a vCenter
# (the vCenter simulator peer), an Oracle VM Manager (our emulator of its REST
# API) and a rack of KVM hosts (libvirt's test:/// driver) side by side in one
# inventory, no external infrastructure.
#
# The story fits a screen: each command's output is folded by quiet() below, which
# drops Ansible's task banners, ok/skipping lines and the snippet under an error's
# Origin, and prints the runbooks' own messages. Everything else (errors, fatal
# lines, warnings, progress) passes through, a run with a failed or unreachable
# host keeps its recap, and every exit code counts (set -euo pipefail).
# VERBOSE=1 scripts/demo.sh shows the commands' whole output.
# Colour only on a terminal, never with NO_COLOR set (https://no-color.org).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/bootstrap.sh demo | { grep -v '^bootstrap: ready' || true; }   # what it installs, if anything
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_CONFIG="$root/ansible.cfg" ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_CALLBACK_RESULT_FORMAT=json
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  bold=$'\033[1m' plain=$'\033[0m'
  export ANSIBLE_FORCE_COLOR=1   # Ansible writes into quiet()'s pipe, not to the terminal
else
  bold='' plain=''
  unset ANSIBLE_FORCE_COLOR
  export ANSIBLE_NOCOLOR=1
fi

lab=.build/demo/lab
inv=$lab/inventory
if [ -f $lab/lab.json ]; then scripts/lab down $lab >/dev/null 2>&1 || true; fi   # a previous demo's peers
if ! up=$(scripts/lab up demo/lab.yml $lab 2>&1); then printf '%s\n' "$up" >&2; exit 1; fi
trap 'scripts/lab down "$lab" >/dev/null' EXIT
# the lab's own audit log and locks (a fresh restart budget each run)
# shellcheck disable=SC1091
source $lab/lab.env
rm -f "$VIRTOPS_AUDIT_LOG"

QUIET_PY=$(cat <<'EOF'
import json, re, sys
ansi = re.compile(r"\x1b\[[0-9;]*m")
banner = re.compile(r"^(PLAY|TASK|RUNNING HANDLER) \[")
status = re.compile(r"^(ok|changed|skipping): \[[^\]]*\]")
included = re.compile(r"^included: \S+ for .+$")
recap_line = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
out = sys.stdout
def say(text):
    out.write(text + "\n")
    out.flush()
lines = iter(sys.stdin)
recap = None
snippet = False
last_error = ""
for raw in lines:
    raw = raw.rstrip("\n")
    line = ansi.sub("", raw)
    if recap is not None:
        m = recap_line.match(line)
        if m:
            recap.append(m)
            continue
        if any(int(r.group(4)) or int(r.group(5)) for r in recap):
            say("recap: " + "; ".join("%s ok=%s changed=%s unreachable=%s failed=%s" % r.groups() for r in recap))
        recap = None
    if not line.strip() or banner.match(line) or included.match(line):
        continue
    if line.startswith("PLAY RECAP"):
        recap = []
        continue
    if status.match(line):
        if line.endswith("=> {"):  # a result: print its msg, else the whole result
            block = ["{"]
            for raw2 in lines:
                block.append(ansi.sub("", raw2.rstrip("\n")))
                if block[-1] == "}":
                    break
            try:
                result = json.loads("\n".join(block))
            except ValueError:
                result = None
            msg = result.get("msg") if isinstance(result, dict) else None
            if msg is None:
                say(line)
                for text in block[1:]:
                    say(text)
            else:
                for text in (msg if isinstance(msg, list) else str(msg).splitlines()):
                    if str(text).strip():
                        say("  %s" % text)
        elif "=>" in line and not re.search(r"=> \(item=[^)]*\)$", line):
            say(raw)  # a one-line result other than a loop item
        continue
    if line.startswith("Origin: "):  # ansible-core's source snippet under it: numbered lines, a caret
        say(raw)
        snippet = True
        continue
    if snippet and (not line.strip() or re.match(r"^(\d+(\s|$)|\s*\^ column \d+)", line)):
        continue
    snippet = False
    if line.startswith("[ERROR]: "):
        last_error = line
    m = re.match(r"^fatal: \[[^\]]*\]: FAILED! => (\{.*\})$", line)
    if m:  # nothing but the message of the [ERROR] just above: once is enough (the recap names the host)
        try:
            result = json.loads(m.group(1))
        except ValueError:
            result = {}
        if set(result) <= {"changed", "failed", "msg"} and result.get("msg") and result["msg"] in last_error:
            continue
    say(raw)
if recap and any(int(r.group(4)) or int(r.group(5)) for r in recap):
    say("recap: " + "; ".join("%s ok=%s changed=%s unreachable=%s failed=%s" % r.groups() for r in recap))
EOF
)
quiet() { if [ -n "${VERBOSE:-}" ]; then cat; else python3 -u -c "$QUIET_PY"; fi; }
step() {  # TITLE COMMAND [WHAT RUNS]: show the command, run it (or its folded form), fold its output
  printf '%s==> %s%s\n$ %s\n' "$bold" "$1" "$plain" "$2"
  { eval "${3:-$2}"; } 2>&1 | quiet
}
counts() {  # what the peers themselves saw of these VMs: power-ons, graceful shutdowns, hard offs
  scripts/lab state $lab | python3 -c '
import json, sys
wanted = sys.argv[1:]
for m in json.load(sys.stdin)["machines"]:
    if m["name"] in wanted:
        seen = "power_ons=%s graceful_shutdowns=%s hard_offs=%s" % (m["power_ons"], m["graceful_shutdowns"], m["hard_offs"])
        print("  %-6s %-8s on %-6s %-8s %s" % (m["endpoint"], m["name"], m["host"], m["power"],
              seen if m["power_ons"] is not None else "(test:/// keeps no power history)"))' "$@"
}
graph() {  # ansible-inventory --graph, each host's VMs on its line (the hypervisors' own entries folded in)
  ansible-inventory "$@" | python3 -c '
import re, sys
rows = []  # [line, depth, VMs] ; depth: the indent before "|--"
for line in sys.stdin:
    line = line.rstrip("\n")
    m = re.match(r"^([ |]*)\|--(@?)(.*)$", line)
    if not m or m.group(2):
        rows.append([line, len(m.group(1)) if m else -1, []])
    elif rows and "|--@virt_host_" in rows[-1][0] and len(m.group(1)) > rows[-1][1]:
        rows[-1][2].append(m.group(3))
    elif not any(r[0].endswith("|--@virt_host_%s:" % m.group(3)) for r in rows):
        rows.append([line, len(m.group(1)), []])  # a host without a host group of its own
for line, _depth, vms in rows:
    print(line + (" " + ", ".join(vms) if vms else ""))'
}
audit() {  # the last audit lines, one line each: the intent before the action, the outcome after it
  tail -n "$1" "$VIRTOPS_AUDIT_LOG" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    t = r.get("target") or {}
    head = "  %-7s %s %s of %s [%s] on %s, reason %s, by %s via %s" % (
        r["phase"], r["module"].split(".")[-1], r.get("state"), t.get("name"), t.get("platform"),
        t.get("host"), r.get("reason"), r.get("who"), r.get("via"))
    if r["phase"] == "intent":
        print(head + ": plan " + ", ".join(s["action"] for s in r.get("plan") or []))
    else:
        print(head + ": %s in %s s (%s)" % (r.get("result"), r.get("elapsed"),
              ", ".join("%s=%s" % (s["action"], s["result"]) for s in r.get("steps") or [])))'
}

step "Where does each VM run? VMware, Oracle VM and KVM in one inventory, read live (cluster, host: VMs)" \
  "ansible-inventory -i $inv --graph virt_clusters" "graph -i $inv --graph virt_clusters"
step "esx01 dies (the lab powers it off). What goes down with it?" \
  "scripts/lab fault $lab host-down esx01 && ansible-playbook -i $inv playbooks/host_failure_impact.yml -e failed_host=esx01 -e report_dir=.build/demo/impact"
scripts/lab fault $lab host-up esx01 >/dev/null
step "ovs01 dies on Oracle VM (the lab cuts its power). The same runbook, the same report" \
  "scripts/lab fault $lab host-down ovs01 && ansible-playbook -i $inv playbooks/host_failure_impact.yml -e failed_host=ovs01 -e report_dir=.build/demo/impact-ovm"
scripts/lab fault $lab host-up ovs01 >/dev/null
step "web02 hangs on vCenter: it ignores a graceful shutdown. Dry run first (the plan)" \
  "scripts/lab fault $lab vm-hang web02 && ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web02 -e reason=demo --check"
step "Restart web02 for real: graceful stop, forced off after the timeout, start" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web02 -e reason=demo -e restart_vm_shutdown_timeout=10"
step "hr01 on Oracle VM ignores the graceful stop too: the same command" \
  "scripts/lab fault $lab vm-ignore-graceful hr01 && ansible-playbook -i $inv playbooks/restart_vm.yml -e target=hr01 -e reason=demo -e restart_vm_shutdown_timeout=10"
step "db02 on KVM: the same command" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=db02 -e reason=demo"
step "What the peers themselves saw" "scripts/lab state $lab" "counts web02 hr01 db02"
# the one step that must fail: the demo stops if web01 is not refused
if step "A name that matches two VMs (web01: one on vCenter, one on KVM) is refused; nothing is touched" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web01"; then
  echo "demo: web01 was not refused" >&2
  exit 1
fi
step "Every power action left an intent and an outcome line in the audit log" "tail -n 2 \"\$VIRTOPS_AUDIT_LOG\"" "audit 2"
printf 'Demo done. Inventory: %s (the lab stops now; scripts/lab up demo/lab.yml DIR keeps one running)\n' "$inv"
