#!/usr/bin/env bash
# Benchmark our inventory plugins against the community ones, and our EDA recovery latency.
#   bench/run.sh [libvirt] [--sizes 200,2000] [--repeats 3] [--running 10]   (default: libvirt)
#   bench/run.sh vmware [--sizes 1000,10000] [--repeats 3] [--timeout 600]
#   bench/run.sh eda [--platforms vmware,libvirt] [--settings 1:5:5,5:10:3,15:60:1] [--libvirt-setting 1:5:3]
#                    [--by-hand 3]          (EDA recovery latency, vcsim and libvirt, ~8 min)
#   bench/run.sh ovm [--sizes 1000,10000] [--repeats 3]   (Oracle VM: the emulated Manager, ~2 min)
#   bench/run.sh all                         (all three, each with its own defaults)
# Own venv (.build/bench-venv), so /work/main/.venv is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
venv=$root/.build/bench-venv
stamp=$venv/.bench-installed

which=libvirt
case "${1:-}" in
  libvirt|vmware|ovm|eda|all) which=$1; shift ;;
esac

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if [ ! -f "$stamp" ] || [ "$here/requirements.txt" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
  touch "$stamp"
fi

# our collection, linked as virtops.unified; community.libvirt, community.vmware and
# vmware.vmware come with the "ansible" package
[ -e "$root/.build/collections/ansible_collections/virtops/unified" ] || "$root/scripts/bootstrap.sh" demo
export ANSIBLE_COLLECTIONS_PATH=$root/.build/collections
export PATH=$venv/bin:$PATH

run_libvirt() {
  # libvirtd must answer on qemu:///system
  if ! timeout 30 virsh -c qemu:///system version >/dev/null 2>&1; then
    "$root/tests/peers/libvirt/start.sh"
  fi
  "$venv/bin/python" "$here/bench_libvirt_inventory.py" "$@"
}

run_vmware() {
  # the vcsim peer (govmomi simulator); build.sh skips the build when it is up to date
  "$venv/bin/python" "$here/bench_vmware_inventory.py" --vcsim "$("$root/tests/peers/vcsim/build.sh")" "$@"
}

run_ovm() {
  # the lab's Oracle VM Manager emulator (tests/peers/ovm), started and stopped by scripts/lab
  "$venv/bin/python" "$here/bench_ovm_inventory.py" "$@"
}

run_eda() {
  # the real ansible-rulebook (.build/eda-venv, Java 17: scripts/bootstrap.sh test) against the vcsim peer
  # and the libvirt peer (the script starts libvirtd with tests/peers/libvirt/start.sh and builds the guests)
  "$venv/bin/python" "$here/bench_eda_latency.py" --vcsim "$("$root/tests/peers/vcsim/build.sh")" "$@"
}

case $which in
  libvirt) run_libvirt "$@" ;;
  vmware) run_vmware "$@" ;;
  ovm) run_ovm "$@" ;;
  eda) run_eda "$@" ;;
  all) rc=0; run_libvirt || rc=$?; run_vmware || rc=$?; run_ovm || rc=$?; run_eda || rc=$?; exit $rc ;;
esac
