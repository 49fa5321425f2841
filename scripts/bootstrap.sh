#!/usr/bin/env bash
# Set up this checkout: system packages, a Python venv in .venv, and the
# collection linked where Ansible finds it (.build/collections, see ansible.cfg).
#   scripts/bootstrap.sh demo   what the demo and the lab need (libvirt client library, Go for the vCenter peer)
#   scripts/bootstrap.sh test   + the test peers (libvirtd, QEMU, ...) and test tools
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:-test}
cd "$root"

apt_lists=(scripts/apt-demo.txt tests/peers/vcsim/apt-packages.txt)
pip_req=requirements-run.txt
if [ "$profile" = test ]; then
  apt_lists+=(scripts/apt-test.txt tests/peers/libvirt/apt-packages.txt)
  pip_req=requirements-test.txt
fi

# Debian packages: install only what is missing, so a set-up machine costs nothing.
wanted=$(cat "${apt_lists[@]}" | sed 's/#.*//' | xargs -n1 | sort -u)
missing=()
for pkg in $wanted; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv; pip runs again only when a requirements file changed.
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.virtops-$profile
if [ ! -f "$stamp" ] || [ -n "$(find requirements*.txt -newer "$stamp")" ]; then
  echo "bootstrap: installing Python packages from $pip_req"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$pip_req"
  touch "$stamp"
fi

# ansible-rulebook gets a venv of its own (its dependencies pin differently).
if [ "$profile" = test ]; then
  eda=.build/eda-venv
  [ -x $eda/bin/python ] || "$python" -m venv $eda
  if [ ! -f $eda/.virtops ] || [ requirements-eda.txt -nt $eda/.virtops ] || [ requirements.txt -nt $eda/.virtops ]; then
    echo "bootstrap: installing ansible-rulebook into $eda"
    $eda/bin/python -m pip install -q --upgrade pip
    $eda/bin/python -m pip install -q -r requirements-eda.txt
    touch $eda/.virtops
  fi
fi

# The checkout itself is the collection virtops.unified.
mkdir -p .build/collections/ansible_collections/virtops
ln -sfn "$root" .build/collections/ansible_collections/virtops/unified
echo "bootstrap: ready ($profile). Use: source .venv/bin/activate"
