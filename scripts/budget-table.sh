#!/usr/bin/env bash
# What more time buys: `distill run` on the default teacher at several budgets, then one
# Markdown table row per run from its eval report (held-out KLD, top-1, the free-running
# figures, decode speed-up) and the student's greedy answer to the first held-out prompt.
#
#   scripts/budget-table.sh [MINUTES...]        (default: 20 60 120)
#
# Each run goes to data/budget-M (rerun to resume). Run it on an otherwise idle machine:
# the budget is wall time, so load costs steps. Evidence for docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/release/distill
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=(20 60 120)
for m in "${budgets[@]}"; do
    echo "budget-table: distill run --minutes $m" >&2
    "$bin" run --no-tui --no-chat --minutes "$m" --out "data/budget-$m" >"data/budget-$m.log" 2>&1 \
        || { tail -n 20 "data/budget-$m.log" >&2; exit 1; }
done
echo "| budget | used | train steps (planned) | Mean KLD | same top-1 | teacher PPL of answers (x own) | distinct-2 | ended turn | decode speed-up |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for m in "${budgets[@]}"; do
    python3 - "data/budget-$m" "$m" <<'PY'
import json, sys
run, minutes = sys.argv[1], sys.argv[2]
r = json.load(open(f"{run}/eval/report.json"))
state = json.load(open(f"{run}/run.json"))
t, s = r["models"][0], r["models"][1]
q, a, own = s["quality"], s.get("answers") or {}, (t.get("answers") or {})
llama = lambda m: next((x["decode_tok_s"] for x in m["speed"] if x["engine"] == "llama.cpp"), None)
up = (llama(s) or 0) / (llama(t) or 1)
ratio = a.get("teacher_ppl", 0) / max(own.get("teacher_ppl", 1), 1e-9)
used = sum(st.get("seconds", 0) for st in state["stages"])
trained = (state.get("valid") or {}).get("step", 0)
print(f"| {minutes} min | {int(used // 60)}:{int(used % 60):02d} | {trained} ({state.get('train_steps')}) | {q['kld']['mean']:.3f} | {100*q['same_top']:.1f}% | "
      f"{a.get('teacher_ppl', 0):.2f} ({ratio:.2f}x) | {a.get('distinct', [0, 0])[1]:.2f} | "
      f"{100*a.get('end_of_turn', 0):.0f}% | {up:.2f}x |")
PY
done
for m in "${budgets[@]}"; do
    python3 - "data/budget-$m" "$m" <<'PY'
import json, sys
r = json.load(open(f"{sys.argv[1]}/eval/report.json"))
prompt = (r.get("prompts") or ["?"])[0]
answer = ((r["models"][1].get("answers") or {}).get("samples") or ["?"])[0]
print(f"\n{sys.argv[2]} min, \"{prompt}\": {' '.join(answer.split())}")
PY
done
