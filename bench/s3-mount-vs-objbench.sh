#!/usr/bin/env bash
# Sequential throughput of a ferrofs mount on S3 against the raw throughput of the same S3
# server, as `ferrofs objbench` measures it at the same concurrency, in one run.
# See bench/README.md.
#
#   bench/s3-mount-vs-objbench.sh            # 1 GiB
#   bench/s3-mount-vs-objbench.sh --quick    # 128 MiB
#
# Needs root (drop_caches, mounting), s3s-fs, python3, coreutils.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/s3-mount-vs-objbench.sh [--quick] [--help]

  --quick   128 MiB instead of 1 GiB (a check that everything works)

Environment (all optional; explicit values win over --quick):
  FERROFS_BIN         ferrofs binary (default: build with `cargo build --release -p ferrofs`
                      and use ${CARGO_TARGET_DIR:-<repo>/target}/release/ferrofs)
  S3S_FS_BIN          the s3s-fs server (default: s3s-fs on PATH, else ~/.cargo/bin/s3s-fs)
  BENCH_DIR           scratch directory, must be absent or empty (default /tmp/ferrofs-s3bench-$$);
                      holds the S3 server's root, the ferrofs metadata and the source file
  BIG_MIB             size of the sequential file in MiB; objbench moves the same bytes (1024)
  BLOCK_SIZE          ferrofs format --block-size = objbench --block-size  (4M)
  MAX_UPLOADS         ferrofs mount --max-uploads = objbench -p            (8)
  MAX_DOWNLOADS       ferrofs mount --max-downloads                        (32, the mount default)
  OBJBENCH_P          objbench -p, if it should differ from MAX_UPLOADS    (MAX_UPLOADS)
  SERVER_CACHE        warm: after drop_caches, read the server's object files back into the
                      page cache (untimed) so that mount reads and objbench gets (which read
                      objects it has just put) find the server equally warm; cold: don't (warm)
  FERROFS_MOUNT_OPTS  extra arguments for `ferrofs mount`                  (none)
  OP_TIMEOUT          seconds before one timed step is declared hung       (900)
  KEEP                1 = keep BENCH_DIR (and the logs) afterwards         (0)
  PIN                 none: no CPU pinning; split: the S3 server on CPU 0, the client side
                      (mount, dd, objbench) on CPU 1, so that neither takes the other's
                      CPU and the ratio compares clients, not who wins the scheduler (none)
EOF
}

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

if ((QUICK)); then BIG_MIB=${BIG_MIB:-128}; else BIG_MIB=${BIG_MIB:-1024}; fi
BLOCK_SIZE=${BLOCK_SIZE:-4M}
MAX_UPLOADS=${MAX_UPLOADS:-8}
MAX_DOWNLOADS=${MAX_DOWNLOADS:-32}
OBJBENCH_P=${OBJBENCH_P:-$MAX_UPLOADS}
SERVER_CACHE=${SERVER_CACHE:-warm}
FERROFS_MOUNT_OPTS=${FERROFS_MOUNT_OPTS:-}
OP_TIMEOUT=${OP_TIMEOUT:-900}
KEEP=${KEEP:-0}
PIN=${PIN:-none}
ACCESS_KEY=benchkey
SECRET_KEY=benchsecret
BUCKET=ferrofs-bench

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${BENCH_DIR:-/tmp/ferrofs-s3bench-$$}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- preconditions
[[ $(id -u) == 0 ]] || die "run as root (needs /proc/sys/vm/drop_caches and mounting)"
[[ $SERVER_CACHE == warm || $SERVER_CACHE == cold ]] || die "SERVER_CACHE must be warm or cold"
case $PIN in
    none) SERVER_CPU=() CLIENT_CPU=() ;;
    split)
        command -v taskset >/dev/null || die "PIN=split needs taskset (util-linux)"
        (($(nproc) >= 2)) || die "PIN=split needs two CPUs"
        SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1)
        ;;
    *) die "PIN must be none or split" ;;
