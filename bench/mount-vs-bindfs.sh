#!/usr/bin/env bash
# Benchmark a ferrofs mount against a bindfs passthrough of a local directory (the
# practical ceiling of a FUSE file system on this machine), in one run, and print a table
# with both figures and the slowdown ratio.  See bench/README.md.
#
#   bench/mount-vs-bindfs.sh            # full sizes
#   bench/mount-vs-bindfs.sh --quick    # everything 10x smaller
#
# Needs root (drop_caches, mounting), bindfs, fusermount3, python3, coreutils.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/mount-vs-bindfs.sh [--quick] [--help]

  --quick   scale every workload down 10x (a check that everything works)

Environment (all optional; explicit values win over --quick):
  FERROFS_BIN         ferrofs binary (default: build with `cargo build --release -p ferrofs`
                      and use ${CARGO_TARGET_DIR:-<repo>/target}/release/ferrofs)
  BENCH_DIR           scratch directory, must be absent or empty (default /tmp/ferrofs-bench-$$);
                      the ferrofs metadata, objects and the bindfs backing directory live here
  FILES               workload 1: empty files created, stat'ed, unlinked   (10000)
  BIGDIR_FILES        workload 2: files in the directory listed with ls -l (100000)
  SMALL_FILES         workload 3: number of small files written and read   (5000)
  SMALL_KIB           workload 3: size of each small file in KiB           (64)
  BIG_MIB             workload 4: size of the sequential file in MiB       (1024)
  BLOCK_SIZE          ferrofs format --block-size                          (4M)
  FERROFS_MOUNT_OPTS  extra arguments for `ferrofs mount`                  (none)
  BINDFS_OPTS         arguments for bindfs                                 (--multithreaded)
  TARGETS             which mounts to run, in order                        ("bindfs ferrofs")
  OP_TIMEOUT          seconds before one timed step is declared hung       (1800)
  KEEP                1 = keep BENCH_DIR (and the ferrofs log) afterwards  (0)
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
SCALE=1
((QUICK)) && SCALE=10

FILES=${FILES:-$((10000 / SCALE))}
BIGDIR_FILES=${BIGDIR_FILES:-$((100000 / SCALE))}
SMALL_FILES=${SMALL_FILES:-$((5000 / SCALE))}
SMALL_KIB=${SMALL_KIB:-64}
BIG_MIB=${BIG_MIB:-$((1024 / SCALE))}
BLOCK_SIZE=${BLOCK_SIZE:-4M}
FERROFS_MOUNT_OPTS=${FERROFS_MOUNT_OPTS:-}
BINDFS_OPTS=${BINDFS_OPTS---multithreaded}
TARGETS=${TARGETS:-bindfs ferrofs}
OP_TIMEOUT=${OP_TIMEOUT:-1800}
KEEP=${KEEP:-0}
export FILES BIGDIR_FILES SMALL_FILES SMALL_KIB BIG_MIB

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${BENCH_DIR:-/tmp/ferrofs-bench-$$}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- preconditions
[[ $(id -u) == 0 ]] || die "run as root (needs /proc/sys/vm/drop_caches and mounting)"
for t in $TARGETS; do
    [[ $t == bindfs || $t == ferrofs ]] || die "TARGETS may name only bindfs and ferrofs, not '$t'"
done
for c in python3 timeout mountpoint md5sum split dd; do
    command -v "$c" >/dev/null || die "$c is not installed"
done
if [[ " $TARGETS " == *" bindfs "* ]]; then
    command -v bindfs >/dev/null || die "bindfs is not installed (apt-get install bindfs)"
    command -v fusermount3 >/dev/null || die "fusermount3 is not installed (apt-get install fuse3)"
fi
if [[ " $TARGETS " == *" ferrofs "* ]]; then
    if [[ -z ${FERROFS_BIN:-} ]]; then
        log "building ferrofs (release): cargo build --release -p ferrofs"
        (cd "$REPO" && cargo build --release -p ferrofs) >&2
        FERROFS_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferrofs
    fi
    [[ -x $FERROFS_BIN ]] || die "FERROFS_BIN=$FERROFS_BIN is not an executable"
    FERROFS_BIN=$(realpath "$FERROFS_BIN")
    "$FERROFS_BIN" format --help >/dev/null 2>&1 ||
        die "$FERROFS_BIN does not understand \`format --help\`; is it the ferrofs command?"
fi

