#!/usr/bin/env bash
# Builds ferrofs and mounts a volume on embedded defaults (sled + local directory).
# Needs root (for /var/lib and /mnt); installs fuse3 if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
META="${FERROFS_META:-/var/lib/ferrofs/meta}"
DATA="${FERROFS_DATA:-/var/lib/ferrofs/data}"
MNT="${FERROFS_MOUNT:-/mnt/ferrofs}"
if ! command -v fusermount3 >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi
cargo build --release -p ferrofs
bin="${CARGO_TARGET_DIR:-target}/release/ferrofs"
mkdir -p "$MNT" "$(dirname "$META")"
if [ ! -e "$META" ]; then
    "$bin" format "sled://$META" myvol --storage file --bucket "$DATA"
fi
"$bin" mount "sled://$META" "$MNT" -d
echo "ferrofs is mounted at $MNT; unmount with: $bin umount $MNT"
