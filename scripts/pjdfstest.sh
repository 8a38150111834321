#!/usr/bin/env bash
# POSIX conformance: runs pjdfstest on a local directory (the baseline) and on a fresh
# ferrofs mount, in the same run, and prints both counts. Fails if ferrofs fails a test
# that passes locally and is not listed, with its reason, in pjdfstest-known-failures.txt.
# Needs root, /dev/fuse, pjdfstest and a built ferrofs (scripts/test-all.sh does all that).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$here/../target}"
bin="${FERROFS_BIN:-$target/debug/ferrofs}"
[ -x "$bin" ] || { echo "pjdfstest.sh: no ferrofs binary at $bin: run cargo build -p ferrofs" >&2; exit 1; }
config="$here/pjdfstest.toml"
known="$here/pjdfstest-known-failures.txt"

work="$(mktemp -d /tmp/ferrofs-pjd.XXXXXX)"
cleanup() {
    "$bin" umount "$work/mnt" >/dev/null 2>&1 || umount -l "$work/mnt" 2>/dev/null || true
    umount "$work/second" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/local" "$work/mnt" "$work/second"
# EXDEV tests need a second file system.
mount -t tmpfs -o size=16m tmpfs "$work/second"
chmod 777 "$work" "$work/local"

run_pjd() { # dir out
    (cd "$1" && pjdfstest -c "$config" -p "$1" -s "$work/second" >"$2" 2>&1) || true
}
count() { # file status
    grep -cE "^\S+\s+$2\$" "$1" || true
}

run_pjd "$work/local" "$work/local.out"

"$bin" format "sled://$work/meta" pjdfstest --storage file --bucket "$work/data" >/dev/null
"$bin" mount "sled://$work/meta" "$work/mnt" -d --log "$work/mount.log" >/dev/null
chmod 777 "$work/mnt"
run_pjd "$work/mnt" "$work/ferrofs.out"
"$bin" umount "$work/mnt" >/dev/null

summary() { echo "$(count "$1" ok) passed, $(count "$1" FAILED) failed, $(count "$1" skipped) skipped"; }
echo "pjdfstest on a local directory (baseline): $(summary "$work/local.out")"

grep -E '^\S+\s+FAILED$' "$work/local.out" | awk '{print $1}' | sort >"$work/local.failed" || true
grep -E '^\S+\s+FAILED$' "$work/ferrofs.out" | awk '{print $1}' | sort >"$work/ferrofs.failed" || true
grep -vE '^\s*(#|$)' "$known" | awk '{print $1}' | sort >"$work/known" || true
comm -23 "$work/ferrofs.failed" "$work/local.failed" >"$work/regressions"
comm -23 "$work/regressions" "$work/known" >"$work/unexpected"
if [ -s "$work/regressions" ]; then
    echo "failing on ferrofs but passing locally:"
    while read -r t; do
        grep -A1 -E "^$t\s+FAILED$" "$work/ferrofs.out" | tail -1 | sed "s|^|  $t: |"
    done <"$work/regressions"
fi
if [ -s "$work/unexpected" ]; then
    echo "pjdfstest: unexpected failures (not in $(basename "$known")):"
    sed 's/^/  /' "$work/unexpected"
    echo "pjdfstest: $(summary "$work/ferrofs.out")"
    exit 1
fi
echo "pjdfstest on ferrofs, no unexpected failures:"
echo "pjdfstest: $(summary "$work/ferrofs.out")"