esac
for c in python3 timeout mountpoint md5sum dd; do
    command -v "$c" >/dev/null || die "$c is not installed"
done
BLOCK_BYTES=$(python3 -c "
import sys; s = sys.argv[1].upper(); u = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}
print(int(s[:-1]) * u[s[-1]] if s[-1] in u else int(s))" "$BLOCK_SIZE") ||
    die "cannot parse BLOCK_SIZE=$BLOCK_SIZE"
BYTES=$((BIG_MIB * 1024 * 1024))
OBJ_COUNT=$(((BYTES + BLOCK_BYTES - 1) / BLOCK_BYTES))

if [[ -z ${S3S_FS_BIN:-} ]]; then
    S3S_FS_BIN=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
fi
[[ -x $S3S_FS_BIN ]] ||
    die "s3s-fs not found (cargo install s3s-fs --version 0.14.1 --features binary, or set S3S_FS_BIN)"
if [[ -z ${FERROFS_BIN:-} ]]; then
    log "building ferrofs (release): cargo build --release -p ferrofs"
    (cd "$REPO" && cargo build --release -p ferrofs) >&2
    FERROFS_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferrofs
fi
[[ -x $FERROFS_BIN ]] || die "FERROFS_BIN=$FERROFS_BIN is not an executable"
FERROFS_BIN=$(realpath "$FERROFS_BIN")
"$FERROFS_BIN" objbench --help >/dev/null 2>&1 ||
    die "$FERROFS_BIN does not understand \`objbench --help\`; is it a ferrofs with S3 support?"

if [[ -e $W ]]; then
    [[ -d $W && -z $(ls -A "$W") ]] || die "BENCH_DIR=$W exists and is not empty"
    CREATED_W=0
else
    mkdir -p "$W"
    CREATED_W=1
fi
W=$(realpath "$W")
S3_ROOT=$W/s3-root
S3_LOG=$W/s3s-fs.log
LOCAL=$W/local
META_URL=sled://$W/ferrofs-meta
MNT=$W/mnt
FERRO_LOG=$W/ferrofs.log
RESULTS=$W/results.tsv
mkdir -p "$S3_ROOT/$BUCKET" "$LOCAL" "$MNT"
: >"$RESULTS"
S3_PID=
FAILURES=()
COLD_OK=1

ferrofs_pid() {
    # The mount process records its pid in $TMPDIR/ferrofs<mountpoint, non-alnum -> _>.pid
    local f=${TMPDIR:-/tmp}/ferrofs${MNT//[^a-zA-Z0-9]/_}.pid
    [[ -f $f ]] && cat "$f"
}

mount_ferrofs() {
    # shellcheck disable=SC2086
    "${CLIENT_CPU[@]}" "$FERROFS_BIN" mount "$META_URL" "$MNT" -d --log "$FERRO_LOG" \
        --max-uploads "$MAX_UPLOADS" --max-downloads "$MAX_DOWNLOADS" $FERROFS_MOUNT_OPTS >/dev/null
    mountpoint -q "$MNT" || die "ferrofs did not mount at $MNT"
}

drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        ((COLD_OK)) && log "warning: cannot write /proc/sys/vm/drop_caches; 'cold' runs are not cold"
        COLD_OK=0
    fi
}

