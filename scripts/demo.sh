#!/usr/bin/env bash
# Set up and run the main job on the embedded lab (demo/lab.yml): a vCenter
# (the vCenter simulator peer), an Oracle VM Manager (our emulator of its REST
# API) and a rack of KVM hosts (libvirt's test:/// driver) side by side in one
# inventory, no external infrastructure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/bootstrap.sh demo
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_CONFIG="$root/ansible.cfg" ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-1}

lab=.build/demo/lab
inv=$lab/inventory
if [ -f $lab/lab.json ]; then scripts/lab down $lab >/dev/null 2>&1 || true; fi   # a previous demo's peers
scripts/lab up demo/lab.yml $lab
trap 'scripts/lab down "$lab" >/dev/null' EXIT
# the lab's own audit log and locks (a fresh restart budget each run)
# shellcheck disable=SC1091
source $lab/lab.env
rm -f "$VIRTOPS_AUDIT_LOG"

step() { printf '\n\033[1m==> %s\033[0m\n$ %s\n' "$1" "$2"; eval "$2"; }
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

step "Where does each VM run? VMware, Oracle VM and KVM in one inventory, read live" \
  "ansible-inventory -i $inv --graph virt_clusters"
step "esx01 dies (the lab powers it off). What goes down with it?" \
  "scripts/lab fault $lab host-down esx01 && ansible-playbook -i $inv playbooks/host_failure_impact.yml -e failed_host=esx01 -e report_dir=.build/demo/impact"
printf 'The picture: file://%s/.build/demo/impact/impact.html (also impact.csv, impact.json)\n' "$root"
scripts/lab fault $lab host-up esx01 >/dev/null
step "ovs01 dies on Oracle VM (the lab cuts its power). The same runbook, the same report" \
  "scripts/lab fault $lab host-down ovs01 && ansible-playbook -i $inv playbooks/host_failure_impact.yml -e failed_host=ovs01 -e report_dir=.build/demo/impact-ovm"
scripts/lab fault $lab host-up ovs01 >/dev/null
step "web02 hangs on vCenter: it ignores a graceful shutdown. Dry run first (the plan)" \
  "scripts/lab fault $lab vm-hang web02 && ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web02 -e reason=demo --check"
step "Restart web02 for real: graceful stop, forced off after the timeout, start" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web02 -e reason=demo -e restart_vm_shutdown_timeout=10"
step "hr01 on Oracle VM ignores the graceful stop too: the same command (stop, kill after the timeout, start)" \
  "scripts/lab fault $lab vm-ignore-graceful hr01 && ansible-playbook -i $inv playbooks/restart_vm.yml -e target=hr01 -e reason=demo -e restart_vm_shutdown_timeout=10"
step "db02 on KVM: the same command" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=db02 -e reason=demo"
step "What the peers themselves saw" "counts web02 hr01 db02"
step "A name that matches two VMs (web01: one on vCenter, one on KVM) is refused; nothing is touched" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web01 || true"
step "Every power action left an intent and an outcome line in the audit log" "tail -n 2 \"\$VIRTOPS_AUDIT_LOG\""
printf '\nDemo done. Inventory: %s (the lab stops now; scripts/lab up demo/lab.yml DIR keeps one running)\n' "$inv"
