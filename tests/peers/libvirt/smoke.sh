#!/usr/bin/env bash
# smoke.sh: check the peer end to end and print the timings quoted in
# README.md. Needs start.sh and build_guests.sh to have run. Cleans up after.
set -euo pipefail
cd "$(dirname "$0")"
export LIBVIRT_DEFAULT_URI=qemu:///system
A=virtops-smoke-acpi H=virtops-smoke-hung

cleanup() {
    for d in $A $H; do
        virsh destroy "$d" >/dev/null 2>&1 || true
        virsh undefine "$d" --managed-save >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT; cleanup

T0=0; mark() { T0=$(date +%s%N); }
secs() { awk -v a="$T0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
ready() { python3 -c "import guests,sys; sys.exit(not guests.wait_console('$A', min_count=$1, timeout=90))"; }
count() { python3 -c "import guests; print(guests.console_count('$A'))"; }
ping() { for _ in $(seq 400); do virsh qemu-agent-command $A '{"execute":"guest-ping"}' >/dev/null 2>&1 && return; sleep 0.05; done; return 1; }
state() { virsh domstate "$1"; }
until_off() { for _ in $(seq 600); do [ "$(state "$1")" = "shut off" ] && return; sleep 0.05; done; return 1; }
fail() { echo "FAIL: $*" >&2; exit 1; }

python3 guests.py acpi $A >/tmp/$A.xml; python3 guests.py hung $H >/tmp/$H.xml
mark; virsh define /tmp/$A.xml >/dev/null; echo "acpi: define $(secs)s"
boot() {  # boot LABEL: start and wait for marker + agent
    mark; virsh start $A >/dev/null; echo "acpi: $1: virsh start returned $(secs)s"
    ready 1 || fail "no READY marker"; echo "acpi: $1: READY marker $(secs)s"
    ping || fail "agent never answered"; echo "acpi: $1: guest-ping answered $(secs)s"
}
boot "boot"
mark; virsh shutdown $A --mode acpi >/dev/null; until_off $A || fail "acpi shutdown"
echo "acpi: shutdown --mode acpi -> shut off $(secs)s"
boot "boot"
mark; virsh shutdown $A >/dev/null; until_off $A || fail "default shutdown"
echo "acpi: shutdown (default = agent) -> shut off $(secs)s"
boot "boot"
for how in "reboot" "reboot --mode acpi" "reset"; do
    n=$(count); mark
    # $how is "verb [--mode x]": word splitting is intended.
    # shellcheck disable=SC2086
    virsh $how $A >/dev/null
    ready $((n + 1)) || fail "$how: no new READY"; ping || fail "$how: agent"
    echo "acpi: $how -> READY again + ping $(secs)s, state $(state $A)"
done
mark; virsh managedsave $A >/dev/null; echo "acpi: managedsave $(secs)s, state $(virsh domstate $A --reason)"
mark; virsh start $A >/dev/null; ping || fail "agent after restore"
echo "acpi: start from managed save -> ping $(secs)s, state $(virsh domstate $A --reason)"
mark; virsh destroy $A >/dev/null; echo "acpi: destroy $(secs)s"

mark; virsh define /tmp/$H.xml >/dev/null; virsh start $H >/dev/null; echo "hung: define+start $(secs)s"
virsh shutdown $H >/dev/null; sleep 10; echo "hung: 10s after shutdown: $(state $H)"
[ "$(state $H)" = running ] || fail "hung guest shut down"
virsh reboot $H >/dev/null; sleep 5; echo "hung: 5s after reboot (ACPI, ignored): $(state $H)"
virsh reset $H >/dev/null; echo "hung: reset -> $(state $H)"
mark; virsh destroy $H >/dev/null; echo "hung: destroy $(secs)s -> $(state $H)"
rm -f /tmp/$A.xml /tmp/$H.xml
echo "smoke: OK"
