#!/bin/sh
# Installs the Debian packages Hearth needs, when any is missing.
set -eu

pkgs="qemu-system-x86 linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio
make gcc libc6-dev busybox-static erofs-utils e2fsprogs nftables iproute2 runc
docker-registry skopeo etcd-server"

missing=""
for p in $pkgs; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing
