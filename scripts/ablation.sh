#!/usr/bin/env bash
# Knowledge distillation vs hard labels, same corpus, same compute.
#
# Records the starter prompts with the default teacher (train and valid), trains three
# students of the same size for the same number of steps on the same windows in the same
# order: the default KD loss (alpha 0.5, T 1), the textbook KD loss (alpha 0.5, T 2) and
# hard labels only (alpha 1). Evaluates all three on the held-out corpus and prints the
# comparison as Markdown for docs/BENCHMARKS.md.
#
# Usage: scripts/ablation.sh [STEPS]      (default 150; env PRESET, ALPHA, TEMPERATURE
#        (of the default KD run), OUT=data/ablation, LIMIT for fewer training prompts,
#        SPEED=1 to measure speed too: do that on an idle machine)
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
for run in kd kd-t2 hard; do
  if [ -f "$out/$run/train_state.json" ]; then resume=(--resume); else resume=(); fi
  case $run in
    kd) loss=(--alpha "${ALPHA:-0.5}" --temperature "${TEMPERATURE:-1}") ;;
    kd-t2) loss=(--alpha 0.5 --temperature 2) ;;
    hard) loss=(--alpha 1) ;;
  esac
  "$bin" train "${common[@]}" "${loss[@]}" --out "$out/$run" "${resume[@]}"
done

speed=(--no-speed)
[ "${SPEED:-0}" = 1 ] && speed=()
"$bin" eval --student "$out/kd" --compare "$out/kd-t2" --compare "$out/hard" --corpus "$out/valid" \
  --out "$out/eval" "${speed[@]}"
echo
echo "## KD vs hard labels ($preset preset, $steps steps, $(date -u +%Y-%m-%d))"
echo
cat "$out/eval/report.md"
