#!/bin/sh
# The DaemonSet's init step: install weft-cni and its conflist onto the node (the host's
# /opt/cni/bin and /etc/cni/net.d, mounted at /host/...), and the reference plugins the
# conflist chains if the node lacks them. Options are passed to `weft cni install`.
set -eu
bin_dir="${CNI_BIN_DIR:-/host/opt/cni/bin}"
conf_dir="${CNI_CONF_DIR:-/host/etc/cni/net.d}"
weft cni install --bin-dir "$bin_dir" --conf-dir "$conf_dir" "$@"
for p in portmap bandwidth loopback host-local; do
  if [ ! -e "$bin_dir/$p" ]; then
    cp /usr/lib/cni/$p "$bin_dir/.$p.tmp" && mv "$bin_dir/.$p.tmp" "$bin_dir/$p"
    echo "installed $bin_dir/$p"
  fi
done
