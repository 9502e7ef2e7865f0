#!/usr/bin/env bash
# Fault suite: SIGKILL, disk full, lost manifest, a second writer and corrupted files, on the
# real teacher (see scripts/fault_suite.py for the cases). Prints one line per case:
# trials, survived, data lost; exits non-zero if any trial failed or lost data.
#   scripts/fault-suite.sh                 # the full suite: 20 random kills per command
#   scripts/fault-suite.sh --trials 3      # the bounded form .ci/run uses
# Needs a release build (cargo build --release) and scripts/setup.sh's teacher. Disk-full
# cases mount a small tmpfs when run as root, and use a file-size limit otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${DISTILL_BIN:-${CARGO_TARGET_DIR:-target}/release/distill}"
[ -x "$BIN" ] || { echo "fault-suite: $BIN not found: run cargo build --release" >&2; exit 1; }
exec python3 scripts/fault_suite.py --bin "$BIN" "$@"
