#!/usr/bin/env bash
# Training-style epochs: a dataset of many ~110 KiB files in a loopback S3 bucket, read
# whole in a seeded random order by parallel readers, twice (epoch 1 cold: everything from
# the object store; epoch 2 warm: from the tool's local cache), through ferrofs,
# `rclone mount --vfs-cache-mode full`, `s3fs -o use_cache` and a bindfs passthrough of a
# local copy (the FUSE ceiling), in one run; plus `ls -l` of a big directory, cold and
# cached. See bench/README.md.
#
#   bench/epochs-vs-rclone-s3fs-bindfs.sh            # 20000 files, ls of 100000 entries
#   bench/epochs-vs-rclone-s3fs-bindfs.sh --quick    # 2000 files, ls of 10000 entries
#
# Needs root (drop_caches, mounting), s3s-fs, rclone (also to upload the s3fs bucket), s3fs,
# bindfs, fusermount3, python3, coreutils.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/epochs-vs-rclone-s3fs-bindfs.sh [--quick] [--help]

  --quick   2000 files and an ls of 10000 entries instead of 20000 and 100000 (a check
            that everything works; about two minutes)

Environment (all optional; explicit values win over --quick):
  FERROFS_BIN         ferrofs binary (default: build with `cargo build --release -p ferrofs`
                      and use ${CARGO_TARGET_DIR:-<repo>/target}/release/ferrofs)
  S3S_FS_BIN          the s3s-fs server (default: s3s-fs on PATH, else ~/.cargo/bin/s3s-fs)
  BENCH_DIR           scratch directory, must be absent or empty (default /tmp/ferrofs-epochs-$$);
                      holds the S3 server's root, the source data (= the bindfs backing
                      directory), the ferrofs metadata and every local cache dir
  FILES               files in the dataset                                  (20000)
  SIZE_KIB            mean file size in KiB; each file is within +-10% of it (110)
  DIRS                subdirectories the files are spread over              (20)
  READERS             parallel readers (threads) per epoch                  (8)
  SEED                seed of the data and of the two permutations          (42)
  CHECK               per-file content check in the readers: crc32 or md5   (crc32)
  LS_FILES            entries of the directory listed with ls -l            (100000)
  TARGETS             which mounts to run, in order        ("ferrofs rclone s3fs bindfs")
  LS_TARGETS          which of them also get the ls -l test                 ("ferrofs bindfs")
  BLOCK_SIZE          ferrofs format --block-size                           (4M)
  FERROFS_CACHE_SIZE  ferrofs mount --cache-size                            (50G)
  FERROFS_MOUNT_OPTS  extra arguments for `ferrofs mount`                   (none)
  RCLONE_OPTS         extra arguments for `rclone mount`                    (none)
  S3FS_OPTS           extra arguments for s3fs                              (none)
  BINDFS_OPTS         arguments for bindfs                                  (--multithreaded)
  UPLOAD_TRANSFERS    rclone copy --transfers when loading the s3fs/rclone buckets (16)
  S3FS_FLAT           1 = the s3fs bucket holds the files flat at its root (see below)  (1)
  S3_NODELAY          1 = run s3s-fs with TCP_NODELAY on its sockets (an LD_PRELOAD shim
                      built with cc; see below), 0 = as it is                (1)
  COUNT_REQUESTS      1 = count S3 requests per epoch from the s3s-fs debug log (1)
  OP_TIMEOUT          seconds before one timed step is declared hung        (1800)
  KEEP                1 = keep BENCH_DIR (and the logs) afterwards          (0)

s3s-fs 0.14.1 does not set TCP_NODELAY: on a kept-alive connection every GET of a ~110 KiB
object then waits ~40 ms for the client's delayed ACK (curl, rclone and ferrofs alike), so
the cold epochs measure that stall. S3_NODELAY=1 removes it (GETs take ~3 ms).
s3s-fs answers HTTP 500 to HEAD of "dir/" (a key ending in '/'); s3fs looks that key up
for every directory and backs off for minutes on the 500s, so with S3FS_FLAT=1 (default)
its bucket holds the files at its root (fNNNNNNN) instead of under data/dNN/.
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

if ((QUICK)); then
    FILES=${FILES:-2000}
    LS_FILES=${LS_FILES:-10000}
else
    FILES=${FILES:-20000}
    LS_FILES=${LS_FILES:-100000}
