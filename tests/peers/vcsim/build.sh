#!/usr/bin/env bash
# Build the vcsim test peer against Debian's govmomi source (GOPATH mode).
# Usage: build.sh [OUTDIR]   (default: <repo>/.build/vcsim)
# Idempotent: skips the build when the binary matches the current sources and
# toolchain. Prints the binary's path on stdout (everything else on stderr).
# Needs the Debian packages listed in apt-packages.txt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
outdir="${1:-$repo/.build/vcsim}"
gopath=/usr/share/gocode
govmomi="$gopath/src/github.com/vmware/govmomi"
bin="$outdir/vcsim"
stamp="$outdir/vcsim.stamp"

command -v go >/dev/null || { echo "build.sh: go not found (apt-get install golang-go)" >&2; exit 1; }
[ -d "$govmomi/simulator" ] || { echo "build.sh: $govmomi missing (apt-get install golang-github-vmware-govmomi-dev)" >&2; exit 1; }

mkdir -p "$outdir"
want="$( { sha256sum "$here/main.go" "$here/build.sh"; go version;
           dpkg-query -W -f='${Version}\n' golang-github-vmware-govmomi-dev 2>/dev/null || ls -ld --time-style=+%s "$govmomi"; } | sha256sum | cut -d' ' -f1)"

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$bin"
    exit 0
fi

echo "build.sh: building $bin" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$here/main.go" "$tmp/"
( cd "$tmp" && GOPATH="$gopath" GO111MODULE=off GOFLAGS="" CGO_ENABLED=0 \
    go build -trimpath -o "$tmp/vcsim" . ) >&2
mv -f "$tmp/vcsim" "$bin"
echo "$want" > "$stamp"
echo "$bin"
