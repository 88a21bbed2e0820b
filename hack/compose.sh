#!/bin/bash
# Builds the Docker Compose v2 CLI plugin from the Go module proxy, for the
# end-to-end tests, and caches it by a hash of its version and this script.
# `go install` cannot build it (its go.mod has exclude directives), so the
# module is downloaded and built in place. Usage: compose.sh OUT
set -euo pipefail
out=$1
version=v2.40.3
cache=${HEARTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}/compose
key=$( (echo "$version"; cat "$0") | sha256sum | cut -c1-16)
bin=$cache/$key/docker-compose
if [ ! -x "$bin" ]; then
	echo "compose: building $version (cache $key)" >&2
	mkdir -p "$cache"
	src=$(go mod download -json "github.com/docker/compose/v2@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$src" ] || { echo "compose: download of $version failed" >&2; exit 1; }
	work=$(mktemp -d "$cache/build.XXXXXX")
	trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
	cp -r "$src/." "$work/src"
	chmod -R u+w "$work/src"
	(cd "$work/src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" -o "$work/docker-compose" ./cmd)
	mkdir -p "$cache/$key"
	mv "$work/docker-compose" "$bin"
fi
mkdir -p "$(dirname "$out")"
cp "$bin" "$out.tmp" && mv "$out.tmp" "$out"
echo "compose: $out ($version, cache $key)" >&2
