#!/bin/sh
# Packs the guest's initramfs: hearth-init as /init, hearth-stub as /stub.
# usage: hack/initrd.sh INIT STUB OUT
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$1" "$dir/init"
cp "$2" "$dir/stub"
out=$(realpath -m "$3")
(cd "$dir" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > "$out.tmp")
mv "$out.tmp" "$out"
