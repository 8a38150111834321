#!/usr/bin/env bash
# Time and peak memory of `ferrofs load` and `ferrofs dump` for a volume of FILES files
# (default 1,000,000 in 1,000 directories, each one slice of 1-256 KiB: metadata only, no
# objects), on the embedded engine and on a 3-replica raft cluster, with the baselines of
# the same run: reading and copying the dump file (the I/O floor) and creating files
# through a mount (what restoring by re-creating would cost). Checks on the way: a dump of
# a loaded volume loads and dumps again byte for byte, the raft volume dumps the same as
# the sled one, and `find` on a mount of the loaded volume counts every file.
#
#   bench/dump-load.sh                     # 1,000,000 files
#   FILES=100000 DIRS=100 RAFT=0 bench/dump-load.sh
#
# Needs root (mounting), fusermount3, python3, /usr/bin/time. See bench/README.md.
set -euo pipefail
FILES=${FILES:-1000000}
DIRS=${DIRS:-1000}
RAFT=${RAFT:-1}
BASE_FILES=${BASE_FILES:-20000}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${FERROFS_BIN:-} ]]; then
    (cd "$REPO" && cargo build --release -p ferrofs) >&2
    FERROFS_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferrofs
fi
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }
W=$(mktemp -d /tmp/ferrofs-dump-XXXX)
M=$W/mnt
mkdir -p "$M"
PIDS=()
cleanup() {
    mountpoint -q "$M" && "$FERROFS_BIN" umount "$M" >/dev/null 2>&1
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
log() { echo "# $*" >&2; }
export FERROFS_META_SECRET=bench-dump-secret
ROWS=()
# measure LABEL CMD...: runs CMD under /usr/bin/time; records seconds and peak RSS (MiB).
measure() {
    local label=$1
    shift
    /usr/bin/time -f "%e %M" -o "$W/time" "$@" 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
    read -r secs kib <"$W/time"
    ROWS+=("$label|$secs|$((kib / 1024))")
    log "$label: $secs s, peak $((kib / 1024)) MiB"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "generating a dump of $FILES files in $DIRS directories (untimed)"
python3 "$REPO/bench/lib/gen_dump.py" "$FILES" "$DIRS" "$W/data" >"$W/gen.json"
SIZE=$(stat -c %s "$W/gen.json")

measure "load into sled" "$FERROFS_BIN" load "sled://$W/a" "$W/gen.json"
measure "dump from sled" "$FERROFS_BIN" dump "sled://$W/a" "$W/a.json"
measure "load the dump again" "$FERROFS_BIN" load "sled://$W/b" "$W/a.json"
"$FERROFS_BIN" dump "sled://$W/b" "$W/b.json" 2>/dev/null
cmp "$W/a.json" "$W/b.json" || { echo "a dump of the loaded volume differs" >&2; exit 1; }
measure "baseline: read the dump file" dd if="$W/a.json" of=/dev/null bs=1M status=none
measure "baseline: copy the dump file" cp "$W/a.json" "$W/copy.json"
rm -f "$W/copy.json"

if [[ $RAFT == 1 ]]; then
    A1=127.0.0.1:$(free_port)
    A2=127.0.0.1:$(free_port)
    A3=127.0.0.1:$(free_port)
    PEERS="1=$A1,2=$A2,3=$A3"
    for i in 1 2 3; do
        "$FERROFS_BIN" meta-server --id $i --peers "$PEERS" --data-dir "$W/r$i" 2>"$W/r$i.log" &
        PIDS+=($!)
    done
    URL=raft://$A1,$A2,$A3
    for _ in $(seq 100); do
        "$FERROFS_BIN" meta-member list "$URL" >/dev/null 2>&1 && break
        sleep 0.2
    done
    measure "load into raft (3 replicas)" "$FERROFS_BIN" load "$URL" "$W/a.json"
    measure "dump from raft" "$FERROFS_BIN" dump "$URL" "$W/r.json"
    cmp "$W/a.json" "$W/r.json" || { echo "the raft volume dumps differently" >&2; exit 1; }
    RSS=$(for p in "${PIDS[@]}"; do awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$p/status"; done | paste -sd/)
    log "meta-server peak RSS (MiB): $RSS"
fi

log "mounting the loaded volume: find counts every file"
mkdir -p "$W/data"
"$FERROFS_BIN" mount "sled://$W/b" "$M" -d --log "$W/mount.log" >/dev/null
T0=$(date +%s.%N)
N=$(find "$M" | wc -l)
T1=$(date +%s.%N)
"$FERROFS_BIN" umount "$M" >/dev/null
[[ $N == $((FILES + DIRS + 1)) ]] || { echo "find saw $N paths, not $((FILES + DIRS + 1))" >&2; exit 1; }
FIND_S=$(python3 -c "print(f'{$T1 - $T0:.1f}')")
log "find on the mount: $N paths in $FIND_S s"

log "baseline: creating $BASE_FILES files through a mount"
"$FERROFS_BIN" format "sled://$W/c" basevol --bucket "$W/cdata" >/dev/null
"$FERROFS_BIN" mount "sled://$W/c" "$M" -d --log "$W/mount-c.log" >/dev/null
T0=$(date +%s.%N)
python3 - "$M" "$BASE_FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 1000
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // per))
    if i % per == 0:
        os.mkdir(d)
    open(os.path.join(d, "f%07d.jpg" % i), "wb").close()
PY
T1=$(date +%s.%N)
"$FERROFS_BIN" umount "$M" >/dev/null
CREATE_RATE=$(python3 -c "print(round($BASE_FILES / ($T1 - $T0)))")
log "creates through a mount: $CREATE_RATE files/s"

echo
echo "$FILES files in $DIRS directories; dump file $((SIZE / 1048576)) MiB"
echo
echo "| step | s | files/s | peak RSS MiB |"
echo "| --- | --- | --- | --- |"
for r in "${ROWS[@]}"; do
    IFS='|' read -r label secs mib <<<"$r"
    rate=$(python3 -c "print(round($FILES / max($secs, 0.01)))")
    echo "| $label | $secs | $rate | $mib |"
done
echo "| baseline: create files through a mount | $(python3 -c "print(f'{$BASE_FILES / $CREATE_RATE:.1f}')") ($BASE_FILES files) | $CREATE_RATE | |"
echo
echo "find on a mount of the loaded volume: $N paths in $FIND_S s"
[[ $RAFT == 1 ]] && echo "meta-server peak RSS during the raft load and dump (MiB): $RSS"
