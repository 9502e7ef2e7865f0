#!/usr/bin/env bash
# Chat speed against the engine's own: decode tokens/s of each model as `distill chat`
# shows it (turns mode, real terminal in tmux, greedy answers) next to what
# `distill bench model` (the figure `distill eval` reports) measures on the same model.
#
#   scripts/bench-chat.sh [--markdown] [--no-cargo-build]
# Environment:
#   TEACHER_GGUF  teacher (default models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   STUDENT       student GGUF or directory from `distill train` (default: a 4-block cut
#                 of the teacher, made with `distill teacher cut`, as a stand-in GGUF)
#   THREADS       CPU threads (default 2)
#   TURNS         prompts asked, one chat process each (default 3)
#   MAX_TOKENS    longest answer (default 128)
# Run it on an otherwise idle machine; compare the ratios, not the raw figures.
set -euo pipefail
cd "$(dirname "$0")/.."
markdown=0 build=1
for arg in "$@"; do
    case "$arg" in
        --markdown) markdown=1 ;;
        --no-cargo-build) build=0 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-chat.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done
command -v tmux >/dev/null || { echo "bench-chat.sh: tmux is needed (apt-get install tmux)" >&2; exit 1; }
[ "$build" = 1 ] && cargo build --release --quiet
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/distill")
teacher=$(realpath "${TEACHER_GGUF:-models/SmolLM2-135M-Instruct.Q4_1.gguf}")
threads=${THREADS:-2} turns=${TURNS:-3} max_tokens=${MAX_TOKENS:-128}
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-chat.XXXXXX")
# One tmux server per turn: a new session right after kill-server races the old server.
sock=bench-chat-$$
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$work"' EXIT
student=${STUDENT:-}
if [ -z "$student" ]; then
    student=$work/student-cut.gguf
    "$bin" teacher cut --teacher "$teacher" --blocks 0,10,20,29 --out "$student" >/dev/null
fi
student=$(realpath "$student")
log() { echo "bench-chat: $*" >&2; }

engine_rate() { # model -> decode tok/s by `distill bench model` (eval's protocol)
    "$bin" bench model --model "$1" --threads "$threads" 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tok_s"])'
}
log "engine figures (distill bench model, $threads threads)"
eval_teacher=$(engine_rate "$teacher")
eval_student=$(engine_rate "$student")

prompts=("Give me three tips for staying focused while studying."
         "Explain what a hash table is in two sentences."
         "Write a short poem about the sea."
         "What should I pack for a weekend hiking trip?"
         "How do vaccines train the immune system?")
screen() { tmux -L "$sock" capture-pane -p -t chat; }
wait_for() { # pattern seconds [count]: until the screen shows pattern count times
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        [ "$(screen | grep -o -- "$1" | wc -l)" -ge "${3:-1}" ] && return 0
        sleep 0.2
    done
    log "timed out waiting for '$1'; the screen:"; screen >&2; exit 1
}
for ((t = 0; t < turns; t++)); do
    prompt=${prompts[$((t % ${#prompts[@]}))]}
    log "chat turn $((t + 1))/$turns: $prompt"
    tmux -L "$sock" kill-server 2>/dev/null || true
    sock=bench-chat-$$-$t
    tmux -L "$sock" new-session -d -s chat -x 160 -y 48 \
        "'$bin' chat --teacher '$teacher' --student '$student' --threads $threads --temperature 0 --max-tokens $max_tokens --transcripts '$work/t$t' 2>'$work/stderr'; sleep 30"
    wait_for "Ready\." 120 2
    tmux -L "$sock" send-keys -t chat -l "$prompt"
    tmux -L "$sock" send-keys -t chat Enter
    wait_for "speed-up ×" 300
    tmux -L "$sock" send-keys -t chat C-s
    wait_for "Saved " 30
    tmux -L "$sock" send-keys -t chat C-c
    sleep 1
done
tmux -L "$sock" kill-server 2>/dev/null || true

python3 - "$work" "$turns" "$eval_teacher" "$eval_student" "$markdown" "$threads" <<'PY'
import glob, json, statistics, sys
work, turns, et, es, md, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1", sys.argv[6]
rates = {"teacher": [], "student": []}
for t in range(turns):
    for path in glob.glob(f"{work}/t{t}/*.jsonl"):
        lines = [json.loads(l) for l in open(path)]
        for turn in lines[1:]:
            for a in turn["answers"]:
                if a.get("tok_s"):
                    rates[a["side"]].append(a["tok_s"])
rows = []
for side, ref in (("teacher", et), ("student", es)):
    r = rates[side]
    if not r:
        sys.exit(f"bench-chat: no {side} tokens/s in the transcripts")
    med = statistics.median(r)
    rows.append((side, ref, med, med / ref, len(r)))
if md:
    print(f"| model | eval decode tok/s | chat decode tok/s (median of {turns}) | chat / eval |")
    print("|---|---:|---:|---:|")
    for side, ref, med, ratio, n in rows:
        print(f"| {side} | {ref:.1f} | {med:.1f} | {ratio:.2f}x |")
else:
    for side, ref, med, ratio, n in rows:
        print(f"{side:8} eval {ref:7.1f} tok/s   chat {med:7.1f} tok/s (median of {n})   chat/eval {ratio:.2f}x")
print(f"({threads} threads, turns mode, greedy, answers up to the max tokens)", file=sys.stderr)
PY
