#!/bin/sh
# Builds the Hearth guest kernel from Debian's linux-source-6.1 and caches it
# by a hash of the config fragment, this script and the source version, so a
# second call with nothing changed does no work.
#
# usage: kernel/build.sh OUT_VMLINUX
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=$1
src=${LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
cache=${HEARTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}/kernel

[ -f "$src" ] || { echo "kernel: $src missing (apt-get install linux-source-6.1)" >&2; exit 1; }
srcver=$(dpkg-query -W -f '${Version}' linux-source-6.1 2>/dev/null || stat -c %s-%Y "$src")
key=$(cat "$here/hearth.config" "$here/build.sh" | { cat; echo "$srcver"; } | sha256sum | cut -c1-16)
dir=$cache/$key

if [ ! -f "$dir/vmlinux" ]; then
	echo "kernel: building $key from linux-source $srcver (about 5 minutes on 2 cores)" >&2
	mkdir -p "$cache"
	work=$(mktemp -d "$cache/build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	tar -C "$work" -xf "$src"
	k=$work/linux-source-6.1
	make -s -C "$k" ARCH=x86_64 tinyconfig >/dev/null
	"$k/scripts/kconfig/merge_config.sh" -m -O "$k" "$k/.config" "$here/hearth.config" >/dev/null
	make -s -C "$k" ARCH=x86_64 olddefconfig
	# Fail loudly when an option of the fragment did not survive olddefconfig
	# (a missing dependency), rather than boot a kernel without it.
	grep -E '^CONFIG_[A-Z0-9_]+=' "$here/hearth.config" | while IFS= read -r line; do
		opt=${line%%=*}
		val=${line#*=}
		if [ "$val" = n ]; then
			if grep -q "^$opt=" "$k/.config"; then echo "kernel: $opt should be off" >&2; exit 1; fi
		elif ! grep -qx "$line" "$k/.config"; then
			echo "kernel: $line did not apply" >&2; exit 1
		fi
	done
	make -s -C "$k" ARCH=x86_64 -j"$(nproc)" vmlinux KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 2026" KBUILD_BUILD_USER=hearth KBUILD_BUILD_HOST=hearth
	mkdir -p "$work/out"
	cp "$k/vmlinux" "$work/out/vmlinux"
	strip --strip-debug "$work/out/vmlinux" 2>/dev/null || true
	cp "$k/.config" "$work/out/config"
	make -s -C "$k" ARCH=x86_64 kernelrelease >"$work/out/release"
	rm -rf "$dir"
	mv "$work/out" "$dir"
fi

mkdir -p "$(dirname "$out")"
if ! cmp -s "$dir/vmlinux" "$out" 2>/dev/null; then
	cp "$dir/vmlinux" "$out.tmp"
	mv "$out.tmp" "$out"
fi
echo "kernel: $out ($(cat "$dir/release"), cache $key)" >&2
