#!/usr/bin/env bash
# Set up everything and run every check: sanity, lint, unit and integration
# tests on real peers (libvirtd + QEMU/KVM, libvirt's test:/// driver, the vCenter
# simulator, the Oracle VM Manager emulator), then the core subset on the lowest ansible-core.
# Exits non-zero on any failure; a peer that cannot start is a failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/bootstrap.sh test
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_CONFIG="$root/ansible.cfg"

step() { printf '\n==> %s\n' "$*"; }

step "test peers: libvirtd + QEMU, guest images, the vCenter simulator"
tests/peers/libvirt/start.sh
tests/peers/libvirt/build_guests.sh
tests/peers/vcsim/build.sh >/dev/null

step "ansible-test sanity"
scripts/sanity.sh

step "ansible-lint (production profile)"
ansible-lint

step "collection build and install"
rm -rf .build/dist .build/installed && mkdir -p .build/dist
ansible-galaxy collection build --output-path .build/dist --force >/dev/null
ANSIBLE_COLLECTIONS_PATH=.build/installed ansible-galaxy collection install --force -p .build/installed .build/dist/virtops-unified-*.tar.gz >/dev/null
test -f .build/installed/ansible_collections/virtops/unified/plugins/modules/vm_power.py

step "unit and integration tests"
pytest -p no:cacheprovider tests/unit tests/integration "$@"

step "ansible-core matrix: the core subset on the lowest ansible-core claimed (the newest is .venv's, above)"
scripts/matrix.sh
