#!/usr/bin/env bash
# The ansible-core matrix: the integration suite's core subset on the lowest and the
# newest ansible-core that meta/runtime.yml claims, each in a venv of its own under
# .build/matrix/<version> (created once, re-used; re-installed when requirements.txt changes).
#   scripts/matrix.sh             the lowest (the newest is .venv's, which scripts/test.sh runs)
#   scripts/matrix.sh all         the lowest and the newest
#   scripts/matrix.sh 2.19.5 ...  these versions
# Extra pytest arguments after --, e.g. scripts/matrix.sh all -- -x
# Exits non-zero if any version fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# What the core subset needs beyond the venv: .venv (scripts/lab runs with it), the
# collection link of .build/collections (ansible.cfg) and the vCenter simulator.
[ -x .venv/bin/python ] || scripts/bootstrap.sh test
mkdir -p .build/collections/ansible_collections/virtops
ln -sfn "$root" .build/collections/ansible_collections/virtops/unified
tests/peers/vcsim/build.sh >/dev/null

# The core subset: unit tests, the lab on vcsim, Oracle VM end to end, the tarball.
subset=(tests/unit tests/integration/test_lab_vmware.py tests/integration/test_ovm.py
        tests/integration/test_packaging.py)

# The claims: requires_ansible ">=LOW,<HIGH"; the newest is what .venv resolved from it.
lowest=$(sed -n 's/^requires_ansible: *"*>=\([0-9.]*\).*/\1/p' meta/runtime.yml)
newest=$(.venv/bin/python -c 'from ansible.release import __version__; print(__version__)')
[ -n "$lowest" ] || { echo "matrix: no lower bound in meta/runtime.yml's requires_ansible" >&2; exit 2; }

versions=() pytest_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; pytest_args=("$@"); break ;;
    all) versions+=("$lowest" "$newest") ;;
    *) versions+=("$1") ;;
  esac
  shift
done
[ ${#versions[@]} -gt 0 ] || versions=("$lowest")

python=${PYTHON:-python3}
venv_for() {  # the venv of ansible-core $1, created or updated
  local v=$1 dir=.build/matrix/$1
  [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
  if [ ! -f "$dir/.virtops-matrix" ] || [ requirements.txt -nt "$dir/.virtops-matrix" ] \
     || [ "$0" -nt "$dir/.virtops-matrix" ]; then
    echo "matrix: installing ansible-core $v into $dir"
    "$dir/bin/python" -m pip install -q "ansible-core==$v" "pytest>=8" distlib -r requirements.txt
    touch "$dir/.virtops-matrix"
  fi
}

failed=()
for v in "${versions[@]}"; do
  venv_for "$v"
  printf '\n==> ansible-core %s (%s)\n' "$v" ".build/matrix/$v"
  start=$SECONDS
  if ANSIBLE_CONFIG="$root/ansible.cfg" ".build/matrix/$v/bin/python" -m pytest -p no:cacheprovider -q \
       "${subset[@]}" "${pytest_args[@]}"; then
    echo "matrix: ansible-core $v passed in $((SECONDS - start)) s"
  else
    echo "matrix: ansible-core $v FAILED after $((SECONDS - start)) s"
    failed+=("$v")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "matrix: failed on ansible-core ${failed[*]}" >&2
  exit 1
fi
echo "matrix: passed on ansible-core ${versions[*]}"