fi
SIZE_KIB=${SIZE_KIB:-110}
DIRS=${DIRS:-20}
READERS=${READERS:-8}
SEED=${SEED:-42}
CHECK=${CHECK:-crc32}
TARGETS=${TARGETS:-ferrofs rclone s3fs bindfs}
LS_TARGETS=${LS_TARGETS:-ferrofs bindfs}
BLOCK_SIZE=${BLOCK_SIZE:-4M}
FERROFS_CACHE_SIZE=${FERROFS_CACHE_SIZE:-50G}
FERROFS_MOUNT_OPTS=${FERROFS_MOUNT_OPTS:-}
RCLONE_OPTS=${RCLONE_OPTS:-}
S3FS_OPTS=${S3FS_OPTS:-}
BINDFS_OPTS=${BINDFS_OPTS---multithreaded}
UPLOAD_TRANSFERS=${UPLOAD_TRANSFERS:-16}
S3FS_FLAT=${S3FS_FLAT:-1}
S3_NODELAY=${S3_NODELAY:-1}
COUNT_REQUESTS=${COUNT_REQUESTS:-1}
OP_TIMEOUT=${OP_TIMEOUT:-1800}
KEEP=${KEEP:-0}
ACCESS_KEY=benchkey
SECRET_KEY=benchsecret

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${BENCH_DIR:-/tmp/ferrofs-epochs-$$}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
has() { [[ " $1 " == *" $2 "* ]]; } # has LIST WORD

# ---------------------------------------------------------------- preconditions
[[ $(id -u) == 0 ]] || die "run as root (needs /proc/sys/vm/drop_caches and mounting)"
for t in $TARGETS; do
    [[ $t == ferrofs || $t == rclone || $t == s3fs || $t == bindfs ]] ||
        die "TARGETS may name only ferrofs, rclone, s3fs and bindfs, not '$t'"
done
for t in $LS_TARGETS; do
    [[ $t == ferrofs || $t == rclone || $t == s3fs || $t == bindfs ]] ||
        die "LS_TARGETS may name only ferrofs, rclone, s3fs and bindfs, not '$t'"
done
[[ $CHECK == crc32 || $CHECK == md5 ]] || die "CHECK must be crc32 or md5, not '$CHECK'"
((FILES > 0 && DIRS > 0 && READERS > 0 && SIZE_KIB > 0)) || die "FILES, DIRS, READERS and SIZE_KIB must be > 0"
for c in python3 timeout mountpoint findmnt xargs seq; do
    command -v "$c" >/dev/null || die "$c is not installed"
done
NEED_S3=0
for t in ferrofs rclone s3fs; do has "$TARGETS" $t && NEED_S3=1; done
if ((NEED_S3)); then
    if [[ -z ${S3S_FS_BIN:-} ]]; then
        S3S_FS_BIN=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
    fi
    [[ -x $S3S_FS_BIN ]] ||
        die "s3s-fs not found (cargo install s3s-fs --version 0.14.1 --features binary, or set S3S_FS_BIN)"
fi
if has "$TARGETS" rclone || has "$TARGETS" s3fs; then
    command -v rclone >/dev/null ||
        die "rclone is not installed (apt-get install rclone); it also uploads the s3fs bucket"
fi
has "$TARGETS" s3fs && { command -v s3fs >/dev/null || die "s3fs is not installed (apt-get install s3fs)"; }
if has "$TARGETS" bindfs; then
    command -v bindfs >/dev/null || die "bindfs is not installed (apt-get install bindfs)"
    command -v fusermount3 >/dev/null || die "fusermount3 is not installed (apt-get install fuse3)"
fi
if has "$TARGETS" ferrofs; then
    if [[ -z ${FERROFS_BIN:-} ]]; then
        log "building ferrofs (release): cargo build --release -p ferrofs"
        (cd "$REPO" && cargo build --release -p ferrofs) >&2
        FERROFS_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferrofs
    fi
    [[ -x $FERROFS_BIN ]] || die "FERROFS_BIN=$FERROFS_BIN is not an executable"
    FERROFS_BIN=$(realpath "$FERROFS_BIN")
    "$FERROFS_BIN" mount --help 2>/dev/null | grep -q -- --cache-dir ||
        die "$FERROFS_BIN mount does not know --cache-dir; is it a ferrofs with the local block cache?"
fi

if [[ -e $W ]]; then
    [[ -d $W && -z $(ls -A "$W") ]] || die "BENCH_DIR=$W exists and is not empty"
    CREATED_W=0
else
    mkdir -p "$W"
    CREATED_W=1
fi
W=$(realpath "$W")
LOCAL=$W/local # source data (data/) = the bindfs backing directory
S3_ROOT=$W/s3-root
S3_LOG=$W/s3s-fs.log
MANIFEST=$W/manifest.tsv
RESULTS=$W/results.tsv
FAILS=$W/failures # one line per failure; written from subshells too
META_URL=sled://$W/ferrofs-meta
mkdir -p "$LOCAL" "$S3_ROOT"
for t in $TARGETS; do mkdir -p "$W/mnt-$t"; done
: >"$RESULTS"
: >"$FAILS"
S3_PID=
COLD_OK=1
RCLONE_ENV=(env -u AWS_CA_BUNDLE -u CURL_CA_BUNDLE -u REQUESTS_CA_BUNDLE -u SSL_CERT_FILE
    -u SSL_CERT_DIR -u NIX_SSL_CERT_FILE)

