#!/usr/bin/env bash
# A cache group on one machine, separate processes: an S3 server (s3s-fs) on loopback, a
# meta server, 3 `ferrofs cache-node`s and 2 `--no-sharing` mounts, over a small-file
# training dataset. Warm the dataset up from one client, then run an epoch on the other,
# against the same epoch straight from object storage and from a local cache (measured in
# the same run); then a 4th cache node joins and the epoch runs again (keys moved, pulled
# from their previous owners). See bench/README.md.
#
#   bench/cache-group.sh            # 20000 files of ~110 KiB
#   bench/cache-group.sh --quick    # 2000 files
#
# Needs root (mounting, drop_caches), s3s-fs, python3, cc, fusermount3.
set -euo pipefail

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            cat <<'EOF'

Environment: FERROFS_BIN (default: cargo build --release -p ferrofs), S3S_FS_BIN, BENCH_DIR
(absent or empty; default /tmp/ferrofs-group-$$), FILES (20000; --quick 2000), SIZE_KIB (110),
DIRS (20), READERS (8), SEED (42), BLOCK_SIZE (4M), NODE_CACHE_SIZE (50G), MOUNT_OPTS, KEEP (0).
EOF
            exit 0
            ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
((QUICK)) && FILES=${FILES:-2000}
FILES=${FILES:-20000}
SIZE_KIB=${SIZE_KIB:-110}
DIRS=${DIRS:-20}
READERS=${READERS:-8}
SEED=${SEED:-42}
BLOCK_SIZE=${BLOCK_SIZE:-4M}
NODE_CACHE_SIZE=${NODE_CACHE_SIZE:-50G}
MOUNT_OPTS=${MOUNT_OPTS:-}
KEEP=${KEEP:-0}
ACCESS_KEY=benchkey
SECRET_KEY=benchsecret
export FERROFS_META_SECRET=bench-group-secret

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${BENCH_DIR:-/tmp/ferrofs-group-$$}
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (mounting, drop_caches)"
for c in python3 cc fusermount3 mountpoint; do command -v $c >/dev/null || die "$c is not installed"; done
S3S_FS_BIN=${S3S_FS_BIN:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
[[ -x $S3S_FS_BIN ]] || die "s3s-fs not found (cargo install s3s-fs --version 0.14.1 --features binary)"
if [[ -z ${FERROFS_BIN:-} ]]; then
    log "building ferrofs (release)"
    (cd "$REPO" && cargo build --release -p ferrofs) >&2
    FERROFS_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferrofs
fi
FERROFS_BIN=$(realpath "$FERROFS_BIN")
"$FERROFS_BIN" cache-node --help >/dev/null 2>&1 || die "$FERROFS_BIN has no cache-node command"
if [[ -e $W ]]; then [[ -z $(ls -A "$W") ]] || die "BENCH_DIR=$W is not empty"; fi
mkdir -p "$W"
W=$(realpath "$W")
PIDS=()
MOUNTS=()

cleanup() {
    local rc=$?
    set +e
    for m in "${MOUNTS[@]}"; do mountpoint -q "$m" && timeout 60 "$FERROFS_BIN" umount "$m" >/dev/null; done
    # Cache nodes first (they unregister through the meta server), then the servers.
    local i p
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        p=${PIDS[i]}
        kill "$p" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if ((rc != 0)); then
        for l in "$W"/*.log; do log "last lines of $l:"; tail -n 15 "$l" | sed 's/^/  /' >&2; done
    fi
    ((KEEP)) || rm -rf "$W"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctl() { python3 "$REPO/bench/lib/ctl.py" "$1" group; }
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
mount_sock() { echo "${TMPDIR:-/tmp}/ferrofs${1//[^a-zA-Z0-9]/_}.sock"; }
node_sock() { echo "${TMPDIR:-/tmp}/ferrofs-cache-node-$1.sock"; }
s3_gets() { grep -c 'req: Request { method: GET, uri: /vol/chunks' "$W/s3s-fs.log" || true; }
nodes_gets() { local n s=0; for n in "$@"; do s=$((s + $(field "$(ctl "$(node_sock "$n")")" store_gets))); done; echo $s; }

# ---------------------------------------------------------------- dataset, servers
log "generating $FILES files of ~$SIZE_KIB KiB in $W/src (untimed)"
mkdir -p "$W/src/data" "$W/s3/vol"
python3 "$REPO/bench/lib/gen.py" "$W/src/data" "$FILES" "$DIRS" "$SIZE_KIB" "$SEED" >"$W/manifest.tsv"
BYTES=$(awk -F'\t' '{ s += $2 } END { printf "%.0f", s }' "$W/manifest.tsv")

cc -O2 -shared -fPIC -o "$W/nodelay.so" "$REPO/bench/lib/nodelay.c" -ldl
LD_PRELOAD=$W/nodelay.so RUST_LOG=warn,s3s_fs=info,s3s::service=debug NO_COLOR=1 "$S3S_FS_BIN" --host 127.0.0.1 --port 0 \
    --access-key $ACCESS_KEY --secret-key $SECRET_KEY "$W/s3" >"$W/s3s-fs.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    PORT=$(grep -o 'server is running at http://127.0.0.1:[0-9]*' "$W/s3s-fs.log" | sed 's/.*://' || true)
    [[ -n $PORT ]] && break
    sleep 0.1
done
[[ -n $PORT ]] || die "s3s-fs did not start"
META_ADDR=127.0.0.1:$(free_port)
"$FERROFS_BIN" meta-server --id 1 --peers "1=$META_ADDR" --data-dir "$W/meta" 2>"$W/meta.log" &
PIDS+=($!)
URL=raft://$META_ADDR
for _ in $(seq 50); do
    "$FERROFS_BIN" format "$URL" groupbench --storage s3 --bucket "http://127.0.0.1:$PORT/vol" \
        --access-key $ACCESS_KEY --secret-key $SECRET_KEY --block-size "$BLOCK_SIZE" >/dev/null 2>"$W/format.err" && break
    sleep 0.2
done
"$FERROFS_BIN" status "$URL" >/dev/null 2>&1 || die "format failed: $(cat "$W/format.err")"

mnt() { # NAME ARGS...: mounts $W/mnt-NAME (not in a subshell: it records the mount)
    local m=$W/mnt-$1
    shift
    mkdir -p "$m"
    # shellcheck disable=SC2086
    "$FERROFS_BIN" mount "$URL" "$m" -d --log "$W/$(basename "$m").log" "$@" $MOUNT_OPTS >/dev/null
    MOUNTS+=("$m")
}
umnt() { "$FERROFS_BIN" umount "$1" >/dev/null; }

# epoch NAME MOUNT: READERS threads read every file once in a seeded random order and check it.
# Prints "secs files/s MB/s s3-gets".
EPOCH_N=0
epoch() {
    local g0 g1 out secs
    EPOCH_N=$((EPOCH_N + 1))
    g0=$(s3_gets)
    out=$(python3 "$REPO/bench/lib/reader.py" "$2/data" "$W/manifest.tsv" "$SEED$EPOCH_N" "$READERS" crc32 tree) ||
        die "$1: files unreadable or different: $out"
    sleep 0.3
    g1=$(s3_gets)
    secs=$(sed -n 's/^secs=//p' <<<"$out")
    python3 -c "s = $secs; print(f'{s:.2f} {$FILES / s:.0f} {$BYTES / s / 1e6:.1f} $((g1 - g0))')"
}

# ---------------------------------------------------------------- load
mnt writer --cache-size 0
WRITER=$W/mnt-writer
log "loading the dataset through a mount (cp -r, untimed)"
cp -r "$W/src/data" "$WRITER/"
sync
umnt "$WRITER"

# ---------------------------------------------------------------- baselines: object storage, local cache
mnt local --cache-dir "$W/local-cache" --cache-size 50G
LOCAL=$W/mnt-local
drop_caches
R=$(epoch "object storage" "$LOCAL") || exit 1
read -r S3_SECS S3_FPS S3_MBPS S3_GETS <<<"$R"
log "object storage: ${S3_SECS}s, $S3_FPS files/s, $S3_MBPS MB/s, $S3_GETS GETs"
drop_caches
R=$(epoch "local cache" "$LOCAL") || exit 1
read -r LC_SECS LC_FPS LC_MBPS LC_GETS <<<"$R"
log "local cache: ${LC_SECS}s, $LC_FPS files/s, $LC_MBPS MB/s, $LC_GETS GETs"
umnt "$LOCAL"

# ---------------------------------------------------------------- the group
node() { # ID
    "$FERROFS_BIN" cache-node "$URL" --cache-group bench --group-id "$1" --cache-dir "$W/cache-$1" \
        --cache-size "$NODE_CACHE_SIZE" >/dev/null 2>"$W/node-$1.log" &
    PIDS+=($!)
    for _ in $(seq 100); do [[ -S $(node_sock "$1") ]] && return; sleep 0.1; done
    die "cache node $1 did not start: $(tail -3 "$W/node-$1.log")"
}
for n in n1 n2 n3; do node $n; done
mnt a --cache-size 0 --cache-group bench --no-sharing
mnt b --cache-size 0 --cache-group bench --no-sharing
A=$W/mnt-a
B=$W/mnt-b
sleep 3 # every member has read the group's registrations
log "warming the dataset up from client a"
g0=$(s3_gets)
t0=$(date +%s.%N)
"$FERROFS_BIN" warmup "$A/data" >"$W/warmup.out" 2>&1 || die "warmup failed: $(tail -3 "$W/warmup.out")"
WARM_SECS=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
WARM_GETS=$(($(s3_gets) - g0))
BLOCKS=$(nodes_gets n1 n2 n3)
log "warm-up: ${WARM_SECS}s, $WARM_GETS GETs, blocks on the nodes: $BLOCKS"

drop_caches
B0=$(ctl "$(mount_sock "$B")")
N0=$(nodes_gets n1 n2 n3)
R=$(epoch "group" "$B") || exit 1
read -r G_SECS G_FPS G_MBPS G_GETS <<<"$R"
B1=$(ctl "$(mount_sock "$B")")
G_HITS=$(($(field "$B1" hits) - $(field "$B0" hits)))
G_OWN=$(($(field "$B1" store_gets) - $(field "$B0" store_gets)))
G_NODE=$(($(nodes_gets n1 n2 n3) - N0))
log "group epoch on b: ${G_SECS}s, $G_FPS files/s, $G_MBPS MB/s, $G_GETS GETs (b $G_OWN, nodes $G_NODE), peer hits $G_HITS"

# ---------------------------------------------------------------- a 4th node joins
node n4
sleep 5 # two membership refreshes
drop_caches
B0=$(ctl "$(mount_sock "$B")")
R=$(epoch "group + n4" "$B") || exit 1
read -r J_SECS J_FPS J_MBPS J_GETS <<<"$R"
B1=$(ctl "$(mount_sock "$B")")
J_HITS=$(($(field "$B1" hits) - $(field "$B0" hits)))
N4=$(ctl "$(node_sock n4)")
MOVED=$(field "$N4" served)
PULLED=$(field "$N4" pulled)
N4_GETS=$(field "$N4" store_gets)
log "after n4 joined: ${J_SECS}s, $J_FPS files/s, $J_GETS GETs, n4 served $MOVED (pulled $PULLED, GETs $N4_GETS)"

# ---------------------------------------------------------------- report
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
cat <<EOF
cache group on one machine -- $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)
dataset: $FILES files of ~$SIZE_KIB KiB ($(python3 -c "print(f'{$BYTES / 1e6:.1f}')") MB), block size $BLOCK_SIZE; epochs: $READERS threads read every file once in a random order, checking crc32
setup:   s3s-fs on loopback (TCP_NODELAY shim), 1 meta server, 3 cache nodes (--cache-size $NODE_CACHE_SIZE), clients a and b --no-sharing --cache-size 0

epoch (client)                     time s  files/s   MB/s  S3 GETs  vs object storage
---------------------------------  ------  -------  -----  -------  -----------------
object storage (no group, cold)    $(printf '%6s  %7s  %5s  %7s  %s' "$S3_SECS" "$S3_FPS" "$S3_MBPS" "$S3_GETS" 1.00)
local cache (no group, warm)       $(printf '%6s  %7s  %5s  %7s  %s' "$LC_SECS" "$LC_FPS" "$LC_MBPS" "$LC_GETS" "$(ratio "$S3_SECS" "$LC_SECS")")
group, warmed from a, read on b    $(printf '%6s  %7s  %5s  %7s  %s' "$G_SECS" "$G_FPS" "$G_MBPS" "$G_GETS" "$(ratio "$S3_SECS" "$G_SECS")")
group after a 4th node joined      $(printf '%6s  %7s  %5s  %7s  %s' "$J_SECS" "$J_FPS" "$J_MBPS" "$J_GETS" "$(ratio "$S3_SECS" "$J_SECS")")

warm-up from a: ${WARM_SECS}s, $WARM_GETS S3 GETs, $BLOCKS blocks fetched by their owners
group epoch on b: peer hits $G_HITS of $FILES blocks (hit ratio $(ratio "$G_HITS" "$((G_HITS + G_OWN))")); GETs by b $G_OWN, by the nodes $G_NODE
4th node: owns $MOVED of $BLOCKS blocks after joining ($(python3 -c "print(f'{100 * $MOVED / $BLOCKS:.1f}')")%, ideal 25%), $PULLED pulled from their previous owners, $N4_GETS fetched from S3; epoch peer hits $J_HITS
EOF
