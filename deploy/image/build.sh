#!/usr/bin/env bash
# Builds weft's container image from local files only (no registry, no Dockerfile base):
# a root file system with the weft binary and exactly the shared libraries `ldd` names,
# busybox-static for a shell, the reference CNI plugins weft chains (portmap, bandwidth,
# loopback, host-local), and the CNI installer script; then `docker import`s it.
#
# usage: deploy/image/build.sh [TAG]          (default weft:latest; honours DOCKER_HOST)
#   WEFT_BIN=path      the weft binary (default: target/release/weft, built if missing)
#   OUT=file.tar       also keep the root file system tarball there
#   NO_IMPORT=1        only build the tarball (needs OUT)
# Needs: busybox-static, containernetworking-plugins (Debian), docker (unless NO_IMPORT).
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/../.." && pwd)"
tag="${1:-weft:latest}"
bin="${WEFT_BIN:-$root_dir/target/release/weft}"
if [ ! -x "$bin" ]; then
  (cd "$root_dir" && cargo build --release --bin weft)
fi
[ -x /bin/busybox ] || { echo "build.sh: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }
plugins=/usr/lib/cni
[ -x "$plugins/portmap" ] || { echo "build.sh: $plugins/portmap missing (apt-get install containernetworking-plugins)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,usr/bin,usr/lib/cni,etc,proc,sys,dev,tmp,run/weft,var/lib/weft,host}
chmod 1777 "$rootfs/tmp"
install -m 0755 "$bin" "$rootfs/usr/bin/weft"
# The libraries the binary links, at the paths the loader looks for them.
for lib in $(ldd "$bin" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}'); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
for p in portmap bandwidth loopback host-local; do
  install -m 0755 "$plugins/$p" "$rootfs/usr/lib/cni/$p"
done
install -m 0755 "$root_dir/deploy/image/install-cni.sh" "$rootfs/usr/bin/weft-install-cni"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"

tar="${OUT:-$work/weft-rootfs.tar}"
tar --numeric-owner -C "$rootfs" -cf "$tar" .
if [ "${NO_IMPORT:-}" = 1 ]; then
  echo "$tar"
  exit 0
fi
docker import \
  --change 'ENV PATH=/usr/bin:/bin' \
  --change 'ENTRYPOINT ["/usr/bin/weft"]' \
  --change 'CMD ["launch", "--foreground"]' \
  "$tar" "$tag" >/dev/null
echo "$tag"
