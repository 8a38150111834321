#!/usr/bin/env bash
# Achieved vs configured --upload-limit / --download-limit: for each limit, a mount writes
# about 10 s worth of data (dd, fsync at the end) and, remounted with the page cache
# dropped, reads it back; achieved = bytes / wall time. The same without a limit first (the
# ceiling, measured in the same run). Objects go to a local directory, so the limit, not
# the store, is the bottleneck. See bench/README.md.
#
#   bench/rate-limit.sh                        # limits 80 (Mbps), 50MiB/s, 1Gbps
#   LIMITS="100 200MB/s" SECS=5 bench/rate-limit.sh
#
# Needs root (mounting, drop_caches), fusermount3, python3.
set -euo pipefail
LIMITS=${LIMITS:-80 50MiB/s 1Gbps}
SECS=${SECS:-10}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${FERROFS_BIN:-} ]]; then
    (cd "$REPO" && cargo build --release -p ferrofs) >&2
    FERROFS_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferrofs
fi
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }
W=$(mktemp -d /tmp/ferrofs-rate-XXXX)
M=$W/mnt
mkdir -p "$M"
cleanup() {
    mountpoint -q "$M" && "$FERROFS_BIN" umount "$M" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
"$FERROFS_BIN" format "sled://$W/meta" ratebench --bucket "$W/data" >/dev/null
mnt() { "$FERROFS_BIN" mount "sled://$W/meta" "$M" -d --log "$W/mount.log" --cache-size 0 "$@" >/dev/null; }
umnt() { "$FERROFS_BIN" umount "$M" >/dev/null; }
secs_of() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
bytes_per_sec() { # RATE: what ferrofs parses it to (from the unit table of --help)
    python3 - "$1" <<'PY'
import re, sys
s = sys.argv[1]
m = re.fullmatch(r"([0-9.]+)\s*(.*)", s)
v, u = float(m.group(1)), m.group(2)
units = {"": 1e6 / 8, "Mbps": 1e6 / 8, "Kbps": 1e3 / 8, "Gbps": 1e9 / 8, "B/s": 1, "KB/s": 1e3,
         "MB/s": 1e6, "GB/s": 1e9, "KiB/s": 1024, "MiB/s": 2 ** 20, "GiB/s": 2 ** 30}
print(round(v * units[u]))
PY
}

# run LIMIT-ARGS BYTES: prints "write-secs read-secs"
run() {
    local bytes=$1
    shift
    rm -f "$M/f" 2>/dev/null || true
    mnt "$@"
    local t0 t1 t2
    t0=$(date +%s.%N)
    head -c "$bytes" /dev/zero | dd of="$M/f" bs=4M iflag=fullblock conv=fsync status=none
    t1=$(date +%s.%N)
    umnt
    sync
    echo 3 >/proc/sys/vm/drop_caches
    mnt "$@"
    t1b=$(date +%s.%N)
    dd if="$M/f" of=/dev/null bs=4M status=none
    t2=$(date +%s.%N)
    rm -f "$M/f"
    umnt
    echo "$(secs_of "$t0" "$t1") $(secs_of "$t1b" "$t2")"
}

printf 'rate limits -- %s, %s CPUs; objects in a local directory; about %s s of traffic per limit\n\n' \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" "$SECS"
printf '%-10s %14s %12s %9s %12s %9s\n' limit "configured" "upload" "achieved" "download" "achieved"
read -r w r < <(run $((512 << 20)))
printf '%-10s %14s %12s %9s %12s %9s\n' none - \
    "$(python3 -c "print(f'{512 * 2**20 / $w / 1e6:.1f} MB/s')")" - \
    "$(python3 -c "print(f'{512 * 2**20 / $r / 1e6:.1f} MB/s')")" -
for l in $LIMITS; do
    rate=$(bytes_per_sec "$l")
    bytes=$((rate * SECS))
    read -r w r < <(run "$bytes" --upload-limit "$l" --download-limit "$l")
    printf '%-10s %14s %12s %9s %12s %9s\n' "$l" "$(python3 -c "print(f'{$rate / 1e6:.2f} MB/s')")" \
        "$(python3 -c "print(f'{$bytes / $w / 1e6:.2f} MB/s')")" "$(python3 -c "print(f'{$bytes / $w / $rate:.3f}')")" \
        "$(python3 -c "print(f'{$bytes / $r / 1e6:.2f} MB/s')")" "$(python3 -c "print(f'{$bytes / $r / $rate:.3f}')")"
done
