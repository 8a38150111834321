#!/usr/bin/env bash
# How fast a mount rebuilds its block cache index from the cache dir at start: creates
# BLOCKS cached block files (sparse, of the right sizes; TORN_PERCENT of them cut short,
# as a crash would leave them) for a fresh volume, mounts, and reports the time the
# mount logs for "block cache ready" and how many blocks it kept. See bench/README.md.
#
#   bench/cache-restore.sh              # 200,000 blocks
#   BLOCKS=20000 bench/cache-restore.sh
#
# Needs root (mounting), python3; FERROFS_BIN or a release build.
set -euo pipefail
BLOCKS=${BLOCKS:-200000}
BLOCK_LEN=${BLOCK_LEN:-112640}
TORN_PERCENT=${TORN_PERCENT:-1}
DIRS=${DIRS:-1}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${BENCH_DIR:-/tmp/ferrofs-cache-restore-$$}
if [[ -z ${FERROFS_BIN:-} ]]; then
    (cd "$REPO" && cargo build --release -p ferrofs) >&2
    FERROFS_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferrofs
fi
[[ $(id -u) == 0 ]] || { echo "run as root (it mounts)" >&2; exit 1; }
mkdir -p "$W/mnt"
cleanup() { "$FERROFS_BIN" umount "$W/mnt" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
"$FERROFS_BIN" format "sled://$W/meta" restorebench --bucket "$W/data" >/dev/null
uuid=$("$FERROFS_BIN" status "sled://$W/meta" | python3 -c 'import json,sys; print(json.load(sys.stdin)["setting"]["uuid"])')
dirs=()
for d in $(seq "$DIRS"); do dirs+=("$W/cache$d"); done
echo "creating $BLOCKS cached blocks of $BLOCK_LEN bytes ($TORN_PERCENT% torn) in $DIRS dir(s)..." >&2
python3 - "$BLOCKS" "$BLOCK_LEN" "$TORN_PERCENT" "$uuid" "${dirs[@]}" <<'PY'
import os, sys
n, length, torn, uuid = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
dirs = sys.argv[5:]
stored = length + 4 * -(-length // 65536) + 4
for i in range(1, n + 1):
    root = dirs[i % len(dirs)]
    d = f"{root}/{uuid}/raw/chunks/{i // 1000000}/{i // 1000}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/{i}_0_{length}", "wb") as f:
        cut = (i * 7919) % 10000 < torn * 100
        f.truncate(stored - 100 if cut else stored)
PY
sync
echo 3 >/proc/sys/vm/drop_caches
spec=$(IFS=:; echo "${dirs[*]}")
"$FERROFS_BIN" mount "sled://$W/meta" "$W/mnt" -d --log "$W/mount.log" --cache-dir "$spec" --cache-size 1T >/dev/null
line=$(grep -m1 "block cache ready" "$W/mount.log")
echo "$line" >&2
python3 - "$line" "$BLOCKS" "$TORN_PERCENT" <<'PY'
import re, sys
line, n, torn = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
t = re.search(r"ready in ([0-9.]+)(µs|ms|s)", line)
secs = float(t.group(1)) * {"µs": 1e-6, "ms": 1e-3, "s": 1}[t.group(2)]
kept = int(re.search(r"blocks=(\d+)", line).group(1))
print(f"cached blocks on disk: {n} ({torn}% torn); index rebuilt in {secs:.2f} s "
      f"({n / secs:,.0f} blocks/s, cold page cache); kept {kept}, discarded {n - kept}")
PY
