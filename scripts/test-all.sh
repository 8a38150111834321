#!/usr/bin/env bash
# Runs the whole ferrofs test suite on a Debian machine with Rust, as root:
# installs what the tests need (fuse3, pjdfstest, the s3s-fs S3 server), then runs unit,
# property, model, FUSE mount and differential tests over a local directory and over S3
# (cargo test), a batch of simulation seeds, and POSIX conformance (pjdfstest, both stores).
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-all: the FUSE and pjdfstest tests need root (mounts, other users); run with sudo" >&2
        exit 1
    fi
}
need_root

if ! command -v fusermount3 >/dev/null 2>&1; then
    echo "== installing fuse3"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v pjdfstest >/dev/null 2>&1; then
    echo "== installing pjdfstest"
    cargo install pjdfstest --locked --version '^0.2'
fi
if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "== installing s3s-fs (the S3 server the tests run against, on loopback)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== build"
cargo build --workspace --all-targets --locked

echo "== cargo test"
# The FUSE differential test runs with the mount's default kernel caches here (what users
# get) and again below with them off (every operation reaches the client's own caches).
cargo test --workspace --locked -- --test-threads=2

echo "== FUSE differential test with the kernel's attribute and entry caches off"
FERROFS_MOUNT_ARGS="${FERROFS_MOUNT_ARGS:---attr-cache 0 --entry-cache 0 --dir-entry-cache 0}" \
    cargo test --workspace --locked --test fuse_differential

echo "== simulation: a time-boxed batch of fresh seeds (a failure prints the replay command)"
cargo run -p sim --locked -- --time-limit "${SIM_TIME_LIMIT:-120s}"

echo "== simulation of the replicated engine's Raft layer: fresh seeds, time-boxed"
cargo run -p sim --locked -- --raft --time-limit "${RAFT_SIM_TIME_LIMIT:-30s}"

echo "== jepsen: three meta-server processes killed, paused and partitioned under concurrent clients, files on S3"
cargo run -p ferrofs-jepsen --locked -- --time "${JEPSEN_TIME:-60s}"

echo "== pjdfstest"
./scripts/pjdfstest.sh
