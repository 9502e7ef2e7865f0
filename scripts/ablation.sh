#!/usr/bin/env bash
# Knowledge distillation vs hard labels, same corpus, same compute.
#
# Records the starter prompts with the default teacher (train and valid), trains two
# students of the same size for the same number of steps, one on the KD loss
# (alpha 0.5, T 2) and one on hard labels only (alpha 1), evaluates both on the held-out
# corpus, and prints the comparison as Markdown for docs/BENCHMARKS.md.
#
# Usage: scripts/ablation.sh [STEPS]      (default 150; env PRESET, ALPHA, TEMPERATURE,
#        OUT=data/ablation, LIMIT for fewer training prompts)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/distill"
steps=${1:-150}
out=${OUT:-data/ablation}
preset=${PRESET:-base}
limit=()
[ -n "${LIMIT:-}" ] && limit=(--limit "$LIMIT")
mkdir -p "$out"

"$bin" record --prompts prompts/train.jsonl --out "$out/train" "${limit[@]}"
"$bin" record --prompts prompts/valid.jsonl --out "$out/valid"

common=(--corpus "$out/train" --valid-corpus "$out/valid" --preset "$preset" --steps "$steps"
        --eval-every 50 --save-every 50 --seed 7)
for run in kd hard; do
  if [ -f "$out/$run/train_state.json" ]; then resume=(--resume); else resume=(); fi
  if [ "$run" = kd ]; then
    loss=(--alpha "${ALPHA:-0.5}" --temperature "${TEMPERATURE:-2}")
  else
    loss=(--alpha 1)
  fi
  "$bin" train "${common[@]}" "${loss[@]}" --out "$out/$run" "${resume[@]}"
done

"$bin" eval --student "$out/kd" --compare "$out/hard" --corpus "$out/valid" --out "$out/eval"
echo
echo "## KD vs hard labels ($preset preset, $steps steps, $(date -u +%Y-%m-%d))"
echo
cat "$out/eval/report.md"