mnt_of() { echo "$W/mnt-$1"; }
cache_of() { echo "$W/$1-cache"; }
fail() { log "FAILED: $*"; echo "$*" >>"$FAILS"; }

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
    mkdir -p "$(cache_of "$t")"
    case $t in
        ferrofs)
            # shellcheck disable=SC2086
            "$FERROFS_BIN" mount "$META_URL" "$m" -d --log "$W/ferrofs.log" \
                --cache-dir "$(cache_of ferrofs)" --cache-size "$FERROFS_CACHE_SIZE" \
                $FERROFS_MOUNT_OPTS >/dev/null
            mountpoint -q "$m" || die "ferrofs did not mount at $m"
            ;;
        rclone)
            # rclone 1.60 fails every S3 call when AWS_CA_BUNDLE is set (even for http://):
            # run it without the CA variables. Not --daemon, so $! is the daemon itself; the
            # pid goes to a file because this may run in a subshell.
            # shellcheck disable=SC2086
            "${RCLONE_ENV[@]}" rclone --config "$W/rclone.conf" mount s3:rclone "$m" \
                --vfs-cache-mode full --cache-dir "$(cache_of rclone)" \
                $RCLONE_OPTS >>"$W/rclone.log" 2>&1 &
            echo $! >"$W/rclone.pid"
            wait_mounted rclone "$(cat "$W/rclone.pid")"
            ;;
        s3fs)
            # -f: stays in the foreground, so $! is the daemon itself
            # shellcheck disable=SC2086
            s3fs s3fs "$m" -f -o url="$ENDPOINT" -o use_path_request_style \
                -o passwd_file="$W/s3fs.passwd" -o use_cache="$(cache_of s3fs)" \
                $S3FS_OPTS >>"$W/s3fs.log" 2>&1 &
            echo $! >"$W/s3fs.pid"
            wait_mounted s3fs "$(cat "$W/s3fs.pid")"
            ;;
        bindfs)
            # -f: in the foreground, so $! is the daemon (for the hang watchdog)
            # shellcheck disable=SC2086
            bindfs -f $BINDFS_OPTS "$LOCAL" "$m" >>"$W/bindfs.log" 2>&1 &
            echo $! >"$W/bindfs.pid"
            wait_mounted bindfs "$(cat "$W/bindfs.pid")"
            ;;
    esac
}

daemon_pid() { # TARGET: pid of the FUSE daemon serving the mount, if known
    if [[ $1 == ferrofs ]]; then ferrofs_pid; else cat "$W/$1.pid" 2>/dev/null; fi
}

# guarded TARGET CMD...: runs CMD under `timeout`. A reader stuck in a FUSE request that the
# daemon never answers cannot be killed, so `timeout` alone could wait for ever: 30 s after
# the timeout, a watchdog kills the target's FUSE daemon (SIGKILL), which fails the request.
guarded() {
    local t=$1 p wd rc=0
    shift
    timeout -k 10 "$OP_TIMEOUT" "$@" &
    p=$!
    (
        trap 'kill $s 2>/dev/null; exit 0' TERM
        sleep $((OP_TIMEOUT + 30)) &
        s=$!
        wait $s
        if kill -0 "$p" 2>/dev/null; then
            log "[$t] step still running $((OP_TIMEOUT + 30))s after it started: killing the $t daemon"
            d=$(daemon_pid "$t")
            [[ -n $d ]] && kill -9 "$d" 2>/dev/null
        fi
    ) &
    wd=$!
    wait "$p" || rc=$?
    kill "$wd" 2>/dev/null
    wait "$wd" 2>/dev/null || true
    return "$rc"
}

# Unmounts and waits for the daemon to exit (`ferrofs umount` itself waits for the mount
# process to flush and exit; rclone and s3fs are waited for by pid).
umount_target() {
    local t=$1 m pid
    m=$(mnt_of "$t")
    case $t in
        ferrofs) timeout 300 "$FERROFS_BIN" umount "$m" >/dev/null ;;
        rclone | s3fs | bindfs)
            if mountpoint -q "$m"; then
                if [[ $t == bindfs ]]; then fusermount3 -u "$m"; else umount "$m"; fi
            fi
            pid=$(cat "$W/$t.pid" 2>/dev/null || true)
            [[ -n $pid ]] || return 0
            for _ in $(seq 600); do
                kill -0 "$pid" 2>/dev/null || { rm -f "$W/$t.pid"; return 0; }
                sleep 0.1
            done
            log "warning: $t (pid $pid) still running 60 s after umount; stopping it"
            kill "$pid" 2>/dev/null || true
            sleep 1
            rm -f "$W/$t.pid"
            ;;
    esac
}

drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        ((COLD_OK)) && log "warning: cannot write /proc/sys/vm/drop_caches; 'cold' runs are not cold"
        COLD_OK=0
    fi
}

# cold TARGET [empty-cache]: unmount, (empty the tool's local cache dir), drop the kernel's
# page/dentry/inode caches, mount again.
cold() {
    local t=$1
    mountpoint -q "$(mnt_of "$t")" && umount_target "$t"
    if [[ ${2:-} == empty-cache && $t != bindfs ]]; then
        rm -rf "$(cache_of "$t")"
        mkdir -p "$(cache_of "$t")"
    fi
    drop_caches
    mount_target "$t"
}