if [[ -e $W ]]; then
    [[ -d $W && -z $(ls -A "$W") ]] || die "BENCH_DIR=$W exists and is not empty"
    CREATED_W=0
else
    mkdir -p "$W"
    CREATED_W=1
fi
W=$(realpath "$W")
LOCAL=$W/local                       # source data on the local disk (never mounted)
BIND_BACKING=$W/bindfs-backing
BIND_MNT=$W/bindfs-mnt
FERRO_META=$W/ferrofs-meta
FERRO_DATA=$W/ferrofs-data
FERRO_MNT=$W/ferrofs-mnt
FERRO_LOG=$W/ferrofs.log
META_URL=sled://$FERRO_META
RESULTS=$W/results.tsv
mkdir -p "$LOCAL" "$BIND_BACKING" "$BIND_MNT" "$FERRO_MNT"
: >"$RESULTS"
FAILURES=()
COLD_OK=1

mnt_of() { if [[ $1 == bindfs ]]; then echo "$BIND_MNT"; else echo "$FERRO_MNT"; fi; }

is_mounted() { mountpoint -q "$(mnt_of "$1")"; }

ferrofs_pid() {
    # The mount process records its pid in $TMPDIR/ferrofs<mountpoint, non-alnum -> _>.pid
    local f=${TMPDIR:-/tmp}/ferrofs${FERRO_MNT//[^a-zA-Z0-9]/_}.pid
    [[ -f $f ]] && cat "$f"
}

mount_target() {
    case $1 in
        bindfs)
            # shellcheck disable=SC2086
            bindfs $BINDFS_OPTS "$BIND_BACKING" "$BIND_MNT"
            ;;
        ferrofs)
            # shellcheck disable=SC2086
            "$FERROFS_BIN" mount "$META_URL" "$FERRO_MNT" -d --log "$FERRO_LOG" \
                $FERROFS_MOUNT_OPTS >/dev/null
            ;;
    esac
    is_mounted "$1" || die "$1 did not mount at $(mnt_of "$1")"
}

umount_target() {
    case $1 in
        bindfs) fusermount3 -u "$BIND_MNT" ;;
        ferrofs) "$FERROFS_BIN" umount "$FERRO_MNT" >/dev/null ;;
    esac
}

drop_caches() {
    sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        ((COLD_OK)) && log "warning: cannot write /proc/sys/vm/drop_caches; 'cold' runs are not cold"
        COLD_OK=0
    fi
}

# Unmount, drop the kernel's page/dentry/inode caches, mount again: the next access is
# served by a freshly started FUSE daemon with nothing cached in the kernel either.
cold_remount() {
    umount_target "$1"
    drop_caches
    mount_target "$1"
}

# timed TARGET KEY LABEL BYTES COUNT UNIT DIR CMD
# Runs CMD with bash in DIR (under `timeout`), records its wall time in the results.
timed() {
    local target=$1 key=$2 label=$3 bytes=$4 count=$5 unit=$6 dir=$7 cmd=$8
    local t0 t1 rc=0 secs
    t0=$(date +%s.%N)
    (cd "$dir" && timeout -k 10 "$OP_TIMEOUT" bash -c "set -euo pipefail; $cmd") \
        >"$W/step.out" 2>"$W/step.err" || rc=$?
    t1=$(date +%s.%N)
    secs=$(python3 -c "print(f'{$t1 - $t0:.6f}')")
    if ((rc != 0)); then
        local why="exit status $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${OP_TIMEOUT}s (hung?)"
        log "FAILED [$target] $label: $why after ${secs}s"
        log "  command (in $dir): $cmd"
        sed 's/^/  stderr: /' "$W/step.err" | head -20 >&2
        printf '%s\t%s\t%s\tFAIL\t%s\t%s\t%s\t%s\n' "$key" "$label" "$target" "$secs" "$bytes" \
            "$count" "$unit" >>"$RESULTS"
        return 1
    fi
    printf '%s\t%s\t%s\tOK\t%s\t%s\t%s\t%s\n' "$key" "$label" "$target" "$secs" "$bytes" "$count" \
        "$unit" >>"$RESULTS"
    log "[$target] $label: ${secs}s"
}

record_status() { # TARGET KEY LABEL STATUS
    printf '%s\t%s\t%s\t%s\t\t\t\t\n' "$2" "$3" "$1" "$4" >>"$RESULTS"
}

