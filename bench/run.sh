#!/usr/bin/env bash
# Benchmark our libvirt inventory plugin against community.libvirt's.
#   bench/run.sh [--sizes 200,2000] [--repeats 3] [--running 10]
# Own venv (.build/bench-venv), so /work/main/.venv is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
venv=$root/.build/bench-venv
stamp=$venv/.bench-installed

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if [ ! -f "$stamp" ] || [ "$here/requirements.txt" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
  touch "$stamp"
fi

# our collection, linked as virtops.unified; community.libvirt comes with the "ansible" package
[ -e "$root/.build/collections/ansible_collections/virtops/unified" ] || "$root/scripts/bootstrap.sh" demo
export ANSIBLE_COLLECTIONS_PATH=$root/.build/collections
export PATH=$venv/bin:$PATH

# libvirtd must answer on qemu:///system
if ! timeout 30 virsh -c qemu:///system version >/dev/null 2>&1; then
  "$root/tests/peers/libvirt/start.sh"
fi

exec "$venv/bin/python" "$here/bench_libvirt_inventory.py" "$@"