# proc_usage PID: "cpu-ticks read-bytes" of the process (all its threads): CPU time, and the
# bytes it made the kernel fetch from disk ("- -" if unknown).
proc_usage() {
    if [[ -n $1 && -r /proc/$1/io ]]; then
        echo "$(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo -) $(awk '/^read_bytes/ { print $2 }' "/proc/$1/io" 2>/dev/null || echo -)"
    else
        echo "- -"
    fi
}
CLK_TCK=$(getconf CLK_TCK)

s3log_offset() { if ((COUNT_REQUESTS)) && [[ -f $S3_LOG ]]; then stat -c %s "$S3_LOG"; else echo 0; fi; }

# s3_requests BUCKET FROM TO: "object-GETs all-requests" the server logged for BUCKET between
# the two log offsets ("- -" when not counting).
s3_requests() {
    local b=$1 from=$2 to=$3
    if ! ((COUNT_REQUESTS)) || [[ $b == bindfs ]]; then echo "- -"; return; fi
    tail -c +$((from + 1)) "$S3_LOG" | head -c $((to - from)) |
        grep -oE "req: Request \{ method: [A-Z]+, uri: /$b[/?][^ ,]*" |
        awk -v b="/$b/" '{ n++; m = $5; sub(",", "", m); path = $7; sub(/\?.*/, "", path)
            if (m == "GET" && index(path, b) == 1 && length(path) > length(b)) g++ }
            END { print g + 0, n + 0 }'
}

# timed TARGET KEY DIR CMD: runs CMD with bash in DIR (under `timeout`), records its wall
# time. Returns non-zero if CMD failed or hung.
timed() {
    local t=$1 key=$2 dir=$3 cmd=$4
    local t0 t1 rc=0 secs
    t0=$(date +%s.%N)
    (cd "$dir" && guarded "$t" bash -c "set -euo pipefail; $cmd") \
        >"$W/step.out" 2>"$W/step.err" || rc=$?
    t1=$(date +%s.%N)
    secs=$(python3 -c "print(f'{$t1 - $t0:.6f}')")
    if ((rc != 0)); then
        local why="exit status $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${OP_TIMEOUT}s (hung?)"
        log "  command (in $dir): $cmd"
        sed 's/^/  stderr: /' "$W/step.err" | head -20 >&2
        printf '%s\t%s\tFAIL\t%s\t\t\t\t\t\n' "$key" "$t" "$secs" >>"$RESULTS"
        fail "$t $key: $why after ${secs}s"
        return 1
    fi
    printf '%s\t%s\tOK\t%s\t\t\t\t\t\n' "$key" "$t" "$secs" >>"$RESULTS"
    log "[$t] $key: ${secs}s"
}

# epoch TARGET N PERMUTATION-SEED: READERS threads read every file of the dataset once, whole,
# in a seeded random order, and check each one's size and checksum against the manifest.
epoch() {
    local t=$1 n=$2 seed=$3 m rc=0 load o0 o1 secs nbytes bad status reqs
    m=$(mnt_of "$t")
    load=$(cut -d' ' -f1 /proc/loadavg)
    local d u0 u1 r0 r1 usage="-"$'\t'"-"
    d=$(daemon_pid "$t" || true)
    u0=$(proc_usage "$d")
    o0=$(s3log_offset)
    local root=$m/data layout=tree
    [[ $t == s3fs ]] && ((S3FS_FLAT)) && { root=$m; layout=flat; }
    guarded "$t" python3 "$W/reader.py" "$root" "$MANIFEST" "$seed" "$READERS" "$CHECK" "$layout" \
        >"$W/step.out" 2>"$W/step.err" || rc=$?
    sleep 0.2 # let the server log the last responses
    o1=$(s3log_offset)
    reqs=$(s3_requests "$t" "$o0" "$o1")
    u1=$(proc_usage "$d")
    if [[ $u0 != "- -" && $u1 != "- -" ]]; then
        usage=$(python3 -c "a, b = '$u0'.split(), '$u1'.split(); print(f'{(int(b[0]) - int(a[0])) / $CLK_TCK:.1f}\t{(int(b[1]) - int(a[1])) / 1e6:.1f}')")
    fi
    if ((rc != 0 && rc != 3)) || ! grep -q '^secs=' "$W/step.out"; then
        local why="exit status $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${OP_TIMEOUT}s (hung?)"
        sed 's/^/  stderr: /' "$W/step.err" | head -20 >&2
        printf 'e%s\t%s\tFAIL\t\t\t\t%s\t%s\t%s\n' "$n" "$t" "${reqs// /$'\t'}" "$load" "$usage" >>"$RESULTS"
        fail "$t epoch $n: $why"
        return 1
    fi
    secs=$(sed -n 's/^secs=//p' "$W/step.out")
    nbytes=$(sed -n 's/^bytes=//p' "$W/step.out")
    bad=$(sed -n 's/^bad=//p' "$W/step.out")
    status=OK
    if ((bad > 0)); then
        status="MISMATCH($bad)"
        sed 's/^/  /' "$W/step.err" | head -10 >&2
        fail "$t epoch $n: $bad of $FILES files unreadable or different from the source"
    fi
    printf 'e%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$t" "$status" "$secs" "$FILES" "$nbytes" \
        "${reqs// /$'\t'}" "$load" "$usage" >>"$RESULTS"
    log "[$t] epoch $n: ${secs}s, $status, S3 object GETs / requests: $reqs, daemon CPU s / disk read MB: ${usage//$'\t'/ }, loadavg before: $load"
}