# ---------------------------------------------------------------- cleanup
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    for t in ferrofs bindfs; do
        local m
        m=$(mnt_of "$t")
        mountpoint -q "$m" 2>/dev/null || continue
        if [[ $t == ferrofs ]]; then
            local pid
            pid=$(ferrofs_pid)
            timeout 90 "$FERROFS_BIN" umount "$m" >/dev/null ||
                { log "ferrofs umount failed; detaching"; umount -l "$m"; }
            # Our own mount process, by pid: give it time to flush, then stop it.
            if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
                sleep 5
                kill "$pid" 2>/dev/null
            fi
        else
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m"
        fi
    done
    if ((rc != 0 || ${#FAILURES[@]} > 0)) && [[ -s $FERRO_LOG ]]; then
        log "last lines of the ferrofs log ($FERRO_LOG):"
        tail -n 40 "$FERRO_LOG" | sed 's/^/  log: /' >&2
    fi
    if ((KEEP)); then
        log "kept $W"
    elif mountpoint -q "$BIND_MNT" 2>/dev/null || mountpoint -q "$FERRO_MNT" 2>/dev/null; then
        log "something is still mounted under $W; not deleting it"
    else
        rm -rf "$LOCAL" "$BIND_BACKING" "$BIND_MNT" "$FERRO_META" "$FERRO_DATA" "$FERRO_MNT" \
            "$FERRO_LOG" "$RESULTS" "$W/step.out" "$W/step.err" "$W"/*.md5 "$W"/names
        ((CREATED_W)) && rmdir "$W" 2>/dev/null
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- workloads
# Each takes the target name; the mount is at $(mnt_of target). They run in a subshell
# with errexit, so any failed step ends that workload for that target only.

w1_small_ops() {
    local t=$1 m
    m=$(mnt_of "$t")
    mkdir "$m/w1"
    timed "$t" w1.create "1 create $FILES empty files" 0 "$FILES" files "$m/w1" \
        'for ((i = 1; i <= FILES; i++)); do printf -v n "f%07d" "$i"; : >"$n"; done'
    drop_caches
    timed "$t" w1.stat "1 stat them (after drop_caches)" 0 "$FILES" files "$m/w1" \
        'for ((i = 1; i <= FILES; i++)); do printf -v n "f%07d" "$i"; [[ -f $n ]] || { echo "missing $n" >&2; exit 1; }; done'
    timed "$t" w1.unlink "1 unlink them" 0 "$FILES" files "$m/w1" \
        'seq -f "f%07.0f" 1 "$FILES" | xargs rm --'
    [[ -z $(ls -A "$m/w1") ]] || { log "[$t] w1 not empty after unlink"; ls -A "$m/w1" | head >&2; exit 1; }
    rmdir "$m/w1"
}

w2_big_dir() {
    local t=$1 m
    m=$(mnt_of "$t")
    mkdir "$m/w2"
    timed "$t" w2.create "2 create $BIGDIR_FILES files in one dir" 0 "$BIGDIR_FILES" files "$m/w2" \
        'for ((i = 1; i <= BIGDIR_FILES; i++)); do printf -v n "f%07d" "$i"; : >"$n"; done'
    cold_remount "$t"
    # ls -l: readdir + a stat (and ACL/SELinux xattr probes) of every entry; the line
    # count (entries + "total") is checked.
    local ls_cmd='n=$(LC_ALL=C ls -l --color=never . | wc -l); [[ $n == $((BIGDIR_FILES + 1)) ]] || { echo "ls -l printed $n lines, want $((BIGDIR_FILES + 1))" >&2; exit 1; }'
    timed "$t" w2.ls_cold "2 ls -l of it, cold" 0 "$BIGDIR_FILES" entries "$m/w2" "$ls_cmd"
    timed "$t" w2.ls_warm "2 ls -l again, warm" 0 "$BIGDIR_FILES" entries "$m/w2" "$ls_cmd"
    timed "$t" w2.rm "2 rm -rf the directory" 0 "$BIGDIR_FILES" files "$m" 'rm -rf w2'
}

w3_small_files() {
    local t=$1 m
    m=$(mnt_of "$t")
    local bytes=$((SMALL_FILES * SMALL_KIB * 1024))
    # Pre-read the source so it is in the page cache: only the target is timed.
    (cd "$LOCAL/small" && xargs -0 -a "$W/names" cat >/dev/null)
    timed "$t" w3.write "3 write $SMALL_FILES x $SMALL_KIB KiB files (+sync)" "$bytes" "$SMALL_FILES" files \
        "$m" "cp -r '$LOCAL/small' w3 && sync"
    cold_remount "$t"
    timed "$t" w3.read "3 read them back, cold" "$bytes" "$SMALL_FILES" files "$m/w3" \
        "xargs -0 -a '$W/names' cat >/dev/null"
    # Verify what the mount serves, file by file, against the source.
    (cd "$m/w3" && xargs -0 -a "$W/names" md5sum) >"$W/$t.small.md5"
    if cmp -s "$W/local.small.md5" "$W/$t.small.md5"; then
        record_status "$t" w3.verify "3 md5 of every file = source" OK
    else
        local bad
        bad=$(diff "$W/local.small.md5" "$W/$t.small.md5" | grep -c '^>' || true)
        log "[$t] w3: $bad of $SMALL_FILES files differ from the source; first ones:"
        diff "$W/local.small.md5" "$W/$t.small.md5" | head -10 >&2
        record_status "$t" w3.verify "3 md5 of every file = source" "MISMATCH($bad)"
        FAILED_CHECK=1
    fi
    rm -rf "$m/w3"
}

w4_sequential() {
    local t=$1 m
    m=$(mnt_of "$t")
    local bytes=$((BIG_MIB * 1024 * 1024))
    cat "$LOCAL/pattern.bin" >/dev/null # the source is in the page cache: only the target is timed
    timed "$t" w4.write "4 sequential write $BIG_MIB MiB (dd bs=1M, fsync)" "$bytes" 1 files "$m" \
        "dd if='$LOCAL/pattern.bin' of=big bs=1M conv=fsync status=none"
    cold_remount "$t"
    timed "$t" w4.read "4 sequential read back, cold" "$bytes" 1 files "$m" \
        "dd if=big of=/dev/null bs=1M status=none"
    local sum size
    size=$(stat -c %s "$m/big")
    sum=$(md5sum <"$m/big" | cut -d' ' -f1)
    if [[ $size == "$bytes" && $sum == "$(cat "$W/local.pattern.md5")" ]]; then
        record_status "$t" w4.verify "4 md5 of the file = source" OK
    else
        log "[$t] w4: read back size $size md5 $sum; want size $bytes md5 $(cat "$W/local.pattern.md5")"
        record_status "$t" w4.verify "4 md5 of the file = source" MISMATCH
        FAILED_CHECK=1
    fi
    rm -f "$m/big"
}

run_workload() { # WORKLOAD TARGET
    local w=$1 t=$2 rc
    if ! is_mounted "$t"; then
        log "[$t] not mounted; trying to mount it again before $w"
        (mount_target "$t") || { FAILURES+=("$w/$t: not mounted"); return 0; }
    fi
    set +e
    (
        set -e
        FAILED_CHECK=0
        "$w" "$t"
        exit $((FAILED_CHECK ? 3 : 0))
    )
    rc=$?
    set -e
    if ((rc == 3)); then
        FAILURES+=("$w/$t: content mismatch")
    elif ((rc != 0)); then
        FAILURES+=("$w/$t: failed (exit $rc)")
        is_mounted "$t" || log "[$t] is no longer mounted after $w"
    fi
}

# ---------------------------------------------------------------- set up
log "scratch directory $W"
log "sizes: FILES=$FILES BIGDIR_FILES=$BIGDIR_FILES SMALL_FILES=$SMALL_FILES SMALL_KIB=$SMALL_KIB BIG_MIB=$BIG_MIB"

log "generating source data on the local disk (untimed)"
mkdir "$LOCAL/small"
head -c $((SMALL_FILES * SMALL_KIB * 1024)) /dev/urandom |
    split -b "${SMALL_KIB}K" -a 7 -d - "$LOCAL/small/f"
(cd "$LOCAL/small" && ls -1 | LC_ALL=C sort | tr '\n' '\0') >"$W/names"
(cd "$LOCAL/small" && xargs -0 -a "$W/names" md5sum) >"$W/local.small.md5"
dd if=/dev/urandom of="$LOCAL/pattern.bin" bs=1M count="$BIG_MIB" iflag=fullblock status=none
md5sum <"$LOCAL/pattern.bin" | cut -d' ' -f1 >"$W/local.pattern.md5"
drop_caches # once here, so that a failure is noticed (and reported) by this shell

for t in $TARGETS; do
    if [[ $t == ferrofs ]]; then
        log "ferrofs: $FERROFS_BIN ($("$FERROFS_BIN" --version 2>/dev/null || echo '?'))"
        "$FERROFS_BIN" format "$META_URL" bench --storage file --bucket "$FERRO_DATA" \
            --block-size "$BLOCK_SIZE" >&2
    fi
    mount_target "$t"
    log "mounted $t at $(mnt_of "$t")"
done

# ---------------------------------------------------------------- run
for w in w1_small_ops w2_big_dir w3_small_files w4_sequential; do
    for t in $TARGETS; do
        log "== $w on $t"
        run_workload "$w" "$t"
    done
done

# ---------------------------------------------------------------- report
echo
echo "ferrofs vs bindfs -- $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs, scratch on $(findmnt -no FSTYPE -T "$W") ($(findmnt -no SOURCE -T "$W"))"
echo "ferrofs: ${FERROFS_BIN:-not run} (block size $BLOCK_SIZE${FERROFS_MOUNT_OPTS:+, mount opts $FERROFS_MOUNT_OPTS})"
echo "bindfs:  $(bindfs --version 2>/dev/null | head -1) ${BINDFS_OPTS} over a directory of the same disk"
if ((COLD_OK)); then
    echo "cold = the mount was unmounted, page/dentry/inode caches dropped (echo 3 > drop_caches), mounted again"
else
    echo "WARNING: drop_caches failed, so 'cold' only means the FUSE daemon was restarted"
fi
echo
python3 - "$RESULTS" "$TARGETS" <<'PY'
import sys
rows, order = {}, []
for line in open(sys.argv[1]):
    key, label, target, status, secs, nbytes, count, unit = line.rstrip("\n").split("\t")
    if key not in rows:
        rows[key] = {"label": label}
        order.append(key)
    rows[key][target] = (status, float(secs) if secs else None,
                         int(nbytes) if nbytes else 0, int(count) if count else 0, unit)

# w1 total row
w1 = [k for k in ("w1.create", "w1.stat", "w1.unlink") if k in rows]
if len(w1) == 3:
    tot = {"label": "1 total create+stat+unlink"}
    for t in ("bindfs", "ferrofs"):
        parts = [rows[k].get(t) for k in w1]
        if all(p and p[0] == "OK" for p in parts):
            tot[t] = ("OK", sum(p[1] for p in parts), 0, parts[0][3] * 3, "ops")
        elif any(p for p in parts):
            tot[t] = ("FAIL", None, 0, 0, "")
    rows["w1.total"] = tot
    order.insert(order.index("w1.unlink") + 1, "w1.total")

def cell(v):
    if v is None:
        return "-"
    status, secs, nbytes, count, unit = v
    if status != "OK" or secs is None:
        return status
    if nbytes:
        return f"{secs:8.3f} s {nbytes / 1e6 / secs:8.1f} MB/s"
    return f"{secs:8.3f} s {count / secs:8.0f} {unit}/s"

def ratio(r):
    b, f = r.get("bindfs"), r.get("ferrofs")
    if not (b and f and b[0] == "OK" and f[0] == "OK" and b[1] is not None and f[1] is not None):
        return "-", ""
    q = f[1] / b[1] if b[1] > 0 else float("inf")
    if q >= 1:
        return f"{q:7.2f}", f"bindfs better: ferrofs {q:.2f}x slower"
    return f"{q:7.2f}", f"ferrofs better: {1 / q:.2f}x faster"

head = ("workload", "bindfs", "ferrofs", "ratio", "verdict")
table = []
for k in order:
    r = rows[k]
    rt, verdict = ratio(r)
    if k.endswith(".verify"):
        ok = all(r.get(t, ("-",))[0] in ("OK", "-") for t in ("bindfs", "ferrofs"))
        verdict = "content identical to the source" if ok else "CONTENT DIFFERS FROM THE SOURCE"
    table.append((r["label"], cell(r.get("bindfs")), cell(r.get("ferrofs")), rt, verdict))
w = [max(len(x[i]) for x in table + [head]) for i in range(5)]
fmt = "  ".join("{:<%d}" % n for n in w)
print(fmt.format(*head).rstrip())
print("  ".join("-" * n for n in w))
for row in table:
    print(fmt.format(*row).rstrip())
print()
print("ratio = ferrofs time / bindfs time for the same work (for MB/s rows the same number is")
print("bindfs MB/s / ferrofs MB/s). Above 1: bindfs (the FUSE passthrough ceiling) is better;")
print("below 1: ferrofs is better. MB/s = 10^6 bytes per second.")
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