# timed KEY LABEL BYTES CMD: runs CMD with bash (under `timeout`), records its wall time.
timed() {
    local key=$1 label=$2 bytes=$3 cmd=$4
    local t0 t1 rc=0 secs
    t0=$(date +%s.%N)
    timeout -k 10 "$OP_TIMEOUT" "${CLIENT_CPU[@]}" bash -c "set -euo pipefail; $cmd" >"$W/step.out" 2>"$W/step.err" || rc=$?
    t1=$(date +%s.%N)
    secs=$(python3 -c "print(f'{$t1 - $t0:.6f}')")
    if ((rc != 0)); then
        local why="exit status $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${OP_TIMEOUT}s (hung?)"
        log "FAILED $label: $why after ${secs}s"
        log "  command: $cmd"
        sed 's/^/  stderr: /' "$W/step.err" | head -20 >&2
        printf '%s\t%s\tFAIL\t%s\t%s\n' "$key" "$label" "$secs" "$bytes" >>"$RESULTS"
        FAILURES+=("$label: $why")
        return 1
    fi
    printf '%s\t%s\tOK\t%s\t%s\n' "$key" "$label" "$secs" "$bytes" >>"$RESULTS"
    log "$label: ${secs}s"
}

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if mountpoint -q "$MNT" 2>/dev/null; then
        local pid
        pid=$(ferrofs_pid)
        timeout 90 "$FERROFS_BIN" umount "$MNT" >/dev/null ||
            { log "ferrofs umount failed; detaching"; umount -l "$MNT"; }
        # Our own mount process, by pid: give it time to flush, then stop it.
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            sleep 5
            kill "$pid" 2>/dev/null
        fi
    fi
    if [[ -n $S3_PID ]] && kill -0 "$S3_PID" 2>/dev/null; then
        kill "$S3_PID" 2>/dev/null
        wait "$S3_PID" 2>/dev/null
    fi
    if ((rc != 0 || ${#FAILURES[@]} > 0)); then
        [[ -s $FERRO_LOG ]] && { log "last lines of the ferrofs log ($FERRO_LOG):"; tail -n 40 "$FERRO_LOG" | sed 's/^/  log: /' >&2; }
        [[ -s $S3_LOG ]] && { log "last lines of the s3s-fs log ($S3_LOG):"; tail -n 20 "$S3_LOG" | sed 's/^/  s3: /' >&2; }
    fi
    if ((KEEP)); then
        log "kept $W"
    elif mountpoint -q "$MNT" 2>/dev/null; then
        log "$MNT is still mounted; not deleting $W"
    else
        rm -rf "$S3_ROOT" "$LOCAL" "$W/ferrofs-meta" "$MNT" "$FERRO_LOG" "$S3_LOG" "$RESULTS" \
            "$W"/step.* "$W"/objbench.*
        ((CREATED_W)) && rmdir "$W" 2>/dev/null
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- set up
log "scratch directory $W"
log "sizes: BIG_MIB=$BIG_MIB BLOCK_SIZE=$BLOCK_SIZE ($OBJ_COUNT objbench objects) MAX_UPLOADS=$MAX_UPLOADS MAX_DOWNLOADS=$MAX_DOWNLOADS OBJBENCH_P=$OBJBENCH_P"

log "starting s3s-fs on 127.0.0.1 (root $S3_ROOT)"
RUST_LOG=warn,s3s_fs=info NO_COLOR=1 "${SERVER_CPU[@]}" "$S3S_FS_BIN" --host 127.0.0.1 --port 0 \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$S3_ROOT" >"$S3_LOG" 2>&1 &
S3_PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(grep -o 'server is running at http://127.0.0.1:[0-9]*' "$S3_LOG" | sed 's/.*://' || true)
    [[ -n $PORT ]] && break
    kill -0 "$S3_PID" 2>/dev/null || die "s3s-fs exited: $(tail -5 "$S3_LOG")"
    sleep 0.1
done
[[ -n $PORT ]] || die "s3s-fs did not say where it listens: $(tail -5 "$S3_LOG")"
URL=http://127.0.0.1:$PORT/$BUCKET
log "s3s-fs (pid $S3_PID) at $URL"

log "generating the $BIG_MIB MiB source file on the local disk (untimed)"
dd if=/dev/urandom of="$LOCAL/pattern.bin" bs=1M count="$BIG_MIB" iflag=fullblock status=none
SRC_MD5=$(md5sum <"$LOCAL/pattern.bin" | cut -d' ' -f1)
drop_caches

# objbench RUN: the raw store, same server, same object size, -p OBJBENCH_P.
objbench() {
    local run=$1
    log "objbench run $run: $OBJ_COUNT objects of $BLOCK_SIZE, -p $OBJBENCH_P"
    if ! timeout -k 10 "$OP_TIMEOUT" "${CLIENT_CPU[@]}" "$FERROFS_BIN" objbench --storage s3 --bucket "$URL" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" --block-size "$BLOCK_SIZE" \
        --count "$OBJ_COUNT" -p "$OBJBENCH_P" >"$W/objbench.$run.out" 2>"$W/objbench.$run.err"; then
        log "FAILED objbench run $run"
        tail -20 "$W/objbench.$run.err" | sed 's/^/  stderr: /' >&2
        FAILURES+=("objbench run $run failed")
        return 0
    fi
    # "put  53.5  213.9 MiB/s ..." -> MB/s (10^6 bytes/s)
    local op
    for op in put get; do
        awk -v op="$op" -v run="$run" '$1 == op && $4 == "MiB/s" {
            printf "ob%s.%s\tobjbench %s (-p %s) run %s\tRATE\t%.3f\t\n", run, op, op, P, run, $3 * 1.048576
        }' P="$OBJBENCH_P" "$W/objbench.$run.out" >>"$RESULTS"
    done
}

objbench 1

log "ferrofs: $FERROFS_BIN ($("$FERROFS_BIN" --version 2>/dev/null || echo '?'))"
"$FERROFS_BIN" format "$META_URL" s3bench --storage s3 --bucket "$URL" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" --block-size "$BLOCK_SIZE" >&2
mount_ferrofs
log "mounted ferrofs at $MNT"

# ---------------------------------------------------------------- the mount
VERIFY=not-run
cat "$LOCAL/pattern.bin" >/dev/null # the source is in the page cache: only the mount is timed
if timed write "mount: sequential write $BIG_MIB MiB (dd bs=1M conv=fsync)" "$BYTES" \
    "dd if='$LOCAL/pattern.bin' of='$MNT/big' bs=1M conv=fsync status=none"; then
    # Cold: a new mount process, no kernel caches.
    "$FERROFS_BIN" umount "$MNT" >/dev/null
    drop_caches
    if [[ $SERVER_CACHE == warm ]]; then
        # The server's files back in its page cache, as objbench's gets find them.
        find "$S3_ROOT/$BUCKET" -type f -print0 | xargs -0 -r cat >/dev/null
    fi
    mount_ferrofs
    if timed read "mount: sequential read back, cold mount (dd bs=1M)" "$BYTES" \
        "dd if='$MNT/big' of=/dev/null bs=1M status=none"; then
        size=$(stat -c %s "$MNT/big")
        sum=$(md5sum <"$MNT/big" | cut -d' ' -f1)
        if [[ $size == "$BYTES" && $sum == "$SRC_MD5" ]]; then
            VERIFY=OK
        else
            VERIFY="MISMATCH (size $size md5 $sum; want size $BYTES md5 $SRC_MD5)"
            log "read back differs from the source: $VERIFY"
            FAILURES+=("content mismatch")
        fi
    fi
fi
STORED=$(du -sb "$S3_ROOT/$BUCKET" | cut -f1)
NOBJ=$(find "$S3_ROOT/$BUCKET" -type f | wc -l)

objbench 2

# ---------------------------------------------------------------- report
echo
echo "ferrofs mount vs objbench on one s3s-fs server -- $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs"
echo "ferrofs: $FERROFS_BIN (block size $BLOCK_SIZE, mount --max-uploads $MAX_UPLOADS --max-downloads $MAX_DOWNLOADS${FERROFS_MOUNT_OPTS:+ $FERROFS_MOUNT_OPTS})"
echo "server:  s3s-fs $("$S3S_FS_BIN" --version 2>/dev/null | head -1 | awk '{print $NF}') on 127.0.0.1, root on $(findmnt -no FSTYPE -T "$W") ($(findmnt -no SOURCE -T "$W"))"
echo "objbench: $OBJ_COUNT objects of $BLOCK_SIZE (= the file's bytes), -p $OBJBENCH_P, run before (1) and after (2) the mount"
case $PIN in
    split) echo "CPUs: PIN=split: s3s-fs on CPU 0; mount, dd and objbench on CPU 1" ;;
    *) echo "CPUs: not pinned (PIN=none): server and client share $(nproc) CPUs" ;;