# ---------------------------------------------------------------- per-target steps
load_dataset() {
    local t=$1 m
    m=$(mnt_of "$t")
    case $t in
        ferrofs)
            # ferrofs keeps its own block format: the dataset is written through the mount.
            mount_target ferrofs
            (cd "$LOCAL" && find data -type f -exec cat {} + >/dev/null) # source in the page cache
            timed ferrofs load "$m" "cp -r '$LOCAL/data' data && sync"
            umount_target ferrofs
            ;;
        rclone | s3fs)
            # Plain objects data/dNN/fNNNNNNN in the tool's own bucket (for s3fs with
            # S3FS_FLAT=1: fNNNNNNN at the root), uploaded with rclone (which makes no
            # directory marker objects: s3s-fs cannot store them).
            local src=$LOCAL/data dst=s3:$t/data
            if [[ $t == s3fs ]] && ((S3FS_FLAT)); then
                rm -rf "$LOCAL/flat"
                mkdir "$LOCAL/flat"
                (cd "$LOCAL/data" && find . -type f -print0 | xargs -0 ln -t "$LOCAL/flat")
                src=$LOCAL/flat dst=s3:$t
            fi
            timed "$t" load "$W" "${RCLONE_ENV[*]} rclone --config '$W/rclone.conf' copy '$src' $dst --transfers $UPLOAD_TRANSFERS --checkers $UPLOAD_TRANSFERS"
            ;;
        bindfs)
            printf 'load\tbindfs\tOK\t\t\t\t\t\t\n' >>"$RESULTS" # the source directory itself
            ;;
    esac
}

run_epochs() {
    local t=$1
    load_dataset "$t"
    log "[$t] cold: unmount, empty the local cache dir, drop_caches, mount"
    cold "$t" empty-cache
    epoch "$t" 1 $((SEED + 1)) || true
    mountpoint -q "$(mnt_of "$t")" || die "$t is no longer mounted after epoch 1"
    log "[$t] warm: drop_caches (the kernel page cache, not the tool's cache)"
    drop_caches
    epoch "$t" 2 $((SEED + 2)) || true
    umount_target "$t"
}

run_ls() {
    local t=$1 m
    m=$(mnt_of "$t")
    mountpoint -q "$m" || mount_target "$t"
    log "[$t] creating $LS_FILES empty files in one directory (untimed)"
    mkdir "$m/lsdir"
    timed "$t" ls_create "$m/lsdir" 'seq -f "f%07.0f" 1 '"$LS_FILES"' | xargs touch --'
    cold "$t"
    local ls_cmd="n=\$(LC_ALL=C ls -l --color=never . | wc -l); [[ \$n == $((LS_FILES + 1)) ]] || { echo \"ls -l printed \$n lines, want $((LS_FILES + 1))\" >&2; exit 1; }"
    timed "$t" ls_cold "$m/lsdir" "$ls_cmd" || true
    timed "$t" ls_cached "$m/lsdir" "$ls_cmd" || true
    umount_target "$t"
}

