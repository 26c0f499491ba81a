#!/usr/bin/env bash
# fetch-containerd-trixie.sh [DEST] — Debian 13's containerd (1.7.x) unpacked into DEST (default
# /var/cache/pullwatch/containerd-trixie), for the integration suite's second run: apt-get
# download from the trixie suite through a private sources list that reuses this machine's
# own Debian mirror, then dpkg-deb -x. The system's apt state is not touched. Its binaries
# run on Debian 12. Prints DEST.
set -euo pipefail
dest=${1:-/var/cache/pullwatch/containerd-trixie}
if [[ -x $dest/usr/bin/containerd ]]; then echo "$dest"; exit 0; fi
uri=$(sed -n 's/^URIs:[[:space:]]*\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[[ -n $uri ]] || uri=$(sed -n 's/^deb[[:space:]]\+\(http[^ ]*debian\)[[:space:]].*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
[[ -n $uri ]] || { echo "fetch: cannot find the machine's Debian mirror" >&2; exit 1; }
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/lists/partial" "$w/archives/partial" "$w/etc"
echo "deb $uri trixie main" >"$w/etc/sources.list"
opts=(-o Dir::Etc::SourceList="$w/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists="$w/lists" -o Dir::Cache::Archives="$w/archives" -o APT::Get::List-Cleanup=0
      -o APT::Sandbox::User=root)
apt-get "${opts[@]}" update -qq >&2
(cd "$w" && apt-get "${opts[@]}" download containerd >&2)
mkdir -p "$dest"
dpkg-deb -x "$w"/containerd_*.deb "$dest"
echo "$dest"