esac
if ((COLD_OK)); then
    echo "cold mount = unmounted, page/dentry/inode caches dropped, mounted again; server files then $([[ $SERVER_CACHE == warm ]] && echo "re-read into the page cache (SERVER_CACHE=warm)" || echo "left cold (SERVER_CACHE=cold)")"
else
    echo "WARNING: drop_caches failed, so 'cold' only means the mount process was restarted"
fi
echo "after the write the bucket holds $NOBJ objects, $STORED bytes (file: $BYTES bytes)"
echo
for run in 1 2; do
    if [[ -s $W/objbench.$run.out ]]; then
        echo "objbench run $run:"
        sed '/./s/^/  /' "$W/objbench.$run.out"
        echo
    fi
done
python3 - "$RESULTS" "$VERIFY" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    key, label, status, val, nbytes = line.rstrip("\n").split("\t")
    rows[key] = (label, status, float(val) if val else None, int(nbytes) if nbytes else 0)

def rate(key):
    r = rows.get(key)
    if not r or r[1] == "FAIL" or r[2] is None:
        return None
    return r[2] if r[1] == "RATE" else r[3] / 1e6 / r[2]

def raw(op):
    v = [x for x in (rate(f"ob1.{op}"), rate(f"ob2.{op}")) if x is not None]
    return sum(v) / len(v) if v else None, v

