#!/usr/bin/env bash
# Runs the whole ferrofs test suite on a Debian machine with Rust, as root:
# installs what the tests need (fuse3, pjdfstest), then runs unit, property, model,
# FUSE mount and differential tests (cargo test), a batch of simulation seeds, and POSIX
# conformance (pjdfstest).
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
if ! command -v pjdfstest >/dev/null 2>&1; then
    echo "== installing pjdfstest"
    cargo install pjdfstest --locked --version '^0.2'
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== build"
cargo build --workspace --all-targets --locked

echo "== cargo test"
cargo test --workspace --locked -- --test-threads=2

echo "== simulation: a time-boxed batch of fresh seeds (a failure prints the replay command)"
cargo run -p sim --release --locked -- --time-limit "${SIM_TIME_LIMIT:-120s}"

echo "== pjdfstest"
./scripts/pjdfstest.sh
