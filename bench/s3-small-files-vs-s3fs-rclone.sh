#!/usr/bin/env bash
# Small files on S3: create+write, then cold read of many 64 KiB files through ferrofs,
# s3fs and `rclone mount`, all against one loopback S3 server (moto), in one run, with one
# table and the ratios against ferrofs. See bench/README.md.
#
#   bench/s3-small-files-vs-s3fs-rclone.sh            # 5000 files of 64 KiB
#   bench/s3-small-files-vs-s3fs-rclone.sh --quick    # 500 files
#
# Needs root (drop_caches, mounting), s3fs, rclone, python3 with moto[server] (boto3 comes
# with it), coreutils.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/s3-small-files-vs-s3fs-rclone.sh [--quick] [--help]

  --quick   500 files instead of 5000 (a check that everything works)

Environment (all optional; explicit values win over --quick):
  FERROFS_BIN         ferrofs binary (default: build with `cargo build --release -p ferrofs`
                      and use ${CARGO_TARGET_DIR:-<repo>/target}/release/ferrofs)
  BENCH_DIR           scratch directory, must be absent or empty (default /tmp/ferrofs-s3small-$$)
  FILES               number of files written and read                    (5000)
  FILE_KIB            size of each file in KiB                            (64)
  TARGETS             which mounts to run, in order                       ("ferrofs s3fs rclone")
  BLOCK_SIZE          ferrofs format --block-size                         (4M)
  FERROFS_MOUNT_OPTS  extra arguments for `ferrofs mount`                 (none)
  S3FS_OPTS           extra arguments for s3fs                            (none)
  RCLONE_CACHE_MODE   rclone mount --vfs-cache-mode                       (off)
  RCLONE_OPTS         extra arguments for `rclone mount`                  (none)
  MOTO_PORT           port of the moto server                             (a free one)
  OP_TIMEOUT          seconds before one timed step is declared hung      (1800)
  KEEP                1 = keep BENCH_DIR (and the logs) afterwards        (0)
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

if ((QUICK)); then FILES=${FILES:-500}; else FILES=${FILES:-5000}; fi
FILE_KIB=${FILE_KIB:-64}
TARGETS=${TARGETS:-ferrofs s3fs rclone}
BLOCK_SIZE=${BLOCK_SIZE:-4M}
FERROFS_MOUNT_OPTS=${FERROFS_MOUNT_OPTS:-}
S3FS_OPTS=${S3FS_OPTS:-}
RCLONE_CACHE_MODE=${RCLONE_CACHE_MODE:-off}
RCLONE_OPTS=${RCLONE_OPTS:-}
OP_TIMEOUT=${OP_TIMEOUT:-1800}
KEEP=${KEEP:-0}
ACCESS_KEY=benchkey
SECRET_KEY=benchsecret

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${BENCH_DIR:-/tmp/ferrofs-s3small-$$}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- preconditions
[[ $(id -u) == 0 ]] || die "run as root (needs /proc/sys/vm/drop_caches and mounting)"
for t in $TARGETS; do
    [[ $t == ferrofs || $t == s3fs || $t == rclone ]] ||
        die "TARGETS may name only ferrofs, s3fs and rclone, not '$t'"
done
for c in python3 timeout mountpoint md5sum split; do
    command -v "$c" >/dev/null || die "$c is not installed"
done
python3 -c 'import moto.server, boto3' 2>/dev/null ||
    die "python3 cannot import moto.server and boto3 (pip install 'moto[server]')"
[[ " $TARGETS " != *" s3fs "* ]] || command -v s3fs >/dev/null ||
    die "s3fs is not installed (apt-get install s3fs)"
[[ " $TARGETS " != *" rclone "* ]] || command -v rclone >/dev/null ||
    die "rclone is not installed (apt-get install rclone)"
