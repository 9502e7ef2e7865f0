#!/usr/bin/env bash
# Trains students the way `distill run` does (teacher-initialised, warm-up 5, cosine, batch
# 4 x 256) on an already recorded run corpus, one per setting, to choose run's defaults.
# Evidence: docs/BENCHMARKS.md, "distill run defaults".
#
#   scripts/sweep-run.sh NAME STEPS [train options...]
#
# Reads data/run/train and data/run/valid (a finished `distill run --out data/run`), writes
# data/sweep/NAME and prints its last validation line. Run it on an idle machine: the steps
# are fixed, so load changes the wall time but not the result.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 steps=$2
shift 2
bin=${CARGO_TARGET_DIR:-target}/release/distill
run=${RUN:-data/run}
out=data/sweep/$name
rm -rf "$out"
"$bin" train --corpus "$run/train" --valid-corpus "$run/valid" --out "$out" \
  --init teacher --warmup 5 --batch 4 --seq-len 256 --steps "$steps" \
  --eval-every "${EVAL_EVERY:-20}" --save-every 0 --quiet "$@"
grep '"kind":"valid"' "$out/metrics.jsonl" | tail -1
awk -F'"elapsed":' 'NF>1{split($2,a,","); e=a[1]} END{print "elapsed", e}' "$out/metrics.jsonl"
