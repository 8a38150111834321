#!/usr/bin/env bash
# POSIX conformance: runs pjdfstest on a local directory (the baseline) and on fresh
# ferrofs mounts with data in a local directory and on a real S3 server (s3s-fs), in the
# same run, and prints every count. Fails if ferrofs fails a test that passes locally and
# is not listed, with its reason, in pjdfstest-known-failures.txt.
# Needs root, /dev/fuse, pjdfstest, s3s-fs and a built ferrofs (scripts/test-all.sh does all that).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${CARGO_TARGET_DIR:-$here/../target}"
bin="${FERROFS_BIN:-$target/debug/ferrofs}"
[ -x "$bin" ] || { echo "pjdfstest.sh: no ferrofs binary at $bin: run cargo build -p ferrofs" >&2; exit 1; }
s3s="${FERROFS_S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}"
[ -x "$s3s" ] || { echo "pjdfstest.sh: s3s-fs not found: cargo install s3s-fs --version 0.14.1 --features binary --locked" >&2; exit 1; }
config="$here/pjdfstest.toml"
known="$here/pjdfstest-known-failures.txt"

work="$(mktemp -d /tmp/ferrofs-pjd.XXXXXX)"
s3pid=""
cleanup() {
    for m in file s3; do
        "$bin" umount "$work/mnt-$m" >/dev/null 2>&1 || umount -l "$work/mnt-$m" 2>/dev/null || true
    done
    [ -n "$s3pid" ] && kill "$s3pid" 2>/dev/null || true
    umount "$work/second" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/local" "$work/mnt-file" "$work/mnt-s3" "$work/second" "$work/s3root/pjdfstest"
# EXDEV tests need a second file system.
mount -t tmpfs -o size=16m tmpfs "$work/second"
chmod 777 "$work" "$work/local"

run_pjd() { # dir out
    (cd "$1" && pjdfstest -c "$config" -p "$1" -s "$work/second" >"$2" 2>&1) || true
}
count() { # file status
    grep -cE "^\S+\s+$2\$" "$1" || true
}
summary() { echo "$(count "$1" ok) passed, $(count "$1" FAILED) failed, $(count "$1" skipped) skipped"; }

run_pjd "$work/local" "$work/local.out"

# A real S3 server on loopback, with a bucket (s3s-fs: a directory under its root).
RUST_LOG=warn,s3s_fs=info NO_COLOR=1 "$s3s" --host 127.0.0.1 --port 0 --access-key pjdkey --secret-key pjdsecret "$work/s3root" >"$work/s3s.log" 2>&1 &
s3pid=$!
port=""
for _ in $(seq 100); do
    port="$(grep -oE '127\.0\.0\.1:[0-9]+' "$work/s3s.log" | head -1 | cut -d: -f2 || true)"
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "s3s-fs did not start:"; cat "$work/s3s.log"; exit 1; }

for m in file s3; do
    if [ "$m" = file ]; then
        store=(--storage file --bucket "$work/data")
    else
        store=(--storage s3 --bucket "http://127.0.0.1:$port/pjdfstest" --access-key pjdkey --secret-key pjdsecret)
    fi
    "$bin" format "sled://$work/meta-$m" pjdfstest "${store[@]}" >/dev/null
    "$bin" mount "sled://$work/meta-$m" "$work/mnt-$m" -d --log "$work/mount-$m.log" \
        --cache-dir "$work/cache-$m" >/dev/null
    chmod 777 "$work/mnt-$m"
    run_pjd "$work/mnt-$m" "$work/ferrofs-$m.out"
    "$bin" umount "$work/mnt-$m" >/dev/null
done

echo "pjdfstest on a local directory (baseline): $(summary "$work/local.out")"
echo "pjdfstest on ferrofs, data in a local directory: $(summary "$work/ferrofs-file.out")"
echo "pjdfstest on ferrofs, data on S3 (s3s-fs): $(summary "$work/ferrofs-s3.out")"

grep -E '^\S+\s+FAILED$' "$work/local.out" | awk '{print $1}' | sort >"$work/local.failed" || true
grep -vE '^\s*(#|$)' "$known" | awk '{print $1}' | sort >"$work/known" || true
cat "$work/ferrofs-file.out" "$work/ferrofs-s3.out" >"$work/ferrofs.out"
grep -E '^\S+\s+FAILED$' "$work/ferrofs.out" | awk '{print $1}' | sort -u >"$work/ferrofs.failed" || true
comm -23 "$work/ferrofs.failed" "$work/local.failed" >"$work/regressions"
comm -23 "$work/regressions" "$work/known" >"$work/unexpected"
if [ -s "$work/regressions" ]; then
    echo "failing on ferrofs but passing locally:"
    while read -r t; do
        grep -A1 -E "^$t\s+FAILED$" "$work/ferrofs.out" | sed -n 2p | sed "s|^|  $t: |"
    done <"$work/regressions"
fi
if [ -s "$work/unexpected" ]; then
    echo "pjdfstest: unexpected failures (not in $(basename "$known")):"
    sed 's/^/  /' "$work/unexpected"
    echo "pjdfstest: $(summary "$work/ferrofs.out")"
    exit 1
fi
echo "pjdfstest on ferrofs (both stores), no unexpected failures:"
echo "pjdfstest: $(summary "$work/ferrofs.out")"
