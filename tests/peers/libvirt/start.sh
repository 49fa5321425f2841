#!/usr/bin/env bash
# Start a libvirt peer (virtlogd + monolithic libvirtd, qemu:///system) in a
# container without systemd. Idempotent: safe to call when already running.
set -euo pipefail

URI=qemu:///system
WAIT=${LIBVIRT_START_TIMEOUT:-60}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "start.sh: must run as root" >&2; exit 1
fi

# Install what is missing (fresh machine); the list is the single source.
missing=()
while read -r p; do
    [ -n "$p" ] && ! dpkg -s "$p" >/dev/null 2>&1 && missing+=("$p")
done < <(grep -v '^#' "$HERE/apt-packages.txt")
if [ ${#missing[@]} -gt 0 ]; then
    echo "start.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

alive() { pid=$(cat "$1" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }

# Without group access to /dev/kvm libvirtd's capability probe fails as the
# qemu user, the cache is never valid and every call re-probes QEMU (40-120 s).
# Must happen before libvirtd starts, or it caches the TCG-only result.
# A capability cache probed while /dev/kvm was unusable is dropped as well.
if [ -e /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then
    chgrp kvm /dev/kvm && chmod 660 /dev/kvm
    alive /run/libvirtd.pid || rm -rf /var/cache/libvirt/qemu/capabilities
fi

# libvirtd needs virtlogd for the domain log/serial file handling.
if ! alive /run/virtlogd.pid; then
    virtlogd -d
fi
if ! alive /run/libvirtd.pid; then
    libvirtd -d
fi

deadline=$((SECONDS + WAIT))
until timeout 30 virsh -c "$URI" list --all >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
        echo "start.sh: libvirtd did not answer on $URI within ${WAIT}s" >&2
        exit 1
    fi
    sleep 0.5
done

# Our domains use no NIC and no disk pool, so the default network/pool are
# deliberately not started (the container has no bridge/iptables anyway).
echo "start.sh: libvirt ready on $URI ($(virsh -c "$URI" version 2>/dev/null | grep -i 'running hypervisor' || true))"
