#!/usr/bin/env bash
# build_guests.sh [OUTDIR] -> OUTDIR/vmlinuz (bzImage), OUTDIR/vmlinux (same
# kernel, uncompressed ELF), OUTDIR/initrd.gz
# A tiny Linux guest (Debian kernel + busybox initramfs) that powers off on the
# ACPI power button and runs qemu-ga on org.qemu.guest_agent.0, so libvirt's
# shutdown/reboot/agent paths can be tested for real. Idempotent.
set -euo pipefail

OUT=${1:-/var/lib/libvirt/images/virtops-test}
SELF=$(readlink -f "$0")
# Modules to load (dependencies are resolved below): button = ACPI power
# button input device, evdev = /dev/input/event*, virtio_pci + virtio_console
# = the virtio-serial port qemu-ga talks on.
MODS="button evdev virtio_pci virtio_console"

fresh() { for f; do [ -s "$OUT/$f" ] && [ "$OUT/$f" -nt "$SELF" ] || return 1; done; }
if fresh vmlinuz vmlinux initrd.gz; then
    echo "build_guests.sh: $OUT up to date"; exit 0
fi

TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
chown _apt "$TMP" 2>/dev/null || true  # apt downloads as _apt; else it warns

# Current kernel ABI package, e.g. linux-image-6.1.0-56-amd64. Fetched and
# unpacked only: installing a kernel into a container is pointless.
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
PKG=$(kpkg); [ -n "$PKG" ] || { apt-get update -qq; PKG=$(kpkg); }
[ -n "$PKG" ] || { echo "build_guests.sh: cannot resolve linux-image-amd64" >&2; exit 1; }
# Stale package lists 404 once Debian publishes a newer build: update, retry.
dl() { (cd "$TMP" && apt-get download -q "$PKG" >/dev/null); }
dl || { apt-get update -qq; PKG=$(kpkg); dl; }
dpkg-deb -x "$TMP"/"$PKG"_*.deb "$TMP/k"
KVER=${PKG#linux-image-}
KMOD="$TMP/k/lib/modules/$KVER/kernel"

R="$TMP/root"
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,run,tmp,lib/modules,var}
ln -s ../run "$R/var/run"
cp /bin/busybox "$R/bin/busybox"

# Resolve module load order from each .ko's "depends=" modinfo field (the
# package has no modules.dep; depmod runs at install time).
declare -A SEEN=(); ORDER=()
add_mod() {
    local m=$1 f d
    [ -n "${SEEN[$m]:-}" ] && return; SEEN[$m]=1
    f=$(find "$KMOD" -name "$m.ko" -o -name "${m//_/-}.ko" | head -1)
    [ -n "$f" ] || { echo "build_guests.sh: module $m not found (built in?)" >&2; return; }
    for d in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do add_mod "$d"; done
    cp "$f" "$R/lib/modules/$m.ko"; ORDER+=("$m")
}
for m in $MODS; do add_mod "$m"; done
printf '%s\n' "${ORDER[@]}" >"$R/etc/modules"

# qemu-ga with the shared libraries it links (same paths as on the host).
cp /usr/sbin/qemu-ga "$R/sbin/"
for lib in $(ldd /usr/sbin/qemu-ga | grep -o '/[^ ]*'); do
    mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"
done

# qemu-ga's guest-shutdown execs /sbin/shutdown -P|-H|-r +0 "msg".
cat >"$R/sbin/shutdown" <<'EOF'
#!/bin/sh
case " $* " in *" -r "*) echo "VIRTOPS-GUEST: agent reboot" >/dev/console; reboot -f;; esac
echo "VIRTOPS-GUEST: agent shutdown" >/dev/console; poweroff -f
EOF

cat >"$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
say() { echo "VIRTOPS-GUEST: $* (uptime $(cut -d' ' -f1 /proc/uptime))" >/dev/console; }
say "init started"
for m in $(cat /etc/modules); do insmod /lib/modules/$m.ko; done
say "modules loaded"

# Power off on any event from an ACPI "Power Button" input device (a press is
# what virsh shutdown --mode acpi / system_powerdown sends).
for ev in /sys/class/input/event*; do
    [ "$(cat $ev/device/name 2>/dev/null)" = "Power Button" ] || continue
    dev=/dev/input/${ev##*/}
    ( until [ "$(dd if=$dev bs=24 count=1 2>/dev/null | wc -c)" = 24 ]; do sleep 1; done
      say "power button pressed, powering off"; poweroff -f ) &
done

# virtio-serial ports show up asynchronously; wait up to ~5 s for the agent's.
AGENT=no
for i in $(seq 50); do
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
        mkdir -p /dev/virtio-ports; ln -sf ../${p##*/} /dev/virtio-ports/org.qemu.guest_agent.0
        qemu-ga -m virtio-serial -p /dev/${p##*/} -t /run -f /run/qemu-ga.pid -d && AGENT=yes
        break 2
    done
    sleep 0.1
done
say "READY agent=$AGENT"  # tests wait for "VIRTOPS-GUEST: READY"
while :; do sleep 3600; done
EOF
chmod 755 "$R/init" "$R/sbin/shutdown"

mkdir -p "$OUT"
cp "$TMP/k/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
# Also the uncompressed ELF (PVH entry): under TCG it skips the real-mode
# setup and the xz decompression, booting ~2x faster than the bzImage.
python3 - "$OUT/vmlinuz.tmp" "$OUT/vmlinux.tmp" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")  # Debian builds with CONFIG_KERNEL_XZ
open(sys.argv[2], "wb").write(lzma.LZMADecompressor().decompress(data[start:]))
PY
(cd "$R" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -6 >"$OUT/initrd.gz.tmp"
chmod 644 "$OUT"/*.tmp; chmod 755 "$OUT"
for f in vmlinuz vmlinux initrd.gz; do mv "$OUT/$f.tmp" "$OUT/$f"; done
echo "$PKG modules: ${ORDER[*]}" >"$OUT/BUILD-INFO"
echo "build_guests.sh: built $OUT ($PKG; modules: ${ORDER[*]})"