if [[ " $TARGETS " == *" ferrofs "* ]]; then
    if [[ -z ${FERROFS_BIN:-} ]]; then
        log "building ferrofs (release): cargo build --release -p ferrofs"
        (cd "$REPO" && cargo build --release -p ferrofs) >&2
        FERROFS_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferrofs
    fi
    [[ -x $FERROFS_BIN ]] || die "FERROFS_BIN=$FERROFS_BIN is not an executable"
    FERROFS_BIN=$(realpath "$FERROFS_BIN")
fi

if [[ -e $W ]]; then
    [[ -d $W && -z $(ls -A "$W") ]] || die "BENCH_DIR=$W exists and is not empty"
    CREATED_W=0
else
    mkdir -p "$W"
    CREATED_W=1
fi
W=$(realpath "$W")
LOCAL=$W/local
MOTO_LOG=$W/moto.log
RESULTS=$W/results.tsv
META_URL=sled://$W/ferrofs-meta
mkdir -p "$LOCAL"
for t in $TARGETS; do mkdir -p "$W/mnt-$t"; done
: >"$RESULTS"
MOTO_PID=
declare -A PIDS=() # s3fs / rclone daemon of each target, by pid
FAILURES=()
COLD_OK=1

mnt_of() { echo "$W/mnt-$1"; }

ferrofs_pid() {
    # The mount process records its pid in $TMPDIR/ferrofs<mountpoint, non-alnum -> _>.pid
    local m
    m=$(mnt_of ferrofs)
    local f=${TMPDIR:-/tmp}/ferrofs${m//[^a-zA-Z0-9]/_}.pid
    [[ -f $f ]] && cat "$f"
}

wait_mounted() { # TARGET PID: up to 30 s for the mount to appear while PID lives
    local m
    m=$(mnt_of "$1")
    for _ in $(seq 300); do
        mountpoint -q "$m" && return 0
        kill -0 "$2" 2>/dev/null || die "$1 exited before mounting; see $W/$1.log: $(tail -5 "$W/$1.log")"
        sleep 0.1
    done
    die "$1 did not mount at $m within 30 s"
}

mount_target() {
    local t=$1 m
    m=$(mnt_of "$t")
    case $t in
        ferrofs)
            # shellcheck disable=SC2086
            "$FERROFS_BIN" mount "$META_URL" "$m" -d --log "$W/ferrofs.log" $FERROFS_MOUNT_OPTS >/dev/null
            mountpoint -q "$m" || die "ferrofs did not mount at $m"
            ;;
        s3fs)
            # -f: stays in the foreground, so $! is the daemon itself
            # shellcheck disable=SC2086
            s3fs s3fs "$m" -f -o url="$ENDPOINT" -o use_path_request_style \
                -o passwd_file="$W/s3fs.passwd" $S3FS_OPTS >>"$W/s3fs.log" 2>&1 &
            PIDS[s3fs]=$!
            wait_mounted s3fs "${PIDS[s3fs]}"
            ;;
        rclone)
            # rclone 1.60 fails every S3 call when AWS_CA_BUNDLE is set (even for http://):
            # run it without the CA variables. Not --daemon, so $! is the daemon itself.
            # shellcheck disable=SC2086
            env -u AWS_CA_BUNDLE -u CURL_CA_BUNDLE -u REQUESTS_CA_BUNDLE -u SSL_CERT_FILE \
                -u SSL_CERT_DIR -u NIX_SSL_CERT_FILE \
                rclone --config "$W/rclone.conf" mount s3:rclone "$m" \
                --vfs-cache-mode "$RCLONE_CACHE_MODE" --cache-dir "$W/rclone-cache" \
                $RCLONE_OPTS >>"$W/rclone.log" 2>&1 &
            PIDS[rclone]=$!
            wait_mounted rclone "${PIDS[rclone]}"
            ;;
    esac
}

# Unmounts and waits for the daemon to exit (s3fs and rclone finish uploads on exit;
# `ferrofs umount` itself waits for the mount process to flush and exit).
umount_target() {
    local t=$1 m
    m=$(mnt_of "$t")
    if [[ $t == ferrofs ]]; then
        "$FERROFS_BIN" umount "$m" >/dev/null
        return
    fi
    umount "$m"
    local pid=${PIDS[$t]:-}
    [[ -n $pid ]] || return 0
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; PIDS[$t]=; return 0; }
        sleep 0.1
    done
    log "warning: $t (pid $pid) still running 60 s after umount; stopping it"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PIDS[$t]=
}

drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        ((COLD_OK)) && log "warning: cannot write /proc/sys/vm/drop_caches; 'cold' runs are not cold"
        COLD_OK=0
    fi
}

cold_remount() {
    umount_target "$1"
    drop_caches
    mount_target "$1"
}

requests_so_far() { grep -cE '"[A-Z]+ /' "$MOTO_LOG" || true; }

# timed TARGET KEY DIR CMD: runs CMD with bash in DIR (under `timeout`), records its wall
# time and the number of S3 requests the server logged meanwhile.
timed() {
    local t=$1 key=$2 dir=$3 cmd=$4
    local t0 t1 rc=0 secs r0 r1
    r0=$(requests_so_far)
    t0=$(date +%s.%N)
    (cd "$dir" && timeout -k 10 "$OP_TIMEOUT" bash -c "set -euo pipefail; $cmd") \
        >"$W/step.out" 2>"$W/step.err" || rc=$?
    t1=$(date +%s.%N)
    r1=$(requests_so_far)
    secs=$(python3 -c "print(f'{$t1 - $t0:.6f}')")
    if ((rc != 0)); then
        local why="exit status $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${OP_TIMEOUT}s (hung?)"
        log "FAILED [$t] $key: $why after ${secs}s"
        log "  command (in $dir): $cmd"
        sed 's/^/  stderr: /' "$W/step.err" | head -20 >&2
        printf '%s\t%s\tFAIL\t%s\t%s\n' "$key" "$t" "$secs" "$((r1 - r0))" >>"$RESULTS"
        FAILURES+=("$t $key: $why")
        return 1
    fi
    printf '%s\t%s\tOK\t%s\t%s\n' "$key" "$t" "$secs" "$((r1 - r0))" >>"$RESULTS"
    log "[$t] $key: ${secs}s, $((r1 - r0)) S3 requests"
}

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    for t in $TARGETS; do
        local m
        m=$(mnt_of "$t")
        if [[ $t == ferrofs ]]; then
            if mountpoint -q "$m" 2>/dev/null; then
                local pid
                pid=$(ferrofs_pid)
                timeout 90 "$FERROFS_BIN" umount "$m" >/dev/null ||
                    { log "ferrofs umount failed; detaching"; umount -l "$m"; }
                if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
                    sleep 5
                    kill "$pid" 2>/dev/null
                fi
            fi
        else
            mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
            local pid=${PIDS[$t]:-}
            if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
                sleep 2
                kill "$pid" 2>/dev/null
                wait "$pid" 2>/dev/null
            fi
        fi
    done
    if [[ -n $MOTO_PID ]] && kill -0 "$MOTO_PID" 2>/dev/null; then
        kill "$MOTO_PID" 2>/dev/null
        wait "$MOTO_PID" 2>/dev/null
    fi
    if ((rc != 0 || ${#FAILURES[@]} > 0)); then
        local l
        for l in ferrofs s3fs rclone; do
            [[ -s $W/$l.log ]] || continue
            log "last lines of $W/$l.log:"
            tail -n 30 "$W/$l.log" | sed "s/^/  $l: /" >&2
        done
    fi
    local busy=0
    for t in $TARGETS; do mountpoint -q "$(mnt_of "$t")" 2>/dev/null && busy=1; done
    if ((KEEP)); then
        log "kept $W"
    elif ((busy)); then
        log "something is still mounted under $W; not deleting it"
    else
        rm -rf "$LOCAL" "$W/ferrofs-meta" "$W"/mnt-* "$W"/*.log "$W/rclone-cache" "$RESULTS" \
            "$W"/step.* "$W"/*.md5 "$W/names" "$W/s3fs.passwd" "$W/rclone.conf"
        ((CREATED_W)) && rmdir "$W" 2>/dev/null
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- set up
log "scratch directory $W"
log "sizes: FILES=$FILES FILE_KIB=$FILE_KIB; targets: $TARGETS"

PORT=${MOTO_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
ENDPOINT=http://127.0.0.1:$PORT
log "starting moto on $ENDPOINT"
python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
python3 - "$ENDPOINT" "$ACCESS_KEY" "$SECRET_KEY" $TARGETS <<'PY' || die "moto did not come up: $(tail -5 "$MOTO_LOG")"
import sys, time, boto3
endpoint, key, secret, *buckets = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
for i in range(100):
    try:
        s3.list_buckets()
        break
    except Exception:
        if i == 99:
            raise
        time.sleep(0.1)
for b in buckets:  # one bucket per target, named after it
    s3.create_bucket(Bucket=b)
PY
log "moto (pid $MOTO_PID) has buckets: $TARGETS"

printf '%s:%s\n' "$ACCESS_KEY" "$SECRET_KEY" >"$W/s3fs.passwd"
chmod 600 "$W/s3fs.passwd"
cat >"$W/rclone.conf" <<EOF
[s3]
type = s3
provider = Other
endpoint = $ENDPOINT
access_key_id = $ACCESS_KEY
secret_access_key = $SECRET_KEY
EOF

log "generating $FILES files of $FILE_KIB KiB on the local disk (untimed)"
mkdir "$LOCAL/small"
head -c $((FILES * FILE_KIB * 1024)) /dev/urandom | split -b "${FILE_KIB}K" -a 7 -d - "$LOCAL/small/f"
(cd "$LOCAL/small" && ls -1 | LC_ALL=C sort | tr '\n' '\0') >"$W/names"
(cd "$LOCAL/small" && xargs -0 -a "$W/names" md5sum) >"$W/local.md5"
drop_caches

if [[ " $TARGETS " == *" ferrofs "* ]]; then
    log "ferrofs: $FERROFS_BIN ($("$FERROFS_BIN" --version 2>/dev/null || echo '?'))"
    "$FERROFS_BIN" format "$META_URL" s3small --storage s3 --bucket "$ENDPOINT/ferrofs" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" --block-size "$BLOCK_SIZE" >&2
fi

# ---------------------------------------------------------------- run
BYTES=$((FILES * FILE_KIB * 1024))
for t in $TARGETS; do
    log "== $t"
    m=$(mnt_of "$t")
    mount_target "$t"
    (cd "$LOCAL/small" && xargs -0 -a "$W/names" cat >/dev/null) # source in the page cache
    if timed "$t" write "$m" "cp -r '$LOCAL/small' w && sync"; then
        cold_remount "$t"
        # The read is md5sum of every file: it reads each file whole once, and its output
        # is the content check.
        if timed "$t" read "$m/w" "xargs -0 -a '$W/names' md5sum >'$W/$t.md5'"; then
            if cmp -s "$W/local.md5" "$W/$t.md5"; then
                printf 'verify\t%s\tOK\t\t\n' "$t" >>"$RESULTS"
            else
                bad=$(diff "$W/local.md5" "$W/$t.md5" | grep -c '^>' || true)
                log "[$t] $bad of $FILES files differ from the source; first ones:"
                diff "$W/local.md5" "$W/$t.md5" | head -10 >&2
                printf 'verify\t%s\tMISMATCH(%s)\t\t\n' "$t" "$bad" >>"$RESULTS"
                FAILURES+=("$t: $bad files differ from the source")
            fi
        fi
    fi
    umount_target "$t"
done

# ---------------------------------------------------------------- report
echo
echo "small files on S3: ferrofs vs s3fs vs rclone mount -- $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs"
echo "workload: $FILES files of $FILE_KIB KiB ($(python3 -c "print(f'{$BYTES / 1e6:.1f}')") MB) in one directory"
echo "server:   moto $(python3 -c 'import moto; print(moto.__version__)') (python, in-memory) on 127.0.0.1, one bucket per target"
for t in $TARGETS; do
    case $t in
        ferrofs) echo "ferrofs:  $FERROFS_BIN (block size $BLOCK_SIZE${FERROFS_MOUNT_OPTS:+, mount opts $FERROFS_MOUNT_OPTS})" ;;
        s3fs) echo "s3fs:     $(s3fs --version 2>/dev/null | head -1 | awk '{print $(NF-3)}' || true) -o use_path_request_style (no local cache)${S3FS_OPTS:+ $S3FS_OPTS}" ;;
        rclone) echo "rclone:   $(rclone version 2>/dev/null | head -1 | awk '{print $2}') mount --vfs-cache-mode $RCLONE_CACHE_MODE${RCLONE_OPTS:+ $RCLONE_OPTS}" ;;
    esac
done
echo "write = cp -r of the directory onto the mount, then sync; read = md5sum of every file after"
if ((COLD_OK)); then
    echo "        unmount (waiting for the daemon to exit), drop_caches, mount again"
else
    echo "        unmount and mount again (WARNING: drop_caches failed)"
fi
echo
python3 - "$RESULTS" "$FILES" "$BYTES" "$TARGETS" <<'PY'
import sys
path, files, nbytes, targets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
res = {}
for line in open(path):
    key, t, status, secs, reqs = line.rstrip("\n").split("\t")
    res[(key, t)] = (status, float(secs) if secs else None, int(reqs) if reqs else None)

def cell(key, t):
    v = res.get((key, t))
    if v is None:
        return "-"
    status, secs, reqs = v
    if key == "verify" or status != "OK":
        return status
    return f"{secs:8.2f} s {files / secs:6.1f} files/s {nbytes / 1e6 / secs:6.2f} MB/s"

def reqs(key, t):
    v = res.get((key, t))
    if not v or v[2] is None:
        return "-"
    return f"{v[2]} ({v[2] / files:.1f}/file)"

others = [t for t in targets if t != "ferrofs"]
head = ["step"] + targets + ([f"{t}/ferrofs" for t in others] if "ferrofs" in targets else [])
rows = []
labels = {"write": "create+write (cp -r, sync)", "read": "read, cold (md5sum)",
          "verify": "md5 of every file = source"}
for key in ("write", "read", "verify"):
    row = [labels[key]] + [cell(key, t) for t in targets]
    if "ferrofs" in targets:
        f = res.get((key, "ferrofs"))
        for t in others:
            o = res.get((key, t))
            if key != "verify" and f and o and f[0] == "OK" and o[0] == "OK":
                row.append(f"{o[1] / f[1]:7.2f}")
            else:
                row.append("-")
    rows.append(row)
for key in ("write", "read"):
    row = [f"S3 requests during {key}"] + [reqs(key, t) for t in targets]
    rows.append(row + ["-"] * (len(head) - len(row)))
w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
fmt = "  ".join("{:<%d}" % n for n in w)
print(fmt.format(*head).rstrip())
print("  ".join("-" * n for n in w))
for r in rows:
    print(fmt.format(*r).rstrip())
print()
print("TOOL/ferrofs = the tool's time / ferrofs's time for the same step: above 1 ferrofs is faster")
print("(by that factor), below 1 the tool is. MB/s = 10^6 bytes per second. S3 requests = request")
print("lines the moto server logged during the step (all its clients; only the one mount is busy).")
PY

if [[ -s $W/ferrofs.log ]]; then
    nwarn=$(grep -cE ' (WARN|ERROR) ' "$W/ferrofs.log" || true)
    if ((nwarn > 0)); then
        echo
        echo "ferrofs log has $nwarn WARN/ERROR lines; the first ones:"
        grep -E ' (WARN|ERROR) ' "$W/ferrofs.log" | head -10 | sed 's/^/  /'
    fi
fi
if ((${#FAILURES[@]} > 0)); then
    echo
    echo "FAILURES:"
    printf '  %s\n' "${FAILURES[@]}"
    exit 1
fi
