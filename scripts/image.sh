#!/usr/bin/env bash
# Build Berth's image with buildah from deploy/Containerfile: a context with the binary, the
# shared libraries `ldd` says it needs, a passwd/group naming the non-root user, and the
# directories it writes (group 0, writable, for OpenShift's arbitrary UIDs).
#
#   scripts/image.sh [BINARY] [TAG]     # default: dist/berth, berth:dev
# Extra buildah flags (e.g. --storage-driver vfs) go in BUILDAH_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-dist/berth}
tag=${2:-berth:dev}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
install -D -m 0755 "$bin" "$root/usr/bin/berth"
# The dynamic loader and libraries, at the paths the binary asks for.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
mkdir -p "$root/etc" "$root/tmp" "$root/var/lib/berth"
printf 'root:x:0:0:root:/root:/sbin/nologin\nberth:x:65532:0:berth:/var/lib/berth:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
chmod 0775 "$root/var/lib/berth"
chown -R 65532:0 "$root/var/lib/berth"
cp deploy/Containerfile "$ctx/Containerfile"
# shellcheck disable=SC2086
buildah ${BUILDAH_FLAGS:-} build --format docker --layers=false \
    --build-arg VERSION="$("$bin" --version | cut -d' ' -f2)" \
    --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$tag" -f "$ctx/Containerfile" "$ctx" >&2
echo "$tag"
