#!/usr/bin/env bash
# Stop the libvirtd/virtlogd pair started by start.sh (pid files in /run).
# Running domains are left to libvirtd's own shutdown handling (they keep
# running as orphans of qemu; destroy them first if that matters).
set -euo pipefail

stop() {  # stop PIDFILE NAME: SIGTERM, wait up to 20 s, then SIGKILL
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill -0 "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    kill "$pid"
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "stop.sh: $2 ignored SIGTERM, killing" >&2; kill -9 "$pid"; }
    rm -f "$1"
    echo "stop.sh: stopped $2 ($pid)"
}
# libvirtd first: it talks to virtlogd for running domains' logs.
stop /run/libvirtd.pid libvirtd
stop /run/virtlogd.pid virtlogd
