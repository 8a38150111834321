#!/usr/bin/env bash
# The cost of per-mount metrics on the small-file benchmark: `ferrofs bench` (small files
# only) on a fresh sled + local-directory volume mounted by a ferrofs built without metrics
# (FERROFS_BASE_BIN) and by one with them (FERROFS_BIN), ROUNDS times each in one run, the
# order alternating per round; medians and with/without ratios. See bench/README.md.
#
#   FERROFS_BASE_BIN=/path/to/ferrofs-before FERROFS_BIN=target/release/ferrofs bench/metrics-overhead.sh
#
# Needs root (mounting, drop_caches), fusermount3, python3.
set -euo pipefail
: "${FERROFS_BASE_BIN:?set FERROFS_BASE_BIN to a ferrofs built before metrics (e.g. git worktree + cargo build --release)}"
: "${FERROFS_BIN:?set FERROFS_BIN to the ferrofs to measure}"
ROUNDS=${ROUNDS:-3}
FILES=${FILES:-500}
THREADS=${THREADS:-4}
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }
W=$(mktemp -d /tmp/ferrofs-metrics-XXXX)
trap 'mountpoint -q "$W/mnt" && "$FERROFS_BIN" umount "$W/mnt" >/dev/null 2>&1; rm -rf "$W"' EXIT
mkdir -p "$W/mnt"
: >"$W/results"
for r in $(seq "$ROUNDS"); do
    order="without with"
    ((r % 2 == 0)) && order="with without" # alternate who goes first
    for which in $order; do
        bin=$FERROFS_BIN
        [[ $which == without ]] && bin=$FERROFS_BASE_BIN
        rm -rf "$W/meta" "$W/data"
        "$bin" format "sled://$W/meta" metricsbench --bucket "$W/data" >/dev/null
        extra=()
        [[ $which == with ]] && extra=(--metrics 127.0.0.1:0)
        "$bin" mount "sled://$W/meta" "$W/mnt" -d --log "$W/mount.log" --cache-dir "$W/cache-$which-$r" "${extra[@]}" >/dev/null
        "$FERROFS_BIN" bench "$W/mnt" --big-file-size 0 --small-file-count "$FILES" -p "$THREADS" 2>/dev/null |
            awk -v w="$which" '/small files/ { print w "\t" $1 " " $2 " " $3 "\t" $4 }' >>"$W/results"
        "$bin" umount "$W/mnt" >/dev/null
    done
done
python3 - "$W/results" "$ROUNDS" "$FILES" "$THREADS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
steps = ["write small files", "read small files", "stat small files"]
print(f"metrics overhead: ferrofs bench, {int(sys.argv[3]) * int(sys.argv[4])} files of 128 KiB on {sys.argv[4]} threads, {sys.argv[2]} rounds each (median files/s)")
print(f"{'step':<20} {'without':>10} {'with':>10} {'with/without':>13}   rounds without | with")
for s in steps:
    got = {w: [float(v) for ww, st, v in rows if ww == w and st == s] for w in ("without", "with")}
    med = {w: statistics.median(v) for w, v in got.items()}
    spread = " ".join(f"{v:.0f}" for v in got["without"]) + " | " + " ".join(f"{v:.0f}" for v in got["with"])
    print(f"{s:<20} {med['without']:>10.1f} {med['with']:>10.1f} {med['with'] / med['without']:>13.3f}   {spread}")
PY