run_in_subshell() { # FUNCTION TARGET: a failure ends FUNCTION for that target only
    local f=$1 t=$2 rc
    set +e
    (
        set -e
        "$f" "$t"
    )
    rc=$?
    set -e
    if ((rc != 0)); then
        fail "$t $f: failed (exit $rc)"
        if mountpoint -q "$(mnt_of "$t")"; then umount_target "$t" || true; fi
    fi
    return 0
}

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    for t in $TARGETS; do
        local m pid
        m=$(mnt_of "$t")
        case $t in
            ferrofs)
                if mountpoint -q "$m" 2>/dev/null; then
                    pid=$(ferrofs_pid)
                    timeout 90 "$FERROFS_BIN" umount "$m" >/dev/null ||
                        { log "ferrofs umount failed; detaching"; umount -l "$m"; }
                    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
                        sleep 5
                        kill "$pid" 2>/dev/null
                    fi
                fi
                ;;
            *)
                if mountpoint -q "$m" 2>/dev/null; then
                    if [[ $t == bindfs ]]; then
                        fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m"
                    else
                        umount "$m" 2>/dev/null || umount -l "$m"
                    fi
                fi
                pid=$(cat "$W/$t.pid" 2>/dev/null)
                if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
                    sleep 2
                    kill "$pid" 2>/dev/null
                fi
                ;;
        esac
    done
    if [[ -n $S3_PID ]] && kill -0 "$S3_PID" 2>/dev/null; then
        kill "$S3_PID" 2>/dev/null
        wait "$S3_PID" 2>/dev/null
    fi
    if ((rc != 0)) || [[ -s $FAILS ]]; then
        local l
        for l in ferrofs rclone s3fs; do
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
        rm -rf "$LOCAL" "$S3_ROOT" "$W/ferrofs-meta" "$W"/*-cache "$W"/mnt-* "$W"/*.log \
            "$W"/*.pid "$MANIFEST" "$RESULTS" "$FAILS" "$W"/step.* "$W"/*.py "$W/s3fs.passwd" \
            "$W/rclone.conf" "$W"/nodelay.*
        ((CREATED_W)) && rmdir "$W" 2>/dev/null
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helper programs
cp "$REPO/bench/lib/gen.py" "$W/gen.py"

cp "$REPO/bench/lib/reader.py" "$W/reader.py"

# ---------------------------------------------------------------- set up
log "scratch directory $W"
log "sizes: FILES=$FILES SIZE_KIB=$SIZE_KIB (+-10%) DIRS=$DIRS READERS=$READERS LS_FILES=$LS_FILES; targets: $TARGETS; ls on: $LS_TARGETS"

log "generating $FILES files in $LOCAL/data (untimed)"
mkdir "$LOCAL/data"
python3 "$W/gen.py" "$LOCAL/data" "$FILES" "$DIRS" "$SIZE_KIB" "$SEED" >"$MANIFEST"
[[ $(wc -l <"$MANIFEST") == "$FILES" ]] || die "generating the dataset failed"
BYTES=$(awk -F'\t' '{ s += $2 } END { printf "%.0f\n", s }' "$MANIFEST")
log "dataset: $FILES files, $BYTES bytes"

if ((NEED_S3)); then
    for b in ferrofs rclone s3fs; do has "$TARGETS" $b && mkdir -p "$S3_ROOT/$b"; done
    # s3s::service=debug logs one "req: Request { method: GET, uri: /bucket/key, ..." line
    # per request: that is what the S3 request counts are made of.
    s3_filter=warn,s3s_fs=info
    ((COUNT_REQUESTS)) && s3_filter=$s3_filter,s3s::service=debug
    preload=
    if ((S3_NODELAY)); then
        # s3s-fs leaves Nagle on: with the client's delayed ACK, every GET of a ~110 KiB
        # object on a kept-alive connection stalls ~40 ms. This shim sets TCP_NODELAY on
        # each accepted socket, as S3 servers commonly do.
        cp "$REPO/bench/lib/nodelay.c" "$W/nodelay.c"
        if cc -O2 -shared -fPIC -o "$W/nodelay.so" "$W/nodelay.c" -ldl 2>"$W/nodelay.err"; then
            preload=$W/nodelay.so
        else
            log "warning: cannot build the TCP_NODELAY shim ($(head -1 "$W/nodelay.err")); s3s-fs runs as it is"
            S3_NODELAY=0
        fi
    fi
    log "starting s3s-fs on 127.0.0.1 (root $S3_ROOT)${preload:+ with TCP_NODELAY (LD_PRELOAD $preload)}"
    LD_PRELOAD=$preload RUST_LOG=$s3_filter NO_COLOR=1 "$S3S_FS_BIN" --host 127.0.0.1 --port 0 \
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
    ENDPOINT=http://127.0.0.1:$PORT
    log "s3s-fs (pid $S3_PID) at $ENDPOINT"
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
fi

if has "$TARGETS" ferrofs; then
    log "ferrofs: $FERROFS_BIN ($("$FERROFS_BIN" --version 2>/dev/null || echo '?'))"
    "$FERROFS_BIN" format "$META_URL" epochs --storage s3 --bucket "$ENDPOINT/ferrofs" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" --block-size "$BLOCK_SIZE" >&2
fi
drop_caches # once here, so that a failure is noticed (and reported) by this shell

# ---------------------------------------------------------------- run
START=$(date +%s)
for t in $TARGETS; do
    log "== $t: epochs"
    run_in_subshell run_epochs "$t"
    if has "$LS_TARGETS" "$t"; then
        log "== $t: ls -l of $LS_FILES entries"
        run_in_subshell run_ls "$t"
    fi
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
echo
echo "epochs over a small-file dataset: ferrofs vs rclone vs s3fs vs bindfs -- $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs, scratch on $(findmnt -no FSTYPE -T "$W") ($(findmnt -no SOURCE -T "$W")), run took ${ELAPSED}s"
echo "dataset: $FILES files of $SIZE_KIB KiB +-10% ($(python3 -c "print(f'{$BYTES / 1e6:.1f}')") MB) in $DIRS dirs, random bytes (seed $SEED); each epoch: $READERS threads read every file once, whole, in a seeded random permutation (a new one per epoch), checking size and $CHECK"
if ((NEED_S3)); then
    echo "server:  s3s-fs $("$S3S_FS_BIN" --version 2>/dev/null | head -1 | awk '{print $NF}') on 127.0.0.1, objects on the scratch disk, one bucket per target, $( ((S3_NODELAY)) && echo "TCP_NODELAY set by an LD_PRELOAD shim (S3_NODELAY=1)" || echo "as it is (S3_NODELAY=0: each GET on a kept-alive connection waits ~40 ms for a delayed ACK)")"
fi
for t in $TARGETS; do
    case $t in
        ferrofs) echo "ferrofs: $FERROFS_BIN, block size $BLOCK_SIZE, mount --cache-dir <scratch>/ferrofs-cache --cache-size $FERROFS_CACHE_SIZE${FERROFS_MOUNT_OPTS:+ $FERROFS_MOUNT_OPTS}; dataset written through the mount (cp -r, sync)" ;;
        rclone) echo "rclone:  $(rclone version 2>/dev/null | head -1 | awk '{print $2}') mount --vfs-cache-mode full --cache-dir <scratch>/rclone-cache${RCLONE_OPTS:+ $RCLONE_OPTS}; dataset uploaded with rclone copy" ;;
        s3fs) echo "s3fs:    $(s3fs --version 2>/dev/null | head -1 | awk '{print $(NF-3)}' || true) -o use_path_request_style -o use_cache=<scratch>/s3fs-cache${S3FS_OPTS:+ $S3FS_OPTS}; dataset uploaded with rclone copy$( ((S3FS_FLAT)) && echo ", FLAT at the bucket root (s3s-fs answers 500 to HEAD dNN/, on which s3fs backs off for minutes)")" ;;
        bindfs) echo "bindfs:  $(bindfs --version 2>/dev/null | head -1) ${BINDFS_OPTS} of the source directory on the scratch disk (the FUSE ceiling)" ;;
    esac
done
if ((COLD_OK)); then
    echo "epoch 1 (cold): unmounted, local cache dir emptied, page/dentry/inode caches dropped (echo 3 > drop_caches), mounted: every byte"
    echo "                comes from the S3 server (whose files are not in the page cache either); bindfs: from its backing dir on disk"
    echo "epoch 2 (warm): same mount, drop_caches again, so it is served by the tool's own local cache on disk (ferrofs --cache-dir,"
    echo "                rclone VFS cache, s3fs use_cache), NOT by the kernel page cache; bindfs reads its backing dir from disk again"
else
    echo "WARNING: drop_caches failed: 'cold' only means remounted with empty local caches, and epoch 2 may be served by the page cache"
fi
echo
report_failed() { # the measurements are not lost if the table code breaks
    echo "(the report failed; the raw results, $RESULTS:)"
    cat "$RESULTS"
    echo "report: the table could not be printed" >>"$FAILS"
}
python3 - "$RESULTS" "$TARGETS" "$LS_TARGETS" "$FILES" "$BYTES" "$LS_FILES" "$COUNT_REQUESTS" <<'PY' || report_failed
import sys
path, targets, ls_targets = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
files, nbytes, ls_files, counting = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1"
ls_targets = [t for t in ls_targets if t in targets]
res = {}
for line in open(path):
    key, t, status, secs, nf, nb, gets, reqs, load, cpu, rd = (line.rstrip("\n").split("\t") + [""] * 11)[:11]
    res[(key, t)] = dict(status=status, secs=float(secs) if secs else None,
                         files=int(nf) if nf else None, bytes=int(nb) if nb else None,
                         gets=gets, reqs=reqs, load=load, cpu=cpu, rd=rd)

def get(key, t):
    return res.get((key, t))

def epoch_cell(key, t):
    v = get(key, t)
    if v is None:
        return "-"
    if v["secs"] is None:
        return v["status"]
    s = v["secs"]
    return f"{s:8.2f} s {files / s:7.0f} files/s {v['bytes'] / 1e6 / s:7.1f} MB/s"

def load_cell(t):
    v = get("load", t)
    if v is None:
        return "-"
    if t == "bindfs":
        return "(source dir)"
    if v["secs"] is None:
        return v["status"]
    return f"{v['secs']:7.1f} s"

def check_cell(t):
    st = [get(k, t)["status"] for k in ("e1", "e2") if get(k, t)]
    if not st:
        return "-"
    return "OK" if all(s == "OK" for s in st) else "/".join(st)

def reqs_cell(t, field):
    if t == "bindfs" or not counting:
        return "-"
    out = []
    for k in ("e1", "e2"):
        v = get(k, t)
        out.append(v[field] if v and v[field] not in ("", "-") else "-")
    per = ""
    v = get("e1", t)
    if v and v[field] not in ("", "-"):
        per = f" ({int(v[field]) / files:.2f}/file)"
    return f"{out[0]}{per} / {out[1]}"

head = ["target", "dataset load", "epoch 1 (cold)", "epoch 2 (warm)", "content"]
rows = []
for t in targets:
    rows.append([t, load_cell(t), epoch_cell("e1", t), epoch_cell("e2", t), check_cell(t)])

def pair(t, field):
    return " / ".join((get(k, t)[field] or "-") if get(k, t) else "-" for k in ("e1", "e2"))

head2 = ["per epoch, e1 / e2", "S3 object GETs", "all S3 requests", "daemon CPU s",
         "daemon disk reads MB", "loadavg before"]
rows2 = [[t, reqs_cell(t, "gets"), reqs_cell(t, "reqs"), pair(t, "cpu"), pair(t, "rd"), pair(t, "load")]
         for t in targets]

def table(head, rows):
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join("{:<%d}" % n for n in w)
    print(fmt.format(*head).rstrip())
    print("  ".join("-" * n for n in w))
    for r in rows:
        print(fmt.format(*r).rstrip())

table(head, rows)
print()
table(head2, rows2)
print()

def rate(key, t):
    v = get(key, t)
    if v is None or v["secs"] is None or v["status"] != "OK":
        return None
    return files / v["secs"]

goals = []
f1, f2 = rate("e1", "ferrofs"), rate("e2", "ferrofs")
def fmt_rate(r):
    return f"{r:.0f} files/s" if r is not None else "-"
if "ferrofs" in targets and "bindfs" in targets:
    b = rate("e2", "bindfs")
    if f2 is not None and b is not None:
        q = f2 / b
        goals.append(["warm epoch >= 0.7x bindfs (epoch 2 vs epoch 2)", fmt_rate(f2), f"bindfs {fmt_rate(b)}",
                      f"{q:.2f}x", "met" if q >= 0.7 else "NOT met"])
    else:
        goals.append(["warm epoch >= 0.7x bindfs (epoch 2 vs epoch 2)", fmt_rate(f2), f"bindfs {fmt_rate(b)}", "-", "not measured"])
for o in ("rclone", "s3fs"):
    if "ferrofs" in targets and o in targets:
        r = rate("e1", o)
        if f1 is not None and r is not None:
            q = f1 / r
            goals.append([f"cold epoch ahead of {o} (epoch 1 vs epoch 1)", fmt_rate(f1), f"{o} {fmt_rate(r)}",
                          f"{q:.2f}x", "met" if q > 1 else "NOT met"])
        else:
            goals.append([f"cold epoch ahead of {o} (epoch 1 vs epoch 1)", fmt_rate(f1), f"{o} {fmt_rate(r)}", "-", "not measured"])
if goals:
    table(["goal", "ferrofs", "other", "ferrofs/other (files/s)", "verdict"], goals)
    print()

if ls_targets:
    def ls_cell(key, t):
        v = get(key, t)
        if v is None:
            return "-"
        if v["secs"] is None:
            return v["status"]
        return f"{v['secs']:8.2f} s {ls_files / v['secs']:8.0f} entries/s"
    head = [f"ls -l of a {ls_files}-entry directory"] + ls_targets
    extra = [t for t in ls_targets if t != "ferrofs"]
    if "ferrofs" in ls_targets:
        head += [f"ferrofs/{t} (time)" for t in extra]
    rows = []
    for key, label in (("ls_create", "(creating them through the mount: xargs touch)"),
                       ("ls_cold", "cold (remount + drop_caches)"),
                       ("ls_cached", "cached (again, at once)")):
        row = [label] + [ls_cell(key, t) for t in ls_targets]
        if "ferrofs" in ls_targets:
            f = get(key, "ferrofs")
            for t in extra:
                o = get(key, t)
                if f and o and f["secs"] is not None and o["secs"] is not None and f["status"] == o["status"] == "OK":
                    row.append(f"{f['secs'] / o['secs']:.2f}")
                else:
                    row.append("-")
        rows.append(row)
    table(head, rows)
    print()

print("files/s and MB/s (10^6 bytes/s) are over the readers' wall time (threads started to all joined). content = every file's")
print("size and checksum matched the source in both epochs. S3 object GETs = GET requests for an object key in the target's bucket")
print("that the s3s-fs debug log shows during the epoch (all requests: every method, listings included). daemon CPU s = user+system")
print("CPU time of the FUSE daemon (all threads) during the epoch; daemon disk reads MB = bytes it made the kernel read from")
print("the disk (/proc/PID/io read_bytes: its local cache, or bindfs's backing files). ferrofs/other > 1: ferrofs reads more")
print("files per second. loadavg = 1-minute load average just before the epoch (this machine is shared).")
PY

if [[ -s $W/ferrofs.log ]]; then
    nwarn=$(grep -cE ' (WARN|ERROR) ' "$W/ferrofs.log" || true)
    if ((nwarn > 0)); then
        echo
        echo "ferrofs log has $nwarn WARN/ERROR lines; the first ones:"
        grep -E ' (WARN|ERROR) ' "$W/ferrofs.log" | head -10 | sed 's/^/  /'
    fi
fi
if [[ -s $FAILS ]]; then
    echo
    echo "FAILURES:"
    sed 's/^/  /' "$FAILS"
    exit 1
fi