head = ("step", "mount", "objbench (raw)", "mount/raw", "goal >= 80%")
table = []
for key, op in (("write", "put"), ("read", "get")):
    r = rows.get(key)
    label = r[0] if r else f"mount: {key}"
    m = rate(key)
    ob, runs = raw(op)
    if r and r[1] == "OK":
        mcell = f"{r[2]:8.3f} s {m:8.1f} MB/s"
    else:
        mcell = "FAIL" if r else "not run"
    obcell = (f"{op} {ob:7.1f} MB/s (" + " / ".join(f"{x:.1f}" for x in runs) + ")") if ob else "FAIL"
    if m is not None and ob:
        q = m / ob
        table.append((label, mcell, obcell, f"{100 * q:6.1f}%", "met" if q >= 0.8 else "NOT met"))
    else:
        table.append((label, mcell, obcell, "-", "-"))
w = [max(len(x[i]) for x in table + [head]) for i in range(5)]
fmt = "  ".join("{:<%d}" % n for n in w)
print(fmt.format(*head).rstrip())
print("  ".join("-" * n for n in w))
for row in table:
    print(fmt.format(*row).rstrip())
print(f"md5 and size of the file read back = source: {sys.argv[2]}")
print()
print("MB/s = 10^6 bytes per second (objbench prints MiB/s: x 1.048576). objbench (raw) is the mean")
print("of its runs before and after the mount (each in brackets). mount/raw = mount MB/s / raw MB/s:")
print("write against put, read against get; the goal of issue 4 is at least 80%.")
PY

if [[ -s $FERRO_LOG ]]; then
    nwarn=$(grep -cE ' (WARN|ERROR) ' "$FERRO_LOG" || true)
    if ((nwarn > 0)); then
        echo
        echo "ferrofs log has $nwarn WARN/ERROR lines; the first ones:"
        grep -E ' (WARN|ERROR) ' "$FERRO_LOG" | head -10 | sed 's/^/  /'
    fi
fi
if ((${#FAILURES[@]} > 0)); then
    echo
    echo "FAILURES:"
    printf '  %s\n' "${FAILURES[@]}"
    exit 1
fi
