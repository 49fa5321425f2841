#!/usr/bin/env bash
# Set up and run the main job on an embedded lab: three fake hypervisors of
# libvirt's test:/// driver (demo/lab/*.xml), no external infrastructure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/bootstrap.sh demo
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_CONFIG="$root/ansible.cfg" ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-1}

# test:/// URIs need absolute paths, so the inventory is written here.
inv=.build/demo/lab.libvirt.yml
mkdir -p "$(dirname "$inv")"
cat > "$inv" <<YAML
plugin: virtops.unified.libvirt
hypervisors:
  - {name: kvm01, uri: "test://$root/demo/lab/kvm01.xml", cluster: prod}
  - {name: kvm02, uri: "test://$root/demo/lab/kvm02.xml", cluster: prod}
  - {name: kvm03, uri: "test://$root/demo/lab/kvm03.xml", cluster: dev}
YAML

# the demo keeps its own audit log and locks (a fresh restart budget each run)
export VIRTOPS_AUDIT_LOG="$root/.build/demo/audit.jsonl" VIRTOPS_LOCK_DIR="$root/.build/demo/locks"
rm -f "$VIRTOPS_AUDIT_LOG"

step() { printf '\n\033[1m==> %s\033[0m\n$ %s\n' "$1" "$2"; eval "$2"; }

step "Where does each VM run? (cluster -> hypervisor -> VMs, read live)" \
  "ansible-inventory -i $inv --graph virt_cluster_prod && ansible-inventory -i $inv --graph virt_cluster_dev"
step "If kvm01 dies, which VMs go down with it?" \
  "ansible-playbook -i $inv playbooks/host_failure_impact.yml -e failed_host=kvm01 -e report_dir=.build/demo/impact"
printf 'The picture: file://%s/.build/demo/impact/impact.html (also impact.csv, impact.json)\n' "$root"
step "Restart VM web02, dry run first (check mode prints the plan)" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web02 -e 'reason=demo' --check"
step "Restart VM web02 for real" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web02 -e 'reason=demo'"
step "A name that matches two VMs is refused (nothing is touched)" \
  "ansible-playbook -i $inv playbooks/restart_vm.yml -e target=web01 || true"
step "Every power action left one line in the audit log" "tail -n 1 \"\$VIRTOPS_AUDIT_LOG\""
printf '\nDemo done. Inventory: %s\n' "$inv"
